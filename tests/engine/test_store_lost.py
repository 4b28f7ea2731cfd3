"""A run whose run database stops recording mid-run (`StoreUnavailable`: a server given up on, a
full disk) but takes the run's last write after all — on a full disk an update in place fits
where an insert does not. The run did not fail: it stays unfinished, as it was stored, says why
it stopped, and is resumed (docs/persistence.md, "A full disk stops a fan-out, said once").
Before, the final write recorded it `failed`, shown so by `run`, `show`, `runs` and the
dashboard, with no word of the database."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.errors import STORE_STOPPED, StoreUnavailable
from runkon_flow.observe.liveness import display_status
from runkon_flow.persistence.models import RunStatus
from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.plugins.protocols import ActionOutput

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


def test_an_item_whose_end_could_not_be_recorded_is_never_reported_completed(tmp_path: Path) -> None:
    """Reported means durable on a database that stops taking writes mid-run: a fan-out item's
    end is queued (SQLite group commit) and its `FanOutItemCompleted` waits in the report gate for
    the commit — which fails. Before, the gate delivered it all the same (the live view, the
    dashboard and the --events file said completed) while the store kept the item `running`."""
    store = SqliteStore(tmp_path / "runs.db")
    h = Harness(store, tmp_path)
    try:
        h.add_workflow(CHILD)
        ids = [f"i{n:02d}" for n in range(12)]
        h.providers.append(ListProvider("tickets", ids))
        ran: list[str] = []
        read_only = threading.Event()

        def behave(info, params):
            item = params.inputs["item.id"]
            ran.append(item)
            if len(ran) == 5 and not read_only.is_set():
                with store._lock:  # the file becomes read-only (SQLITE_READONLY), as a full disk
                    store._db.execute("PRAGMA query_only = 1")
                read_only.set()
            return ActionOutput(context=f"did {item}")

        h.agents.do("work", behave)
        wf = h.add_workflow(fan())
        run_id = h.new_run(wf)
        with pytest.raises(StoreUnavailable, match="readonly"):
            h.run(wf, run_id=run_id)

        reported = {e.item_id for e in h.events("FanOutItemCompleted") if e.succeeded}
        # The database works again. (A fresh connection: SQLite keeps refusing statements it
        # prepared while the file was read-only.)
        with contextlib.suppress(Exception):
            store.close()
        store = h.store = SqliteStore(tmp_path / "runs.db")
        [row] = [s for s in h.steps(run_id) if s.step_name == "foreach:fan"]
        recorded = {i for i, status in items_of(h, row.id) if status == "completed"}
        assert len(ran) > len(recorded)  # some items ran whose ends were not recorded
        assert reported <= recorded, sorted(reported - recorded)
        said = [e.message for e in h.events("EngineLog") if "could not be recorded" in e.message]
        assert len(said) == 1 and "again on resume" in said[0], said

        # Its lease could not be let go of (read-only): in life the engine's process is gone
        # (test_cli_dead_holder.py); here it is let go of in its name.
        store.release_lease(run_id, store.get_run(run_id).owner_token or "")
        before = list(ran)
        resumed = h.engine.resume_workflow(wf, h.run_input(run_id))
        assert resumed.all_succeeded
        again = ran[len(before) :]
        assert not set(again) & reported  # nothing reported completed runs twice
        assert set(again) >= set(before) - recorded  # what was not recorded runs again
        last = [s for s in h.steps(run_id) if s.step_name == "foreach:fan"][-1]
        assert sorted(items_of(h, last.id)) == [(i, "completed") for i in ids]
    finally:
        store.close()


@pytest.mark.parametrize("depth", [1, 2], ids=["child", "grandchild"])
def test_a_called_workflow_that_loses_the_store_stops_its_parents_which_resume_it(
    h: Harness, depth: int
) -> None:
    """A `call workflow` child whose run database can record nothing more stops as its parent
    does, the parent with it — not failed, the call's row not failed, its child run again on
    resume. Before, the child ended failed, and so did the call's step and the parent run."""
    h.add_workflow("workflow leaf { call build call check }")
    if depth == 2:
        h.add_workflow("workflow middle { call workflow leaf }")
    real = h.store.insert_step
    away = [True]

    def flaky(new_step, **kwargs):
        if away[0] and new_step.step_name == "check":  # the leaf's second step cannot be recorded
            raise StoreUnavailable(GAVE_UP)
        return real(new_step, **kwargs)

    h.store.insert_step = flaky
    wf = h.add_workflow(f"workflow top {{ call workflow {'middle' if depth == 2 else 'leaf'} }}")
    run_id = h.new_run(wf)
    with pytest.raises(StoreUnavailable, match="gave up"):
        h.run(wf, run_id=run_id)

    chain = [h.store.get_run(run_id)]  # the top run, then each called run below it
    for _ in range(depth):
        [row] = h.steps(chain[-1].id)
        assert row.status == "running" and row.child_run_id, row  # the call is not recorded failed
        chain.append(h.store.get_run(row.child_run_id))
    for run in chain:
        assert run.status is RunStatus.RUNNING, (run.workflow_name, run.status)
        assert run.ended_at is None and run.owner_token is None
        assert display_status(run) == "interrupted"
        assert run.error.startswith(STORE_STOPPED) and GAVE_UP in run.error, run.error
        assert not h.events_of_run(run.id, "RunCompleted")
    assert h.statuses(chain[-1].id) == [("build", "completed")]

    # Resumed while the database is still away: the child resumed meets it again, and all stop
    # again as before — the resumed call is not recorded failed either.
    with pytest.raises(StoreUnavailable, match="gave up"):
        h.engine.resume_workflow(wf, h.run_input(run_id))
    for run in chain:
        run = h.store.get_run(run.id)
        assert run.status is RunStatus.RUNNING and run.error.startswith(STORE_STOPPED), run.workflow_name
    for run in chain[:-1]:
        # the first attempt's row closed by the resume, its own left running
        assert [row.status for row in h.steps(run.id)] == ["cancelled", "running"]

    away[0] = False  # the database is back
    resumed = h.engine.resume_workflow(wf, h.run_input(run_id))
    assert resumed.all_succeeded
    assert h.agents.names() == ["build", "check"]  # the leaf goes on where it stopped
    for run in chain:
        run = h.store.get_run(run.id)
        assert (run.status, run.error) == (RunStatus.COMPLETED, None), (run.workflow_name, run.status)
    assert h.statuses(chain[-1].id) == [("build", "completed"), ("check", "completed")]


