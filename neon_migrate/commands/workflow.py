"""The CI workflow init writes, fitted to the project it lands in.

GitHub reads workflows only from the repository's root, so a project in a subfolder gets
its workflow there, with that folder as every step's working directory. The Python it
sets up is one the project supports, and the install step is the one the project has
(`pip install .`, or its requirements.txt).
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from neon_migrate.commands.adopt import _toml

TEMPLATE_PYTHON = 'python-version: "3.11"'
TEMPLATE_INSTALL = "run: python -m pip install ."
TEMPLATE_PERMISSIONS = "permissions:\n  contents: read\n"
TEMPLATE_ARTIFACT = "path: predeploy.json"
PYTHONS = [f"3.{minor}" for minor in range(9, 16)]  # releases a runner can set up


def git_root(root: Path) -> Path | None:
    """The repository's top folder (where `.git` is), or None outside a repository."""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return folder
    return None


def render(
    root: Path, template: str, by_hand: list[str], name: str = "database.yml"
) -> tuple[Path, str]:
    """(where the workflow goes, its text); what init cannot decide goes to `by_hand`."""
    top = git_root(root) or root
    sub = root.relative_to(top).as_posix()
    text = _replace(
        template, TEMPLATE_PYTHON, f'python-version: "{python_version(root, top, by_hand)}"'
    )
    text = _replace(text, TEMPLATE_INSTALL, f"run: {install_command(root, by_hand)}")
    if sub != ".":
        text = _replace(
            text,
            TEMPLATE_PERMISSIONS,
            f"{TEMPLATE_PERMISSIONS}\n# The project is in {sub}/ of this repository.\n"
            f"defaults:\n  run:\n    working-directory: {sub}\n",
        )
        if name == "database.yml":  # its report is uploaded from the project's folder
            text = _replace(text, TEMPLATE_ARTIFACT, f"path: {sub}/predeploy.json")
    return top / ".github" / "workflows" / name, text


TEMPLATE_TARGETS_ENV = "      TARGETS_ENV: set by init\n"


def fleet_secrets(template: str, variables: list[str]) -> str:
    """The fleet workflow with each variable the targets file names taken from the secret
    of the same name (the file names variables, never URLs, so it can be committed)."""
    lines = "".join(f"      {v}: ${{{{ secrets.{v} }}}}\n" for v in variables)
    return _replace(template, TEMPLATE_TARGETS_ENV, lines)


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:  # the template changed without this code: a bug, not a user's error
        raise RuntimeError(f"database.yml template has no {old!r}")
    return text.replace(old, new)


def python_version(root: Path, top: Path, by_hand: list[str]) -> str:
    """`.python-version`, else the oldest Python both requires-python and the harness
    accept, else the Python running init."""
    for folder in dict.fromkeys((root, top)):
        pinned = folder / ".python-version"
        if pinned.is_file():
            found = re.match(r"\s*(\d+\.\d+)", pinned.read_text())
            if found:
                return found.group(1)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    declared = _toml(root / "pyproject.toml").get("project", {}).get("requires-python")
    if not declared:
        return running
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    ours = SpecifierSet(metadata.metadata("neon-migrate").get("Requires-Python") or "")
    try:
        theirs = SpecifierSet(declared)
    except InvalidSpecifier:
        by_hand.append(f"requires-python = {declared!r} does not parse: set the workflow's "
                       "python-version by hand")  # fmt: skip
        return running
    both = [v for v in PYTHONS if v in theirs and v in ours]
    if not both:
        by_hand.append(f"requires-python {declared} excludes every Python neon-migrate "
                       f"supports ({ours}): set the workflow's python-version by hand")  # fmt: skip
        return running
    return both[0]


def install_command(root: Path, by_hand: list[str]) -> str:
    """How CI installs the project: as a package when it is one, else its requirements."""
    pyproject = _toml(root / "pyproject.toml")
    packaged = (
        any(key in pyproject for key in ("project", "build-system"))
        or "poetry" in pyproject.get("tool", {})
        or (root / "setup.py").is_file()
        or (root / "setup.cfg").is_file()
    )
    requirements = root / "requirements.txt"
    if packaged:
        command, declares = "python -m pip install .", root / "pyproject.toml"
    elif requirements.is_file():
        command, declares = "python -m pip install -r requirements.txt", requirements
    else:
        by_hand.append("nothing says how to install the project (no [project] in "
                       "pyproject.toml, no setup.py, no requirements.txt): make the workflow's "
                       "`pip install` steps install it and neon-migrate[check]")  # fmt: skip
        return "python -m pip install ."
    files = [declares, *sorted(root.glob("requirements*.txt"))]
    text = "\n".join(p.read_text(errors="replace") for p in files if p.is_file())
    if not re.search(r"neon[-_.]migrate", text, re.IGNORECASE):
        by_hand.append(f"add neon-migrate[check] to the dependencies in {declares.name}: "
                       "the workflow installs them and runs `neon-migrate`")  # fmt: skip
    return command


def ignore_local_files(root: Path) -> tuple[list[str], list[str]]:
    """(lines to add to .gitignore, things to do by hand): .env holds passwords and
    .local/ the twin's data; neither belongs in a commit."""
    missing = [name for name in (".env", ".local/") if not _ignored(root, name)]
    todo = []
    if _git(root, "ls-files", "--error-unmatch", ".env") == 0:
        todo.append("`.env` is committed: `git rm --cached .env`, and change any password "
                    "it held")  # fmt: skip
    return missing, todo


def _ignored(root: Path, name: str) -> bool:
    code = _git(root, "check-ignore", "-q", "--no-index", name)
    if code in (0, 1):
        return code == 0
    from fnmatch import fnmatch

    ignore = root / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    patterns = [line.strip().strip("/") for line in lines if line.strip() and line[0] not in "#!"]
    return any(fnmatch(name.rstrip("/"), pattern) for pattern in patterns)


def _git(root: Path, *args: str) -> int | None:
    """git's exit code in `root`; None without git or outside a repository."""
    if git_root(root) is None:
        return None
    try:
        run = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return run.returncode if run.returncode in (0, 1) else None
