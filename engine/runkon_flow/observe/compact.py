"""Events in the compact form the dashboard's bridge holds them in between two UI ticks.

The bridge holds events for up to one UI tick. Held as pydantic models they survive the garbage
collector's young collections and get promoted, and during a 10,000-item fan-out that made full
collections twice as frequent (measured: about +20% run time, paid by the engine threads). A plain
tuple of strings and numbers is untracked by the collector the first time it is seen, so the
bridge stores the frequent event types as `(type, ts, run_id, *fields)` and the reducer reads them
back through a namedtuple with the same field names as the model. Rare events (and those with
nested models: gates, item lists, cancellation reasons) stay as they are.
"""

from __future__ import annotations

import operator
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from runkon_flow import events as engine_events
from runkon_flow.events import EngineEventData

#: The frequent, flat event types the bridge keeps as tuples.
_COMPACT_KINDS = (
    "RunStarted",
    "RunCompleted",
    "MetricsUpdated",
    "StepStarted",
    "StepCompleted",
    "StepRetrying",
    "StepOutput",
    "LoopIteration",
    "EngineLog",
    "FanOutItemStarted",
    "FanOutItemCompleted",
    "FanOutItemSkipped",
    "ChildRunStarted",
)
#: Each kind's fields, in the order its compact tuple holds them after `(type, ts, run_id)`.
_COMPACT_FIELDS = {
    kind: tuple(f for f in getattr(engine_events, kind).model_fields if f != "type")
    for kind in _COMPACT_KINDS
}

#: Child-run events held back while a fan-out child is folded lazily (nothing a human must see).
QUIET_CHILD_EVENTS = frozenset({"RunStarted", "StepStarted", "StepOutput", "MetricsUpdated"})
#: Events that are quiet only when they report success; index of `succeeded` in compact tuples.
SUCCESS_FIELD = {
    kind: 3 + _COMPACT_FIELDS[kind].index("succeeded") for kind in ("StepCompleted", "RunCompleted")
}


#: A child's `EngineLog` is quiet at these levels (a note: a foreach's script child notes its
#: `item.*` inputs each time); a warning or an error unfolds the child. Index of `level` in tuples.
NOTE_LEVELS = frozenset({"debug", "info"})
LEVEL_FIELD = 3 + _COMPACT_FIELDS["EngineLog"].index("level")


def succeeded(kind: str, data: Any) -> bool:
    if data.__class__ is tuple:
        return bool(data[SUCCESS_FIELD[kind]])
    return bool(data.event.succeeded)


#: The same two sets by event class, for whoever tests the pydantic events themselves (the
#: dashboard's bridge, once per event on the engine threads: a class lookup is the cheapest test).
QUIET_CHILD_CLASSES = frozenset(getattr(engine_events, kind) for kind in QUIET_CHILD_EVENTS)
QUIET_IF_OK_CLASSES = frozenset(getattr(engine_events, kind) for kind in SUCCESS_FIELD)
QUIET_IF_NOTE_CLASSES = frozenset({engine_events.EngineLog})


def quiet(kind: str, data: Any) -> bool:
    """An event of a fan-out child that nobody needs to see unless the child is looked at (its
    start, steps, output, metrics and notes, and its steps' and its own successful ends)."""
    if kind in QUIET_CHILD_EVENTS:
        return True
    if kind == "EngineLog":
        return (data[LEVEL_FIELD] if data.__class__ is tuple else data.event.level) in NOTE_LEVELS
    return kind in SUCCESS_FIELD and succeeded(kind, data)


def quiet_stored(kind: str, payload: str) -> bool:
    """`quiet` for a stored event not decoded yet (its kind and JSON payload, `event_log`):
    `succeeded` is a required field, so a success is always written `"succeeded":true` at the
    top level (a string value holding those words has its quotes escaped); likewise a level,
    `"level":"…"`, left out when it is the default (`info`)."""
    if kind in QUIET_CHILD_EVENTS:
        return True
    if kind == "EngineLog":
        return '"level":"warning"' not in payload and '"level":"error"' not in payload
    return kind in SUCCESS_FIELD and '"succeeded":true' in payload


COMPACT_CLASSES = {
    kind: namedtuple(f"Compact{kind}", (*fields, "type"), defaults=(kind,))
    for kind, fields in _COMPACT_FIELDS.items()
}
Envelope = namedtuple("Envelope", "ts run_id event")


def _compactor(kind: str) -> Callable[[Any, Any], tuple]:
    fields = _COMPACT_FIELDS[kind]
    getter = operator.attrgetter(*fields)
    if "markers" not in fields:

        def flat(data: Any, ev: Any) -> tuple:
            return (kind, data.ts, data.run_id, *getter(ev))

        return flat

    markers = fields.index("markers")  # a list in the model: kept as a tuple (untracked by the GC)

    def with_markers(data: Any, ev: Any) -> tuple:
        values = getter(ev)
        head, rest = values[:markers], values[markers + 1 :]
        return (kind, data.ts, data.run_id, *head, tuple(values[markers]), *rest)

    return with_markers


_COMPACTORS = {getattr(engine_events, kind): _compactor(kind) for kind in _COMPACT_KINDS}


def compact(data: EngineEventData) -> EngineEventData | tuple:
    """The event in the form the bridge keeps it: a flat tuple for the frequent, flat event types
    (cheap for the garbage collector), the envelope itself otherwise. Runs on engine threads, for
    every event: keep it lean (about half a microsecond)."""
    ev = data.event
    make = _COMPACTORS.get(ev.__class__)
    return data if make is None else make(data, ev)
