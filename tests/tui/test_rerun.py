"""Rerun from a step in the dashboard: `R` on a node of a finished run's tree asks for the inputs
(prefilled, editable), then runs a new run linked to the old one that reuses the steps before it."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from runkon_tui.screens.confirm import ConfirmScreen
from runkon_tui.screens.inputs import InputsScreen
from tests.tui.conftest import real_app, select, wait_for
from tests.tui.test_engine_e2e import in_process_or_runner, main, run_quick


@pytest.mark.parametrize("where", ["dashboard", "runner"])
async def test_rerun_from_a_tree_node_reuses_earlier_steps_with_edited_inputs(
    folder: Path, tmp_path: Path, where: str
) -> None:
    app = in_process_or_runner(folder, tmp_path, where)
    store = app.store
    async with app.run_test(size=(120, 40)) as pilot:
        await run_quick(pilot, app)
        old = app.view.root_run_id
        assert app.view.status == "completed"
        tree = main(app).tree
        tree.focus()
        tree.select_uid("body.2")  # call finish
        await pilot.pause()
        await wait_for(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.data.path == "body.2")  # type: ignore[union-attr]
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="the rerun form")
        heading = str(app.screen.query_one("#form-heading", Static).render())
        assert heading == "Rerun quick from finish (the steps before it are reused)"
        box = app.screen.query_one("#input-0", Input)
        assert box.value == "tester"  # the old run's inputs, editable
        box.value = "bob"
        await pilot.press("ctrl+s")
        await wait_for(
            pilot,
            lambda: (
                app.view.root_run_id not in (None, old)
                and not app.run_active
                and app.attached_run_id is None
                and app.view.status == "completed"
            ),
            timeout=30,
            what="the rerun to finish",
        )
        new = app.view.root_run_id
        run = store.get_run(new or "")
        assert run is not None and (run.rerun_of, run.rerun_from, run.inputs) == (
            old,
            "finish",
            {"who": "bob"},
        )
        steps = {s.step_name: s for s in store.get_steps(new or "")}
        assert (steps["hello"].context_out or "").strip() == "hello tester"  # reused, not run again with bob
        assert steps["foreach:items"].status == "completed"
        assert steps["finish"].status == "completed"
        labels = {n.data.path: n.label.plain for n in tree.nodes_by_uid.values() if n.data is not None}
        assert labels["body.0"].startswith("✓") and labels["body.2"].startswith("✓")
        # The steps before `finish` did not run here: marked reused (no duration), and counted as
        # `show` counts them — the header's ✓ is every step of the run, not only those that ran.
        assert "reused" in labels["body.0"] and "reused" in labels["body.1"]
        assert "reused" not in labels["body.2"]
        assert app.view.step_counts()["completed"] == 3
        # Its output is the old run's, and the output view of the step says where.
        tree.select_uid("body.0")
        await wait_for(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.data.path == "body.0")  # type: ignore[union-attr]
        pane = main(app).log_pane
        await wait_for(pilot, lambda: pane.output_title == "script hello", what="the output of hello")
        await pilot.pause()
        source = pane.sources["output"]
        shown = [source.get(i)[0] for i in range(len(source))]
        assert shown[0] == f"reused from run {old}: its output is that run's"
        assert shown[1] == f"h opens it; or: runkon-flow logs {old} hello"


async def test_a_running_run_cannot_be_rerun(folder: Path) -> None:
    app = real_app(folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "approval")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate to wait")
        tree = main(app).tree
        tree.focus()
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, InputsScreen)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.run_active, what="run to stop")
