"""Browser tests: the real app served over HTTP on an ephemeral port, real Postgres, Debian's chromium."""
from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from tests.support.browser import ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, sign_in


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class LiveConsole:
    def __init__(self, app, url):
        self.app, self.url = app, url

    @property
    def ctx(self):
        return self.app.extensions["forcebridge"]

    @property
    def db(self):
        return self.ctx.db


@pytest.fixture
def console_settings(settings):
    """The settings the console runs with; tests against the emulator override this fixture."""
    return settings


@pytest.fixture
def console(console_settings, enqueued):
    """The whole web app (console, Outbound Message endpoint, API) on 127.0.0.1:<ephemeral>."""
    from dataclasses import replace

    from webapp import create_app

    app = create_app(replace(console_settings, admin_password=ADMIN_PASSWORD), enqueue=enqueued)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    context = app.extensions["forcebridge"]
    context.settings = replace(context.settings, public_url=url)   # where the setup page's test message goes
    yield LiveConsole(app, url)
    server.shutdown()
    thread.join(10)
    app.extensions["forcebridge"].db.close()


@pytest.fixture
def page(browser, console):
    """A browser tab, signed in to the console."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    sign_in(tab, console.url)
    yield tab
    context.close()
