"""`runkon-flow run` and `runkon-flow replay`: what a user sees, the exit status scripts rely on,
what is (and is not) written to the run database, Ctrl-C, and the progress printers."""

from __future__ import annotations

import gc
import io
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from runkon_flow.cancellation import CancellationReason
from runkon_flow.cli.live import LiveView
from runkon_flow.cli.output import PlainPrinter, format_event_line
from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    EngineLog,
    FanOutItemCompleted,
    FanOutItemsCollected,
    FanOutItemStarted,
    GateWaiting,
    RunCancelled,
    RunCompleted,
    RunStarted,
    StepCompleted,
    StepOutput,
    StepStarted,
    parse_event_line,
)
from runkon_flow.heap import YOUNG_THRESHOLD
from runkon_flow.persistence import RunStatus, SqliteStore

from tests.cli.run_helpers import (
    cli,
    cli_env,
    events_of,
    run_cli_process,
    run_id_of,
    spawn,
    stop,
    wait_for,
    write,
)

BUILD = """workflow build {
  inputs {
    target default = "all"
    verbose boolean
  }
  script compile { run = "echo compiling {{target}} verbose={{verbose}}" }
  call greeter
}
"""
GREETER = """---
runtime: echo
markers: [greeted]
context: "hello {{target}}"
---
Say hello to {{target}}.
"""
FAILING = """workflow failing {
  script compile { run = "echo broken >&2; exit 3" }
  script never { run = "echo never" }
}
"""
NEEDS_INPUT = """workflow deploy {
  inputs { env  region default = "eu" }
  script go { run = "echo deploying {{env}} {{region}}" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a workflow folder, and the run database inside tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "wf" / "build.wf", BUILD)
    write(tmp_path / "wf" / "agents" / "greeter.md", GREETER)
    write(tmp_path / "wf" / "failing.wf", FAILING)
    write(tmp_path / "wf" / "deploy.wf", NEEDS_INPUT)
    return tmp_path


def stored_runs(home: Path) -> list:
    db = home / "runs.db"
    if not db.exists():
        return []
    with SqliteStore(db) as store:
        return store.list_runs(parent_run_id=None)


# --------------------------------------------------------------------------- success and failure


def test_a_successful_run_prints_its_id_then_one_line_per_event_and_exits_0(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", "build", "--dir", "wf", "--input", "target=web")
    assert code == 0, err
    run_id = run_id_of(out)
    assert out.splitlines()[0] == f"run_id={run_id} workflow=build db={home / 'runs.db'}"
    events = events_of(out)
    assert {run for run, _, _ in events} == {run_id}
    types = [t for _, t, _ in events]
    assert types[0] == "RunStarted" and types[-1] == "RunCompleted"
    assert ("StepOutput" in types) and types.count("StepCompleted") == 2
    assert f'{run_id} StepOutput step=compile stream=stdout line="compiling web verbose=false"' in out
    assert events[-1][2] == "succeeded=true"
    with SqliteStore(home / "runs.db") as store:
        run = store.get_run(run_id)
        assert run.status is RunStatus.COMPLETED
        assert run.inputs == {"target": "web", "verbose": "false"}


def test_a_failing_run_exits_1_names_the_error_and_says_how_to_resume(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", "failing", "--dir", "wf")
    assert code == 1
    run_id = run_id_of(out)
    assert "StepCompleted step=compile kind=script status=failed" in out
    assert "exited with code 3" in out
    assert "RunCompleted succeeded=false" in out
    assert f"resume with: runkon-flow resume {run_id}" in err
    assert "retry the" not in err and "nothing to retry" not in err  # no fan-out items to retry
    assert "error:" not in err, err  # the command itself went fine
    assert "step=never" not in out


def test_a_failed_run_s_own_error_says_why_its_step_failed(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's error (the last line a CI log shows, `runs --json`'s `error`, a hook's text) is
    not only which step failed but why: the step's exit code and the last line of its stderr —
    bounded, however long the step's error."""
    script = "echo starting; echo lint: 3 errors in a.py >&2; exit 3"
    write(home / "wf" / "lint.wf", f'workflow lint {{\n  script check {{ run = "{script}" }}\n}}\n')
    code, out, _ = cli(capsys, "run", "lint", "--dir", "wf")
    assert code == 1
    why = "Script 'check' exited with code 3 · lint: 3 errors in a.py"
    assert events_of(out)[-1][1:] == (
        "RunCompleted",
        f"succeeded=false error=\"Step 'check' failed after 1 attempt: {why}\"",
    )
    [entry] = json.loads(cli(capsys, "runs", "--json")[1])
    assert entry["error"] == f"workflow error: Step 'check' failed after 1 attempt: {why}"

    huge = "x" * 5000
    script = f"echo {huge} >&2; exit 3"
    write(home / "wf" / "lint.wf", f'workflow lint {{\n  script check {{ run = "{script}" }}\n}}\n')
    assert cli(capsys, "run", "lint", "--dir", "wf")[0] == 1
    error = json.loads(cli(capsys, "runs", "--json")[1])[0]["error"]
    assert error.startswith("workflow error: Step 'check' failed after 1 attempt: xxx")
    assert len(error) < 400 and error.endswith("x…")


