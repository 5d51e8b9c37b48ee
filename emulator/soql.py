"""SOQL: a parser for the subset integrations use, compiled to one SQLite statement (pure: no I/O, no clock)."""
import dataclasses
import datetime as dt
import re
from typing import Any, Callable

from emulator import ids
from emulator.schema import NUMBER_TYPES, TEXT_TYPES, SObjectType


class SoqlError(Exception):
    """A query Salesforce would reject: error_code is MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, ..."""

    def __init__(self, error_code: str, message: str):
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:\\.|[^'\\])*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+))
  | (?P<ident>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),:])
""", re.VERBOSE)

KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc", "nulls",
            "first", "last", "limit", "offset", "null", "true", "false", "count", "group", "having", "with",
            "for", "using", "includes", "excludes", "typeof"}


@dataclasses.dataclass
class Token:
    kind: str      # string datetime date number ident op punct eof
    text: str
    pos: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "ident" else ""


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\",
            "%": "\\%", "_": "\\_"}


def _unquote(text: str) -> str:
    # \% and \_ stay escaped so LIKE can tell a literal % from a wildcard; '=' strips them again.
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def tokenize(soql: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(soql):
        match = _TOKEN.match(soql, pos)
        if not match:
            raise _syntax_error(soql, pos, soql[pos])
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "<EOF>", len(soql)))
    return tokens


def _caret(soql: str, pos: int, text: str) -> str:
    """Salesforce's error layout: the query line, a caret under the column, the row/column, the text."""
    line_start = soql.rfind("\n", 0, pos) + 1
    line_end = soql.find("\n", pos)
    line = soql[line_start:] if line_end == -1 else soql[line_start:line_end]
    row = soql.count("\n", 0, pos) + 1
    column = pos - line_start + 1
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{text}"


