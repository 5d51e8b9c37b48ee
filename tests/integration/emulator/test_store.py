"""The Org store other emulator parts build on: transactions, change events, queries, threads."""
import threading

import pytest

from emulator.store import Change, Org, SalesforceError


@pytest.fixture
def org(tmp_path):
    store = Org(tmp_path, "00D5g000004EMUL")
    yield store
    store.close()


def test_changes_are_published_after_commit_with_client_and_user(org):
    seen: list[Change] = []
    org.subscribe(seen.append)
    record = org.create("Account", {"Name": "Acme"}, client="forcebridge", user_id=org.default_user_id)
    org.update("Account", record["Id"], {"Rating": "Hot"}, client=None, user_id=org.default_user_id)
    org.delete("Account", record["Id"], client="console", user_id=org.default_user_id)
    assert [(c.kind, c.client, c.record_id) for c in seen] == [
        ("created", "forcebridge", record["Id"]), ("updated", None, record["Id"]),
        ("deleted", "console", record["Id"])]
    assert all(c.user_id == org.default_user_id and c.sobject == "Account" for c in seen)
    assert [c["kind"] for c in org.changes() if c["sobject"] == "Account"] == ["created", "updated", "deleted"]


def test_a_rolled_back_transaction_publishes_and_keeps_nothing(org):
    seen = []
    org.subscribe(seen.append)
    with pytest.raises(SalesforceError):
        with org.transaction():
            org.create("Account", {"Name": "Kept?"}, client=None, user_id=org.default_user_id)
            org.create("Account", {}, client=None, user_id=org.default_user_id)
    assert seen == []
    assert list(org.query("SELECT Id FROM Account")) == []


def test_a_failing_subscriber_does_not_fail_the_write(org):
    org.subscribe(lambda change: 1 / 0)
    assert org.create("Lead", {"LastName": "x", "Company": "y"}, client=None, user_id=org.default_user_id)["Id"]


def test_query_streams_plain_rows_and_get_reads_one(org):
    org.seed("Contact", 2500, {"LastName": "Row {n}"})
    rows = org.query("SELECT Id, Name, Account.Name FROM Contact ORDER BY LastName LIMIT 3")
    first = next(rows)
    assert set(first) == {"Id", "Name", "Account"} and first["Account"] is None
    assert sum(1 for _ in org.query("SELECT Id FROM Contact")) == 2500
    got = org.get("Contact", first["Id"], fields=["LastName"])
    assert got == {"LastName": first["Name"]}
    cursor = org.open_query("SELECT Id FROM Contact")
    assert (len(cursor.fetch(1000)), cursor.total(), cursor.done) == (1000, 2500, False)
    cursor.close()


def test_writes_from_many_threads_all_land(org):
    errors = []

    def writer(n):
        try:
            for i in range(50):
                org.create("Account", {"Name": f"T{n}-{i}", "External_Id__c": f"T{n}-{i}"}, client=f"t{n}",
                           user_id=org.default_user_id)
        except Exception as exc:          # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [r["Id"] for r in org.query("SELECT Id FROM Account")]
    assert len(ids) == len(set(ids)) == 400


def test_restart_keeps_counters_and_org_id(tmp_path):
    first = Org(tmp_path, "00D5g000004EMUL")
    created = first.create("Account", {"Name": "A"}, client=None, user_id=first.default_user_id)["Id"]
    first.close()
    second = Org(tmp_path)
    assert second.org_id == first.org_id
    assert second.create("Account", {"Name": "B"}, client=None, user_id=second.default_user_id)["Id"] > created
    second.close()
    with pytest.raises(ValueError, match="belongs to org"):
        Org(tmp_path, "00D5g000004OTHR")


def test_one_process_per_data_dir(tmp_path):
    first = Org(tmp_path, "00D5g000004EMUL")
    with pytest.raises(ValueError, match="in use by another emulator"):
        Org(tmp_path)
    first.close()
    Org(tmp_path).close()
