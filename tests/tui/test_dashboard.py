"""Pilot tests of the dashboard's behaviour against a scripted engine host.

The host (tests/tui/fakes.py) plays a scripted event list and then blocks until the test — or a
cancel or gate decision made through the UI — releases it, so every step is deterministic. The
real engine end-to-end tests are in test_engine_e2e.py.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from rich.cells import cell_len
from runkon_flow.cancellation import CancellationReason
from runkon_flow.events import (
    EngineEventData,
    EngineLog,
    FanOutItemInfo,
    FanOutItemsCollected,
    RunCancelled,
    RunCompleted,
    RunResumed,
    RunStarted,
    StepCompleted,
    StepOutput,
    StepStarted,
)
from runkon_flow.persistence.memory import InMemoryStore
from textual.pilot import Pilot
from textual.widgets import Input

from runkon_tui.app import RunkonApp
from runkon_tui.config import TuiConfig
from runkon_tui.screens.confirm import ConfirmScreen
from runkon_tui.screens.gate import GateScreen
from runkon_tui.screens.inputs import InputsScreen
from runkon_tui.screens.main import MainScreen
from runkon_tui.screens.quit import QuitScreen
from runkon_tui.widgets.fanout_grid import FanOutGrid
from tests.tui import scenarios
from tests.tui.conftest import FIXTURE_DIR, feed, make_app, select, wait_for
from tests.tui.fakes import ScriptedHost
from tests.tui.scenarios import T0


def main_screen(app: RunkonApp) -> MainScreen:
    screen = app.main_screen
    assert screen is not None
    return screen


async def start_review_run(pilot, app: RunkonApp) -> None:  # type: ignore[no-untyped-def]
    """Run `review-one` the way a user does: highlight it, enter, fill its input form, submit."""
    await select(pilot, app, "review-one")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen))
    app.screen.query_one("#input-0", Input).value = "x.py"
    await pilot.press("ctrl+s")


def gate_script(run_id: str) -> list[EngineEventData]:
    s = scenarios.gate_waiting()
    return [
        EngineEventData(
            timestamp=e.timestamp,
            ts=e.ts,
            run_id=run_id if e.run_id == scenarios.ROOT else e.run_id,
            event=e.event,
        )
        for e in s.events
    ]


async def test_inputs_form_validates_before_the_run_starts_and_cancel_needs_confirmation() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "review-pr")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
        await pilot.press("ctrl+s")  # the required `pr` is empty
        await pilot.pause()
        assert isinstance(app.screen, InputsScreen)
        assert "Missing required input: 'pr'" in str(app.screen.query_one("#form-error").render())
        assert not [c for c in host.calls if c[0] == "create_run"]

        app.screen.query_one("#input-0", Input).value = "42"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.view.root_run_id is not None, what="run created")
        assert (
            "create_run",
            "review-pr",
            {"pr": "42", "strict": "false"},
            app.view.root_run_id,
        ) in host.calls
        assert app.run_active and main_screen(app).check_action("cancel_run", ()) is True
        assert main_screen(app).check_action("run_workflow", ()) is None  # dimmed while a run is active

        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("n")  # keep running
        await pilot.pause()
        assert not [c for c in host.calls if c[0] == "cancel"]
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.run_active, what="run to end")
        assert [c[0] for c in host.calls if c[0] == "cancel"] == ["cancel"]
        assert app.view.status == "cancelled"
        assert app.exit_code() == 1
        assert "cancelled" in app.summary()


async def test_ctrl_c_never_cancels_a_run() -> None:
    app = make_app()
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.status == "waiting", what="gate")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.run_active
        app.host.finish()  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not app.run_active)


async def test_a_cancel_question_is_withdrawn_when_the_run_ends_first() -> None:
    """The run finished while "Cancel run …?" was open: nothing is left to cancel, so the question
    goes away (and no cancel is sent) instead of covering the screen and swallowing `q`."""
    app = make_app()
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.status == "waiting", what="gate")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        app.host.finish()  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not app.run_active, what="run to end")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="question withdrawn")
        assert isinstance(app.screen, MainScreen)
        assert not [c for c in app.host.calls if c[0] == "cancel"]  # type: ignore[union-attr]


async def test_approving_a_gate_with_a_note_and_an_option() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = gate_script
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")
        assert main_screen(app).query_one("#gate-banner").has_class("-waiting")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        await pilot.press("space")  # focus starts on the options: the first one, "merge"
        app.screen.query_one("#note", Input).value = "ship it"
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: not app.run_active, what="run to finish")
        run_id = app.view.root_run_id
        assert host.gates.decisions == [
            ("approve", run_id, f"step-{scenarios.ROOT}-body.4-0", "tester", "ship it", ("merge",))
        ]
        assert app.view.status == "completed" and app.view.waiting_gates() == []
        assert app.exit_code() == 0


async def test_a_gate_prompt_never_sends_its_escape_sequences_to_the_terminal() -> None:
    """A prompt quotes inputs and earlier steps' output: the banner, the toast and the gate dialog
    drew it raw, and a window-title sequence in it retitled the terminal (seen in tmux)."""
    hostile = "v1\x1b[31mRED\x1b]0;pwned\x07 ship?"

    def script(run_id: str) -> list[EngineEventData]:
        return [
            e.model_copy(update={"event": e.event.model_copy(update={"prompt": hostile})})
            if e.event.type == "GateWaiting"
            else e
            for e in gate_script(run_id)
        ]

    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = script
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")
        await pilot.pause()
        banner = str(main_screen(app).query_one("#gate-banner").render())
        toasts = [n.message for n in app._notifications if "waits for approval" in n.message]
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        dialog = str(app.screen.query_one("#prompt").render())
        for shown in (banner, *toasts, dialog):
            assert "v1RED" in shown and "\x1b" not in shown and "\x07" not in shown, repr(shown)
        assert toasts


async def test_rejecting_a_gate_fails_the_run() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = gate_script
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.waiting_gates())
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen))
        app.screen.query_one("#note", Input).value = "not yet"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not app.run_active)
        assert host.gates.decisions[0][0] == "reject"
        assert app.view.status == "failed"
        assert app.exit_code() == 1


async def test_validation_problems_are_shown_before_the_inputs_form_and_nothing_runs() -> None:
    """A missing agent was said only after the form was filled in and submitted."""
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.problems["nightly"] = ["call 'build': no registered ActionExecutor for 'build'"]
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "nightly")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: not app.run_active and any("no registered" in line.text for line in app.view.error_log),
        )
        await pilot.pause()
        assert not isinstance(app.screen, InputsScreen)  # nothing to fill in for a run that cannot start
        assert not [c for c in host.calls if c[0] in ("create_run", "execute")]
        assert app.view.root is None
        host.problems.clear()  # fixed: the form opens
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="the inputs form")


async def test_an_engine_crash_is_shown_and_the_dashboard_stays_up() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]

    def boom(run_id: str) -> list[EngineEventData]:
        raise RuntimeError("executor thread died")

    host.script = boom
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: not app.run_active, what="engine to fail")
        assert app.view.crash == "RuntimeError: executor thread died"
        assert any("executor thread died" in line.text for line in app.view.error_log)
        assert app.is_running and isinstance(app.screen, MainScreen)
        assert main_screen(app).check_action("resume_run", ()) is True


async def test_quitting_with_an_active_run_cancels_it_first() -> None:
    app = make_app()
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.status == "waiting")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        question = app.screen
        assert isinstance(question, QuitScreen)
        assert question.query_one("#keep").disabled  # runs kept in memory: nothing could take it over
        assert "kept in memory" in str(question.query_one("#question").render())
        await pilot.press("s")  # stay: nothing happens to the run
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        assert app.run_active and not [c for c in app.host.calls if c[0] == "cancel"]  # type: ignore[union-attr]
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert app.return_code == 1
    assert app.summary().startswith("runkon: review-pr")  # the gate script is review-pr's run


async def test_filter_log_lines_and_failed_only_items() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        screen = main_screen(app)
        screen.log_pane.view.focus()
        await pilot.press("slash")
        for ch in "skipped":
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause()
        log = screen.log_pane.view
        assert log.virtual_size.height == 3  # two skipped items and the skipped env key
        assert all("skipped" in log.source.get(seq - log._dropped)[0] for seq, _ in log._rows)
        await pilot.press("slash")
        await pilot.press("escape")
        await pilot.pause()
        assert log.text_filter == "" and log.virtual_size.height == len(app.view.engine_log)

        grid = screen.grid
        assert grid.visible_count == 120
        await pilot.press("f")
        await pilot.pause()
        assert grid.visible_count == 2
        assert [grid.fan.ids[grid.item_at(i)] for i in range(2)] == ["file-010", "file-027"]  # type: ignore[union-attr]


async def test_next_failure_jumps_to_the_failed_step_and_shows_its_output() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        feed(app, scenarios.failed_run().events)
        await pilot.press("n")
        await pilot.pause()
        screen = main_screen(app)
        node = screen.tree.cursor_node
        assert node is not None and node.data is not None and node.data.uid == "body.1.body.0/body.0"
        assert screen.log_pane.mode == "output"
        view = screen.log_pane.view
        shown = [view.source.get(i)[0] for i in range(len(view.source))]
        assert shown[-2:] == ["exit 1", "✗ failed: agent 'review-file' exited with code 1"]  # and why


async def test_a_selected_items_steps_end_on_what_they_said_not_on_a_flow_output_marker() -> None:
    s = scenarios.Script()
    sid = scenarios.review_pr_until_foreach(s)
    s.emit(
        FanOutItemsCollected(
            count=1,
            step_id=sid,
            foreach_name="review-items",
            node_path="body.3",
            max_parallel=4,
            items=[FanOutItemInfo(item_id="file-000")],
        )
    )
    s.item_started(sid, "file-000", "child-file-000", dt=0.1)
    said = ["file-000: clean", "", "<<<FLOW_OUTPUT>>>", '{"markers": []}', "<<<END_FLOW_OUTPUT>>>"]
    s.step_run("body.0", "review-file", run_id="child-file-000", secs=0.2, output=said)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        feed(app, s.events)
        screen = main_screen(app)
        screen.grid.focus()
        screen.grid.move_to_item(0)
        await pilot.pause()
        detail = str(screen.item_detail.render())
        assert "review-file  file-000: clean" in detail and "FLOW_OUTPUT" not in detail


async def test_a_selected_items_steps_say_what_each_spent() -> None:
    """The tree and `show` say a fan-out's sum; which item cost what was said nowhere (short of
    `show` of each child run): the item pane's step lines carry each step's usage."""
    s = scenarios.Script()
    sid = scenarios.review_pr_until_foreach(s)
    s.emit(
        FanOutItemsCollected(
            count=1,
            step_id=sid,
            foreach_name="review-items",
            node_path="body.3",
            max_parallel=4,
            items=[FanOutItemInfo(item_id="file-000")],
        )
    )
    s.item_started(sid, "file-000", "child-file-000", dt=0.1)
    step_id = s.start("body.0", "review-file", run_id="child-file-000")
    s.emit(StepOutput(step_id=step_id, step_name="review-file", line="file-000: clean"), "child-file-000")
    spent = {"input_tokens": 1000, "output_tokens": 250, "cost_usd": 0.0125}
    s.emit(
        StepCompleted(
            step_name="review-file",
            step_key="review-file",
            kind="call",
            step_id=step_id,
            node_path="body.0",
            succeeded=True,
            status="completed",
            duration_ms=200,
            usage=spent,
        ),
        "child-file-000",
    )
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        feed(app, s.events)
        screen = main_screen(app)
        screen.grid.focus()
        screen.grid.move_to_item(0)
        await pilot.pause()
        detail = str(screen.item_detail.render())
        assert "review-file · 1.2k tok · $0.0125  file-000: clean" in detail


async def test_at_80x24_a_selected_failed_item_shows_why_it_failed_within_the_pane() -> None:
    """The counters took two of the pane's three rows: only `selected: rec-05 ✗` was left, and
    the line under it said which step failed, not why."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        screen = main_screen(app)
        screen.grid.focus()
        screen.grid.move_to_item(27)
        await pilot.pause()
        detail = screen.item_detail
        lines = str(detail.render()).split("\n")
        head = next(line for line in lines if "file-027" in line)
        assert cell_len(head) <= detail.size.width, head  # one row: a wrapped one pushed the error out
        rows = lines[: detail.size.height]  # what the pane shows (each line one row)
        assert head in rows and any("review-file: timeout" in row for row in rows), rows


