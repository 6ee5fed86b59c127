#!/usr/bin/env python3
"""make bench: the harness against raw Alembic, through a proxy that adds network latency.

On Neon every round trip crosses a network, so the figures that matter are round trips
(client flushes, counted at the proxy), connections, and wall time with a realistic
delay. Raw Alembic is the stock `alembic init` generic env.py over the same revisions and
URL, measured in the same run. Results print as one table and go to BENCHMARKS.md.

    python scripts/bench.py [--rtt-ms 20] [--runs 5] [--chain 200] [--pg-bin DIR]
                            [--only p1,p7] [--before REV] [--output FILE]

--only runs some sections (p1, connect, p2, p3, p4, p5, p6, p7, p8, fleet; p5 needs p1's
database, so it brings p1) and writes no file unless --output is given: a partial run never replaces
BENCHMARKS.md. --before REV adds a P7 row for that commit's check (run from a git
worktree of it, removed at the end).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
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
harness's own semantics. P2 runs the harness twice: with its fast path (the default: a
revision that renders to SQL goes as one message, BEGIN to COMMIT) and with
MIGRATION_FAST_PATH=false (statement by statement); its notes give client flushes per
revision. P4
loads the models (their naming convention shapes the DDL), as a real run does. P3
counts flushes per request on a warm pool. P6 is the local-Neon load test without added
latency; its ratio is requests/s against the same engine on SQLAlchemy's plain
QueuePool, so below 1.00x is what the pool statistics cost (run-to-run noise is about
+-10% on 2 cores). P7 is what the pre-deploy check does to the app: one pending `ALTER
TABLE account ADD COLUMN` over 10k accounts, and an app thread running a point SELECT on
account in a loop on its own connection through the proxy (one round trip each) while
the check runs. Its columns: the check's wall time, the app's slowest query and p99
during the check, and the check's rehearsal step. Rehearsing on production takes the
ALTER's ACCESS EXCLUSIVE lock for real, so the app's slowest query is that lock's hold
time plus a round trip; on a branch (here the local stand-in of Neon's API, its
databases behind the same proxy) production is only read. P8 checks `neon-migrate
pool-size` under load on a server with max_connections=20 behind PgBouncer: requests/s,
p99 and p50 checkout wait (from the pool statistics) and connections opened, for the
recommended pool and one too small, interleaved; the lines under the table are the
sizing's arithmetic and what verify says for one process and for four. F1 migrates 40
fresh databases (one revision each) through the proxy: `neon-migrate migrate` on each in
turn, each a new process, against `neon-migrate fleet migrate` (a process per database
forked from a fork server with the imports preloaded) at several concurrencies; its ratio
is against the sequential loop. F2 reruns the fleet when every database is at head.
"""
FAST_SERVER = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.server = LocalServer(work / "pg", bin_dir=args.pg_bin, server_options=FAST_SERVER)
        self.info = self.server.start()
        self.proxy = FaultProxy(self.info.port, delay=args.rtt_ms / 2000)
        self.pooler: LocalPooler | None = None  # P6's PgBouncer, when installed
        self.worktree: Path | None = None  # P7's --before checkout
        self.standin: Path | None = None  # P7's Neon API stand-in, when running
        self.rows: list[tuple] = []
        self.notes: list[str] = []  # sentences printed under the table (P8's warning)

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
        """alembic.ini and env.py over the given versions, with the models alembic.ini
        names (app/) and the lint settings (.squawk.toml) the pre-deploy check reads."""
        folder = self.work / name
        (folder / "migrations").mkdir(parents=True)
        shutil.copy(ROOT / "alembic.ini", folder / "alembic.ini")
        for part in ("env.py", "script.py.mako"):
            shutil.copy(ROOT / "migrations" / part, folder / "migrations" / part)
        shutil.copytree(versions, folder / "migrations" / "versions",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        shutil.copytree(ROOT / "app", folder / "app", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / ".squawk.toml", folder / ".squawk.toml")
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
        per = self.raw_project("raw-chain-per", versions, url, per_migration=True)
        env = self.env(DATABASE_URL=url, ALEMBIC_CONFIG=str(ours))
        self.both_paths(
            f"P2 apply a {self.args.chain}-revision chain",
            ([PY, "-m", "alembic", "upgrade", "head"], env, self.work),
            {"one transaction": ([PY, "-m", "alembic", "-c", str(raw), "upgrade", "head"],
                                 self.env(), self.work),
             "transaction per migration": ([PY, "-m", "alembic", "-c", str(per), "upgrade",
                                            "head"], self.env(), self.work)},
            self.args.chain,
            before=lambda: self.fresh_database("chain"),
        )  # fmt: skip
        self.compare(
            f"P4 offline SQL for the {self.args.chain}-revision chain",
            ([PY, "-m", "alembic", "upgrade", "head", "--sql"], env, self.work),
            ([PY, "-m", "alembic", "-c", str(raw), "upgrade", "head", "--sql"], self.env(),
             self.work),
            self.args.runs,
        )  # fmt: skip

    def both_paths(self, name: str, ours: tuple, raws: dict, count: int, before) -> None:
        """The harness with its fast path (the default) and with MIGRATION_FAST_PATH=false,
        each against the stock variants in the same interleaved runs; flushes per revision
        into the notes."""
        runs = max(1, self.args.runs // 2)
        first = len(self.rows)
        for path, fast in (("fast path", "true"), ("normal path", "false")):
            command, env, cwd = ours
            self.compare_many(
                [f"{name}, {path}, vs stock ({variant})" for variant in raws],
                (command, dict(env, MIGRATION_FAST_PATH=fast), cwd),
                list(raws.values()),
                runs,
                before=before,
            )
        per_revision = [
            f"{row[0].split(', ', 1)[1]}: harness {row[2] / count:.2f}, stock {row[5] / count:.2f}"
            for row in self.rows[first:]
            if row[5]  # not where stock Alembic could not run the chain
        ]
        self.notes.append(f"{name}: client flushes per revision: " + "; ".join(per_revision))

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
        self.both_paths(
            f"P2 corpus: {count} realistic revisions",
            ([PY, "-m", "alembic", "upgrade", "head"], env, self.work),
            {"one transaction": ([PY, "-m", "alembic", "-c", str(raw), "upgrade", "head"],
                                 self.env(), self.work),
             "transaction per migration": ([PY, "-m", "alembic", "-c", str(per), "upgrade",
                                            "head"], self.env(), self.work)},
            count,
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

    def p8(self) -> None:
        """P8: the pool-size recommendation under load, on a compute with few connections.

        A server with max_connections=20 and PgBouncer (default_pool_size 12) in front, as a
        small Neon compute and its pooler. One worker of 8 threads; each request does 60 ms
        (on average) of work outside the database, then a transaction holding a connection for 20 ms
        (pg_sleep). `neon-migrate pool-size` sizes it from that; a pool of 1 is the
        too-small one. Runs interleaved, each on a fresh engine; p99 checkout wait from the
        pool statistics (a run's first connects, under 1% of its checkouts, included). Then
        a fleet of 4 such processes (DB_POOL_PROCESSES=4) gets the warning verify gives, in
        its words."""
        from sqlalchemy import text
        from sqlmodel import Session

        from neon_migrate.connection.engines import get_app_engine, reset_engines
        from neon_migrate.connection.health import check_connection
        from neon_migrate.migrate.verify import pools_item
        from neon_migrate.observe.sizing import (
            Workload,
            pgbouncer_limits,
            postgres_ceiling,
            recommend,
        )

        if not pgbouncer_path():
            self.notes.append("P8 not run: pgbouncer is not installed")
            return
        logging.getLogger("neon_migrate.pool").setLevel(logging.ERROR)  # exhaustion: expected
        options = FAST_SERVER | {"max_connections": "20"}
        server = LocalServer(self.work / "pg8", bin_dir=self.args.pg_bin, server_options=options)
        info = server.start()
        pooler = LocalPooler(self.work / "pgbouncer8", extra={"default_pool_size": "12"})
        saved = {k: v for k, v in os.environ.items() if k.startswith(("DATABASE_URL", "DB_"))}
        try:
            port = pooler.start(info).port
            secret = quote(info.password, safe="")
            direct = (
                f"postgresql://postgres:{secret}@127.0.0.1:{info.port}/postgres?sslmode=disable"
            )
            pooled = f"postgresql://postgres:{secret}@127.0.0.1:{port}/postgres?sslmode=require"
            os.environ.update(DATABASE_URL=pooled, DATABASE_URL_DIRECT=direct)
            reset_engines()
            health = check_connection("direct")
            pgb = pgbouncer_limits(pooler.root / "pgbouncer.ini")["default_pool_size"]
            ceiling = postgres_ceiling(health.max_connections, health.reserved_connections, pgb)
            threads, app_ms, db_ms, each = 8, 60, 20, 100
            rps = threads / ((app_ms + db_ms) / 1000)  # what 8 threads offer, unthrottled
            rec = recommend(Workload(1, 1, threads, rps=rps, request_ms=db_ms), ceiling)
            variants = {
                f"recommended {rec.pool_size}+{rec.max_overflow}": (
                    rec.pool_size,
                    rec.max_overflow,
                ),
                "too small 1+0": (1, 0),
            }

            def request(engine) -> None:
                # the request's own work, no connection held; random (exponential, mean 60 ms)
                # so the threads' database calls arrive as a server's do, not in lockstep
                time.sleep(random.expovariate(1000 / app_ms))
                with Session(engine) as session:
                    session.execute(text(f"SELECT pg_sleep({db_ms / 1000})"))
                    session.commit()

            samples: dict[str, list[tuple]] = {v: [] for v in variants}
            for run in range(self.args.runs):
                order = list(variants) if run % 2 == 0 else list(reversed(variants))
                for name in order:
                    size, overflow = variants[name]
                    os.environ.update(DB_POOL_SIZE=str(size), DB_MAX_OVERFLOW=str(overflow))
                    reset_engines()
                    engine = get_app_engine()
                    load = run_load(lambda engine=engine: request(engine), threads, each)
                    if load.errors:
                        raise SystemExit(f"bench: P8 {name}: {load.errors[0]}")
                    snap = engine.pool.stats.snapshot()
                    p99, p50 = snap.checkout_wait_p99_ms, snap.checkout_wait_p50_ms
                    samples[name].append((load.per_second, p99 or 0.0, p50 or 0.0, snap.connects))
            for name in variants:
                columns = zip(*samples[name], strict=True)
                got, wait, p50, connects = (statistics.median(column) for column in columns)
                self.rows.append((f"P8 {threads} threads, {app_ms}+{db_ms} ms: pool {name}",
                                  got, wait, p50, connects, None, None, None))  # fmt: skip
            os.environ.update(DB_POOL_SIZE=str(rec.pool_size), DB_POOL_PROCESSES="4",
                              DB_MAX_OVERFLOW=str(rec.max_overflow))  # fmt: skip
            reset_engines()
            fleet = pools_item(health)
            os.environ["DB_POOL_PROCESSES"] = "1"
            reset_engines()
            one = pools_item(health)
            self.notes += [
                f"P8 server: max_connections {health.max_connections}, "
                f"{health.reserved_connections} reserved, PgBouncer default_pool_size {pgb}; "
                f"pool-size's ceiling: {ceiling.words()}.",
                "P8 pool-size arithmetic: " + "; ".join(rec.arithmetic) + ".",
                f"P8 verify with DB_POOL_PROCESSES=1: pools {'warn' if one.warning else 'ok'}: "
                f"{one.detail}",
                f"P8 verify with DB_POOL_PROCESSES=4: pools {'warn' if fleet.warning else 'ok'}: "
                f"{fleet.detail}",
            ]
        finally:
            reset_engines()
            for key in [k for k in os.environ if k.startswith(("DATABASE_URL", "DB_"))]:
                del os.environ[key]
            os.environ.update(saved)
            pooler.stop()
            server.stop()

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

    def p7(self) -> None:
        """P7: what the pre-deploy check does to the app while it rehearses one pending
        `ALTER TABLE account ADD COLUMN` (ACCESS EXCLUSIVE): on production in a rolled-back
        transaction (no Neon API configured), on a branch of the stand-in of Neon's API, and
        with --before, the given commit's check. An app thread runs a point SELECT on
        account in a loop on its own connection through the proxy while the check runs."""
        from neon_migrate.twin.standin import start_standin

        database = "p7"
        self.fresh_database(database)
        ini = self.harness_project("p7-project", ROOT / "migrations" / "versions")
        direct = self.url(database, "disable", through_proxy=False)  # setting up: no delay
        subprocess.run([PY, "-m", "alembic", "upgrade", "head"], cwd=ini.parent, check=True,
                       env=self.env(DATABASE_URL=direct, ALEMBIC_CONFIG=str(ini)),
                       capture_output=True)  # fmt: skip
        conn = psycopg2.connect(direct)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO account (email, display_name) SELECT 'user' || g || "
                "'@example.com', 'User ' || g FROM generate_series(1, %s) g",
                (P7_ACCOUNTS,),
            )
            cur.execute("ANALYZE account")
            cur.execute("SELECT version_num FROM alembic_version")
            (head,) = cur.fetchone()
        conn.close()
        pending = _P7_REVISION.format(head=head)
        (ini.parent / "migrations" / "versions" / "p7_nickname.py").write_text(pending)

        # The check's URL as on Neon: TLS when this PostgreSQL has it, through the proxy.
        sslmode = "require" if self.info.tls else "disable"
        url = self.url(database, sslmode)
        script = str(ROOT / "scripts" / "predeploy_check.py")
        plain = self.env(DATABASE_URL=url, ALEMBIC_CONFIG=str(ini))
        plain = {k: v for k, v in plain.items() if not k.startswith(("NEON_", "CHECK_"))}
        # The stand-in serves this database as its default branch, and its branches on the
        # same server, all through the proxy: branch connections pay the round trips too.
        served = SimpleNamespace(host="127.0.0.1", port=self.proxy.port, user=self.info.user,
                                 password=self.info.password, database=database,
                                 tls=self.info.tls)  # fmt: skip
        self.standin = self.work / "p7-api"
        api = start_standin(self.standin, served, self.server.bin_dir)
        branched = plain | {"NEON_API_KEY": api.api_key, "NEON_PROJECT_ID": api.project_id,
                            "NEON_API_URL": api.base_url}  # fmt: skip
        check = [PY, script, "--json"]
        variants = {  # name: command, environment, cwd, the rehearsal mode it must report
            "in-transaction (no branch)": (check, plain, ini.parent, "transaction"),
            "branch (stand-in)": (check, branched, ini.parent, "branch"),
        }
        if self.args.before:
            variants[f"before ({self.args.before}, in-transaction)"] = self.before_check(
                self.args.before, pending, url
            )
        samples: dict[str, list[tuple]] = {name: [] for name in variants}
        names = list(variants)
        for run in range(self.args.runs):  # interleaved, each round in a rotated order
            for name in names[run % len(names) :] + names[: run % len(names)]:
                samples[name].append(self.check_under_load(name, *variants[name], database))
        for name, runs in samples.items():
            med = [statistics.median(s[i] for s in runs) for i in range(4)]
            self.rows.append((f"P7 check vs app at {self.args.rtt_ms:g} ms: {name}", *med,
                              None, None, None))  # fmt: skip
        with psycopg2.connect(direct) as conn, conn.cursor() as cur:  # the check changed nothing
            cur.execute("SELECT count(*) FROM information_schema.columns WHERE "
                        "table_name = 'account' AND column_name = 'nickname'")  # fmt: skip
            if cur.fetchone()[0]:
                raise SystemExit("bench: P7: the check left account.nickname on production")
        conn.close()

    def check_under_load(self, name: str, args: list, env: dict, cwd: Path, mode: str | None,
                         database: str) -> tuple:  # fmt: skip
        """(check wall s, app max ms, app p99 ms, rehearsal step s) of one check run, the
        app's point SELECTs running on their own connection for as long as it runs."""
        with AppLoop(self.url(database, "disable"), P7_ACCOUNTS) as app:
            started = time.perf_counter()
            result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
            wall = time.perf_counter() - started
        if result.returncode not in (0, 1) or app.errors:  # 1: a check failed (drift, here)
            output = result.stdout[-2000:] + result.stderr[-2000:]
            raise SystemExit(f"bench: P7 {name}: exit {result.returncode}, app errors "
                             f"{app.errors[:1]}\n{output}")  # fmt: skip
        checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
        rehearsal = checks["rehearsal"]
        details = rehearsal.get("details") or {}
        ran = details.get("mode", "transaction")  # before: no mode key
        if details.get("rehearsed") != ["p7nickname"] or (mode is not None and ran != mode):
            raise SystemExit(f"bench: P7 {name}: the rehearsal did not run as meant ({mode}): "
                             f"{rehearsal['status']}: {rehearsal['message']}")  # fmt: skip
        latencies = app.latencies
        return (wall, max(latencies) * 1000, percentile(latencies, 99) * 1000,
                rehearsal["duration_ms"] / 1000)  # fmt: skip

    def before_check(self, rev: str, pending: str, url: str) -> tuple:
        """The pre-deploy check of commit `rev`: a git worktree of it, the pending revision
        added to its migrations, run with its own alembic.ini and code (PYTHONPATH), the
        same interpreter and packages; proven to import the worktree's neon_migrate."""
        tree = self.work / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)  # fmt: skip
        self.worktree = tree
        (tree / "migrations" / "versions" / "p7_nickname.py").write_text(pending)
        env = self.env(DATABASE_URL=url, ALEMBIC_CONFIG=str(tree / "alembic.ini"),
                       PYTHONPATH=str(tree))  # fmt: skip
        env = {k: v for k, v in env.items() if not k.startswith(("NEON_", "CHECK_"))}
        where = subprocess.run(
            [PY, "-c", "import neon_migrate; print(neon_migrate.__file__)"],
            env=env, cwd=tree, check=True, capture_output=True, text=True,
        )  # fmt: skip
        if not Path(where.stdout.strip()).is_relative_to(tree):
            raise SystemExit(f"bench: --before {rev}: imported {where.stdout.strip()}, not the "
                             f"worktree's code")  # fmt: skip
        return [PY, str(tree / "scripts" / "predeploy_check.py"), "--json"], env, tree, None

    def fleet(self) -> None:
        """F: 40 databases behind the proxy, migrated to head: `neon-migrate migrate` on
        each in turn, then `fleet migrate` at --concurrency 1, 4, 8, 16 (fresh databases
        each time), then a rerun with every database at head. The wall includes each
        command's start-up; the ratio is against the sequential loop."""
        count = FLEET_SIZE
        names = [f"fleet_{i:02d}" for i in range(count)]
        mode = "require" if self.info.tls else "disable"
        targets = self.work / "fleet.toml"
        targets.write_text(
            "".join(f'[[target]]\nname = "{n}"\nurl_env = "{n.upper()}"\n\n' for n in names)
        )
        env = self.env(
            ALEMBIC_CONFIG=str(ROOT / "alembic.ini"),
            **{n.upper(): self.url(n, mode) for n in names},
        )

        def fresh() -> None:
            for name in names:
                self.fresh_database(name)

        fresh()
        chunks, conns = self.proxy.client_chunks, self.proxy.connections
        started = time.perf_counter()
        for name in names:
            subprocess.run(
                [PY, "-m", "neon_migrate.cli", "migrate"],
                check=True,
                cwd=self.work,
                capture_output=True,
                env=env | {"DATABASE_URL": self.url(name, mode)},
            )
        sequential = time.perf_counter() - started
        self.rows.append(
            (
                f"F1 {count} databases: `neon-migrate migrate` on each in turn",
                sequential,
                self.proxy.client_chunks - chunks,
                self.proxy.connections - conns,
                None,
                None,
                None,
                None,
            )
        )
        command = [
            PY,
            "-m",
            "neon_migrate.cli",
            "fleet",
            "migrate",
            "--targets",
            str(targets),
            "--json",
            "--concurrency",
        ]
        for concurrency in (1, 4, 8, 16):
            fresh()
            wall, flushes, opened = self.measure([*command, str(concurrency)], env, self.work)
            self._check_fleet(names)
            self.rows.append(
                (
                    f"F1 {count} databases: fleet migrate --concurrency {concurrency}",
                    wall,
                    flushes,
                    opened,
                    sequential,
                    None,
                    None,
                    wall / sequential,
                )
            )
        wall, flushes, opened = self.measure([*command, "8"], env, self.work)
        self.rows.append(
            (
                f"F2 rerun, all {count} at head: fleet migrate --concurrency 8",
                wall,
                flushes,
                opened,
                None,
                None,
                None,
                None,
            )
        )
        self.notes.append(
            f"F2: a target already at head costs {opened / count:g} connection "
            f"and {flushes / count:g} client flushes (handshake with TLS, one "
            "query, Terminate); `neon-migrate migrate` at head costs two "
            "connections (it verifies the pooled door too)."
        )

    def _check_fleet(self, names: list[str]) -> None:
        for name in names:
            conn = psycopg2.connect(self.url(name, "disable", through_proxy=False))
            with conn.cursor() as cur:
                cur.execute("SELECT version_num FROM alembic_version")
                if not cur.fetchall():
                    raise SystemExit(f"bench: fleet left {name} without a revision")
            conn.close()

    def env(self, **extra: str) -> dict:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("DATABASE_URL", "DB_", "MIGRATION_"))}  # fmt: skip
        return base | {"LOCAL_DB_DIR": str(self.work / "unused")} | extra

    def close(self) -> None:
        if self.standin is not None:
            from neon_migrate.twin.standin import stop_standin

            stop_standin(self.standin)
        if self.worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(self.worktree)], check=False, capture_output=True)  # fmt: skip
        self.proxy.close()
        if self.pooler is not None:
            self.pooler.stop()
        self.server.stop()


