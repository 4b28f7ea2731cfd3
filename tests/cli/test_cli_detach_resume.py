"""`resume`, `retry` and `rerun` with --detach: the run is taken up again (or rerun) by a background
process of its own, as `run --detach` starts one (tests/cli/test_cli_watch.py), and the starting
command exits once that process holds the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.persistence import RunStatus, SqliteStore

from tests.cli.run_helpers import cli, cli_env, run_cli_process, run_id_of, wait_for, write

# `hold` fails until `ready` exists, then waits for `go`: the run fails first, and its resume is
# still going when the starting command has exited.
GATED = """workflow gated {
  script first { run = "echo first" }
  script hold { run = "test -f ready || exit 4; while [ ! -f go ]; do sleep 0.05; done; echo held" }
  script last { run = "echo last" }
}
"""
# Item i3 fails until `fixed` exists, then waits for `go`.
FAN = """workflow fan {
  foreach all {
    over = static workflow = item max_parallel = 2 scope = { file = "items.yaml" }
    inputs = { name = "{{item.id}}" }
  }
}
"""
ITEM = """workflow item {
  inputs { name }
  script work {
    run = "echo item {{name}}; [ {{name}} != i3 ] || { [ -f fixed ] && until [ -f go ]; do sleep 0.1; done; }"
  }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNKON_DB", raising=False)
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "wf" / "gated.wf", GATED)
    write(tmp_path / "wf" / "fan.wf", FAN)
    write(tmp_path / "wf" / "item.wf", ITEM)
    write(tmp_path / "wf" / "items.yaml", "".join(f"- id: i{n}\n" for n in range(5)))
    yield tmp_path
    (tmp_path / "wf" / "go").touch()  # a background run a failed test left waiting ends


DB = ["--db", "runs.db"]


def detached(home: Path, *argv: str) -> tuple[str, str]:
    """Run `runkon-flow ARGV` (with --detach) in a process group of its own, as a terminal's job;
    once it has exited its whole group is gone — nothing of it holds the run. (stdout, stderr)."""
    starter = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", *argv, *DB, "--detach"],
        cwd=home,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = starter.communicate(timeout=60)
    assert starter.returncode == 0, (out, err)
    with pytest.raises(ProcessLookupError):
        os.killpg(starter.pid, signal.SIGKILL)
    return out, err


def said_how_to_follow(home: Path, out: str, run_id: str) -> Path:
    """The run id first, then the log and the commands to watch and cancel it, with the --db given
    — made absolute, so they work from any directory (`--db runs.db` was printed as given, and
    the log as `logs/…`: from another directory neither was found)."""
    assert run_id_of(out) == run_id
    db = home.resolve() / "runs.db"
    log = db.parent / "logs" / f"{run_id}.log"
    assert f"db={db}\n" in out
    assert "running in the background (pid " in out and f"log: {log}\n" in out
    assert f"watch it:  runkon-flow watch {run_id} --db {db}\n" in out
    assert f"cancel it: runkon-flow cancel {run_id} --db {db}\n" in out
    return log


def held_by_its_runner(home: Path, run_id: str) -> None:
    with SqliteStore(home / "runs.db") as store:
        run = store.get_run(run_id)
    assert run is not None and run.status is RunStatus.RUNNING and run.owner_token


def watched_to_the_end(home: Path, run_id: str) -> str:
    (home / "wf" / "go").touch()
    elsewhere = home / "elsewhere"  # the printed command, from another directory
    elsewhere.mkdir(exist_ok=True)
    db = str(home.resolve() / "runs.db")
    result = run_cli_process(["watch", run_id, "--db", db, "--progress", "plain"], elsewhere, cli_env())
    assert result.returncode == 0, result.stderr
    assert "RunCompleted succeeded=true" in result.stdout
    return result.stdout


