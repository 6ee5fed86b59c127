"""init: add the harness to an existing project, file by file, never overwriting one.

A file that exists is kept and named, with what to do by hand: a team adding the harness
to a live project must be able to run `init` and read a diff it fully expects.
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path

from neon_migrate.commands import Command, adopt, workflow
from neon_migrate.commands.output import note, out
from neon_migrate.errors import ConfigError

METADATA_PLACEHOLDER = "@TARGET_METADATA@"

# template -> where it goes in the project
FILES = {
    "alembic.ini": "alembic.ini",
    "env.py": "migrations/env.py",
    "script.py.mako": "migrations/script.py.mako",
    "env.example": ".env.example",
    "neon-migrate.mk": "neon-migrate.mk",
    "database.yml": ".github/workflows/database.yml",
}


def template(name: str) -> str:
    return resources.files("neon_migrate.templates").joinpath(name).read_text()


def alembic_ini(models: str) -> str:
    return template("alembic.ini").replace(METADATA_PLACEHOLDER, models)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default=".", help="the project's root")
    parser.add_argument(
        "--models", metavar="MODULE:ATTR", help="the models' MetaData (default: */models.py)"
    )


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.directory).resolve()
    if not root.is_dir():
        raise ConfigError(f"{args.directory} is not a folder", "name the project's root folder")
    models = args.models or guess_models(root)
    changes = adopt.Changes()
    try:
        existing = adopt.find(root)
        if existing is not None:  # a chain already: keep it, run it through the harness
            adopt.adopt(root, existing, models, changes)
            files = {k: v for k, v in FILES.items() if k in OWN_FILES}
        else:
            files = _new_project_files(root)
        _write_files(root, files, models, changes)
        _write_workflow(root, changes)
        _ignore_local_files(root, changes)
        makefile = root / "Makefile"
        if not makefile.exists():
            makefile.write_text("include neon-migrate.mk\n")
            changes.wrote.append("Makefile")
        elif "neon-migrate.mk" not in makefile.read_text():
            changes.by_hand.append("add the line `include neon-migrate.mk` to the Makefile")
    except OSError as exc:
        done = f" (written so far: {', '.join(changes.wrote)})" if changes.wrote else ""
        raise ConfigError(
            f"cannot write into {root}: {exc.strerror or exc}: {exc.filename or ''}{done}",
            "run init where you may write, with nothing in the way of those files",
        ) from None
    changes.by_hand.extend(adopt.alembic_pins(root, ALEMBIC_MINIMUM))
    _report(changes, existing, models)
    return 0


# Written in every project; Alembic's own files only where there is no Alembic yet.
OWN_FILES = ("env.example", "neon-migrate.mk")
# The lowest Alembic the harness runs on, and CI tests (pyproject.toml, .ci/lowest.txt):
# 1.16.0 has [tool.alembic], but reads no TOML booleans, has no `module` post-write hook,
# and Flask-Migrate's `flask db init` fails on it.
ALEMBIC_MINIMUM = "1.16.5"


def _new_project_files(root: Path) -> dict[str, str]:
    """No Alembic yet: its configuration and a migrations/ folder, all from the templates."""
    (root / "migrations" / "versions").mkdir(parents=True, exist_ok=True)
    return {k: v for k, v in FILES.items() if k != "database.yml"}


def _write_files(root: Path, files: dict[str, str], models: str | None, changes) -> None:
    for name, destination in files.items():
        path = root / destination
        text = alembic_ini(models or "") if name == "alembic.ini" else template(name)
        if path.exists():
            changes.kept.append(_kept(path, destination, text))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changes.wrote.append(destination)
    if "alembic.ini" in files and not models:
        changes.by_hand.append("no models module found: set target_metadata = "
                               "module:attribute in alembic.ini (e.g. "
                               "myapp.models:SQLModel.metadata)")  # fmt: skip


def _kept(path: Path, name: str, text: str, kind: str | None = None) -> str:
    found = path.read_text(errors="replace") if path.is_file() else ""
    if found == text:
        return f"{name} (as init writes it)"
    if name == ".env.example" and re.search(r"^DATABASE_URL=", found, re.MULTILINE):
        return f"{name} (it names DATABASE_URL)"
    return f"{name} (it exists): {_by_hand(kind or name)}"


def _write_workflow(root: Path, changes) -> None:
    path, text = workflow.render(root, template("database.yml"), changes.by_hand)
    _write_once(root, path, text, ".github/workflows/database.yml", changes)
    if (root / FLEET_TARGETS).is_file():
        _write_fleet_workflow(root, changes)


FLEET_TARGETS = "fleet.toml"


def _write_fleet_workflow(root: Path, changes) -> None:
    """A project that keeps a fleet's targets file gets the rollout as a workflow too: the
    canary's shard first, then the others as a matrix (README, Fleets)."""
    from neon_migrate.fleet.targets import read

    try:
        targets = read(root / FLEET_TARGETS)
    except ConfigError as err:
        changes.by_hand.append(f"{FLEET_TARGETS} was not read, so no fleet workflow: {err}")
        return
    variables = [v for t in targets.targets for v in (t.url_env, t.pooled_url_env) if v]
    if targets.neon is not None:
        variables += [targets.neon.api_key_env, targets.neon.project_id_env]
    body = workflow.fleet_secrets(template("fleet.yml"), list(dict.fromkeys(variables)))
    path, text = workflow.render(root, body, changes.by_hand, name="fleet.yml")
    _write_once(root, path, text, ".github/workflows/fleet.yml", changes)


