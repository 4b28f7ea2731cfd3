"""A run whose run database stops recording mid-run (`StoreUnavailable`: a server given up on, a
full disk) but takes the run's last write after all — on a full disk an update in place fits
where an insert does not. The run did not fail: it stays unfinished, as it was stored, says why
it stopped, and is resumed (docs/persistence.md, "A full disk stops a fan-out, said once").
Before, the final write recorded it `failed`, shown so by `run`, `show`, `runs` and the
dashboard, with no word of the database."""

from __future__ import annotations

from typing import Any

import pytest
from runkon_flow.errors import STORE_STOPPED, StoreUnavailable
from runkon_flow.observe.liveness import display_status
from runkon_flow.persistence.models import RunStatus

from tests.engine.conftest import Harness, ListProvider
from tests.engine.test_foreach import CHILD, fan, items_of, work_by_item

GAVE_UP = "run database db unreachable for 3 s (RUNKON_PG_OUTAGE_S), gave up"


def _lose_the_store_for(store: Any, calls: set[int]) -> Any:
    """Item writes number `calls` fail as when the database is away; the rest — the run's end
    included — go through. Returns the real method, to put back."""
    real = store.batch_update_fan_out_items
    count = iter(range(1000))

    def flaky(updates, **kwargs):
        # Durable writes only: a write queued behind (SQLite's item ends) fails at its commit,
        # not in the call (issue 3's case, tests/engine/test_store_full.py).
        if kwargs.get("durable", True) and next(count) in calls:
            raise StoreUnavailable(GAVE_UP)
        return real(updates, **kwargs)

    store.batch_update_fan_out_items = flaky
    return real


def test_a_run_whose_store_went_away_is_not_recorded_failed_when_its_last_write_fits(h: Harness) -> None:
    h.add_workflow(CHILD)
    ids = [f"i{n}" for n in range(8)]
    h.providers.append(ListProvider("tickets", ids))
    work_by_item(h)
    real = _lose_the_store_for(h.store, {0})  # the first wave's start
    wf = h.add_workflow(fan())
    run_id = h.new_run(wf)
    with pytest.raises(StoreUnavailable, match="gave up"):
        h.run(wf, run_id=run_id)

    run = h.store.get_run(run_id)
    assert run.status is RunStatus.RUNNING, run.status  # not `failed`: it stays to be resumed
    assert run.ended_at is None and run.owner_token is None  # its lease was let go of
    assert display_status(run) == "interrupted"
    assert run.error.startswith(STORE_STOPPED) and GAVE_UP in run.error, run.error
    assert "resume it when the database works again" in run.error
    assert not h.events_of_run(run_id, "RunCompleted")  # the run did not end

    h.store.batch_update_fan_out_items = real  # the database is back
    resumed = h.engine.resume_workflow(wf, h.run_input(run_id))
    assert resumed.all_succeeded
    run = h.store.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.error is None
    last = [s for s in h.steps(run_id) if s.step_name == "foreach:fan"][-1]
    assert sorted(items_of(h, last.id)) == [(i, "completed") for i in ids]
