"""A revision file that does not load, as one line instead of a traceback.

Alembic imports every revision file to build the graph, for any command; a syntax error,
a failing import or a graph it cannot read (a down_revision naming no revision) surfaces
from deep inside it, wherever the graph was first needed.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import alembic.script

from neon_migrate.compat import GRAPH_BUILDING
from neon_migrate.errors import MigrationError

_ALEMBIC_SCRIPT = str(Path(alembic.script.__file__).parent)


def script_problem(err: BaseException) -> MigrationError | None:
    """The error as a loading problem of the revision scripts, or None if it is not one."""
    fix = "fix that revision file, then run again (`make check` lists every problem)"
    if isinstance(err, SyntaxError) and err.filename:
        return MigrationError(
            f"{Path(err.filename).name}, line {err.lineno}: {err.msg}: a revision file "
            "does not compile",
            fix,
        )
    frames = traceback.extract_tb(err.__traceback__)
    loading = [f for f in frames
               if f.filename.startswith(_ALEMBIC_SCRIPT) and f.name in GRAPH_BUILDING]  # fmt: skip
    if not loading:
        return None
    named = next((Path(f.filename).name for f in reversed(frames)
                  if "/versions/" in f.filename), None)  # fmt: skip
    where = f" ({named})" if named else ""
    return MigrationError(
        f"the revision scripts cannot be loaded{where}: {type(err).__name__}: "
        f"{' '.join(str(err).split())[:300]}",
        fix,
    )