async def test_selecting_an_item_shows_its_child_run_and_what_an_ordered_item_waits_on() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        screen = main_screen(app)
        grid = screen.grid
        grid.focus()
        grid.move_to_item(27)
        await pilot.pause()
        lines = [screen.log_pane.view.source.get(i)[0] for i in range(len(screen.log_pane.view.source))]
        assert lines[0].startswith("run child-file-027 · review-one · failed")
        assert "agent gave up" in lines
        detail = str(screen.query_one("#item-detail").render())
        assert "selected: file-027" in detail
        assert "review-file: timeout" in detail  # why: the failed step's error, not the run's

        s = scenarios.Script(run_id="01HZZORDERED00000000000000")
        s.emit(RunStarted(workflow_name="review-pr"))
        s.emit(
            StepStarted(step_name="foreach:review-items", kind="foreach", step_id="fo", node_path="body.3")
        )
        s.emit(
            FanOutItemsCollected(
                count=2,
                step_id="fo",
                node_path="body.3",
                items=[FanOutItemInfo(item_id="base"), FanOutItemInfo(item_id="top", depends_on=["base"])],
            )
        )
        app.view.begin(s.run_id, "review-pr")
        feed(app, s.events)
        await pilot.pause()
        grid.move_to_item(1)
        await pilot.pause()
        assert "waits on: base (pending)" in str(screen.query_one("#item-detail").render())


async def test_ten_thousand_items_are_virtualised() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        s = scenarios.Script()
        s.emit(RunStarted(workflow_name="review-pr"))
        s.emit(
            StepStarted(step_name="foreach:review-items", kind="foreach", step_id="fo", node_path="body.3")
        )
        s.emit(
            FanOutItemsCollected(
                count=10_000,
                step_id="fo",
                node_path="body.3",
                items=[FanOutItemInfo(item_id=f"i{n}") for n in range(10_000)],
            )
        )
        feed(app, s.events)
        await pilot.pause()
        grid = main_screen(app).grid
        cols = grid.virtual_size.width
        assert grid.virtual_size.height == -(-10_000 // cols)
        rendered: list[int] = []
        original = grid.render_line

        def counting(y: int):  # type: ignore[no-untyped-def]
            rendered.append(y)
            return original(y)

        grid.render_line = counting  # type: ignore[method-assign]
        grid.focus()
        await pilot.press("end")
        await pilot.pause()
        assert grid.cursor_item == 9_999
        assert grid.scroll_offset.y == grid.max_scroll_y > 0
        # Only about a screenful of rows was drawn, never all of them.
        assert 0 < len(set(rendered)) <= grid.size.height + 1 < grid.virtual_size.height // 4


async def test_the_log_follows_only_while_at_the_bottom() -> None:
    app = make_app(size_hint=None) if False else make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        log = main_screen(app).log_pane.view
        assert log.following and log.scroll_offset.y == log.max_scroll_y > 0
        log.scroll_to(y=0, animate=False, immediate=True, force=True)
        await pilot.pause()
        assert not log.following
        app.view.note("one more line")
        app.drain()
        await pilot.pause()
        assert log.scroll_offset.y == 0  # not dragged to the tail while reading
        log.focus()
        await pilot.press("end")
        await pilot.pause()
        assert log.following and log.scroll_offset.y == log.max_scroll_y


async def test_keys_are_remappable_and_listed_in_help_and_palette(tmp_path: Path) -> None:
    config = TuiConfig(tmp_path / "tui.yaml", keymap={"cancel": "ctrl+x"})
    app = make_app(config=config)
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.key_for("cancel") == "ctrl+x"
        assert ("ctrl+x", "cancel", "Cancel", "cancel_run") in app.key_table()
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.status == "waiting")
        from runkon_tui.commands import DashboardCommands

        titles = [t for t, _, _ in DashboardCommands(app.screen, None)._commands()]  # type: ignore[arg-type]
        assert "Cancel  (ctrl+x)" in titles and "Approve  (a)" in titles
        assert not any(t.startswith("Run ") for t in titles)  # not applicable while a run is active
        await pilot.press("ctrl+x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.run_active)


async def test_a_note_names_the_key_the_keymap_gives_not_the_default(tmp_path: Path) -> None:
    """The check-warnings toast said `(l)` — and a run's other notes `h lists it`, `r resumes it` —
    whatever key the settings' keymap gave: with `log_mode` remapped, `l` does nothing, and the
    toast named it. It names the key that opens the engine log now."""
    config = TuiConfig(tmp_path / "tui.yaml", keymap={"log_mode": "ctrl+g"})
    app = make_app(config=config)
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.warnings["review-one"] = [
        "Script step 's1': 'tool-1' is missing",
        "Script step 's2': 'tool-2' is missing",
    ]
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        warned = lambda: [n.message for n in app._notifications if "engine log" in n.message]  # noqa: E731
        await wait_for(pilot, warned, what="the warnings toast")
        assert warned()[0].startswith("all 2 in the engine log (ctrl+g); the first:"), warned()
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="the run to end")


