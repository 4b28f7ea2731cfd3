"""`parallel` blocks (engine.md §9.5, dsl.md §6.7)."""

from __future__ import annotations

import threading

from runkon_flow.plugins.protocols import ActionOutput, OutputSchema
from runkon_flow.runtime.types import WorkflowExecConfig

from tests.engine.conftest import Harness, wait_for_cancel, wait_until


def test_branches_run_concurrently_each_with_its_own_row_and_events(h: Harness) -> None:
    barrier = threading.Barrier(3, timeout=5)

    def meet(label: str):
        def behave(info, params):
            barrier.wait()  # only returns if all three branches run at the same time
            return ActionOutput(markers=[f"{label}_ok"], context=label)

        return behave

    for label in ("a", "b", "c"):
        h.agents.do(label, meet(label))
    result = h.run("workflow w { call first parallel { call a call b call c } if b.b_ok { call after } }")
    assert result.all_succeeded and h.agents.names()[-1] == "after"
    rows = h.steps(result.workflow_run_id)
    assert sorted((r.step_name, r.position, r.role, r.status) for r in rows[1:4]) == [
        ("a", 1, "agent", "completed"),
        ("b", 2, "agent", "completed"),
        ("c", 3, "agent", "completed"),
    ]
    assert rows[4].position == 4
    branch_paths = sorted(e.node_path for e in h.events("StepStarted") if e.kind == "parallel_branch")
    assert branch_paths == ["body.1.calls.0", "body.1.calls.1", "body.1.calls.2"]
    block = [e for e in h.events("StepStarted", "StepCompleted") if e.kind == "parallel"]
    assert [e.type for e in block] == ["StepStarted", "StepCompleted"]
    assert sorted(block[1].markers) == ["a_ok", "b_ok", "c_ok"]


def test_every_branch_runs_at_once_so_branches_that_wait_on_each_other_finish(h: Harness) -> None:
    labels = [f"b{i}" for i in range(40)]
    barrier = threading.Barrier(len(labels), timeout=10)  # a cap below 40 would leave it waiting

    def meet(info, params):
        barrier.wait()
        return ActionOutput(context="met")

    for label in labels:
        h.agents.do(label, meet)
    calls = " ".join(f"call {label}" for label in labels)
    result = h.run(f"workflow w {{ parallel {{ {calls} }} }}")
    assert result.all_succeeded
    assert sorted(h.agents.names()) == sorted(labels)


def test_max_parallel_branches_is_an_opt_in_cap(h: Harness) -> None:
    lock = threading.Lock()
    pair = threading.Barrier(2, timeout=10)  # under a cap of 2 the branches meet two by two
    running = peak = 0

    def count(info, params):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        pair.wait()
        with lock:
            running -= 1
        return ActionOutput(context="ok")

    for label in "abcdef":
        h.agents.do(label, count)
    config = WorkflowExecConfig(poll_interval=0.05, max_parallel_branches=2)
    text = "workflow w { parallel { call a call b call c call d call e call f } }"
    result = h.run(text, exec_config=config)
    assert result.all_succeeded and len(h.agents.names()) == 6
    assert peak == 2


def test_a_call_if_not_met_is_recorded_skipped_and_counts_as_success(h: Harness) -> None:
    h.agents.on("scan", markers=["has_code"])
    result = h.run(
        "workflow w { call scan parallel { "
        'call lint { if = "scan.has_code" } call docs { if = "scan.has_docs" } } }'
    )
    assert result.all_succeeded and sorted(h.agents.names()) == ["lint", "scan"]
    docs = next(r for r in h.steps(result.workflow_run_id) if r.step_name == "docs")
    assert (docs.status, docs.result_text) == ("skipped", "skipped: scan.has_docs not emitted")
    skipped = next(e for e in h.events("StepCompleted") if e.step_name == "docs")
    assert (skipped.status, skipped.succeeded, skipped.kind) == ("skipped", True, "parallel_branch")


def test_per_call_retries_output_and_snippets(h: Harness) -> None:
    h.agents.fail("flaky", times=1)
    result = h.run(
        """workflow w { parallel {
             with = ["house"] output = "block-schema"
             call flaky { retries = 1 }
             call other { output = "own" with = ["extra"] }
           } }""",
        schema_resolver=lambda name: OutputSchema(name=name),
    )
    assert result.all_succeeded
    flaky_rows = [r for r in h.steps(result.workflow_run_id) if r.step_name == "flaky"]
    assert [(r.status, r.retry_count) for r in flaky_rows] == [("completed", 1)]
    assert [e.attempt for e in h.events("StepRetrying")] == [1]
    by_name = {c.name: c.params for c in h.agents.calls}
    assert by_name["flaky"].extensions.get(OutputSchema).name == "block-schema"
    assert by_name["other"].extensions.get(OutputSchema).name == "own"
    assert by_name["other"].snippets == ["house", "extra"]


def test_fail_fast_cancels_the_other_branches_and_fails_the_run(h: Harness) -> None:
    started = threading.Event()

    def slow(info, params):
        started.set()
        return wait_for_cancel(info, params)

    def fail_after_slow_started(info, params):
        started.wait(5)
        raise ValueError("broken")

    h.agents.do("slow", slow).do("bad", fail_after_slow_started)
    result = h.run("workflow w { parallel { call slow call bad } call after }")
    assert result.status == "failed" and "after" not in h.agents.names()
    statuses = dict(h.statuses(result.workflow_run_id))
    assert statuses == {"slow": "cancelled", "bad": "failed"}
    bad = next(r for r in h.steps(result.workflow_run_id) if r.step_name == "bad")
    assert bad.step_error == "executor 'bad' raised ValueError: broken"
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: parallel block: 0 of 2 calls succeeded (min_success 2)"
    )


def test_min_success_lets_a_block_pass_with_some_failures(h: Harness) -> None:
    h.agents.fail("c")
    result = h.run(
        "workflow w { parallel { fail_fast = false min_success = 2 call a call b call c } call after }"
    )
    assert result.all_succeeded and "after" in h.agents.names()


def test_falling_short_of_min_success_fails_the_run_with_a_clear_error(h: Harness) -> None:
    h.agents.fail("b").fail("c")
    result = h.run("workflow w { parallel { fail_fast = false min_success = 2 call a call b call c } }")
    assert h.store.get_run(result.workflow_run_id).error == (
        "workflow error: parallel block: 1 of 3 calls succeeded (min_success 2)"
    )


def test_cancelling_the_run_reaches_running_branches(h: Harness) -> None:
    h.agents.do("x", wait_for_cancel).do("y", wait_for_cancel)
    run = h.start("workflow w { parallel { call x call y } }")
    assert wait_until(lambda: len(h.agents.calls) == 2)
    h.engine.cancel_run(run.run_id)
    result = run.join(5)
    assert result.status == "cancelled"
    assert sorted(h.statuses(run.run_id)) == [("x", "cancelled"), ("y", "cancelled")]
    # the executors were also told (in the background) which executions to stop
    assert wait_until(lambda: sorted(h.agents.cancelled) == sorted(r.id for r in h.steps(run.run_id)))
