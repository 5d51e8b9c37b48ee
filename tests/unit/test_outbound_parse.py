import pytest

from core.outbound import MessageError, parse_message, same_org
from tests.conftest import SAMPLES
from tests.support.messages import envelope


def test_real_sandbox_capture_parses_with_every_field():
    msg = parse_message((SAMPLES / "sample_opportunity_sandbox_real.xml").read_bytes())
    assert msg.organization_id == "00D5w000004qGTOEA2"
    (note,) = msg.notifications
    assert note.id == "04l5w00005286hAAAQ"
    assert note.object_name == "Opportunity"
    assert note.sfid == "0065w000023STAmAAO"
    assert note.fields["Amount"] == "45000.0"
    assert note.fields["SystemModstamp"] == "2020-05-09T03:04:32.000Z"
    assert len(note.fields) == 26


def test_nil_session_and_nil_fields():
    msg = parse_message(envelope("00D5w000004qGTOEA2", "Account", [{"Id": "001000000000001AAA", "Phone": None}]))
    assert msg.session_id is None
    assert msg.notifications[0].fields["Phone"] is None


def test_any_prefixes():
    xml = (b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
           b'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><e:Body>'
           b'<o:notifications xmlns:o="http://soap.sforce.com/2005/09/outbound">'
           b'<o:OrganizationId>00D5w000004qGTO</o:OrganizationId><o:Notification><o:Id>04l1</o:Id>'
           b'<o:sObject i:type="x:Lead" xmlns:x="urn:sobject.enterprise.soap.sforce.com"><x:Id>00Q1</x:Id>'
           b'<x:Email i:nil="1"/></o:sObject></o:Notification></o:notifications></e:Body></e:Envelope>')
    note = parse_message(xml).notifications[0]
    assert (note.object_name, note.sfid, note.fields["Email"]) == ("Lead", "00Q1", None)


@pytest.mark.parametrize("body", [
    b"", b"not xml at all", b"<a><b>", b"<x/>",
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><other/></soapenv:Body></soapenv:Envelope>',
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>',
    b'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
])
def test_rejects_what_is_not_a_message(body):
    with pytest.raises(MessageError):
        parse_message(body)


def test_more_than_100_notifications_is_refused():
    records = [{"Id": f"001{i:015d}"} for i in range(101)]
    with pytest.raises(MessageError, match="at most 100"):
        parse_message(envelope("00D5w000004qGTOEA2", "Account", records))


@pytest.mark.parametrize("sent,expected,ok", [
    ("00D5w000004qGTOEA2", "00D5w000004qGTOEA2", True),
    ("00D5w000004qGTO", "00D5w000004qGTOEA2", True),
    ("00D5w000004qGTOEA2", "00D5w000004qGTO", True),
    ("00D5w000004qGTo", "00D5w000004qGTO", False),
    ("00D5w000004qGTOEA2", "", False),
    ("someOrganizationId", "00D5w000004qGTO", False),
])
def test_same_org(sent, expected, ok):
    assert same_org(sent, expected) is ok
