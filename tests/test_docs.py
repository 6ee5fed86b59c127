"""The documented configuration is the configuration the code reads."""

from __future__ import annotations

import re

from helpers import ROOT

from neon_migrate.settings import Settings, env_name


def documented(path: str) -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z_]+)=", (ROOT / path).read_text(), re.MULTILINE))


def test_env_example_lists_every_setting():
    assert documented(".env.example") == {env_name(name) for name in Settings.model_fields}


def test_readme_configuration_table_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    table = set(re.findall(r"^\| `([A-Z][A-Z_]+)` \|", readme, re.MULTILINE))
    assert table == {env_name(name) for name in Settings.model_fields}
