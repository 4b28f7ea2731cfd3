"""`foreach` fan-out (engine.md §9.4, §14 B and C; design.md §5)."""

from __future__ import annotations

import json
import threading

import pytest
from runkon_flow.errors import WorkflowError
from runkon_flow.plugins.protocols import MAX_ITEM_ID_CHARS, ActionOutput, FanOutItem

from tests.engine.conftest import Harness, ListProvider, wait_for_cancel, wait_until

CHILD = "workflow child { call work }"


def fan(over: str = "tickets", extra: str = "") -> str:
    return f"""workflow parent {{
      foreach fan {{ over = {over} max_parallel = 2 workflow = child {extra} }}
      call after
    }}"""


def work_by_item(h: Harness, fail: set[str] = frozenset(), output: bool = True) -> None:  # type: ignore[assignment]
    def behave(info, params):
        item = params.inputs["item.id"]
        if item in fail:
            raise WorkflowError(f"item {item} broke")
        structured = json.dumps({"markers": [], "context": f"did {item}", "n": item}) if output else None
        return ActionOutput(context=f"did {item}", structured_output=structured)

    h.agents.do("work", behave)


def items_of(h: Harness, step_id: str) -> list[tuple[str, str]]:
    return [(i.item_id, str(i.status)) for i in h.store.get_fan_out_items(step_id)]


def test_all_children_succeed_and_the_aggregate_lists_their_outputs(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["b", "a", "c"]))
    work_by_item(h)
    result = h.run(fan())
    assert result.all_succeeded and h.agents.names()[-1] == "after"
    row = h.steps(result.workflow_run_id)[0]
    assert (row.step_name, row.role, row.status) == ("foreach:fan", "foreach", "completed")
    assert row.context_out == "foreach fan: 3 completed, 0 failed, 0 skipped of 3 tickets"
    aggregate = json.loads(row.structured_output)
    assert [i["item_id"] for i in aggregate["items"]] == ["a", "b", "c"]
    assert aggregate["items"][0] == {
        "item_id": "a",
        "status": "completed",
        "output": {"markers": [], "context": "did a", "n": "a"},
    }
    items = h.store.get_fan_out_items(row.id)
    assert [(i.item_id, i.status) for i in items] == [
        ("b", "completed"),
        ("a", "completed"),
        ("c", "completed"),
    ]
    children = {i.item_id: h.store.get_run(i.child_run_id) for i in items}
    assert all(
        c.parent_workflow_run_id == result.workflow_run_id and c.status == "completed"
        for c in children.values()
    )
    collected = h.events("FanOutItemsCollected")[0]
    assert (collected.count, collected.foreach_name, collected.step_id, collected.node_path) == (
        3,
        "fan",
        row.id,
        "body.0",
    )
    assert [i.item_id for i in collected.items] == ["b", "a", "c"]
    links = {e.item_id: e.child_run_id for e in h.events("ChildRunStarted")}
    assert links == {i.item_id: i.child_run_id for i in items}
    assert {e.parent_step_id for e in h.events("ChildRunStarted")} == {row.id}


