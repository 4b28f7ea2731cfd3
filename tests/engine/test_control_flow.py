"""if/unless, while, do-while, do and always (engine.md §9.6, §9.7, §7.1)."""

from __future__ import annotations

from runkon_flow.plugins.protocols import ActionOutput
from runkon_flow.runtime import WorkflowExecConfig

from tests.engine.conftest import Harness


def counter_agent(h: Harness, label: str, marker: str, until: int) -> None:
    """`label` emits `marker` on its first `until` calls, then nothing."""
    state = {"n": 0}

    def behave(info, params):
        state["n"] += 1
        return ActionOutput(markers=[marker] if state["n"] <= until else [], context=f"{label} #{state['n']}")

    h.agents.do(label, behave)


def test_if_runs_its_body_only_when_the_marker_was_emitted(h: Harness) -> None:
    h.agents.on("scan", markers=["has_docs"])
    h.run("workflow w { call scan if scan.has_docs { call docs } if scan.other { call never } }")
    assert h.agents.names() == ["scan", "docs"]


def test_unless_runs_its_body_only_when_the_marker_is_absent(h: Harness) -> None:
    h.agents.on("push", markers=["no_changes"])
    h.run("workflow w { call push unless push.no_changes { call pr } unless push.x { call other } }")
    assert h.agents.names() == ["push", "other"]


def test_a_bare_condition_reads_a_boolean_input_case_insensitively(h: Harness) -> None:
    h.run(
        "workflow w { inputs { a boolean b boolean } if a { call x } if b { call y } }", inputs={"a": "TRUE"}
    )
    assert h.agents.names() == ["x"]


def test_while_loops_until_the_marker_disappears_with_iterations_recorded(h: Harness) -> None:
    counter_agent(h, "review", "needs_work", until=2)
    result = h.run(
        "workflow w { call review while review.needs_work { max_iterations = 5 call fix call review } }"
    )
    assert result.all_succeeded
    rows = [(r.step_name, r.iteration) for r in h.steps(result.workflow_run_id)]
    assert rows == [("review", 0), ("fix", 0), ("review", 0), ("fix", 1), ("review", 1)]
    loops = h.events("LoopIteration")
    assert [(e.iteration, e.node_path) for e in loops] == [(0, "body.1"), (1, "body.1")]
    paths = [e.node_path for e in h.events("StepStarted")]
    assert paths == ["body.0", "body.1.body.0", "body.1.body.1", "body.1.body.0", "body.1.body.1"]


def test_while_max_iterations_fails_the_run_by_default(h: Harness) -> None:
    h.agents.on("c", markers=["again"])
    result = h.run("workflow w { call c while c.again { max_iterations = 2 call c } }")
    assert result.status == "failed"
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: while c.again reached max_iterations (2)"
    )


def test_while_on_max_iter_continue_leaves_the_loop_and_carries_on(h: Harness) -> None:
    h.agents.on("c", markers=["again"])
    result = h.run(
        "workflow w { call c while c.again { max_iterations = 2 on_max_iter = continue call c } call after }"
    )
    assert result.all_succeeded and h.agents.names() == ["c", "c", "c", "after"]


def test_stuck_after_fails_when_markers_repeat(h: Harness) -> None:
    h.agents.on("c", markers=["again"])
    result = h.run("workflow w { call c while c.again { max_iterations = 9 stuck_after = 2 call c } }")
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: while c.again stuck after 2 iterations with identical markers"
    )
    assert h.agents.names().count("c") == 3


def test_do_while_runs_the_body_first_and_tests_the_marker_after(h: Harness) -> None:
    counter_agent(h, "push", "pushed", until=1)
    result = h.run("workflow w { do { max_iterations = 5 call push } while push.pushed }")
    assert result.all_succeeded
    assert [(r.step_name, r.iteration) for r in h.steps(result.workflow_run_id)] == [("push", 0), ("push", 1)]


def test_do_while_max_iterations_zero_never_runs_the_body(h: Harness) -> None:
    result = h.run("workflow w { do { max_iterations = 0 call x } while x.y }")
    assert h.agents.names() == []
    assert (
        h.store.get_run(result.workflow_run_id).error == "workflow error: do x.y reached max_iterations (0)"
    )


def test_the_loop_iteration_reaches_steps_inside_nested_if_blocks(h: Harness) -> None:
    counter_agent(h, "review", "needs_work", until=2)
    result = h.run(
        """workflow w {
             call review
             while review.needs_work { max_iterations = 5
               if review.needs_work { call fix }
               call review
             }
           }"""
    )
    fixes = [r.iteration for r in h.steps(result.workflow_run_id) if r.step_name == "fix"]
    assert fixes == [0, 1]


def test_a_failure_inside_a_loop_stops_it_under_fail_fast(h: Harness) -> None:
    h.agents.on("c", markers=["again"]).fail("bad")
    result = h.run("workflow w { call c while c.again { max_iterations = 5 call bad call c } }")
    assert h.agents.names() == ["c", "bad"] and result.status == "failed"


def test_top_level_always_runs_after_a_failure_and_sees_workflow_status(h: Harness) -> None:
    h.agents.fail("build")
    result = h.run("workflow w { call build call deploy always { call notify } }")
    assert h.agents.names() == ["build", "notify"]
    assert h.agents.inputs_of("notify")["workflow_status"] == "failed"
    assert result.status == "failed"
    assert [e.node_path for e in h.events("StepStarted")] == ["body.0", "always.0"]


def test_a_failing_always_block_does_not_change_the_final_status(h: Harness) -> None:
    h.agents.fail("notify")
    result = h.run("workflow w { call build always { call notify call after } }")
    assert result.all_succeeded and result.status == "completed"
    assert h.agents.inputs_of("notify")["workflow_status"] == "completed"
    assert "after" not in h.agents.names()  # a failing call with fail_fast stops the always block


def test_a_nested_always_just_runs_its_body_in_sequence(h: Harness) -> None:
    h.run("workflow w { call a always { call b call c } }")
    assert h.agents.names() == ["a", "b", "c"]


def test_fail_fast_stops_before_the_next_node(h: Harness) -> None:
    h.agents.fail("a")
    h.run("workflow w { call a { on_fail = continue } call b if b.x { call c } call d }")
    assert h.agents.names() == ["a", "b", "d"]


def test_without_fail_fast_every_top_level_node_runs(h: Harness) -> None:
    h.agents.fail("a").fail("b")
    h.run("workflow w { call a call b call c }", exec_config=WorkflowExecConfig(fail_fast=False))
    assert h.agents.names() == ["a", "b", "c"]