def test_resume_detach_resumes_the_run_in_the_background_and_watch_follows_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "run", "gated", "--dir", "wf", *DB)
    assert code == 1
    run_id = run_id_of(out)
    (home / "wf" / "ready").touch()
    out, _ = detached(home, "resume", run_id, "--dir", "wf")
    log = said_how_to_follow(home, out, run_id)
    wait_for(lambda: "StepStarted step=hold" in log.read_text(), "the resumed run to reach hold")
    held_by_its_runner(home, run_id)
    watched = watched_to_the_end(home, run_id)
    assert "StepOutput step=hold stream=stdout line=held" in watched
    assert "RunCompleted succeeded=true" in log.read_text()


def test_a_relative_runkon_db_is_printed_absolute_too(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`$RUNKON_DB=runs.db`, no --db: the commands printed carry the database absolute, since in
    another directory the same variable names another file (before: no --db at all)."""
    monkeypatch.setenv("RUNKON_DB", "runs.db")
    code, out, _ = cli(capsys, "run", "gated", "--dir", "wf")
    assert code == 1
    run_id = run_id_of(out)
    (home / "wf" / "ready").touch()
    starter = subprocess.run(
        [sys.executable, "-m", "runkon_flow.cli", "resume", run_id, "--dir", "wf", "--detach"],
        cwd=home,
        env=cli_env(RUNKON_DB="runs.db"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert starter.returncode == 0, starter.stderr
    said_how_to_follow(home, starter.stdout, run_id)
    watched_to_the_end(home, run_id)


def test_resume_detach_refuses_a_run_another_engine_holds_as_resume_does(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "run", "gated", "--dir", "wf", *DB)
    run_id = run_id_of(out)
    with SqliteStore(home / "runs.db") as store:
        assert store.acquire_lease(run_id, "other-engine", 600) is not None
    code, out, err = cli(capsys, "resume", run_id, "--dir", "wf", *DB, "--detach")
    assert code == 1 and out == ""
    assert "owned by another engine" in err and "pass --wait" in err
    assert not (home / "logs").exists()  # no background process was started


def test_resume_detach_says_so_when_its_runner_exits_before_taking_the_run(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run was not pending: it is left as it was (resumable), and the runner's log is shown."""
    from runkon_flow.cli import detach

    def broken_runner(db: Any, run_id: str, *args: Any, **kwargs: Any) -> Any:
        log = home / "logs" / f"{run_id}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "ab") as handle:
            code = "print('runkon-flow (detached): error: no such thing'); raise SystemExit(3)"
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=handle)
        proc.wait(60)
        return proc, log

    code, out, _ = cli(capsys, "run", "gated", "--dir", "wf", *DB)
    run_id = run_id_of(out)
    monkeypatch.setattr(detach, "spawn_runner", broken_runner)
    code, out, err = cli(capsys, "resume", run_id, "--dir", "wf", *DB, "--detach")
    assert code == 1 and out == ""
    assert f"the background process for run {run_id} exited (3) before taking it up" in err
    assert "the run is as it was" in err and "error: no such thing" in err
    with SqliteStore(home / "runs.db") as store:
        run = store.get_run(run_id)
    assert run is not None and run.status is RunStatus.FAILED and "not started" not in (run.error or "")


def test_retry_detach_retries_the_items_in_the_background_and_watch_follows_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "run", "fan", "--dir", "wf", *DB)
    assert code == 1
    run_id = run_id_of(out)
    (home / "wf" / "fixed").touch()
    out, err = detached(home, "retry", run_id, "--failed", "--yes", "--dir", "wf")
    assert "Retry 1 item" not in err  # --yes: nothing asked
    log = said_how_to_follow(home, out, run_id)
    wait_for(lambda: "item i3" in log.read_text(), "the retried item to start")
    held_by_its_runner(home, run_id)
    watched = watched_to_the_end(home, run_id)
    assert watched.count('line="item i3"') == 2  # the failed attempt, then the retry
    assert watched.count('line="item i0"') == 1  # completed items never run again


def test_retry_detach_without_a_terminal_needs_yes_and_starts_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "run", "fan", "--dir", "wf", *DB)
    run_id = run_id_of(out)
    result = run_cli_process(["retry", run_id, "--failed", "--dir", "wf", *DB, "--detach"], home, cli_env())
    assert result.returncode == 2 and result.stdout == ""
    assert "not asked without a terminal; pass --yes to go ahead" in result.stderr
    assert not (home / "logs").exists()
    with SqliteStore(home / "runs.db") as store:
        assert store.get_run(run_id).status is RunStatus.FAILED