FLEET_SIZE = 40
P7_ACCOUNTS = 10_000
_P7_REVISION = '''"""add account.nickname (P7's pending revision)"""
from alembic import op

revision = "p7nickname"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE account ADD COLUMN nickname text")


def downgrade():
    op.execute("ALTER TABLE account DROP COLUMN nickname")
'''


class AppLoop:
    """The app during P7: `SELECT ... FROM account WHERE id = %s` in a loop, autocommit, on
    one connection of its own (opened before the clock starts), each query's latency kept."""

    def __init__(self, url: str, accounts: int) -> None:
        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True  # no transaction left open between queries
        self.accounts = accounts
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AppLoop:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()

    def _run(self) -> None:
        pick = random.Random(7).randint
        with self.conn.cursor() as cur:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    cur.execute("SELECT id, email, display_name FROM account WHERE id = %s",
                                (pick(1, self.accounts),))  # fmt: skip
                    cur.fetchone()
                except psycopg2.Error as exc:
                    self.errors.append(exc)
                    return
                self.latencies.append(time.perf_counter() - started)


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
        elif name.startswith("P8"):
            lines.append(f"| {name} | {wall:.0f} req/s | checkout wait p99 {flushes:.1f} ms | "
                         f"p50 {conns:.1f} ms | {raw_wall:.0f} connects | | | |")  # fmt: skip
        elif name.startswith("P7"):
            lines.append(f"| {name} | {wall:.2f} s | app max {flushes:.0f} ms | app p99 "
                         f"{conns:.0f} ms | rehearsal {raw_wall:.2f} s | | | |")  # fmt: skip
        elif name.startswith("F1") and raw_wall is not None:
            lines.append(f"| {name} | {wall:.2f} s | {flushes:g} | {conns:g} | sequential "
                         f"{raw_wall:.2f} s | | | {ratio:.2f}x |")  # fmt: skip
        elif name.startswith(("F1", "F2")):
            lines.append(f"| {name} | {wall:.2f} s | {flushes:g} | {conns:g} | | | | |")
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


