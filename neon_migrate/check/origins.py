"""Which line of a revision file emitted a statement of the pending SQL.

A lint finding names a line of the rendered SQL; a reviewer needs the `op.*` call (or the
`op.execute`) in the revision file. The revision's upgrade() is run once more, offline and
alone, with an output buffer that, at every statement Alembic writes, notes the innermost
frame of the call stack that is in the revision file: that is the line of the call that
emitted it, however the statement was built (a loop, an f-string, a helper). A statement
of the plan is then matched to what that line wrote by its text (the n-th occurrence of a
text to the n-th write of it). Where there is no match the caller annotates the file.

It finds nothing for the statements env.py adds around a revision (BEGIN, SET LOCAL
lock_timeout, the version stamp), for an upgrade() that cannot run offline on its own (it
reads rows, or needs what env.py hands it), and for statements whose text differs from
run to run (a timestamp or a random value in the SQL).
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from pathlib import Path

from neon_migrate.check.lint import statements


class _Recorder(io.StringIO):
    """Alembic's offline output buffer, noting which revision-file line wrote each part."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.written: list[tuple[str, int | None]] = []

    def write(self, text: str) -> int:
        self.written.append((text, self._line()))
        return super().write(text)

    def _line(self) -> int | None:
        frame = sys._getframe(2)
        while frame is not None:
            if os.path.realpath(frame.f_code.co_filename) == self.source:
                return frame.f_lineno
            frame = frame.f_back
        return None


def emitted(path: Path, metadata=None) -> list[tuple[str, int]]:
    """(statement, line) for each statement the revision's upgrade() writes offline, in
    order; what it wrote before an error, if it stops (an online-only revision)."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    source = os.path.realpath(path)
    recorder = _Recorder(source)
    spec = importlib.util.spec_from_file_location(f"_origins_{path.stem}", path)
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        context = MigrationContext.configure(
            dialect_name="postgresql",
            dialect_opts={"paramstyle": "named"},  # as env.py renders offline
            opts={
                "as_sql": True,
                "output_buffer": recorder,
                "literal_binds": True,
                "target_metadata": metadata,
            },
        )
        with Operations.context(context):
            module.upgrade()
    except Exception:  # what was written until then still maps
        pass
    found = []
    for text, line in recorder.written:
        if line is not None:
            found.extend((statement, line) for _, statement in statements(text))
    return found


def source_lines(sql: str, path: Path, metadata=None) -> dict[int, int | None]:
    """SQL line of each statement in `sql` (a revision's part of the plan) -> the line of
    the revision file that emitted it; None where no line matched."""
    by_text: dict[str, list[int]] = {}
    for statement, line in emitted(path, metadata):
        by_text.setdefault(_plain(statement), []).append(line)
    seen: dict[str, int] = {}
    found: dict[int, int | None] = {}
    for sql_line, statement in statements(sql):
        key = _plain(statement)
        lines = by_text.get(key)
        if not lines:
            found[sql_line] = None
            continue
        index = seen.get(key, 0)
        seen[key] = index + 1
        found[sql_line] = lines[min(index, len(lines) - 1)]
    return found


def line_of(finding_line: int, lines: dict[int, int | None]) -> int | None:
    """The revision-file line of the statement a finding's SQL line falls in: the last
    statement starting at or before it (squawk may point inside a statement)."""
    start = max((start for start in lines if start <= finding_line), default=None)
    return None if start is None else lines[start]


def _plain(statement: str) -> str:
    return " ".join(statement.split()).rstrip(";").strip()


def repository_path(path: Path, project_root: Path) -> str:
    """`path` relative to the repository's top folder (where `.git` is; on GitHub Actions,
    else GITHUB_WORKSPACE), so an annotation lands on the file also when the project sits
    in a subfolder; relative to the project when neither contains it."""
    path = Path(os.path.realpath(path))
    folders = (project_root, *project_root.parents)
    tops = [folder for folder in folders if (folder / ".git").exists()]
    if os.environ.get("GITHUB_WORKSPACE"):
        tops.append(Path(os.environ["GITHUB_WORKSPACE"]))
    tops.append(project_root)
    for top in tops:
        try:
            return path.relative_to(os.path.realpath(top)).as_posix()
        except ValueError:
            continue
    return path.name


def located(findings: list, pending: list, root: Path, config_file: str | None) -> list[dict]:
    """Each lint finding as a dict, with the revision file (`path`, from the repository's
    top) and the line in it (`file_line`, None where no line matched)."""
    by_revision = {r.revision: r for r in pending}
    metadata = _metadata(config_file) if findings else None
    lines: dict[str, dict[int, int | None]] = {}
    result = []
    for finding in findings:
        revision = by_revision.get(finding.revision)
        item = finding.as_dict() | {"path": None, "file_line": None}
        if revision is not None:
            if revision.revision not in lines:
                lines[revision.revision] = source_lines(revision.sql, revision.path, metadata)
            item["path"] = repository_path(revision.path, root)
            item["file_line"] = line_of(finding.line, lines[revision.revision])
        result.append(item)
    return result


def _metadata(config_file: str | None):
    """The models' MetaData, whose naming convention names what `op` creates (as env.py
    configures it); None when there is none or it does not load."""
    from neon_migrate import project
    from neon_migrate.migrate.environment import target_metadata

    try:
        return target_metadata(project.alembic_config(config_file))
    except Exception:
        return None
