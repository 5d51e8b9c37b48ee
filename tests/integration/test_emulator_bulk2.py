"""Bulk API 2.0 through the emulator process over HTTPS, driven by unmodified simple-salesforce."""
import csv
import io
import uuid

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound


WAIT = 0.05     # simple-salesforce sleeps this long before its first poll


def rows(text):
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.fixture
def sf(emulator):
    return emulator.salesforce()


@pytest.fixture
def tag():
    return uuid.uuid4().hex[:8]


def test_query_pages_every_row_once_with_sforce_locator(emulator, sf, tag):
    emulator.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": 2500,
                                               "fields": {"Name": f"Bulk {tag} {{n}}", "Industry": "Banking"}})
    pages = list(sf.bulk2.Account.query(
        f"SELECT Id, Name, Industry FROM Account WHERE Name LIKE 'Bulk {tag}%'", max_records=1000, wait=WAIT))
    assert len(pages) == 3
    parsed = [rows(page) for page in pages]
    assert all(page[0] == ["Id", "Name", "Industry"] for page in parsed)
    assert [len(page) - 1 for page in parsed] == [1000, 1000, 500]
    body = [row for page in parsed for row in page[1:]]
    assert len({row[0] for row in body}) == 2500
    assert {row[2] for row in body} == {"Banking"}
    assert sorted(row[1] for row in body) == sorted(f"Bulk {tag} {n}" for n in range(2500))


def test_query_results_headers_and_maxrecords(emulator, sf, tag):
    emulator.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": 3, "fields": {"Name": f"Hdr {tag} {{n}}"}})
    http = emulator.http()
    base = f"{emulator.url}/services/data/v59.0/jobs/query"
    headers = {"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/json"}
    job = http.post(base, headers=headers, json={"operation": "query",
                                                 "query": f"SELECT Name FROM Account WHERE Name LIKE 'Hdr {tag}%'"})
    assert job.status_code == 200
    created = job.json()
    assert created["id"].startswith("750") and created["state"] == "UploadComplete"
    assert created["object"] == "Account" and created["apiVersion"] == 59.0
    assert created["createdDate"].endswith("+0000")
    sf.bulk2.Account._client.wait_for_job(created["id"], True, WAIT)
    first = http.get(f"{base}/{created['id']}/results", headers=headers, params={"maxRecords": 2})
    assert first.headers["Sforce-NumberOfRecords"] == "2"
    assert first.headers["Content-Type"].startswith("text/csv")
    locator = first.headers["Sforce-Locator"]
    last = http.get(f"{base}/{created['id']}/results", headers=headers, params={"maxRecords": 2, "locator": locator})
    assert last.headers["Sforce-NumberOfRecords"] == "1" and last.headers["Sforce-Locator"] == "null"
    assert last.text.startswith('"Name"\n"Hdr ')
    info = http.get(f"{base}/{created['id']}", headers=headers).json()
    assert (info["state"], info["numberRecordsProcessed"], info["jobType"]) == ("JobComplete", 3, "V2Query")
    missing = http.get(f"{base}/750000000000000AAA", headers=headers)
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    assert http.get(base, headers={}).status_code == 401


def test_query_all_includes_deleted_rows(sf, tag):
    keep = sf.Account.create({"Name": f"All {tag} keep"})["id"]
    gone = sf.Account.create({"Name": f"All {tag} gone"})["id"]
    sf.Account.delete(gone)
    soql = f"SELECT Id, IsDeleted FROM Account WHERE Name LIKE 'All {tag}%'"
    live = [row for page in sf.bulk2.Account.query(soql, wait=WAIT) for row in rows(page)[1:]]
    everything = [row for page in sf.bulk2.Account.query_all(soql, wait=WAIT) for row in rows(page)[1:]]
    assert live == [[keep, "false"]]
    assert sorted(everything) == sorted([[keep, "false"], [gone, "true"]])


