"""init in a project that already has Alembic: its chain stays, the harness's env.py runs it.

Teams adopt the harness on a live chain. A second `migrations/` beside theirs would start a
second chain; an env.py left in place would run every command without the lock or the
timeouts. So: the configuration Alembic reads is the one kept (alembic.ini, [tool.alembic],
or Flask-Migrate's migrations/alembic.ini), the harness's env.py goes where that
configuration's script_location points, the old one stays beside it under a name that says
what it was, and only settings that are missing are added. Nothing is overwritten.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import tomllib
from contextlib import chdir
from dataclasses import dataclass, field
from pathlib import Path

from neon_migrate import project
from neon_migrate.errors import ConfigError

BACKUP = "env.py.before-neon-migrate"  # the project's own env.py, kept beside the harness's
ADDED = "# added by neon-migrate init"
STOCK_URL = "driver://user:pass@localhost/dbname"  # `alembic init`'s placeholder

# context.configure() keywords the harness's env.py sets or has no use for: any other one
# in the old env.py is something it did that the new one does not.
HANDLED = {"url", "connection", "target_metadata", "literal_binds", "dialect_opts",
           "compare_type", "compare_server_default", "transaction_per_migration",
           "process_revision_directives", "dialect_name"}  # fmt: skip
SKIP_DIRS = {"node_modules", "site-packages", "migrations", "venv", "env", "build", "dist"}


@dataclass
class Changes:
    """What init did and what it leaves to the user, in the words it prints."""

    wrote: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    by_hand: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)


@dataclass
class Existing:
    """An Alembic set-up found in the project: the files Alembic reads and its scripts."""

    ini: Path | None  # the alembic.ini every front-end reads, if there is one
    toml: Path | None  # pyproject.toml, when it has [tool.alembic]
    scripts: Path  # script_location: where env.py is
    flask: list[str]  # why this is Flask-Migrate's layout; empty when it is not


def find(root: Path) -> Existing | None:
    """The project's Alembic configuration, as Alembic (and `flask db`) would read it."""
    pyproject = root / "pyproject.toml"
    toml = pyproject if _toml(pyproject).get("tool", {}).get("alembic") else None
    ini = root / "alembic.ini" if (root / "alembic.ini").is_file() else None
    flask_ini = root / project.FLASK_MIGRATE_INI
    if ini is None and toml is None and not flask_ini.is_file():
        return None
    if ini is None and toml is None:
        ini = flask_ini
    env_py = project.env_py(ini, toml)
    if env_py is None and ini != flask_ini:
        raise ConfigError(
            f"{relative(ini or toml, root)} names no script_location, so Alembic does not know "
            "where the migrations are",
            "add `script_location = <the folder with env.py and versions/>` to it, then run "
            "`neon-migrate init` again",
        )
    scripts = flask_ini.parent if env_py is None else (root / env_py).parent
    return Existing(ini, toml, scripts, _flask_evidence(root, ini == flask_ini, scripts))


def _flask_evidence(root: Path, flask_ini: bool, scripts: Path) -> list[str]:
    """Why this is Flask-Migrate's layout (its env.py's current_app, a Migrate( call), with
    its migrations/alembic.ini when that is the file found; empty when it is not."""
    code = []
    for env in (scripts / "env.py", scripts / BACKUP):
        if env.is_file() and "current_app" in env.read_text(errors="replace"):
            code.append(f"current_app in {relative(env, root)}")
            break
    for path in _python_files(root):
        if "Migrate(" in path.read_text(errors="replace"):
            code.append(f"Migrate( in {relative(path, root)}")
            break
    if not code:
        return []
    return [project.FLASK_MIGRATE_INI.as_posix(), *code] if flask_ini else code


def _python_files(root: Path, depth: int = 3):
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name in SKIP_DIRS:
            continue
        if path.is_dir() and depth > 1:
            yield from _python_files(path, depth - 1)
        elif path.suffix == ".py":
            yield path


