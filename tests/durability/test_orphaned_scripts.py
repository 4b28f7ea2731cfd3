"""The scripts of a SIGKILLed engine die with it — grandchildren included — so a resume never runs
an in-flight item next to the orphaned copy of itself (docs/engine.md, "Scripts die with the
engine"). Each test runs the real headless CLI, kills it with SIGKILL while a script (which forked
a grandchild) is running, and waits (bounded) for the script's whole process group to be gone.

This test process makes itself the "child subreaper" while a test runs, so the processes orphaned
by the kill are re-parented to it and reaped here instead of lingering as zombies under init.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.run_helpers import cli_env, spawn, stop, wait_for, write

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inspects /proc; uses prctl"),
]

PR_SET_CHILD_SUBREAPER = 36
#: How long the group of a killed engine may take to go (the watchdog's grace is 0.25 s).
GONE_WITHIN_S = 5.0

#: An engine that dies at the worst moment: its shell command started, the watchdog not yet told.
DIE_BEFORE_REGISTERING = """
import os, signal, sys
from pathlib import Path
from runkon_flow import process

def die(pgid):
    Path(sys.argv[1]).write_text(f"{pgid} {process.orphan_watchdog_pid()}")
    os.kill(os.getpid(), signal.SIGKILL)

process._GUARD.register = die
process.run_process("touch ran", cwd=sys.argv[2], env=dict(os.environ), shell=True)
"""

#: A program that exits normally while a daemon thread still runs a script (a dashboard quitting
#: mid-run does that): the thread is simply dropped at exit, never reaching its own cleanup.
EXIT_WITH_A_SCRIPT_RUNNING = """
import os, sys, threading, time
from pathlib import Path
from runkon_flow.process import run_process

pids, script = Path(sys.argv[1]), sys.argv[2]
options = {"cwd": ".", "env": dict(os.environ), "shell": True}
threading.Thread(target=run_process, args=(script,), kwargs=options, daemon=True).start()
while not pids.exists():
    time.sleep(0.01)
print(os.getpgid(int(pids.read_text().split()[0])))
"""

HOLD = """#!/bin/sh
# A script that forks a grandchild, reports both pids, then waits for a minute.
sleep 60 &
echo "$$ $!" > "{pids}.tmp" && mv "{pids}.tmp" "{pids}"
exec sleep 60
"""


@pytest.fixture
def adopt_orphans() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may contain spaces, so split after its closing paren.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def watchdog_of(engine_pid: int) -> int | None:
    for child in children_of(engine_pid):
        with contextlib.suppress(OSError):
            if b"process_watchdog" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    return None


def group_gone(pgid: int) -> bool:
    """No process of group `pgid` left: its orphans (ours now) reaped, nothing else in it."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0] != 0:
            pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True  # not (or no longer) ours: someone else reaped it


def read_pids(path: Path) -> tuple[int, int] | None:
    try:
        leader, grandchild = path.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(leader), int(grandchild)


@contextlib.contextmanager
def engine(tmp_path: Path, wf: Path, workflow: str) -> Iterator[object]:
    """`runkon-flow run WORKFLOW` as a real process; whatever it leaves is killed and reaped after."""
    proc = spawn(
        ["run", workflow, "--dir", str(wf), "--db", str(tmp_path / "runs.db"), "--progress", "quiet"],
        tmp_path,
        stdout=tmp_path / "run.out",
        stderr=tmp_path / "run.err",
        env=cli_env(),
    )
    try:
        yield proc
    finally:
        stop(proc)


