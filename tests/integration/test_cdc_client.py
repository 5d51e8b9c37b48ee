"""gateway/pubsub.py against the emulator's Pub/Sub API over gRPC with TLS: changes made through the REST API
arrive decoded (operations, fields, nulls, compound fields, transactions), resume from a stored replay id,
a replay id past the retention is refused, an expired session costs one new login."""
import uuid

import pytest

from emulator.process import start_emulator
from gateway.pubsub import PubSubClient, ReplayIdRefused
from gateway.salesforce import Salesforce
from settings import Settings

ACCOUNTS = "/data/AccountChangeEvent"


def settings_for(emu) -> Settings:
    return Settings.from_env(
        database_url="", sf_instance_url=emu.url, sf_username=emu.username, sf_password=emu.password,
        sf_security_token=emu.security_token, sf_ca_bundle=str(emu.ca_path), sf_pubsub_url=emu.pubsub,
        salesforce_org_id="")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with start_emulator(tmp_path_factory.mktemp("cdc") / "org", "--pubsub-keepalive", "0.3") as running:
        yield running


@pytest.fixture(scope="module")
def user(emu):
    """Someone editing Salesforce (not ForceBridge)."""
    return emu.salesforce(client="someone")


@pytest.fixture
def client(emu):
    settings = settings_for(emu)
    rest = Salesforce(settings)
    pubsub = PubSubClient(settings, rest)
    yield pubsub
    pubsub.close()
    rest.close()


def changes_of(stream, count):
    """The next `count` changes from a subscribe() generator (keepalives skipped)."""
    found = []
    while len(found) < count:
        found.extend(next(stream).changes)
    return found


def started(client, topic=ACCOUNTS, **kwargs):
    stream = client.subscribe(topic, **kwargs)
    first = next(stream)         # LATEST: the first keepalive says the subscription is in place
    assert first.changes == [] and first.latest_replay_id
    return stream


def test_create_update_null_delete_undelete_arrive_decoded(emu, user, client):
    stream = started(client)
    name = f"Acme {uuid.uuid4().hex[:6]}"
    record = user.Account.create({"Name": name, "Phone": "555-0100", "BillingCity": "Oslo",
                                  "NumberOfEmployees": 12})["id"]
    user.Account.update(record, {"Phone": None, "BillingCity": "Bergen", "Industry": "Energy"})
    user.Account.delete(record)
    emu.admin("POST", "/_emulator/undelete", {"sobject": "Account", "id": record})
    create, update, delete, undelete = changes_of(stream, 4)
    stream.close()
    assert [c.operation for c in (create, update, delete, undelete)] == ["create", "update", "delete", "undelete"]
    assert all(c.record_ids == (record,) and c.object_name == "Account" for c in (create, update, delete, undelete))
    assert create.fields["Name"] == name and create.fields["BillingCity"] == "Oslo"
    assert create.fields["NumberOfEmployees"] == 12 and create.fields["Phone"] == "555-0100"
    assert set(update.changed) == {"Phone", "BillingCity", "Industry", "LastModifiedDate", "LastModifiedById"}
    assert update.fields["BillingCity"] == "Bergen" and update.fields["Industry"] == "Energy"
    assert update.nulled == frozenset({"Phone"}) and update.fields["Phone"] is None
    assert "Name" not in update.fields                    # unchanged: not carried
    assert delete.fields == {} and undelete.fields["Name"] == name and undelete.fields["Phone"] is None
    assert create.origin.endswith(";client=someone") and not create.is_echo()
    assert client.schema_fetches == 1                     # one schema id, fetched once


def test_compound_name_and_echoes_of_our_own_writes(emu, client):
    stream = started(client, "/data/ContactChangeEvent")
    ours = client.sf.create_record("Contact", {"FirstName": "Ada", "LastName": "Lovelace"})["id"]
    client.sf.update_record("Contact", ours, {"LastName": "King"})
    create, update = changes_of(stream, 2)
    stream.close()
    assert create.fields["FirstName"] == "Ada" and create.fields["LastName"] == "Lovelace"
    assert update.fields["LastName"] == "King" and "FirstName" not in update.fields
    assert create.is_echo() and update.is_echo()          # made by ForceBridge (client=forcebridge)


def test_a_transaction_touching_several_records(emu, user, client):
    stream = started(client)
    made = user.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Account"}, "Name": f"Tx {i}"} for i in range(3)]})
    ids = [r["id"] for r in made]
    user.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Account"}, "id": i, "Rating": "Hot"} for i in ids]})
    creates = changes_of(stream, 3)
    [update] = changes_of(stream, 1)
    stream.close()
    assert [c.record_ids for c in creates] == [(i,) for i in ids]
    assert len({c.transaction_key for c in creates}) == 1
    assert [c.stamp.sequence_number for c in creates] == [1, 2, 3]
    assert update.record_ids == tuple(ids) and update.fields["Rating"] == "Hot"     # one event, three records


def test_resume_from_a_stored_replay_id_gets_exactly_the_later_events(emu, user, client):
    stream = started(client)
    first = [user.Account.create({"Name": f"Before {i}"})["id"] for i in range(3)]
    seen = changes_of(stream, 3)
    stored = seen[1].replay_id                             # applied up to the second one, then "killed"
    stream.close()
    later = [user.Account.create({"Name": f"After {i}"})["id"] for i in range(2)]
    again = PubSubClient(client.settings, client.sf)       # a new connection, as after a restart
    resumed = again.subscribe(ACCOUNTS, replay_id=stored, batch=2)
    got = changes_of(resumed, 3)
    idle = next(resumed)
    resumed.close()
    again.close()
    assert [c.record_ids[0] for c in got] == [first[2], *later]
    assert idle.changes == [] and idle.latest_replay_id == got[-1].replay_id     # nothing more


def test_an_expired_session_means_one_new_login_and_the_stream_goes_on(emu, user, client):
    stream = started(client)
    emu.admin("POST", "/_emulator/sessions/expire")
    record = user.Account.create({"Name": "After expiry"})["id"]
    [change] = changes_of(stream, 1)
    stream.close()
    assert change.record_ids == (record,) and client.relogins == 1
    emu.admin("POST", "/_emulator/sessions/expire")
    assert client.get_topic(ACCOUNTS).can_subscribe and client.relogins == 2


def test_a_replay_id_past_the_retention_is_refused(tmp_path):
    with start_emulator(tmp_path / "org", "--pubsub-keepalive", "0.3") as emu:
        settings = settings_for(emu)
        rest = Salesforce(settings)
        client = PubSubClient(settings, rest)
        try:
            stream = started(client)
            emu.salesforce().Account.create({"Name": "Old news"})
            [old] = changes_of(stream, 1)
            stream.close()
            emu.admin("POST", "/_emulator/clock", {"advance": 72 * 3600 + 60})
            with pytest.raises(ReplayIdRefused) as refused:
                next(client.subscribe(ACCOUNTS, replay_id=old.replay_id))
            assert refused.value.status == "INVALID_ARGUMENT"
            assert refused.value.error_code == "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
            assert client.relogins == 1               # the clock jump ended the session too
        finally:
            client.close()
            rest.close()