def adopt(root: Path, existing: Existing, models: str | None, changes: Changes) -> None:
    """Make `existing` run through the harness; record every change in `changes`."""
    from neon_migrate.commands.scaffold import template

    scripts = existing.scripts
    env, backup = scripts / "env.py", scripts / BACKUP
    flask_ini = root / project.FLASK_MIGRATE_INI
    if existing.ini != flask_ini and flask_ini.is_file():  # each front-end reads another
        changes.by_hand.append(
            f"two Alembic configurations: {relative(existing.ini or existing.toml, root)} (read by "
            f"alembic and neon-migrate) and {relative(flask_ini, root)} (read by `flask db`): "
            f"move what the first has that the second lacks into {relative(flask_ini, root)} "
            f"and delete the first, then run `neon-migrate init` again"
        )
    elif existing.flask:
        changes.found.append(
            f"Flask-Migrate's layout ({'; '.join(existing.flask)}): "
            f"{relative(existing.ini, root)} stays the one configuration `flask db` and "
            "neon-migrate read (plain alembic: `alembic -c migrations/alembic.ini`)"
        )
    if not env.is_file():
        _write(env, template("env.py"))
        changes.wrote.append(relative(env, root))
    elif project.is_harness_env(env):
        changes.kept.append(f"{relative(env, root)} (the harness's)")
    else:
        if backup.exists():
            raise ConfigError(
                f"{relative(env, root)} is not the harness's and {relative(backup, root)} already "
                "exists, so init would have to overwrite one of them",
                f"move {relative(backup, root)} away, then run `neon-migrate init` again",
            )
        old = env.read_text(errors="replace")
        env.rename(backup)
        _write(env, template("env.py"))
        changes.moved.append(
            f"{relative(env, root)} to {BACKUP} (kept to compare; nothing runs it) and wrote the "
            "harness's env.py in its place: every Alembic front-end now runs the harness's"
        )
        changes.by_hand.extend(_what_the_old_env_did(old, root, relative(backup, root), models))
    versions = scripts / "versions"
    if not versions.exists() and not _has_version_locations(existing):
        versions.mkdir(parents=True)  # Alembic's default location: `revision` writes there
        changes.wrote.append(f"{relative(versions, root)}/")
    mako = scripts / "script.py.mako"
    if mako.is_file():
        ours = mako.read_text(errors="replace") == template("script.py.mako")
        why = "as init writes it" if ours else "the project's revision template"
        changes.kept.append(f"{relative(mako, root)} ({why})")
    else:
        _write(mako, template("script.py.mako"))
        changes.wrote.append(relative(mako, root))
    if existing.ini is not None:
        _add_to_ini(root, existing, models, changes)
    else:
        _add_to_toml(root, existing.toml, models, changes)
    changes.found.append(_chain(root, existing))


def _has_version_locations(existing: Existing) -> bool:
    """Whether the revisions live somewhere else than `<script_location>/versions`."""
    parser = configparser.ConfigParser(interpolation=None)
    if existing.ini is not None:
        parser.read(existing.ini)
    toml = _toml(existing.toml) if existing.toml else {}
    return parser.has_option("alembic", "version_locations") or bool(
        toml.get("tool", {}).get("alembic", {}).get("version_locations")
    )


