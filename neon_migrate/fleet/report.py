"""What a fleet run says: a line on stderr as each target starts and ends (with a running
count), then one row per target on stdout, or with --json one document, or with
--format markdown a report (markdown.py; on GitHub Actions also the job summary).

Outcomes: applied, at-head (nothing to do), failed (a revision, a refusal, a signal, a
missing variable), not-run (never started: a failure or a signal stopped the run first),
unreachable (its database did not answer within the connect timeouts and retries).
The exit code is 0 only if every selected target ended at the wanted revision.
"""

from __future__ import annotations

import signal
from typing import Any

from neon_migrate.commands.output import note, out, out_json

OUTCOMES = ("applied", "at-head", "failed", "not-run", "unreachable")
STATES = ("at-head", "behind", "ahead", "unknown-revision", "unreachable")


class Progress:
    """The runner's callbacks: one line per start and per end, on stderr."""

    def __init__(self, total: int, verbose: bool = False) -> None:
        self.total, self.done, self.verbose = total, 0, verbose

    def started(self, name: str, canary: bool) -> None:
        note(f"fleet: start {name}{' (canary)' if canary else ''}")

    def ended(self, name: str, result: dict[str, Any]) -> None:
        self.done += 1
        outcome = result["outcome"]
        before, after = result.get("from"), result.get("to")
        span = ""
        if before is not None:
            span = f" {before} -> {after}" if after and after != before else f" at {before}"
        error = f": {result['error']}" if result.get("error") else ""
        note(
            f"fleet: [{self.done}/{self.total}] {name} {outcome}{span} "
            f"({result.get('duration_ms', 0)} ms){error}"
        )
        if self.verbose and result.get("log"):
            for line in result["log"].rstrip().splitlines():
                note(f"  {name} | {line}")


def entry(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """One target's JSON entry."""
    outcome = result["outcome"]
    row = {
        "name": name,
        "outcome": outcome,
        "from": result.get("from"),
        "to": result.get("to"),
        "duration_ms": result.get("duration_ms"),
        "error": result.get("error"),
    }
    if "pending" in result:
        row["pending"] = result["pending"]
    return row


def exit_code(rows: list[dict], signals: list[int], dry_run: bool = False) -> int:
    """128 + the signal; 1 if a target failed or (for real) did not run; 3 if the only
    problem is unreachable targets; else 0. A dry run runs nothing: not-run is its answer."""
    if signals:
        return 128 + signals[0]
    outcomes = {row["outcome"] for row in rows}
    if "failed" in outcomes or ("not-run" in outcomes and not dry_run):
        return 1
    return 3 if "unreachable" in outcomes else 0


def migrate_report(
    rows: list[dict],
    header: dict[str, Any],
    signals: list[int],
    stopped: str | None,
    ms: float,
    fmt: str,
    dry_run: bool,
) -> int:
    code = exit_code(rows, signals, dry_run)
    counts = {outcome: sum(r["outcome"] == outcome for r in rows) for outcome in OUTCOMES}
    summary = {
        "selected": len(rows),
        **counts,
        "duration_ms": round(ms),
        "stopped": stopped,
        "signal": signal.Signals(signals[0]).name if signals else None,
    }
    said = ", ".join(f"{n} {o.replace('-', ' ')}" for o, n in counts.items())
    note(
        f"fleet: {'dry run: ' if dry_run else ''}{said} (of {len(rows)}; {ms / 1000:.1f} s)"
        + (f"; stopped: {stopped}" if stopped else "")
    )
    document = {
        "command": "fleet migrate",
        "ok": code == 0,
        "exit_code": code,
        **header,
        "dry_run": dry_run,
        "targets": rows,
        "summary": summary,
    }
    if _other_formats(document, fmt):
        return code
    width = max([len(r["name"]) for r in rows] + [6])
    out(f"{'TARGET':<{width}}  {'OUTCOME':<11}  {'FROM':<14}  {'TO':<14}  {'TIME':>8}  ERROR")
    for r in rows:
        time_text = f"{r['duration_ms']} ms" if r["duration_ms"] is not None else ""
        detail = r["error"] or (
            f"would apply {', '.join(r['pending'])}" if r.get("pending") else ""
        )
        out(
            f"{r['name']:<{width}}  {r['outcome']:<11}  {r['from'] or '':<14}  "
            f"{r['to'] or '':<14}  {time_text:>8}  {detail}".rstrip()
        )
    return code


def status_row(name: str, result: dict[str, Any], scripts, heads: tuple[str, ...]) -> dict:
    """A target's state: at-head, behind (by n), ahead (a revision the scripts do not
    have: newer code migrated it), unknown-revision (it answered, but its revision could
    not be read: a missing variable, no rights), unreachable."""
    row = {
        "name": name,
        "state": None,
        "revision": result.get("from"),
        "behind": None,
        "error": result.get("error"),
    }
    if result["outcome"] == "unreachable":
        row["state"] = "unreachable"
    elif result["outcome"] != "read":
        row["state"] = "unknown-revision"
    else:
        current = tuple(result["revisions"])
        if current == tuple(sorted(heads)):
            row["state"] = "at-head"
        elif any(r not in scripts.known for r in current):
            row["state"] = "ahead"
        else:
            row["state"] = "behind"
            row["behind"] = len(scripts.pending(current, heads))
    return row


def status_report(rows: list[dict], header: dict[str, Any], fmt: str) -> int:
    states = {row["state"] for row in rows}
    code = 0 if states <= {"at-head"} else 1
    if states - {"at-head"} == {"unreachable"}:
        code = 3
    counts = {state: sum(r["state"] == state for r in rows) for state in STATES}
    document = {
        "command": "fleet status",
        "ok": code == 0,
        "exit_code": code,
        **header,
        "targets": rows,
        "summary": {"selected": len(rows), **counts},
    }
    if _other_formats(document, fmt):
        return code
    width = max([len(r["name"]) for r in rows] + [6])
    out(f"{'TARGET':<{width}}  {'STATE':<16}  {'REVISION':<14}  DETAIL")
    for r in rows:
        state = f"behind by {r['behind']}" if r["state"] == "behind" else r["state"]
        out(
            f"{r['name']:<{width}}  {state:<16}  {r['revision'] or '':<14}  "
            f"{r['error'] or ''}".rstrip()
        )
    return code


def _other_formats(document: dict, fmt: str) -> bool:
    """Write the JSON or Markdown form (True: done) and, on GitHub Actions, the job summary
    and the annotations whatever the format; False: the caller writes the table."""
    from neon_migrate.fleet import markdown

    wanted = fmt == "markdown" or markdown.on_github_actions()
    report = markdown.render(document) if wanted else ""
    if fmt == "json":
        out_json(document)
    elif fmt == "markdown":
        out(report.rstrip("\n"))
    markdown.publish(document, report)
    return fmt != "text"
