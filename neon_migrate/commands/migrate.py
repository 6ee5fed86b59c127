"""migrate, verify, sql, revision, downgrade: Alembic's commands through the harness.

`migrate` at head (the common case on a deploy) costs one connection and one query,
and that answer is also the direct endpoint's verification: no Alembic, no SQLAlchemy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from neon_migrate import project
from neon_migrate.commands.output import detail, note, out, out_json
from neon_migrate.errors import ConfigError, MigrationError
from neon_migrate.migrate.heads import refuse_unknown


def cmd_migrate(args: argparse.Namespace) -> int:
    from neon_migrate.connection.endpoints import get_endpoints
    from neon_migrate.connection.health import check_connection

    known, heads = graph()
    target = _target(args.to, known, heads)  # two unmerged heads: refused before connecting
    for line in get_endpoints().describe():
        note(f"migrate: {line}")
    started = time.perf_counter()
    direct = check_connection("direct")
    refuse_unknown(direct.revisions, known)
    if args.dry_run:
        return _dry_run(direct.revisions, target, args.json, direct.server_version)
    if not heads:  # an empty versions folder: verify says what to do
        note("migrate: no revisions to apply")
        return report("migrate", verify_items(heads, known, direct), args.json)
    say = note if args.json else out  # the outcome, unless stdout is the JSON
    if direct.revisions == target:
        ms = (time.perf_counter() - started) * 1000
        say(f"migrate: already at {_at(target, heads)}; nothing to apply ({ms:.0f} ms)")
        return report("migrate", verify_items(target, known, direct), args.json, applied=[])
    from alembic import command

    from neon_migrate.migrate.environment import REVISION_NOW
    from neon_migrate.migrate.progress import APPLIED

    config = project.alembic_config()
    command.upgrade(config, args.to or "heads")
    ms = (time.perf_counter() - started) * 1000
    applied = config.attributes.get(APPLIED, [])
    now = config.attributes.get(REVISION_NOW, ", ".join(target))
    if applied:
        say(f"migrate: applied {len(applied)} revision(s) in {ms:.0f} ms; now at {now}")
    else:  # another run got there first, while we waited for its lock
        say(f"migrate: already at {_at(target, heads)}; nothing to apply ({ms:.0f} ms)")
    say_pools("migrate")
    done = [{"revision": rev, "direction": way, "ms": round(t, 1)} for way, rev, t in applied]
    return report("migrate", verify_items(target, known), args.json, applied=done, now=now)


def _target(to: str | None, known, heads: tuple[str, ...]) -> tuple[str, ...]:
    """The revision(s) `migrate --to` should end at: the one head without it.

    Two unmerged heads are refused before anything connects, as stock Alembic refuses
    `upgrade head`: applying both branches would leave two rows in alembic_version and a
    schema no code was written for. `--to` one of them stays possible."""
    if to is None or to in ("head", "heads"):
        if len(heads) > 1:
            raise ConfigError(
                f"the revisions have {len(heads)} heads ({', '.join(heads)}): two branches "
                "of revisions that nothing has merged",
                "merge them with `alembic merge heads -m merge` (then migrate), or apply "
                f"one branch with `neon-migrate migrate --to {heads[0]}`",
            )
        return heads
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(project.alembic_config())
    try:
        found = script.get_revision(to)
    except CommandError as exc:
        raise ConfigError(f"--to {to}: {exc}", "name one `neon-migrate history` lists") from None
    if found is None:
        raise ConfigError(f"--to {to}: no such revision", "name one `neon-migrate history` lists")
    return (found.revision,)


def _at(target: tuple[str, ...], heads: tuple[str, ...]) -> str:
    return f"head ({', '.join(heads)})" if target == heads else ", ".join(target)


def _dry_run(current: tuple[str, ...], target: tuple[str, ...], as_json: bool,
             server_version: str) -> int:  # fmt: skip
    """What `migrate` would apply, and how each revision would go (fast_path.py): read from
    the database, nothing taken, nothing changed."""
    from alembic.script import ScriptDirectory

    from neon_migrate.migrate import fast_path
    from neon_migrate.migrate.environment import target_metadata
    from neon_migrate.migrate.heads import one_database_head
    from neon_migrate.settings import get_settings

    config = project.alembic_config()
    script = ScriptDirectory.from_config(config)
    start = one_database_head(current) or "base"
    pending = list(reversed(list(script.iterate_revisions(target, start))))
    version = fast_path.version_of(server_version)
    enabled = get_settings().migration_fast_path
    paths = fast_path.plans(pending, version, pending and target_metadata(config), enabled)
    rows = [{"revision": s.revision, "message": s.doc or "", "path": paths[s.revision].path,
             "why": paths[s.revision].reason} for s in pending]  # fmt: skip
    if as_json:
        out_json({"command": "migrate", "dry_run": True, "current": list(current),
                  "target": list(target), "pending": rows})  # fmt: skip
        return 0
    where = ", ".join(current) or "no revision (empty)"
    if not rows:
        out(f"migrate --dry-run: the database is at {where}; nothing to apply")
        return 0
    out(f"migrate --dry-run: the database is at {where}; would apply {len(rows)} revision(s):")
    for s in pending:
        out(f"  {s.revision}  {s.doc or ''}  [{fast_path.describe(paths[s.revision])}]")
    fast = sum(1 for p in paths.values() if p.fast)
    out(f"  ({fast} as one message each, {len(rows) - fast} statement by statement)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from neon_migrate.connection.endpoints import get_endpoints

    for line in get_endpoints().describe():
        note(f"verify: {line}")
    known, heads = graph()
    return report("verify", verify_items(heads, known), args.json)


def verify_items(heads, known, direct=None):
    from neon_migrate.migrate.verify import verify

    return verify(heads, known, direct=direct)


def report(command: str, items, as_json: bool, **extra) -> int:
    failed = [item for item in items if not item.ok]
    code = max((item.exit_code for item in failed), default=0)
    if as_json:
        checks = [
            {
                "name": i.name,
                "ok": i.ok,
                "detail": i.detail,
                **({"warning": True} if i.warning else {}),
            }
            for i in items
        ]
        out_json({"command": command, "ok": not failed, **extra, "verify": checks})
        return code
    width = max(len(item.name) for item in items)
    for item in items:
        status = ("warn" if item.warning else "ok  ") if item.ok else "FAIL"
        out(f"verify: {item.name:<{width}}  {status}  {item.detail}")
    if failed:
        out(f"verify: FAILED: {', '.join(item.name for item in failed)}")
    return code


def graph() -> tuple[frozenset[str], tuple[str, ...]]:
    """Every revision id and the heads: Alembic's answer (neon_migrate.migrate.heads)."""
    from neon_migrate.migrate import heads

    return heads.graph()


