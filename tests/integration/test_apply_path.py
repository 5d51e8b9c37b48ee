"""jobs/apply.py, the one apply path: what a source that carries only the changed fields gets."""
import datetime as dt

import pytest

from core.convert import FieldSpec
from core.mapping import Mapping
from core.sources import SalesforceChange
from gateway import mapped_tables
from gateway.db import Database
from jobs.apply import apply_changes, applying

UTC = dt.timezone.utc
M = Mapping("Account", "salesforce", "account", "sf_to_pg", (FieldSpec("Name", "string"), FieldSpec("Industry", "string")),
            id=1)
KNOWN, UNKNOWN = "001000000000001AAA", "001000000000002AAA"


@pytest.fixture
def db(clean_db):
    database = Database(clean_db, max_size=2)
    with database.transaction() as conn:
        mapped_tables.create_table(conn, M)
        conn.execute("INSERT INTO salesforce.account (sfid, systemmodstamp, name, industry) "
                     "VALUES (%s, '2026-01-01 10:00:02', 'Acme', 'Energy')", (KNOWN,))
    yield database
    database.close()


def changed_name(sfid, name, second):
    return SalesforceChange("Account", sfid, "update", {"Name": name}, dt.datetime(2026, 1, 1, 10, 0, second, tzinfo=UTC),
                            "poll", complete=False)


def rows(db):
    with db.transaction() as conn:
        return conn.execute("SELECT sfid, name, industry FROM salesforce.account ORDER BY sfid").fetchall()


def test_a_change_of_some_fields_updates_those_and_keeps_the_others(db):
    with applying(db) as conn:
        applied = apply_changes(db, conn, [changed_name(KNOWN, "Acme Ltd", 5)], {"account": M})
    assert (applied.written, applied.refetch) == (1, [])
    assert rows(db) == [{"sfid": KNOWN, "name": "Acme Ltd", "industry": "Energy"}]


def test_a_change_of_some_fields_of_a_record_postgres_lacks_goes_back_to_be_read_whole(db):
    """A row of the changed fields alone would hold NULL where Salesforce has values."""
    change = changed_name(UNKNOWN, "Globex", 5)
    with applying(db) as conn:
        applied = apply_changes(db, conn, [change, changed_name(KNOWN, "older", 1)], {"account": M})
    assert applied.refetch == [change] and UNKNOWN not in applied.done
    assert rows(db) == [{"sfid": KNOWN, "name": "Acme", "industry": "Energy"}]     # the older one never lands


def test_a_delete_postgres_refuses_fails_that_record_alone(db):
    """A foreign key of the user's own (ON DELETE RESTRICT) refuses one delete: the other records of the batch are
    deleted, the refused one is failed (not done), and the transaction goes on (a CDC batch would otherwise stall
    the stream, reconnecting from the same replay id forever)."""
    other = "001000000000003AAA"
    with db.transaction() as conn:
        conn.execute("INSERT INTO salesforce.account (sfid, systemmodstamp, name) VALUES (%s, '2026-01-01 10:00:02', "
                     "'Other')", (other,))
        conn.execute("DROP TABLE IF EXISTS public.orders; CREATE TABLE public.orders (account varchar(18) REFERENCES salesforce.account (sfid) "
                     "ON DELETE RESTRICT)")
        conn.execute("INSERT INTO public.orders VALUES (%s)", (KNOWN,))
    gone = [SalesforceChange("Account", sfid, "delete", {}, dt.datetime(2026, 1, 1, 10, 0, 9, tzinfo=UTC), "cdc",
                             key=f"cdc:{sfid}") for sfid in (KNOWN, other)]
    with applying(db) as conn:
        applied = apply_changes(db, conn, gone, {"account": M})
        conn.execute("SELECT 1")                                    # the transaction is still usable
    assert list(applied.failed) == [f"cdc:{KNOWN}"] and "orders" in applied.failed[f"cdc:{KNOWN}"]
    assert applied.done == [f"cdc:{other}"] and applied.deleted == 1
    assert rows(db) == [{"sfid": KNOWN, "name": "Acme", "industry": "Energy"}]
