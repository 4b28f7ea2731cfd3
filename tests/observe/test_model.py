"""The run model is the same picture whether it is folded from live events or loaded from rows:
same nodes, same statuses, same counts."""

from __future__ import annotations

from runkon_flow.observe.counts import row_step_counts
from runkon_flow.observe.loader import load_run
from runkon_flow.observe.reducer import RunModel
from runkon_flow.plugins.protocols import ActionOutput

from tests.engine.conftest import Harness

IF_NEVER = "workflow w { call setup if setup.never { call review } call review }"


def live(h: Harness) -> RunModel:
    return RunModel.from_events(h.sink.events)


def test_a_past_run_opens_on_the_nodes_it_ran(h: Harness) -> None:
    result = h.run(IF_NEVER)
    for model in (live(h), load_run(h.store, result.workflow_run_id)):
        assert model.step("body.2").status == "completed"
        assert model.step("body.2").name == "review"
        assert model.step("body.1.body.0") is None  # the review inside the `if` never ran
        assert model.step("body.0").status == "completed"


def test_the_dashboard_reopens_the_run_on_the_same_nodes(h: Harness) -> None:
    from runkon_tui.history import view_from_store
    from runkon_tui.tree_model import build_tree, node_status

    wf = h.add_workflow(IF_NEVER)
    result = h.run(wf)
    view = view_from_store(h.store, result.workflow_run_id, lambda name: wf)
    nodes = {s.path: s for top in build_tree(wf) for s in top.walk()}
    assert node_status(nodes["body.2"], view.root, True) == "completed"
    assert node_status(nodes["body.1.body.0"], view.root, True) != "completed"


def test_retries_and_loop_iterations_count_the_same_live_and_from_rows(h: Harness) -> None:
    state = {"n": 0}

    def fix(info, params):
        state["n"] += 1
        return ActionOutput(markers=["again"] if state["n"] < 3 else [], context="fixed")

    h.agents.do("fix", fix)
    h.agents.fail("flaky", times=2)
    result = h.run(
        "workflow w { call flaky { retries = 3 } call fix while fix.again { max_iterations = 5 call fix } }"
    )
    assert result.all_succeeded
    expected = {"completed": 4}  # flaky once (3 attempts), fix before the loop, fix in 2 iterations
    assert live(h).step_counts() == expected
    assert load_run(h.store, result.workflow_run_id).step_counts() == expected
    assert row_step_counts(h.steps(result.workflow_run_id)) == expected


def test_rows_written_before_node_paths_still_open(h: Harness) -> None:
    """Rows of schema v1 have no node path: the engine's loader keys them by name, the dashboard
    places them on its tree by name and position, and the counts are the same as ever."""
    from runkon_flow.persistence.models import NewRun, NewStep, StepUpdate

    from runkon_tui.history import view_from_store

    wf = h.add_workflow("workflow w { call setup call review }")
    run_id = h.store.create_run(NewRun(workflow_name="w")).id
    for position, name in enumerate(("setup", "review")):
        step = h.store.insert_step(NewStep(run_id, name, position=position, retry_count=0))
        h.store.update_step(step, StepUpdate.completed(0, result_text="ok"))
    model = load_run(h.store, run_id)
    assert {k: s.status for k, s in model.root.steps.items()} == {
        "name:setup": "completed",
        "name:review": "completed",
    }
    view = view_from_store(h.store, run_id, lambda name: wf)
    assert {k: s.status for k, s in view.root.steps.items()} == {"body.0": "completed", "body.1": "completed"}
    assert model.step_counts() == view.step_counts() == {"completed": 2}


def test_a_resume_that_skips_one_step_says_step_not_steps() -> None:
    from runkon_flow.events import EngineEventData, RunResumed

    model = RunModel()
    for count, expected in ((1, "(skipping 1 completed step)"), (3, "(skipping 3 completed steps)")):
        model.apply(
            EngineEventData(
                timestamp=0, ts=0.0, run_id="r", event=RunResumed(workflow_name="wf", skipped_steps=count)
            )
        )
        assert list(model.engine_log)[-1].text.endswith(expected)


def test_a_retried_item_read_back_from_rows_keeps_its_attempt_and_earlier_child_run() -> None:
    """A run without a stored event stream opens from rows: a retried item says it is on attempt
    2 and names the child run of its failed first attempt, as the live model does."""
    from runkon_flow.observe.loader import fanout_from_rows
    from runkon_flow.persistence.models import FanOutItemRow, FanOutItemStatus, WorkflowRunStep

    step = WorkflowRunStep(
        id="s2", workflow_run_id="r", step_name="foreach:each", role="foreach", node_path="body.0"
    )
    done = FanOutItemStatus.COMPLETED
    rows = [
        FanOutItemRow("1", "s2", "item", "a", child_run_id="c-a", status=done),
        FanOutItemRow(
            "2", "s2", "item", "b", child_run_id="c-b2", status=done, attempt=2, previous_child_run_id="c-b1"
        ),
    ]
    fan = fanout_from_rows("body.0", "r", step, rows)
    assert (fan.attempts, fan.earlier) == ({1: 2}, {1: "c-b1"})