async def test_theme_choice_is_remembered_but_start_up_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "tui.yaml"
    app = make_app(config=TuiConfig(path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "runkon-dark"
        assert not path.exists()
        app.theme = "runkon-light"
        await pilot.pause()
    assert yaml.safe_load(path.read_text()) == {"theme": "runkon-light"}


async def test_picking_a_theme_keeps_the_rest_of_the_settings_file_as_written(tmp_path: Path) -> None:
    """Picking a theme used to rewrite the file from what parsed: a wrong `executor: dask` (reported
    at start, for the user to fix) and every comment vanished. Now only the theme line changes."""
    from runkon_tui.config import load_config

    path = tmp_path / "cfg" / "tui.yaml"
    path.parent.mkdir()
    path.write_text(
        "# my dashboard\ntheme: runkon-dark\nexecutor: dask   # was ray; cluster is down\n"
        "keymap:\n  cancel: ctrl+x  # muscle memory\nrun_in: dashboard\n"
    )
    app = make_app(config=load_config(path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.theme = "runkon-light"
        await pilot.pause()
    assert path.read_text() == (
        "# my dashboard\ntheme: runkon-light\nexecutor: dask   # was ray; cluster is down\n"
        "keymap:\n  cancel: ctrl+x  # muscle memory\nrun_in: dashboard\n"
    )


async def test_an_unknown_theme_in_the_settings_leaves_the_settings_file_alone(tmp_path: Path) -> None:
    """The dashboard falls back to its own theme and says why; it used to write that fallback
    into the settings file, and drop the file's other wrong setting with it, as if picked."""
    from runkon_tui.config import load_config

    path = tmp_path / "cfg" / "tui.yaml"
    path.parent.mkdir()
    written = "theme: no-such-theme\nexecutor: dask\n"
    path.write_text(written)
    app = make_app(config=load_config(path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("unknown theme 'no-such-theme'" in line.text for line in app.problems.lines)
        await pilot.pause()
    assert path.read_text() == written


async def test_a_keymap_naming_the_old_inbox_note_answer_id_is_warned_about(tmp_path: Path) -> None:
    """`inbox_note_answer` became `inbox_note_approve` / `inbox_note_reject`: a settings file that
    still remaps it lost that mapping without a word; it is warned about like any bad setting,
    naming the new ids, and does not hide another problem of the file."""
    from runkon_tui.config import load_config

    path = tmp_path / "cfg" / "tui.yaml"
    path.parent.mkdir()
    path.write_text("executor: dask\nkeymap:\n  inbox_note_answer: ctrl+s\n  cancel: ctrl+x\n")
    app = make_app(config=load_config(path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        errors = [line.text for line in app.problems.lines]
        renamed = [t for t in errors if "inbox_note_answer" in t]
        assert renamed and "inbox_note_approve" in renamed[0] and "inbox_note_reject" in renamed[0]
        assert "ctrl+s" in renamed[0] and str(path) in renamed[0]
        assert any("`executor` must be one of" in t for t in errors)
        assert any("inbox_note_answer" in n.message for n in app._notifications)
        assert app.key_for("cancel") == "ctrl+x"  # the rest of the keymap still applies


async def test_a_keymap_with_a_list_of_keys_or_an_unknown_id_is_not_silently_wrong(tmp_path: Path) -> None:
    """`quit: [ctrl+x]` (YAML's list) became the key `['ctrl+x']` (the footer showed `['ctrl+x'] Quit`
    and the key did nothing), and a misspelt id (`cancl`) did nothing without a word."""
    from runkon_tui.config import load_config

    path = tmp_path / "cfg" / "tui.yaml"
    path.parent.mkdir()
    path.write_text("keymap:\n  quit: [ctrl+x, f10]\n  cancl: ctrl+k\n  help:\n")
    config = load_config(path)
    assert config.keymap == {"quit": "ctrl+x,f10", "cancl": "ctrl+k"}
    app = make_app(config=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        errors = [line.text for line in app.problems.lines]
        assert any(
            "keymap id `cancl` is not a binding id" in t and "did you mean `cancel`?" in t for t in errors
        )
        assert any("keymap `help` names no key" in t for t in errors)
        assert not any("`quit`" in t for t in errors)
        assert app.key_for("quit") == "ctrl+x"


async def test_without_a_keymap_the_start_does_not_gather_every_binding_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checking keymap ids imports every screen and widget module (~30 ms, before the first frame
    could be drawn): it is done only when the settings have a keymap to check."""
    import runkon_tui.app as app_module

    def gathered() -> set[str]:
        raise AssertionError("binding ids gathered with no keymap to check")

    monkeypatch.setattr(app_module, "binding_ids", gathered)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not [line.text for line in app.problems.lines if "keymap" in line.text]


async def test_hot_reload_updates_the_tree_and_keeps_the_last_good_definition(tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    shutil.copytree(FIXTURE_DIR, folder)
    app = make_app(dirs=[folder], watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "review-one")
        tree = main_screen(app).tree
        assert [n.data.label for n in tree.nodes_by_uid.values()] == ["review-file"]  # type: ignore[union-attr]

        (folder / "review-one.wf").write_text(
            "workflow review-one {\n  inputs { file }\n  call lint\n  call fix\n}\n"
        )
        await wait_for(
            pilot,
            lambda: [n.data.label for n in tree.nodes_by_uid.values()] == ["lint", "fix"],
            what="tree to show the edit",
        )

        (folder / "review-one.wf").write_text("workflow review-one {\n  call \n")
        entry = lambda: app.catalog.by_name("review-one")  # noqa: E731
        await wait_for(pilot, lambda: entry() is not None and entry().broken, what="broken edit")  # type: ignore[union-attr]
        await pilot.pause()
        assert [n.data.label for n in tree.nodes_by_uid.values()] == ["lint", "fix"]  # type: ignore[union-attr]
        note = str(main_screen(app).query_one("#tree-note").render())
        assert "review-one.wf:" in note and "showing the last good definition" in note
        assert main_screen(app).check_action("run_workflow", ()) is None
        assert any("review-one.wf:" in line.text for line in app.problems.lines)


async def test_a_fixed_file_s_parse_error_leaves_the_errors_log(tmp_path: Path) -> None:
    """The errors bar counts open problems: an edit that breaks a file adds one, the edit that
    fixes it takes it away again (it used to stay until a run started)."""
    folder = tmp_path / "wf"
    shutil.copytree(FIXTURE_DIR, folder)
    good = (folder / "review-one.wf").read_text()
    app = make_app(dirs=[folder], watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        bar = lambda: str(main_screen(app).query_one("#log-bar").render())  # noqa: E731
        errors_at_start = len(app.problems)
        (folder / "review-one.wf").write_text("workflow review-one {\n  call \n")
        await wait_for(pilot, lambda: app.catalog.by_name("review-one").broken, what="broken edit")  # type: ignore[union-attr]
        await wait_for(pilot, lambda: f"errors ({errors_at_start + 1})" in bar(), what="error counted")
        (folder / "review-one.wf").write_text(good)
        await wait_for(pilot, lambda: not app.catalog.by_name("review-one").broken, what="fixed edit")  # type: ignore[union-attr]
        await pilot.pause()
        assert not any("review-one.wf" in line.text for line in app.problems.lines)
        assert len(app.problems) == errors_at_start
        assert f"errors ({errors_at_start + 1})" not in bar()


async def test_two_files_declaring_one_workflow_are_told_apart_and_the_warning_kept_current(
    tmp_path: Path,
) -> None:
    """Two files declaring one name were two identical rows, and the clash was said only at
    start-up: each row now leads with its file, the tree says which file a run uses, and a clash
    made by an edit is said when the reload finds it."""
    folder = tmp_path / "wf"
    shutil.copytree(FIXTURE_DIR, folder)
    (folder / "review-copy.wf").write_text((folder / "review-one.wf").read_text())
    app = make_app(dirs=[folder], watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        listing = main_screen(app).workflow_list
        rows = lambda: [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]  # noqa: E731
        twins = [row for row in rows() if "review-one" in row]
        assert len(twins) == 2 and len(set(twins)) == 2
        assert any("review-copy.wf · review-one" in row for row in twins)
        assert any("review-one.wf · review-one" in row for row in twins)
        await select(pilot, app, "review-one")
        note = str(main_screen(app).query_one("#tree-note").render())
        assert "also declared in" in note and "uses review-one.wf" in note

        (folder / "nightly-2.wf").write_text((folder / "nightly.wf").read_text())
        await wait_for(pilot, lambda: any("nightly-2.wf · nightly" in row for row in rows()), what="new twin")
        clash = "Workflow 'nightly' is declared in both"
        assert any(clash in line.text for line in app.view.engine_log)
        assert any(clash in n.message for n in app._notifications)

        (folder / "nightly-2.wf").unlink()
        await wait_for(pilot, lambda: not any("nightly-2.wf" in row for row in rows()), what="twin gone")
        assert any(row.endswith("\u00a0nightly") for row in rows())


async def test_a_run_start_leaves_a_still_broken_file_in_the_errors_log() -> None:
    """A file that does not parse is a problem of the workspace, not of a run: starting any run
    cleared its errors-log line and `errors (N)` stopped counting it, though it was still broken."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = main_screen(app)
        screen.log_pane.mode = "errors"
        await pilot.pause()
        drawn = lambda: [screen.log_pane.view.render_line(y).text for y in range(4)]  # noqa: E731
        bar = lambda: str(screen.query_one("#log-bar").render())  # noqa: E731
        assert "errors (1)" in bar() and "broken.wf:" in drawn()[0]
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.root is not None and app.view.events_applied > 0, what="run")
        await pilot.pause()
        assert "errors (1)" in bar()
        assert "broken.wf:" in drawn()[0]
        app.view.note("boom", "error")  # the run's own error comes under it, and is counted too
        app.drain()
        await pilot.pause()
        assert "errors (2)" in bar()
        assert "broken.wf:" in drawn()[0] and "boom" in drawn()[1]


async def test_the_file_a_run_does_not_use_says_why_it_cannot_run(tmp_path: Path) -> None:
    """Of two files declaring one name, the one a run does not use had a dimmed Enter that said
    nothing when pressed, and a refusal calling it a file that does not parse: both now name the
    file a run of that name uses."""
    folder = tmp_path / "wf"
    shutil.copytree(FIXTURE_DIR, folder)
    (folder / "review-copy.wf").write_text((folder / "review-one.wf").read_text())
    app = make_app(dirs=[folder])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = main_screen(app)
        unused = app.catalog.entries[str(folder / "review-copy.wf")]
        assert app.catalog.used["review-one"] == str(folder / "review-one.wf")
        screen.workflow_list.highlighted = list(app.catalog.entries).index(unused.path)
        await pilot.pause()
        assert screen.check_action("run_workflow", ()) is None  # dimmed
        app.clear_notifications()
        await pilot.press("enter")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert said == ["review-copy.wf cannot run: a run of review-one uses review-one.wf"]
        app.clear_notifications()
        app.request_run(unused)  # the palette, or any other way to ask
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert said == ["review-copy.wf cannot run: a run of review-one uses review-one.wf"]
        assert app.view.root is None


async def test_the_fan_out_pane_says_a_foreach_still_to_come_has_not_started() -> None:
    """Before review-pr's foreach started, its Fan-out pane said 'no fan-out in this run', as if
    the run had none: it has one still to come. A run that ended before reaching it has none."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        script = scenarios.Script()
        script.emit(RunStarted(workflow_name="review-pr", inputs={"pr": "42"}))
        script.step_run("body.0", "resolve-base", "script", secs=0.4)
        feed(app, script.events)
        await pilot.pause()
        screen = main_screen(app)
        detail = lambda: str(screen.query_one("#item-detail").render())  # noqa: E731
        assert screen.grid_pane.display and "the fan-out has not started yet" in detail()
        feed(app, [script.emit(RunCompleted(succeeded=False, error="stopped"))])
        await pilot.pause()
        assert "no fan-out in this run" in detail()


async def test_an_inputs_form_error_leaves_once_its_field_is_edited() -> None:
    """The form's error stayed until the next Run, still saying 'pr' was missing while the user
    typed it: an edit of the field it names takes it away."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "review-pr")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
        form = app.screen
        await pilot.press("ctrl+s")  # the required `pr` is empty
        await pilot.pause()
        error = form.query_one("#form-error")
        assert error.has_class("-shown") and "Missing required input: 'pr'" in str(error.render())
        await pilot.press("4")  # the focus went to `pr`
        await pilot.pause()
        assert form.query_one("#input-0", Input).value == "4"
        assert not error.has_class("-shown")


async def test_a_past_run_opens_read_only_from_the_runs_screen() -> None:
    from tests.tui.history import history_store

    app = make_app(store=history_store())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        await pilot.press("down")  # the failed nightly run
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.root_run_id == "01HZZHISTORY00000000000001", what="past run")
        assert app.view.read_only and app.view.status == "failed"
        assert isinstance(app.screen, MainScreen)
        assert main_screen(app).tree_workflow == "nightly"
        failed = app.view.root.steps  # type: ignore[union-attr]
        assert {sv.status for sv in failed.values()} == {"completed", "failed"}
        assert main_screen(app).check_action("resume_run", ()) is True
        assert app.summary() == ""  # nothing ran in this session


async def test_r_on_a_completed_run_in_the_history_says_why_it_does_not_resume() -> None:
    """`r` on a run that cannot resume did nothing and said nothing: it now says why."""
    from runkon_tui.screens.runs import RunsScreen
    from tests.tui.history import history_store

    app = make_app(store=history_store())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        await pilot.press("down", "down")  # newest first: cancelled, failed, completed
        assert app.screen.selected().status == "completed"  # type: ignore[attr-defined]
        await pilot.press("r")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert any("completed: there is nothing to resume" in text for text in said), said
        assert isinstance(app.screen, RunsScreen) and app.view.root is None  # nothing opened

        await pilot.press("up")  # the failed run resumes: no reason given, the key is live
        assert app.screen.unavailable_reason("resume_run") is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("width", "fmt"), [(120, "%Y-%m-%d %H:%M:%S"), (80, "%m-%d %H:%M")])
async def test_the_runs_screen_shows_start_times_on_the_readers_clock(
    monkeypatch: pytest.MonkeyPatch, width: int, fmt: str
) -> None:
    """The store keeps UTC; a person in Kolkata (UTC+5:30) reads Kolkata time, as `runkon-flow runs`
    shows it — not the stored UTC text cut short."""
    from zoneinfo import ZoneInfo

    from textual.widgets import DataTable

    from tests.tui.conftest import use_zone
    from tests.tui.history import history_store

    use_zone(monkeypatch, "Asia/Kolkata")
    store = history_store()
    app = make_app(store=store)
    async with app.run_test(size=(width, 30)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        table = app.screen.query_one(DataTable)
        for run in store.list_runs():
            stored = datetime.fromisoformat(run.started_at.replace("Z", "+00:00"))  # type: ignore[union-attr]
            wanted = stored.astimezone(ZoneInfo("Asia/Kolkata")).strftime(fmt)
            assert wanted != stored.strftime(fmt)
            assert str(table.get_row(run.id)[3]) == wanted, run.id


async def test_the_runs_screen_shows_no_start_for_a_run_recorded_but_not_started() -> None:
    """A `pending` run's stored start is only when it was recorded: nothing has run, so its
    started cell is empty (as its duration is), as `runkon-flow runs` shows `-`."""
    from runkon_flow.persistence.models import NewRun
    from textual.widgets import DataTable

    from tests.tui.history import history_store

    store = history_store()
    pending = store.create_run(NewRun(workflow_name="queued")).id
    app = make_app(store=store)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        table = app.screen.query_one(DataTable)
        assert str(table.get_row(pending)[3]) == ""
        assert str(table.get_row(store.list_runs()[-1].id)[3]) != ""


async def test_the_runs_screen_shows_held_by_and_error_only_when_some_run_has_them() -> None:
    """At 80 columns an always-present `held by` column pushed every error off the screen."""
    from runkon_flow.persistence.models import NewRun, RunStatus
    from runkon_flow.runtime.lease import new_owner_token
    from textual.widgets import DataTable

    store = InMemoryStore()
    done = store.create_run(NewRun(workflow_name="tidy"))
    store.update_run_status(done.id, RunStatus.COMPLETED, None, None)
    app = make_app(store=store)

    def columns() -> list[str]:
        return [str(c.label) for c in app.screen.query_one(DataTable).columns.values()]

    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        assert columns() == ["", "workflow", "run id", "started", "duration", "steps"]

        for n in range(30):  # more than the screen holds: the vertical scrollbar takes room too
            bad = store.create_run(NewRun(workflow_name="deploy"))
            error = f"workflow error: step 'push' failed ({n} retries)"  # the engine's prefix: not shown
            store.update_run_status(bad.id, RunStatus.FAILED, None, error)
        await pilot.press("g")
        await wait_for(pilot, lambda: len(app.screen.rows) == 31, what="the runs")  # type: ignore[attr-defined]
        assert columns()[-1] == "error" and "held by" not in columns()
        table = app.screen.query_one(DataTable)
        await pilot.pause()
        error = str(table.get_row(bad.id)[-1])
        assert table.max_scroll_x == 0, "the table scrolls sideways at 80 columns"
        assert error.startswith("step 'push'") and error.endswith("…")  # enter opens the run: all of it

        live = store.create_run(NewRun(workflow_name="nightly"))
        store.update_run_status(live.id, RunStatus.RUNNING, None, None)
        assert store.acquire_lease(live.id, new_owner_token(), 600) is not None
        await pilot.press("g")
        await wait_for(pilot, lambda: "held by" in columns(), what="the held by column")
        held_by = str(app.screen.query_one(DataTable).get_row(live.id)[columns().index("held by")])
        assert held_by.startswith(f"pid {os.getpid()} on ")  # as the CLI names a holder


async def test_the_runs_screen_shows_a_holder_whose_token_holds_escapes_safely() -> None:
    """`held by` is the host part of the run's lease token, read from the store as any process
    wrote it: `\x1b]0;…\x07` in it retitled the terminal, `\x1b[2J` cleared it."""
    from runkon_flow.persistence.models import NewRun, RunStatus
    from textual.widgets import DataTable

    store = InMemoryStore()
    live = store.create_run(NewRun(workflow_name="nightly"))
    store.update_run_status(live.id, RunStatus.RUNNING, None, None)
    assert store.acquire_lease(live.id, "box\x1b]0;pwned\x07\x1b[2J\x9b2J:4242:abc", 600) is not None
    app = make_app(store=store)

    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        table = app.screen.query_one(DataTable)
        columns = [str(c.label) for c in table.columns.values()]
        held = str(table.get_row(live.id)[columns.index("held by")])
        assert held.startswith("pid 4242 on box") and " · lease " in held, held
        assert not any(c in held for c in "\x1b\x07\x9b"), repr(held)


async def test_a_run_whose_holder_died_turns_interrupted_in_the_runs_screen_by_itself() -> None:
    """Nothing is written when a holder dies: its lease lapses. The runs screen re-read only while
    some run *is* live, so the last live run's row kept saying `running` until `g`."""
    from runkon_flow.persistence.models import NewRun, RunStatus
    from runkon_flow.runtime.lease import new_owner_token
    from textual.widgets import DataTable

    store = InMemoryStore()
    held = store.create_run(NewRun(workflow_name="nightly"))
    store.update_run_status(held.id, RunStatus.RUNNING, None, None)
    assert store.acquire_lease(held.id, new_owner_token(), 4) is not None  # then its holder dies
    app = make_app(store=store)

    def status_cell() -> str:
        return str(app.screen.query_one(DataTable).get_row(held.id)[0])

    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        assert "running" in status_cell()
        await wait_for(pilot, lambda: "interrupted" in status_cell(), what="interrupted", timeout=20)


async def test_the_runs_screen_counts_a_step_still_running_in_an_interrupted_run_interrupted() -> None:
    """A run that lost its engine keeps the row of the step it was running, saying `running`;
    nothing runs that step any more (`RunModel.mark_interrupted`), and its steps cell read ✓1 ▶1
    under ■ interrupted."""
    from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepStatus, StepUpdate
    from textual.widgets import DataTable

    store = InMemoryStore()
    run = store.create_run(NewRun(workflow_name="nightly"))
    store.update_run_status(run.id, RunStatus.RUNNING, None, None)
    done = store.insert_step(NewStep(run.id, "prep", retry_count=0, node_path="body.0"))
    store.update_step(done, StepUpdate(generation=0, status=StepStatus.COMPLETED))
    store.insert_step(NewStep(run.id, "all", role="foreach", position=1, retry_count=0, node_path="body.1"))
    app = make_app(store=store)  # nobody holds the run: interrupted

    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        table = app.screen.query_one(DataTable)
        columns = [str(c.label) for c in table.columns.values()]
        cells = table.get_row(run.id)
        assert "interrupted" in str(cells[0])
        assert str(cells[columns.index("steps")]) == "✓1 ■1"


async def test_a_wide_runs_screen_shows_a_long_error_whole_on_one_line() -> None:
    """The error column is the last one, fitted to the room left: on a wide screen nothing of a
    long error is cut, and a multi-line one reads as its first and last line."""
    from runkon_flow.persistence.models import NewRun, RunStatus
    from textual.widgets import DataTable

    store = InMemoryStore()
    bad = store.create_run(NewRun(workflow_name="deploy"))
    cause = "Script 'push' exited with code 128 after pushing 3 of 4 branches\nremote: permission denied"
    store.update_run_status(bad.id, RunStatus.FAILED, None, cause)
    app = make_app(store=store)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        await pilot.pause()
        error = str(app.screen.query_one(DataTable).get_row(bad.id)[-1])
        assert error == (
            "Script 'push' exited with code 128 after pushing 3 of 4 branches · remote: permission denied"
        )


async def test_an_unusable_store_is_reported_and_the_dashboard_runs_on(tmp_path: Path) -> None:
    from runkon_tui.host import open_store

    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not sqlite")
    store, problem = open_store(bad)
    assert problem is not None and str(bad) in problem
    app = make_app(store=store, problems=[problem])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert any(str(bad) in line.text for line in app.problems.lines)
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None) == [] and app.screen.error is None)


async def test_start_up_problems_stay_in_the_errors_log_when_a_run_starts() -> None:
    """A bad setting or an unusable store holds for the whole session: a run start (which clears
    the run's own errors) used to wipe it from the errors log, with the problem still there."""
    app = make_app(problems=["run database /x/runs.db unusable: file is not a database"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        bar = lambda: str(main_screen(app).query_one("#log-bar").render())  # noqa: E731
        at_start = bar()
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.run_active, what="run started")
        await pilot.pause()
        assert bar() == at_start
        assert "runs.db unusable" in str(app.problems.lines)
        app.host.finish()  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not app.run_active)


def toast_texts(app: RunkonApp) -> list[str]:
    from textual.widgets._toast import Toast

    return [toast._notification.message for toast in app.screen.query(Toast)]


async def test_a_toast_a_dialog_covers_comes_back_once_not_after_every_dialog() -> None:
    """A toast taken down by a dialog comes back when it closes; covered again, it stays down
    (it used to come back after every dialog, for at least 3 s each time)."""
    from runkon_tui.screens.help import HelpScreen

    app = make_app()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        app.notify("the store answers slowly", timeout=60)
        await wait_for(pilot, lambda: "the store answers slowly" in toast_texts(app), what="the toast")
        seen_after = []
        for _ in range(2):
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
            assert "the store answers slowly" not in toast_texts(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="help closed")
            for _ in range(5):
                await pilot.pause(0.05)
            seen_after.append("the store answers slowly" in toast_texts(app))
        assert seen_after == [True, False]


async def test_at_60x20_long_toasts_stay_on_the_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long toast (a start-up problem naming every theme) ran off the bottom of a small screen
    and hid the toasts under it; each now stops within the screen."""
    from textual.widgets._toast import Toast

    from runkon_tui.themes import THEMES_ENV

    monkeypatch.setenv(THEMES_ENV, str(Path(__file__).resolve().parents[2] / "themes"))  # this checkout's
    long = "unknown theme 'nope'; available: " + ", ".join(f"theme-number-{i}" for i in range(40))
    app = make_app(problems=[long])
    async with app.run_test(size=(60, 20), notifications=True) as pilot:
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 1, what="the toast")
        app.notify("settings: `executor` must be one of local, ray, not 'dask'", timeout=60)
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 2, what="the two toasts")
        await pilot.pause()
        toasts = list(app.screen.query(Toast))
        for toast in toasts:
            assert toast.region.height > 0 and toast.region.bottom <= 20 - 1, toast.region  # above the footer


async def test_at_60x20_three_start_up_problems_are_one_toast_and_all_in_the_errors_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A toast each: the third ran off a 60×20 screen (toasts stop at a quarter of its height). One
    toast says the first and how many there are; the errors log lists them all."""
    from textual.widgets._toast import Toast

    from runkon_tui.themes import THEMES_ENV

    monkeypatch.setenv(THEMES_ENV, str(Path(__file__).resolve().parents[2] / "themes"))  # this checkout's
    problems = [
        "runs.db unusable: database disk image is malformed",
        "settings: `executor` must be one of local, ray, not 'dask'",
        "hooks not used: bad-hooks.yaml:2: 'events' is required",
    ]
    app = make_app(problems=problems)
    async with app.run_test(size=(60, 20), notifications=True) as pilot:
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 1, what="the toast")
        for _ in range(3):
            await pilot.pause()
        [toast] = app.screen.query(Toast)
        said = toast._notification
        assert (said.title, said.message) == ("1 of 3 start-up problems (all in the errors log)", problems[0])
        assert toast.region.height > 0 and toast.region.bottom <= 20 - 1, toast.region
        assert [line.text for line in app.problems.lines][:3] == problems


def test_grid_has_no_fixed_colours() -> None:
    css = FanOutGrid.DEFAULT_CSS
    assert "#" not in css.replace("FanOutGrid >", "")
    for var in ("$success", "$error", "$warning", "$primary", "$text-muted"):
        assert var in css


async def test_resume_key_resumes_the_failed_run_and_zoom_toggles_a_pane() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]

    def boom(run_id: str) -> list[EngineEventData]:
        raise RuntimeError("lost the worker")

    host.script = boom
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: not app.run_active and app.view.crash is not None)
        run_id = app.view.root_run_id
        await pilot.press("r")
        await wait_for(pilot, lambda: ("resume", run_id) in host.calls, what="resume call")
        host.finish()
        await wait_for(pilot, lambda: not app.run_active)

        screen = main_screen(app)
        screen.grid.focus()
        await pilot.press("z")
        await pilot.pause()
        assert screen.maximized is screen.query_one("#grid-pane")
        await pilot.press("z")
        await pilot.pause()
        assert screen.maximized is None


async def test_a_recorded_event_log_replays_read_only() -> None:
    app = make_app(replay=scenarios.EVENTS / "failed_run.jsonl")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.view.root is not None, what="replay")
        await pilot.pause()
        assert app.view.read_only and app.view.status == "failed"
        screen = main_screen(app)
        assert screen.tree_workflow == "nightly"
        labels = {uid: node.label.plain for uid, node in screen.tree.nodes_by_uid.items()}
        assert labels["body.1.body.0"].startswith("✗ workflow review-one")
        assert "read-only" in str(screen.header.render())
        assert screen.check_action("cancel_run", ()) is False
        assert app.summary() == ""  # nothing ran in this session


# --------------------------------------------------------------------------- footer keys follow the run


def footer_keys(app: RunkonApp) -> dict[str, bool]:
    """The footer as the user sees it: each key's description → shown enabled (False = dimmed)."""
    keys = main_screen(app).query("FooterKey")  # Textual does not export the class
    return {key.description: not key.has_class("-disabled") for key in keys}  # type: ignore[attr-defined]


async def test_the_footer_offers_only_the_keys_that_apply_to_the_run() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = gate_script
    async with app.run_test(size=(160, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: footer_keys(app).get("Approve"), what="approve key while a gate waits")
        waiting = footer_keys(app)
        assert waiting["Cancel"] and waiting["Reject"]
        assert "Resume" not in waiting

        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: app.view.status == "completed", what="run to complete")
        await wait_for(pilot, lambda: "Cancel" not in footer_keys(app), what="footer after the run")
        done = footer_keys(app)
        assert not {"Resume", "Cancel", "Approve", "Reject"} & done.keys(), done
        assert done["Run"]


async def test_a_failed_run_offers_resume_in_the_footer() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    async with app.run_test(size=(160, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: footer_keys(app).get("Cancel"), what="cancel key while running")
        assert "Resume" not in footer_keys(app)
        host.finish(RunCompleted(succeeded=False, error="review-file failed"))
        await wait_for(pilot, lambda: "Resume" in footer_keys(app), what="resume key after the failure")
        keys = footer_keys(app)
        assert keys["Resume"] and "Cancel" not in keys


async def test_a_run_being_cancelled_offers_no_second_cancel() -> None:
    app = make_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: footer_keys(app).get("Cancel"), what="cancel key while running")
        app.view.mark_cancelling()
        app.drain()
        await wait_for(pilot, lambda: "Cancel" not in footer_keys(app), what="cancel key to go")
        assert main_screen(app).check_action("cancel_run", ()) is False
        app.host.finish(RunCancelled(reason=CancellationReason.user(None)))  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not app.run_active, what="run to end")


