"""Alembic's post-write hook for new revision files: format them, then name what they use
but never import. `python -m neon_migrate.migrate.post_write FILE`, as alembic.ini says.

It formats with ruff when ruff is installed and skips that step when it is not: a
project that adds the harness may not use ruff, and a missing formatter must not turn
`alembic revision` into `FAILED`. It never fixes anything (ruff's `--fix` deletes the
template's `op` and `sa` imports while the body is still empty). Alembic ignores a hook's
exit status, so the undefined names are printed here and `neon-migrate revision` fails on
them itself; `neon-migrate check` fails on them before anything runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from neon_migrate.migrate.undefined_names import problem


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m neon_migrate.migrate.post_write REVISION_FILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if importlib.util.find_spec("ruff") is not None:
        subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(path)], check=False)
    found = problem(path)
    if found:
        print(f"error: {found}. Fix: import what it uses", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
