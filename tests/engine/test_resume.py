"""Resume (engine.md §10, §14 D and E; design.md §5 foreach continuation and storage keys)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.errors import AlreadyOwned, WorkflowError
from runkon_flow.plugins.protocols import ActionOutput
from runkon_flow.runtime import ExecutionState, ResumeContext, WorkflowExecConfig

from tests.engine.conftest import Harness, ListProvider, wait_until
from tests.persistence.conftest import FakeClock, close_store, make_store


def resume(h: Harness, text_or_wf, run_id: str, **kwargs):
    wf = parse_workflow(text_or_wf) if isinstance(text_or_wf, str) else text_or_wf
    return h.engine.resume_workflow(wf, h.run_input(run_id, **kwargs))


def fail_once(h: Harness, label: str) -> None:
    h.agents.fail(label, "first run breaks", times=1)


def test_completed_steps_are_skipped_and_their_results_restored(h: Harness) -> None:
    text = "workflow w { call a call b if a.go { call c } }"
    h.agents.on("a", markers=["go"], context="from a")
    fail_once(h, "b")
    first = h.run(text)
    assert first.status == "failed"
    h.sink.events.clear()
    h.agents.calls.clear()
    result = resume(h, text, first.workflow_run_id)
    assert result.all_succeeded and h.agents.names() == ["b", "c"]
    assert h.agents.inputs_of("b")["prior_context"] == "from a"
    assert h.events()[0].type == "RunResumed"
    assert h.events("RunResumed")[0].skipped_steps == 1
    assert h.store.get_run(first.workflow_run_id).status == "completed"


def test_resume_with_nothing_completed_starts_like_a_fresh_run(h: Harness) -> None:
    fail_once(h, "a")
    first = h.run("workflow w { call a }")
    h.sink.events.clear()
    assert resume(h, "workflow w { call a }", first.workflow_run_id).all_succeeded
    assert h.events()[0].type == "RunStarted"


def test_a_step_written_twice_is_matched_by_occurrence(h: Harness) -> None:
    text = "workflow w { call verify call fix call verify }"
    fail_once(h, "fix")
    first = h.run(text)
    h.agents.calls.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["fix", "verify"]


def test_path_agents_are_found_under_the_name_they_were_stored_under(h: Harness) -> None:
    text = 'workflow w { call "agents/plan.md" call b if plan.ready { call c } }'
    h.agents.on("agents/plan.md", markers=["ready"])
    fail_once(h, "b")
    first = h.run(text)
    h.agents.calls.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["b", "c"]


def test_a_rerun_starts_with_run_started_and_a_resume_of_it_later_is_resumed(h: Harness) -> None:
    """A rerun is a new run (docs/when-things-go-wrong.md): its first start says so, with the run
    and step it reruns, though its copied rows are restored as a resume's are."""
    text = "workflow w { call a call b }"
    fail_once(h, "b")
    old = h.run(text).workflow_run_id
    new = h.new_run(parse_workflow(text))
    h.store.set_rerun_link(new, old, "b")
    h.store.copy_steps(old, new, [r.id for r in h.steps(old) if r.step_name == "a"])
    h.agents.calls.clear()
    assert resume(h, text, new).all_succeeded
    assert h.agents.names() == ["b"]
    [start] = [e for e in h.events_of_run(new) if e.type in ("RunStarted", "RunResumed")]
    assert (start.type, start.rerun_of, start.rerun_from) == ("RunStarted", old, "b")

    h.sink.events.clear()
    assert resume(h, text, old).all_succeeded  # an ordinary resume: unchanged
    assert next(e.type for e in h.events_of_run(old)) == "RunResumed"


def test_call_workflow_results_and_child_steps_are_restored(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.agents.on("work", markers=["done"])
    text = "workflow parent { call workflow child call b if child.done { call c } if work.done { call d } }"
    fail_once(h, "b")
    first = h.run(text)
    h.agents.calls.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["b", "c", "d"]


def test_an_unfinished_child_run_is_resumed_rather_than_restarted(h: Harness) -> None:
    h.add_workflow("workflow child { call one call two }")
    fail_once(h, "two")
    text = "workflow parent { call workflow child }"
    first = h.run(text)
    child_id = h.steps(first.workflow_run_id)[0].child_run_id
    h.agents.calls.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["two"]
    rows = h.steps(first.workflow_run_id)
    assert [(r.status, r.child_run_id) for r in rows] == [("failed", child_id), ("completed", child_id)]
    assert h.store.get_run(child_id).status == "completed"


def test_a_resumed_call_continues_its_own_child_not_a_foreach_items_of_the_same_workflow(h: Harness) -> None:
    # Before: the child to resume was the newest unfinished child run of that workflow under the
    # parent — here foreach item a's failed child, which the call then "resumed" as its own.
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["a", "b"]))
    first_attempt = [True]

    def work(info: Any, params: Any) -> ActionOutput:
        if first_attempt[0] and params.inputs.get("item.id", "call") in ("call", "a"):
            raise WorkflowError("first attempt breaks")
        return ActionOutput()

    h.agents.do("work", work)
    text = """workflow parent {
      call workflow child { on_fail = continue }
      foreach fan { over = tickets max_parallel = 1 workflow = child }
    }"""
    first = h.run(text)
    assert not first.all_succeeded
    call_child = h.steps(first.workflow_run_id)[0].child_run_id
    first_attempt[0] = False
    assert resume(h, text, first.workflow_run_id).all_succeeded
    calls = [r for r in h.steps(first.workflow_run_id) if r.step_name == "workflow:child"]
    assert [(r.status, r.child_run_id) for r in calls] == [("failed", call_child), ("completed", call_child)]
    assert h.store.get_run(call_child).status == "completed"


