"""The persistence contract (engine.md §5, §6.2, §6.4, docs/persistence.md), run against every store.

Each test states a rule the engine or the dashboard relies on; the `store` fixture makes it hold
for the in-memory and the SQLite store alike.
"""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from runkon_flow.cancellation import EngineCancelled
from runkon_flow.errors import PersistenceError, StoreUnavailable
from runkon_flow.event_log import ZIP_EVENTS, pack
from runkon_flow.persistence import (
    DeletedRuns,
    FanOutItemStatus,
    FanOutItemUpdate,
    Fence,
    ItemLineage,
    NewEvent,
    NewRun,
    NewStep,
    RetryRequest,
    RunStatus,
    StepStatus,
    StepUpdate,
    StoredEvent,
    WorkflowPersistence,
)
from runkon_flow.persistence.models import PACKED_EVENTS, ZIPPED_EVENTS

from tests.threads import together

from .conftest import FakeClock

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OPTIONS = json.dumps([{"value": "b", "label": "B"}, {"value": "a", "label": "A"}, {"value": "c"}])


def new_run(store, name: str = "wf", **kw) -> str:
    return store.create_run(NewRun(workflow_name=name, **kw)).id


def owned_run(store, token: str = "owner-1") -> tuple[str, int]:
    """A run whose lease `token` holds, and the generation to write with."""
    run_id = new_run(store)
    gen = store.acquire_lease(run_id, token, 60)
    assert gen is not None
    return run_id, gen


def new_step(store, run_id: str, name: str = "s", **kw) -> str:
    return store.insert_step(NewStep(workflow_run_id=run_id, step_name=name, **kw))


def foreach_step(store) -> str:
    run_id = new_run(store)
    return new_step(store, run_id, "fe", role="foreach", retry_count=0)


def test_both_stores_implement_the_protocol(store) -> None:
    assert isinstance(store, WorkflowPersistence)


# --------------------------------------------------------------------------- runs


def test_create_run_stores_everything_the_caller_gave(store) -> None:
    snapshot = json.dumps({"title": "Review a PR", "name": "wf"})
    run = store.create_run(
        NewRun(
            workflow_name="review",
            parent_run_id="agent-1",
            dry_run=True,
            trigger="schedule",
            definition_snapshot=snapshot,
            parent_workflow_run_id="parent-wf",
            inputs={"pr": "42", "note": "ünïcode"},
            iteration=3,
        )
    )
    loaded = store.get_run(run.id)
    assert loaded == run
    assert len(run.id) == 26
    assert (run.workflow_name, run.parent_run_id, run.dry_run, run.trigger) == (
        "review",
        "agent-1",
        True,
        "schedule",
    )
    assert run.definition_snapshot == snapshot
    assert run.workflow_title == "Review a PR"
    assert run.inputs == {"pr": "42", "note": "ünïcode"}
    assert (run.parent_workflow_run_id, run.iteration) == ("parent-wf", 3)
    assert run.status is RunStatus.PENDING
    assert (run.generation, run.owner_token, run.lease_until, run.ended_at) == (0, None, None, None)
    assert run.started_at == "2026-01-01T12:00:00.000Z"


def test_started_at_is_rfc3339_utc_with_milliseconds(tmp_path, store_kind) -> None:
    from .conftest import make_store

    real = make_store(store_kind, tmp_path / "real")
    try:
        run = real.create_run(NewRun(workflow_name="wf"))
        assert RFC3339_MS.match(run.started_at)
    finally:
        close = getattr(real, "close", None)
        if close:
            close()


def test_create_run_honours_a_caller_chosen_id_and_refuses_a_duplicate(store) -> None:
    run = store.create_run(NewRun(workflow_name="wf", run_id="my-run"))
    assert run.id == "my-run"
    assert store.get_run("my-run") is not None
    with pytest.raises(PersistenceError, match="my-run"):
        store.create_run(NewRun(workflow_name="other", run_id="my-run"))
    assert store.get_run("my-run").workflow_name == "wf"


@pytest.mark.parametrize("snapshot", [None, "", "not json", "[1, 2]", '{"title": 5}', '{"name": "x"}'])
def test_workflow_title_is_absent_unless_the_snapshot_has_a_string_title(store, snapshot) -> None:
    run = store.create_run(NewRun(workflow_name="wf", definition_snapshot=snapshot))
    assert run.workflow_title is None
    assert store.get_run(run.id).workflow_title is None


def test_a_title_given_with_a_snapshot_reference_is_kept(store) -> None:
    """A child row that refers to a sibling's snapshot (persistence.snapshots) keeps its title."""
    reference = '{"same_as_run": "01SIBLING"}'
    run = store.create_run(NewRun(workflow_name="wf", definition_snapshot=reference, workflow_title="Item"))
    leased = store.create_leased_run(
        NewRun(workflow_name="wf", definition_snapshot=reference, workflow_title="Item"), "token", 60
    )
    for run_id in (run.id, leased.id):
        row = store.get_run(run_id)
        assert (row.workflow_title, row.definition_snapshot) == ("Item", reference)


def test_get_run_of_an_unknown_id_is_none(store) -> None:
    assert store.get_run("nope") is None


def test_rows_read_back_are_copies_the_caller_cannot_corrupt(store) -> None:
    run_id = new_run(store, inputs={"a": "1"})
    store.set_waiting_blocked_on(run_id, {"type": "pr_checks", "gate_name": "g"})
    loaded = store.get_run(run_id)
    loaded.inputs["a"] = "changed"
    loaded.blocked_on["gate_name"] = "changed"
    loaded.status = RunStatus.FAILED
    again = store.get_run(run_id)
    assert again.inputs == {"a": "1"}
    assert again.blocked_on == {"type": "pr_checks", "gate_name": "g"}
    assert again.status is RunStatus.WAITING


def test_list_runs_is_newest_first_and_filters_by_parent(store, clock: FakeClock) -> None:
    top1 = new_run(store, "a")
    clock.advance(1)
    child = new_run(store, "child", parent_workflow_run_id=top1)
    clock.advance(1)
    agent_child = new_run(store, "agent-child", parent_run_id=top1)
    clock.advance(1)
    top2 = new_run(store, "b")
    assert [r.id for r in store.list_runs()] == [top2, top1]
    assert [r.id for r in store.list_runs(parent_run_id=None)] == [top2, agent_child, child, top1]
    assert [r.id for r in store.list_runs(parent_run_id=top1)] == [agent_child, child]
    assert store.list_runs(parent_run_id="unknown") == []
    assert [r.id for r in store.list_runs(limit=1)] == [top2]


def test_runs_are_found_by_the_start_or_end_of_their_id_in_any_case(store, clock: FakeClock) -> None:
    """A short id (`…C0DVAD3M`) resolves through the store without reading every run row."""
    old = new_run(store, run_id="01AAAAAAAAAAAAAAAAC0DVAD3M")
    clock.advance(1)
    child = new_run(store, "child", parent_workflow_run_id=old, run_id="01AAAAAAAAAAAAAAAAXYZC0DVA")
    clock.advance(1)
    mixed = new_run(store, run_id="01bbbbbbbbbbbbbbbbc0dvad3m")
    assert store.find_run_ids("C0DVAD3M") == [mixed, old]
    assert store.find_run_ids("c0dvad3M") == [mixed, old]  # any case
    assert store.find_run_ids("01aaaaaaaaaaaaaaaa") == [child, old]  # children too
    assert store.find_run_ids("01BBBBBBBBBBBBBBBBC0DVAD3M") == [mixed]
    assert store.find_run_ids("AAAAAAAC0DVA") == []  # only at either end
    assert store.find_run_ids("%") == store.find_run_ids("_") == []


def test_find_gate_ids_matches_every_gate_row_answered_or_not(store) -> None:
    """A short gate id is matched against all gates: an answered one that shares the part is
    found too, so the CLI never takes the one still waiting for the one a person meant."""
    run_id = new_run(store)
    answered = new_step(store, run_id, "first", role="gate", gate_type="human_approval")
    store.approve_gate(answered, "alice", None, None)
    waiting = new_step(store, run_id, "second", role="gate", gate_type="human_approval")
    script = new_step(store, run_id, "build", role="agent")
    child_gate = new_step(store, new_run(store, parent_workflow_run_id=run_id), "g", role="gate")
    gates = sorted([answered, waiting, child_gate])
    assert {i[:2] for i in [*gates, script]} == {"01"}  # ULIDs: their time comes first
    assert store.find_gate_ids("01") == gates  # oldest first, answered too, never the script
    assert script not in store.find_gate_ids(script[:6])
    assert store.find_gate_ids(waiting[-8:].lower()) == [waiting]  # an end, any case
    assert store.find_gate_ids(answered) == [answered]
    assert store.find_gate_ids("%") == store.find_gate_ids("_") == []


def test_runs_created_in_the_same_millisecond_still_list_newest_first(store) -> None:
    ids = [new_run(store, f"wf{i}") for i in range(20)]
    assert [r.id for r in store.list_runs()] == ids[::-1]


def test_list_active_runs_filters_by_status_newest_first(store, clock: FakeClock) -> None:
    pending = new_run(store)
    clock.advance(1)
    running = new_run(store)
    store.update_run_status(running, RunStatus.RUNNING, None, None)
    clock.advance(1)
    waiting = new_run(store)
    store.set_waiting_blocked_on(waiting, {"type": "pr_checks", "gate_name": "g"})
    clock.advance(1)
    done = new_run(store)
    store.update_run_status(done, RunStatus.COMPLETED, "ok", None)
    clock.advance(1)
    resumable = new_run(store)
    store.update_run_status(resumable, RunStatus.NEEDS_RESUME, None, None)

    assert [r.id for r in store.list_active_runs([])] == [waiting, running, pending]
    assert [r.id for r in store.list_active_runs([RunStatus.RUNNING])] == [running]
    both = store.list_active_runs([RunStatus.COMPLETED, RunStatus.NEEDS_RESUME])
    assert [r.id for r in both] == [resumable, done]


def test_active_runs_are_found_among_many_finished_children(store, clock: FakeClock) -> None:
    """Schema version 8: the status index holds only unfinished runs; asking for active runs, for
    one active status or for finished ones still finds exactly those, however many children
    finished beside them."""
    parent = new_run(store)
    store.update_run_status(parent, RunStatus.RUNNING, None, None)
    finished = []
    for n in range(60):
        child = store.create_leased_run(
            NewRun(workflow_name="child", parent_workflow_run_id=parent, iteration=n), "t", 30, durable=False
        )
        store.finish_run(
            child.id, RunStatus.FAILED if n % 3 else RunStatus.COMPLETED, None, None, "t", durable=False
        )
        finished.append(child.id)
    clock.advance(1)
    waiting = new_run(store)
    store.set_waiting_blocked_on(waiting, {"type": "pr_checks", "gate_name": "g"})
    store.flush()
    assert {r.id for r in store.list_active_runs([])} == {parent, waiting}
    assert [r.id for r in store.list_active_runs([RunStatus.WAITING])] == [waiting]
    assert {r.id for r in store.list_active_runs([RunStatus.COMPLETED])} == set(finished[::3])
    assert len(store.list_active_runs([RunStatus.FAILED, RunStatus.RUNNING])) == 41


