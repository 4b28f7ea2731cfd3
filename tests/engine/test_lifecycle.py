"""Run lifecycle: statuses, leases and fencing (§6.4, §14 G), cancellation (§11), sinks (§4.1),
validation (§13) and the Python-friendly entry points."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.errors import AlreadyOwned, ValidationErrors, WorkflowError
from runkon_flow.event_log import StoredEventWriter, unpack
from runkon_flow.events import CollectingSink
from runkon_flow.persistence.models import NewRun, RunStatus
from runkon_flow.plugins.protocols import ActionOutput
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver
from runkon_flow.runtime import FlowEngineBuilder, RunInput, WorkflowExecConfig
from runkon_flow.workspace import end_unowned_run

from tests.engine.conftest import Agents, Harness, ListProvider, wait_for_cancel, wait_until
from tests.persistence.conftest import CONTRACT_STORE_KINDS, FakeClock, close_store, make_store


def test_a_run_is_running_while_it_executes_and_its_lease_is_released_at_the_end(h: Harness) -> None:
    seen: list[tuple[str, str | None]] = []

    def look(info, params):
        run = h.store.get_run(info.run_id)
        seen.append((str(run.status), run.owner_token))
        return ActionOutput()

    h.agents.do("a", look)
    result = h.run("workflow w { call a }")
    [(status, owner)] = seen
    assert status == "running" and owner
    run = h.store.get_run(result.workflow_run_id)
    assert (run.status, run.owner_token, run.ended_at is not None) == ("completed", None, True)


def test_the_engine_creates_the_run_row_when_no_id_is_given(tmp_path: Path) -> None:
    store = make_store("memory", tmp_path)
    agents = Agents()
    engine = FlowEngineBuilder().action_fallback(agents).build()
    wf = parse_workflow('workflow w { meta { title = "Demo" } call a }')
    result = engine.run_workflow(wf, RunInput(persistence=store, inputs={"x": "1"}))
    run = store.get_run(result.workflow_run_id)
    assert (run.workflow_name, run.status, run.inputs, run.workflow_title) == (
        "w",
        "completed",
        {"x": "1"},
        "Demo",
    )


def test_validation_problems_stop_a_run_before_anything_is_written(tmp_path: Path) -> None:
    store = make_store("memory", tmp_path)
    sink = CollectingSink()
    engine = FlowEngineBuilder().event_sink(sink).build()
    wf = parse_workflow(
        "workflow w { call a foreach f { over = tickets max_parallel = 1 workflow = c } gate x { } }"
    )
    with pytest.raises(WorkflowError) as err:
        engine.run_workflow(wf, RunInput(persistence=store))
    assert str(err.value) == (
        "workflow error: workflow 'w' failed validation:\n"
        "call 'a': no registered ActionExecutor for 'a' (hint: register an executor named 'a' or add a "
        "fallback executor)\n"
        "foreach 'f': no registered ItemProvider for 'tickets' (hint: register a provider with name "
        "'tickets' via FlowEngineBuilder.item_provider())\n"
        "gate 'x': no registered GateResolver for type 'x' (hint: register a resolver for it via "
        "FlowEngineBuilder.gate_resolver(): ApprovalStoreResolver('x') waits for a decision made through "
        "GateApprovals)"
    )
    assert store.list_runs() == [] and sink.events == []


def test_validate_collects_sub_workflow_problems_and_cycles() -> None:
    resolver = InMemoryWorkflowResolver(
        [
            parse_workflow("workflow child { call missing parallel { call p } }"),
            parse_workflow("workflow loop-a { call workflow loop-b }"),
            parse_workflow("workflow loop-b { call workflow loop-a }"),
        ]
    )
    engine = FlowEngineBuilder().workflow_resolver(resolver).build()
    with pytest.raises(ValidationErrors) as err:
        engine.validate(parse_workflow("workflow top { call workflow child }"))
    # No file to point into (an in-memory resolver's sub-workflow): placed at the call.
    assert {(p.location.line, p.location.column) for p in err.value.errors} == {(1, 16)}
    assert [p.message for p in err.value.errors] == [
        "in sub-workflow 'child' of 'top': call 'missing': no registered ActionExecutor for 'missing'",
        "in sub-workflow 'child' of 'top': parallel call 'p': no registered ActionExecutor for 'p'",
    ]
    with pytest.raises(ValidationErrors) as err:
        engine.validate(resolver.resolve("loop-a"))
    assert err.value.errors[0].message == "Circular workflow reference: loop-a -> loop-b -> loop-a"
    ok = FlowEngineBuilder().action_fallback(Agents()).workflow_resolver(resolver).build()
    ok.validate(
        parse_workflow("workflow top { call workflow child gate quality_gate { source = a threshold = 1 } }")
    )


def test_a_second_fallback_executor_is_refused() -> None:
    builder = FlowEngineBuilder().action_fallback(Agents())
    with pytest.raises(WorkflowError, match="action_fallback already set"):
        builder.action_fallback(Agents())


def test_a_raising_sink_never_breaks_the_run_and_later_sinks_still_get_every_event(tmp_path: Path) -> None:
    class Broken:
        def emit(self, data):
            raise RuntimeError("sink down")

    store = make_store("memory", tmp_path)
    after = CollectingSink()
    engine = FlowEngineBuilder().action_fallback(Agents()).event_sink(Broken()).event_sink(after).build()
    result = engine.run_workflow(parse_workflow("workflow w { call a }"), RunInput(persistence=store))
    assert result.all_succeeded
    assert after.types() == ["RunStarted", "StepStarted", "StepCompleted", "MetricsUpdated", "RunCompleted"]


def test_cancel_run_reaches_a_running_call_and_the_run_ends_cancelled(h: Harness) -> None:
    h.agents.do("slow", wait_for_cancel)
    run = h.start("workflow w { call slow call never always { call cleanup } }")
    assert wait_until(lambda: bool(h.agents.calls))
    h.engine.cancel_run(run.run_id, CancellationReason.user("stop it"))
    result = run.join(5)
    assert result.status == "cancelled" and not result.all_succeeded
    assert h.statuses(run.run_id) == [("slow", "cancelled")]
    stored = h.store.get_run(run.run_id)
    assert (stored.status, stored.error) == (
        "cancelled",
        'workflow cancelled: UserRequested(Some("stop it"))',
    )
    assert h.events("RunCancelled")[0].reason == CancellationReason.user("stop it")
    assert h.agents.names() == ["slow"]  # a cancelled run skips its always block
    assert h.engine.active_runs() == []


def test_cancel_run_for_a_lost_lease_stops_the_engine_without_marking_the_run_cancelling(
    h: Harness,
) -> None:
    # The dashboard's hand-over stops its engine this way while a runner takes the run over: a
    # `cancelling` row would make that runner cancel the run it was given to finish.
    h.agents.do("slow", wait_for_cancel)
    run = h.start("workflow w { call slow call later }")
    assert wait_until(lambda: bool(h.agents.calls))
    h.engine.cancel_run(run.run_id, CancellationReason.of("LeaseLost"))
    assert h.store.get_run(run.run_id).status == "running"
    with pytest.raises(EngineCancelled, match="LeaseLost"):  # this engine stopped…
        run.join(5)
    assert h.store.get_run(run.run_id).status == "running"  # …and left the run to its new owner
    assert h.agents.names() == ["slow"]


def test_cancel_run_of_an_unknown_run_is_a_clear_error(h: Harness) -> None:
    with pytest.raises(WorkflowError, match="cancel_run: run 'nope' is not active in this engine instance"):
        h.build().cancel_run("nope")


def test_a_cancelling_status_written_by_another_process_stops_the_run(h: Harness) -> None:
    h.agents.do("slow", wait_for_cancel)
    run = h.start("workflow w { call slow }", exec_config=WorkflowExecConfig(cancel_poll_interval=0.05))
    assert wait_until(lambda: bool(h.agents.calls))
    h.store.update_run_status(run.run_id, RunStatus.CANCELLING, None, None)
    result = run.join(5)
    assert result.status == "cancelled"
    assert h.events("RunCancelled")[0].reason == CancellationReason.user()


def test_a_run_already_marked_cancelling_stops_before_its_first_step(h: Harness) -> None:
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    h.store.update_run_status(run_id, RunStatus.CANCELLING, None, None)
    result = h.run(wf, run_id=run_id)
    assert result.status == "cancelled" and h.agents.names() == []


def test_a_pending_run_cancelled_before_its_engine_takes_it_never_runs(h: Harness) -> None:
    # A background runner read the run `pending`; `runkon-flow cancel` (or the dashboard) marked it
    # cancelled before the runner took its lease. The runner must not start it after all.
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    error = str(EngineCancelled(CancellationReason.user("not today")))
    assert end_unowned_run(h.store, run_id, error) is RunStatus.CANCELLED
    result = h.run(wf, run_id=run_id)
    assert result.status == "cancelled" and h.agents.names() == []
    run = h.store.get_run(run_id)
    assert (run.status, run.owner_token) == ("cancelled", None)
    assert "not today" in run.error


def test_a_run_another_engine_started_and_finished_is_not_started_again(h: Harness) -> None:
    # Two runners of one pending run (or a runner and `runkon-flow resume`): both saw it `pending`;
    # the quicker one ran it to its end and let go before the slower one took the lease.
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    assert h.run(wf, run_id=run_id).status == "completed"
    with pytest.raises(AlreadyOwned):
        h.run(wf, run_id=run_id)
    assert h.agents.names() == ["a"]
    run = h.store.get_run(run_id)
    assert (run.status, run.owner_token) == ("completed", None)


class _RefreshLandsAfterTheEnd:
    """A store on which the run monitor's lease refresh, begun while the run was still going,
    lands only after the run has recorded its end (a busy database, a paused process)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.takes = 0
        self.ended = threading.Event()
        self.refreshed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def acquire_lease(self, run_id: str, token: str, ttl_seconds: float) -> int | None:
        self.takes += 1
        if self.takes == 1:  # the engine taking the run
            return self.inner.acquire_lease(run_id, token, ttl_seconds)
        self.ended.wait(10)
        try:
            return self.inner.acquire_lease(run_id, token, ttl_seconds)
        finally:
            self.refreshed.set()

    def finish_run(self, *args: Any, **kwargs: Any) -> bool:
        finished = self.inner.finish_run(*args, **kwargs)
        self.ended.set()
        return finished