def _outside_run_store(name: str = "fail") -> InMemoryStore:
    """A failed run of `name` (`first` ✓, `boom` ✗) whose stored definition the watched folders do
    not hold: by default a workflow started from a folder the dashboard does not watch."""
    from runkon_flow.dsl.parser import parse_workflow
    from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepUpdate

    from tests.tui.conftest import fixed_store_clock

    wf = parse_workflow(
        f'workflow {name} {{\n  script first {{ run = "true" }}\n  script boom {{ run = "exit 3" }}\n}}\n'
    )
    store = InMemoryStore(clock=fixed_store_clock)
    snapshot = json.dumps(wf.to_json())
    run = store.create_run(NewRun(workflow_name=name, run_id=OUTSIDE_RUN, definition_snapshot=snapshot))
    first = store.insert_step(NewStep(run.id, "first", retry_count=0, position=0))
    store.update_step(first, StepUpdate.completed(0, result_text=""))
    boom = store.insert_step(NewStep(run.id, "boom", retry_count=0, position=1))
    store.update_step(boom, StepUpdate.failed(0, "Script 'boom' exited with code 3"))
    store.update_run_status(
        run.id, RunStatus.FAILED, None, "workflow error: Step 'boom' failed after 1 attempts"
    )
    return store


OUTSIDE_RUN = "01HZZOUTSIDE00000000000001"