def test_quiet_progress_keeps_the_outcome_and_the_failures_only(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "run", "failing", "--dir", "wf", "--progress", "quiet")
    assert code == 1
    assert [t for _, t, _ in events_of(out)] == ["RunStarted", "StepCompleted", "RunCompleted"]


def test_memory_runs_leave_no_database_behind(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "run", "build", "--dir", "wf", "--memory")
    assert code == 0, err
    assert "db=:memory:" in out.splitlines()[0]
    assert not (home / "runs.db").exists()


def test_a_workflow_path_makes_its_folder_a_workflow_directory(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", "wf/build.wf", "--input", "target=cli")
    assert code == 0, err  # the agent beside the file was found
    assert "compiling cli" in out


def test_the_default_directory_is_sample_workflows_when_present(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "sample_workflows" / "hello.wf", 'workflow hello {\n  script hi { run = "echo hi" }\n}\n')
    code, out, err = cli(capsys, "run", "hello")
    assert code == 0, err
    assert "line=hi" in out


def test_without_sample_workflows_the_current_directory_is_searched(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "here.wf", 'workflow here {\n  script hi { run = "echo here" }\n}\n')
    assert cli(capsys, "run", "here")[0] == 0


def test_live_progress_redraws_in_place_and_ends_with_the_final_status(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "run", "build", "--dir", "wf", "--progress", "live")
    assert code == 0
    assert "\x1b[" in out  # cursor movement / colour: it is the live view
    assert out.endswith("\x1b[?25h")  # the cursor is given back
    assert "completed" in out.splitlines()[-2]  # the final frame, then the cursor code


def test_auto_progress_is_plain_when_stdout_is_not_a_terminal(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "run", "build", "--dir", "wf")
    assert "\x1b[" not in out


# --------------------------------------------------------------------------- bad input: nothing written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nope", "--dir", "wf"], "workflow not found: nope (available: build, deploy, failing)"),
        (["run", "deploy", "--dir", "wf"], "Missing required input: 'env'. Use --input env=<value>."),
        (["run", "deploy", "--dir", "wf", "-i", "env"], "--input 'env': expected KEY=VALUE"),
        (["run", "deploy", "--dir", "wf", "-i", "=x"], "--input '=x': expected KEY=VALUE"),
        (["run", "deploy", "--dir", "wf", "-i", "env=a", "-i", "env=b"], "--input env is given twice"),
        (
            ["run", "deploy", "--dir", "wf", "-i", "env=a", "-i", "zone=b"],
            "Unknown input 'zone' for workflow 'deploy' (it declares: env, region).",
        ),
        (
            ["run", "deploy", "--dir", "wf", "-i", "env=a", "-i", "regoin=b"],
            "Unknown input 'regoin' for workflow 'deploy' (it declares: env, region); did you mean `region`?",
        ),
        (["run", "build", "--dir", "wf", "-i", "verbose=maybe"], "Input 'verbose' is boolean"),
        (["run", "build", "--dir", "missing"], "--dir missing: no such directory"),
        (["run", "wf/absent.wf"], "no such workflow file: wf/absent.wf"),
        (["run", "build", "--dir", "wf", "--db", "x.db", "--memory"], "not allowed with argument"),
        (["run", "build", "--dir", "wf", "--lease-ttl", "0"], "must be at least 1"),
    ],
)
def test_command_line_mistakes_exit_2_with_one_message_and_create_no_run(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert out == ""
    assert stored_runs(home) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", "wf/items.yaml"],
            "wf/items.yaml is not a workflow file (its name does not end in .wf); "
            "run takes a workflow name or a path to a .wf file",
        ),
        (["run", "items.yaml", "--dir", "wf"], "items.yaml is not a workflow file"),
        (
            ["run", "wf/"],
            "wf/ is a directory; run takes a workflow name (with --dir wf/) or a path to a .wf file",
        ),
    ],
)
def test_a_file_that_is_not_a_workflow_is_named_as_such_not_called_missing(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """`run items.yaml` (an item list beside the workflows) said `workflow not found: items.yaml
    (available: …)`, as if the file were not there; `validate` already says what it is."""
    write(home / "wf" / "items.yaml", "- a\n- b\n")
    write(home / "items.yaml", "- a\n")
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "not found" not in err
    assert out == ""
    assert stored_runs(home) == []


def test_a_bad_lease_ttl_in_the_environment_is_a_usage_error(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNKON_LEASE_TTL", "soon")
    code, _, err = cli(capsys, "run", "build", "--dir", "wf")
    assert code == 2
    assert "RUNKON_LEASE_TTL: expected a whole number, got 'soon'" in err


def test_a_broken_workflow_file_is_reported_at_its_line_and_column(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "wf" / "typo.wf", "workflow typo {\n  call x { retries = }\n}\n")
    for target in ("typo", "wf/typo.wf"):
        code, out, err = cli(capsys, "run", target, "--dir", "wf")
        assert code == 1
        lines = err.splitlines()
        assert lines[0].startswith("wf/typo.wf:2:22: ")  # as the user named it (--dir wf)
        assert lines[1:3] == [" 2 |   call x { retries = }", "   |                      ^"]
        assert f"workflow '{target}' cannot be loaded; nothing was run" in lines[-1]
        assert out == ""
    assert stored_runs(home) == []


def test_a_missing_closing_brace_names_the_block_left_open_in_validate_and_run(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both said only `expected … found end of file` at the last line."""
    write(home / "wf" / "b.wf", 'workflow b {\n  script s { run = "x"\n}\n')
    hint = (
        "(hint: the `{` of `script s` at line 2, column 12 is not closed: judging by the indentation, "
        "its `}` is missing before line 3)"
    )
    for command in (("validate", "wf/b.wf"), ("run", "b", "--dir", "wf")):
        code, _, err = cli(capsys, *command)
        assert code == 1
        first = err.splitlines()[0]
        assert first.startswith("wf/b.wf:4:1: expected ") and first.endswith(f"found end of file {hint}")


def test_an_invalid_workflow_is_reported_with_every_problem_and_not_run(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "wf" / "lost.wf", "workflow lost {\n  call nobody\n  call noone\n}\n")
    code, out, err = cli(capsys, "run", "lost", "--dir", "wf")
    assert code == 1
    assert out == ""
    assert "wf/lost.wf:2:3: call 'nobody': no registered ActionExecutor for 'nobody'" in err
    assert "wf/lost.wf:3:3: call 'noone'" in err
    assert "workflow 'lost' is not valid; nothing was run" in err
    assert stored_runs(home) == []


def test_an_unusable_database_is_one_clear_message(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "junk.db").write_text("this is not sqlite" * 100)
    code, out, err = cli(capsys, "run", "build", "--dir", "wf", "--db", "junk.db")
    assert code == 1
    assert "cannot open run database junk.db: file is not a database" in err
    assert out == ""
    (home / "blocker").write_text("a file where a directory should be")
    code, _, err = cli(capsys, "run", "build", "--dir", "wf", "--db", "blocker/runs.db")
    assert code == 1
    assert "cannot create the directory for run database blocker/runs.db" in err


def test_an_unwritable_events_file_is_reported_before_the_run_is_created(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", "build", "--dir", "wf", "--events", "no/such/dir/e.jsonl")
    assert code == 1
    assert out == ""
    assert "--events no/such/dir/e.jsonl: cannot write" in err
    assert stored_runs(home) == []


@pytest.mark.parametrize("events", ["runs.db", "./runs.db-wal"])
def test_an_events_file_naming_the_run_database_is_refused_and_the_history_kept(
    home: Path, capsys: pytest.CaptureFixture[str], events: str
) -> None:
    assert cli(capsys, "run", "failing", "--dir", "wf")[0] == 1
    before = (home / "runs.db").read_bytes()
    code, out, err = cli(capsys, "run", "build", "--dir", "wf", "--events", events)
    assert code == 1 and out == ""
    assert f"--events {events}: that is the run database" in err
    code, _, err = cli(capsys, "resume", stored_runs(home)[0].id, "--dir", "wf", "--events", events)
    assert code == 1 and f"--events {events}: that is the run database" in err
    assert (home / "runs.db").read_bytes() == before
    assert [r.status for r in stored_runs(home)] == ["failed"]


# --------------------------------------------------------------------------- events file and replay


def test_the_events_file_holds_every_event_and_replays_like_the_live_run(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, live, _ = cli(capsys, "run", "build", "--dir", "wf", "--events", "events.jsonl")
    assert code == 0
    records = [parse_event_line(line) for line in (home / "events.jsonl").read_text().splitlines()]
    assert all(r is not None for r in records)
    run_id = run_id_of(live)
    assert {r.run_id for r in records} == {run_id}
    assert [r.event.type for r in records] == [t for _, t, _ in events_of(live)]
    json.loads((home / "events.jsonl").read_text().splitlines()[0])  # plain JSON objects

    code, replayed, err = cli(capsys, "replay", "events.jsonl")
    assert code == 0, err
    assert replayed.splitlines() == live.splitlines()[1:]


def test_replay_exits_like_the_recorded_run(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "run", "failing", "--dir", "wf", "--events", "failed.jsonl")[0] == 1
    assert cli(capsys, "replay", "failed.jsonl")[0] == 1
    cancelled = home / "cancelled.jsonl"
    cancelled.write_text(
        "\n".join(
            EngineEventData(timestamp=1, ts=1.0 + i, run_id="01" + "A" * 24, event=e).to_json_line()
            for i, e in enumerate(
                [RunStarted(workflow_name="x"), RunCancelled(reason=CancellationReason.user())]
            )
        )
        + "\n"
    )
    code, out, _ = cli(capsys, "replay", str(cancelled))
    assert code == 130
    assert 'RunCancelled reason="by the user"' in out


def test_replay_skips_unknown_events_and_names_the_line_of_a_broken_record(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = EngineEventData(
        timestamp=1, ts=1.0, run_id="R1", event=RunStarted(workflow_name="x")
    ).to_json_line()
    future = json.dumps({"timestamp": 1, "ts": 1.5, "run_id": "R1", "event": {"type": "SomethingNew"}})
    write(home / "mixed.jsonl", f"{good}\n{future}\n\nnot json at all\n")
    code, out, err = cli(capsys, "replay", "mixed.jsonl")
    assert code == 1
    assert out.splitlines() == [format_event_line(parse_event_line(good))]
    assert "mixed.jsonl:4: not a runkon event record" in err
    assert cli(capsys, "replay", "absent.jsonl")[0] == 2


def test_replay_of_a_cut_off_file_says_the_run_did_not_end_there(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "run", "build", "--dir", "wf", "--events", "e.jsonl")[0] == 0
    write(home / "t.jsonl", "".join((home / "e.jsonl").read_text().splitlines(keepends=True)[:3]))
    code, out, err = cli(capsys, "replay", "t.jsonl")
    assert code == 1 and len(out.splitlines()) == 3
    assert err.startswith("t.jsonl ends before the run did (no RunCompleted or RunCancelled): ")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"a":1}', "it has no timestamp, ts, run_id or event"),
        ("[1, 2]", "an array in JSON, not an event object"),
        ("{oops", "not JSON: Expecting property name enclosed in double quotes at column 2"),
        (
            '{"timestamp": 1, "ts": "soon", "run_id": "R1", "event": {"type": "StepStarted"}}',
            "its StepStarted event has no step_name; ts should be a valid number, unable to parse "
            "string as a number",
        ),
    ],
)
def test_replay_says_in_words_why_a_line_is_not_an_event(
    home: Path, capsys: pytest.CaptureFixture[str], line: str, why: str
) -> None:
    write(home / "bad.jsonl", line + "\n")
    code, out, err = cli(capsys, "replay", "bad.jsonl")
    assert (code, out) == (1, "")
    assert err == f"runkon-flow replay: error: bad.jsonl:1: not a runkon event record ({why})\n"


def test_live_replay_draws_the_status_block(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "run", "build", "--dir", "wf", "--events", "e.jsonl")[0] == 0
    code, out, _ = cli(capsys, "replay", "e.jsonl", "--progress", "live")
    assert code == 0
    assert "build" in out and "completed" in out and "\x1b[" in out


# --------------------------------------------------------------------------- Ctrl-C (real processes)

WAITER = """workflow waiter {
  script first { run = "echo first" }
  script hold { run = "echo $$ > hold.pid; while [ ! -f go ]; do sleep 0.05; done" }
  script last { run = "echo last" }
}
"""


def _spawn_run(home: Path, workflow: str, **env: str):
    out, err = home / f"{workflow}.out", home / f"{workflow}.err"
    proc = spawn(
        ["run", workflow, "--dir", "wf", "--db", str(home / "runs.db")],
        home,
        stdout=out,
        stderr=err,
        env=cli_env(**env),
    )
    return proc, out, err


def _signal_waiter(home: Path, sig: signal.Signals) -> tuple[str, str, str]:
    """Run `waiter`, send `sig` while its hold step runs, expect exit 130: (stdout, stderr, run id)."""
    write(home / "wf" / "waiter.wf", WAITER)
    proc, out, err = _spawn_run(home, "waiter")
    try:
        wait_for((home / "wf" / "hold.pid").exists, "the hold step to start")
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 130
    finally:
        stop(proc)
    text = out.read_text()
    return text, err.read_text(), run_id_of(text)


def test_sigterm_is_recorded_as_sigterm_not_ctrl_c_and_the_run_stays_resumable(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `timeout 5 runkon-flow run …` or `kill -TERM`: the run says it was terminated, not Ctrl-C.
    text, err_text, run_id = _signal_waiter(home, signal.SIGTERM)
    assert "terminated (SIGTERM)" in text and "Ctrl-C again" not in text + err_text
    assert "cancelling the run… (a second SIGTERM or Ctrl-C forces exit)" in text + err_text
    assert f"resume with: runkon-flow resume {run_id}" in err_text
    with SqliteStore(home / "runs.db") as store:
        assert store.get_run(run_id).status is RunStatus.CANCELLED
    _, shown, _ = cli(capsys, "show", run_id, "--db", str(home / "runs.db"))
    assert "cancelled: terminated (SIGTERM)" in shown


def test_ctrl_c_cancels_the_run_cleanly_exit_130_and_the_run_stays_resumable(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, err_text, run_id = _signal_waiter(home, signal.SIGINT)
    assert "StepCompleted step=hold kind=script status=cancelled" in text
    assert "RunCancelled reason=" in text and "interrupted (Ctrl-C)" in text
    assert "cancelling the run" in err_text
    assert f"resume with: runkon-flow resume {run_id}" in err_text
    with SqliteStore(home / "runs.db") as store:
        assert store.get_run(run_id).status is RunStatus.CANCELLED

    (home / "wf" / "go").touch()
    code, resumed, _ = cli(capsys, "resume", run_id, "--dir", "wf", "--db", str(home / "runs.db"))
    assert code == 0
    types = [t for _, t, _ in events_of(resumed)]
    assert types[0] == "RunResumed"
    assert "step=first" not in resumed  # completed before the cancel: not run again
    assert "line=last" in resumed


def test_the_cancelling_note_is_no_write_to_stdout_a_stderr_no_one_reads_leaves_the_events(
    home: Path,
) -> None:
    """`cancelling the run…` is a note for the user, written to stderr — not through the guard of
    stdout, whose event lines (`run … 2>/dev/null | consumer`, `--events /dev/stdout`) go on: a
    stderr whose reader went away took the note's failed write for a closed stdout, and the
    run's last events (its cancelled step, `RunCancelled`) were never printed."""
    write(home / "wf" / "waiter.wf", WAITER)
    out = home / "waiter.out"
    read_end, write_end = os.pipe()
    os.close(read_end)  # no one reads stderr
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runkon_flow.cli", "run", "waiter", "--dir", "wf"],
            cwd=home,
            stdout=out.open("w"),
            stderr=write_end,
            stdin=subprocess.DEVNULL,
            env=cli_env(),
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    finally:
        os.close(write_end)
    try:
        wait_for((home / "wf" / "hold.pid").exists, "the hold step to start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        stop(proc)
    text = out.read_text()
    assert "StepCompleted step=hold kind=script status=cancelled" in text, text
    assert "RunCancelled reason=" in text, text  # before: stdout silenced at the note
    assert "cancelling the run" not in text  # stdout holds the header and event lines only


def test_a_waiting_gate_s_answer_note_on_a_stderr_no_one_reads_leaves_the_events_on_stdout(
    home: Path,
) -> None:
    """Under a waiting gate's line, plain output says on stderr how to answer it; with stderr's
    reader gone, that failed write was taken for a closed stdout and the run's later events
    (the gate timing out, `RunCompleted`) were never printed."""
    gate = 'gate human_approval { prompt = "Ship?" timeout = "1s" on_timeout = continue }'
    write(home / "wf" / "asks.wf", f"workflow asks {{\n  {gate}\n}}\n")
    out = home / "asks.out"
    read_end, write_end = os.pipe()
    os.close(read_end)  # no one reads stderr
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runkon_flow.cli", "run", "asks", "--dir", "wf", "--no-notify"],
            cwd=home,
            stdout=out.open("w"),
            stderr=write_end,
            stdin=subprocess.DEVNULL,
            env=cli_env(),
        )
    finally:
        os.close(write_end)
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)
    text = out.read_text()
    assert "GateWaiting" in text and "RunCompleted succeeded=true" in text, text  # before: cut at the gate


def test_a_second_ctrl_c_forces_exit_and_the_run_can_be_resumed_later(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "wf" / "waiter.wf", WAITER)
    db = home / "runs.db"
    proc, out, err = _spawn_run(home, "waiter", RUNKON_LEASE_TTL="1")
    try:
        wait_for((home / "wf" / "hold.pid").exists, "the hold step to start")
        # Hold the database's write lock: the clean cancel cannot get anywhere until we let go, so the
        # second Ctrl-C surely arrives while the first is still being handled.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: "cancelling the run" in err.read_text(), "the first Ctrl-C to be noticed")
            proc.send_signal(signal.SIGINT)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert proc.wait(timeout=30) == 130
    finally:
        stop(proc)
        (home / "wf" / "go").touch()  # lets the orphaned script finish
    run_id = run_id_of(out.read_text())
    assert "forced exit" in err.read_text()
    with SqliteStore(db) as store:
        assert store.get_run(run_id).status in (RunStatus.CANCELLING, RunStatus.RUNNING)
    code, resumed, err_text = cli(capsys, "resume", run_id, "--dir", "wf", "--db", str(db), "--wait")
    assert code == 0, err_text
    assert "step=first" not in resumed
    assert "RunCompleted succeeded=true" in resumed


def test_plain_output_of_a_real_process_is_line_per_event_without_terminal_codes(home: Path) -> None:
    result = run_cli_process(["run", "build", "--dir", "wf", "--db", str(home / "runs.db")], home, cli_env())
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    events_of(result.stdout)  # every line after the first is an event line


# --------------------------------------------------------------------------- printers


def _data(event, run_id: str = "01RUN", ts: float = 1_700_000_000.0) -> EngineEventData:
    return EngineEventData(timestamp=int(ts), ts=ts, run_id=run_id, event=event)


def test_plain_lines_are_stable_and_quote_values_with_spaces() -> None:
    line = format_event_line(
        _data(
            StepCompleted(
                step_name="build",
                step_key="build",
                succeeded=False,
                kind="script",
                status="failed",
                duration_ms=12,
                error="exit 3\nboom",
            )
        )
    )
    assert line == (
        "2023-11-14T22:13:20.000Z 01RUN StepCompleted step=build kind=script status=failed duration_ms=12 "
        'error="exit 3\\nboom"'
    )
    assert "\n" not in line
    empty = format_event_line(_data(StepOutput(step_id="s", step_name="x", line="")))
    assert empty.endswith('StepOutput step=x stream=stdout line=""')


def test_quiet_plain_printer_drops_routine_events_of_child_runs() -> None:
    out = io.StringIO()
    printer = PlainPrinter(out, quiet=True, top_run_id="TOP", notes=io.StringIO())
    printer.feed(_data(RunStarted(workflow_name="w"), "TOP"))
    printer.feed(_data(RunStarted(workflow_name="child", parent_run_id="TOP"), "KID"))
    printer.feed(_data(StepCompleted(step_name="a", succeeded=True), "KID"))
    printer.feed(_data(StepCompleted(step_name="b", succeeded=False, error="x"), "KID"))
    printer.feed(_data(RunCompleted(succeeded=True), "KID"))
    printer.feed(_data(RunCompleted(succeeded=True), "TOP"))
    assert [line.split()[2] for line in out.getvalue().splitlines()] == [
        "RunStarted",
        "StepCompleted",
        "RunCompleted",
    ]


def _live(now: list[float], **kwargs) -> tuple[LiveView, io.StringIO]:
    stream = io.StringIO()
    view = LiveView(stream, color=False, unicode=True, now=lambda: now[0], width=60, height=12, **kwargs)
    return view, stream


def test_the_live_view_shows_status_fan_out_progress_active_steps_and_waiting_gates() -> None:
    now = [1000.0]
    view, stream = _live(now)
    t = 1000.0
    view.feed(_data(RunStarted(workflow_name="nightly"), "TOP", t))
    view.feed(_data(StepStarted(step_name="prep", step_id="s1", kind="script"), "TOP", t))
    for line in ("warming caches", "", "<<<FLOW_OUTPUT>>>", '{"markers": []}', "<<<END_FLOW_OUTPUT>>>"):
        view.feed(_data(StepOutput(step_id="s1", step_name="prep", line=line), "TOP", t))
    view.feed(_data(FanOutItemsCollected(count=4, step_id="f1", foreach_name="lint"), "TOP", t))
    view.feed(_data(FanOutItemStarted(item_id="repo-a", step_id="f1"), "TOP", t))
    view.feed(
        _data(
            ChildRunStarted(
                child_run_id="KID", workflow_name="lint-one", parent_run_id="TOP", item_id="repo-a"
            ),
            "TOP",
            t,
        )
    )
    view.feed(_data(RunStarted(workflow_name="lint-one", parent_run_id="TOP"), "KID", t))
    view.feed(_data(StepStarted(step_name="lint", step_id="k1", kind="script"), "KID", t + 1))
    view.feed(_data(FanOutItemCompleted(item_id="repo-b", succeeded=True, step_id="f1"), "TOP", t))
    view.feed(_data(GateWaiting(gate_name="ship", step_id="g1", prompt="Ship?"), "TOP", t))
    now[0] = t + 3
    lines = view.render()
    assert lines[0].endswith("nightly · run TOP · running · 3.0s · steps ✓0 ✗0")
    # repo-a still runs while repo-b (never reported started) completed: one running, one done.
    assert lines[1] == "  foreach lint ████░░░░░░░░░░░░ 1/4 ✓1 ✗0 ⊘0 ▶1"
    assert lines[2] == "  ◷ gate ship waiting for approval"
    assert lines[3] == "  ▶ prep  3.0s  · warming caches"
    assert lines[4] == "  ▶ lint-one[repo-a] › lint  2.0s"
    assert all(len(line) < 60 for line in lines)
    permanent = stream.getvalue()
    assert "gate ship waiting: Ship?" in permanent
    assert "approve: runkon-flow approve TOP ship" in permanent


def test_the_live_view_prints_finished_steps_above_the_block_and_a_final_frame() -> None:
    now = [10.0]
    view, stream = _live(now)
    view.feed(_data(RunStarted(workflow_name="w"), "TOP", 10.0))
    view.feed(_data(StepStarted(step_name="a", step_id="s1", kind="call"), "TOP", 10.0))
    view.tick()
    assert "\x1b[?25l" in stream.getvalue()  # the cursor is hidden while the block is drawn
    view.feed(
        _data(
            StepCompleted(step_name="a", step_id="s1", succeeded=False, error="boom\nmore", duration_ms=1500),
            "TOP",
            11.5,
        )
    )
    view.feed(_data(RunCompleted(succeeded=False, error="workflow error: x"), "TOP", 12.0))
    view.close()
    text = stream.getvalue()
    assert "✗ a failed  1.5s: boom · more" in text  # its first and last line
    assert "✗ run TOP failed after 2.0s: boom · more" in text  # why, not only which step
    assert "\x1b[2A\r\x1b[J✗ a failed" in text  # the 2-line block was erased before a permanent line
    assert text.endswith("\x1b[?25h")
    assert view.outcome.exit_code == 1


def test_the_live_view_s_last_line_keeps_why_the_run_failed_when_cut_to_the_terminal() -> None:
    """`✗ run … failed after 0.0s: import-repos: Script 'impo…` at 80 columns: the cause was cut
    off. The part before its last ` · ` gives way first."""
    now = [10.0]
    view, stream = _live(now)
    view.feed(_data(RunStarted(workflow_name="w"), "TOP", 10.0))
    view.feed(_data(StepStarted(step_name="import", step_id="s1", kind="script"), "TOP", 10.0))
    error = "Script 'import' exited with code 3\nrate limited: retry in 30s"
    view.feed(
        _data(StepCompleted(step_name="import", step_id="s1", succeeded=False, error=error), "TOP", 11.0)
    )
    view.feed(_data(RunCompleted(succeeded=False, error="workflow error: x"), "TOP", 12.0))
    view.close()
    [last] = [line for line in stream.getvalue().splitlines() if "run TOP failed" in line]
    last = last.split("\x1b[J")[-1]
    assert last == "✗ run TOP failed after 2.0s: rate limited: retry in 30s", last  # the cause alone
    assert len(last) <= 59


def test_the_live_view_says_an_engine_warning_whole_the_terminal_wraps_it() -> None:
    """A warning is said once, in the view (not again on stderr when both are the terminal): cut
    to the terminal's width it lost its `(hint: did you mean `name`?)`."""
    view, stream = _live([10.0])
    view.feed(_data(RunStarted(workflow_name="w"), "TOP", 10.0))
    message = "script 'hello': `{{nmae}}` has no value here, so it is left empty (hint: did you mean `name`?)"
    view.feed(_data(EngineLog(level="warning", message=message, step_name="hello"), "TOP", 10.0))
    view.close()
    assert f"! hello: {message}\n" in stream.getvalue()


def _fan_out_child(view: LiveView, foreach: str, workflow: str, item: str) -> None:
    """Feed a top-level run `TOP` whose foreach started child run `KID` for `item`."""
    view.feed(_data(RunStarted(workflow_name="w"), "TOP", 10.0))
    view.feed(_data(FanOutItemsCollected(count=1, step_id="f1", foreach_name=foreach), "TOP", 10.0))
    view.feed(_data(FanOutItemStarted(item_id=item, step_id="f1"), "TOP", 10.0))
    child = ChildRunStarted(
        child_run_id="KID", workflow_name=workflow, parent_run_id="TOP", parent_step_id="f1", item_id=item
    )
    view.feed(_data(child, "TOP", 10.0))
    view.feed(_data(RunStarted(workflow_name=workflow, parent_run_id="TOP"), "KID", 10.0))


def test_a_failed_step_of_a_fan_out_child_is_named_by_its_workflow_and_item() -> None:
    view, stream = _live([10.0])
    _fan_out_child(view, "lint", "lint-one", "repo-a")
    view.feed(_data(StepStarted(step_name="lint", step_id="k1", kind="script"), "KID", 10.0))
    view.feed(_data(StepCompleted(step_name="lint", step_id="k1", succeeded=False, error="bad"), "KID", 11.0))
    assert "✗ lint-one[repo-a] › lint failed: bad" in stream.getvalue()


def test_a_failed_item_step_cut_at_80_columns_still_says_why() -> None:
    stream = io.StringIO()
    view = LiveView(stream, color=False, unicode=True, now=lambda: 10.0, width=80, height=12)
    _fan_out_child(view, "import-all", "import-record", "rec-05")
    error = "Script 'import' exited with code 3\nstderr:\nrate limited: retry after 30s (request 7f3a9c)"
    failed = StepCompleted(step_name="import", step_id="k1", succeeded=False, error=error, duration_ms=100)
    view.feed(_data(failed, "KID", 10.1))
    line = next(line for line in stream.getvalue().splitlines() if "› import failed" in line)
    # Before: `… failed  0.1s: Script 'import' exited with cod…`, the cause cut off.
    assert line == "✗ import-record[rec-05] › import failed  0.1s: rate limited: retry after 30s (…"
    assert len(line) == 79


def test_the_live_view_caps_active_lines_to_the_terminal_and_falls_back_to_ascii() -> None:
    now = [0.0]
    stream = io.StringIO()
    view = LiveView(stream, color=False, unicode=False, now=lambda: now[0], width=40, height=8)
    view.feed(_data(RunStarted(workflow_name="a-very-long-workflow-name-indeed"), "TOP", 0.0))
    for i in range(20):
        view.feed(_data(StepStarted(step_name=f"step-{i}", step_id=f"s{i}", kind="call"), "TOP", 0.0))
    lines = view.render()
    assert len(lines) <= 8
    assert lines[-1].strip().endswith("more running")
    assert all(len(line) <= 39 for line in lines)
    assert all(ord(ch) < 128 for line in lines for ch in line)


def test_on_a_terminal_the_live_view_is_chosen_by_itself(home: Path) -> None:
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runkon_flow.cli",
            "run",
            "build",
            "--dir",
            "wf",
            "--db",
            str(home / "runs.db"),
        ],
        cwd=home,
        stdout=child_fd,
        stderr=child_fd,
        stdin=subprocess.DEVNULL,
        env=cli_env(TERM="xterm"),
    )
    os.close(child_fd)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(main_fd)
        stop(proc)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[?25l" in text and "\x1b[?25h" in text  # the block was drawn and the cursor given back
    assert "run_id=" in text and "completed" in text
    assert "RunStarted workflow=build" not in text  # not the plain line format


def test_a_run_from_the_command_line_takes_its_start_up_heap_out_of_full_collections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runkon-flow run` owns its process: before the run it freezes what start-up built, so the
    garbage collector's full collections during a big fan-out do not re-scan it, and collects the
    young generation less often. Called from another program (`main([...])`) it leaves that
    program's collector alone."""
    write(tmp_path / "hello.wf", 'workflow hello { script s { run = "true" } }')
    probe = (
        "import gc, sys\n"
        "from runkon_flow.cli import main\n"
        f"sys.argv = ['runkon-flow', 'run', 'hello', '--dir', {str(tmp_path)!r}, '--memory',\n"
        "            '--progress', 'quiet']\n"
        "code = main()\n"
        "print('young', gc.get_threshold()[0], 'frozen', gc.get_freeze_count())\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split("frozen")[-1]) > 10_000
    assert int(done.stdout.split("young")[-1].split()[0]) == YOUNG_THRESHOLD  # collected less often
    before, threshold = gc.get_freeze_count(), gc.get_threshold()
    code, _, err = cli(capsys, "run", "hello", "--dir", str(tmp_path), "--memory", "--progress", "quiet")
    assert code == 0, err
    assert gc.get_freeze_count() == before and gc.get_threshold() == threshold


def test_run_says_the_warnings_validate_says_once_on_stderr_before_it_runs(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` checked the workflow as `validate` does but kept only the errors: a typo that made an
    option be ignored (`timout`), a step name used twice, a trigger v1 ignores — all said by
    `validate` — ran without a word."""
    write(
        home / "wf" / "noisy.wf",
        "workflow noisy {\n"
        "  meta { trigger = pr }\n"
        '  script build { run = "echo one" timout = "5" }\n'
        '  script build { run = "echo two" }\n'
        "}\n",
    )
    _, _, said = cli(capsys, "validate", "wf/noisy.wf")
    warnings = [line.split(": ", 1)[1] for line in said.splitlines() if ": warning: " in line]
    assert len(warnings) == 3, said
    code, out, err = cli(capsys, "run", "noisy", "--dir", "wf", "--progress", "quiet")
    assert code == 0, err
    shown = [line for line in err.splitlines() if ": warning: " in line]
    assert [line.split(": ", 1)[1] for line in shown] == warnings  # each once, in validate's words
    assert all(line.startswith("wf/noisy.wf:") for line in shown), shown
    assert " 3 |   script build" in err  # with the source line, as validate shows it
    assert run_id_of(out) == stored_runs(home)[0].id
    code, _, err = cli(capsys, "run", "build", "--dir", "wf", "--progress", "quiet")
    assert (code, err) == (0, "")  # nothing to say: nothing said
