"""The pre-deploy check as Markdown: for a job summary, a pull-request comment, a terminal.

Rendered from the JSON document (`report.as_json`), the contract other tools read, so it
says nothing the JSON does not, and a key added there later is simply not shown until
this file learns it. The verdict comes first, then the checks, then what each pending
revision would do. Plain text where Markdown is not rendered reads as well: no HTML.
"""

from __future__ import annotations

from collections import Counter

from neon_migrate.check.locks import WORDS
from neon_migrate.connection.masking import mask_text

MEANING = {
    0: "every check passed (warnings allowed)",
    1: "a check failed (the database is reachable)",
    2: "configuration or usage error",
    3: "a database endpoint is unreachable",
}
SQUAWK_DOCS = "https://squawkhq.com/docs/{rule}"
PG_DOCS = "https://www.postgresql.org/docs/current/"
# Our own rules are about PostgreSQL's behaviour: its documentation is theirs.
OWN_RULE_DOCS = {
    "concurrently-in-transaction": PG_DOCS + "sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY",
    "missing-lock-timeout": PG_DOCS + "runtime-config-client.html#GUC-LOCK-TIMEOUT",
    "big-table-exclusive-lock": PG_DOCS + "explicit-locking.html#LOCKING-TABLES",
    "data-and-schema": PG_DOCS + "explicit-locking.html#LOCKING-TABLES",
}
STATEMENT_CHARS = 400
# GitHub refuses a pull-request comment over 65,536 characters: a long report drops detail
# (first the statements of warnings, then the warnings themselves, counted instead) and,
# only if that is not enough, is cut; the JSON always has everything.
LIMIT = 60_000
FULL, FAILING_STATEMENTS, FAILING_FINDINGS = range(3)


def render(document: dict, limit: int = LIMIT) -> str:
    """The report as Markdown, ending in a newline, at most `limit` characters."""
    for detail in (FULL, FAILING_STATEMENTS, FAILING_FINDINGS):
        text = _render(document, detail)
        if len(text) <= limit:
            return text
    note = (
        "\n\n_The report was cut here: it is longer than a comment may be. `--json` has it all._\n"
    )
    cut = text.rfind("\n\n### ", 0, limit - len(note))
    return text[: cut if cut > 0 else limit - len(note)].rstrip() + note


def _render(document: dict, detail: int) -> str:
    code = document.get("exit_code", 1)
    checks = document.get("checks") or []
    failed = [c.get("id", "?") for c in checks if c.get("status") == "fail"]
    verdict = "SAFE TO SHIP" if code == 0 else "NOT SAFE TO SHIP"
    parts = [f"# Pre-deploy check: {verdict}"]
    said = f"**Exit {code}**: {MEANING.get(code, 'unknown')}."
    if failed:
        said += f" Failed: {', '.join(failed)}."
    parts.append(said)
    target = document.get("target") or []
    if target:
        parts.append("\n".join(f"- target: {_inline(line)}" for line in target))
    parts.append(_checks_table(checks))
    pending = (document.get("plan") or {}).get("pending") or []
    if pending:
        parts.append(f"## Pending revisions ({len(pending)}, in the order they apply)")
        rehearsal = next((c for c in checks if c.get("id") == "rehearsal"), None)
        plan = next((c for c in checks if c.get("id") == "plan"), None)
        for number, revision in enumerate(pending, 1):
            parts.extend(_revision(number, revision, document, rehearsal, plan, detail))
    else:
        parts.append("Nothing pending: the database is at the scripts' head.")
    return mask_text("\n\n".join(parts)) + "\n"


def _checks_table(checks: list[dict]) -> str:
    rows = ["| Check | Status | Time | Result |", "| --- | --- | ---: | --- |"]
    for c in checks:
        status = str(c.get("status", "?")).upper()
        if status in ("FAIL", "WARN"):
            status = f"**{status}**"
        ms = float(c.get("duration_ms") or 0)
        took = f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"
        cells = [_cell(c.get("id", "?")), status, took, _cell(c.get("message", ""))]
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def _revision(
    number: int, revision: dict, document: dict, rehearsal, plan, detail: int
) -> list[str]:
    rev = revision.get("revision", "?")
    parts = [f"### {number}. {_inline(rev)}: {_inline(revision.get('message') or '(no message)')}"]
    parts.append(f"File: `{revision.get('path') or revision.get('file') or '?'}`")
    parts.append(_rehearsed(rev, rehearsal, plan))
    holds = [h for h in _details(rehearsal).get("locks") or [] if h.get("revision") == rev]
    if _details(rehearsal).get("mode") == "branch":
        none = "Locks on the branch: none seen (sampled every 10 ms; shorter holds slip through)."
        parts.append(_locks(holds) if holds else none)
    findings = [f for f in document.get("lint") or [] if f.get("revision") == rev]
    sql = revision.get("sql") or ""
    parts.append(_findings(findings, sql, detail) if findings else "Lint: nothing found.")
    return parts


