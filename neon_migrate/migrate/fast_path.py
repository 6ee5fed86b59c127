"""Which revisions may be sent as one message, and the SQL of that message's body.

A revision whose `upgrade()` only emits DDL and DML through `op` can be rendered to SQL
before it runs, without touching the database, and then sent as `BEGIN; <body>; <stamp>;
<history row>; COMMIT` in one round trip instead of a round trip per statement. Rendering
is Alembic's own offline mode (`as_sql`), on the server's real version, so the SQL is
what Alembic would send online.

The decision is conservative: anything that may read the database, behave differently
offline, or leave the transaction means the normal path, with the reason said:
- the source reads through the bind (`get_bind`, `inspect`, `reflect`), checks the mode
  (`is_offline_mode`, `as_sql`) or the server's version, or runs an `autocommit_block`;
- the revision opts out (`neon_migrate_fast_path = False` in its module);
- it runs an operation a plugin registered (it may read the database online, as an
  enum-sync operation does);
- rendering fails, or the SQL holds what cannot run in one transaction message
  (`CONCURRENTLY`, a `COMMIT` of its own), a session-level `SET` that would outlive
  the message (the normal path puts the harness's timeouts back after it), or a `CREATE
  INDEX IF NOT EXISTS` (the normal path refuses to stamp over an index left INVALID).
A setting (MIGRATION_FAST_PATH=false) turns it off for a run; round_trips.py sends it.
"""

from __future__ import annotations

import functools
import inspect
import io
import re
from dataclasses import dataclass

from alembic.operations.ops import ExecuteSQLOp
from alembic.runtime.migration import MigrationContext
from alembic.script import Script
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from neon_migrate import compat

OPT_OUT = "neon_migrate_fast_path"  # module-level flag a revision sets to False

