"""Several Collections requests in one API call (/composite, issue 16): Salesforce counts the call once, each
request is answered as if it had been a call of its own, and the send window's held records ride along in
the room a call that goes anyway leaves."""
from __future__ import annotations

import pytest

from gateway.salesforce import MAX_BUNDLE, Collection, PermanentError, TransientError
from jobs import api_usage
from jobs.drain import DrainOptions, drain
from tests.integration.test_capture import sql, writing_mapping
from tests.integration.test_write_path import (FAST, FIELDS, collection_calls, db, invoices,  # noqa: F401
                                               sf, sf_api, sf_app, sf_settings)

TICKETS = {"Name": {}, "External_Id__c": {}}


def routes(emulator) -> dict:
    per_route = emulator.admin("GET", "/_emulator/stats")["perRouteClient"]
    return {route: n.get("forcebridge", 0) for route, n in per_route.items()
            if route.startswith("composite.") and n.get("forcebridge")}


def test_three_requests_in_one_call_each_answered_and_the_saving_counted(sf, db, emulator):
    made = sf.create_records("Invoice__c", [{"Name": f"d{i}"} for i in range(3)])
    emulator.admin("DELETE", "/_emulator/stats")
    sf.take_usage()
    answers = sf.write_collections([
        Collection("upsert", "Invoice__c", [{"External_Id__c": f"U{i}", "Name": f"u{i}"} for i in range(200)],
                   "External_Id__c"),
        Collection("update", "Invoice__c", [{"Id": made[0]["id"], "Name": "renamed"}]),
        Collection("delete", "", [{"Id": made[1]["id"]}, {"Id": made[2]["id"]}]),
    ])
    assert routes(emulator) == {"composite.composite": 1}           # one API call, nothing else
    assert [len(a) for a in answers] == [200, 1, 2] and all(i["success"] for a in answers for i in a)
    remote = invoices(sf)
    assert len([e for e in remote if e and e.startswith("U")]) == 200
    assert sorted(r["Name"] for r in remote.values() if not r["External_Id__c"]) == ["renamed"]
    assert api_usage.flush(db, sf) >= 1
    with db.transaction() as conn:
        saved = conn.execute("SELECT sum(saved) AS saved FROM forcebridge.api_usage_hourly "
                             "WHERE kind = 'writes'").fetchone()["saved"]
    assert saved == 2                                                  # three requests for the price of one
    with pytest.raises(ValueError):
        sf.write_collections([Collection("delete", "", [{"Id": made[0]["id"]}])] * (MAX_BUNDLE + 1))


def test_a_request_refused_as_a_whole_is_split_alone_and_the_others_are_written(sf, emulator, monkeypatch):
    def no_describe(sobject, max_age=600.0):          # untyped: the bad value reaches Salesforce
        raise TransientError(503, "SERVER_UNAVAILABLE", "describe unavailable")
    monkeypatch.setattr(sf, "describe", no_describe)
    emulator.admin("DELETE", "/_emulator/stats")
    good = Collection("upsert", "Invoice__c", [{"External_Id__c": f"G{i}", "Name": f"g{i}"} for i in range(5)],
                      "External_Id__c")
    bad = Collection("upsert", "Invoice__c", [{"External_Id__c": f"B{i}", "Name": f"b{i}",
                                               "Amount__c": "oops" if i == 2 else i} for i in range(4)],
                     "External_Id__c")
    ok, split = sf.write_collections([good, bad])
    assert all(i["success"] for i in ok)
    assert [i["success"] for i in split] == [True, True, False, True]
    assert split[2]["errors"][0]["statusCode"] == "JSON_PARSER_ERROR"
    assert sf.split_calls > 0 and routes(emulator)["composite.composite"] == 1
    assert sorted(e for e in invoices(sf)) == ["B0", "B1", "B3", "G0", "G1", "G2", "G3", "G4"]


def test_a_request_refused_for_itself_fails_alone(sf):
    good = Collection("upsert", "Invoice__c", [{"External_Id__c": "OK", "Name": "ok"}], "External_Id__c")
    wrong = Collection("upsert", "Invoice__c", [{"Name": "x", "Not_A_Key__c": "1"}], "Not_A_Key__c")
    ok, refused = sf.write_collections([good, wrong])
    assert ok[0]["success"] and isinstance(refused, PermanentError)
    assert list(invoices(sf)) == ["OK"]