def test_bad_soql_is_refused_when_the_job_is_created(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        list(sf.bulk2.Account.query("SELECT Nope__c FROM Account", wait=WAIT))
    assert failure.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_download_streams_pages_to_files(emulator, sf, tag, tmp_path):
    emulator.admin("POST", "/_emulator/seed", {"sobject": "Account", "count": 120, "fields": {"Name": f"Dl {tag} {{n}}"}})
    results = sf.bulk2.Account.download(f"SELECT Id FROM Account WHERE Name LIKE 'Dl {tag}%'", str(tmp_path),
                                        max_records=50, wait=WAIT)
    assert [r["number_of_records"] for r in results] == [50, 50, 20]
    assert sum(len(rows(open(r["file"]).read())) - 1 for r in results) == 120


def test_insert_reports_successes_and_failures(sf, tag):
    records = [{"LastName": f"Ingest {tag} {i}", "Email": f"p{i}@example.com"} for i in range(5)]
    records.append({"LastName": "", "Email": "nameless@example.com"})
    [result] = sf.bulk2.Contact.insert(records=records, wait=WAIT)
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (6, 1)
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_successful_records(result["job_id"]))))
    bad = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_failed_records(result["job_id"]))))
    assert len(ok) == 5 and all(r["sf__Id"].startswith("003") and r["sf__Created"] == "true" for r in ok)
    assert bad[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:") and bad[0]["sf__Id"] == ""
    assert bad[0]["Email"] == "nameless@example.com"
    stored = sf.query(f"SELECT LastName FROM Contact WHERE LastName LIKE 'Ingest {tag}%'")
    assert stored["totalSize"] == 5
    assert sf.bulk2.Contact.get_unprocessed_records(result["job_id"]).strip() in ('"Email","LastName"',
                                                                                   '"LastName","Email"')


def test_upsert_by_external_id_creates_then_updates(sf, tag):
    first = [{"External_Id__c": f"{tag}-1", "Name": "One"}, {"External_Id__c": f"{tag}-2", "Name": "Two"}]
    [created] = sf.bulk2.Invoice__c.upsert(records=first, external_id_field="External_Id__c", wait=WAIT)
    again = [{"External_Id__c": f"{tag}-1", "Name": "One again"}]
    [updated] = sf.bulk2.Invoice__c.upsert(records=again, external_id_field="External_Id__c", wait=WAIT)
    ok_first = list(csv.DictReader(io.StringIO(sf.bulk2.Invoice__c.get_successful_records(created["job_id"]))))
    ok_again = list(csv.DictReader(io.StringIO(sf.bulk2.Invoice__c.get_successful_records(updated["job_id"]))))
    assert {r["sf__Created"] for r in ok_first} == {"true"}
    assert [r["sf__Created"] for r in ok_again] == ["false"]
    record = sf.Invoice__c.get_by_custom_id("External_Id__c", f"{tag}-1")
    assert record["Name"] == "One again" and record["Id"] == ok_again[0]["sf__Id"]


def test_update_and_delete_by_id(sf, tag):
    ids = [sf.Account.create({"Name": f"Upd {tag} {i}"})["id"] for i in range(3)]
    [updated] = sf.bulk2.Account.update(records=[{"Id": i, "Industry": "Energy"} for i in ids], wait=WAIT)
    assert updated["numberRecordsFailed"] == 0
    assert sf.Account.get(ids[0])["Industry"] == "Energy"
    [deleted] = sf.bulk2.Account.delete(records=[{"Id": i} for i in ids[:2]] + [{"Id": "001000000000000AAA"}],
                                        wait=WAIT)
    assert (deleted["numberRecordsProcessed"], deleted["numberRecordsFailed"]) == (3, 1)
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(ids[0])


def test_a_job_accepts_one_upload_and_can_be_aborted(emulator, sf):
    http = emulator.http()
    base = f"{emulator.url}/services/data/v59.0/jobs/ingest"
    headers = {"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/json"}
    job = http.post(base, headers=headers, json={"object": "Account", "operation": "insert"}).json()
    assert job["state"] == "Open" and job["contentUrl"].endswith(f"/jobs/ingest/{job['id']}/batches")
    csv_headers = {**headers, "Content-Type": "text/csv"}
    assert http.put(f"{base}/{job['id']}/batches", headers=csv_headers, data=b"Name\nx\n").status_code == 201
    second = http.put(f"{base}/{job['id']}/batches", headers=csv_headers, data=b"Name\ny\n")
    assert second.status_code == 400
    aborted = http.patch(f"{base}/{job['id']}", headers=headers, json={"state": "Aborted"}).json()
    assert aborted["state"] == "Aborted"
    assert http.get(f"{base}/{job['id']}/unprocessedrecords/", headers=headers).text == "Name\nx\n"
    assert http.delete(f"{base}/{job['id']}", headers=headers).status_code == 204
    assert http.get(f"{base}/{job['id']}", headers=headers).status_code == 404


def test_unknown_csv_column_fails_the_job(emulator, sf):
    from simple_salesforce.exceptions import SalesforceOperationError
    with pytest.raises(SalesforceOperationError, match="Field name not found : Bogus__c"):
        sf.bulk2.Account.insert(records=[{"Name": "x", "Bogus__c": "y"}], wait=WAIT)
    failed = [job for job in sf.restful("jobs/ingest")["records"] if job["state"] == "Failed"][-1]
    outcome = sf.bulk2.Account.get_all_ingest_records(failed["id"])
    assert outcome["successfulRecords"] == [] and outcome["failedRecords"] == []
    assert [sorted(r.items()) for r in outcome["unprocessedRecords"]] == [[("Bogus__c", "y"), ("Name", "x")]]


def test_aggregate_queries_are_refused(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        list(sf.bulk2.Account.query("SELECT COUNT() FROM Account", wait=WAIT))
    assert failure.value.content[0]["errorCode"] == "API_ERROR"


def test_parent_fields_come_out_as_dotted_columns(sf, tag):
    account = sf.Account.create({"Name": f"Parent {tag}"})["id"]
    sf.Contact.create({"LastName": f"Child {tag}", "AccountId": account})
    sf.Contact.create({"LastName": f"Orphan {tag}"})
    soql = f"SELECT lastname, account.name FROM Contact WHERE LastName LIKE '%{tag}' ORDER BY LastName"
    [page] = list(sf.bulk2.Contact.query(soql, wait=WAIT))
    assert rows(page) == [["LastName", "Account.Name"], [f"Child {tag}", f"Parent {tag}"], [f"Orphan {tag}", ""]]


def test_bulk_routes_pass_the_same_gate_as_rest(emulator, sf):
    from simple_salesforce.exceptions import SalesforceGeneralError
    emulator.admin("POST", "/_emulator/faults", {"seed": 1, "rules": {"bulk2.create_query_job": {"errors": {"503": 1}}}})
    try:
        with pytest.raises(SalesforceGeneralError) as failure:
            list(sf.bulk2.Account.query("SELECT Id FROM Account LIMIT 1", wait=WAIT))
        assert failure.value.status == 503
    finally:
        emulator.admin("DELETE", "/_emulator/faults")
    per_route = emulator.admin("GET", "/_emulator/stats")["perRoute"]
    assert per_route.get("bulk2.create_query_job", 0) >= 1