def cleanup(pgids: list[int], watchdogs: list[int]) -> None:
    """After a failure: kill and reap what the test started and did not see go."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        wait_for(lambda pgid=pgid: group_gone(pgid), "a leftover group to be reaped", timeout=10)
    for pid in watchdogs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: reaped(pid), "a watchdog to be reaped", timeout=10)


def test_a_sigkilled_engine_takes_its_running_script_and_grandchild_with_it(
    tmp_path: Path, adopt_orphans: None
) -> None:
    wf, pids = tmp_path / "wf", tmp_path / "pids"
    write(wf / "orphan.wf", 'workflow orphan { script hold { run = "./hold.sh" } }\n')
    write(wf / "hold.sh", HOLD.format(pids=pids), executable=True)
    groups: list[int] = []
    watchdogs: list[int] = []
    try:
        with engine(tmp_path, wf, "orphan") as proc:
            wait_for(lambda: read_pids(pids) is not None or proc.poll() is not None, "the script to start")
            assert proc.poll() is None, (tmp_path / "run.err").read_text()
            script, grandchild = read_pids(pids)
            group = os.getpgid(script)
            groups.append(group)
            assert os.getpgid(grandchild) == group != os.getpgid(proc.pid)
            watchdogs += [w for w in [watchdog_of(proc.pid)] if w is not None]  # to reap it after

            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

            wait_for(lambda: group_gone(group), "the killed engine's script group to die", GONE_WITHIN_S)
            groups.clear()
            while watchdogs:
                wait_for(
                    lambda w=watchdogs[-1]: reaped(w), "the watchdog to exit after its work", GONE_WITHIN_S
                )
                watchdogs.pop()
    finally:
        cleanup(groups, watchdogs)


def test_a_watchdog_killed_mid_run_is_replaced_before_the_next_script(
    tmp_path: Path, adopt_orphans: None
) -> None:
    wf, pids, go = tmp_path / "wf", tmp_path / "pids", tmp_path / "go"
    write(
        wf / "twice.wf",
        'workflow twice {\n  script first { run = "./first.sh" }\n  script second { run = "./hold.sh" }\n}\n',
    )
    write(
        wf / "first.sh",
        f'#!/bin/sh\ntouch "{tmp_path}/first.started"\n'
        f'i=0; while [ ! -e "{go}" ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done\n',
        executable=True,
    )
    write(wf / "hold.sh", HOLD.format(pids=pids), executable=True)
    groups: list[int] = []
    watchdogs: list[int] = []
    try:
        with engine(tmp_path, wf, "twice") as proc:
            wait_for(lambda: (tmp_path / "first.started").exists(), "the first script to start")
            first_watchdog = watchdog_of(proc.pid)
            assert first_watchdog is not None
            os.kill(first_watchdog, signal.SIGKILL)  # the engine's child: the engine reaps it
            go.touch()

            wait_for(lambda: read_pids(pids) is not None or proc.poll() is not None, "the second script")
            assert proc.poll() is None, (tmp_path / "run.err").read_text()
            group = os.getpgid(read_pids(pids)[0])
            groups.append(group)
            second_watchdog = watchdog_of(proc.pid)
            assert second_watchdog not in (None, first_watchdog), "no new watchdog was started"
            watchdogs.append(second_watchdog)

            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

            wait_for(lambda: group_gone(group), "the second script's group to die", GONE_WITHIN_S)
            groups.clear()
            wait_for(lambda: reaped(second_watchdog), "the new watchdog to exit", GONE_WITHIN_S)
            watchdogs.clear()
    finally:
        cleanup(groups, watchdogs)


def test_a_shell_command_whose_engine_dies_before_registering_it_never_runs(
    tmp_path: Path, adopt_orphans: None
) -> None:
    pids = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-c", DIE_BEFORE_REGISTERING, str(pids), str(tmp_path)])
    leftovers: list[int] = []
    try:
        assert proc.wait(timeout=30) == -signal.SIGKILL
        shell, watchdog = (int(pid) for pid in pids.read_text().split())
        leftovers += [shell, watchdog]
        wait_for(lambda: reaped(shell), "the gated shell to exit", GONE_WITHIN_S)
        wait_for(lambda: reaped(watchdog), "the watchdog to exit", GONE_WITHIN_S)
        leftovers.clear()
        assert not (tmp_path / "ran").exists(), "the command ran although no watchdog guarded it"
    finally:
        cleanup([], leftovers)


def test_a_script_left_running_by_a_daemon_thread_dies_when_the_program_exits(
    tmp_path: Path, adopt_orphans: None
) -> None:
    pids = tmp_path / "pids"
    write(tmp_path / "hold.sh", HOLD.format(pids=pids), executable=True)
    program = [sys.executable, "-c", EXIT_WITH_A_SCRIPT_RUNNING, str(pids), "./hold.sh"]
    done = subprocess.run(program, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    groups = [int(done.stdout)]
    group = groups[0]
    try:
        wait_for(lambda: group_gone(group), "the script group of the exited program to die", GONE_WITHIN_S)
        groups.clear()
    finally:
        cleanup(groups, [])
