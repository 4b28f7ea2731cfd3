"""`call` steps (engine.md §9.1, §9.2, §14 A and F; design.md §3, §5)."""

from __future__ import annotations

import threading

import pytest
from runkon_flow.plugins.protocols import (
    ActionFailed,
    ActionOutput,
    ActionParams,
    ClaudeActionParams,
    OutputSchema,
    StepInfo,
)
from runkon_flow.runtime import LlmRunMetrics, WorkflowExecConfig

from tests.engine.conftest import Harness, wait_for_cancel


def test_a_single_call_writes_a_completed_row_and_emits_the_upstream_event_sequence(h: Harness) -> None:
    h.agents.on("alpha", markers=["ready"], context="alpha ctx", structured='{"markers":["ready"],"x":"y"}')
    result = h.run("workflow w { call alpha }")
    assert result.all_succeeded and result.status == "completed"
    [row] = h.steps(result.workflow_run_id)
    assert (row.step_name, row.status, row.role, row.position, row.retry_count) == (
        "alpha",
        "completed",
        "agent",
        0,
        0,
    )
    assert (row.context_out, row.markers_out, row.result_text) == ("alpha ctx", '["ready"]', "alpha result")
    assert row.structured_output == '{"markers":["ready"],"x":"y"}'
    assert [e.type for e in h.events()] == [
        "RunStarted",
        "StepStarted",
        "StepCompleted",
        "MetricsUpdated",
        "RunCompleted",
    ]
    started, completed = h.events("StepStarted", "StepCompleted")
    assert (started.step_name, started.kind, started.step_id, started.node_path) == (
        "alpha",
        "call",
        row.id,
        "body.0",
    )
    assert completed.succeeded and completed.status == "completed" and completed.markers == ["ready"]
    run = h.store.get_run(result.workflow_run_id)
    assert run.status == "completed"
    assert run.result_summary == "Workflow 'w': 1/1 steps completed\n  [ok] alpha\nStatus: SUCCESS"
    assert result.final_structured_output == '{"markers":["ready"],"x":"y"}'


def test_example_a_retries_then_on_fail_agent_then_the_run_fails(h: Harness) -> None:
    h.agents.fail("build", "compile error")
    result = h.run("workflow w { call build { retries = 1 on_fail = notify } call deploy }")
    assert not result.all_succeeded and result.status == "failed"
    rows = h.steps(result.workflow_run_id)
    assert [(r.step_name, r.position, r.retry_count, r.status) for r in rows] == [
        ("build", 0, 0, "failed"),
        ("build", 0, 1, "failed"),
        ("notify", 1, 0, "completed"),
    ]
    assert rows[0].step_error == "workflow error: compile error"
    assert "deploy" not in h.agents.names()
    notify_inputs = h.agents.inputs_of("notify")
    assert notify_inputs["failed_step"] == "build"
    assert notify_inputs["failure_reason"] == "workflow error: compile error"
    assert notify_inputs["retry_count"] == "1"
    run = h.store.get_run(result.workflow_run_id)
    assert run.error == "workflow error: Step 'build' failed after 2 attempts: compile error"
    assert [(e.type, getattr(e, "step_name", None)) for e in h.events()] == [
        ("RunStarted", None),
        ("StepStarted", "build"),
        ("StepCompleted", "build"),
        ("StepRetrying", "build"),
        ("StepStarted", "build"),
        ("StepCompleted", "build"),
        ("StepStarted", "notify"),
        ("StepCompleted", "notify"),
        ("MetricsUpdated", None),
        ("RunCompleted", None),
    ]
    fails = [e for e in h.events("StepCompleted") if e.step_name == "build"]
    assert [(e.succeeded, e.status, e.attempt) for e in fails] == [(False, "failed", 0), (False, "failed", 1)]
    assert h.events("StepRetrying")[0].attempt == 1


def test_a_retry_sees_the_previous_error_and_how_many_attempts_remain(h: Harness) -> None:
    h.agents.fail("flaky", "try again", times=2)
    result = h.run("workflow w { call flaky { retries = 3 } }")
    assert result.all_succeeded
    params = [c.params for c in h.agents.calls]
    assert [(p.retries_remaining, p.retry_error) for p in params] == [
        (3, None),
        (2, "workflow error: try again"),
        (1, "workflow error: try again"),
    ]


