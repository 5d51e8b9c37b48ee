"""Build Outbound Messages for tests, in the shape Salesforce sends (see shared/reference/.../outbound)."""
from __future__ import annotations

import itertools
import re
from xml.sax.saxutils import escape

_counter = itertools.count(1)


def notification_id() -> str:
    return f"04l5w{next(_counter):013d}"


def envelope(org_id: str, object_name: str, records: list[dict], ids: list[str] | None = None) -> bytes:
    """records: [{"Id": ..., "Name": ..., "SystemModstamp": ...}] (None -> xsi:nil)."""
    ids = ids or [notification_id() for _ in records]
    notes = []
    for nid, rec in zip(ids, records):
        fields = []
        for name in ["Id"] + sorted(k for k in rec if k != "Id"):
            value = rec[name]
            if value is None:
                fields.append(f'<sf:{name} xsi:nil="true"/>')
            else:
                fields.append(f"<sf:{name}>{escape(str(value))}</sf:{name}>")
        notes.append(
            f"<Notification><Id>{nid}</Id>"
            f'<sObject xsi:type="sf:{object_name}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"{''.join(fields)}</sObject></Notification>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org_id}</OrganizationId><ActionId>04k5w000000TSwMAAW</ActionId>"
        '<SessionId xsi:nil="true"/>'
        f"<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/62.0/{org_id[:15]}</EnterpriseUrl>"
        f"<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/62.0/{org_id[:15]}</PartnerUrl>"
        f"{''.join(notes)}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def with_org(xml: bytes, org_id: str) -> bytes:
    """Put our org id into a sample whose author left a placeholder or none."""
    text = xml.decode()
    if "<OrganizationId>" in text:
        text = re.sub(r"<OrganizationId>[^<]*</OrganizationId>", f"<OrganizationId>{org_id}</OrganizationId>", text)
    else:
        text = re.sub(r'(<notifications xmlns="http://soap.sforce.com/2005/09/outbound">)',
                      rf"\1<OrganizationId>{org_id}</OrganizationId>", text)
    return text.encode()