def test_update_run_status_refuses_waiting(store) -> None:
    run_id = new_run(store)
    with pytest.raises(PersistenceError, match=r"Use set_waiting_blocked_on\(\)"):
        store.update_run_status(run_id, RunStatus.WAITING, None, None)
    assert store.get_run(run_id).status is RunStatus.PENDING


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_a_terminal_run_status_sets_ended_at_summary_and_error(store, clock, status) -> None:
    run_id = new_run(store)
    clock.advance(2.5)
    store.update_run_status(run_id, status, "1 step done", "boom")
    run = store.get_run(run_id)
    assert (run.status, run.result_summary, run.error) == (status, "1 step done", "boom")
    assert run.ended_at == "2026-01-01T12:00:02.500Z"


@pytest.mark.parametrize(
    "status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.NEEDS_RESUME, RunStatus.CANCELLING]
)
def test_a_non_terminal_run_status_clears_ended_at(store, status) -> None:
    run_id = new_run(store)
    store.update_run_status(run_id, RunStatus.FAILED, None, "boom")
    store.update_run_status(run_id, status, None, None)
    run = store.get_run(run_id)
    assert run.status is status
    assert run.ended_at is None
    assert run.error is None


def test_set_waiting_blocked_on_and_any_status_update_clears_it(store) -> None:
    run_id = new_run(store)
    blocked = {"type": "human_approval", "gate_name": "g", "prompt": "ok?", "options": ["y", "n"]}
    store.set_waiting_blocked_on(run_id, blocked)
    run = store.get_run(run_id)
    assert run.status is RunStatus.WAITING
    assert run.blocked_on == blocked
    store.update_run_status(run_id, RunStatus.RUNNING, None, None)
    run = store.get_run(run_id)
    assert run.status is RunStatus.RUNNING
    assert run.blocked_on is None


def test_writing_an_unknown_run_is_an_error(store) -> None:
    with pytest.raises(PersistenceError, match="run nope not found"):
        store.update_run_status("nope", RunStatus.RUNNING, None, None)
    with pytest.raises(PersistenceError, match="run nope not found"):
        store.set_waiting_blocked_on("nope", {"type": "pr_checks", "gate_name": "g"})


@pytest.mark.parametrize(
    ("status", "cancelled"),
    [
        (RunStatus.CANCELLED, True),
        (RunStatus.CANCELLING, True),
        (RunStatus.RUNNING, False),
        (RunStatus.FAILED, False),
        (RunStatus.PENDING, False),
    ],
)
def test_is_run_cancelled_is_true_for_cancelled_and_cancelling(store, status, cancelled) -> None:
    run_id = new_run(store)
    if status is not RunStatus.PENDING:
        store.update_run_status(run_id, status, None, None)
    assert store.is_run_cancelled(run_id) is cancelled


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.NEEDS_RESUME])
def test_a_cancel_request_marks_a_run_that_has_not_ended(store, status) -> None:
    run_id = new_run(store)
    store.update_run_status(run_id, status, None, None)
    assert store.request_cancel(run_id) is True
    run = store.get_run(run_id)
    assert run.status is RunStatus.CANCELLING and run.ended_at is None and run.error is None
    assert store.is_run_cancelled(run_id)


def test_a_cancel_request_keeps_the_reason_for_the_engine_that_stops_the_run(store) -> None:
    """`runkon-flow cancel --message` reaches the engine running the run through the row."""
    run_id = new_run(store)
    store.update_run_status(run_id, RunStatus.RUNNING, None, "an earlier attempt's error")
    assert store.request_cancel(run_id, 'workflow cancelled: UserRequested(Some("wrong version"))') is True
    run = store.get_run(run_id)
    assert run.status is RunStatus.CANCELLING
    assert run.error == 'workflow cancelled: UserRequested(Some("wrong version"))'


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_a_cancel_request_keeps_the_end_of_a_run_that_ended_first(store, clock, status) -> None:
    run_id = new_run(store)
    store.update_run_status(run_id, status, "done", "why")
    assert store.request_cancel(run_id) is False
    run = store.get_run(run_id)
    assert (run.status, run.result_summary, run.error) == (status, "done", "why")
    assert run.ended_at is not None


def test_a_cancel_request_for_an_unknown_run_is_an_error(store) -> None:
    with pytest.raises(PersistenceError, match="run nope not found"):
        store.request_cancel("nope")


def test_a_take_over_ends_the_unfinished_runs_below_it_but_a_called_child(store, clock) -> None:
    """A resume ends what the engine before it left in flight (foreach children, at any depth),
    in one write; a `call workflow` child (a step row names it) is resumed in place instead."""
    root, gen = owned_run(store)

    def child(parent: str, name: str, status: RunStatus = RunStatus.RUNNING) -> str:
        run_id = new_run(store, name, parent_run_id=parent, parent_workflow_run_id=parent)
        store.acquire_lease(run_id, "dead-engine", 60)
        if status is RunStatus.WAITING:
            store.set_waiting_blocked_on(run_id, {"gate": "approve"})
        else:
            store.update_run_status(run_id, status, None, None)
        return run_id

    called = child(root, "inner")
    store.update_step(
        new_step(store, root, "workflow:inner", role="workflow"),
        StepUpdate(generation=gen, status=StepStatus.RUNNING, child_run_id=called),
    )
    in_flight = [child(called, "leaf"), child(called, "leaf", RunStatus.WAITING), child(root, "leaf")]
    done = child(called, "leaf", RunStatus.COMPLETED)
    elsewhere = child(new_run(store), "leaf")
    clock.advance(2)
    assert sorted(store.end_abandoned_descendants(root, "interrupted")) == sorted(in_flight)
    for run_id in in_flight:
        run = store.get_run(run_id)
        assert (run.status, run.error, run.owner_token) == (RunStatus.CANCELLED, "interrupted", None)
        assert run.ended_at == "2026-01-01T12:00:02.000Z"
    kept = ((called, RunStatus.RUNNING), (done, RunStatus.COMPLETED), (elsewhere, RunStatus.RUNNING))
    for run_id, status in kept:
        assert store.get_run(run_id).status is status
    assert store.end_abandoned_descendants(root, "interrupted") == []


@pytest.mark.parametrize("accepted", [True, False])
def test_a_finish_with_abandoned_ends_every_unfinished_run_below_called_ones_too(
    store, clock, accepted
) -> None:
    """A resumed run that ends: a called child it did not reach again (another branch) would
    read `running` for good. Ended in the finish's own write — and only if the finish is written:
    a refused one (another engine owns the run) leaves the tree to that engine. `ended` gets the
    ids of the runs it ended (the engine sends each one's end event), none of the finished ones."""
    root, gen = owned_run(store, "t1")

    def child(parent: str, name: str, status: RunStatus = RunStatus.RUNNING) -> str:
        run_id = new_run(store, name, parent_run_id=parent, parent_workflow_run_id=parent)
        store.acquire_lease(run_id, "dead-engine", 60)
        store.update_run_status(run_id, status, None, None)
        return run_id

    called = child(root, "inner")
    store.update_step(
        new_step(store, root, "workflow:inner", role="workflow"),
        StepUpdate(generation=gen, status=StepStatus.CANCELLED, child_run_id=called),
    )
    below = [called, child(called, "leaf"), child(root, "leaf")]
    done = child(called, "leaf", RunStatus.FAILED)
    elsewhere = child(new_run(store), "leaf")
    clock.advance(2)
    token = "t1" if accepted else "someone-else"
    ended: list[str] = []
    finished = store.finish_run(root, RunStatus.COMPLETED, "ok", None, token, abandoned="gone", ended=ended)
    assert finished is accepted
    assert sorted(ended) == (sorted(below) if accepted else [])  # the engine says each one's end
    for run_id in below:
        run = store.get_run(run_id)
        if accepted:
            assert (run.status, run.error, run.owner_token) == (RunStatus.CANCELLED, "gone", None)
            assert run.ended_at == "2026-01-01T12:00:02.000Z"
        else:
            assert (run.status, run.owner_token) == (RunStatus.RUNNING, "dead-engine")
    assert store.get_run(done).status is RunStatus.FAILED
    assert store.get_run(elsewhere).status is RunStatus.RUNNING


@pytest.mark.parametrize(
    ("status", "resuming", "found"),
    [
        (RunStatus.PENDING, False, None),  # None: this call marked it running
        (RunStatus.FAILED, True, None),
        (RunStatus.CANCELLED, True, None),  # a cancelled run resumed runs again
        (RunStatus.CANCELLED, False, RunStatus.CANCELLED),  # cancelled while pending: never started
        (RunStatus.CANCELLING, False, RunStatus.CANCELLING),  # a cancel requested stands
        (RunStatus.CANCELLING, True, RunStatus.CANCELLING),
        (RunStatus.RUNNING, False, RunStatus.RUNNING),  # another engine started it meanwhile
        (RunStatus.COMPLETED, False, RunStatus.COMPLETED),  # … and finished it
    ],
)
def test_start_run_marks_a_run_running_unless_a_cancel_stands_or_it_was_started(
    store, status, resuming, found
) -> None:
    run_id = new_run(store)
    if status is not RunStatus.PENDING:
        store.update_run_status(run_id, status, "summary", "why")
    assert store.start_run(run_id, resuming=resuming) is found
    run = store.get_run(run_id)
    if found is None:
        assert (run.status, run.result_summary, run.error, run.ended_at) == (
            RunStatus.RUNNING,
            None,
            None,
            None,
        )
    else:
        assert (run.status, run.error) == (status, "why")


def test_start_run_of_an_unknown_run_is_an_error(store) -> None:
    with pytest.raises(PersistenceError, match="run nope not found"):
        store.start_run("nope", resuming=False)


def test_is_run_cancelled_of_an_unknown_run_is_false(store) -> None:
    assert store.is_run_cancelled("nope") is False


def test_a_leased_run_is_created_running_and_owned_in_one_step(store, clock) -> None:
    snapshot = json.dumps({"title": "Child"})
    run = store.create_leased_run(
        NewRun(
            workflow_name="child",
            parent_run_id="p",
            parent_workflow_run_id="p",
            definition_snapshot=snapshot,
            inputs={"item.id": "7"},
            iteration=2,
        ),
        "owner-1",
        30,
    )
    assert store.get_run(run.id) == run
    assert (run.status, run.owner_token, run.generation) == (RunStatus.RUNNING, "owner-1", 1)
    assert (run.workflow_title, run.inputs, run.iteration) == ("Child", {"item.id": "7"}, 2)
    assert run.started_at == "2026-01-01T12:00:00.000Z"
    assert run.lease_until is not None and run.ended_at is None
    assert store.get_run(run.id).status is RunStatus.RUNNING


