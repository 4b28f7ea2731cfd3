"""Two processes resuming the same run at the same moment: the lease lets exactly one proceed; the
other stops at once with the engine's "owned by another engine" message and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.persistence import RunStatus

from tests.cli.run_helpers import cli_env, run_cli_process, run_id_of, spawn, stop, wait_for, write
from tests.pg import BACKENDS, database, open_db

HOLD = "test -f armed || exit 1; echo started >> starts.log; while [ ! -f go ]; do sleep 0.05; done"
GUARDED = f"""workflow guarded {{
  script prepare {{ run = "echo prepared >> prepare.log" }}
  script hold {{ run = "{HOLD}" }}
  script finish {{ run = "echo finished" }}
}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_only_one_of_two_concurrent_resumes_proceeds(tmp_path: Path, backend: str) -> None:
    wf = tmp_path / "wf"
    db = database(backend, tmp_path)
    write(wf / "guarded.wf", GUARDED)
    env = cli_env()
    first = run_cli_process(["run", "guarded", "--dir", str(wf), "--db", db], tmp_path, env)
    assert first.returncode == 1  # `hold` fails until the test arms it
    run_id = run_id_of(first.stdout)
    (wf / "armed").touch()

    procs, outputs = [], []
    for name in ("a", "b"):
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        outputs.append((out, err))
        procs.append(
            spawn(
                ["resume", run_id, "--dir", str(wf), "--db", db],
                tmp_path,
                stdout=out,
                stderr=err,
                env=env,
            )
        )
    try:
        wait_for(
            lambda: any(p.poll() is not None for p in procs), "one of the resumes to give up", timeout=60
        )
        [loser] = [i for i, p in enumerate(procs) if p.poll() is not None]
        winner = 1 - loser
        assert procs[loser].returncode == 1
        loser_err = outputs[loser][1].read_text()
        assert f"workflow run already owned by another engine: {run_id}" in loser_err
        assert "Traceback" not in loser_err
        assert procs[winner].poll() is None  # still working, holding the run
        wait_for((wf / "starts.log").exists, "the winner to reach its long step")
        (wf / "go").touch()
        assert procs[winner].wait(timeout=60) == 0
    finally:
        (wf / "go").touch()
        for proc in procs:
            stop(proc)

    assert (wf / "starts.log").read_text() == "started\n"  # the step ran once, by the winner
    assert (wf / "prepare.log").read_text() == "prepared\n"  # completed before: never run again
    assert "RunCompleted succeeded=true" in outputs[winner][0].read_text()
    with open_db(db) as store:
        run = store.get_run(run_id)
        assert run.status is RunStatus.COMPLETED
        assert run.owner_token is None  # the winner handed the run back when it finished
