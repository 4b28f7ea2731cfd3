"""The dashboard as a new user meets it (issue 10): every trip-up found by trying it, as a test.

Each test drives the app with Pilot against the scripted host or scripted events and checks what
the user sees — often the rendered screen itself (`screen_text`), since several of these bugs were
things drawn wrong or not drawn at all while the widgets' state looked fine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    FanOutItemCompleted,
    FanOutItemInfo,
    FanOutItemsCollected,
    FanOutItemStarted,
    RunCompleted,
    RunResumed,
    RunStarted,
    StepCompleted,
    StepOutput,
    StepStarted,
)
from textual import events
from textual.widgets import Button, Input

from runkon_tui.app import RunkonApp
from runkon_tui.screens.gate import GateChoices, GateScreen
from runkon_tui.screens.inputs import InputsScreen
from runkon_tui.screens.main import MainScreen
from runkon_tui.widgets.log_pane import LogView
from tests.tui import scenarios
from tests.tui.conftest import feed, make_app, select, wait_for
from tests.tui.fakes import ScriptedHost
from tests.tui.test_dashboard import gate_script, start_review_run

BIG = (140, 42)
SCROLLBAR = " ▁▂▃▄▅▆▇█▊▋▌▍▎▏"


def screen_text(app: RunkonApp) -> list[str]:
    """The characters on screen, one string per terminal row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def main(app: RunkonApp) -> MainScreen:
    screen = app.main_screen
    assert screen is not None
    return screen


# ------------------------------------------------------------------ bug 1: the `/` prompt


async def test_the_filter_prompt_shows_what_is_typed_and_where_it_applies() -> None:
    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        main(app).grid.focus()
        await pilot.press("slash", "0", "1")
        await pilot.pause()
        rows = screen_text(app)
        prompt = [row for row in rows if "filter items: 01" in row]
        assert prompt, "the typed filter is not on screen"
        footer_row = rows.index(prompt[0]) + 1
        assert footer_row < len(rows) and "Filter" in rows[footer_row]  # above the footer, not under it

        await select(pilot, app, "review-pr")
        await pilot.press("slash", "n")
        await pilot.pause()
        assert any("filter workflows: n" in row for row in screen_text(app))


# ------------------------------------------------------------------ bug 2: filters in titles, reset


async def test_active_filters_are_named_in_the_pane_titles() -> None:
    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        screen = main(app)
        screen.grid.focus()
        await pilot.press("f")
        await pilot.pause()
        assert "failed only" in str(screen.grid_pane.border_title)
        await pilot.press("slash", "0", "2", "enter")
        await pilot.pause()
        title = str(screen.grid_pane.border_title)
        assert "/02" in title and "failed only" in title and "1 shown" in title  # file-027 alone
        assert any("/02" in row and "failed only" in row for row in screen_text(app))

        await select(pilot, app, "review-pr")
        await pilot.press("slash", "r", "e", "v", "enter")
        await pilot.pause()
        assert "/rev" in str(screen.workflows_pane.border_title)


async def test_a_run_of_another_workflow_starts_unfiltered() -> None:
    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        screen = main(app)
        screen.grid.focus()
        await pilot.press("f", "slash", "0", "enter")
        screen.log_pane.view.focus()
        await pilot.press("slash", "x", "y", "z", "enter")
        await pilot.pause()
        assert screen.grid.failed_only and screen.log_pane.view.text_filter == "xyz"

        app.host.script = lambda run_id: [  # type: ignore[union-attr]
            EngineEventData(
                timestamp=int(scenarios.T0),
                ts=scenarios.T0,
                run_id=run_id,
                event=RunStarted(workflow_name="nightly"),
            )
        ]
        await select(pilot, app, "nightly")  # run another workflow, as a user does
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.view.workflow_name == "nightly", what="the nightly run")
        await pilot.pause()
        assert not screen.grid.failed_only and screen.grid.text_filter == ""
        assert screen.log_pane.view.text_filter == ""
        assert "failed only" not in str(screen.grid_pane.border_title)
        app.host.finish(RunCompleted(succeeded=True))  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not app.run_active)


# ------------------------------------------------------------------ bug 3: log lines stay in the pane


def _item_with_nasty_output() -> scenarios.Script:
    """review-pr's foreach: item i7's script wrote a second line to stderr and exited 1; its output
    has ANSI colours, tabs, a carriage-return progress line and wide characters."""
    s = scenarios.Script()
    sid = scenarios.review_pr_until_foreach(s)
    ids = [f"i{n}" for n in range(8)]
    s.emit(
        FanOutItemsCollected(
            count=8,
            step_id=sid,
            foreach_name="review-items",
            node_path="body.3",
            items=[FanOutItemInfo(item_id=i) for i in ids],
        )
    )
    child = "01HZZCHILDI7000000000000000"
    s.emit(FanOutItemStarted(item_id="i7", step_id=sid))
    s.emit(
        ChildRunStarted(
            child_run_id=child,
            workflow_name="review-one",
            parent_run_id=s.run_id,
            parent_step_id=sid,
            item_id="i7",
        )
    )
    s.emit(RunStarted(workflow_name="review-one", parent_run_id=s.run_id, inputs={"file": "i7"}), child)
    s.step_run(
        "body.0",
        "check",
        "script",
        run_id=child,
        ok=False,
        error="script 'check' failed with code 1\nboom i7",
        output=[
            "\x1b[31mred\x1b[0m\tafter a tab",
            "progress 10%\rprogress 100%",
            "幅の広い文字 " * 30,
            "bell\x07 and nul\x00",
        ],
    )
    s.emit(RunCompleted(succeeded=False, error="script 'check' failed with code 1\nboom i7"), child)
    s.emit(
        FanOutItemCompleted(
            item_id="i7",
            step_id=sid,
            succeeded=False,
            child_run_id=child,
            error="script 'check' failed with code 1\nboom i7",
        )
    )
    return s


