"""A failed step's output view ends with why it failed. The error was shown only for a step with
no output at all: review-swarm's review-style (an agent whose output is its prompt) read
`Review PR-1234 for style and naming.` and nothing more when `n` (next failure) landed on it —
the reason was only in the errors log."""

from __future__ import annotations

from runkon_tui.widgets.log_pane import LogPane
from tests.tui import scenarios
from tests.tui.conftest import feed, make_app, pane_lines


async def test_the_output_of_a_failed_step_ends_with_its_error() -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        feed(app, scenarios.failed_run().events)
        await pilot.pause()
        pane = app.screen.query_one(LogPane)
        assert pane.output_title == "review-file"  # the run's last step, which failed
        assert pane_lines(pane) == [
            ("reading README.md", "info"),
            ("Traceback: boom", "info"),
            ("exit 1", "info"),
            ("✗ failed: agent 'review-file' exited with code 1", "error"),
        ]
        assert pane.sources["output"].total == 4


async def test_a_completed_step_s_output_is_its_output_only() -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        script = scenarios.failed_run()
        feed(app, script.events[:8])  # up to the end of the first `test` step: it completed
        await pilot.pause()
        pane = app.screen.query_one(LogPane)
        assert pane.output_title == "script test"
        assert pane_lines(pane) == [("1 failed", "info")]
