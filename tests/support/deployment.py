"""A deployment under test: its environment, and what a user does to it over HTTP (create a mapping,
send Outbound Messages) and sees in Postgres (rows applied, inbox states)."""
from __future__ import annotations

import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql
import requests

from tests.conftest import API_TOKEN, ORG_ID, OUTBOUND_TOKEN
from tests.support.messages import envelope
from tests.support.processes import postgres_url

REDIS_URL = "redis://127.0.0.1:6379/0"


def require_redis() -> None:
    """Skip (with the reason) where no Redis listens on 127.0.0.1:6379; our machines and CI have one."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379 ({exc})")


def huey_url_for(kind: str, database_url: str, tmp_path) -> str:
    if kind == "redis":
        require_redis()
    return {"sqlite": f"sqlite:///{tmp_path / 'huey.sqlite3'}", "postgres": database_url,
            "redis": REDIS_URL}[kind]


@dataclass
class Deployment:
    database_url: str
    huey_url: str
    instance: str
    huey_name: str = field(default_factory=lambda: f"e2e_{uuid.uuid4().hex[:10]}")

    @classmethod
    def create(cls, pg_conninfo: str, huey_kind: str, tmp_path) -> "Deployment":
        db = postgres_url(pg_conninfo)
        return cls(db, huey_url_for(huey_kind, db, tmp_path), str(tmp_path / "instance"))

    def env(self, **extra) -> dict:
        return {"DATABASE_URL": self.database_url, "HUEY_URL": self.huey_url, "HUEY_NAME": self.huey_name,
                "SECRET_KEY": "e2e-secret", "SALESFORCE_ORG_ID": ORG_ID, "OUTBOUND_TOKEN": OUTBOUND_TOKEN,
                "API_TOKEN": API_TOKEN, "FORCEBRIDGE_INSTANCE": self.instance, "HOST": "127.0.0.1",
                **extra}

    def huey(self):
        from jobs.queue import make_huey

        return make_huey(self.huey_url, name=self.huey_name)

    def forget_queue(self) -> None:
        """Lose every Huey task, as an ephemeral disk or a flushed Redis would; Postgres keeps the truth."""
        h = self.huey()
        h.storage.flush_all()
        h.storage.close()
        if self.huey_url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(self.huey_url)
            for key in client.scan_iter(f"*{self.huey_name}*"):
                client.delete(key)

    # -- what a user sees in Postgres --------------------------------------------------------------

    def query(self, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()

    def inbox_states(self) -> dict[str, int]:
        return dict(self.query("SELECT state, count(*) FROM forcebridge.inbox GROUP BY state"))


def create_mapping(base_url: str, object_name: str = "Account", fields: dict | None = None) -> dict:
    fields = fields or {"Name": {"type": "string", "length": 255}, "NumberOfEmployees": {"type": "int"}}
    r = requests.post(f"{base_url}/api/v1/mappings", timeout=30,
                      headers={"Authorization": f"Bearer {API_TOKEN}"},
                      json={"object_name": object_name, "config": {"access": "read_only", "fields": fields}})
    assert r.status_code == 201, r.text
    return r.json()


def account_records(n: int, offset: int = 0) -> list[dict]:
    return [{"Id": f"0015w{offset + i:010d}AAA", "Name": f"Account {offset + i}", "NumberOfEmployees": offset + i,
             "SystemModstamp": "2026-11-27T08:00:00.000Z"} for i in range(n)]


def send_messages(base_url: str, records: list[dict], per_message: int = 20, senders: int = 1,
                  object_name: str = "Account") -> int:
    """POST Outbound Messages of `per_message` notifications; every one must be ACKed. Returns how many
    notifications were sent."""
    chunks = [records[i:i + per_message] for i in range(0, len(records), per_message)]

    def post(chunk):
        body = envelope(ORG_ID, object_name, chunk)
        r = requests.post(f"{base_url}/outbound/{OUTBOUND_TOKEN}", data=body, timeout=60,
                          headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
        assert r.status_code == 200 and b"<Ack>true</Ack>" in r.content, r.text
        return len(chunk)

    with ThreadPoolExecutor(senders) as pool:
        return sum(pool.map(post, chunks))


class TableLock:
    """Holds the mapped table locked so that a consumer's apply stalls mid-transaction, where a crash
    hurts most: it has claimed inbox rows and written nothing yet."""

    def __init__(self, database_url: str, schema: str = "salesforce", table: str = "account"):
        self.conn = psycopg.connect(database_url)
        self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, table)))
        self.table = f"{schema}.{table}"  # a query parameter below, not SQL text

    def waiting_backends(self) -> list[int]:
        with psycopg.connect(self.conn.info.dsn, autocommit=True) as other:
            return [r[0] for r in other.execute(
                "SELECT pid FROM pg_locks WHERE NOT granted AND relation = %s::regclass", (self.table,))]

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def assert_all_applied_once(deployment: Deployment, records: list[dict]) -> None:
    rows = deployment.query("SELECT sfid, name, numberofemployees, _hc_lastop FROM salesforce.account ORDER BY sfid")
    assert rows == [(r["Id"], r["Name"], r["NumberOfEmployees"], "SYNCED") for r in records]
    assert deployment.inbox_states() == {"applied": len(records)}
    assert deployment.query("SELECT DISTINCT attempts FROM forcebridge.inbox") == [(1,)]