async def test_every_log_line_is_drawn_inside_its_pane() -> None:
    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, _item_with_nasty_output().events)
        await pilot.pause()
        screen = main(app)
        screen.grid.focus()
        screen.grid.move_to_item(7)  # as enter on the item does
        await pilot.pause()
        assert screen.log_pane.mode == "output"
        region = screen.log_pane.region

        def pane_rows() -> list[str]:
            rows = screen_text(app)
            return [row[region.x : region.right] for row in rows[region.y + 1 : region.bottom - 1]]

        # Following the tail settles once the horizontal scrollbar has appeared (one refresh later).
        await wait_for(pilot, lambda: any("bell" in row for row in pane_rows()), what="the last line")
        pane = pane_rows()
        for row in pane:
            assert row[0] == "│" and row[-1] in "│▁▂▃▄▅▆▇█▊▋▌▍▎▏", f"drawn over the border: {row!r}"
        body = [row[1:-1].rstrip(" ▁▂▃▄▅▆▇█▊▋▌▍▎▏") for row in pane]
        assert "boom i7" in body  # the error's second line is a row of its own
        assert any(r.startswith("red after a tab") for r in body)  # no escape codes, tab expanded
        assert "progress 100%" in body  # what a terminal shows after the carriage return
        assert any("bell␇ and nul␀" in r for r in body), body
        assert not any("\x1b" in r or "[31m" in r for r in body)