def test_a_leased_run_behaves_like_a_run_acquired_once(store, clock) -> None:
    run = store.create_leased_run(NewRun(workflow_name="child"), "owner-1", 10)
    step_id = new_step(store, run.id, retry_count=0)
    store.update_step(step_id, StepUpdate(generation=1, status=StepStatus.RUNNING))
    assert store.acquire_lease(run.id, "owner-1", 10) == 1  # renewal by its owner
    assert store.acquire_lease(run.id, "intruder", 10) is None
    clock.advance(10.001)
    assert store.acquire_lease(run.id, "intruder", 10) == 2
    with pytest.raises(EngineCancelled, match="LeaseLost"):
        store.update_step(step_id, StepUpdate.completed(1))


def test_a_leased_run_refuses_a_duplicate_id_and_a_negative_ttl(store) -> None:
    store.create_leased_run(NewRun(workflow_name="wf", run_id="r1"), "t", 10)
    with pytest.raises(PersistenceError, match="r1 already exists"):
        store.create_leased_run(NewRun(workflow_name="wf", run_id="r1"), "t", 10)
    with pytest.raises(PersistenceError, match="ttl"):
        store.create_leased_run(NewRun(workflow_name="wf"), "t", -1)
    assert store.get_run("r1").owner_token == "t"


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_finishing_a_run_records_its_end_and_hands_the_lease_back(store, clock, status) -> None:
    run_id, gen = owned_run(store, "t1")
    store.set_waiting_blocked_on(run_id, {"type": "human_approval", "gate_name": "g"})
    clock.advance(1.25)
    store.finish_run(run_id, status, "summary", "why", "t1")
    run = store.get_run(run_id)
    assert (run.status, run.result_summary, run.error) == (status, "summary", "why")
    assert (run.ended_at, run.blocked_on) == ("2026-01-01T12:00:01.250Z", None)
    assert (run.owner_token, run.lease_until, run.generation) == (None, None, gen)
    assert store.acquire_lease(run_id, "t2", 10) == gen + 1  # free at once


def test_finishing_with_a_token_that_lost_the_lease_leaves_the_new_owner_alone(store) -> None:
    run_id, _ = owned_run(store, "t1")
    store.update_run_status(run_id, RunStatus.RUNNING, None, None)
    assert store.finish_run(run_id, RunStatus.FAILED, None, "boom", "someone-else") is False
    run = store.get_run(run_id)
    assert (run.status, run.error, run.ended_at, run.owner_token) == (RunStatus.RUNNING, None, None, "t1")
    assert run.lease_until is not None


@pytest.mark.parametrize("durable", [True, False])
def test_an_engine_paused_past_its_lease_cannot_overwrite_the_end_the_new_owner_wrote(
    store, clock, durable
) -> None:
    """SIGSTOP before the final write: the run was taken over and finished meanwhile."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "paused", 10, durable=durable)
    store.flush()
    clock.advance(11)
    assert store.acquire_lease(run.id, "new-owner", 10) == 2
    assert store.finish_run(run.id, RunStatus.COMPLETED, "done", None, "new-owner") is True
    store.finish_run(run.id, RunStatus.FAILED, "stale", "stale", "paused", durable=durable)
    store.flush()
    ended = store.get_run(run.id)
    assert (ended.status, ended.result_summary, ended.error) == (RunStatus.COMPLETED, "done", None)


def test_a_write_behind_finish_refused_when_committed_tells_its_caller(store, clock) -> None:
    """The engine must learn that a child's end it queued was not written (another engine owns
    the child): a store that queues it calls `on_refused` when the commit refuses it; one that
    writes at once returns False. Never both, never neither."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "paused", 10)
    clock.advance(11)
    assert store.acquire_lease(run.id, "new-owner", 10) == 2
    refused: list[str] = []
    queued = store.finish_run(
        run.id,
        RunStatus.COMPLETED,
        "stale",
        None,
        "paused",
        durable=False,
        on_refused=lambda: refused.append("x"),
    )
    store.flush()
    assert (queued, refused) in ((False, []), (True, ["x"]))
    assert (store.get_run(run.id).status, store.get_run(run.id).owner_token) == (
        RunStatus.RUNNING,
        "new-owner",
    )
    accepted: list[str] = []
    assert store.finish_run(
        run.id,
        RunStatus.COMPLETED,
        "ok",
        None,
        "new-owner",
        durable=False,
        on_refused=lambda: accepted.append("x"),
    )
    store.flush()
    assert accepted == [] and store.get_run(run.id).status is RunStatus.COMPLETED


def test_a_lapsed_lease_nobody_took_still_lets_its_owner_finish(store, clock) -> None:
    run_id, _ = owned_run(store, "t1")
    clock.advance(61)
    assert store.finish_run(run_id, RunStatus.COMPLETED, "ok", None, "t1") is True
    assert (store.get_run(run_id).status, store.get_run(run_id).owner_token) == (RunStatus.COMPLETED, None)


@pytest.mark.parametrize(
    "status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.CANCELLING]
)
def test_finishing_needs_a_terminal_status(store, status) -> None:
    run_id, _ = owned_run(store, "t1")
    with pytest.raises(PersistenceError, match="terminal status"):
        store.finish_run(run_id, status, None, None, "t1")
    assert store.get_run(run_id).owner_token == "t1"


def test_finishing_an_unknown_run_is_an_error(store) -> None:
    with pytest.raises(PersistenceError, match="run nope not found"):
        store.finish_run("nope", RunStatus.COMPLETED, None, None, "t1")


def test_write_behind_writes_apply_in_order_and_this_process_reads_them(store) -> None:
    """durable=False may queue a write (SQLite), but reads, flush() and later writes see it."""
    run = store.create_leased_run(NewRun(workflow_name="child"), "t1", 30, durable=False)
    step_id = store.insert_step(NewStep(run.id, "s", retry_count=0), durable=False)
    store.update_step(step_id, StepUpdate.completed(1, result_text="done"), durable=False)
    store.finish_run(run.id, RunStatus.COMPLETED, "ok", None, "t1", durable=False)
    assert store.get_step(step_id).status is StepStatus.COMPLETED
    assert store.get_run(run.id).status is RunStatus.COMPLETED
    store.flush()
    assert store.get_run(run.id).owner_token is None


# --------------------------------------------------------------------------- steps


def test_a_step_inserted_with_a_retry_count_starts_running(store, clock) -> None:
    run_id = new_run(store)
    clock.advance(1)
    step_id = new_step(store, run_id, "build", position=4, iteration=2, retry_count=1)
    step = store.get_step(step_id)
    assert (step.status, step.retry_count, step.position, step.iteration) == (StepStatus.RUNNING, 1, 4, 2)
    assert step.started_at == "2026-01-01T12:00:01.000Z"
    assert (step.workflow_run_id, step.step_name, step.role, step.can_commit) == (
        run_id,
        "build",
        "agent",
        False,
    )
    assert step.ended_at is None


def test_a_step_inserted_without_a_retry_count_is_pending(store) -> None:
    run_id = new_run(store)
    step = store.get_step(new_step(store, run_id, "g", role="gate"))
    assert (step.status, step.retry_count, step.started_at) == (StepStatus.PENDING, 0, None)


def test_gate_details_are_stored_so_a_ui_can_show_them(store) -> None:
    run_id = new_run(store)
    step_id = new_step(
        store, run_id, "approve", role="gate", gate_type="human_approval", gate_prompt="Ship?",
        gate_timeout="2h", gate_options=OPTIONS,
    )  # fmt: skip
    step = store.get_step(step_id)
    assert (step.gate_type, step.gate_prompt, step.gate_timeout, step.gate_options) == (
        "human_approval", "Ship?", "2h", OPTIONS,
    )  # fmt: skip


def test_a_step_records_its_place_in_the_workflow_tree(store) -> None:
    run_id = new_run(store)
    inner = new_step(store, run_id, "review", position=1, retry_count=0, node_path="body.1.then.0")
    outer = new_step(store, run_id, "review", position=2, retry_count=0, node_path="body.2")
    unplaced = new_step(store, run_id, "old", position=3)
    assert [s.node_path for s in store.get_steps(run_id)] == ["body.1.then.0", "body.2", None]
    assert store.get_step(inner).node_path == "body.1.then.0"
    assert store.get_step(outer).node_path == "body.2"
    assert store.get_step(unplaced).node_path is None


def test_a_step_keeps_its_node_path_through_every_update(store) -> None:
    run_id, gen = owned_run(store)
    row = NewStep(workflow_run_id=run_id, step_name="s", retry_count=0, node_path="body.0.body.1")
    step_id = store.insert_step(row, durable=False)
    store.update_step(step_id, StepUpdate.completed(gen, result_text="ok"), durable=False)
    assert store.get_step(step_id).node_path == "body.0.body.1"


# --------------------------------------------------------------------------- usage (schema v6)


@pytest.mark.parametrize("durable", [True, False])
def test_a_step_keeps_the_usage_it_ends_with(store, durable) -> None:
    """What a step spent (tokens, cost) is written with its terminal status, also when the write
    is queued behind the step's own insert; a later write without usage leaves it; NULL before."""
    run_id, gen = owned_run(store)
    spent = '{"input_tokens":1200,"output_tokens":300,"cost_usd":0.0125}'
    row = NewStep(workflow_run_id=run_id, step_name="s", retry_count=0)
    step_id = store.insert_step(row, durable=durable)
    assert store.get_step(step_id).usage is None
    store.update_step(step_id, StepUpdate.completed(gen, result_text="ok", usage=spent), durable=durable)
    store.flush()
    assert store.get_step(step_id).usage == spent
    assert [s.usage for s in store.get_steps(run_id)] == [spent]
    plain = new_step(store, run_id, "plain", retry_count=0)
    store.update_step(plain, StepUpdate.failed(gen, "boom"))
    assert store.get_step(plain).usage is None


