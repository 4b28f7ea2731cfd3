"""`runkon-flow validate`: what a user sees on the terminal, and the exit status CI relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runkon_flow.cli import main, render_diagnostic
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.errors import SourceLocation


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = "workflow good {\n  call build\n  if build.ok {\n    call deploy\n  }\n}\n"
BAD_SEMANTICS = "workflow bad {\n  inputs { mode }\n  if mode { call a }\n  while fixer.again {\n    max_iterations = 3\n    call fixer\n  }\n}\n"  # noqa: E501
BAD_SYNTAX = "workflow broken {\n  call x { retries = 1 }\n  script s { timeout = 5 }\n}\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- happy path


def test_a_directory_of_valid_workflows_prints_ok_per_file_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.wf", GOOD.replace("good", "a"))
    write(tmp_path / "b.wf", GOOD.replace("good", "b"))
    code, out, err = run(capsys, "validate", str(tmp_path))
    assert code == 0
    assert out.splitlines() == [f"{tmp_path / 'a.wf'}: ok", f"{tmp_path / 'b.wf'}: ok"]
    assert err == ""


def test_a_single_file_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "good.wf", GOOD)
    assert run(capsys, "validate", str(path)) == (0, f"{path}: ok\n", "")


def test_a_file_named_twice_is_validated_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "good.wf", GOOD)
    assert run(capsys, "validate", str(path), str(tmp_path), str(path)) == (0, f"{path}: ok\n", "")


# --------------------------------------------------------------------------- diagnostics


def test_semantic_problems_are_printed_with_the_source_line_and_a_caret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "bad.wf", BAD_SEMANTICS)
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"{path}:3:6: Condition references 'mode' which is not a declared boolean input "
        "(hint: Declare it in the workflow inputs block: `mode boolean` — it is declared as a text input;"
        " or test a step's marker: `step.marker`)",
        " 3 |   if mode { call a }",
        "   |      ^",
        f"{path}:4:3: Condition references step 'fixer' which has not been produced at this point "
        "in the workflow (hint: a `while` tests its condition before the first pass, when `fixer` has not "
        "run yet: run `fixer` once before the loop, or write `do { … } while fixer.again`)",
        " 4 |   while fixer.again {",
        "   |   ^",
    ]


def test_a_syntax_error_is_printed_with_a_caret_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "broken.wf", BAD_SYNTAX)
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:3:") and "missing required `run` field" in lines[0]
    assert lines[1] == " 3 |   script s { timeout = 5 }"
    column = int(lines[0].split(":")[2])
    assert lines[2] == "   | " + " " * (column - 1) + "^"


def test_a_stray_character_is_placed_once_by_validate_and_fmt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`test.wf:3:5: Unexpected character '#' at line 3, col 5` said the place twice."""
    path = write(tmp_path / "test.wf", "workflow w {\n  call a\n    # nope\n}\n")
    for command in ("validate", "fmt"):
        code, _, err = run(capsys, command, str(path))
        assert code == 1
        hint = "(hint: comments start with `//`)"
        placed = [f"{path}:3:5: Unexpected character '#' {hint}", " 3 |     # nope", "   |     ^"]
        assert err.splitlines()[:3] == placed


def test_good_and_bad_files_are_all_reported_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.wf", GOOD.replace("good", "a"))
    write(tmp_path / "b.wf", BAD_SYNTAX)
    write(tmp_path / "c.wf", BAD_SEMANTICS)
    write(tmp_path / "d.wf", GOOD.replace("good", "d"))
    code, out, err = run(capsys, "validate", str(tmp_path))
    assert code == 1
    assert out.splitlines() == [f"{tmp_path / 'a.wf'}: ok", f"{tmp_path / 'd.wf'}: ok"]
    assert f"{tmp_path / 'b.wf'}:3:" in err and f"{tmp_path / 'c.wf'}:3:6:" in err


def test_the_caret_follows_tabs_in_the_source_line() -> None:
    text = render_diagnostic(SourceLocation("f.wf", 1, 3), "boom", "\t\tcall x\n")
    assert text.splitlines() == ["f.wf:1:3: boom", " 1 | \t\tcall x", "   | \t\t^"]


def test_a_diagnostic_without_position_or_outside_the_file_has_no_source_excerpt() -> None:
    assert render_diagnostic(SourceLocation("f.wf", None, None), "boom", "x") == "f.wf: boom"
    assert render_diagnostic(SourceLocation("f.wf", 9, 1), "boom", "one line") == "f.wf:9:1: boom"
    assert render_diagnostic(SourceLocation("f.wf", 1, None), "boom", "abc").splitlines() == [
        "f.wf:1: boom",
        " 1 | abc",
    ]


def test_a_file_that_is_not_utf8_is_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bin.wf"
    path.write_bytes(b"workflow \xff {}")
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1 and out == ""
    assert err.startswith(f"{path}: cannot read file: not valid UTF-8")
    assert "Traceback" not in err


def test_warnings_are_printed_but_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "w.wf", "workflow w {\n  meta { trigger = pr }\n  call a\n}\n")
    code, out, err = run(capsys, "validate", str(path))
    assert code == 0
    assert out == f"{path}: ok\n"
    assert f"{path}:1:1: warning: trigger 'pr' is not implemented in v1" in err


