"""The "send test message" check: an Outbound Message like Salesforce's, for an object no one maps."""
from __future__ import annotations

from xml.sax.saxutils import escape

CHECK_OBJECT = "ForceBridge_Setup_Check"
CHECK_RECORD_ID = "000000000000000AAA"


def sample_message(org_id: str, notification_id: str, sent_at: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{escape(org_id)}</OrganizationId><ActionId>04k000000000000AAA</ActionId>"
        '<SessionId xsi:nil="true"/><EnterpriseUrl>https://example.invalid/services/Soap/c/62.0</EnterpriseUrl>'
        "<PartnerUrl>https://example.invalid/services/Soap/u/62.0</PartnerUrl>"
        f"<Notification><Id>{escape(notification_id)}</Id>"
        f'<sObject xsi:type="sf:{CHECK_OBJECT}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{CHECK_RECORD_ID}</sf:Id><sf:SystemModstamp>{escape(sent_at)}</sf:SystemModstamp>"
        "</sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def acknowledged(body: str) -> bool:
    compact = "".join(body.split())
    return "<Ack>true</Ack>" in compact or ":Ack>true</" in compact