def test_rerun_detach_reruns_in_the_background_and_watch_follows_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "wf" / "ready").touch()
    (home / "wf" / "go").touch()
    code, out, _ = cli(capsys, "run", "gated", "--dir", "wf", *DB)
    assert code == 0
    old = run_id_of(out)
    (home / "wf" / "go").unlink()
    write(home / "ev.jsonl", "a line of an earlier run\n")
    out, err = detached(home, "rerun", old, "--from", "hold", "--dir", "wf", "--events", "ev.jsonl")
    new = run_id_of(out)
    assert new != old and f"rerun of {old} from hold: reusing 1 step (first)" in err
    log = said_how_to_follow(home, out, new)
    wait_for(lambda: "StepStarted step=hold" in log.read_text(), "the rerun to reach hold")
    held_by_its_runner(home, new)
    watched = watched_to_the_end(home, new)
    assert "line=held" in watched and "StepStarted step=first" not in watched  # reused, not run again
    assert "reused_from=" + old in watched
    # A new run begins its --events file, as a foreground `rerun` does (a resume adds to it).
    wait_for(lambda: '"RunCompleted"' in (home / "ev.jsonl").read_text(), "the run's end in --events")
    assert "earlier run" not in (home / "ev.jsonl").read_text()


def test_retry_detach_runs_the_definition_chosen_here(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--definition current` reaches the background process (its retry default is `stored`)."""
    code, out, _ = cli(capsys, "run", "fan", "--dir", "wf", *DB)
    run_id = run_id_of(out)
    write(home / "wf" / "fan.wf", FAN.replace("max_parallel = 2", "max_parallel = 3"))
    (home / "wf" / "fixed").touch()
    (home / "wf" / "go").touch()
    argv = ["retry", run_id, "--failed", "--yes", "--definition", "current", "--dir", "wf", *DB, "--detach"]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    assert run_id_of(out) == run_id and "with the current definition" in err
    result = run_cli_process(["watch", run_id, *DB, "--progress", "plain"], home, cli_env())
    assert result.returncode == 0, result.stderr
    with SqliteStore(home / "runs.db") as store:
        run = store.get_run(run_id)
    assert run is not None and run.retry_request is not None
    assert json.loads(run.retry_request)["definition"] == "current"


@pytest.mark.parametrize("where", ["foreground", "detach"])
def test_a_run_whose_file_does_not_parse_now_resumes_its_stored_definition_wherever_it_runs(
    home: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """The workflow's file was edited after the run and does not parse now. One rule wherever the
    resume runs — here, in a background runner, or in the dashboard's own engine, which may still
    hold the file's last good definition (before, it resumed with that one and its runner with the
    stored one): the definition stored with the run, and the resume says so and why, at the
    file's line and column (before: `workflow 'gated' is not in …; use --dir to point at its
    folder`, while the file was right there)."""
    code, out, _ = cli(capsys, "run", "gated", "--dir", "wf", *DB)
    assert code == 1
    run_id = run_id_of(out)
    write(home / "wf" / "gated.wf", 'workflow gated {\n  script first { run = "echo first" }\n  script\n}\n')
    (home / "wf" / "ready").touch()
    note = f"note: workflow 'gated' does not parse now ({(home / 'wf' / 'gated.wf').resolve()}:"
    stored = "resuming with the definition stored with the run, and the workflows it started as they ran"
    if where == "foreground":
        (home / "wf" / "go").touch()
        code, out, err = cli(capsys, "resume", run_id, "--dir", "wf", *DB)
        assert code == 0, err
        log = out
    else:
        out, err = detached(home, "resume", run_id, "--dir", "wf")
        log = watched_to_the_end(home, run_id)
    assert note in err and stored in err and "(fix the file to resume with it)" in err, err
    assert "is not in" not in err
    assert "StepOutput step=hold stream=stdout line=held" in log  # the stored steps ran
    assert "StepOutput step=last stream=stdout line=last" in log
    assert "RunCompleted succeeded=true" in log
