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
        ("bin/{{tool}} run", None),
        ("scripts/handle.sh {{item.id}}", "scripts/handle.sh"),  # a value is one quoted word
        ('./x.sh --name "{{name}}" {{a}}', "./x.sh"),
        ("A={{a}} make", None),
        ('echo "unbalanced', None),  # the shell reports it
        ("$HOME/bin/x", None),
        ("", None),
    ],
)
def test_the_first_command_word(run: str, word: str | None) -> None:
    assert first_command_word(run) == word


def test_a_missing_script_is_found_when_placeholders_follow_it(tmp_path: Path) -> None:
    """`run = "scripts/handle.sh {{item.id}}"`, the usual per-item script, was never checked
    (`{{` anywhere skipped the step): a missing file passed `validate --ready` and failed every item
    at run time with `sh: scripts/handle.sh: not found`."""
    wf = parse_workflow('workflow w {\n  script s { run = "scripts/handle.sh {{item.id}}" }\n}\n', "w.wf")
    [problem] = check_script_commands(wf, tmp_path).errors
    missing = tmp_path / "scripts" / "handle.sh"
    assert problem.message == f"Script step 's': 'scripts/handle.sh' not found (looked for {missing})"
    assert (problem.location.line, problem.location.column) == (2, 3)


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
