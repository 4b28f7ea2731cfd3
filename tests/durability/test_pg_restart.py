"""A PostgreSQL server restarting in the middle of a run: the engine's calls during the outage fail
with one line naming the database (never its password), its store reconnects on the next call,
and the run ends completed — or, if a write was lost, stays resumable to completion; a step that
completed is never run again. Runs on a throwaway server of its own (restarting a shared one would
disturb other tests)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from runkon_flow.persistence import RunStatus

from tests import pg, pgserver
from tests.cli.run_helpers import cli_env, first_line, run_cli_process, spawn, stop, wait_for, write
from tests.pg import open_db

SLOW = """workflow slow {
  script one   { run = "echo one >> ran.log" }
  script wait  { run = "touch started; while [ ! -f go ]; do sleep 0.05; done; echo wait >> ran.log" }
  script three { run = "echo three >> ran.log" }
}
"""


@pytest.fixture
def own_server() -> Iterator[tuple[Path, str]]:
    """A server of this test's own, and its URL with a password (trust auth ignores it)."""
    with pg.own_server() as (directory, dsn):
        secret = dsn.replace("postgresql://", "postgresql://postgres:hunter2@", 1)
        yield directory, secret.replace("&user=postgres", "")


@pytest.mark.slow
def test_a_server_restart_mid_run_leaves_the_run_finished_or_resumable(tmp_path: Path, own_server) -> None:
    directory, dsn = own_server
    wf = tmp_path / "wf"
    write(wf / "slow.wf", SLOW)
    env = cli_env()
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    proc = spawn(
        ["run", "slow", "--dir", str(wf), "--db", dsn, "--progress", "quiet"],
        wf,
        stdout=out,
        stderr=err,
        env=env,
    )
    try:
        wait_for(lambda: (wf / "started").exists() or proc.poll() is not None, "the second step to start")
        pgserver.restart(directory)
        (wf / "go").touch()
        proc.wait(timeout=60)
    finally:
        stop(proc)
    run_id = first_line(out).split()[0].removeprefix("run_id=")
    shown = dsn.replace("postgres:hunter2@", "postgres@")
    problems = [line for line in err.read_text().splitlines() if "run database" in line]
    assert all(shown in line and "hunter2" not in line for line in problems), problems
    if proc.returncode != 0:  # a write fell into the outage: the run stays resumable
        resumed = run_cli_process(["resume", run_id, "--dir", str(wf), "--db", dsn, "--wait"], wf, env)
        assert resumed.returncode == 0, resumed.stderr
    with open_db(dsn) as store:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
    ran = (wf / "ran.log").read_text().split()
    assert ran == ["one", "wait", "three"] or re.fullmatch(r"one (wait )+three", " ".join(ran))
