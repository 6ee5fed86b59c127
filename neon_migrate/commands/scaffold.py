"""init: add the harness to an existing project, file by file, never overwriting one.

A file that exists is kept and named, with what to do by hand: a team adding the harness
to a live project must be able to run `init` and read a diff it fully expects.
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path

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


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.directory).resolve()
    if not root.is_dir():
        raise ConfigError(f"{args.directory} is not a folder", "name the project's root folder")
    models = args.models or guess_models(root)
    files = dict(FILES)
    location = _toml_script_location(root)
    if location is not None:  # Alembic is configured in pyproject.toml: keep it there
        files.pop("alembic.ini")
        files["env.py"] = f"{location}/env.py"
        files["script.py.mako"] = f"{location}/script.py.mako"
    else:
        location = "migrations"
    written, kept = [], []
    try:
        for name, destination in files.items():
            path = root / destination
            if path.exists():
                kept.append(destination)
                continue
            text = alembic_ini(models or "") if name == "alembic.ini" else template(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(destination)
        (root / location / "versions").mkdir(parents=True, exist_ok=True)
        makefile = root / "Makefile"
        if not makefile.exists():
            makefile.write_text("include neon-migrate.mk\n")
            written.append("Makefile")
    except OSError as exc:
        done = f" (written so far: {', '.join(written)})" if written else ""
        raise ConfigError(
            f"cannot write into {root}: {exc.strerror or exc}: {exc.filename or ''}{done}",
            "run init where you may write, with nothing in the way of those files",
        ) from None
    for destination in written:
        out(f"init: wrote {destination}")
    for destination in kept:
        out(f"init: kept {destination} (it exists): {_by_hand(destination)}")
    if makefile.exists() and "neon-migrate.mk" not in makefile.read_text():
        out("init: kept Makefile: add the line `include neon-migrate.mk` to it")
    if "alembic.ini" not in files:
        out("init: Alembic is configured in pyproject.toml [tool.alembic]: no alembic.ini "
            "written; put target_metadata under [tool.neon-migrate] there")  # fmt: skip
    if not models:
        note("init: no models module found: set target_metadata = module:attribute in "
             "alembic.ini (e.g. myapp.models:SQLModel.metadata)")  # fmt: skip
    else:
        note(f"init: the models are {models} (target_metadata in alembic.ini)")
    note('init: next: set DATABASE_URL (or leave it unset for the local twin), then '
         '`neon-migrate revision -m "create tables"` and `neon-migrate migrate`')  # fmt: skip
    return 0


def _toml_script_location(root: Path) -> str | None:
    """script_location of [tool.alembic] in the project's pyproject.toml, relative."""
    import tomllib

    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        tool = tomllib.loads(pyproject.read_text()).get("tool", {})
    except tomllib.TOMLDecodeError:
        return None
    location = tool.get("alembic", {}).get("script_location")
    if not location:
        return None
    return str(location).replace("%(here)s/", "").replace("%(here)s", ".")


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
        ".env.example": "add the settings from the README's configuration table",
        "neon-migrate.mk": "compare it with the harness's",
        ".github/workflows/database.yml": "compare it with the harness's example",
    }[destination]


_METADATA_HINTS = (  # (a pattern in models.py, the attribute that holds the MetaData)
    (re.compile(r"^metadata\s*=", re.MULTILINE), "metadata"),
    (re.compile(r"\bSQLModel\b"), "SQLModel.metadata"),
    (re.compile(r"^class Base\b", re.MULTILINE), "Base.metadata"),
    (re.compile(r"^Base\s*=", re.MULTILINE), "Base.metadata"),
)


def guess_models(root: Path) -> str | None:
    """`package.models:attribute` for the first models.py one or two folders down."""
    candidates = sorted(root.glob("*/models.py")) + sorted(root.glob("src/*/models.py"))
    for path in candidates:
        if any(part.startswith(".") or part in ("migrations", "tests") for part in
               path.relative_to(root).parts):  # fmt: skip
            continue
        source = path.read_text(errors="replace")
        for pattern, attribute in _METADATA_HINTS:
            if pattern.search(source):
                module = ".".join(path.relative_to(root).with_suffix("").parts)
                return module.removeprefix("src.") + ":" + attribute
    return None
