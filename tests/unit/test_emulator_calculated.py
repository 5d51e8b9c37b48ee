"""The emulator's formula and roll-up summary fields: recomputed from their inputs, SystemModstamp untouched."""
import pytest

from emulator.formula import parse
from emulator.store import Org


@pytest.fixture
def org(tmp_path):
    org = Org(tmp_path)
    yield org
    org.close()


def test_concatenation_and_parent_fields_parse():
    assert parse("Name & ' (' & Shipment__r.Name & ')'").evaluate({"Name": "P", "Shipment__r.Name": None}) == "P ()"


def test_formulas_and_rollups_follow_their_inputs_without_touching_systemmodstamp(org):
    user = org._ensure_default_user()
    ship = org.create("Shipment__c", {"Name": "S1", "Rate__c": 2}, client="t", user_id=user)["Id"]
    p1 = org.create("Parcel__c", {"Name": "P1", "Weight__c": 3, "Shipment__c": ship}, client="t", user_id=user)["Id"]
    org.create("Parcel__c", {"Name": "P2", "Weight__c": 4.5, "Shipment__c": ship}, client="t", user_id=user)
    parcel = org.get("Parcel__c", p1)
    assert (parcel["Cost__c"], parcel["Label__c"]) == (6.0, "P1 (S1)")
    shipment = org.get("Shipment__c", ship)
    assert (shipment["Parcel_Count__c"], shipment["Total_Weight__c"]) == (2, 7.5)
    stamp = parcel["SystemModstamp"]
    org.update("Shipment__c", ship, {"Rate__c": 10, "Name": "S2"}, client="t", user_id=user)
    parcel = org.get("Parcel__c", p1)
    assert (parcel["Cost__c"], parcel["Label__c"], parcel["SystemModstamp"]) == (30.0, "P1 (S2)", stamp)
    shipment_stamp = org.get("Shipment__c", ship)["SystemModstamp"]
    org.delete("Parcel__c", p1, client="t", user_id=user)
    shipment = org.get("Shipment__c", ship)
    assert (shipment["Parcel_Count__c"], shipment["Total_Weight__c"], shipment["SystemModstamp"]) == (
        1, 4.5, shipment_stamp)
