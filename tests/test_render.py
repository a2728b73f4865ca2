"""Ticket rendering: the Jira fields for a Sentry issue, and untrusted text kept inert."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from syncer.core.issue import SentryIssue
from syncer.core.render import (
    DESCRIPTION_CUT,
    DESCRIPTION_LIMIT,
    LABEL_LIMIT,
    escape_wiki,
    label_tags,
    remote_link_global_id,
    render_ticket,
    safe_url,
    sentry_label,
    summary,
    within_description_limit,
)
from syncer.core.routing import TicketTarget
from syncer.sentry.parse import parse_issue

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sentry"
SENTRY = "https://sentry.io"
TARGET = TicketTarget(
    jira_project="PAY",
    issue_type="Bug",
    components=("Billing",),
    labels=("sentry", "payments"),
    priority="High",
    assignee_email="driver@example.com",
    team="payments",
)


def sentry_issue(fixture: str = "issue_created.json", **changes: Any) -> SentryIssue:
    body = json.loads((FIXTURES / fixture).read_text())
    return dataclasses.replace(parse_issue(body["data"]["issue"]), **changes)


def render(issue: SentryIssue, target: TicketTarget = TARGET,
           tags: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return render_ticket(issue, target, sentry_url=SENTRY, org="acme", tags=tags)


def unescaped(markup: str) -> str:
    """What is left once Jira's escapes are read as literal characters: only live markup remains."""
    return re.sub(r"\\.", "", markup)


# --- the fields -----------------------------------------------------------------------------------


def test_a_ticket_for_a_new_issue() -> None:
    fields = render(sentry_issue())

    assert fields["project"] == {"key": "PAY"}
    assert fields["issuetype"] == {"name": "Bug"}
    assert fields["summary"] == "ZeroDivisionError: division by zero"
    assert fields["labels"] == ["sentry", "payments", "sentry-4506"]
    assert fields["components"] == [{"name": "Billing"}]
    assert fields["priority"] == {"name": "High"}
    assert "assignee" not in fields  # the caller resolves the account and adds it


def test_the_description_says_where_the_issue_lives() -> None:
    description = render(sentry_issue())["description"]

    assert description.startswith("Sentry issue [BILLING\\-API\\-1A|https://acme.sentry.io/issues/4506/]")
    for row in (
        "||Title|ZeroDivisionError: division by zero|",
        "||Culprit|billing.invoices in compute\\_total|",
        "||Level|error|",
        "||Project|billing\\-api|",
        "||First seen|2026-03-02T21:51:44Z|",
        "||Last seen|2026-03-02T21:51:44Z|",
        "||Events|1|",
        "||Users|1|",
    ):
        assert row in description


def test_without_a_web_url_the_link_is_built_from_the_org() -> None:
    description = render(sentry_issue(web_url="", permalink=""))["description"]

    assert "|https://sentry.io/organizations/acme/issues/4506/]" in description


def test_components_and_priority_are_left_out_when_unset() -> None:
    target = dataclasses.replace(TARGET, components=(), priority=None)

    fields = render(sentry_issue(), target)

    assert "components" not in fields
    assert "priority" not in fields


def test_labels_lose_their_spaces_and_empties() -> None:
    target = dataclasses.replace(TARGET, labels=("sentry", "two words", "  ", "sentry-4506"))

    assert render(sentry_issue(), target)["labels"] == ["sentry", "two-words", "sentry-4506"]


def test_labels_take_the_issues_values_each_without_spaces() -> None:
    target = dataclasses.replace(TARGET, labels=("env-{tags.environment}", "{project}-{level}",
                                                 "browser-{tags.browser}"))
    issue = sentry_issue(project_slug="billing-api", level="error")
    tags = {"environment": ["staging eu", "prod", "  "], "browser": []}

    assert render(issue, target, tags=tags)["labels"] == [
        "env-staging-eu", "env-prod", "billing-api-error", "sentry-4506"]
    assert label_tags(target) == {"environment", "browser"}
    assert label_tags(TARGET) == set()


