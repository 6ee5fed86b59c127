"""Debian's packages, fetched and unpacked for the twin's builds (provision.py).

Debian 12's PgBouncer is too old and the PostgreSQL wheel lacks uuid-ossp, so both are
built from Debian 13's own source packages. This reads Debian 13's (and unstable's
source) indexes through a private apt configuration, from the mirror the machine already
uses, without touching the machine's apt sources; installs the build tools (root only);
and runs each step so that any failure is one ProvisionError line, the twin's fallback.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from neon_migrate.errors import HarnessError

NEWER = "trixie"  # Debian 13: PgBouncer 1.24, PostgreSQL 17's server headers
NEXT = "unstable"  # source of the next PostgreSQL major, when NEWER's is not on the mirror
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
BUILD_TOOLS = (  # Debian 12 packages
    "gcc", "make", "pkg-config", "dpkg-dev", "xz-utils", "libevent-dev", "libssl-dev",
    "libc-ares-dev", "uuid-dev",
)  # fmt: skip


class ProvisionError(HarnessError):
    """A build that cannot be done here: the twin falls back and says this line."""


@dataclass(frozen=True)
class Fetched:
    name: str
    version: str
    suite: str
    dsc: Path | None = None
    orig: Path | None = None
    deb: Path | None = None


class PrivateApt:
    """apt-get over Debian 13's (and unstable's source) indexes, without adding them to the
    machine's sources: the Debian mirror is the one the machine already uses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("lists/partial", "cache/archives/partial", "parts"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        mirror = debian_mirror()
        signed = f"[signed-by={KEYRING}]"
        (self.root / "sources.list").write_text(
            f"deb {signed} {mirror} {NEWER} main\n"
            f"deb-src {signed} {mirror} {NEWER} main\n"
            f"deb-src {signed} {mirror} {NEXT} main\n"
        )
        self.options = [
            f"-o=Dir::Etc::SourceList={self.root / 'sources.list'}",
            f"-o=Dir::Etc::SourceParts={self.root / 'parts'}",
            f"-o=Dir::State::Lists={self.root / 'lists'}",
            f"-o=Dir::Cache={self.root / 'cache'}",
            "-o=APT::Sandbox::User=root",  # as root: the private folders are root's
            "-o=Acquire::Retries=1",  # offline: the fallback line soon, not minutes later
            "-o=Acquire::http::Timeout=20",
        ]
        run(["apt-get", *self.options, "-qq", "update"], self.root)

    def source(self, name: str, work: Path, suite: str = NEWER) -> Fetched:
        run(["apt-get", *self.options, "-qq", "source", "--download-only", f"{name}/{suite}"],
             work)  # fmt: skip
        dsc = max(work.glob(f"{name}_*.dsc"), key=lambda p: p.stat().st_mtime)
        version = dsc.name[len(name) + 1 : -len(".dsc")]
        upstream = version.split("-")[0].split(":")[-1]
        orig = next(iter(work.glob(f"{name}_{upstream}.orig.tar.*")), None)
        return Fetched(name, version, suite, dsc=dsc, orig=orig)

    def source_of_module(self, major: str, work: Path) -> Fetched:
        """PostgreSQL's source of `major`; of the next major when the mirror lacks it."""
        tried = []
        for name, suite in ((f"postgresql-{major}", NEWER), (f"postgresql-{int(major) + 1}", NEXT)):
            try:
                return self.source(name, work, suite)
            except ProvisionError as err:
                tried.append(f"{name}: {err.cause}")
        raise ProvisionError("; ".join(tried))

    def download(self, name: str, work: Path) -> Fetched:
        run(["apt-get", *self.options, "-qq", "download", f"{name}/{NEWER}"], work)
        deb = next(iter(work.glob(f"{name}_*.deb")))
        version = deb.name.split("_")[1]
        return Fetched(name, version.replace("%3a", ":"), NEWER, deb=deb)


def debian_mirror() -> str:
    """The Debian archive this machine installs from (its apt configuration)."""
    try:
        result = subprocess.run(
            ["apt-get", "indextargets", "--format", "$(ORIGIN)|$(REPO_URI)|$(RELEASE)"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProvisionError(f"apt-get: {exc}") from None
    for line in result.stdout.splitlines():
        origin, uri, release = [*line.split("|"), "", ""][:3]
        if origin == "Debian" and "security" not in release:
            return uri.rstrip("/")
    raise ProvisionError("no Debian archive in this machine's apt sources")


def install_build_tools() -> None:
    query = ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *BUILD_TOOLS]
    try:
        listed = subprocess.run(query, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProvisionError(f"not a Debian-like system here ({exc})") from None
    installed = {ln.split()[0] for ln in listed.splitlines() if ln.endswith(" installed")}
    missing = [p for p in BUILD_TOOLS if p not in installed]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ProvisionError(f"the build needs {' '.join(missing)}, and installing them needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, capture_output=True, env=env).returncode:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        run(install, Path("/"), env=env)


def extract(archive: Path | None, folder: str, dest: Path) -> None:
    """Only the files under `folder` (e.g. contrib/uuid-ossp/) of a source tarball."""
    if archive is None:
        raise ProvisionError("the source package has no upstream tarball")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar:
            _, _, rest = member.name.partition("/")
            if member.isfile() and rest.startswith(folder) and "/" not in rest[len(folder) :]:
                member.name = rest[len(folder) :]
                tar.extract(member, dest, filter="data")


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env,
                                timeout=1200)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"{cmd[0]}: {exc}") from None
    if result.returncode:
        lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        raise ProvisionError(f"`{' '.join(cmd[:2])} ...` failed: {lines[-1] if lines else ''}")