def test_a_lease_refresh_landing_after_the_run_ended_leaves_no_owner(store: Any, tmp_path: Path) -> None:
    slow = _RefreshLandsAfterTheEnd(store)
    h = Harness(slow, tmp_path)
    h.agents.do("a", lambda info, params: time.sleep(0.3) or ActionOutput())
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    result = h.run(wf, run_id=run_id, exec_config=WorkflowExecConfig(lease_refresh_interval=0.05))
    assert result.status == "completed"
    assert slow.refreshed.wait(10)
    assert wait_until(lambda: store.get_run(run_id).owner_token is None)
    assert store.get_run(run_id).status == "completed"


class _TakenOverBeforeTheEnd:
    """A store on which another engine takes the run over and finishes it while this engine is
    paused just before its final write (SIGSTOP, Ctrl-Z)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writer: Any = None  # the engine's stored-event writer: its queue is stored first

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def finish_run(self, run_id: str, status: Any, summary: Any, error: Any, token: str, **kw: Any) -> bool:
        if self.writer is not None:
            self.writer.flush()  # what the engine did before it stood still is in its stream
        self.inner.release_lease(run_id, token)  # as if it had lapsed: the new owner takes it
        assert self.inner.acquire_lease(run_id, "new-owner", 60) is not None
        self.inner.finish_run(run_id, RunStatus.FAILED, "the new owner's end", "stopped", "new-owner")
        return self.inner.finish_run(run_id, status, summary, error, token, **kw)


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled"])
def test_an_engine_paused_before_its_end_leaves_the_new_owners_end_alone(
    store: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, ending: str
) -> None:
    # Before: the refused finish was logged, but the engine still emitted (and the stored stream
    # kept) its own RunCompleted after the new owner's end: `watch` showed the run ending twice.
    wrapped = _TakenOverBeforeTheEnd(store)
    h = Harness(wrapped, tmp_path)
    if ending == "failed":
        h.agents.fail("a")
    elif ending == "cancelled":

        def cancel(info: Any, params: Any) -> ActionOutput:
            h.engine.cancel_run(info.run_id)  # type: ignore[union-attr]
            return wait_for_cancel(info, params)

        h.agents.do("a", cancel)
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    writer = wrapped.writer = StoredEventWriter(store, run_id)
    with caplog.at_level(logging.WARNING, logger="runkon_flow"), pytest.raises(EngineCancelled) as err:
        h.run(wf, run_id=run_id, event_sinks=[writer])
    writer.close()
    assert err.value.reason.kind == "LeaseLost"  # it stopped as an engine that lost its lease
    run = store.get_run(run_id)
    assert (run.status, run.result_summary) == ("failed", "the new owner's end")
    assert f"run {run_id}: lease lost; final status {ending} not written" in caplog.text
    ends = h.events_of_run(run_id, "RunCompleted", "RunCancelled")
    assert [(e.type, e.reason.kind) for e in ends] == [("RunCancelled", "LeaseLost")]
    stored = [e.kind for row in store.read_events(run_id) for e in unpack(row)]
    assert "RunStarted" in stored
    assert "RunCompleted" not in stored and "RunCancelled" not in stored  # the new owner's to store


class _TreeTakenOverAtAChildsEnd:
    """A store on which another engine resumes the top run just as a foreach child (written
    behind) records its end: the resume ends the unfinished runs below it (unowned), so the
    child's queued finish is refused when it is committed — after the child has returned."""

    def __init__(self, inner: Any, parent_id: str) -> None:
        self.inner, self.parent_id = inner, parent_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def finish_run(self, run_id: str, *args: Any, **kw: Any) -> bool:
        if run_id != self.parent_id:
            self.inner.flush()  # the child's queued rows first, as the other process sees them
            self.inner.release_lease(self.parent_id, self.inner.get_run(self.parent_id).owner_token)
            assert self.inner.acquire_lease(self.parent_id, "new-owner", 60) is not None
            assert len(self.inner.end_abandoned_descendants(self.parent_id, "taken over")) == 1
        return self.inner.finish_run(run_id, *args, **kw)


