"""Wake-ups that reach a store from other processes (PostgreSQL's LISTEN/NOTIFY), handed to whoever
waits for them in this process. The store sits below the engine and approvals, so it cannot call
them: they register here (approvals registers its gate wake-ups at import)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

log = logging.getLogger("runkon_flow.persistence")

_lock = threading.Lock()
_gate_listeners: list[Callable[[str], None]] = []
_cancel_listeners: list[weakref.WeakMethod] = []


def on_gate_decided(listener: Callable[[str], None]) -> None:
    """Call `listener(step_id)` whenever any process approves or rejects a gate this store sees."""
    with _lock:
        if listener not in _gate_listeners:
            _gate_listeners.append(listener)


def on_cancel_requested(listener: Callable[[str], None]) -> None:
    """Call the bound method `listener(run_id)` when any process asks to cancel a run. Held weakly:
    an engine's run monitor registers itself and is forgotten with it."""
    with _lock:
        _cancel_listeners[:] = [ref for ref in _cancel_listeners if ref() is not None]
        _cancel_listeners.append(weakref.WeakMethod(listener))  # type: ignore[arg-type]


def cancel_requested(run_id: str) -> None:
    with _lock:
        listeners = [ref() for ref in _cancel_listeners]
    for listener in listeners:
        if listener is None:
            continue
        try:
            listener(run_id)
        except Exception:
            log.exception("cancel wake-up for run %s failed", run_id)


def gate_decided(step_id: str) -> None:
    with _lock:
        listeners = list(_gate_listeners)
    for listener in listeners:
        try:
            listener(step_id)
        except Exception:  # a waiter's problem must not stop the store's listener thread
            log.exception("gate wake-up for step %s failed", step_id)