# --------------------------------------------------------------------------- cross-workflow


def test_sub_workflows_resolve_in_the_files_own_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "flows" / "child.wf", "workflow child {\n  inputs { id }\n  call inner\n}\n")
    parent = write(
        tmp_path / "flows" / "parent.wf",
        'workflow parent {\n  call workflow child { inputs { id = "1" } }\n  if inner.done { call x }\n}\n',
    )
    assert run(capsys, "validate", str(parent))[0] == 0
    write(tmp_path / "elsewhere" / "parent.wf", parent.read_text())
    code, _out, err = run(capsys, "validate", str(tmp_path / "elsewhere" / "parent.wf"))
    assert code == 1
    assert "Sub-workflow 'child' could not be loaded: workflow not found: child" in err


def test_a_callee_in_a_differently_named_file_is_found_as_run_finds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # fruit.wf declares `fruit-one`: `run` and the dashboard read every file to find it, so a
    # workflow calling it runs; validate used to say "workflow not found: fruit-one" and exit 1
    child = 'workflow fruit-one {\n  inputs { fruit }\n  script say { run = "echo {{fruit}}" }\n}\n'
    write(tmp_path / "fruit.wf", child)
    parent = write(
        tmp_path / "hello.wf",
        "workflow hello {\n"
        '  foreach fruits { over = static scope = { items = "a,b" } max_parallel = 2\n'
        '    workflow = fruit-one inputs = { fruit = "{{item.id}}" } }\n'
        '  call workflow fruit-one { inputs { fruit = "kiwi" } }\n'
        "}\n",
    )
    code, out, err = run(capsys, "validate", str(parent))
    assert (code, err) == (0, "")
    assert out == f"{parent}: ok\n"
    # what the callee requires is still checked against the file that declares it
    parent.write_text(parent.read_text().replace('{ fruit = "kiwi" }', "{ }"))
    code, _out, err = run(capsys, "validate", str(parent))
    assert code == 1
    assert "Sub-workflow 'fruit-one' requires input 'fruit'" in err
    # a name no file declares is still missing
    parent.write_text(parent.read_text().replace("call workflow fruit-one", "call workflow fruit-two"))
    code, _out, err = run(capsys, "validate", str(parent))
    assert code == 1
    assert "Sub-workflow 'fruit-two' could not be loaded: workflow not found: fruit-two" in err


def test_a_missing_required_input_and_a_broken_child_are_reported_at_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "child.wf", "workflow child {\n  inputs { id }\n}\n")
    write(tmp_path / "broken.wf", "workflow broken {")
    write(
        tmp_path / "parent.wf",
        "workflow parent {\n  call workflow child\n  call workflow broken\n}\n",
    )
    code, _out, err = run(capsys, "validate", str(tmp_path / "parent.wf"))
    assert code == 1
    assert (
        f"{tmp_path / 'parent.wf'}:2:3: Sub-workflow 'child' requires input 'id' but it was not provided "
        "at the call site" in err
    )
    assert (
        f"{tmp_path / 'parent.wf'}:3:3: Sub-workflow 'broken' could not be loaded: workflow error: "
        f"Parse error in {tmp_path / 'broken.wf'}:1:18: expected " in err
    )


def test_a_cycle_is_reported_at_the_call_that_starts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.wf", "workflow a {\n  call x\n  call workflow b\n}\n")
    write(tmp_path / "b.wf", "workflow b {\n  call workflow a\n}\n")
    code, _out, err = run(capsys, "validate", str(tmp_path / "a.wf"))
    assert code == 1
    assert err.splitlines()[:3] == [
        f"{tmp_path / 'a.wf'}:3:3: Circular workflow reference: a -> b -> a",
        " 3 |   call workflow b",
        "   |   ^",
    ]


def test_ready_reports_a_cycle_once_at_the_call_that_starts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.wf", "workflow a {\n  call workflow b\n}\n")
    write(tmp_path / "b.wf", "workflow b {\n  call workflow a\n}\n")
    code, _out, err = run(capsys, "validate", "--ready", str(tmp_path / "a.wf"))
    assert code == 1
    assert err.count("Circular workflow reference: a -> b -> a") == 1
    assert f"{tmp_path / 'a.wf'}:2:3: Circular workflow reference: a -> b -> a" in err


def test_foreach_providers_are_checked_against_the_reference_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "child.wf", "workflow child {\n  call a\n}\n")
    body = "foreach f {{ over = {} max_parallel = 1 workflow = child }}"
    write(tmp_path / "unknown.wf", "workflow unknown {\n  " + body.format("nowhere") + "\n}\n")
    code, _out, err = run(capsys, "validate", str(tmp_path / "unknown.wf"))
    assert code == 1
    assert "foreach 'f': unknown provider 'nowhere' — no ItemProvider registered for this name" in err

    inline = 'static scope = { items = "a,b" }'
    write(tmp_path / "static.wf", "workflow static {\n  " + body.format(inline) + "\n}\n")
    assert run(capsys, "validate", str(tmp_path / "static.wf"))[0] == 0

    write(tmp_path / "noscope.wf", "workflow noscope {\n  " + body.format("static") + "\n}\n")
    code, _out, err = run(capsys, "validate", str(tmp_path / "noscope.wf"))
    assert code == 1
    assert f"{tmp_path / 'noscope.wf'}:2:3: foreach 'f': over = static needs exactly one of" in err


