"""What `make migrate` would do: the pending revisions, in order, and the SQL of each.

The SQL is rendered once, offline, through our own env.py (so it carries the timeouts a
real run sets), then cut per revision at Alembic's `-- Running upgrade` markers. It is
what the lint reads and what a reviewer would read.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from neon_migrate import project
from neon_migrate.errors import HarnessError, MigrationError
from neon_migrate.migrate import fast_path
from neon_migrate.migrate.environment import target_metadata
from neon_migrate.migrate.heads import one_database_head
from neon_migrate.migrate.offline import OnlineOnlyRevisions
from neon_migrate.settings import get_settings

_MARKER = re.compile(r"^-- Running upgrade .* -> (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class PlannedRevision:
    revision: str
    message: str
    path: Path
    sql: str
    source: str
    online_only: str | None = None  # why it cannot be rendered as SQL, if it cannot
    how: str = ""  # "one message", or "normal: <why>" (migrate/fast_path.py)

    @property
    def rehearsable(self) -> bool:
        """A revision that commits mid-way (autocommit_block) cannot run in one transaction."""
        return "autocommit_block" not in self.source


def pending_revisions(script: ScriptDirectory, current: tuple[str, ...]):
    """Scripts not yet applied, oldest first."""
    start = one_database_head(current) or "base"
    return list(reversed(list(script.iterate_revisions("heads", start))))


def render_sql(config_file: str, current: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """The offline upgrade SQL from `current` to head, exactly as `make sql` prints it, and
    the revisions that only run online with the reason of each."""
    buffer = io.StringIO()
    config = project.alembic_config(config_file, output_buffer=buffer)
    config.attributes.update(configure_logger=False)
    target = f"{current[0]}:heads" if current else "heads"
    try:
        command.upgrade(config, target, sql=True)
    except Exception as exc:
        if isinstance(exc.__cause__, OnlineOnlyRevisions):
            return buffer.getvalue(), dict(exc.__cause__.revisions)
        cause = exc.__cause__ if isinstance(exc.__cause__, HarnessError) else exc
        raise MigrationError(
            f"the pending revisions do not render as offline SQL: {' '.join(str(cause).split())}",
            "run `make sql` to see where it stops",
        ) from None
    return buffer.getvalue(), {}


def split_by_revision(sql: str) -> dict[str, str]:
    """Each revision's part of the script, from the BEGIN that opens its transaction."""
    markers = list(_MARKER.finditer(sql))
    starts = []
    previous_end = 0
    for marker in markers:
        begin = sql.rfind("BEGIN;", previous_end, marker.start())
        starts.append(begin if begin >= 0 else marker.start())
        previous_end = marker.end()
    bounds = [*starts[1:], len(sql)]
    return {
        m.group(1): sql[start:end] for m, start, end in zip(markers, starts, bounds, strict=True)
    }


def plan(
    config_file: str,
    script: ScriptDirectory,
    current: tuple[str, ...],
    server_version: tuple[int, ...] = (),
) -> list[PlannedRevision]:
    scripts = pending_revisions(script, current)
    if not scripts:
        return []
    sql, online_only = render_sql(config_file, current)
    parts = split_by_revision(sql)
    metadata = target_metadata(project.alembic_config(config_file))
    paths = fast_path.plans(scripts, server_version, metadata, get_settings().migration_fast_path)
    return [
        PlannedRevision(
            revision=s.revision,
            message=s.doc or "",
            path=Path(s.path),
            sql="" if s.revision in online_only else parts.get(s.revision, ""),
            source=Path(s.path).read_text(),
            online_only=online_only.get(s.revision),
            how=fast_path.describe(paths[s.revision]),
        )
        for s in scripts
    ]