async def test_with_no_step_highlighted_the_output_view_follows_the_step_that_started_last() -> None:
    """Nothing highlighted in the tree (a run just appeared): the output view shows the step the
    run started last, names it in the pane's title, and moves on with the run; once the user
    highlights a step, that step stays shown while the run moves on."""
    s = scenarios.Script()
    s.emit(RunStarted(workflow_name="review-pr", inputs={"pr": "42"}))
    base = s.start("body.0", "resolve-base", "script")
    s.emit(StepOutput(step_id=base, step_name="resolve-base", line="fetching origin"), dt=0.0)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = main_screen(app)

        async def step(events: list) -> None:
            feed(app, events)
            await pilot.pause()

        def shown() -> tuple[str, list[str]]:
            output = screen.log_pane.sources["output"]
            return screen.log_pane.output_title, [output.get(i)[0] for i in range(output.total)]

        await step(s.events)
        assert screen.tree.cursor_node is None
        assert shown() == ("script resolve-base", ["fetching origin"])
        s.events = []
        s.finish("body.0", "resolve-base", "script")
        detect = s.start("body.1", "detect-file-types")
        s.emit(StepOutput(step_id=detect, step_name="detect-file-types", line="python: 12 files"), dt=0.0)
        await step(s.events)
        assert shown() == ("detect-file-types", ["python: 12 files"])
        screen.tree.cursor_line = 0  # the user picks resolve-base
        await pilot.pause()
        s.events = []
        s.finish("body.1", "detect-file-types")
        s.start("body.2", "parallel", "parallel")
        s.start("body.2.calls.0", "review-security", "parallel_branch")
        await step(s.events)
        assert shown() == ("script resolve-base", ["fetching origin"])


