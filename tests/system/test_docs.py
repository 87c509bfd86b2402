"""The README stays true to the code: every setting documented with its real default."""

from __future__ import annotations

import re

from conftest import ROOT

from realtime.core.config import SETTINGS

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "(empty)"
        row = f"| `{setting.name}` | {default} |"
        assert row in README, f"README lacks the row for {setting.name}"


def test_quick_start_is_exactly_make_run_and_make_test() -> None:
    quick = README.split("## Quick start", 1)[1]
    first_block = re.search(r"```sh\n(.*?)```", quick, re.S)
    assert first_block is not None
    assert first_block.group(1).split("\n")[:-1] == ["make run", "make test"]
