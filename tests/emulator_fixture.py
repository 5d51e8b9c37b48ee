"""The `emulator` pytest fixture: one real emulator process over HTTPS, shared by the whole test session.

Use it from any test (tests/conftest.py imports it). The classes live in emulator/process.py:

    def test_something(emulator):
        sf = emulator.salesforce()                 # simple_salesforce.Salesforce, logged in by SOAP
        sf.Account.create({"Name": "Acme"})
        emulator.admin("POST", "/_emulator/faults", {"rules": {"rest.query": {"errors": {"503": 1}}}})

The yielded `Emulator` has:
    .url          base URL, e.g. https://127.0.0.1:40123 (port picked by the OS)
    .ca_path      the emulator's CA certificate (pathlib.Path); give it to requests as verify=
    .org_id       18-character org id
    .data_dir     the emulator's data directory (temp dir)
    .username / .password / .security_token / .consumer_key / .consumer_secret   default credentials
    .admin(method, path, json=None) -> parsed JSON of /_emulator/... (raises on HTTP >= 400)
    .http()       a requests.Session that trusts the CA and sends https://*.salesforce.com/... to the emulator,
                  so simple-salesforce's built-in login URLs (login.salesforce.com, <domain>.my.salesforce.com)
                  and its 401 re-login path work unmodified
    .salesforce(client=None, version="59.0", auth="soap"|"password"|"client_credentials")
                  -> a logged-in simple_salesforce.Salesforce; client=NAME sends Sforce-Call-Options: client=NAME
    .reset()      deletes every record and change (users stay); faults cleared

The fixture is session-scoped: tests share one org, so create your own records (unique names) and
filter your queries by them; clear any faults you set (emulator.admin("DELETE", "/_emulator/faults")) and
never advance the shared clock or change its API limit for good. emulator.reset() wipes every record,
which other tests' records included. Tests that need their own process (other --time-scale, --session-seconds,
--daily-api-limit) use `start_emulator(tmp_path, "--time-scale", "3600")` as a context manager.
"""
from __future__ import annotations

import tempfile

import pytest

from emulator.process import ORG_ID, REPO, Emulator, SalesforceHttp, start_emulator  # noqa: F401 (re-exported)


@pytest.fixture(scope="session")
def emulator():
    """One emulator process (HTTPS, temp data dir) for the whole test session; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="emulator-") as data_dir:
        with start_emulator(data_dir) as running:
            yield running
