"""Every theme the theme picker offers colours the Rich-rendered lists (the runs table, search
hits) — including Textual's ANSI themes, whose colours are `ansi_green` and the like."""

from __future__ import annotations

import pytest
from rich.color import Color as RichColor

from runkon_tui.screens.runs import RunsScreen
from runkon_tui.widgets.markup import theme_color, tone_text
from tests.tui.conftest import make_app, wait_for
from tests.tui.history import history_store


async def test_every_theme_gives_the_tones_a_rich_colour() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for name in sorted(app.available_themes):
            app.theme = name
            await pilot.pause()
            for variable in ("success", "error", "warning", "primary"):
                color = theme_color(app, variable)
                assert color is None or isinstance(color, RichColor), (name, variable)
            assert tone_text(app, "failed", "✗ failed").plain == "✗ failed"
            assert theme_color(app, "success") is not None, name  # every theme has one


@pytest.mark.parametrize("theme", ["ansi-dark", "ansi-light"])
async def test_the_runs_screen_fills_under_the_ansi_themes(theme: str) -> None:
    app = make_app(store=history_store(), theme=theme)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rows, what="runs")
        await pilot.pause()
        status = str(app.screen.query_one("#runs-status").render())
        assert "(newest first)" in status, status
