"""The `reverie` command: migrate, projects and keys, every project's status, backfills, the local stack, schedules,
DLQs, and MCP over stdio."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from reverie.domain.tiers import Tier

DLQ_TIERS = [t.value for t in Tier] + ["narrative"]


def _clients():
    from reverie.platform.clients import clients

    return clients()


def cmd_migrate(args: argparse.Namespace) -> int:
    from reverie.store import current_version, latest_version, migrate

    clients = _clients()
    db = clients.migration_database()
    # MIGRATE_STATEMENT_TIMEOUT_S lets a long migration (one that reads every memory of a large table) finish here.
    applied = migrate(db, lock_timeout_s=clients.settings.migrate_lock_timeout_s,
                      statement_timeout_s=clients.settings.migrate_statement_timeout_s)
    if applied:
        for m in applied:
            print(f"applied {m.version:04d}_{m.name}")
    else:
        print(f"schema is current (version {current_version(db)} of {latest_version()}); nothing to apply")
    db.close()
    return 0


def _admin(args: argparse.Namespace, event: dict) -> dict:
    """The admin function's answer, on --stack or on the running `make dev` (reverie_dev.admin)."""
    return _connect(args)({k: v for k, v in event.items() if v is not None})


def _connect(args: argparse.Namespace):
    """`invoke(event)` for the admin function of --stack, or of the running `make dev` (reverie_dev.admin)."""
    from reverie_dev import admin

    if args.region and not args.stack:
        raise CommandError("--region goes with --stack NAME (the local stack needs neither)")
    return admin.connect(stack=args.stack, region=args.region, data_dir=args.data_dir)


