"""The create / adopt / wait decision for an issue without a link (`syncer.core.tickets`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncer.core.issue import JiraTicket
from syncer.core.tickets import choose_ticket

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LAG = timedelta(seconds=30)


def ticket(jira_id: str) -> JiraTicket:
    return JiraTicket(id=jira_id, key=f"OPS-{jira_id}")


def test_nothing_found_and_no_earlier_create_creates() -> None:
    choice = choose_ticket([], retired=(), create_attempted_at=None, now=NOW, search_lag=LAG)
    assert (choice.action, choice.ticket) == ("create", None)


def test_a_ticket_with_the_label_is_adopted() -> None:
    choice = choose_ticket([ticket("10001")], retired=(), create_attempted_at=None, now=NOW, search_lag=LAG)
    assert (choice.action, choice.ticket) == ("adopt", ticket("10001"))


def test_of_several_the_oldest_is_adopted_by_numeric_id() -> None:
    found = [ticket("10010"), ticket("9999"), ticket("10002")]
    choice = choose_ticket(found, retired=(), create_attempted_at=None, now=NOW, search_lag=LAG)
    assert choice.ticket == ticket("9999")  # 9999 < 10002 as numbers, not as text


def test_retired_tickets_are_history_not_candidates() -> None:
    found = [ticket("10001"), ticket("10005")]
    choice = choose_ticket(found, retired={"10001"}, create_attempted_at=None, now=NOW, search_lag=LAG)
    assert choice.ticket == ticket("10005")
    only_retired = choose_ticket([ticket("10001")], retired={"10001"}, create_attempted_at=None, now=NOW,
                                 search_lag=LAG)
    assert only_retired.action == "create"


def test_an_earlier_create_within_the_search_lag_waits_out_the_rest_of_it() -> None:
    choice = choose_ticket([], retired=(), create_attempted_at=NOW - timedelta(seconds=10), now=NOW,
                           search_lag=LAG)
    assert (choice.action, choice.wait) == ("wait", timedelta(seconds=20))


def test_an_earlier_create_past_the_search_lag_creates_again() -> None:
    for waited in (LAG, LAG + timedelta(seconds=1)):
        choice = choose_ticket([], retired=(), create_attempted_at=NOW - waited, now=NOW, search_lag=LAG)
        assert choice.action == "create"


def test_a_found_ticket_is_adopted_even_within_the_search_lag() -> None:
    choice = choose_ticket([ticket("10001")], retired=(), create_attempted_at=NOW, now=NOW, search_lag=LAG)
    assert choice.action == "adopt"


def test_a_time_without_a_zone_counts_as_utc() -> None:
    naive = (NOW - timedelta(seconds=10)).replace(tzinfo=None)
    choice = choose_ticket([], retired=(), create_attempted_at=naive, now=NOW, search_lag=LAG)
    assert choice.wait == timedelta(seconds=20)

