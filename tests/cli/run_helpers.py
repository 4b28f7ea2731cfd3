"""Shared helpers for the `runkon-flow run/resume/cancel/runs/show/approve/reject` tests.

Tests call `main([...])` in-process where they can; signals, TTY-less output and multi-process
leases need a real process, started with `spawn()` (always waited for or killed by the test).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from runkon_flow.cli import main
from runkon_flow.persistence import SqliteStore

EVENT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<run>[0-9A-Z]{26}) (?P<type>[A-Za-z]+)(?P<rest>.*)$"
)


def write(path: Path, text: str, *, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `runkon-flow ARGV` in this process; (exit status, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_id_of(out: str) -> str:
    """The run id from the first line a `run`/`resume` prints (`run_id=<id> workflow=… db=…`)."""
    first = out.splitlines()[0]
    match = re.match(r"run_id=([0-9A-Z]{26}) ", first)
    assert match, f"no run id in first line: {first!r}"
    return match[1]


def events_of(out: str) -> list[tuple[str, str, str]]:
    """(run id, event type, key=value text) for every event line of plain progress output."""
    found = []
    for line in out.splitlines()[1:]:
        match = EVENT_LINE.match(line)
        assert match, f"not an event line: {line!r}"
        found.append((match["run"], match["type"], match["rest"].strip()))
    return found


def open_store(path: Path) -> SqliteStore:
    return SqliteStore(path)


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RUNKON_LEASE_TTL", None)
    env["RUNKON_SAMPLE_SPEED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _as_from_a_terminal() -> None:
    """Ctrl-C as a terminal delivers it: a test run started in the background (`make test &`,
    a CI runner) hands its children an ignored SIGINT, which Python then keeps ignoring."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(args: list[str], cwd: Path, *, stdout: Path, stderr: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `runkon-flow ARGS` as a real process writing to files (pipes could fill and stall it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", *args],
        cwd=cwd,
        stdout=stdout.open("w"),
        stderr=stderr.open("w"),
        stdin=subprocess.DEVNULL,
        env=env,
        preexec_fn=_as_from_a_terminal,
    )


def run_cli_process(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runkon_flow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = 30.0, interval: float = 0.005
) -> None:
    """Poll `condition` until it holds; fail the test (not hang it) after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


def first_line(path: Path) -> str | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text.splitlines()[0] if "\n" in text else None


def stop(proc: subprocess.Popen) -> None:
    """Make sure a spawned process is gone (tests must not leave processes behind)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
