"""Links: the pairs of a Sentry issue and its Jira ticket.

Reconcile's reads (at the end): the active links counted and read in keyset pages, and which
issues of a list have a link row at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncer.store.schema import Link, LinkState

# --- reconcile's reads ----------------------------------------------------------------------------


def count_active(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.exec(select(func.count()).select_from(Link).where(Link.state == LinkState.ACTIVE)).one()
        )


def active_page(engine: Engine, *, after: int, size: int) -> list[Link]:
    """The first `size` active links with an id above `after`, in id order: a keyset page, so that
    reading page after page stays as cheap at the end of the table as at its start."""
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.exec(
                select(Link)
                .where(Link.state == LinkState.ACTIVE, col(Link.id) > after)
                .order_by(col(Link.id))
                .limit(size)
            )
        )


def issues_with_links(engine: Engine, issue_ids: Sequence[str]) -> set[str]:
    """Those of `issue_ids` that have a link row past its claim: linked, or deliberately not any
    more (a deleted ticket, `links unlink`). A pending claim is not one: its delivery may have
    died, and the backfill's claim either finds it fresh (another worker has it) or takes it over."""
    if not issue_ids:
        return set()
    with Session(engine) as session:
        return set(
            session.exec(
                select(Link.sentry_issue_id).where(
                    col(Link.sentry_issue_id).in_(issue_ids), col(Link.state) != LinkState.PENDING
                )
            )
        )