def cmd_project_create(args: argparse.Namespace) -> int:
    answer = _admin(args, {"action": "project.create", "project_id": args.project_id, "name": args.name})
    print(json.dumps(answer, indent=2))
    print("The API key is shown only now: keep it.", file=sys.stderr)
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    print(json.dumps(_admin(args, {"action": "project.list"}), indent=2))
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    answer = _admin(args, {"action": "key.create", "project_id": args.project_id, "name": args.name})
    print(json.dumps(answer, indent=2))
    print("The API key is shown only now: keep it.", file=sys.stderr)
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    print(json.dumps(_admin(args, {"action": "key.list", "project_id": args.project_id}), indent=2))
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    answer = _admin(args, {"action": "key.revoke", "project_id": args.project_id, "key_id": args.key_id})
    print(json.dumps(answer, indent=2))
    bound = answer.get("refused_within_s")
    within = (f"within {bound} s: API Gateway caches the authorizer's answer for a key up to ReauthorizeEvery, "
              "and the authorizer caches the key up to AUTH_CACHE_TTL_S" if bound is not None else
              "once the authorizer's caches expire")
    if answer.get("revoked"):
        print(f"Revoked. It is refused at once where no cache holds it, and everywhere {within}.", file=sys.stderr)
    else:
        print("It was revoked before.", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    print(json.dumps(_admin(args, {"action": "ops.status"}), indent=2))
    return 0


def cmd_backfill_conversations(args: argparse.Namespace) -> int:
    """Import a file of conversations (see reverie_dev.backfill) through the admin function, with a progress bar and a
    summary; 0 when nothing failed. Ctrl-C stops it with the summary so far (run it again to continue)."""
    from reverie_dev import admin, backfill

    if args.rate < 0:
        raise CommandError("--rate is jobs a second: 0 (no limit) or more")
    path = Path(args.file)
    try:
        source = backfill.read_source(path, args.format)
    except backfill.InputError as exc:
        raise CommandError(str(exc)) from None
    if args.limit is not None:
        source.items = source.items[:args.limit]
    where = f"stack {args.stack}" if args.stack else f"the local stack on {args.data_dir}"
    invoke = _connect(args)
    progress = backfill.Progress(sum(i.turns for i in source.items), unit="turns", label=f"importing {path.name}")
    started = time.monotonic()
    totals, interrupted, stopped_by = backfill.Totals(), False, None
    try:
        backfill.send_conversations(invoke, args.project, source, rate=args.rate, totals=totals,
                                    include_forgotten=args.include_forgotten, progress=progress)
    except KeyboardInterrupt:
        interrupted = True
    except admin.AdminError as exc:
        stopped_by = exc
    finally:
        progress.close()
    if stopped_by is not None:
        if totals.conversations:  # what was done before the stop: a second run skips it
            print(backfill.summary(totals, title=f"Backfill of {path.name} stopped", rate=args.rate,
                                   seconds=time.monotonic() - started))
        raise stopped_by
    title = f"Backfill of {path.name} into project {args.project} on {where}{' (interrupted)' if interrupted else ''}"
    print(backfill.summary(totals, title=title, seconds=time.monotonic() - started, rate=args.rate))
    for note in totals.notes[:backfill.SHOWN_FAILURES]:
        print(f"skipped: {note}" + (" (--include-forgotten imports them)" if "forgotten" in note else ""),
              file=sys.stderr)
    for failure in totals.failures[:backfill.SHOWN_FAILURES]:
        print(f"failed: {failure}", file=sys.stderr)
    if len(totals.failures) > backfill.SHOWN_FAILURES:
        print(f"... and {len(totals.failures) - backfill.SHOWN_FAILURES} more", file=sys.stderr)
    if interrupted:
        print("Interrupted: run the same command again to continue (what was published is skipped).", file=sys.stderr)
        return 130
    return 1 if totals.failed or totals.invalid else 0


def cmd_backfill_narratives(args: argparse.Namespace) -> int:
    from reverie_dev import backfill

    if args.min_memories < 1:
        raise CommandError("--min-memories is at least 1")
    invoke = _connect(args)
    totals = backfill.queue_narratives(invoke, args.project, min_memories=args.min_memories, rate=args.rate,
                                       everyone=args.all)
    print(f"Narratives for project {args.project}: {totals.users:,} users with at least {args.min_memories} "
          f"memories: {totals.queued:,} jobs queued, {totals.pending:,} already pending, {totals.current:,} up to "
          "date (written since their memories last changed)")
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    """Embed a project's memories again with the deployed embedding model, an invocation's share at a time."""
    from reverie_dev import backfill

    invoke = _connect(args)
    event = {"action": "embeddings.reembed", "project_id": args.project, "batch": args.batch}
    answer = invoke(event)
    done = int(answer["reembedded"])
    progress = backfill.Progress(done + int(answer["remaining"]), label=f"re-embedding with {answer['model']}",
                                 unit="memories")
    try:
        progress.advance(done, f"{answer['remaining']:,} left")
        while answer.get("next_after") is not None:
            answer = invoke({**event, "after": answer["next_after"]})
            done += int(answer["reembedded"])
            progress.advance(int(answer["reembedded"]), f"{answer['remaining']:,} left")
    except KeyboardInterrupt:
        progress.close()
        print("Interrupted: run the same command again to go on (what was embedded again is skipped).",
              file=sys.stderr)
        return 130
    progress.close()
    left = int(answer["remaining"])
    print(f"Project {args.project}: {done:,} memories embedded again with {answer['model']}; {left:,} left"
          + (" (written or edited meanwhile: run it again)" if left else ""))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from reverie_dev.local.runner import main_dev

    return main_dev(args)


def cmd_schedule(args: argparse.Namespace) -> int:
    from reverie_dev.local.runner import run_schedule

    print(json.dumps(run_schedule(args.name, data_dir=args.data_dir), indent=2, default=str))
    return 0


def cmd_dlq(args: argparse.Namespace, clients=None) -> int:
    """The `reverie dlq` command (on the process's clients unless given others)."""
    from reverie.jobs import dlq

    clients = clients or _clients()
    name = args.tier
    try:
        if args.action == "list":
            parked = dlq.list_messages(clients, name, limit=getattr(args, "limit", None) or dlq.LIST_LIMIT)
            print(f"{len(parked)} message(s) in the {name} dead-letter queue")
            for p in parked:
                print(p.summary())
            return 0
        if args.action == "show":
            found = dlq.show(clients, name, args.message_id)
            if found is None:
                print(f"no message {args.message_id} in the {name} dead-letter queue", file=sys.stderr)
                return 1
            print(json.dumps(found.as_dict(), indent=2, default=str))
            return 0
        if args.action == "redrive":
            result = dlq.redrive(clients, name, limit=getattr(args, "limit", None))
            if result.method == "move-task":
                print(f"started a move task {result.task_handle}: {result.note}")
            else:
                print(f"moved {result.moved} message(s) back to the {name} queue ({result.note})")
            return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"error: unknown action {args.action!r}", file=sys.stderr)
    return 2