async def test_a_short_log_pane_shows_lines_not_a_scrollbar_and_marks_where_lines_go_on() -> None:
    """At 80×24 the log has four rows: a horizontal scrollbar took one of them. A line cut at the
    pane's edge ends in › (begins in ‹ once scrolled right); zoomed, the scrollbar is back."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        feed(app, _item_with_nasty_output().events)
        await pilot.pause()
        screen = main(app)
        screen.grid.focus()
        screen.grid.move_to_item(7)
        await pilot.pause()
        view = screen.log_pane.query_one(LogView)

        def lines() -> list[str]:
            """The pane's rows under its bar, inside the border and the vertical scrollbar (the
            pane spans the screen: wide characters make columns and string indices differ)."""
            region = screen.log_pane.region
            rows = screen_text(app)[region.y + 2 : region.bottom - 1]
            return [row[1:].rstrip("│").rstrip(SCROLLBAR) for row in rows]

        await wait_for(pilot, lambda: any("bell" in row for row in lines()), what="the last line")
        shown = lines()
        assert view.styles.scrollbar_size_horizontal == 0
        assert len(shown) == 4 and all(row.strip() for row in shown), shown  # four lines, no scrollbar row
        wide = next(row for row in shown if "幅" in row)
        assert wide.rstrip().endswith("›"), wide
        assert not any(row.startswith("‹") for row in shown)

        view.focus()
        for _ in range(4):
            await pilot.press("right")
        await pilot.pause()
        assert view.scroll_offset.x == 4
        assert any(row.startswith("‹") for row in lines()), lines()

        await pilot.press("z")
        await wait_for(pilot, lambda: screen.log_pane.has_class("-maximized"), what="the zoomed log")
        await pilot.pause()
        assert view.styles.scrollbar_size_horizontal == 1 and view.show_horizontal_scrollbar


# ------------------------------------------------------------------ the gate dialog


def _scripted_gate_app() -> tuple[RunkonApp, ScriptedHost]:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = gate_script
    return app, host


async def _open_gate_dialog(pilot, app: RunkonApp, key: str) -> GateScreen:  # type: ignore[no-untyped-def]
    """A review run waiting at its gate, and the dialog `key` (a approve, x reject) opens."""
    await start_review_run(pilot, app)
    await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, GateScreen))
    assert isinstance(app.screen, GateScreen)
    return app.screen


async def test_approve_and_reject_open_different_dialogs() -> None:
    app, _ = _scripted_gate_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_gate_dialog(pilot, app, "a")
        approve_rows = screen_text(app)
        assert any("Approve gate human_approval" in r for r in approve_rows)
        assert not app.screen.query("#reject") and app.screen.query("#choices")
        await pilot.press("escape")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen))
        reject_rows = screen_text(app)
        assert any("Reject gate human_approval" in r and "fails the run" in r for r in reject_rows)
        assert not app.screen.query("#approve") and not app.screen.query("#choices")
        assert app.screen.has_class("-reject")


async def test_gate_options_come_first_and_space_toggles_a_visible_check() -> None:
    app, _ = _scripted_gate_app()
    async with app.run_test(size=(120, 40)) as pilot:
        dialog = await _open_gate_dialog(pilot, app, "a")
        assert isinstance(dialog.focused, GateChoices)
        assert any("[ ] Merge now" in r for r in screen_text(app))
        await pilot.press("space")
        await pilot.pause()
        assert dialog.query_one("#note", Input).value == ""  # space did not type into the note
        rows = screen_text(app)
        assert any("[x] Merge now" in r for r in rows) and any("[ ] Hold for a day" in r for r in rows)


async def test_typing_on_the_gate_options_writes_the_note_instead_of_dropping_it() -> None:
    app, host = _scripted_gate_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_gate_dialog(pilot, app, "a")
        await pilot.press("space")  # on the options: toggles the first one
        for ch in "ok by me":
            await pilot.press("space" if ch == " " else ch)
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: host.gates.decisions, what="the approval")
        decision = host.gates.decisions[0]
        assert decision[0] == "approve" and decision[4] == "ok by me"
        assert decision[5] == ("merge",)  # the option toggled before typing, no other


async def test_a_note_typed_fast_on_the_gate_options_keeps_its_spaces() -> None:
    app, host = _scripted_gate_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_gate_dialog(pilot, app, "a")
        choices = app.screen.query_one(GateChoices)
        for ch in "ship it":  # all delivered before the focus moves, as from a fast typist
            choices.post_message(events.Key("space" if ch == " " else ch, ch))
        await pilot.pause()
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: host.gates.decisions, what="the approval")
        decision = host.gates.decisions[0]
        assert decision[4] == "ship it" and decision[5] == ()  # no option toggled by the space


@pytest.mark.parametrize("typed", ["", "not today"])
async def test_keys_pressed_right_after_x_give_the_reason_and_enter_rejects(typed: str) -> None:
    app, host = _scripted_gate_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_gate_dialog(pilot, app, "x")
        for ch in typed:  # no click, no Tab: the reason field has the keys
            await pilot.press("space" if ch == " " else ch)
        await pilot.press("enter")
        await wait_for(pilot, lambda: host.gates.decisions, what="the rejection")
        assert host.gates.decisions[0][0] == "reject"
        assert host.gates.decisions[0][4] == (typed or None)


async def test_a_typed_note_survives_closing_the_dialog() -> None:
    app, host = _scripted_gate_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_gate_dialog(pilot, app, "x")
        app.screen.query_one("#note", Input).focus()
        for ch in "not before friday":
            await pilot.press("space" if ch == " " else ch)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, GateScreen))
        await pilot.press("a")  # the other dialog for the same gate: the note is still there
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen))
        assert app.screen.query_one("#note", Input).value == "not before friday"
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: host.gates.decisions)
        assert host.gates.decisions[0][4] == "not before friday"


# ------------------------------------------------------------------ zoom, the empty Fan-out pane


async def test_a_zoomed_pane_fills_the_screen_and_keeps_its_title() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = main(app)
        screen.workflow_list.focus()
        await pilot.press("z")
        await pilot.pause()
        assert screen.maximized is screen.workflows_pane
        assert screen.workflows_pane.region.width == 100
        rows = screen_text(app)
        assert rows[0].lstrip().startswith("runkon")  # the header stays on top
        assert "Workflows" in rows[1]
        await pilot.press("z")
        screen.log_pane.view.focus()
        await pilot.press("z")
        await pilot.pause()
        assert screen.maximized is screen.log_pane
        assert any(row.lstrip("│").startswith("Log: engine") for row in screen_text(app))


async def test_the_fan_out_pane_takes_no_room_without_a_foreach() -> None:
    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await select(pilot, app, "nightly")
        screen = main(app)
        assert not screen.grid_pane.display
        assert screen.tree_pane.region.width > 100
        await select(pilot, app, "review-pr")
        assert screen.grid_pane.display


# ------------------------------------------------------------------ toasts, the store, broken files


async def test_a_resume_withdraws_the_previous_attempts_run_finished_toast() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = lambda run_id: scenarios.cancelled_foreach().events[:1]  # type: ignore[assignment]
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.run_active and app.view.root is not None)
        await pilot.press("c")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.run_active, what="cancelled")
        assert any("Run finished" in (n.title or "") for n in app._notifications)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.run_active)
        await pilot.pause()
        assert not any("Run finished" in (n.title or "") for n in app._notifications)


async def test_the_header_says_runs_are_kept_in_memory_after_an_unusable_db(tmp_path: Path) -> None:
    from runkon_tui.host import open_workspace

    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not sqlite")
    opened = open_workspace([Path("tests/tui/fixtures/workflows")], bad)
    assert opened.store_note is not None
    app = make_app(store=opened.store, problems=opened.problems, store_note=opened.store_note)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "in-memory store" in screen_text(app)[0]
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        assert "in-memory store" in screen_text(app)[0]


async def test_at_80x24_an_unusable_db_says_runs_are_not_saved_and_why(tmp_path: Path) -> None:
    """The start-up toast led with the database's error and ran off its six lines before "runs are
    kept in memory"; with a run on screen the header's note was cut to `⚠ in-mem… saved`. It says
    `⚠ runs not saved` where that fits, `⚠ not saved` only where the run's state needs the room."""
    from textual.widgets._toast import Toast

    from runkon_tui.host import open_workspace

    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not sqlite")
    opened = open_workspace([Path("tests/tui/fixtures/workflows")], bad)
    app = make_app(store=opened.store, problems=opened.problems, store_note=opened.store_note)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 1, what="the toast")
        for _ in range(3):
            await pilot.pause()
        rows = screen_text(app)
        assert "⚠ in-memory store: runs are not saved" in rows[0]
        # the toast over the Workflows pane: each row's text up to the Steps pane's border
        toast = " ".join(row.split("▌", 1)[1].split("│", 1)[0].strip() for row in rows[1:10] if "▌" in row)
        said = "run store unusable, runs kept in memory (not saved): cannot open run database"
        assert toast.startswith(f"start-up problem (all in errors log) {said}"), toast
        # the whole reason is in the errors log, which the toast's title names
        assert opened.problems[0] in [line.text for line in app.problems.lines]
        assert "file is not a database" in opened.problems[0] and str(bad) in opened.problems[0]
        events = scenarios.foreach_mid_run().events
        started = next(n for n, data in enumerate(events) if data.event.type == "FanOutItemsCollected")
        feed(app, events[: started + 1])  # the fan-out collected, no item started: room for the words
        await pilot.pause()
        header = screen_text(app)[0]
        assert header.startswith(" ⚠ runs not saved · review-pr · ▶ running"), header
        feed(app, events[started + 1 :])  # five kinds of item counts: the shortest form
        await pilot.pause()
        header = screen_text(app)[0]
        assert header.startswith(" ⚠ not saved · review-pr · ▶ running"), header


async def test_an_unreadable_file_is_described_in_the_clis_words(tmp_path: Path) -> None:
    (tmp_path / "latin.wf").write_bytes(b'workflow latin { meta { title = "caf\xe9" } }')
    (tmp_path / "ok.wf").write_text('workflow ok { script s { run = "true" } }')
    app = make_app(dirs=[tmp_path])
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        screen = main(app)
        screen.workflow_list.highlighted = 0  # the broken file sorts first
        await pilot.pause()
        note = str(screen.tree_note.render())
        assert "not valid UTF-8" in note and "codec" not in note


