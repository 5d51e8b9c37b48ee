"""Bulk API 2.0 CSV results: paging by locator over a file, quoting, typed ingest values (pure parts)."""
import csv
import io


from emulator import bulk2

def test_locators_round_trip_and_look_like_salesforce():
    assert bulk2.encode_locator(10000) == "MTAwMDA"
    assert bulk2.decode_locator("MTAwMDA") == 10000
    assert bulk2.decode_locator("not a locator!") is None


TEXT = {"type": "string"}
COLUMNS = ["Id", "LastName", "DoNotCall", "Account.Name", "SystemModstamp", "AnnualRevenue"]
FIELDS = [{"type": "id"}, TEXT, {"type": "boolean"}, TEXT, {"type": "datetime"}, {"type": "currency"}]


def write(tmp_path, rows):
    """Rows as SQLite hands them over: (Id, LastName, DoNotCall, Account.Name, SystemModstamp, AnnualRevenue)."""
    converters = [bulk2.column_converter(f) for f in FIELDS]
    batches = (bulk2.csv_lines(rows[i:i + 1000], converters, ",") for i in range(0, len(rows), 1000))
    return bulk2.write_query_results(batches, tmp_path / "data.csv", tmp_path / "index.bin", "\n", lambda: False)


def page(tmp_path, start, size, total):
    end = min(start + size, total)
    head = bulk2.csv_line(COLUMNS, ",", "\n").encode()
    index = tmp_path / "index.bin"
    body = b"".join(bulk2.stream_range(tmp_path / "data.csv", bulk2.row_offset(index, start),
                                       bulk2.row_offset(index, end), head))
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


def test_pages_cover_every_row_once_even_with_quotes_and_newlines(tmp_path):
    rows = [(f"003{i:015d}", f'O"Neil\nline {i}', i % 2, f"Acme {i}" if i % 3 else None,
             "2020-05-08T13:40:22.000+0000", 1.5 * i) for i in range(12_345)]
    assert write(tmp_path, rows) == 12_345
    seen = []
    for start in range(0, 12_345, 5_000):
        lines = page(tmp_path, start, 5_000, 12_345)
        assert lines[0] == COLUMNS
        seen.extend(lines[1:])
    assert len(seen) == 12_345
    assert seen[1] == [rows[1][0], 'O"Neil\nline 1', "true", "Acme 1", "2020-05-08T13:40:22.000Z", "1.5"]
    assert seen[3][3] == ""


def test_values_are_written_as_bulk_csv_does(tmp_path):
    write(tmp_path, [("001000000000001AAA", None, 0, "", "2020-05-08T13:40:22.000+0000", 45000.0)])
    assert (tmp_path / "data.csv").read_text() == \
        '"001000000000001AAA","","false","","2020-05-08T13:40:22.000Z","45000"\n'


def test_empty_result_is_header_only(tmp_path):
    assert write(tmp_path, []) == 0
    assert page(tmp_path, 0, 10, 0) == [COLUMNS]


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
