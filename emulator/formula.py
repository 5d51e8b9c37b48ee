"""A small formula language for validation rules and trigger conditions (pure): parse once, evaluate per record.

    Amount < 0 && ISBLANK(Description)          comparisons = == != <> < <= > >=, arithmetic + - * /
    Name & ' (' & Account__r.Name & ')'         text concatenation (a blank operand is empty text)
    Parent__r.Field                             a field of the record's parent (formula fields: emulator/calculated.py)
    AND(a, b, ...)  OR(a, b, ...)  NOT(a)        also infix && || and prefix !
    ISBLANK(x)  LEN(x)  ISCHANGED(Field)  ISNEW()  REGEX(text, 'pattern')  PRIORVALUE(Field)
    'text' or "text", numbers, TRUE, FALSE, NULL; field names are case-insensitive.

A comparison with a blank operand is false (= and != compare blanks as equal to each other), as a
Salesforce formula treats blank fields as blanks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"""\s*(?:
    (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>&&|\|\||==|!=|<>|<=|>=|[=<>!+\-*/(),&])
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.VERBOSE)
_FUNCTIONS = {"AND", "OR", "NOT", "ISBLANK", "LEN", "ISCHANGED", "ISNEW", "REGEX", "PRIORVALUE"}
MAX_LENGTH = 4000


class FormulaError(ValueError):
    """The formula does not parse; the message says where."""


@dataclass(frozen=True)
class Formula:
    text: str
    tree: tuple

    def fields(self) -> set[str]:
        """Field names the formula reads (lower case)."""
        found: set[str] = set()

        def walk(node):
            if node[0] == "field":
                found.add(node[1])
            for child in node[1:]:
                if isinstance(child, tuple):
                    walk(child)
                elif isinstance(child, list):
                    for item in child:
                        walk(item)
        walk(self.tree)
        return found

    def evaluate(self, record: dict, prior: dict | None = None):
        """The formula's value for `record` (field -> JSON value); `prior`: the stored record on an update."""
        return _eval(self.tree, {k.lower(): v for k, v in record.items()},
                     None if prior is None else {k.lower(): v for k, v in prior.items()})


def parse(text: str) -> Formula:
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("a formula is required")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"a formula has at most {MAX_LENGTH} characters")
    tokens = _tokenize(text)
    parser = _Parser(tokens)
    tree = parser.expression()
    if parser.peek() is not None:
        raise FormulaError(f"unexpected {parser.peek()[1]!r} at position {parser.peek()[2]}")
    return Formula(text, tree)


