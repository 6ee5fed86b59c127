#!/usr/bin/env python3
"""make bench: the harness against raw Alembic, through a proxy that adds network latency.

On Neon every round trip crosses a network, so the figures that matter are round trips
(client flushes, counted at the proxy), connections, and wall time with a realistic
delay. Raw Alembic is the stock `alembic init` generic env.py over the same revisions and
URL, measured in the same run. Results print as one table and go to BENCHMARKS.md.

    python scripts/bench.py [--rtt-ms 20] [--runs 5] [--chain 200] [--pg-bin DIR]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the fault proxy the tests use

from load import percentile, run_load  # noqa: E402
from proxy import FaultProxy  # noqa: E402

from neon_migrate.twin.local import LocalServer  # noqa: E402
from neon_migrate.twin.pooler import LocalPooler, pgbouncer_path  # noqa: E402

PY = sys.executable
READING = """\
Reading the figures: a flush is one write by the client, so a query costs one and a
connection costs its handshake (about 4 without TLS, 8 with: SSLRequest, TLS, startup,
SCRAM; sslnegotiation=direct skips the SSLRequest round trip on PostgreSQL 17+). The
floor for `make migrate` at head with both endpoints verified is two connections with one
query each. P2 corpus is tests/corpus, a realistic chain, against stock Alembic's generic
env.py (one transaction for the whole run, which cannot run a chain holding a revision
that commits itself) and the same env.py with transaction_per_migration=True, the
harness's own semantics. P2 on the synthetic chain compares with the one-transaction
env.py: the extra flushes are the BEGIN and COMMIT of one transaction per revision. P4
loads the models (their naming convention shapes the DDL), as a real run does. P3
counts flushes per request on a warm pool. P6 is the local-Neon load test without added
latency; its ratio is requests/s against the same engine on SQLAlchemy's plain
QueuePool, so below 1.00x is what the pool statistics cost (run-to-run noise is about
+-10% on 2 cores).
"""
FAST_SERVER = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.server = LocalServer(work / "pg", bin_dir=args.pg_bin, server_options=FAST_SERVER)
        self.info = self.server.start()
        self.proxy = FaultProxy(self.info.port, delay=args.rtt_ms / 2000)
        self.pooler: LocalPooler | None = None  # P6's PgBouncer, when installed
        self.rows: list[tuple] = []

    # --- plumbing -----------------------------------------------------------------------------
    def url(self, database: str, sslmode: str, through_proxy: bool = True) -> str:
        port = self.proxy.port if through_proxy else self.info.port
        secret = quote(self.info.password, safe="")
        return f"postgresql://postgres:{secret}@127.0.0.1:{port}/{database}?sslmode={sslmode}"

    def fresh_database(self, name: str) -> None:
        conn = psycopg2.connect(self.url("postgres", "disable", through_proxy=False))
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        conn.close()

    def measure(self, args: list[str], env: dict, cwd: Path, may_fail: bool = False):
        """Wall time, client flushes and connections of one command through the proxy; with
        `may_fail`, a failure is returned as its last line instead of stopping the bench."""
        chunks, conns = self.proxy.client_chunks, self.proxy.connections
        started = time.perf_counter()
        result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode and may_fail:
            return (result.stderr.strip() or result.stdout.strip()).splitlines()[-1][:120]
        if result.returncode:
            raise SystemExit(f"bench: {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return wall, self.proxy.client_chunks - chunks, self.proxy.connections - conns

    def compare(self, name: str, ours: tuple[list, dict, Path], raw: tuple[list, dict, Path],
                runs: int, before=None) -> None:  # fmt: skip
        self.compare_many([name], ours, [raw], runs, before)

    def compare_many(
        self, names: list[str], ours: tuple, raws: list[tuple], runs: int, before=None
    ) -> None:
        """The harness against one or more stock variants, interleaved in the same runs;
        a row per variant, each with the harness's own medians."""
        labels = ["harness", *range(len(raws))]
        commands = dict(zip(labels, [ours, *raws], strict=True))
        samples: dict = {label: [] for label in labels}
        for _ in range(runs):
            for label in labels:
                if before:
                    before()
                samples[label].append(self.measure(*commands[label], may_fail=label != "harness"))
        failed = {k: next(s for s in v if isinstance(s, str))
                  for k, v in samples.items() if any(isinstance(s, str) for s in v)}  # fmt: skip
        med = {k: tuple(statistics.median(s[i] for s in v) for i in range(3))
               for k, v in samples.items() if k not in failed}  # fmt: skip
        for index, name in enumerate(names):
            if index in failed:  # stock Alembic could not run it: say so, with why
                self.rows.append((f"{name}: stock FAILS ({failed[index]})", med["harness"][0],
                                  0, 0, None, None, None, None))  # fmt: skip
                continue
            ratio = med["harness"][0] / med[index][0]
            self.rows.append((name, *med["harness"], *med[index], ratio))

    # --- projects -----------------------------------------------------------------------------
    def raw_project(self, name: str, versions: Path, url: str, models: Path | None = None,
                    per_migration: bool = False) -> Path:  # fmt: skip
        """`alembic init` (generic template) over the given versions folder and URL; with
        `models`, its env.py loads that folder's corpus_models (the same naming convention,
        so the same DDL) and, with `per_migration`, one transaction per revision."""
        folder = self.work / name
        folder.mkdir()
        subprocess.run([PY, "-m", "alembic", "init", "-t", "generic", "env"], cwd=folder,
                       check=True, capture_output=True)  # fmt: skip
        shutil.rmtree(folder / "env" / "versions")
        shutil.copytree(versions, folder / "env" / "versions")
        ini = folder / "alembic.ini"
        text = ini.read_text()
        text = text.replace("driver://user:pass@localhost/dbname", url.replace("%", "%%"))
        ini.write_text(text)
        env_py = folder / "env" / "env.py"
        code = env_py.read_text()
        if models is not None:
            code = code.replace(
                "target_metadata = None",
                f"import sys\nsys.path.insert(0, {str(models)!r})\n"
                "from corpus_models import metadata as target_metadata",
            )
        if per_migration:
            code = code.replace(
                "connection=connection, target_metadata=target_metadata",
                "connection=connection, target_metadata=target_metadata,\n"
                "            transaction_per_migration=True",
            )
        env_py.write_text(code)
        return ini

    def harness_project(self, name: str, versions: Path) -> Path:
        folder = self.work / name
        (folder / "migrations").mkdir(parents=True)
        shutil.copy(ROOT / "alembic.ini", folder / "alembic.ini")
        for part in ("env.py", "script.py.mako"):
            shutil.copy(ROOT / "migrations" / part, folder / "migrations" / part)
        shutil.copytree(versions, folder / "migrations" / "versions")
        return folder / "alembic.ini"

    def chain(self, count: int) -> Path:
        folder = self.work / "chain-versions"
        folder.mkdir()
        down = None
        for i in range(count):
            rev = f"c{i:04d}"
            (folder / f"{rev}.py").write_text(
                f'"""step {i}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
                f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\n"
                f"depends_on = None\n\n\ndef upgrade():\n    op.create_table('t{i}', "
                f"sa.Column('id', sa.Integer, primary_key=True), sa.Column('v', sa.Text))\n\n\n"
                f"def downgrade():\n    op.drop_table('t{i}')\n"
            )
            down = rev
        return folder

    # --- the benchmarks -----------------------------------------------------------------------
    def p1(self, sslmode: str) -> None:
        database = "p1_" + sslmode.split("&")[0] + ("_direct" if "direct" in sslmode else "")
        self.fresh_database(database)
        url = self.url(database, sslmode)
        env = self.env(DATABASE_URL=url, ALEMBIC_CONFIG=str(ROOT / "alembic.ini"))
        command = [PY, "-m", "neon_migrate.cli", "migrate"]
        subprocess.run(command, env=env, cwd=self.work, check=True, capture_output=True)
        raw_ini = self.raw_project(f"raw-p1-{sslmode}", ROOT / "migrations" / "versions", url)
        self.compare(
            f"P1 migrate at head + verify (sslmode={sslmode})",
            ([PY, "-m", "neon_migrate.cli", "migrate"], env, self.work),
            ([PY, "-m", "alembic", "-c", str(raw_ini), "upgrade", "head"], self.env(), self.work),
            self.args.runs,
        )

    def p2_p4(self) -> None:
        versions = self.chain(self.args.chain)
        url = self.url("chain", "disable")
        ours = self.harness_project("harness-chain", versions)
        raw = self.raw_project("raw-chain", versions, url)
        env = self.env(DATABASE_URL=url, ALEMBIC_CONFIG=str(ours))
        self.compare(
            f"P2 apply a {self.args.chain}-revision chain",
            ([PY, "-m", "alembic", "upgrade", "head"], env, self.work),
            ([PY, "-m", "alembic", "-c", str(raw), "upgrade", "head"], self.env(), self.work),
            max(1, self.args.runs // 2),
            before=lambda: self.fresh_database("chain"),
        )
        self.compare(
            f"P4 offline SQL for the {self.args.chain}-revision chain",
            ([PY, "-m", "alembic", "upgrade", "head", "--sql"], env, self.work),
            ([PY, "-m", "alembic", "-c", str(raw), "upgrade", "head", "--sql"], self.env(),
             self.work),
            self.args.runs,
        )  # fmt: skip

    def p2_corpus(self) -> None:
        """The realistic corpus (tests/corpus): concurrent indexes, a revision that commits,
        data migrations, merges. Against stock Alembic in one transaction (the generic
        env.py) and with one transaction per revision, as the harness runs it."""
        corpus = self.work / "corpus"
        shutil.copytree(ROOT / "tests" / "corpus", corpus, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        versions = corpus / "migrations" / "versions"
        count = sum(1 for _ in versions.glob("*.py")) - 1  # less __init__.py
        url = self.url("corpus", "disable")
        raw = self.raw_project("raw-corpus", versions, url, models=corpus)
        per = self.raw_project("raw-corpus-per", versions, url, models=corpus, per_migration=True)
        env = self.env(DATABASE_URL=url, ALEMBIC_CONFIG=str(corpus / "alembic.ini"))
        self.compare_many(
            [f"P2 corpus: {count} realistic revisions, vs stock (one transaction)",
             f"P2 corpus: {count} realistic revisions, vs stock (transaction per migration)"],
            ([PY, "-m", "alembic", "upgrade", "head"], env, self.work),
            [([PY, "-m", "alembic", "-c", str(raw), "upgrade", "head"], self.env(), self.work),
             ([PY, "-m", "alembic", "-c", str(per), "upgrade", "head"], self.env(), self.work)],
            max(1, self.args.runs // 2),
            before=lambda: self.fresh_database("corpus"),
        )  # fmt: skip

    def p3(self) -> None:
        """A simple query through the warm app engine, in this process."""
        database = "p3"
        self.fresh_database(database)
        os.environ.update(DATABASE_URL=self.url(database, "disable"), DB_POOL_SIZE="2")
        from sqlalchemy import text

        from neon_migrate.connection.engines import get_app_engine, reset_engines
        from neon_migrate.connection.session import session_scope

        reset_engines()
        engine = get_app_engine()
        for label, request in (
            ("autocommit_connection() + one SELECT", lambda: _autocommit_select(text)),
            ("engine.connect() + one SELECT", lambda: _connect_select(engine, text)),
            ("session_scope() + one SELECT", lambda: _session_select(session_scope, text)),
        ):
            request()  # warm the pool
            chunks, latencies = self.proxy.client_chunks, []
            for _ in range(50):
                started = time.perf_counter()
                request()
                latencies.append(time.perf_counter() - started)
            per_request = (self.proxy.client_chunks - chunks) / 50
            self.rows.append((f"P3 {label}", statistics.median(latencies), per_request, 0,
                              None, None, None, None))  # fmt: skip
        reset_engines()

    def load(self) -> None:
        """P6: what the pool statistics cost, on the local-Neon issue's load test: 32 threads
        x 50 requests (a session, SELECT 1, COMMIT) on a pool of 4+4, through PgBouncer when
        it is installed, without the latency proxy (a network delay would hide CPU cost).
        Baseline: the same engine on SQLAlchemy's own QueuePool, no events of ours."""
        from sqlalchemy import create_engine, event, text
        from sqlalchemy.pool import QueuePool
        from sqlmodel import Session

        from neon_migrate.connection import urls
        from neon_migrate.connection.engines import (
            _replace_if_closed,
            get_app_engine,
            reset_engines,
        )
        from neon_migrate.connection.targets import app_connect_args

        # 32 threads on 8 connections is near exhaustion by design: not news here.
        logging.getLogger("neon_migrate.pool").setLevel(logging.ERROR)
        database, secret = "load", quote(self.info.password, safe="")
        self.fresh_database(database)
        if pgbouncer_path():
            self.pooler = LocalPooler(self.work / "pgbouncer")
            door, port, mode = "PgBouncer", self.pooler.start(self.info).port, "require"
        else:
            door, port, mode = "direct (no pgbouncer)", self.info.port, "disable"
        url = f"postgresql://postgres:{secret}@127.0.0.1:{port}/{database}?sslmode={mode}"
        os.environ.update(DATABASE_URL=url, DB_POOL_SIZE="4", DB_MAX_OVERFLOW="4")

        def engine_for(variant: str):
            reset_engines()
            os.environ["DB_POOL_LEAK_SECONDS"] = "30" if "leak" in variant else "0"
            if variant.startswith("no statistics"):
                engine = create_engine(  # psycopg2, as the app engine (2.1 defaults to 3)
                    urls.to_sqlalchemy(url), poolclass=QueuePool, pool_size=4, max_overflow=4,
                    pool_recycle=240,
                    connect_args=app_connect_args(),
                )  # fmt: skip
                event.listen(engine, "checkout", _replace_if_closed)
                return engine
            return get_app_engine()

        def run_once(engine) -> tuple[float, float]:
            def request() -> None:  # what session_scope() does, on the engine under test
                with Session(engine) as session:
                    session.execute(text("SELECT 1")).scalar()
                    session.commit()

            load = run_load(request)
            if load.errors:
                raise SystemExit(f"bench: P6 failed {len(load.errors)} requests: {load.errors[0]}")
            return load.per_second, percentile(load.latencies, 99) * 1000

        variants = [
            "no statistics (SQLAlchemy's QueuePool)",
            "statistics on",
            "statistics + leak warnings (stack per checkout)",
        ]
        samples: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for run in range(self.args.runs):
            # Interleaved, and each round in a rotated order, so neither drift nor running
            # after another variant favours one.
            for variant in variants[run % 3 :] + variants[: run % 3]:
                engine = engine_for(variant)
                run_once(engine)  # warm the pool
                samples[variant].append(run_once(engine))
                engine.dispose()
        reset_engines()
        os.environ.pop("DB_POOL_LEAK_SECONDS")
        baseline = statistics.median(rps for rps, _ in samples[variants[0]])
        for variant in variants:
            rps = statistics.median(r for r, _ in samples[variant])
            p99 = statistics.median(p for _, p in samples[variant])
            self.rows.append((f"P6 load via {door}, {variant}", rps, p99, 0, None, None, None,
                              rps / baseline))  # fmt: skip

    def handshakes(self) -> None:
        """What one connection costs: connect, SELECT 1, close, per TLS negotiation."""
        modes = [("no TLS", "sslmode=disable")]
        if self.info.tls:
            modes += [
                ("TLS", "sslmode=require"),
                ("TLS, sslnegotiation=direct", "sslmode=require&sslnegotiation=direct"),
            ]
        for label, query in modes:
            url = self.url("postgres", "disable").replace("sslmode=disable", query)
            chunks, started = self.proxy.client_chunks, time.perf_counter()
            try:
                conn = psycopg2.connect(url)
                conn.autocommit = True
                conn.cursor().execute("SELECT 1")
                conn.close()
            except psycopg2.Error as exc:
                reason = " ".join(str(exc).split())[:80]
                self.rows.append(
                    (f"connect + SELECT 1 ({label}): {reason}", None, 0, 0, None, None, None, None)
                )
                continue
            wall = time.perf_counter() - started
            self.rows.append(
                (
                    f"connect + SELECT 1 ({label})",
                    wall,
                    self.proxy.client_chunks - chunks,
                    1,
                    None,
                    None,
                    None,
                    None,
                )
            )

    def p5(self) -> None:
        env = self.env()
        for name, args in (
            ("P5 python -m neon_migrate.cli --help", [PY, "-m", "neon_migrate.cli", "--help"]),
        ):
            walls = [self.measure(args, env, self.work)[0] for _ in range(self.args.runs)]
            imports = _import_ms(["-m", "neon_migrate.cli", "--help"], env)
            self.rows.append((name, statistics.median(walls), 0, 0, None, None, None, None))
            self.rows.append((f"{name}: import time (ms)", imports / 1000, 0, 0, None, None,
                              None, None))  # fmt: skip
        db_env = self.env(DATABASE_URL=self.url("p1_disable", "disable"),
                          ALEMBIC_CONFIG=str(ROOT / "alembic.ini"))  # fmt: skip
        raw_ini = self.work / "raw-p1-disable" / "alembic.ini"
        self.compare(
            "P5 no-op command: alembic current",
            ([PY, "-m", "alembic", "current"], db_env, self.work),
            ([PY, "-m", "alembic", "-c", str(raw_ini), "current"], self.env(), self.work),
            self.args.runs,
        )

    def env(self, **extra: str) -> dict:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("DATABASE_URL", "DB_", "MIGRATION_"))}  # fmt: skip
        return base | {"LOCAL_DB_DIR": str(self.work / "unused")} | extra

    def close(self) -> None:
        self.proxy.close()
        if self.pooler is not None:
            self.pooler.stop()
        self.server.stop()


def _autocommit_select(text) -> None:
    from neon_migrate.connection.session import autocommit_connection

    with autocommit_connection() as conn:
        conn.execute(text("SELECT 1")).scalar()


def _connect_select(engine, text) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar()


def _session_select(session_scope, text) -> None:
    with session_scope() as session:
        session.execute(text("SELECT 1")).scalar()


def _import_ms(args: list[str], env: dict) -> float:
    result = subprocess.run([PY, "-X", "importtime", *args], env=env, capture_output=True,
                            text=True)  # fmt: skip
    total = 0
    for line in result.stderr.splitlines():
        parts = line.split("|")
        top_level = parts[-1].startswith(" ") and not parts[-1].startswith("  ")
        if len(parts) == 3 and top_level and parts[1].strip().isdigit():
            total += int(parts[1])  # top-level modules' cumulative time, in microseconds
    return total / 1000


def table(rows: list[tuple], rtt_ms: float) -> str:
    lines = [
        f"| benchmark (RTT {rtt_ms:g} ms) | harness wall | flushes | conns | raw wall | "
        "flushes | conns | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, wall, flushes, conns, raw_wall, raw_flushes, raw_conns, ratio in rows:
        if name.startswith("connect"):
            value = "failed" if wall is None else f"{wall * 1000:.0f} ms"
            lines.append(f"| {name} | {value} | {flushes:g} | {conns:g} | | | | |")
        elif name.startswith("P6"):
            lines.append(f"| {name} | {wall:.0f} req/s | p99 {flushes:.0f} ms | | | | | "
                         f"{ratio:.2f}x |")  # fmt: skip
        elif name.startswith("P3"):
            lines.append(f"| {name} | {wall * 1000:.1f} ms | {flushes:g} per request | | | | | |")
        elif raw_wall is None:
            value = f"{wall * 1000:.0f} ms" if "import" in name else f"{wall:.2f} s"
            lines.append(f"| {name} | {value} | | | | | | |")
        else:
            lines.append(f"| {name} | {wall:.2f} s | {flushes:g} | {conns:g} | {raw_wall:.2f} s "
                         f"| {raw_flushes:g} | {raw_conns:g} | {ratio:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def machine(info) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())  # fmt: skip
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"PostgreSQL {info.version} ({'TLS' if info.tls else 'no TLS'}), "
            f"psycopg2 libpq {psycopg2.extensions.libpq_version()}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtt-ms", type=float, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--pg-bin", type=Path, default=os.environ.get("LOCAL_PG_BIN_DIR") or None)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        work = Path(folder)
        (work / "unused").mkdir()
        bench = Bench(args, work)
        try:
            modes = ["disable"]
            if bench.info.tls:
                modes.append("require")
            if bench.info.tls and int(bench.info.version.split(".")[0]) >= 17:
                modes.append("require&sslnegotiation=direct")  # no SSLRequest round trip
            for mode in modes:
                bench.p1(mode)
            bench.handshakes()
            bench.p2_corpus()
            bench.p2_p4()
            bench.p3()
            bench.load()
            bench.p5()
        finally:
            bench.close()
        info = bench.info
    report = table(bench.rows, args.rtt_ms)
    print(report)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    args.output.write_text(
        f"# Benchmarks\n\n`make bench` on {stamp}: {machine(info)}.\n"
        f"Medians of {args.runs} runs (P2: {max(1, args.runs // 2)}); a proxy adds "
        f"{args.rtt_ms:g} ms per round trip and counts client flushes and connections.\n\n"
        f"{report}\n\n{READING}"
    )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