async def test_a_past_run_of_a_workflow_outside_the_watched_folders_shows_its_own_tree() -> None:
    app = make_app(store=_outside_run_store())
    host: ScriptedHost = app.host  # type: ignore[assignment]
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "review-pr")
        screen = main_screen(app)
        tree = screen.tree
        screen.log_pane.set_output(None, "resolve-base")  # a step of the workflow shown before

        def shown() -> list[tuple[str, str]]:
            nodes = tree.nodes_by_uid.items()
            return [(n.data.label, tree._labels.get(u, "").split("|")[0]) for u, n in nodes]  # type: ignore[union-attr]

        app.open_past_run(OUTSIDE_RUN)
        await wait_for(pilot, lambda: app.view.root_run_id == OUTSIDE_RUN, what="past run")
        await pilot.pause()
        assert screen.tree_workflow == "fail"
        assert shown() == [("script first", "completed"), ("script boom", "failed")]
        # What `r` resumes it with, as the tree notes of a changed file say it.
        assert str(screen.query_one("#tree-note").render()) == (
            "not in the watched folders: the definition stored with this run; r resumes it with its "
            "own definition"
        )
        # Not the earlier workflow's step: nothing highlighted, the run's last step (which failed).
        assert screen.log_pane.output_title == "script boom"

        await pilot.press("r")  # resume: the engine keeps the stored definition, so does the tree
        await wait_for(pilot, lambda: ("resume", OUTSIDE_RUN) in host.calls, what="resume call")
        await pilot.pause()
        assert screen.tree_workflow == "fail" and [s for s, _ in shown()] == ["script first", "script boom"]
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="resume end")
        await pilot.pause()
        assert [s for s, _ in shown()] == ["script first", "script boom"]
        note = str(screen.query_one("#tree-note").render())
        assert note == "not in the watched folders: the definition stored with this run"  # completed

        await pilot.press("down")  # moving in the list shows that workflow again
        await pilot.pause()
        assert screen.tree_workflow != "fail"


async def test_a_past_run_whose_file_changed_since_shows_the_definition_it_ran() -> None:
    app = make_app(store=_outside_run_store("review-one"))  # review-one.wf now holds `call review-file`
    async with app.run_test(size=(120, 40)) as pilot:
        screen = main_screen(app)
        app.open_past_run(OUTSIDE_RUN)
        await wait_for(pilot, lambda: app.view.root_run_id == OUTSIDE_RUN, what="past run")
        await pilot.pause()
        assert screen.tree_workflow == "review-one"
        assert [n.data.label for n in screen.tree.nodes_by_uid.values()] == ["script first", "script boom"]  # type: ignore[union-attr]
        note = lambda: str(screen.query_one("#tree-note").render()).replace("\n", " ")  # noqa: E731
        said = "the tree shows this run's own definition; r resumes it with the file as it is now"
        await wait_for(pilot, lambda: said in note(), what="what r resumes with")  # the host's answer


async def test_the_workflow_list_glyph_follows_the_live_run() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = gate_script
    async with app.run_test(size=(120, 40)) as pilot:
        listing = main_screen(app).workflow_list

        def mark() -> str:
            entry = app.catalog.by_name(app.view.workflow_name)
            assert entry is not None
            return str(listing.get_option(entry.path).prompt).split("\u00a0")[0]

        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")
        await pilot.pause()
        assert "◷" in mark()
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.run_active, what="cancelled")
        await pilot.pause()
        assert "■" in mark()

        run_id = app.view.root_run_id
        await pilot.press("r")
        await wait_for(pilot, lambda: ("resume", run_id) in host.calls, what="resume call")
        resumed = RunResumed(workflow_name=app.view.workflow_name)
        feed(app, [EngineEventData(timestamp=int(T0), ts=T0, run_id=str(run_id), event=resumed)])
        await pilot.pause()
        assert "▶" in mark()
        feed(app, [e for e in gate_script(str(run_id)) if e.event.type == "GateWaiting"])
        await pilot.pause()
        assert "◷" in mark()
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="resumed run to end")


