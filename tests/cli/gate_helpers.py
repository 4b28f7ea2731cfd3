"""What the gate tests share (`approve`/`reject` in test_cli_gates.py, the `gates` inbox in
test_cli_gate_inbox.py): the `ship` workflow, a run of it waiting at its gate on a thread, a test
home, and a run waiting at its gate in a process of its own."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from runkon_flow.persistence import SqliteStore
from runkon_flow.workspace import Workspace

from tests.cli.run_helpers import cli_env, run_id_of, spawn, stop, wait_for, write

SHIP = """workflow ship {
  script build { run = "echo built" }
  gate human_approval {
    prompt  = "Ship the build?"
    timeout = "1h"
    options = { fast = "Fast lane" careful = "Careful rollout" }
  }
  script deploy { run = "echo deployed" }
}
"""


class GateRun:
    """A run of `workflow` (default `ship`) executing on a background thread until its gate (or a
    child run's) is resolved."""

    def __init__(self, home: Path, workflow: str = "ship") -> None:
        self.store = SqliteStore(home / "runs.db")
        self.ws = Workspace([home / "wf"], self.store)
        self.run_id = self.ws.create_run(workflow, {})
        self.result = None
        self.thread = threading.Thread(target=self._execute, daemon=True)
        self.thread.start()
        wait_for(lambda: bool(self.ws.gates.waiting_gates(self.run_id)), f"the gate of {workflow} to wait")

    def _execute(self) -> None:
        self.result = self.ws.execute(self.run_id)

    def finish(self):
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the run did not finish after its gate was resolved"
        return self.result

    def gate_row(self):
        return next(s for s in self.store.get_steps(self.run_id) if s.step_name == "human_approval")

    def close(self) -> None:
        if self.thread.is_alive():
            self.ws.cancel(self.run_id)
            self.thread.join(timeout=30)
        self.store.close()


def gate_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **workflows: str) -> Path:
    """A test's working folder: `wf/ship.wf` (plus `wf/NAME.wf` for each of `workflows`), its run
    database in $RUNKON_DB, the user `alice`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.setenv("USER", "alice")
    write(tmp_path / "wf" / "ship.wf", SHIP)
    for name, text in workflows.items():
        write(tmp_path / "wf" / f"{name}.wf", text)
    return tmp_path


@contextmanager
def waiting_in_a_process(
    home: Path, workflow: str, db: str | None = None
) -> Iterator[tuple[subprocess.Popen, Path, str]]:
    """`runkon-flow run WORKFLOW` in a process of its own (its runs in `db`, else home/runs.db),
    once it waits at its gate: the process, the file its output goes to, and the run id. The
    process is stopped on the way out."""
    out, err = home / "run.out", home / "run.err"
    proc = spawn(
        ["run", workflow, "--dir", "wf"],
        home,
        stdout=out,
        stderr=err,
        env=cli_env(RUNKON_DB=db or str(home / "runs.db")),
    )
    try:
        wait_for(lambda: "GateWaiting" in out.read_text(), "the gate to wait", timeout=60)
        yield proc, out, run_id_of(out.read_text())
    finally:
        stop(proc)