def _details(check: dict | None) -> dict:
    return (check or {}).get("details") or {}


def _rehearsed(rev: str, rehearsal: dict | None, plan: dict | None) -> str:
    """Whether this revision was rehearsed, where, and if not, why."""
    online = (_details(plan).get("online_only") or {}).get(rev)
    if online:
        return f"Not rendered as SQL, so not linted: {_inline(online)} (`make migrate` runs it)."
    if rehearsal is None:
        return "Not rehearsed: the rehearsal check was not selected."
    details = _details(rehearsal)
    mode = details.get("mode")
    if mode == "branch" and rev in (details.get("rehearsed") or []):
        took = (details.get("durations_ms") or {}).get(rev)
        ms = f" in {took:.0f} ms" if isinstance(took, int | float) else ""
        branch = details.get("branch", "?")
        return f"Rehearsed on Neon branch `{branch}`{ms}: the real upgrade, locks measured."
    if mode == "transaction" and rev in (details.get("rehearsed") or []):
        return ("Rehearsed on production in one transaction, rolled back (locks not "
                "measured: that needs a branch).")  # fmt: skip
    if mode == "transaction" and rev in (details.get("skipped") or []):
        return f"Not rehearsed: {_inline(details.get('why_skipped') or 'skipped')}."
    status = rehearsal.get("status")
    if status == "pass":  # passed with nothing pending to it: not this revision's run
        return "Rehearsal: passed."
    return f"Not rehearsed ({status}): {_inline(rehearsal.get('message', ''))}"


def _locks(holds: list[dict]) -> str:
    rows = [
        "Locks held on the branch:",
        "",
        "| Lock | Table | Held | Blocks the app's | Table existed before |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for h in holds:
        seconds = float(h.get("seconds") or 0)
        held = f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
        mode = WORDS.get(h.get("mode", ""), h.get("mode", "?"))
        blocks = h.get("blocks") or "nothing"
        existed = "yes" if h.get("existing_table") else "no (new)"
        cells = [_cell(mode), _cell(h.get("table", "?")), held, _cell(blocks), existed]
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def _findings(findings: list[dict], sql: str, detail: int = FULL) -> str:
    from neon_migrate.check.lint import DANGEROUS, statements  # sqlparse: the [check] extra

    starts = statements(sql)
    items = ["Lint findings:", ""]
    failing = [f for f in findings if f.get("severity") == "fail" and not f.get("waived")]
    if detail == FAILING_FINDINGS and len(failing) < len(findings):
        rules = Counter(str(f.get("rule", "?")) for f in findings if f not in failing)
        counted = ", ".join(f"`{rule}` x{n}" for rule, n in sorted(rules.items()))
        items[0] = f"Lint findings (warnings and waived ones counted, not listed: {counted}):"
        findings = failing
    for f in findings:
        rule = f.get("rule", "?")
        severity = "waived" if f.get("waived") else f.get("severity", "?")
        link = _rule_link(rule, f.get("source"))
        where = f"line {f['file_line']}" if f.get("file_line") else f"SQL line {f.get('line', '?')}"
        what = _inline(f.get("message", ""))
        danger = DANGEROUS.get(rule)
        if danger and danger.lower() not in what.lower():
            what = f"{danger}. {what}"
        if f.get("waived"):
            what += f" Waived: {_inline(f.get('waiver_reason') or '')}"
        items.append(f"- **{severity.upper()}** {link}, {where}: {what}")
        statement = _statement_at(starts, f.get("line"))
        if statement and (detail == FULL or f in failing):
            code = [f"  {line}" for line in statement.splitlines()]
            items.extend(["", "  ```sql", *code, "  ```", ""])
    if items[-1] == "":
        items.pop()
    return "\n".join(items)


def _rule_link(rule: str, source: str | None) -> str:
    url = SQUAWK_DOCS.format(rule=rule) if source == "squawk" else OWN_RULE_DOCS.get(rule)
    return f"[`{rule}`]({url})" if url else f"`{rule}`"


def _statement_at(starts: list[tuple[int, str]], line) -> str | None:
    """The statement the finding's SQL line falls in, shortened for a comment."""
    if not isinstance(line, int):
        return None
    found = [text for start, text in starts if start <= line]
    if not found:
        return None
    text = found[-1].replace("\t", "    ").replace("```", "` ` `")
    if len(text) > STATEMENT_CHARS:
        text = text[:STATEMENT_CHARS].rstrip() + " …"
    return text


def _inline(text) -> str:
    """One line of prose: no line breaks, nothing Markdown would read as markup."""
    return " ".join(str(text).split()).replace("<", "\\<")


def _cell(text) -> str:
    return _inline(text).replace("|", "\\|")
