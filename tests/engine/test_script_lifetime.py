"""A script runs to completion however the engine's threads come and go around it (the trap of
tying a child's life to the thread that forked it, prctl(PR_SET_PDEATHSIG)), the orphan watchdog
that guards every script outlives the worker thread that happened to start it, and the gate that
holds a shell command until the watchdog knows it is invisible to the command."""

from __future__ import annotations

import os
from pathlib import Path

from runkon_flow.process import orphan_watchdog_pid, run_process

from tests.engine.conftest import Harness, ListProvider, wait_until

SHORT = ["s1", "s2", "s3", "s4", "s5", "s6"]

BURST = """workflow burst { foreach all { over = shorts max_parallel = 3 workflow = short } }"""
SHORT_ITEM = """workflow short { script work { run = "./short.sh" env = { ITEM = "{{item.id}}" } } }"""
SHORT_SH = """#!/bin/sh
# All but the first wait for the long script to start, then end at different times: their worker
# threads finish (and the burst's pool shuts down) one by one while it runs.
if [ "$ITEM" != s1 ]; then
  i=0
  while [ ! -e long.started ]; do
    i=$((i+1)); [ $i -gt 500 ] && exit 3
    sleep 0.02
  done
fi
sleep "0.0${ITEM#s}"
echo "$ITEM" >> done.txt
"""
LONG = """workflow long { script wait_out { run = "./long.sh" } }"""
LONG_SH = f"""#!/bin/sh
# Outlive the whole burst (every worker thread it had), then finish normally.
touch long.started
i=0
while [ "$(wc -l < done.txt)" -lt {len(SHORT)} ]; do
  i=$((i+1)); [ $i -gt 500 ] && exit 3
  sleep 0.02
done
sleep 0.2
echo finished > long.out
"""


def write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_long_script_runs_to_completion_while_worker_threads_come_and_go(hm: Harness) -> None:
    tmp = hm.tmp_path
    write_script(tmp / "short.sh", SHORT_SH)
    write_script(tmp / "long.sh", LONG_SH)
    (tmp / "done.txt").touch()
    hm.providers.append(ListProvider("shorts", SHORT))
    hm.add_workflow(SHORT_ITEM)

    burst = hm.start(BURST)  # its workers start the scripts (and, in a fresh process, the watchdog)
    assert wait_until(lambda: (tmp / "done.txt").read_text().count("\n") >= 1), "no short script ran"
    watchdog = orphan_watchdog_pid()
    assert watchdog is not None and alive(watchdog)
    long = hm.start(LONG)
    burst_result = burst.join(timeout=30)
    assert burst_result.all_succeeded, hm.store.get_run(burst.run_id).error
    long_result = long.join(timeout=30)

    assert long_result.all_succeeded, hm.store.get_run(long.run_id).error
    assert (tmp / "long.out").read_text() == "finished\n"
    assert sorted((tmp / "done.txt").read_text().split()) == SHORT
    assert [(s.step_name, str(s.status)) for s in hm.steps(long.run_id)] == [("wait_out", "completed")]
    assert orphan_watchdog_pid() == watchdog and alive(watchdog), "the watchdog died with a worker thread"


def test_the_registration_gate_is_invisible_to_a_shell_command(tmp_path: Path) -> None:
    env = dict(os.environ)
    fed = run_process("cat", cwd=tmp_path, env=env, shell=True, stdin="first\nsecond")
    assert (fed.exit_code, fed.stdout) == (0, "first\nsecond")
    unfed = run_process("cat; echo end", cwd=tmp_path, env=env, shell=True)
    assert (unfed.exit_code, unfed.stdout) == (0, "end\n")  # stdin is /dev/null, as ever
    args = run_process('echo "$0" $#', cwd=tmp_path, env=env, shell=True)
    assert args.stdout == "/bin/sh 0\n"
    broken = run_process("true\nno_such_command_here", cwd=tmp_path, env=env, shell=True)
    assert broken.exit_code == 127
    assert "2" in broken.stderr.partition("no_such_command_here")[0], "line numbers moved"