# ------------------------------------------------------------------ `n` through failed items


def _failed_foreach() -> scenarios.Script:
    """review-pr whose foreach step itself failed, with items 1, 4 and 6 failed."""
    s = scenarios.Script()
    sid = scenarios.review_pr_until_foreach(s)
    ids = [f"i{n}" for n in range(8)]
    s.emit(
        FanOutItemsCollected(
            count=8,
            step_id=sid,
            foreach_name="review-items",
            node_path="body.3",
            items=[FanOutItemInfo(item_id=i) for i in ids],
        )
    )
    for n, item in enumerate(ids):
        s.emit(FanOutItemStarted(item_id=item, step_id=sid))
        s.emit(
            FanOutItemCompleted(
                item_id=item,
                step_id=sid,
                succeeded=n not in (1, 4, 6),
                error="boom" if n in (1, 4, 6) else None,
            )
        )
    s.finish("body.3", "foreach:review-items", "foreach", ok=False, error="3 items failed")
    s.emit(RunCompleted(succeeded=False, error="step 'foreach:review-items' failed"))
    return s


async def test_next_failure_walks_the_failed_items_of_a_failed_foreach() -> None:
    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, _failed_foreach().events)
        await pilot.pause()
        screen = main(app)
        visited = []
        for _ in range(6):
            await pilot.press("n")
            await pilot.pause()
            node = screen.tree.cursor_node
            if screen.focused is screen.grid:
                visited.append(screen.grid.fan.ids[screen.grid.cursor_item])  # type: ignore[union-attr,index]
            else:
                visited.append(node.data.label if node is not None and node.data is not None else None)
        assert visited[:5] == ["review-style", "foreach review-items", "i1", "i4", "i6"]
        assert visited[5] == "review-style"  # wraps round


def _failed_items_retried_to_success() -> scenarios.Script:
    """review-pr with no failed step whose foreach failed on item i1, then a second attempt ran
    i1 again, it succeeded, and the run completed: nothing on screen has failed any more."""
    s = scenarios.Script()
    s.emit(RunStarted(workflow_name="review-pr", inputs={"pr": "42"}))
    s.step_run("body.0", "resolve-base", "script", secs=0.4)
    s.step_run("body.1", "detect-file-types", secs=1.2)
    s.start("body.2", "parallel", "parallel")
    for n, name in enumerate(("review-security", "review-style", "review-tests")):
        s.step_run(f"body.2.calls.{n}", name, "parallel_branch", secs=1)
    s.finish("body.2", "parallel", "parallel", ok=True)
    sid = s.start("body.3", "foreach:review-items", "foreach")
    ids = [f"i{n}" for n in range(4)]
    s.emit(
        FanOutItemsCollected(
            count=4,
            step_id=sid,
            foreach_name="review-items",
            node_path="body.3",
            items=[FanOutItemInfo(item_id=i) for i in ids],
        )
    )
    for item in ids:
        s.emit(FanOutItemStarted(item_id=item, step_id=sid))
        failed = item == "i1"
        s.emit(
            FanOutItemCompleted(
                item_id=item, step_id=sid, succeeded=not failed, error="boom" if failed else None
            )
        )
    s.finish("body.3", "foreach:review-items", "foreach", ok=False, error="1 item failed")
    s.emit(RunCompleted(succeeded=False, error="step 'foreach:review-items' failed"))
    # The retry: a second attempt of the run that runs i1 again.
    s.emit(RunStarted(workflow_name="review-pr", inputs={"pr": "42"}), dt=600)
    sid = s.start("body.3", "foreach:review-items", "foreach")
    infos = [FanOutItemInfo(item_id=i, status="pending" if i == "i1" else "completed") for i in ids]
    s.emit(
        FanOutItemsCollected(
            count=4, step_id=sid, foreach_name="review-items", node_path="body.3", items=infos
        )
    )
    s.emit(FanOutItemStarted(item_id="i1", step_id=sid))
    s.emit(FanOutItemCompleted(item_id="i1", step_id=sid, succeeded=True))
    s.finish("body.3", "foreach:review-items", "foreach", ok=True)
    s.emit(RunCompleted(succeeded=True))
    return s


@pytest.mark.parametrize("size", [(80, 24), BIG])
async def test_failed_only_and_next_failure_are_dimmed_when_nothing_failed_is_left_and_say_why(
    size: tuple[int, int],
) -> None:
    """A run whose failed items were retried successfully: `f` showed an empty grid and `n` did
    nothing, both lit. Now they are dimmed (left out at 80 columns), and pressed anyway they
    say why in a notice and change nothing."""
    from tests.tui.test_key_docs import _footer_keys

    app = make_app()
    async with app.run_test(size=size, notifications=True) as pilot:
        await pilot.pause()
        feed(app, _failed_items_retried_to_success().events)
        await pilot.pause()
        screen = main(app)
        assert app.view.status == "completed" and screen.grid.fan is not None
        await pilot.pause()
        lit = " ".join(_footer_keys(app))
        assert "Failed" not in lit and "Next" not in lit, lit
        if size == BIG:  # wide enough for dimmed keys: still there, dimmed
            dimmed = _footer_keys(app, lit=False)
            assert "f Failed only" in dimmed and "n Next failure" in dimmed, dimmed
        cursor = screen.tree.cursor_node
        await pilot.press("f")
        await pilot.pause()
        assert not screen.grid.failed_only and screen.grid.visible_count == 4  # not an empty grid
        await pilot.press("n")
        await pilot.pause()
        assert screen.tree.cursor_node is cursor
        said = [n.message for n in app._notifications]
        assert "no failed items to show in this fan-out" in said, said
        assert "no failure to jump to: no step or item on screen has failed" in said, said


# ------------------------------------------------------------------ 80×24


SMALL = (80, 24)