def _write_once(root: Path, path: Path, text: str, kind: str, changes) -> None:
    name = adopt.relative(path, root)
    if path.exists():
        changes.kept.append(_kept(path, name, text, kind))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    changes.wrote.append(name)


def _ignore_local_files(root: Path, changes) -> None:
    missing, todo = workflow.ignore_local_files(root)
    changes.by_hand.extend(todo)
    if not missing:
        return
    ignore = root / ".gitignore"
    before = ignore.read_text() if ignore.exists() else ""
    lines = "".join(f"{name}\n" for name in missing)
    comment = "# neon-migrate: local settings (passwords) and the local twin's data\n"
    gap = "" if not before else "\n" if before.endswith("\n") else "\n\n"
    ignore.write_text(before + gap + comment + lines)
    if before:
        changes.edited.append(f".gitignore: added {', '.join(missing)}")
    else:
        changes.wrote.append(f".gitignore ({', '.join(missing)})")


def _report(changes, existing, models: str | None) -> None:
    for line in changes.moved:
        out(f"init: moved {line}")
    for line in changes.edited:
        out(f"init: edited {line}")
    for line in changes.wrote:
        out(f"init: wrote {line}")
    for line in changes.kept:
        out(f"init: kept {line}")
    for line in changes.found:
        out(f"init: {line}")
    for line in changes.by_hand:
        out(f"init: by hand: {line}")
    if models and existing is None:
        note(f"init: the models are {models} (target_metadata in alembic.ini)")
    elif models:
        note(f"init: the models are {models}")
    if existing is None:
        note('init: next: set DATABASE_URL (or leave it unset for the local twin), then '
             '`neon-migrate revision -m "create tables"` and `neon-migrate migrate`')  # fmt: skip
    else:
        note("init: next: `neon-migrate status` (every existing revision), then "
             "`neon-migrate migrate`")  # fmt: skip


def _by_hand(destination: str) -> str:
    if destination.endswith("/env.py"):
        destination = "migrations/env.py"
    elif destination.endswith("/script.py.mako"):
        destination = "migrations/script.py.mako"
    return {
        "alembic.ini": "add `target_metadata = module:attribute` to its [alembic] section "
        "and make script_location point at the folder with the harness's env.py",
        "migrations/env.py": "replace it with the harness's (`python -c \"from "
        "neon_migrate.commands.scaffold import template; print(template('env.py'))\"`)",
        "migrations/script.py.mako": "compare it with the harness's template",
        ".env.example": "add the lines `DATABASE_URL=` (Neon's pooled string) and "
        "`DATABASE_URL_DIRECT=` (the direct one) to it; the rest of the README's "
        "configuration table as needed",
        "neon-migrate.mk": "compare it with the harness's",
        ".github/workflows/database.yml": "compare it with the harness's example",
        ".github/workflows/fleet.yml": "compare it with the harness's example (README, Fleets)",
    }[destination]


_METADATA_HINTS = (  # (a pattern in models.py, the attribute that holds the MetaData)
    (re.compile(r"^metadata\s*=", re.MULTILINE), "metadata"),
    (re.compile(r"\bSQLModel\b"), "SQLModel.metadata"),
    (re.compile(r"\bdb\.Model\b"), "db.metadata"),  # Flask-SQLAlchemy's models
    (re.compile(r"^class Base\b", re.MULTILINE), "Base.metadata"),
    (re.compile(r"^Base\s*=", re.MULTILINE), "Base.metadata"),
)


def guess_models(root: Path) -> str | None:
    """`package.models:attribute` for the first models module at the root or one or two
    folders down (models.py, or a models/ package)."""
    candidates = [
        path
        for pattern in ("models.py", "*/models.py", "*/models/__init__.py", "src/*/models.py")
        for path in sorted(root.glob(pattern))
    ]
    for path in candidates:
        if any(part.startswith(".") or part in ("migrations", "tests") for part in
               path.relative_to(root).parts):  # fmt: skip
            continue
        source = path.read_text(errors="replace")
        for pattern, attribute in _METADATA_HINTS:
            if pattern.search(source):
                parts = path.relative_to(root).with_suffix("").parts
                module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                return module.removeprefix("src.") + ":" + attribute
    return None


COMMAND = Command(
    "init",
    "add the harness to this project",
    "Add the harness to a project: its env.py where Alembic's script_location "
    "points (an existing chain and its configuration are kept, the old env.py "
    "beside it), only the missing settings, .env.example, Make targets and a CI "
    "workflow at the git root. Never overwrites a file; a second run changes "
    "nothing.",
    cmd_init,
    _arguments,
    connects=False,
)
