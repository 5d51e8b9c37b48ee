"""Parse a Salesforce Outbound Message (SOAP 1.1) into plain data, safely, and build the replies."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
# Record Ids longer than 18 cannot be stored (sfid is varchar(18)) and Salesforce never sends them: refused
# with a 400, not a 503 that would make a sender retry them for a day. (Test fixtures in the wild use short
# Ids; the console's setup check uses a longer notification Id of its own.)
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{1,18}$")
_NOTIFICATION_ID = re.compile(r"^[A-Za-z0-9]{1,40}$")
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)


class MessageError(ValueError):
    """The request is not an Outbound Message we can accept; nothing of it may be stored."""


@dataclass(frozen=True)
class Notification:
    id: str
    object_name: str
    sfid: str
    # API name -> text value as sent, or None for xsi:nil. Fields not sent are absent.
    fields: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str
    session_id: str | None
    enterprise_url: str
    partner_url: str
    notifications: tuple[Notification, ...]


def _parser() -> etree.XMLParser:
    # No entity expansion, no DTD loading, no network, no huge trees: hostile documents fail fast.
    return etree.XMLParser(
        resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False,
        remove_comments=True, remove_pis=True, dtd_validation=False,
    )


def _local(tag) -> str:
    # "{namespace}name" -> "name"; comments and processing instructions have no str tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _is_nil(el) -> bool:
    return el.get(f"{{{XSI_NS}}}nil") in ("true", "1")


def _text(el) -> str | None:
    return None if _is_nil(el) else (el.text or "")


# Byte patterns that tell a document's encoding before any declaration (XML 1.0 appendix F), BOMs first.
_SNIFF = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
          (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
          (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"),
          (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"))


def _declares_dtd(body: bytes) -> bool:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return True
    for prefix, codec in _SNIFF:
        if body.startswith(prefix):
            text = body.decode(codec, errors="replace")
            return "<!DOCTYPE" in text or "<!ENTITY" in text
    return False


def parse_message(body: bytes) -> OutboundMessage:
    """Parse the POSTed body. Raises MessageError for anything that is not a well-formed message."""
    if not body or not body.strip():
        raise MessageError("empty request body")
    # A document type declaration has no place in SOAP (SOAP 1.1 section 3); refusing it outright
    # shuts out entity-expansion and external-entity attacks before the parser sees them.
    if _declares_dtd(body):
        raise MessageError("document type declarations are not allowed")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise MessageError(f"not well-formed XML: {exc}") from None
    # The parser reads any encoding it knows (UTF-7, UCS-4, ...); whatever the bytes looked like, a
    # document that turned out to carry a DTD is refused too.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise MessageError("document type declarations are not allowed")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise MessageError("not a SOAP 1.1 Envelope")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None:
        raise MessageError("SOAP Envelope has no Body")
    notifications = soap_body.find(f"{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise MessageError("SOAP Body does not hold an Outbound Message <notifications> element")
    return _read_notifications(notifications)


def _read_notifications(el) -> OutboundMessage:
    header: dict[str, str | None] = {}
    items: list[Notification] = []
    for child in el:
        name = _local(child.tag)
        if name == "Notification":
            items.append(_read_notification(child))
        elif name:
            header[name] = _text(child)
    if not items:
        raise MessageError("the message holds no Notification")
    if len(items) > MAX_NOTIFICATIONS:
        raise MessageError(f"the message holds {len(items)} notifications; Salesforce sends at most {MAX_NOTIFICATIONS}")
    return OutboundMessage(
        organization_id=(header.get("OrganizationId") or "").strip(),
        action_id=(header.get("ActionId") or "").strip(),
        session_id=header.get("SessionId"),
        enterprise_url=header.get("EnterpriseUrl") or "",
        partner_url=header.get("PartnerUrl") or "",
        notifications=tuple(items),
    )


def _read_notification(el) -> Notification:
    note_id = None
    sobject = None
    for child in el:
        name = _local(child.tag)
        if name == "Id":
            note_id = (child.text or "").strip()
        elif name == "sObject":
            sobject = child
    if not note_id:
        raise MessageError("a Notification has no Id")
    if not _NOTIFICATION_ID.match(note_id):
        raise MessageError(f"notification Id {note_id[:40]!r} is not a Salesforce Id")
    if sobject is None:
        raise MessageError(f"notification {note_id} has no sObject")
    object_name = _object_name(sobject, note_id)
    fields: dict[str, str | None] = {}
    for f in sobject:
        name = _local(f.tag)
        if name:
            if len(f):
                raise MessageError(f"notification {note_id}: field {name[:80]} has nested elements (compound fields are not supported)")
            fields[name] = _text(f)
    sfid = (fields.get("Id") or "").strip()
    if not sfid:
        raise MessageError(f"notification {note_id} has no sObject Id")
    if not _SALESFORCE_ID.match(sfid):
        raise MessageError(f"notification {note_id}: {sfid[:40]!r} is not a Salesforce Id")
    return Notification(id=note_id, object_name=object_name, sfid=sfid, fields=fields)


def _object_name(sobject, note_id: str) -> str:
    xsi_type = sobject.get(f"{{{XSI_NS}}}type")
    if not xsi_type:
        raise MessageError(f"notification {note_id}: sObject has no xsi:type")
    name = xsi_type.rsplit(":", 1)[-1]
    if not _API_NAME.match(name):
        raise MessageError(f"notification {note_id}: {name[:80]!r} is not a Salesforce object name")
    return name


_ID_CHARS = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Z0-5]{3})?$")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id18_suffix(id15: str) -> str:
    """The three characters Salesforce appends to a 15-character Id: for each block of five characters,
    the letter that encodes which of them are upper case (bit i for character i)."""
    return "".join(_SUFFIX_ALPHABET[sum(1 << i for i, c in enumerate(id15[k:k + 5]) if "A" <= c <= "Z")]
                   for k in (0, 5, 10))


def valid_id(value: str) -> bool:
    """A 15-character Id, or an 18-character one whose suffix is the checksum of its first 15."""
    return bool(_ID_CHARS.match(value)) and (len(value) == 15 or value[15:] == id18_suffix(value[:15]))


def same_org(sent: str, expected: str) -> bool:
    """Salesforce org ids come in a 15-character case-sensitive form and an 18-character form that adds a
    checksum suffix; both name the same org when their first 15 characters match exactly and the
    suffix, where there is one, is the right one."""
    sent, expected = sent.strip(), expected.strip()
    if not valid_id(sent) or not valid_id(expected):
        return False
    return sent[:15] == expected[:15]


def soap_fault(code: str, message: str) -> str:
    """A SOAP 1.1 fault; Salesforce treats anything but an Ack as a failed delivery and retries it."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>soapenv:{escape(code)}</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