async def test_at_80x24_the_header_keeps_the_item_count_and_the_footer_its_keys() -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        rows = screen_text(app)
        assert "review-pr" in rows[0] and "120 items ✓33 ✗2 ⊘2 ▶4 ·79" in rows[0] and "running" in rows[0]
        footer = rows[-1].rstrip()
        assert footer.endswith("q Quit"), footer  # nothing cut off at the right edge
        for key in ("/ Filter", "f Failed", "n Next", "h Runs", "? Help"):
            assert key in footer
        assert any("review-pr" in row and "▶" in row for row in rows[1:16])  # names in the list


@pytest.mark.parametrize("size", [SMALL, (120, 40)])
async def test_at_80_columns_keys_that_would_do_nothing_are_left_out_and_wider_they_are_dimmed(
    size: tuple[int, int],
) -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    narrow = size == SMALL
    async with app.run_test(size=size) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.run_active, what="run to start")
        await pilot.pause()
        footer = screen_text(app)[-1]
        assert "Cancel" in footer  # the run can be cancelled
        assert ("Run" not in footer.replace("Runs", "")) == narrow  # no second run meanwhile: dimmed
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="run to end")
        await pilot.pause()
        footer = screen_text(app)[-1]
        assert "Cancel" not in footer  # nothing to cancel: gone at any width
        # Nothing failed and no fan-out: "Failed only" and "Next failure" would do nothing.
        assert ("Failed" not in footer and "Next" not in footer) == narrow, footer
        assert "q Quit" in footer


async def test_with_the_gate_dialog_open_the_footer_underneath_does_not_offer_a_second_run() -> None:
    app = make_app()
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=SMALL) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        await pilot.pause()
        footer = screen_text(app)[-1]
        assert "a Approve" in footer and "Run" not in footer.replace("Runs", ""), footer
        app.host.finish(RunCompleted(succeeded=True))  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not app.run_active, what="run end")


async def test_at_80x24_the_inputs_form_buttons_are_on_screen() -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await select(pilot, app, "review-pr")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen))
        await pilot.pause()
        run = app.screen.query_one("#run", Button)
        assert run.region.height > 0 and run.region.bottom <= 24
        assert any("Run (ctrl+s)" in row for row in screen_text(app))


async def test_at_80x24_a_missing_required_input_is_said_on_screen_and_its_field_focused() -> None:
    """release-notes (sample_workflows), `enter`, `ctrl+s` with `version` empty: the error is on
    screen at once (it was under the last field, scrolled out of view, so nothing seemed to
    happen) and the cursor is back in `version`."""
    from runkon_flow.persistence.memory import InMemoryStore
    from runkon_flow.workspace import Workspace

    samples = Path("sample_workflows")
    store = InMemoryStore()
    app = make_app(host=Workspace([samples], store), store=store, dirs=[samples])
    async with app.run_test(size=SMALL) as pilot:
        await select(pilot, app, "release-notes")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="the inputs form")
        form = app.screen
        await pilot.press("tab", "tab")  # away from `version`, as a user filling the form may be
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, InputsScreen), "the run started without its required input"
        rows = screen_text(app)
        assert any("Missing required input: 'version'" in row for row in rows), "\n".join(rows)
        assert any("Run (ctrl+s)" in row for row in rows)
        version = form.query_one("#input-0", Input)
        assert form.focused is version
        shown = lambda: version.region.height > 0 and version.region.bottom <= 24  # noqa: E731
        await wait_for(pilot, shown, what="the version field in view")
        await pilot.press(*"2.4.0")
        assert version.value == "2.4.0"


async def test_at_80x24_the_gate_dialog_buttons_are_on_screen() -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        feed(app, scenarios.gate_waiting().events)
        await pilot.pause()
        for key, label in (("a", "Approve (ctrl+y)"), ("x", "Reject (ctrl+r)")):
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen))
            await pilot.pause()
            assert any(label in row for row in screen_text(app)), label
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, GateScreen))


async def test_toasts_never_cover_the_log() -> None:
    from textual.widgets._toast import Toast

    app = make_app()
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await pilot.pause()
        app.notify("a long message about the run that just ended\nwith a second line", timeout=30)
        await wait_for(pilot, lambda: list(app.screen.query(Toast)), what="the toast")
        await pilot.pause()
        toasts = list(app.screen.query(Toast))
        log = main(app).log_pane.region
        for toast in toasts:
            assert not toast.region.overlaps(log), (toast.region, log)


@pytest.mark.parametrize("size", [SMALL, (120, 40), (200, 50)], ids=["80x24", "120x40", "200x50"])
async def test_the_run_finished_toast_covers_neither_the_steps_nor_the_fan_out(size: tuple[int, int]) -> None:
    """A run ended with failed items: the "Run finished" toast (and a start-up problem's, the
    same rack) drops down over the Workflows pane, as wide as it, not over the Steps and Fan-out
    panes — where the failed step, the grid's ✗ items and the failure clusters are. Before, at the
    top right, it hid the step's counts and the grid's first rows for ten seconds (at 80×24 the
    Steps pane's right half too), saying what the header and the log's last line said already."""
    from textual.widgets._toast import Toast

    app = make_app()
    async with app.run_test(size=size, notifications=True) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_failure_clusters().events)
        await wait_for(pilot, lambda: list(app.screen.query(Toast)), what="the toast")
        themes = ", ".join(["a-long-theme-name"] * 30)
        app.notify(f"unknown theme 'x'; available: {themes}", title="start-up problem")
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 2, what="the second toast")
        await pilot.pause()
        screen = main(app)
        toasts = list(app.screen.query(Toast))
        assert [t._notification.title for t in toasts] == ["Run finished", "start-up problem"]
        workflows = screen.workflows_pane.region
        for toast in toasts:
            region = toast.region
            assert region.height > 0, region
            for pane in (screen.tree_pane, screen.grid_pane, screen.log_pane):
                assert not region.overlaps(pane.region), (toast._notification.title, region, pane.id)
            assert workflows.x <= region.x and region.right <= workflows.right, (region, workflows)