def test_a_tag_of_many_values_makes_ten_labels_at_most() -> None:
    target = dataclasses.replace(TARGET, labels=("v-{tags.version}-{tags.os}",))
    tags = {"version": [str(n) for n in range(20)], "os": ["linux", "mac"]}

    labels = render(sentry_issue(), target, tags=tags)["labels"]

    assert labels[:-1] == [f"v-{n}-{os}" for n in range(5) for os in ("linux", "mac")]


def test_a_label_is_cut_to_jiras_limit_in_utf16_units_and_loses_invisible_characters() -> None:
    target = dataclasses.replace(TARGET, labels=("\U0001f525" * 200, "zero\u200bwidth"))

    fire, zero, _ = render(sentry_issue(), target)["labels"]

    assert len(fire.encode("utf-16-le")) // 2 <= LABEL_LIMIT and fire.startswith("\U0001f525")
    assert zero == "zerowidth"


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_a_description_over_jiras_limit_is_cut_at_a_line_and_says_so() -> None:
    # Every backslash is escaped as five characters: four fields of 2,000 make 40,000.
    issue = sentry_issue(title="\\" * 5000, culprit="\\" * 5000, level="\\" * 5000,
                         project_slug="\\" * 5000)

    text = render(issue, TARGET)["description"]

    assert utf16(text) <= DESCRIPTION_LIMIT
    assert text.endswith(DESCRIPTION_CUT)
    kept = text.removesuffix(DESCRIPTION_CUT)
    assert kept.startswith("Sentry issue [") and all(line.endswith("|") for line in kept.splitlines()[2:])


def test_one_enormous_line_is_cut_before_a_half_written_escape() -> None:
    text = within_description_limit("a" + "&#92;" * 8000)

    assert utf16(text) <= DESCRIPTION_LIMIT and text.endswith(DESCRIPTION_CUT)
    assert text.removesuffix(DESCRIPTION_CUT).endswith("&#92;")


def test_a_description_within_the_limit_is_left_alone() -> None:
    assert within_description_limit("x" * DESCRIPTION_LIMIT) == "x" * DESCRIPTION_LIMIT


def test_a_long_field_in_the_description_is_marked_cut() -> None:
    text = render(sentry_issue(culprit="c" * 3000), TARGET)["description"]

    assert "|" + "c" * 1999 + "\u2026|" in text


def test_the_markers_that_tie_ticket_and_issue() -> None:
    assert sentry_label("4506") == "sentry-4506"
    assert remote_link_global_id("acme", "4506") == "sentry-issue:acme:4506"
    with pytest.raises(ValueError, match="255"):
        remote_link_global_id("x" * 250, "4506")


# --- the summary ----------------------------------------------------------------------------------


def test_a_long_title_is_cut_to_jiras_limit() -> None:
    text = summary(sentry_issue(title="x" * 300))

    assert len(text) == 255
    assert text.endswith("x\u2026")


def test_a_title_of_exactly_255_characters_is_kept() -> None:
    assert summary(sentry_issue(title="y" * 255)) == "y" * 255


def test_the_limit_counts_as_jira_does_in_utf16_units() -> None:
    text = summary(sentry_issue(title="\U0001f525" * 200))  # each emoji is two UTF-16 units

    assert len(text.encode("utf-16-le")) // 2 <= 255
    assert text.endswith("\u2026")


def test_a_summary_is_one_line_without_control_characters() -> None:
    text = summary(sentry_issue(title="KeyError:\n  'user'\r\n\tin\x00 handler\x1b[31m"))

    assert text == "KeyError: 'user' in handler[31m"


def test_an_empty_title_still_gives_a_summary() -> None:
    assert summary(sentry_issue(title=" \n ")) == "Sentry issue BILLING-API-1A"


@pytest.mark.parametrize("title", [" \u200b ", "\ufeff\u200d", "\u2060 \u200c\t"])
def test_a_title_of_only_invisible_characters_gives_the_fallback_summary(title: str) -> None:
    assert summary(sentry_issue(title=title)) == "Sentry issue BILLING-API-1A"