def test_the_usage_of_a_fan_outs_children_is_read_in_one_call(store) -> None:
    """`item_child_usage` (ours, for `show --items`): the usage of every step row of the child
    runs a foreach step row's items ran as — not of other runs, nor rows without usage."""
    step_id = foreach_step(store)
    a, b, c = store.insert_fan_out_items(step_id, [("t", x, "", {}) for x in "abc"])
    spent = {}
    for item, name in ((a, "a"), (b, "b")):
        child, gen = owned_run(store, f"owner-{name}")
        for n, usage in enumerate(('{"cost_usd":0.1}', None)):
            row = new_step(store, child, f"s{n}", retry_count=0)
            store.update_step(row, StepUpdate.completed(gen, result_text="ok", usage=usage))
        store.update_fan_out_item(item, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, child))
        spent[child] = '{"cost_usd":0.1}'
    store.update_fan_out_item(c, FanOutItemUpdate.running())  # no child run yet
    other, gen = owned_run(store, "owner-other")
    row = new_step(store, other, "x", retry_count=0)
    store.update_step(row, StepUpdate.completed(gen, result_text="ok", usage='{"cost_usd":9}'))
    assert sorted(store.item_child_usage(step_id)) == sorted(spent.items())
    assert store.item_child_usage(foreach_step(store)) == []


def test_the_failed_steps_of_a_fan_outs_children_are_read_in_one_call(store) -> None:
    """`item_child_failed_steps` (ours, for `show`'s failed items and clusters): the step rows of
    a foreach step row's items' child runs that failed, timed out or were cancelled with an error
    — not completed rows, failed rows without an error, nor other runs' rows."""
    step_id = foreach_step(store)
    a, b, c = store.insert_fan_out_items(step_id, [("t", x, "", {}) for x in "abc"])
    wanted = set()
    for item, name in ((a, "a"), (b, "b")):
        child, gen = owned_run(store, f"owner-{name}")
        ok = new_step(store, child, "ok", retry_count=0)
        store.update_step(ok, StepUpdate.completed(gen, result_text="ok"))
        bad = new_step(store, child, "bad", retry_count=0)
        store.update_step(bad, StepUpdate.failed(gen, f"boom {name}"))
        wanted.add((child, "bad", f"boom {name}"))
        silent = new_step(store, child, "silent", retry_count=0)
        store.update_step(silent, StepUpdate(gen, StepStatus.CANCELLED))
        store.update_fan_out_item(item, FanOutItemUpdate.terminal(FanOutItemStatus.FAILED, child))
    store.update_fan_out_item(c, FanOutItemUpdate.running())  # no child run yet
    other, gen = owned_run(store, "owner-other")
    store.update_step(new_step(store, other, "x", retry_count=0), StepUpdate.failed(gen, "elsewhere"))
    found = store.item_child_failed_steps(step_id)
    assert {(r.workflow_run_id, r.step_name, r.step_error) for r in found} == wanted
    assert {str(r.status) for r in found} == {"failed"}
    assert store.item_child_failed_steps(foreach_step(store)) == []


@pytest.mark.parametrize("role", ["actor", "reviewer", "script", ""])
def test_roles_outside_the_canonical_schema_are_refused(store, role) -> None:
    run_id = new_run(store)
    with pytest.raises(PersistenceError, match="invalid step role"):
        new_step(store, run_id, role=role)
    assert store.get_steps(run_id) == []


def test_a_step_for_an_unknown_run_is_refused(store) -> None:
    with pytest.raises(PersistenceError, match="run nope not found"):
        new_step(store, "nope")


def test_get_steps_orders_by_position_then_insertion(store) -> None:
    run_id = new_run(store)
    other = new_run(store)
    c = new_step(store, run_id, "c", position=2, retry_count=0)
    a = new_step(store, run_id, "a", position=0, retry_count=0)
    b0 = new_step(store, run_id, "b", position=1, retry_count=0)
    b1 = new_step(store, run_id, "b", position=1, retry_count=1)
    b2 = new_step(store, run_id, "b", position=1, retry_count=2)
    new_step(store, other, "x")
    assert [s.id for s in store.get_steps(run_id)] == [a, b0, b1, b2, c]
    assert [s.retry_count for s in store.get_steps(run_id)] == [0, 0, 1, 2, 0]
    assert store.get_steps("nope") == []


def test_get_step_of_an_unknown_id_is_none(store) -> None:
    assert store.get_step("nope") is None


@pytest.mark.parametrize("status", [StepStatus.RUNNING, StepStatus.WAITING])
def test_a_starting_update_sets_status_child_and_started_at(store, clock, status) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, "g", role="gate")
    clock.advance(3)
    store.update_step(step_id, StepUpdate(generation=gen, status=status, child_run_id="child-1"))
    step = store.get_step(step_id)
    assert (step.status, step.child_run_id, step.started_at) == (
        status,
        "child-1",
        "2026-01-01T12:00:03.000Z",
    )
    store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.RUNNING))
    assert store.get_step(step_id).child_run_id is None


def test_a_completed_update_records_every_output(store, clock) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, "build", retry_count=0)
    clock.advance(4)
    store.update_step(
        step_id,
        StepUpdate.completed(
            gen, child_run_id="c1", result_text="done", context_out="ctx", markers_out='["m"]', attempt=2,
            structured_output='{"k": 1}',
        ),
    )  # fmt: skip
    step = store.get_step(step_id)
    assert step.status is StepStatus.COMPLETED
    assert step.ended_at == "2026-01-01T12:00:04.000Z"
    assert (step.result_text, step.context_out, step.markers_out) == ("done", "ctx", '["m"]')
    assert (step.retry_count, step.structured_output, step.child_run_id) == (2, '{"k": 1}', "c1")
    assert step.step_error is None


def test_a_failed_update_keeps_the_child_and_retry_count_it_does_not_mention(store) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, "wf", role="workflow", retry_count=3)
    store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.RUNNING, child_run_id="child-9"))
    store.update_step(step_id, StepUpdate.failed(gen, "boom"))
    step = store.get_step(step_id)
    assert (step.status, step.result_text, step.step_error) == (StepStatus.FAILED, "boom", "boom")
    assert (step.child_run_id, step.retry_count) == ("child-9", 3)


@pytest.mark.parametrize("status", [StepStatus.TIMED_OUT, StepStatus.SKIPPED, StepStatus.CANCELLED])
def test_other_terminal_statuses_are_recorded(store, status) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, retry_count=0)
    store.update_step(step_id, StepUpdate(generation=gen, status=status, step_error="why"))
    step = store.get_step(step_id)
    assert (step.status, step.step_error) == (status, "why")
    assert step.ended_at is not None


@pytest.mark.parametrize("durable", [True, False])
def test_a_finished_foreach_step_records_its_fan_out_counts(store, durable) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, "fan", role="foreach")
    store.update_step(
        step_id,
        StepUpdate(generation=gen, status=StepStatus.COMPLETED, fan_out=(5, 3, 1, 1)),
        durable=durable,
    )
    store.flush()
    step = store.get_step(step_id)
    assert (step.fan_out_total, step.fan_out_completed, step.fan_out_failed, step.fan_out_skipped) == (
        5,
        3,
        1,
        1,
    )


def test_a_pending_update_changes_only_the_status(store) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, "g", role="gate")
    store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.WAITING, child_run_id="c"))
    before = store.get_step(step_id)
    store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.PENDING, result_text="ignored"))
    after = store.get_step(step_id)
    assert after.status is StepStatus.PENDING
    assert (after.child_run_id, after.started_at, after.result_text) == (
        before.child_run_id,
        before.started_at,
        None,
    )


def test_a_terminal_step_is_never_overwritten(store) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, retry_count=0)
    store.update_step(step_id, StepUpdate.completed(gen, result_text="first"))
    first = store.get_step(step_id)
    store.update_step(step_id, StepUpdate.failed(gen, "second"))
    store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.RUNNING, child_run_id="x"))
    store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.PENDING))
    assert store.get_step(step_id) == first


def test_a_stale_generation_is_fenced_with_lease_lost(store) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, retry_count=0)
    with pytest.raises(EngineCancelled) as info:
        store.update_step(step_id, StepUpdate.completed(gen + 1, result_text="late"))
    assert info.value.reason.kind == "LeaseLost"
    assert str(info.value) == "workflow cancelled: LeaseLost"
    assert store.get_step(step_id).status is StepStatus.RUNNING


def test_a_stale_generation_is_fenced_even_on_a_terminal_row(store) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, retry_count=0)
    store.update_step(step_id, StepUpdate.completed(gen))
    with pytest.raises(EngineCancelled):
        store.update_step(step_id, StepUpdate.completed(gen - 1))


def test_updating_an_unknown_step_is_an_error(store) -> None:
    with pytest.raises(PersistenceError, match="step nope not found"):
        store.update_step("nope", StepUpdate.completed(0))


# --------------------------------------------------------------------------- leases


def test_a_fresh_run_acquired_once_has_generation_one(store, clock) -> None:
    run_id = new_run(store)
    assert store.acquire_lease(run_id, "t1", 30) == 1
    run = store.get_run(run_id)
    assert (run.owner_token, run.generation) == ("t1", 1)
    assert run.lease_until is not None


def test_renewing_with_the_same_token_keeps_the_generation_and_extends_the_lease(store, clock) -> None:
    run_id = new_run(store)
    store.acquire_lease(run_id, "t1", 10)
    clock.advance(8)
    assert store.acquire_lease(run_id, "t1", 10) == 1
    clock.advance(8)  # 16 s after the first acquire: alive only because of the renewal
    assert store.acquire_lease(run_id, "t2", 10) is None


def test_another_token_cannot_take_a_live_lease(store, clock) -> None:
    run_id = new_run(store)
    store.acquire_lease(run_id, "t1", 10)
    clock.advance(10)  # exactly at lease_until: still held
    assert store.acquire_lease(run_id, "t2", 10) is None
    assert store.get_run(run_id).owner_token == "t1"


def test_an_expired_lease_passes_to_a_new_owner_with_a_higher_generation(store, clock) -> None:
    run_id = new_run(store)
    store.acquire_lease(run_id, "t1", 10)
    clock.advance(10.001)
    assert store.acquire_lease(run_id, "t2", 10) == 2
    assert store.get_run(run_id).owner_token == "t2"
    assert store.acquire_lease(run_id, "t1", 10) is None


def test_the_superseded_owner_can_no_longer_write_steps(store, clock) -> None:
    run_id = new_run(store)
    old_gen = store.acquire_lease(run_id, "old", 5)
    step_id = new_step(store, run_id, retry_count=0)
    clock.advance(6)
    new_gen = store.acquire_lease(run_id, "new", 5)
    assert new_gen == old_gen + 1
    with pytest.raises(EngineCancelled, match="LeaseLost"):
        store.update_step(step_id, StepUpdate.completed(old_gen, result_text="stale"))
    store.update_step(step_id, StepUpdate.completed(new_gen, result_text="fresh"))
    assert store.get_step(step_id).result_text == "fresh"


def test_acquiring_a_lease_on_an_unknown_run_returns_none(store) -> None:
    assert store.acquire_lease("nope", "t1", 10) is None