def test_a_child_whose_queued_end_is_refused_reports_a_lost_lease_and_stops_its_parent(
    store: Any, tmp_path: Path
) -> None:
    # Before: a write-behind finish refused at its commit was only logged by the store; the
    # engine delivered the child's RunCompleted although the child's row says cancelled.
    wf = parse_workflow(
        "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child } call after }"
    )
    parent_id = store.create_run(NewRun(workflow_name="parent")).id
    h = Harness(_TreeTakenOverAtAChildsEnd(store, parent_id), tmp_path)
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["a"]))
    with pytest.raises(EngineCancelled) as err:
        h.run(wf, run_id=parent_id)
    assert err.value.reason.kind == "LeaseLost"
    (child,) = [r for r in store.list_runs(parent_run_id=parent_id) if r.workflow_name == "child"]
    assert (store.get_run(child.id).status, store.get_run(child.id).error) == ("cancelled", "taken over")
    ends = h.events_of_run(child.id, "RunCompleted", "RunCancelled")
    assert [(e.type, e.reason.kind) for e in ends] == [("RunCancelled", "LeaseLost")]
    assert "after" not in h.agents.names()
    assert store.get_run(parent_id).owner_token == "new-owner"


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_woken_engine_writes_no_item_end_into_a_fan_out_taken_over(tmp_path: Path, kind: str) -> None:
    # Before: the stale engine's item end (written behind on SQLite, durable elsewhere) was still
    # committed after the takeover: the item read `completed` while its child run read
    # `cancelled`, and it could overwrite an item the new owner had dispatched again.
    store = make_store(kind, tmp_path)
    try:
        wf = parse_workflow(
            "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child } call after }"
        )
        parent_id = store.create_run(NewRun(workflow_name="parent")).id
        h = Harness(_TreeTakenOverAtAChildsEnd(store, parent_id), tmp_path)
        h.add_workflow("workflow child { call work }")
        h.providers.append(ListProvider("tickets", ["a", "b"]))
        with pytest.raises(EngineCancelled) as err:
            h.run(wf, run_id=parent_id)
        assert err.value.reason.kind == "LeaseLost"
        (fan,) = [s for s in store.get_steps(parent_id) if s.step_name == "foreach:fan"]
        items = store.get_fan_out_items(fan.id)
        (child,) = [r for r in store.list_runs(parent_run_id=parent_id) if r.workflow_name == "child"]
        assert store.get_run(child.id).status == "cancelled"
        # As the engine left them when it lost the run: the new owner's resume records them.
        assert [(i.item_id, i.status) for i in items] == [("a", "running"), ("b", "pending")]
        assert "after" not in h.agents.names()
    finally:
        close_store(store)


class _TreeTakenOverWithItsStream(_TreeTakenOverAtAChildsEnd):
    """As above, and what the engine's stored-event writer had queued is stored just before the
    takeover (as if it wrote its batch the moment before this process stood still)."""

    writer: Any = None
    mark = 0

    def finish_run(self, run_id: str, *args: Any, **kw: Any) -> bool:
        if run_id != self.parent_id and not self.mark:
            self.writer.flush()
            self.mark = self.inner.last_event_seq(self.parent_id)
        return super().finish_run(run_id, *args, **kw)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_woken_engine_stores_no_events_in_the_stream_of_a_run_taken_over(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: the stale engine's events (its item's end, its child's end, its foreach step's end)
    # went on into the new owner's stream after the takeover.
    store = make_store(kind, tmp_path)
    try:
        wf = parse_workflow(
            "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child } call after }"
        )
        parent_id = store.create_run(NewRun(workflow_name="parent")).id
        wrapped = _TreeTakenOverWithItsStream(store, parent_id)
        wrapped.writer = writer = StoredEventWriter(store, parent_id)
        h = Harness(wrapped, tmp_path)
        h.add_workflow("workflow child { call work }")
        h.providers.append(ListProvider("tickets", ["a", "b"]))
        with caplog.at_level(logging.WARNING, logger="runkon_flow"), pytest.raises(EngineCancelled) as err:
            h.run(wf, run_id=parent_id, event_sinks=[writer])
        writer.close()
        assert err.value.reason.kind == "LeaseLost"
        assert wrapped.mark > 0  # the events before the takeover were stored …
        assert "StepStarted" in [e.kind for row in store.read_events(parent_id) for e in unpack(row)]
        # … and none after it: the stream is the new owner's
        assert store.read_events(parent_id, after_seq=wrapped.mark) == []
        assert "events of this engine not stored (another engine took the run over)" in caplog.text
    finally:
        close_store(store)


