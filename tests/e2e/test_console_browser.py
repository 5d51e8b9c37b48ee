"""The console in a real browser: sign in, mappings, a record arriving, trends, errors, import, setup."""
from __future__ import annotations

import requests

from jobs.inbound import apply_pending
from tests.conftest import ORG_ID, OUTBOUND_TOKEN
from tests.support.browser import ADMIN_PASSWORD, screenshot, sign_in
from tests.support.messages import envelope

MODSTAMP = "2026-11-27T08:00:00.000Z"


def post_outbound(console, object_name: str, records: list[dict]) -> None:
    response = requests.post(f"{console.url}/outbound/{OUTBOUND_TOKEN}", data=envelope(ORG_ID, object_name, records),
                             headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)
    assert response.status_code == 200, response.text


def create_mapping_by_hand(page, console, object_name: str, typed_fields: str) -> None:
    page.goto(f"{console.url}/mappings")
    page.fill("input[name=object]", object_name)
    page.click("text=Choose fields")
    page.fill("textarea[name=typed_fields]", typed_fields)
    page.click("text=Create mapping")
    page.wait_for_selector(f"text=Mapping for {object_name} created")


def cell(page, object_name: str, column: str) -> str:
    return page.inner_text(f"tr[data-object={object_name}] td[data-col={column}]").strip()


def test_sign_in_refuses_a_wrong_password_and_sign_out_ends_the_session(browser, console):
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(f"{console.url}/mappings")
    assert "/login" in tab.url
    screenshot(tab, "login")
    sign_in(tab, console.url, password="not it")
    assert tab.is_visible("text=Wrong password.")
    sign_in(tab, console.url, password=ADMIN_PASSWORD)
    assert tab.is_visible("h1:has-text('Overview')")
    tab.click("text=Sign out")
    tab.wait_for_url("**/login")
    tab.goto(f"{console.url}/errors")
    assert "/login" in tab.url
    context.close()


def test_a_record_notification_shows_in_row_counts_and_the_trend_chart(page, console):
    create_mapping_by_hand(page, console, "Account", "Name:string:255\nAnnualRevenue:currency")
    assert cell(page, "Account", "pg_rows") == "0"

    post_outbound(console, "Account", [
        {"Id": "001000000000001AAA", "Name": "Acme", "AnnualRevenue": "1200.50", "SystemModstamp": MODSTAMP},
        {"Id": "001000000000002AAA", "Name": "Globex", "AnnualRevenue": None, "SystemModstamp": MODSTAMP}])
    page.reload()
    assert cell(page, "Account", "inbound_pending") == "2"
    assert apply_pending(console.db).applied == 2
    page.reload()
    assert cell(page, "Account", "pg_rows") == "2"
    assert cell(page, "Account", "inbound_pending") == "0"
    screenshot(page, "mappings")

    page.click("tr[data-object=Account] >> text=Trends")
    page.wait_for_selector("#trend-chart[data-drawn=true]")
    drawn = page.evaluate("""() => Object.fromEntries(document.getElementById('trend-chart').data
        .map(t => [t.meta, t.y.reduce((a, b) => a + b, 0)]))""")
    assert drawn["sf_to_pg:synced"] == 2
    assert drawn["sf_to_pg:failed"] == 0
    points = page.evaluate("document.getElementById('trend-chart').data[0].y.length")
    assert points == 24          # every hour of the range, quiet ones as zero
    page.check("input[value='7d']")
    page.wait_for_function("() => (document.getElementById('trend-chart').data || [{y: []}])[0].y.length === 168")
    assert "range=7d" in page.url
    screenshot(page, "trends")


def test_a_failed_notification_shows_in_errors_and_retry_applies_it_after_the_fix(page, console):
    create_mapping_by_hand(page, console, "Contact", "LastName:string:80\nNumberOfPets__c:int")
    post_outbound(console, "Contact", [
        {"Id": "003000000000001AAA", "LastName": "Doe", "NumberOfPets__c": "many", "SystemModstamp": MODSTAMP}])
    assert apply_pending(console.db).failed == 1

    page.goto(f"{console.url}/errors")
    row = page.locator("#failed-notifications tr", has_text="003000000000001AAA")
    assert "cannot convert 'many'" in row.inner_text()
    screenshot(page, "errors")

    # The fix: stop mapping the field Salesforce fills with text; its column stays.
    page.goto(f"{console.url}/mappings")
    page.click("tr[data-object=Contact] >> text=Edit")
    page.fill("textarea[name=typed_fields]", "LastName:string:80")
    page.click("text=Save mapping")
    page.wait_for_selector("text=Mapping for Contact saved")

    page.goto(f"{console.url}/errors")
    page.locator("#failed-notifications tr", has_text="003000000000001AAA").locator("text=Retry").click()
    page.wait_for_selector("text=queued again")
    assert apply_pending(console.db).applied == 1
    page.reload()
    assert page.locator("#failed-notifications tr", has_text="003000000000001AAA").count() == 0
    page.goto(f"{console.url}/mappings")
    assert cell(page, "Contact", "pg_rows") == "1"


