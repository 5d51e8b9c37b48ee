"""The naive Outbound Message handler of the original sketch, kept only as the benchmark's baseline:
parse, then for each notification open a connection and run one INSERT .. ON CONFLICT, then ACK."""
import os

import psycopg
from flask import Flask, request

from core.outbound import ACK, parse_message

app = Flask(__name__)
DATABASE_URL = os.environ["DATABASE_URL"]
UPSERT = """
INSERT INTO salesforce.account (sfid, name, accountnumber, systemmodstamp, _hc_lastop)
VALUES (%s, %s, %s, %s, 'SYNCED')
ON CONFLICT (sfid) DO UPDATE SET name = EXCLUDED.name, accountnumber = EXCLUDED.accountnumber,
    systemmodstamp = EXCLUDED.systemmodstamp
"""


@app.get("/healthz")
def healthz():
    return "ok"


@app.post("/outbound")
def outbound():
    message = parse_message(request.get_data())
    for n in message.notifications:
        with psycopg.connect(DATABASE_URL) as conn:
            conn.execute(UPSERT, (n.sfid, n.fields.get("Name"), n.fields.get("AccountNumber"),
                                  n.fields.get("SystemModstamp")))
    return ACK, 200, {"Content-Type": "text/xml; charset=utf-8"}
