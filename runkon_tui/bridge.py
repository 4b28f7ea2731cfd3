"""The event bridge: the engine's EventSink on one side, the UI's drain tick on the other.

The engine calls `emit()` synchronously on its own threads, thousands of times a second during a
fan-out, so `emit()` never touches Textual and blocks only for the UI's turn: it appends to a
deque (atomic in CPython, no lock needed) and returns. The UI's turn (`ui_turn`) is its drain
tick: an engine thread that emits meanwhile waits for the tick to end (a few milliseconds, at
most `UI_TURN_MAX_WAIT_S`). Without it a tick that needs 3 ms of CPU took 50–300 ms of wall time
on a busy fan-out, waiting for the interpreter lock behind eight engine threads, and keys and
repaints waited with it; with it the run takes no longer (the engine could not run during the
tick's CPU time anyway), bench/bench_dashboard.py. Frequent events are queued in a compact tuple form
(`run_view.compact`) that costs the garbage collector nothing while it waits for the next tick.
The UI drains the deque on a timer and folds the batch into the RunView. The few events a human
must see *now* (a gate waiting, the watched run finishing, the engine crashing) additionally call
`on_urgent`, which the app wires to a thread-safe `post_message`, so they do not wait for the
next tick.

A fan-out child's quiet events (its start, steps, output, metrics and notes, its successful
ends: five of the eight events an item sends) are held here instead of queued. Nobody looks at
them unless the child fails, warns, waits at a gate or is selected, and at 10,000 items queuing
and folding them was a third of what the dashboard cost the run. Of a child that ends well the UI gets only
its announcement (`ChildRunStarted`) and its item's events; the bridge keeps the events of the
last `SETTLED_KEPT` such children for a look, and the UI reads older ones from the store. Any
other event of a child sends its held backlog first and ends the holding; the UI can ask for a
child's backlog (`release`), and a running child's later events are then sent as they come.
A run followed through the store (`StoreFollower`) hands its events over as stored rows
(`emit_stored`): a held child's quiet ones are kept as they are and decoded only when the child
is looked at, which took most of what following a 10,000-item fan-out cost the dashboard.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

from runkon_flow.event_log import envelope_of
from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    GateWaiting,
    Panicked,
    RunCancelled,
    RunCompleted,
)
from runkon_flow.observe.compact import (
    NOTE_LEVELS,
    QUIET_CHILD_CLASSES,
    QUIET_IF_NOTE_CLASSES,
    QUIET_IF_OK_CLASSES,
    quiet_stored,
)
from runkon_flow.persistence.models import StoredEvent

from runkon_tui.run_view import ViewLimits, compact

UrgentCallback = Callable[[EngineEventData], None]

#: Events that wake the UI at once, by class (emit runs for every event: a class lookup is the
#: cheapest test): True when urgent for any run (gates, crashes), False only for the watched run.
_URGENT: dict[type, bool] = {RunCompleted: False, RunCancelled: False, GateWaiting: True, Panicked: True}
#: Settled fan-out children whose events the bridge keeps for a look: as many as the run model
#: keeps finished children (`ViewLimits.child_runs`).
SETTLED_KEPT = ViewLimits().child_runs

#: How a held child's event is treated, by class: 0 quiet, 1 quiet when it reports success,
#: 2 quiet when it is a note (`NOTE_LEVELS`, not a warning); missing: never quiet (it ends the
#: holding). One dict lookup per event on the engine threads.
_QUIET_KIND: dict[type, int] = {
    **{cls: 0 for cls in QUIET_CHILD_CLASSES},
    **{cls: 1 for cls in QUIET_IF_OK_CLASSES},
    **{cls: 2 for cls in QUIET_IF_NOTE_CLASSES},
}
#: Appended to a child's backlog once its holding ended and the backlog was taken: an event found
#: after it was not taken and must be queued by the thread that added it.
_TAKEN = object()
#: The longest an engine thread waits for a UI tick to end (a tick is a few milliseconds; the bound
#: only matters if the UI thread stalls).
UI_TURN_MAX_WAIT_S = 0.05


class EventBridge:
    """An `EventSink` that queues events for the UI thread.

    Holding a child costs its engine thread a dict lookup and a list append per quiet event, no
    lock: a 10,000-item fan-out sends 50,000 of them. The lock (`_sealing`) is taken only where a
    holding ends (the UI asks for the child, or it sends an event someone must see), and by an
    engine thread that finds the holding ended under it, to learn whether its event was taken
    with the backlog or must be queued."""

    def __init__(self, on_urgent: UrgentCallback | None = None) -> None:
        self._queue: deque[EngineEventData | tuple] = deque()
        self._append = self._queue.append
        self._on_urgent = on_urgent
        self._held: dict[str, list[Any]] = {}  # running fan-out child → its quiet events so far
        self._settled: OrderedDict[str, list[EngineEventData]] = OrderedDict()  # oldest first
        self._sealing = threading.Lock()
        self.watched_run_id: str | None = None
        self._ui_turn = False  # a UI tick is running: emitting engine threads wait for its end
        self._ui_done = threading.Event()
        self._ui_done.set()

    def watch(self, run_id: str | None) -> None:
        """The run whose end is urgent; child runs end thousands of times and are not."""
        self.watched_run_id = run_id

    # ---- engine side (any thread)

    def emit(self, data: EngineEventData) -> None:
        if self._ui_turn:
            self._ui_done.wait(UI_TURN_MAX_WAIT_S)
        ev = data.event
        cls = ev.__class__
        held = self._held
        if held:
            backlog = held.get(data.run_id)
            if backlog is not None:
                kind = _QUIET_KIND.get(cls)
                if kind == 0 or (kind == 1 and ev.succeeded) or (kind == 2 and ev.level in NOTE_LEVELS):
                    self._hold(backlog, data, cls is RunCompleted)
                else:
                    self._end_holding(backlog, data, cls)
                return
        if cls is ChildRunStarted and ev.item_id is not None:
            held[ev.child_run_id] = []  # before the child's own events: it starts after this
        self._append(compact(data))
        self._nudge(data, cls)

    def emit_stored(self, row: StoredEvent) -> None:
        """A followed run's stored event (`StoreFollower`): a held child's quiet event is kept as
        stored and decoded only if someone looks at the child (`release`, `_end_holding`) — at
        10,000 items decoding those 40,000 events was most of what following a fan-out cost
        the dashboard. Any other is decoded and emitted; an unreadable one is dropped (logged)."""
        if self._ui_turn:
            self._ui_done.wait(UI_TURN_MAX_WAIT_S)
        held = self._held
        backlog = held.get(row.event_run_id) if held else None
        if backlog is not None and quiet_stored(row.kind, row.payload):
            self._hold(backlog, row, row.kind == "RunCompleted")
            return
        data = envelope_of(row)
        if data is not None:
            self.emit(data)

    def _nudge(self, data: EngineEventData, cls: type) -> None:
        """Wake the UI now for an urgent event."""
        any_run = _URGENT.get(cls)
        if self._on_urgent is None or any_run is None:
            return
        if any_run or data.run_id == self.watched_run_id:
            # A sink must never raise into the engine (a closed app just drops the nudge).
            with contextlib.suppress(Exception):
                self._on_urgent(data)

    def _hold(self, backlog: list[Any], data: EngineEventData | StoredEvent, completed: bool) -> None:
        """A quiet event of a held child: kept (its successful end too: nothing of it is sent;
        its item's FanOutItemCompleted tells the UI). `completed`: it is the child's end."""
        run_id = data.run_id if data.__class__ is not StoredEvent else data.event_run_id  # type: ignore[union-attr]
        backlog.append(data)
        held = self._held
        if completed:
            settled = self._settled
            settled[run_id] = backlog  # before it stops being held: see release
            if held.pop(run_id, None) is backlog:
                if len(settled) > SETTLED_KEPT:
                    with contextlib.suppress(KeyError):  # another worker trimmed it meanwhile
                        settled.popitem(last=False)
                return
            if settled.get(run_id) is backlog:  # the UI took it meanwhile, with or without this
                settled.pop(run_id, None)
        elif held.get(run_id) is backlog:
            return
        self._late(backlog, data)

    def _late(self, backlog: list[Any], data: EngineEventData) -> None:
        """The holding ended while `data` was being added: queue it unless it was taken with the
        backlog. Holdings end under `_sealing`, so once it is ours the backlog is sealed."""
        with self._sealing:
            for index, held in enumerate(backlog):
                if held is _TAKEN:
                    if any(later is data for later in backlog[index + 1 :]):
                        self._append_decoded(data)
                    return

    def _end_holding(self, backlog: list[Any], data: EngineEventData, cls: type) -> None:
        """An event of a held child someone must see: the backlog goes first, then the event,
        and the child's later events go as any other's."""
        with self._sealing:
            if self._held.get(data.run_id) is backlog:
                del self._held[data.run_id]
                for event in backlog:
                    self._append_decoded(event)
                backlog.append(_TAKEN)
            self._append(compact(data))  # under the lock: after the backlog, before late ones
        self._nudge(data, cls)

    def _append_decoded(self, event: EngineEventData | StoredEvent) -> None:
        decoded = _decoded(event)
        if decoded is not None:
            self._append(compact(decoded))

    def release(self, run_id: str) -> list[EngineEventData]:
        """UI side: the held events of child `run_id` (someone looks at it). A running child's
        later events are then sent as they come; a settled child's are all here while it is one of
        the last `SETTLED_KEPT`. Empty when the bridge has nothing of it (any more)."""
        with self._sealing:
            backlog = self._held.pop(run_id, None)
            if backlog is not None:
                events = backlog[:]
                backlog.append(_TAKEN)
                return _all_decoded(events)
        settled = self._settled.pop(run_id, None) or []
        # A child that ended while the UI took it is briefly both taken and settled (its engine
        # thread un-settles it a moment later): what was taken is not given twice.
        return [] if any(event is _TAKEN for event in settled) else _all_decoded(settled)

    # ---- UI side

    @property
    def ui_turn_on(self) -> bool:
        """Whether the UI's turn is on (engine threads that emit wait)."""
        return self._ui_turn

    @contextlib.contextmanager
    def ui_turn(self) -> Iterator[None]:
        """While the UI thread folds and repaints, engine threads wait at their next event."""
        self._ui_done.clear()
        self._ui_turn = True
        try:
            yield
        finally:
            self._ui_turn = False
            self._ui_done.set()

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


def _decoded(event: EngineEventData | StoredEvent) -> EngineEventData | None:
    """A held event as an envelope (a followed run's are held as stored until looked at); None
    for a stored one that does not read (`envelope_of` logs it)."""
    return envelope_of(event) if event.__class__ is StoredEvent else event  # type: ignore[arg-type,return-value]


def _all_decoded(events: list[Any]) -> list[EngineEventData]:
    return [decoded for decoded in map(_decoded, events) if decoded is not None]
