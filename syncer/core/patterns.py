"""The patterns routes match Sentry text with: globs, regexes and owner patterns, compiled once.

Pure: `parse` turns what a policy file says into a compiled pattern, or raises `PatternError` with
words a TOML author understands (`syncer.policy` reports it at the key it came from).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import ClassVar, Self

from syncer.errors import PatternError

__all__ = ["NameGlob", "OwnerPattern", "Pattern", "PatternError", "TextGlob", "TextPattern"]


def _glob_to_regex(glob: str) -> str:
    # Only `*` and `?` are special; everything else, `[` included, is literal. fnmatch would treat
    # `[...]` as a character class, which surprises people matching Sentry titles like "[db] timeout".
    parts = []
    for char in glob:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return r"\A" + "".join(parts) + r"\Z"


# `/body/` or `/body/i`: a regex with search semantics; anything else is a glob.
_REGEX_LITERAL = re.compile(r"/(.*)/(i?)", re.DOTALL)


@dataclass(frozen=True)
class Pattern:
    """A pattern from the policy, compiled once. `source` is what the file said."""

    source: str
    regex: re.Pattern[str] = field(repr=False, compare=False)

    ignore_case: ClassVar[bool] = False
    allow_regex: ClassVar[bool] = False

    def matches(self, text: str) -> bool:
        return self.regex.search(text) is not None

    def __str__(self) -> str:
        return self.source if self.is_regex else json.dumps(self.source, ensure_ascii=False)

    @property
    def is_regex(self) -> bool:
        return self.allow_regex and _REGEX_LITERAL.fullmatch(self.source) is not None

    @classmethod
    def parse(cls, source: str) -> Self:
        if not source:
            raise PatternError("an empty pattern matches nothing useful; leave the key out instead")
        flags = re.IGNORECASE if cls.ignore_case else 0
        literal = _REGEX_LITERAL.fullmatch(source) if cls.allow_regex else None
        if literal is None:
            return cls(source, re.compile(_glob_to_regex(source), flags | re.DOTALL))
        body, suffix = literal.group(1), literal.group(2)
        if not body:
            raise PatternError("an empty regex matches everything; leave the key out instead")
        if suffix == "i":
            flags |= re.IGNORECASE
        try:
            return cls(source, re.compile(body, flags))
        except re.error as error:
            raise PatternError(f"bad regex {source}: {error}") from None


class NameGlob(Pattern):
    """A case-insensitive glob, for names Sentry lowercases anyway (projects, platforms, types)."""

    ignore_case = True


class TextGlob(Pattern):
    """A case-sensitive glob, for tag values."""


class TextPattern(Pattern):
    """A case-sensitive glob, or a regex written `/.../` (add `i` after it to ignore case)."""

    allow_regex = True


@dataclass(frozen=True)
class OwnerPattern(Pattern):
    """`team:<glob>` or `user:<glob>`, matched against Sentry's `assignedTo`."""

    kind: str = ""
    ignore_case = True

    @classmethod
    def parse(cls, source: str) -> Self:
        kind, sep, rest = source.partition(":")
        if not sep or kind.lower() not in {"team", "user"} or not rest:
            raise PatternError(f"{json.dumps(source)} should be team:<slug> or user:<email, name or id>")
        name = NameGlob.parse(rest)
        return cls(source, name.regex, kind.lower())
