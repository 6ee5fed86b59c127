"""fleet migrate, fleet status: `neon-migrate migrate` over many databases (neon_migrate.fleet).

Everything that can be refused is refused before any target starts: the targets file
(exit 2, its line named), the flags, two targets naming one database, the scripts (no
revision, several heads, an unknown --to). A target's own problems (a variable unset,
its database unreachable or ahead of the scripts) are that target's outcome.
"""

from __future__ import annotations

import argparse
import os
import time

from neon_migrate.commands import Command
from neon_migrate.commands.output import note, verbose
from neon_migrate.fleet.shard import parse_shard


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= 1000:
            raise argparse.ArgumentTypeError(f"{text!r}: a whole number from {minimum} to 1000")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from neon_migrate.cli import EXIT_CODES

    actions = parser.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    common = {"epilog": EXIT_CODES, "formatter_class": argparse.RawDescriptionHelpFormatter}
    migrate = actions.add_parser(
        "migrate",
        help="migrate every target: canary first, then N at once",
        description="Run `neon-migrate migrate` on every target of the file (or of this "
        "--shard), each in its own process: the first --canary K alone first, then at "
        "most --concurrency N at once. A target already at the wanted revision costs one "
        "query.",
        **common,
    )
    status = actions.add_parser(
        "status",
        help="each target's revision: at head, behind by n, ahead, unreachable",
        description="Each target's revision and state (at-head, behind by n, ahead, "
        "unknown-revision, unreachable). Changes nothing.",
        **common,
    )
    for command in (migrate, status):
        command.add_argument(
            "--targets",
            required=True,
            metavar="FILE",
            help="the targets file (TOML: [[target]] tables or [neon])",
        )
        command.add_argument(
            "--shard",
            type=parse_shard,
            default=(1, 1),
            metavar="I/N",
            help="run shard I of N (a stable hash of the names; the canary is in shard 1)",
        )
    migrate.add_argument(
        "--concurrency",
        type=_count(1),
        default=4,
        metavar="N",
        help="targets at once after the canary (default 4)",
    )
    migrate.add_argument(
        "--canary",
        type=_count(0),
        default=1,
        metavar="K",
        help="the first K targets go first, one at a time; a failure there "
        "stops everything (default 1)",
    )
    migrate.add_argument(
        "--keep-going",
        action="store_true",
        help="after the canary, a failure does not stop new starts",
    )
    migrate.add_argument("--to", metavar="REV", help="stop at this revision (default: head)")
    migrate.add_argument(
        "--dry-run",
        action="store_true",
        help="read each target's revision, say what would be applied",
    )
    for command in (migrate, status):
        command.add_argument("--json", action="store_true", help="JSON on stdout, for machines")
        command.add_argument("--format", choices=["text", "json", "markdown"],
                             help="text (default), json (= --json) or markdown")  # fmt: skip


def cmd_fleet(args: argparse.Namespace) -> int:
    return _migrate(args) if args.fleet_command == "migrate" else _status(args)


def _selected(args: argparse.Namespace, canary: int):
    """(canary, rest, header): this shard's targets with their URLs, the rest refused."""
    from neon_migrate.fleet import shard, targets
    from neon_migrate.fleet.neon import NeonFleet

    file = targets.read(args.targets)
    everything = list(file.targets)
    neon = NeonFleet(file.neon, os.environ) if file.neon else None
    try:
        if neon is not None:
            everything += neon.targets()
        first, rest = shard.select(everything, args.shard, canary)
        if neon is not None:
            fetched = {
                t.name: t
                for t in neon.with_urls(
                    t for t in first + rest if t.url is None and t.url_env is None
                )
            }
            first = [fetched.get(t.name, t) for t in first]
            rest = [fetched.get(t.name, t) for t in rest]
    finally:
        if neon is not None:
            neon.api.close()
    if len({t.name for t in everything}) < len(everything):
        from neon_migrate.errors import ConfigError

        raise ConfigError(
            f"{file.path}: a [neon] branch has the name of a [[target]]", "rename the [[target]]"
        )
    targets.refuse_duplicates(
        [*file.targets, *(t for t in first + rest if t.url)], os.environ, file.path
    )
    index, count = args.shard
    header = {
        "targets_file": str(file.path),
        "shard": f"{index}/{count}",
        "fleet_size": len(everything),
    }
    return first, rest, header


