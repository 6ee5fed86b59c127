"""The check's answer where a team looks: the Markdown report, the job summary and the
annotations on GitHub Actions, the pull-request comment the workflow posts.

Real servers and real tools: the check runs against a fresh database, its Markdown is
linted by a Markdown linter and rendered by a Markdown library, the workflow is linted
by actionlint.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CLI, ROOT, alembic
from markdown_it import MarkdownIt

from neon_migrate.check.annotations import escape_data, escape_property

HEAD = "f096d6eff8ee"
HARMLESS = '''"""add a nickname"""
from alembic import op
import sqlalchemy as sa

revision = "r2"
down_revision = "f096d6eff8ee"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("account", sa.Column("nickname", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("account", "nickname")
'''
DANGEROUS = '''"""drop the project description"""
from alembic import op

revision = "r3"
down_revision = "r2"
branch_labels = None
depends_on = None


def upgrade():
    # the description moved to the docs table in r1 of the app
    op.create_index("ix_account_nickname", "account", ["nickname"])
    op.drop_column(
        "project",
        "description",
    )


def downgrade():
    raise NotImplementedError("irreversible: the column's data is gone")
'''


def run_check(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, "check", *args], env=env, capture_output=True, text=True,
                            timeout=180)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


def lint_markdown(path: Path) -> subprocess.CompletedProcess:
    # MD013 (line length) is off: a table row or a statement cannot wrap.
    return subprocess.run(
        [sys.executable, "-m", "pymarkdown", "--disable-rules", "md013", "scan", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_github_actions_summary_annotations_on_the_lines_and_markdown_that_renders(
    project, tmp_path
):
    """A project in a subfolder of its repository; a harmless revision and one that drops
    a column of a table the app has."""
    assert alembic("upgrade", "head", env=project["env"]).returncode == 0
    (tmp_path / ".git").mkdir()  # the repository's top: the project is in project/
    versions = project["root"] / "migrations" / "versions"
    (versions / "r2.py").write_text(HARMLESS)
    (versions / "r3.py").write_text(DANGEROUS)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step's summary\n")
    env = dict(project["env"], GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))

    result = run_check(env)

    assert result.returncode == 1
    assert "FAIL   r3 ban-drop-column" in result.stdout  # stdout: the format asked for
    commands = [line for line in result.stderr.splitlines() if line.startswith("::")]
    errors = [line for line in commands if line.startswith("::error ")]
    assert len(errors) == 1, commands
    assert not [line for line in commands if "(r2)" in line or "r2.py" in line], commands
    properties, message = errors[0].removeprefix("::error ").split("::", 1)
    fields = dict(part.split("=", 1) for part in properties.split(","))
    real_line = DANGEROUS.splitlines().index("    op.drop_column(") + 1
    assert fields == {
        "file": "project/migrations/versions/r3.py",
        "line": str(real_line),
        "title": "ban-drop-column (r3)",
    }
    assert message.startswith("drops a column: ")
    [warning] = [line for line in commands if line.startswith("::warning ")]
    index_line = DANGEROUS.splitlines().index('    op.create_index("ix_account_nickname", '
                                              '"account", ["nickname"])') + 1  # fmt: skip
    assert warning.startswith(
        f"::warning file=project/migrations/versions/r3.py,line={index_line},"
    )
    assert "%0ATo accept a reviewed risk" in message  # a line break, escaped

    text = summary.read_text()
    assert text.startswith("earlier step's summary\n# Pre-deploy check: NOT SAFE TO SHIP")
    report = text.split("\n", 1)[1]
    assert "**Exit 1**: a check failed" in report
    assert "### 1. r2: add a nickname" in report and "### 2. r3: drop the project" in report
    assert "File: `project/migrations/versions/r3.py`" in report
    assert "[`ban-drop-column`](https://squawkhq.com/docs/ban-drop-column)" in report
    assert f", line {real_line}: drops a column" in report
    assert "ALTER TABLE project DROP COLUMN description" in report
    assert "Not rehearsed (skip): not run on production: lint found" in report
    assert project["env"]["DATABASE_URL"].split("@")[0].split(":")[-1] not in report
    assert "\033[" not in report and "\033[" not in result.stdout

    linted = tmp_path / "report.md"
    linted.write_text(report)
    lint = lint_markdown(linted)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    html = MarkdownIt("commonmark").enable("table").render(report)
    table = re.search(r"<table>.*?</table>", html, re.DOTALL)
    assert table and "<th>Check</th>" in table.group(0)
    assert re.search(r"<td>lint</td>\s*<td><strong>FAIL</strong></td>", table.group(0))
    assert '<a href="https://squawkhq.com/docs/ban-drop-column">' in html


def test_markdown_on_stdout_and_the_format_flags(project):
    result = run_check(project["env"], "--format", "markdown", "--only", "scripts")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Pre-deploy check: SAFE TO SHIP\n\n**Exit 0**")
    assert "| scripts | PASS |" in result.stdout
    assert not [line for line in result.stderr.splitlines() if line.startswith("::")]
    clash = run_check(project["env"], "--json", "--format", "markdown")
    assert clash.returncode == 2 and "--json and --format markdown disagree" in clash.stderr
    short = run_check(project["env"], "--json", "--only", "scripts")
    assert short.stdout.lstrip().startswith("{") and '"schema"' in short.stdout


def test_a_terminal_keeps_its_colours(project):
    """Colour codes only where a person reads a terminal (the table); never in Markdown."""
    outputs = {}
    for fmt in ("text", "markdown"):
        leader, follower = pty.openpty()
        process = subprocess.Popen([*CLI, "check", "--format", fmt, "--only", "scripts"],
                                   env=project["env"], stdout=follower,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=120)
        os.close(leader)
        outputs[fmt] = b"".join(chunks).decode()
    assert "\033[32mPASS" in outputs["text"]
    assert "SAFE TO SHIP" in outputs["markdown"] and "\033[" not in outputs["markdown"]


def test_workflow_command_values_are_escaped():
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a,b:c%\n") == "a%2Cb%3Ac%25%0A"


def test_the_workflow_comment_step_passes_actionlint(tmp_path):
    from neon_migrate.commands.workflow import render

    project = tmp_path / "repo" / "service"
    project.mkdir(parents=True)
    (tmp_path / "repo" / ".git").mkdir()
    template = (ROOT / "neon_migrate" / "templates" / "database.yml").read_text()
    path, text = render(project, template, [])
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert "pull-requests: write" in text and "gh api" in text
    actionlint = Path(sys.executable).with_name("actionlint")
    result = subprocess.run([str(actionlint), "-no-color", str(path)], capture_output=True,
                            text=True, cwd=tmp_path / "repo", timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


TRACED = """from alembic import op