# --------------------------------------------------------------------------- options


def test_targets_are_only_checked_when_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "t.wf", 'workflow t {\n  meta { targets = ["branch"] }\n}\n')
    assert run(capsys, "validate", str(path))[0] == 0
    code, _out, err = run(capsys, "validate", "--targets", "worktree,repo", str(path))
    assert code == 1
    # At the value that names it, not at the workflow's first line.
    assert err.startswith(
        f"{path}:2:20: Unknown target 'branch' in workflow 't'. Valid targets: worktree, repo"
    )
    assert err.splitlines()[1:3] == [' 2 |   meta { targets = ["branch"] }', "   |                    ^"]


@pytest.mark.skipif(os.name != "posix", reason="execute bits are POSIX")
def test_scripts_are_checked_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "s.wf", 'workflow s {\n  script build { run = "tools/build.sh" }\n}\n')
    assert run(capsys, "validate", str(path))[0] == 0
    code, _out, err = run(capsys, "validate", "--scripts", str(path))
    looked = f"(looked for {tmp_path}/tools/build.sh)"
    assert code == 1 and f"Script step 'build': 'tools/build.sh' not found {looked}" in err
    script = write(tmp_path / "tools" / "build.sh", "#!/bin/sh\n")
    script.chmod(0o644)
    code, _out, err = run(capsys, "validate", "--scripts", str(path))
    assert code == 1 and f"(hint: Run: chmod +x {script})" in err
    script.chmod(0o755)
    assert run(capsys, "validate", "--scripts", str(path))[0] == 0
    other = tmp_path / "wd"
    other.mkdir()
    assert run(capsys, "validate", "--scripts", "--working-dir", str(other), str(path))[0] == 1


