"""GET /metrics: what Prometheus scrapes after notifications arrive, apply and fail."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from jobs.inbound import apply_pending
from tests.conftest import API_TOKEN, ORG_ID, OUTBOUND_TOKEN
from tests.support.messages import envelope

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
MODSTAMP = "2026-11-27T08:00:00.000Z"


def samples(client) -> dict:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_metrics_count_synced_failed_and_waiting_records(api, client, app):
    assert api.post("/api/v1/mappings", json={"object_name": "Account", "config": {
        "fields": {"Name": {"type": "string", "length": 80}, "NumberOfEmployees": {"type": "int"}}}}).status_code == 201
    body = envelope(ORG_ID, "Account", [
        {"Id": "001000000000001AAA", "Name": "A", "NumberOfEmployees": "10", "SystemModstamp": MODSTAMP},
        {"Id": "001000000000002AAA", "Name": "B", "NumberOfEmployees": "ten", "SystemModstamp": MODSTAMP}])
    assert client.post(f"/outbound/{OUTBOUND_TOKEN}", data=body, content_type="text/xml").status_code == 200
    assert client.post(f"/outbound/{OUTBOUND_TOKEN}", content_type="text/xml", data=envelope(
        ORG_ID, "Lead", [{"Id": "00Q000000000001AAA", "SystemModstamp": MODSTAMP}])).status_code == 200

    before = samples(client)
    assert before[("forcebridge_backlog", (("queue", "inbox_pending"),))] == 2
    assert before[("forcebridge_backlog", (("queue", "inbox_unmapped"),))] == 1

    apply_pending(app.extensions["forcebridge"].db)
    after = samples(client)
    labels = (("direction", "sf_to_pg"), ("mapping", "Account"))
    assert after[("forcebridge_records_synced_total", labels)] == 1
    assert after[("forcebridge_records_failed_total", labels)] == 1
    assert after[("forcebridge_backlog", (("queue", "inbox_pending"),))] == 0
    assert after[("forcebridge_backlog", (("queue", "inbox_failed"),))] == 1
    assert after[("forcebridge_inbound_latency_seconds_count", ())] == 1
    assert after[("forcebridge_inbound_latency_seconds_bucket", (("le", "+Inf"),))] == 1
    assert after[("forcebridge_postgres_up", ())] == 1


def test_metrics_need_the_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
