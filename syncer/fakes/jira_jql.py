"""JQL for the fake Jira: the subset syncer and the tests use, parsed into matchers over the fake's
issues. Unknown syntax is a 400 with Jira's messages, as on Jira; which fields a clause may name is the
fake's state's business (`JqlParser` takes a clause factory)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncer.fakes.jira import Issue


class JqlError(Exception):
    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


_TOKEN = re.compile(
    r"""\s*(?:(?P<punct>[(),])|(?P<op>!=|>=|<=|!~|=|~|>|<)"""
    r"""|(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<word>[^\s(),=!<>~"']+))"""
)
_KEYWORDS = {"and", "or", "not", "in", "is", "order", "by", "asc", "desc", "empty", "null"}


@dataclass(frozen=True)
class Token:
    kind: str  # punct | op | string | word
    text: str  # the value (unquoted and unescaped for strings)

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


def tokenize(jql: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        match = _TOKEN.match(jql, pos)
        if match is None or match.end() == pos:
            char = jql[pos:].lstrip()[:1]
            raise JqlError(f"Error in the JQL Query: The character '{char}' is a reserved JQL character. "
                           "You must enclose it in a string or use the escape '\\u0027' instead.")
        kind = match.lastgroup or "word"
        text = match.group(kind)
        if kind == "string":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        tokens.append(Token(kind, text))
        pos = match.end()
    return tokens


@dataclass
class Matcher:
    """A compiled JQL condition: a predicate, plus (when cheap) the ids that could possibly match."""

    match: Callable[[Issue], bool]
    candidates: Callable[[], set[str] | None] = lambda: None


def all_of(parts: list[Matcher]) -> Matcher:
    def candidates() -> set[str] | None:
        sets = [s for s in (p.candidates() for p in parts) if s is not None]
        return set.intersection(*sets) if sets else None

    return Matcher(lambda issue: all(p.match(issue) for p in parts), candidates)


def any_of(parts: list[Matcher]) -> Matcher:
    def candidates() -> set[str] | None:
        sets = [p.candidates() for p in parts]
        return None if any(s is None for s in sets) else set().union(*[s for s in sets if s is not None])

    return Matcher(lambda issue: any(p.match(issue) for p in parts), candidates)


@dataclass
class Query:
    where: Matcher | None
    order: list[tuple[str, bool]]  # (field, descending)
    warnings: list[str]


class JqlParser:
    """Recursive descent over: or-expr := and-expr (OR and-expr)*; and-expr := not-expr (AND not-expr)*;
    not-expr := NOT not-expr | '(' or-expr ')' | clause; then an optional ORDER BY."""

    def __init__(self, jql: str, clause: Callable[[str, str, list[str], list[str]], Matcher]) -> None:
        self.tokens = tokenize(jql)
        self.pos = 0
        self.clause = clause
        self.warnings: list[str] = []

    def parse(self) -> Query:
        where = None
        if self.tokens and not self._at_order_by():
            where = self._or()
        order = self._order_by() if self._at_order_by() else []
        if self.pos < len(self.tokens):
            raise JqlError(f"Error in the JQL Query: Expecting either 'OR' or 'AND' but got "
                           f"'{self.tokens[self.pos].text}'.")
        return Query(where, order, self.warnings)

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self, expecting: str) -> Token:
        token = self._peek()
        if token is None:
            raise JqlError(f"Error in the JQL Query: Expecting {expecting} but reached the end of the query.")
        self.pos += 1
        return token

    def _at_order_by(self) -> bool:
        token = self._peek()
        following = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        return bool(token and token.is_word("order") and following and following.is_word("by"))

    def _or(self) -> Matcher:
        parts = [self._and()]
        while (token := self._peek()) and token.is_word("or"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else any_of(parts)

    def _and(self) -> Matcher:
        parts = [self._not()]
        while (token := self._peek()) and token.is_word("and"):
            self.pos += 1
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else all_of(parts)

    def _not(self) -> Matcher:
        token = self._next("a field name")
        if token.is_word("not"):
            inner = self._not()
            return Matcher(lambda issue: not inner.match(issue))
        if token.kind == "punct" and token.text == "(":
            inner = self._or()
            closing = self._next("')'")
            if closing.text != ")":
                raise JqlError(f"Error in the JQL Query: Expecting ')' but got '{closing.text}'.")
            return inner
        if token.kind not in ("word", "string") or token.text.lower() in _KEYWORDS:
            raise JqlError(f"Error in the JQL Query: Expecting a field name but got '{token.text}'.")
        return self._clause(token.text)

    def _clause(self, field_name: str) -> Matcher:
        token = self._next("an operator")
        if token.kind == "op":
            op = token.text
        elif token.is_word("in"):
            op = "in"
        elif token.is_word("not"):
            if not self._next("'IN'").is_word("in"):
                raise JqlError("Error in the JQL Query: Expecting 'IN' after 'NOT'.")
            op = "not in"
        elif token.is_word("is"):
            op = "is"
            if (following := self._peek()) and following.is_word("not"):
                self.pos += 1
                op = "is not"
        else:
            raise JqlError(f"Error in the JQL Query: Expecting operator but got '{token.text}'.")
        if op in ("in", "not in"):
            values = self._list()
        else:
            value = self._next("a value")
            if value.kind == "punct" or value.kind == "op":
                raise JqlError(f"Error in the JQL Query: Expecting a value but got '{value.text}'.")
            values = [value.text]
            if op in ("is", "is not") and not value.is_word("empty", "null"):
                raise JqlError(f"Error in the JQL Query: Expecting 'EMPTY' or 'NULL' but got '{value.text}'.")
        return self.clause(field_name, op, values, self.warnings)

    def _list(self) -> list[str]:
        if self._next("'('").text != "(":
            raise JqlError("Error in the JQL Query: Expecting '(' after 'IN'.")
        values: list[str] = []
        while True:
            value = self._next("a value")
            if value.kind not in ("word", "string"):
                raise JqlError(f"Error in the JQL Query: Expecting a value but got '{value.text}'.")
            values.append(value.text)
            separator = self._next("',' or ')'")
            if separator.text == ")":
                return values
            if separator.text != ",":
                raise JqlError(f"Error in the JQL Query: Expecting ',' or ')' but got '{separator.text}'.")

    def _order_by(self) -> list[tuple[str, bool]]:
        self.pos += 2
        order: list[tuple[str, bool]] = []
        while True:
            name = self._next("a field to order by").text.lower()
            descending = False
            if (token := self._peek()) and token.is_word("asc", "desc"):
                descending = token.text.lower() == "desc"
                self.pos += 1
            order.append((name, descending))
            if (token := self._peek()) and token.kind == "punct" and token.text == ",":
                self.pos += 1
                continue
            return order


_PERIOD = re.compile(r"^([-+]?)(\d+)([mhdw])$")


def jql_date(value: str, field_name: str, now: datetime) -> datetime:
    text = value.strip()
    period = _PERIOD.match(text.replace(" ", ""))
    if period:
        sign, amount, unit = period.groups()
        units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
        delta = timedelta(**{units[unit]: int(amount)})
        return now - delta if sign == "-" else now + delta
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    for fmt in ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise JqlError(f"Date value '{value}' for field '{field_name}' is invalid. Valid formats include: "
                   "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
                   "format e.g. '-5d', '4w 2d'.")
