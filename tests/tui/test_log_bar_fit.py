"""The log pane's bar in a narrow terminal: `errors (N)` and the follow state stay on screen; the
output view's step name gives way (cut in its middle). At 60×20 a finished failed run's bar read
`Log: engine | output: review-file | errors (5)   [follo` — and with a longer step name (an item
of a fan-out: `housekeeping[rotate-logs] › run-task`) the errors count went too."""

from __future__ import annotations

from rich.cells import cell_len

from runkon_tui.widgets.log_pane import LogPane
from tests.tui import scenarios
from tests.tui.conftest import feed, make_app


async def test_the_errors_count_and_follow_state_stay_in_a_60_column_log_bar() -> None:
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        feed(app, scenarios.failed_run().events)
        await pilot.pause()
        pane = app.screen.query_one(LogPane)
        bar = pane.query_one("#log-bar")

        def shown() -> str:
            return str(bar.render())

        assert pane.output_title == "review-file"
        assert shown().endswith("errors (5) [follow ●]"), shown()
        assert cell_len(shown()) <= bar.content_size.width

        pane.set_output(None, "housekeeping[rotate-logs] › run-task")
        await pilot.pause()
        assert shown() == "Log: engine | output: house…n-task | errors (5) [follow ●]", shown()
        assert cell_len(shown()) <= bar.content_size.width


async def test_a_wide_log_bar_is_left_as_it_was() -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        feed(app, scenarios.failed_run().events)
        await pilot.pause()
        bar = app.screen.query_one(LogPane).query_one("#log-bar")
        assert str(bar.render()) == "Log: engine | output: review-file | errors (5)   [follow ●]"
