"""Read the object and fields out of the Outbound Message WSDL that Salesforce generates (zeep, no network)."""
from __future__ import annotations

import io
from dataclasses import dataclass

from zeep import Settings
from zeep.exceptions import Error as ZeepError
from zeep.transports import Transport
from zeep.wsdl import Document

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
# XML Schema types in the enterprise WSDL -> the describe types our mappings use.
XSD_TO_SF = {
    "string": "string", "boolean": "boolean", "int": "int", "long": "long", "double": "double",
    "date": "date", "dateTime": "datetime", "time": "time", "base64Binary": "base64", "anyType": "anytype",
    "ID": "id",
}
# On every sObject, or carried as system columns anyway.
SKIPPED_ELEMENTS = {"fieldsToNull"}


class WsdlError(ValueError):
    """The upload is not an Outbound Message WSDL we can read; the message says why."""


@dataclass(frozen=True)
class WsdlObject:
    object_name: str
    fields: dict[str, str]          # API name -> describe type (best guess from the XML Schema type)


class _NoNetwork(Transport):
    """A WSDL upload must never make the server fetch anything."""

    def load(self, url):
        raise WsdlError(f"the WSDL refers to {url}; only self-contained WSDLs are accepted")

    def _load_remote_data(self, url):
        raise WsdlError(f"the WSDL refers to {url}; only self-contained WSDLs are accepted")


def read_wsdl(data: bytes) -> WsdlObject:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise WsdlError("document type declarations are not allowed")
    settings = Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True, strict=False)
    try:
        document = Document(io.BytesIO(data), transport=_NoNetwork(cache=None), settings=settings)
        notifications = document.types.get_element(f"{{{OUTBOUND_NS}}}notifications")
    except WsdlError:
        raise
    except (ZeepError, Exception) as exc:  # noqa: BLE001 - zeep and lxml raise many kinds; all mean "unreadable"
        raise WsdlError(f"not an Outbound Message WSDL: {exc}") from None
    notification = _child(notifications.type, "Notification")
    sobject = _child(notification.type, "sObject")
    object_name = sobject.type.qname.localname if sobject.type.qname else ""
    if not object_name:
        raise WsdlError("the WSDL's Notification has no named sObject type")
    fields = {}
    for name, element in sobject.type.elements:
        if name in SKIPPED_ELEMENTS:
            continue
        qname = getattr(element.type, "qname", None)
        local = qname.localname if qname is not None else ""
        if local in XSD_TO_SF:
            # Only the record's own Id is an "id"; every other Id-typed field points at another record.
            fields[name] = "reference" if local == "ID" and name != "Id" else XSD_TO_SF[local]
        # Anything else is a nested relationship object: not a column of this table.
    if "Id" not in fields:
        raise WsdlError(f"the {object_name} type in the WSDL has no Id field")
    return WsdlObject(object_name=object_name, fields=fields)


def _child(complex_type, name: str):
    for child_name, element in getattr(complex_type, "elements", []):
        if child_name == name:
            return element
    raise WsdlError(f"the WSDL has no {name} element where Salesforce puts one")