def test_a_missing_script_is_named_alike_by_validate_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate --scripts s.wf` in the workflow's folder said `looked for scripts/missing.sh`, a run
    `looked for /tmp/…/scripts/missing.sh`: both now give the absolute path."""
    write(tmp_path / "s.wf", 'workflow s {\n  script go { run = "scripts/missing.sh" }\n}\n')
    monkeypatch.chdir(tmp_path)
    looked = f"(looked for {tmp_path}/scripts/missing.sh)"
    said = f"s.wf:2:3: Script step 'go': 'scripts/missing.sh' not found {looked}"
    code, _out, err = run(capsys, "validate", "--scripts", "s.wf")
    assert code == 1 and err.splitlines()[0] == said, err
    code, _out, err = run(capsys, "run", "--memory", "s.wf")
    assert code != 0 and err.splitlines()[0] == said, err


SCRIPTS = """workflow s {
  script lint   { run = "make lint" }
  script check  { run = "./tools/check.sh --fast" }
  script local  { run = "local.sh" }
  script later  { run = "{{tool}} go" }
  script odd    { run = "definitely-not-a-command-xyz --flag" }
}
"""


@pytest.mark.skipif(os.name != "posix", reason="execute bits are POSIX")
@pytest.mark.parametrize("mode", ["--scripts", "--ready"])
def test_scripts_get_one_policy_in_scripts_and_ready(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` is a shell command line: its first word must be runnable, whichever flag asks."""
    path = write(tmp_path / "s.wf", SCRIPTS)
    write(tmp_path / "tools" / "check.sh", "#!/bin/sh\n").chmod(0o755)
    write(tmp_path / "local.sh", "#!/bin/sh\n").chmod(0o755)
    code, _out, err = run(capsys, "validate", mode, str(path))
    assert code == 1
    errors = [line for line in err.splitlines() if ": Script step '" in line and ": warning:" not in line]
    assert errors == [
        f"{path}:4:3: Script step 'local': 'local.sh' is not a command on PATH; the shell does not look in "
        f"the working directory (hint: write `./local.sh` to run {tmp_path}/local.sh)"
    ]
    assert (
        f"{path}:6:3: warning: Script step 'odd': 'definitely-not-a-command-xyz' is not a command on PATH "
        "here (the run's PATH may differ)" in err
    )
    assert "'make'" not in err and "check.sh" not in err and "'later'" not in err


@pytest.mark.skipif(os.name != "posix", reason="execute bits are POSIX")
def test_scripts_and_ready_together_say_each_script_problem_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "s.wf", 'workflow s {\n  script run-it { run = "bin/missing --x" }\n}\n')
    code, _out, err = run(capsys, "validate", "--scripts", "--ready", str(path))
    assert code == 1
    assert err.count("Script step 'run-it': 'bin/missing' not found") == 1


def test_json_prints_the_canonical_ast_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "good.wf", GOOD)
    code, out, err = run(capsys, "validate", "--json", str(path))
    assert code == 0 and err == ""
    assert json.loads(out) == parse_workflow(GOOD, str(path)).to_json()


def test_json_for_a_directory_is_a_list_and_broken_files_go_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.wf", GOOD.replace("good", "a"))
    write(tmp_path / "b.wf", BAD_SYNTAX)
    code, out, err = run(capsys, "validate", "--json", str(tmp_path))
    assert code == 1
    assert [doc["name"] for doc in json.loads(out)] == ["a"]
    assert f"{tmp_path / 'b.wf'}:3:" in err


# --------------------------------------------------------------------------- usage errors


def test_a_nonexistent_path_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "good.wf", GOOD)
    code, out, err = run(capsys, "validate", str(tmp_path / "good.wf"), str(tmp_path / "nope.wf"))
    assert (code, out) == (2, f"{tmp_path / 'good.wf'}: ok\n")  # the other paths are still checked
    assert err == f"runkon-flow validate: error: no such file or directory: {tmp_path / 'nope.wf'}\n"


def test_a_directory_without_workflows_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "validate", str(tmp_path))
    assert code == 2 and f"no .wf files in directory {tmp_path}" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["validate"],
        ["frobnicate"],
        ["validate", "--no-such-flag", "x"],
        ["validate", "--targets", ",", "x"],
    ],
)
def test_bad_command_lines_exit_2_with_a_message_and_no_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert "usage: runkon-flow" in err and "Traceback" not in err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "validate", "--help")
    assert code == 0 and "--json" in out
    code, out, _err = run(capsys, "--version")
    assert code == 0 and out.startswith("runkon-flow ")


# --------------------------------------------------------------------------- installed script


@pytest.mark.slow
def test_the_installed_console_script_validates_a_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("runkon-flow")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    write(tmp_path / "good.wf", GOOD)
    ok = subprocess.run([str(script), "validate", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{tmp_path / 'good.wf'}: ok\n", "")
    write(tmp_path / "bad.wf", BAD_SEMANTICS)
    bad = subprocess.run([str(script), "validate", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and f"{tmp_path / 'bad.wf'}:3:6:" in bad.stderr
    missing = subprocess.run([str(script), "validate", str(tmp_path / "x")], capture_output=True, text=True)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_ready_also_checks_what_run_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate` alone checks the language; `--ready` also finds the agents, providers and gate
    types a run needs, and names the call that lacks one, as the user named the file."""
    path = write(tmp_path / "flow" / "deploy.wf", "workflow deploy {\n  call build\n  call ship\n}\n")
    write(tmp_path / "flow" / "agents" / "build.md", "---\nruntime: echo\n---\nBuild it.\n")
    assert run(capsys, "validate", str(path)) == (0, f"{path}: ok\n", "")
    code, out, err = run(capsys, "validate", "--ready", str(path))
    assert code == 1 and out == ""
    assert f"{path}:3:3: call 'ship': no registered ActionExecutor for 'ship'" in err
    assert "call 'build'" not in err
    write(tmp_path / "flow" / "agents" / "ship.md", "---\nruntime: echo\n---\nShip it.\n")
    assert run(capsys, "validate", "--ready", str(path)) == (0, f"{path}: ok\n", "")


def test_ready_says_what_a_misspelt_name_probably_meant_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt gate type got `no registered GateResolver` with no hint; a misspelt `over` and
    `call workflow` were said twice by `--ready`, in two wordings, without the name meant."""
    write(tmp_path / "process-item.wf", 'workflow process-item {\n  script s { run = "true" }\n}\n')
    path = write(
        tmp_path / "main.wf",
        "workflow main {\n"
        '  gate human_aproval { prompt = "ok?" }\n'
        "  call workflow procss-item\n"
        "  foreach f { over = statc max_parallel = 1 workflow = process-item }\n"
        "}\n",
    )
    code, out, err = run(capsys, "validate", "--ready", str(path))
    assert code == 1 and out == ""
    assert [line for line in err.splitlines() if not line.startswith(" ")] == [
        f"{path}:2:3: gate 'human_aproval': no registered GateResolver for type 'human_aproval' "
        "(hint: did you mean `human_approval`? the gate types are: human_approval, human_review, "
        "pr_approval, pr_checks, quality_gate)",
        f"{path}:3:3: Sub-workflow 'procss-item' could not be loaded: workflow not found: procss-item "
        "(did you mean `process-item`?)",
        f"{path}:4:3: foreach 'f': unknown provider 'statc' — no ItemProvider registered for this name "
        "(hint: did you mean `static`? `over` is one of: command, files, lines, static)",
    ]


def test_a_misspelt_agent_runtime_is_told_the_runtime_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runtime: ech` listed the runtimes without the one meant, where every other misspelt name
    gets a did-you-mean."""
    path = write(tmp_path / "greet.wf", "workflow greet {\n  call greeter\n}\n")
    agent = write(tmp_path / "agents" / "greeter.md", "---\nruntime: ech\n---\nSay hello.\n")
    code, out, err = run(capsys, "validate", "--ready", str(path))
    assert code == 1 and out == ""
    assert f"{agent}:2: unknown runtime 'ech' (did you mean `echo`? expected one of: command, echo)" in err, (
        err
    )


