"""The poll's getDeleted windows chained as the docs say (each starts at the last one's latestDateCovered)
lose no delete, whatever second or minute the deletes and the polls fall in (issue #15)."""
from __future__ import annotations

from jobs import poll
from tests.integration.test_loading import (api, db, loaded_mapping, salesforce_accounts, sf, sf_app,  # noqa: F401
                                            sf_settings, sql)


def test_chained_get_deleted_windows_lose_no_delete(api, db, sf, emulator, sf_settings):
    m = loaded_mapping(api, db, sf, emulator, count=12, sf_delete_detection="getDeleted", keep_deleted_rows=True)
    users = emulator.salesforce(client="user")
    ids = sorted(salesforce_accounts(sf))
    url = sf_settings.database_url
    for round_ in range(6):             # a delete, then a poll, again and again: same seconds, same minute
        users.Account.delete(ids[2 * round_])
        users.Account.delete(ids[2 * round_ + 1])
        poll.poll(db, sf, m, force=True)
        deleted = {r[0] for r in sql(url, "SELECT sfid FROM salesforce.account WHERE isdeleted")}
        assert deleted == set(ids[:2 * round_ + 2])
    state = db.fetchone("get_poll_state", {"mapping_id": m.id})
    assert state["deleted_since"].second == 0          # windows start on a whole minute, as the org covers them
