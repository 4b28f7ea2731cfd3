"""The live terminal view of `runkon-flow run`, `resume` and `replay`: finished steps, failures,
gates and warnings scroll above a compact status block redrawn in place with plain ANSI.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from runkon_flow.cli.output import RunOutcome, cancel_reason
from runkon_flow.events import EngineEventData
from runkon_flow.humanize import format_duration, readable_error


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
                    why = cancel_reason(e)
                    return [self._c(_YELLOW, g.cancel) + f" run {run} cancelled after {took} ({why})"]
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