#: A child run in flight, as a `call workflow` or as a one-item fan-out's only child.
_CALLED = "call workflow child"
_FANNED = "foreach fan { over = tickets max_parallel = 1 workflow = child }"


def _handed_over_with_a_child_in_flight(h: Harness, store: Any, body: str) -> tuple[Any, str]:
    """A parent running `body` (its child waits in `slow`) stopped as the dashboard's hand-over
    stops it (`Workspace.hand_over`: as one that lost its lease), its events stored: the parent
    definition and run id."""
    h.add_workflow("workflow child { call slow }")
    h.agents.do("slow", wait_for_cancel)
    h.providers.append(ListProvider("tickets", ["a"]))
    wf = h.add_workflow(f"workflow parent {{ {body} }}")
    run_id = h.new_run(wf)
    writer = StoredEventWriter(store, run_id)
    bg = h.start(wf, run_id=run_id, event_sinks=[writer])
    assert wait_until(lambda: bool(h.agents.calls))
    h.engine.cancel_run(run_id, CancellationReason.of("LeaseLost"))  # as hand_over does
    with pytest.raises(EngineCancelled, match="LeaseLost"):
        bg.join()
    writer.close()
    return wf, run_id


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("body", [_CALLED, _FANNED], ids=["call", "foreach"])
def test_a_child_this_engine_stopped_for_a_lost_lease_is_not_stored_as_cancelled(
    tmp_path: Path, kind: str, body: str
) -> None:
    """The engine lets go of a run with a child in flight as one that lost its lease — the
    dashboard's hand-over to a background runner does so (`Workspace.hand_over`): the child is
    stopped, not ended (its row stays `running`: the runner resumes a called child in place, a
    resume ends a foreach's). Before, the stored stream held the child's `RunCancelled(LeaseLost)`,
    so `watch` and a following dashboard showed the child cancelled ("another engine took the
    run over") while no one had cancelled it; the run's own one was already left out."""
    from runkon_flow.event_log import CHILD_LEASE_LOST_NOTE, read_envelopes
    from runkon_flow.observe.reducer import RunModel

    store = make_store(kind, tmp_path)
    try:
        h = Harness(store, tmp_path)
        _wf, run_id = _handed_over_with_a_child_in_flight(h, store, body)
        (child,) = store.list_runs(parent_run_id=run_id)
        assert store.get_run(child.id).status is RunStatus.RUNNING  # nobody ended it

        events = read_envelopes(store, run_id)[0]
        ends = [e.event.type for e in events if e.event.type in ("RunCompleted", "RunCancelled")]
        assert ends == []  # neither the run's end nor the child's
        notes = [e.event.message for e in events if e.run_id == child.id and e.event.type == "EngineLog"]
        assert notes == [CHILD_LEASE_LOST_NOTE]  # the stream says it stopped here, and why
        view = RunModel.from_events(events)
        assert view.runs[child.id].status == "running", view.runs[child.id].cancel_reason
    finally:
        close_store(store)


@pytest.mark.parametrize("kind", CONTRACT_STORE_KINDS)
def test_a_foreach_child_left_in_flight_reads_ended_in_the_stream_once_a_resume_ends_it(
    tmp_path: Path, kind: str
) -> None:
    """The run is handed over with a foreach child in flight (its engine stops as one that lost
    the lease: the child's row stays `running`, the stream holds only a note), then resumed: the
    resume ends that child in the store — the item runs again as a new child. Before, it sent no
    event for it, so `watch`, `logs` and a dashboard following the run read the old child
    `running` for good while the store said cancelled."""
    from runkon_flow.event_log import read_envelopes
    from runkon_flow.observe.reducer import RunModel

    store = make_store(kind, tmp_path)
    try:
        h = Harness(store, tmp_path)
        wf, run_id = _handed_over_with_a_child_in_flight(h, store, _FANNED)
        (left,) = store.list_runs(parent_run_id=run_id)

        h.agents.on("slow")  # the runner that resumes it: the item now runs through
        writer = StoredEventWriter(store, run_id)
        result = h.engine.resume_workflow(wf, h.run_input(run_id, event_sinks=[writer]))
        writer.close()
        assert result.all_succeeded
        stored = store.get_run(left.id)
        assert stored.status is RunStatus.CANCELLED  # the resume ended it in the store …

        events = read_envelopes(store, run_id)[0]
        (end,) = [e.event for e in events if e.run_id == left.id and e.event.type == "RunCancelled"]
        assert end.reason.kind == "EngineShutdown"  # … and says so in the stream: not a user's cancel
        assert end.summary == stored.error
        view = RunModel.from_events(events)
        assert view.runs[left.id].status == "cancelled"
        assert view.runs[left.id].cancel_reason == "the engine shut down"
        assert view.status == "completed"
        again = [r for r in store.list_runs(parent_run_id=run_id) if r.id != left.id]
        assert [r.status for r in again] == [RunStatus.COMPLETED]  # the item ran again
    finally:
        close_store(store)


#: What `runkon-flow cancel <run> --message "no longer needed"` records on a run no engine holds.
_USER_CANCEL = str(EngineCancelled(CancellationReason.user("no longer needed")))


