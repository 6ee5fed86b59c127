"""The twin's databases that make a stand-in branch a real copy of its parent.

A branch on Neon is a copy-on-write copy; on the twin it is a database of its own on the
twin's PostgreSQL: `CREATE DATABASE … TEMPLATE` when no session uses the parent (fast),
else `pg_dump | pg_restore` (TEMPLATE refuses a database in use), with what neither of
them copies (the owner, per-database and per-role settings) carried over by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

# Settings whose stored value is a list of (possibly quoted) names, as pg_dump treats them.
_LIST_SETTINGS = frozenset(
    {
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "local_preload_libraries",
        "shared_preload_libraries",
    }
)


class Databases:
    """The twin's PostgreSQL as the stand-in's storage; `children` are the pg_dump and
    pg_restore processes running, killed when the server stops."""

    def __init__(self, pg: dict, bin_dir: Path) -> None:
        self.pg = pg
        self.bin_dir = bin_dir
        self.children: set[subprocess.Popen] = set()

    @contextlib.contextmanager
    def admin(self) -> Iterator[Any]:
        pg = self.pg
        conn = psycopg2.connect(
            host=pg["host"],
            port=pg["port"],
            user=pg["user"],
            password=pg["password"],
            dbname="postgres",
            connect_timeout=10,
            sslmode="prefer",
            application_name="neon-migrate-standin",
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def names(self) -> set[str]:
        with self.admin() as cur:
            cur.execute("SELECT datname FROM pg_database")
            return {row[0] for row in cur.fetchall()}

    def drop(self, database: str) -> None:
        with self.admin() as cur:  # FORCE: a branch's sessions end with it, as on Neon
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )

    def copy(self, source: str, target: str) -> str:
        """Copy `source` into a new database `target`; returns how ("template"/"pg_dump")."""
        with self.admin() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (source,),
            )
            how = "pg_dump" if cur.fetchone()[0] else "template"
            if how == "template":
                try:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(target), sql.Identifier(source)
                        )
                    )
                except psycopg2.errors.ObjectInUse:  # a session arrived in between
                    how = "pg_dump"
            if how == "pg_dump":
                cur.execute(
                    "SELECT pg_encoding_to_char(encoding), datcollate, datctype"
                    " FROM pg_database WHERE datname = %s",
                    (source,),
                )
                encoding, collate, ctype = cur.fetchone()
                cur.execute(
                    sql.SQL(
                        "CREATE DATABASE {} TEMPLATE template0 ENCODING %s"
                        " LC_COLLATE %s LC_CTYPE %s"
                    ).format(sql.Identifier(target)),
                    (encoding, collate, ctype),
                )
            self._copy_settings(cur, source, target)
        if how == "pg_dump":
            self._dump_restore(source, target)
        return how

    @staticmethod
    def _copy_settings(cur: Any, source: str, target: str) -> None:
        """What neither TEMPLATE nor pg_dump (without --create) copies: the owner and
        `ALTER DATABASE … SET` / `ALTER ROLE … IN DATABASE … SET` settings."""
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (source,))
        owner = cur.fetchone()[0]
        cur.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(target), sql.Identifier(owner)
            )
        )
        cur.execute(
            "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s"
            " LEFT JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s)",
            (source,),
        )
        for role, settings in cur.fetchall():
            for setting in settings or []:
                name, _, value = setting.partition("=")
                values = _split_list(value) if name in _LIST_SETTINGS else [value]
                literals = sql.SQL(", ").join(sql.Literal(v) for v in values)
                target_sql = sql.SQL("ALTER DATABASE {}").format(sql.Identifier(target))
                if role:
                    target_sql = sql.SQL("ALTER ROLE {} IN DATABASE {}").format(
                        sql.Identifier(role), sql.Identifier(target)
                    )
                cur.execute(
                    sql.SQL("{} SET {} TO {}").format(target_sql, sql.Identifier(name), literals)
                )

    def _dump_restore(self, source: str, target: str) -> None:
        pg = self.pg
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {
            "PGHOST": pg["host"],
            "PGPORT": str(pg["port"]),
            "PGUSER": pg["user"],
            "PGPASSWORD": pg["password"],
            "PGSSLMODE": "prefer",
            "PGCONNECT_TIMEOUT": "10",
            "LC_ALL": "C",
            "PGAPPNAME": "neon-migrate-standin",
        }
        with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as restore_err:
            dump = subprocess.Popen(
                [str(self.bin_dir / "pg_dump"), "--format=custom", "--dbname", source],
                stdout=subprocess.PIPE,
                stderr=dump_err,
                env=env,
            )
            restore = subprocess.Popen(
                [
                    str(self.bin_dir / "pg_restore"),
                    "--exit-on-error",
                    "--no-password",
                    "--dbname",
                    target,
                ],
                stdin=dump.stdout,
                stderr=restore_err,
                env=env,
            )
            dump.stdout.close()  # pg_restore alone reads it: pg_dump sees a closed pipe
            self.children |= {dump, restore}
            try:
                codes = restore.wait(timeout=600), dump.wait(timeout=600)
            except subprocess.TimeoutExpired:
                dump.kill()
                restore.kill()
                raise RuntimeError("pg_dump | pg_restore took over 600 s") from None
            finally:
                self.children -= {dump, restore}
            if any(codes):
                said = []
                for f in (dump_err, restore_err):
                    f.seek(0)
                    said += [ln for ln in f.read().decode(errors="replace").splitlines() if ln]
                raise RuntimeError(f"pg_dump | pg_restore failed: {said[-1] if said else codes}")


def _split_list(value: str) -> list[str]:
    """A stored list setting ('"$user", public') as its elements ('$user', 'public')."""
    items = re.findall(r'"(?:[^"]|"")*"|[^,\s]+', value)
    return [i[1:-1].replace('""', '"') if i.startswith('"') else i for i in items]
