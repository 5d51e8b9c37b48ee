"""The one way into Postgres: a connection pool, named queries from sql/queries/*.sql, migrations."""
from __future__ import annotations

import contextlib
import pathlib
import re
import threading

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

SQL_DIR = pathlib.Path(__file__).resolve().parent.parent / "sql"
SCHEMA = "forcebridge"
# Sessions that carry this setting write on behalf of Salesforce; the capture trigger ignores them.
ORIGIN_SETTING = "forcebridge.origin"
# Heroku Connect's contract, kept for apps written for it: a write is an app's only while `xmlbinary` is at
# its default (base64); the connector's own writes set it to hex, so app triggers testing get_xmlbinary()
# can skip them, and an app sets it to hex for a change that must stay local.
XMLBINARY_SETTING = "xmlbinary"
_NAME_RE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.M)
_MIGRATION_LOCK = 0x46427267  # "FBrg": one upgrade at a time across processes


def load_queries(directory: pathlib.Path = SQL_DIR / "queries") -> dict[str, str]:
    """Each file holds blocks that start with `-- name: <query_name>`."""
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        parts = _NAME_RE.split(path.read_text())
        for name, body in zip(parts[1::2], parts[2::2]):
            if name in queries:
                raise ValueError(f"query {name} is defined twice ({path.name})")
            queries[name] = body.strip()
    return queries


QUERIES = load_queries()


def template(name: str, /, **parts) -> sql.Composed:
    """A named query whose {placeholders} (tables, columns, fragments) are filled with psycopg.sql objects:
    identifiers never pass through Python string formatting."""
    return sql.SQL(QUERIES[name]).format(**parts)


def _configure(conn: psycopg.Connection) -> None:
    """Every pooled session reads and writes timestamps in UTC: mapped tables hold datetimes as UTC
    `timestamp without time zone` (Heroku Connect's shape), and any comparison or cast between those and
    timestamptz values then means the same instant whatever TimeZone the server, database or role sets."""
    conn.execute("SET TimeZone = 'UTC'")
    conn.commit()


class Database:
    """A pool of psycopg 3 connections with dict rows. Every SQL statement the app runs goes through here."""

    def __init__(self, url: str, min_size: int = 1, max_size: int = 10, name: str = "forcebridge"):
        self.url = url
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False, name=name,
                                   kwargs={"row_factory": dict_row, "autocommit": False},
                                   configure=_configure, check=ConnectionPool.check_connection)
        self._open_lock = threading.Lock()
        self._opened = False

    def open(self) -> "Database":
        with self._open_lock:
            if not self._opened:
                self.pool.open(wait=True, timeout=30)
                self._opened = True
        return self

    def close(self) -> None:
        with self._open_lock:
            if self._opened:
                self.pool.close()
                self._opened = False

    @contextlib.contextmanager
    def transaction(self, origin: str | None = None):
        """A connection inside one transaction, committed on success. `origin="salesforce"` marks the
        writes as the sync's own so the capture trigger skips them."""
        self.open()
        with self.pool.connection() as conn:
            with conn.transaction():
                if origin:
                    conn.execute("SELECT set_config(%s, %s, true), set_config(%s, 'hex', true)",
                                 (ORIGIN_SETTING, origin, XMLBINARY_SETTING))
                yield conn

    def run(self, conn: psycopg.Connection, name: str, params=None, prepare: bool | None = None):
        """Run a named query on a connection the caller holds; returns the cursor. `prepare=False` plans it
        afresh each time (for a table whose size swings, where a plan cached while it was empty is wrong)."""
        return conn.execute(QUERIES[name], params, prepare=prepare)

    def fetchall(self, name: str, params=None) -> list[dict]:
        with self.transaction() as conn:
            return self.run(conn, name, params).fetchall()

    def fetchone(self, name: str, params=None) -> dict | None:
        with self.transaction() as conn:
            return self.run(conn, name, params).fetchone()

    def execute(self, name: str, params=None) -> int:
        with self.transaction() as conn:
            return self.run(conn, name, params).rowcount

    def ping(self) -> bool:
        try:
            with self.transaction() as conn:
                conn.execute("SELECT 1")
            return True
        except (psycopg.Error, OSError, Exception):  # noqa: BLE001 - health checks report, never raise
            return False


def migrate(url: str, directory: pathlib.Path = SQL_DIR / "migrations") -> list[str]:
    """Apply the versioned migrations not applied yet, in name order, each in its own transaction.
    Safe to run from several processes at once (advisory lock) and again and again (idempotent)."""
    applied_now = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(QUERIES["create_migrations_table"])
            done = {r[0] for r in conn.execute(QUERIES["applied_migrations"]).fetchall()}
            for path in sorted(directory.glob("*.sql")):
                if path.stem in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(QUERIES["record_migration"], (path.stem,))
                applied_now.append(path.stem)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now