@pytest.mark.parametrize("kind", CONTRACT_STORE_KINDS)
def test_a_called_child_a_resume_did_not_reach_again_reads_ended_in_the_stream(
    tmp_path: Path, kind: str
) -> None:
    """An engine stopped (a crash, the dashboard's hand-over) with a `call workflow` child in
    flight: the stream holds the child's start and a note, its row reads `running`. The resume
    takes the other branch, and the run's end ends that child in the store. Before, no event said
    so: `watch`, `logs` and a dashboard following the run read the child `running` for good while
    the store said cancelled."""
    from runkon_flow.event_log import read_envelopes
    from runkon_flow.events import EngineEventData, RunCancelled, RunStarted
    from runkon_flow.observe.reducer import RunModel
    from runkon_flow.persistence.models import NewStep, StepStatus, StepUpdate

    store = make_store(kind, tmp_path)
    try:
        h = Harness(store, tmp_path)
        h.add_workflow("workflow child { call work }")
        wf = h.add_workflow("workflow parent { call decide if decide.go { call workflow child } }")
        run_id = h.new_run(wf)
        # What the stopped engine left: the call running, its child running under it, and in
        # the stream their starts and the child's stop (stored as a note, not as an end).
        generation = store.acquire_lease(run_id, "dead", 60)
        below = NewRun(workflow_name="child", parent_run_id=run_id, parent_workflow_run_id=run_id)
        child = store.create_leased_run(below, "dead-child", 60)
        store.insert_step(NewStep(run_id, "decide", position=0, retry_count=0, node_path="body.0"))
        call = NewStep(run_id, "workflow:child", "workflow", position=1, retry_count=0)
        call.node_path = "body.1.then.0"
        step = store.insert_step(call)
        store.update_step(step, StepUpdate(generation, StepStatus.RUNNING, child_run_id=child.id))
        writer = StoredEventWriter(store, run_id)
        writer.emit(EngineEventData.now(run_id, RunStarted(workflow_name="parent")))
        writer.emit(EngineEventData.now(child.id, RunStarted(workflow_name="child", parent_run_id=run_id)))
        writer.emit(
            EngineEventData.now(child.id, RunCancelled(reason=CancellationReason.of("LeaseLost"), summary=""))
        )
        writer.close()
        store.release_lease(run_id, "dead")
        assert RunModel.from_events(read_envelopes(store, run_id)[0]).runs[child.id].status == "running"

        writer = StoredEventWriter(store, run_id)  # the resume: decide says no "go" this time
        result = h.build().resume_workflow(wf, h.run_input(run_id, event_sinks=[writer]))
        writer.close()
        assert result.all_succeeded
        assert "work" not in h.agents.names()
        stored = store.get_run(child.id)
        assert stored.status is RunStatus.CANCELLED  # the run's end ended it in the store …

        events = read_envelopes(store, run_id)[0]
        (end,) = [e.event for e in events if e.run_id == child.id and e.event.type == "RunCancelled"]
        assert end.reason.kind == "EngineShutdown"  # … and says so in the stream
        assert end.summary == stored.error
        ends = [e.run_id for e in events if e.event.type in ("RunCancelled", "RunCompleted")]
        assert ends == [child.id, run_id]  # the child's end before the run's
        view = RunModel.from_events(events)
        assert view.runs[child.id].status == "cancelled"
        assert view.runs[child.id].cancel_reason == "the engine shut down"
        assert view.status == "completed"
    finally:
        close_store(store)


class _ChildCancelledWhilePaused:
    """A store on which this process stands still past its leases just as a foreach child records
    its end, and meanwhile `runkon-flow cancel <child>` ends that child (borrowing its lapsed
    lease): the child's end is refused, but nobody took the parent — it is still this engine's."""

    def __init__(self, inner: Any, clock: FakeClock, parent_id: str) -> None:
        self.inner, self.clock, self.parent_id = inner, clock, parent_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def finish_run(self, run_id: str, *args: Any, **kw: Any) -> bool:
        if run_id != self.parent_id:
            self.inner.flush()
            self.clock.advance(31)  # past every lease of this engine
            assert (
                end_unowned_run(self.inner, run_id, _USER_CANCEL) is RunStatus.CANCELLED
            )  # as `cancel` does
        return self.inner.finish_run(run_id, *args, **kw)


class _ChildCancelledAtItsRefresh:
    """A store on which this process stands still past its leases while a child runs, and
    meanwhile `runkon-flow cancel <child>` ends that child: the child learns it at its next lease
    refresh (refused: the cancel borrowed its lapsed lease), while it still runs."""

    def __init__(self, inner: Any, clock: FakeClock, parent_id: str) -> None:
        self.inner, self.clock, self.parent_id = inner, clock, parent_id
        self.running = threading.Event()  # set by the child's step
        self.done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def acquire_lease(self, run_id: str, *args: Any, **kw: Any) -> int | None:
        if run_id != self.parent_id and self.running.is_set() and not self.done:
            self.done = True
            self.inner.flush()
            self.clock.advance(31)  # past every lease of this engine
            assert (
                end_unowned_run(self.inner, run_id, _USER_CANCEL) is RunStatus.CANCELLED
            )  # as `cancel` does
        return self.inner.acquire_lease(run_id, *args, **kw)


_USER_CANCEL_EVENT_REASON = CancellationReason.user("no longer needed")


