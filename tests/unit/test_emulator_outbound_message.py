"""The Outbound Message wire format, ACK rules, retry schedule and batching (pure functions)."""
import dataclasses
from xml.etree import ElementTree

import pytest

from emulator import outbound

ORG_ID = "00D5Y000001MPM7UAO"
NS = {"soapenv": outbound.SOAP_NS, "o": outbound.OUTBOUND_NS,
      "sf": "urn:sobject.enterprise.soap.sforce.com",
      "xsi": "http://www.w3.org/2001/XMLSchema-instance"}


def message(notifications, **kwargs):
    return outbound.build_message(ORG_ID, "04k5Y0000008Q1hQAE", "https://emu.example:8443/",
                                  "Opportunity", notifications, **kwargs)


def test_envelope_matches_a_real_capture_layout():
    pairs = outbound.sobject_fields(
        {"Id": "0065Y00001Suvw6QAB", "StageName": "Prospecting", "Name": "test", "Amount": 45000,
         "IsClosed": False, "CloseDate": "2020-07-11", "Description": None,
         "LastModifiedDate": "2020-05-09T03:04:32.000+0000"},
        "0065Y00001Suvw6QAB",
        ["StageName", "Name", "Amount", "IsClosed", "CloseDate", "Description", "LastModifiedDate"],
        {"Amount": "currency", "IsClosed": "boolean", "CloseDate": "date",
         "LastModifiedDate": "datetime"})
    root = ElementTree.fromstring(message([("04l5Y00002lRDRNQA4", pairs)]))
    body = root.find("soapenv:Body/o:notifications", NS)
    assert [child.tag.split("}")[1] for child in body] == [
        "OrganizationId", "ActionId", "SessionId", "EnterpriseUrl", "PartnerUrl", "Notification"]
    assert body.find("o:OrganizationId", NS).text == ORG_ID
    assert body.find("o:SessionId", NS).get(f"{{{NS['xsi']}}}nil") == "true"
    assert body.find("o:EnterpriseUrl", NS).text == \
        "https://emu.example:8443/services/Soap/c/59.0/00D5Y000001MPM7"
    assert body.find("o:PartnerUrl", NS).text == \
        "https://emu.example:8443/services/Soap/u/59.0/00D5Y000001MPM7"
    sobject = body.find("o:Notification/o:sObject", NS)
    assert sobject.get(f"{{{NS['xsi']}}}type") == "sf:Opportunity"
    fields = [(child.tag.split("}")[1], child.text) for child in sobject]
    assert fields == [
        ("Id", "0065Y00001Suvw6QAB"), ("Amount", "45000.0"), ("CloseDate", "2020-07-11"),
        ("IsClosed", "false"), ("LastModifiedDate", "2020-05-09T03:04:32.000Z"),
        ("Name", "test"), ("StageName", "Prospecting")]


def test_sf_prefix_and_type_are_declared_on_sobject_like_salesforce():
    raw = message([("04l000000000001AAA", [("Id", "006000000000001AAA")])]).decode()
    assert '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">' in raw
    assert "<sf:Id>006000000000001AAA</sf:Id>" in raw


def test_deleted_record_sends_only_its_id():
    assert outbound.sobject_fields(None, "001000000000001AAA", ["Name"], {}) == [
        ("Id", "001000000000001AAA")]


def test_text_is_xml_escaped():
    raw = message([("04l000000000001AAA", [("Id", "x"), ("Name", "A & <B>")])]).decode()
    assert "<sf:Name>A &amp; &lt;B&gt;</sf:Name>" in raw


def test_a_message_carries_at_most_100_notifications():
    with pytest.raises(ValueError):
        message([(f"04l{i}", [("Id", "x")]) for i in range(101)])


@pytest.mark.parametrize("status, body, acked", [
    (200, b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
          b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
          b'</notificationsResponse></soapenv:Body></soapenv:Envelope>', True),
    (200, b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
          b'xmlns:out="http://soap.sforce.com/2005/09/outbound"><s:Body><out:notificationsResponse>'
          b'<out:Ack>true</out:Ack></out:notificationsResponse></s:Body></s:Envelope>', True),
    (200, b'<Envelope><Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
          b'<Ack>false</Ack></notificationsResponse></Body></Envelope>', False),
    (500, b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
          b'</notificationsResponse>', False),
    (200, b"OK", False),
    (200, b'<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
          b'</notifications>', False),
])
def test_only_http_200_with_ack_true_is_an_ack(status, body, acked):
    assert outbound.is_ack(status, body) is acked


def test_retry_interval_doubles_from_30_seconds_and_caps_at_2_hours():
    delays = [outbound.retry_delay(n) for n in range(1, 12)]
    assert delays[:5] == [30, 60, 120, 240, 480]
    assert max(delays) == 7200 and delays[-1] == 7200


def test_notifications_expire_after_24_hours():
    assert not outbound.is_expired(0, 24 * 3600 - 1)
    assert outbound.is_expired(0, 24 * 3600)


def queued(n, rule_id="04kA"):
    return outbound.Queued(id=f"04l{n}", rule_id=rule_id, sobject="Account",
                           record_id=f"001{n}", created_at=0, due_at=0, attempts=0)


def test_batches_hold_100_per_rule_in_queue_order():
    items = [queued(i) for i in range(250)] + [queued(i, "04kB") for i in range(3)]
    messages = outbound.plan_messages(items)
    assert [len(m) for m in messages] == [100, 100, 50, 3]
    assert [item.id for m in messages[:3] for item in m] == [f"04l{i}" for i in range(250)]
    assert {item.rule_id for item in messages[3]} == {"04kB"}


def test_reorder_chaos_is_seeded():
    import random
    items = [queued(i) for i in range(30)]
    first = outbound.plan_messages(items, random.Random(7).shuffle)
    again = outbound.plan_messages(items, random.Random(7).shuffle)
    assert first == again
    assert [i.id for i in first[0]] != [i.id for i in items]


@dataclasses.dataclass
class Change:
    sobject: str = "Account"
    record_id: str = "001000000000001AAA"
    kind: str = "updated"
    client: str | None = None
    user_id: str = "005000000000001AAA"


def test_rule_skips_excluded_users_clients_and_deletes():
    rule = outbound.Rule(id="04k", sobject="Account", fields=("Name",), endpoint_url="http://x",
                         exclude_user_ids=("005000000000002",), exclude_clients=("forcebridge",))
    assert outbound.rule_matches(rule, Change())
    assert outbound.rule_matches(rule, Change(kind="created"))
    assert not outbound.rule_matches(rule, Change(kind="deleted"))
    assert not outbound.rule_matches(rule, Change(sobject="Contact"))
    assert not outbound.rule_matches(rule, Change(user_id="005000000000002AAA"))
    assert not outbound.rule_matches(rule, Change(client="forcebridge"))
    assert outbound.rule_matches(rule, Change(client="dataloader"))
