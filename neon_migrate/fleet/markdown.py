"""A fleet run as Markdown (for a job summary, a pull-request comment, a terminal), and on
GitHub Actions the job summary and one `::error` per target that did not get there.

Rendered from the JSON document (report.py), as the check's report is, with the check's
escaping (check/markdown.py) and summary writing (check/annotations.py): the verdict and
what the exit code means first, then a row per target, then the counts. Target errors
are masked where they are made; the whole text is masked once more on the way out.
"""

from __future__ import annotations

import sys

from neon_migrate.check.annotations import (
    append_summary,
    escape_data,
    escape_property,
    on_github_actions,
)
from neon_migrate.check.markdown import _cell, _inline
from neon_migrate.connection.urls import mask_text

MIGRATE_MEANING = {
    0: "every selected target ended at the wanted revision",
    1: "a target failed or did not run",
    3: "the only problem is unreachable targets",
}
STATUS_MEANING = {
    0: "every selected target is at head",
    1: "a target is not at head (behind, ahead, or its revision unknown)",
    3: "the only problem is unreachable targets",
}
SIGNALLED = "stopped by a signal: no new target started"
# A target whose outcome (migrate) or state (status) is one of these gets an ::error.
FAILED = {"failed", "unreachable", "unknown-revision"}


def render(document: dict) -> str:
    """The report as Markdown, ending in a newline."""
    status = document.get("command") == "fleet status"
    code = document.get("exit_code", 1)
    meaning = (STATUS_MEANING if status else MIGRATE_MEANING).get(code, SIGNALLED)
    if status:
        verdict = "ALL AT HEAD" if code == 0 else "NOT ALL AT HEAD"
    elif document.get("dry_run"):
        verdict = "DRY RUN" + ("" if code == 0 else ", PROBLEMS FOUND")
    else:
        verdict = "DONE" if code == 0 else "NOT DONE"
    title = "Fleet status" if status else "Fleet migrate"
    parts = [f"# {title}: {verdict}", f"**Exit {code}**: {meaning}."]
    facts = [f"targets file: `{_inline(document.get('targets_file', '?'))}`"]
    facts.append(f"shard {document.get('shard', '?')} of a fleet of {document.get('fleet_size')}")
    if document.get("wanted"):
        facts.append(f"wanted: `{_inline(document['wanted'])}`")
    parts.append("\n".join(f"- {fact}" for fact in facts))
    parts.append(_status_table(document) if status else _migrate_table(document))
    summary = document.get("summary") or {}
    counts = [
        f"{n} {key.replace('-', ' ')}"
        for key, n in summary.items()
        if key not in ("selected", "duration_ms", "stopped", "signal")
    ]
    said = f"**Summary:** {', '.join(counts)} (of {summary.get('selected', 0)}"
    if summary.get("duration_ms") is not None:
        said += f"; {summary['duration_ms'] / 1000:.1f} s"
    said += ")."
    if summary.get("stopped"):
        said += f" Stopped: {_inline(summary['stopped'])}."
    if summary.get("signal"):
        said += f" Signal: {summary['signal']}."
    parts.append(said)
    return mask_text("\n\n".join(parts)) + "\n"


def _migrate_table(document: dict) -> str:
    rows = [
        "| Target | Outcome | From | To | Time | Error |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for t in document.get("targets") or []:
        outcome = str(t.get("outcome", "?"))
        if outcome in FAILED:
            outcome = f"**{outcome}**"
        ms = t.get("duration_ms")
        took = "" if ms is None else f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"
        detail = t.get("error") or ""
        if not detail and t.get("pending"):
            detail = f"would apply {', '.join(t['pending'])}"
        cells = [t.get("name", "?"), outcome, t.get("from") or "", t.get("to") or "", took]
        rows.append(f"| {' | '.join(_cell(c) for c in cells)} | {_cell(detail)} |")
    return "\n".join(rows)


def _status_table(document: dict) -> str:
    rows = ["| Target | State | Revision | Error |", "| --- | --- | --- | --- |"]
    for t in document.get("targets") or []:
        state = str(t.get("state", "?"))
        if state == "behind":
            state = f"behind by {t.get('behind')}"
        if state in FAILED:
            state = f"**{state}**"
        cells = [t.get("name", "?"), state, t.get("revision") or "", t.get("error") or ""]
        rows.append(f"| {' | '.join(_cell(c) for c in cells)} |")
    return "\n".join(rows)


def annotations(document: dict) -> list[str]:
    """One `::error` per target that failed, was unreachable or could not be read: titled
    with the target's name, no file (a target is a database, not a line of code)."""
    commands = []
    for t in document.get("targets") or []:
        what = t.get("outcome") or t.get("state")
        if what not in FAILED:
            continue
        title = escape_property(str(t.get("name", "?")))
        message = mask_text(f"{what}: {t['error']}" if t.get("error") else str(what))
        commands.append(f"::error title={title}::{escape_data(message)}")
    return commands


def publish(document: dict, markdown: str) -> None:
    """On GitHub Actions: the summary appended, the errors written (on stderr, so stdout
    stays the report). Elsewhere nothing."""
    if not on_github_actions():
        return
    append_summary(markdown)
    for command in annotations(document):
        print(command, file=sys.stderr, flush=True)
