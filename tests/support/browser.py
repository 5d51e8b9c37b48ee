"""Helpers for the browser tests: Debian's chromium, signing in, screenshots under artifacts/."""
from __future__ import annotations

import pathlib

CHROMIUM = pathlib.Path("/usr/bin/chromium")
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "artifacts"
ADMIN_PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def sign_in(tab, base_url: str, password: str = ADMIN_PASSWORD) -> None:
    tab.goto(f"{base_url}/login")
    tab.fill("input[name=password]", password)
    tab.click("button[type=submit]")
    tab.wait_for_load_state("networkidle")


def screenshot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