def say_pools(command: str) -> None:
    """The pools this run used, in the words of /health/db/pool (with -v)."""
    import sys

    if "neon_migrate.observe.pool_stats" not in sys.modules:  # no engine was built
        return
    from neon_migrate.observe.figures import pool_text
    from neon_migrate.observe.pool_stats import all_stats

    for stats in all_stats():
        detail(f"{command}: {pool_text(stats.snapshot())}")


def cmd_sql(args: argparse.Namespace) -> int:
    """Offline SQL on stdout; with --pending only what the database does not have yet."""
    import sys

    from alembic import command

    # The SQL goes to stdout either way; naming it makes env.py raise its error to us
    # (one `error:` line) rather than print it and exit, as it does for `alembic --sql`.
    config = project.alembic_config(output_buffer=sys.stdout)
    target = args.to or "heads"
    if not args.pending:
        command.upgrade(config, target, sql=True)
        return 0
    from neon_migrate.connection.health import check_connection
    from neon_migrate.migrate.heads import one_database_head

    current = check_connection("direct").revisions
    at = one_database_head(current)
    known, heads = graph()
    refuse_unknown(current, known)
    if current == (heads if target == "heads" else (target,)):
        note(f"sql: the database is at {at}; nothing pending")
        return 0
    start = f"{at}:" if at else ""
    command.upgrade(config, f"{start}{target}", sql=True)
    return 0


def cmd_revision(args: argparse.Namespace) -> int:
    from alembic import command

    from neon_migrate.migrate.undefined_names import problem

    config = project.alembic_config()
    written = command.revision(config, message=args.message, autogenerate=not args.empty)
    scripts = written if isinstance(written, list) else [written]
    problems = [found for s in scripts if s is not None and (found := problem(Path(s.path)))]
    if problems:  # it would fail only when run, against the database: say it now
        raise MigrationError("; ".join(problems), "import what it uses, or edit the lines named")
    return 0


def cmd_downgrade(args: argparse.Namespace) -> int:
    from alembic import command

    config = project.alembic_config()
    command.downgrade(config, args.revision)
    return 0