def test_on_fail_continue_records_the_step_skipped_and_the_run_goes_on(h: Harness) -> None:
    h.agents.fail("lint")
    result = h.run("workflow w { call lint { on_fail = continue } call next }")
    assert result.all_succeeded
    assert h.agents.names() == ["lint", "next"]
    assert h.statuses(result.workflow_run_id) == [("lint", "failed"), ("next", "completed")]


def test_without_fail_fast_the_run_continues_and_fails_without_an_error_text(h: Harness) -> None:
    h.agents.fail("a")
    result = h.run("workflow w { call a call b }", exec_config=WorkflowExecConfig(fail_fast=False))
    assert not result.all_succeeded and h.agents.names() == ["a", "b"]
    run = h.store.get_run(result.workflow_run_id)
    assert (run.status, run.error) == ("failed", None)


def test_an_executor_raising_an_unexpected_exception_fails_the_step_naming_the_executor(h: Harness) -> None:
    def explode(info, params):
        raise KeyError("missing")

    h.agents.do("bad", explode)
    result = h.run("workflow w { call bad }")
    assert result.status == "failed"
    [row] = h.steps(result.workflow_run_id)
    assert row.step_error == "executor 'bad' raised KeyError: 'missing'"
    assert h.events("StepCompleted")[0].error == row.step_error


def test_an_executor_returning_the_wrong_type_is_a_step_failure(h: Harness) -> None:
    h.agents.do("odd", lambda info, params: "text")  # type: ignore[arg-type,return-value]
    result = h.run("workflow w { call odd }")
    assert h.steps(result.workflow_run_id)[0].step_error == (
        "workflow error: executor 'odd' returned str, expected ActionOutput"
    )


def test_call_parameters_identity_model_plugin_dirs_max_turns_and_snippets(h: Harness) -> None:
    h.run(
        """workflow w {
             do { with = ["outer"]
               do { output = "plan" with = ["inner"]
                 call a { as = "bot" plugin_dirs = ["p2", "p1"] max_turns = 7 with = ["own"] }
               }
             }
             call b
           }""",
        model="opus",
        extra_plugin_dirs=["p1"],
        default_as_identity="default-bot",
        schema_resolver=lambda name: OutputSchema(name=name),
    )
    a, b = (c.params for c in h.agents.calls)
    assert a.as_identity == "bot" and b.as_identity == "default-bot"
    assert a.model == "opus"
    assert a.plugin_dirs == ["p1", "p2"]
    assert a.snippets == ["inner", "outer", "own"]
    assert a.extensions.get(ClaudeActionParams) == ClaudeActionParams(max_turns=7)
    assert a.extensions.get(OutputSchema) == OutputSchema(name="plan")
    assert b.extensions.get(OutputSchema) is None and b.snippets == []


def test_a_schema_without_a_resolver_fails_the_run_with_a_clear_message(h: Harness) -> None:
    result = h.run('workflow w { call a { output = "plan" } }')
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: No schema resolver configured — cannot load schema 'plan'"
    )


def test_a_path_agent_is_dispatched_by_path_and_its_result_keyed_by_file_stem(h: Harness) -> None:
    h.agents.on(".claude/agents/plan.md", markers=["go"])
    result = h.run('workflow w { call ".claude/agents/plan.md" if plan.go { call next } }')
    assert result.all_succeeded and h.agents.names() == [".claude/agents/plan.md", "next"]


def test_metrics_are_summed_into_the_result(h: Harness) -> None:
    meta = {
        "cost_usd": "0.25",
        "num_turns": "3",
        "duration_ms": "100",
        "input_tokens": "10",
        "output_tokens": "x",
    }
    h.agents.on("a", metadata=meta).on("b", metadata=meta)
    result = h.run("workflow w { call a call b }", model="opus")
    metrics = result.extensions.get(LlmRunMetrics)
    assert metrics == LlmRunMetrics(total_input_tokens=20, total_turns=6, total_cost_usd=0.5, model="opus")
    assert result.total_duration_ms == 200
    assert h.events("MetricsUpdated")[0].total_turns == 6


