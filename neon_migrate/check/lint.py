"""Lint of the pending SQL: squawk, plus what squawk cannot see, plus reviewed waivers.

squawk (a PostgreSQL migration linter) reads each revision's rendered SQL. Our own rules
read the same SQL as a migration run will send it, each statement as PostgreSQL's parser
reads it (sql_nodes.py): a CONCURRENTLY statement inside a
transaction, schema and data changed in one transaction, a transaction without
lock_timeout (env.py bypassed), an exclusive lock on a big table, and a drop of the
harness's own history table. Dangerous findings
fail the check unless the revision carries a waiver with a reason:

    # predeploy: allow ban-drop-column -- column unused since v12, reviewed in PR 481
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlparse

from neon_migrate.check import sql_nodes
from neon_migrate.check.plan import PlannedRevision
from neon_migrate.errors import HarnessError

# squawk rules whose finding means lost data, a table rewrite or a failed deploy.
DANGEROUS = {
    "ban-drop-column": "drops a column",
    "ban-drop-table": "drops a table",
    "ban-drop-database": "drops a database",
    "ban-truncate-cascade": "truncates tables",
    "changing-column-type": "rewrites the table under an ACCESS EXCLUSIVE lock",
    "adding-field-with-default": "rewrites the table (volatile default)",
    "adding-required-field": "adds a NOT NULL column without a default: fails on a table with rows",
    "adding-not-nullable-field": "sets NOT NULL: scans the table under an ACCESS EXCLUSIVE lock",
    "renaming-column": "renames a column: code still running that reads the old name breaks",
    "renaming-table": "renames a table: code still running that reads the old name breaks",
    "big-table-exclusive-lock": "takes an ACCESS EXCLUSIVE lock on a big table",
    "concurrently-in-transaction": "cannot run inside a transaction block: the deploy would fail",
    "missing-lock-timeout": "runs without lock_timeout (env.py bypassed)",
    "drops-history-table": "drops the record of applied revisions (neon_migrate_history)",
}
WAIVER = re.compile(r"#\s*predeploy:\s*allow\s+([\w,\s-]+?)\s+--\s*(\S.{9,})$", re.MULTILINE)
# The bookkeeping every revision writes: Alembic's stamp and the harness's history row.
_VERSION_TABLE = re.compile(r"\b(?:alembic_version|neon_migrate_history)\b", re.IGNORECASE)
# A revision that drops or empties the harness's history: autogenerate from an env.py that
# does not know the table (a teammate's branch, Flask-Migrate's stock env.py) writes one.
HISTORY_TABLE = "neon_migrate_history"
KEEP_HISTORY = (
    "include_object=lambda obj, name, type_, reflected, compare_to: "
    "not (type_ == 'table' and name == 'neon_migrate_history')"
)


@dataclass(frozen=True)
class Finding:
    revision: str
    rule: str
    severity: str  # "fail" (dangerous) or "warn"
    message: str
    line: int  # in the revision's SQL
    source: str  # "squawk" or "harness"
    waived: bool = False
    waiver_reason: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def statements(sql: str) -> list[tuple[int, str]]:
    """(line, statement) pairs, comments dropped. sqlparse splits them: it knows `$$`
    bodies, comments and several statements on one line, which a regex does not."""
    found, position = [], 0
    for raw in sqlparse.split(sql):
        text = sqlparse.format(raw, strip_comments=True).strip().rstrip(";").strip()
        start = sql.find(raw, position)
        position = start + len(raw) if start >= 0 else position
        if not text:
            continue
        lines = raw.splitlines()
        skipped = next((n for n, ln in enumerate(lines)
                        if ln.strip() and not ln.strip().startswith("--")), 0)  # fmt: skip
        found.append((sql.count("\n", 0, max(start, 0)) + 1 + skipped, text))
    return found


def own_rules(
    revision: PlannedRevision, table_rows: Callable[[str], float | None], big_table_rows: int
) -> list[Finding]:
    findings: list[Finding] = []

    def add(rule: str, line: int, message: str, severity: str = "fail") -> None:
        findings.append(Finding(revision.revision, rule, severity, message, line, "harness"))

    in_transaction, timeout_set, ddl, dml = False, False, False, False
    for line, statement in statements(revision.sql):
        try:
            reading = sql_nodes.read(statement)
        except sql_nodes.Unreadable as exc:
            add("unreadable-sql", line, f"the lint cannot read this statement ({exc}); the "
                "rehearsal runs it on PostgreSQL", severity="warn")  # fmt: skip
            continue
        if reading.begins:
            in_transaction, timeout_set = True, False
            continue
        if reading.ends:
            in_transaction = False
            continue
        if reading.sets:
            timeout_set = timeout_set or reading.sets_lock_timeout
            continue
        if any(t.split(".")[-1] == HISTORY_TABLE for t in reading.drops):
            add(
                "drops-history-table",
                line,
                "drops neon_migrate_history, the record of every applied revision (status, "
                "validate): remove that op from the revision; an env.py that is not the "
                f"harness's must pass context.configure(..., {KEEP_HISTORY})",
            )
        if reading.concurrently and in_transaction:
            add(
                "concurrently-in-transaction",
                line,
                "CONCURRENTLY inside a transaction: PostgreSQL refuses it; wrap it in "
                "op.get_context().autocommit_block()",
            )
        bookkeeping = _VERSION_TABLE.search(statement)
        if in_transaction and not timeout_set and not bookkeeping:
            add(
                "missing-lock-timeout",
                line,
                "statement in a transaction that set no lock_timeout: the SQL was not "
                "produced through this project's env.py",
            )
            timeout_set = True  # once per transaction is enough
        ddl = ddl or (reading.ddl and not bookkeeping)
        dml = dml or (reading.dml and not bookkeeping)
        for table in reading.exclusive_on:
            rows = table_rows(table)
            if rows is not None and rows >= big_table_rows:
                add(
                    "big-table-exclusive-lock",
                    line,
                    f"ACCESS EXCLUSIVE lock on {table} (~{rows:,.0f} rows): reads and "
                    "writes wait for the whole statement",
                )
    if ddl and dml:
        add(
            "data-and-schema",
            1,
            "changes schema and data in one transaction: the data change holds the schema "
            "locks; split it into its own revision",
            severity="warn",
        )
    return findings


def squawk_path() -> str | None:
    beside_python = Path(sys.executable).with_name("squawk")
    return str(beside_python) if beside_python.exists() else shutil.which("squawk")


def squawk(revisions: list[PlannedRevision], config: Path | None, pg_version: str | None):
    """squawk's findings on every revision's SQL, in one run."""
    exe = squawk_path()
    if exe is None:
        raise FileNotFoundError("squawk")
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for revision in revisions:
            path = Path(folder, f"{revision.revision}.sql")
            path.write_text(revision.sql)
            files[str(path)] = revision.revision
        args = [exe, "--reporter", "json"]
        if config is not None and config.exists():
            args += ["--config", str(config)]
        if pg_version:
            args += ["--pg-version", pg_version]
        result = subprocess.run([*args, *files], capture_output=True, text=True, timeout=120)
    # 0: clean; 1: violations, listed on stdout. Anything else, or 1 with nothing listed
    # (a broken .squawk.toml), is squawk failing: never read that as "no findings".
    listed = result.stdout.strip()
    if result.returncode not in (0, 1) or (result.returncode == 1 and not listed):
        detail = " ".join((result.stderr.strip() or listed or "no output").split())[:300]
        raise HarnessError(f"squawk could not lint the SQL: {detail}",
                           "check .squawk.toml and the squawk-cli install")  # fmt: skip
    return [
        Finding(
            revision=files.get(item["file"], "?"),
            rule=item["rule_name"],
            severity="fail" if item["rule_name"] in DANGEROUS else "warn",
            message=item["message"],
            line=item["line"] + 1,  # squawk counts from 0
            source="squawk",
        )
        for item in json.loads(listed or "[]")
    ]


def waivers(revision: PlannedRevision) -> dict[str, str]:
    """rule -> reason, from `# predeploy: allow RULE[, RULE] -- REASON` in the revision file."""
    found = {}
    for rules, reason in WAIVER.findall(revision.source):
        for rule in re.split(r"[,\s]+", rules.strip()):
            if rule:
                found[rule] = reason.strip()
    return found


def apply_waivers(findings: list[Finding], revisions: list[PlannedRevision]) -> list[Finding]:
    by_revision = {r.revision: waivers(r) for r in revisions}
    result = []
    for finding in findings:
        reason = by_revision.get(finding.revision, {}).get(finding.rule)
        if reason:
            finding = Finding(**{**asdict(finding), "waived": True, "waiver_reason": reason})
        result.append(finding)
    return result
