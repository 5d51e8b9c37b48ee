import pytest

from core.outbound import MessageError, id18_suffix, parse_message, same_org
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
    # the 18-character form's suffix is a checksum of the case of the first 15 (issue 14)
    ("00D5w000004qGTOAAA", "00D5w000004qGTO", False),
    ("00D5w000004qGTOEA3", "00D5w000004qGTOEA2", False),
    ("00D5w000004qGTOea2", "00D5w000004qGTO", False),
    ("00D5w000004qGTO", "00D5w000004qGTOXXX", False),
    ("00Dx0000000BV7zEAG", "00Dx0000000BV7z", True),
])
def test_same_org(sent, expected, ok):
    assert same_org(sent, expected) is ok


def test_captured_contact_with_real_session_id_shape():
    """The jsonc sample is an xml2js rendering of a real message; rebuild its XML and parse it."""
    import json
    import re

    text = re.sub(r"^//.*$", "", (SAMPLES / "sample_contact_session_id_na11.jsonc").read_text(), flags=re.M)
    n = json.loads(text)["soapenv:envelope"]["soapenv:body"][0]["notifications"][0]
    note = n["notification"][0]
    sobj = note["sobject"][0]
    xml = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f'<OrganizationId>{n["organizationid"][0]}</OrganizationId><ActionId>{n["actionid"][0]}</ActionId>'
        f'<SessionId>{n["sessionid"][0]}</SessionId><EnterpriseUrl>{n["enterpriseurl"][0]}</EnterpriseUrl>'
        f'<PartnerUrl>{n["partnerurl"][0]}</PartnerUrl><Notification><Id>{note["id"][0]}</Id>'
        f'<sObject xsi:type="{sobj["$"]["xsi:type"]}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f'<sf:Id>{sobj["sf:id"][0]}</sf:Id><sf:MobilePhone>{sobj["sf:mobilephone"][0]}</sf:MobilePhone>'
        "</sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>").encode()
    msg = parse_message(xml)
    assert msg.session_id.startswith("00DG0000000lgAc!")
    assert msg.partner_url.endswith("/services/Soap/u/32.0/00DG0000000glTd")
    assert msg.notifications[0].fields["MobilePhone"] == "(111) 111-1111"


@pytest.mark.parametrize("id15,suffix", [("001A0000006Vm9r", "IAC"), ("00D5w000004qGTO", "EA2"),
                                         ("000000000000000", "AAA"), ("AAAAAAAAAAAAAAA", "555")])
def test_the_18_character_suffix_encodes_the_case_of_the_first_15(id15, suffix):
    assert id18_suffix(id15) == suffix


def _with_dtd(codec: str, declared: str) -> bytes:
    """A message that is valid but for its DTD (an entity it uses), in another encoding than UTF-8."""
    xml = envelope("00D5w000004qGTOEA2", "Account", [{"Id": "001000000000001AAA", "Name": "x"}]).decode()
    xml = xml.replace('<?xml version="1.0" encoding="UTF-8"?>',
                      f'<?xml version="1.0" encoding="{declared}"?><!DOCTYPE e [<!ENTITY n "expanded">]>')
    xml = xml.replace("<sf:Name>x</sf:Name>", "<sf:Name>&n;</sf:Name>")
    if codec == "utf-7":   # every "<" after the declaration spelled +ADw-, as UTF-7 may
        head, _, rest = xml.partition("?>")
        return (head + "?>").encode() + rest.replace("<", "+ADw-").encode()
    return xml.encode(codec)


@pytest.mark.parametrize("codec,declared", [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16LE"), ("utf-16-be", "UTF-16BE"),
                                            ("utf-32", "UTF-32"), ("utf-32-be", "UTF-32BE"), ("utf-7", "UTF-7")])
def test_a_dtd_is_refused_in_any_encoding(codec, declared):
    body = _with_dtd(codec, declared)
    assert b"<!DOCTYPE" not in body                      # what the byte check looked for
    with pytest.raises(MessageError, match="document type"):
        parse_message(body)


def test_a_utf16_message_without_a_dtd_is_still_read():
    xml = envelope("00D5w000004qGTOEA2", "Account", [{"Id": "001000000000001AAA", "Name": "é"}]).decode()
    body = xml.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert parse_message(body).notifications[0].fields["Name"] == "é"
