"""GET /metrics in Prometheus text format: read from Postgres at scrape time, so every process agrees.
Scrapers send `Authorization: Bearer <API_TOKEN>`; a signed-in browser may look too."""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from core import trends
from jobs.heartbeat import ALIVE_SECONDS
from webapp import budget, security, write_path
from webapp.context import ctx

bp = Blueprint("metrics", __name__)
LATENCY_BOUNDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class _Collector:
    def __init__(self, context):
        self.ctx = context

    def collect(self):
        db = self.ctx.db
        up = GaugeMetricFamily("forcebridge_postgres_up", "1 when Postgres answers")
        if not db.ping():
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        names = {m["id"]: m["object_name"] for m in db.fetchall("list_mappings")}
        synced = CounterMetricFamily("forcebridge_records_synced", "Records synced", labels=["direction", "mapping"])
        failed = CounterMetricFamily("forcebridge_records_failed", "Records that failed to sync",
                                     labels=["direction", "mapping"])
        for r in db.fetchall("stats_totals"):
            family = {"synced": synced, "failed": failed}.get(trends.OUTCOME_SERIES.get(r["outcome"]))
            if family is not None:
                family.add_metric([r["direction"], names.get(r["mapping_id"], str(r["mapping_id"]))], r["count"])
        yield synced
        yield failed
        backlog = db.fetchone("notification_backlog")
        gauge = GaugeMetricFamily("forcebridge_backlog", "Work waiting or stuck", labels=["queue"])
        for key in ("pending", "failed", "unmapped"):
            gauge.add_metric([f"inbox_{key}"], backlog[key])
        writes = write_path.backlog()
        gauge.add_metric(["writes_pending"], writes["pending"])
        gauge.add_metric(["writes_failed"], writes["failed"])
        yield gauge
        workers = GaugeMetricFamily("forcebridge_workers_alive", "Worker processes with a recent heartbeat")
        workers.add_metric([], db.fetchone("live_workers", {"seconds": ALIVE_SECONDS})["alive"])
        yield workers
        yield self._latency(db)
        yield from budget.metric_families(db)
        status = self.ctx.salesforce_status() or {}
        if status.get("api_used") is not None:
            calls = GaugeMetricFamily("forcebridge_salesforce_api_calls", "API calls used today (Sforce-Limit-Info)",
                                      labels=["kind"])
            calls.add_metric(["used"], status["api_used"])
            if status.get("api_limit") is not None:
                calls.add_metric(["limit"], status["api_limit"])
            yield calls

    @staticmethod
    def _latency(db):
        """Receipt to applied, over the notifications the inbox still holds (purged after some days)."""
        counts = {r["b"]: r["le"] for r in db.fetchall("inbound_latency_buckets", {"bounds": list(LATENCY_BOUNDS)})}
        total = db.fetchone("inbound_latency_total")
        buckets = [(str(b), counts.get(b, 0)) for b in LATENCY_BOUNDS] + [("+Inf", total["n"])]
        family = HistogramMetricFamily("forcebridge_inbound_latency_seconds",
                                       "Seconds from an Outbound Message's receipt to its row in Postgres")
        family.add_metric([], buckets, float(total["seconds"]))
        return family


@bp.get("/metrics")
def metrics():
    token = ctx().settings.api_token
    given = request.headers.get("Authorization", "")
    bearer_ok = bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if not bearer_ok and not security.signed_in():
        return Response("send Authorization: Bearer <API_TOKEN>\n", status=401, mimetype="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctx()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