def test_child_inputs_get_item_keys_and_placeholders_expanded_example_c(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", [FanOutItem("ticket", "t1", "T-1", {"title": "Fix bug"})]))
    h.run(
        fan(extra='inputs = { title = "{{item.title}}" ticket = "{{ticket_base}}-{{item.id}}" }'),
        inputs={"ticket_base": "PRJ"},
    )
    seen = h.agents.inputs_of("work")
    assert (seen["title"], seen["item.title"], seen["item.id"], seen["item.ref"]) == (
        "Fix bug",
        "Fix bug",
        "t1",
        "T-1",
    )
    assert seen["ticket"] == "PRJ-t1"
    assert seen["ticket_base"] == "PRJ"  # parent inputs reach the child run


def test_a_partial_failure_fails_the_step_and_keeps_going_by_default(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b", "c"]))
    work_by_item(h, fail={"b"})
    result = h.run(fan())
    row = h.steps(result.workflow_run_id)[0]
    assert (row.status, row.step_error) == ("failed", "foreach 'fan': 1 of 3 items failed")
    assert row.context_out == "foreach fan: 2 completed, 1 failed, 0 skipped of 3 tickets"
    assert [(i["item_id"], i["status"]) for i in json.loads(row.structured_output)["items"]] == [
        ("a", "completed"),
        ("b", "failed"),
        ("c", "completed"),
    ]
    assert (
        h.store.get_run(result.workflow_run_id).error
        == "workflow error: Step 'fan' failed after 1 attempt: foreach 'fan': 1 of 3 items failed"
    )
    failed = [e for e in h.events("FanOutItemCompleted") if not e.succeeded]
    assert [(e.item_id, e.status) for e in failed] == [("b", "failed")]
    assert "after" not in h.agents.names()


def test_a_child_without_structured_output_has_a_null_output(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a"]))
    work_by_item(h, output=False)
    result = h.run(fan())
    assert json.loads(h.steps(result.workflow_run_id)[0].structured_output) == {
        "items": [{"item_id": "a", "status": "completed", "output": None}]
    }


def test_example_b_ordered_skip_dependents(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b", "c"], edges=[("a", "b"), ("a", "c")]))
    work_by_item(h, fail={"a"})
    result = h.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child ordered = true "
        "on_child_fail = skip_dependents } }"
    )
    row = h.steps(result.workflow_run_id)[0]
    assert items_of(h, row.id) == [("a", "failed"), ("b", "skipped"), ("c", "skipped")]
    assert row.result_text == "foreach 'fan': 1 of 3 items failed"
    assert row.context_out == "foreach fan: 0 completed, 1 failed, 2 skipped of 3 tickets"
    assert json.loads(row.structured_output) == {
        "items": [
            {"item_id": "a", "status": "failed", "output": None},
            {"item_id": "b", "status": "skipped", "output": None},
            {"item_id": "c", "status": "skipped", "output": None},
        ]
    }
    fan_events = [
        (e.type, getattr(e, "item_id", None))
        for e in h.events_of_run(result.workflow_run_id)
        if e.type.startswith("FanOut")
    ]
    assert fan_events == [
        ("FanOutItemsCollected", None),
        ("FanOutItemStarted", "a"),
        ("FanOutItemCompleted", "a"),
        ("FanOutItemSkipped", "b"),
        ("FanOutItemSkipped", "c"),
    ]
    assert h.events("FanOutItemsCollected")[0].items[1].depends_on == ["a"]
    assert [c.inputs["item.id"] for c in h.agents.calls] == ["a"]


def test_halt_stops_dispatching_after_a_failure(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b", "c"]))
    work_by_item(h, fail={"a"})
    result = h.run(
        "workflow parent { foreach fan { "
        "over = tickets max_parallel = 1 workflow = child on_child_fail = halt } }"
    )
    row = h.steps(result.workflow_run_id)[0]
    assert items_of(h, row.id) == [("a", "failed"), ("b", "pending"), ("c", "pending")]
    assert row.status == "failed"


def test_an_ordered_chain_runs_in_dependency_order_even_with_free_slots(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["c", "b", "a"], edges=[("a", "b"), ("b", "c")]))
    work_by_item(h)
    h.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 3 workflow = child ordered = true } }"
    )
    assert [c.inputs["item.id"] for c in h.agents.calls] == ["a", "b", "c"]


def test_a_diamond_waits_for_both_blockers(h: Harness) -> None:
    h.add_workflow(CHILD)
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    h.providers.append(ListProvider("tickets", ["a", "b", "c", "d"], edges=edges))
    done: list[str] = []
    lock = threading.Lock()

    def behave(info, params):
        item = params.inputs["item.id"]
        if item == "d":
            with lock:
                assert {"b", "c"} <= set(done), done
        with lock:
            done.append(item)
        return ActionOutput()

    h.agents.do("work", behave)
    result = h.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 4 workflow = child ordered = true } }"
    )
    assert result.all_succeeded and done[0] == "a" and done[-1] == "d"