def test_a_negative_ttl_is_refused(store) -> None:
    run_id = new_run(store)
    with pytest.raises(PersistenceError, match="ttl"):
        store.acquire_lease(run_id, "t1", -1)


def test_releasing_hands_the_run_over_at_once(store) -> None:
    run_id = new_run(store)
    store.acquire_lease(run_id, "t1", 3600)
    store.release_lease(run_id, "t1")
    run = store.get_run(run_id)
    assert (run.owner_token, run.lease_until, run.generation) == (None, None, 1)
    assert store.acquire_lease(run_id, "t2", 10) == 2


def test_releasing_with_a_foreign_token_changes_nothing(store) -> None:
    run_id = new_run(store)
    store.acquire_lease(run_id, "t1", 3600)
    store.release_lease(run_id, "t2")
    store.release_lease("nope", "t1")
    assert store.get_run(run_id).owner_token == "t1"
    assert store.acquire_lease(run_id, "t2", 10) is None


def test_reacquiring_after_a_release_fences_writes_from_before_it(store) -> None:
    run_id, gen = owned_run(store, "t1")
    step_id = new_step(store, run_id, retry_count=0)
    store.release_lease(run_id, "t1")
    assert store.acquire_lease(run_id, "t1", 10) == gen + 1
    with pytest.raises(EngineCancelled):
        store.update_step(step_id, StepUpdate.completed(gen))


# --------------------------------------------------------------------------- gates


def gate(store, options: str | None = None) -> str:
    run_id = new_run(store)
    return new_step(store, run_id, "approve", role="gate", gate_type="human_approval", gate_options=options)


def test_an_unknown_or_open_gate_is_pending(store) -> None:
    assert store.get_gate_approval("nope").is_pending
    assert store.get_gate_approval(gate(store)).is_pending


def test_approving_completes_the_gate_and_records_who_and_why(store, clock) -> None:
    step_id = gate(store)
    clock.advance(7)
    store.approve_gate(step_id, "alice", "looks good", None)
    step = store.get_step(step_id)
    assert step.status is StepStatus.COMPLETED
    assert step.ended_at == step.gate_approved_at == "2026-01-01T12:00:07.000Z"
    assert (step.gate_approved_by, step.gate_feedback, step.gate_selections) == ("alice", "looks good", None)
    assert step.context_out is None
    state = store.get_gate_approval(step_id)
    assert state.is_approved
    assert (state.feedback, state.selections, state.by) == ("looks good", (), "alice")


def test_approving_with_selections_stores_them_and_hands_them_on_as_context(store) -> None:
    step_id = gate(store, OPTIONS)
    store.approve_gate(step_id, "bob", None, ["c", "a"])
    step = store.get_step(step_id)
    assert json.loads(step.gate_selections) == ["c", "a"]
    assert step.context_out == "User selected the following items:\n- c\n- a\n"
    state = store.get_gate_approval(step_id)
    assert (state.state, state.selections, state.feedback) == ("approved", ("c", "a"), None)


def test_an_empty_selection_list_is_stored_as_an_empty_array(store) -> None:
    step_id = gate(store)
    store.approve_gate(step_id, "bob", None, [])
    step = store.get_step(step_id)
    assert json.loads(step.gate_selections) == []
    assert step.context_out is None


def test_a_selection_outside_the_options_is_refused_listing_the_allowed_values(store) -> None:
    step_id = gate(store, OPTIONS)
    with pytest.raises(
        PersistenceError, match=r"Invalid gate selection 'z' - not in allowed options: \[a, b, c\]"
    ):
        store.approve_gate(step_id, "bob", None, ["a", "z"])
    assert store.get_gate_approval(step_id).is_pending


def test_selections_for_a_gate_without_options_are_refused(store) -> None:
    step_id = gate(store)
    with pytest.raises(PersistenceError, match="no options configured for this gate"):
        store.approve_gate(step_id, "bob", None, ["a"])
    assert store.get_step(step_id).status is StepStatus.PENDING


@pytest.mark.parametrize("options", ['[{"label": "x"}]', "[]", '{"value": "a"}'])
def test_selections_for_a_gate_with_unusable_options_are_refused(store, options) -> None:
    step_id = gate(store, options)
    with pytest.raises(PersistenceError, match="No valid options"):
        store.approve_gate(step_id, "bob", None, ["a"])


def test_rejecting_fails_the_gate_and_records_who_and_why(store) -> None:
    step_id = gate(store)
    store.reject_gate(step_id, "carol", "not yet")
    step = store.get_step(step_id)
    assert (step.status, step.gate_approved_by, step.gate_feedback) == (StepStatus.FAILED, "carol", "not yet")
    assert step.gate_approved_at is None
    assert step.ended_at is not None
    state = store.get_gate_approval(step_id)
    assert (state.state, state.feedback, state.by) == ("rejected", "not yet", "carol")


def test_a_gate_completed_by_the_engine_reads_as_approved(store) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, "dry", role="gate")
    store.update_step(step_id, StepUpdate.completed(gen))
    assert store.get_gate_approval(step_id).is_approved


def test_a_timed_out_gate_reads_as_pending(store) -> None:
    run_id, gen = owned_run(store)
    step_id = new_step(store, run_id, "g", role="gate")
    store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.TIMED_OUT))
    assert store.get_gate_approval(step_id).is_pending


def test_a_resolved_gate_cannot_be_resolved_again(store) -> None:
    approved = gate(store)
    store.approve_gate(approved, "alice", "yes", None)
    with pytest.raises(PersistenceError, match="already completed"):
        store.reject_gate(approved, "bob", "no")
    with pytest.raises(PersistenceError, match="already completed"):
        store.approve_gate(approved, "bob", "again", None)
    rejected = gate(store)
    store.reject_gate(rejected, "bob", "no")
    with pytest.raises(PersistenceError, match="already failed"):
        store.approve_gate(rejected, "alice", "yes", None)
    assert store.get_gate_approval(approved).by == "alice"
    assert store.get_gate_approval(rejected).is_rejected


def test_resolving_an_unknown_gate_is_an_error(store) -> None:
    with pytest.raises(PersistenceError, match="step nope not found"):
        store.approve_gate("nope", "a", None, None)
    with pytest.raises(PersistenceError, match="step nope not found"):
        store.reject_gate("nope", "a", None)


# --------------------------------------------------------------------------- fan-out items


def test_inserting_a_fan_out_item_twice_returns_the_existing_row(store) -> None:
    step_id = foreach_step(store)
    first = store.insert_fan_out_item(step_id, "ticket", "T-1", "ref-1", {"k": "v"})
    again = store.insert_fan_out_item(step_id, "ticket", "T-1", "ref-2", {"k": "other"})
    other_type = store.insert_fan_out_item(step_id, "pr", "T-1", "ref-3", {})
    assert again == first
    assert other_type != first
    rows = store.get_fan_out_items(step_id)
    assert [(r.id, r.item_ref, r.context) for r in rows] == [
        (first, "ref-1", {"k": "v"}),
        (other_type, "ref-3", {}),
    ]
    row = rows[0]
    assert (row.step_run_id, row.item_type, row.item_id, row.status) == (step_id, "ticket", "T-1", "pending")
    assert (row.child_run_id, row.dispatched_at, row.completed_at) == (None, None, None)


def test_batch_insert_returns_ids_in_order_including_existing_and_repeated_items(store) -> None:
    step_id = foreach_step(store)
    existing = store.insert_fan_out_item(step_id, "t", "b", "", {})
    ids = store.insert_fan_out_items(
        step_id,
        [("t", "a", "ra", {}), ("t", "b", "rb", {}), ("t", "c", "rc", {"x": "1"}), ("t", "a", "", {})],
    )
    assert ids[1] == existing
    assert ids[3] == ids[0]
    assert len(set(ids)) == 3
    assert [r.item_id for r in store.get_fan_out_items(step_id)] == ["b", "a", "c"]
    assert store.insert_fan_out_items(step_id, []) == []


def test_fan_out_items_come_back_in_insertion_order(store) -> None:
    step_id = foreach_step(store)
    names = [f"item-{(i * 7919) % 1000:04d}" for i in range(1000)]  # deliberately not sorted
    ids = store.insert_fan_out_items(step_id, [("t", n, n, {}) for n in names])
    for n in ("late-z", "late-a"):
        ids.append(store.insert_fan_out_item(step_id, "t", n, "", {}))
    rows = store.get_fan_out_items(step_id)
    assert [r.id for r in rows] == ids
    assert [r.item_id for r in rows] == [*names, "late-z", "late-a"]


def test_fan_out_items_for_an_unknown_step_are_refused(store) -> None:
    with pytest.raises(PersistenceError, match="step nope not found"):
        store.insert_fan_out_item("nope", "t", "a", "", {})
    with pytest.raises(PersistenceError, match="step nope not found"):
        store.insert_fan_out_items("nope", [("t", "a", "", {})])


def test_get_fan_out_items_filters_by_status(store) -> None:
    step_id = foreach_step(store)
    a, b, c = store.insert_fan_out_items(step_id, [("t", x, "", {}) for x in "abc"])
    store.update_fan_out_item(b, FanOutItemUpdate.running())
    store.update_fan_out_item(c, FanOutItemUpdate.terminal(FanOutItemStatus.FAILED))
    assert [r.id for r in store.get_fan_out_items(step_id, FanOutItemStatus.PENDING)] == [a]
    assert [r.id for r in store.get_fan_out_items(step_id, FanOutItemStatus.RUNNING)] == [b]
    assert [r.id for r in store.get_fan_out_items(step_id, FanOutItemStatus.FAILED)] == [c]
    assert store.get_fan_out_items(step_id, FanOutItemStatus.COMPLETED) == []
    assert store.get_fan_out_items("nope") == []


def test_a_fan_out_item_moves_pending_running_completed_with_timestamps(store, clock) -> None:
    step_id = foreach_step(store)
    item = store.insert_fan_out_item(step_id, "t", "a", "", {})
    clock.advance(1)
    store.update_fan_out_item(item, FanOutItemUpdate.running())
    row = store.get_fan_out_items(step_id)[0]
    assert (row.status, row.child_run_id, row.dispatched_at) == (
        "running",
        "dispatching",
        "2026-01-01T12:00:01.000Z",
    )
    assert row.completed_at is None
    clock.advance(1)
    store.update_fan_out_item(item, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED))
    row = store.get_fan_out_items(step_id)[0]
    assert (row.status, row.child_run_id, row.completed_at) == (
        "completed",
        "dispatching",
        "2026-01-01T12:00:02.000Z",
    )
    assert row.dispatched_at == "2026-01-01T12:00:01.000Z"


