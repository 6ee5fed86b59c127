"""migrate: upgrade on the direct endpoint under the migration lock, then verify both
endpoints; `--dry-run` says what would be applied.

`migrate` at head (the common case on a deploy) costs one connection and one query,
and that answer is also the direct endpoint's verification: no Alembic, no SQLAlchemy.
"""

from __future__ import annotations

import argparse
import time

from neon_migrate import project
from neon_migrate.commands import Command, json_argument
from neon_migrate.commands.output import note, out, out_json
from neon_migrate.commands.verify import graph, report, say_pools, verify_items
from neon_migrate.errors import ConfigError
from neon_migrate.migrate.heads import refuse_unknown


def _arguments(parser: argparse.ArgumentParser) -> None:
    json_argument(parser)
    parser.add_argument("--to", metavar="REV", help="stop at this revision (default: head)")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be applied; change nothing")  # fmt: skip


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

    from neon_migrate.migrate.progress import APPLIED, REVISION_NOW

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


COMMAND = Command(
    "migrate",
    "upgrade on the direct endpoint, then verify",
    "Upgrade to head (or --to REV) on the direct endpoint under the migration "
    "lock, then verify both endpoints. A line on stderr as each revision "
    "starts and ends.",
    cmd_migrate,
    _arguments,
    through_env_py=True,
)