def test_ready_passes_every_sample_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    samples = Path(__file__).resolve().parents[2] / "sample_workflows"
    code, out, err = run(capsys, "validate", "--ready", str(samples))
    assert code == 0, err
    assert out.count(": ok") == len(list(samples.glob("*.wf")))


def test_ready_points_at_every_problem_and_says_each_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "ready.wf",
        'workflow r {\n  script s { run = "scripts/nothere.sh" }\n  gate weird_gate { timeout = "1h" }\n}\n',
    )
    code, _out, err = run(capsys, "validate", "--ready", "--scripts", str(path))
    assert code == 1
    assert f"{path}:3:3: gate 'weird_gate': no registered GateResolver for type 'weird_gate'" in err
    assert err.count("Script step 's': 'scripts/nothere.sh' not found") == 1


def test_options_before_the_command_get_a_hint_where_they_go(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--db", "/tmp/x.db", "runs", "--all")
    assert code == 2
    assert "options go after the command: runkon-flow runs --db /tmp/x.db --all" in err


# --------------------------------------------------------------------------- newcomer findings


def test_a_negative_number_is_named_once_at_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "t.wf", "workflow t {\n  call a\n\n  call b { retries = -1 }\n}\n")
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == f"{path}:4:22: negative numbers are not allowed: retries must be 0 or more"
    assert "line 4, col 22" not in err


AGENT = "---\nruntime: echo\n---\nDraft it.\n"
BAD_CALL_TIMEOUT = 'workflow t {\n  call draft-notes { timeout = "5 parsecs" }\n}\n'
CALL_TIMEOUT_SAYS = (
    "2:32: {label}invalid timeout '5 parsecs': expected a whole number of seconds or a duration like "
    '"500ms", "30s", "5m", "1h"'
)


def test_a_call_timeout_the_engine_cannot_read_is_a_warning_of_validate_at_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The language stores a call timeout as text and the engine refuses it when the step runs
    (dsl.md §3.5), so the language check warns; `--ready` and `run` refuse it (next test)."""
    path = write(tmp_path / "t.wf", BAD_CALL_TIMEOUT)
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (0, f"{path}: ok\n")
    assert f"{path}:{CALL_TIMEOUT_SAYS.format(label='warning: ')}" in err
    assert "invalid digit found in string" not in err


def test_ready_and_run_refuse_a_call_timeout_the_engine_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "t.wf", BAD_CALL_TIMEOUT)
    write(tmp_path / "agents" / "draft-notes.md", AGENT)
    code, out, err = run(capsys, "validate", "--ready", str(path))
    assert (code, out) == (1, "")
    assert err.count("invalid timeout '5 parsecs'") == 1  # the error only, not also the warning
    assert f"{path}:{CALL_TIMEOUT_SAYS.format(label='')}" in err
    code, out, err = run(capsys, "run", "--memory", str(path))
    assert code == 1
    assert f"{path}:{CALL_TIMEOUT_SAYS.format(label='')}" in err
    assert "RunStarted" not in out + err


def test_a_bad_call_timeout_in_a_sub_workflow_is_found_from_the_parent_at_its_own_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run of the parent reaches the child's step and fails there, so checking the parent says so,
    at the child's file:line:col with the child's line under it (it said `ok`, and `run` started)."""
    parent = write(
        tmp_path / "parent.wf",
        "workflow parent {\n  foreach f {\n    over = files\n"
        '    workflow = middle\n    max_parallel = 1\n    scope = { glob = "*.md" }\n  }\n}\n',
    )
    write(tmp_path / "middle.wf", "workflow middle {\n  call workflow t\n}\n")
    child = write(tmp_path / "t.wf", BAD_CALL_TIMEOUT)
    write(tmp_path / "agents" / "draft-notes.md", AGENT)
    # said with the step of the parent that reaches it: the foreach at line 2 (through `middle`)
    where = "in sub-workflow 't' of 'parent' (run by foreach at line 2): "
    says = f"{child}:" + CALL_TIMEOUT_SAYS.format(label="{label}" + where)
    code, out, err = run(capsys, "validate", str(parent))
    assert (code, out) == (0, f"{parent}: ok\n")
    assert says.format(label="warning: ") in err
    assert '  call draft-notes { timeout = "5 parsecs" }' in err
    code, out, err = run(capsys, "validate", "--ready", str(parent))
    assert (code, out) == (1, "")
    assert err.count("invalid timeout '5 parsecs'") == 1
    assert says.format(label="") in err
    code, out, err = run(capsys, "run", "--memory", str(parent))
    assert code == 1
    assert says.format(label="") in err
    assert "RunStarted" not in out + err
    # validating the folder: the child's own warning says it; the callers do not say it again
    code, out, err = run(capsys, "validate", str(tmp_path))
    assert code == 0
    assert err.count("invalid timeout '5 parsecs'") == 1
    assert f"{child}:{CALL_TIMEOUT_SAYS.format(label='warning: ')}" in err


