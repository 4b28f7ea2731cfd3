"""The drain tick is the UI's turn: engine threads that emit during it wait until it ends, so a
tick is not stretched by eight engine threads taking the interpreter lock (docs/dashboard.md)."""

from __future__ import annotations

import threading

import pytest
from runkon_flow.events import EngineEventData, RunStarted

from runkon_tui import bridge as bridge_module
from runkon_tui.bridge import EventBridge
from tests.tui.conftest import make_app


def _event() -> EngineEventData:
    return EngineEventData(timestamp=1, ts=1.0, run_id="run", event=RunStarted(workflow_name="w"))


def test_an_event_emitted_during_the_ui_s_turn_is_queued_when_the_turn_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bridge_module, "UI_TURN_MAX_WAIT_S", 60.0)
    bridge = EventBridge()
    emitter = threading.Thread(target=bridge.emit, args=(_event(),), daemon=True)
    with bridge.ui_turn():
        emitter.start()
        emitter.join(0.2)
        assert emitter.is_alive() and len(bridge) == 0  # the engine thread waits its turn
    emitter.join(10)
    assert not emitter.is_alive() and len(bridge) == 1


def test_an_engine_thread_waits_for_a_stalled_ui_only_so_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge_module, "UI_TURN_MAX_WAIT_S", 0.01)
    bridge = EventBridge()
    with bridge.ui_turn():
        emitter = threading.Thread(target=bridge.emit, args=(_event(),), daemon=True)
        emitter.start()
        emitter.join(10)
        assert not emitter.is_alive() and len(bridge) == 1  # the UI still in its turn


def test_a_turn_that_raises_ends_and_never_holds_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge_module, "UI_TURN_MAX_WAIT_S", 60.0)
    bridge = EventBridge()
    with pytest.raises(ValueError), bridge.ui_turn():
        raise ValueError("a repaint failed")
    emitter = threading.Thread(target=bridge.emit, args=(_event(),), daemon=True)
    emitter.start()
    emitter.join(10)
    assert not emitter.is_alive() and len(bridge) == 1


async def test_the_dashboard_s_drain_tick_is_the_ui_s_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        bridge = app.session.bridge
        seen: list[bool] = []
        fold = app.session.fold_only
        monkeypatch.setattr(app.session, "fold_only", lambda: seen.append(bridge.ui_turn_on) or fold())
        bridge.emit(_event())
        app.drain()
        assert seen == [True] and not bridge.ui_turn_on  # the engine waits during the tick only
