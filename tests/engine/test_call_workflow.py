"""`call workflow` (engine.md §9.3) through the InProcessChildRunner (§3.7)."""

from __future__ import annotations

import pytest
from runkon_flow.errors import WorkflowError
from runkon_flow.events import CollectingSink
from runkon_flow.plugins.protocols import ActionOutput, ActionParams, StepInfo
from runkon_flow.runtime import FlowEngineBuilder, RunInput

from tests.engine.conftest import Harness

CHILD = "workflow child { inputs { version required } call build call check }"


def test_a_child_run_is_recorded_linked_and_its_results_merged_into_the_parent(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.agents.on("check", markers=["green"], context="all checks pass")
    result = h.run(
        """workflow parent {
             call workflow child { inputs { version = "{{release}}" } }
             if check.green { call from_child_step }
             if child.green { call from_workflow_result }
           }""",
        inputs={"release": "2.0"},
    )
    assert result.all_succeeded
    assert h.agents.names() == ["build", "check", "from_child_step", "from_workflow_result"]
    row = h.steps(result.workflow_run_id)[0]
    assert (row.step_name, row.role, row.status) == ("workflow:child", "workflow", "completed")
    assert (row.result_text, row.context_out, row.markers_out) == (
        "Sub-workflow 'child' completed",
        "all checks pass",
        '["green"]',
    )
    child = h.store.get_run(row.child_run_id)
    assert (child.workflow_name, child.status, child.parent_workflow_run_id) == (
        "child",
        "completed",
        result.workflow_run_id,
    )
    assert child.inputs["version"] == "2.0"
    assert h.agents.inputs_of("build")["version"] == "2.0"
    # history: the child's completed steps come before the call-workflow's own entry
    assert h.agents.inputs_of("from_child_step")["prior_context"] == "all checks pass"


def test_child_events_carry_the_child_run_id_and_reach_each_sink_once(h: Harness) -> None:
    h.add_workflow(CHILD)
    result = h.run('workflow parent { call workflow child { inputs { version = "1" } } }')
    child_id = h.steps(result.workflow_run_id)[0].child_run_id
    [link] = h.events("ChildRunStarted")
    assert (link.child_run_id, link.parent_run_id, link.workflow_name) == (
        child_id,
        result.workflow_run_id,
        "child",
    )
    assert link.parent_step_id == h.steps(result.workflow_run_id)[0].id
    child_types = [e.type for e in h.events_of_run(child_id)]
    assert child_types == [
        "RunStarted",
        "StepStarted",
        "StepCompleted",
        "StepStarted",
        "StepCompleted",
        "MetricsUpdated",
        "RunCompleted",
    ]
    assert h.events_of_run(child_id, "RunStarted")[0].parent_run_id == result.workflow_run_id
    parent_steps = [
        (e.type, e.step_name, e.kind)
        for e in h.events_of_run(result.workflow_run_id)
        if e.type.startswith("Step")
    ]
    assert parent_steps == [
        ("StepStarted", "workflow:child", "call_workflow"),
        ("StepCompleted", "workflow:child", "call_workflow"),
    ]


def test_a_running_call_names_its_child_run_on_its_row_before_the_child_runs_a_step(h: Harness) -> None:
    """`show`, estimates and the dashboard read the child of a running call from its row."""
    h.add_workflow(CHILD)
    seen: list[tuple[str, str | None, str]] = []

    def build(info: StepInfo, params: ActionParams) -> ActionOutput:
        child = h.store.get_run(info.run_id)
        [row] = h.steps(child.parent_workflow_run_id)
        seen.append((row.status, row.child_run_id, child.id))
        return ActionOutput(context="built")

    h.agents.do("build", build)
    result = h.run('workflow parent { call workflow child { inputs { version = "1" } } }')
    assert result.all_succeeded
    [(status, named, child_id)] = seen
    assert (status, named) == ("running", child_id)
    assert h.steps(result.workflow_run_id)[0].child_run_id == child_id


def test_a_per_run_sink_that_is_also_an_engine_sink_sees_child_events_once(h: Harness) -> None:
    h.add_workflow(CHILD)
    extra = CollectingSink()
    engine = (
        FlowEngineBuilder()
        .action_fallback(h.agents)
        .event_sink(h.sink)
        .workflow_resolver(h.workflows)
        .build()
    )
    wf = h.add_workflow('workflow parent { call workflow child { inputs { version = "1" } } }')
    engine.run_workflow(wf, RunInput(persistence=h.store, event_sinks=[h.sink, extra]))
    assert len(h.sink.events) == len(extra.events)
    assert len({id(e) for e in h.sink.events}) == len(h.sink.events)
    assert [d.event.type for d in h.sink.events].count("RunStarted") == 2


def test_unknown_placeholders_in_child_inputs_stay_literal(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.run(
        'workflow parent { call workflow child { inputs { a = "{{known}}-{{nope}}" } } }',
        inputs={"known": "k"},
    )
    assert h.agents.inputs_of("work")["a"] == "k-{{nope}}"


def test_parent_inputs_reach_the_child_and_explicit_inputs_win(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.run(
        'workflow parent { call workflow child { inputs { scope = "incremental" } } }',
        inputs={"ticket_id": "T-9", "scope": "full"},
    )
    seen = h.agents.inputs_of("work")
    assert (seen["ticket_id"], seen["scope"]) == ("T-9", "incremental")


def test_a_failing_child_is_retried_then_fails_the_parent(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.agents.fail("work", "kaput")
    result = h.run("workflow parent { call workflow child { retries = 1 } call after }")
    rows = h.steps(result.workflow_run_id)
    assert [(r.step_name, r.retry_count, r.status) for r in rows] == [
        ("workflow:child", 0, "failed"),
        ("workflow:child", 1, "failed"),
    ]
    assert rows[0].step_error.startswith("Sub-workflow 'child' failed: workflow error: Step 'work' failed")
    assert rows[0].child_run_id != rows[1].child_run_id and rows[0].child_run_id
    assert [e.step_name for e in h.events("StepRetrying")] == ["workflow:child"]
    assert h.store.get_run(result.workflow_run_id).error.startswith(
        "workflow error: Step 'child' failed after 2 attempts: Sub-workflow 'child' failed: "
    )


def test_on_fail_continue_lets_the_parent_carry_on(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.agents.fail("work")
    result = h.run("workflow parent { call workflow child { on_fail = continue } call after }")
    assert result.all_succeeded and h.agents.names()[-1] == "after"


def test_the_child_uses_the_call_identity_as_its_default(h: Harness) -> None:
    h.add_workflow('workflow child { call work call other { as = "own" } }')
    h.run('workflow parent { call workflow child { as = "docs-bot" } }')
    assert [c.params.as_identity for c in h.agents.calls] == ["docs-bot", "own"]


def test_nesting_deeper_than_five_levels_fails_with_the_spec_message(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    result = h.run("workflow parent { call workflow child }", depth=5)
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: Workflow nesting depth exceeds maximum of 5: parent 'parent' calling 'child'"
    )
    assert h.steps(result.workflow_run_id) == []


def test_an_unknown_sub_workflow_is_refused_before_anything_runs(h: Harness) -> None:
    wf = h.add_workflow("workflow parent { call workflow ghost }")
    run_id = h.new_run(wf)
    with pytest.raises(WorkflowError) as err:
        h.build().run_workflow(wf, h.run_input(run_id))
    assert str(err.value) == (
        "workflow error: workflow 'parent' failed validation:\n"
        "call workflow 'ghost': sub-workflow could not be loaded: workflow not found: ghost"
    )
    assert h.steps(run_id) == [] and h.sink.events == []


def test_a_missing_required_child_input_fails_the_step_clearly(h: Harness) -> None:
    h.add_workflow(CHILD)
    result = h.run("workflow parent { call workflow child }")
    assert h.steps(result.workflow_run_id)[0].step_error == (
        "Sub-workflow 'child' error: workflow error: "
        "Missing required input: 'version'. Use --input version=<value>."
    )
