"""The README is the first thing a newcomer runs: its example and commands must stay true."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from runkon_flow.dsl import parse_workflow
from runkon_flow.errors import WfError

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_language_example_parses() -> None:
    fences = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
    blocks = [body for lang, body in fences if not lang and body.lstrip().startswith("//")]
    assert blocks, "the README shows a .wf example"
    wf = parse_workflow(blocks[0], "README.md")
    kinds = {node.type for node in wf.body}
    assert {"script", "do", "parallel", "do_while", "unless", "for_each"} <= kinds
    assert wf.always


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "make dashboard" in README and "make test" in README
    assert re.search(r"^dashboard:", makefile, flags=re.M)
    assert re.search(r"^test:", makefile, flags=re.M)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.M)


@pytest.mark.parametrize(("dashboard_status", "make_fails"), [(0, False), (1, False), (2, True), (129, True)])
def test_make_dashboard_is_quiet_when_a_run_ended_badly_but_not_on_a_real_error(
    tmp_path: Path, dashboard_status: int, make_fails: bool
) -> None:
    """Quitting after the sample run that fails by design must not end in `make: *** Error 1`; a
    usage error (2) or a hang-up (129) still fails the target."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "runkon-tui"
    fake.write_text(f"#!/bin/sh\nexit {dashboard_status}\n")
    fake.chmod(0o755)
    stamp = tmp_path / "installed"
    stamp.touch()
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "dashboard", f"BIN={bin_dir}", f"STAMP={stamp}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode != 0) is make_fails, done.stderr
    assert ("Error" in done.stderr) is make_fails, done.stderr


def test_the_readme_says_how_to_reach_the_commands_make_installed() -> None:
    """`make` installs into .venv/, not on PATH: a newcomer must be told how to run the commands."""
    assert ".venv/bin/runkon-tui" in README and ".venv/bin/runkon-flow" in README
    assert "source .venv/bin/activate" in README


def test_the_readme_names_every_command_and_only_real_ones() -> None:
    """A command missing from the README is a feature a newcomer never finds. (Commands are read
    from code: a line or a `span` starting `runkon-flow`; `approve|reject` names two.)"""
    import argparse

    from runkon_flow.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = set(sub.choices)
    named = {
        command
        for words in re.findall(r"(?:^|`)runkon-flow ([a-z]+(?:\|[a-z]+)*)", README, flags=re.M)
        for command in words.split("|")
    }
    assert named - commands == set(), f"the README names commands that do not exist: {named - commands}"
    assert commands - named == set(), f"commands the README never mentions: {commands - named}"


def test_the_readme_says_which_foreach_keys_are_required() -> None:
    """`max_parallel` is required on `foreach`, and a newcomer copying the example must not drop it
    unwarned: every key the parser requires (found by leaving each out of the example) is named as
    required in the Fan-out line."""
    fences = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
    example = next(body for lang, body in fences if not lang and body.lstrip().startswith("//"))
    foreach = re.search(r"^  foreach .*?^  \}\n", example, flags=re.S | re.M)
    assert foreach is not None
    keys = re.findall(r"^\s+(\w+)\s*=", foreach.group(0), flags=re.M)
    required = []
    for key in keys:
        without = re.sub(rf"^\s+{key}\s*=.*\n", "", foreach.group(0), flags=re.M)
        try:
            parse_workflow(example.replace(foreach.group(0), without), "README.md")
        except WfError:
            required.append(key)
    assert "max_parallel" in required
    line = re.search(r"^- \*\*Fan-out:\*\*(.*?)(?=^- |\Z)", README, flags=re.S | re.M)
    assert line is not None, "the README has a Fan-out line"
    said = " ".join(line.group(1).split())
    named = re.search(r"((?:`\w+`(?:, | and )?)+) are required", said)
    assert named is not None, said
    assert sorted(re.findall(r"`(\w+)`", named.group(1))) == sorted(required)


def test_the_readme_imports_only_names_the_package_exports() -> None:
    import runkon_flow

    blocks = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
    imported = [
        name.strip()
        for block in blocks
        for names in re.findall(r"^from runkon_flow import (.+)$", block, re.M)
        for name in names.split(",")
    ]
    assert imported, "the README shows how to import the engine"
    assert set(imported) <= set(runkon_flow.__all__)