@pytest.mark.parametrize("value", ['"500ms"', '"30s"', '"5m"', '"1h"', '"90"', "90"])
def test_every_call_timeout_the_engine_reads_passes_ready_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = write(tmp_path / "t.wf", f"workflow t {{\n  call draft-notes {{ timeout = {value} }}\n}}\n")
    write(tmp_path / "agents" / "draft-notes.md", AGENT)
    assert run(capsys, "validate", "--ready", str(path)) == (0, f"{path}: ok\n", "")


def test_a_bad_gate_timeout_says_what_to_write_at_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "t.wf", 'workflow t {\n  gate human_approval { timeout = "forever" }\n}\n')
    code, _out, err = run(capsys, "validate", str(path))
    assert code == 1
    assert err.splitlines()[0] == (
        f"{path}:2:35: Invalid duration 'forever': invalid digit found in string (hint: a gate timeout is "
        'a whole number of seconds or one number with h, m or s: "30s", "5m", "8h")'
    )


def test_a_comma_separated_target_string_is_one_target_and_a_warning_at_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The spec reads a single string as a one-element list, so `"linux, plan9"` was silently one
    target named `linux, plan9`: it still is (the file is valid), but `validate` says so, where."""
    path = write(tmp_path / "t.wf", 'workflow t {\n  meta { targets = "linux, plan9" }\n  call a\n}\n')
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (0, f"{path}: ok\n")
    assert err.splitlines()[:3] == [
        f"{path}:2:20: warning: target 'linux, plan9' is one target with a comma in its name: "
        'a string is never split (hint: write targets = ["linux", "plan9"])',
        ' 2 |   meta { targets = "linux, plan9" }',
        "   |                    ^",
    ]
    code, _, err = run(capsys, "validate", str(path), "--targets", "linux,plan9")
    assert code == 1 and "Unknown target 'linux, plan9' in workflow 't'" in err
    path.write_text('workflow t {\n  meta { targets = ["linux", "plan9"] }\n  call a\n}\n')
    assert run(capsys, "validate", str(path), "--targets", "linux,plan9")[:3] == (0, f"{path}: ok\n", "")


TYPOS = (
    "workflow t {\n"
    "  inputs { x x }\n"
    "  call draft-notes { timout = 1 }\n"
    "  parallel { fail_fast = maybe call a call b }\n"
    '  call workflow crash { inputs { name = "a" nmae = "1" } }\n'
    '  script build { run = "true" }\n'
    '  script build { run = "true" }\n'
    "}\n"
)


def test_typos_are_warnings_at_their_position_and_do_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "t.wf", TYPOS)
    write(tmp_path / "crash.wf", "workflow crash {\n  inputs { name }\n  call a\n}\n")
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (0, f"{path}: ok\n")
    said = [line for line in err.splitlines() if line.startswith(str(path))]
    assert said == [
        f"{path}:2:14: warning: input `x` is declared twice (first at line 2, column 12) "
        "(hint: remove one of them)",
        f"{path}:3:22: warning: `timout` is not an option of `call draft-notes`; it is ignored "
        "(hint: did you mean `timeout`?)",
        f"{path}:4:26: warning: `fail_fast = maybe` counts as false: only `true` turns it on "
        "(hint: write `fail_fast = true` or `fail_fast = false`)",
        f"{path}:5:3: warning: Sub-workflow 'crash' declares no input 'nmae' (hint: did you mean `name`?)",
        f"{path}:7:3: warning: step name `build` is used twice (first at line 6, column 3): the later "
        "step's result replaces the earlier one's (hint: give one of them another name)",
    ]


def test_an_unknown_key_far_from_any_option_lists_the_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "t.wf", "workflow t {\n  call draft-notes { frob = 1 }\n}\n")
    code, _out, err = run(capsys, "validate", str(path))
    assert code == 0
    assert err.splitlines()[0] == (
        f"{path}:2:22: warning: `frob` is not an option of `call draft-notes`; it is ignored (hint: the "
        "options of `call draft-notes` are `retries`, `on_fail`, `as`, `output`, `with`, `plugin_dirs`, "
        "`timeout`, `max_turns`)"
    )


def test_a_diagnostic_never_sends_the_files_escape_sequences_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A diagnostic quotes the source line; a `.wf` file from someone else's repository could
    hide `\\033]0;…\\007` or `\\033[2J` in a comment there, and `validate` printed them raw."""
    hidden = "\x1b]0;pwned\x07\x1b[2J\x9b1m"
    path = write(tmp_path / "esc.wf", f"workflow w {{\n  script s {{ run = }} // {hidden}\n}}\n")
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1 and "expected a value for `run`" in err
    assert not any(c in err + out for c in "\x1b\x07\x9b"), err


