"""`runkon-flow watch`, `run --detach` and `gc`: runs outlive the terminal that started them and are
followed from any process through the events the store keeps."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.events import parse_event_line
from runkon_flow.persistence import NewRun, RunStatus, SqliteStore

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
  script compile { run = "echo compiling; echo done" }
  script package { run = "echo packaged" }
}
"""
FAILING = """workflow failing {
  script compile { run = "echo broken >&2; exit 3" }
}
"""
WAITER = """workflow waiter {
  script first { run = "echo first" }
  script hold { run = "while [ ! -f go ]; do sleep 0.05; done; echo held" }
  script last { run = "echo last" }
}
"""
FAN = """workflow fan {
  foreach all { over = static workflow = leaf max_parallel = 4 scope = { file = "items.yaml" } }
}
"""
LEAF = """workflow leaf {
  script work { run = "echo item {{item.id}}" }
}
"""
# Items i0..i5 each print a line; i3 fails.
FLAKY_FAN = """workflow flaky_fan {
  foreach all {
    over = static workflow = flaky max_parallel = 2 scope = { file = "items.yaml" }
    inputs = { name = "{{item.id}}" }
  }
}
"""
FLAKY = """workflow flaky {
  inputs { name }
  script work { run = "echo item {{name}}; test {{name}} != i3" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    for name, text in (
        ("build", BUILD),
        ("failing", FAILING),
        ("waiter", WAITER),
        ("fan", FAN),
        ("leaf", LEAF),
        ("flaky_fan", FLAKY_FAN),
        ("flaky", FLAKY),
    ):
        write(tmp_path / "wf" / f"{name}.wf", text)
    write(tmp_path / "wf" / "items.yaml", "".join(f"- id: i{n}\n" for n in range(6)))
    return tmp_path


def plain_lines(out: str) -> list[str]:
    """The event lines of plain progress output (the header line dropped)."""
    return out.splitlines()[1:]


# --------------------------------------------------------------------------- watch a finished run


def test_watching_a_finished_run_prints_what_run_printed_and_exits_with_its_status(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "run", "fan", "--dir", "wf", "--progress", "plain")
    assert code == 0
    run_id = run_id_of(out)
    code, watched, _ = cli(capsys, "watch", run_id, "--progress", "plain")
    assert code == 0
    assert run_id_of(watched) == run_id
    assert plain_lines(watched) == plain_lines(out)  # byte for byte, child runs included
    assert len({r for r, _, _ in events_of(watched)}) == 7  # the run and its six item runs

    code, out, _ = cli(capsys, "run", "failing", "--dir", "wf", "--progress", "plain")
    assert code == 1
    code, watched, err = cli(capsys, "watch", run_id_of(out), "--progress", "plain")
    assert code == 1
    assert plain_lines(watched) == plain_lines(out)
    assert f"resume with: runkon-flow resume {run_id_of(out)}" in err


class FailsTwice:
    """`real`, refused by the store on its first two calls — a PostgreSQL server restarting —
    then answering again (`left`: failures not used up yet)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.left = 2

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from runkon_flow.errors import PersistenceError

        if self.left:
            self.left -= 1
            raise PersistenceError("run database postgresql://db/runkon: terminating connection")
        return self.real(*args, **kwargs)


