"""Event output for `runkon-flow run`, `resume` and `replay`: the queue and the plain printer.

Engine threads only ever append to an `EventQueue` (never blocking on the terminal); the CLI's
main thread drains it and feeds a printer:

* `PlainPrinter` — one stable, greppable line per event when stdout is not a terminal:
  `<UTC time> <run id> <EventType> key=value …` (values with spaces are JSON-quoted).
* `LiveView` (in `live`) — on a terminal, a compact block redrawn in place with plain ANSI: a header
  with the run status and counters, one line per fan-out and per active step, waiting gates.
  Finished steps, failures, gates and warnings scroll above the block as permanent lines.

Both are fed the same `EngineEventData` records, which is what lets `runkon-flow replay` print a
recorded JSON-lines file exactly like a live run. Nothing here imports a UI toolkit.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from runkon_flow.events import EngineEventData
from runkon_flow.humanize import readable_error, terminal_json
from runkon_flow.observe.reducer import RunModel

__all__ = [
    "EventQueue",
    "PlainPrinter",
    "Printer",
    "RunOutcome",
    "cancel_reason",
    "event_fields",
    "format_event_line",
    "format_timestamp",
    "supports_live_view",
]


# --------------------------------------------------------------------------- the queue


class EventQueue:
    """An `EventSink` that only appends (thread-safe, never blocks the engine); drained by the CLI."""

    def __init__(self) -> None:
        self._items: deque[EngineEventData] = deque()
        self._arrived = threading.Event()

    def emit(self, data: EngineEventData) -> None:
        self._items.append(data)
        self._arrived.set()

    def drain(self) -> list[EngineEventData]:
        """Everything emitted so far, in order."""
        self._arrived.clear()
        out: list[EngineEventData] = []
        while True:
            try:
                out.append(self._items.popleft())
            except IndexError:
                return out

    def wait(self, timeout: float) -> bool:
        """Block until something arrives or `timeout` passes; True when something arrived."""
        return self._arrived.wait(timeout)


# --------------------------------------------------------------------------- formatting helpers


def format_timestamp(ts: float) -> str:
    """UTC, millisecond precision, `Z` suffix: identical on every machine and in every replay."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_BARE = re.compile(r"[A-Za-z0-9_.:/@+,=()\-\[\]]+\Z")


def _value(value: Any) -> str:
    """A field value as one shell-word-like token: bare when safe, else a JSON string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        value = f"{value:g}"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    return text if _BARE.match(text) else terminal_json(json.dumps(text, ensure_ascii=False))


def cancel_reason(event: Any) -> str:
    """Why a run was cancelled, in people's words (`interrupted (Ctrl-C)`, `timed out`); the events
    file keeps the engine's own spelling, only what is printed is translated."""
    reason = getattr(event, "reason", None)
    if reason is None:
        return ""
    return reason.describe() if hasattr(reason, "describe") else str(reason)


# Per event type: (printed key, attribute or function of the event). Empty values are left out,
# so lines stay short; the order is fixed, so lines are stable across runs.
_FieldSpec = tuple[str, str | Callable[[Any], Any]]
_FIELDS: dict[str, tuple[_FieldSpec, ...]] = {
    "RunStarted": (
        ("workflow", "workflow_name"),
        ("parent", "parent_run_id"),
        ("rerun_of", "rerun_of"),
        ("rerun_from", "rerun_from"),
        ("retried", "retried_items"),
    ),
    "RunResumed": (
        ("workflow", "workflow_name"),
        ("parent", "parent_run_id"),
        ("skipped", "skipped_steps"),
        ("retried", "retried_items"),
    ),
    "RunCompleted": (("succeeded", "succeeded"), ("error", "error")),
    "RunCancelled": (("reason", cancel_reason),),
    "MetricsUpdated": (
        ("cost", "total_cost"),
        ("turns", "total_turns"),
        ("duration_ms", "total_duration_ms"),
    ),
    "Panicked": (("message", "message"),),
    "StepStarted": (
        ("step", lambda e: e.step_key or e.step_name),
        ("kind", "kind"),
        ("iteration", "iteration"),
        ("attempt", "attempt"),
        ("step_id", "step_id"),
    ),
    "StepCompleted": (
        ("step", lambda e: e.step_key or e.step_name),
        ("kind", "kind"),
        ("status", lambda e: e.status or ("completed" if e.succeeded else "failed")),
        ("iteration", "iteration"),
        ("attempt", "attempt"),
        ("duration_ms", "duration_ms"),
        ("markers", lambda e: ",".join(e.markers)),
        ("error", "error"),
        ("reused_from", "reused_from"),
    ),
    "StepRetrying": (
        ("step", lambda e: e.step_key or e.step_name),
        ("attempt", "attempt"),
        ("error", "error"),
    ),
    "StepOutput": (("step", "step_name"), ("stream", "stream"), ("line", "line")),
    "LoopIteration": (("loop", lambda e: f"{e.step}.{e.marker}"), ("iteration", "iteration")),
    "EngineLog": (("level", "level"), ("step", "step_name"), ("message", "message")),
    "GateWaiting": (
        ("gate", "gate_name"),
        ("type", "gate_type"),
        ("step_id", "step_id"),
        ("prompt", "prompt"),
        ("options", lambda e: ",".join(e.options)),
        ("timeout_secs", "timeout_secs"),
    ),
    "GateResolved": (
        ("gate", "gate_name"),
        ("approved", "approved"),
        ("by", "resolved_by"),
        ("feedback", "feedback"),
    ),
    "GateTimedOut": (("gate", "gate_name"), ("continued", "continued")),
    "FanOutItemsCollected": (
        ("foreach", "foreach_name"),
        ("count", "count"),
        ("max_parallel", "max_parallel"),
        ("step_id", "step_id"),
    ),
    "FanOutItemStarted": (("item", "item_id"), ("step_id", "step_id")),
    "FanOutItemCompleted": (
        ("item", "item_id"),
        ("status", lambda e: e.status or ("completed" if e.succeeded else "failed")),
        ("child_run", "child_run_id"),
        ("error", "error"),
    ),
    "FanOutItemSkipped": (("item", "item_id"), ("reason", "reason")),
    "ChildRunStarted": (
        ("child_run", "child_run_id"),
        ("workflow", "workflow_name"),
        ("item", "item_id"),
        ("parent_step", "parent_step_id"),
    ),
}