@pytest.mark.parametrize("kind", CONTRACT_STORE_KINDS)
@pytest.mark.parametrize("when", ["at its end", "while it runs"])
@pytest.mark.parametrize("body", [_CALLED, _FANNED], ids=["call", "foreach"])
def test_every_sink_sees_a_child_cancelled_from_outside_as_that_cancel(
    tmp_path: Path, kind: str, when: str, body: str
) -> None:
    """`runkon-flow cancel <child>` ends a child while its engine stands still past its lease: the
    engine learns it when the child's end is refused, or at the child's next lease refresh. Before,
    the engine told its own sinks (the `run` printer, a dashboard in this process, hooks)
    `RunCancelled(LeaseLost)` — as if another engine had taken the child over — and only the
    stored stream, whose writer read the child's row, said the user's cancel. Now the engine reads
    the row and every sink gets the same end."""
    from runkon_flow.event_log import read_envelopes

    clock = FakeClock()
    store = make_store(kind, tmp_path, clock)
    try:
        wf = parse_workflow(f"workflow parent {{ {body} call after }}")
        parent_id = store.create_run(NewRun(workflow_name="parent")).id
        if when == "at its end":
            wrapped: Any = _ChildCancelledWhilePaused(store, clock, parent_id)
            config = WorkflowExecConfig(poll_interval=0.05, lease_ttl_secs=30)
        else:
            wrapped = _ChildCancelledAtItsRefresh(store, clock, parent_id)
            # Refreshed often, never polled: the child learns of the cancel from its refresh.
            config = WorkflowExecConfig(
                poll_interval=0.05, lease_ttl_secs=30, lease_refresh_interval=0.05, cancel_poll_interval=3600
            )
        h = Harness(wrapped, tmp_path)
        if when == "while it runs":

            def work(info: Any, params: Any) -> ActionOutput:
                wrapped.running.set()
                return wait_for_cancel(info, params)

            h.agents.do("work", work)
        h.add_workflow("workflow child { call work }")
        h.providers.append(ListProvider("tickets", ["a"]))
        writer = StoredEventWriter(store, parent_id)
        h.run(wf, run_id=parent_id, exec_config=config, event_sinks=[writer])  # the parent was not taken
        writer.close()
        (child,) = [r for r in store.list_runs(parent_run_id=parent_id) if r.workflow_name == "child"]
        assert (store.get_run(child.id).status, store.get_run(child.id).error) == ("cancelled", _USER_CANCEL)

        ends = ("RunCompleted", "RunCancelled")
        live = h.events_of_run(child.id, *ends)
        stored = [
            e.event
            for e in read_envelopes(store, parent_id)[0]
            if e.run_id == child.id and e.event.type in ends
        ]
        assert [(e.type, e.reason) for e in live] == [("RunCancelled", _USER_CANCEL_EVENT_REASON)]
        assert live == stored
        assert_stream_ends_child_as_cancelled_by_the_user(store, parent_id, child.id)
    finally:
        close_store(store)


def assert_stream_ends_child_as_cancelled_by_the_user(store: Any, run_id: str, child_id: str) -> None:
    from runkon_flow.event_log import read_envelopes
    from runkon_flow.observe.reducer import RunModel

    events = read_envelopes(store, run_id)[0]
    about = [e.event for e in events if e.run_id == child_id]
    assert about[-1].type == "RunCancelled"
    assert about[-1].reason == CancellationReason.user("no longer needed")
    assert "EngineLog" not in [e.type for e in about]
    child = RunModel.from_events(events).runs[child_id]
    assert (child.status, child.cancel_reason) == ("cancelled", "no longer needed")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_child_ended_from_outside_does_not_stop_a_parent_whose_lease_is_still_its_own(
    tmp_path: Path, kind: str
) -> None:
    clock = FakeClock()
    store = make_store(kind, tmp_path, clock)
    try:
        wf = parse_workflow(
            "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child } call after }"
        )
        parent_id = store.create_run(NewRun(workflow_name="parent")).id
        h = Harness(_ChildCancelledWhilePaused(store, clock, parent_id), tmp_path)
        h.add_workflow("workflow child { call work }")
        h.providers.append(ListProvider("tickets", ["a"]))
        config = WorkflowExecConfig(poll_interval=0.05, lease_ttl_secs=30)
        writer = StoredEventWriter(store, parent_id)
        # no EngineCancelled: the parent was not taken
        h.run(wf, run_id=parent_id, exec_config=config, event_sinks=[writer])
        writer.close()
        parent = store.get_run(parent_id)
        assert parent.status.is_terminal and parent.owner_token is None
        (child,) = [r for r in store.list_runs(parent_run_id=parent_id) if r.workflow_name == "child"]
        assert (store.get_run(child.id).status, store.get_run(child.id).error) == ("cancelled", _USER_CANCEL)
        ends = h.events_of_run(child.id, "RunCompleted", "RunCancelled")
        assert [(e.type, e.reason.kind) for e in ends] == [("RunCancelled", "UserRequested")]
        # The stored stream says what the store says: the user's cancel, not "running" and a note
        # that it stopped without an end (before), nor the lease this engine lost.
        assert_stream_ends_child_as_cancelled_by_the_user(store, parent_id, child.id)
    finally:
        close_store(store)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_called_child_ended_from_outside_fails_its_step_in_a_parent_still_its_own(
    tmp_path: Path, kind: str
) -> None:
    # A called child's end is durable: refused, the child stops as LeaseLost. Its parent, whose
    # lease nobody took, counts the child failed and ends (before: it took the child's LeaseLost
    # for its own and stopped, its row left `running` with no owner).
    clock = FakeClock()
    store = make_store(kind, tmp_path, clock)
    try:
        wf = parse_workflow("workflow parent { call workflow child call after }")
        parent_id = store.create_run(NewRun(workflow_name="parent")).id
        h = Harness(_ChildCancelledWhilePaused(store, clock, parent_id), tmp_path)
        h.add_workflow("workflow child { call work }")
        config = WorkflowExecConfig(poll_interval=0.05, lease_ttl_secs=30)
        writer = StoredEventWriter(store, parent_id)
        # no EngineCancelled: the parent was not taken
        h.run(wf, run_id=parent_id, exec_config=config, event_sinks=[writer])
        writer.close()
        parent = store.get_run(parent_id)
        assert (parent.status, parent.owner_token) == (RunStatus.FAILED, None)
        (child,) = store.list_runs(parent_run_id=parent_id)
        assert (child.status, child.error) == ("cancelled", _USER_CANCEL)
        assert_stream_ends_child_as_cancelled_by_the_user(store, parent_id, child.id)
        (row,) = [s for s in store.get_steps(parent_id) if s.step_name == "workflow:child"]
        assert row.status == "failed" and "ended from outside" in (row.result_text or row.error or "")
    finally:
        close_store(store)