def _entries(chosen, action: str, wanted, to=None, known=frozenset(), below=None):
    from neon_migrate.fleet.runner import Entry
    from neon_migrate.fleet.targets import TargetProblem
    from neon_migrate.fleet.worker import Job

    made = []
    for target in chosen:
        try:
            variables = target.variables(os.environ)
        except TargetProblem as problem:
            made.append(Entry(target.name, None, str(problem)))
            continue
        renames = {
            "DATABASE_URL_DIRECT": target.url_env or f"the connection URI of branch {target.name}"
        }
        if target.pooled_url_env:
            renames["DATABASE_URL"] = target.pooled_url_env
        job = Job(target.name, action, variables, wanted, to, known, below, renames)
        made.append(Entry(target.name, job))
    return made


def _migrate(args: argparse.Namespace) -> int:
    from neon_migrate.fleet.report import Progress, entry, migrate_report
    from neon_migrate.fleet.revisions import Scripts
    from neon_migrate.fleet.runner import Runner

    started = time.monotonic()
    scripts = Scripts()
    wanted, below = scripts.wanted(args.to)
    first, rest, header = _selected(args, args.canary)
    action = "dry-run" if args.dry_run else "migrate"
    canary = _entries(first, action, wanted, args.to, scripts.known, below)
    others = _entries(rest, action, wanted, args.to, scripts.known, below)
    total = len(canary) + len(others)
    header["wanted"] = ", ".join(wanted)
    note(
        f"fleet: {total} of {header['fleet_size']} target(s) in shard {header['shard']}; "
        f"canary: {', '.join(e.name for e in canary) or 'none'}; at most {args.concurrency} "
        f"at once; wanted: {header['wanted']}{' (dry run)' if args.dry_run else ''}"
    )
    progress = Progress(total, verbose())
    keep_going = args.keep_going or args.dry_run
    runner = Runner(args.concurrency, keep_going, progress.started, progress.ended)
    if args.dry_run:  # nothing changes: no canary order to keep
        others, canary = canary + others, []
    results = runner.run(canary, others)
    rows = []
    for e in canary + others:
        result = results[e.name]
        if args.dry_run and result["outcome"] == "not-run" and "revisions" in result:
            result["pending"] = scripts.pending(tuple(result["revisions"]), wanted)
        rows.append(entry(e.name, result))
    return migrate_report(
        rows,
        header,
        runner.signals,
        runner.stopped,
        (time.monotonic() - started) * 1000,
        args.format,
        args.dry_run,
    )


STATUS_CONCURRENCY = 8  # read-only: one connection and one query per target


def _status(args: argparse.Namespace) -> int:
    from neon_migrate.fleet.report import status_report, status_row
    from neon_migrate.fleet.revisions import Scripts
    from neon_migrate.fleet.runner import Runner

    scripts = Scripts()
    first, rest, header = _selected(args, canary=0)
    entries = _entries(first + rest, "status", scripts.heads)
    runner = Runner(STATUS_CONCURRENCY, True, lambda *_: None, lambda *_: None)
    results = runner.run([], entries)
    if runner.signals:
        return 128 + runner.signals[0]
    rows = [status_row(e.name, results[e.name], scripts, scripts.heads) for e in entries]
    return status_report(rows, header, args.format)


COMMAND = Command(
    "fleet",
    "migrate many databases: canary first, bounded concurrency, shards",
    "`neon-migrate migrate` on every database of a targets file, each in its own "
    "process: `fleet migrate` (canary first, then --concurrency at once; --shard "
    "I/N for a CI matrix) and `fleet status`.",
    cmd_fleet,
    add_arguments,
)