@pytest.mark.parametrize("size", [SMALL, (120, 40)], ids=["80x24", "120x40"])
async def test_no_toast_peeks_out_from_under_a_dialog(size: tuple[int, int]) -> None:
    """The gate dialog opens over two toasts: they are taken down from the screen under the
    dialog too (Textual redraws only the top screen's toasts); the one not about that gate comes
    back when it closes. Before, they stayed drawn on the main screen, beside the dialog where
    that is narrower (the gate dialog at 120×40)."""
    from textual.widgets._toast import Toast

    app = make_app()
    async with app.run_test(size=size, notifications=True) as pilot:
        await pilot.pause()
        feed(app, scenarios.gate_waiting().events)
        await wait_for(pilot, lambda: list(main(app).query(Toast)), what="the Gate toast")
        app.notify("a toast that comes back", timeout=30)
        await wait_for(pilot, lambda: len(main(app).query(Toast)) == 2, what="the second toast")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="the dialog")
        await pilot.pause()
        assert not list(main(app).query(Toast))
        await pilot.press("escape")
        await wait_for(pilot, lambda: list(main(app).query(Toast)), what="the toast back")
        assert [t._notification.message for t in main(app).query(Toast)] == ["a toast that comes back"]


# ------------------------------------------------------------------ a called workflow's fan-out


INNER = "01HZZCHILDRUN00000000INNER"


def _called_fanout(tmp_path: Path) -> tuple[list[Path], scenarios.Script]:
    """`outer` calls `inner`, whose foreach runs 60 items: 20 completed, 4 running."""
    (tmp_path / "outer.wf").write_text(
        'workflow outer {\n  script prepare { run = "true" }\n  call workflow inner\n}\n'
    )
    (tmp_path / "inner.wf").write_text(
        'workflow inner {\n  foreach lint {\n    over = static\n    scope = { items = "a,b" }\n'
        '    workflow = leaf\n    inputs = { x = "{{item.id}}" }\n  }\n}\n'
    )
    (tmp_path / "leaf.wf").write_text('workflow leaf {\n  inputs { x }\n  script s { run = "true" }\n}\n')
    s = scenarios.Script()
    s.emit(RunStarted(workflow_name="outer"))
    s.step_run("body.0", "prepare", "script")
    call = s.start("body.1", "workflow:inner", "call_workflow")
    child = INNER
    s.emit(
        ChildRunStarted(
            child_run_id=child, workflow_name="inner", parent_run_id=scenarios.ROOT, parent_step_id=call
        )
    )
    s.emit(RunStarted(workflow_name="inner", parent_run_id=scenarios.ROOT), child)
    fan_step = s.start("body.0", "foreach:lint", "foreach", run_id=child)
    ids = [f"repo-{n:02d}" for n in range(60)]
    s.emit(
        FanOutItemsCollected(
            count=60,
            step_id=fan_step,
            foreach_name="lint",
            node_path="body.0",
            items=[FanOutItemInfo(item_id=i) for i in ids],
        ),
        child,
    )
    for n, item in enumerate(ids[:24]):
        s.emit(FanOutItemStarted(item_id=item, step_id=fan_step), child)
        if n < 20:
            s.emit(FanOutItemCompleted(item_id=item, step_id=fan_step, succeeded=True), child)
    return [tmp_path], s


async def test_a_called_workflows_fan_out_is_shown_and_counted(tmp_path: Path) -> None:
    dirs, script = _called_fanout(tmp_path)
    app = make_app(dirs=dirs)
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, script.events)
        await pilot.pause()
        screen = main(app)
        fan = screen.grid.fan
        assert fan is not None and fan.name == "lint" and fan.total == 60
        assert screen.grid_pane.display
        rows = screen_text(app)
        assert "60 items: 20 completed, 4 running, 36 pending" in rows[0]
        assert not any("no fan-out in this run" in row for row in rows)
        assert any("foreach lint" in row for row in rows)  # the pane's title names it
        # The next item event of the called workflow reaches the header at once.
        more = scenarios.Script(t0=script.now())
        more.emit(FanOutItemCompleted(item_id="repo-20", step_id=fan.step_id, succeeded=True), INNER)
        feed(app, more.events)
        await pilot.pause()
        assert "21 completed" in screen_text(app)[0]


# ------------------------------------------------------------------ item counts, each on its own


def _resumed_after_cancel() -> list[EngineEventData]:
    """The cancelled 20-item run (5 completed, 3 cancelled in flight) resumed: the cancelled items
    are pending again and two of them start."""
    s = scenarios.Script(t0=scenarios.cancelled_foreach().now() + 5)
    s.emit(RunResumed(workflow_name="review-pr", skipped_steps=3))
    sid = s.start("body.3", "foreach:review-items", "foreach")
    ids = scenarios.item_ids(20)
    s.emit(
        FanOutItemsCollected(
            count=20,
            step_id=sid,
            node_path="body.3",
            foreach_name="review-items",
            items=[
                FanOutItemInfo(item_id=i, status="completed" if n < 5 else "pending")
                for n, i in enumerate(ids)
            ],
        )
    )
    for item in ids[5:7]:
        s.emit(FanOutItemStarted(item_id=item, step_id=sid))
    return s.events


async def test_item_counts_name_each_status_and_completed_never_goes_backwards_on_resume() -> None:
    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, scenarios.cancelled_foreach().events)
        await pilot.pause()
        screen = main(app)
        assert "20 items: 5 completed, 3 cancelled, 12 pending" in screen_text(app)[0]
        assert "20 items: 5 completed, 3 cancelled, 12 pending" in str(screen.item_detail.render())
        feed(app, _resumed_after_cancel())
        await pilot.pause()
        assert "20 items: 5 completed, 2 running, 13 pending" in screen_text(app)[0]
        assert any("foreach review-items  5/20" in row for row in screen_text(app))  # the tree too

    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        feed(app, scenarios.cancelled_foreach().events)
        await pilot.pause()
        assert "20 items ✓5 ■3 ·12" in screen_text(app)[0]  # narrow: the grid's glyphs, same counts