def test_a_missing_items_file_is_named_alike_and_placed_at_its_file_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate flows/fan.wf` and a run (an absolute folder) name the file the same way, relative
    to the workflow's folder, at the `file = …` value rather than at the `foreach` line."""
    write(
        tmp_path / "flows" / "fan.wf",
        "workflow fan {\n  foreach each {\n    over = static\n    scope = {\n"
        '      file = "nope.yaml"\n    }\n    max_parallel = 1\n    workflow = child\n  }\n}\n',
    )
    write(tmp_path / "flows" / "child.wf", "workflow child {\n  call work\n}\n")
    monkeypatch.chdir(tmp_path)
    for given in ("flows/fan.wf", str(tmp_path / "flows" / "fan.wf")):
        code, _out, err = run(capsys, "validate", given)
        assert code == 1
        assert f"{given}:5:14: foreach 'each': items file not found: nope.yaml\n" in err, err
        assert ' 5 |       file = "nope.yaml"' in err


def test_a_file_that_is_not_a_workflow_is_named_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate items.yaml` parsed YAML as a workflow ("Unexpected character '-'"); a `.wf` file and
    a file with no suffix (a pipe, `/dev/stdin`) are still read as workflows."""
    write(tmp_path / "items.yaml", "- a\n- b\n")
    for command in ("validate", "fmt"):
        code, out, err = run(capsys, command, str(tmp_path / "items.yaml"))
        assert code == 2 and out == ""
        assert f"{tmp_path / 'items.yaml'} is not a workflow file (its name does not end in .wf)" in err
        assert "Unexpected character" not in err
    good = write(tmp_path / "flow.wf", GOOD)
    assert run(capsys, "validate", str(good))[0] == 0
    plain = write(tmp_path / "flow", GOOD)
    assert run(capsys, "validate", str(plain)) == (0, f"{plain}: ok\n", "")


def test_a_shell_glob_over_a_folder_with_a_readme_checks_every_workflow_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate flows/*` stopped at `flows/README.md` as a usage error and checked nothing after
    it: every `.wf` given is checked, each argument that is not a workflow named last (exit 2,
    a command-line mistake a script sees); a workflow with errors still exits 1."""
    flows = tmp_path / "flows"
    write(flows / "a.wf", GOOD)
    write(flows / "README.md", "# flows\n")
    write(flows / "z.wf", GOOD.replace("workflow ", "workflow z", 1))
    given = [str(flows / name) for name in ("README.md", "a.wf", "z.wf")]  # as the shell sorts them
    code, out, err = run(capsys, "validate", *given)
    assert code == 2
    assert out == f"{flows / 'a.wf'}: ok\n{flows / 'z.wf'}: ok\n"  # before: nothing checked
    assert err == (
        f"runkon-flow validate: error: {flows / 'README.md'} is not a workflow file "
        "(its name does not end in .wf); a directory checks every .wf file in it\n"
    )

    write(flows / "z.wf", 'workflow z { scirpt s { run = "true" } }\n')
    code, out, err = run(capsys, "validate", *given)
    assert code == 1  # what the workflows' check found comes first
    assert out == f"{flows / 'a.wf'}: ok\n"
    assert f"{flows / 'z.wf'}:1:14: " in err and f"{flows / 'README.md'} is not a workflow file" in err

    code, out, err = run(capsys, "validate", "--json", str(flows / "a.wf"), str(flows / "README.md"))
    assert code == 2
    assert isinstance(json.loads(out), list)  # two paths given: a list, as for two workflows


AGENT_PROGRAMS = """workflow p {
  call gone
  call missing
  call shell
  call unknowable
  parallel {
    call local
    call flat
  }
  call fine { on_fail = gone }
}
"""