def test_a_terminal_item_update_may_record_the_real_child_run(store) -> None:
    step_id = foreach_step(store)
    item = store.insert_fan_out_item(step_id, "t", "a", "", {})
    store.update_fan_out_item(item, FanOutItemUpdate.running())
    store.update_fan_out_item(item, FanOutItemUpdate.terminal(FanOutItemStatus.FAILED, "child-7"))
    assert store.get_fan_out_items(step_id)[0].child_run_id == "child-7"


def test_a_running_item_can_be_put_back_to_pending_for_a_resume(store) -> None:
    step_id = foreach_step(store)
    item = store.insert_fan_out_item(step_id, "t", "a", "", {})
    store.update_fan_out_item(item, FanOutItemUpdate.running("child-1"))
    store.update_fan_out_item(item, FanOutItemUpdate(FanOutItemStatus.PENDING))
    row = store.get_fan_out_items(step_id)[0]
    assert (row.status, row.child_run_id, row.dispatched_at, row.completed_at) == (
        "pending",
        None,
        None,
        None,
    )


def test_batch_update_applies_every_update(store) -> None:
    step_id = foreach_step(store)
    ids = store.insert_fan_out_items(step_id, [("t", str(i), "", {}) for i in range(5)])
    store.batch_update_fan_out_items([(i, FanOutItemUpdate.running()) for i in ids])
    store.batch_update_fan_out_items(
        [(ids[0], FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)),
         (ids[1], FanOutItemUpdate.terminal(FanOutItemStatus.SKIPPED)),
         (ids[2], FanOutItemUpdate.terminal(FanOutItemStatus.CANCELLED))]
    )  # fmt: skip
    assert [r.status for r in store.get_fan_out_items(step_id)] == [
        "completed", "skipped", "cancelled", "running", "running",
    ]  # fmt: skip
    store.batch_update_fan_out_items([])


def test_an_item_named_twice_in_a_batch_ends_as_its_last_update(store) -> None:
    step_id = foreach_step(store)
    a, b = store.insert_fan_out_items(step_id, [("t", "a", "", {}), ("t", "b", "", {})])
    store.batch_update_fan_out_items(
        [
            (a, FanOutItemUpdate.running("child-1")),
            (b, FanOutItemUpdate.running("child-b")),
            (a, FanOutItemUpdate.terminal(FanOutItemStatus.FAILED)),
            (a, FanOutItemUpdate.running("child-2")),
        ]
    )
    rows = store.get_fan_out_items(step_id)
    assert [(r.status, r.child_run_id, r.completed_at) for r in rows] == [
        ("running", "child-2", None),
        ("running", "child-b", None),
    ]


def test_a_batch_with_an_unknown_item_changes_nothing(store) -> None:
    step_id = foreach_step(store)
    a, b = store.insert_fan_out_items(step_id, [("t", "a", "", {}), ("t", "b", "", {})])
    with pytest.raises(PersistenceError, match="fan-out item nope not found"):
        store.batch_update_fan_out_items(
            [
                (a, FanOutItemUpdate.running()),
                ("nope", FanOutItemUpdate.running()),
                (b, FanOutItemUpdate.running()),
            ]
        )
    assert [r.status for r in store.get_fan_out_items(step_id)] == ["pending", "pending"]
    with pytest.raises(PersistenceError, match="fan-out item nope not found"):
        store.update_fan_out_item("nope", FanOutItemUpdate.running())


def _taken_over_fan_out(store, clock) -> tuple[str, str, list[str]]:
    """A foreach step of a run leased by "paused", two items running; then another engine takes
    the run over (the lease lapsed while "paused" stood still)."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "paused", 10)
    step_id = new_step(store, run.id, "fe", role="foreach", retry_count=0)
    ids = store.insert_fan_out_items(step_id, [("t", "a", "", {}), ("t", "b", "", {})])
    assert store.batch_update_fan_out_items(
        [(i, FanOutItemUpdate.running("child-" + i)) for i in ids], fence=Fence(run.id, "paused")
    )
    clock.advance(11)
    assert store.acquire_lease(run.id, "new-owner", 10) == 2
    return run.id, step_id, ids


def test_a_fenced_item_write_of_an_engine_that_lost_its_run_changes_nothing(store, clock) -> None:
    """A woken stale engine's item end must not mark an item completed in a run another engine
    owns now (its child was ended by the takeover, or is being run again)."""
    run_id, step_id, ids = _taken_over_fan_out(store, clock)
    done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)
    assert store.batch_update_fan_out_items([(ids[0], done)], fence=Fence(run_id, "paused")) is False
    assert [r.status for r in store.get_fan_out_items(step_id)] == ["running", "running"]
    # the owner's own writes, and unfenced ones, apply
    assert store.batch_update_fan_out_items([(ids[0], done)], fence=Fence(run_id, "new-owner")) is True
    assert store.batch_update_fan_out_items([(ids[1], done)]) is True
    assert [r.status for r in store.get_fan_out_items(step_id)] == ["completed", "completed"]


def test_a_write_behind_item_write_refused_when_committed_tells_its_caller(store, clock) -> None:
    """As a write-behind finish: a store that queues the batch drops it at the commit and calls
    `on_refused`; one that writes at once returns False. Never both, never neither; the writes
    queued beside it (another engine's, unfenced) still apply."""
    run_id, step_id, ids = _taken_over_fan_out(store, clock)
    done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)
    refused: list[str] = []
    queued = store.batch_update_fan_out_items(
        [(ids[0], done)], durable=False, fence=Fence(run_id, "paused", lambda: refused.append("x"))
    )
    accepted: list[str] = []
    assert store.batch_update_fan_out_items(
        [(ids[1], done)], durable=False, fence=Fence(run_id, "new-owner", lambda: accepted.append("x"))
    )
    store.flush()
    assert (queued, refused) in ((False, []), (True, ["x"]))
    assert accepted == []
    assert [r.status for r in store.get_fan_out_items(step_id)] == ["running", "completed"]


def test_a_refused_write_behind_write_tells_its_caller_once_when_its_commit_is_run_again(
    store, clock
) -> None:
    """A commit that fails (here: queued writes naming no item, no run) runs its writes again one
    by one: a refused item batch or finish among them is told to its caller once, not at the
    rolled-back attempt and again at the rerun (the engine confirmed its lease twice, the log said
    'not written' twice)."""
    run_id, step_id, ids = _taken_over_fan_out(store, clock)
    done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)
    child = store.create_leased_run(NewRun(workflow_name="child", parent_run_id=run_id), "c1", 10)
    clock.advance(11)
    assert store.acquire_lease(child.id, "c2", 10) == 2
    told: list[str] = []
    finish_queued = store.finish_run(
        child.id,
        RunStatus.COMPLETED,
        "stale",
        None,
        "c1",
        durable=False,
        on_refused=lambda: told.append("finish"),
    )
    items_queued = store.batch_update_fan_out_items(
        [(ids[0], done)], durable=False, fence=Fence(run_id, "paused", lambda: told.append("items"))
    )
    with contextlib.suppress(PersistenceError):  # a store that writes at once raises at once
        store.batch_update_fan_out_items([("no-such-item", done)], durable=False)
    with contextlib.suppress(PersistenceError):
        store.finish_run("no-such-run", RunStatus.COMPLETED, None, None, "t", durable=False)
    store.flush()
    assert sorted(told) == sorted(
        [name for name, queued in (("finish", finish_queued), ("items", items_queued)) if queued]
    )
    assert [r.status for r in store.get_fan_out_items(step_id)] == ["running", "running"]
    assert store.get_run(child.id).owner_token == "c2"


def test_a_fenced_item_write_takes_the_queued_child_rows_along_written_or_refused(store, clock) -> None:
    """A foreach worker's item write commits the child rows queued before it (one statement on
    PostgreSQL): fenced, it applies while its engine owns the run, and when refused the queued
    rows are still committed — only the item write is dropped."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "paused", 10)
    step_id = new_step(store, run.id, "fe", role="foreach", retry_count=0)
    ids = store.insert_fan_out_items(step_id, [("t", "a", "", {}), ("t", "b", "", {})])
    fence = Fence(run.id, "paused")
    children = []
    for i in ids:
        child = store.create_leased_run(
            NewRun(workflow_name="child", parent_run_id=run.id), "c-" + i, 10, durable=False
        )
        store.insert_step(NewStep(child.id, "s", retry_count=0), durable=False)
        children.append(child.id)
        if i == ids[1]:
            clock.advance(11)
            assert store.acquire_lease(run.id, "new-owner", 10) == 2
        written = store.batch_update_fan_out_items([(i, FanOutItemUpdate.running(child.id))], fence=fence)
        assert written is (i == ids[0])
    assert [(r.status, r.child_run_id) for r in store.get_fan_out_items(step_id)] == [
        ("running", children[0]),
        ("pending", None),
    ]
    assert [len(store.get_steps(c)) for c in children] == [1, 1]


def test_an_item_write_fenced_on_an_ended_run_changes_nothing(store) -> None:
    """A run ended (its lease handed back, or ended by a resume of the run above it) is no
    writer's any more: an item write that still names its old token is refused."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 10)
    step_id = new_step(store, run.id, "fe", role="foreach", retry_count=0)
    (item,) = store.insert_fan_out_items(step_id, [("t", "a", "", {})])
    assert store.finish_run(run.id, RunStatus.CANCELLED, None, None, "t1")
    update = [(item, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED))]
    assert store.batch_update_fan_out_items(update, fence=Fence(run.id, "t1")) is False
    assert store.get_fan_out_items(step_id)[0].status is FanOutItemStatus.PENDING
    assert store.batch_update_fan_out_items(update, fence=Fence("no-such-run", "t1")) is False


def test_item_rows_read_back_are_copies(store) -> None:
    step_id = foreach_step(store)
    store.insert_fan_out_item(step_id, "t", "a", "", {"k": "v"})
    row = store.get_fan_out_items(step_id)[0]
    row.context["k"] = "changed"
    row.status = FanOutItemStatus.FAILED
    again = store.get_fan_out_items(step_id)[0]
    assert (again.context, again.status) == ({"k": "v"}, "pending")


# --------------------------------------------------------------------------- concurrency


