"""forcebridge.not_backwards (migration 0100): the one ordering rule every Salesforce -> Postgres apply uses."""
import datetime as dt

import psycopg
import pytest
from psycopg import sql

from core.convert import FieldSpec
from core.inbound import plan_apply
from core.mapping import Mapping
from core.sources import from_fields
from gateway import mapped_tables

UTC = dt.timezone.utc


@pytest.mark.parametrize("stored, incoming, applies", [
    ("2026-01-01 10:00:00", "2026-01-01 10:00:01", True),
    ("2026-01-01 10:00:00", "2026-01-01 10:00:00", True),       # whole seconds: an equal stamp may be newer
    ("2026-01-01 10:00:01", "2026-01-01 10:00:00", False),
    (None, "2026-01-01 10:00:00", True),
    ("2026-01-01 10:00:00", None, True),
])
def test_the_rule(clean_db, stored, incoming, applies):
    with psycopg.connect(clean_db) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for types in [("timestamp", "timestamp"), ("timestamptz", "timestamptz"), ("timestamptz", "timestamp")]:
            query = sql.SQL("SELECT forcebridge.not_backwards(%s::{}, %s::{})").format(*map(sql.SQL, types))
            (got,) = conn.execute(query, (stored, incoming)).fetchone()
            assert got is applies, types


def test_a_table_whose_stamp_is_still_timestamptz_is_guarded_too(clean_db):
    """Migration 0060 keeps a systemmodstamp it cannot convert as timestamptz: the rule compares instants."""
    m = Mapping("Account", "salesforce", "account", "sf_to_pg", (FieldSpec("Name", "string"),), id=1)
    with psycopg.connect(clean_db) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE SCHEMA salesforce")
        conn.execute("CREATE TABLE salesforce.account (id serial PRIMARY KEY, sfid varchar(18) UNIQUE, "
                     "systemmodstamp timestamptz, isdeleted boolean, _hc_lastop varchar(32), _hc_err text, "
                     "name varchar(80))")

        def upsert(name, second):
            stamp = dt.datetime(2026, 1, 1, 10, 0, second, tzinfo=UTC).isoformat()
            (batch,) = plan_apply([from_fields("Account", "001000000000001AAA",
                                               {"Name": name, "SystemModstamp": stamp}, "poll")],
                                  {"account": m}).batches
            mapped_tables.upsert_batch(conn, batch)
            return conn.execute("SELECT name FROM salesforce.account").fetchone()[0]

        assert upsert("first", 5) == "first"
        assert upsert("older", 4) == "first"
        assert upsert("same second", 5) == "same second"
        assert upsert("newer", 6) == "newer"
