"""Estimates (`observe.estimates`): bands from past runs, narrowed by the live item rate."""

from __future__ import annotations

import pytest
from runkon_flow.observe.estimates import Band, Estimates, history_of, quantile
from runkon_flow.observe.records import FanOutView, StepView
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepUpdate


def test_quantiles_are_nearest_rank() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0]
    assert (quantile(values, 0.5), quantile(values, 0.95)) == (5.0, 10.0)
    assert quantile([4.0], 0.95) == 4.0


def fan(total: int, done: int, started: float) -> FanOutView:
    f = FanOutView("body.1", "run", "each", "body.1", "step")
    for n in range(total):
        f.add(f"i{n}")
    for n in range(done):
        f.start(f"i{n}", started)
        f.finish(f"i{n}", "completed", started + 1)
    return f


def test_a_fan_out_band_starts_from_history_per_item_and_narrows_to_the_live_rate() -> None:
    est = Estimates("wf", runs=3, per_item={"body.1": [1.0, 1.0, 2.0]})  # seconds per item
    assert est.fanout_band("body.1", 100) == Band(100.0, 200.0)  # 100 items now
    # 10 % done after 20 s: live says 200 s; the band is still mostly history, and wide.
    early = est.fanout_total(fan(100, 10, 0.0), now=20.0)
    assert early == Band(0.9 * 100 + 0.1 * 200, 0.9 * 100 + 0.1 * 200 + 0.9 * 100)
    # 90 % done after 180 s: live says 200 s; the band is almost only that, and narrow.
    late = est.fanout_total(fan(100, 90, 0.0), now=180.0)
    assert late is not None and abs(late.p50 - 190.0) < 1e-9 and abs(late.p95 - 200.0) < 1e-9
    assert est.fanout_eta(fan(100, 90, 0.0), now=180.0) == Band(late.p50 - 180.0, late.p95 - 180.0)


def test_without_history_the_live_rate_gives_the_band() -> None:
    est = Estimates("wf")
    assert est.fanout_total(fan(10, 0, 0.0), now=5.0) is None  # nothing to go by yet
    assert est.fanout_total(fan(10, 5, 0.0), now=10.0) == Band(20.0, 30.0)


def test_a_running_step_past_its_p95_is_overdue() -> None:
    est = Estimates("wf", runs=2, steps={"body.0": [10.0, 20.0]})
    sv = StepView(key="body.0", name="build", node_path="body.0", status="running", started_at=100.0)
    assert est.running_note(sv, now=105.0) == "ETA 5.0s–15s"
    assert est.overdue(sv, now=119.0) is None
    assert est.overdue(sv, now=120.9) is None  # within the second of slack
    assert est.overdue(sv, now=121.5) == Band(10.0, 20.0)
    assert est.running_note(sv, now=121.5) == "⚠ over p95 (20s)"
    sv.status = "completed"
    assert est.running_note(sv, now=121.5) == ""


def test_a_quick_step_a_fraction_of_a_second_past_its_p95_is_not_news() -> None:
    est = Estimates("wf", runs=2, steps={"body.0": [0.01, 0.02]})
    sv = StepView(key="body.0", name="build", node_path="body.0", status="running", started_at=100.0)
    assert est.running_note(sv, now=100.5) == "ETA 0.0s"  # due: not yet "⚠ over p95 (0.0s)"
    assert est.running_note(sv, now=101.1) == "⚠ over p95 (0.0s)"


def finished_step(
    store: InMemoryStore,
    run_id: str,
    gen: int,
    name: str,
    path: str,
    secs: int,
    role: str = "agent",
    child_id: str | None = None,
    gate_type: str | None = None,
) -> None:
    """A completed step of `run_id` at `path` that took `secs` seconds."""
    sid = store.insert_step(
        NewStep(run_id, name, role=role, retry_count=0, node_path=path, gate_type=gate_type)
    )
    store.update_step(sid, StepUpdate.completed(gen, result_text="ok", child_run_id=child_id))
    row = store._steps[sid]  # the times a real step would have taken
    row.started_at, row.ended_at = "2026-12-03T10:00:00Z", f"2026-12-03T10:{secs // 60:02d}:{secs % 60:02d}Z"


def test_history_reads_completed_runs_of_the_same_workflow_only() -> None:
    store = InMemoryStore()

    def run(name: str, status: RunStatus, build_s: int) -> str:
        r = store.create_run(NewRun(workflow_name=name))
        gen = store.acquire_lease(r.id, "t", 60)
        finished_step(store, r.id, gen, "build", "body.0", build_s)
        store.finish_run(r.id, status, None, None, "t")
        return r.id

    run("wf", RunStatus.COMPLETED, 10)
    run("wf", RunStatus.COMPLETED, 30)
    run("wf", RunStatus.FAILED, 50)
    run("other", RunStatus.COMPLETED, 59)
    est = history_of(store, "wf")
    assert est.runs == 2
    assert est.step_band("body.0") == Band(10.0, 30.0)


