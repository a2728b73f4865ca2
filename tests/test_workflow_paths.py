"""The way through a workflow, as `syncer.jira.workflow` finds it from what is known of it."""

from __future__ import annotations

import pytest

from syncer.jira.workflow import Edge, Goal, NoTarget, Status, Targets, choose_targets, next_step

TODO, DOING = Status("1", "To Do", "new"), Status("3", "In Progress", "indeterminate")
REVIEW = Status("7", "In Review", "indeterminate")
DONE, WONT = Status("10", "Done", "done"), Status("11", "Won't Do", "done")
CLOSED = Status("6", "Closed", "done")
STATUSES = [TODO, DOING, REVIEW, DONE, WONT]


def edge(source: Status, to: Status, transition_id: str = "") -> Edge:
    return Edge(source.id, transition_id or f"{source.id}>{to.id}", to)


def done_targets(goal: Goal | None = None) -> Targets:
    return choose_targets(goal or Goal("Done", fallback_category="done"), STATUSES)


def test_the_shortest_known_way_is_taken_one_step_at_a_time() -> None:
    graph = {
        TODO.id: [edge(TODO, DOING), edge(TODO, REVIEW)],
        DOING.id: [edge(DOING, REVIEW)],
        REVIEW.id: [edge(REVIEW, DONE)],
    }
    assert next_step(TODO.id, graph, done_targets()) == (edge(TODO, REVIEW), False)
    assert next_step(REVIEW.id, graph, done_targets()) == (edge(REVIEW, DONE), True)


def test_without_a_known_way_the_unknown_status_nearest_the_target_is_explored() -> None:
    graph = {TODO.id: [edge(TODO, Status("2", "Backlog", "new")), edge(TODO, DOING)]}
    assert next_step(TODO.id, graph, done_targets()) == (edge(TODO, DOING), False)


def test_a_wont_fix_status_is_neither_passed_through_nor_a_stand_in() -> None:
    avoid = frozenset({"won't do"})
    targets = done_targets(Goal("Resolved", fallback_category="done", avoid=avoid))
    assert targets.ids == frozenset({DONE.id})
    graph = {TODO.id: [edge(TODO, WONT)], WONT.id: [edge(WONT, DONE)]}
    assert next_step(TODO.id, graph, targets) is None


def test_no_way_on_is_none() -> None:
    graph = {DOING.id: [edge(DOING, TODO)], TODO.id: [edge(TODO, DOING)]}
    assert next_step(DOING.id, graph, done_targets()) is None


def test_the_configured_name_wins_over_its_category() -> None:
    targets = choose_targets(Goal("Closed", fallback_category="done"), [*STATUSES, CLOSED])
    assert targets.ids == frozenset({CLOSED.id}) and targets.how == "'Closed'"


def test_a_name_the_workflow_lacks_falls_back_to_its_category_or_is_said() -> None:
    goal = Goal("Resolved", fallback_category="done", avoid=frozenset({"Won't Do"}))
    stand_in = choose_targets(goal, STATUSES)
    assert stand_in.ids == frozenset({DONE.id}) and "no 'Resolved'" in stand_in.how
    with pytest.raises(NoTarget) as missing:
        choose_targets(Goal("Resolved"), STATUSES)
    assert missing.value.statuses == tuple(STATUSES)


def test_unknown_statuses_leave_it_to_the_name() -> None:
    targets = choose_targets(Goal("done"), None)
    assert targets.accepts(DONE) and not targets.accepts(CLOSED)
