"""Background runners (`runkon_flow.runner`): what their log says about how they stopped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.runner import runner_error
from runkon_flow.workspace import Workspace


def test_runner_error_reads_only_what_this_runner_wrote(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("runkon-flow (detached): error: from before\n")
    start = log.stat().st_size
    assert runner_error(log, start) is None
    with log.open("a") as handle:
        handle.write("detached runner pid 7 for run R\nrunkon-flow (detached): error: run 'R' is completed\n")
    assert runner_error(log, start) == "run 'R' is completed"
    assert runner_error(tmp_path / "missing.log") is None


def test_a_retry_of_thousands_of_items_reaches_the_runner(tmp_path: Path) -> None:
    """The items go in a file, not on the command line (the kernel refuses one argument over
    128 KiB): the runner starts, reads and removes the file, and says what it found."""
    from runkon_flow.persistence.sqlite import SqliteStore
    from runkon_flow.runner import spawn_runner

    db = tmp_path / "runs.db"
    SqliteStore(db).close()
    items = {"step-row": [f"an-item-with-a-rather-long-id-{n:06d}" for n in range(20_000)]}  # ~700 KB
    proc, log = spawn_runner(db, "no-such-run", [tmp_path], retry=items)
    assert proc.wait(timeout=60) == 1
    assert runner_error(log) == "workflow error: no workflow run 'no-such-run'"
    assert not list(log.parent.glob("*.json"))  # the request file was read and removed


def test_a_run_handed_to_a_runner_leaves_no_cached_plan_in_the_launching_workspace(tmp_path: Path) -> None:
    """`create_run` keeps the plan for its own `execute`; a run launched elsewhere never comes
    back for it, so a dashboard started thousands of runs would keep thousands of definitions."""
    from runkon_flow.persistence.sqlite import SqliteStore
    from runkon_flow.workspace import Workspace

    (tmp_path / "hello.wf").write_text('workflow hello {\n  script hi { run = "echo hi" }\n}\n')
    db = tmp_path / "runs.db"
    with SqliteStore(db) as store:
        ws = Workspace([tmp_path], store)
        run_id = ws.create_run("hello", {})
        assert run_id in ws._plans
        proc, _ = ws.launch(run_id, db)
        assert proc.wait(timeout=60) == 0
        assert ws._plans == {}
        assert store.get_run(run_id).status.value == "completed"  # type: ignore[union-attr]


FAN = """workflow fan {
  foreach each {
    over         = static
    scope        = { items = "a,b" }
    max_parallel = 2
    workflow     = one
    inputs       = { name = "{{item.id}}" }
  }
}
"""
ONE = """workflow one {
  inputs { name default = "" }
  script work { run = "test {{name}} = a" }
}
"""


@contextmanager
def _failed_fan(tmp_path: Path, db: Path) -> Iterator[tuple[SqliteStore, Workspace, str]]:
    """`fan` run to its end on SQLite (item b fails: `test b = a`): (store, workspace, run id)."""
    (tmp_path / "fan.wf").write_text(FAN)
    (tmp_path / "one.wf").write_text(ONE)
    with SqliteStore(db) as store:
        ws = Workspace([tmp_path], store)
        run_id = ws.create_run("fan", {})
        ws.execute(run_id)
        yield store, ws, run_id


def test_a_runner_refusing_a_broken_child_file_says_where_and_what_to_do(tmp_path: Path) -> None:
    """The dashboard resumes through a runner and shows `runner_error`: it names the broken file at
    line and column (the log also has the source line and caret, as `resume` prints them), then
    the advice, and nothing was written. (Its retry runs the children as they ran — the next
    test —, so a child file broken since does not stop it.)"""
    db = tmp_path / "runs.db"
    with _failed_fan(tmp_path, db) as (store, ws, run_id):
        assert store.get_run(run_id).status.value == "failed"  # type: ignore[union-attr]
        (tmp_path / "one.wf").write_text(ONE.replace("script work {", "script work {{"))
        seq = store.last_event_seq(run_id)
        proc, log = ws.launch(run_id, db, resume=True)
        assert proc.wait(timeout=60) == 1
        place = f"{tmp_path / 'one.wf'}:3:16: workflow 'one' does not load: expected `key = value`"
        error = runner_error(log)
        assert error is not None and error.startswith(place), error
        assert error.endswith(
            "; a workflow this resume would run does not load; nothing was changed: "
            "fix the file and run the same command again"
        )
        assert " 3 |   script work {{" in log.read_text()
        assert store.last_event_seq(run_id) == seq
        assert store.get_run(run_id).status.value == "failed"  # type: ignore[union-attr]


def test_a_runners_retry_runs_the_children_as_they_ran_though_a_child_file_broke_since(
    tmp_path: Path,
) -> None:
    """The dashboard retries with the stored definition, children included
    (docs/when-things-go-wrong.md, "Which definition the children run"): a child file broken
    since the run is not read, so the retry goes ahead — item b runs `one` as it ran (and fails
    again: `test b = a`) — instead of being refused."""
    db = tmp_path / "runs.db"
    with _failed_fan(tmp_path, db) as (store, ws, run_id):
        (tmp_path / "one.wf").write_text(ONE.replace("script work {", "script work {{"))
        fanout = next(s.id for s in store.get_steps(run_id) if s.role == "foreach")
        before = len(store.list_runs(limit=100, parent_run_id=run_id))
        proc, log = ws.launch(run_id, db, retry={fanout: ["b"]})
        assert proc.wait(timeout=60) == 1  # item b failed again, as it ran
        assert "does not load" not in (runner_error(log) or "")
        assert len(store.list_runs(limit=100, parent_run_id=run_id)) == before + 1  # b ran again


def test_a_detached_run_that_ended_before_its_starter_looked_again_is_not_marked_failed(
    tmp_path: Path,
) -> None:
    """`run --detach` read the run still `pending`, then found its runner gone: the runner had
    run a quick workflow to its end in between. The completed run was overwritten with `failed`."""
    import subprocess
    import sys

    from runkon_flow.cli.detach import _wait_until_taken
    from runkon_flow.persistence.models import NewRun, RunStatus
    from runkon_flow.persistence.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "runs.db")
    run_id = store.create_run(NewRun(workflow_name="w")).id
    read = store.get_run

    def get_run(run_id: str):
        seen = read(run_id)
        if seen is not None and seen.status is RunStatus.PENDING:  # the runner, right after
            assert store.acquire_lease(run_id, "runner", 30) is not None
            store.start_run(run_id, resuming=False)
            store.finish_run(run_id, RunStatus.COMPLETED, "done", None, "runner")
        return seen

    store.get_run = get_run  # type: ignore[method-assign]
    runner = subprocess.Popen([sys.executable, "-c", "pass"])
    runner.wait(timeout=30)
    _wait_until_taken(store, run_id, runner, tmp_path / "run.log")  # reported as started
    run = read(run_id)
    assert run is not None and run.status is RunStatus.COMPLETED and run.error is None
    store.close()
