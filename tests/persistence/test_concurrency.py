"""Many threads at once on one store, as a fan-out's workers use it: nothing is lost, torn or
refused, and readers never trip over writers (the in-memory store has no store-wide lock)."""

from __future__ import annotations

import os
import threading

import pytest
from runkon_flow.persistence import InMemoryStore
from runkon_flow.persistence._shared import new_ordered_id
from runkon_flow.persistence.models import (
    FanOutItemStatus,
    FanOutItemUpdate,
    NewRun,
    NewStep,
    RunStatus,
    StepStatus,
    StepUpdate,
)

from tests.threads import switching_often, together

WORKERS = 8
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@pytest.fixture(autouse=True)
def _switch_often():
    with switching_often():
        yield


def test_ids_made_by_many_threads_are_unique_and_each_threads_ids_increase() -> None:
    made: list[list[str]] = [[] for _ in range(WORKERS)]

    def make(i: int) -> None:
        made[i].extend(new_ordered_id() for _ in range(20_000))

    together(make, WORKERS)
    every = [i for ids in made for i in ids]
    assert len(set(every)) == len(every)
    for ids in made:
        assert ids == sorted(ids)
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in every[:1000])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(reader)
        os.write(writer, " ".join(new_ordered_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(writer)
    mine = {new_ordered_id() for _ in range(100)}
    with os.fdopen(reader) as pipe:
        theirs = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(theirs) == 100
    assert not mine & theirs


def test_a_fan_outs_worth_of_child_runs_written_at_once_are_all_there_whole() -> None:
    store = InMemoryStore()
    parent = store.create_run(NewRun(workflow_name="fan"))
    step_id = store.insert_step(NewStep(parent.id, "foreach:all", "foreach", position=0, retry_count=0))
    per_worker = 300
    item_ids = store.insert_fan_out_items(
        step_id, [("n", str(i), str(i), {}) for i in range(WORKERS * per_worker)]
    )
    stop = threading.Event()
    seen_errors: list[BaseException] = []

    def read_all_the_time() -> None:
        # What a dashboard does meanwhile: list runs and items while they are being written.
        try:
            while not stop.is_set():
                for run in store.list_runs(parent_run_id=None, limit=100_000):
                    if run.status is RunStatus.COMPLETED:
                        assert run.ended_at is not None, "a finished run read without its end"
                store.list_active_runs([])
                for row in store.get_fan_out_items(step_id):
                    if row.status is FanOutItemStatus.COMPLETED:
                        assert row.completed_at is not None, "a completed item read without its end"
        except BaseException as exc:
            seen_errors.append(exc)

    def work(worker: int) -> None:
        for n in range(per_worker):
            item = item_ids[worker * per_worker + n]
            store.batch_update_fan_out_items([(item, FanOutItemUpdate(FanOutItemStatus.RUNNING))])
            run = store.create_leased_run(
                NewRun(workflow_name="child", parent_run_id=parent.id), f"token-{worker}", 60
            )
            step = store.insert_step(NewStep(run.id, "noop", "agent", position=0, retry_count=0))
            store.update_step(step, StepUpdate.completed(run.generation, result_text="ok", attempt=0))
            store.append_events(run.id, [])
            store.finish_run(run.id, RunStatus.COMPLETED, "ok", None, f"token-{worker}")
            store.batch_update_fan_out_items(
                [(item, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, run.id))]
            )

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        together(work, WORKERS)
    finally:
        stop.set()
        reader.join()
    assert not seen_errors, seen_errors[0]
    children = store.list_runs(parent_run_id=parent.id, limit=100_000)
    assert len(children) == WORKERS * per_worker
    assert {r.status for r in children} == {RunStatus.COMPLETED}
    assert all(r.owner_token is None for r in children)  # every lease released
    for run in children[:50]:
        assert [s.status for s in store.get_steps(run.id)] == [StepStatus.COMPLETED]
    rows = store.get_fan_out_items(step_id)
    assert [r.status for r in rows] == [FanOutItemStatus.COMPLETED] * len(item_ids)
    assert {r.child_run_id for r in rows} == {r.id for r in children}


def test_two_writers_of_one_run_name_one_new_run_and_one_refusal() -> None:
    store = InMemoryStore()
    run = NewRun(workflow_name="w", run_id="01M8YQ5V4GSGNAGTZH0G6GKFWY")
    outcomes: list[str] = []

    def create(_: int) -> None:
        try:
            store.create_run(run)
            outcomes.append("created")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    together(create, 2)
    assert sorted(outcomes) == ["PersistenceError", "created"]


def test_a_reader_that_sees_a_resumed_runs_end_sees_the_children_it_abandoned_ended() -> None:
    # `finish_run(…, abandoned=…)` is one write on the SQL stores. In memory the runs below were
    # ended after the finish, each on its own: a resume that saw the run ended in between could
    # take a child still `running` over, and then have it cancelled under it.
    store = InMemoryStore()
    seen: list[RunStatus] = []
    for _ in range(20):
        parent = store.create_leased_run(NewRun(workflow_name="fan"), "engine", 60)
        children = [
            store.create_run(
                NewRun(workflow_name="item", parent_run_id=parent.id, parent_workflow_run_id=parent.id)
            )
            for _ in range(300)
        ]
        last = children[-1].id

        def work(i: int, parent_id: str = parent.id, last: str = last) -> None:
            if i == 0:
                assert store.finish_run(
                    parent_id, RunStatus.FAILED, None, "x", "engine", abandoned="abandoned"
                )
                return
            while not store.get_run(parent_id).status.is_terminal:
                pass
            seen.append(store.get_run(last).status)

        together(work, 2)
    assert set(seen) == {RunStatus.CANCELLED}
