"""The console in a real headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright's
Python client; .ci/run installs the package when it is missing): a person signs in, watches a
ticket made by a real delivery appear, opens its timeline, retries a dead letter, and is refused
as a viewer. Each page's screenshot is kept under docs/console/ (the README shows them)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from sqlalchemy.engine import Engine

from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.runtime import Runtime
from syncer.store.schema import DeadLetterState, LinkState
from tests.console_app import OPERATOR_TOKEN, VIEWER_TOKEN, start_console
from tests.harness import REPO, letters, link_of, wait_for

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "docs" / "console"
JIRA_CREATE = r"^/rest/api/2/issue/?$"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def console(environment: None, runtime: Runtime, engine: Engine) -> Iterator[str]:
    server = start_console(runtime, engine)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    # --no-sandbox: the tests run as root, where Chromium's own sandbox refuses to start;
    # --disable-dev-shm-usage: a container's small /dev/shm must not crash the renderer.
    launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                          args=["--no-sandbox", "--disable-dev-shm-usage"])
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    yield opened
    context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, token: str, *, then: str = "/console", keep: str = "") -> None:
    page.goto(f"{base}{then}")
    assert "/console/login" in page.url  # anonymous: only the way in
    if keep:
        shot(page, keep)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(then) + r"$"))


def refuse_next_create(fake_jira: FakeJira) -> None:
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=400, times=1, body={
        "errorMessages": [], "errors": {"components": "Component 'Billing' is not valid"}}))


def test_an_operator_sees_a_delivered_ticket_appear_and_opens_its_timeline(
    stack: dict[str, Any], console: str, page: Page, fake_sentry: FakeSentry, engine: Engine
) -> None:
    sign_in(page, console, OPERATOR_TOKEN, keep="login")
    assert page.locator("header .who strong").inner_text() == "operator"
    page.click("nav >> text=Links")
    page.wait_for_url(re.compile(r"/console/links$"))
    issue = fake_sentry.file_issue(project="billing-api", title="ZeroDivisionError: division by zero")
    link = wait_for(lambda: (found := link_of(engine, issue["id"])) and found.state == LinkState.ACTIVE
                    and found.sentry_link_done and found, 30, what="the ticket")

    def listed() -> bool:
        page.reload()
        return page.locator("#links", has_text=link.jira_key).count() == 1

    wait_for(listed, 30, interval=0.5, what="the ticket on the links page")
    page.fill("#q", link.jira_key)
    page.click("form.search button")
    page.wait_for_url(re.compile(r"\?q="))
    assert page.locator("#links tbody tr").count() == 1
    shot(page, "links")
    page.click(f"#links >> text={link.jira_key}")
    page.wait_for_url(re.compile(rf"/console/links/{link.id}$"))
    timeline = page.locator("#timeline")
    assert timeline.locator("li", has_text="created").count() == 1
    assert "webhook (delivery " in timeline.inner_text()
    assert page.locator("button", has_text="Unlink").count() == 1
    shot(page, "link")
    # More for the figures pages to show: another team's ticket, an unowned one, and some noise.
    others = [fake_sentry.file_issue(project="web-app", title="TypeError: undefined is not a function"),
              fake_sentry.file_issue(project="search-api", title="KeyError: 'query'")]
    fake_sentry.file_issue(project="worker-jobs", title="Retrying job 42", level="info")

    def made() -> bool:
        return all((found := link_of(engine, other["id"])) and found.state == LinkState.ACTIVE
                   for other in others)

    wait_for(made, 30, what="the other tickets")
    page.click("nav >> text=Overview")
    page.wait_for_url(re.compile(r"/console$"))
    page.click("text=Run a reconcile now")
    page.wait_for_url(re.compile(r"note=reconcile$"))

    def reconciled() -> bool:
        page.reload()
        return page.locator("text=links checked").count() == 1

    wait_for(reconciled, 60, interval=0.5, what="the worker's reconcile run on the overview")
    shot(page, "overview")
    page.click("nav >> text=Routes")
    assert page.locator("th", has_text="[defaults]").count() == 1
    shot(page, "routes")
    page.click("nav >> text=Triage figures")
    page.wait_for_url(re.compile(r"/console/teams$"))
    assert page.locator("#team-payments svg.chart rect.made").count() >= 1
    shot(page, "teams")
    # The one button that needs JavaScript: the digest onto the clipboard, as `syncer report` prints it.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console)
    page.click("text=Copy as markdown")
    page.wait_for_selector("text=Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("# Triage report") and "| payments | " in copied


def test_an_operator_retries_a_dead_letter_and_sees_it_disappear(
    stack: dict[str, Any], console: str, page: Page, fake_sentry: FakeSentry, fake_jira: FakeJira,
    engine: Engine,
) -> None:
    refuse_next_create(fake_jira)
    issue = fake_sentry.file_issue(project="billing-api", title="Refused by Jira, retried by a person")
    letter = wait_for(lambda: next((d for d in letters(engine) if issue["id"] in d.payload), None), 30,
                      what="a dead letter")
    sign_in(page, console, OPERATOR_TOKEN, then="/console/dead-letters")
    row = page.locator(f"#letter-{letter.id}")
    assert "Component 'Billing' is not valid" in row.inner_text()
    shot(page, "dead-letters")
    row.locator("button", has_text="Retry").click()
    page.wait_for_url(re.compile(r"note=retried"))
    assert page.locator(f"#letter-{letter.id}").count() == 0
    assert "queued again" in page.locator(".note").inner_text()
    wait_for(lambda: (found := link_of(engine, issue["id"])) and found.state == LinkState.ACTIVE, 30,
             what="the ticket after the retry")


def test_a_viewer_is_refused(
    stack: dict[str, Any], console: str, page: Page, fake_sentry: FakeSentry, fake_jira: FakeJira,
    engine: Engine,
) -> None:
    refuse_next_create(fake_jira)
    issue = fake_sentry.file_issue(project="billing-api", title="Only an operator may retry this")
    letter = wait_for(lambda: next((d for d in letters(engine) if issue["id"] in d.payload), None), 30,
                      what="a dead letter")
    sign_in(page, console, VIEWER_TOKEN, then="/console/dead-letters")
    assert page.locator("header .who strong").inner_text() == "viewer"
    assert page.locator(f"#letter-{letter.id}").count() == 1
    assert page.locator("button", has_text="Retry").count() == 0
    # The form a viewer's page does not offer, sent anyway from the page with its own CSRF value.
    csrf = page.locator("header form.who input[name=csrf]").get_attribute("value")
    page.goto(f"{console}/console/dead-letters")
    page.evaluate(
        """([action, csrf]) => {
            const form = document.createElement("form");
            form.method = "post"; form.action = action;
            const field = document.createElement("input");
            field.type = "hidden"; field.name = "csrf"; field.value = csrf;
            form.appendChild(field); document.body.appendChild(form); form.submit();
        }""",
        [f"/console/dead-letters/{letter.id}/retry", csrf],
    )
    page.wait_for_url(re.compile(rf"/console/dead-letters/{letter.id}/retry$"))
    assert "Only an operator may do this" in page.locator("main").inner_text()
    shot(page, "refused")
    assert [d.state for d in letters(engine) if d.id == letter.id] == [DeadLetterState.OPEN]


def test_the_screenshots_are_kept() -> None:
    """Run after the tests above (file order): each page they visited left its picture."""
    for name in ("login", "overview", "routes", "links", "link", "dead-letters", "teams", "refused"):
        picture = SHOTS / f"{name}.png"
        assert picture.exists() and picture.stat().st_size > 5000, picture
        assert Path(picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