class _CancelledJustBeforeItRuns:
    """A store on which another process requests a cancel of the run the moment before the
    engine records it `running` — after the engine looked for a cancel."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _cancel_first(self, run_id: str) -> None:
        if self.armed:
            self.armed = False
            self.inner.request_cancel(run_id, str(EngineCancelled(CancellationReason.user("stop it"))))

    def update_run_status(self, run_id: str, status: RunStatus, summary: Any, error: Any) -> None:
        if status is RunStatus.RUNNING:
            self._cancel_first(run_id)
        self.inner.update_run_status(run_id, status, summary, error)

    def start_run(self, run_id: str, *, resuming: bool) -> RunStatus | None:
        self._cancel_first(run_id)
        return self.inner.start_run(run_id, resuming=resuming)


def test_a_cancel_requested_while_the_engine_starts_the_run_is_not_overwritten(
    store: Any, tmp_path: Path
) -> None:
    h = Harness(_CancelledJustBeforeItRuns(store), tmp_path)
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    result = h.run(wf, run_id=run_id, exec_config=WorkflowExecConfig(cancel_poll_interval=0.05))
    assert result.status == "cancelled" and h.agents.names() == []
    run = store.get_run(run_id)
    assert (run.status, run.owner_token) == ("cancelled", None)
    assert "stop it" in run.error


def test_cancelling_a_parent_reaches_a_call_workflow_child(h: Harness) -> None:
    h.add_workflow("workflow child { call slow }")
    h.agents.do("slow", wait_for_cancel)
    run = h.start("workflow parent { call workflow child }")
    assert wait_until(lambda: bool(h.agents.calls))
    h.engine.cancel_run(run.run_id)
    assert run.join(5).status == "cancelled"
    row = h.steps(run.run_id)[0]
    assert row.status == "cancelled"
    assert h.store.get_run(row.child_run_id).status == "cancelled"


def test_closing_the_engine_cancels_active_runs_with_engine_shutdown(h: Harness) -> None:
    h.agents.do("slow", wait_for_cancel)
    run = h.start("workflow w { call slow }")
    assert wait_until(lambda: bool(h.agents.calls))
    h.engine.close()
    assert run.join(5).status == "cancelled"
    assert h.events("RunCancelled")[0].reason.kind == "EngineShutdown"


@pytest.fixture
def clocked(tmp_path: Path, request: pytest.FixtureRequest):
    clock = FakeClock()
    store = make_store(request.param, tmp_path, clock)
    yield store, clock
    close_store(store)


@pytest.mark.parametrize("clocked", ["memory", "sqlite"], indirect=True)
def test_example_g_a_stolen_lease_fences_the_stale_engine(clocked, tmp_path: Path) -> None:
    store, clock = clocked
    agents = Agents()
    sink = CollectingSink()

    def steal(info, params):
        clock.advance(120)  # our lease expired; another engine takes the run over
        assert store.acquire_lease(info.run_id, "engine-b", 30) == 2
        return ActionOutput()

    agents.do("step1", steal)
    engine = FlowEngineBuilder().action_fallback(agents).event_sink(sink).build()
    wf = parse_workflow("workflow w { call step1 call step2 call step3 always { call cleanup } }")
    with pytest.raises(EngineCancelled) as err:
        engine.run_workflow(wf, RunInput(persistence=store))
    assert err.value.reason.kind == "LeaseLost"
    assert agents.names() == ["step1"]
    assert sink.of_type("RunCancelled")[0].reason.kind == "LeaseLost"
    run_id = sink.events[0].run_id
    # the stale engine must not overwrite the status of a run another engine now owns
    assert store.get_run(run_id).status == "running"
    assert store.get_run(run_id).owner_token == "engine-b"


@pytest.mark.parametrize("clocked", ["memory", "sqlite"], indirect=True)
def test_a_paused_engine_does_not_take_back_a_run_another_engine_finished(clocked, tmp_path: Path) -> None:
    # `runkon-flow run` suspended (Ctrl-Z) past its lease; the run is resumed elsewhere and
    # finished, which lets go of the lease; then `fg`. Its next lease refresh found the lease
    # free, took it and went on with the fan-out: every item left ran a second time.
    store, clock = clocked
    h = Harness(store, tmp_path)
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["a", "b", "c", "d"]))
    wf = parse_workflow("workflow w { foreach f { over = tickets max_parallel = 1 workflow = child } }")
    run_id = h.new_run(wf)
    done: list[str] = []

    def work(info, params):
        done.append(params.inputs["item.id"])
        if len(done) == 1:
            clock.advance(120)  # paused past the lease: another engine resumes the run and finishes it
            assert store.acquire_lease(run_id, "engine-b", 30) == 2
            store.finish_run(run_id, RunStatus.COMPLETED, "finished by b", None, "engine-b")
            info.cancellation.wait(3)  # the lease refresh that follows the pause
        return ActionOutput()

    h.agents.do("work", work)
    with pytest.raises(EngineCancelled) as err:
        h.run(wf, run_id=run_id, exec_config=WorkflowExecConfig(lease_refresh_interval=0.05))
    assert err.value.reason.kind == "LeaseLost"
    assert done == ["a"]
    run = store.get_run(run_id)
    assert (run.status, run.result_summary, run.owner_token) == ("completed", "finished by b", None)


def test_a_failed_lease_refresh_aborts_the_run(tmp_path: Path) -> None:
    clock = FakeClock()
    store = make_store("memory", tmp_path, clock)
    agents = Agents().do("slow", wait_for_cancel)
    sink = CollectingSink()
    engine = FlowEngineBuilder().action_fallback(agents).event_sink(sink).build()
    wf = parse_workflow("workflow w { call slow }")
    config = WorkflowExecConfig(lease_refresh_interval=0.05)
    result: list = []

    def target() -> None:
        try:
            engine.run_workflow(wf, RunInput(persistence=store, exec_config=config))
        except EngineCancelled as exc:
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    assert wait_until(lambda: bool(agents.calls))
    clock.advance(120)
    store.acquire_lease(agents.calls[0].info.run_id, "engine-b", 30)
    thread.join(5)
    assert not thread.is_alive()
    [error] = result
    assert error.reason.kind == "LeaseLost"


def test_a_provider_returning_garbage_fails_the_step_naming_it(h: Harness) -> None:
    class Weird(ListProvider):
        def items(self, *args):
            return [object()]

    h.add_workflow("workflow child { call work }")
    h.providers.append(Weird("tickets", []))
    result = h.run("workflow w { foreach f { over = tickets max_parallel = 1 workflow = child } }")
    row = h.steps(result.workflow_run_id)[0]
    assert row.status == "failed"
    assert row.step_error.startswith("foreach 'f': item provider 'tickets' returned an invalid item <object")


def test_an_unexpected_error_is_reported_as_panicked_and_the_run_still_ends(h: Harness) -> None:
    real_insert = h.store.insert_step

    def insert(new_step):
        if new_step.step_name == "b":
            raise RuntimeError("disk on fire")
        return real_insert(new_step)

    h.store.insert_step = insert  # type: ignore[method-assign]
    result = h.run("workflow w { call a call b call c always { call cleanup } }")
    assert result.status == "failed" and h.agents.names() == ["a", "cleanup"]
    assert (
        h.store.get_run(result.workflow_run_id).error
        == "workflow error: internal error: RuntimeError: disk on fire"
    )
    [panic] = h.events("Panicked")
    assert panic.message == "RuntimeError: disk on fire" and "disk on fire" in panic.backtrace


def test_engine_level_and_run_level_sinks_each_see_each_event_once(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["a", "b"]))
    run_sink = CollectingSink()
    h.run(
        "workflow p { foreach f { over = tickets max_parallel = 2 workflow = child } }",
        event_sinks=[run_sink],
    )
    assert sorted(d.model_dump_json() for d in h.sink.events) == sorted(
        d.model_dump_json() for d in run_sink.events
    )
    assert len(h.sink.events) == len({id(d) for d in h.sink.events})
    assert h.sink.types().count("RunStarted") == 3


def test_the_low_level_run_api_takes_a_caller_built_state(h: Harness) -> None:
    from runkon_flow.runtime import ExecutionState

    h.add_workflow("workflow child { call work }")
    engine = h.build()
    wf = parse_workflow("workflow w { call a call workflow child }")
    extra = CollectingSink()
    state = ExecutionState(
        persistence=h.store,
        workflow_run_id=h.new_run(wf),
        action_registry=engine.action_registry,
        event_sinks=[extra],
    )
    result = engine.run(wf, state)
    assert result.all_succeeded and h.agents.names() == ["a", "work"]
    assert extra.types()[0] == "RunStarted" and h.sink.types()[0] == "RunStarted"


@pytest.mark.parametrize("clocked", ["memory", "sqlite"], indirect=True)
@pytest.mark.parametrize("stood_still_by", ["SIGSTOP", "suspend"])
def test_an_engine_woken_after_another_took_its_run_over_starts_no_more_children(
    clocked, stood_still_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGSTOP past the lease (or the laptop slept); another engine resumes the run (it is running
    # there now); SIGCONT (or wake). Before the monitor's next refresh noticed, the fan-out went on
    # starting children here — after a suspend always, as time.monotonic stops then on Linux.
    if stood_still_by == "suspend" and not hasattr(time, "CLOCK_BOOTTIME"):
        pytest.skip("no clock here counts a suspend")
    store, clock = clocked
    h = Harness(store, tmp_path)
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["a", "b", "c", "d"]))
    wf = parse_workflow("workflow w { foreach f { over = tickets max_parallel = 1 workflow = child } }")
    run_id = h.new_run(wf)
    done: list[str] = []
    stood_still = [0.0]
    monotonic, clock_gettime = time.monotonic, time.clock_gettime
    if stood_still_by == "SIGSTOP":  # every clock goes on; only CLOCK_BOOTTIME during a suspend
        monkeypatch.setattr(time, "monotonic", lambda: monotonic() + stood_still[0])
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    monkeypatch.setattr(
        time,
        "clock_gettime",
        lambda clk: clock_gettime(clk) + (stood_still[0] if clk == boottime else 0.0),
    )

    def work(info, params):
        done.append(params.inputs["item.id"])
        if len(done) == 1:  # the process stands still for two minutes, then goes on
            clock.advance(120)
            stood_still[0] = 120.0
            assert store.acquire_lease(run_id, "engine-b", 30) == 2
        return ActionOutput()

    h.agents.do("work", work)
    slow_monitor = WorkflowExecConfig(lease_refresh_interval=1000, cancel_poll_interval=1000)
    with pytest.raises(EngineCancelled) as err:
        h.run(wf, run_id=run_id, exec_config=slow_monitor)
    assert err.value.reason.kind == "LeaseLost"
    assert done == ["a"]
    assert store.get_run(run_id).owner_token == "engine-b"


def test_resuming_a_run_deleted_meanwhile_says_it_is_gone(h: Harness) -> None:
    # `runkon-flow resume` (or retry) read the old run; `runkon-flow gc` deleted it before the
    # engine took its lease. It was refused as "already owned by another engine".
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    h.run(wf, run_id=run_id)
    h.store.delete_finished_runs("2999-01-01T00:00:00.000Z")
    with pytest.raises(WorkflowError, match=f"no workflow run '{run_id}'"):
        h.build().resume_workflow(wf, h.run_input(run_id))
    assert h.agents.names() == ["a"]


def test_a_lease_the_run_database_cannot_renew_stops_the_run_as_store_unavailable(tmp_path: Path) -> None:
    """The run database stops taking writes (here: read-only) while a step runs: the lease
    renewal fails and the run stops as after a lost lease (its lease may lapse and another
    engine resume it) — but no engine took it over, so it ends with the store's error, not
    `EngineCancelled(LeaseLost)` ("another engine took the run over"), and sends no
    `RunCancelled(LeaseLost)`; its row stays as it was stored, to be resumed."""
    from runkon_flow.errors import StoreUnavailable
    from runkon_flow.persistence.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "runs.db")
    agents = Agents().do("slow", wait_for_cancel)
    sink = CollectingSink()
    engine = FlowEngineBuilder().action_fallback(agents).event_sink(sink).build()
    wf = parse_workflow("workflow w { call slow }")
    config = WorkflowExecConfig(lease_refresh_interval=0.05)
    result: list[BaseException] = []

    def target() -> None:
        try:
            engine.run_workflow(wf, RunInput(persistence=store, exec_config=config))
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert wait_until(lambda: bool(agents.calls))
        store._db.execute("PRAGMA query_only = 1")  # the file takes no writes (SQLITE_READONLY)
        thread.join(10)
        assert not thread.is_alive()
        [error] = result
        assert isinstance(error, StoreUnavailable), repr(error)
        assert "readonly database" in str(error)
        assert not [e for e in sink.events if e.event.type == "RunCancelled"]
        store._db.execute("PRAGMA query_only = 0")
        assert store.get_run(agents.calls[0].info.run_id).status is RunStatus.RUNNING
    finally:
        thread.join(10)
        store.close()