revision = "t1"
down_revision = None


def drop(table):
    op.drop_table(table)


def upgrade():
    for name in ("a", "b"):
        op.execute(f"ALTER TABLE {name} ADD COLUMN c int")
    drop("old_one")
    op.execute("UPDATE a SET c = 1; UPDATE b SET c = 2")
"""


def test_statements_are_traced_to_the_line_that_emitted_them(tmp_path):
    """A loop, a helper in the file, two statements in one op.execute; what env.py adds
    around a revision (BEGIN, SET LOCAL, the stamp) is found in no line."""
    from neon_migrate.check.origins import line_of, source_lines

    path = tmp_path / "t1.py"
    path.write_text(TRACED)
    sql = (
        "BEGIN;\n\nSET LOCAL lock_timeout = '5s';\n\nALTER TABLE a ADD COLUMN c int;\n\n"
        "ALTER TABLE b ADD COLUMN c int;\n\nDROP TABLE old_one;\n\nUPDATE a SET c = 1;\n\n"
        "UPDATE b SET c = 2;\n\nINSERT INTO alembic_version (version_num) VALUES ('t1');\n\n"
        "COMMIT;\n"
    )
    lines = source_lines(sql, path)
    source = TRACED.splitlines()
    loop = source.index('        op.execute(f"ALTER TABLE {name} ADD COLUMN c int")') + 1
    helper = source.index("    op.drop_table(table)") + 1
    both = source.index('    op.execute("UPDATE a SET c = 1; UPDATE b SET c = 2")') + 1
    assert lines == {1: None, 3: None, 5: loop, 7: loop, 9: helper, 11: both, 13: both,
                     15: None, 17: None}  # fmt: skip
    assert line_of(9, lines) == helper and line_of(4, lines) is None


@pytest.mark.slow
def test_locks_measured_on_the_branch_are_in_the_report(project, db_url, pg_server, tmp_path):
    """With a branch to rehearse on (the local stand-in of Neon's API), each revision's
    locks as measured there: the lock, the table, how long, what of the app it blocks."""
    from helpers import add_revision, standin_server

    from neon_migrate.twin.local import bundled_bin_dir
    from neon_migrate.twin.standin import start_standin, stop_standin

    assert alembic("upgrade", "head", env=project["env"]).returncode == 0
    add_revision(project, "r2", HEAD, "LOCK TABLE account IN ACCESS EXCLUSIVE MODE",
                 "SELECT pg_sleep(0.6)")  # fmt: skip
    server = standin_server(pg_server, db_url.rsplit("/", 1)[1])
    bin_dir = Path(os.environ.get("LOCAL_PG_BIN_DIR") or bundled_bin_dir())
    info = start_standin(tmp_path / "api", server, bin_dir, reap_interval_s=0.5)
    env = dict(project["env"], NEON_API_KEY=info.api_key, NEON_PROJECT_ID=info.project_id,
               NEON_API_URL=info.base_url)  # fmt: skip
    try:
        result = run_check(env, "--format", "markdown", "--skip", "lint")
    finally:
        stop_standin(tmp_path / "api")
    report = result.stdout
    assert "Rehearsed on Neon branch `neon-migrate-rehearsal-" in report, report
    row = re.search(r"^\| ACCESS EXCLUSIVE \| account \| ([\d.]+) (ms|s) \| reads and writes "
                    r"\| yes \|$", report, re.MULTILINE)  # fmt: skip
    assert row, report
    seconds = float(row.group(1)) / (1000 if row.group(2) == "ms" else 1)
    assert 0.5 <= seconds < 5, report
    assert "Not rehearsed" not in report


def test_a_check_that_cannot_run_says_so_in_the_summary_too(project, tmp_path):
    summary = tmp_path / "summary.md"
    env = dict(project["env"], GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    result = run_check(env, "--only", "nosuch")
    assert result.returncode == 2
    assert "::error title=neon-migrate check did not run::unknown check id(s): nosuch" in (
        result.stderr
    )
    text = summary.read_text()
    assert text.startswith("# Pre-deploy check: DID NOT RUN\n\n**Exit 2**: configuration")
    assert "error: unknown check id(s): nosuch" in text


def test_a_finding_with_no_line_goes_on_the_file_a_waived_one_nowhere_errors_first():
    from neon_migrate.check.annotations import annotations

    finding = {"revision": "r2", "rule": "data-and-schema", "severity": "warn", "line": 1,
               "message": "changes schema and data", "waived": False,
               "path": "migrations/versions/r2.py", "file_line": None}  # fmt: skip
    waived = dict(finding, rule="ban-drop-column", severity="fail", waived=True, file_line=9)
    dangerous = dict(waived, waived=False, message="drop")
    assert annotations({"lint": [finding, waived, dangerous], "future_key": {}}) == [
        "::error file=migrations/versions/r2.py,line=9,title=ban-drop-column (r2)::drops a "
        "column: drop%0ATo accept a reviewed risk, add to the revision file: # predeploy: "
        "allow ban-drop-column -- <reason>",  # the errors first: GitHub shows only a few
        "::warning file=migrations/versions/r2.py,title=data-and-schema (r2)::changes schema "
        "and data",
    ]


@pytest.mark.slow
def test_a_long_report_drops_detail_before_it_is_cut(project, tmp_path):
    """GitHub refuses a comment over 65,536 characters: a report past its limit first drops
    the warnings' statements, then counts the warnings, and only then is cut; each step
    is still Markdown a linter passes, and the dangerous finding stays to the last."""
    import json

    from neon_migrate.check.markdown import render

    assert alembic("upgrade", "head", env=project["env"]).returncode == 0
    versions = project["root"] / "migrations" / "versions"
    (versions / "r2.py").write_text(HARMLESS)
    (versions / "r3.py").write_text(DANGEROUS)
    document = json.loads(run_check(project["env"], "--json", "--only", "lint").stdout)
    full = render(document)
    assert "CREATE INDEX ix_account_nickname" in full
    shorter = render(document, limit=len(full) - 1)
    assert "CREATE INDEX ix_account_nickname" not in shorter
    assert "ALTER TABLE project DROP COLUMN description" in shorter
    assert "require-concurrent-index-creation" in shorter
    counted = render(document, limit=len(shorter) - 1)
    assert "counted, not listed: `require-concurrent-index-creation` x1):" in counted
    assert "ALTER TABLE project DROP COLUMN description" in counted
    cut = render(document, limit=len(counted) - 1)
    assert len(cut) < len(counted) and cut.endswith("`--json` has it all._\n")
    for number, text in enumerate((full, shorter, counted, cut)):
        path = tmp_path / f"report{number}.md"
        path.write_text(text)
        lint = lint_markdown(path)
        assert lint.returncode == 0, lint.stdout + text


def test_past_ten_annotations_of_a_kind_the_tenth_says_how_many_more():
    from neon_migrate.check.annotations import annotations

    findings = [{"revision": "r2", "rule": f"rule-{n}", "severity": "warn", "message": "m",
                 "path": "v/r2.py", "file_line": n} for n in range(1, 13)]  # fmt: skip
    commands = annotations({"lint": findings})
    assert len(commands) == 10 and commands[8].startswith("::warning file=v/r2.py,line=9,")
    assert commands[9].startswith("::warning title=3 more lint warnings::GitHub shows 10")


def test_a_project_with_a_targets_file_gets_the_fleet_workflow(tmp_path):
    """init writes the rollout as a workflow: the canary's shard first, then a matrix; each
    variable the targets file names comes from the secret of that name; actionlint passes."""
    repo = tmp_path / "repo"
    project = repo / "service"
    project.mkdir(parents=True)
    (repo / ".git").mkdir()
    (project / "fleet.toml").write_text(
        '[[target]]\nname = "acme"\nurl_env = "ACME_DIRECT"\npooled_url_env = "ACME_POOLED"\n\n'
        '[[target]]\nname = "globex"\nurl_env = "GLOBEX_DIRECT"\n'
    )
    result = subprocess.run([*CLI, "init", "--models", "app.models:metadata"], cwd=project,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "init: wrote ../.github/workflows/fleet.yml" in result.stdout, result.stdout
    path = repo / ".github" / "workflows" / "fleet.yml"
    text = path.read_text()
    for name in ("ACME_DIRECT", "ACME_POOLED", "GLOBEX_DIRECT"):
        assert f"{name}: ${{{{ secrets.{name} }}}}" in text
    assert "--shard 1/4" in text and "needs: canary" in text
    assert "working-directory: service" in text and "TARGETS_ENV" not in text
    actionlint = Path(sys.executable).with_name("actionlint")
    lint = subprocess.run([str(actionlint), "-no-color", str(path)], capture_output=True,
                          text=True, cwd=repo, timeout=120)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    again = subprocess.run([*CLI, "init", "--models", "app.models:metadata"], cwd=project,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "init: kept ../.github/workflows/fleet.yml (as init writes it)" in again.stdout
    assert path.read_text() == text