def cmd_mcp(args: argparse.Namespace) -> int:
    from reverie_dev.mcp_stdio import run_stdio

    run_stdio(args.url, args.api_key, args.user_id)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reverie", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply schema migrations (a no-op when current)").set_defaults(func=cmd_migrate)

    # Projects and keys go through the admin function: of the running `make dev`, or of a deployed stack.
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--stack", help="a deployed stack's name (default: the `make dev` running on --data-dir)")
    target.add_argument("--region", help="the deployed stack's region (default: your AWS configuration's)")
    target.add_argument("--data-dir", default=".reverie", help="the data dir of the running `make dev`")

    project = sub.add_parser("project", help="projects").add_subparsers(dest="action", required=True)
    create = project.add_parser("create", parents=[target], help="create a project and print its first API key")
    create.add_argument("project_id", metavar="PROJECT")
    create.add_argument("--name", help="a readable name (default: the project id)")
    create.set_defaults(func=cmd_project_create)
    project.add_parser("list", parents=[target], help="list the projects").set_defaults(func=cmd_project_list)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    kc = key.add_parser("create", parents=[target], help="issue another API key for a project")
    kc.add_argument("project_id", metavar="PROJECT")
    kc.add_argument("--name", help="what the key is for")
    kc.set_defaults(func=cmd_key_create)
    kl = key.add_parser("list", parents=[target], help="list a project's keys (ids and prefixes, never the keys)")
    kl.add_argument("project_id", metavar="PROJECT")
    kl.set_defaults(func=cmd_key_list)
    kr = key.add_parser("revoke", parents=[target], help="revoke a key")
    kr.add_argument("project_id", metavar="PROJECT")
    kr.add_argument("key_id", metavar="KEY_ID")
    kr.set_defaults(func=cmd_key_revoke)

    status = sub.add_parser("status", parents=[target], help="every project's figures, for operators: queue and DLQ "
                            "depths, outboxes, reflection windows, failures, the projects with jobs waiting")
    status.set_defaults(func=cmd_status)

    backfill = sub.add_parser("backfill", help="import the past: conversations, then narratives").add_subparsers(
        dest="action", required=True)
    bc = backfill.add_parser("conversations", parents=[target], help="import a file of timestamped conversations "
                             "(JSON lines, or the LoCoMo format): each user's jobs published in order, dated when "
                             "said; what was published before is skipped")
    bc.add_argument("file", metavar="FILE")
    bc.add_argument("--project", required=True, help="the project to import into")
    bc.add_argument("--format", choices=("auto", "jsonl", "locomo"), default="auto",
                    help="the file's format (default: LoCoMo when it is a JSON list, else JSON lines)")
    bc.add_argument("--rate", type=float, default=20.0,
                    help="jobs published a second at most (default 20; 0: no limit)")
    bc.add_argument("--limit", type=int, default=None, help="import only the first N conversations")
    bc.add_argument("--include-forgotten", action="store_true",
                    help="import users who were forgotten too (by default they are not brought back)")
    bc.set_defaults(func=cmd_backfill_conversations)
    bn = backfill.add_parser("narratives", parents=[target], help="queue a narrative for every user of a project "
                             "with enough memories and none written since they changed (one pending job per user)")
    bn.add_argument("--project", required=True)
    bn.add_argument("--min-memories", type=int, default=5, help="memories a user needs (default 5)")
    bn.add_argument("--rate", type=float, default=20.0, help="jobs queued a second at most (default 20; 0: no limit)")
    bn.add_argument("--all", action="store_true", help="queue one for users whose narrative is up to date too")
    bn.set_defaults(func=cmd_backfill_narratives)

    reembed = sub.add_parser("reembed", parents=[target], help="embed a project's memories again with the embedding "
                             "model now deployed (after a change of model; resumable)")
    reembed.add_argument("--project", required=True)
    reembed.add_argument("--batch", type=int, default=100, choices=range(1, 1001), metavar="N",
                         help="memories per embedding call (1-1000, default 100)")
    reembed.set_defaults(func=cmd_reembed)

    dev = sub.add_parser("dev", help="run the whole system locally (API on localhost:3000)")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--data-dir", default=".reverie")
    dev.add_argument("--reset", action="store_true", help="wipe the local data first")
    dev.add_argument("--schedule-rate", type=float, default=None,
                     help="seconds between local schedule firings (default: the template's rates)")
    dev.add_argument("--retry-delay", type=float, default=None,
                     help="seconds before a failed queue message is retried (default 2; Lambda waits for the "
                          "queue's visibility timeout)")
    dev.set_defaults(func=cmd_dev)

    schedule = sub.add_parser("schedule", help="schedules").add_subparsers(dest="action", required=True)
    run = schedule.add_parser("run", help="fire a schedule's function now")
    run.add_argument("name", help="weekly | health")
    run.add_argument("--data-dir", default=".reverie", help="the data dir of the running `reverie dev`")
    run.set_defaults(func=cmd_schedule)

    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="action", required=True)
    for action in ("list", "show", "redrive"):
        a = dlq.add_parser(action)
        a.add_argument("--tier", required=True, choices=DLQ_TIERS)
        if action == "show":
            a.add_argument("message_id")
        if action == "redrive":
            a.add_argument("--limit", type=int, default=None)
        a.set_defaults(func=cmd_dlq)

    mcp = sub.add_parser("mcp", help="an MCP server over stdio, forwarding to the HTTP API")
    mcp.add_argument("--url", default="http://localhost:3000")
    mcp.add_argument("--api-key", required=True)
    mcp.add_argument("--user-id", required=True)
    mcp.set_defaults(func=cmd_mcp)
    return p


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line on stderr, `error: ...`, and a non-zero exit (REVERIE_DEBUG=1 shows the
    traceback of an unexpected one)."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from reverie.domain.errors import ReverieError
        from reverie_dev.admin import AdminError

        if isinstance(exc, ReverieError):
            print(f"error: {_one_line(exc.message)}", file=sys.stderr)
            return 2
        if isinstance(exc, CommandError | AdminError):
            print(f"error: {_one_line(str(exc))}", file=sys.stderr)
            return 1
        if os.environ.get("REVERIE_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {_one_line(str(exc))} (REVERIE_DEBUG=1 shows where)", file=sys.stderr)
        return 1


class CommandError(Exception):
    """A command used wrongly, as the one line the user reads."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
