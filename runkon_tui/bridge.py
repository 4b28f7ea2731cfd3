"""The event bridge: the engine's EventSink on one side, the UI's drain tick on the other.

The engine calls `emit()` synchronously on its own threads, thousands of times a second during a
fan-out, so `emit()` must never block and never touch Textual: it appends to a deque (atomic in
CPython, no lock needed) and returns. Frequent events are queued in a compact tuple form
(`run_view.compact`) that costs the garbage collector nothing while it waits for the next tick.
The UI drains the deque on a timer and folds the batch into the RunView. The few events a human
must see *now* (a gate waiting, the watched run finishing, the engine crashing) additionally call
`on_urgent`, which the app wires to a thread-safe `post_message`, so they do not wait for the
next tick.

A fan-out child's quiet events (its start, steps, output and metrics, its successful ends: five
of the eight events an item sends) are held here instead of queued. Nobody looks at them unless
the child fails, warns, waits at a gate or is selected, and at 10,000 items queuing and folding
them was a third of what the dashboard cost the run. Of a child that ends well the UI gets only
its announcement (`ChildRunStarted`) and its item's events; the bridge keeps the events of the
last `SETTLED_KEPT` such children for a look, and the UI reads older ones from the store. Any
other event of a child sends its held backlog first and ends the holding; the UI can ask for a
child's backlog (`release`), and a running child's later events are then sent as they come.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    GateWaiting,
    Panicked,
    RunCancelled,
    RunCompleted,
)
from runkon_flow.observe.compact import QUIET_CHILD_CLASSES, QUIET_IF_OK_CLASSES

from runkon_tui.run_view import ViewLimits, compact

UrgentCallback = Callable[[EngineEventData], None]

#: Events that wake the UI at once, by class (emit runs for every event: a class lookup is the
#: cheapest test): True when urgent for any run (gates, crashes), False only for the watched run.
_URGENT: dict[type, bool] = {RunCompleted: False, RunCancelled: False, GateWaiting: True, Panicked: True}
#: Settled fan-out children whose events the bridge keeps for a look: as many as the run model
#: keeps finished children (`ViewLimits.child_runs`).
SETTLED_KEPT = ViewLimits().child_runs


class _HeldChild:
    """A running fan-out child's quiet events, not sent yet. The lock is the child's own: only its
    engine thread and a UI `release` of this child ever take it, so workers never queue on it."""

    __slots__ = ("events", "lock", "open")

    def __init__(self) -> None:
        self.events: list[EngineEventData] = []
        self.lock = threading.Lock()
        self.open = True


class EventBridge:
    """An `EventSink` that queues events for the UI thread."""

    def __init__(self, on_urgent: UrgentCallback | None = None) -> None:
        self._queue: deque[EngineEventData | tuple] = deque()
        self._append = self._queue.append
        self._on_urgent = on_urgent
        self._held: dict[str, _HeldChild] = {}
        self._settled: OrderedDict[str, list[EngineEventData]] = OrderedDict()  # oldest first
        self.watched_run_id: str | None = None

    def watch(self, run_id: str | None) -> None:
        """The run whose end is urgent; child runs end thousands of times and are not."""
        self.watched_run_id = run_id

    # ---- engine side (any thread)

    def emit(self, data: EngineEventData) -> None:
        ev = data.event
        cls = ev.__class__
        held = self._held
        if held:
            child = held.get(data.run_id)
            if child is not None and self._hold(child, data, cls, ev):
                return
        if cls is ChildRunStarted and ev.item_id is not None:
            held[ev.child_run_id] = _HeldChild()  # before the child's own events: it starts after this
        self._append(compact(data))
        self._nudge(data, cls)

    def _nudge(self, data: EngineEventData, cls: type) -> None:
        """Wake the UI now for an urgent event."""
        any_run = _URGENT.get(cls)
        if self._on_urgent is None or any_run is None:
            return
        if any_run or data.run_id == self.watched_run_id:
            # A sink must never raise into the engine (a closed app just drops the nudge).
            with contextlib.suppress(Exception):
                self._on_urgent(data)

    def _hold(self, child: _HeldChild, data: EngineEventData, cls: type, ev: Any) -> bool:
        """A held child's event: kept if quiet (its successful end too: nothing of it is sent);
        any other event sends the backlog, then itself, and ends the holding. False: the child
        is not held any more (released), so the event goes as any other."""
        quiet = cls in QUIET_CHILD_CLASSES or (cls in QUIET_IF_OK_CLASSES and ev.succeeded)
        with child.lock:
            if not child.open:
                return False
            if quiet:
                events = child.events
                events.append(data)
                if cls is not RunCompleted:
                    return True
                child.open = False
                child.events = []
                self._keep_settled(data.run_id, events)  # before it stops being held: see release
                self._held.pop(data.run_id, None)
                return True  # its item's FanOutItemCompleted tells the UI
            child.open = False
            self._held.pop(data.run_id, None)
            for event in child.events:
                self._append(compact(event))
            child.events = []
            self._append(compact(data))  # under the lock: a release cannot slip in between
        self._nudge(data, cls)
        return True

    def _keep_settled(self, run_id: str, events: list[EngineEventData]) -> None:
        """The last `SETTLED_KEPT` settled children's events, for a look at a just-finished item
        (older ones: the store). OrderedDict's methods are single C calls, atomic under the GIL:
        no lock between workers."""
        settled = self._settled
        settled[run_id] = events
        if len(settled) > SETTLED_KEPT:
            with contextlib.suppress(KeyError):  # another worker trimmed it to empty meanwhile
                settled.popitem(last=False)

    def release(self, run_id: str) -> list[EngineEventData]:
        """UI side: the held events of child `run_id` (someone looks at it). A running child's
        later events are then sent as they come; a settled child's are all here while it is one of
        the last `SETTLED_KEPT`. Empty when the bridge has nothing of it (any more)."""
        child = self._held.pop(run_id, None)
        if child is not None:
            with child.lock:
                if child.open:
                    child.open = False
                    events, child.events = child.events, []
                    return events
        return self._settled.pop(run_id, None) or []

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
