"""The console over real HTTP: the real web app on a socket, the session's real worker and fakes.
Who may see and do what (anonymous, viewer, operator, the proxy's header), CSRF, and each page
showing what a real delivery left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.fakes.base import FakeServer, Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.runtime import Runtime
from syncer.store.schema import DeadLetterState, LinkState
from syncer.web.console.access import SESSION_COOKIE, Access, Role
from tests.conftest import JIRA_TOKEN, SENTRY_SECRET, SENTRY_TOKEN
from tests.console_app import HEADER, OPERATOR_TOKEN, VIEWER_TOKEN, start_console
from tests.harness import RedisServer, free_port, letters, link_of, wait_for

JIRA_CREATE = r"^/rest/api/2/issue/?$"


@pytest.fixture(scope="module")
def console(environment: None, runtime: Runtime, engine: Engine) -> Iterator[str]:
    server = start_console(runtime, engine)
    yield server.url
    server.stop()


def browser_like(base: str, **kwargs: Any) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10, follow_redirects=False, **kwargs)

    def hook(response: httpx.Response) -> None:
        for name, value in response.cookies.items():
            client.cookies.set(name, value, path="/console")

    client.event_hooks["response"] = [hook]
    return client


def signed_in(base: str, token: str) -> httpx.Client:
    """A browser-like client that signed in through the login form."""
    client = browser_like(base)
    form = client.get("/console/login")
    assert form.status_code == 200
    answer = client.post("/console/login", data={"csrf": csrf_of(form.text), "token": token,
                                                 "next": "/console"})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def wait_letter(engine: Engine, sentry_id: str) -> Any:
    return wait_for(lambda: next((d for d in letters(engine) if sentry_id in d.payload
                                  and d.state == DeadLetterState.OPEN), None), 30, what="a dead letter")


def refuse_next_create(fake_jira: FakeJira) -> None:
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=400, times=1, body={
        "errorMessages": [], "errors": {"components": "Component 'Billing' is not valid"}}))


# --- access -----------------------------------------------------------------------------------------


def test_the_console_is_not_there_unless_configured(web: FakeServer) -> None:
    assert httpx.get(f"{web.url}/console", timeout=5).status_code == 404
    assert httpx.get(f"{web.url}/console/links", timeout=5).status_code == 404


def test_an_anonymous_request_sees_nothing_and_changes_nothing(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    refuse_next_create(fake_jira)
    issue = fake_sentry.file_issue(project="billing-api", title="Secretive failure")
    letter = wait_letter(engine, issue["id"])
    for path in ("/console", "/console/routes", "/console/links", f"/console/links?q={issue['id']}",
                 "/console/dead-letters", "/console/links/1"):
        answer = httpx.get(f"{console}{path}", timeout=5)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?next=")
        login = httpx.get(f"{console}{answer.headers['location']}", timeout=5).text
        login = re.sub(r'name="next" value="[^"]*"', "", login)  # the visitor's own address, echoed
        assert "Secretive" not in login and issue["id"] not in login and "Billing" not in login
    # Someone the proxy signed in who is on neither list, and a made-up session cookie: nothing.
    stranger = httpx.get(f"{console}/console/dead-letters", headers={HEADER: "eve@example.com"}, timeout=5)
    assert stranger.status_code == 303
    forged = httpx.get(f"{console}/console", cookies={SESSION_COOKIE: "v1.2.9999999999.00"}, timeout=5)
    assert forged.status_code == 303
    for action in (f"/console/dead-letters/{letter.id}/retry", f"/console/dead-letters/{letter.id}/drop",
                   "/console/reconcile"):
        answer = httpx.post(f"{console}{action}", data={"csrf": "x"}, cookies={"syncer_console_csrf": "x"},
                            timeout=5)
        assert answer.status_code == 403 and "Secretive" not in answer.text
    assert wait_letter(engine, issue["id"]).id == letter.id  # still open


def test_a_viewer_sees_but_cannot_act(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    refuse_next_create(fake_jira)
    issue = fake_sentry.file_issue(project="billing-api", title="Viewer looks at this")
    letter = wait_letter(engine, issue["id"])
    viewer = signed_in(console, VIEWER_TOKEN)
    page = viewer.get("/console/dead-letters")
    assert page.status_code == 200 and "Component &#39;Billing&#39; is not valid" in page.text
    assert "viewer" in page.text and "/retry" not in page.text and "/drop" not in page.text
    csrf = csrf_of(page.text)
    for action in ("retry", "drop"):
        answer = viewer.post(f"/console/dead-letters/{letter.id}/{action}", data={"csrf": csrf})
        assert answer.status_code == 403 and "operator" in answer.text
    assert viewer.post("/console/reconcile", data={"csrf": csrf}).status_code == 403
    by_proxy = httpx.post(f"{console}/console/dead-letters/{letter.id}/drop", data={"csrf": csrf},
                          headers={HEADER: "dee@example.com"}, cookies={"syncer_console_csrf": csrf},
                          timeout=5)
    assert by_proxy.status_code == 403
    assert httpx.get(f"{console}/console", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
                     timeout=5).status_code == 200
    assert wait_letter(engine, issue["id"]).id == letter.id  # still open, untouched


def test_forms_need_their_csrf_value_and_cookies_are_locked_down(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    client = browser_like(console)
    form = client.get("/console/login")
    wrong = client.post("/console/login", data={"csrf": csrf_of(form.text), "token": "not-the-token"})
    assert wrong.status_code == 401 and SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    assert client.post("/console/login", data={"token": OPERATOR_TOKEN}).status_code == 403  # no CSRF
    right = client.post("/console/login", data={"csrf": csrf_of(form.text), "token": OPERATOR_TOKEN})
    cookie = next(c for c in right.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert all(flag in cookie.lower() for flag in ("secure", "httponly", "samesite=strict"))
    assert OPERATOR_TOKEN not in cookie
    refuse_next_create(fake_jira)
    issue = fake_sentry.file_issue(project="billing-api", title="CSRF target")
    letter = wait_letter(engine, issue["id"])
    page = client.get("/console/dead-letters")
    assert f"/console/dead-letters/{letter.id}/retry" in page.text
    drop = f"/console/dead-letters/{letter.id}/drop"
    assert client.post(drop, data={}).status_code == 403
    assert client.post(drop, data={"csrf": "forged"}).status_code == 403
    assert client.post(drop, data={"csrf": csrf_of(page.text)},
                       headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert wait_letter(engine, issue["id"]).id == letter.id
    assert client.post(drop, data={"csrf": csrf_of(page.text)}).status_code == 303
    assert [d.state for d in letters(engine) if d.id == letter.id] == [DeadLetterState.DROPPED]
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_no_page_shows_a_secret(stack: dict[str, Any], console: str, fake_sentry: FakeSentry,
                                engine: Engine) -> None:
    issue = fake_sentry.file_issue(project="billing-api", title="Anything at all")
    wait_for(lambda: (link := link_of(engine, issue["id"])) and link.state == LinkState.ACTIVE, 30,
             what="the ticket")
    operator = signed_in(console, OPERATOR_TOKEN)
    link_id = link_of(engine, issue["id"]).id  # type: ignore[union-attr]
    for path in ("/console", "/console/routes", "/console/links", f"/console/links/{link_id}",
                 "/console/dead-letters", "/console/login"):
        text = operator.get(path).text
        for secret in (OPERATOR_TOKEN, VIEWER_TOKEN, SENTRY_TOKEN, JIRA_TOKEN, SENTRY_SECRET):
            assert secret not in text, (path, secret)


def test_check_config_names_a_console_nobody_may_use(process_env: dict[str, str]) -> None:
    env = {**process_env, "SYNCER_CONSOLE_TRUSTED_HEADER": HEADER, "SYNCER_CONSOLE_TOKEN": OPERATOR_TOKEN}
    done = subprocess.run([sys.executable, "-m", "syncer", "check-config"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1 and "SYNCER_CONSOLE_OPERATORS or SYNCER_CONSOLE_VIEWERS" in done.stderr
    assert OPERATOR_TOKEN not in done.stdout + done.stderr
    env.pop("SYNCER_CONSOLE_TRUSTED_HEADER")
    fine = subprocess.run([sys.executable, "-m", "syncer", "check-config"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert fine.returncode == 0, fine.stderr
    assert "console: on, token sign-in (operator)" in fine.stdout


def test_tokens_sessions_and_the_allow_lists() -> None:
    from syncer.errors import ConfigError
    from syncer.settings import Settings

    access = Access.from_settings(Settings(console_token=SecretStr(OPERATOR_TOKEN),
                                           console_trusted_header=HEADER,
                                           console_viewers="*@example.com, Ann@Other.org"))
    assert access.role_of_token(OPERATOR_TOKEN) == Role.OPERATOR
    assert access.role_of_token(OPERATOR_TOKEN[:-1]) is None and access.role_of_token("") is None
    session = access.session_value(Role.OPERATOR, now=1000.0)
    assert access.role_of_session(session, now=1000.0) == Role.OPERATOR
    assert access.role_of_session(session, now=1000.0 + 13 * 3600) is None  # expired
    assert access.role_of_session(session.replace("v1.2.", "v1.1.", 1), now=1000.0) is None  # tampered
    assert access.role_of_person("ann@other.org") == Role.VIEWER
    assert access.role_of_person("bob@example.com.evil.net") is None
    with pytest.raises(ConfigError, match="SYNCER_CONSOLE_OPERATORS"):
        Access.from_settings(Settings(console_trusted_header=HEADER))
    with pytest.raises(ConfigError, match="16 characters"):
        Access.from_settings(Settings(console_token=SecretStr("short")))
    assert not Access.from_settings(Settings()).enabled


# --- pages ------------------------------------------------------------------------------------------


def test_a_delivered_ticket_is_found_and_its_timeline_names_the_webhook(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", title="ZeroDivisionError in the ledger")
    link = wait_for(lambda: (found := link_of(engine, issue["id"])) and found.state == LinkState.ACTIVE
                    and found.sentry_link_done and found, 30, what="the ticket")
    viewer = browser_like(console, headers={HEADER: "Dee@example.com"})
    for query in (issue["id"], link.jira_key, "zerodivisionerror IN THE", link.jira_key.lower()):
        page = viewer.get("/console/links", params={"q": query})
        assert page.status_code == 200 and f'href="/console/links/{link.id}"' in page.text, query
    assert link.jira_key not in viewer.get("/console/links", params={"q": "no such title"}).text
    page = viewer.get(f"/console/links/{link.id}").text
    assert "Timeline" in page and "created" in page and "webhook (delivery " in page
    assert "unresolved" in page and link.jira_key in page and "Unlink" not in page  # a viewer


def test_the_overview_shows_the_inbox_apis_dead_letters_and_last_reconcile(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine,
    runtime: Runtime,
) -> None:
    from syncer.sync import reconcile

    # The run first: its change search may earn 400s of its own (the policy names projects the fake
    # Jira lacks), and the page shows the last error, which must be the create's.
    reconcile.run(runtime)
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=400, times=1, body={
        "errorMessages": [], "errors": {"components": "Component 'Billing' is not valid"}}))
    issue = fake_sentry.file_issue(project="billing-api", title="Shown on the overview")
    wait_letter(engine, issue["id"])
    operator = signed_in(console, OPERATOR_TOKEN)
    page = operator.get("/console").text
    assert re.search(r"<th scope=\"row\">database</th><td><span class=\"badge ok\">up", page)
    assert re.search(r"<th scope=\"row\">broker</th><td><span class=\"badge ok\">up", page)
    assert re.search(r'<a class="big" href="/console/dead-letters">1</a> open', page)
    assert "POST /rest/api/2/issue answered 400" in page  # Jira's last error, seen by the worker
    assert re.search(r"(GET|POST|PUT) /api/0/", page)  # Sentry's last call
    assert re.search(r"\d+ of \d+ left", page)  # the headroom Sentry's answers report
    assert "links checked" in page and "No run recorded yet" not in page
    assert "Run a reconcile now" in page


def test_an_operator_retries_a_dead_letter_and_it_becomes_a_ticket(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    refuse_next_create(fake_jira)
    issue = fake_sentry.file_issue(project="billing-api", title="Retried from the console")
    letter = wait_letter(engine, issue["id"])
    operator = signed_in(console, OPERATOR_TOKEN)
    page = operator.get("/console/dead-letters")
    answer = operator.post(f"/console/dead-letters/{letter.id}/retry", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/dead-letters?note=retried"
    wait_for(lambda: (link := link_of(engine, issue["id"])) and link.state == LinkState.ACTIVE, 30,
             what="the ticket after the retry")
    assert f"letter-{letter.id}" not in operator.get("/console/dead-letters").text


def test_an_operator_unlinks_and_the_timeline_names_them(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", title="Unlinked by a person")
    link = wait_for(lambda: (found := link_of(engine, issue["id"])) and found.state == LinkState.ACTIVE
                    and found, 30, what="the ticket")
    operator = browser_like(console, headers={HEADER: "ann@ops.example.com"})
    page = operator.get(f"/console/links/{link.id}")
    assert "Unlink" in page.text
    stranger = httpx.post(f"{console}/console/links/{link.id}/unlink", data={"csrf": csrf_of(page.text)},
                          headers={HEADER: "ann@ops.example.com"}, timeout=5)
    assert stranger.status_code == 403  # the value without its cookie: not this browser's form
    done = operator.post(f"/console/links/{link.id}/unlink", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303
    assert link_of(engine, issue["id"]) is None
    timeline = operator.get(f"/console/links/{link.id}").text
    assert "unlinked" in timeline and "ann@ops.example.com, in the console" in timeline


def test_the_routes_page_is_the_check_config_table_with_each_routes_figures(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, engine: Engine, runtime: Runtime
) -> None:
    from syncer.cli.views import routing_rows

    issue = fake_sentry.file_issue(project="billing-api", title="Counted on the routes page")
    wait_for(lambda: (link := link_of(engine, issue["id"])) and link.state == LinkState.ACTIVE, 30,
             what="the ticket")
    page = httpx.get(f"{console}/console/routes", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
                     timeout=10).text
    rows = routing_rows(runtime.policy)
    assert rows[-1][0] == "[defaults]"
    for route, _when, _outcome in rows:
        assert f"<th scope=\"row\">{route}</th>" in page
    billing = re.search(r'<th scope="row">\[\d+\] billing</th>(.*?)</tr>', page, re.S)
    assert billing, page
    assert re.findall(r'<td class="num">(\d+)</td>', billing.group(1)) == ["1", "1", "1", "1", "0"]
    assert "No owner (reached [defaults]): 0% in 24h" in page


def test_the_triage_page_draws_each_teams_weeks_and_offers_the_markdown(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", title="Counted in the figures")
    wait_for(lambda: (link := link_of(engine, issue["id"])) and link.state == LinkState.ACTIVE, 30,
             what="the ticket")
    viewer = httpx.Client(base_url=console, timeout=10, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    page = viewer.get("/console/teams", params={"since": "14d"}).text
    card = re.search(r'<section class="card team" id="team-payments">(.*?)</section>', page, re.S)
    assert card, page
    assert re.search(r'tickets made</th><td class="num">1</td>', card.group(1))
    assert card.group(1).count('<rect class="made"') == card.group(1).count('<rect class="resolved"') >= 2
    assert re.search(r'<rect class="made" [^>]*height="(?!0\.0")[\d.]+"', card.group(1))  # this week's bar
    assert "# Triage report" in page and 'data-copy="markdown"' in page
    assert viewer.get("/console/teams", params={"since": "soon"}).status_code == 400


def test_the_chart_scales_its_bars_and_escapes_its_labels() -> None:
    from syncer.core.triage import Week
    from syncer.web.console.charts import weekly_bars

    svg = str(weekly_bars([Week("2026-W01", 4, 0), Week("2026-W02", 2, 1)], title="<team> & co"))
    heights = [float(h) for h in re.findall(r'<rect class="\w+" [^>]*height="([\d.]+)"', svg)]
    assert heights[0] == 2 * heights[2] > 0 and heights[1] == 0
    assert "&lt;team&gt; &amp; co" in svg and "<team>" not in svg


@pytest.mark.slow
def test_the_sandbox_prints_the_console_and_a_login_that_works(tmp_path: Path) -> None:
    broker = RedisServer().start()  # its own: the session's worker would take the sandbox's tasks
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    env["SYNCER_BROKER_URL"] = broker.url
    port = free_port()
    sandbox = subprocess.Popen([sys.executable, "-m", "syncer", "sandbox", "--port", str(port)], env=env,
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(sandbox.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        said = wait_for(lambda: next((m for line in list(lines) if (m := re.search(
            r"console on (http://127\.0\.0\.1:\d+/console), sign in with the token (\w+)", line))), None),
            120, interval=0.2, what="the sandbox's console line")
        url, token = said.group(1), said.group(2)
        assert url == f"http://127.0.0.1:{port}/console"
        assert httpx.get(url, timeout=10).status_code == 303  # anonymous: to the login page
        signed = {"Authorization": f"Bearer {token}"}
        assert "Overview" in httpx.get(url, headers=signed, timeout=10).text
        wait_for(lambda: re.search(r"PAY-\d+", httpx.get(f"{url}/links", headers=signed, timeout=10).text),
                 120, interval=0.5, what="the story's ticket on the console's links page")
    finally:
        sandbox.send_signal(signal.SIGINT)
        try:
            sandbox.wait(30)
        except subprocess.TimeoutExpired:
            sandbox.kill()
            sandbox.wait()
        broker.stop()


def test_an_operator_links_an_issue_by_hand_through_a_worker(
    stack: dict[str, Any], console: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_sentry.webhooks.enabled = False  # an issue syncer never heard of
    try:
        issue = fake_sentry.file_issue(project="billing-api", title="Linked in the console")
    finally:
        fake_sentry.webhooks.enabled = True
    made = fake_jira.person_create("OPS", "A ticket a person filed")
    key = made if isinstance(made, str) else made["key"]
    operator = signed_in(console, OPERATOR_TOKEN)
    page = operator.get("/console/links")
    assert 'action="/console/links/new"' in page.text
    csrf = csrf_of(page.text)
    bad = operator.post("/console/links/new", data={"csrf": csrf, "sentry_id": "abc", "jira_key": key})
    assert bad.headers["location"] == "/console/links?note=link-bad"
    done = operator.post("/console/links/new", data={"csrf": csrf, "sentry_id": issue["id"],
                                                     "jira_key": key.lower()})
    assert done.status_code == 303 and "note=link-queued" in done.headers["location"]
    link = wait_for(lambda: (found := link_of(engine, issue["id"])) and found.state == LinkState.ACTIVE
                    and found.remote_link_done and found, 30, what="the link a worker made")
    assert link.jira_key == key and link.route == "by hand"
    assert len(fake_jira.remote_links(key)) == 1
    timeline = operator.get(f"/console/links/{link.id}").text
    assert "linked by hand" in timeline and "token (operator), in the console" in timeline
    viewer = signed_in(console, VIEWER_TOKEN)
    listing = viewer.get("/console/links")
    assert 'action="/console/links/new"' not in listing.text
    refused = viewer.post("/console/links/new", data={"csrf": csrf_of(listing.text), "sentry_id": "1",
                                                      "jira_key": key})
    assert refused.status_code == 403


def test_the_reconcile_button_queues_a_run_that_a_worker_makes(
    stack: dict[str, Any], console: str, runtime: Runtime
) -> None:
    assert runtime.redis is not None
    assert runtime.redis.get(metrics.LAST_RECONCILE_KEY) is None  # `clean` emptied syncer's keys
    operator = signed_in(console, OPERATOR_TOKEN)
    page = operator.get("/console")
    assert "No run recorded yet" in page.text
    done = operator.post("/console/reconcile", data={"csrf": csrf_of(page.text)})
    assert done.headers["location"] == "/console?note=reconcile"
    wait_for(lambda: "No run recorded yet" not in operator.get("/console").text, 60, interval=0.5,
             what="the worker's reconcile run on the overview")
    assert "links checked" in operator.get("/console").text
