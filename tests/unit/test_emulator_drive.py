"""The driver's choice of values: what it sends must pass the org's validation."""
import datetime as dt
import random

from emulator import drive
from emulator.schema import load_types

TYPES = load_types()


def test_creates_fill_every_required_field_with_valid_values():
    faker = drive.Faker(random.Random(1), "t")
    opportunity = TYPES["opportunity"].describe
    stages = {p["value"] for p in next(f for f in opportunity["fields"] if f["name"] == "StageName")["picklistValues"]}
    for _ in range(50):
        values = drive.plan_values(opportunity, faker, "create", dt.date(2026, 1, 1))
        assert {"Name", "StageName", "CloseDate"} <= set(values)
        assert values["StageName"] in stages
        dt.date.fromisoformat(values["CloseDate"])


def test_updates_touch_one_to_three_updateable_fields():
    faker = drive.Faker(random.Random(2), "t")
    contact = TYPES["contact"].describe
    updateable = {f["name"] for f in contact["fields"] if f.get("updateable")}
    for _ in range(50):
        values = drive.plan_values(contact, faker, "update", dt.date(2026, 1, 1))
        assert 1 <= len(values) <= 3 and set(values) <= updateable


def test_unique_fields_never_repeat():
    faker = drive.Faker(random.Random(3), "run")
    field = {"name": "External_Id__c", "type": "string", "externalId": True, "unique": True, "length": 80}
    assert len({faker.value(field, dt.date.today()) for _ in range(1000)}) == 1000


def test_first_action_on_an_empty_object_is_create():
    rng = random.Random(4)
    assert {drive.pick_action(rng, False) for _ in range(20)} == {"create"}
    assert {drive.pick_action(rng, True) for _ in range(500)} == {"create", "update", "delete"}
