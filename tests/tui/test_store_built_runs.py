"""A run written through the store API alone — a store filled by a test or a tool, or by an
older runkon: no definition snapshot on its row, and a stored event stream (if any) that never
says the run started — opens from the history: drawn from its rows, the engine log saying why,
and the tree pane saying that no definition is there to draw, not showing another workflow's."""

from __future__ import annotations

import json

from runkon_flow.event_log import line_of, pack_lines
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import (
    FanOutItemStatus,
    FanOutItemUpdate,
    NewRun,
    NewStep,
    RunStatus,
    StepUpdate,
)

from runkon_tui.history import past_run_view
from tests.tui.conftest import FIXTURE_DIR, fixed_store_clock, make_app, wait_for

ROOT = "01HZZSTOREBUILT00000000001"


def _store_built_run() -> InMemoryStore:
    """A failed fan-out of the workflow `bulk` (in no watched folder, with no stored definition):
    three items, the second failed, each child's output lines in the stream as `StepOutput`
    events — and nothing else in the stream."""
    store = InMemoryStore(clock=fixed_store_clock)
    store.create_run(NewRun(workflow_name="bulk", run_id=ROOT))
    fan = store.insert_step(NewStep(ROOT, "foreach:each", role="foreach", retry_count=0, position=0))
    rows = store.insert_fan_out_items(fan, [("item", f"i{n}", "", {}) for n in range(3)])
    lines = []
    for n, row in enumerate(rows):
        child = store.create_run(NewRun(workflow_name="one", parent_workflow_run_id=ROOT)).id
        step = store.insert_step(NewStep(child, "say", retry_count=0, position=0))
        failed = n == 1
        store.update_step(
            step, StepUpdate.failed(0, "boom") if failed else StepUpdate.completed(0, result_text="ok")
        )
        store.update_run_status(child, RunStatus.FAILED if failed else RunStatus.COMPLETED, None, None)
        status = FanOutItemStatus.FAILED if failed else FanOutItemStatus.COMPLETED
        store.batch_update_fan_out_items([(row, FanOutItemUpdate.terminal(status, child))])
        said = json.dumps({"step_id": step, "step_name": "say", "line": f"hello i{n}"})
        lines.append(line_of(1.0, child, "StepOutput", said))
    store.append_events(ROOT, pack_lines(lines))
    store.update_step(fan, StepUpdate.failed(0, "foreach 'each': 1 of 3 items failed"))
    store.update_run_status(ROOT, RunStatus.FAILED, None, "Step 'each' failed")
    return store


def test_a_run_whose_events_never_start_it_is_drawn_from_its_rows_and_says_so() -> None:
    view = past_run_view(_store_built_run(), ROOT)
    assert view.root_run_id == ROOT and view.read_only
    assert (view.workflow_name, view.status) == ("bulk", "failed")
    (fan,) = view.fanouts()
    assert (fan.total, fan.count("completed"), fan.count("failed")) == (3, 2, 1)
    assert [line.text for line in view.engine_log] == [
        f"run {ROOT}: its stored events do not include its start, so it is drawn from its rows"
    ]


async def test_it_opens_from_the_history_with_its_fan_out_and_a_tree_pane_that_says_why_it_is_empty() -> None:
    app = make_app(store=_store_built_run())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None and screen.tree_workflow != "bulk"
        await pilot.press("h")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", what="the run history")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.root_run_id == ROOT, what="the run opened")
        await pilot.pause()
        assert app.screen is screen and app.view.status == "failed"
        assert screen.tree_workflow == "bulk" and not screen.tree.nodes_by_uid  # not another workflow's tree
        note = str(screen.query_one("#tree-note").render()).replace("\n", " ")
        assert "no definition is stored with this run" in note
        assert screen.grid.fan is not None and screen.grid.fan.total == 3


async def test_with_no_definition_to_resume_it_with_r_is_dimmed_and_says_why() -> None:
    """`bulk` is in no watched folder and its row stores no definition: a resume has nothing to
    run (it failed with `workflow not found: bulk`). `r` is dimmed, in the history and on the
    run, and pressed anyway it says why; no resume starts."""
    from runkon_flow.workspace import Workspace

    store = _store_built_run()
    app = make_app(host=Workspace([FIXTURE_DIR], store), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen", what="the run history")
        await pilot.pause()
        history = app.screen
        assert history.check_action("resume_run", ()) is None  # dimmed
        assert "no definition is stored with this run" in (history.unavailable_reason("resume_run") or "")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.root_run_id == ROOT, what="the run opened")
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None and app.view.status == "failed"
        assert screen.check_action("resume_run", ()) is None  # dimmed, not offered
        await pilot.press("r")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert any(
            "bulk is in no watched folder and no definition is stored with this run: nothing to resume"
            in text
            and "put bulk's .wf file in a watched folder" in text
            for text in said
        ), said
        assert not app.run_active and not [n for n in said if "workflow not found" in n]
        assert store.get_run(ROOT).status is RunStatus.FAILED  # type: ignore[union-attr]