async def test_a_broken_file_with_a_long_name_keeps_its_position_on_one_line(tmp_path: Path) -> None:
    import re

    lines = ["workflow retry-until-green {"] + [f'  script s{i} {{ run = "true" }}' for i in range(10)]
    lines.append('  script last { run = "true" }                                  oops = }')
    lines.append("}")
    (tmp_path / "retry-until-green-again.wf").write_text("\n".join(lines) + "\n")
    (tmp_path / "ok.wf").write_text('workflow ok { script s { run = "true" } }\n')
    for size in ((120, 36), (80, 24)):
        app = make_app(dirs=[tmp_path])
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            listing = main_screen(app).workflow_list
            entry = next(e for e in app.catalog if e.broken)
            position = entry.location().removeprefix("retry-until-green-again.wf")
            assert position.startswith(":12:")
            prompt = str(listing.get_option(entry.path).prompt)
            head, *message = [re.sub(r"\[/?[^\]]*\]", "", line) for line in prompt.split("\n")]
            width = listing.scrollable_content_region.width
            assert head.startswith("✗\u00a0retry-until") and head.endswith(position) and len(head) <= width
            assert message and all(line.startswith("  ") and len(line) <= width for line in message)


async def test_a_workflow_name_wider_than_the_list_stays_on_its_line(tmp_path: Path) -> None:
    # 15 workflows at 80x24: the list scrolls, and its scrollbar leaves 18 columns for
    # "● housekeeping-task-long", which wrapped its name under the glyph.
    for i in range(14):
        (tmp_path / f"wf{i:02}.wf").write_text(f'workflow wf{i:02} {{ script s {{ run = "true" }} }}\n')
    (tmp_path / "housekeeping-task-long.wf").write_text(
        'workflow housekeeping-task-long { script s { run = "true" } }\n'
    )
    app = make_app(dirs=[tmp_path])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        listing = main_screen(app).workflow_list
        assert listing.option_count == 15
        assert listing.virtual_size.height == 15  # one line per workflow


async def test_a_past_run_read_through_another_path_is_not_called_changed_on_disk() -> None:
    from runkon_flow.persistence.models import NewRun, RunStatus

    app = make_app()
    entry = app.catalog.by_name("review-one")
    assert entry is not None and entry.definition is not None
    elsewhere = entry.definition.model_copy(update={"source_path": "/somewhere/else/review-one.wf"})
    run = app.store.create_run(
        NewRun(
            workflow_name="review-one",
            run_id=OUTSIDE_RUN,
            definition_snapshot=json.dumps(elsewhere.to_json()),
        )
    )
    app.store.update_run_status(run.id, RunStatus.COMPLETED, None, None)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_past_run(OUTSIDE_RUN)
        await wait_for(pilot, lambda: app.view.root_run_id == OUTSIDE_RUN, what="past run")
        await pilot.pause()
        screen = main_screen(app)
        assert screen.tree_workflow == "review-one"
        assert "changed on disk" not in str(screen.query_one("#tree-note").render())


async def test_the_footer_dims_exactly_the_keys_that_would_do_nothing_as_a_run_starts_and_ends() -> None:
    from textual.widgets._footer import FooterKey

    from runkon_tui.screens.main import RunFooter

    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]

    def dimmed() -> dict[str, bool]:
        return {
            key.action: key.has_class("-disabled") for key in app.screen.query_one(RunFooter).query(FooterKey)
        }

    def expected() -> dict[str, bool]:
        screen = main_screen(app)
        return {
            action: screen.check_action(action.removeprefix("screen."), ()) is None for action in dimmed()
        }

    async with app.run_test(size=(160, 45)) as pilot:
        await select(pilot, app, "review-pr")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
        app.screen.query_one("#input-0", Input).value = "42"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.run_active, what="run started")
        await pilot.pause()
        await wait_for(pilot, lambda: dimmed() == expected(), what="the footer to follow the run")
        assert dimmed()["run_workflow"] is True  # one run at a time

        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="run end")
        await pilot.pause()
        await wait_for(pilot, lambda: dimmed() == expected(), what="the footer to follow the run")
        assert dimmed()["run_workflow"] is False

        # Only a key's availability changes (as when a run is asked for, before it starts): the
        # keys on screen are dimmed in place, not unmounted and mounted again.
        keys = list(app.screen.query_one(RunFooter).query(FooterKey))
        app.session.run_active = True
        main_screen(app).refresh_bindings()
        await wait_for(pilot, lambda: dimmed()["run_workflow"], what="Run to dim")
        assert list(app.screen.query_one(RunFooter).query(FooterKey)) == keys
        assert dimmed() == expected()
        app.session.run_active = False


async def test_a_busy_fan_out_is_repainted_within_the_ui_budget_and_its_end_at_once() -> None:
    """A fan-out streaming thousands of events a second is folded every tick, but drawn only as
    often as the UI thread's CPU budget allows (each repaint costs the engine's threads
    interpreter time), at least once a second; a cheap repaint is drawn every tick; the run's end
    is drawn at once."""
    s = scenarios.Script()
    sid = scenarios.review_pr_until_foreach(s)
    ids = scenarios.item_ids(42 * 250)
    s.emit(
        FanOutItemsCollected(
            count=len(ids),
            step_id=sid,
            foreach_name="review-items",
            node_path="body.3",
            max_parallel=8,
            items=[FanOutItemInfo(item_id=i) for i in ids],
        )
    )
    setup, s.events = s.events, []
    batches = []
    for start in range(0, len(ids), 250):  # 750 events a tick (a child's quiet ones stay in the bridge)
        for item in ids[start : start + 250]:
            s.item_started(sid, item, f"child-{item}", dt=0.01)
            s.item_reviewed(sid, item, f"child-{item}", secs=0.01)
        batches.append(s.events)
        s.events = []
    app = make_app()
    wall, cpu = [100.0], [5.0]  # a tick is 0.125 s (exact in binary); folding one costs 2 ms of CPU
    repaint_costs = [0.0]  # UI CPU a repaint costs (its rendering included)
    app._wall_clock = lambda: wall[0]  # type: ignore[method-assign]
    app._ui_cpu_clock = lambda: cpu[0]  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        feed(app, setup)
        screen = main_screen(app)
        painted: list[int] = []  # items shown done at each repaint
        paint = screen.refresh_view

        def counting(changes, now):  # type: ignore[no-untyped-def]
            painted.append(app.view.active_fanout().done)
            cpu[0] += repaint_costs[0]
            return paint(changes, now)

        screen.refresh_view = counting  # type: ignore[method-assign]

        def tick(events: list) -> bool:
            """One UI tick with `events` queued (no await: no timer tick in between); drawn?"""
            before = len(painted)
            wall[0] += 0.125
            cpu[0] += 0.002 if events else 0.0
            feed(app, events)
            return len(painted) > before

        # Cheap repaints (2 ms of folding a tick, nothing more): every busy tick is drawn.
        assert all(tick(batch) for batch in batches[:5])
        # Repaints costing 15 ms: at 5 % of a core, about one tick in four is drawn.
        repaint_costs[0] = 0.015
        drawn = [tick(batch) for batch in batches[5:25]]
        assert 3 <= drawn.count(True) <= 7, drawn
        assert painted[-1] < 250 * 25  # the last busy ticks were folded, not drawn yet
        assert tick([])  # a quiet tick draws what skipped ones folded
        assert painted[-1] == 250 * 25
        # However costly the repaint, the screen is drawn at least once a second.
        repaint_costs[0] = 1.0
        drawn = [tick(batch) for batch in batches[25:41]]
        first = drawn.index(True)
        assert first < 6 and drawn[first + 1 : first + 9] == [False] * 7 + [True], drawn  # 1 s apart
        # The next busy tick would not be drawn, but the run's end is in it.
        assert tick(batches[41] + [s.emit(RunCompleted(succeeded=True))])
        assert painted[-1] == app.view.active_fanout().done and app.view.status == "completed"