def test_a_called_workflows_steps_are_kept_under_the_call_node_path() -> None:
    store = InMemoryStore()
    r = store.create_run(NewRun(workflow_name="outer"))
    gen = store.acquire_lease(r.id, "t", 60)
    child = store.create_run(NewRun(workflow_name="inner", parent_workflow_run_id=r.id))
    cgen = store.acquire_lease(child.id, "c", 60)
    finished_step(store, r.id, gen, "prep", "body.0", 1)
    finished_step(store, child.id, cgen, "build", "body.0", 40)
    finished_step(store, r.id, gen, "workflow:inner", "body.1", 41, role="workflow", child_id=child.id)
    store.finish_run(child.id, RunStatus.COMPLETED, None, None, "c")
    store.finish_run(r.id, RunStatus.COMPLETED, None, None, "t")
    est = history_of(store, "outer")
    assert est.step_band("body.0") == Band(1.0, 1.0)  # the caller's prep, not the callee's build
    assert est.step_band("body.1/body.0") == Band(40.0, 40.0)
    assert est.step_band("body.1") == Band(41.0, 41.0)


@pytest.mark.parametrize("gate_type", ["human_approval", "human_review", "pr_approval", "pr_checks"])
def test_a_gate_that_waits_for_an_answer_gets_no_estimate_while_work_keeps_one(gate_type: str) -> None:
    """How long someone took to answer is not how long the gate should take: no band, so no ETA
    and no `⚠ over p95` however long this answer takes; steps that work keep theirs."""
    store = InMemoryStore()
    for _ in range(2):
        r = store.create_run(NewRun(workflow_name="wf"))
        gen = store.acquire_lease(r.id, "t", 60)
        finished_step(store, r.id, gen, "build", "body.0", 10)
        sid = store.insert_step(
            NewStep(r.id, gate_type, role="gate", retry_count=0, node_path="body.1", gate_type=gate_type)
        )
        store.update_step(sid, StepUpdate.completed(gen, result_text="approved"))
        row = store._steps[sid]
        row.started_at, row.ended_at = "2026-12-03T10:00:00Z", "2026-12-03T10:00:02Z"
        finished_step(store, r.id, gen, "quality", "body.2", 3, role="gate")
        store.finish_run(r.id, RunStatus.COMPLETED, None, None, "t")
    est = history_of(store, "wf")
    gate = StepView(key="body.1", name=gate_type, node_path="body.1", status="waiting", started_at=100.0)
    assert est.step_band("body.1") is None
    assert est.running_note(gate, now=113.0) == ""  # 13 s: the report's `⚠ over p95 (13s)`
    assert est.overdue(gate, now=113.0) is None
    assert est.step_band("body.0") == Band(10.0, 10.0)
    assert est.step_band("body.2") == Band(3.0, 3.0)  # a quality_gate computes: it is timed


def test_a_call_steps_history_leaves_out_what_its_called_workflows_waited_for_people() -> None:
    """A person's 30 s answer inside the called workflow (and inside one it calls) is not the
    call step's work: its band is the 11 s it worked, not the 71 s it took."""
    store = InMemoryStore()
    r = store.create_run(NewRun(workflow_name="outer"))
    gen = store.acquire_lease(r.id, "t", 60)
    child = store.create_run(NewRun(workflow_name="inner", parent_workflow_run_id=r.id))
    cgen = store.acquire_lease(child.id, "c", 60)
    grandchild = store.create_run(NewRun(workflow_name="sign", parent_workflow_run_id=child.id))
    ggen = store.acquire_lease(grandchild.id, "g", 60)
    finished_step(store, child.id, cgen, "build", "body.0", 5)
    finished_step(store, child.id, cgen, "ok", "body.1", 30, role="gate", gate_type="human_approval")
    finished_step(store, grandchild.id, ggen, "sign", "body.0", 30, role="gate", gate_type="pr_approval")
    finished_step(
        store, child.id, cgen, "workflow:sign", "body.2", 31, role="workflow", child_id=grandchild.id
    )
    finished_step(store, r.id, gen, "workflow:inner", "body.0", 71, role="workflow", child_id=child.id)
    for run_id, token in ((grandchild.id, "g"), (child.id, "c"), (r.id, "t")):
        store.finish_run(run_id, RunStatus.COMPLETED, None, None, token)
    est = history_of(store, "outer")
    assert est.step_band("body.0") == Band(11.0, 11.0)
    assert est.step_band("body.0/body.2") == Band(1.0, 1.0)
    assert est.step_band("body.0/body.1") is None  # the gate itself: not timed at all
