"""The lint's reading of statements, by PostgreSQL's own grammar: the cases a regular
expression over the text got wrong, and each rule's input."""

from __future__ import annotations

import pytest
from helpers import ROOT

from neon_migrate.check.lint import own_rules
from neon_migrate.check.plan import PlannedRevision
from neon_migrate.check.sql_nodes import Unreadable, read


@pytest.mark.parametrize(
    "statement, expected",
    [
        ("WITH moved AS (UPDATE invoice SET status = 'void' RETURNING id) SELECT count(*) "
         "FROM moved", {"dml": True, "ddl": False}),
        ("SELECT 'ALTER TABLE account DROP COLUMN x'", {"ddl": False, "exclusive_on": ()}),
        ('ALTER TABLE ONLY "public"."Account" ADD COLUMN x int', {
            "ddl": True, "exclusive_on": ('public."Account"',)}),
        ("LOCK TABLE account IN ACCESS EXCLUSIVE MODE", {"exclusive_on": ("account",)}),
        ("LOCK TABLE account IN SHARE MODE", {"exclusive_on": ()}),
        ("REINDEX INDEX CONCURRENTLY ix_account_email", {"concurrently": True}),
        ("DROP INDEX CONCURRENTLY IF EXISTS ix_a", {"concurrently": True, "drops": ()}),
        ("CREATE INDEX ix_concurrently_named ON t (a)", {"concurrently": False, "ddl": True}),
        ("DROP TABLE IF EXISTS public.neon_migrate_history",
         {"drops": ("public.neon_migrate_history",)}),
        ("TRUNCATE a, b", {"drops": ("a", "b"), "exclusive_on": ("a", "b")}),
        ("START TRANSACTION", {"begins": True}),
        ("END", {"ends": True}),
        ("SET LOCAL lock_timeout = '5s'", {"sets": True, "sets_lock_timeout": True}),
        ("SET statement_timeout = 0", {"sets": True, "sets_lock_timeout": False}),
        ("DO $$BEGIN EXECUTE 'DROP TABLE x'; END$$", {"ddl": False, "drops": ()}),
    ],
)  # fmt: skip
def test_a_statement_is_read_as_postgresql_reads_it(statement, expected):
    reading = read(statement)
    assert {name: getattr(reading, name) for name in expected} == expected


def test_what_the_parser_cannot_read_is_said_not_guessed():
    with pytest.raises(Unreadable):
        read("ALTER TABLE account ADD COLUMN")
    revision = PlannedRevision("r9", "x", ROOT / "x.py", (
        "BEGIN;\nSET LOCAL lock_timeout = '5s';\nALTER TABLE account ADD COLUMN;\nCOMMIT;\n"
    ), "")  # fmt: skip
    findings = own_rules(revision, lambda table: None, 100_000)
    assert [(f.rule, f.severity, f.line) for f in findings] == [("unreadable-sql", "warn", 3)]


def test_a_data_change_in_a_cte_next_to_ddl_is_both():
    revision = PlannedRevision("r9", "x", ROOT / "x.py", (
        "BEGIN;\nSET LOCAL lock_timeout = '5s';\nALTER TABLE invoice ADD COLUMN voided bool;\n"
        "WITH v AS (UPDATE invoice SET voided = true RETURNING 1) SELECT count(*) FROM v;\n"
        "COMMIT;\n"
    ), "")  # fmt: skip
    findings = own_rules(revision, lambda table: None, 100_000)
    assert [f.rule for f in findings] == ["data-and-schema"]


def test_a_quoted_big_table_is_named_by_the_exclusive_lock_rule():
    revision = PlannedRevision("r9", "x", ROOT / "x.py", (
        "BEGIN;\nSET LOCAL lock_timeout = '5s';\n"
        'ALTER TABLE "public"."Account" ADD COLUMN x int;\nCOMMIT;\n'
    ), "")  # fmt: skip
    sizes = {'public."Account"': 2_000_000}  # as to_regclass() must be given it
    findings = own_rules(revision, sizes.get, 100_000)
    assert [(f.rule, f.line) for f in findings] == [("big-table-exclusive-lock", 3)]
    assert 'public."Account" (~2,000,000 rows)' in findings[0].message
