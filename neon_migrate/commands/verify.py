"""verify: both endpoints reachable, TLS in use, at the scripts' head; and the verify report
that `migrate` ends with."""

from __future__ import annotations

import argparse

from neon_migrate.commands import Command, json_argument
from neon_migrate.commands.output import detail, note, out, out_json


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


COMMAND = Command(
    "verify",
    "check both endpoints: reachable, TLS, at head",
    "Check both endpoints: reachable, TLS in use, at the scripts' head.",
    cmd_verify,
    json_argument,
    through_env_py=True,
)