def test_a_zero_width_character_inside_a_real_title_stays() -> None:
    assert summary(sentry_issue(title="Key\u200bError")) == "Key\u200bError"


# --- escaping -------------------------------------------------------------------------------------


def test_markup_in_a_title_comes_out_inert() -> None:
    issue = sentry_issue("issue_created_hostile_title.json")

    fields = render(issue)

    title_row = next(line for line in fields["description"].splitlines() if line.startswith("||Title|"))
    cell = title_row.removeprefix("||Title|").removesuffix("|")
    assert cell == (
        "ValueError: \\[\\~accountid:123\\] \\{code\\}x\\{code\\} \\*bold\\* "
        "\\[link\\|http://evil\\] \\!http://evil/x.png\\!"
    )
    live = unescaped(cell)
    for marker in "[]{}*|!~":
        assert marker not in live
    # The summary is plain text in Jira: shown as is.
    assert fields["summary"] == issue.title


def test_a_macro_at_a_line_start_in_the_culprit_is_inert() -> None:
    description = render(sentry_issue("issue_created_hostile_title.json"))["description"]

    assert "||Culprit|&#104;1. \\{noformat\\}api.views in search|" in description
    assert "\x07" not in description


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("[~accountid:5b10a2844c20165700ede21g]", "\\[\\~accountid:5b10a2844c20165700ede21g\\]"),
        ("[~jdoe]", "\\[\\~jdoe\\]"),
        ("{code:java}x{code}", "\\{code:java\\}x\\{code\\}"),
        ("{noformat}", "\\{noformat\\}"),
        ("!https://evil.example/a.png!", "\\!https://evil.example/a.png\\!"),
        (
            "*bold* _it_ -del- +u+ ^sup^ ~sub~ ??cite??",
            "\\*bold\\* \\_it\\_ \\-del\\- \\+u\\+ \\^sup\\^ \\~sub\\~ \\?\\?cite\\?\\?",
        ),
        ("||head||\n|cell|", "\\|\\|head\\|\\|\n\\|cell\\|"),
        ("# one\n* two\n----", "\\# one\n\\* two\n\\-\\-\\-\\-"),
        ("h1. Big\nbq. quote\n  h3. indented", "&#104;1. Big\n&#98;q. quote\n  &#104;3. indented"),
        ("see h1. not at a line start", "see h1. not at a line start"),
        ("C:\\temp\\*.log and \\\\ break", "C:&#92;temp&#92;\\*.log and &#92;&#92; break"),
        ("(y) (/) :)", "\\(y\\) \\(/\\) :\\)"),
        ("bell\x07 nul\x00 rlo\u202e", "bell nul rlo"),
        ("plain text, 100% fine", "plain text, 100\\% fine"),
    ],
)
def test_escape_wiki(text: str, escaped: str) -> None:
    assert escape_wiki(text) == escaped


def test_a_backslash_cannot_cancel_an_escape() -> None:
    # "\*" would become "\\*", a line break then live bold, if backslashes were kept as they are.
    assert escape_wiki("\\*bold*") == "&#92;\\*bold\\*"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://acme.sentry.io/issues/4506/", "https://acme.sentry.io/issues/4506/"),
        (
            "https://sentry.io/organizations/acme/issues/?query=is:unresolved&project=1",
            "https://sentry.io/organizations/acme/issues/?query=is:unresolved&project=1",
        ),
        ("https://x.example/a|b]c[d", "https://x.example/a%7Cb%5Dc%5Bd"),
        ("https://x.example/ spaced", "https://x.example/%20spaced"),
        ("javascript:alert(1)", ""),
        ("//no-scheme.example/", ""),
        ("", ""),
    ],
)
def test_safe_url(url: str, safe: str) -> None:
    assert safe_url(url) == safe


def test_a_hostile_web_url_falls_back_to_the_built_link() -> None:
    description = render(sentry_issue(web_url="javascript:alert(1)", permalink=""))["description"]

    assert "javascript" not in description
    assert "|https://sentry.io/organizations/acme/issues/4506/]" in description
