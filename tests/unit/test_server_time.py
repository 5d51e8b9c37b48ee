"""Salesforce's time read from a response (gateway.salesforce.server_time): the poll's watermark rests on it."""
import datetime as dt

import requests

from gateway.salesforce import server_time


def answer(date: str | None, seconds: float) -> requests.Response:
    response = requests.Response()
    if date is not None:
        response.headers["Date"] = date
    response.elapsed = dt.timedelta(seconds=seconds)
    return response


def test_the_date_less_the_call_s_duration_is_no_later_than_the_query_ran():
    assert server_time(answer("Thu, 03 Dec 2026 14:00:05 GMT", 2.5)) == dt.datetime(
        2026, 12, 3, 14, 0, 2, 500000, tzinfo=dt.timezone.utc)


def test_no_readable_date_gives_no_time():
    assert server_time(answer(None, 0.1)) is None
    assert server_time(answer("yesterday", 0.1)) is None
    assert server_time(answer("Thu, 03 Dec 2026 14:00:05", 0.1)) is None     # no zone: whose clock?
