"""Bulk 2.0 query results that SQLite renders are, byte for byte, what the reference rendering (column_converter
and csv_line over the stored values) gives: awkward stored values included, whatever the batch boundaries."""
import pytest

from emulator import bulk2
from emulator.store import Org

SOQL = ("SELECT Id, Name, Amount__c, Quantity__c, Paid__c, Paid_At__c, Invoice_Date__c, Notes__c, Account__r.Name, "
        "IsDeleted FROM Invoice__c ORDER BY Name")


@pytest.fixture
def org(tmp_path):
    store = Org(tmp_path, "00D5g000004EMUL")
    user = store.default_user_id
    acme = store.create("Account", {"Name": 'Acme "Quoted" Ltd'}, client=None, user_id=user)["Id"]
    invoices = [
        {"Name": "A plain", "Amount__c": 1250000, "Quantity__c": 3, "Paid__c": True,
         "Paid_At__c": "2020-05-08T13:40:22.000Z", "Invoice_Date__c": "2020-05-08", "Notes__c": "ok",
         "Account__c": acme},
        {"Name": 'B said "hi"', "Amount__c": 12.5, "Notes__c": 'two\nlines, "quoted"',
         "Account__c": acme},
        {"Name": "C Zoë 日本", "Quantity__c": -0.0, "Paid__c": False},
        {"Name": "D nulls"},
        {"Name": "E edges", "Amount__c": -2.0, "Quantity__c": 1e15 - 1, "Notes__c": "tab\there; semi"},
        {"Name": "F stored oddly"},
    ]
    for values in invoices:
        store.create("Invoice__c", values, client=None, user_id=user)
    with store.transaction() as conn:
        # shapes no API write leaves, which the SQL rendering must hand to the reference one
        conn.execute('UPDATE "so_Invoice__c" SET "Paid__c" = 2, "Paid_At__c" = \'2020-05-08T08:40:22.000-0500\', '
                     '"Quantity__c" = 7 WHERE "Name" = \'F stored oddly\'')
        conn.execute('UPDATE "so_Invoice__c" SET "Amount__c" = 1e16 WHERE "Name" LIKE \'C %\'')
        conn.execute('UPDATE "so_Invoice__c" SET "Quantity__c" = 0.1 + 0.2 WHERE "Name" LIKE \'B %\'')
    yield store
    store.close()


def reference(org, plan, delimiter):
    with org.snapshot() as conn:
        rows = conn.execute(plan.sql, plan.params).fetchall()
    converters = [bulk2.column_converter(column.field) for column in plan.columns]
    return bulk2.csv_lines([[row[c.index] for c in plan.columns] for row in rows], converters, delimiter)


def rendered(org, plan, delimiter, batch_rows):
    with org.snapshot() as conn:
        return [line for lines in bulk2.query_lines(conn, plan, delimiter, batch_rows) for line in lines]


@pytest.mark.parametrize("delimiter", [",", "|", "\t"])
@pytest.mark.parametrize("batch_rows", [1, 4, 100])
def test_sql_rendering_matches_the_reference(org, delimiter, batch_rows):
    plan = org.compile(SOQL)
    expected = reference(org, plan, delimiter)
    assert len(expected) == 6
    assert rendered(org, plan, delimiter, batch_rows) == expected


def test_values_render_as_bulk_csv_does(org):
    lines = rendered(org, org.compile(SOQL), ",", 100)
    by_name = {line.split('","')[1]: line for line in lines}
    assert by_name["A plain"].endswith(
        '"A plain","1250000","3","true","2020-05-08T13:40:22.000Z","2020-05-08","ok","Acme ""Quoted"" Ltd","false"')
    assert '"B said ""hi""","12.5","0.30000000000000004","false","","","two\nlines, ""quoted"""' \
        in by_name['B said ""hi""']
    assert '"C Zoë 日本","1e+16","0","false"' in by_name["C Zoë 日本"]
    assert by_name["D nulls"].endswith('"D nulls","","","false","","","","","false"')
    assert '"E edges","-2","999999999999999"' in by_name["E edges"]
    assert '"F stored oddly","","7","true","2020-05-08T08:40:22.000-0500"' in by_name["F stored oddly"]


def test_more_columns_than_one_sqlite_call_takes(org):
    fields = ", ".join(["Name", *[f"Account__r.{f}" for f in ("Name", "Id", "Type", "Industry")]] +
                       ["Amount__c", "Quantity__c", "Paid__c", "Paid_At__c", "Notes__c", "Id", "IsDeleted"])
    plan = org.compile(f"SELECT {fields} FROM Invoice__c")
    plan.columns = plan.columns * 12          # 144 values a line: past SQLite's 127 arguments a function
    assert rendered(org, plan, ",", 2) == reference(org, plan, ",")
