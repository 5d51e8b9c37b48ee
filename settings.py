"""ForceBridge's settings, all from the environment (twelve-factor), read in one place."""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return raw in ("1", "true", "yes", "on") if raw else default


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str
    huey_url: str
    instance_path: pathlib.Path
    salesforce_org_id: str = ""
    outbound_token: str = ""
    api_token: str = ""
    admin_password: str = ""
    # Salesforce connection
    sf_instance_url: str = ""
    sf_username: str = ""
    sf_password: str = ""
    sf_security_token: str = ""
    sf_client_id: str = ""
    sf_client_secret: str = ""
    sf_domain: str = "login"
    sf_api_version: str = "62.0"
    sf_ca_bundle: str = ""
    sf_pubsub_url: str = "api.pubsub.salesforce.com:7443"    # the Pub/Sub API (gRPC, TLS): host:port
    # Limits and pacing
    max_message_bytes: int = 5 * 1024 * 1024
    # A request body gets WEB_BODY_SECONDS of grace, then must keep up WEB_BODY_MIN_RATE bytes a second
    # (webapp/slow_clients.py): a client that falls behind gets 408 and frees its thread.
    web_body_seconds: int = 2
    web_header_seconds: float = 3.0     # each read of a request's line and headers (gunicorn.conf.py's worker)
    web_body_min_rate: int = 50_000
    apply_batch_size: int = 500
    # Postgres -> Salesforce
    drain_concurrency: int = 4
    drain_bundle: int = 5          # Collections requests of up to 200 records per API call (1: one each)
    drain_lease_seconds: int = 120
    send_window_seconds: float = 0.0            # a part-filled write call waits this long while the budget is relaxed
    send_window_pressed_seconds: float = 3600.0  # ... and up to this long as the budget nears its limit
    archive_after_hours: int = 24
    archive_purge_days: int = 30
    huey_name: str = "forcebridge"   # one queue per deployment when several share a Redis or Postgres
    # Proxies in front of the web service that append to X-Forwarded-For (Render, nginx: 1). 0 trusts none:
    # the client address is the peer's, and the sign-in throttle would count everyone as the proxy.
    proxy_fix_hops: int = 0
    # The console's sessions: idle ones end after SESSION_IDLE_MINUTES, every one SESSION_MAX_HOURS after
    # sign-in however busy (the overview polls every 5 s), and all of them when ADMIN_PASSWORD changes.
    session_idle_minutes: int = 120
    session_max_hours: int = 12
    # The address Salesforce reaches us at (https://connector.example.com): the setup page shows it and sends
    # its test message there, never to the Host a request names. On Render, RENDER_EXTERNAL_URL supplies it.
    public_url: str = ""
    # Loads and polls (issue 6)
    load_page_size: int = 0            # maxRecords per Bulk results page; 0: Salesforce decides
    load_rest_max: int = 10_000        # objects up to this size load through REST query paging
    push_bulk_threshold: int = 2_000   # an initial push of more rows uses Bulk API 2.0 ingest
    # The worker process (python -m jobs.worker; its command-line options override these)
    worker_threads: int = 2
    worker_periodic: bool = True       # False on every consumer but one: one scheduler per deployment
    worker_shutdown_seconds: float = 20.0
    # The web service (gunicorn.conf.py)
    host: str = "0.0.0.0"
    port: int = 8000
    web_concurrency: int = 2
    web_threads: int = 4
    web_graceful_seconds: int = 20
    embedded_worker: bool = False      # gunicorn's master also runs one worker (Render's free plan)
    # Not a user setting: the pid gunicorn's master hands to the worker it embeds (jobs/embedded.py)
    parent_pid: int = 0
    # Alerts by email (issue 16): the SMTP server and its credentials; SMTP_TLS is starttls, ssl or none
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_tls: str = "starttls"
    smtp_ca_bundle: str = ""           # a private CA to trust (else the system's)
    # The web process checks alerts each minute too (who else notices that no worker runs?)
    web_alert_checks: bool = True

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        instance = pathlib.Path(os.environ.get("FORCEBRIDGE_INSTANCE", ROOT / "instance"))
        values = dict(
            database_url=os.environ.get("DATABASE_URL", ""),
            secret_key=os.environ.get("SECRET_KEY", ""),
            huey_url=os.environ.get("HUEY_URL", f"sqlite:///{instance / 'huey.sqlite3'}"),
            instance_path=instance,
            salesforce_org_id=os.environ.get("SALESFORCE_ORG_ID", ""),
            outbound_token=os.environ.get("OUTBOUND_TOKEN", ""),
            api_token=os.environ.get("API_TOKEN", ""),
            admin_password=os.environ.get("ADMIN_PASSWORD", ""),
            sf_instance_url=os.environ.get("SF_INSTANCE_URL", ""),
            sf_username=os.environ.get("SF_USERNAME", ""),
            sf_password=os.environ.get("SF_PASSWORD", ""),
            sf_security_token=os.environ.get("SF_SECURITY_TOKEN", ""),
            sf_client_id=os.environ.get("SF_CLIENT_ID", ""),
            sf_client_secret=os.environ.get("SF_CLIENT_SECRET", ""),
            sf_domain=os.environ.get("SF_DOMAIN", "login"),
            sf_api_version=os.environ.get("SF_API_VERSION", "62.0"),
            sf_ca_bundle=os.environ.get("SF_CA_BUNDLE", ""),
            sf_pubsub_url=os.environ.get("SF_PUBSUB_URL", "") or "api.pubsub.salesforce.com:7443",
            max_message_bytes=_int("MAX_MESSAGE_BYTES", 5 * 1024 * 1024),
            web_body_seconds=_int("WEB_BODY_SECONDS", 2),
            web_header_seconds=_float("WEB_HEADER_SECONDS", 3.0),
            web_body_min_rate=_int("WEB_BODY_MIN_RATE", 50_000),
            apply_batch_size=_int("APPLY_BATCH_SIZE", 500),
            drain_concurrency=_int("DRAIN_CONCURRENCY", 4),
            drain_bundle=min(5, max(1, _int("DRAIN_BUNDLE", 5))),
            drain_lease_seconds=_int("DRAIN_LEASE_SECONDS", 120),
            send_window_seconds=_float("SEND_WINDOW_SECONDS", 0.0),
            send_window_pressed_seconds=_float("SEND_WINDOW_PRESSED_SECONDS", 3600.0),
            archive_after_hours=_int("ARCHIVE_AFTER_HOURS", 24),
            archive_purge_days=_int("ARCHIVE_PURGE_DAYS", 30),
            huey_name=os.environ.get("HUEY_NAME", "forcebridge"),
            proxy_fix_hops=_int("PROXY_FIX_HOPS", 0),
            session_idle_minutes=_int("SESSION_IDLE_MINUTES", 120),
            session_max_hours=_int("SESSION_MAX_HOURS", 12),
            public_url=(os.environ.get("PUBLIC_URL") or os.environ.get("RENDER_EXTERNAL_URL", "")).rstrip("/"),
            load_page_size=_int("LOAD_PAGE_SIZE", 0),
            load_rest_max=_int("LOAD_REST_MAX", 10_000),
            push_bulk_threshold=_int("PUSH_BULK_THRESHOLD", 2_000),
            worker_threads=_int("WORKER_THREADS", 2),
            worker_periodic=os.environ.get("WORKER_PERIODIC", "1") != "0",
            worker_shutdown_seconds=_float("WORKER_SHUTDOWN_SECONDS", 20.0),
            host=os.environ.get("HOST", "0.0.0.0"),
            port=_int("PORT", 8000),
            web_concurrency=_int("WEB_CONCURRENCY", 2),
            web_threads=_int("WEB_THREADS", 4),
            web_graceful_seconds=_int("WEB_GRACEFUL_SECONDS", 20),
            embedded_worker=_flag("FORCEBRIDGE_EMBEDDED_WORKER", False),
            parent_pid=_int("FORCEBRIDGE_PARENT_PID", 0),
            smtp_host=os.environ.get("SMTP_HOST", ""),
            smtp_port=_int("SMTP_PORT", 587),
            smtp_username=os.environ.get("SMTP_USERNAME", ""),
            smtp_password=os.environ.get("SMTP_PASSWORD", ""),
            smtp_from=os.environ.get("SMTP_FROM", ""),
            smtp_tls=os.environ.get("SMTP_TLS", "starttls").strip().lower(),
            smtp_ca_bundle=os.environ.get("SMTP_CA_BUNDLE", ""),
            web_alert_checks=_flag("WEB_ALERT_CHECKS", True),
        )
        values.update(overrides)
        return cls(**values)