_ZERO_IS_EMPTY = {"iteration", "attempt", "skipped", "retried", "turns", "cost"}
_ALWAYS = {"line"}  # an empty output line is still a line


def event_fields(event: Any) -> list[tuple[str, Any]]:
    """The key fields of one event, in the fixed order used by plain lines."""
    out: list[tuple[str, Any]] = []
    for key, getter in _FIELDS.get(event.type, ()):
        try:
            value = getter(event) if callable(getter) else getattr(event, getter, None)
        except AttributeError:
            value = None
        if key in _ALWAYS:
            value = "" if value is None else value
        elif key == "error" and isinstance(value, str):
            value = readable_error(value)
        elif value is None or value == "" or (key in _ZERO_IS_EMPTY and value == 0):
            continue
        out.append((key, value))
    return out


def format_event_line(data: EngineEventData) -> str:
    """`<UTC time> <run id> <EventType> key=value …` — one line, whatever the event holds."""
    parts = [format_timestamp(data.ts), data.run_id, data.event.type]
    parts.extend(f"{key}={_value(value)}" for key, value in event_fields(data.event))
    return " ".join(parts).replace("\n", "\\n")


# --------------------------------------------------------------------------- outcome tracking


class RunOutcome:
    """How the top-level run ended, read from the run model (exit codes of `run` and `replay`)."""

    def __init__(self, model: RunModel | None = None) -> None:
        self.model = model if model is not None else RunModel()

    def observe(self, data: EngineEventData) -> None:
        """Fold one event (when this outcome owns its model)."""
        self.model.apply(data)

    @property
    def status(self) -> str | None:
        """completed | failed | cancelled, or None while the run has not ended."""
        root = self.model.root
        return root.status if root is not None and root.finished else None

    @property
    def exit_code(self) -> int:
        """0 completed, 130 cancelled, 1 failed or never finished."""
        return {"completed": 0, "cancelled": 130}.get(self.status or "", 1)


# --------------------------------------------------------------------------- printers


class Printer(Protocol):
    """What the CLI's main loop feeds: events, a periodic tick, notes, and a final close."""

    def feed(self, data: EngineEventData) -> None: ...

    def tick(self) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


_QUIET_TYPES = {"RunStarted", "RunResumed", "RunCompleted", "RunCancelled", "Panicked", "GateWaiting"}


class PlainPrinter:
    """One line per event. `quiet`: only the top-level run's lifecycle, gates and failures."""

    def __init__(
        self,
        stream: TextIO,
        *,
        quiet: bool = False,
        top_run_id: str | None = None,
        notes: TextIO | None = None,
        answers: Callable[[str, str], tuple[str, str]] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self._stream = stream
        self._notes = notes  # None: sys.stderr at the time of the note (stdout stays event lines only)
        # How a note is said, if not written to `notes` (`run`: `common.print_err`, which takes a
        # stderr no one reads quietly — its failed write, made while stdout's guard watches the
        # printer, was taken for a closed stdout, and the run's later events were not printed).
        self._say = say
        self._quiet = quiet
        self._top = top_run_id
        # (run id, gate) → the approve and reject commands, said on stderr under a waiting gate:
        # a run piped or in CI sat at its gate without a word of how to answer it (the live view
        # prints them). None (a replay): nothing to answer.
        self._answers = answers

    def _wanted(self, data: EngineEventData) -> bool:
        if self._top is None:
            self._top = data.run_id
        if not self._quiet:
            return True
        event = data.event
        kind = event.type
        if kind in _QUIET_TYPES or kind in ("GateResolved", "GateTimedOut"):
            return data.run_id == self._top or kind in ("Panicked", "GateWaiting")
        if kind in ("StepCompleted", "FanOutItemCompleted"):
            return not event.succeeded
        if kind == "EngineLog":
            return event.level in ("warning", "error")
        return False

    def feed(self, data: EngineEventData) -> None:
        if self._wanted(data):
            self._stream.write(format_event_line(data) + "\n")
            if self._answers is not None and data.event.type == "GateWaiting":
                gate = data.event.gate_name  # type: ignore[union-attr]
                approve, reject = self._answers(data.run_id, gate)
                self._stream.flush()  # the gate's line first, then how to answer it
                said = f"gate {gate} waits — "
                self.note(f"{said}approve: {approve}")
                self.note(f"{' ' * len(said)}reject:  {reject}")

    def tick(self) -> None:
        self._stream.flush()

    def note(self, text: str) -> None:
        if self._say is not None:
            self._say(text)
            return
        notes = self._notes or sys.stderr
        notes.write(text + "\n")
        notes.flush()

    def close(self) -> None:
        self._stream.flush()


def supports_live_view(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """A real terminal that understands cursor movement."""
    env = dict(os.environ) if env is None else env
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and env.get("TERM", "") not in ("", "dumb")
