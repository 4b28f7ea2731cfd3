"""Gates (engine.md §9.8): human approval through the approval store, quality gates, timeouts,
options, dry-run, cancellation, and the approval API (approvals.py)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.approvals import GateApprovalError, GateApprovals, GateOption
from runkon_flow.errors import PersistenceError
from runkon_flow.plugins.protocols import GatePoll
from runkon_flow.runtime import WorkflowExecConfig
from runkon_flow.workspace import Workspace

from tests.engine.conftest import Harness, wait_until

GATE = """workflow w {
  inputs { version required }
  call build
  gate human_approval {
    prompt  = "Ship {{version}}?"
    timeout = "1h"
    options = { ship = "Ship now" hold = "Hold for a day" }
  }
  call deploy
}"""


def waiting(h: Harness, run_id: str) -> bool:
    return bool(h.events_of_run(run_id, "GateWaiting"))


def test_an_approved_gate_lets_the_run_continue_with_the_feedback(h: Harness) -> None:
    run = h.start(GATE, inputs={"version": "1.2"})
    assert wait_until(lambda: waiting(h, run.run_id))
    approvals = GateApprovals(h.store)
    [gate] = approvals.waiting_gates(run.run_id)
    assert (gate.gate_name, gate.gate_type, gate.prompt) == ("human_approval", "human_approval", "Ship 1.2?")
    assert gate.options == (GateOption("ship", "Ship now"), GateOption("hold", "Hold for a day"))
    stored = h.store.get_run(run.run_id)
    assert stored.status == "waiting"
    assert stored.blocked_on == {
        "type": "human_approval",
        "gate_name": "human_approval",
        "prompt": "Ship 1.2?",
        "options": ["ship", "hold"],
    }
    event = h.events("GateWaiting")[0]
    assert (event.prompt, event.options, event.step_id, event.node_path) == (
        "Ship 1.2?",
        {"ship": "Ship now", "hold": "Hold for a day"},
        gate.step_id,
        "body.1",
    )
    approvals.approve(run.run_id, "human_approval", by="ada", note="looks good")
    result = run.join()
    assert result.all_succeeded
    assert h.agents.inputs_of("deploy")["gate_feedback"] == "looks good"
    assert h.statuses(run.run_id) == [
        ("build", "completed"),
        ("human_approval", "completed"),
        ("deploy", "completed"),
    ]
    row = h.steps(run.run_id)[1]
    assert (row.role, row.gate_approved_by, row.gate_prompt) == ("gate", "ada", "Ship 1.2?")
    resolved = h.events("GateResolved")[0]
    assert (resolved.approved, resolved.resolved_by, resolved.feedback) == (True, "ada", "looks good")
    kinds = [(e.type, e.step_name) for e in h.events("StepStarted", "StepCompleted") if e.kind == "gate"]
    assert kinds == [("StepStarted", "human_approval"), ("StepCompleted", "human_approval")]


def test_selections_become_the_gate_feedback_and_are_validated(h: Harness) -> None:
    run = h.start(GATE, inputs={"version": "1"})
    assert wait_until(lambda: waiting(h, run.run_id))
    approvals = GateApprovals(h.store)
    with pytest.raises(GateApprovalError, match=r"invalid selection 'nope'.*allowed: hold, ship"):
        approvals.approve(run.run_id, "human_approval", by="ada", selections=["nope"])
    approvals.approve(run.run_id, "human_approval", by="ada", selections=["ship", "hold"])
    run.join()
    assert h.agents.inputs_of("deploy")["gate_feedback"] == "ship, hold"


def test_a_rejected_gate_fails_the_run_with_the_reviewers_note(h: Harness) -> None:
    run = h.start(GATE, inputs={"version": "1"})
    assert wait_until(lambda: waiting(h, run.run_id))
    gate_id = GateApprovals(h.store).waiting_gates(run.run_id)[0].step_id
    GateApprovals(h.store).reject(run.run_id, gate_id, by="bob", note="not today")
    result = run.join()
    assert result.status == "failed" and "deploy" not in h.agents.names()
    reason = "workflow error: Gate 'human_approval' rejected by bob: not today"
    assert h.store.get_run(run.run_id).error == reason
    assert h.events("GateResolved")[0].approved is False
    assert h.steps(run.run_id)[1].status == "failed"


def test_approval_api_errors_are_clear(h: Harness) -> None:
    approvals = GateApprovals(h.store)
    with pytest.raises(GateApprovalError, match="no workflow run 'nope'"):
        approvals.waiting_gates("nope")
    result = h.run("workflow w { call a }")
    with pytest.raises(GateApprovalError, match="has no gate waiting for approval"):
        approvals.approve(result.workflow_run_id, "human_approval", by="x")
    run = h.start(GATE, inputs={"version": "1"})
    assert wait_until(lambda: waiting(h, run.run_id))
    with pytest.raises(GateApprovalError, match=r"no waiting gate 'pr_checks' \(waiting: human_approval\)"):
        approvals.reject(run.run_id, "pr_checks", by="x")
    h.engine.cancel_run(run.run_id)
    run.join()


def test_a_gate_timeout_fails_the_run_by_default(h: Harness) -> None:
    result = h.run("workflow w { gate human_approval { timeout = 0 } call after }")
    row = h.steps(result.workflow_run_id)[0]
    assert (row.status, row.result_text, row.step_error) == (
        "failed",
        "gate timed out",
        "Gate 'human_approval' timed out",
    )
    assert h.store.get_run(result.workflow_run_id).error == "workflow error: Gate 'human_approval' timed out"
    assert h.events("GateTimedOut")[0].continued is False


def test_a_gate_timeout_with_on_timeout_continue_carries_on(h: Harness) -> None:
    result = h.run("workflow w { gate pr_checks { timeout = 0 on_timeout = continue } call after }")
    assert result.all_succeeded and h.agents.names() == ["after"]
    assert h.statuses(result.workflow_run_id)[0] == ("pr_checks", "timed_out")
    assert h.events("GateTimedOut")[0].continued is True
    assert h.store.get_run(result.workflow_run_id).status == "completed"


def test_options_can_come_from_a_prior_steps_structured_output(h: Harness) -> None:
    h.agents.on(
        "plan", structured=json.dumps({"choices": {"a": "Option A", "b": "Option B"}, "list": ["x", "y"]})
    )
    run = h.start('workflow w { call plan gate human_review { options = "plan.choices" } }')
    assert wait_until(lambda: waiting(h, run.run_id))
    assert h.events("GateWaiting")[0].options == {"a": "Option A", "b": "Option B"}
    GateApprovals(h.store).approve(run.run_id, "human_review", by="ada", selections=["b"])
    assert run.join().all_succeeded


def test_a_bad_options_reference_fails_the_gate_with_a_message(h: Harness) -> None:
    result = h.run('workflow w { call plan gate human_review { options = "plan.choices" } }')
    row = h.steps(result.workflow_run_id)[1]
    assert row.status == "failed"
    assert (
        row.step_error
        == "gate 'human_review': options reference 'plan.choices': step 'plan' has no structured output"
    )


def test_dry_run_auto_approves_human_gates(h: Harness) -> None:
    result = h.run(GATE, inputs={"version": "1"}, exec_config=WorkflowExecConfig(dry_run=True))
    assert result.all_succeeded
    row = h.steps(result.workflow_run_id)[1]
    assert (row.status, row.role, row.result_text) == ("completed", "gate", "dry-run: auto-approved")
    assert not h.events("GateWaiting")


def test_cancelling_a_waiting_gate_wakes_it_at_once_and_records_it_cancelled(h: Harness) -> None:
    run = h.start(GATE, inputs={"version": "1"}, exec_config=WorkflowExecConfig(poll_interval=30))
    assert wait_until(lambda: waiting(h, run.run_id))
    h.engine.cancel_run(run.run_id)
    result = run.join(5)
    assert result.status == "cancelled"
    assert h.statuses(run.run_id)[1] == ("human_approval", "cancelled")
    assert h.store.get_run(run.run_id).status == "cancelled"


def test_an_in_process_approval_wakes_a_slow_polling_gate(h: Harness) -> None:
    run = h.start(GATE, inputs={"version": "1"}, exec_config=WorkflowExecConfig(poll_interval=30))
    assert wait_until(lambda: waiting(h, run.run_id))
    GateApprovals(h.store).approve(run.run_id, "human_approval", by="ada")
    assert run.join(5).all_succeeded


def test_a_registered_resolver_can_decide_a_gate(h: Harness) -> None:
    class AutoApprove:
        def gate_type(self) -> str:
            return "pr_checks"

        def poll(self, run_id, params, ctx):
            return GatePoll("approved", feedback="checks green")

    h.build()
    h.engine.gate_resolvers.register(AutoApprove())
    result = h.run("workflow w { gate pr_checks { timeout = 60 } call after }")
    assert result.all_succeeded
    row = h.steps(result.workflow_run_id)[0]
    assert (row.status, row.gate_approved_by, row.gate_feedback) == (
        "completed",
        "resolver:pr_checks",
        "checks green",
    )
    assert h.agents.inputs_of("after")["gate_feedback"] == "checks green"


@pytest.mark.parametrize(
    ("structured", "expected", "ok"),
    [
        ('{"confidence": 80}', "quality_gate: confidence=80, threshold=75, result=pass", True),
        ('{"confidence": 180.9}', "quality_gate: confidence=100, threshold=75, result=pass", True),
        ('{"confidence": 74.9}', "quality_gate: confidence=74, threshold=75, result=fail", False),
        (
            '{"score": 99}',
            "quality_gate: confidence=0, threshold=75, result=fail (confidence defaulted to 0: "
            "missing 'confidence' key)",
            False,
        ),
        (
            None,
            "quality_gate: confidence=0, threshold=75, result=fail (confidence defaulted to 0: "
            "no structured output)",
            False,
        ),
    ],
)
def test_quality_gates_compare_confidence_with_the_threshold(
    h: Harness, structured: str | None, expected: str, ok: bool
) -> None:
    h.agents.on("scorer", structured=structured)
    result = h.run("workflow w { call scorer gate quality_gate { source = scorer threshold = 75 } }")
    row = h.steps(result.workflow_run_id)[1]
    assert row.result_text == expected
    assert result.all_succeeded is ok
    if not ok:
        assert row.status == "failed"
        assert row.step_error.startswith("Quality gate 'quality_gate' failed: confidence")


def test_a_failing_quality_gate_with_on_fail_continue_proceeds(h: Harness) -> None:
    h.agents.on("scorer", structured='{"confidence": 10}')
    result = h.run(
        "workflow w { call scorer "
        "gate quality_gate { source = scorer threshold = 50 on_fail = continue } call x }"
    )
    assert result.all_succeeded and h.agents.names() == ["scorer", "x"]
    assert h.steps(result.workflow_run_id)[1].result_text.endswith("(on_fail=continue, proceeding)")


def test_a_quality_gate_whose_source_never_ran_fails_with_a_message(h: Harness) -> None:
    result = h.run("workflow w { gate quality_gate { source = scorer threshold = 50 } }")
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: Quality gate 'quality_gate': source step 'scorer' not found in step results"
    )


def test_gates_waiting_in_child_runs_can_be_approved_through_the_top_level_run(h: Harness) -> None:
    from tests.engine.conftest import ListProvider

    h.add_workflow("workflow child { gate human_approval { timeout = 60 } call after }")
    h.providers.append(ListProvider("tickets", ["a", "b"]))
    run = h.start("workflow top { foreach f { over = tickets max_parallel = 2 workflow = child } }")
    approvals = GateApprovals(h.store)
    assert wait_until(lambda: len(approvals.waiting_gates(run.run_id)) == 2)
    gates = approvals.waiting_gates(run.run_id)
    assert {g.run_id for g in gates} != {run.run_id}
    with pytest.raises(GateApprovalError, match="is waiting in 2 child runs"):
        approvals.approve(run.run_id, "human_approval", by="ada")
    for gate in gates:
        approvals.approve(run.run_id, gate.step_id, by="ada")
    assert run.join().all_succeeded
    assert approvals.waiting_gates(run.run_id) == []


# --------------------------------------------------------------------------- who records a decision


def _engine_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_approving_a_gate_through_the_workspace_logs_no_warning(
    store: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What `runkon-flow run` + `approve` and the dashboard do: the approval is the only write."""
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "ship.wf").write_text(
        'workflow ship {\n  gate human_approval { prompt = "Ship?" timeout = "1h" }\n'
        '  script deploy { run = "echo deployed" }\n}\n'
    )
    ws = Workspace([folder], store, exec_config=WorkflowExecConfig(poll_interval=0.05))
    run_id = ws.create_run("ship", {})
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(ws.execute(run_id)), daemon=True)
    caplog.set_level(logging.DEBUG, logger="runkon_flow")
    worker.start()
    assert wait_until(lambda: bool(ws.gates.waiting_gates(run_id)))
    ws.gates.approve(run_id, "human_approval", by="ada", note="go")
    worker.join(10)
    assert not worker.is_alive()
    assert outcome[0].all_succeeded
    gate = next(s for s in store.get_steps(run_id) if s.step_name == "human_approval")
    assert (gate.status, gate.gate_approved_by, gate.gate_feedback) == ("completed", "ada", "go")
    assert _engine_warnings(caplog) == []