def test_a_called_child_a_resume_does_not_reach_again_ends_with_the_run(h: Harness) -> None:
    # Before: the take-over leaves a called child alone (it is resumed in place), but this
    # resume took the other branch: the child read `running`, owned by a dead engine, for good.
    from runkon_flow.persistence.models import NewRun, NewStep, StepStatus, StepUpdate

    text = "workflow parent { call decide if decide.go { call workflow child } }"
    wf = parse_workflow(text)
    run_id = h.new_run(wf)
    # What a crashed engine leaves behind: the call running, its child running under it.
    generation = h.store.acquire_lease(run_id, "dead", 60)
    child = h.store.create_leased_run(
        NewRun(workflow_name="child", parent_run_id=run_id, parent_workflow_run_id=run_id), "dead-child", 0
    )
    h.store.insert_step(NewStep(run_id, "decide", position=0, retry_count=0, node_path="body.0"))
    step = h.store.insert_step(
        NewStep(run_id, "workflow:child", "workflow", position=1, retry_count=0, node_path="body.1.then.0")
    )
    h.store.update_step(step, StepUpdate(generation, StepStatus.RUNNING, child_run_id=child.id))
    h.store.release_lease(run_id, "dead")
    h.add_workflow("workflow child { call work }")
    h.build()
    assert resume(h, wf, run_id).all_succeeded  # decide says no "go" this time
    assert "work" not in h.agents.names()
    ended = h.store.get_run(child.id)
    assert (ended.status, ended.owner_token) == ("cancelled", None)
    assert ended.error == "not resumed: the run it belongs to ended without reaching it again"


def test_example_d_while_resume_replays_finished_iterations_silently(h: Harness) -> None:
    text = "workflow w { call cond while cond.continue { max_iterations = 3 call a call b } }"
    h.agents.on("cond", markers=["continue"])
    calls = {"n": 0}

    def b_breaks_on_third(info, params):
        calls["n"] += 1
        if calls["n"] == 3:
            raise WorkflowError("b broke")
        return ActionOutput()

    h.agents.do("b", b_breaks_on_third)
    first = h.run(text)
    assert [(r.step_name, r.iteration, r.status) for r in h.steps(first.workflow_run_id)][-2:] == [
        ("a", 2, "completed"),
        ("b", 2, "failed"),
    ]
    h.agents.calls.clear()
    h.sink.events.clear()
    result = resume(h, text, first.workflow_run_id)
    assert h.agents.names() == ["b"]
    assert [e.iteration for e in h.events("LoopIteration")] == [2]
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: while cond.continue reached max_iterations (3)"
    )


def test_example_e_a_step_inside_if_reruns_in_the_unfinished_iteration(h: Harness) -> None:
    text = """workflow w {
      call review
      while review.needs_work { max_iterations = 5
        if review.needs_work { call fix }
        call review
      }
    }"""
    reviews = {"n": 0}

    def review(info, params):
        reviews["n"] += 1
        if reviews["n"] == 3:
            raise WorkflowError("reviewer crashed")
        return ActionOutput(markers=["needs_work"] if reviews["n"] < 5 else [])

    h.agents.do("review", review)
    first = h.run(text)
    assert first.status == "failed"
    h.agents.calls.clear()
    result = resume(h, text, first.workflow_run_id)
    assert result.all_succeeded
    # iteration 1's review failed: it runs again, then the loop goes on with fix + review.
    assert h.agents.names() == ["review", "fix", "review"]


