"""Bulk API 2.0 CSV results: paging by locator over a file, quoting, typed ingest values (pure parts)."""
import csv
import io

import pytest

from emulator import bulk2, soql

DESCRIBES = {
    "Contact": {"fields": [
        {"name": "Id", "type": "id"}, {"name": "LastName", "type": "string"},
        {"name": "AccountId", "type": "reference", "relationshipName": "Account",
         "referenceTo": ["Account"]},
        {"name": "DoNotCall", "type": "boolean"}, {"name": "SystemModstamp", "type": "datetime"}]},
    "Account": {"fields": [{"name": "Id", "type": "id"}, {"name": "Name", "type": "string"},
                           {"name": "AnnualRevenue", "type": "currency"}]},
}


def describe(name):
    return next(d for key, d in DESCRIBES.items() if key.lower() == name.lower())


def test_columns_follow_select_order_with_describe_spelling():
    query = soql.parse("select lastname, ACCOUNT.name, Id from contact")
    assert bulk2.query_columns(query, describe) == ["LastName", "Account.Name", "Id"]


def test_count_queries_are_refused():
    with pytest.raises(bulk2.BulkError):
        bulk2.query_columns(soql.parse("SELECT COUNT() FROM Contact"), describe)


def test_locators_round_trip_and_look_like_salesforce():
    assert bulk2.encode_locator(10000) == "MTAwMDA"
    assert bulk2.decode_locator("MTAwMDA") == 10000
    assert bulk2.decode_locator("not a locator!") is None


def write(tmp_path, rows, columns, types=None):
    count = bulk2.write_query_results(iter(rows), columns, types or {}, tmp_path / "data.csv",
                                      tmp_path / "index.bin", ",", "\n", lambda: False)
    return count


def page(tmp_path, columns, start, size, total):
    end = min(start + size, total)
    head = bulk2.csv_line(columns, ",", "\n").encode()
    body = b"".join(bulk2.stream_range(tmp_path / "data.csv", bulk2.row_offset(tmp_path / "index.bin", start),
                                       bulk2.row_offset(tmp_path / "index.bin", end), head))
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


def test_pages_cover_every_row_once_even_with_quotes_and_newlines(tmp_path):
    rows = [{"Id": f"003{i:015d}", "LastName": f'O"Neil\nline {i}', "DoNotCall": i % 2 == 0,
             "Account": {"Name": f"Acme {i}"} if i % 3 else None} for i in range(12_345)]
    columns = ["Id", "LastName", "DoNotCall", "Account.Name"]
    assert write(tmp_path, rows, columns) == 12_345
    seen = []
    for start in range(0, 12_345, 5_000):
        lines = page(tmp_path, columns, start, 5_000, 12_345)
        assert lines[0] == columns
        seen.extend(lines[1:])
    assert len(seen) == 12_345
    assert seen[1] == [rows[1]["Id"], 'O"Neil\nline 1', "false", "Acme 1"]
    assert seen[3][3] == ""


def test_values_are_written_as_bulk_csv_does(tmp_path):
    rows = [{"Id": "001000000000001AAA", "DoNotCall": True, "SystemModstamp": "2020-05-08T13:40:22.000+0000",
             "LastName": None}]
    write(tmp_path, rows, ["Id", "DoNotCall", "SystemModstamp", "LastName"],
          {"systemmodstamp": "datetime"})
    assert (tmp_path / "data.csv").read_text() == \
        '"001000000000001AAA","true","2020-05-08T13:40:22.000Z",""\n'


def test_empty_result_is_header_only(tmp_path):
    assert write(tmp_path, [], ["Id"]) == 0
    assert page(tmp_path, ["Id"], 0, 10, 0) == [["Id"]]


def test_ingest_values_skip_blanks_null_on_marker_and_type_known_fields():
    types = {"donotcall": "boolean", "annualrevenue": "currency", "numberofemployees": "int"}
    values = bulk2.ingest_values({"LastName": "Smith", "Phone": "", "Email": "#N/A", "DoNotCall": "true",
                                  "AnnualRevenue": "12.5", "NumberOfEmployees": "abc"}, types)
    assert values == {"LastName": "Smith", "Email": None, "DoNotCall": True, "AnnualRevenue": 12.5,
                      "NumberOfEmployees": "abc"}


def test_error_text_matches_bulk_failed_results():
    class Failure(Exception):
        error_code = "REQUIRED_FIELD_MISSING"
        message = "Required fields are missing: [LastName]"
        fields = ["LastName"]
    assert bulk2.error_text(Failure()) == \
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