SECTIONS = ("p1", "connect", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "fleet")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtt-ms", type=float, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--pg-bin", type=Path, default=os.environ.get("LOCAL_PG_BIN_DIR") or None)
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where the report goes (default BENCHMARKS.md; with --only, none)",
    )
    parser.add_argument(
        "--only",
        type=lambda v: {s.strip().lower() for s in v.split(",")},
        default=None,
        help=f"sections to run, of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        default=None,
        help="P7: also measure the check of this commit (git worktree)",
    )
    args = parser.parse_args()
    unknown = sorted((args.only or set()) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; of {','.join(SECTIONS)}")
    wanted = set(SECTIONS) if args.only is None else set(args.only)
    if "p5" in wanted:
        wanted.add("p1")  # P5 reads P1's database and raw project
    if args.output is None and args.only is None:
        args.output = ROOT / "BENCHMARKS.md"
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
            for mode in modes if "p1" in wanted else ():
                bench.p1(mode)
            if "connect" in wanted:
                bench.handshakes()
            if "p2" in wanted:
                bench.p2_corpus()
            if wanted & {"p2", "p4"}:
                bench.p2_p4()
            if "p3" in wanted:
                bench.p3()
            if "p6" in wanted:
                bench.load()
            if "p5" in wanted:
                bench.p5()
            if "p7" in wanted:
                bench.p7()
            if "p8" in wanted:
                bench.p8()
            if "fleet" in wanted:
                bench.fleet()
        finally:
            bench.close()
        info = bench.info
    report = table(bench.rows, args.rtt_ms)
    if bench.notes:
        report += "\n\n" + "\n".join(f"- {line}" for line in bench.notes)
    print(report)
    if args.output is None:
        print("\n--only: not written anywhere (give --output FILE to keep it)")
        return 0
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    only = f" (only {','.join(s for s in SECTIONS if s in wanted)})" if args.only else ""
    args.output.write_text(
        f"# Benchmarks\n\n`make bench`{only} on {stamp}: {machine(info)}.\n"
        f"Medians of {args.runs} runs (P2: {max(1, args.runs // 2)}); a proxy adds "
        f"{args.rtt_ms:g} ms per round trip and counts client flushes and connections.\n\n"
        f"{report}\n\n{READING}"
    )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
