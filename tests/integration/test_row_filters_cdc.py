"""Row filters on Change Data Capture (issue 17): records moving in and out of a mapping's filter through CDC
events (an update carries only the changed fields, so a record that starts matching is read whole), and a
row written in Postgres outside the filter: sent, then removed when its echo comes back."""
from __future__ import annotations

from gateway.salesforce import Salesforce
from jobs import load
from jobs.drain import DrainOptions, drain
from tests.integration.test_cdc_source import Running, cdc_settings, connected, emu, wait_for  # noqa: F401
from tests.integration.test_loading import make_app, sql

FIELDS = {"FirstName": {}, "LastName": {}, "Email": {}, "MailingCity": {}}


def rows(url):
    return {r[0]: r[1:] for r in sql(url, "SELECT lastname, firstname, email, mailingcity FROM salesforce.contact")}


def test_records_move_in_and_out_of_the_filter_through_cdc(settings, emu, enqueued):  # noqa: F811
    s = cdc_settings(settings, emu)
    app = make_app(s, enqueued)
    db, url = app.extensions["forcebridge"].db, s.database_url
    sf = None
    try:
        r = app.test_client().post("/api/v1/mappings", headers={"Authorization": f"Bearer {s.api_token}"}, json={
            "object_name": "Contact", "config": {"access": "read_write", "fields": FIELDS, "sf_source": "cdc",
                                                 "row_filter": "MailingCity = 'London'"}})
        assert r.status_code == 201, r.get_json()
        user = emu.salesforce(client="user")
        sf = Salesforce(s, backoff=0.01)
        with Running(s, db):
            load.run_pending(db, sf, load.LoadOptions())
            wait_for(lambda: connected(db))
            inside = user.Contact.create({"FirstName": "Ada", "LastName": "In", "Email": "in@example.com",
                                          "MailingCity": "London"})["id"]
            outside = user.Contact.create({"FirstName": "Bo", "LastName": "Out", "Email": "out@example.com",
                                           "MailingCity": "Paris"})["id"]
            wait_for(lambda: rows(url).get("In") == ("Ada", "in@example.com", "London"))
            wait_for(lambda: not db.fetchone("filter_checks_count")["n"])
            assert "Out" not in rows(url)

            user.Contact.update(inside, {"MailingCity": "Paris"})          # leaves the filter
            user.Contact.update(outside, {"MailingCity": "London"})        # joins it: the event has one field
            wait_for(lambda: rows(url).get("Out") == ("Bo", "out@example.com", "London"))
            wait_for(lambda: "In" not in rows(url))

            # written in Postgres outside the filter: sent to Salesforce, then gone once its echo is checked
            sql(url, "INSERT INTO salesforce.contact (lastname, mailingcity) VALUES ('Local', 'Rome'), "
                     "('Kept', 'London')")
            assert drain(db, sf, DrainOptions(retry_base_seconds=0)).outcomes == {"SUCCESS": 2}
            sent = {c["LastName"]: c["MailingCity"] for c in sf.query_page(
                "SELECT LastName, MailingCity FROM Contact WHERE LastName IN ('Local', 'Kept')")["records"]}
            assert sent == {"Local": "Rome", "Kept": "London"}
            wait_for(lambda: "Local" not in rows(url))
            assert sorted(rows(url)) == ["Kept", "Out"]
    finally:
        if sf is not None:
            sf.close()
        db.close()