def _syntax_error(soql: str, pos: int, token_text: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", _caret(soql, pos, f"unexpected token: '{token_text}'"))


# ---------------------------------------------------------------- syntax tree

@dataclasses.dataclass
class FieldRef:
    path: list[str]
    pos: int


@dataclasses.dataclass
class FieldsFunction:
    """FIELDS(ALL | STANDARD | CUSTOM) in the select list."""
    which: str
    pos: int


@dataclasses.dataclass
class ChildQuery:
    """(SELECT ... FROM <child relationship> ...) in a select list."""
    query: "Query"
    pos: int


@dataclasses.dataclass
class Count:
    """An aggregate in the select list: COUNT() / COUNT(f) / COUNT_DISTINCT(f) / SUM / MIN / MAX / AVG."""
    field: FieldRef | None
    alias: str | None
    pos: int
    func: str = "COUNT"


AGGREGATE_FUNCTIONS = {"count", "count_distinct", "sum", "min", "max", "avg"}


@dataclasses.dataclass
class Literal:
    kind: str       # string number boolean null date datetime dateliteral
    value: Any
    pos: int
    text: str


@dataclasses.dataclass
class Comparison:
    field: FieldRef
    op: str         # = != < > <= >= in notin like
    value: Any      # Literal or list[Literal]


@dataclasses.dataclass
class BoolOp:
    op: str         # and or
    items: list


@dataclasses.dataclass
class Not:
    item: Any


@dataclasses.dataclass
class OrderItem:
    field: FieldRef
    descending: bool
    nulls_last: bool


@dataclasses.dataclass
class Query:
    select: list            # FieldRef | Count
    sobject: str
    sobject_pos: int
    where: Any = None
    group_by: list = dataclasses.field(default_factory=list)
    order_by: list = dataclasses.field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


class _Parser:
    def __init__(self, soql: str):
        self.soql = soql
        self.tokens = tokenize(soql)
        self.i = 0
        self.nested = False

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, tok: Token | None = None) -> SoqlError:
        tok = tok or self.tok
        return _syntax_error(self.soql, tok.pos, tok.text)

    def take(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def accept(self, word: str) -> Token | None:
        if self.tok.word == word or (self.tok.kind in ("punct", "op") and self.tok.text == word):
            return self.take()
        return None

    def expect(self, word: str) -> Token:
        tok = self.accept(word)
        if tok is None:
            raise self.fail()
        return tok

    def ident(self) -> Token:
        if self.tok.kind != "ident" or self.tok.word in KEYWORDS - {"count", "first", "last"}:
            raise self.fail()
        return self.take()

    def parse(self) -> Query:
        if not self.soql.strip():
            raise SoqlError("MALFORMED_QUERY", "SOQL statements cannot be empty or null")
        query = self.query_body()
        if self.tok.kind != "eof":
            raise self.fail()
        return query

    def query_body(self) -> Query:
        self.expect("select")
        select = [self.select_item()]
        while self.accept(","):
            select.append(self.select_item())
        self.expect("from")
        name = self.ident()
        if "." in name.text:
            raise self.fail(name)
        query = Query(select, name.text, name.pos)
        if self.accept("where"):
            query.where = self.condition()
        if self.tok.word == "group":
            query.group_by = self.by_list(self.field_ref)
        if self.tok.word == "order":
            query.order_by = self.by_list(self.order_item)
        if self.accept("limit"):
            query.limit = self.integer()
        if self.accept("offset"):
            query.offset = self.integer()
        return query

    def by_list(self, item) -> list:
        """GROUP BY / ORDER BY: the two keywords, then items separated by commas."""
        self.take()
        self.expect("by")
        items = [item()]
        while self.accept(","):
            items.append(item())
        return items

    def subquery(self) -> Query:
        """A nested SELECT up to its closing parenthesis; SOQL allows one level only."""
        if self.nested:
            raise self.fail()
        self.nested = True
        inner = self.query_body()
        self.nested = False
        self.expect(")")
        return inner

    def integer(self) -> int:
        tok = self.tok
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.fail()
        self.take()
        return int(tok.text)

    def select_item(self):
        tok = self.tok
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            return ChildQuery(self.subquery(), tok.pos)
        if tok.word == "fields" and self.tokens[self.i + 1].text == "(":
            self.take()
            self.expect("(")
            which = self.ident().text.upper()
            if which not in ("ALL", "STANDARD", "CUSTOM"):
                raise self.fail(self.tokens[self.i - 1])
            self.expect(")")
            return FieldsFunction(which, tok.pos)
        if tok.word in AGGREGATE_FUNCTIONS and self.tokens[self.i + 1].text == "(":
            self.take()
            self.expect("(")
            field = None if self.tok.text == ")" and tok.word == "count" else self.field_ref()
            self.expect(")")
            alias = None
            if self.tok.kind == "ident" and self.tok.word not in KEYWORDS:
                alias = self.take().text
            return Count(field, alias, tok.pos, tok.word.upper())
        return self.field_ref()

    def field_ref(self) -> FieldRef:
        tok = self.ident()
        return FieldRef(tok.text.split("."), tok.pos)

    def order_item(self) -> OrderItem:
        field = self.field_ref()
        descending = False
        if self.accept("desc"):
            descending = True
        else:
            self.accept("asc")
        nulls_last = descending
        if self.accept("nulls"):
            if self.accept("last"):
                nulls_last = True
            else:
                self.expect("first")
                nulls_last = False
        return OrderItem(field, descending, nulls_last)

    def condition(self):
        items = [self.unary()]
        op = None
        while self.tok.word in ("and", "or"):
            word = self.tok.word
            if op is not None and word != op:
                # SOQL refuses "a AND b OR c": mixing needs parentheses.
                raise self.fail()
            op = word
            self.take()
            items.append(self.unary())
        return items[0] if op is None else BoolOp(op, items)

    def unary(self):
        if self.accept("not"):
            return Not(self.unary())
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        field = self.field_ref()
        tok = self.tok
        if tok.kind == "op":
            self.take()
            op = {"<>": "!="}.get(tok.text, tok.text)
            return Comparison(field, op, self.literal())
        if tok.word == "like":
            self.take()
            return Comparison(field, "like", self.literal())
        negated = bool(self.accept("not"))
        if self.accept("in"):
            self.expect("(")
            if self.tok.word == "select":
                return Comparison(field, "notin" if negated else "in", self.subquery())
            values = [self.literal()]
            while self.accept(","):
                values.append(self.literal())
            self.expect(")")
            return Comparison(field, "notin" if negated else "in", values)
        raise self.fail()

    def literal(self) -> Literal:
        tok = self.take()
        if tok.kind == "string":
            return Literal("string", _unquote(tok.text), tok.pos, tok.text)
        if tok.kind == "number":
            value = float(tok.text) if any(c in tok.text for c in ".") else int(tok.text)
            return Literal("number", value, tok.pos, tok.text)
        if tok.kind == "date":
            return Literal("date", tok.text, tok.pos, tok.text)
        if tok.kind == "datetime":
            return Literal("datetime", _normalize_datetime(tok.text), tok.pos, tok.text)
        if tok.word in ("true", "false"):
            return Literal("boolean", tok.word == "true", tok.pos, tok.text)
        if tok.word == "null":
            return Literal("null", None, tok.pos, tok.text)
        if tok.kind == "ident" and tok.text.upper() in DATE_LITERALS:
            name, n = tok.text.upper(), None
            if DATE_LITERALS[name]:
                self.expect(":")
                n = self.integer()
            return Literal("dateliteral", (name, n), tok.pos, tok.text)
        raise self.fail(tok)


def parse(soql: str) -> Query:
    return _Parser(soql).parse()


# ---------------------------------------------------------------- values

SF_DATETIME = "%Y-%m-%dT%H:%M:%S"


def format_datetime(value: dt.datetime) -> str:
    """Salesforce REST form: 2020-03-11T11:49:59.000+0000 (UTC, milliseconds)."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime(SF_DATETIME) + f".{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> dt.datetime:
    """An ISO-8601 date-time with a zone (Z, +hh:mm, +hhmm) as an aware datetime; ValueError otherwise."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?", text.strip())
    if not match:
        raise ValueError(text)
    day, time_, frac, zone = match.groups()
    micro = int((frac or ".0")[1:7].ljust(6, "0"))
    if zone in (None, "Z"):
        tz = dt.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    value = dt.datetime.fromisoformat(f"{day}T{time_}").replace(microsecond=micro, tzinfo=tz)
    return value


