"""Reported means durable: an item the engine has reported completed (its FanOutItemCompleted, as
written to the `--events` file) is completed in the database even if the engine is SIGKILLed the
moment after, and a resume never runs it again. Also for a step: a step reported completed
(StepCompleted) is completed in the store. Each child appends its item id to a file, the ground
truth of what ran."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from runkon_flow.persistence import FanOutItemStatus, RunStatus, StepRole, StepStatus

from tests.cli.run_helpers import cli_env, first_line, run_cli_process, spawn, stop, wait_for, write
from tests.pg import BACKENDS, database, open_db

ITEMS = [f"item-{i:03d}" for i in range(240)]

PARENT = """workflow fast-fan {
  foreach all {
    over         = lines
    scope        = { file = "items.txt" }
    max_parallel = 8
    workflow     = fast-item
  }
}
"""
CHILD = """workflow fast-item {
  script record {
    run = "./record.sh"
    env = { ITEM = "{{item.id}}" OUT = "%s" }
  }
}
"""
RECORD = """#!/bin/sh
echo "$ITEM" >> "$OUT"
"""


def reported(events: Path) -> tuple[set[str], set[str]]:
    """(item ids reported completed, step ids reported completed) in the events file so far."""
    items: set[str] = set()
    steps: set[str] = set()
    try:
        text = events.read_text()
    except FileNotFoundError:
        return items, steps
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # the last line may be cut short by the kill
            continue
        event = record.get("event", {})
        if event.get("type") == "FanOutItemCompleted" and event.get("status") == "completed":
            items.add(event["item_id"])
        elif event.get("type") == "StepCompleted" and event.get("succeeded") and event.get("step_id"):
            steps.add(event["step_id"])
    return items, steps


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kill_after", [5, 60, 150])
def test_items_reported_completed_before_a_sigkill_are_completed_and_never_run_again(
    tmp_path: Path, kill_after: int, backend: str
) -> None:
    wf = tmp_path / "wf"
    ran = tmp_path / "ran.txt"
    db = database(backend, tmp_path)
    events = tmp_path / "events.jsonl"
    write(wf / "fast-fan.wf", PARENT)
    write(wf / "fast-item.wf", CHILD % ran)
    write(wf / "record.sh", RECORD, executable=True)
    write(wf / "items.txt", "\n".join(ITEMS) + "\n")
    env = cli_env(RUNKON_LEASE_TTL="1")

    out, err = tmp_path / "run.out", tmp_path / "run.err"
    proc = spawn(
        [
            "run",
            "fast-fan",
            "--dir",
            str(wf),
            "--db",
            db,
            "--progress",
            "quiet",
            "--events",
            str(events),
        ],
        tmp_path,
        stdout=out,
        stderr=err,
        env=env,
    )
    try:
        wait_for(
            lambda: len(reported(events)[0]) >= kill_after or proc.poll() is not None,
            f"{kill_after} items reported completed",
        )
        assert proc.poll() is None, f"the run ended before the kill: {err.read_text()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    run_id = first_line(out).split()[0].removeprefix("run_id=")
    items_reported, steps_reported = reported(events)
    assert len(items_reported) >= kill_after

    with open_db(db) as store:
        [row] = [s for s in store.get_steps(run_id) if s.role == StepRole.FOREACH.value]
        status = {i.item_id: i.status for i in store.get_fan_out_items(row.id)}
        not_durable = {i for i in items_reported if status[i] is not FanOutItemStatus.COMPLETED}
        assert not not_durable, f"reported completed but not completed in the store: {sorted(not_durable)}"
        for step_id in steps_reported:
            step = store.get_step(step_id)
            assert step is not None and step.status is StepStatus.COMPLETED, (
                f"step {step_id} was reported completed but is {step and step.status} in the store"
            )

    resumed = run_cli_process(
        ["resume", run_id, "--dir", str(wf), "--db", db, "--wait", "--progress", "quiet"], tmp_path, env
    )
    assert resumed.returncode == 0, resumed.stderr
    runs = Counter(ran.read_text().split())
    assert set(runs) == set(ITEMS), "an item was lost"
    again = sorted(i for i in items_reported if runs[i] != 1)
    assert not again, f"reported completed before the kill, yet ran again: {again}"
    with open_db(db) as store:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
