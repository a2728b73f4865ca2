"""`syncer` command line: thin entry points onto the modules that do the work.

Exit codes: 0 success, 1 the command ran and something failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from syncer.cli.ports import any_free, is_free, require_free
from syncer.errors import Busy, ConfigError, SyncerError
from syncer.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from syncer.core.triage import Report as TriageReport
    from syncer.policy import Policy
    from syncer.runtime import Runtime

log = logging.getLogger("syncer")


def _setup_logging(settings: Settings | None) -> None:
    from syncer import logs

    level = settings.log_level if settings else "INFO"
    logs.configure(level, settings.log_format if settings else "auto")
    # Alembic narrates every migration step at INFO; the web, worker and beat check it on each start.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise
    if logging.getLevelName(level) > logging.DEBUG:
        # Celery's "Task ... received" and "... succeeded" at INFO repeat, per delivery, what syncer's
        # own line says with its outcome ("delivery 12 done: created OPS-7 ..."); failures and
        # retries still show (ERROR, and syncer's own WARNING).
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _service_start(settings: Settings, *, db_pool_size: int = 16, db_pre_ping: bool = True) -> Runtime:
    """What web, worker and beat check before serving: env, policy, schema; the command's Runtime."""
    from syncer.runtime import Runtime
    from syncer.store import migrate

    settings.require_services()
    rt = Runtime(settings, db_pool_size=db_pool_size, db_pre_ping=db_pre_ping)
    rt.policy  # noqa: B018 - load and validate the TOML now, not on the first event
    problems = slack_problems(settings, rt.policy)
    if problems:
        raise ConfigError("; ".join(problems))
    migrate.require_current(rt.engine)
    return rt


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from syncer import metrics
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    rt = _service_start(settings)
    worker.configure(settings)
    app = create_app(
        settings, rt.engine, worker.enqueue, worker.broker_check, metrics.WorkerCounters(rt.redis),
        enqueue_many=worker.publish_batch, start_reconcile=worker.start_reconcile,
        triage_figures=console_figures, queue_link=worker.queue_link,
    )
    how = "choose another with --port, $PORT or SYNCER_PORT"
    port = require_free(args.host, args.port or settings.port, how=how)
    # log_config=None: uvicorn's lines go through syncer's handler (syncer.logs), not its own.
    uvicorn.run(app, host=args.host, port=port, log_level="warning", access_log=False, log_config=None)
    return 0


