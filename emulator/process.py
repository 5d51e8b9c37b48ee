"""Run the emulator as a child process and talk to it with simple-salesforce (tests, benchmarks, demo).

    with start_emulator(data_dir) as running:          # python -m emulator --port 0 ...
        sf = running.salesforce(client="forcebridge")  # logged-in simple_salesforce.Salesforce
        running.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": 1000})
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import urllib.parse

import requests

from emulator.store import (DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN,
                            DEFAULT_USERNAME)

REPO = pathlib.Path(__file__).resolve().parents[1]
ORG_ID = "00D5g000004EMUL"     # 15 chars; the emulator reports the 18-character form


class SalesforceHttp(requests.Session):
    """A requests.Session that trusts the emulator's CA and routes *.salesforce.com to the emulator."""

    def __init__(self, base_url: str, ca_path: pathlib.Path | None, client: str | None = None):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        if ca_path:
            self.verify = str(ca_path)
        if client:
            self.headers["Sforce-Call-Options"] = f"client={client}"

    def request(self, method, url, *args, **kwargs):
        parts = urllib.parse.urlsplit(url)
        if parts.hostname and parts.hostname.endswith(".salesforce.com"):
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        elif self.base_url.startswith("http://") and parts.scheme == "https":
            url = "http://" + url[len("https://"):]
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override session.verify; the emulator's CA must win.
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


class Emulator:
    def __init__(self, process: subprocess.Popen, url: str, ca_path: pathlib.Path | None, org_id: str,
                 data_dir: pathlib.Path, pubsub: str | None = None):
        self.process = process
        self.pubsub = pubsub          # host:port of the Pub/Sub API (gRPC), None with --no-pubsub
        self.url = url
        self.ca_path = ca_path
        self.org_id = org_id
        self.data_dir = data_dir
        self.username = DEFAULT_USERNAME
        self.password = DEFAULT_PASSWORD
        self.security_token = DEFAULT_SECURITY_TOKEN
        self.consumer_key = DEFAULT_CONSUMER_KEY
        self.consumer_secret = DEFAULT_CONSUMER_SECRET
        self._admin = self.http()

    def http(self, client: str | None = None) -> SalesforceHttp:
        return SalesforceHttp(self.url, self.ca_path, client)

    def admin(self, method: str, path: str, json=None):
        response = self._admin.request(method, self.url + path, json=json)
        response.raise_for_status()
        return response.json() if response.content else None

    def salesforce(self, client: str | None = None, version: str = "59.0", auth: str = "soap", **kwargs):
        from simple_salesforce import Salesforce

        session = self.http(client)
        if auth == "soap":
            return Salesforce(username=kwargs.pop("username", self.username),
                              password=kwargs.pop("password", self.password),
                              security_token=kwargs.pop("security_token", self.security_token),
                              session=session, version=version, **kwargs)
        if auth == "password":
            return Salesforce(username=kwargs.pop("username", self.username),
                              password=kwargs.pop("password", self.password),
                              consumer_key=self.consumer_key, consumer_secret=self.consumer_secret,
                              session=session, version=version, **kwargs)
        if auth == "client_credentials":
            return Salesforce(consumer_key=self.consumer_key, consumer_secret=self.consumer_secret,
                              domain="emulator.my", session=session, version=version, **kwargs)
        raise ValueError(f"unknown auth {auth!r}")

    def reset(self) -> None:
        self.admin("POST", "/_emulator/reset")
        self.admin("DELETE", "/_emulator/faults")
        self.admin("DELETE", "/_emulator/rules")

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT is gunicorn's quick shutdown: no waiting for idle keep-alive connections.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def start_emulator(data_dir: pathlib.Path | str, *args: str, org_id: str = ORG_ID, tls: bool = True):
    """Run `python -m emulator` on a free port until the block ends; yields an Emulator."""
    data_dir = pathlib.Path(data_dir)
    command = [sys.executable, "-m", "emulator", "--port", "0", "--data", str(data_dir), "--org-id", org_id, *args]
    if not tls:
        command.append("--no-tls")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env)
    found: dict[str, str] = {}
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        key, _, value = line.strip().partition("=")
        if key in ("EMULATOR_URL", "EMULATOR_CA", "EMULATOR_ORG_ID", "EMULATOR_PUBSUB"):
            found[key] = value
        if "EMULATOR_ORG_ID" in found and ("EMULATOR_PUBSUB" in found or "--no-pubsub" in args):
            break
    if "EMULATOR_URL" not in found:
        process.kill()
        raise RuntimeError("emulator did not start:\n" + "".join(output))
    # Keep draining its output so a chatty emulator never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    emulator = Emulator(process, found["EMULATOR_URL"], pathlib.Path(found["EMULATOR_CA"]) if "EMULATOR_CA" in found
                        else None, found["EMULATOR_ORG_ID"], data_dir, found.get("EMULATOR_PUBSUB"))
    try:
        yield emulator
    finally:
        emulator.stop()
