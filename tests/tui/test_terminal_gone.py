"""Closing the terminal ends the dashboard, even under a parent that survives the hang-up (make):
an orphaned dashboard used to spin on its terminal's EOF, a CPU burnt for ever."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from runkon_tui.terminal import hung_up

ROOT = Path(__file__).resolve().parents[2]

# Like make: catches SIGHUP (a handler is not inherited across exec) and waits for its child, so
# only the session leader hears the hang-up and the dashboard must notice it by itself.
_MAKE_LIKE = (
    "import signal, subprocess, sys; signal.signal(signal.SIGHUP, lambda *a: None); "
    "sys.exit(subprocess.call(sys.argv[1:]))"
)


def test_a_terminal_whose_other_side_closed_has_hung_up() -> None:
    master, slave = os.openpty()
    try:
        assert not hung_up(slave)
        os.close(master)
        assert hung_up(slave)
    finally:
        os.close(slave)


def test_closing_the_terminal_ends_a_dashboard_started_under_a_parent_that_survives(tmp_path: Path) -> None:
    tui = Path(sys.executable).with_name("runkon-tui")
    pid, master = pty.fork()
    if pid == 0:  # the child: session leader of the new terminal, like make under a shell
        db = tmp_path / "r.db"
        env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm-256color")
        os.execve(
            sys.executable,
            [
                sys.executable,
                "-c",
                _MAKE_LIKE,
                str(tui),
                str(ROOT / "sample_workflows"),
                "--db",
                str(db),
            ],
            env,
        )
    seen = b""
    deadline = time.monotonic() + 60
    while b"workflows in" not in seen and time.monotonic() < deadline:  # the header is drawn
        if select.select([master], [], [], 0.5)[0]:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    assert b"workflows in" in seen, seen[-400:]
    dashboard = _children(pid)
    assert dashboard, "the dashboard process is not running"
    os.close(master)  # the terminal window is closed
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(dashboard[0]):
        time.sleep(0.2)
    still = _alive(dashboard[0])
    for p in [*dashboard, pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert not still, "the dashboard outlived its terminal"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