def test_a_foreach_continues_from_its_items_completed_ones_never_run_again(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["a", "b", "c"]))
    broken = {"b"}

    def work(info, params):
        item = params.inputs["item.id"]
        if item in broken:
            raise WorkflowError("flaky")
        return ActionOutput(structured_output=json.dumps({"item": item}))

    h.agents.do("work", work)
    text = "workflow p { foreach fan { over = tickets max_parallel = 2 workflow = child } call after }"
    first = h.run(text)
    assert first.status == "failed"
    broken.clear()
    h.agents.calls.clear()
    result = resume(h, text, first.workflow_run_id)
    assert result.all_succeeded
    assert [c.inputs.get("item.id") for c in h.agents.calls] == ["b", None]
    rows = [r for r in h.steps(first.workflow_run_id) if r.step_name == "foreach:fan"]
    assert [r.status for r in rows] == ["failed", "completed"]
    aggregate = json.loads(rows[1].structured_output)
    assert aggregate == {
        "items": [
            {"item_id": "a", "status": "completed", "output": {"item": "a"}},
            {"item_id": "b", "status": "completed", "output": {"item": "b"}},
            {"item_id": "c", "status": "completed", "output": {"item": "c"}},
        ]
    }
    assert rows[1].context_out == "foreach fan: 3 completed, 0 failed, 0 skipped of 3 tickets"


def test_a_resumed_ordered_foreach_treats_completed_blockers_as_satisfied(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["a", "b", "c"], edges=[("a", "b"), ("b", "c")]))
    broken = {"b"}

    def work(info, params):
        if params.inputs["item.id"] in broken:
            raise WorkflowError("flaky")
        return ActionOutput()

    h.agents.do("work", work)
    text = (
        "workflow p { foreach fan { over = tickets max_parallel = 1 workflow = child ordered = true "
        "on_child_fail = skip_dependents } }"
    )
    first = h.run(text)
    broken.clear()
    h.agents.calls.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert [c.inputs["item.id"] for c in h.agents.calls] == ["b", "c"]


def test_resume_refuses_a_state_that_already_has_a_resume_context(h: Harness) -> None:
    h.build()
    wf = parse_workflow("workflow w { call a }")
    state = ExecutionState(persistence=h.store, workflow_run_id=h.new_run(wf))
    state.resume_ctx = ResumeContext([])
    with pytest.raises(WorkflowError, match="resume\\(\\) requires resume_ctx to be None on entry"):
        h.engine.resume(wf, state)


def test_resume_fails_when_another_engine_owns_the_run(h: Harness) -> None:
    h.build()
    wf = parse_workflow("workflow w { call a }")
    run_id = h.new_run(wf)
    h.store.acquire_lease(run_id, "someone-else", 60)
    with pytest.raises(AlreadyOwned):
        resume(h, wf, run_id)
    with pytest.raises(AlreadyOwned):
        h.engine.run_workflow(wf, h.run_input(run_id))


def test_resume_waits_for_a_dead_engines_lease_on_an_unfinished_child(tmp_path: Path) -> None:
    clock = FakeClock()
    store = make_store("memory", tmp_path, clock)
    try:
        h = Harness(store, tmp_path)
        h.add_workflow("workflow child { call one call two }")
        fail_once(h, "two")
        text = "workflow parent { call workflow child }"
        first = h.run(text)
        child_id = h.steps(first.workflow_run_id)[0].child_run_id
        assert store.acquire_lease(child_id, "crashed-engine", 30) is not None  # it died holding it
        h.agents.calls.clear()
        done: list = []
        config = WorkflowExecConfig(poll_interval=0.05, lease_ttl_secs=30)
        thread = threading.Thread(
            target=lambda: done.append(resume(h, text, first.workflow_run_id, exec_config=config))
        )
        thread.start()
        assert wait_until(lambda: h.engine.active_runs() == [first.workflow_run_id])
        clock.advance(31)  # the dead engine's lease expires
        thread.join(5)
        assert done and done[0].all_succeeded
        assert h.agents.names() == ["two"]
    finally:
        close_store(store)


def test_resume_closes_rows_a_dead_engine_left_unfinished(h: Harness) -> None:
    from runkon_flow.persistence.models import NewStep

    wf = parse_workflow("workflow w { call a gate human_approval { timeout = 0 on_timeout = continue } }")
    run_id = h.new_run(wf)
    # what a crashed engine leaves behind: a step still running and a gate still waiting
    h.store.acquire_lease(run_id, "dead", 0)
    ghost = h.store.insert_step(NewStep(run_id, "a", "agent", position=0, iteration=0, retry_count=0))
    h.store.release_lease(run_id, "dead")
    h.build()
    assert resume(h, wf, run_id).all_succeeded
    rows = {r.id: r for r in h.steps(run_id)}
    assert rows[ghost].status == "cancelled"
    assert [r.status for r in rows.values() if r.id != ghost] == ["completed", "timed_out"]
