"""Drive an org like its users do: create, update and delete records at a steady rate through the
public REST API with simple-salesforce; bounded, and prints a JSON summary line last."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import random
import signal
import sys
import time
from collections import Counter
from typing import Callable

from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from emulator.process import SalesforceHttp
from emulator.store import DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN, DEFAULT_USERNAME

WRITABLE_TYPES = {"string", "textarea", "email", "phone", "url", "picklist", "boolean", "int",
                  "double", "currency", "percent", "date", "datetime"}
MIX = (("create", 0.4), ("update", 0.45), ("delete", 0.15))


def connect(url: str, username: str, password: str, token: str, ca: str | None, client: str) -> Salesforce:
    """simple-salesforce's own SOAP login, its *.salesforce.com URLs routed to the emulator; it logs
    in again by itself when the session expires. Every call carries the client name."""
    session = SalesforceHttp(url, pathlib.Path(ca) if ca else None, client)
    return Salesforce(username=username, password=password, security_token=token, session=session)


# ---------------------------------------------------------------- what users type (pure)

class Faker:
    """Plausible values for describe fields, reproducible from a seed."""

    def __init__(self, rng: random.Random, run: str):
        self.rng = rng
        self.run = run
        self.serial = 0

    def unique(self) -> str:
        self.serial += 1
        return f"{self.run}-{self.serial}"

    def value(self, field: dict, today: dt.date):
        rng = self.rng
        kind = field["type"]
        if field.get("externalId") or field.get("unique"):
            return self.unique()[: field.get("length") or 80]
        if kind == "picklist":
            active = [p["value"] for p in field.get("picklistValues") or [] if p.get("active", True)]
            return rng.choice(active) if active else None
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "int":
            return rng.randrange(0, 5000)
        if kind in ("double", "currency", "percent"):
            ceiling = 100 if kind == "percent" else 1_000_000
            return round(rng.uniform(0, ceiling), min(field.get("scale") or 0, 2))
        if kind == "date":
            return (today + dt.timedelta(days=rng.randrange(-365, 365))).isoformat()
        if kind == "datetime":
            moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=rng.randrange(0, 10_000))
            return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        if kind == "email":
            return f"user{rng.randrange(10**6)}@example.com"
        if kind == "phone":
            return f"(555) {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
        if kind == "url":
            return f"https://example.com/{rng.randrange(10**6)}"
        words = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay")
        text = f"{rng.choice(words)} {field['label'] if 'label' in field else field['name']} {rng.randrange(10**5)}"
        return text[: field.get("length") or 255]


def required_fields(describe: dict) -> list[dict]:
    """Fields a create must set: createable, not nillable, not defaulted by the org."""
    return [f for f in describe["fields"] if f.get("createable") and not f.get("nillable", True)
            and not f.get("defaultedOnCreate") and f["type"] in WRITABLE_TYPES]


def optional_fields(describe: dict, action: str) -> list[dict]:
    flag = "createable" if action == "create" else "updateable"
    return [f for f in describe["fields"] if f.get(flag) and f["type"] in WRITABLE_TYPES
            and f.get("nillable", True)]


def plan_values(describe: dict, faker: Faker, action: str, today: dt.date) -> dict:
    """Values for one create (required fields + a few others) or update (one to three fields)."""
    chosen = required_fields(describe) if action == "create" else []
    extras = optional_fields(describe, action)
    if action == "update" and not extras:
        extras = [f for f in describe["fields"] if f.get("updateable") and f["type"] in WRITABLE_TYPES]
    chosen += faker.rng.sample(extras, min(len(extras), faker.rng.randint(1, 3)))
    values = {}
    for field in chosen:
        value = faker.value(field, today)
        if value is not None:
            values[field["name"]] = value
    return values


def pick_action(rng: random.Random, have_records: bool) -> str:
    if not have_records:
        return "create"
    roll = rng.random()
    for action, weight in MIX:
        if roll < weight:
            return action
        roll -= weight
    return MIX[-1][0]


# ---------------------------------------------------------------- the loop

def drive(sf: Salesforce, objects: list[str], rate: float, seconds: float, seed: int,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
          stopped: Callable[[], bool] = lambda: False) -> dict:
    rng = random.Random(seed)
    faker = Faker(rng, f"drive{seed}-{int(time.time())}")
    describes = {name: getattr(sf, name).describe() for name in objects}
    live: dict[str, list[str]] = {name: [] for name in objects}
    counts: Counter = Counter()
    errors: Counter = Counter()
    today = dt.date.today()
    interval = 1.0 / rate
    started = clock()
    next_at = started
    while clock() - started < seconds and not stopped():
        sobject = rng.choice(objects)
        action = pick_action(rng, bool(live[sobject]))
        api = getattr(sf, sobject)
        try:
            if action == "create":
                values = plan_values(describes[sobject], faker, "create", today)
                live[sobject].append(api.create(values)["id"])
            elif action == "update":
                record_id = rng.choice(live[sobject])
                api.update(record_id, plan_values(describes[sobject], faker, "update", today))
            else:
                record_id = live[sobject].pop(rng.randrange(len(live[sobject])))
                api.delete(record_id)
            counts[action] += 1
            counts[f"{sobject}.{action}"] += 1
        except SalesforceError as exc:
            errors[_error_code(exc)] += 1
        next_at += interval
        pause = next_at - clock()
        if pause > 0:
            sleep(pause)
        else:
            next_at = clock()          # fell behind: don't burst to catch up
    elapsed = clock() - started
    done = counts["create"] + counts["update"] + counts["delete"]
    return {"objects": objects, "rate": rate, "seconds": round(elapsed, 3),
            "created": counts["create"], "updated": counts["update"], "deleted": counts["delete"],
            "errors": sum(errors.values()), "error_codes": dict(errors),
            "achieved_rate": round(done / elapsed, 2) if elapsed else 0.0,
            "by_object": {k: v for k, v in counts.items() if "." in k}}


def _error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode", type(exc).__name__)
    return type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.drive", description=__doc__)
    parser.add_argument("--url", required=True, help="emulator base URL, e.g. https://127.0.0.1:8443")
    parser.add_argument("--rate", type=float, default=5.0, help="operations per second")
    parser.add_argument("--objects", default="Account,Contact")
    parser.add_argument("--seconds", type=float, default=10.0, help="stop after this long")
    parser.add_argument("--ca", help="CA bundle for an https:// emulator (EMULATOR_CA)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--security-token", default=DEFAULT_SECURITY_TOKEN)
    parser.add_argument("--client", default="drive", help="Sforce-Call-Options client name")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds < 0:
        parser.error("--rate must be > 0 and --seconds >= 0")
    objects = [name.strip() for name in args.objects.split(",") if name.strip()]
    sf = connect(args.url, args.username, args.password, args.security_token, args.ca, args.client)
    stop = []
    # Ctrl-C or SIGTERM (make demo stopping us) end the run early but still print the summary.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.append(True))
    summary = drive(sf, objects, args.rate, args.seconds, args.seed, stopped=lambda: bool(stop))
    summary["url"] = args.url
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
