"""The README's Fleets section: its targets files parse, and the CI examples run commands
that exist, with shards that cover the fleet and the canary's shard first."""

from __future__ import annotations

import re
import shlex

from helpers import ROOT

from neon_migrate.cli import parser
from neon_migrate.fleet.targets import parse

README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Fleets\n") :]
SECTION = SECTION[: SECTION.index("\n## ", 1)]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = BLOCK.findall(SECTION)


def yaml_blocks() -> list[str]:
    return [body for lang, body in BLOCKS if lang == "yaml"]


def commands(body: str) -> list[list[str]]:
    """The neon-migrate command lines of a YAML example, as the shell would split them,
    with the CI's substitutions made (the matrix value, the completion index)."""
    found = []
    for line in body.splitlines():
        if "neon-migrate " not in line:
            continue
        text = line[line.index("neon-migrate ") :].split(" > ")[0]
        text = text.replace("${{ matrix.shard }}", "2").replace(
            "$((JOB_COMPLETION_INDEX + 1))", "1"
        )
        found.append(shlex.split(text))
    return found


def test_the_section_has_its_examples():
    langs = [lang for lang, _ in BLOCKS]
    assert langs.count("toml") == 2 and langs.count("yaml") == 2 and "console" in langs


def test_the_targets_files_parse():
    for lang, body in BLOCKS:
        if lang == "toml":
            assert parse(body, ROOT / "fleet.toml").targets or "[neon]" in body


def test_the_ci_examples_run_commands_that_exist():
    for body in yaml_blocks():
        found = commands(body)
        assert found, body
        for words in found:
            assert words[0] == "neon-migrate"
            args = parser().parse_args(words[1:])
            assert (args.command, args.fleet_command) == ("fleet", "migrate")


def test_the_matrix_runs_the_canarys_shard_first_and_covers_every_shard():
    actions = next(body for body in yaml_blocks() if "jobs:" in body)
    canary_job, shards_job = actions.split("\n  shards:\n")
    (canary,) = commands(canary_job)
    assert canary[canary.index("--shard") + 1] == "1/4"
    assert "needs: canary" in shards_job
    matrix = re.search(r"shard: \[([\d, ]+)\]", shards_job)
    assert matrix and [int(n) for n in matrix[1].split(",")] == [2, 3, 4]
    (shard,) = commands(shards_job)
    assert shard[shard.index("--shard") + 1].endswith("/4")


def test_the_indexed_job_passes_its_completion_index_as_the_shard():
    job = next(body for body in yaml_blocks() if "kind: Job" in body)
    assert "completionMode: Indexed" in job
    completions = re.search(r"completions: (\d+)", job)
    assert completions
    assert f"--shard $((JOB_COMPLETION_INDEX + 1))/{completions[1]}" in job
    assert "exec neon-migrate" in job  # the pod's SIGTERM reaches it


def test_the_flag_lists_match_the_parser():
    """Each `- `fleet ACTION`: ...` line names exactly that action's flags."""
    listed = dict(re.findall(r"^- `fleet (\w+)`: (.*?)\.$", SECTION, re.MULTILINE | re.DOTALL))
    assert set(listed) == {"migrate", "status"}
    fleet = next(a for a in parser()._subparsers._group_actions[0].choices.values()
                 if a.prog.endswith(" fleet"))  # fmt: skip
    actions = fleet._subparsers._group_actions[0].choices
    for action, text in listed.items():
        flags = {o for a in actions[action]._actions for o in a.option_strings} - {"-h", "--help"}
        assert set(re.findall(r"`(--[\w-]+)", text)) == flags, action
