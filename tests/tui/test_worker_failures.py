"""A bug in one of the dashboard's background jobs is reported, and the dashboard stays up: it
may be hosting a run. Textual's default would close the app and print the traceback on exit."""

from __future__ import annotations

import pytest

from runkon_tui.screens import runs as runs_module
from runkon_tui.screens.inbox import GateInboxScreen
from runkon_tui.screens.runs import RunsScreen
from tests.tui.conftest import make_app, wait_for
from tests.tui.history import history_store


def _status(app, selector: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one(selector).render())


async def _failure_on(pilot, key: str, selector: str) -> str:  # type: ignore[no-untyped-def]
    """Open the screen `key` leads to; its status line once it says what failed."""
    await pilot.pause()
    await pilot.press(key)
    await wait_for(pilot, lambda: "could not" in _status(pilot.app, selector), what=f"failure in {selector}")
    assert pilot.app.is_running and pilot.app.return_code is None
    return _status(pilot.app, selector)


async def test_a_failing_runs_list_is_shown_and_g_tries_again(monkeypatch: pytest.MonkeyPatch) -> None:
    real = runs_module.tone_text

    def broken(*args):  # type: ignore[no-untyped-def]
        raise ValueError("counts went wrong")  # as Rich refused the ANSI themes' colours once

    monkeypatch.setattr(runs_module, "tone_text", broken)
    app = make_app(store=history_store())
    async with app.run_test(size=(120, 40)) as pilot:
        status = await _failure_on(pilot, "h", "#runs-status")
        assert "could not list the runs: ValueError: counts went wrong" in status
        assert any("could not list the runs" in line.text for line in app.view.error_log)
        assert any("could not list the runs" in str(n.message) for n in app._notifications)
        assert isinstance(app.screen, RunsScreen)
        await pilot.resize_terminal(100, 30)  # the re-fill for the new width fails the same way
        await pilot.pause()
        await pilot.pause()
        assert app.is_running and "could not list the runs" in _status(app, "#runs-status")

        monkeypatch.setattr(runs_module, "tone_text", real)
        await pilot.press("g")
        await wait_for(pilot, lambda: len(app.screen.rows) == 3, what="runs after the retry")  # type: ignore[attr-defined]
        assert "(newest first)" in _status(app, "#runs-status")
    # (run_test re-raises the error that would have closed the app: none did)


async def test_a_failing_gate_inbox_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GateInboxScreen, "_fill", lambda *a: (_ for _ in ()).throw(KeyError("gate")))
    app = make_app(store=history_store())
    async with app.run_test(size=(120, 40)) as pilot:
        status = await _failure_on(pilot, "i", "#inbox-status")
        assert "could not read the gate inbox: KeyError: 'gate'" in status
        assert isinstance(app.screen, GateInboxScreen)
        await pilot.pause(2.5)  # two more reloads fail the same way: reported once, not each second
        reported = [line for line in app.view.error_log if "could not read the gate inbox" in line.text]
        assert len(reported) == 1


async def test_a_failing_job_of_the_app_goes_to_the_errors_log() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()

        def job() -> None:
            raise OSError("disk went away")

        app.run_worker(job, thread=True, group="test", name="save the settings", exit_on_error=False)
        await wait_for(
            pilot,
            lambda: any(
                "could not save the settings: OSError: disk went away" in line.text
                for line in app.view.error_log
            ),
            what="error log line",
        )
        assert app.is_running and app.return_code is None
