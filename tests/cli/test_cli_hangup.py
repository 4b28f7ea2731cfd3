"""A foreground `runkon-flow run` whose terminal goes away (the window closed, the SSH connection
dropped): a real process on a real pseudo-terminal, whose master side the test closes."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from runkon_flow.persistence import RunStatus, SqliteStore

from tests.cli.run_helpers import cli, cli_env, stop, wait_for, write

WAITER = """workflow waiter {
  script first { run = "echo first" }
  script hold { run = "echo $$ > hold.pid; while [ ! -f go ]; do sleep 0.05; done" }
  script last { run = "echo last" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "wf" / "waiter.wf", WAITER)
    return tmp_path


def _on_its_terminal(*, ignore_hangup: bool):
    """In the child: a session of its own whose controlling terminal is the pty on stdin, as a
    shell's foreground command has; `ignore_hangup`: started as `nohup` starts it."""

    def setup() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if ignore_hangup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return setup


def _run_then_close_terminal(home: Path, *, ignore_hangup: bool = False) -> subprocess.Popen:
    """`run waiter` on a terminal (the live view, as a user gets it); once its hold step runs,
    the terminal is closed. Returns the still running (or ending) process."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", "run", "waiter", "--dir", "wf", "--db", "runs.db"],
        cwd=home,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cli_env(TERM="xterm"),
        start_new_session=True,
        preexec_fn=_on_its_terminal(ignore_hangup=ignore_hangup),
    )
    os.close(slave)

    def started() -> bool:
        while select.select([master], [], [], 0)[0]:  # keep the terminal read: a full one blocks
            try:
                if not os.read(master, 65536):
                    break
            except OSError:
                break
        return (home / "wf" / "hold.pid").exists()

    try:
        wait_for(started, "the hold step to start")
    except BaseException:
        stop(proc)
        raise
    finally:
        os.close(master)  # the terminal hangs up
    return proc


def _the_run(home: Path):
    with SqliteStore(home / "runs.db") as store:
        (run,) = store.list_runs()
        return run


def test_closing_the_terminal_cancels_the_run_cleanly_and_resume_completes_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: SIGHUP killed the process outright — the run stayed `running` until its lease lapsed,
    # with nothing saying why it stopped.
    proc = _run_then_close_terminal(home)
    try:
        assert proc.wait(timeout=30) == 130  # cancelled; not 1 (a traceback) nor -SIGHUP
    finally:
        stop(proc)
        (home / "wf" / "go").touch()
    run = _the_run(home)
    assert run.status is RunStatus.CANCELLED
    _, shown, _ = cli(capsys, "show", run.id, "--db", str(home / "runs.db"))
    assert "cancelled: terminal closed (SIGHUP)" in shown

    code, resumed, err = cli(capsys, "resume", run.id, "--dir", "wf", "--db", str(home / "runs.db"))
    assert code == 0, err
    assert "step=first" not in resumed and "line=last" in resumed


def test_a_run_started_with_nohup_goes_on_to_its_end_when_its_terminal_closes(home: Path) -> None:
    # Every write to the hung-up terminal fails (EIO). Before: the first one ended the command with
    # a traceback and exit 1, the run left `running` mid-step.
    proc = _run_then_close_terminal(home, ignore_hangup=True)
    try:
        (home / "wf" / "go").touch()
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)
    assert _the_run(home).status is RunStatus.COMPLETED