def console_figures(engine: Engine, since: timedelta, team: str | None) -> TriageReport:
    """`syncer report`'s figures, for the console (which does not import the sync layer)."""
    from syncer.sync.triage import figures

    return figures(engine, since=since, team=team)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from syncer import lanes
    from syncer.worker import supervise

    processes = args.processes or supervise.parse_processes(settings.worker_processes)
    # Threads per process: 48 alone; 32 each beside others, which share the machine and SQLite's
    # lock (docs/benchmarks.md, "End to end").
    concurrency = args.concurrency or (48 if processes == 1 else 32)
    # Once, here: a misconfiguration stops the supervisor, not each child. A connection per thread.
    rt = _service_start(settings, db_pool_size=concurrency, db_pre_ping=False)
    if processes > 1:
        rt.engine.dispose()  # the children open their own
        supervise.become_supervisor(
            processes, pool=args.pool, concurrency=concurrency, hostname=args.hostname,
            log_level=settings.log_level, log_format=settings.log_format,
        )
    from syncer.worker import app as worker

    worker.configure(settings)
    rt.enqueue = worker.enqueue  # work a task stores in the inbox (Slack's) is handed out at once
    rt.file_gathered = worker.start_filer  # new issues of a storm are filed in bulk (sync/filing.py)
    worker.use_runtime(rt)
    # Both lanes' queues, the status lane's first: the order the broker serves them in (worker/app.py).
    argv = ["worker", "--loglevel", settings.log_level, "-Q", ",".join(lanes.CONSUMED), "--pool", args.pool]
    argv += ["--concurrency", str(concurrency)]
    # Mingle (a second of asking other workers for revoked ids at start) and gossip (every worker
    # listening to every other's events) serve features syncer does not use: tasks are never
    # revoked, and work is shared through the broker and the database's claims.
    argv += ["--without-mingle", "--without-gossip"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    worker.app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.worker import app as worker

    _service_start(settings)
    worker.configure(settings)
    schedule = args.schedule or beat_schedule_path(settings)
    log.info("beat: last-run times in %s", schedule)
    worker.app.start(["beat", "--loglevel", settings.log_level, "--schedule", str(schedule)])
    return 0


def beat_schedule_path(settings: Settings) -> Path:
    """The beat's file of last-run times, one per deployment (its broker and its database): two
    syncers on one host, staging beside production or a sandbox, must not share one. The name is
    a digest, so no password in a URL reaches a file name."""
    deployment = f"{settings.broker_url}\n{settings.database_url}".encode()
    return Path(tempfile.gettempdir()) / f"syncer-beat-schedule-{hashlib.sha256(deployment).hexdigest()[:12]}"


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.store import migrate
    from syncer.store.engine import make_engine

    engine = make_engine(settings.database_url)
    if args.db_command == "upgrade":
        migrate.upgrade(engine)
    print(f"schema at {migrate.current_revision(engine)} (code expects {migrate.head_revision()})")
    return 0


def cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.cli.views import format_routing_table
    from syncer.policy import load_policy

    problems: list[str] = []
    try:
        settings.require_services()
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        policy = load_policy(settings.config)
    except ConfigError as exc:
        problems.append(str(exc))
        policy = None
    print("Environment:")
    for name, value in settings.describe().items():
        print(f"  SYNCER_{name.upper():<34} {value}")
    try:
        from syncer.web.console.access import Access

        print(f"\n{Access.from_settings(settings).describe()}")
    except ConfigError as exc:
        problems.append(str(exc))
    if policy is not None:
        print(f"\nRouting ({settings.config}):")
        print(format_routing_table(policy))
    if policy is not None and settings.public_url:
        problems += _check_sentry_app(settings, policy)
    problems += _check_installation(settings)
    if policy is not None:
        problems += slack_problems(settings, policy)
        if not settings.slack_enabled and policy.uses_slack:
            print("\nSlack: teams name channels, but Slack is not set up: nothing is posted "
                  "(SYNCER_SLACK_BOT_TOKEN, SYNCER_SLACK_SIGNING_SECRET)")
    if args.online and policy is not None and not problems:
        problems += _check_online(settings, policy)
    elif args.online:
        problems.append("online checks skipped: fix the problems above first")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def slack_problems(settings: Settings, policy: Policy) -> list[str]:
    """Slack set up halfway, or `notify` routes with no Slack to notify in (their issues would go
    nowhere: no ticket, no message)."""
    from syncer.core.routing import route_label

    problems = []
    has_token = settings.slack_bot_token is not None
    has_signing_key = settings.slack_signing_secret is not None
    if has_token ^ has_signing_key:
        given, missing = (("SYNCER_SLACK_BOT_TOKEN", "SYNCER_SLACK_SIGNING_SECRET") if has_token
                          else ("SYNCER_SLACK_SIGNING_SECRET", "SYNCER_SLACK_BOT_TOKEN"))
        problems.append(f"{given} is set but {missing} is not: Slack needs both")
    elif not settings.slack_enabled:
        notifying = [route_label(i, route.display_name(i)) for i, route in enumerate(policy.routes)
                     if route.notifies]
        if notifying:
            problems.append(
                f'{", ".join(notifying)}: action = "notify" posts to Slack, which is not set up '
                "(SYNCER_SLACK_BOT_TOKEN, SYNCER_SLACK_SIGNING_SECRET): its issues would get neither a "
                "message nor a ticket"
            )
    return problems


def _check_sentry_app(settings: Settings, policy: Policy) -> list[str]:
    """The schema `syncer sentry-app schema` prints, checked as Sentry's validator would."""
    from syncer.sentry import ui

    assert settings.public_url
    try:
        built = ui.schema(policy, settings.public_url)
    except ConfigError as exc:
        return [str(exc)]
    found = ui.problems(settings.public_url, built)
    if not found:
        print(f"\nSentry screens: schema valid, served at {settings.public_url}")
    return found


def cmd_sentry_app(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.policy import load_policy
    from syncer.sentry import ui

    if not settings.public_url:
        raise ConfigError(
            "SYNCER_PUBLIC_URL is not set: the schema's screens are served by `syncer web` at that URL"
        )
    policy = load_policy(settings.config)
    built = ui.schema(policy, settings.public_url)
    found = ui.problems(settings.public_url, built)
    if found:
        raise ConfigError("; ".join(found))
    print(json.dumps(built, indent=2))
    print(
        f"paste this into the integration's Schema field; its Webhook URL must be on the same host: "
        f"{settings.public_url.rstrip('/')}/webhooks/sentry",
        file=sys.stderr,
    )
    return 0
def _check_installation(settings: Settings) -> list[str]:
    """What the database knows of the Sentry installation: a deletion Sentry announced is a problem
    (external-issue links have stopped); a database not reachable or not migrated yet is not
    check-config's to judge."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from syncer.store import installations
    from syncer.store.engine import make_engine

    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return []  # the environment check above names it
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        print("\nSentry installation: none recorded yet (no database yet)")
        return []  # reading would create the file
    try:
        engine = make_engine(settings.database_url)
        try:
            found = installations.state(engine, settings.sentry_installation_uuid)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        print(f"\nSentry installation: not known (database not readable: {type(exc).__name__})")
        return []
    if found is None:
        print("\nSentry installation: none recorded yet (learned from the first webhook)")
        return []
    print(f"\nSentry installation: {found.describe()}")
    if found.deleted_at is not None:
        return [f"Sentry {found.describe()}"]
    return []


def _check_online(settings: Settings, policy: Policy) -> list[str]:
    """`check-config --online`: the policy against the live sites (syncer.cli.online)."""
    from syncer.cli import online, views
    from syncer.runtime import Runtime

    report = online.run(online.Online(Runtime(settings), policy))
    print()
    print(views.online_report(report, jira_url=settings.jira_url or ""))
    count = len(report.problems)
    return [] if report.ok else [f"{count} problem{'s' if count != 1 else ''} found online (listed above)"]


def cmd_route_explain(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.cli.views import format_explanation
    from syncer.core import choices
    from syncer.core.routing import IssueTags, decide
    from syncer.errors import PayloadError
    from syncer.policy import load_policy
    from syncer.sentry.parse import parse_issue
    from syncer.sentry.webhooks import SentryEvent, parse_event

    policy = load_policy(settings.config)
    source = args.issue
    tags: dict[str, list[str]] | None = None
    sentry_client = None
    alert: SentryEvent | None = None
    if Path(source).exists():
        try:
            raw = json.loads(Path(source).read_text())
        except ValueError as exc:
            raise ConfigError(f"{source}: not JSON: {exc}") from None
        if isinstance(raw, dict) and isinstance(raw.get("data"), dict) and "event" in raw["data"]:
            # An event_alert body: its issue is read from Sentry, as the worker does, and the rule's
            # syncer settings (data.issue_alert.settings) are laid over the routes' decision.
            try:
                alert = parse_event("event_alert", raw)
            except PayloadError as exc:
                raise ConfigError(f"{source}: {exc}") from None
            source = alert.issue_id or ""
    if alert is None and Path(source).exists():
        # A whole webhook body, or just the issue object.
        if isinstance(raw, dict) and isinstance(raw.get("data"), dict) and "issue" in raw["data"]:
            raw = raw["data"]["issue"]
        try:
            issue = parse_issue(raw)
        except PayloadError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if isinstance(raw, dict) and isinstance(raw.get("tags"), dict):
            tags = {
                str(k): [str(x) for x in v] if isinstance(v, list) else [str(v)]
                for k, v in raw["tags"].items()
            }
    elif source.isdigit():
        from syncer.runtime import Runtime

        sentry_client = Runtime(settings).sentry
        issue = sentry_client.get_issue(source)
    else:
        print(f"error: {source} is neither a file nor a Sentry issue id", file=sys.stderr)
        return 2

    def fetch_tags() -> Mapping[str, Sequence[str]]:
        if tags is not None:
            return tags
        if sentry_client is None:
            print(
                'note: routes use tags; the file has no "tags" object, so none were assumed', file=sys.stderr
            )
            return {}
        # As the worker routes: a key's rarer values are read when its top ones match nothing.
        client = sentry_client
        top, more = client.issue_tag_listing(issue.id)
        return IssueTags(top, more, lambda key: client.issue_tag_values(issue.id, key))

    decision = decide(issue, policy, fetch_tags)
    chosen_text = ""
    if alert is not None and alert.alert_settings:
        where = f"alert rule {alert.rule!r}" if alert.rule else "alert rule"
        try:
            chosen = choices.parse_choices(alert.alert_settings, policy, where=where)
        except choices.ChoiceError as exc:
            print(f"error: {where}: {exc}", file=sys.stderr)
            return 1
        decision = choices.apply(decision, policy, issue, chosen)
        chosen_text = chosen.describe()
    print(format_explanation(decision, issue, chosen_text))
    return 0


def cmd_links(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.runtime import Runtime
    from syncer.sync import links

    rt = Runtime(settings)
    if args.links_command == "list":
        for link in links.list_links(rt.engine, state=args.state, limit=args.limit):
            print(links.format_row(link))
        return 0
    if args.links_command == "show":
        print(links.format_detail(rt.engine, args.sentry_id))
        return 0
    if args.links_command == "link":
        link = links.link_by_hand(rt, args.sentry_id, args.jira_key)
        print(f"linked sentry issue {link.sentry_issue_id} to {link.jira_key}")
        return 0
    links.unlink(rt, args.sentry_id)
    print(f"unlinked sentry issue {args.sentry_id}")
    return 0


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.runtime import Runtime
    from syncer.store import deadletters
    from syncer.worker import app as worker

    rt = Runtime(settings)
    if args.dl_command == "list":
        letters = deadletters.open_letters(rt.engine, limit=args.limit)
        for letter in letters:
            print(
                f"{letter.id:>6}  {letter.created_at:%Y-%m-%d %H:%M:%S}  delivery {letter.delivery_id}  "
                f"{letter.subject}  {letter.error[:160]}"
            )
        print(f"{len(letters)} open dead letter(s)")
        return 0
    worker.configure(settings)
    failed = 0
    for letter_id in args.ids:
        try:
            if args.dl_command == "retry":
                delivery_id = deadletters.retry(rt.engine, letter_id, worker.in_its_lane(rt.engine))
                print(f"dead letter {letter_id}: delivery {delivery_id} queued again")
            else:
                deadletters.drop(rt.engine, letter_id)
                print(f"dead letter {letter_id}: dropped")
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.cli import views
    from syncer.sync import reconcile
    from syncer.worker import app as worker

    rt = _service_start(settings)
    worker.configure(settings)  # the sweep hands overdue deliveries to the broker
    if not args.dry_run:
        rt.enqueue = worker.enqueue  # Slack messages the backfill finds missing are handed out at once

    def progress(report: reconcile.Report) -> None:
        sys.stderr.write(f"\r{views.reconcile_progress(report)}")
        sys.stderr.flush()

    try:
        report = reconcile.run(
            rt,
            dry_run=args.dry_run,
            enqueue=None if args.dry_run else worker.in_its_lane(rt.engine),
            progress=progress if sys.stderr.isatty() else None,
            full=args.full,
        )
    except Busy as exc:
        if args.json:
            print(json.dumps({"ok": False, "busy": True, "error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(json.dumps(report.as_dict(), indent=2) if args.json else views.reconcile_report(report))
    return 0 if report.ok else 1


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.cli.views import triage_report
    from syncer.policy import load_policy
    from syncer.store import migrate
    from syncer.store.engine import make_engine
    from syncer.sync.triage import figures

    if args.team is not None:
        teams = load_policy(settings.config).teams
        if args.team not in teams:
            known = ", ".join(sorted(teams)) or "none"
            raise ConfigError(f"--team: no team {args.team!r} in {settings.config} (its teams: {known})")
    engine = make_engine(settings.database_url)
    migrate.require_current(engine)
    print(triage_report(figures(engine, since=args.since, team=args.team), args.format), end="")
    return 0


def _since(value: str) -> timedelta:
    from syncer.core.triage import parse_since

    try:
        return parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.local.dev import run_dev

    how = "choose another with --port, $PORT or SYNCER_PORT"
    port = require_free("127.0.0.1", args.port or settings.port, how=how)
    return run_dev(settings, port=port)


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.local.sandbox import run_sandbox

    if args.port is not None:
        port = require_free("127.0.0.1", args.port, how="choose another with --port, or leave it out")
    elif is_free("127.0.0.1", DEMO_PORT):
        port = DEMO_PORT
    else:  # a demo should just run: any free port, said out loud with the URL
        port = any_free("127.0.0.1")
        print(f"syncer sandbox: port {DEMO_PORT} is taken; using {port}", file=sys.stderr)
    return run_sandbox(port=port, issues=args.issues, keep_running=not args.once)


DEMO_PORT = 8000


def _processes(value: str) -> int:
    from syncer.worker.supervise import parse_processes

    try:
        return parse_processes(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncer", description="Keeps Sentry issues and Jira tickets in sync."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("web", help="receive webhooks (binds $PORT when set, else SYNCER_PORT, else 8000)")
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a service behind a platform router
    p.add_argument("--port", type=int, default=None, help="default: $PORT, else SYNCER_PORT, else 8000")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("worker", help="run the Celery worker")
    # Threads: the work is waiting on two APIs (prefork children run one task each: 31-35 tickets/s
    # against 142 for one process of 48 threads; docs/benchmarks.md).
    p.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    p.add_argument(
        "--concurrency", type=int, default=None,
        help="threads per worker process (default 48 with one process, 32 each with more)",
    )
    p.add_argument("--hostname", default=None)
    # One process is held to one core by its GIL: by default one process per CPU (a supervisor and
    # fresh `--processes 1` children, syncer/worker/supervise.py); 1 runs the Celery worker in this process.
    p.add_argument(
        "--processes", type=_processes, default=None, metavar="N|auto",
        help="worker processes, each with --concurrency threads "
        "(default: $SYNCER_WORKER_PROCESSES, else auto = one per CPU)",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="run the scheduler (exactly one per deployment)")
    p.add_argument(
        "--schedule",
        type=Path,
        help="file of last-run times (default: one per deployment in the system's temporary directory)",
    )
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser("dev", help="web + worker + beat in one command, on embedded defaults")
    p.add_argument("--port", type=int, default=None, help="default: $PORT, else SYNCER_PORT, else 8000")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("sandbox", help="dev against bundled fake Sentry and Jira, with a demo story")
    p.add_argument(
        "--port", type=int, default=None, help=f"default {DEMO_PORT}, or any free port when it is taken"
    )
    p.add_argument("--issues", type=int, default=5, help="how many demo Sentry issues to file")
    p.add_argument(
        "--once", action="store_true", help="stop after the demo story instead of waiting for Ctrl-C"
    )
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("check-config", help="validate the configuration and print the routing table")
    p.add_argument(
        "--online", action="store_true",
        help="also check the policy against Jira and Sentry: create screens (required and unknown fields, "
        "values not allowed, components), assignees, workflows",
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("sentry-app", help="the Sentry integration's UI components")
    app_sub = p.add_subparsers(dest="app_command", required=True)
    app_sub.add_parser("schema", help="print the UI-component schema (JSON) for the integration's settings")
    p.set_defaults(func=cmd_sentry_app)

    p = sub.add_parser("route", help="routing tools")
    route_sub = p.add_subparsers(dest="route_command", required=True)
    q = route_sub.add_parser("explain", help="which route an issue takes, and why")
    q.add_argument("issue", help="a JSON file (webhook body or issue object) or a Sentry issue id")
    q.set_defaults(func=cmd_route_explain)

    p = sub.add_parser("links", help="links between Sentry issues and Jira tickets")
    links_sub = p.add_subparsers(dest="links_command", required=True)
    q = links_sub.add_parser("list")
    q.add_argument("--state", default=None)
    q.add_argument("--limit", type=int, default=100)
    q = links_sub.add_parser("show")
    q.add_argument("sentry_id")
    q = links_sub.add_parser("link")
    q.add_argument("sentry_id")
    q.add_argument("jira_key")
    q = links_sub.add_parser("unlink")
    q.add_argument("sentry_id")
    p.set_defaults(func=cmd_links)

    p = sub.add_parser("dead-letters", help="failures that exhausted their retries")
    dl_sub = p.add_subparsers(dest="dl_command", required=True)
    q = dl_sub.add_parser("list")
    q.add_argument("--limit", type=int, default=100)
    for name in ("retry", "drop"):
        q = dl_sub.add_parser(name)
        q.add_argument("ids", nargs="+", type=int)
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser("reconcile", help="repair drift between linked pairs, backfill missed tickets, sweep")
    p.add_argument("--dry-run", action="store_true", help="print the drift and the repairs; change nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON, for machines")
    p.add_argument("--full", action="store_true",
                   help="read every link, not only what changed and the full pass's next slice")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("report", help="triage figures per team and route, for a weekly digest")
    p.add_argument("--team", default=None, help="one team of the policy (default: every team)")
    p.add_argument("--since", type=_since, default=timedelta(days=7), metavar="DURATION",
                   help="the window the team figures cover: 24h, 7d, 4w... (default 7d)")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("db", help="database schema")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations (the release step)")
    db_sub.add_parser("current", help="show the schema revision")
    p.set_defaults(func=cmd_db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        settings = load_settings()
        _setup_logging(settings)
        return handler(args, settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SyncerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
