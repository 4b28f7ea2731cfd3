"""A run killed with SIGKILL mid fan-out, then resumed to its end: the children the dead engine
had in flight are its abandoned work. They were left `running` for good, owned by the dead
process, under a completed parent; the resume that takes the run over ends them, and leaves the
`call workflow` child it resumes in place alone."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from runkon_flow.persistence import RunStatus

from tests.cli.run_helpers import cli_env, first_line, run_cli_process, spawn, stop, wait_for, write
from tests.pg import BACKENDS, database, open_db

OUTER = """workflow outer {
  call workflow inner {}
}
"""
INNER = """workflow inner {
  foreach all { over = lines scope = { file = "items.txt" } max_parallel = 2 workflow = leaf }
}
"""
LEAF = """workflow leaf {
  script work { run = "while [ ! -f %s ]; do sleep 0.05; done; echo {{item.id}}" }
}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_resume_ends_the_children_a_killed_engine_left_in_flight(tmp_path: Path, backend: str) -> None:
    wf, go = tmp_path / "wf", tmp_path / "go"
    db = database(backend, tmp_path)
    write(wf / "outer.wf", OUTER)
    write(wf / "inner.wf", INNER)
    write(wf / "leaf.wf", LEAF % go)
    write(wf / "items.txt", "a\nb\nc\n")
    env = cli_env(RUNKON_LEASE_TTL="1")
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    proc = spawn(["run", "outer", "--dir", str(wf), "--db", db], tmp_path, stdout=out, stderr=err, env=env)
    try:
        wait_for(lambda: first_line(out) is not None, "the run to start")
        run_id = first_line(out).split()[0].removeprefix("run_id=")  # type: ignore[union-attr]

        def in_flight() -> list[str]:
            with open_db(db) as store:
                runs = store.list_runs(limit=100, parent_run_id=None)
            return [r.id for r in runs if r.workflow_name == "leaf" and r.status is RunStatus.RUNNING]

        wait_for(lambda: len(in_flight()) == 2, "two leaf children in flight")
        abandoned = in_flight()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    go.touch()
    resumed = run_cli_process(["resume", run_id, "--dir", str(wf), "--db", db, "--wait"], tmp_path, env)
    assert resumed.returncode == 0, resumed.stderr

    with open_db(db) as store:
        runs = {r.id: r for r in store.list_runs(limit=100, parent_run_id=None)}
    assert runs[run_id].status is RunStatus.COMPLETED
    [inner] = [r for r in runs.values() if r.workflow_name == "inner"]
    assert inner.status is RunStatus.COMPLETED  # resumed in place, not ended
    for child in abandoned:
        run = runs[child]
        assert run.status is RunStatus.CANCELLED, (child, run.status)
        assert run.owner_token is None and run.ended_at is not None
        assert run.error and "interrupted" in run.error
    unfinished = [(r.workflow_name, r.status) for r in runs.values() if not r.status.is_terminal]
    assert unfinished == []
