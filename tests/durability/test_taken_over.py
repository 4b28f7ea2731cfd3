"""A runner stopped (SIGSTOP, Ctrl-Z) past its lease while another process resumes its run and
ends it: when it goes on, it stops as an engine that lost its lease — and says so only to its own
log, not in the run's stored event stream, whose end the new owner wrote."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from runkon_flow.event_log import unpack
from runkon_flow.persistence import RunStatus

from tests.cli.run_helpers import cli_env, run_cli_process, run_id_of, wait_for, write
from tests.pg import BACKENDS, database, open_db

FAN = """workflow fan {
  foreach each {
    over = static
    scope = { items = "a,b,c,d,e,f" }
    max_parallel = 1
    workflow = one
  }
}
"""
ONE = 'workflow one {\n  script work { run = "sleep 0.4" }\n}\n'


def _ends(store, run_id: str) -> list[tuple[str, dict]]:
    """The run's own RunCompleted / RunCancelled events, as stored, in order."""
    return [
        (e.kind, json.loads(e.payload))
        for row in store.read_events(run_id)
        for e in unpack(row)
        if e.event_run_id == run_id and e.kind in ("RunCompleted", "RunCancelled")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_runner_woken_after_its_run_was_finished_elsewhere_leaves_the_stream_ending_there(
    tmp_path: Path, backend: str
) -> None:
    # Before: the woken runner stored RunCancelled ("another engine took the run over") after
    # the new owner's RunCompleted — `watch` and the dashboard's stored history ended the
    # completed run as cancelled.
    wf, db = tmp_path / "wf", database(backend, tmp_path)
    write(wf / "fan.wf", FAN)
    write(wf / "one.wf", ONE)
    env = cli_env(RUNKON_LEASE_TTL="2", XDG_STATE_HOME=str(tmp_path / "state"))
    started = run_cli_process(["run", "fan", "--detach", "--dir", str(wf), "--db", db], tmp_path, env)
    assert started.returncode == 0, started.stderr
    run_id = run_id_of(started.stdout)
    pid = int(re.search(r"\(pid (\d+)\)", started.stdout).group(1))  # type: ignore[union-attr]
    try:
        with open_db(db) as store:

            def one_item_done() -> bool:
                runs = store.list_runs(parent_run_id=None)
                return any(r.workflow_name == "one" and r.status is RunStatus.COMPLETED for r in runs)

            wait_for(one_item_done, "the runner to complete an item")
            os.kill(pid, signal.SIGSTOP)
            resumed = run_cli_process(
                ["resume", run_id, "--wait", "--dir", str(wf), "--db", db], tmp_path, env
            )
            assert resumed.returncode == 0, resumed.stderr
            os.kill(pid, signal.SIGCONT)
            wait_for(lambda: not _alive(pid), "the woken runner to stop", timeout=30)
            run = store.get_run(run_id)
            assert run is not None and run.status is RunStatus.COMPLETED and run.owner_token is None
            assert [kind for kind, _ in _ends(store, run_id)] == ["RunCompleted"]
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False
