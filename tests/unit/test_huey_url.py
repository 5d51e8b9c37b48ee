"""HUEY_URL that names no storage ForceBridge knows: refused with a message that never shows the password."""
import pytest

from jobs.queue import make_huey


def test_an_unknown_huey_url_is_refused_without_echoing_its_password():
    with pytest.raises(ValueError) as refused:
        make_huey("mysql://forcebridge:hunter2-secret@db.example:3306/queue")
    assert "mysql" in str(refused.value) and "postgresql://" in str(refused.value)
    assert "hunter2" not in str(refused.value)
