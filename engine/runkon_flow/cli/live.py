"""Progress printers for `runkon-flow run`, `resume` and `replay`.

Engine threads only ever append to an `EventQueue` (never blocking on the terminal); the CLI's
main thread drains it and feeds a printer:

* `PlainPrinter` — one stable, greppable line per event when stdout is not a terminal:
  `<UTC time> <run id> <EventType> key=value …` (values with spaces are JSON-quoted).
* `LiveView` — on a terminal, a compact block redrawn in place with plain ANSI: a header with the
  run status and counters, one line per fan-out and per active step, waiting gates. Finished
  steps, failures, gates and warnings scroll above the block as permanent lines.

Both are fed the same `EngineEventData` records, which is what lets `runkon-flow replay` print a
recorded JSON-lines file exactly like a live run. Nothing here imports a UI toolkit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from runkon_flow.events import EngineEventData
from runkon_flow.humanize import format_duration, readable_error

__all__ = [
    "EventQueue",
    "LiveView",
    "PlainPrinter",
    "Printer",
    "RunOutcome",
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
    return text if _BARE.match(text) else json.dumps(text, ensure_ascii=False)


def _reason(event: Any) -> str:
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
    "RunStarted": (("workflow", "workflow_name"), ("parent", "parent_run_id")),
    "RunResumed": (("workflow", "workflow_name"), ("parent", "parent_run_id"), ("skipped", "skipped_steps")),
    "RunCompleted": (("succeeded", "succeeded"), ("error", "error")),
    "RunCancelled": (("reason", _reason),),
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

_ZERO_IS_EMPTY = {"iteration", "attempt", "skipped", "turns", "cost"}
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


@dataclass
class RunOutcome:
    """How the top-level run ended, as far as the events tell (used for exit codes of `replay`)."""

    top_run_id: str | None = None
    workflow: str | None = None
    status: str | None = None  # completed | failed | cancelled
    error: str | None = None
    started_ts: float | None = None
    ended_ts: float | None = None

    def observe(self, data: EngineEventData) -> None:
        event = data.event
        if self.top_run_id is None:
            self.top_run_id = data.run_id
        if data.run_id != self.top_run_id:
            return
        if event.type in ("RunStarted", "RunResumed"):
            self.workflow = event.workflow_name
            self.status, self.error, self.ended_ts = None, None, None
            if self.started_ts is None:
                self.started_ts = data.ts
        elif event.type == "RunCompleted":
            self.status = "completed" if event.succeeded else "failed"
            self.error = event.error
            self.ended_ts = data.ts
        elif event.type == "RunCancelled":
            self.status = "cancelled"
            self.error = f"cancelled: {_reason(event)}"
            self.ended_ts = data.ts

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
    ) -> None:
        self._stream = stream
        self._notes = notes  # None: sys.stderr at the time of the note (stdout stays event lines only)
        self._quiet = quiet
        self._top = top_run_id

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

    def tick(self) -> None:
        self._stream.flush()

    def note(self, text: str) -> None:
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


@dataclass
class _Glyphs:
    ok: str
    fail: str
    run: str
    wait: str
    skip: str
    cancel: str
    spinner: str
    sep: str
    bar_full: str
    bar_empty: str
    ellipsis: str


_UNICODE = _Glyphs("✓", "✗", "▸", "‖", "⊘", "■", "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏", "·", "█", "░", "…")
_ASCII = _Glyphs("+", "x", ">", "=", "-", "#", "|/-\\", "-", "#", ".", "...")

_GREEN, _RED, _YELLOW, _CYAN, _DIM, _BOLD, _RESET = (
    "\x1b[32m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[36m",
    "\x1b[2m",
    "\x1b[1m",
    "\x1b[0m",
)


@dataclass
class _Active:
    label: str
    started: float
    last_line: str = ""
    in_flow_output: bool = False

    def see(self, line: str) -> None:
        """Remember the last line worth showing: not blank, not a FLOW_OUTPUT block."""
        text = line.strip()
        if text == "<<<FLOW_OUTPUT>>>":
            self.in_flow_output = True
        elif text == "<<<END_FLOW_OUTPUT>>>":
            self.in_flow_output = False
        elif text and not self.in_flow_output:
            self.last_line = text


def _outcome(succeeded: bool, status: str | None) -> str:
    """How a finished step or item is counted: ok, failed, skipped or cancelled — a cancelled or
    skipped one did not fail (as `show` lists it)."""
    if succeeded:
        return "ok"
    return status if status in ("skipped", "cancelled") else "failed"


@dataclass
class _FanOut:
    run_id: str
    name: str
    total: int = 0
    running: int = 0
    ended: Counter[str] = field(default_factory=Counter)  # finished items by `_outcome`
    done: bool = False


@dataclass
class _RunInfo:
    workflow: str
    item_id: str | None = None
    parent_run_id: str | None = None


@dataclass
class _LiveState:
    runs: dict[str, _RunInfo] = field(default_factory=dict)
    item_of_child: dict[str, str] = field(default_factory=dict)
    active: dict[tuple[str, str], _Active] = field(default_factory=dict)
    fan_outs: dict[tuple[str, str], _FanOut] = field(default_factory=dict)
    gates: dict[tuple[str, str], str] = field(default_factory=dict)
    steps: Counter[str] = field(default_factory=Counter)  # finished steps by `_outcome`


class LiveView:
    """The terminal view: permanent lines scroll above a status block redrawn in place.

    `now`, `width` and `height` are injectable so the rendering can be tested without a terminal.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        top_run_id: str | None = None,
        color: bool | None = None,
        unicode: bool | None = None,
        now: Callable[[], float] = time.time,
        width: int | None = None,
        height: int | None = None,
        redraw_interval: float = 0.1,
    ) -> None:
        self._stream = stream
        self._top = top_run_id
        self._color = (os.environ.get("NO_COLOR", "") == "") if color is None else color
        if unicode is None:
            unicode = "utf" in (getattr(stream, "encoding", None) or "").lower()
        self._g = _UNICODE if unicode else _ASCII
        self._now = now
        self._width = width
        self._height = height
        self._redraw_interval = redraw_interval
        self._state = _LiveState()
        self._outcome = RunOutcome(top_run_id=top_run_id)
        self._status_note: str | None = None
        self._drawn = 0
        self._last_draw = 0.0
        self._dirty = True
        self._frame = 0
        self._started = now()
        self._cursor_hidden = False

    # ------------------------------------------------------------------ public

    @property
    def outcome(self) -> RunOutcome:
        return self._outcome

    def set_status(self, text: str | None) -> None:
        """Override the status word in the header (e.g. `cancelling`)."""
        self._status_note = text
        self._dirty = True

    def feed(self, data: EngineEventData) -> None:
        if self._top is None:
            self._top = data.run_id
        self._outcome.observe(data)
        if data.run_id == self._top and self._outcome.started_ts is not None:
            self._started = self._outcome.started_ts
        for line in self._fold(data):
            self._permanent(line)
        self._dirty = True

    def note(self, text: str) -> None:
        self._permanent(text)

    def tick(self) -> None:
        now = self._now()
        due = self._dirty or now - self._last_draw >= 0.5  # elapsed times move even without events
        if due and (now - self._last_draw >= self._redraw_interval or self._drawn == 0):
            self._redraw()

    def close(self) -> None:
        """Erase the block, print a last frame as plain text, give the cursor back."""
        self._erase()
        for line in self.render():
            self._stream.write(line + "\n")
        self._drawn = 0
        if self._cursor_hidden:
            self._stream.write("\x1b[?25h")
            self._cursor_hidden = False
        self._stream.flush()

    # ------------------------------------------------------------------ folding

    def _where(self, run_id: str) -> str:
        """A child run as a user knows it: `workflow[item]` (or just the workflow)."""
        info = self._state.runs.get(run_id)
        item = self._state.item_of_child.get(run_id)
        workflow = info.workflow if info else "child"
        return f"{workflow}[{item}]" if item else workflow

    def _label(self, run_id: str, step: str) -> str:
        if run_id == self._top:
            return step
        return f"{self._where(run_id)} {'›' if self._g is _UNICODE else '>'} {step}"

    def _fold(self, data: EngineEventData) -> list[str]:
        """Update the state from one event; return the permanent lines it produces."""
        st, g, e, run = self._state, self._g, data.event, data.run_id
        kind = e.type
        top = run == self._top
        if kind in ("RunStarted", "RunResumed"):
            st.runs[run] = _RunInfo(e.workflow_name, parent_run_id=e.parent_run_id)
            if top:
                word = "resumed" if kind == "RunResumed" else "started"
                return [self._c(_CYAN, g.run) + f" run {run} {e.workflow_name} {word}"]
        elif kind == "ChildRunStarted":
            st.runs.setdefault(e.child_run_id, _RunInfo(e.workflow_name, e.item_id, e.parent_run_id))
            if e.item_id:
                st.item_of_child[e.child_run_id] = e.item_id
        elif kind == "StepStarted":
            if e.kind != "foreach":  # a fan-out has its own progress line
                key = (run, e.step_id or f"{e.step_key or e.step_name}@{e.iteration}")
                st.active[key] = _Active(self._label(run, e.step_key or e.step_name), data.ts)
        elif kind == "StepOutput":
            active = st.active.get((run, e.step_id))
            if active is not None:
                active.see(e.line)
        elif kind == "StepCompleted":
            key = (run, e.step_id or f"{e.step_key or e.step_name}@{e.iteration}")
            active = st.active.pop(key, None)
            if e.kind == "foreach" and e.step_id:
                fan = st.fan_outs.get((run, e.step_id))
                if fan is not None:
                    fan.done = True
            ok = e.succeeded
            status = e.status or ("completed" if ok else "failed")
            if e.kind not in ("foreach", "parallel"):
                st.steps[_outcome(ok, status)] += 1
            if top or not ok:
                label = active.label if active else self._label(run, e.step_key or e.step_name)
                took = f"  {format_duration(e.duration_ms / 1000)}" if e.duration_ms is not None else ""
                if ok:
                    return [self._c(_GREEN, g.ok) + f" {label}{took}"]
                glyph = {"skipped": g.skip, "cancelled": g.cancel}.get(status, g.fail)
                color = _YELLOW if status in ("skipped", "cancelled") else _RED
                text = readable_error(e.error).strip()
                error = f": {text.splitlines()[0]}" if text else ""
                return [self._c(color, glyph) + f" {label} {status}{took}{error}"]
        elif kind == "StepRetrying":
            label = self._label(run, e.step_key or e.step_name)
            return [self._c(_YELLOW, g.wait) + f" {label}: retrying (attempt {e.attempt + 1})"]
        elif kind == "FanOutItemsCollected":
            name = e.foreach_name or "foreach"
            st.fan_outs[(run, e.step_id or name)] = _FanOut(run, name, total=e.count)
        elif kind in ("FanOutItemStarted", "FanOutItemCompleted", "FanOutItemSkipped"):
            fan = self._fan(run, e.step_id)
            if fan is not None:
                if kind == "FanOutItemStarted":
                    fan.running += 1
                elif kind == "FanOutItemSkipped":
                    fan.ended["skipped"] += 1
                else:
                    fan.running = max(0, fan.running - 1)
                    fan.ended[_outcome(e.succeeded, e.status)] += 1
            if kind == "FanOutItemCompleted" and not e.succeeded and e.status != "cancelled":
                child = f" (child run {e.child_run_id})" if e.child_run_id else ""
                return [self._c(_RED, g.fail) + f" item {e.item_id} failed{child}"]
        elif kind == "GateWaiting":
            gate_key = (run, e.step_id or e.gate_name)
            st.gates[gate_key] = e.gate_name
            prompt = f": {e.prompt}" if e.prompt else ""
            options = f" (options: {', '.join(e.options)})" if e.options else ""
            return [
                self._c(_YELLOW, g.wait) + f" gate {e.gate_name} waiting{prompt}{options}",
                f"  approve: runkon-flow approve {run} {e.gate_name}   "
                f"reject: runkon-flow reject {run} {e.gate_name}",
            ]
        elif kind in ("GateResolved", "GateTimedOut"):
            st.gates.pop((run, e.step_id or e.gate_name), None)
            for key, name in list(st.gates.items()):  # events without step ids
                if key[0] == run and name == e.gate_name:
                    del st.gates[key]
            if kind == "GateTimedOut":
                what = "timed out, continuing" if e.continued else "timed out"
                return [self._c(_YELLOW, g.wait) + f" gate {e.gate_name} {what}"]
            by = f" by {e.resolved_by}" if e.resolved_by else ""
            note = f": {e.feedback}" if e.feedback else ""
            if e.approved:
                return [self._c(_GREEN, g.ok) + f" gate {e.gate_name} approved{by}{note}"]
            return [self._c(_RED, g.fail) + f" gate {e.gate_name} rejected{by}{note}"]
        elif kind == "EngineLog" and e.level in ("warning", "error"):
            where = f" {e.step_name}:" if e.step_name else ""
            return [self._c(_YELLOW, "!") + f"{where} {e.message}"]
        elif kind == "Panicked":
            return [self._c(_RED, g.fail) + f" engine crashed: {e.message}"]
        elif kind in ("RunCompleted", "RunCancelled"):
            self._forget_run(run)
            if top:
                took = format_duration(data.ts - self._started)
                if kind == "RunCancelled":
                    return [self._c(_YELLOW, g.cancel) + f" run {run} cancelled after {took} ({_reason(e)})"]
                if e.succeeded:
                    return [self._c(_GREEN, g.ok) + f" run {run} completed in {took}"]
                error = f": {readable_error(e.error)}" if e.error else ""
                return [self._c(_RED, g.fail) + f" run {run} failed after {took}{error}"]
        return []

    def _fan(self, run: str, step_id: str | None) -> _FanOut | None:
        if step_id is not None and (run, step_id) in self._state.fan_outs:
            return self._state.fan_outs[(run, step_id)]
        for fan in reversed(self._state.fan_outs.values()):
            if fan.run_id == run and not fan.done:
                return fan
        return None

    def _forget_run(self, run: str) -> None:
        st = self._state
        for key in [k for k in st.active if k[0] == run]:
            del st.active[key]
        for key in [k for k in st.gates if k[0] == run]:
            del st.gates[key]
        if run != self._top:
            st.runs.pop(run, None)
            st.item_of_child.pop(run, None)

    # ------------------------------------------------------------------ rendering

    def _c(self, color: str, text: str) -> str:
        return f"{color}{text}{_RESET}" if self._color else text

    def _size(self) -> tuple[int, int]:
        if self._width is not None and self._height is not None:
            return self._width, self._height
        size = shutil.get_terminal_size((100, 24))
        return self._width or size.columns, self._height or size.lines

    def _fit(self, text: str, width: int) -> str:
        limit = max(10, width - 1)
        return text if len(text) <= limit else text[: limit - len(self._g.ellipsis)] + self._g.ellipsis

    def render(self) -> list[str]:
        """The status block as plain lines (no colour, no cursor codes), fitted to the width."""
        st, g = self._state, self._g
        width, height = self._size()
        now = self._now()
        outcome = self._outcome
        status = outcome.status or self._status_note or "running"
        spinner = g.spinner[self._frame % len(g.spinner)] if outcome.status is None else " "
        workflow = outcome.workflow or (st.runs[self._top].workflow if self._top in st.runs else "")
        end = outcome.ended_ts if outcome.ended_ts is not None else now
        header = (
            f"{spinner} {workflow} {g.sep} run {self._top or '?'} {g.sep} {status} {g.sep} "
            f"{format_duration(end - self._started)} {g.sep} "
            f"steps {g.ok}{st.steps['ok']} {g.fail}{st.steps['failed']}"
            + (f" {g.cancel}{st.steps['cancelled']}" if st.steps["cancelled"] else "")
            + (f" {g.skip}{st.steps['skipped']}" if st.steps["skipped"] else "")
        )
        lines = [header]
        for fan in st.fan_outs.values():
            if fan.done:
                continue
            ended = fan.ended
            finished = ended.total()
            cells = 16
            filled = cells * finished // fan.total if fan.total else cells
            bar = g.bar_full * filled + g.bar_empty * (cells - filled)
            where = "" if fan.run_id == self._top else f" ({self._where(fan.run_id)})"
            lines.append(
                f"  foreach {fan.name}{where} {bar} {finished}/{fan.total} "
                f"{g.ok}{ended['ok']} {g.fail}{ended['failed']} {g.skip}{ended['skipped']}"
                + (f" {g.cancel}{ended['cancelled']}" if ended["cancelled"] else "")
                + f" {g.run}{fan.running}"
            )
        for name in st.gates.values():
            lines.append(f"  {g.wait} gate {name} waiting for approval")
        room = max(3, height - len(lines) - 2)
        active = sorted(st.active.values(), key=lambda a: a.started)
        shown = active if len(active) <= room else active[: room - 1]
        for item in shown:
            tail = f"  {g.sep} {item.last_line}" if item.last_line else ""
            lines.append(f"  {g.run} {item.label}  {format_duration(now - item.started)}{tail}")
        if len(shown) < len(active):
            lines.append(f"  {g.ellipsis} {len(active) - len(shown)} more running")
        return [self._fit(line, width) for line in lines]

    def _erase(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}A\r\x1b[J")

    def _permanent(self, line: str) -> None:
        self._erase()
        self._drawn = 0
        width, _ = self._size()
        plain_len = len(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line))
        if plain_len > width - 1:  # cut without breaking colour codes: only the tail is plain text
            line = line[: len(line) - (plain_len - (width - 1)) - len(self._g.ellipsis)] + self._g.ellipsis
        self._stream.write(line + "\n")
        self._dirty = True

    def _redraw(self) -> None:
        if not self._cursor_hidden:
            self._stream.write("\x1b[?25l")
            self._cursor_hidden = True
        self._frame += 1
        lines = self.render()
        self._erase()
        colored = [self._c(_BOLD, lines[0])] + [self._colour_line(line) for line in lines[1:]]
        self._stream.write("".join(line + "\n" for line in colored))
        self._stream.flush()
        self._drawn = len(lines)
        self._last_draw = self._now()
        self._dirty = False

    def _colour_line(self, line: str) -> str:
        g = self._g
        stripped = line.lstrip()
        if stripped.startswith(g.wait):
            return self._c(_YELLOW, line)
        if stripped.startswith(g.run):
            return self._c(_CYAN, line)
        return self._c(_DIM, line) if stripped.startswith(g.ellipsis) else line
