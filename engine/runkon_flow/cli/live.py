"""The live terminal view of `runkon-flow run`, `resume` and `replay`: finished steps, failures,
gates and warnings scroll above a compact status block redrawn in place with plain ANSI.

A renderer of the run model: every event is folded by the one reducer
(`runkon_flow.observe.RunModel`) and the block is drawn from it, so its counts are the ones the
dashboard and `show` give. What scrolls above the block is each event put into words
(`_lines_for`), which needs no state of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from runkon_flow.cli.common import whole_command
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.output import RunOutcome, cancel_reason
from runkon_flow.events import EngineEventData
from runkon_flow.humanize import (
    display_line,
    error_headline,
    fit_cause,
    fit_headline,
    format_duration,
    run_took,
)
from runkon_flow.observe import FanOutView, ItemCounts, RunModel, RunState, StepView
from runkon_flow.observe.estimates import Estimates, people_wait
from runkon_flow.observe.records import called_why, last_line_worth_showing
from runkon_flow.observe.retrying import retrying
from runkon_flow.observe.status import ASCII_GLYPH, GLYPH, TERMINAL, outcome


def safe(text: str | None) -> str:
    """Untrusted text (a step's output, an error, a gate note) as the terminal may be given it:
    no escape sequence from a script reaches it (`humanize.display_line`)."""
    return display_line(text or "", None)


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


def _glyphs(table: dict[str, str], spinner: str, sep: str, full: str, empty: str, ellipsis: str) -> _Glyphs:
    return _Glyphs(
        table["completed"],
        table["failed"],
        table["running"],
        table["waiting"],
        table["skipped"],
        table["cancelled"],
        spinner,
        sep,
        full,
        empty,
        ellipsis,
    )


_UNICODE = _glyphs(GLYPH, "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏", "·", "█", "░", "…")
_ASCII = _glyphs(ASCII_GLYPH, "|/-\\", "-", "#", ".", "...")

_GREEN, _RED, _YELLOW, _CYAN, _DIM, _BOLD, _RESET = (
    "\x1b[32m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[36m",
    "\x1b[2m",
    "\x1b[1m",
    "\x1b[0m",
)

#: Step kinds that have a line of their own in the block instead of an active-step line.
_NOT_ACTIVE = frozenset({"foreach"})


class _Whole(str):
    """A permanent line holding a command to paste: printed whole, never cut to the terminal's
    width (the terminal wraps it; a cut one cannot be pasted)."""

    __slots__ = ()


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
        hints: Hints | None = None,
    ) -> None:
        self._stream = stream
        self._hints = hints or Hints()  # the approve/reject commands carry the user's --db
        self._top = top_run_id
        self._color = (os.environ.get("NO_COLOR", "") == "") if color is None else color
        if unicode is None:
            unicode = "utf" in (getattr(stream, "encoding", None) or "").lower()
        self._g = _UNICODE if unicode else _ASCII
        self._now = now
        self._width = width
        self._height = height
        self._redraw_interval = redraw_interval
        # Fan-out children are folded lazily, as in the dashboard; the running ones are unfolded
        # before each frame, so their running steps are on screen.
        self.model = RunModel(now)
        self.model.root_run_id = top_run_id
        #: Past runs of the workflow (`observe.estimates`), set by whoever knows the store: running
        #: steps and fan-outs of the top run then show an ETA band, or `over p95`.
        self.estimates: Estimates | None = None
        self._outcome = RunOutcome(self.model)
        self._status_note: str | None = None
        #: The workflow and status the header says before the run's first event is folded (`expect`).
        self._expected: tuple[str, str] = ("", "starting")
        self._drawn = 0
        self._last_draw = 0.0
        self._dirty = True
        self._frame = 0
        self._started = now()
        #: When a resumed or retried run first started (its stored row), set by whoever resumes it
        #: (with `recall`): its header times the whole run and its last line says the whole run's
        #: time and this attempt's, as the dashboard does.
        self.first_started: float | None = None
        self._cursor_hidden = False

    # ------------------------------------------------------------------ public

    @property
    def outcome(self) -> RunOutcome:
        return self._outcome

    def set_status(self, text: str | None) -> None:
        """Override the status word in the header (e.g. `cancelling`)."""
        self._status_note = text
        self._dirty = True

    def expect(self, workflow_name: str, status: str) -> None:
        """What the header says until the run's first event is read: the run as its stored row has
        it (`watch` reads the row first) — `pending` for a run recorded but not started yet, with
        no clock running, not `running` for an unnamed run."""
        self._expected = (workflow_name, status)
        self._dirty = True

    def feed(self, data: EngineEventData) -> None:
        if self._top is None:
            self._top = data.run_id
            self.model.root_run_id = data.run_id
        lines = self._lines_for(data)  # worded against the model as it was before this event
        self.model.apply(data)
        for line in lines:
            self._permanent(line)
        self._dirty = True

    def recall(self, events: Iterable[EngineEventData]) -> None:
        """The run's earlier attempts (its stored events, before a resume or retry runs it again):
        folded into the model, nothing printed — the frame then counts and times the whole run,
        the steps and items earlier attempts completed too, as the dashboard's view of a resumed
        run does (`RunModel`'s one story of a run's attempts)."""
        self.model.apply_all(events)
        self.model.take_changes()
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

    # ------------------------------------------------------------------ words for events

    def _where(self, run_id: str) -> str:
        """A child run as a user knows it: `workflow[item]` (or just the workflow)."""
        run = self.model.run(run_id)  # folds a lazily held fan-out child
        workflow = (run.workflow_name if run else "") or "child"
        return f"{workflow}[{run.item_id}]" if run is not None and run.item_id else workflow

    def _label(self, run_id: str, step: str) -> str:
        if run_id == self._top:
            return step
        return f"{self._where(run_id)} {'›' if self._g is _UNICODE else '>'} {step}"

    def _started_at(self) -> float:
        """When the run first started: the whole run's clock, over all its attempts."""
        root = self.model.root
        start = root.started_at if root is not None and root.started_at is not None else self._started
        return start if self.first_started is None else min(start, self.first_started)

    def _lines_for(self, data: EngineEventData) -> list[str]:
        """The permanent lines one event produces (none for most)."""
        g, e, run = self._g, data.event, data.run_id
        kind = e.type
        top = run == self._top
        if kind in ("RunStarted", "RunResumed") and top:
            if e.retried_items:  # a retry resumes the run, with or without a completed step
                what = f"{retrying(e.retried_items)} of run {run} {e.workflow_name}"
                return [self._c(_CYAN, g.run) + f" {what}"]
            word = "resumed" if kind == "RunResumed" else "started"
            if kind == "RunStarted" and self.model.starts_again(run):  # a resume with nothing to skip
                word = "resumed (no completed step to skip: it starts over)"
            elif kind == "RunStarted" and e.rerun_of:  # a new run, reusing an earlier run's first steps
                word += f" (rerun of {e.rerun_of} from {e.rerun_from})"
            return [self._c(_CYAN, g.run) + f" run {run} {e.workflow_name} {word}"]
        if kind == "StepCompleted" and (top or not e.succeeded):
            return [self._step_line(data, e)]
        if kind == "StepRetrying":
            label = self._label(run, e.step_key or e.step_name)
            return [self._c(_YELLOW, g.wait) + f" {label}: retrying (attempt {e.attempt + 1})"]
        if kind == "FanOutItemCompleted" and not e.succeeded and e.status != "cancelled":
            child = f" (child run {e.child_run_id})" if e.child_run_id else ""
            return [self._c(_RED, g.fail) + f" item {e.item_id} failed{child}"]
        if kind == "GateWaiting":
            prompt = f": {safe(e.prompt)}" if e.prompt else ""  # quotes inputs and step output
            options = f" (options: {', '.join(e.options)})" if e.options else ""
            return [
                self._c(_YELLOW, g.wait) + f" gate {e.gate_name} waiting{prompt}{options}",
                *self._answer_lines(run, e.gate_name),
            ]
        if kind == "GateTimedOut":
            what = "timed out, continuing" if e.continued else "timed out"
            return [self._c(_YELLOW, g.wait) + f" gate {e.gate_name} {what}"]
        if kind == "GateResolved":
            by = f" by {safe(e.resolved_by)}" if e.resolved_by else ""
            note = f": {safe(e.feedback)}" if e.feedback else ""
            if e.approved:
                return [self._c(_GREEN, g.ok) + f" gate {e.gate_name} approved{by}{note}"]
            return [self._c(_RED, g.fail) + f" gate {e.gate_name} rejected{by}{note}"]
        if kind == "EngineLog" and e.level in ("warning", "error"):
            # Whole (the terminal wraps it): the view is where a warning is said (not again on
            # stderr, `drive._SaidOnStdout`), and cut it lost its `(hint: did you mean …?)`.
            where = f" {e.step_name}:" if e.step_name else ""
            return [_Whole(self._c(_YELLOW, "!") + f"{where} {safe(e.message)}")]
        if kind == "Panicked":
            return [self._c(_RED, g.fail) + f" engine crashed: {safe(e.message)}"]
        if kind in ("RunCompleted", "RunCancelled") and top:
            took = self._took(data.ts)
            if kind == "RunCancelled":
                why = cancel_reason(e)
                return [self._c(_YELLOW, g.cancel) + f" run {run} cancelled after {took} ({why})"]
            if e.succeeded:
                return [self._c(_GREEN, g.ok) + f" run {run} completed in {took}"]
            state = self.model.run(run)  # its steps are folded: its failed step says why
            why = state.why_failed(self.model.runs) if state is not None else ""
            said = f" run {run} failed after {took}"
            # cut before its last ` · ` part, which says why: cut at the terminal's edge it kept
            # `import-repos: Script 'impo…` (`humanize.fit_cause`)
            room = self._size()[0] - 1 - len(g.fail + said + ": ")
            why = safe(fit_cause(why or error_headline(e.error), room, g.ellipsis))
            return [self._c(_RED, g.fail) + said + (f": {why}" if why else "")]
        return []

    def _answer_lines(self, run: str, gate: str) -> list[str]:
        """How to answer a waiting gate: `  approve: …   reject: …` when it fits the terminal,
        else each command on a line of its own — alone under its name when even that does not
        fit (`common.whole_command`, as `show` and `gates` have it). Never cut: a command cut with
        `…` cannot be pasted (it was, at 80 columns, and the reject command was lost)."""
        width = self._size()[0] - 1  # a line as long as the terminal is wide wraps on some
        approve = self._hints.command("approve", run, gate)
        reject = self._hints.command("reject", run, gate)
        both = f"  approve: {approve}   reject: {reject}"
        if len(both) <= width:
            return [_Whole(both)]
        lines: list[str] = []
        for verb, command in (("approve", approve), ("reject", reject)):
            line = f"  {verb}:{' ' * (8 - len(verb))}{command}"
            lines += map(_Whole, whole_command(line, width, f"  {verb}:", command, "    "))
        return lines

    def _took(self, end: float) -> str:
        """The run's time on its last line: this attempt's, or for a resumed or retried run the
        whole run's first (as the dashboard's log says it) and then this attempt's."""
        root = self.model.root
        attempt = root.attempt_started_at if root is not None else None
        return run_took(end - self._started_at(), None if attempt is None else end - attempt)

    def _step_line(self, data: EngineEventData, e: Any) -> str:
        g = self._g
        label = self._label(data.run_id, e.step_key or e.step_name)
        took = f"  {format_duration(e.duration_ms / 1000)}" if e.duration_ms is not None else ""
        if e.reused_from:  # a rerun's reused step: done in the run it reruns, not here
            took = f"  reused from run {e.reused_from}"
        if e.succeeded:
            return self._c(_GREEN, g.ok) + f" {label}{took}"
        status = e.status or "failed"
        glyph = {"skipped": g.skip, "cancelled": g.cancel}.get(status, g.fail)
        color = _YELLOW if status in ("skipped", "cancelled") else _RED
        line = f" {label} {status}{took}"
        # The line is cut at the terminal's edge: the error gives up its first line before its
        # last, which says why (`Script 'import' exited with code 3 · rate limited …`).
        width, _ = self._size()
        room = width - 1 - len(glyph + line + ": ")
        why = self._called_why(data.run_id, e) if e.kind == "call_workflow" else None
        if why:  # why its child failed (its own error only names the child's failed step)
            text = safe(fit_cause(why, room, self._g.ellipsis))
        else:
            text = safe(fit_headline(e.error, room, self._g.ellipsis))
        return self._c(color, glyph) + line + (f": {text}" if text else "")

    def _called_why(self, run_id: str, e: Any) -> str | None:
        """`records.called_why` of a failed `call workflow` step (folded with its child run)."""
        state = self.model.run(run_id)
        key = state.step_ids.get(e.step_id) if state is not None and e.step_id else None
        sv = state.steps.get(key) if state is not None and key else None
        return called_why(sv, self.model.runs) if sv is not None else None

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

    def _runs(self) -> list[RunState]:
        """The root run first, then its child runs still in the model."""
        root = self.model.root
        return ([root] if root is not None else []) + [r for r in self.model.runs.values() if r is not root]

    def _header(self, now: float) -> str:
        g, model = self._g, self.model
        root = model.root
        # An interrupted run (`RunModel.mark_interrupted`) is not over, but its clock has stopped.
        finished = root is not None and (root.finished or root.status == "interrupted")
        name, before = self._expected
        status = root.status if finished else (self._status_note or ("running" if root else before))
        spinner = g.spinner[self._frame % len(g.spinner)] if not finished else " "
        end = root.ended_at if finished and root.ended_at is not None else now
        # Before the run's first event nothing of it has been read: no clock runs yet.
        took = format_duration(end - self._started_at()) if root is not None else "-"
        counts: dict[str, int] = {}
        for status_name, n in model.step_counts().items():
            counts[outcome(status_name)] = counts.get(outcome(status_name), 0) + n
        return (
            f"{spinner} {model.workflow_name or name} {g.sep} run {self._top or '?'} {g.sep} "
            f"{status} {g.sep} {took} {g.sep} "
            f"steps {g.ok}{counts.get('completed', 0)} {g.fail}{counts.get('failed', 0)}"
            + (f" {g.cancel}{counts['cancelled']}" if counts.get("cancelled") else "")
            + (f" {g.skip}{counts['skipped']}" if counts.get("skipped") else "")
            + (f" {g.sep} {usage.short().replace(' · ', f' {g.sep} ')}" if (usage := model.usage()) else "")
        )

    def _eta(self, run: RunState, sv: StepView | None, now: float, fan: FanOutView | None = None) -> str:
        """`  · ETA 20s–45s` / `  · ⚠ over p95 (1m10s)` for the top run's running steps."""
        if self.estimates is None or sv is None or run.run_id != self._top:
            return ""
        note = self.estimates.running_note(sv, now, fan, waited=people_wait(sv, now, self.model.runs.get))
        if not note:
            return ""
        if self._g is _ASCII:
            note = note.replace("⚠", "!").replace("–", "-")
        return f" {self._g.sep} {note}"

    def _fan_lines(self, now: float) -> list[str]:
        g, lines = self._g, []
        for run in self._runs():
            for fan in run.fanouts.values():
                step = run.steps.get(fan.key)
                if step is not None and step.status in TERMINAL:
                    continue
                items = ItemCounts.of(fan)
                cells = 16
                filled = cells * items.finished // items.total if items.total else cells
                bar = g.bar_full * filled + g.bar_empty * (cells - filled)
                where = "" if run.run_id == self._top else f" ({self._where(run.run_id)})"
                lines.append(
                    f"  foreach {fan.name}{where} {bar} {items.finished}/{items.total} "
                    f"{g.ok}{items.completed} {g.fail}{items.failed} {g.skip}{items.skipped}"
                    + (f" {g.cancel}{items.cancelled}" if items.cancelled else "")
                    + f" {g.run}{items.running}"
                    + (f" {g.cancel}{items.interrupted} interrupted" if items.interrupted else "")
                    + self._eta(run, step, now, fan)
                )
        return lines

    def _active(self) -> list[tuple[RunState, StepView]]:
        active = [
            (run, sv)
            for run in self._runs()
            for sv in run.steps.values()
            if sv.status == "running" and sv.kind not in _NOT_ACTIVE
        ]
        return sorted(active, key=lambda pair: pair[1].started_at or 0.0)

    def render(self) -> list[str]:
        """The status block as plain lines (no colour, no cursor codes), fitted to the width."""
        g = self._g
        width, height = self._size()
        now = self._now()
        self.model.unfold_running_children()
        lines = [self._header(now), *self._fan_lines(now)]
        for gate in self.model.waiting_gates():
            lines.append(f"  {g.wait} gate {gate.gate_name} waiting for approval")
        room = max(3, height - len(lines) - 2)
        active = self._active()
        shown = active if len(active) <= room else active[: room - 1]
        for run, sv in shown:
            last = last_line_worth_showing(sv.output)
            tail = f"  {g.sep} {safe(last)}" if last else ""
            took = format_duration(now - sv.started_at) if sv.started_at is not None else ""
            eta = self._eta(run, sv, now)
            lines.append(f"  {g.run} {self._label(run.run_id, sv.step_key or sv.name)}  {took}{eta}{tail}")
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
        # cut without breaking colour codes: only the tail is plain text
        if plain_len > width - 1 and not isinstance(line, _Whole):
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