def test_many_threads_writing_at_once_lose_nothing(store) -> None:
    """The engine's fan-out pattern: worker threads insert, dispatch and finish items concurrently
    while the lease is renewed and steps are written."""
    run_id, gen = owned_run(store, "engine")
    step_id = new_step(store, run_id, "fe", role="foreach", retry_count=0)
    threads_n, per_thread = 8, 40

    def worker(w: int) -> None:
        ids = store.insert_fan_out_items(
            step_id, [("t", f"{w}-{i}", "", {"w": str(w)}) for i in range(per_thread)]
        )
        again = [store.insert_fan_out_item(step_id, "t", f"{w}-{i}", "", {}) for i in range(per_thread)]
        assert again == ids
        for n, item in enumerate(ids):
            store.update_fan_out_item(item, FanOutItemUpdate.running(f"child-{w}-{n}"))
            status = FanOutItemStatus.FAILED if n % 10 == 0 else FanOutItemStatus.COMPLETED
            store.batch_update_fan_out_items([(item, FanOutItemUpdate.terminal(status))])
        branch = new_step(store, run_id, f"branch-{w}", position=w, retry_count=0)
        store.update_step(branch, StepUpdate.completed(gen, result_text=str(w)))
        assert store.acquire_lease(run_id, "engine", 60) == gen
        assert store.acquire_lease(run_id, f"intruder-{w}", 60) is None

    together(worker, threads_n)  # re-raises the first error of a worker
    rows = store.get_fan_out_items(step_id)
    assert len(rows) == threads_n * per_thread
    assert len({r.id for r in rows}) == threads_n * per_thread
    assert sum(r.status == "failed" for r in rows) == threads_n * per_thread // 10
    assert all(r.completed_at for r in rows)
    steps = store.get_steps(run_id)
    assert sorted(s.result_text for s in steps if s.step_name.startswith("branch")) == [
        str(w) for w in range(8)
    ]
    assert store.get_run(run_id).generation == gen


def test_a_failing_write_among_concurrent_writes_fails_only_its_own_caller(store) -> None:
    """Concurrent writes may share a commit (SQLite group commit): a write that fails must not
    take the others down, and must leave nothing behind."""
    run_id, gen = owned_run(store, "engine")
    step_id = foreach_step(store)
    [item] = store.insert_fan_out_items(step_id, [("t", "a", "", {})])
    threads_n, rounds = 8, 30
    failures: list[str] = []

    def worker(w: int) -> None:
        for n in range(rounds):
            if w % 2:
                s_id = new_step(store, run_id, f"w{w}-{n}", retry_count=0)
                store.update_step(s_id, StepUpdate.completed(gen, result_text="ok"))
                continue
            try:
                if n % 3 == 0:
                    store.update_run_status(f"missing-{w}-{n}", RunStatus.RUNNING, None, None)
                elif n % 3 == 1:
                    store.batch_update_fan_out_items(
                        [
                            (item, FanOutItemUpdate.running("c")),
                            (f"missing-{w}-{n}", FanOutItemUpdate.running("c")),
                        ]
                    )
                else:
                    store.create_run(NewRun(workflow_name="dup", run_id=run_id))
            except PersistenceError as exc:
                failures.append(str(exc))

    together(worker, threads_n)  # re-raises any other error of a worker
    assert len(failures) == threads_n // 2 * rounds
    done = [s for s in store.get_steps(run_id) if s.step_name.startswith("w")]
    assert len(done) == threads_n // 2 * rounds
    assert {s.status for s in done} == {StepStatus.COMPLETED}
    assert store.get_fan_out_items(step_id)[0].status is FanOutItemStatus.PENDING  # batches rolled back
    assert store.get_run(run_id).workflow_name == "wf"


def test_racing_owners_get_exactly_one_lease(store) -> None:
    run_id = new_run(store)
    results: list[int | None] = []

    def contender(n: int) -> None:
        results.append(store.acquire_lease(run_id, f"token-{n}", 60))

    together(contender, 16)
    assert sorted(results, key=lambda r: r is None) == [1] + [None] * 15


# --------------------------------------------------------------------------- event log (ours)


def events(*kinds: str, run_id: str = "r") -> list[NewEvent]:
    return [
        NewEvent(ts=1000.0 + n, event_run_id=run_id, kind=k, payload=f'{{"n":{n}}}')
        for n, k in enumerate(kinds)
    ]


def test_events_are_numbered_per_run_in_append_order_and_read_back_as_written(store) -> None:
    run_id, other = new_run(store), new_run(store)
    store.append_events(run_id, events("RunStarted", "StepStarted", run_id=run_id))
    store.append_events(other, events("RunStarted", run_id=other))
    store.append_events(run_id, events("StepCompleted", run_id="child-1"))
    got = store.read_events(run_id)
    assert [(e.seq, e.kind, e.event_run_id) for e in got] == [
        (1, "RunStarted", run_id),
        (2, "StepStarted", run_id),
        (3, "StepCompleted", "child-1"),
    ]
    assert got[0] == StoredEvent(run_id, 1, 1000.0, run_id, "RunStarted", '{"n":0}')
    assert [e.seq for e in store.read_events(other)] == [1]


def test_a_large_batch_of_events_keeps_its_order_and_numbering(store) -> None:
    """A writer's batch of hundreds of events (a busy fan-out between two flushes) reads back
    whole, in order, numbered on from what the stream held."""
    run_id = new_run(store)
    store.append_events(run_id, events("RunStarted", run_id=run_id))
    kinds = [f"Kind{n}" for n in range(301)]
    store.append_events(run_id, events(*kinds, run_id="child"))
    got = store.read_events(run_id)
    assert [e.seq for e in got] == list(range(1, 303))
    assert [e.kind for e in got[1:]] == kinds
    assert [e.payload for e in got[1:]] == [f'{{"n":{n}}}' for n in range(301)]
    assert {e.event_run_id for e in got[1:]} == {"child"}


def test_reading_events_after_a_seq_returns_only_newer_ones_up_to_the_limit(store) -> None:
    run_id = new_run(store)
    store.append_events(run_id, events(*["EngineLog"] * 5))
    assert [e.seq for e in store.read_events(run_id, after_seq=3)] == [4, 5]
    assert [e.seq for e in store.read_events(run_id, after_seq=1, limit=2)] == [2, 3]
    assert store.read_events(run_id, after_seq=5) == []
    assert store.read_events("no-such-run") == []


def test_reading_events_at_seqs_returns_those_rows_oldest_first(store) -> None:
    """A reader that knows which rows it needs next (`logs` of a big run) reads them in one call,
    in any order asked, each once; a seq the stream does not hold is left out."""
    run_id = new_run(store)
    store.append_events(run_id, events(*[f"Kind{n}" for n in range(1, 8)]))
    got = store.read_events_at(run_id, [6, 2, 6, 4, 99])
    assert [(e.seq, e.kind) for e in got] == [(2, "Kind2"), (4, "Kind4"), (6, "Kind6")]
    assert got == [e for e in store.read_events(run_id) if e.seq in (2, 4, 6)]
    assert store.read_events_at(run_id, []) == []
    assert store.read_events_at("no-such-run", [1]) == []


def test_the_last_event_seq_is_where_a_reader_of_only_what_comes_next_starts(store) -> None:
    run_id = new_run(store)
    assert store.last_event_seq(run_id) == 0 == store.last_event_seq("no-such-run")
    store.append_events(run_id, events(*["EngineLog"] * 5))
    assert store.last_event_seq(run_id) == 5
    store.append_events(run_id, events("RunResumed"), durable=False)  # write-behind: seen at once
    assert store.last_event_seq(run_id) == 6
    assert [e.kind for e in store.read_events(run_id, after_seq=5)] == ["RunResumed"]


def test_every_read_from_any_seq_with_any_limit_is_that_slice_of_the_stream(store) -> None:
    """A reader that resumes after any seq, with any limit, gets exactly the events after it, as
    written, across batches — also events with a newline in their JSON, a tab in a run id, or an
    empty run id (whatever way a store keeps them)."""
    run_id = new_run(store)
    odd = [
        NewEvent(1.5, "child\twith-tab", "EngineLog", '{"a":1}'),
        NewEvent(2.25, "", "EngineLog", '{"a":2}'),
        NewEvent(3.125, run_id, "EngineLog", '{\n  "pretty": true\n}'),
        NewEvent(1e-7, run_id, "StepOutput", '{"line":"tab\\there"}'),
    ]
    written = events(*[f"Kind{n}" for n in range(150)], run_id="child-a")[:70]
    written += odd + events(*[f"Kind{n}" for n in range(80)], run_id="child-b")
    store.append_events(run_id, written[:3])
    store.append_events(run_id, written[3:120])
    store.append_events(run_id, written[120:])
    whole = store.read_events(run_id)
    assert [(e.ts, e.event_run_id, e.kind, e.payload) for e in whole] == [tuple(e) for e in written]
    assert [e.seq for e in whole] == list(range(1, len(written) + 1))
    for after in (0, 1, 2, 3, 4, 63, 64, 65, 69, 70, 71, 72, 73, 74, 75, 119, 120, 153, len(written)):
        assert store.read_events(run_id, after_seq=after) == whole[after:]
        for limit in (0, 1, 2, 5, 64, 65):
            assert store.read_events(run_id, after_seq=after, limit=limit) == whole[after : after + limit]


