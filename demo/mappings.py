"""The demo's mappings, and what an older demo directory's mappings must change to match them."""
from __future__ import annotations

from core.loading import CDC_POLL_SECONDS, DEFAULT_POLL_SECONDS

MAPPINGS = [
    {"object_name": "Account", "direction": "bidirectional",
     # poll every minute (the minimum) so deletes made in Salesforce reach Postgres quickly
     "config": {"access": "read_write", "upsert_field": "External_Id__c", "sf_polling_seconds": 60,
                "fields": {"Name": {}, "AccountNumber": {}, "Industry": {}, "Phone": {}, "AnnualRevenue": {},
                           "NumberOfEmployees": {}, "External_Id__c": {}}}},
    # Change Data Capture over the emulator's Pub/Sub API: every change within a second, deletes included; the
    # backstop poll once an hour (the default for a CDC mapping)
    {"object_name": "Contact", "config": {"access": "read_only", "sf_source": "cdc",
                                          "fields": {"FirstName": {}, "LastName": {}, "Email": {}, "AccountId": {}}}},
]


def config_update(current: dict, wanted: dict) -> dict | None:
    """The config a PATCH must send so a stored mapping takes the wanted Salesforce source and backstop poll
    (absent: the source's default, an hour on CDC); None when it has them. An older demo polled Contact every
    minute and kept doing so on top of CDC."""
    def settings(config: dict) -> dict:
        source = config.get("sf_source", "outbound_message")
        default = CDC_POLL_SECONDS if source == "cdc" else DEFAULT_POLL_SECONDS
        return {"sf_source": source, "sf_polling_seconds": config.get("sf_polling_seconds", default)}

    want = settings(wanted)
    return want if settings(current) != want else None
