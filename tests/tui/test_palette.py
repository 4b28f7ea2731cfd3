"""The command palette (`ctrl+p`) reaches every action the key table lists while it applies —
the panes' too — without Textual's own commands that duplicate ours, and the theme picker (`t`)
marks the theme in use (docs/dashboard.md, "Keys")."""

from __future__ import annotations

from typing import Any

from textual.command import CommandList, CommandPalette

from runkon_tui.app import RunkonApp
from tests.tui import scenarios
from tests.tui.conftest import feed, make_app, wait_for


async def palette(pilot: Any, app: RunkonApp, query: str = "", key: str = "ctrl+p") -> list[str]:
    """What the palette lists after typing `query` (the commands shown, in order); it is closed again."""
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
    if query:
        await pilot.press(*query)
    listing = app.screen.query_one(CommandList)
    await pilot.pause(0.6)  # the palette gathers its hits on a worker, then waits a moment
    shown = [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, CommandPalette), what="the palette closed")
    return [line.splitlines()[0].strip() for line in shown]


async def test_the_palette_has_each_of_our_keys_once_and_textual_s_duplicates_are_gone() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        titles = await palette(pilot, app)
        for ours in ("Help  (?)", "Theme  (t)", "Quit  (q)", "Zoom  (z)", "Gate inbox  (i)", "Runs  (h)"):
            assert ours in titles, titles
        for textual_s in ("Theme", "Quit", "Keys", "Maximize", "Minimize"):
            assert textual_s not in titles, titles
        assert "Screenshot" in titles  # nothing of ours saves a picture of the screen


async def test_run_is_offered_only_where_its_key_runs_the_workflow() -> None:
    """With the tree focused its enter opens a node, and the footer has no Run: the palette
    offered `Run  (enter)` there all the same. It offers what the focused pane leaves to it."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None
        assert "Run  (enter)" in await palette(pilot, app)  # the list has the focus
        screen.tree.focus()
        await pilot.pause()
        titles = await palette(pilot, app)
        assert "Run  (enter)" not in titles, titles
        assert "Help  (?)" in titles and "Runs  (h)" in titles  # the rest still applies
        screen.workflow_list.focus()
        await pilot.pause()
        assert "Run  (enter)" in await palette(pilot, app)


async def test_rerun_and_retries_are_in_the_palette_while_they_apply() -> None:
    """`rerun` found "No matches found" though the tree's footer said `R Rerun`."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not any(t.startswith("Rerun") for t in await palette(pilot, app, "rerun"))  # nothing ran
        feed(app, scenarios.failed_run().events)
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None
        screen.tree.focus()
        await pilot.press("down")  # the tree's cursor on its second step
        label = screen.tree.cursor_node.data.label  # type: ignore[union-attr]
        assert f"Rerun from {label}  (R)" in await palette(pilot, app, "rerun")
        assert "Search  (s)" in await palette(pilot, app, "search")

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not [t for t in await palette(pilot, app, "retry") if t.startswith("Retry")]
        feed(app, scenarios.foreach_failure_clusters().events)  # finished, 36 items failed
        await pilot.pause()
        found = await palette(pilot, app, "retry")
        assert "Retry failed items of foreach review-items  (E)" in found, found
        assert "Retry failure cluster 1  (e)" in found, found


async def test_the_theme_picker_marks_the_theme_in_use() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        themes = await palette(pilot, app, key="t")
        assert "runkon-dark  ✓ current" in themes and "runkon-light" in themes, themes
        app.theme = "runkon-light"
        await pilot.pause()
        assert "runkon-light  ✓ current" in await palette(pilot, app, "light", key="t")


async def test_with_no_step_under_the_tree_cursor_rerun_is_dimmed_and_says_why() -> None:
    """A run started from the list leaves no step highlighted: the footer lit `R Rerun` though
    `R` did nothing and the palette had no rerun. Now both wait for a step under the cursor."""
    from tests.tui.test_key_docs import _footer_keys

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        feed(app, scenarios.failed_run().events)
        screen = app.main_screen
        assert screen is not None
        screen.tree.forget_cursor()  # as starting a run from the list does
        screen.tree.focus()
        screen.update_bindings()
        await pilot.pause()
        await pilot.pause()
        assert "R Rerun" not in _footer_keys(app, lit=False)  # dimmed: left out at 80 columns
        assert not [t for t in await palette(pilot, app, "rerun") if t.startswith("Rerun")]
        await pilot.press("R")
        await pilot.pause()
        assert any("step to rerun from" in n.message for n in app._notifications)
        await pilot.press("down")
        await pilot.pause()
        await pilot.pause()
        assert "R Rerun" in _footer_keys(app)
        assert any(t.startswith("Rerun from ") for t in await palette(pilot, app, "rerun"))