def test_an_append_fenced_by_a_generation_another_engine_replaced_stores_nothing(store, clock) -> None:
    """An engine woken after another took its run over (SIGSTOP, Ctrl-Z) must not append to the
    new owner's stream: an append fenced by the generation its engine took the run at applies
    while the run is still at it — after that engine's own end too — and is refused after a
    takeover."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "paused", 10)
    gen = store.get_run(run.id).generation
    assert store.append_events(run.id, events("RunStarted"), generation=gen) is True
    clock.advance(11)
    assert store.acquire_lease(run.id, "new-owner", 10) == gen + 1
    assert store.append_events(run.id, events("StepStarted", "StepCompleted"), generation=gen) is False
    assert store.append_events(run.id, events("RunResumed"), generation=gen + 1) is True
    assert store.finish_run(run.id, RunStatus.COMPLETED, None, None, "new-owner")
    assert store.append_events(run.id, events("RunCompleted"), generation=gen + 1) is True
    assert store.append_events(run.id, events("StepOutput")) is True  # unfenced: as before
    assert [e.kind for e in store.read_events(run.id)] == [
        "RunStarted",
        "RunResumed",
        "RunCompleted",
        "StepOutput",
    ]


def test_appending_events_to_an_unknown_run_is_an_error_and_stores_nothing(store) -> None:
    with pytest.raises(PersistenceError, match="run nope not found"):
        store.append_events("nope", events("RunStarted"))
    assert store.read_events("nope") == []


def test_write_behind_events_are_readable_by_this_process_at_once(store) -> None:
    run_id = new_run(store)
    store.append_events(run_id, events("RunStarted"), durable=False)
    assert [e.kind for e in store.read_events(run_id)] == ["RunStarted"]


def test_concurrent_appenders_never_reuse_a_seq(store) -> None:
    run_id = new_run(store)

    def append() -> None:
        for _ in range(20):
            store.append_events(run_id, events("EngineLog", "EngineLog"))

    together(lambda _: append(), 4)
    assert [e.seq for e in store.read_events(run_id)] == list(range(1, 161))


# --------------------------------------------------------------------------- retention (ours)


def finished_tree(store, status: RunStatus = RunStatus.COMPLETED) -> tuple[str, str]:
    """A finished top-level run with a foreach step, one item, a child run, steps and events."""
    root = new_run(store)
    step = new_step(store, root, "fe", role="foreach", retry_count=0)
    child = new_run(store, "child", parent_run_id=root, parent_workflow_run_id=root)
    new_step(store, child, "c", retry_count=0)
    store.insert_fan_out_items(step, [("t", "i1", "", {})])
    store.append_events(root, events("RunStarted", "RunStarted", "RunCompleted"))
    # A row packing two events (event_log.pack): gc counts the events, not the rows.
    packed = f"1.5\t{child}\tStepStarted\t{{}}\n1.6\t{child}\tStepCompleted\t{{}}"
    store.append_events(root, [NewEvent(1.5, "", PACKED_EVENTS, packed)])
    # And a zipped row of ZIP_EVENTS events: counted from the number it carries.
    store.append_events(root, pack([NewEvent(2.0 + n, child, "EngineLog", "{}") for n in range(ZIP_EVENTS)]))
    store.update_run_status(child, RunStatus.COMPLETED, None, None)
    store.update_run_status(root, status, None, None)
    return root, child


def test_gc_deletes_runs_that_ended_before_the_cutoff_with_children_rows_and_events(store) -> None:
    old, old_child = finished_tree(store)
    cutoff = "2999-01-01T00:00:00.000Z"
    active = new_run(store)
    store.update_run_status(active, RunStatus.RUNNING, None, None)
    deleted = store.delete_finished_runs(cutoff)
    assert deleted == DeletedRuns(runs=1, child_runs=1, steps=2, items=1, events=5 + ZIP_EVENTS)
    assert store.get_run(old) is None and store.get_run(old_child) is None
    assert store.read_events(old) == [] and store.get_steps(old_child) == []
    assert store.get_run(active) is not None
    assert store.delete_finished_runs(cutoff) == DeletedRuns()


def test_gc_counts_a_zipped_row_whose_count_is_not_a_number_as_one_event(store) -> None:
    """A hand-made or damaged row: gc still deletes the run, and every store counts it alike."""
    root = new_run(store)
    # empty, a letter, not whole digits, a non-ASCII digit, more than a 64-bit column holds
    for count in ("", "x", "1e3", "\u00b2", "9" * 19):
        store.append_events(root, [NewEvent(1.0, count, ZIPPED_EVENTS, "not base64")])
    store.update_run_status(root, RunStatus.COMPLETED, None, None)
    assert store.delete_finished_runs("2999-01-01T00:00:00.000Z") == DeletedRuns(runs=1, events=5)
    assert store.read_events(root) == []


def test_gc_keeps_runs_that_ended_after_the_cutoff_and_runs_that_never_ended(store) -> None:
    recent, _ = finished_tree(store, RunStatus.FAILED)
    interrupted = new_run(store)
    store.update_run_status(interrupted, RunStatus.RUNNING, None, None)
    assert store.delete_finished_runs("2000-01-01T00:00:00.000Z") == DeletedRuns()
    assert store.get_run(recent) is not None
    assert store.delete_finished_runs("2999-01-01T00:00:00.000Z").runs == 1
    assert store.get_run(interrupted) is not None


def test_gc_keeps_an_old_run_a_retry_or_resume_has_just_taken(store, clock: FakeClock) -> None:
    """The engine resuming it holds its lease before it marks it running: gc in between deleted
    the run under it (its steps gone, the resume failed on `run <id> not found`)."""
    old, _ = finished_tree(store, RunStatus.FAILED)
    cutoff = "2999-01-01T00:00:00.000Z"
    assert store.acquire_lease(old, "resuming-engine", 30) is not None
    assert store.delete_finished_runs(cutoff) == DeletedRuns()
    assert len(store.get_steps(old)) == 1
    clock.advance(31)  # an engine that died before it marked the run running: its lease lapses
    assert store.delete_finished_runs(cutoff).runs == 1


# --------------------------------------------------------------------------- retry lineage (schema v4)


def test_item_rows_record_their_attempt_and_the_child_run_before_it(store) -> None:
    step_id = foreach_step(store)
    store.insert_fan_out_items(
        step_id,
        [("t", "a", "", {}), ("t", "b", "", {})],
        [ItemLineage(), ItemLineage(3, "child-of-attempt-2")],
    )
    rows = {r.item_id: r for r in store.get_fan_out_items(step_id)}
    assert (rows["a"].attempt, rows["a"].previous_child_run_id) == (1, None)
    assert (rows["b"].attempt, rows["b"].previous_child_run_id) == (3, "child-of-attempt-2")
    store.insert_fan_out_items(step_id, [("t", "c", "", {})])  # no lineage given: a first attempt
    assert store.get_fan_out_items(step_id)[-1].attempt == 1


def test_a_run_keeps_the_retry_asked_of_it(store) -> None:
    run_id = new_run(store)
    assert store.get_run(run_id).retry_request is None
    request = RetryRequest("2026-12-03T10:00:00.000Z", {"step-1": ("a", "b")}, "current")
    store.set_retry_request(run_id, request)
    assert RetryRequest.from_json(store.get_run(run_id).retry_request) == request
    with pytest.raises(PersistenceError):
        store.set_retry_request("no-such-run", request)


# ---------------------------------------------------------------------- rerun link (schema v7)


def test_a_run_records_which_run_it_reruns_and_from_where(store) -> None:
    old, new = new_run(store), new_run(store)
    assert (store.get_run(new).rerun_of, store.get_run(new).rerun_from) == (None, None)
    store.set_rerun_link(new, old, "deploy")
    assert (store.get_run(new).rerun_of, store.get_run(new).rerun_from) == (old, "deploy")
    assert [r.rerun_of for r in store.list_runs() if r.id == new] == [old]
    assert store.get_run(new).rerun_definition == "current"  # the default choice
    stored = new_run(store)  # the choice is kept (schema v11): a resume or retry of it keeps it
    store.set_rerun_link(stored, old, "deploy", definition="stored")
    assert store.get_run(stored).rerun_definition == "stored"
    assert [r.rerun_definition for r in store.list_runs() if r.id == stored] == ["stored"]
    assert store.get_run(old).rerun_definition is None  # no rerun
    with pytest.raises(PersistenceError):
        store.set_rerun_link("no-such-run", old, "deploy")


def test_copied_steps_keep_everything_but_their_id_and_run(store) -> None:
    old, gen = owned_run(store)
    build = new_step(store, old, "build", position=0, retry_count=0, node_path="body.0")
    store.update_step(
        build,
        StepUpdate.completed(
            gen, result_text="built", context_out="ctx", markers_out='["m"]', structured_output='{"a": "1"}'
        ),
    )
    gate = new_step(store, old, "ok", role="gate", position=1, gate_type="human_approval", node_path="body.1")
    store.update_step(gate, StepUpdate(generation=gen, status=StepStatus.WAITING))
    store.approve_gate(gate, "alice", "fine", None)
    later = new_step(store, old, "later", position=2, retry_count=0)
    new = new_run(store)
    copies = store.copy_steps(old, new, [build, gate])
    assert len(copies) == 2 and not set(copies) & {build, gate}
    originals = {s.id: s for s in store.get_steps(old)}
    copied = store.get_steps(new)
    assert [s.id for s in copied] == copies
    for original_id, copy in zip((build, gate), copied, strict=True):
        original = originals[original_id]
        assert copy.workflow_run_id == new
        for field in (
            "step_name",
            "role",
            "status",
            "position",
            "started_at",
            "ended_at",
            "result_text",
            "context_out",
            "markers_out",
            "structured_output",
            "node_path",
            "gate_approved_by",
            "gate_feedback",
            "gate_type",
            "retry_count",
        ):
            assert getattr(copy, field) == getattr(original, field), field
    assert copied[1].gate_approved_by == "alice" and copied[0].structured_output == '{"a": "1"}'
    assert len(store.get_steps(old)) == 3  # the earlier run keeps its rows
    with pytest.raises(PersistenceError):
        store.copy_steps(new, old, [later])  # not a step of that run
    with pytest.raises(PersistenceError):
        store.copy_steps(old, "no-such-run", [later])


def test_a_run_started_starts_when_its_engine_starts_it_and_a_resume_keeps_its_start(store, clock) -> None:
    """A dashboard writes a run's row, then its background runner starts the run a second or so
    later: the run's start (and so its duration in `runs` and the run history) is the runner's."""
    run_id = new_run(store)
    written = store.get_run(run_id).started_at
    clock.advance(2)
    assert store.start_run(run_id, resuming=False) is None
    started = store.get_run(run_id).started_at
    assert started != written and started.startswith(clock().strftime("%Y-%m-%dT%H:%M:%S"))
    store.update_run_status(run_id, RunStatus.FAILED, None, "why")
    clock.advance(5)
    assert store.start_run(run_id, resuming=True) is None
    assert store.get_run(run_id).started_at == started


# What makes each database store refuse writes at a commit, how it is undone, and what the refusal
# says (a read-only SQLite file: SQLITE_READONLY; a read-only PostgreSQL session).
_REFUSING = {
    "sqlite": ("PRAGMA query_only = 1", "PRAGMA query_only = 0", StoreUnavailable, "readonly"),
    "postgres": (
        "SET default_transaction_read_only = on",
        "SET default_transaction_read_only = off",
        PersistenceError,
        "read-only",
    ),
}


@pytest.mark.parametrize("store_kind", sorted(_REFUSING))  # the in-memory store has no commit to fail
def test_a_queued_item_write_that_fails_at_its_commit_tells_its_writer(store, store_kind: str) -> None:
    """`Fence.on_failed`: a write-behind item write that the database refuses at its commit reaches
    no caller, so its writer is told — the fan-out then never reports that item completed
    (tests/engine/test_store_lost.py). A write that commits, or a fence without `on_failed`, tells
    nothing."""
    refuse, allow, error_type, said = _REFUSING[store_kind]
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    step_id = store.insert_step(NewStep(run.id, "fe", role="foreach", retry_count=0))
    a, b = store.insert_fan_out_items(step_id, [("t", "a", "", {}), ("t", "b", "", {})])
    told: list[tuple[str, BaseException]] = []
    done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)

    def fence(name: str) -> Fence:
        return Fence(run.id, "t1", None, lambda error: told.append((name, error)))

    store.batch_update_fan_out_items([(a, done)], durable=False, fence=fence("a"))
    store.flush()
    assert told == []
    store._db.execute(refuse)
    try:
        store.batch_update_fan_out_items([(b, done)], durable=False, fence=fence("b"))
        store.batch_update_fan_out_items([(b, done)], durable=False, fence=Fence(run.id, "t1"))
        store.flush()
    finally:
        store._db.execute(allow)
    assert [name for name, _ in told] == ["b"]
    assert isinstance(told[0][1], error_type) and said in str(told[0][1])
