"""The console for issue 17: field owners on the mapping form, conflicts by field."""
from __future__ import annotations

from gateway import mapping_store
from tests.support.console import BASE, browser_client, console_app, csrf_of, sign_in  # noqa: F401


def test_the_mapping_form_saves_and_shows_field_owners(console_app, browser_client):
    sign_in(browser_client)
    response = browser_client.post("/mappings", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "object_name": "Account", "direction": "bidirectional",
        "typed_fields": "Name:string:80\nRating:picklist:40:salesforce\nPhone:phone::postgres"})
    assert response.status_code == 303, response.text
    (m,) = mapping_store.list_all(console_app.extensions["forcebridge"].db)
    assert {f.name: f.owner for f in m.fields} == {"Name": "both", "Rating": "salesforce", "Phone": "postgres"}
    page = browser_client.get(f"/mappings/{m.id}/edit", base_url=BASE).text
    assert "Rating:picklist:40:salesforce" in page and "Phone:phone::postgres" in page and "Name:string:80\n" in page
    bad = browser_client.post("/mappings", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "object_name": "Contact", "typed_fields": "LastName:string:80:me"})
    assert bad.status_code == 422 and "owner must be one of" in bad.text


def test_a_conflict_shows_the_fields_each_side_changed(console_app, browser_client):
    sign_in(browser_client)
    db = console_app.extensions["forcebridge"].db
    with db.transaction() as conn:
        conn.execute("INSERT INTO forcebridge.mappings (object_name, table_name, direction, fields) "
                     "VALUES ('Account', 'account', 'bidirectional', '[]')")
        conn.execute("INSERT INTO forcebridge.conflicts (mapping_id, record_id, sfid, rule, winner, pg_values, "
                     "sf_values, fields, sf_fields, pg_fields) VALUES (1, 7, '001000000000001AAA', 'postgres_wins', "
                     "'merged', '{}', '{}', '{}', '{rating}', '{phone}')")
    page = browser_client.get("/errors", base_url=BASE).text
    section = page[page.index('id="conflicts"'):page.index('id="drift"')]
    assert "both: none" in section and "Salesforce: rating" in section and "Postgres: phone" in section
    assert "<strong>merged</strong>" in section


def test_the_mapping_form_edits_the_row_filter(console_app, browser_client, enqueued):
    sign_in(browser_client)
    response = browser_client.post("/mappings", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "object_name": "Account", "typed_fields": "Name:string:80",
        "row_filter": "Industry = 'Banking'"})
    assert response.status_code == 303, response.text
    (m,) = mapping_store.list_all(console_app.extensions["forcebridge"].db)
    assert m.extra["row_filter"] == "Industry = 'Banking'"
    assert "Industry = &#39;Banking&#39;" in browser_client.get(f"/mappings/{m.id}/edit", base_url=BASE).text
    assert "matching the row filter" in browser_client.get("/mappings", base_url=BASE).text
    bad = browser_client.post(f"/mappings/{m.id}", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "typed_fields": "Name:string:80", "row_filter": "(Industry"})
    assert bad.status_code == 422 and "row_filter" in bad.text
    cleared = browser_client.post(f"/mappings/{m.id}", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "typed_fields": "Name:string:80", "row_filter": ""})
    assert cleared.status_code == 303
    assert "row_filter" not in mapping_store.get(console_app.extensions["forcebridge"].db, m.id).extra
    # no filter any more selects more records: the reload the save queued is rung
    assert ("run_loads", ()) in enqueued.calls


def test_a_described_field_has_an_owner_select(console_app, browser_client):
    describe = {"name": "Account", "fields": [{"name": "Name", "type": "string", "length": 80},
                                              {"name": "Rating", "type": "picklist", "length": 40}]}
    console_app.extensions["forcebridge"].describe = lambda object_name: describe
    sign_in(browser_client)
    page = browser_client.get("/mappings/new?object=Account", base_url=BASE).text
    assert 'name="owner:Rating"' in page and "salesforce owns" in page
    response = browser_client.post("/mappings", base_url=BASE, data={
        "csrf_token": csrf_of(browser_client), "object_name": "Account", "field": ["Name", "Rating"],
        "owner:Name": "both", "owner:Rating": "postgres"})
    assert response.status_code == 303, response.text
    (m,) = mapping_store.list_all(console_app.extensions["forcebridge"].db)
    assert (m.field("Name").owner, m.field("Rating").owner) == ("both", "postgres")
    edit = browser_client.get(f"/mappings/{m.id}/edit", base_url=BASE).text
    select = edit[edit.index('name="owner:Rating"'):]
    assert '<option value="postgres" selected' in select[:select.index("</select>")]