# ------------------------------------------------------------------ bug 4: the output log follows the run


async def test_the_output_log_follows_the_run_on_screen() -> None:
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        screen = main(app)
        screen.grid.focus()
        screen.grid.move_to_item(38)
        await pilot.press("enter")  # the item's child run output, as a user opens it
        await pilot.pause()
        assert screen.log_pane.mode == "output" and screen.log_pane.output_title == "item file-038"

        def output() -> list[str]:
            source = screen.log_pane.sources["output"]
            return [source.get(i)[0] for i in range(len(source))]

        assert any("reviewing file-038" in line for line in output())

        host.script = lambda run_id: [  # type: ignore[assignment]
            EngineEventData(
                timestamp=int(scenarios.T0),
                ts=scenarios.T0,
                run_id=run_id,
                event=RunStarted(workflow_name="nightly"),
            )
        ]
        await select(pilot, app, "nightly")  # another workflow's run
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.view.workflow_name == "nightly", what="the nightly run")
        await pilot.pause()
        assert screen.log_pane.output_title != "item file-038"
        assert not any("file-038" in line for line in output()), output()
        assert not any("file-038" in row for row in screen_text(app))

        # Highlight a step that has not run yet: its output shows as soon as it runs.
        test_node = next(
            n for n in screen.tree.nodes_by_uid.values() if n.data and n.data.label == "script test"
        )
        screen.tree.select_uid(test_node.data.uid)  # type: ignore[union-attr]
        await pilot.pause()
        assert screen.log_pane.output_title == "script test"
        path = test_node.data.path  # type: ignore[union-attr]
        sid = "step-test"
        host.finish(
            StepStarted(step_name="test", step_key="test", kind="script", step_id=sid, node_path=path),
            StepOutput(step_id=sid, step_name="test", line="ok from the nightly test"),
            StepCompleted(
                step_name="test", step_key="test", kind="script", step_id=sid, node_path=path, succeeded=True
            ),
            RunCompleted(succeeded=True),
        )
        await wait_for(pilot, lambda: not app.run_active, what="the end of the run")
        await pilot.pause()
        assert "ok from the nightly test" in output()


def _nightly_up_to_its_test(run_id: str) -> list[EngineEventData]:
    """nightly: `build` ran, then `script test` started and printed."""
    s = scenarios.Script(run_id)
    s.emit(RunStarted(workflow_name="nightly"))
    s.start("body.0.body.0", "build")
    s.emit(StepOutput(step_id=f"step-{run_id}-body.0.body.0-0", step_name="build", line="building"))
    s.finish("body.0.body.0", "build")
    s.start("body.0.body.1", "test", "script")
    s.emit(StepOutput(step_id=f"step-{run_id}-body.0.body.1-0", step_name="test", line="testing"))
    return s.events


async def test_a_run_started_from_the_list_is_followed_whatever_was_highlighted_for_the_last_one() -> None:
    """A step highlighted while reading an earlier run held the output view through the next run
    started from the list: its title stayed `output: build` while that run went on elsewhere."""
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = _nightly_up_to_its_test  # type: ignore[assignment]
    async with app.run_test(size=BIG) as pilot:
        screen = main(app)

        async def run_nightly() -> str:
            before = app.view.root_run_id
            await select(pilot, app, "nightly")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.view.root_run_id not in (None, before), what="the run")
            await pilot.pause()
            return app.view.root_run_id  # type: ignore[return-value]

        await run_nightly()
        assert screen.log_pane.output_title == "script test"
        build = next(n.data for n in screen.tree.nodes_by_uid.values() if n.data and n.data.label == "build")
        screen.tree.select_uid(build.uid)
        await pilot.pause()
        assert screen.log_pane.output_title != "script test"  # reading build's output
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="the end of the first run")

        await run_nightly()
        assert screen.tree.cursor_node is None
        assert screen.log_pane.output_title == "script test"
        output = screen.log_pane.sources["output"]
        assert [output.get(i)[0] for i in range(len(output))] == ["testing"]
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="the end of the second run")


# ------------------------------------------------------------------ toasts in the history at 80×24


async def test_at_80x24_a_toast_in_the_history_leaves_the_status_line_readable() -> None:
    from runkon_flow.persistence.memory import InMemoryStore
    from runkon_flow.persistence.models import NewRun, RunStatus
    from textual.widgets import Footer, Static
    from textual.widgets._toast import Toast

    from runkon_tui.screens.runs import RunsScreen

    store = InMemoryStore()
    run = store.create_run(
        NewRun(workflow_name="fan-out-lint", run_id="01HZZHISTORY00000000000001", inputs={})
    )
    store.update_run_status(run.id, RunStatus.COMPLETED, None, None)
    app = make_app(store=store)
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await pilot.pause()
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        status = app.screen.query_one("#runs-status", Static)
        await wait_for(pilot, lambda: "newest first" in str(status.render()), what="the history")
        await pilot.pause()
        assert status.region.height == 2  # 80 columns: the status wraps
        app.notify("fan-out-lint completed in 12s", title="Run finished", timeout=30)
        await wait_for(pilot, lambda: list(app.screen.query(Toast)), what="the toast")
        await pilot.pause()
        footer = app.screen.query_one(Footer).region
        for toast in app.screen.query(Toast):
            assert not toast.region.overlaps(status.region), (toast.region, status.region)
            assert not toast.region.overlaps(footer)
        assert any("r resumes" in row for row in screen_text(app))


