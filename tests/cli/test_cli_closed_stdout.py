"""`runkon-flow run … | head -2` (issue 10, bug 6): a reader that goes away must not kill the run.

The run keeps going silently to its end, its lease is released and the exit status says how it
ended; stderr carries one note and no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.run_helpers import cli_env, open_store, write


def test_run_piped_into_head_completes_and_releases_its_lease(tmp_path: Path) -> None:
    steps = "".join(f'  script s{i} {{ run = "sleep 0.05; echo line {i}" }}\n' for i in range(12))
    write(tmp_path / "main.wf", "workflow main {\n" + steps + "}\n")
    db = tmp_path / "runs.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", "run", "main.wf", "--db", str(db), "--progress", "plain"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.readline()
    proc.stdout.close()  # what `head -2` does
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)

    assert "Traceback" not in err
    assert "is closed" not in err
    assert code == 0, err
    store = open_store(db)
    (run,) = store.list_runs()
    assert run.status.value == "completed"
    assert run.owner_token is None and run.lease_until is None
