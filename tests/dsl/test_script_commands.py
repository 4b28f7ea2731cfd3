"""The script check runkon-flow applies (`validate --scripts`, `--ready`, and before every run):
the first word of `run` must be something the shell can start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.dsl.script_commands import check_script_commands, first_command_word


@pytest.mark.parametrize(
    ("run", "word"),
    [
        ("make lint", "make"),
        ("./tools/x.sh --fix", "./tools/x.sh"),
        ('"./a b.sh" arg', "./a b.sh"),
        ("# a comment line\nmake", "make"),
        ("A=1 make", None),  # an assignment first: the command is further on
        ("if true; then x; fi", None),
        ("cd sub && ./x.sh", None),  # a builtin first
        ("{{tool}} run", None),  # known only at run time
        ('echo "unbalanced', None),  # the shell reports it
        ("$HOME/bin/x", None),
        ("", None),
    ],
)
def test_the_first_command_word(run: str, word: str | None) -> None:
    assert first_command_word(run) == word


@pytest.mark.skipif(os.name != "posix", reason="execute bits are POSIX")
def test_scripts_at_any_depth_are_checked_relative_to_the_working_dir(tmp_path: Path) -> None:
    (tmp_path / "ok.sh").write_text("#!/bin/sh\n")
    (tmp_path / "ok.sh").chmod(0o755)
    (tmp_path / "plain.sh").write_text("#!/bin/sh\n")
    (tmp_path / "plain.sh").chmod(0o644)
    (tmp_path / "dir").mkdir()
    wf = parse_workflow(
        """workflow w {
          script a { run = "./ok.sh" }
          if a.x { script b { run = "./plain.sh" } }
          always { script c { run = "./dir --x" } }
        }""",
        "w.wf",
    )
    check = check_script_commands(wf, tmp_path)
    assert [(p.node_path, p.message) for p in check.errors] == [
        ("body.1.body.0", f"Script step 'b': '{tmp_path}/plain.sh' is not executable (mode 0644)"),
        ("always.0", f"Script step 'c': './dir' is not a file ({tmp_path}/dir)"),
    ]
    assert check.errors[0].hint == f"Run: chmod +x {tmp_path}/plain.sh"
    assert check.warnings == []
