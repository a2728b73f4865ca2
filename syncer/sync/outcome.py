"""What handling one event came to, for the inbox row and the logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    note: str
    ignored: bool = False

    @classmethod
    def ignore(cls, why: str) -> Outcome:
        return cls(note=why, ignored=True)
