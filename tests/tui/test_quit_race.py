"""Keys typed right after `q` reach the dashboard while it is already leaving: they do nothing.
A screen they would push is never composed by the shutdown, and its `on_mount` then fails on
children it does not have — seen as a traceback on the way out after `q` and `s` typed quickly
over a finished run (the search screen)."""

from __future__ import annotations

import pytest
from textual import events

from tests.tui.conftest import make_app, wait_for


@pytest.mark.parametrize("key", ["h", "i"])  # the history, the gate inbox
async def test_a_key_typed_just_after_q_opens_nothing_while_the_dashboard_leaves(key: str) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        # both keys queued before `q` is handled, as a terminal delivers two quick presses
        app.post_message(events.Key("q", "q"))
        app.post_message(events.Key(key, key))
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert app.return_code == 0