def _tokenize(text: str) -> list[tuple]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FormulaError(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.i = tokens, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None):
        token = self.peek()
        if token is None:
            raise FormulaError(f"formula ends early{'; expected ' + repr(value) if value else ''}")
        if value is not None and not (token[0] == "op" and token[1] == value):
            raise FormulaError(f"expected {value!r} at position {token[2]}, found {token[1]!r}")
        self.i += 1
        return token

    def _at(self, *ops) -> bool:
        token = self.peek()
        return token is not None and token[0] == "op" and token[1] in ops

    def expression(self):
        node = self.conjunction()
        while self._at("||"):
            self.take()
            node = ("or", [node, self.conjunction()])
        return node

    def conjunction(self):
        node = self.negation()
        while self._at("&&"):
            self.take()
            node = ("and", [node, self.negation()])
        return node

    def negation(self):
        if self._at("!"):
            self.take()
            return ("not", self.negation())
        return self.comparison()

    def comparison(self):
        node = self.concatenation()
        if self._at("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            op = self.take()[1]
            op = {"==": "=", "<>": "!="}.get(op, op)
            node = ("cmp", op, node, self.concatenation())
        return node

    def concatenation(self):
        node = self.sum()
        while self._at("&"):
            self.take()
            node = ("concat", node, self.sum())
        return node

    def sum(self):
        node = self.product()
        while self._at("+", "-"):
            op = self.take()[1]
            node = ("arith", op, node, self.product())
        return node

    def product(self):
        node = self.unary()
        while self._at("*", "/"):
            op = self.take()[1]
            node = ("arith", op, node, self.unary())
        return node

    def unary(self):
        if self._at("-"):
            self.take()
            return ("arith", "-", ("lit", 0), self.unary())
        return self.primary()

    def primary(self):
        token = self.take()
        kind, value, pos = token
        if kind == "number":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "string":
            return ("lit", re.sub(r"\\(.)", r"\1", value[1:-1]))
        if kind == "op" and value == "(":
            node = self.expression()
            self.take(")")
            return node
        if kind == "name":
            upper = value.upper()
            if self._at("("):
                if upper not in _FUNCTIONS:
                    raise FormulaError(f"unknown function {value} at position {pos}")
                return self.call(upper, pos)
            if upper in ("TRUE", "FALSE"):
                return ("lit", upper == "TRUE")
            if upper == "NULL":
                return ("lit", None)
            return ("field", value.lower())
        raise FormulaError(f"unexpected {value!r} at position {pos}")

    def call(self, name: str, pos: int):
        self.take("(")
        args = []
        if not self._at(")"):
            args.append(self.expression())
            while self._at(","):
                self.take()
                args.append(self.expression())
        self.take(")")
        arity = {"NOT": 1, "ISBLANK": 1, "LEN": 1, "ISCHANGED": 1, "PRIORVALUE": 1, "ISNEW": 0, "REGEX": 2}
        if name in arity and len(args) != arity[name]:
            raise FormulaError(f"{name} takes {arity[name]} argument(s), not {len(args)} (position {pos})")
        if name in ("AND", "OR") and not args:
            raise FormulaError(f"{name} needs at least one argument (position {pos})")
        if name in ("ISCHANGED", "PRIORVALUE") and args[0][0] != "field":
            raise FormulaError(f"{name} takes a field name (position {pos})")
        if name == "REGEX":
            if args[1][0] != "lit" or not isinstance(args[1][1], str):
                raise FormulaError(f"REGEX takes a text literal pattern (position {pos})")
            try:
                re.compile(args[1][1])
            except re.error as exc:
                raise FormulaError(f"REGEX pattern does not compile: {exc}") from None
        return ("call", name, args)


def _blank(value) -> bool:
    return value is None or value == ""


def _eval(node, record: dict, prior: dict | None):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "field":
        return record.get(node[1])
    if kind == "not":
        return not _truth(_eval(node[1], record, prior))
    if kind == "and":
        return all(_truth(_eval(n, record, prior)) for n in node[1])
    if kind == "or":
        return any(_truth(_eval(n, record, prior)) for n in node[1])
    if kind == "cmp":
        return _compare(node[1], _eval(node[2], record, prior), _eval(node[3], record, prior))
    if kind == "concat":
        return "".join("" if _blank(v) else _text(v) for v in (_eval(node[1], record, prior),
                                                                 _eval(node[2], record, prior)))
    if kind == "arith":
        left, right = _eval(node[2], record, prior), _eval(node[3], record, prior)
        if _blank(left) or _blank(right) or not all(_is_number(v) for v in (left, right)):
            return None
        if node[1] == "/":
            return None if right == 0 else left / right
        return {"+": left + right, "-": left - right, "*": left * right}[node[1]]
    return _call(node[1], node[2], record, prior)


def _call(name: str, args: list, record: dict, prior: dict | None):
    if name == "AND":
        return all(_truth(_eval(a, record, prior)) for a in args)
    if name == "OR":
        return any(_truth(_eval(a, record, prior)) for a in args)
    if name == "NOT":
        return not _truth(_eval(args[0], record, prior))
    if name == "ISNEW":
        return prior is None
    if name == "ISCHANGED":
        return prior is not None and record.get(args[0][1]) != prior.get(args[0][1])
    if name == "PRIORVALUE":
        return (prior or record).get(args[0][1])
    value = _eval(args[0], record, prior)
    if name == "ISBLANK":
        return _blank(value)
    if name == "LEN":
        return 0 if value is None else len(_text(value))
    # REGEX: the whole text must match, as Salesforce's REGEX does
    return re.fullmatch(args[1][1], "" if value is None else _text(value)) is not None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _truth(value) -> bool:
    return value is True or (_is_number(value) and value != 0)


def _compare(op: str, left, right) -> bool:
    if _blank(left) or _blank(right):
        if op == "=":
            return _blank(left) and _blank(right)
        if op == "!=":
            return _blank(left) != _blank(right)
        return False
    if _is_number(left) != _is_number(right):
        try:
            left, right = (float(left), float(right))
        except (TypeError, ValueError):
            left, right = _text(left), _text(right)
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        return False