async def test_a_run_error_is_cut_again_when_the_terminal_is_resized() -> None:
    from runkon_flow.persistence.models import NewRun, RunStatus
    from textual.widgets import DataTable

    store = InMemoryStore()
    bad = store.create_run(NewRun(workflow_name="deploy"))
    store.update_run_status(bad.id, RunStatus.FAILED, None, "step 'push' failed: " + "x" * 40)
    app = make_app(store=store)
    async with app.run_test(size=(130, 24)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
        table = app.screen.query_one(DataTable)
        wide = str(table.get_row(bad.id)[-1])
        await pilot.resize_terminal(121, 24)  # still wide: same columns, less room
        await wait_for(pilot, lambda: str(table.get_row(bad.id)[-1]) != wide, what="the error cut again")
        await pilot.pause()
        assert table.max_scroll_x == 0 and str(table.get_row(bad.id)[-1]).endswith("…")


async def test_deleting_the_highlighted_file_keeps_the_cursor_in_its_place(tmp_path: Path) -> None:
    """The list's cursor went to the top when the highlighted `.wf` was deleted: it stays on another
    file that declares the same workflow, else on the entry that took the deleted one's place."""
    folder = tmp_path / "wf"
    shutil.copytree(FIXTURE_DIR, folder)
    (folder / "review-one-copy.wf").write_text((folder / "review-one.wf").read_text())
    app = make_app(dirs=[folder], watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        listing = main_screen(app).workflow_list

        def shown() -> list[str]:
            return [Path(listing.get_option_at_index(i).id or "").name for i in range(listing.option_count)]

        def highlighted() -> str:
            return Path(listing.highlighted_path or "").name

        assert shown() == ["broken.wf", "nightly.wf", "review-one-copy.wf", "review-one.wf", "review-pr.wf"]
        listing.highlighted = 3
        listing.focus()
        await pilot.pause()
        (folder / "review-one.wf").unlink()  # review-one-copy.wf still declares review-one
        await wait_for(pilot, lambda: "review-one.wf" not in shown(), what="the list without it")
        await pilot.pause()
        assert highlighted() == "review-one-copy.wf"
        assert main_screen(app).tree_workflow == "review-one"

        (folder / "review-one-copy.wf").unlink()  # no other file declares it: the next entry
        await wait_for(pilot, lambda: "review-one-copy.wf" not in shown(), what="the list without it")
        await pilot.pause()
        assert highlighted() == "review-pr.wf"
        assert main_screen(app).tree_workflow == "review-pr"


async def test_toasts_are_plain_text_so_markup_in_a_value_neither_crashes_nor_acts() -> None:
    """A gate prompt or an error holding Content markup went into a toast as markup: `[/bold]`
    made Textual raise while drawing it (the dashboard crashed), `[@click=…]` made a live link."""
    from textual.widgets._toast import Toast

    app = make_app()
    hostile = "gate deploy waits: [/bold] [@click=app.quit]ship[/] [link=file:///etc/passwd]x[/]"
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.pause()
        app.notify(hostile, title="Gate", timeout=60)
        app.screen.notify(hostile + " (widget)", timeout=60)  # Widget.notify passes markup=True
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 2, what="the two toasts")
        await pilot.pause()
        shown = [str(toast.render()) for toast in app.screen.query(Toast)]
        assert any(hostile in text for text in shown), shown
        assert any(hostile + " (widget)" in text for text in shown), shown
        assert app.is_running
        app.notify("title \x1b]0;pwned\x07\x1b[2Jgone \x9b2J", title="Gate \x1b[31m", timeout=60)
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 3, what="the third toast")
        await pilot.pause()
        shown = [str(toast.render()) for toast in app.screen.query(Toast)]
        assert any("title gone" in text for text in shown), shown
        assert not any(c in text for text in shown for c in "\x1b\x07\x9b"), shown


def test_user_text_in_a_widget_keeps_no_escape_sequence_and_no_markup() -> None:
    """Textual writes an ESC in a widget's text to the terminal (it drops only BEL, BS, VT, FF
    and CR): a gate prompt `\x1b]0;…\x07` retitled the terminal, `\x1b[2J` cleared it."""
    from runkon_tui.widgets.markup import esc

    shown = esc("Deploy \x1b]0;pwned\x07\x1b[2J[b]v1[/b]\x9b2J?\nline two\tend")
    assert shown == "Deploy \\[b]v1\\[/b]?\nline two\tend"
    assert esc("plain [x]") == "plain \\[x]"


@pytest.mark.parametrize(("key", "screen_name"), [("h", "RunsScreen"), ("i", "GateInboxScreen")])
async def test_q_quits_from_the_run_history_and_the_gate_inbox(key: str, screen_name: str) -> None:
    """`q` did nothing in the history (`h`) and the inbox (`i`): the user had to press esc, then q."""
    from tests.tui.history import history_store

    app = make_app(store=history_store())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press(key)
        await wait_for(pilot, lambda: type(app.screen).__name__ == screen_name, what=screen_name)
        assert "Quit" in str(app.screen.active_bindings.get("q"))  # in the footer
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="exit")


def _failed_run_store(
    workflow: str, step: str, why: str, done: tuple[str, ...] = ()
) -> tuple[InMemoryStore, str]:
    """A store holding one failed run of `workflow`: the steps `done` completed, then `step`
    failed with `why` (its stored error), and the run's own error naming only the step, as the
    engine writes it. Returns the store and the run's id."""
    from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepStatus, StepUpdate

    store = InMemoryStore()
    run = store.create_run(NewRun(workflow_name=workflow))
    for index, name in enumerate(done):
        ok = store.insert_step(NewStep(run.id, name, retry_count=0, node_path=f"body.{index}"))
        store.update_step(ok, StepUpdate(run.generation, StepStatus.COMPLETED))
    bad = store.insert_step(NewStep(run.id, step, retry_count=0, node_path=f"body.{len(done)}"))
    store.update_step(bad, StepUpdate(run.generation, StepStatus.FAILED, step_error=why))
    store.update_run_status(
        run.id, RunStatus.FAILED, None, f"workflow error: Step '{step}' failed after 1 attempt"
    )
    return store, run.id


async def _open_history(pilot: Pilot[None], app: RunkonApp) -> None:
    """`h`, then wait until the runs screen has its rows."""
    await pilot.press("h")
    await wait_for(pilot, lambda: getattr(app.screen, "rows", None), what="history rows")
    await pilot.pause()


async def test_at_80_columns_the_runs_screen_cuts_an_error_before_its_cause_not_after() -> None:
    """The error column is cut to the room left; cut at its end, 80 columns kept `Script 'import'
    exited with co…` and lost why. Now the part before the last ` · ` gives way first (as the live
    view's step lines, `humanize.fit_cause`): the cause stays in view, whole on a wider screen."""
    from textual.widgets import DataTable

    why = "Script 'import' exited with code 3\nfetching page 1\nrate limited: retry in 30s"
    store, bad = _failed_run_store("import", "import", why)
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_history(pilot, app)
        table = app.screen.query_one(DataTable)
        error = str(table.get_row(bad)[-1])
        # no room beside the cause for its headline: the cause alone (before: `Script 'import…`)
        assert error.startswith("rate limited"), error
        assert sum(column.get_render_width(table) for column in table.columns.values()) <= 80
        await pilot.resize_terminal(110, 24)
        await pilot.pause()
        await pilot.pause()
        error = str(table.get_row(bad)[-1])
        assert error.endswith("… · rate limited: retry in 30s") and error.startswith("Script"), error


async def test_at_80_columns_a_long_workflow_name_gives_way_so_the_error_keeps_its_room() -> None:
    """`import-repositories` with `✓2 ✗1` left the error column less than its 12 columns at 80:
    the cell ran past the screen's edge (`schema`, no `…`) and the table scrolled sideways. The
    name is cut with `…` first (never below 8 characters, as `runs` cuts it), so the error's cut
    is on screen and keeps its cause (`humanize.fit_cause`); at 200 columns all is whole."""
    from textual.widgets import DataTable

    why = "Script 'import' exited with code 3\nschema mismatch: column id is text, expected int"
    store, bad = _failed_run_store("import-repositories", "import", why, done=("fetch", "unpack"))
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_history(pilot, app)
        table = app.screen.query_one(DataTable)
        cells = [str(cell) for cell in table.get_row(bad)]
        assert cells[1] == "import-repos…" and cells[-2] == "✓2 ✗1", cells
        assert cells[-1].startswith("schema mism") and cells[-1].endswith("…"), cells  # the cause, cut
        widths = sum(column.get_render_width(table) for column in table.columns.values())
        assert widths <= table.scrollable_content_region.width, widths  # no cell past the edge
        assert table.max_scroll_x == 0  # before: the table scrolled sideways
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        await pilot.pause()
        cells = [str(cell) for cell in table.get_row(bad)]
        assert cells[1] == "import-repositories"
        assert (
            cells[-1]
            == "Script 'import' exited with code 3 · schema mismatch: column id is text, expected int"
        )


async def test_the_runs_screen_says_why_a_run_failed_not_only_which_step() -> None:
    """The run's stored error only names the step (`Step 'boom' failed after 1 attempt`); the
    column says why, as `show` and the live view do: its failed step's error on one line."""
    from textual.widgets import DataTable

    store, bad = _failed_run_store("fails", "boom", "Script 'boom' exited with code 3\noops")
    app = make_app(store=store)
    async with app.run_test(size=(160, 24)) as pilot:
        await _open_history(pilot, app)
        error = str(app.screen.query_one(DataTable).get_row(bad)[-1])
        assert error == "Script 'boom' exited with code 3 · oops"


async def test_the_log_bar_counts_a_runs_errors_not_its_warnings() -> None:
    """`errors (N)` answers "is something wrong now?": a warning (an empty `{{item.lang}}` of
    lint-repo run on its own, four of them) is listed in the errors view but not counted; the
    run's error is (it counted the warnings as errors)."""
    s = scenarios.Script(run_id="01HZZNIGHTLY00000000000000")
    s.emit(RunStarted(workflow_name="nightly"))
    for step in ("build", "test", "report", "relint"):
        s.emit(EngineLog(level="warning", message="`{{item.lang}}` has no value here", step_name=step))
    s.emit(EngineLog(level="error", message="disk full", step_name="build"))
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = main_screen(app)
        bar = lambda: str(screen.query_one("#log-bar").render())  # noqa: E731
        problems = len(app.problems)
        feed(app, s.events)
        await pilot.pause()
        assert f"errors ({problems + 1})" in bar(), bar()
        texts = [line.text for line in app.view.error_log]
        assert sum("has no value here" in t for t in texts) == 4  # still listed
