"""A run history for the screens that list past runs (runs screen, themes, snapshots)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import (
    FanOutItemStatus,
    FanOutItemUpdate,
    NewRun,
    NewStep,
    RunStatus,
    StepUpdate,
)

from tests.tui import scenarios


def history_store() -> InMemoryStore:
    """Three finished runs of two workflows seven seconds apart: completed, failed (with an error),
    cancelled; the review-pr runs have eight-item fan-outs with five done."""
    ticks = itertools.count()

    def clock() -> datetime:
        return datetime.fromtimestamp(scenarios.T0 + 7 * next(ticks), UTC)

    store = InMemoryStore(clock=clock)
    for n, (name, status, error) in enumerate(
        [
            ("review-pr", RunStatus.COMPLETED, None),
            ("nightly", RunStatus.FAILED, "step 'workflow:review-one' failed"),
            ("review-pr", RunStatus.CANCELLED, None),
        ]
    ):
        run = store.create_run(
            NewRun(workflow_name=name, run_id=f"01HZZHISTORY{n:014d}", inputs={"pr": "42"})
        )
        ok = store.insert_step(NewStep(run.id, "resolve-base", retry_count=0, position=0))
        store.update_step(ok, StepUpdate.completed(0, result_text="done"))
        if status is RunStatus.FAILED:
            bad = store.insert_step(NewStep(run.id, "detect-file-types", retry_count=0, position=1))
            store.update_step(bad, StepUpdate.failed(0, "agent exited with code 2"))
        if name == "review-pr":
            fan = store.insert_step(
                NewStep(run.id, "foreach:review-items", role="foreach", retry_count=0, position=5)
            )
            ids = store.insert_fan_out_items(fan, [("item", f"file-{i:03d}", "", {}) for i in range(8)])
            done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)
            store.batch_update_fan_out_items([(i, done) for i in ids[:5]])
        store.update_run_status(run.id, status, None, error)
    return store
