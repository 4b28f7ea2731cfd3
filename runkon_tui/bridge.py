"""The event bridge: the engine's EventSink on one side, the UI's drain tick on the other.

The engine calls `emit()` synchronously on its own threads, thousands of times a second during a
fan-out, so `emit()` must never block and never touch Textual: it appends to a deque (atomic in
CPython, no lock needed) and returns. Frequent events are queued in a compact tuple form
(`run_view.compact`) that costs the garbage collector nothing while it waits for the next tick.
The UI drains the deque on a timer and folds the batch into the RunView. The few events a human
must see *now* (a gate waiting, the watched run finishing, the engine crashing) additionally call
`on_urgent`, which the app wires to a thread-safe `post_message`, so they do not wait for the
next tick.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

from runkon_flow.events import EngineEventData

from runkon_tui.run_view import compact

UrgentCallback = Callable[[EngineEventData], None]

#: Event types that wake the UI immediately when they concern the watched run (gates: any run).
URGENT_RUN_EVENTS = frozenset({"RunCompleted", "RunCancelled"})
URGENT_ANY_RUN = frozenset({"GateWaiting", "Panicked"})


class EventBridge:
    """An `EventSink` that queues events for the UI thread."""

    def __init__(self, on_urgent: UrgentCallback | None = None) -> None:
        self._queue: deque[EngineEventData | tuple] = deque()
        self._append = self._queue.append
        self._on_urgent = on_urgent
        self.watched_run_id: str | None = None

    def watch(self, run_id: str | None) -> None:
        """The run whose end is urgent; child runs end thousands of times and are not."""
        self.watched_run_id = run_id

    # ---- engine side (any thread)

    def emit(self, data: EngineEventData) -> None:
        self._append(compact(data))
        if self._on_urgent is None:
            return
        kind = data.event.type
        if kind in URGENT_ANY_RUN or (kind in URGENT_RUN_EVENTS and data.run_id == self.watched_run_id):
            # A sink must never raise into the engine (a closed app just drops the nudge).
            with contextlib.suppress(Exception):
                self._on_urgent(data)

    # ---- UI side

    def drain(self, limit: int | None = None) -> list[EngineEventData | tuple]:
        """Take up to `limit` queued events (all when None), oldest first."""
        queue = self._queue
        out: list[EngineEventData | tuple] = []
        popleft = queue.popleft
        n = len(queue) if limit is None else min(limit, len(queue))
        for _ in range(n):
            out.append(popleft())
        return out

    def __len__(self) -> int:
        return len(self._queue)
