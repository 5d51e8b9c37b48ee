"""Install and start the app the way Render does, from render.yaml: the repository's files, a fresh venv,
the blueprint's build and start commands, PORT set, the blueprint's environment (generated secrets,
the database's URL). Then /healthz and an Outbound Message round trip through the embedded worker.
Needs the package index (pip's cache is enough): skip offline with -m "not packages"."""
from __future__ import annotations

import base64
import os
import pathlib
import secrets
import shutil
import subprocess
import sys

import pytest
import requests
import yaml

from tests.conftest import API_TOKEN, ORG_ID
from tests.support.deployment import account_records
from tests.support.messages import envelope
from tests.support.processes import ROOT, postgres_url, start_web, wait_for
from tests.support.processes import no_leftover_processes  # noqa: F401  (autouse: stops leftover processes)

pytestmark = pytest.mark.packages


def blueprint_web_service() -> dict:
    spec = yaml.safe_load((ROOT / "render.yaml").read_text())
    (web,) = [s for s in spec["services"] if s["type"] == "web"]
    return web


def checkout(dest: pathlib.Path) -> pathlib.Path:
    """What Render clones: the files git knows (tracked, or new and not ignored)."""
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def render_environment(web: dict, database_url: str) -> dict:
    """Render's values for the blueprint's envVars. Generated secrets are base64 like Render's, with a
    "/" and a "+" in them, the characters that could break a URL."""
    env = {}
    for var in web["envVars"]:
        key = var["key"]
        if "value" in var:
            env[key] = str(var["value"])
        elif "fromDatabase" in var:
            env[key] = database_url
        elif var.get("generateValue"):
            env[key] = base64.b64encode(b"\xfb\xff" + secrets.token_bytes(30)).decode()
        elif var.get("sync") is False:
            env[key] = ""
    env["SALESFORCE_ORG_ID"] = ORG_ID
    env["API_TOKEN"] = API_TOKEN
    return env


def test_blueprint_installs_starts_and_syncs(clean_db, tmp_path):
    web = blueprint_web_service()
    app_dir = checkout(tmp_path / "app")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    build = subprocess.run(["bash", "-c", web["buildCommand"]], cwd=app_dir, capture_output=True, text=True,
                           env={**os.environ, "PATH": path, "VIRTUAL_ENV": str(venv)})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    database_url = postgres_url(clean_db)
    env = {**render_environment(web, database_url), "PATH": path, "VIRTUAL_ENV": str(venv),
           "PORT": "0", "HOST": "127.0.0.1",  # Render sets PORT; tests stay on loopback and an ephemeral port
           "FORCEBRIDGE_INSTANCE": str(tmp_path / "instance"), "PYTHONPATH": ""}
    server = start_web(env, tmp_path / "render.log", cwd=app_dir, args=["bash", "-c", web["startCommand"]])
    try:
        health = requests.get(f"{server.url}{web['healthCheckPath']}", timeout=10)
        assert health.status_code == 200 and health.json()["postgres"] is True
        for asset in ("htmx.min.js", "plotly.min.js"):  # the console's browser files were installed
            assert requests.get(f"{server.url}/assets/{asset}", timeout=10).status_code == 200, asset

        r = requests.post(f"{server.url}/api/v1/mappings", timeout=30,
                          headers={"Authorization": f"Bearer {API_TOKEN}"},
                          json={"object_name": "Account", "config": {"access": "read_only", "fields": {
                              "Name": {"type": "string"}, "NumberOfEmployees": {"type": "int"}}}})
        assert r.status_code == 201, r.text
        records = account_records(5)
        r = requests.post(f"{server.url}/outbound/{env['OUTBOUND_TOKEN']}", data=envelope(ORG_ID, "Account", records),
                          headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)
        assert r.status_code == 200 and b"<Ack>true</Ack>" in r.content, r.text

        import psycopg

        def applied():
            with psycopg.connect(database_url) as conn:
                return conn.execute("SELECT sfid, name, numberofemployees FROM salesforce.account "
                                    "ORDER BY sfid").fetchall()
        rows = wait_for(applied, what="the embedded worker to apply the message", logs=(server,))
        assert rows == [(x["Id"], x["Name"], x["NumberOfEmployees"]) for x in records]
    finally:
        code = server.stop(timeout=60)
    assert code == 0, server.text()[-3000:]
    assert "embedded worker stopped" in server.text()