def test_a_failed_call_is_every_requests_answer_and_the_drain_tries_them_again(sf_api, sf_settings, db, sf,
                                                                                 emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    writing_mapping(sf_api, "Ticket__c", fields=TICKETS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name) SELECT 'i' || g FROM generate_series(1, 250) g")
    sql(url, "INSERT INTO salesforce.ticket__c (name) SELECT 't' || g FROM generate_series(1, 3) g")
    emulator.admin("POST", "/_emulator/faults", {"rules": {"composite.*": {"errors": {"503": 1}}}})
    emulator.admin("DELETE", "/_emulator/stats")
    first = drain(db, sf, FAST, max_rounds=1)
    assert first.outcomes == {"REQUEUED": 253} and first.calls == 1     # one call: three requests, two objects
    emulator.admin("DELETE", "/_emulator/faults")
    assert drain(db, sf, FAST).outcomes == {"SUCCESS": 253}
    assert len(invoices(sf)) == 250 and len(sf.query("SELECT Id FROM Ticket__c")) == 3
    assert sql(url, "SELECT count(*) FROM salesforce.ticket__c WHERE sfid IS NULL OR _hc_lastop <> 'INSERTED'") == [(0,)]


def test_held_records_ride_along_in_a_call_that_goes_anyway(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    writing_mapping(sf_api, "Ticket__c", fields=TICKETS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    window = DrainOptions(retry_base_seconds=0, send_window_seconds=3600)
    sql(url, "INSERT INTO salesforce.ticket__c (name) VALUES ('alone')")
    held = drain(db, sf, window)
    assert held.claimed == 0 and held.held_until is not None          # a part-filled call waits for more
    emulator.admin("DELETE", "/_emulator/stats")
    sql(url, "INSERT INTO salesforce.invoice__c (name) SELECT 'i' || g FROM generate_series(1, 605) g")
    sent = drain(db, sf, window)
    # 600 invoices fill three requests and go; their call has room for two more: the invoices' last 5 and
    # the ticket ride in it
    assert sent.outcomes == {"SUCCESS": 606} and sent.calls == 1 and collection_calls(emulator) == 1
    assert sql(url, "SELECT count(*) FROM forcebridge.open_changes") == [(0,)]
    assert len(invoices(sf)) == 605 and len(sf.query("SELECT Id FROM Ticket__c")) == 1


def test_one_request_a_call_when_bundling_is_off(sf_api, sf_settings, db, sf, emulator):
    writing_mapping(sf_api, fields=FIELDS, upsert_field="External_Id__c")
    url = sf_settings.database_url
    sql(url, "INSERT INTO salesforce.invoice__c (name) SELECT 'i' || g FROM generate_series(1, 450) g")
    emulator.admin("DELETE", "/_emulator/stats")
    result = drain(db, sf, DrainOptions(retry_base_seconds=0, bundle=1))
    assert result.outcomes == {"SUCCESS": 450} and result.calls == 3
    assert routes(emulator) == {"composite.collection_upsert": 3}


def test_what_one_requests_splitting_meets_is_its_answer_alone(sf, emulator, monkeypatch):
    """Creates applied in the call keep their ids although the other request's splitting calls are refused:
    requeued, they would be created twice."""
    def no_describe(sobject, max_age=600.0):
        raise TransientError(503, "SERVER_UNAVAILABLE", "describe unavailable")
    monkeypatch.setattr(sf, "describe", no_describe)
    emulator.admin("POST", "/_emulator/faults", {"rules": {"composite.collection_upsert":
                                                           {"errors": {"REQUEST_LIMIT_EXCEEDED": 1}}}})
    created, split = sf.write_collections([
        Collection("create", "Invoice__c", [{"Name": f"g{i}"} for i in range(3)]),
        Collection("upsert", "Invoice__c", [{"External_Id__c": f"B{i}", "Name": f"b{i}",
                                             "Amount__c": "oops" if i == 2 else i} for i in range(4)],
                   "External_Id__c")])
    emulator.admin("DELETE", "/_emulator/faults")
    assert [i["success"] for i in created] == [True] * 3
    assert sorted(r["Id"] for r in sf.query("SELECT Id FROM Invoice__c")) == sorted(i["id"] for i in created)
    assert isinstance(split, TransientError) and split.error_code == "REQUEST_LIMIT_EXCEEDED"


def test_requests_run_in_the_order_sent(sf, monkeypatch):
    """Collated, Salesforce may run a call's requests in any order; a request naming parents by external id
    must run after the one that creates them."""
    bodies = []
    call = sf.call

    def recording(method, path, **kwargs):
        bodies.append(kwargs.get("json"))
        return call(method, path, **kwargs)
    monkeypatch.setattr(sf, "call", recording)
    sf.write_collections([Collection("create", "Invoice__c", [{"Name": "a"}]),
                          Collection("create", "Invoice__c", [{"Name": "b"}])])
    composite, = [b for b in bodies if b and "compositeRequest" in b]
    assert composite["collateSubrequests"] is False and composite["allOrNone"] is False


def test_a_call_refused_whole_for_record_data_sends_each_request_alone(sf, emulator, monkeypatch):
    """Not seen from Salesforce (it answers per request), but if a /composite call were refused whole for one
    record's data, each request goes alone, where its own splitting isolates the record."""
    call = sf.call

    def refusing_bundles(method, path, **kwargs):
        if path == "/composite":
            raise PermanentError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of double",
                                 [{"errorCode": "JSON_PARSER_ERROR", "message": "Cannot deserialize"}])
        return call(method, path, **kwargs)
    monkeypatch.setattr(sf, "call", refusing_bundles)
    first, second = sf.write_collections([
        Collection("upsert", "Invoice__c", [{"External_Id__c": "A", "Name": "a"}], "External_Id__c"),
        Collection("upsert", "Invoice__c", [{"External_Id__c": "B", "Name": "b"}], "External_Id__c")])
    assert first[0]["success"] and second[0]["success"]
    assert sorted(invoices(sf)) == ["A", "B"]