def test_a_store_out_of_reach_for_a_while_does_not_end_the_watch(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a PostgreSQL server restarted while a run is watched: the first reads fail, then the
    # server answers again. The watch exited 1 at once (as for a failed run) while the run went on.
    from runkon_flow.cli import watch
    from runkon_flow.observe import outage

    code, out, _ = cli(capsys, "run", "build", "--dir", "wf", "--progress", "plain")
    assert code == 0
    run_id = run_id_of(out)
    monkeypatch.setattr(watch, "read_stored", FailsTwice(watch.read_stored))
    monkeypatch.setattr(outage, "RETRY_SECONDS", 0.0)
    code, watched, err = cli(capsys, "watch", run_id, "--progress", "plain")
    assert code == 0, err
    assert plain_lines(watched) == plain_lines(out)
    assert err.count("cannot read run") == 1 and "terminating connection" in err
    assert f"reading run {run_id} again" in err


def test_a_store_out_of_reach_after_the_run_ended_is_waited_out_too(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reads made once the run has ended (its failed steps, what to type next) go by the same
    # rule as the others: the watch of a failed run ended with the store's error instead of the
    # resume hint when the server restarted at that moment.
    from runkon_flow.observe import outage

    code, out, _ = cli(capsys, "run", "failing", "--dir", "wf", "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    flaky = FailsTwice(SqliteStore.get_steps)

    def get_steps(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        return flaky(self, *args, **kwargs)

    monkeypatch.setattr(SqliteStore, "get_steps", get_steps)
    monkeypatch.setattr(outage, "RETRY_SECONDS", 0.0)
    code, watched, err = cli(capsys, "watch", run_id, "--progress", "plain")
    assert code == 1
    assert not flaky.left, "the end-of-run reads were not made"
    assert plain_lines(watched) == plain_lines(out)
    assert err.count("cannot read run") == 1 and f"reading run {run_id} again" in err
    assert f"resume with: runkon-flow resume {run_id}" in err and "watch: error" not in err, err


def screen(text: str) -> list[str]:
    """What a terminal shows once `text` is written: blocks the live view erased are gone, colours
    and cursor codes left out."""
    lines: list[str] = []
    for part in re.split(r"(\x1b\[\d+A\r\x1b\[J)", text):
        erase = re.fullmatch(r"\x1b\[(\d+)A\r\x1b\[J", part)
        if erase:
            del lines[len(lines) - int(erase[1]) :]
        else:
            lines.extend(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", part).splitlines())
    return lines


@pytest.mark.parametrize("progress", ["live", "quiet"])
def test_watching_a_finished_fan_out_shows_what_every_event_shows_and_decodes_only_that(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, progress: str
) -> None:
    """The live view and `--progress quiet` never show the quiet events (start, steps, output,
    successful end) of a fan-out child that ended well: `watch` leaves them as stored — on a
    finished 10,000-item run, 4 of every 7 events — and prints exactly what feeding the printer
    every event prints (the live view: the same lines and the same last frame), with the run's
    exit status. A child that failed is shown in full."""
    from runkon_flow import event_log
    from runkon_flow.cli.drive import make_printer

    code, out, _ = cli(capsys, "run", "flaky_fan", "--dir", "wf", "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    printer, _ = make_printer(progress, sys.stdout, run_id)
    with SqliteStore(home / "runs.db") as store:
        events, _ = event_log.read_envelopes(store, run_id)
    for data in events:
        printer.feed(data)
    printer.close()
    every_event = capsys.readouterr().out

    decoded: Counter[str] = Counter()
    for kind, validate in list(event_log._VALIDATORS.items()):

        def counted(payload: str, kind: str = kind, validate: Any = validate) -> Any:
            decoded[kind] += 1
            return validate(payload)

        monkeypatch.setitem(event_log._VALIDATORS, kind, counted)
    code, watched, err = cli(capsys, "watch", run_id, "--progress", progress)
    assert code == 1
    assert run_id_of(watched) == run_id
    shown = screen(every_event)  # then, as after `run`: the failures, read from the store
    assert screen(watched.split("\n", 1)[1])[: len(shown)] == shown
    assert f"resume with: runkon-flow resume {run_id}" in err
    assert sum(1 for data in events if data.event.type == "StepOutput") == 6
    assert decoded["StepOutput"] == 1  # the failed item's line: the five that ended well stay as stored


def test_watch_json_streams_the_events_file_format(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "run", "build", "--dir", "wf", "--events", "live.jsonl", "--progress", "quiet")
    assert code == 0
    code, watched, _ = cli(capsys, "watch", run_id_of(out), "--json")
    assert code == 0
    stored = [parse_event_line(line) for line in watched.splitlines()]
    recorded = [parse_event_line(line) for line in Path("live.jsonl").read_text().splitlines()]
    assert stored == recorded
    Path("watched.jsonl").write_text(watched)
    assert cli(capsys, "replay", "watched.jsonl")[0] == 0


def test_watching_a_child_run_follows_its_top_level_run(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "run", "fan", "--dir", "wf", "--progress", "plain")
    child = next(r for r, _, _ in events_of(out) if r != run_id_of(out))
    code, watched, err = cli(capsys, "watch", child, "--progress", "plain")
    assert code == 0
    assert f"run {child} is a child of run {run_id_of(out)}; watching {run_id_of(out)}" in err
    assert plain_lines(watched) == plain_lines(out)


def test_watching_an_interrupted_run_says_so_and_exits_1(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SqliteStore(home / "runs.db") as store:
        run_id = store.create_run(NewRun(workflow_name="build")).id
        store.acquire_lease(run_id, "dead-engine", 0.001)
        store.update_run_status(run_id, RunStatus.RUNNING, None, None)
    time.sleep(0.01)
    code, _, err = cli(capsys, "watch", run_id, "--progress", "plain")
    assert code == 1
    assert f"run {run_id} is interrupted: no engine holds it any more" in err
    assert f"runkon-flow resume {run_id}" in err


def test_the_live_view_of_a_run_that_died_before_recording_any_event_reads_it_interrupted(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its last frame said `  · run … · running · 0.0s` — no workflow, as if it went on — above
    # the line saying it is interrupted: the model had no event of it, so nothing to mark.
    with SqliteStore(home / "runs.db", clock=lambda: datetime.now(UTC) - timedelta(minutes=5)) as store:
        run_id = store.create_run(NewRun(workflow_name="build")).id
        store.update_run_status(run_id, RunStatus.RUNNING, None, None)
        assert store.acquire_lease(run_id, "dead-engine", 0) is not None
    code, out, err = cli(capsys, "watch", run_id, "--progress", "live")
    assert code == 1 and f"run {run_id} is interrupted: no engine holds it any more" in err
    last = out.rsplit("\x1b[J", 1)[-1]  # the frame `close` prints as plain text
    [header] = [line for line in last.splitlines() if f"run {run_id}" in line]
    assert header.split(" · ")[:3] == ["  build", f"run {run_id}", "interrupted"], header


def test_the_live_view_of_a_run_not_started_yet_says_pending_with_its_workflow_and_no_clock(
    home: Path,
) -> None:
    # Before it had read any event of the run, the header said `⠙  · run … · running · 2.4s` — no
    # workflow, `running` with a clock going for a run nothing had run of — and the stderr line
    # `has not started yet` was written through the live block.
    with SqliteStore(home / "runs.db") as store:
        run_id = store.create_run(NewRun(workflow_name="queued")).id
    watcher = spawn(
        ["watch", run_id, "--progress", "live"],
        home,
        stdout=home / "watch.out",
        stderr=home / "watch.err",
        env=cli_env(RUNKON_DB=str(home / "runs.db")),
    )
    try:
        waiting = f"run {run_id} has not started yet; waiting for it…"
        # The waiting line, then two frames drawn after it (one every half second at least).
        wait_for(
            lambda: (home / "watch.out").read_text().partition(waiting)[2].count(" · steps ") >= 2, "frames"
        )
        frames = (home / "watch.out").read_text()
        headers = [line.rsplit("\x1b[J", 1)[-1] for line in frames.splitlines() if f"run {run_id} ·" in line]
        assert headers and all(
            " · ".join(h.split(" · ")[:4]).endswith(f"queued · run {run_id} · pending · -") for h in headers
        ), headers
        assert "running" not in frames
        with SqliteStore(home / "runs.db") as store:
            store.update_run_status(run_id, RunStatus.CANCELLED, None, "cancelled before it started")
        assert watcher.wait(timeout=30) != 0
    finally:
        stop(watcher)


def test_watch_of_an_unknown_run_or_database_fails_clearly(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "watch", "NOPE", "--db", str(home / "absent.db"))
    assert code == 1 and "no run database at" in err
    cli(capsys, "run", "build", "--dir", "wf")
    code, _, err = cli(capsys, "watch", "NOPE")
    assert code == 1 and "no workflow run 'NOPE'" in err


# --------------------------------------------------------------------------- watch a live run


def test_watch_follows_a_run_executed_by_another_process_to_its_end(home: Path) -> None:
    env = cli_env(RUNKON_DB=str(home / "runs.db"))
    runner = spawn(
        ["run", "waiter", "--dir", "wf", "--progress", "plain"],
        home,
        stdout=home / "run.out",
        stderr=home / "run.err",
        env=env,
    )
    try:
        wait_for(lambda: "StepStarted step=hold" in (home / "run.out").read_text(), "the hold step")
        run_id = run_id_of((home / "run.out").read_text())
        watcher = spawn(
            ["watch", run_id, "--progress", "plain"],
            home,
            stdout=home / "watch.out",
            stderr=home / "watch.err",
            env=env,
        )
        try:
            wait_for(lambda: "StepStarted step=hold" in (home / "watch.out").read_text(), "watch to catch up")
            assert watcher.poll() is None  # the run is not over: watch keeps following
            (home / "wf" / "go").touch()
            assert runner.wait(timeout=60) == 0
            assert watcher.wait(timeout=60) == 0
        finally:
            stop(watcher)
    finally:
        (home / "wf" / "go").touch()
        stop(runner)
    assert plain_lines((home / "watch.out").read_text()) == plain_lines((home / "run.out").read_text())


def test_a_reader_gone_while_the_run_waits_ends_the_watch_at_once(home: Path) -> None:
    """`watch ID | grep -m1 X`: grep found its line and left, but watch noticed only at its next
    write — after the run's next event, which may be minutes away — so the pipeline hung on. The
    pipe is asked between reads: the watch stops (exit 0) while the run still waits, unharmed."""
    env = cli_env(RUNKON_DB=str(home / "runs.db"))
    runner = spawn(
        ["run", "waiter", "--dir", "wf", "--progress", "plain"],
        home,
        stdout=home / "run.out",
        stderr=home / "run.err",
        env=env,
    )
    try:
        wait_for(lambda: "StepStarted step=hold" in (home / "run.out").read_text(), "the hold step")
        run_id = run_id_of((home / "run.out").read_text())
        watcher = subprocess.Popen(
            [sys.executable, "-m", "runkon_flow.cli", "watch", run_id, "--progress", "plain"],
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=(home / "watch.err").open("w"),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        try:
            assert watcher.stdout is not None
            for line in watcher.stdout:
                if b"StepStarted step=hold" in line:
                    break
            watcher.stdout.close()  # what grep -m1 does: nothing more is written to the pipe
            assert watcher.wait(timeout=30) == 0
        finally:
            stop(watcher)
        assert runner.poll() is None  # the run still waits for `go`
        err = (home / "watch.err").read_text()
        assert f"stdout closed; stopped watching run {run_id} (the run is not affected)" in err
        assert "Traceback" not in err
        (home / "wf" / "go").touch()
        assert runner.wait(timeout=60) == 0
    finally:
        (home / "wf" / "go").touch()
        stop(runner)


def test_a_run_cancelled_while_watched_exits_130(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = cli_env(RUNKON_DB=str(home / "runs.db"))
    runner = spawn(
        ["run", "waiter", "--dir", "wf"], home, stdout=home / "run.out", stderr=home / "run.err", env=env
    )
    try:
        wait_for(lambda: "StepStarted step=hold" in (home / "run.out").read_text(), "the hold step")
        run_id = run_id_of((home / "run.out").read_text())
        watcher = spawn(
            ["watch", run_id, "--progress", "plain"],
            home,
            stdout=home / "watch.out",
            stderr=home / "watch.err",
            env=env,
        )
        try:
            wait_for(lambda: "StepStarted step=hold" in (home / "watch.out").read_text(), "watch to catch up")
            assert cli(capsys, "cancel", run_id)[0] == 0
            assert watcher.wait(timeout=60) == 130
        finally:
            stop(watcher)
        assert runner.wait(timeout=60) == 130
    finally:
        stop(runner)
    assert "RunCancelled" in (home / "watch.out").read_text()


# --------------------------------------------------------------------------- detach


def test_a_detached_run_survives_its_starting_process_group_and_watch_follows_it_to_the_end(
    home: Path,
) -> None:
    env = cli_env(RUNKON_DB=str(home / "runs.db"))
    # The starting command runs in a process group of its own, like a terminal's shell job.
    starter = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", "run", "waiter", "--dir", "wf", "--detach"],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = starter.communicate(timeout=60)
    assert starter.returncode == 0, err
    run_id = run_id_of(out)
    assert f"runkon-flow watch {run_id}" in out and f"runkon-flow cancel {run_id}" in out
    log = home / "logs" / f"{run_id}.log"
    assert f"log: {log}" in out
    wait_for(lambda: "StepStarted step=hold" in log.read_text(), "the detached run to reach hold")
    with pytest.raises(ProcessLookupError):
        os.killpg(starter.pid, signal.SIGKILL)  # the starting group is gone; nothing of it held the run
    with SqliteStore(home / "runs.db") as store:
        run = store.get_run(run_id)
        assert run.status is RunStatus.RUNNING and run.owner_token
        assert run.owner_token.split(":")[1] != str(starter.pid)  # the background process holds it
    watcher = spawn(
        ["watch", run_id, "--progress", "plain"],
        home,
        stdout=home / "watch.out",
        stderr=home / "watch.err",
        env=env,
    )
    try:
        wait_for(lambda: "StepStarted step=hold" in (home / "watch.out").read_text(), "watch to catch up")
        (home / "wf" / "go").touch()
        assert watcher.wait(timeout=60) == 0
    finally:
        (home / "wf" / "go").touch()
        stop(watcher)
    watched = (home / "watch.out").read_text()
    assert (
        "StepOutput step=last stream=stdout line=last" in watched and "RunCompleted succeeded=true" in watched
    )
    assert "RunCompleted succeeded=true" in log.read_text()


def test_a_detached_run_killed_with_its_starting_group_still_running_is_followed_to_a_failure(
    home: Path,
) -> None:
    """The group is killed while the detached run is mid-way; the run goes on and fails on its own."""
    write(
        home / "wf" / "late.wf",
        'workflow late {\n  script wait { run = "while [ ! -f go ]; do sleep 0.05; done; exit 5" }\n}\n',
    )
    env = cli_env(RUNKON_DB=str(home / "runs.db"))
    shell = subprocess.Popen(
        [
            "sh",
            "-c",
            f"{sys.executable} -m runkon_flow.cli run late --dir wf --detach > started.out; sleep 60",
        ],
        cwd=home,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: (home / "started.out").exists() and "watch it" in (home / "started.out").read_text(),
            "the detached start",
        )
        os.killpg(shell.pid, signal.SIGKILL)  # the terminal goes away, its shell and jobs with it
        shell.wait(timeout=30)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
    run_id = run_id_of((home / "started.out").read_text())
    (home / "wf" / "go").touch()
    result = run_cli_process(["watch", run_id, "--progress", "plain"], home, env)
    assert result.returncode == 1, result.stderr
    assert "exited with code 5" in result.stdout


def test_a_detached_run_cancelled_before_its_runner_took_it_says_so_and_exits_130(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cancel` landed while the run was still `pending`: `run --detach` said it was running in
    the background (pid …) and exited 0, though nothing would ever run."""
    from runkon_flow.cli import detach

    spawn_runner = detach.spawn_runner

    def cancel_first(db: Any, run_id: str, *args: Any, **kwargs: Any) -> Any:
        cancelled = run_cli_process(["cancel", run_id], home, cli_env(RUNKON_DB=str(home / "runs.db")))
        assert cancelled.returncode == 0, cancelled.stderr
        return spawn_runner(db, run_id, *args, **kwargs)

    monkeypatch.setattr(detach, "spawn_runner", cancel_first)
    code, out, err = cli(capsys, "run", "build", "--dir", "wf", "--detach")
    run_id = run_id_of(out)
    assert code == 130, (out, err)
    assert "running in the background" not in out
    assert f"run {run_id} was cancelled before it started" in err
    assert f"resume with: runkon-flow resume {run_id}" in err


def test_a_detached_run_whose_runner_cannot_be_started_is_not_left_pending(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log file could not be written, so no runner started: `run --detach` said so (exit 1),
    and the run it had created stayed `pending` in `runs` for ever, its duration growing."""
    from runkon_flow.cli import detach

    def no_log(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(detach, "spawn_runner", no_log)
    code, _, err = cli(capsys, "run", "build", "--dir", "wf", "--detach")
    assert code == 1 and "cannot write the log file" in err and "Permission denied" in err
    with SqliteStore(home / "runs.db") as store:
        [run] = store.list_runs(limit=10)
    assert run.status is RunStatus.FAILED and run.ended_at
    assert run.error is not None and run.error.startswith("not started: cannot write the log file")


@pytest.mark.parametrize(
    ("workflow", "status", "code"), [("build", "completed", 0), ("failing", "failed", 1)]
)
def test_a_detached_run_that_ended_before_the_first_look_reports_its_outcome(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workflow: str,
    status: str,
    code: int,
) -> None:
    """The runner took the run and finished it between two looks of `run --detach` (here: before
    the first): it said "running in the background", and a failed run was even reported as a
    runner that exited before starting it."""
    from runkon_flow.cli import detach

    spawn_runner = detach.spawn_runner

    def run_to_the_end(*args: Any, **kwargs: Any) -> Any:
        proc, log = spawn_runner(*args, **kwargs)
        proc.wait(60)
        return proc, log

    monkeypatch.setattr(detach, "spawn_runner", run_to_the_end)
    got, out, err = cli(capsys, "run", workflow, "--dir", "wf", "--detach")
    run_id = run_id_of(out)
    assert got == code, (out, err)
    assert "running in the background" not in out and "before starting" not in err
    assert f"{status} in the background (pid " in out
    assert f"see it:    runkon-flow show {run_id}" in out


def test_the_detach_wait_looks_at_the_run_once_more_when_its_runner_has_exited(tmp_path: Path) -> None:
    """Pending at the last look, the runner exited since: it ran the run to its end meanwhile."""
    from runkon_flow.cli.detach import _wait_until_taken

    with SqliteStore(tmp_path / "runs.db") as store:
        run_id = store.create_run(NewRun(workflow_name="failing")).id
        store.update_run_status(run_id, RunStatus.FAILED, None, "script compile failed")
        looks = iter([RunStatus.PENDING])

        class LookedTooEarly:
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

            def get_run(self, wanted: str) -> Any:
                run = store.get_run(wanted)
                status = next(looks, None)
                return dataclasses.replace(run, status=status) if status is not None else run

        class Exited:
            def poll(self) -> int:
                return 0

        status = _wait_until_taken(LookedTooEarly(), run_id, Exited(), tmp_path / "no.log")  # type: ignore[arg-type]
        assert status is RunStatus.FAILED
        assert store.get_run(run_id).error == "script compile failed"


def test_detach_refuses_memory_runs(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "run", "build", "--dir", "wf", "--detach", "--memory")
    assert code == 2 and "--detach needs a run database" in err


# --------------------------------------------------------------------------- gc


def test_gc_deletes_runs_that_ended_before_the_age_and_keeps_the_rest(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "run", "fan", "--dir", "wf")
    old = run_id_of(out)
    _, out, _ = cli(capsys, "run", "build", "--dir", "wf")
    recent = run_id_of(out)
    long_ago = (
        (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    import sqlite3

    conn = sqlite3.connect(home / "runs.db")
    conn.execute("UPDATE workflow_runs SET ended_at = ? WHERE id = ?", (long_ago, old))
    conn.commit()
    conn.close()
    code, out, _ = cli(capsys, "gc", "--older-than", "30d", "--dry-run")
    assert code == 0 and "would delete 1 run " in out
    # Which run, not only how many: a mistyped age is seen before anything goes.
    listed = out.splitlines()[:-1]
    assert len(listed) == 1 and old in listed[0] and "ended " in listed[0] and "fan" in listed[0], out
    assert recent not in out
    (home / "logs").mkdir()
    (home / "logs" / f"{old}.log").write_text("a detached run's output\n")
    (home / "logs" / f"{recent}.log").write_text("kept\n")
    code, out, _ = cli(capsys, "gc", "--older-than", "30d")
    assert code == 0
    assert "deleted 1 run " in out and "6 child runs" in out and "1 background-run logs" in out
    assert not (home / "logs" / f"{old}.log").exists() and (home / "logs" / f"{recent}.log").exists()
    with SqliteStore(home / "runs.db") as store:
        assert store.get_run(old) is None and store.read_events(old) == []
        assert store.get_run(recent) is not None and store.read_events(recent)
    code, _, err = cli(capsys, "gc", "--older-than", "30")
    assert code == 2 and "expected an age like 30d" in err


def test_gc_never_deletes_outside_the_logs_folder_for_a_run_id_that_is_a_path(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run row written into a shared database by other means may have any id: `gc` deleted
    `logs/<id>.log`, so `../victim` deleted a file beside the logs folder (a runner appends to the
    same path)."""
    from runkon_flow.runner import log_path

    victim = home / "victim.log"
    victim.write_text("not a run's log\n")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    with SqliteStore(home / "runs.db") as store:
        run = store.create_run(NewRun(workflow_name="w", run_id="../victim"))
    import sqlite3

    conn = sqlite3.connect(home / "runs.db")
    stamp = long_ago.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    conn.execute("UPDATE workflow_runs SET status = 'failed', ended_at = ? WHERE id = ?", (stamp, run.id))
    conn.commit()
    conn.close()
    (home / "logs").mkdir()
    own = log_path(home / "runs.db", run.id)
    assert own.parent == home / "logs" and own.name.startswith("invalid-run-id-")
    own.write_text("its log\n")
    code, out, _ = cli(capsys, "gc", "--older-than", "30d")
    assert code == 0 and "deleted 1 run" in out, out
    assert victim.read_text() == "not a run's log\n"
    assert not own.exists()
