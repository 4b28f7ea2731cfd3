"""A gate answered while no engine holds its run (it is interrupted): the answer is in the store
and in no event, since the engine that would have told it is gone. The dashboard draws it from
the store — approved, not still waiting — and a resume that skips the gate leaves it so."""

from __future__ import annotations

from runkon_flow.approvals import GateApprovals
from runkon_flow.event_log import StoredEventWriter
from runkon_flow.events import GateWaiting, RunCompleted, RunResumed, StepStarted
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepStatus, StepUpdate

from runkon_tui.history import past_run_view
from tests.tui import scenarios
from tests.tui.conftest import make_app, wait_for


def _interrupted_at_its_gate() -> tuple[InMemoryStore, str]:
    """review-pr stored as it stood when its engine died waiting at `human_approval` (no lease:
    it reads interrupted), with the gate's step row; the gate's step id."""
    store = InMemoryStore()
    run_id = store.create_run(NewRun(workflow_name="review-pr", run_id=scenarios.ROOT)).id
    store.update_run_status(run_id, RunStatus.RUNNING, None, None)
    store.set_waiting_blocked_on(run_id, {"type": "human_approval", "gate_name": "human_approval"})
    gate = store.insert_step(
        NewStep(
            run_id,
            "human_approval",
            role="gate",
            gate_type="human_approval",
            node_path="body.4",
            retry_count=0,
        )
    )
    store.update_step(gate, StepUpdate(generation=0, status=StepStatus.WAITING))  # as the engine does
    writer = StoredEventWriter(store, run_id)
    for data in scenarios.gate_waiting().events:
        event = data.event
        if isinstance(event, StepStarted | GateWaiting) and getattr(event, "node_path", None) == "body.4":
            data = data.model_copy(update={"event": event.model_copy(update={"step_id": gate})})
        writer.emit(data)
    writer.close()
    return store, gate


def test_a_gate_answered_with_no_engine_reads_answered_when_the_run_is_drawn_from_the_store() -> None:
    store, gate = _interrupted_at_its_gate()
    before = past_run_view(store, scenarios.ROOT)
    assert before.status == "interrupted" and [g.gate_name for g in before.waiting_gates()] == [
        "human_approval"
    ]
    store.approve_gate(gate, "ana", "ship it", None)
    view = past_run_view(store, scenarios.ROOT)
    assert view.waiting_gates() == []
    step = view.root.steps["body.4"]  # type: ignore[union-attr]
    assert step.status == "completed" and (step.decision or "").startswith("approved by ana")
    assert view.step_counts().get("completed", 0) == before.step_counts().get("completed", 0) + 1
    # The resume skips the answered gate: the run's end does not take it for an unfinished step.
    view.apply(scenarios.Script().emit(RunResumed(workflow_name="review-pr", skipped_steps=5)))
    view.apply(scenarios.Script().emit(RunCompleted(succeeded=True)))
    assert view.root.steps["body.4"].status == "completed"  # type: ignore[union-attr]


async def test_approving_the_gate_of_an_interrupted_run_on_screen_draws_it_approved() -> None:
    """It kept its waiting banner and `a`/`x`, and a second `a` approved it again."""
    store, _ = _interrupted_at_its_gate()
    app = make_app(store=store)
    app.host.gates = GateApprovals(store)  # type: ignore[union-attr]  # answers go to the store
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_past_run(scenarios.ROOT)
        await wait_for(pilot, lambda: app.view.root_run_id == scenarios.ROOT, what="the run")
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="its gate")
        [gate] = app.view.waiting_gates()
        app.session.decide_gate(gate, True, "ship it")
        await wait_for(pilot, lambda: not app.view.waiting_gates(), what="the gate answered")
        assert app.view.status == "interrupted"  # still to be resumed
        step = app.view.root.steps["body.4"]  # type: ignore[union-attr]
        assert step.status == "completed" and "approved by" in (step.decision or "")
        screen = app.main_screen
        assert screen is not None and screen.check_action("approve_gate", ()) is not True
