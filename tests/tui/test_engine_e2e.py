"""The dashboard driving the real engine end to end (runkon_flow.workspace.Workspace).

Runs happen on the app's engine thread worker exactly as in production. Tests never sleep for a
fixed time: they wait for conditions with a timeout. The fixture folder (tests/tui/fixtures/e2e)
is copied per test, so edits and runs never touch the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.events import CollectingSink
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import RunStatus
from runkon_flow.persistence.sqlite import SqliteStore
from textual.widgets import Input

from runkon_tui.app import RunkonApp
from runkon_tui.screens.confirm import ConfirmScreen
from runkon_tui.screens.gate import GateScreen
from runkon_tui.screens.inputs import InputsScreen
from runkon_tui.screens.main import MainScreen
from tests.tui.conftest import pane_lines, real_app, release, select, start_fanout_two_done, wait_for


async def run_quick(pilot, app: RunkonApp, who: str = "tester") -> None:  # type: ignore[no-untyped-def]
    """Run the `quick` fixture workflow from the dashboard (its form filled in) to its end."""
    await select(pilot, app, "quick")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
    app.screen.query_one("#input-0", Input).value = who
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: run_over(app), what="run end", timeout=30)


def run_over(app: RunkonApp) -> bool:
    """The run on screen has ended, here or in a background runner (then followed to its end)."""
    view = app.view
    return view.root is not None and not view.active and not app.run_active and app.attached_run_id is None


def in_process_or_runner(folder: Path, tmp_path: Path, where: str) -> RunkonApp:
    """The dashboard on the real engine: runs in its process (in memory), or on a database in
    background runners it follows (what `runkon-tui` does by default)."""
    if where == "dashboard":
        return real_app(folder)
    return real_app(folder, SqliteStore(tmp_path / "runs.db"), runs_in_runner=True)


def main(app: RunkonApp) -> MainScreen:
    screen = app.main_screen
    assert screen is not None
    return screen


@pytest.mark.parametrize("where", ["dashboard", "runner"])
async def test_run_a_workflow_to_completion(folder: Path, tmp_path: Path, where: str) -> None:
    app = in_process_or_runner(folder, tmp_path, where)
    async with app.run_test(size=(120, 40)) as pilot:
        await run_quick(pilot, app)
        view = app.view
        assert view.status == "completed", view.summary_text()
        root = view.root
        assert root is not None and root.inputs == {"who": "tester"}
        assert {p: s.status for p, s in root.steps.items()} == {
            "body.0": "completed",
            "body.1": "completed",
            "body.2": "completed",
        }
        fan = view.active_fanout()
        assert fan is not None and fan.count("completed") == 3 and len(fan.child_runs) == 3
        assert root.steps["body.0"].last_output(1) == ["hello tester"]
        tree = main(app).tree
        labels = {uid: node.label.plain for uid, node in tree.nodes_by_uid.items()}
        assert labels["body.1"].startswith("✓ foreach items") and "3/3" in labels["body.1"]
        assert app.exit_code() == 0
        assert app.summary().splitlines()[0].startswith(f"runkon: quick · run {root.run_id} · completed")


async def test_cancel_a_running_foreach_then_resume_only_the_remaining_items(
    folder: Path, tmp_path: Path
) -> None:
    collector = CollectingSink()
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store=store, collector=collector)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_fanout_two_done(pilot, app, folder)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.run_active, what="run to stop")

        view = app.view
        run_id = view.root_run_id
        assert run_id is not None
        assert view.status == "cancelled", view.summary_text()
        assert store.get_run(run_id).status is RunStatus.CANCELLED  # type: ignore[union-attr]
        items = app.view.active_fanout()
        assert items is not None
        done_before = {items.ids[i] for i in range(len(items.ids)) if items.status_of(i) == "completed"}
        assert done_before == {"a", "b"}
        assert items.count("running") == 0
        assert main(app).check_action("resume_run", ()) is True
        assert app.exit_code() == 1

        # Resume from the run history: the view is rebuilt from the store rows, then goes live.
        resumed_from = len(collector.events)
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history")
        assert app.screen.rows[0].run.id == run_id  # type: ignore[attr-defined]
        await pilot.press("r")
        await wait_for(pilot, lambda: app.run_active, what="resume to start")
        release(folder, *"cdefghij")
        assert isinstance(app.screen, MainScreen)
        await wait_for(pilot, lambda: not app.run_active, what="resumed run to end", timeout=30)
        assert app.view.status == "completed", app.view.summary_text()
        items = app.view.active_fanout()
        assert items is not None and items.count("completed") == 10
        started_again = [
            d.event.item_id for d in collector.events[resumed_from:] if d.event.type == "FanOutItemStarted"
        ]
        assert not done_before & set(started_again)
        assert sorted(started_again) == sorted(set("abcdefghij") - done_before)
        assert app.exit_code() == 0


async def test_approve_a_waiting_gate(folder: Path) -> None:
    store = InMemoryStore()
    app = real_app(folder, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "approval")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate to wait")
        assert app.view.status == "waiting"
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        app.screen.query_one("#choices").toggle("now")  # type: ignore[attr-defined]
        app.screen.query_one("#note", Input).value = "looks good"
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: not app.run_active, what="run end")
        assert app.view.status == "completed", app.view.summary_text()
        gate_row = next(
            s for s in store.get_steps(app.view.root_run_id or "") if s.step_name == "human_approval"
        )
        assert gate_row.gate_approved_by == "tester"
        assert gate_row.gate_feedback == "looks good"


def toasts_on_screen(app: RunkonApp) -> list[str]:
    """The titles (else first lines) of the toasts drawn on the screen on top."""
    from textual.widgets._toast import Toast

    shown = []
    for toast in app.screen.query(Toast):
        note = toast._notification
        shown.append(note.title or note.message.splitlines()[0])
    return shown


async def test_at_80x24_no_toast_covers_the_gate_dialog_and_toasts_wait_for_it_to_close(
    folder: Path,
) -> None:
    from textual.containers import Vertical
    from textual.widgets._toast import Toast

    app = real_app(folder)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        try:
            await select(pilot, app, "approval")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate to wait")
            await wait_for(pilot, lambda: "Gate" in toasts_on_screen(app), what="the Gate toast")
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
            app.notify("raised while the dialog is up", timeout=30)
            await pilot.pause()
            await pilot.pause()
            dialog = app.screen.query_one(Vertical).region
            for toast in app.screen.query(Toast):
                assert not toast.region.overlaps(dialog), (toast._notification.title, toast.region, dialog)
            assert toasts_on_screen(app) == []
            # Back: the toast raised meanwhile comes up now; the Gate toast does not come back (its
            # dialog said all it says, and the banner still shows the waiting gate).
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen")
            await wait_for(pilot, lambda: toasts_on_screen(app), what="the held toast")
            await pilot.pause()
            assert toasts_on_screen(app) == ["raised while the dialog is up"]
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
            app.screen.query_one("#choices").toggle("now")  # type: ignore[attr-defined]
            await pilot.press("ctrl+y")
            await wait_for(pilot, lambda: not app.run_active, what="run end")
            await pilot.pause()
            assert "Gate" not in toasts_on_screen(app)
        finally:
            for gate in app.view.waiting_gates():  # never leave the engine thread waiting
                app.session.decide_gate(gate, False, "test ended")


async def test_a_gate_answered_outside_its_dialog_takes_its_gate_toast_down_and_no_other(
    folder: Path,
) -> None:
    """Answered in the gate inbox (or by `runkon-flow approve`), the gate no longer waits: its
    "waits for approval · a approve" toast stayed up beside "1 gate approved"."""
    app = real_app(folder)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        try:
            await select(pilot, app, "approval")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate to wait")
            await wait_for(pilot, lambda: "Gate" in toasts_on_screen(app), what="the Gate toast")
            app.notify("another toast", timeout=30)
            [gate] = app.view.waiting_gates()
            app.host.gates.approve(gate.run_id, gate.gate_name, "someone else", None, ["now"])  # type: ignore[union-attr]
            await wait_for(pilot, lambda: not app.view.waiting_gates(), what="the answer", timeout=30)
            # The Gate toast had 10 s to go: it is taken down now, and only it (the others are put
            # back up: Textual takes down all or none).
            await wait_for(
                pilot,
                lambda: "Gate" not in toasts_on_screen(app) and "another toast" in toasts_on_screen(app),
                what="the Gate toast gone, the other one back",
                timeout=3,
            )
        finally:
            for gate in app.view.waiting_gates():  # never leave the engine thread waiting
                app.session.decide_gate(gate, False, "test ended")


async def test_editing_a_wf_file_changes_the_tree_and_the_next_run(folder: Path) -> None:
    app = real_app(folder, watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "quick-item")
        tree = main(app).tree
        labels = lambda: [n.data.label for n in tree.nodes_by_uid.values()]  # type: ignore[union-attr]  # noqa: E731
        assert labels() == ["finish"]
        (folder / "quick-item.wf").write_text(
            'workflow quick-item {\n  inputs { name default = "n" }\n'
            '  script greet { run = "echo hi {{name}}" }\n  call finish\n}\n'
        )
        await wait_for(pilot, lambda: labels() == ["script greet", "finish"], what="tree to follow the edit")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: run_over(app), what="run end", timeout=30)
        assert app.view.status == "completed"
        assert app.view.root.steps["body.0"].last_output(1) == ["hi n"]  # type: ignore[union-attr]


async def test_saving_a_broken_wf_shows_the_error_and_keeps_the_last_good_tree(folder: Path) -> None:
    app = real_app(folder, watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "quick-item")
        tree = main(app).tree
        (folder / "quick-item.wf").write_text('workflow quick-item {\n  call "../escape.md"\n}\n')
        entry = lambda: app.catalog.by_name("quick-item")  # noqa: E731
        await wait_for(pilot, lambda: entry() is not None and entry().broken, what="the error")  # type: ignore[union-attr]
        await pilot.pause()
        error = entry().error  # type: ignore[union-attr]
        assert error is not None and error.line == 2
        assert "parent-directory traversal" in error.message
        assert [n.data.label for n in tree.nodes_by_uid.values()] == ["finish"]  # type: ignore[union-attr]
        note = str(main(app).query_one("#tree-note").render())
        assert f"quick-item.wf:2:{error.column}" in note
        assert main(app).check_action("run_workflow", ()) is None
        listed = str(main(app).workflow_list.get_option(entry().path).prompt)  # type: ignore[union-attr]
        assert "quick-item.wf:2:" in listed


async def test_a_missing_agent_is_reported_before_anything_runs(folder: Path) -> None:
    (folder / "typo.wf").write_text("workflow typo {\n  call finsh\n}\n")
    store = InMemoryStore()
    app = real_app(folder, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "typo")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("finsh" in line.text for line in app.view.error_log), what="error")
        assert not app.run_active and app.view.root is None
        assert store.list_runs() == []
        assert any("typo.wf:2:" in line.text for line in app.view.error_log)
        assert app.is_running


async def test_the_list_flags_a_missing_agent_or_sub_workflow_without_enter(folder: Path) -> None:
    """The engine's checks run on a worker after each load: a workflow that cannot run is marked
    in the list like a file that does not parse, not shown fine until Enter is pressed."""
    (folder / "typo.wf").write_text("workflow typo {\n  call finsh\n}\n")
    app = real_app(folder, watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        listing = main(app).workflow_list
        entry = lambda name: app.catalog.by_name(name)  # noqa: E731
        listed = lambda name: str(listing.get_option(entry(name).path).prompt)  # type: ignore[union-attr]  # noqa: E731
        await wait_for(pilot, lambda: "typo.wf:2:" in listed("typo"), what="typo flagged")
        assert "finsh" in listed("typo") and listed("typo").startswith("[$error]")
        assert "[$text-muted]●" in listed("quick-item")  # fine stays fine
        assert app.run_active is False and app.view.root is None  # nothing ran to find it out

        (folder / "quick-item.wf").write_text("workflow quick-item {\n  call workflow nowhere\n}\n")
        await wait_for(pilot, lambda: "quick-item.wf:2:" in listed("quick-item"), what="edit flagged")
        assert "nowhere" in listed("quick-item")
        await select(pilot, app, "quick-item")
        assert "nowhere" in str(main(app).query_one("#tree-note").render())

        (folder / "quick-item.wf").write_text("workflow quick-item {\n  call finish\n}\n")
        await wait_for(pilot, lambda: "[$text-muted]●" in listed("quick-item"), what="the fix seen")


async def test_the_header_counts_the_workflows_the_list_marks_as_unable_to_run(folder: Path) -> None:
    """A workflow calling an agent that has no file is ✗ in the list like a file that does not
    parse, but the header counted only the latter: `… · 1 broken` beside two ✗ rows."""
    (folder / "typo.wf").write_text("workflow typo {\n  call finsh\n}\n")
    (folder / "bad.wf").write_text("workflow bad {\n")
    app = real_app(folder, watch=True)
    async with app.run_test(size=(160, 40)) as pilot:
        listing = main(app).workflow_list
        typo = app.catalog.by_name("typo")
        flagged = lambda: "typo.wf:2:" in str(listing.get_option(typo.path).prompt)  # noqa: E731
        await wait_for(pilot, flagged, what="typo flagged")
        await pilot.pause()
        header = str(main(app).header.render())
        assert " · 1 broken · 1 cannot run · " in header, header


async def test_a_crashing_script_fails_the_run_and_the_summary_shows_its_output(folder: Path) -> None:
    (folder / "crash.wf").write_text(
        'workflow crash {\n  script boom { run = "echo about to fail; echo oops >&2; exit 3" }\n}\n'
    )
    app = real_app(folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "crash")
        await pilot.press("enter")
        await wait_for(pilot, lambda: run_over(app), what="run end", timeout=30)
        assert app.view.status == "failed"
        summary = app.summary()
        assert "✗ script boom" in summary and "exited with code 3" in summary
        assert "      | about to fail" in summary
        assert app.exit_code() == 1
        assert isinstance(app.screen, MainScreen)


async def test_retry_every_failed_item_from_the_grid_keeps_the_completed_ones(
    folder: Path, tmp_path: Path
) -> None:
    collector = CollectingSink()
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store=store, collector=collector)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_fanout_two_done(pilot, app, folder)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.run_active, what="run to stop")
        run_id = app.view.root_run_id
        assert app.view.status == "cancelled"
        [fan_row] = [s for s in store.get_steps(run_id) if s.role == "foreach"]
        first = {i.item_id: i.child_run_id for i in store.get_fan_out_items(fan_row.id)}

        retried_from = len(collector.events)
        grid = main(app).grid
        grid.focus()
        await pilot.pause()
        await pilot.press("E")  # every failed or cancelled item
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="retry confirmation")
        assert "Retry 2 items of foreach" in app.screen.question  # type: ignore[attr-defined]
        assert "2 completed items are kept" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        await wait_for(pilot, lambda: app.run_active, what="retry to start")
        release(folder, *"cdefghij")
        await wait_for(pilot, lambda: not app.run_active, what="retried run to end", timeout=30)
        assert app.view.status == "completed", app.view.summary_text()
        assert store.get_run(run_id).status is RunStatus.COMPLETED  # type: ignore[union-attr]
        started_again = {
            d.event.item_id for d in collector.events[retried_from:] if d.event.type == "FanOutItemStarted"
        }
        assert started_again == set("cdefghij")  # a and b, completed, never ran again
        latest = max((s for s in store.get_steps(run_id) if s.role == "foreach"), key=lambda s: s.started_at)
        rows = {i.item_id: i for i in store.get_fan_out_items(latest.id)}
        for item in "cd":  # the cancelled attempts are kept, and the new rows point at them
            assert (rows[item].attempt, rows[item].previous_child_run_id) == (2, first[item])


async def test_a_failed_fan_out_in_a_called_workflow_offers_no_retry(folder: Path) -> None:
    """`runkon-flow retry` refuses a fan-out in a workflow the run calls; the dashboard offered
    `E Retry failed` (and the clusters' `e`) for it, then refused when pressed. One rule now
    (`observe.retrying`): not offered, and refused in the same words if asked anyway."""
    from runkon_flow.observe.retrying import CALLED_FANOUT

    from tests.tui.test_key_docs import _footer_keys

    (folder / "wrap.wf").write_text("workflow wrap {\n  call workflow badfan\n}\n")
    (folder / "badfan.wf").write_text(
        "workflow badfan {\n  foreach items {\n    over = static\n"
        '    scope = { items = "a,b" }\n    max_parallel = 2\n    workflow = boom\n  }\n}\n'
    )
    (folder / "boom.wf").write_text('workflow boom {\n  script fail { run = "exit 1" }\n}\n')
    app = real_app(folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await select(pilot, app, "wrap")
        await pilot.press("enter")
        await wait_for(pilot, lambda: run_over(app), what="run end", timeout=30)
        assert app.view.status == "failed"
        screen = main(app)
        await wait_for(pilot, lambda: screen.grid.fan is not None, what="the called fan-out on the grid")
        fan = screen.grid.fan
        assert fan is not None and fan.count("failed") == 2 and fan.run_id != app.view.root_run_id
        screen.grid.focus()
        await pilot.pause()
        await pilot.pause()
        assert not any("Retry" in key for key in _footer_keys(app, lit=False))
        assert screen.cluster_list.check_action("retry_cluster", ()) is False
        assert app.view.retry_refusal(fan) == CALLED_FANOUT


async def test_a_rejected_gate_reads_the_same_live_and_opened_from_history(
    folder: Path, tmp_path: Path
) -> None:
    """Who rejected, with what note: in the log, the errors, the tree and the gate's own output —
    the same in the run opened from the history as while it ran (issue 10 bug 5)."""
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store=store)
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await select(pilot, app, "approval")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate to wait")
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="reject dialog")
            app.screen.query_one("#note", Input).value = "not before friday"
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: not app.run_active, what="run end")
            run_id = app.view.root_run_id
            assert run_id is not None and app.view.status == "failed"
            screen = main(app)

            def seen() -> dict[str, object]:
                view = app.view
                gate_node = next(
                    n for n in screen.tree.nodes_by_uid.values() if n.data and n.data.kind == "gate"
                )
                screen.tree.select_uid(gate_node.data.uid)  # type: ignore[union-attr]
                return {
                    "log": [line.text for line in view.engine_log if "human_approval" in line.text],
                    "errors": [line.text for line in view.error_log if "human_approval" in line.text],
                    "tree": gate_node.label.plain,
                    "error": view.root.error if view.root else None,
                }

            def output() -> list[str]:
                """The gate's output pane (the highlighted node's), line by line."""
                source = screen.log_pane.sources["output"]
                return [source.get(i)[0] for i in range(len(source))]

            live = seen()
            await pilot.pause()
            live_output = output()
            assert any("rejected by tester: not before friday" in line for line in live["log"]), live  # type: ignore[union-attr]
            assert "rejected by tester" in str(live["tree"]) and "not before friday" in str(live["tree"])
            assert any("not before friday" in line for line in live_output), live_output

            app.open_past_run(run_id)  # as enter on the run in the history does
            await wait_for(
                pilot, lambda: app.view.read_only and app.view.root_run_id == run_id, what="past run"
            )
            await pilot.pause()
            past = seen()
            await pilot.pause()
            past_output = output()
            assert past["log"] == live["log"] and past["errors"] == live["errors"]
            assert past["tree"].split()[:8] == live["tree"].split()[:8]  # type: ignore[union-attr]
            assert past["error"] == live["error"]
            assert past_output == live_output
    finally:
        store.close()


async def test_with_no_step_highlighted_the_output_view_follows_the_run(folder: Path) -> None:
    """A run started from the list leaves its freshly built tree without a highlighted step: the
    output view shows the step the run started last (at its end: its last step) and names it,
    and a highlighted step's output replaces it (in another workflow's tree: that tree's step)."""
    app = real_app(folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await run_quick(pilot, app)
        await pilot.pause()
        screen = main(app)
        assert screen.tree.cursor_node is None

        def shown() -> list[str]:
            output = screen.log_pane.sources["output"]
            return [output.get(i)[0] for i in range(output.total)]

        assert screen.log_pane.output_title == "finish"
        assert any("Finish" in line for line in shown())
        screen.tree.cursor_line = 0  # the first step, `script hello`
        await pilot.pause()
        assert screen.log_pane.output_title == "script hello" and "hello tester" in shown()
        await select(pilot, app, "approval")  # another tree: its own highlighted step, not run
        await pilot.pause()
        assert screen.log_pane.output_title == "prepare-release"
        assert shown() == ["prepare-release: no output yet"]


async def test_a_flagged_row_fits_the_list_once_it_scrolls(folder: Path) -> None:
    """At 80×24 a list of 14 workflows gains a scrollbar after its rows are laid out: the flagged
    row was fitted to the width without it and then cut by it (`✗ missing-agent…:…`), losing the
    line and column it is there to give."""
    for i in range(8):
        (folder / f"w{i}.wf").write_text(f'workflow w{i} {{\n  script s {{ run = "echo {i}" }}\n}}\n')
    (folder / "missing-agent.wf").write_text("workflow missing-agent {\n  call nosuchagent\n}\n")
    app = real_app(folder)
    async with app.run_test(size=(80, 24)) as pilot:
        listing = main(app).workflow_list
        entry = app.catalog.by_name("missing-agent")
        assert entry is not None
        flagged = lambda: "nosuchagent" in str(listing.get_option(entry.path).prompt)  # noqa: E731
        await wait_for(pilot, flagged, what="the missing agent flagged")
        await pilot.pause()
        assert listing.show_vertical_scrollbar
        row = list(app.catalog.entries).index(entry.path)
        drawn = listing.render_line(row).text.rstrip()
        assert drawn.endswith(":2:3") and "…" in drawn  # the file name shortened, never the position


@pytest.mark.parametrize(
    ("where", "resumed_with", "steps"),
    [
        # One rule wherever it runs: a runner never saw the file parse, and the engine here does
        # not take the last good definition it holds either (before, it did).
        ("dashboard", "its own definition", ["one", "two"]),
        ("runner", "its own definition", ["one", "two"]),
    ],
)
async def test_the_tree_note_says_what_r_resumes_a_failed_run_with(
    folder: Path, tmp_path: Path, where: str, resumed_with: str, steps: list[str]
) -> None:
    """The note on a failed run whose file changed said 'the next run uses the file', yet `r`
    resumes with the file as it is now; with the file broken, with whatever the engine then
    takes — said nowhere. The note now says what `r` will run, and `r` is drawn on it."""
    flag = tmp_path / "ok"
    one = 'script one { run = "echo one" }'
    two = f'script two {{ run = "test -f {flag}" }}'
    three = 'script three { run = "echo three" }'
    (folder / "flaky.wf").write_text(f"workflow flaky {{\n  {one}\n  {two}\n}}\n")
    store = SqliteStore(tmp_path / "runs.db") if where == "runner" else None
    app = real_app(folder, store, runs_in_runner=where == "runner", watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "flaky")
        await pilot.press("enter")
        failed = lambda: run_over(app) and app.view.status == "failed"  # noqa: E731
        await wait_for(pilot, failed, what="failed run", timeout=30)
        note = lambda: str(main(app).query_one("#tree-note").render()).replace("\n", " ")  # noqa: E731
        (folder / "flaky.wf").write_text(f"workflow flaky {{\n  {one}\n  {two}\n  {three}\n}}\n")
        await wait_for(pilot, lambda: "r resumes it with the file as it is now" in note(), what="edit said")
        assert "the next run uses the file" not in note()
        run_id = app.view.root_run_id
        assert run_id is not None
        loaded = lambda: len(app.session.host.resume_plan(run_id).definition.body) == 3  # type: ignore[union-attr]  # noqa: E731
        await wait_for(pilot, loaded, what="the engine here to load the edit")
        (folder / "flaky.wf").write_text(f"workflow flaky {{\n  {one}\n  {two}\n  script four {{\n}}\n")
        said = f"r resumes it with {resumed_with} (the file does not parse now)"
        await wait_for(pilot, lambda: said in note(), what="the broken file said")
        flag.touch()
        await pilot.press("r")
        completed = lambda: app.view.status == "completed" and run_over(app)  # noqa: E731
        await wait_for(pilot, completed, what="resumed run", timeout=30)
        await pilot.pause()
        drawn = [node.label.plain.split()[2] for node in main(app).tree.nodes_by_uid.values() if node.data]
        assert drawn == steps


@pytest.mark.parametrize("kind", ["rerun", "retry"])
async def test_the_tree_note_says_a_rerun_or_an_interrupted_retry_resumes_with_its_own_definition(
    folder: Path, kind: str
) -> None:
    """The engine resumes a rerun, and a retry of the stored definition cut short, with the
    run's own definition whatever the file says now; the note said "the file as it is now". It
    now draws the engine's answer (`Workspace.resume_plan`)."""
    from runkon_flow.persistence.models import RetryRequest
    from runkon_flow.workspace import Workspace

    one, two = 'script one { run = "echo one" }', 'script two { run = "exit 3" }'
    (folder / "flaky.wf").write_text(f"workflow flaky {{\n  {one}\n  {two}\n}}\n")
    store = InMemoryStore()
    ws = Workspace([folder], store)
    run_id = ws.create_run("flaky", {})
    assert ws.execute(run_id).status is RunStatus.FAILED
    if kind == "rerun":
        run_id, _ = ws.prepare_rerun(run_id, "two", definition="stored")
        assert ws.resume(run_id).status is RunStatus.FAILED
    else:  # its engine died while it retried: `interrupted`
        store.set_retry_request(run_id, RetryRequest("2026-01-01T00:00:00Z", {"s": ("a",)}, "stored"))
        store.update_run_status(run_id, RunStatus.RUNNING, None, None)
    three = 'script three { run = "echo three" }'
    (folder / "flaky.wf").write_text(f"workflow flaky {{\n  {one}\n  {two}\n  {three}\n}}\n")
    app = real_app(folder, store)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_past_run(run_id)
        await wait_for(pilot, lambda: app.view.root_run_id == run_id and app.can_resume(), what="past run")
        widget = main(app).tree_note
        note = lambda: str(widget.render()).replace("\n", " ")  # noqa: E731
        why = "a rerun keeps the one it was made with" if kind == "rerun" else "it goes on with a retry"
        said = f"the tree shows this run's own definition; r resumes it with its own definition ({why}"
        await wait_for(pilot, lambda: said in note(), what="the run's own definition said")
        assert "the file as it is now" not in note()
        await pilot.pause()
        # The answer came after the note was first drawn: its wrapped lines all have room.
        width = widget.content_size.width
        assert widget.content_size.height == widget.get_content_height(widget.size, app.size, width) > 2


async def test_a_resume_to_completion_leaves_no_open_error_and_marks_the_replaced_attempt_s(
    folder: Path, tmp_path: Path
) -> None:
    """After `r` resumed a failed run to completion the errors tab still said `errors (2)`: the
    first attempt's lines. They stay in the log, dimmed under a line naming the attempt that
    replaced them; the count is the current attempt's open errors."""
    flag = tmp_path / "ok"
    two = f'script two {{ run = "test -f {flag}" }}'
    (folder / "flaky.wf").write_text(f'workflow flaky {{\n  script one {{ run = "echo one" }}\n  {two}\n}}\n')
    app = real_app(folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "flaky")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: run_over(app) and app.view.status == "failed", what="failed run", timeout=30
        )
        pane = main(app).log_pane
        bar = lambda: str(pane.query_one("#log-bar").render())  # noqa: E731
        first = len(app.view.error_log)
        assert first and f"errors ({first})" in bar()
        flag.touch()
        await pilot.press("r")
        completed = lambda: app.view.status == "completed" and run_over(app)  # noqa: E731
        await wait_for(pilot, completed, what="resumed run", timeout=30)
        await pilot.pause()
        assert "errors (" not in bar()  # nothing open now
        drawn = pane_lines(pane, "errors")
        assert len(drawn) == first + 1  # the first attempt's lines and the line that says so
        assert all(level == "debug" for _, level in drawn)  # drawn dimmed
        assert drawn[-1][0].endswith("▲ above: attempt 1's errors (attempt 2 replaced it)")
