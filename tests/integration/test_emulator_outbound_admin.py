"""Outbound Message rules set through /_emulator/outbound/ on the running emulator, and the driver."""
import json
import subprocess
import sys
import time
import uuid

import pytest
import requests

from tests.emulator_fixture import REPO
from tests.integration.test_emulator_outbound_sender import NS, Listener, sobject_values


class WallClock:
    def now(self):
        import datetime as dt
        return dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def listener():
    receiver = Listener(WallClock())
    yield receiver
    receiver.close()


def wait_for(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_rule_set_through_admin_api_delivers_changes(emulator, listener):
    rule = emulator.admin("POST", "/_emulator/outbound/rules", {
        "object": "Account", "fields": ["name", "Industry"], "endpoint_url": listener.url,
        "exclude_clients": ["forcebridge"]})
    try:
        assert rule["id"].startswith("04k") and rule["fields"] == ["Name", "Industry"]
        sf = emulator.salesforce()
        echo = emulator.salesforce(client="forcebridge")
        name = f"Outbound {uuid.uuid4().hex[:8]}"
        echo.Account.create({"Name": name + " echo"})
        record_id = sf.Account.create({"Name": name, "Industry": "Energy"})["id"]
        assert wait_for(lambda: listener.received)
        notifications = [n for _, message in listener.received for n in message.findall(".//o:Notification", NS)]
        assert [sobject_values(n) for n in notifications] == [{"Id": record_id, "Industry": "Energy", "Name": name}]
        envelope = listener.received[0][1].find(".//o:notifications", NS)
        assert envelope.findtext("o:OrganizationId", namespaces=NS) == emulator.org_id
        assert envelope.findtext("o:PartnerUrl", namespaces=NS) == \
            f"{emulator.url}/services/Soap/u/59.0/{emulator.org_id[:15]}"
        assert wait_for(lambda: emulator.admin("GET", "/_emulator/outbound/status")["acked"] >= 1)
        listed = emulator.admin("GET", "/_emulator/outbound/rules")
        assert rule["id"] in [r["id"] for r in listed]
    finally:
        emulator.admin("DELETE", f"/_emulator/outbound/rules/{rule['id']}")


def test_bad_rules_are_refused(emulator):
    http = emulator.http()
    for body in ({"object": "Nope", "fields": [], "endpoint_url": "http://x"},
                 {"object": "Account", "fields": ["Nope__c"], "endpoint_url": "http://x"},
                 {"object": "Account", "fields": ["Name"], "endpoint_url": "ftp://x"}):
        response = http.post(f"{emulator.url}/_emulator/outbound/rules", json=body)
        assert response.status_code == 400, body


def test_drive_runs_bounded_and_prints_a_json_summary(emulator):
    done = subprocess.run(
        [sys.executable, "-m", "emulator.drive", "--url", emulator.url, "--ca", str(emulator.ca_path),
         "--rate", "40", "--seconds", "1", "--objects", "Account,Contact", "--seed", "7"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["errors"] == 0
    assert summary["created"] > 0 and summary["created"] + summary["updated"] + summary["deleted"] > 5
    stats = requests.get(f"{emulator.url}/_emulator/stats", verify=str(emulator.ca_path)).json()
    assert "drive" in json.dumps(stats)            # calls were tagged with the driver's client name


def test_queued_notifications_survive_an_emulator_restart(tmp_path, listener):
    from emulator.process import start_emulator

    data_dir = tmp_path / "org"
    with start_emulator(data_dir, "--time-scale", "3600") as first:
        rule = first.admin("POST", "/_emulator/outbound/rules", {
            "object": "Account", "fields": ["Name"], "endpoint_url": "http://127.0.0.1:9/nobody-listens"})
        record_id = first.salesforce().Account.create({"Name": "Queued across restart"})["id"]
        assert wait_for(lambda: first.admin("GET", "/_emulator/outbound/queue")[0]["attempts"] >= 1)
    with start_emulator(data_dir, "--time-scale", "3600") as second:
        assert second.admin("GET", "/_emulator/outbound/status")["queued"] == 1
        second.admin("PATCH", f"/_emulator/outbound/rules/{rule['id']}", {"endpoint_url": listener.url})
        assert wait_for(lambda: second.admin("GET", "/_emulator/outbound/status")["acked"] == 1)
    [notification] = listener.received[0][1].findall(".//o:Notification", NS)
    assert sobject_values(notification) == {"Id": record_id, "Name": "Queued across restart"}
