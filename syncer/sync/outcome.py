"""What handling one event came to, for the inbox row and the logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    note: str
    ignored: bool = False
    gathered: bool = False  # left for a bulk create (`syncer.sync.gathering`): not finished yet

    @classmethod
    def ignore(cls, why: str) -> Outcome:
        return cls(note=why, ignored=True)

    @classmethod
    def gather(cls, why: str) -> Outcome:
        return cls(note=why, gathered=True)