def _add_to_ini(root: Path, existing: Existing, models: str | None, changes: Changes) -> None:
    ini, tool = existing.ini, _toml(root / "pyproject.toml").get("tool", {})
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ini)
    have = dict(parser["alembic"]) if parser.has_section("alembic") else {}
    toml_alembic, ours = tool.get("alembic", {}), tool.get(project.TOOL_SECTION, {})
    lines = []
    if "script_location" not in have and "script_location" not in toml_alembic:
        lines.append("script_location = %(here)s")  # Flask-Migrate sets it at run time only
    if "prepend_sys_path" not in have and "prepend_sys_path" not in toml_alembic:
        lines.append("prepend_sys_path = .")  # the project's packages importable (models)
    legacy = any(re.search(r"[ ,]", have.get(name, "").strip()) for name in
                 ("prepend_sys_path", "version_locations"))  # fmt: skip
    separators = ("path_separator", "version_path_separator")
    if not legacy and not any(name in have or name in toml_alembic for name in separators):
        lines.append("path_separator = os")  # as Alembic advises; same meaning for these values
    url = have.get("sqlalchemy.url", "")
    if url and "://" in url and url != STOCK_URL:  # a URL the harness never reads
        changes.by_hand.append(
            f"{relative(ini, root)} sets sqlalchemy.url, which the harness does not read (it "
            "takes DATABASE_URL_DIRECT and DATABASE_URL from the environment or .env): "
            "move it there and delete the line, so no password stays in a committed file"
        )
    if "target_metadata" not in have and "target_metadata" not in ours:
        if models:
            lines.append(f"target_metadata = {models}")
        else:
            changes.by_hand.append(_no_models(relative(ini, root)))
    if not lines:
        changes.kept.append(f"{relative(ini, root)} (it has every setting the harness needs)")
        return
    text = ini.read_text()
    if not parser.has_section("alembic"):
        text = text.rstrip("\n") + "\n\n[alembic]\n"
    ini.write_text(_insert_in_section(text, r"\[alembic\]", [ADDED, *lines]))
    changes.edited.append(f"{relative(ini, root)}: added {', '.join(lines)}")


def _add_to_toml(root: Path, toml: Path, models: str | None, changes: Changes) -> None:
    tool = _toml(toml).get("tool", {})
    text, added = toml.read_text(), []
    if "prepend_sys_path" not in tool.get("alembic", {}):
        line = 'prepend_sys_path = ["."]'
        if re.search(r"^\[tool\.alembic\][ \t]*(#.*)?$", text, re.MULTILINE):
            text = _insert_in_section(text, r"\[tool\.alembic\]", [line])
            added.append(line)
        else:
            changes.by_hand.append(f"add `{line}` to [tool.alembic] in {relative(toml, root)}")
    ours = tool.get(project.TOOL_SECTION)
    if ours is None or "target_metadata" not in ours:
        if not models:
            changes.by_hand.append(_no_models(relative(toml, root), toml=True))
        elif ours is None:
            text = text.rstrip("\n") + f'\n\n[tool.neon-migrate]\ntarget_metadata = "{models}"\n'
            added.append(f'[tool.neon-migrate] target_metadata = "{models}"')
        elif re.search(r"^\[tool\.neon-migrate\][ \t]*(#.*)?$", text, re.MULTILINE):
            line = f'target_metadata = "{models}"'
            text = _insert_in_section(text, r"\[tool\.neon-migrate\]", [line])
            added.append(f"[tool.neon-migrate] {line}")
    if added:
        toml.write_text(text)
        changes.edited.append(f"{relative(toml, root)}: added {', '.join(added)}")
    else:
        changes.kept.append(f"{relative(toml, root)} (it has every setting the harness needs)")


def _insert_in_section(text: str, header: str, lines: list[str]) -> str:
    """`lines` at the end of the section `header` starts (before the blank lines that
    precede the next section, and a comment block right above its header after a blank
    line: Flask-Migrate's `# Logging configuration` introduces [loggers]), its other lines
    untouched."""
    rows = text.splitlines(keepends=True)
    start = next(i for i, row in enumerate(rows) if re.match(header + r"[ \t]*(#.*)?$", row))
    end = next((i for i in range(start + 1, len(rows)) if rows[i].startswith("[")), len(rows))
    block = end
    while end < len(rows) and block > start + 1 and rows[block - 1].startswith("#"):
        block -= 1
    if block < end and block > start + 1 and not rows[block - 1].strip():
        end = block
    while end > start + 1 and not rows[end - 1].strip():
        end -= 1
    if rows[end - 1] and not rows[end - 1].endswith("\n"):
        rows[end - 1] += "\n"
    return "".join(rows[:end] + [f"{line}\n" for line in lines] + rows[end:])


