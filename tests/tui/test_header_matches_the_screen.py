"""The header, the tree and the fan-out grid describe the same thing: the header's item counts
are those of the fan-out the grid shows, and filtering the workflow list does not move the tree
away from the run the header names (docs/dashboard.md "Header", "Filter")."""

from __future__ import annotations

from pathlib import Path

import pytest

from runkon_tui.screens.main import MainScreen
from runkon_tui.tree_model import NodeSpec
from tests.tui.conftest import real_app, select, wait_for

TWO = """workflow two-fanouts {
  foreach first {
    over = static
    scope = { items = "a,b,c,d,e" }
    workflow = one
    max_parallel = 4
    inputs = { name = "{{item.id}}" }
  }
  foreach second {
    over = static
    scope = { items = "x,y" }
    workflow = one
    max_parallel = 4
    inputs = { name = "{{item.id}}" }
  }
}
"""
ONE = 'workflow one {\n  inputs { name default = "" }\n  script work { run = "true" }\n}\n'


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "two-fanouts.wf").write_text(TWO)
    (folder / "one.wf").write_text(ONE)
    (folder / "one-more.wf").write_text(ONE.replace("workflow one ", "workflow one-more "))
    monkeypatch.chdir(folder)
    return folder


def header(screen: MainScreen) -> str:
    return str(screen.header.render())


def foreach_node(screen: MainScreen, name: str):  # type: ignore[no-untyped-def]
    stack = [screen.tree.root]
    while stack:
        node = stack.pop()
        spec = node.data
        if isinstance(spec, NodeSpec) and spec.kind == "foreach" and spec.label.split()[-1] == name:
            return node
        stack.extend(node.children)
    raise AssertionError(f"no foreach {name} in the tree")


async def run_two(pilot, app) -> MainScreen:  # type: ignore[no-untyped-def]
    await select(pilot, app, "two-fanouts")
    await pilot.press("enter")
    ended = lambda: app.view.root is not None and not app.run_active  # noqa: E731
    await wait_for(pilot, ended, what="run end", timeout=60)
    await pilot.pause()
    screen = app.main_screen
    assert screen is not None and app.view.status == "completed"
    return screen


async def test_the_headers_item_counts_are_the_fan_out_the_grid_shows(two: Path) -> None:
    """After the run, the tree's cursor on the first foreach put its 5 items in the grid while
    the header still counted the second (last active) fan-out's 2."""
    app = real_app(two)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await run_two(pilot, app)
        assert "2 items: 2 completed" in header(screen)  # the active fan-out: the last started
        screen.tree.move_cursor(foreach_node(screen, "first"))
        await pilot.pause()
        assert screen.grid.fan is not None and screen.grid.fan.name == "first"
        assert "5 items: 5 completed" in header(screen), header(screen)


async def test_filtering_the_list_keeps_the_run_on_screen_until_the_highlight_moves(two: Path) -> None:
    """A filter that hides the workflow on screen moved the tree to the first match (`one`) while
    the header still named two-fanouts' run: now the tree, the header and the grid stay on the run
    until the user moves the list's highlight; a filter it matches keeps it highlighted."""
    app = real_app(two)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await run_two(pilot, app)
        screen.workflow_list.focus()
        await pilot.press("slash", "o", "n", "e", "enter")
        await pilot.pause()
        assert screen.workflow_list.text_filter == "one"
        assert screen.workflow_list.highlighted_path is not None
        assert screen.workflow_list.highlighted_path.endswith("/one.wf")  # the first match
        assert screen.tree_workflow == "two-fanouts"
        assert "two-fanouts" in header(screen) and "2 items: 2 completed" in header(screen)
        assert screen.grid.fan is not None and screen.grid.fan.name == "second"
        assert str(screen.tree_pane.border_title) == "Steps · two-fanouts"

        await pilot.press("slash", "ctrl+u", *"two", "enter")  # it matches again: highlighted
        await pilot.pause()
        assert screen.workflow_list.text_filter == "two"
        assert screen.workflow_list.highlighted_path.endswith("two-fanouts.wf")
        assert screen.tree_workflow == "two-fanouts"

        await pilot.press("slash", "ctrl+u", *"one", "enter")  # hidden again, then the user moves
        await pilot.pause()
        assert screen.tree_workflow == "two-fanouts"
        await pilot.press("down")  # the highlight is the user's now: the tree follows it
        await pilot.pause()
        assert screen.tree_workflow == "one-more"
        assert str(screen.tree_pane.border_title) == "Steps · one-more"