def test_an_executor_failing_after_work_reports_what_it_spent_on_the_row_event_and_totals(
    h: Harness,
) -> None:
    """`ActionFailed` carries the attempt's usage: the failed row and StepCompleted keep it and the
    run's totals count it (a retry that then succeeds adds its own)."""
    spent = {"input_tokens": "300", "cost_usd": "0.03"}
    tries = {"n": 0}

    def flaky(info: StepInfo, params: ActionParams) -> ActionOutput:
        tries["n"] += 1
        if tries["n"] == 1:
            raise ActionFailed("ran out of turns", spent)
        return ActionOutput(context="ok", metadata=spent)

    h.agents.do("a", flaky)
    result = h.run("workflow w { call a { retries = 1 } }")
    assert result.all_succeeded
    rows = h.steps(result.workflow_run_id)
    assert [(r.status, r.usage) for r in rows] == [
        ("failed", '{"input_tokens":300,"cost_usd":0.03}'),
        ("completed", '{"input_tokens":300,"cost_usd":0.03}'),
    ]
    assert rows[0].step_error == "workflow error: ran out of turns"
    failed = h.events("StepCompleted")[0]
    assert (failed.status, failed.usage) == ("failed", {"input_tokens": 300, "cost_usd": 0.03})
    metrics = result.extensions.get(LlmRunMetrics)
    assert metrics is not None and (metrics.total_input_tokens, metrics.total_cost_usd) == (600, 0.06)


def test_no_metrics_means_no_llm_extension(h: Harness) -> None:
    assert h.run("workflow w { call a }").extensions.get(LlmRunMetrics) is None


def test_agent_output_lines_stream_as_step_output_events_bounded_per_step(h: Harness) -> None:
    def chatty(info, params):
        for i in range(5):
            info.emit_output(f"line {i}", "agent")
        return ActionOutput()

    h.agents.do("talk", chatty)
    h.run("workflow w { call talk }", exec_config=WorkflowExecConfig(max_output_lines=3))
    assert [e.line for e in h.events("StepOutput")] == ["line 0", "line 1", "line 2"]
    assert any("truncated after 3 lines" in e.message for e in h.events("EngineLog"))


def test_example_f_a_timeout_marks_the_step_timed_out_and_fails_the_run(h: Harness) -> None:
    h.agents.do("slow", wait_for_cancel)
    result = h.run(
        'workflow w { call slow { timeout = "50ms" } call never always { call cleanup } }',
    )
    assert result.status == "failed" and not result.all_succeeded
    rows = h.steps(result.workflow_run_id)
    assert (rows[0].step_name, rows[0].status) == ("slow", "timed_out")
    assert rows[0].result_text == "timed out after 50ms"
    assert rows[0].step_error == "step 'slow' timed out after 50ms"
    assert "never" not in h.agents.names() and "cleanup" in h.agents.names()
    assert h.store.get_run(result.workflow_run_id).error == "workflow error: step 'slow' timed out after 50ms"
    assert h.events("RunCompleted")[-1].succeeded is False and not h.events("RunCancelled")
    assert h.events("StepCompleted")[0].status == "timed_out"
    info = h.agents.calls[0].info
    assert info.cancellation is not None and info.cancellation.reason().kind == "Timeout"


def test_a_timeout_pre_empts_an_executor_that_ignores_its_token(h: Harness) -> None:
    release = threading.Event()
    h.agents.do("stuck", lambda info, params: (release.wait(5), ActionOutput())[1])
    try:
        result = h.run(
            'workflow w { call stuck { timeout = "30ms" } }',
            exec_config=WorkflowExecConfig(cancel_grace=0.05),
        )
        assert h.statuses(result.workflow_run_id) == [("stuck", "timed_out")]
        assert h.agents.cancelled  # the executor was also told to cancel its execution
    finally:
        release.set()


def test_an_invalid_timeout_fails_the_step_with_a_message_naming_it(h: Harness) -> None:
    result = h.run('workflow w { call a { timeout = "soon" } }')
    [row] = h.steps(result.workflow_run_id)
    assert row.status == "failed"
    assert row.step_error.startswith("call 'a': invalid timeout 'soon'")
    assert "a" not in h.agents.names()


def test_cancelled_executor_records_the_step_cancelled(h: Harness) -> None:
    from runkon_flow.cancellation import CancellationReason, EngineCancelled

    def stop(info, params):
        raise EngineCancelled(CancellationReason.user("stop"))

    h.agents.do("a", stop)
    result = h.run("workflow w { call a }")
    assert result.status == "cancelled"
    assert h.statuses(result.workflow_run_id) == [("a", "cancelled")]


@pytest.mark.parametrize("dry", [True, False])
def test_dry_run_is_passed_to_executors(h: Harness, dry: bool) -> None:
    h.run("workflow w { call a }", exec_config=WorkflowExecConfig(dry_run=dry))
    assert h.agents.calls[0].params.dry_run is dry
    assert h.agents.calls[0].inputs["dry_run"] == str(dry).lower()