def _no_models(where: str, toml: bool = False) -> str:
    example = 'target_metadata = "app.models:SQLModel.metadata"' if toml else (
        "target_metadata = app.models:SQLModel.metadata")  # fmt: skip
    section = "[tool.neon-migrate]" if toml else "[alembic]"
    return (
        f"no models module found: add `{example}` (your models' MetaData) to {section} in {where}"
    )


def _what_the_old_env_did(source: str, root: Path, backup: str, models: str | None) -> list[str]:
    """What the project's env.py did that the harness's does not, as lines to act on."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    keywords, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "configure":
            keywords |= {k.arg for k in node.keywords if k.arg and k.arg not in HANDLED}
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            top = node.module.split(".")[0]
            if (root / top).is_dir() or (root / f"{top}.py").is_file():
                modules.add(node.module)
    modules.discard((models or "").partition(":")[0])  # the models, which the harness loads
    todo = []
    if keywords:
        todo.append(
            f"{backup} passed {', '.join(sorted(keywords))} to context.configure(); the "
            "harness's env.py does not: add them to its context.configure() calls if you "
            "still need them"
        )
    if modules and ("sqlalchemy.url" in source or "url=" in source):
        todo.append(
            f"{backup} took the database URL from {', '.join(sorted(modules))}; the harness "
            "reads DATABASE_URL_DIRECT (migrations) and DATABASE_URL (the app) from the "
            "environment or .env: set them there (unset: the local twin)"
        )
    return todo


def _chain(root: Path, existing: Existing) -> str:
    """The chain Alembic reads from the kept configuration: how many revisions, which head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    try:
        with chdir(root):  # a relative script_location is taken from the project's root
            config = Config(file_=existing.ini, toml_file=existing.toml)
            if existing.ini is not None and not config.get_alembic_option("script_location"):
                config.set_main_option("script_location", str(existing.scripts))
            script = ScriptDirectory.from_config(config)
            revisions = list(script.walk_revisions())
            heads = script.get_heads()
    except Exception as exc:  # a revision that does not load: say so, change nothing else
        return f"could not read the existing chain ({type(exc).__name__}: {exc})"
    folders = sorted({relative(Path(r.path).parent, root) for r in revisions}) or [
        relative(existing.scripts / "versions", root)
    ]
    if not revisions:
        return f"no revisions yet in {', '.join(folders)}"
    head = f", head {', '.join(heads)}" if heads else ""
    return f"kept the existing chain: {len(revisions)} revision(s) in {', '.join(folders)}{head}"


def alembic_pins(root: Path, minimum: str) -> list[str]:
    """Requirements in the project that exclude the Alembic the harness needs."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import Version

    major, minor = (int(n) for n in minimum.split(".")[:2])
    newer = [f"{major}.{n}" for n in range(minor, 100)] + [f"{major + 1}.0"]
    found = []
    sources = [(p, p.read_text(errors="replace").splitlines()) for p in
               sorted(root.glob("requirements*.txt"))]  # fmt: skip
    table = _toml(root / "pyproject.toml").get("project", {})
    declared = list(table.get("dependencies", []))
    for extra in table.get("optional-dependencies", {}).values():
        declared += extra
    sources.append((root / "pyproject.toml", declared))
    for path, lines in sources:
        for line in lines:
            try:
                requirement = Requirement(line.split("#")[0].strip())
            except InvalidRequirement:
                continue
            if requirement.name.lower() != "alembic" or not requirement.specifier:
                continue
            named = [spec.version.removesuffix(".*") for spec in requirement.specifier]
            if not any(requirement.specifier.contains(v, prereleases=True) for v in
                       newer + [v for v in named if Version(v) >= Version(minimum)]):  # fmt: skip
                found.append(
                    f"{relative(path, root)} pins {requirement}, below the alembic>={minimum} "
                    f"neon-migrate needs (its [tool.alembic] support): change it to "
                    f'alembic>={minimum}, then `pip install -U "alembic>={minimum}"`'
                )
    return found


def _toml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the file") from None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def relative(path: Path, root: Path) -> str:
    """How init names a file: from the project's folder (`../.github/...` above it)."""
    return Path(os.path.relpath(path.absolute(), root)).as_posix()
