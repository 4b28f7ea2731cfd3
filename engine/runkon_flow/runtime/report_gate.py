"""`ReportGate`: the events of write-behind runs wait until the store has committed what they report.

A foreach child's rows are written behind (queued, committed in groups). Its events — above all
`StepCompleted` — must not reach a sink (live view, dashboard, `--events` file) before the rows
they describe are committed: "reported means durable" (docs/persistence.md). So a write-behind
run hands its events to the gate of its top-level run, in order, and they are delivered once a
commit that covers them has returned: the foreach worker's durable item write (which takes every
queued row along), a foreach step's end, a run's end, or the run monitor's flush (every 0.1 s).

Protocol: `mark()` before the commit, `release(mark)` after it returns — everything held before
the commit began is then delivered, in the order it was held. A store that applies every write
at once (`applies_writes_at_once`, the in-memory store) needs no gate.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from runkon_flow.events import EngineEventData

__all__ = ["ReportGate", "needs_gate"]

log = logging.getLogger("runkon_flow.engine")


def needs_gate(store: object) -> bool:
    """True unless the store says every write is applied before the call returns."""
    return not getattr(store, "applies_writes_at_once", False)


class ReportGate:
    """Events held until a commit covers them, delivered in the order they were held."""

    __slots__ = ("_deliver", "_held", "_lock", "_next")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # `_held`, `_next`
        self._deliver = threading.Lock()  # one releaser at a time, so delivery keeps the order
        self._held: deque[tuple[int, Sequence[Any], EngineEventData]] = deque()
        self._next = 0  # sequence number of the next held event

    def hold(self, sinks: Sequence[Any], run_id: str, event: Any) -> None:
        """Keep `event` (timestamped now) for `sinks` until a commit that starts later returns."""
        if not sinks:
            return
        data = EngineEventData.now(run_id, event)
        with self._lock:
            self._held.append((self._next, sinks, data))
            self._next += 1

    def mark(self) -> int:
        """Call before a commit: everything held so far is covered by it."""
        return self._next

    def release(self, mark: int) -> None:
        """Call after that commit returned: deliver every event held before `mark`."""
        if not self._held:
            return
        with self._deliver:
            with self._lock:
                batch = []
                while self._held and self._held[0][0] < mark:
                    batch.append(self._held.popleft())
            for _, sinks, data in batch:
                for sink in sinks:
                    try:
                        sink.emit(data)
                    except Exception:
                        log.exception(
                            "event sink %r raised on %s; continuing with remaining sinks",
                            sink,
                            data.event.type,
                        )

    def release_all(self) -> None:
        """Deliver everything held (after a flush of the store)."""
        self.release(self._next)