def test_ordered_is_ignored_when_the_provider_does_not_support_it(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["b", "a"], edges=[("a", "b")], ordered=False))
    work_by_item(h)
    h.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child ordered = true } }"
    )
    assert [c.inputs["item.id"] for c in h.agents.calls] == ["b", "a"]


def test_a_dependency_cycle_fails_the_step_unless_on_cycle_warn(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b"], edges=[("a", "b"), ("b", "a")]))
    result = h.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child ordered = true } }"
    )
    row = h.steps(result.workflow_run_id)[0]
    assert row.status == "failed" and row.step_error.startswith(
        "foreach 'fan': dependency cycle among items:"
    )
    h.agents.calls.clear()
    result = h.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child ordered = true "
        "on_cycle = warn } }"
    )
    assert result.all_succeeded and len(h.agents.calls) == 2
    assert any("cycle among items broken" in e.message for e in h.events("EngineLog"))


def test_max_parallel_bounds_the_number_of_children_running_at_once(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", [str(i) for i in range(8)]))
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def behave(info, params):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        threading.Event().wait(0.01)
        with lock:
            state["now"] -= 1
        return ActionOutput()

    h.agents.do("work", behave)
    assert h.run(fan()).all_succeeded
    assert state["peak"] == 2


def test_no_items_completes_with_an_empty_aggregate(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", []))
    result = h.run(fan())
    row = h.steps(result.workflow_run_id)[0]
    assert (row.status, row.result_text, row.structured_output) == (
        "completed",
        "foreach fan: no items to process",
        '{"items":[]}',
    )


def test_a_provider_error_fails_the_step_naming_it(h: Harness) -> None:
    class Broken(ListProvider):
        def items(self, *args, **kwargs):
            raise RuntimeError("api down")

    h.add_workflow(CHILD)
    h.providers.append(Broken("tickets", []))
    result = h.run(fan())
    assert h.steps(result.workflow_run_id)[0].step_error == (
        "foreach 'fan': item provider 'tickets' failed: RuntimeError: api down"
    )
    assert h.store.get_run(result.workflow_run_id).status == "failed"


def test_a_provider_workflow_error_is_reported_once_with_the_step_named(h: Harness) -> None:
    class Down(ListProvider):
        def items(self, *args, **kwargs):
            raise WorkflowError("provider is down")

    h.add_workflow(CHILD)
    h.providers.append(Down("tickets", []))
    result = h.run(fan())
    assert h.steps(result.workflow_run_id)[0].step_error == "foreach 'fan': provider is down"
    assert h.store.get_run(result.workflow_run_id).error == "workflow error: foreach 'fan': provider is down"


def test_a_provider_workflow_error_listing_dependencies_is_reported_once(h: Harness) -> None:
    class NoEdges(ListProvider):
        def dependencies(self, step_id):
            raise WorkflowError("graph is down")

    h.add_workflow(CHILD)
    h.providers.append(NoEdges("tickets", ["a", "b"], edges=[]))
    result = h.run(fan(extra="ordered = true"))
    assert h.steps(result.workflow_run_id)[0].step_error == (
        "foreach 'fan': item provider 'tickets' failed to list dependencies: graph is down"
    )


def test_cancel_while_children_run_cancels_them_and_records_everything_cancelled(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b", "c", "d"]))
    h.agents.do("work", wait_for_cancel)
    run = h.start(fan())
    assert wait_until(lambda: len(h.agents.calls) == 2)
    h.engine.cancel_run(run.run_id)
    result = run.join(5)
    assert result.status == "cancelled"
    row = h.steps(run.run_id)[0]
    assert row.status == "cancelled"
    assert sorted(items_of(h, row.id)) == [
        ("a", "cancelled"),
        ("b", "cancelled"),
        ("c", "pending"),
        ("d", "pending"),
    ]
    for item in h.store.get_fan_out_items(row.id)[:2]:
        child = h.store.get_run(item.child_run_id)
        assert child.status == "cancelled"
        assert h.statuses(child.id) == [("work", "cancelled")]
    assert h.events_of_run(run.run_id, "RunCancelled")[0].reason.kind == "UserRequested"
    assert "after" not in h.agents.names()


def test_an_unrunnable_child_workflow_fails_each_item_without_leaving_orphan_runs(h: Harness) -> None:
    h.add_workflow("workflow child { gate unknown_gate_type { timeout = 1 } }")
    h.providers.append(ListProvider("tickets", ["a", "b"]))
    result = h.run(fan())
    row = h.steps(result.workflow_run_id)[0]
    assert items_of(h, row.id) == [("a", "failed"), ("b", "failed")]
    completed = h.events("FanOutItemCompleted")
    assert completed[0].error == (
        "workflow error: workflow 'child' failed validation:\n"
        "gate 'unknown_gate_type': no registered GateResolver for type 'unknown_gate_type' (hint: the gate "
        "types are: human_approval, human_review, pr_approval, pr_checks, quality_gate)"
    )
    assert h.store.list_runs(parent_run_id=result.workflow_run_id) == []


def test_the_foreach_row_records_its_fan_out_counts(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b", "c", "d"]))
    work_by_item(h, fail={"b"})
    result = h.run(fan())
    row = h.steps(result.workflow_run_id)[0]
    assert (row.fan_out_total, row.fan_out_completed, row.fan_out_failed, row.fan_out_skipped) == (4, 3, 1, 0)


def test_an_empty_foreach_records_zero_counts(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", []))
    row = h.steps(h.run(fan()).workflow_run_id)[0]
    assert (row.fan_out_total, row.fan_out_completed, row.fan_out_failed, row.fan_out_skipped) == (0, 0, 0, 0)


class _StubbornChildren:
    """A child runner whose children ignore their cancel token until `release` is set, then
    report success — the case the foreach's cancel grace exists for."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0
        self.returned = 0

    def execute_child(self, workflow_name, parent_ctx, params):
        from runkon_flow.runtime.types import WorkflowResult

        self.started += 1
        self.release.wait(10)
        self.returned += 1
        return WorkflowResult(f"child-of-{params.item_id}", workflow_name, True, status="completed")

    def resume_child(self, *args, **kwargs):  # pragma: no cover - no resume in this test
        raise AssertionError("not resumed")


def test_children_that_ignore_a_cancel_are_recorded_cancelled_once_and_stay_so(h: Harness) -> None:
    from runkon_flow.runtime.types import WorkflowExecConfig

    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b", "c", "d"]))
    stubborn = _StubbornChildren()
    run = h.start(
        fan(),
        child_runner=stubborn,
        exec_config=WorkflowExecConfig(poll_interval=0.05, cancel_grace=0.1),
    )
    try:
        assert wait_until(lambda: stubborn.started == 2)
        h.engine.cancel_run(run.run_id)
        result = run.join(5)
    finally:
        stubborn.release.set()  # now they come back, claiming success
    assert result.status == "cancelled"
    assert wait_until(lambda: stubborn.returned == 2)
    row = h.steps(run.run_id)[0]
    assert row.status == "cancelled"
    assert row.context_out.startswith("foreach fan: 0 completed, 0 failed, 0 skipped, 2 cancelled of 4")
    # Their late success changes nothing: each in-flight item was finished once, as cancelled.
    assert sorted(items_of(h, row.id)) == [
        ("a", "cancelled"),
        ("b", "cancelled"),
        ("c", "pending"),
        ("d", "pending"),
    ]
    finished = [(e.item_id, e.status) for e in h.events("FanOutItemCompleted")]
    assert sorted(finished) == [("a", "cancelled"), ("b", "cancelled")]


def test_only_children_that_spent_something_send_metrics(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["free", "paid"]))

    def behave(info, params):
        if params.inputs["item.id"] == "paid":
            return ActionOutput(context="ok", metadata={"cost_usd": "0.25", "num_turns": "2"})
        return ActionOutput(context="ok")

    h.agents.do("work", behave)
    result = h.run(fan())
    fan_out = h.steps(result.workflow_run_id)[0]
    paid = {i.item_id: i.child_run_id for i in h.store.get_fan_out_items(fan_out.id)}
    by_run = {e.run_id: e.event for e in h.sink.events if e.event.type == "MetricsUpdated"}
    # The parent always reports (spec engine.md §4.2); of the children only the one with a cost does.
    assert set(by_run) == {result.workflow_run_id, paid["paid"]}
    assert (by_run[paid["paid"]].total_cost, by_run[paid["paid"]].total_turns) == (0.25, 2)
    assert by_run[result.workflow_run_id].total_cost == 0.25


def test_a_script_child_says_nothing_about_the_items_own_inputs(h: Harness) -> None:
    """Every script child of a fan-out logged `inputs not exported as CONDUCTOR_*: item.id,
    item.ref` — the engine's own inputs, once per item — and the dashboard then unfolded every
    child for its note. An input the user named so is still noted."""
    h.add_workflow('workflow child { script s { run = "true" } }')
    h.providers.append(ListProvider("tickets", [FanOutItem("ticket", "t1", "T-1", {"title": "x"})]))
    result = h.run(fan(extra='inputs = { odd-name = "{{item.id}}" }'))
    assert result.all_succeeded
    notes = [e.message for e in h.events("EngineLog") if "not exported" in e.message]
    assert len(notes) == 1 and notes[0].endswith(": odd-name"), notes


def test_a_fan_out_inside_a_fan_out_child_records_every_item_under_its_own_runs_fence(h: Harness) -> None:
    # Item writes are fenced by the owner token of the run that holds the foreach: an inner
    # foreach's run is a child written behind, whose row may still be queued when its first item
    # write is committed (in the same transaction, after it) — it must not be refused.
    h.add_workflow("workflow middle { foreach inner { over = parts max_parallel = 2 workflow = child } }")
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["a", "b", "c"]))
    h.providers.append(ListProvider("parts", ["x", "y"]))
    result = h.run("workflow parent { foreach fan { over = tickets max_parallel = 2 workflow = middle } }")
    assert result.all_succeeded
    fans = [
        s
        for r in h.store.list_runs(parent_run_id=None)
        for s in h.store.get_steps(r.id)
        if s.role == "foreach"
    ]
    assert len(fans) == 4  # the outer one, one inner one per ticket
    assert {status for s in fans for _, status in items_of(h, s.id)} == {"completed"}
    assert sum(len(items_of(h, s.id)) for s in fans) == 3 + 3 * 2


def test_an_item_id_over_the_cap_fails_the_step_naming_its_position_not_the_whole_id(h: Harness) -> None:
    long_id = "x" * (MAX_ITEM_ID_CHARS + 1)
    h.add_workflow(CHILD)
    items = [FanOutItem("ticket", "a", "REF-a"), FanOutItem("ticket", long_id, "REF-2")]
    h.providers.append(ListProvider("tickets", items))
    result = h.run(fan())
    row = h.steps(result.workflow_run_id)[0]
    assert row.status == "failed"
    assert row.step_error == (
        f"foreach 'fan': item 2 (ref 'REF-2') from item provider 'tickets': the id is 513 characters "
        f"long, more than the 512 an item id may have (it starts '{'x' * 40}'…)"
    )
    assert long_id not in h.store.get_run(result.workflow_run_id).error
    assert h.store.get_fan_out_items(row.id) == []  # nothing stored, no child started


def test_an_item_id_at_the_cap_runs(h: Harness) -> None:
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", ["y" * MAX_ITEM_ID_CHARS]))
    result = h.run(fan())
    assert h.steps(result.workflow_run_id)[0].status == "completed"


def test_a_store_lost_for_good_stops_new_items_says_so_once_and_the_rest_run_on_resume(hm: Harness) -> None:
    """A run database unreachable past its outage window: the items not yet started did not fail
    (one line says why none starts, not one line each); they stay pending, and a resume runs them."""
    from runkon_flow.errors import StoreUnavailable

    hm.add_workflow(CHILD)
    ids = [f"i{n}" for n in range(8)]
    hm.providers.append(ListProvider("tickets", ids))
    work_by_item(hm)
    store = hm.store
    real = store.batch_update_fan_out_items
    calls = iter(range(100))

    def flaky(updates, **kwargs):
        # The first wave's starts are written; the server is away for the two children's ends,
        # and back by the time the step records what it has.
        if next(calls) in (1, 2):
            raise StoreUnavailable("run database db unreachable for 3 s (RUNKON_PG_OUTAGE_S), gave up")
        return real(updates, **kwargs)

    store.batch_update_fan_out_items = flaky
    wf = hm.add_workflow(fan())
    run_id = hm.new_run(wf)
    with pytest.raises(StoreUnavailable, match="gave up"):  # stopped, not failed (test_store_lost.py)
        hm.run(wf, run_id=run_id)
    said = [e.message for e in hm.events("EngineLog") if "foreach 'fan'" in e.message]
    assert len(said) == 1, said
    assert "no further item starts" in said[0] and "6 items stay pending, to run on resume" in said[0]
    row = hm.steps(run_id)[0]
    assert row.status != "completed"  # 6 items never ran, though the store is back
    assert [s for _, s in items_of(hm, row.id)].count("pending") == 6

    store.batch_update_fan_out_items = real  # the server is back
    resumed = hm.engine.resume_workflow(wf, hm.run_input(run_id))
    assert resumed.all_succeeded
    last = hm.steps(run_id)[-2]
    assert sorted(items_of(hm, last.id)) == [(i, "completed") for i in ids]


def test_a_store_that_takes_no_writes_stops_a_fan_out_whose_writes_are_queued(hm: Harness) -> None:
    """A store whose item writes are queued behind the workers (SQLite's, on a full disk) fails
    none of the engine's calls: the fan-out asks it (`unavailable()`) before each item it starts,
    so it stops there (before, all 400 items of a run on a full disk ran, recorded nowhere)."""
    from runkon_flow.errors import StoreUnavailable

    hm.add_workflow(CHILD)
    ids = [f"i{n:02d}" for n in range(30)]
    hm.providers.append(ListProvider("tickets", ids))
    full: list[StoreUnavailable] = []
    hm.store.unavailable = lambda: full[0] if full else None
    ran: list[str] = []

    def behave(info, params):
        ran.append(params.inputs["item.id"])
        if len(ran) == 3:
            full.append(StoreUnavailable("run database runs.db: database or disk is full"))
        return ActionOutput(context="done")

    hm.agents.do("work", behave)
    wf = hm.add_workflow(fan())
    run_id = hm.new_run(wf)
    with pytest.raises(StoreUnavailable, match="database or disk is full"):
        hm.run(wf, run_id=run_id)
    said = [e.message for e in hm.events("EngineLog") if "foreach 'fan'" in e.message]
    assert len(said) == 1 and "no further item starts" in said[0], said
    assert len(ran) <= 4, ran  # the items in flight when it filled (2 slots), none after
    row = hm.steps(run_id)[0]
    assert [s for _, s in items_of(hm, row.id)].count("pending") == len(ids) - len(ran)

    full.clear()  # room made
    resumed = hm.engine.resume_workflow(wf, hm.run_input(run_id))
    assert resumed.all_succeeded
    last = [s for s in hm.steps(run_id) if s.step_name == "foreach:fan"][-1]
    assert sorted(items_of(hm, last.id)) == [(i, "completed") for i in ids]


def test_a_placeholder_with_no_value_in_a_fan_out_child_is_said_once_for_all_its_items(hm: Harness) -> None:
    """Each foreach item is a run of its own: a typo in the child warned once per item (10,000
    lines for 10,000 items). The run and its children share what was said."""
    hm.add_workflow('workflow child { script s { run = "echo {{item.nmae}}" } }')
    hm.providers.append(ListProvider("tickets", [f"t{n}" for n in range(12)]))
    hm.run(fan())
    said = [e.message for e in hm.events("EngineLog") if "has no value here" in e.message]
    assert len(said) == 1, said
    assert "`{{item.nmae}}`" in said[0]