def _children_wait_for_the_halt(h: Harness) -> list[str]:
    """A `child` workflow (`work`, then `check`) over six `tickets` items whose first child goes on
    while every other waits until the fan-out says no further item starts; the item ids."""
    h.add_workflow("workflow child { call work call check }")
    ids = [f"i{n}" for n in range(6)]
    h.providers.append(ListProvider("tickets", ids))
    first, halted = threading.Lock(), threading.Event()

    def behave(info, params):  # the first child goes on; the others wait till the fan-out halted
        if not first.acquire(blocking=False):
            halted.wait(30)
        return ActionOutput(context="did")

    h.agents.do("work", behave)
    emit = h.sink.emit

    def watch(data):
        emit(data)
        if data.event.type == "EngineLog" and "no further item starts" in data.event.message:
            halted.set()

    h.sink.emit = watch
    return ids


def test_a_foreach_child_that_loses_the_store_stops_the_run_whose_resume_runs_its_item(h: Harness) -> None:
    """A foreach item's child whose run database can record nothing more stops as a called
    workflow does: the fan-out starts no further item, no item is recorded failed, the run is left
    unfinished (resumable), and its resume runs the unfinished items. Before, the child ended
    failed, its item with it, and the fan-out went on — the step and the run ended failed."""
    ids = _children_wait_for_the_halt(h)
    real = h.store.insert_step
    stopped: list[str] = []  # the child run that could record no more

    def flaky(new_step, **kwargs):
        if not stopped and new_step.step_name == "check":  # the first child's second step, once
            stopped.append(new_step.workflow_run_id)
            raise StoreUnavailable(GAVE_UP)
        return real(new_step, **kwargs)

    h.store.insert_step = flaky
    wf = h.add_workflow(fan(extra="on_child_fail = continue"))
    run_id = h.new_run(wf)
    with pytest.raises(StoreUnavailable, match="gave up"):
        h.run(wf, run_id=run_id)

    h.store.flush()
    run, child = h.store.get_run(run_id), h.store.get_run(stopped[0])
    for stopped_run in (run, child):
        assert stopped_run.status is RunStatus.RUNNING, (stopped_run.workflow_name, stopped_run.status)
        assert stopped_run.ended_at is None and display_status(stopped_run) == "interrupted"
        assert stopped_run.error.startswith(STORE_STOPPED) and GAVE_UP in stopped_run.error
        assert not h.events_of_run(stopped_run.id, "RunCompleted")
    [row] = h.steps(run_id)  # `after` never started
    assert row.status == "running", row.status  # the fan-out is not recorded failed
    items = dict(items_of(h, row.id))
    assert items[child.inputs["item.id"]] == "running"  # its item not failed: it runs on resume
    # the item in the other slot ended; none started after the stop
    assert sorted(items.values()) == ["completed", *["pending"] * 4, "running"], items
    assert not [e for e in h.events("FanOutItemCompleted") if not e.succeeded]
    # the items a resume runs: the 4 never started and the stopped child's (before, "4 items")
    [said] = [e.message for e in h.events("EngineLog") if "no further item starts" in e.message]
    assert said.endswith("; 5 items stay pending, to run on resume"), said

    h.store.insert_step = real  # the database is back
    unfinished = sorted(i for i, status in items.items() if status != "completed")
    started_before = len(h.events("FanOutItemStarted"))
    resumed = h.engine.resume_workflow(wf, h.run_input(run_id))
    assert resumed.all_succeeded
    assert h.store.get_run(run_id).status is RunStatus.COMPLETED
    last = [s for s in h.steps(run_id) if s.step_name == "foreach:fan"][-1]
    assert sorted(items_of(h, last.id)) == [(i, "completed") for i in ids]
    again = sorted(e.item_id for e in h.events("FanOutItemStarted")[started_before:])
    assert again == unfinished  # the unfinished items ran, the stopped one among them; no other
    assert h.store.get_run(child.id).status is not RunStatus.RUNNING  # closed by the resume's end