def test_a_collected_list_fills_a_fan_out_as_item_by_item_would() -> None:
    from runkon_flow.events import FanOutItemInfo
    from runkon_flow.observe.records import FanOutView

    plain = [FanOutItemInfo(item_id=f"i{n}", item_ref=f"ref {n}") for n in range(5)]
    mixed = [*plain[:2], FanOutItemInfo(item_id="i9", status="completed", depends_on=["i0"]), plain[0]]
    for items in (plain, mixed, []):
        bulk, one_by_one = (FanOutView("k", "run", "each", "body.0", "fo") for _ in range(2))
        bulk.add_all(items)
        for item in items:
            one_by_one.add(item.item_id, item.item_ref, item.status, item.depends_on)
        assert (bulk.ids, bulk.refs, bulk.index, bytes(bulk.codes), bulk.counts, bulk.deps) == (
            one_by_one.ids,
            one_by_one.refs,
            one_by_one.index,
            bytes(one_by_one.codes),
            one_by_one.counts,
            one_by_one.deps,
        )
        assert bulk.take_dirty() == one_by_one.take_dirty()


def test_a_glimpse_of_a_step_hides_a_flow_output_block_written_on_one_line() -> None:
    """The README writes the block on one line (`<<<FLOW_OUTPUT>>> {…} <<<END_FLOW_OUTPUT>>>`), and
    the engine reads it so: the live view and the dashboard's item pane showed it raw, usage and
    all, as the step's last line."""
    from runkon_flow.observe.records import last_line_worth_showing

    block = '<<<FLOW_OUTPUT>>> {"markers": [], "usage": {"cost_usd": 0.01}} <<<END_FLOW_OUTPUT>>>'
    assert last_line_worth_showing(["working a", block]) == "working a"
    assert last_line_worth_showing(["done: " + block + " bye"]) == "done: bye"
    opened_mid_line = ["x", '<<<FLOW_OUTPUT>>> {"markers":', "[]}", "<<<END_FLOW_OUTPUT>>>"]
    assert last_line_worth_showing(opened_mid_line) == "x"
    assert last_line_worth_showing(["<<<FLOW_OUTPUT>>>", "{}", "<<<END_FLOW_OUTPUT>>>", "after"]) == "after"
    assert last_line_worth_showing(["  spaced   out  "]) == "spaced   out"


def test_items_still_running_when_their_fan_out_ended_read_interrupted_from_rows_and_live() -> None:
    """One rule (`FanOutView.stop_running`) for `show`, the dashboard's grid and its counts: an
    item whose row still says running under a foreach step that ended (an attempt a resume
    replaced, its engine killed mid-item), or in a run that lost its engine, is `interrupted` —
    the grid drew it running (▶) while `show` said interrupted."""
    from runkon_flow.events import (
        EngineEventData,
        FanOutItemInfo,
        FanOutItemsCollected,
        FanOutItemStarted,
        RunStarted,
    )
    from runkon_flow.observe.counts import ItemCounts
    from runkon_flow.observe.loader import fanout_from_rows
    from runkon_flow.persistence.models import FanOutItemRow, FanOutItemStatus, StepStatus, WorkflowRunStep

    from runkon_tui.widgets.progress import item_glyphs

    rows = [
        FanOutItemRow("1", "s", "item", "a", status=FanOutItemStatus.COMPLETED),
        FanOutItemRow("2", "s", "item", "b", status=FanOutItemStatus.RUNNING),
    ]

    def step(status: StepStatus) -> WorkflowRunStep:
        return WorkflowRunStep(
            id="s",
            workflow_run_id="r",
            step_name="foreach:each",
            role="foreach",
            node_path="body.0",
            status=status,
        )

    ended = fanout_from_rows("body.0", "r", step(StepStatus.CANCELLED), rows)
    lost = fanout_from_rows("body.0", "r", step(StepStatus.RUNNING), rows, run_interrupted=True)
    for fan in (ended, lost):
        assert fan.status_of(1) == "interrupted"
        counts = ItemCounts.of(fan)
        assert (counts.running, counts.interrupted, counts.finished) == (0, 1, 1)
        assert item_glyphs(fan)[1] == "2 items ✓1 ■1"  # the dashboard's counters, as the grid's cells
    assert fanout_from_rows("body.0", "r", step(StepStatus.RUNNING), rows).status_of(1) == "running"

    model = RunModel(clock=lambda: 10.0)
    for event in (
        RunStarted(workflow_name="w"),
        FanOutItemsCollected(count=1, step_id="s", node_path="body.0", items=[FanOutItemInfo(item_id="a")]),
        FanOutItemStarted(item_id="a", step_id="s"),
    ):
        model.apply(EngineEventData(timestamp=1, ts=1.0, run_id="r", event=event))
    [fan] = model.root.fanouts.values()
    assert fan.status_of(0) == "running"
    model.mark_interrupted("gone", at=5.0)
    assert (fan.status_of(0), fan.elapsed(0, now=10.0)) == ("interrupted", 4.0)
