"""The warnings `validate --scripts` says of a workflow, said once on stderr before a run of it
starts or goes on: by `run`, `resume`, `retry` and `rerun` alike (docs/cli.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.run_helpers import cli, cli_env, run_cli_process, run_id_of, write

# `probe` starts with a command not on PATH (the script check's warning, which only
# `validate --scripts` said) and misspells an option (a language warning `run` said already).
NOISY = """workflow noisy {
  script probe { run = "no-such-command-xyz --version" on_fail = continue timout = "5" }
  foreach each {
    over = static
    scope = { items = "a,b" }
    max_parallel = 1
    workflow = item
    inputs = { name = "{{item.id}}" }
  }
}
"""
ITEM = """workflow item {
  inputs { name default = "" }
  script work { run = "test -f ok-{{name}}" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "wf" / "noisy.wf", NOISY)
    write(tmp_path / "wf" / "item.wf", ITEM)
    (tmp_path / "wf" / "ok-a").touch()  # item a completes, item b fails until ok-b exists
    return tmp_path


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": warning: " in line]


def test_run_resume_retry_and_rerun_say_the_warnings_validate_scripts_says_once(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, said = cli(capsys, "validate", "--scripts", "wf/noisy.wf")
    expected = _warnings(said)
    assert len(expected) == 2 and "'no-such-command-xyz' is not a command on PATH" in said

    code, out, err = cli(capsys, "run", "noisy", "--dir", "wf", "--progress", "quiet")
    assert code == 1, err  # item b failed
    assert _warnings(err) == expected  # before: the script check's warning was missing
    run_id = run_id_of(out)

    code, _, err = cli(capsys, "resume", run_id, "--dir", "wf", "--progress", "quiet")
    assert code == 1, err
    assert _warnings(err) == expected  # before: none

    (home / "wf" / "ok-b").touch()
    code, _, err = cli(
        capsys,
        "retry",
        run_id,
        "--failed",
        "--yes",
        "--definition",
        "current",
        "--dir",
        "wf",
        "--progress",
        "quiet",
    )
    assert code == 0, err
    assert _warnings(err) == expected  # before: none

    code, _, err = cli(capsys, "rerun", run_id, "--from", "each", "--dir", "wf", "--progress", "quiet")
    assert code == 0, err
    assert _warnings(err) == expected  # before: none


TYPO = """workflow typo {
  inputs { branch default = "main" }
  script build {
    run     = "echo building {{brnach}}/{{branch}}; test -f built || { touch built; exit 1; }"
    retries = 1
  }
  call reviewer
  gate human_approval { prompt = "Ship {{brnach}}?" timeout = "1s" on_timeout = continue }
}
"""
REVIEWER = "---\nruntime: echo\n---\nReview {{ branch }} as {{agent_name}}.\n"


def test_a_placeholder_with_no_value_is_warned_of_once_per_step_with_a_did_you_mean(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`{{brnach}}` rendered empty and the run went on without a word (dsl.md §8.1 keeps it
    empty): now each step says so once on its log, naming the closest known name."""
    write(home / "wf" / "typo.wf", TYPO)
    write(home / "wf" / "agents" / "reviewer.md", REVIEWER)
    code, out, err = cli(capsys, "run", "typo", "--dir", "wf", "--memory", "--progress", "plain")
    assert code == 0, err
    said = [line.split(" EngineLog ", 1)[1] for line in out.splitlines() if " EngineLog " in line]
    hint = "has no value here, so it is left empty (hint: did you mean `branch`?)"
    assert said == [  # once per step and placeholder: the script's second attempt says nothing more
        f"level=warning step=build message=\"script 'build': `{{{{brnach}}}}` {hint}\"",
        f"level=warning step=reviewer message=\"call 'reviewer': `{{{{ branch }}}}` {hint}\"",
        f"level=warning step=human_approval message=\"gate 'human_approval': `{{{{brnach}}}}` {hint}\"",
    ]
    assert "StepRetrying step=build" in out
    assert 'line="building /main"' in out  # still rendered empty
    assert 'prompt="Ship ?"' in out


HELLO = """workflow hello {
  inputs { name default = "bob" }
  script hello { run = "echo hi {{nmae}}" }
}
"""
HELLO_WARNING = "script 'hello': `{{nmae}}` has no value here, so it is left empty"


@pytest.mark.parametrize("progress", ["plain", "quiet"])
def test_an_engine_warning_is_said_once_where_stdout_and_stderr_are_one_terminal(
    home: Path, progress: str
) -> None:
    """The progress shows the warning (`EngineLog level=warning …`) and the engine's log said it
    again on stderr: `2>&1`, or a terminal for both, read the same line twice."""
    write(home / "wf" / "hello.wf", HELLO)
    args = ["run", "hello", "--dir", "wf", "--progress", progress]
    both = subprocess.run(
        [sys.executable, "-m", "runkon_flow.cli", *args],
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert both.returncode == 0, both.stdout
    assert both.stdout.count(HELLO_WARNING) == 1, both.stdout  # before: twice


def test_an_engine_warning_stays_on_stderr_when_stdout_goes_elsewhere(home: Path) -> None:
    """`run … > progress.log` (or `| tee`): the terminal, on stderr, still says the warning."""
    write(home / "wf" / "hello.wf", HELLO)
    apart = run_cli_process(["run", "hello", "--dir", "wf", "--progress", "plain"], home, cli_env())
    assert apart.returncode == 0, apart.stderr
    assert apart.stdout.count(HELLO_WARNING) == 1
    assert apart.stderr.count(HELLO_WARNING) == 1


STEP_FIELD = """workflow fields {
  call planner
  script check { run = "echo risk={{planner.risk}} {{planner.riks}}" }
}
"""
PLANNER = "---\nruntime: echo\noutput: { risk: low, summary: short }\n---\nPlan.\n"


def test_a_field_written_with_its_step_name_is_told_to_drop_the_step_name(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Conditions write `planner.needs_checks`, so a newcomer writes `{{planner.risk}}` for the
    planner's FLOW_OUTPUT field `risk`: it rendered empty with no hint at all (no name is close
    to `planner.risk`). Now the warning says to write `{{risk}}`, or lists the step's fields."""
    write(home / "wf" / "fields.wf", STEP_FIELD)
    write(home / "wf" / "agents" / "planner.md", PLANNER)
    code, out, err = cli(capsys, "run", "fields", "--dir", "wf", "--memory", "--progress", "plain")
    assert code == 0, err
    said = [line.split(" message=", 1)[1] for line in out.splitlines() if " EngineLog " in line]
    assert said == [
        "\"script 'check': `{{planner.risk}}` has no value here, so it is left empty (hint: a"
        " step's FLOW_OUTPUT fields are placeholders without the step's name: write `{{risk}}`)\"",
        "\"script 'check': `{{planner.riks}}` has no value here, so it is left empty (hint: step"
        " 'planner' set no FLOW_OUTPUT field `riks` (its fields, each a placeholder without the"
        " step's name: `{{risk}}`, `{{summary}}`))\"",
    ]


FIELD_CONDITION = """workflow branch {
  call planner
  if planner.risk { script careful { run = "echo careful" } }
  if planner.summary { script never { run = "echo never" } }
}
"""


def test_a_condition_on_a_field_rather_than_a_marker_says_why_it_is_false(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`if planner.risk` where `risk` is a FLOW_OUTPUT field, not a marker: the branch never ran
    and nothing said why. The warning names the field, its value and what a condition tests."""
    write(home / "wf" / "branch.wf", FIELD_CONDITION)
    write(home / "wf" / "agents" / "planner.md", PLANNER)
    code, out, err = cli(capsys, "run", "branch", "--dir", "wf", "--memory", "--progress", "plain")
    assert code == 0, err
    said = [line.split(" message=", 1)[1] for line in out.splitlines() if " EngineLog " in line]
    assert said == [
        f"\"condition `planner.{name}` is false: `{name}` is a FLOW_OUTPUT field of step 'planner'"
        f' (= \\"{value}\\"), not one of its markers; a condition tests the `markers` list (hint: have'
        f' `planner` emit the marker `{name}`)"'
        for name, value in (("risk", "low"), ("summary", "short"))
    ]
    assert "StepStarted step=careful" not in out  # still false, as the language says


EMPTY = """workflow empty {
  foreach each {
    over = static
    scope = { file = "items.yaml" }
    max_parallel = 1
    workflow = item
    inputs = { name = "{{item.id}}" }
  }
  foreach picked {
    over = lines
    scope = { file = "repos.txt" }
    filter = { id = "svc-*" }
    max_parallel = 1
    workflow = item
    inputs = { name = "{{item.id}}" }
  }
}
"""


def test_an_items_file_that_holds_no_items_is_said_not_run_silently(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty items file (or one the filter leaves nothing of) ran 0 items without a word. An
    empty list may be meant, so the run still completes, but it says so, on the run's output and
    in its stored events (the dashboard's engine log reads them)."""
    write(home / "wf" / "empty.wf", EMPTY)
    write(home / "wf" / "items.yaml", "items: []\n")
    write(home / "wf" / "repos.txt", "# none yet\nlib-core\n")
    code, out, err = cli(capsys, "run", "empty", "--dir", "wf", "--progress", "plain")
    assert code == 0, err
    expected = [
        "foreach 'each': items file 'items.yaml' holds no items (0 items run)",
        "foreach 'picked': no item in items file 'repos.txt' matches the filter (0 items run)",
    ]
    said = [line.split(" EngineLog ", 1)[1] for line in out.splitlines() if " EngineLog " in line]
    assert said == [
        f'level=warning step=foreach:each message="{expected[0]}"',
        f'level=warning step=foreach:picked message="{expected[1]}"',
    ]
    # The stored events say it too: `watch` of the finished run prints them back.
    code, watched, _ = cli(capsys, "watch", run_id_of(out), "--progress", "plain")
    assert code == 0
    assert [line.split(" EngineLog ", 1)[1] for line in watched.splitlines() if " EngineLog " in line] == said