def test_pause_resume_and_delete_keep_the_table_unless_asked(page, console):
    create_mapping_by_hand(page, console, "Lead", "Company:string:255")
    page.click("tr[data-object=Lead] button:text-is('Pause')")
    page.wait_for_selector("tr[data-object=Lead] >> text=paused")
    page.click("tr[data-object=Lead] button:text-is('Resume')")
    page.wait_for_selector("tr[data-object=Lead] >> text=active")
    page.click("tr[data-object=Lead] >> summary:has-text('Delete')")
    page.click("tr[data-object=Lead] button:text-is('Delete mapping')")
    page.wait_for_selector("text=table salesforce.lead kept")
    with console.db.transaction() as conn:
        assert conn.execute("SELECT to_regclass('salesforce.lead') IS NOT NULL AS kept").fetchone()["kept"]


def test_create_a_mapping_from_an_outbound_message_wsdl(page, console):
    from tests.support.browser import FIXTURES

    page.goto(f"{console.url}/mappings")
    page.set_input_files("input[name=wsdl]", str(FIXTURES / "opportunity_outbound.wsdl"))
    page.click("text=Read object and fields")
    assert page.input_value("input[name=object_name]") == "Opportunity"
    assert page.is_checked("input[name=field][value=StageName]")
    screenshot(page, "mapping-form")
    page.click("text=Create mapping")
    page.wait_for_selector("text=Mapping for Opportunity created")
    post_outbound(console, "Opportunity", [{"Id": "006000000000001AAA", "Name": "Big deal", "StageName": "Won",
                                            "Amount": "5000", "CloseDate": "2026-12-01", "SystemModstamp": MODSTAMP}])
    assert apply_pending(console.db).applied == 1
    with console.db.transaction() as conn:
        row = conn.execute("SELECT stagename, amount, closedate::text FROM salesforce.opportunity").fetchone()
    assert row == {"stagename": "Won", "amount": 5000.0, "closedate": "2026-12-01"}


def test_overview_and_setup_send_test_message(page, console):
    page.goto(console.url + "/")
    assert page.is_visible("text=reachable")
    screenshot(page, "overview")
    page.goto(f"{console.url}/setup")
    assert page.input_value("#outbound-url") == f"{console.url}/outbound/{OUTBOUND_TOKEN}"
    page.click("text=Send test message")
    page.wait_for_selector("text=The endpoint works.")
    screenshot(page, "setup")
    assert console.db.fetchone("notification_backlog")["unmapped"] == 0   # the check cleaned up after itself


def test_notifications_for_an_unmapped_object_are_replayed_once_it_is_mapped(page, console):
    post_outbound(console, "Case", [{"Id": "500000000000001AAA", "Subject": "Printer on fire", "SystemModstamp": MODSTAMP},
                                    {"Id": "500000000000002AAA", "Subject": "Paper jam", "SystemModstamp": MODSTAMP}])
    page.goto(f"{console.url}/errors")
    assert "2" in page.locator("#unmapped tr", has_text="Case").inner_text()
    page.click("#unmapped >> text=Create mapping and replay")
    assert page.input_value("input[name=object_name]") == "Case"
    page.fill("textarea[name=typed_fields]", "Subject:string:255")
    page.click("text=Create mapping")
    page.wait_for_selector("text=Mapping for Case created")
    assert cell(page, "Case", "inbound_pending") == "2"
    assert apply_pending(console.db).applied == 2
    page.reload()
    assert cell(page, "Case", "pg_rows") == "2"
    page.goto(f"{console.url}/errors")
    assert page.locator("#unmapped tr", has_text="Case").count() == 0


def test_the_overview_refreshes_itself(page, console):
    page.goto(console.url + "/")
    assert page.inner_text("#backlog td[data-metric=unmapped]") == "0"
    post_outbound(console, "Case", [{"Id": "500000000000003AAA", "SystemModstamp": MODSTAMP}])
    # No reload: HTMX asks for the status every 5 seconds.
    page.wait_for_function("() => document.querySelector('#backlog td[data-metric=unmapped]').textContent === '1'",
                           timeout=15000)


def test_retrying_a_notification_someone_else_retried_says_so(page, console):
    create_mapping_by_hand(page, console, "Contact", "NumberOfPets__c:int")
    post_outbound(console, "Contact", [{"Id": "003000000000009AAA", "NumberOfPets__c": "lots", "SystemModstamp": MODSTAMP}])
    apply_pending(console.db)
    page.goto(f"{console.url}/errors")
    nid = console.db.fetchall("problem_notifications", {"state": "failed", "days": 30, "limit": 1, "offset": 0,
                                                       "excerpt": 10})[0]["notification_id"]
    console.db.fetchone("retry_notification", {"id": nid})          # another tab, a moment earlier
    page.locator("#failed-notifications tr", has_text="003000000000009AAA").locator("button:text-is('Retry')").click()
    page.wait_for_selector("#refused >> text=That notification is no longer failed.")