@pytest.mark.parametrize("size", [SMALL, (200, 50)], ids=["80x24", "200x50"])
@pytest.mark.parametrize("which", ["inbox", "search"])
async def test_toasts_on_the_inbox_and_the_search_sit_above_their_status_line(
    which: str, size: tuple[int, int]
) -> None:
    """As in the run history: their top rows hold what they are about — the waiting gates, the
    pattern being typed and the first hits. A toast (a run that ended meanwhile, a gate answered)
    dropped down over them at the top right; it sits at the bottom right now, just above the
    status line, which stays readable, and the footer."""
    from textual.geometry import Region
    from textual.widgets import Footer
    from textual.widgets._toast import Toast

    from runkon_tui.screens.inbox import GateInboxScreen
    from runkon_tui.screens.search import SearchScreen

    app = make_app()
    async with app.run_test(size=size, notifications=True) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_failure_clusters().events)
        await pilot.pause()
        app.clear_notifications()
        await pilot.press("i" if which == "inbox" else "s")
        kind = GateInboxScreen if which == "inbox" else SearchScreen
        await wait_for(pilot, lambda: isinstance(app.screen, kind), what=which)
        status_id = "#inbox-status" if which == "inbox" else "#search-status"
        await wait_for(
            pilot, lambda: str(app.screen.query_one(status_id).render()).strip(), what="its status"
        )
        app.notify(
            "review-pr failed after 1m20s: foreach 'review-items': 36 of 240 items failed",
            title="Run finished",
        )
        await wait_for(pilot, lambda: list(app.screen.query(Toast)), what="the toast")
        await pilot.pause()
        (toast,) = app.screen.query(Toast)
        status = app.screen.query_one(status_id).region
        top = app.screen.query_one("DataTable" if which == "inbox" else "#search-input").region
        top = Region(top.x, top.y, top.width, 3)  # the pattern box; the table's heading and first gates
        assert toast.region.bottom == status.y, (toast.region, status)  # right above it
        assert not toast.region.overlaps(top), (toast.region, top)
        assert not toast.region.overlaps(app.screen.query_one(Footer).region)
        assert toast.region.right >= size[0] - 2  # at the right (a toast keeps its margin)


# ------------------------------------------------------------------ --db into a folder that does not exist


async def test_the_header_says_when_the_run_database_does_not_exist_yet(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from runkon_flow.persistence.sqlite import SqliteStore

    from runkon_tui.host import open_workspace

    workflows = Path("tests/tui/fixtures/workflows").resolve()
    monkeypatch.chdir(tmp_path)
    opened = open_workspace([workflows], Path("typo/deeper/runs.db"))  # as typed after --db
    assert not (tmp_path / "typo").exists() and not opened.problems  # a look makes nothing
    note = "⚠ no runs yet: typo/deeper/runs.db does not exist yet"
    app = make_app(store=opened.store, store_note=opened.store_note, dirs=[workflows])
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert note in screen_text(app)[0]
        assert any(note[2:] in row for row in screen_text(app)[16:])  # the log
        feed(app, scenarios.foreach_mid_run().events)
        await pilot.pause()
        header = screen_text(app)[0]  # at 80 columns the run's state comes first: the note is shortened
        assert header.startswith(" ⚠ no") and "running" in header and "120 items" in header
    app = make_app(store=opened.store, store_note=opened.store_note, dirs=[workflows])
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_mid_run().events)  # wide enough: the note whole, all session
        await pilot.pause()
        header = screen_text(app)[0]
        assert note in header and "running" in header

    (tmp_path / "typo" / "deeper").mkdir(parents=True)
    SqliteStore(tmp_path / "typo" / "deeper" / "runs.db").close()
    again = open_workspace([workflows], tmp_path / "typo" / "deeper" / "runs.db")  # exists now
    assert again.store_note is None

    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "typo" / "runs.db"
    opened = open_workspace([workflows], deep)
    app = make_app(store=opened.store, store_note=opened.store_note, dirs=[workflows])
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        header = screen_text(app)[0]
        assert "…" in header and "does not exist yet" in header  # shortened in the middle


async def test_the_header_counts_one_workflow_as_one(tmp_path: Path) -> None:
    (tmp_path / "only.wf").write_text('workflow only {\n  script s { run = "true" }\n}\n')
    (tmp_path / "bad.wf").write_text("workflow bad {\n")
    app = make_app(dirs=[tmp_path])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        head = screen_text(app)[0]
        assert f"1 workflow in {tmp_path} · 1 broken" in head, head


@pytest.mark.parametrize("size", [SMALL, (200, 50)], ids=["80x24", "200x50"])
async def test_a_runs_check_warnings_toast_says_where_they_all_are_in_its_first_rows(
    size: tuple[int, int],
) -> None:
    """The toast a run's check warnings raise listed three whole warnings, each with its file and
    hint: at 80×24 the quarter of the height a toast has cut it in the first one's path, and
    `… and 1 more in the engine log` was never seen. It says where they all are first, then the
    first one's message (its file:line:col and the rest are in the engine log, whole)."""
    from textual.widgets._toast import Toast

    hint = "is not a command on PATH here (the run's PATH may differ)"
    warnings = [f"Script step 's{n}': 'missing-tool-{n}' {hint}" for n in range(2, 6)]
    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.warnings["review-one"] = warnings  # said as `<input>: warning: …` (no file here)
    async with app.run_test(size=size, notifications=True) as pilot:
        await start_review_run(pilot, app)
        warned = lambda: [t for t in app.screen.query(Toast) if "warning" in t._notification.title]  # noqa: E731
        await wait_for(pilot, warned, what="the warnings toast")
        await pilot.pause()
        (toast,) = warned()
        assert toast._notification.title == "review-one: 4 warnings"
        region = toast.region
        assert region.height <= size[1] // 4, region
        rows = screen_text(app)[region.y : region.bottom]
        shown = " ".join(row[region.x : region.right].strip("▌ ") for row in rows)
        where = "review-one: 4 warnings all 4 in the engine log (l); the first: Script step"
        assert shown.startswith(where), shown
        assert "<input>" not in shown  # the location is in the log, not in the toast's rows
        engine_log = [line.text for line in app.view.engine_log]
        assert all(f"<input>: warning: {w}" in engine_log for w in warnings), engine_log  # whole
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="the run to end")
