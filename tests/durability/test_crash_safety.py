"""A run killed with SIGKILL part-way through a 200-item fan-out on SQLite, then resumed by another
process: nothing completed runs again, nothing is lost, and only items in flight at the kill (on
SQLite, also those whose end was still queued for the next commit) may run twice. Each child
appends its item id to a file, so the file is the ground truth of what ran."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from runkon_flow.persistence import FanOutItemStatus, RunStatus, StepRole, StepStatus
from runkon_flow.persistence import sqlite as sqlite_store

from tests.cli.run_helpers import cli_env, first_line, run_cli_process, stop, wait_for
from tests.durability.recording_fan import lines_in, start_recording_fan
from tests.pg import BACKENDS, database, open_db

ITEMS = [f"item-{i:03d}" for i in range(200)]
#: Items whose ends a SQLite store may hold queued at once: its back-pressure limit counts writes,
#: and a script child's item makes three (its run, its step, its item row).
QUEUED_ITEMS = sqlite_store._QUEUE_LIMIT // 3 + 1


def foreach_rows(store, run_id: str):
    return [s for s in store.get_steps(run_id) if s.role == StepRole.FOREACH.value]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kill_after", [10, 80, 150])
def test_a_killed_fan_out_resumes_without_losing_or_repeating_finished_items(
    tmp_path: Path, kill_after: int, backend: str
) -> None:
    wf = tmp_path / "wf"
    db = database(backend, tmp_path)
    env = cli_env(RUNKON_LEASE_TTL="1")
    proc, out, err, ran = start_recording_fan(tmp_path, "crash", ITEMS, db, env)
    try:
        wait_for(lambda: lines_in(ran) >= kill_after or proc.poll() is not None, f"{kill_after} items to run")
        assert proc.poll() is None, f"the run ended before the kill: {err.read_text()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    run_id = first_line(out).split()[0].removeprefix("run_id=")

    with open_db(db) as store:
        assert store.get_run(run_id).status is RunStatus.RUNNING  # nobody recorded an end
        [row] = foreach_rows(store, run_id)
        items = store.get_fan_out_items(row.id)
    completed_at_kill = {i.item_id for i in items if i.status is FanOutItemStatus.COMPLETED}
    in_flight_at_kill = {i.item_id for i in items if i.status is FanOutItemStatus.RUNNING}
    assert len(items) == 200
    assert len(completed_at_kill) < 200
    assert len(in_flight_at_kill) <= 8
    if kill_after >= 80:
        assert len(completed_at_kill) >= kill_after // 2

    resumed = run_cli_process(
        ["resume", run_id, "--dir", str(wf), "--db", db, "--wait", "--progress", "quiet"], tmp_path, env
    )
    assert resumed.returncode == 0, resumed.stderr
    # (RunStarted, not RunResumed: no *step* had completed, only items — engine.md §10.1)
    assert "RunCompleted succeeded=true" in resumed.stdout

    runs = Counter(ran.read_text().split())
    assert set(runs) == set(ITEMS), "an item was lost"
    assert all(runs[item] == 1 for item in completed_at_kill), "an item completed before the kill ran again"
    ran_twice = {item for item, n in runs.items() if n > 1}
    if backend == "sqlite":
        # A worker queues its item's end with the next item's start and goes on; a commit covers
        # both a moment later (docs/persistence.md, "What completed guarantees"). Besides the items
        # in flight, those whose end (and next start) were still queued may run again: `running`
        # or `pending` in the database, never `completed`, and at most a queue's worth.
        assert ran_twice.isdisjoint(completed_at_kill)
        assert len(ran_twice) <= 8 + QUEUED_ITEMS, f"ran twice: {sorted(ran_twice)}"
    else:  # every item's end and next start is one durable write before the next child starts
        assert ran_twice <= in_flight_at_kill, (
            f"ran twice without being in flight: {ran_twice - in_flight_at_kill}"
        )
    assert max(runs.values()) <= 2

    with open_db(db) as store:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
        final = foreach_rows(store, run_id)[-1]
    assert final.status is StepStatus.COMPLETED
    aggregate = json.loads(final.structured_output)["items"]
    assert [entry["item_id"] for entry in aggregate] == ITEMS
    assert {entry["status"] for entry in aggregate} == {"completed"}