def test_a_person_deciding_while_a_resolver_answers_wins_without_a_warning(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The approval lands between the engine's read of the store and the resolver's verdict: the
    resolver's write is refused ("already completed") and the person's decision stands."""
    approvals = GateApprovals(h.store)

    class LateApprover:
        def gate_type(self) -> str:
            return "pr_checks"

        def poll(self, run_id: str, params: Any, ctx: Any) -> GatePoll:
            approvals.approve(run_id, params.step_id, by="ada", note="mine")
            return GatePoll("rejected", feedback="checks red")

    h.build()
    h.engine.gate_resolvers.register(LateApprover())
    caplog.set_level(logging.DEBUG, logger="runkon_flow")
    result = h.run("workflow w { gate pr_checks { timeout = 60 } call after }")
    assert result.all_succeeded
    row = h.steps(result.workflow_run_id)[0]
    assert (row.status, row.gate_approved_by, row.gate_feedback) == ("completed", "ada", "mine")
    assert _engine_warnings(caplog) == []


class _RefusesResolverWrites:
    """A store whose writes of resolver decisions fail (say, a disk error); everything else passes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def approve_gate(self, step_id: str, by: str, feedback: str | None, selections: Any) -> None:
        if by.startswith("resolver:"):
            raise PersistenceError("disk I/O error")
        self._inner.approve_gate(step_id, by, feedback, selections)


def test_a_resolver_decision_the_store_cannot_record_is_reported_once_and_the_gate_waits(
    store: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(_RefusesResolverWrites(store), tmp_path)
    polls: list[str] = []

    class AutoApprove:
        def gate_type(self) -> str:
            return "pr_checks"

        def poll(self, run_id: str, params: Any, ctx: Any) -> GatePoll:
            polls.append(params.step_id)
            return GatePoll("approved", feedback="checks green")

    h.build()
    h.engine.gate_resolvers.register(AutoApprove())
    caplog.set_level(logging.DEBUG, logger="runkon_flow")
    run = h.start("workflow w { gate pr_checks { timeout = 60 } call after }")
    assert wait_until(lambda: len(polls) >= 3)
    assert GateApprovals(store).waiting_gates(run.run_id) != []  # not decided: the write failed
    GateApprovals(store).approve(run.run_id, "pr_checks", by="ada")
    assert run.join().all_succeeded
    assert _engine_warnings(caplog) == [
        "could not record resolver decision for gate 'pr_checks': persistence error: disk I/O error"
    ]
