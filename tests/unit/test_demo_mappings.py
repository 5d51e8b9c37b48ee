"""The demo's mappings: a demo directory from an older demo is brought to today's source and backstop poll."""
from demo.mappings import MAPPINGS, config_update


def wanted(name):
    return next(m["config"] for m in MAPPINGS if m["object_name"] == name)


def test_contact_from_before_cdc_stops_polling_every_minute():
    old = {"access": "read_only", "sf_polling_seconds": 60}
    assert config_update(old, wanted("Contact")) == {"sf_source": "cdc", "sf_polling_seconds": 3600}
    # switched to CDC by an earlier demo, still polling every minute
    assert config_update({**old, "sf_source": "cdc"}, wanted("Contact")) == \
        {"sf_source": "cdc", "sf_polling_seconds": 3600}


def test_mappings_as_the_demo_creates_them_are_left_alone():
    for m in MAPPINGS:
        assert config_update(m["config"], m["config"]) is None
    assert config_update({"sf_source": "cdc", "sf_polling_seconds": 3600}, wanted("Contact")) is None
    assert config_update({"sf_polling_seconds": 60, "sf_source": "outbound_message"}, wanted("Account")) is None