# Source that means the revision looks at the database or at how it is run.
_SOURCE_REASONS = (
    (re.compile(r"\bget_bind\b|\bget_context\(\)\.bind\b"), "it uses the connection (get_bind)"),
    (re.compile(r"\binspect\s*\(|\bInspector\b"), "it inspects the database"),
    (re.compile(r"\.reflect\s*\("), "it reflects tables from the database"),
    (re.compile(r"\bis_offline_mode\b|\bas_sql\b"), "it checks whether it runs offline"),
    (re.compile(r"\bserver_version"), "it checks the server's version"),
    (re.compile(r"\bautocommit_block\b"), "it runs an autocommit_block"),
    (re.compile(r"\bexecution_options\b|\bisolation_level\b"), "it changes the connection"),
)
# Rendered SQL that one transaction message cannot hold.
_SQL_REASONS = (
    (re.compile(r"\bCONCURRENTLY\b", re.IGNORECASE), "CONCURRENTLY cannot run in a transaction"),
    (re.compile(r"^\s*(?:COMMIT|BEGIN|ROLLBACK|END)\b", re.IGNORECASE | re.MULTILINE),
     "it ends its own transaction"),
    (re.compile(r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\b", re.IGNORECASE),
     "it creates an index IF NOT EXISTS (the normal path refuses one left INVALID)"),
    (re.compile(r"^\s*(?:SET(?!\s+LOCAL\b)|RESET)\b|\bset_config\s*\(",
                re.IGNORECASE | re.MULTILINE),
     "it changes a session setting (the normal path puts it back)"),
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    revision: str
    statements: tuple[str, ...] | None  # sent between BEGIN and the stamp; None: normal path
    reason: str  # why this path, in words

    @property
    def fast(self) -> bool:
        return self.statements is not None

    @property
    def sql(self) -> str | None:
        return None if self.statements is None else ";\n".join(self.statements)

    @property
    def path(self) -> str:
        return "one message" if self.fast else "normal"


def _source(script: Script) -> str:
    try:
        return inspect.getsource(script.module)
    except (OSError, TypeError):
        return ""


class _Statements(io.StringIO):
    """An output buffer that keeps each statement Alembic writes (one write per statement)."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    def write(self, text: str) -> int:
        statement = text.strip().removesuffix(";").strip()
        if statement:
            self.statements.append(statement)
        return len(text)


@functools.cache
def _dialect(server_version: tuple[int, ...]) -> PGDialect:
    """One dialect per run and server version (making one costs about a millisecond).
    Named parameters, or a `%` in the SQL comes out doubled."""
    dialect = postgresql.dialect(paramstyle="named")
    dialect.server_version_info = server_version
    return dialect


def render_upgrade(
    script: Script, server_version: tuple[int, ...], target_metadata=None
) -> list[str]:
    """The revision's upgrade() as Alembic's offline mode writes it, for this server: its
    statements, in order, each without its terminator."""
    buffer = _Statements()
    ctx = MigrationContext.configure(
        dialect=_dialect(tuple(server_version)),
        opts={
            "as_sql": True,
            "output_buffer": buffer,
            "literal_binds": True,
            "target_metadata": target_metadata,
            "transactional_ddl": False,  # the body only: BEGIN and COMMIT are ours
        },
    )
    upgrade = inspect.unwrap(script.module.upgrade)  # not the harness's timing wrapper
    foreign: list[str] = []
    with compat.operations_for(ctx) as operations:
        invoke = operations.invoke

        def invoke_checked(operation):
            kind = type(operation)
            if not kind.__module__.startswith("alembic."):
                foreign.append(f"{kind.__module__}.{kind.__qualname__}")
            unbound = isinstance(operation, ExecuteSQLOp) and _unbound(operation.sqltext)
            if unbound:  # online it fails; rendered, the parameter would be NULL
                raise Unrenderable(f"it executes SQL with a parameter without a value ({unbound})")
            return invoke(operation)

        operations.invoke = invoke_checked  # this instance's only: ours, for now
        from neon_migrate.migrate.progress import no_process_exit  # a cycle at import

        with no_process_exit():  # os._exit() too raises: the plan, then the run, say so
            upgrade()
    if foreign:  # a plugin may read the database online (a sync of enum values does)
        raise Unrenderable(f"it runs a plugin's operation ({foreign[0]})")
    return buffer.statements


def _unbound(sqltext) -> str:
    """The first `:name` in op.execute's SQL that has no value ('' if none)."""
    clause = text(sqltext) if isinstance(sqltext, str) else sqltext
    for element in visitors.iterate(clause):
        if isinstance(element, BindParameter) and element.required:
            return f":{element.key}"
    return ""


class Unrenderable(Exception):
    """Rendering worked, but what it rendered may not be what the revision does online."""


def plan(script: Script, server_version: tuple[int, ...], target_metadata=None) -> Plan:
    """The path for one revision's upgrade, decided without touching the database."""
    revision = script.revision
    if getattr(script.module, OPT_OUT, True) is False:
        return Plan(revision, None, f"it sets {OPT_OUT} = False")
    source = _source(script)
    if not source:
        return Plan(revision, None, "its source cannot be read")
    for pattern, why in _SOURCE_REASONS:
        if pattern.search(source):
            return Plan(revision, None, why)
    try:
        statements = render_upgrade(script, server_version, target_metadata)
    except Unrenderable as exc:
        return Plan(revision, None, str(exc))
    except (Exception, SystemExit) as exc:  # anything, exit() too: the normal path shows it
        return Plan(revision, None, f"it does not render as SQL ({type(exc).__name__})")
    sql = ";\n".join(statements)
    for pattern, why in _SQL_REASONS:
        if pattern.search(sql):
            return Plan(revision, None, why)
    return Plan(revision, tuple(statements), "its upgrade() renders to SQL")


def version_of(server_version: str) -> tuple[int, ...]:
    """`SHOW server_version`'s text ('17.2 (Debian 17.2-1)', '15.10') as Alembic's tuple."""
    found = re.match(r"\s*(\d+(?:\.\d+)*)", server_version)
    return tuple(int(part) for part in found.group(1).split(".")) if found else ()


def plans(scripts, server_version: tuple[int, ...], target_metadata, enabled: bool) -> dict:
    """The path of each revision a run would apply, as `migrate --dry-run` and the check's
    plan show it (the run itself decides the same way, revision by revision)."""
    if not enabled:
        return {s.revision: Plan(s.revision, None, "MIGRATION_FAST_PATH is false") for s in scripts}
    return {s.revision: plan(s, server_version, target_metadata) for s in scripts}


def describe(chosen: Plan) -> str:
    return chosen.path if chosen.fast else f"{chosen.path}: {chosen.reason}"
