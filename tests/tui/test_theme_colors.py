"""Every theme the theme picker offers colours the Rich-rendered lists (the runs table, search
hits) — including Textual's ANSI themes, whose colours are `ansi_green` and the like — and draws
the panes' borders visibly."""

from __future__ import annotations

import pytest
from rich.color import Color as RichColor
from textual.color import Color

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


def _contrast(a: Color, b: Color) -> float:
    """WCAG contrast ratio of two opaque colours (1 = the same, 21 = black on white)."""

    def luminance(color: Color) -> float:
        def channel(value: int) -> float:
            c = value / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = color.rgb
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)

    high, low = sorted((luminance(a) + 0.05, luminance(b) + 0.05), reverse=True)
    return high / low


async def _unfocused_border_contrast(app, pilot) -> float:  # type: ignore[no-untyped-def]
    await pilot.pause()
    pane = app.main_screen.log_pane  # the workflow list has the focus
    assert not pane.has_focus_within
    _, border = pane.styles.border_top
    _, background = pane.background_colors
    return _contrast(background + border, background)


@pytest.mark.parametrize("theme", ["runkon-dark", "runkon-light"])
async def test_our_themes_draw_the_unfocused_pane_borders_visibly(theme: str) -> None:
    """runkon-light's pane borders were `$panel-lighten-2`: white on near-white (1.07:1), so the
    panes had no visible edges. Both our themes now set `$pane-border` to at least 2:1."""
    app = make_app(theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await _unfocused_border_contrast(app, pilot) >= 2.0


async def test_every_theme_draws_the_unfocused_pane_borders() -> None:
    """Textual's themes do not set `$pane-border`: derived from the panel, never near-white on a
    light theme (ANSI themes use the terminal's own colours, which cannot be judged here)."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for name in sorted(app.available_themes):
            if name.startswith("ansi-"):
                continue
            app.theme = name
            assert await _unfocused_border_contrast(app, pilot) >= 1.5, name