def _normalize_datetime(text: str) -> str:
    return format_datetime(parse_datetime(text))


# name -> takes ":n"
DATE_LITERALS = {"YESTERDAY": False, "TODAY": False, "TOMORROW": False, "LAST_WEEK": False, "THIS_WEEK": False,
                 "NEXT_WEEK": False, "LAST_MONTH": False, "THIS_MONTH": False, "NEXT_MONTH": False,
                 "LAST_90_DAYS": False, "NEXT_90_DAYS": False, "THIS_YEAR": False, "LAST_YEAR": False,
                 "NEXT_YEAR": False, "LAST_N_DAYS": True, "NEXT_N_DAYS": True, "N_DAYS_AGO": True}


def date_range(name: str, n: int | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """[start, end) days covered by a relative date literal (UTC; Salesforce uses the user's zone)."""
    day = dt.timedelta(days=1)
    week_start = today - dt.timedelta(days=(today.weekday() + 1) % 7)     # weeks start on Sunday (en_US)
    month_start = today.replace(day=1)
    next_month = (month_start + dt.timedelta(days=32)).replace(day=1)
    table = {
        "YESTERDAY": (today - day, today), "TODAY": (today, today + day), "TOMORROW": (today + day, today + 2 * day),
        "THIS_WEEK": (week_start, week_start + 7 * day), "LAST_WEEK": (week_start - 7 * day, week_start),
        "NEXT_WEEK": (week_start + 7 * day, week_start + 14 * day),
        "THIS_MONTH": (month_start, next_month),
        "LAST_MONTH": ((month_start - day).replace(day=1), month_start),
        "NEXT_MONTH": (next_month, (next_month + dt.timedelta(days=32)).replace(day=1)),
        # LAST_90_DAYS/LAST_N_DAYS include today; NEXT_N_DAYS starts tomorrow (SOQL date formats doc).
        "LAST_90_DAYS": (today - 90 * day, today + day), "NEXT_90_DAYS": (today + day, today + 91 * day),
        "THIS_YEAR": (dt.date(today.year, 1, 1), dt.date(today.year + 1, 1, 1)),
        "LAST_YEAR": (dt.date(today.year - 1, 1, 1), dt.date(today.year, 1, 1)),
        "NEXT_YEAR": (dt.date(today.year + 1, 1, 1), dt.date(today.year + 2, 1, 1)),
    }
    if name == "LAST_N_DAYS":
        return today - n * day, today + day
    if name == "NEXT_N_DAYS":
        return today + day, today + (n + 1) * day
    if name == "N_DAYS_AGO":
        return today - n * day, today - (n - 1) * day
    return table[name]


# ---------------------------------------------------------------- compile to SQL

def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_statement(template: str, *names: str, **fragments: str) -> str:
    """A statement for SQLite, which binds values but not names: each `{}` is a name, quoted here, so no
    caller can forget to; `fragments` are pieces already built from quoted names (column lists, types)."""
    return template.format(*(quote(n) for n in names), **fragments)


@dataclasses.dataclass
class Column:
    """One selected value: where it goes in the output record and how to convert it."""
    path: list[str]          # canonical output path, e.g. ["Account", "Name"]
    field: dict              # describe of the field
    index: int               # position in the SQL row


@dataclasses.dataclass
class Plan:
    sobject: SObjectType
    sql: str
    params: list
    count_sql: str
    count_params: list
    columns: list[Column]
    parents: dict            # tuple(rel path) -> (SObjectType, index of the parent's Id in the SQL row)
    kind: str                # rows | count | aggregate
    aggregate_names: list[str]
    limit: int | None
    offset: int
    children: list = dataclasses.field(default_factory=list)     # ChildPlan per subquery
    aggregate_fields: list = dataclasses.field(default_factory=list)   # per aggregate_names: field or None
    select_sql: list[str] = dataclasses.field(default_factory=list)  # the SQL row's expressions, in order
    from_sql: str = ""       # FROM with the parents' joins (base table alias t)
    tail_sql: str = ""       # what follows the select list in `sql`: FROM, WHERE, ORDER BY, LIMIT

    def reselect(self, expressions: list[str]) -> str:
        """The same rows in the same order, with other expressions selected (over select_sql's columns)."""
        return f"SELECT {', '.join(expressions)} {self.tail_sql}"

    def by_rowid(self, count: int) -> str:
        """The SQL rows of `count` base rows named by rowid (bound to the ?s), each led by that rowid."""
        marks = ", ".join("?" * count)
        return f"SELECT t.rowid, {', '.join(self.select_sql)} {self.from_sql} WHERE t.rowid IN ({marks})"

    def aggregate_record(self, row: tuple) -> dict:
        """An AggregateResult: grouped fields by name, aggregates by alias or expr0, expr1, ..."""
        record: dict = {"attributes": {"type": "AggregateResult"}}
        for name, field, value in zip(self.aggregate_names, self.aggregate_fields, row):
            record[name] = to_json_value(field, value) if field is not None else value
        return record

    def record(self, row: tuple, attributes: Callable[[str, str], dict] | None = None,
               children: dict | None = None) -> dict:
        """The output record for one SQL row; `attributes(type, id)` adds Salesforce's "attributes" blocks;
        `children` maps a subquery's relationship name to {parent Id: [child records]}."""
        record: dict = {}
        if attributes is not None:
            record["attributes"] = attributes(self.sobject.name, row[-1])
        dead_parents = set()
        for column in self.columns:
            target = record
            for depth, part in enumerate(column.path[:-1]):
                rel = tuple(column.path[:depth + 1])
                if rel in dead_parents:
                    target = None
                    break
                if part not in target:
                    parent_type, id_index = self.parents[rel]
                    if row[id_index] is None:
                        target[part] = None
                        dead_parents.add(rel)
                        target = None
                        break
                    target[part] = {} if attributes is None else {
                        "attributes": attributes(parent_type.name, row[id_index])}
                target = target[part]
            if target is not None:
                target[column.path[-1]] = to_json_value(column.field, row[column.index])
        for child in self.children:
            found = (children or {}).get(child.name, {}).get(row[-1])
            # A parent without children gets null, not an empty result (as real responses show).
            record[child.name] = None if not found else {"totalSize": len(found), "done": True, "records": found}
        return record


@dataclasses.dataclass
class ChildPlan:
    """A child subquery: run once per page of parents with their Ids bound to `IN (...)`."""
    name: str                # relationship name as output, e.g. "Contacts"
    plan: Plan               # compiled against the child type; its last two columns are parent Id, child Id
    limit: int | None

    def sql(self, parent_count: int) -> str:
        return self.plan.sql.replace("__PARENT_IDS__", ", ".join("?" for _ in range(parent_count)))


def to_json_value(field: dict, value):
    """A stored SQLite value as Salesforce's REST JSON value."""
    if value is None:
        return None
    kind = field["type"]
    if kind == "boolean":
        return bool(value)
    if kind in ("int", "long"):
        return int(value)
    if kind in NUMBER_TYPES:
        value = float(value)
        return int(value) if value.is_integer() and abs(value) < 1e15 else value
    return value


_TYPE_WORDS = {"boolean": "boolean", "date": "date", "datetime": "dateTime", "int": "integer", "double": "double",
               "currency": "double", "percent": "double", "long": "long", "id": "id", "reference": "id"}


class _Compiler:
    def __init__(self, soql: str, query: Query, types: dict[str, SObjectType], today: dt.date):
        self.soql = soql
        self.query = query
        self.types = types
        self.today = today
        self.base = types.get(query.sobject.lower())
        if self.base is None:
            raise SoqlError("INVALID_TYPE", _caret(
                soql, query.sobject_pos,
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
                "call for the appropriate names."))
        self.joins: dict[tuple, tuple[str, SObjectType]] = {}     # canonical rel path -> (alias, type)
        self.children: list[ChildPlan] = []
        self.aggregate_fields: list[dict | None] = []
        self.parent_field: dict | None = None     # set when compiling a child subquery
        self.join_sql: list[str] = []
        self.params: list = []

    def resolve(self, ref: FieldRef) -> tuple[str, dict, list[str]]:
        """SQL expression, field describe and canonical path of a (possibly dotted) field reference."""
        parts = list(ref.path)
        if len(parts) > 1 and parts[0].lower() == self.base.name.lower() and not self.base.relationship(parts[0]):
            parts = parts[1:]
        current, alias, canonical = self.base, "t", []
        for part in parts[:-1]:
            rel_field = current.relationship(part)
            if rel_field is None or rel_field["referenceTo"][0].lower() not in self.types:
                raise SoqlError("INVALID_FIELD", _caret(
                    self.soql, ref.pos,
                    f"Didn't understand relationship '{part}' in field path. If you are attempting to use a custom "
                    "relationship, be sure to append the '__r' after the custom relationship name. Please reference "
                    "your WSDL or the describe call for the appropriate names."))
            canonical.append(rel_field["relationshipName"])
            key = tuple(canonical)
            if key not in self.joins:
                target = self.types[rel_field["referenceTo"][0].lower()]
                new_alias = f"p{len(self.joins) + 1}"
                self.join_sql.append(f"LEFT JOIN {quote(target.table)} {new_alias} "
                                     f"ON {new_alias}.\"Id\" = {alias}.{quote(rel_field['name'])}")
                self.joins[key] = (new_alias, target)
            alias, current = self.joins[key]
        field = current.field(parts[-1])
        if field is None:
            raise SoqlError("INVALID_FIELD", _caret(
                self.soql, ref.pos,
                f"No such column '{parts[-1]}' on entity '{current.name}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
                "describe call for the appropriate names."))
        canonical.append(field["name"])
        return f"{alias}.{quote(field['name'])}", field, canonical

    def type_error(self, field: dict, literal: Literal, quoted: bool) -> SoqlError:
        word = _TYPE_WORDS.get(field["type"], "string")
        enclosed = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return SoqlError("INVALID_FIELD", _caret(
            self.soql, literal.pos,
            f"value of filter criterion for field '{field['name']}' must be of type {word} and {enclosed}"))

    def value(self, field: dict, literal: Literal):
        """The SQL parameter for a literal compared with `field`, or a (start, end) range for date literals."""
        kind = field["type"]
        if literal.kind == "null":
            return None
        if kind in TEXT_TYPES:
            if literal.kind != "string":
                raise self.type_error(field, literal, quoted=True)
            if kind in ("id", "reference"):
                try:
                    return ids.to18(literal.value)
                except ValueError:
                    raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", _caret(
                        self.soql, literal.pos, f"invalid ID field: {literal.value}")) from None
            return literal.value
        if kind == "boolean":
            if literal.kind != "boolean":
                raise self.type_error(field, literal, quoted=False)
            return int(literal.value)
        if kind in NUMBER_TYPES:
            if literal.kind != "number":
                raise self.type_error(field, literal, quoted=False)
            return literal.value
        if kind == "date":
            if literal.kind == "date":
                return literal.value
            if literal.kind == "dateliteral":
                start, end = date_range(*literal.value, self.today)
                return (start.isoformat(), end.isoformat())
            raise self.type_error(field, literal, quoted=False)
        if kind == "datetime":
            if literal.kind == "datetime":
                return literal.value
            if literal.kind == "dateliteral":
                start, end = date_range(*literal.value, self.today)
                return tuple(format_datetime(dt.datetime.combine(d, dt.time(), dt.timezone.utc))
                             for d in (start, end))
            raise self.type_error(field, literal, quoted=False)
        raise self.type_error(field, literal, quoted=literal.kind != "string")

    def condition(self, node) -> str:
        if isinstance(node, BoolOp):
            joined = f" {node.op.upper()} ".join(self.condition(item) for item in node.items)
            return f"({joined})"
        if isinstance(node, Not):
            # SOQL has two-valued logic: NOT of a comparison with a null field is true.
            return f"(NOT IFNULL({self.condition(node.item)}, 0))"
        return self.comparison(node)

    def comparison(self, node: Comparison) -> str:
        column, field, _ = self.resolve(node.field)
        if isinstance(node.value, Query):
            return self.semi_join(column, field, node)
        if node.op in ("in", "notin"):
            values = [self.value(field, v) for v in node.value]
            if any(isinstance(v, tuple) for v in values):
                raise SoqlError("MALFORMED_QUERY", _caret(self.soql, node.field.pos,
                                                          "date literals are not supported in IN lists"))
            present = [v for v in values if v is not None]
            has_null = len(present) != len(values)
            self.params.extend(present)
            marks = ", ".join("?" for _ in present)
            if node.op == "in":
                parts = [f"{column} IN ({marks})"] if present else []
                if has_null:
                    parts.append(f"{column} IS NULL")
                return "(" + (" OR ".join(parts) or "0") + ")"
            parts = [f"{column} NOT IN ({marks})"] if present else []
            parts.append(f"{column} IS NOT NULL" if has_null else f"{column} IS NULL")
            joiner = " AND " if has_null else " OR "
            return "(" + joiner.join(parts) + ")"
        if node.op == "like":
            if field["type"] not in TEXT_TYPES or node.value.kind != "string":
                raise SoqlError("INVALID_FIELD", _caret(
                    self.soql, node.value.pos,
                    f"invalid operator on {_TYPE_WORDS.get(field['type'], field['type'])} field: {field['name']}"))
            self.params.append(node.value.value)
            return f"({column} LIKE ? ESCAPE '\\')"
        value = self.value(field, node.value)
        if isinstance(value, str) and node.value.kind == "string":
            value = value.replace("\\%", "%").replace("\\_", "_")
        if value is None:
            if node.op == "=":
                return f"({column} IS NULL)"
            if node.op == "!=":
                return f"({column} IS NOT NULL)"
            return "(0)"
        if isinstance(value, tuple):
            start, end = value
            templates = {"=": "({c} >= ? AND {c} < ?)", "!=": "({c} IS NULL OR {c} < ? OR {c} >= ?)",
                         "<": "({c} < ?)", "<=": "({c} < ?)", ">": "({c} >= ?)", ">=": "({c} >= ?)"}
            chosen = {"=": [start, end], "!=": [start, end], "<": [start], "<=": [end], ">": [end], ">=": [start]}
            self.params.extend(chosen[node.op])
            return templates[node.op].format(c=column)
        self.params.append(value)
        if node.op == "!=":
            return f"({column} IS NOT ?)"
        return f"({column} {node.op} ?)"

    def expand_fields_functions(self, query: Query) -> list[FieldRef]:
        items = []
        for item in query.select:
            if not isinstance(item, FieldsFunction):
                items.append(item)
                continue
            if item.which != "STANDARD" and (query.limit is None or query.limit > 200):
                raise SoqlError("MALFORMED_QUERY", _caret(
                    self.soql, item.pos, "The SOQL FIELDS function must have a LIMIT of at most 200"))
            wanted = [f["name"] for f in self.base.describe["fields"]
                      if item.which == "ALL" or f["custom"] == (item.which == "CUSTOM")]
            already = {tuple(p.lower() for p in i.path) for i in items if isinstance(i, FieldRef)}
            items.extend(FieldRef([name], item.pos) for name in wanted if (name.lower(),) not in already)
        return items

    def semi_join(self, column: str, field: dict, node: Comparison) -> str:
        """`Id IN (SELECT AccountId FROM Contact WHERE ...)`: one Id or reference field, compiled as a SQL subselect."""
        inner = node.value
        if field["type"] not in ("id", "reference") or len(inner.select) != 1 or not isinstance(
                inner.select[0], FieldRef):
            raise SoqlError("MALFORMED_QUERY", _caret(self.soql, node.field.pos,
                                                      "semi-join subselects must select one Id or reference field"))
        compiler = _Compiler(self.soql, inner, self.types, self.today)
        inner_column, inner_field, _ = compiler.resolve(inner.select[0])
        if inner_field["type"] not in ("id", "reference"):
            raise SoqlError("MALFORMED_QUERY", _caret(self.soql, inner.select[0].pos,
                                                      "semi-join subselects must select one Id or reference field"))
        # NOT IN over a list holding NULL matches nothing in SQL; SOQL ignores the nulls.
        where = ['t."IsDeleted" = 0', f"{inner_column} IS NOT NULL"]
        if inner.where is not None:
            where.append(compiler.condition(inner.where))
        # Uncorrelated, so the inner aliases (t, p1, ...) may shadow the outer ones: SQL scoping resolves them.
        sql = (f"SELECT {inner_column} FROM {quote(compiler.base.table)} t {' '.join(compiler.join_sql)} "
               f"WHERE {' AND '.join(where)}")
        self.params.extend(compiler.params)
        operator = "NOT IN" if node.op == "notin" else "IN"
        return f"({column} {operator} ({sql}))"

    def child_plan(self, item: ChildQuery, include_deleted: bool) -> "ChildPlan":
        relation = next((r for r in self.base.describe.get("childRelationships", [])
                         if (r.get("relationshipName") or "").lower() == item.query.sobject.lower()), None)
        child_type = self.types.get(relation["childSObject"].lower()) if relation else None
        if child_type is None:
            raise SoqlError("INVALID_TYPE", _caret(
                self.soql, item.query.sobject_pos,
                f"Didn't understand relationship '{item.query.sobject}' in FROM part of query call. If you are "
                "attempting to use a custom relationship, be sure to append the '__r' after the custom "
                "relationship name. Please reference your WSDL or the describe call for the appropriate names."))
        inner = dataclasses.replace(item.query, sobject=child_type.name, limit=None, offset=None)
        compiler = _Compiler(self.soql, inner, self.types, self.today)
        compiler.parent_field = child_type.field(relation["field"])
        plan = compiler.compile(include_deleted)
        return ChildPlan(relation["relationshipName"], plan, item.query.limit)

    def compile(self, include_deleted: bool) -> Plan:
        query = self.query
        columns, select_sql, kind, aggregate_names = [], [], "rows", []
        counts = [item for item in query.select if isinstance(item, Count)]
        grouped: list[str] = []
        if counts or query.group_by:
            kind = "count" if (len(query.select) == 1 and counts and counts[0].field is None
                               and not query.group_by) else "aggregate"
            if kind == "count":
                select_sql.append("COUNT(*)")
                aggregate_names.append("expr0")
            else:
                grouped = [self.resolve(ref)[0] for ref in query.group_by]
                expr = 0
                for item in query.select:
                    if isinstance(item, Count):
                        if item.field is None:
                            raise _syntax_error(self.soql, item.pos, "COUNT")
                        column, field, _ = self.resolve(item.field)
                        function = "COUNT(DISTINCT" if item.func == "COUNT_DISTINCT" else f"{item.func}("
                        select_sql.append(f"{function} {column})")
                        # "expr<i>" counts only the aggregates without an alias (SOQL's implied aliases).
                        aggregate_names.append(item.alias or f"expr{expr}")
                        self.aggregate_fields.append(field if item.func in ("MIN", "MAX") else None)
                        expr += 0 if item.alias else 1
                        continue
                    if not isinstance(item, FieldRef):
                        raise _syntax_error(self.soql, item.pos, "(")
                    column, field, path = self.resolve(item)
                    if column not in grouped:
                        raise SoqlError("MALFORMED_QUERY", _caret(
                            self.soql, item.pos, "Field must be grouped or aggregated: " + ".".join(item.path)))
                    select_sql.append(column)
                    aggregate_names.append(path[-1])
                    self.aggregate_fields.append(field)
        else:
            seen = set()
            for item in self.expand_fields_functions(query):
                if isinstance(item, ChildQuery):
                    self.children.append(self.child_plan(item, include_deleted))
                    continue
                column, field, path = self.resolve(item)
                if tuple(path) in seen:
                    raise SoqlError("MALFORMED_QUERY", _caret(self.soql, item.pos,
                                                              "duplicate field selected: " + ".".join(path)))
                seen.add(tuple(path))
                columns.append(Column(path, field, len(select_sql)))
                select_sql.append(column)
        where = []
        if not include_deleted:
            where.append('t."IsDeleted" = 0')
        if query.where is not None:
            where.append(self.condition(query.where))
        if self.parent_field is not None:
            where.append(f"t.{quote(self.parent_field['name'])} IN (__PARENT_IDS__)")
        order = []
        for item in query.order_by:
            column, _, _ = self.resolve(item.field)
            order.append(f"{column} {'DESC' if item.descending else 'ASC'} "
                         f"NULLS {'LAST' if item.nulls_last else 'FIRST'}")
        parents = {}
        if kind == "rows":
            for rel, (alias, target) in self.joins.items():
                parents[rel] = (target, len(select_sql))
                select_sql.append(f'{alias}."Id"')
            if self.parent_field is not None:
                select_sql.append(f"t.{quote(self.parent_field['name'])}")
            select_sql.append('t."Id"')
            if order:
                # Ties broken by rowid (creation order, like Id) keep pages deterministic, and an ORDER BY
                # on an indexed field (SystemModstamp) still walks its index: rowid is the index's tail.
                # With no ORDER BY SQLite may pick the best index instead of scanning in Id order.
                order.append("t.rowid ASC")
        offset = query.offset or 0
        if offset > 2000:
            raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        from_sql = f"FROM {quote(self.base.table)} t " + " ".join(self.join_sql)
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        tail = f"{from_sql}{where_sql}"
        if grouped:
            tail += " GROUP BY " + ", ".join(grouped)
        if kind != "count":
            if order:
                tail += " ORDER BY " + ", ".join(order)
            if query.limit is not None or offset:
                tail += f" LIMIT {query.limit if query.limit is not None else -1} OFFSET {offset}"
        sql = f"SELECT {', '.join(select_sql)} {tail}"
        count_sql = f"SELECT COUNT(*) FROM (SELECT 1 {from_sql}{where_sql}"
        if query.limit is not None or offset:
            count_sql += f" LIMIT {query.limit if query.limit is not None else -1} OFFSET {offset}"
        count_sql += ")"
        return Plan(self.base, sql, list(self.params), count_sql, list(self.params), columns, parents, kind,
                    aggregate_names, query.limit, offset, self.children, self.aggregate_fields, select_sql,
                    from_sql, tail)


def compile_query(soql: str, types: dict[str, SObjectType], *, include_deleted: bool = False,
                  today: dt.date) -> Plan:
    """Parse `soql` and compile it against the org's types; raises SoqlError as Salesforce words it."""
    if soql is None or not soql.strip():
        raise SoqlError("MALFORMED_QUERY", "SOQL statements cannot be empty or null")
    query = parse(soql)
    return _Compiler(soql, query, types, today).compile(include_deleted)
