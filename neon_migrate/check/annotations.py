"""The check's answer on GitHub Actions: the job summary and annotations on the diff.

Under GITHUB_ACTIONS=true the Markdown report is appended to $GITHUB_STEP_SUMMARY, and
each lint finding not waived becomes a workflow command (`::error` for a dangerous one,
`::warning` for the rest) on the revision file and the line of the call that emitted it
(see origins.py), so it shows on the pull request's diff; the file alone where no line
was found. The commands go to stderr, which the runner reads as it reads stdout, so
stdout stays the report a step may pipe into a file (`--json | tee predeploy.json`).
"""

from __future__ import annotations

import os
import sys

PER_STEP = 10  # annotations of one kind GitHub shows for a step


def on_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF would end or garble the command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property's value: also `:` (ends the properties) and `,` (separates them)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def append_summary(markdown: str) -> None:
    """Add to the job's summary page ($GITHUB_STEP_SUMMARY; steps append, none replaces)."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as file:
            file.write(markdown)


def annotations(document: dict) -> list[str]:
    """One workflow command per finding that is not waived, the errors first. GitHub shows
    only the first ten annotations of each kind a step writes: past that, nine and one
    that says how many more there are and where they are."""
    from neon_migrate.check.lint import DANGEROUS

    commands = []
    for finding in document.get("lint") or []:
        if finding.get("waived"):
            continue
        level = "error" if finding.get("severity") == "fail" else "warning"
        rule = str(finding.get("rule", "?"))
        properties = []
        if finding.get("path"):
            properties.append(f"file={escape_property(finding['path'])}")
            if finding.get("file_line"):
                properties.append(f"line={int(finding['file_line'])}")
        title = f"{rule} ({finding.get('revision', '?')})"
        properties.append(f"title={escape_property(title)}")
        message = str(finding.get("message", ""))
        if rule in DANGEROUS:
            message = f"{DANGEROUS[rule]}: {message}"
        if finding.get("severity") == "fail":
            message += (
                "\nTo accept a reviewed risk, add to the revision file: "
                f"# predeploy: allow {rule} -- <reason>"
            )
        commands.append(f"::{level} {','.join(properties)}::{escape_data(message)}")
    result = []
    for level in ("error", "warning"):
        of_level = [c for c in commands if c.startswith(f"::{level} ")]
        if len(of_level) > PER_STEP:
            more = len(of_level) - PER_STEP + 1
            title = escape_property(f"{more} more lint {level}s")
            said = (
                f"::{level} title={title}::GitHub shows {PER_STEP} annotations of a kind per "
                "step: the job's summary and `neon-migrate check --json` list them all"
            )
            of_level = [*of_level[: PER_STEP - 1], said]
        result.extend(of_level)
    return result


def publish(document: dict, markdown: str) -> None:
    """On GitHub Actions: the summary appended, the annotations written. Elsewhere nothing."""
    if not on_github_actions():
        return
    append_summary(markdown)
    for command in annotations(document):
        print(command, file=sys.stderr, flush=True)


def publish_failure(message: str, code: int) -> None:
    """The check stopped before any report (a usage or configuration error): on GitHub
    Actions that too goes to the summary and becomes an annotation, instead of a job that
    is red with an empty summary."""
    if not on_github_actions():
        return
    from neon_migrate.check.markdown import MEANING
    from neon_migrate.connection.masking import mask_text

    message = mask_text(message).replace("```", "` ` `")
    append_summary(
        f"# Pre-deploy check: DID NOT RUN\n\n**Exit {code}**: "
        f"{MEANING.get(code, 'stopped')}.\n\n```text\nerror: {message}\n```\n"
    )
    title = escape_property("neon-migrate check did not run")
    print(f"::error title={title}::{escape_data(message)}", file=sys.stderr, flush=True)