def test_the_items_left_pending_are_counted_again_when_children_in_flight_stop_after_the_first(
    h: Harness,
) -> None:
    """Two children in flight lose the run database one after the other. The fan-out says at the
    first that no further item starts, with the items a resume runs so far; when the second stops
    too, that count is short by one, so the step's end says the final count. Before, only the
    first count was said ("5 items stay pending"): the resume ran 6."""
    _children_wait_for_the_halt(h)
    real = h.store.insert_step
    stopped: list[str] = []  # the child runs that could record no more

    def flaky(new_step, **kwargs):
        if new_step.step_name == "check":  # every child's second step: the database is away
            stopped.append(new_step.workflow_run_id)
            raise StoreUnavailable(GAVE_UP)
        return real(new_step, **kwargs)

    h.store.insert_step = flaky
    wf = h.add_workflow(fan(extra="on_child_fail = continue"))
    run_id = h.new_run(wf)
    with pytest.raises(StoreUnavailable, match="gave up"):
        h.run(wf, run_id=run_id)

    h.store.flush()
    assert len(stopped) == 2  # both children in flight stopped; none started after the first
    [row] = h.steps(run_id)
    items = [status for _, status in items_of(h, row.id)]
    assert sorted(items) == [*["pending"] * 4, "running", "running"], items  # 6 run on resume
    said = [e.message for e in h.events("EngineLog") if e.message.startswith("foreach 'fan'")]
    assert len(said) == 2, said
    assert "no further item starts" in said[0] and said[0].endswith(
        "; 5 items stay pending, to run on resume"
    )
    assert said[1] == (
        "foreach 'fan': 6 items stay pending in all, to run on resume "
        "(1 more stopped for the run database after the first 5)"
    )
