"""`scripts`: the revision files import, form one graph with one head, and say how to undo."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from neon_migrate import project
from neon_migrate.check.context import Context, Outcome
from neon_migrate.migrate.heads import script_files


def check_scripts(ctx: Context) -> str:

    try:
        ctx.script = ScriptDirectory.from_config(project.alembic_config(ctx.config_file))
    except Exception as exc:  # no script_location, or not a folder
        raise Outcome("fail", f"no migrations folder: {' '.join(str(exc).split())}") from None
    files = script_files(ctx.script)
    if not files:
        versions = ", ".join(ctx.script.version_locations) or Path(ctx.script.dir, "versions")
        ctx.script = None
        raise Outcome(
            "fail",
            f"no revision files in {versions}: nothing to deploy; write the first with "
            '`make revision m="create tables"`',
        )
    broken = [p for path in files if (p := _import_problem(path))]
    if broken:
        ctx.script = None
        raise Outcome("fail", "; ".join(broken))
    try:
        heads = ctx.script.get_heads()
        scripts = list(ctx.script.walk_revisions())
    except Exception as exc:  # a broken graph: a down_revision naming no revision, a cycle
        ctx.script = None
        raise Outcome(
            "fail",
            f"the revision graph is broken: {type(exc).__name__}: {' '.join(str(exc).split())}",
        ) from None
    undone = [s.revision for s in scripts if _downgrade_does_nothing(s)]
    warning = (
        f"downgrade() does nothing and is not marked irreversible in {', '.join(undone)}: "
        "write it, or say it has none (raise NotImplementedError('irreversible: <why>'))"
        if undone
        else ""
    )
    if len(heads) != 1:  # the one failure here that leaves the graph readable: say it all
        raise Outcome(
            "fail",
            f"{len(heads)} heads ({', '.join(sorted(heads))}): merge them with "
            "`alembic merge heads -m merge`" + (f"; also: {warning}" if warning else ""),
            no_downgrade=undone,
        )
    summary = f"{len(scripts)} revision(s), one head {heads[0]}, every file imports"
    if undone:
        raise Outcome("warn", f"{summary}; {warning}", no_downgrade=undone)
    return f"{summary}, every downgrade is written or marked irreversible"


def _import_problem(path: Path) -> str | None:
    """Why a revision file cannot be loaded, or would fail on a name once it runs; None if
    neither. Importing runs only the top level, so names inside upgrade() are read."""
    import importlib.util

    from neon_migrate.migrate.undefined_names import problem

    spec = importlib.util.spec_from_file_location(f"_predeploy_{path.stem}", path)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # type: ignore[union-attr]
    except Exception as exc:
        return f"{path.name} does not import: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return problem(path)


def _downgrade_does_nothing(script) -> bool:
    """A downgrade of `pass` that neither merges (a merge has nothing to undo), follows an
    empty upgrade, nor says it is irreversible (`raise ...`, or the word irreversible in it
    or in a comment right above it)."""
    import ast

    if isinstance(script.down_revision, (tuple, list)) and len(script.down_revision) > 1:
        return False
    source = Path(script.path).read_text()
    functions = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    downgrade = functions.get("downgrade")
    if downgrade is None:
        return True
    if _only_pass(functions.get("upgrade")):
        return False
    marked = (
        any(isinstance(n, ast.Raise) for n in ast.walk(downgrade))
        or "irreversible" in (ast.get_source_segment(source, downgrade) or "").lower()
        or _comment_above(source, downgrade)
    )
    return _only_pass(downgrade) and not marked


def _only_pass(function) -> bool:
    """A function whose body is `pass` (and docstrings): it does nothing."""
    import ast

    if function is None:
        return False
    return all(
        isinstance(n, ast.Pass) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        for n in function.body
    )


def _comment_above(source: str, node) -> bool:
    """`# irreversible: ...` on the lines right above `def downgrade`."""
    lines = source.splitlines()[: node.lineno - 1]
    for line in reversed(lines):
        stripped = line.strip()
        if not stripped.startswith(("#", "@")):
            return False
        if "irreversible" in stripped.lower():
            return True
    return False
