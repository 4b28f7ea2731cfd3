"""A worker's report that arrives while the dashboard is being torn down changes nothing and
raises nothing: Textual prunes the screens (children first) after it stops running, and queued
messages may still be handled meanwhile."""

from __future__ import annotations

from runkon_tui.app import SessionReport
from runkon_tui.session import AttachEnded
from runkon_tui.widgets.log_pane import LogView
from tests.tui.conftest import make_app


async def test_a_report_handled_while_the_screens_are_pruned_is_ignored() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None
        await screen.query_one(LogView).remove()  # what pruning does first: the children go
        app._running = False  # what App._shutdown sets before it prunes the screens
        try:
            app.on_session_report(SessionReport(AttachEnded("01HZZNOTHING0000000000000", "completed")))
        finally:
            app._running = True  # let the test's own teardown run as usual