@pytest.mark.skipif(os.name != "posix", reason="execute bits are POSIX")
def test_ready_and_run_check_the_program_of_each_agent_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate --ready` said `ok` for an agent whose program does not exist, and the run failed
    with `failed to start`: its program gets the script check, at the agent file's `command` line."""
    path = write(tmp_path / "p.wf", AGENT_PROGRAMS)
    agents = tmp_path / "agents"
    write(agents / "gone.md", '---\nruntime: command\ncommand: ["no-such-program-xyz", "--x"]\n---\nHi.\n')
    write(agents / "missing.md", '---\ncommand: "{{agent_dir}}/review.sh --fast"\n---\nHi.\n')
    # `sh` is the program; a placeholder in the program itself is only known to the run
    write(agents / "shell.md", '---\ncommand: ["sh", "{{workflow_dir}}/review.sh"]\n---\nHi.\n')
    write(agents / "unknowable.md", '---\ncommand: ["{{tool}}", "x"]\n---\nHi.\n')
    write(agents / "local.md", "---\ndescription: x\ncommand:\n  - tools/run.sh\n---\nHi.\n")
    write(tmp_path / "tools" / "run.sh", "#!/bin/sh\n").chmod(0o644)
    write(agents / "flat.md", "---\ncommand: [lint.sh]\n---\nHi.\n")
    write(tmp_path / "lint.sh", "#!/bin/sh\n").chmod(0o755)
    write(agents / "fine.md", "---\ncommand: [bin/fine]\n---\nHi.\n")
    write(tmp_path / "bin" / "fine", "#!/bin/sh\n").chmod(0o755)
    assert run(capsys, "validate", str(path)) == (0, f"{path}: ok\n", "")  # the language is fine
    code, out, err = run(capsys, "validate", "--ready", str(path))
    assert (code, out) == (1, "")
    said = [line for line in err.splitlines() if "agent '" in line]
    assert said == [  # errors, then the warning; by file (no file's lines among another's), then line
        f"{agents}/flat.md:2: agent 'flat': 'lint.sh' is not a command on PATH; a program without a `/` is "
        f"looked for on PATH only, not in the working directory (hint: write `./lint.sh` to run "
        f"{tmp_path}/lint.sh)",
        f"{agents}/local.md:3: agent 'local': '{tmp_path}/tools/run.sh' is not executable (mode 0644) "
        f"(hint: Run: chmod +x {tmp_path}/tools/run.sh)",
        f"{agents}/missing.md:2: agent 'missing': '{{{{agent_dir}}}}/review.sh' not found (looked for "
        f"{agents}/review.sh) (hint: the program is the first word of `command`; a relative path is taken "
        "from the working directory (the workflow's folder unless --working-dir), `{{agent_dir}}/…` from "
        "the agent file's folder)",
        # not on PATH here: a warning, as for a script (the run's PATH may differ), said once
        f"{agents}/gone.md:3: warning: agent 'gone': 'no-such-program-xyz' is not a command on PATH here "
        "(the run's PATH may differ) (hint: install it or put it on PATH, or give its path: `./x` in the "
        "working directory, `{{agent_dir}}/x` next to the agent file)",
    ]
    assert ' 3 | command: ["no-such-program-xyz", "--x"]' in err
    # `run` refuses with the same errors before it starts
    code, out, err = run(capsys, "run", "--memory", str(path))
    assert code != 0 and "RunStarted" not in out + err
    assert sorted(line for line in err.splitlines() if "agent '" in line) == sorted(said[:3])
    # with them fixed, `--ready` passes, saying the warning; `run` says it before it starts
    for name in ("missing", "local", "flat"):
        write(agents / f"{name}.md", "---\nruntime: echo\n---\nHi.\n")
    code, out, err = run(capsys, "validate", "--ready", str(path))
    assert (code, out) == (0, f"{path}: ok\n")
    assert [line for line in err.splitlines() if "agent '" in line] == said[3:]
    code, out, err = run(capsys, "run", "--memory", str(path))
    assert next(line for line in err.splitlines() if "agent '" in line) == said[3]
    assert "agent 'gone' failed to start 'no-such-program-xyz'" in out + err


@pytest.mark.skipif(os.name != "posix", reason="execute bits are POSIX")
def test_ready_checks_the_programs_of_agents_a_called_workflow_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The program check covered only the workflow's own calls: an agent a `call workflow` child or
    a foreach's child calls (two levels down too) with a program that does not exist passed
    `--ready`, and the run failed there with `failed to start`. Said once per agent file, with the
    sub-workflow that calls it."""
    top = write(tmp_path / "top.wf", "workflow top {\n  call fine\n  call workflow mid\n}\n")
    write(tmp_path / "mid.wf", "workflow mid {\n  call fine\n  call workflow leaf\n  call broken\n}\n")
    write(tmp_path / "leaf.wf", "workflow leaf {\n  call gone\n  call broken\n}\n")
    agents = tmp_path / "agents"
    write(agents / "fine.md", "---\nruntime: echo\n---\nHi.\n")
    write(agents / "broken.md", '---\ncommand: "{{agent_dir}}/review.sh"\n---\nHi.\n')
    write(agents / "gone.md", '---\nruntime: command\ncommand: ["no-such-program-xyz"]\n---\nHi.\n')
    code, out, err = run(capsys, "validate", "--ready", str(top))
    assert (code, out) == (1, "")
    said = [line for line in err.splitlines() if "agent '" in line]
    assert said == [
        f"{agents}/broken.md:2: in sub-workflow 'mid' of 'top' (called at line 3): agent 'broken': "
        f"'{{{{agent_dir}}}}/review.sh' not found (looked for {agents}/review.sh) (hint: the program is "
        "the first word of `command`; a relative path is taken from the working directory (the "
        "workflow's folder unless --working-dir), `{{agent_dir}}/…` from the agent file's folder)",
        # top's line 3 (`call workflow mid`) is the step of top that brings leaf in, through mid
        f"{agents}/gone.md:3: warning: in sub-workflow 'leaf' of 'top' (called at line 3): agent 'gone': "
        "'no-such-program-xyz' is not a command on PATH here (the run's PATH may differ) (hint: install it "
        "or put it on PATH, or give its path: `./x` in the working directory, `{{agent_dir}}/x` next to "
        "the agent file)",
    ]
    # `run` refuses before it starts, naming the sub-workflow's agent
    code, out, err = run(capsys, "run", "--memory", str(top))
    assert code != 0 and "RunStarted" not in out + err and said[0] in err.splitlines()
    # a foreach's child is reached too
    fan = write(
        tmp_path / "fan.wf",
        "workflow fan {\n"
        '  foreach f { over = static scope = { items = "a,b" } max_parallel = 1 workflow = leaf }\n'
        "}\n",
    )
    code, out, err = run(capsys, "validate", "--ready", str(fan))
    said = f"{agents}/broken.md:2: in sub-workflow 'leaf' of 'fan' (run by foreach at line 2): agent 'broken'"
    assert code == 1 and said in err
