"""The one reducer: engine events folded into the run model (`RunModel`).

Fed live (the dashboard's event bridge, `runkon-flow run`'s event queue), from a recorded or stored
event stream (`replay`, tests) or seeded from store rows (`observe.loader`); every renderer reads
the result, so a count is computed once and agrees everywhere. Pure: no terminal, no toolkit, not
thread-safe (fed from one thread). Time comes from an injected clock so renderings are
deterministic.

Addressing: steps of a run are keyed by the event's `node_path` (`body.3.body.0`, `always.0`,
`body.2.calls.1`), falling back to `name:<step key>` for events without one; fan-outs are keyed
the same way. Child runs (foreach items, `call workflow`) are runs of their own, linked to the
parent's step and item by `ChildRunStarted`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runkon_flow.events import EngineEventData, parse_event_line
from runkon_flow.humanize import cause_first, format_duration, gate_decision, readable_error, run_took
from runkon_flow.observe.compact import (
    COMPACT_CLASSES,
    Envelope,
    quiet,
)
from runkon_flow.observe.counts import step_counts
from runkon_flow.observe.records import (
    Changes,
    Clock,
    FanOutView,
    GateView,
    LogBuffer,
    LogLine,
    RunState,
    StepView,
    ViewLimits,
    failure_cause,
    in_always_list,
    reused_note,
    step_label,
)
from runkon_flow.observe.retrying import retry_refusal, retrying
from runkon_flow.observe.status import FAILED, ITEM_CODE, glyph
from runkon_flow.usage import Usage

_new_tuple = tuple.__new__

if TYPE_CHECKING:
    from runkon_flow.dsl.ast import WorkflowDef

_RUNNING = ITEM_CODE["running"]
_COMPLETED = ITEM_CODE["completed"]
#: Ends a parked child's events when the child's own events stayed `upstream` (see `_materialize`).
_SETTLED_UPSTREAM: Any = object()


class RunModel:
    """Fold engine events into the run model. Not thread-safe: fed from one thread (the UI
    thread of the dashboard, the main thread of the CLI)."""

    def __init__(self, clock: Clock = time.time, limits: ViewLimits | None = None) -> None:
        self.clock = clock
        self.limits = limits or ViewLimits()
        self.root_run_id: str | None = None
        self.runs: dict[str, RunState] = {}
        self.engine_log = LogBuffer(self.limits.engine_log)
        self.error_log = LogBuffer(self.limits.error_log)
        self.gates: dict[tuple[str, str], GateView] = {}
        self.crash: str | None = None
        self.cancelling = False
        self.read_only = False
        # The definition the root run was started with (its stored snapshot for a past run): the
        # tree draws this run's statuses on it, whatever the watched folders hold today.
        self.definition: WorkflowDef | None = None
        self.events_applied = 0
        self.failures = 0  # failed steps and items seen (any run): cheap "is there a failure?"
        self._finished_children: deque[str] = deque()
        self._failed_children: deque[str] = deque()
        self._deferred: dict[str, list[Any]] = {}  # running fan-out children, not folded yet
        self._parked: dict[str, list[Any]] = {}  # finished fine, not folded, most recent last
        self._materializing: str | None = None
        #: Where a fan-out child's quiet events wait when they were not sent (the dashboard's
        #: bridge holds them): called with the child's run id, it hands them over (a running
        #: child's later events are then sent as they come). A child that ended well upstream
        #: is known here only by its item's `FanOutItemCompleted`. None: every event is sent.
        self.upstream: Callable[[str], list[Any]] | None = None
        self._changes = Changes()
        self._handlers: dict[str, Callable[[EngineEventData, Any], None]] = {
            "RunStarted": self._run_started,
            "RunResumed": self._run_resumed,
            "RunCompleted": self._run_completed,
            "RunCancelled": self._run_cancelled,
            "MetricsUpdated": self._metrics,
            "Panicked": self._panicked,
            "StepStarted": self._step_started,
            "StepCompleted": self._step_completed,
            "StepRetrying": self._step_retrying,
            "StepOutput": self._step_output,
            "LoopIteration": self._loop_iteration,
            "EngineLog": self._engine_log,
            "GateWaiting": self._gate_waiting,
            "GateResolved": self._gate_resolved,
            "GateTimedOut": self._gate_timed_out,
            "FanOutItemsCollected": self._items_collected,
            "FanOutItemStarted": self._item_started,
            "FanOutItemCompleted": self._item_completed,
            "FanOutItemSkipped": self._item_skipped,
            "ChildRunStarted": self._child_run_started,
        }

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_events(cls, events: Iterable[EngineEventData], clock: Clock = time.time) -> RunModel:
        view = cls(clock)
        view.apply_all(events)
        return view

    @classmethod
    def from_jsonl(cls, source: str | Path | Iterable[str], clock: Clock = time.time) -> RunModel:
        """Replay a recorded JSON-lines event log (a path, or an iterable of lines)."""
        if isinstance(source, (str, Path)):
            with open(source, encoding="utf-8") as fh:
                lines = fh.readlines()
        else:
            lines = list(source)
        events = (parse_event_line(line) for line in lines)
        return cls.from_events((e for e in events if e is not None), clock)

    def begin(self, run_id: str, workflow_name: str, *, resumed: bool = False) -> None:
        """Focus on a run the dashboard is about to start or resume (before its first event)."""
        if not resumed or self.root_run_id != run_id:
            self._reset()
        self.root_run_id = run_id
        run = self._run(run_id)
        run.workflow_name = workflow_name
        run.status = "pending" if not resumed else run.status
        self.cancelling = False
        self.crash = None
        self.read_only = False
        self._changes.header = True
        self._changes.structure = True

    def _reset(self) -> None:
        self.root_run_id = None
        self.definition = None
        self.runs = {}
        self.engine_log.clear()
        self.error_log.clear()
        self.gates = {}
        self.crash = None
        self.cancelling = False
        self._finished_children.clear()
        self._failed_children.clear()
        self._deferred = {}
        self._parked = {}
        self.failures = 0
        self._changes = Changes(header=True, structure=True, engine_log=True, error_log=True, gates=True)

    # ------------------------------------------------------------------ public reading API

    @property
    def root(self) -> RunState | None:
        return self.runs.get(self.root_run_id) if self.root_run_id else None

    def retry_refusal(self, fan: FanOutView) -> str | None:
        """Why retrying items of `fan` from the run on screen is refused (`observe.retrying`, the
        rule `runkon-flow retry` follows); None when it is not."""
        root = self.root
        run_id = self.root_run_id
        if run_id is None:
            return "no run on screen"
        return retry_refusal(run_id, root.parent_run_id if root is not None else None, fan.run_id)

    @property
    def workflow_name(self) -> str:
        root = self.root
        return root.workflow_name if root else ""

    @property
    def status(self) -> str:
        """The root run's status as the header shows it (`idle` before any run)."""
        root = self.root
        if root is None:
            return "idle"
        if self.crash is not None and not root.finished:
            return "crashed"
        if self.cancelling and not root.finished:
            return "cancelling"
        if root.status == "running" and any(g.run_id == root.run_id for g in self.gates.values()):
            return "waiting"
        return root.status

    @property
    def active(self) -> bool:
        return self.root is not None and self.status in ("pending", "running", "waiting", "cancelling")

    def elapsed(self) -> float | None:
        root = self.root
        return root.elapsed(self.clock()) if root else None

    def step(self, node_path: str, run_id: str | None = None) -> StepView | None:
        run = self.runs.get(run_id or self.root_run_id or "")
        return run.steps.get(node_path) if run else None

    def child_run_for_step(self, run_id: str, step_id: str | None) -> RunState | None:
        run = self.runs.get(run_id)
        if run is None or step_id is None:
            return None
        child = run.child_runs.get(step_id)
        return self.run(child) if child else None

    def step_counts(self) -> dict[str, int]:
        """Root-run steps per status: each execution of a step (a loop's step once per iteration)
        by its latest attempt; parallel containers excluded (`observe.counts`)."""
        root = self.root
        return step_counts(root.steps.values()) if root is not None else {}

    def called_runs(self) -> list[RunState]:
        """The root run and the runs of the workflows it calls (`call workflow`, at any depth),
        depth first in step order — the runs the tree draws. A foreach's item children are not
        among them: each is one of possibly thousands, shown through its fan-out instead."""
        root = self.root
        if root is None:
            return []
        result: list[RunState] = []
        stack = [root]
        seen: set[str] = set()
        while stack:
            run = stack.pop()
            if run.run_id in seen:
                continue
            seen.add(run.run_id)
            result.append(run)
            called = [
                self.runs[sv.child_run_id]
                for sv in run.steps.values()
                if sv.kind == "call_workflow" and sv.child_run_id and sv.child_run_id in self.runs
            ]
            stack.extend(reversed(called))
        return result

    def fanouts(self) -> list[FanOutView]:
        """Every fan-out of the run's tree: the root run's and those of the workflows it calls
        (a called workflow's foreach is as much this run's fan-out as one of its own)."""
        return [fan for run in self.called_runs() for fan in run.fanouts.values()]

    def active_fanout(self) -> FanOutView | None:
        """The fan-out to show by default: a running one wherever it is in the tree (the most
        recently started when several run), else the one started last (then: collected last)."""
        fans = self.fanouts()
        if not fans:
            return None

        def started(pair: tuple[int, FanOutView]) -> tuple[float, int]:
            run = self.runs.get(pair[1].run_id)
            sv = run.steps.get(pair[1].key) if run is not None else None
            return ((sv.started_at or 0.0) if sv is not None else 0.0, pair[0])

        def running(fan: FanOutView) -> bool:
            run = self.runs.get(fan.run_id)
            sv = run.steps.get(fan.key) if run is not None else None
            return sv is not None and sv.status == "running"

        live = [pair for pair in enumerate(fans) if running(pair[1])]
        return max(live or enumerate(fans), key=started)[1]

    def waiting_gates(self) -> list[GateView]:
        return sorted(self.gates.values(), key=lambda g: g.since)

    def rejected_gate(self) -> StepView | None:
        """The top-level run's gate whose latest answer was a rejection: the run is not resumed
        (a rejection is final for its run; runtime.resume.final_rejection, docs/engine.md)."""
        root = self.root
        if root is None or root.status != "failed":
            return None
        for sv in root.steps.values():
            if sv.kind == "gate" and sv.status == "failed" and (sv.decision or "").startswith("rejected"):
                return sv
        return None

    def failed_steps(self) -> list[tuple[RunState, StepView]]:
        """Failed steps of the root run and of its child runs (root first, in start order). A
        fan-out item's child run that its item has since run again (a resume, a retry) is left
        out: the item's latest attempt is what counts, and a run resumed to completion is not
        summed up with the failures it got past."""
        result: list[tuple[RunState, StepView]] = []
        root = self.root
        ordered = [root] if root else []
        ordered += [r for r in self.runs.values() if r is not root and not self._superseded(r)]
        for run in ordered:
            for sv in sorted(run.steps.values(), key=lambda s: s.started_at or 0.0):
                if sv.status in FAILED:
                    result.append((run, sv))
        return result

    def _superseded(self, run: RunState) -> bool:
        """A fan-out item's child run whose item has a later attempt's child run."""
        parent = self.runs.get(run.parent_run_id) if run.item_id and run.parent_run_id else None
        fan = self._fanout(parent, run.parent_step_id) if parent is not None else None
        if fan is None or run.item_id not in fan.index:
            return False
        return fan.child_runs.get(fan.index[run.item_id], run.run_id) != run.run_id

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    def pending_changes(self) -> Changes:
        """What changed since the last `take_changes`, left for it (a look, not a take)."""
        return self._changes

    # ------------------------------------------------------------------ notes from the viewer

    def note(self, text: str, level: str = "info") -> None:
        """A line from the dashboard itself (e.g. `cancel requested`) in the engine log; error
        lines also go to the errors log."""
        self._log(LogLine(self.clock(), text, level, self.root_run_id or ""), error=level == "error")

    def error_detail(self, text: str) -> None:
        """An extra line for the errors log only (e.g. a traceback line under an engine error)."""
        self._error(LogLine(self.clock(), text, "error", self.root_run_id or ""))

    def mark_cancelling(self) -> None:
        self.cancelling = True
        self._changes.header = True
        self.note("cancel requested", "warning")

    def mark_crashed(self, message: str) -> None:
        """The engine thread died without a final event: say so, keep the dashboard up."""
        self.crash = message
        root = self.root
        now = self.clock()
        if root is not None and not root.finished:
            root.status = "failed"
            root.error = message
            root.ended_at = now
            self._finalize(root, "cancelled")
        self._changes.header = True
        self._changes.finished = True
        self._log(LogLine(now, f"engine crashed: {message}", "error", self.root_run_id or ""), error=True)

    def mark_interrupted(self, message: str, at: float | None = None, said: str = "run interrupted") -> None:
        """A run whose engine went away (no live lease): `interrupted`, resumable. Its clocks stop
        at `at` (where it stopped, `observe.liveness.stopped_at`; default now): the run's elapsed
        time and its unfinished steps' and items' no longer grow, and a step that was running or
        waiting reads `interrupted`, as does a fan-out item still running — nothing runs them any
        more (a resume starts them again). The engine log says `said: message` — `run stopped`
        for a run its engine stopped and left as stored (its run database took no writes)."""
        root = self.root
        end = self.clock() if at is None else at
        if root is not None and not root.finished:
            root.status = "interrupted"
            root.error = message
            for run in self.runs.values():
                if run.finished:
                    continue
                if run.ended_at is None:
                    run.ended_at = end
                for sv in run.steps.values():
                    if sv.status in ("running", "waiting") and sv.ended_at is None:
                        sv.ended_at = end
                        sv.set_status("interrupted")
                        self._changes.steps.add((run.run_id, sv.key))
                for fan in run.fanouts.values():
                    fan.stop_running(end)
                    self._changes.fanouts.add((run.run_id, fan.key))
        self._changes.header = True
        self._changes.finished = True
        self._log(LogLine(end, f"{said}: {message}", "error", self.root_run_id or ""), error=True)

    # ------------------------------------------------------------------ folding

    def apply_all(self, events: Iterable[EngineEventData | tuple]) -> None:
        """Fold a batch: envelopes as the engine emits them, or their compact form (`compact`)."""
        handlers = self._handlers
        deferred = self._deferred
        classes = COMPACT_CLASSES
        count = 0
        for data in events:
            count += 1
            if data.__class__ is tuple:
                kind = data[0]  # type: ignore[index]
                if deferred and data[2] in deferred and self._defer(data[2], kind, data):  # type: ignore[index]
                    continue
                # The namedtuples made directly: their Python-level __new__ was a tenth of the fold.
                ev = _new_tuple(classes[kind], (*data[3:], kind))  # type: ignore[index]
                data = _new_tuple(Envelope, (data[1], data[2], ev))  # type: ignore[index]
            else:
                ev = data.event  # type: ignore[union-attr]
                kind = ev.type
                if deferred and data.run_id in deferred and self._defer(data.run_id, kind, data):  # type: ignore[union-attr]
                    continue
            handler = handlers.get(kind)
            if handler is not None:
                handler(data, ev)  # type: ignore[arg-type]
        self.events_applied += count

    def apply(self, data: EngineEventData | tuple) -> None:
        self.apply_all((data,))

    # ---- fan-out children are folded lazily
    #
    # A 10,000-item fan-out sends six events per child run that nobody looks at unless the item is
    # selected or the child fails. Those events are held (not folded) per child; a child is
    # folded ("materialised") when something needs it — it is selected, it fails, it logs a
    # warning, it waits at a gate — and otherwise its events are kept for the most recent
    # `limits.child_runs` finished children and dropped after that (the store still has them).

    def run(self, run_id: str) -> RunState | None:
        """A run by id, folding a lazily held fan-out child first if need be."""
        state = self.runs.get(run_id)
        if state is None and (run_id in self._deferred or run_id in self._parked):
            self._materialize(run_id)
            state = self.runs.get(run_id)
        return state

    def folds_lazily(self, run_id: str) -> bool:
        """Whether `run_id` is a running fan-out child folded lazily: its quiet events may be
        kept `upstream` (undecoded, even) until `upstream` is asked for them."""
        return run_id in self._deferred

    def unfold_running_children(self) -> None:
        """Fold every fan-out child that is still running (a view about to show running steps)."""
        for run_id in list(self._deferred):
            self._materialize(run_id)

    def _defer(self, run_id: str, kind: str, data: Any) -> bool:
        """Hold a quiet event of a lazily folded child; False = fold it (and its backlog) now."""
        pending = self._deferred[run_id]
        if quiet(kind, data):
            pending.append(data)
            if kind == "RunCompleted":
                self._park(run_id, self._deferred.pop(run_id))
            return True
        self._materialize(run_id)
        return False

    def _park(self, run_id: str, events: list[Any]) -> None:
        parked = self._parked
        parked[run_id] = events
        while len(parked) > self.limits.child_runs:
            del parked[next(iter(parked))]

    def _materialize(self, run_id: str) -> None:
        events = self._deferred.pop(run_id, None)
        if events is None:
            events = self._parked.pop(run_id, None)
        if events is None:
            return
        if self.upstream is not None:
            more = self.upstream(run_id)
            if events[-1] is _SETTLED_UPSTREAM:
                events.pop()
                if not more:  # upstream let it go too: only the store has the child now
                    return
            events.extend(more)
        self._materializing = run_id
        try:
            self.apply_all(events)
            self.events_applied -= len(events)
        finally:
            self._materializing = None

    # ---- helpers

    def _run(self, run_id: str) -> RunState:
        run = self.runs.get(run_id)
        if run is None:
            run = RunState(run_id)
            self.runs[run_id] = run
            self._changes.structure = True
        return run

    def _is_root(self, run_id: str) -> bool:
        return run_id == self.root_run_id

    def _log(self, line: LogLine, *, error: bool = False) -> None:
        self.engine_log.append(line)
        self._changes.engine_log = True
        if error:
            self.error_log.append(line)
            self._changes.error_log = True

    def _error(self, line: LogLine) -> None:
        self.error_log.append(line)
        self._changes.error_log = True

    def context_prefix(self, run: RunState) -> str:
        """A prefix naming the item or child run a line comes from (empty for the root run)."""
        if self._is_root(run.run_id):
            return ""
        if run.item_id:
            return f"[{run.item_id}] "
        return f"[{run.workflow_name or run.run_id}] "

    def _step(self, run: RunState, ev: Any) -> StepView:
        key = ev.node_path or f"name:{ev.step_key or ev.step_name}"
        sv = run.steps.get(key)
        if sv is None:
            sv = StepView(key=key, name=ev.step_name, node_path=ev.node_path)
            run.steps[key] = sv
        return sv

    def _step_by_id(self, run: RunState, step_id: str | None, name: str | None) -> StepView | None:
        if step_id and step_id in run.step_ids:
            return run.steps.get(run.step_ids[step_id])
        if name is None:
            return None
        for sv in run.steps.values():
            if sv.name == name or sv.step_key == name:
                return sv
        return None

    def _touch(self, run: RunState, sv: StepView) -> None:
        self._changes.steps.add((run.run_id, sv.key))
        self._changes.runs.add(run.run_id)
        if self._is_root(run.run_id):
            self._changes.header = True

    def _finalize(self, run: RunState, status: str) -> None:
        """When a run ends, nothing inside it can still be running or waiting."""
        end = run.ended_at or self.clock()
        for sv in run.steps.values():
            if sv.status in ("running", "waiting"):
                sv.set_status(status)
                sv.ended_at = sv.ended_at or end
                self._changes.steps.add((run.run_id, sv.key))
        for fan in run.fanouts.values():
            code = ITEM_CODE["cancelled"]
            for idx, c in enumerate(fan.codes):
                if c == _RUNNING:
                    fan.set_code(idx, code)
                    fan.ended[idx] = end
            self._changes.fanouts.add((run.run_id, fan.key))
        for key in [k for k, g in self.gates.items() if g.run_id == run.run_id]:
            del self.gates[key]
            self._changes.gates = True

    def _forget_child(self, run: RunState) -> None:
        """Bound memory (and garbage-collector work): keep the most recent finished fan-out
        children only; an item whose child run was dropped is read back from the store when
        selected. `call workflow` children stay (the tree shows them)."""
        if run.item_id is None:
            return
        if run.status == "completed":
            ring, limit = self._finished_children, self.limits.child_runs
        else:
            ring, limit = self._failed_children, self.limits.failed_child_runs
        ring.append(run.run_id)
        while len(ring) > limit:
            self.runs.pop(ring.popleft(), None)

    # ---- run lifecycle

    def _running(self, data: EngineEventData, ev: Any) -> RunState:
        """A run (re)started: the first top-level one is the root; it is running, neither ended nor
        cancelled (a resume of a cancelled run drops the old cancel reason)."""
        if self.root_run_id is None and ev.parent_run_id is None:
            self.root_run_id = data.run_id
        run = self._run(data.run_id)
        run.workflow_name = ev.workflow_name
        run.parent_run_id = ev.parent_run_id or run.parent_run_id
        run.status = "running"
        run.ended_at = None
        run.cancel_reason = None
        return run

    def starts_again(self, run_id: str) -> bool:
        """Whether a `RunStarted` of `run_id` now is its next attempt, not a new run: a resume
        that found no completed step starts the run over (engine.md §10.1) — its times still count
        from the first start. (A run read from rows, or one that ended, has a status; a child
        announced by its parent's ChildRunStarted is `running` and not started yet.)"""
        known = self.runs.get(run_id)
        return known is not None and bool(known.attempts or known.status not in ("pending", "running"))

    def _run_started(self, data: EngineEventData, ev: Any) -> None:
        if self.starts_again(data.run_id):
            self._next_attempt(data, ev, 0)
            return
        run = self._running(data, ev)
        run.started_at = data.ts
        run.attempts = 1
        run.inputs = dict(ev.inputs)
        self._changes.runs.add(run.run_id)
        if self._is_root(run.run_id):
            self._changes.header = True
            rerun = f" (rerun of {ev.rerun_of} from {ev.rerun_from})" if ev.rerun_of else ""
            text = f"run started: {ev.workflow_name}{rerun}"
            if ev.retried_items:  # a retry seen from its start (`watch`): not a new run
                text = f"{retrying(ev.retried_items)}: {ev.workflow_name}"
            self._log(LogLine(data.ts, text, "info", run.run_id))

    def _run_resumed(self, data: EngineEventData, ev: Any) -> None:
        self._next_attempt(data, ev, ev.skipped_steps)

    def _next_attempt(self, data: EngineEventData, ev: Any, skipped: int) -> None:
        """The run goes on in a new attempt: one story, its start and its log times kept."""
        run = self._running(data, ev)
        run.resumed = True
        run.attempts = max(run.attempts, 1) + 1
        run.attempt_started_at = data.ts
        if run.started_at is None:
            run.started_at = data.ts
        run.error = None
        self._changes.runs.add(run.run_id)
        self._always_again(run)
        if self._is_root(run.run_id):
            self.cancelling = False
            self.crash = None
            self._changes.header = True
            retried = getattr(ev, "retried_items", 0)
            if retried:  # a retry: the run goes on to run these items again, not to start over
                text = f"{retrying(retried)}: {ev.workflow_name} — attempt {run.attempts}"
            else:
                text = f"run resumed: {ev.workflow_name} — attempt {run.attempts}"
            # Items a fan-out completed are kept even when no step is (a retry of a failed
            # foreach, or a resume of one): "it starts over" read as "every item runs again".
            kept = sum(fan.counts[_COMPLETED] for fan in self.fanouts())
            if skipped:
                text += f" (skipping {skipped} completed step{'' if skipped == 1 else 's'})"
            elif kept:
                items = f"{kept} completed fan-out item{'' if kept == 1 else 's'}"
                text += f" (no completed step to skip; {items} kept)"
            else:
                text += " (no completed step to skip: it starts over)"
            self._log(LogLine(data.ts, text, "info", run.run_id))
            self._replace_errors(data.ts, run)

    def _always_again(self, run: RunState) -> None:
        """The top-level always list runs again at the end of every attempt, nothing of it kept
        (runtime.resume): from the new attempt's start its steps are pending, as the other steps
        that will run again are — not the ✓ or ✗ of the attempt it replaces. Their output and
        usage stay (what ran before is still there to read); their count is the new attempt's.
        From rows: `counts.replaced_always`, the same rule."""
        for sv in run.steps.values():
            if in_always_list(sv.node_path) and sv.status != "pending":
                sv.to_run_again()
                self._touch(run, sv)

    def _replace_errors(self, ts: float, run: RunState) -> None:
        """A new attempt of the root run: the error lines so far are the attempt it replaces.
        They stay in the errors log under a line saying so, and are no longer counted as open
        (`LogBuffer.mark`: a resume to completion leaves no open error)."""
        errors = self.error_log
        if errors.since_mark:
            text = f"▲ above: attempt {run.attempts - 1}'s errors (attempt {run.attempts} replaced it)"
            self._error(LogLine(ts, text, "info", run.run_id))
        errors.mark()

    def _run_completed(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        run.status = "completed" if ev.succeeded else "failed"
        run.ended_at = data.ts
        run.error = _readable(ev.error)
        run.summary = _readable(ev.summary)
        self._finalize(run, "cancelled")
        self._changes.runs.add(run.run_id)
        if self._is_root(run.run_id):
            self.cancelling = False
            self._changes.header = True
            self._changes.finished = True
            attempt = None if run.attempt_started_at is None else data.ts - run.attempt_started_at
            took = run_took(run.elapsed(data.ts), attempt)  # as the CLI's live view says it
            if ev.succeeded:
                self._log(LogLine(data.ts, f"✓ run completed in {took}", "success", run.run_id))
            else:
                why = run.why_failed(self.runs)
                text = f"✗ run failed after {took}" + (f": {why}" if why else "")
                self._log(LogLine(data.ts, text, "error", run.run_id), error=True)
        else:
            if not ev.succeeded:
                why = run.why_failed(self.runs)
                text = f"{self.context_prefix(run)}child run failed" + (f": {why}" if why else "")
                self._error(LogLine(data.ts, text, "error", run.run_id))
            self._forget_child(run)

    def _run_cancelled(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        run.status = "cancelled"
        run.ended_at = data.ts
        run.cancel_reason = ev.reason.describe()
        run.summary = _readable(ev.summary)
        self._finalize(run, "cancelled")
        self._changes.runs.add(run.run_id)
        if self._is_root(run.run_id):
            self.cancelling = False
            self._changes.header = True
            self._changes.finished = True
            self._log(LogLine(data.ts, f"■ run cancelled ({run.cancel_reason})", "warning", run.run_id))
        else:
            self._forget_child(run)

    def _metrics(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        run.total_cost = ev.total_cost
        run.total_turns = ev.total_turns
        if self._is_root(run.run_id) and (ev.total_cost or ev.total_turns):
            text = f"metrics: {ev.total_turns} turns, ${ev.total_cost:.4f}"
            self._log(LogLine(data.ts, text, "debug", run.run_id))

    def _panicked(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        line = LogLine(data.ts, f"engine crashed: {ev.message}", "error", run.run_id)
        self._log(line, error=True)
        for text in ev.backtrace.splitlines()[-20:]:
            self._error(LogLine(data.ts, "  " + text, "error", run.run_id))
        if self._is_root(run.run_id) or self.root_run_id is None:
            self.crash = ev.message
            self._changes.header = True

    # ---- steps

    def _step_started(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        sv = self._step(run, ev)
        sv.name = ev.step_name
        sv.kind = ev.kind
        sv.step_key = ev.step_key or sv.step_key
        if ev.step_id:
            sv.step_id = ev.step_id
            run.step_ids[ev.step_id] = sv.key
        sv.iteration = ev.iteration
        if ev.position is not None:
            sv.position = ev.position
        sv.set_status("running")
        sv.attempt = ev.attempt
        sv.starts += 1
        sv.started_at = ev.started_at or data.ts
        sv.ended_at = None
        sv.duration_ms = None
        sv.error = None
        self._touch(run, sv)
        if self._is_root(run.run_id):
            extra = []
            if ev.attempt:
                extra.append(f"attempt {ev.attempt + 1}")
            if ev.iteration:
                extra.append(f"iteration {ev.iteration + 1}")
            suffix = f" ({', '.join(extra)})" if extra else ""
            self._log(
                LogLine(
                    data.ts, f"{glyph('running')} {step_label(sv)}{suffix}", "info", run.run_id, sv.node_path
                )
            )

    def _step_completed(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        sv = self._step(run, ev)
        sv.kind = ev.kind
        if ev.step_id:
            sv.step_id = ev.step_id
            run.step_ids[ev.step_id] = sv.key
        status = ev.status or ("completed" if ev.succeeded else "failed")
        if ev.reused_from:  # a rerun's reused step: completed in the run it reruns, not here
            sv.name, sv.step_key, sv.iteration = ev.step_name, ev.step_key, ev.iteration
            sv.position, sv.attempt, sv.reused_from = ev.position, ev.attempt, ev.reused_from
        sv.set_status(status)
        sv.ended_at = ev.ended_at or data.ts
        sv.duration_ms = ev.duration_ms
        sv.error = _readable(ev.error)
        sv.markers = tuple(ev.markers)
        if not sv.starts:
            sv.starts = 1
        if ev.usage and ev.kind != "foreach":  # a foreach's usage is its items' (FanOutView.usage)
            spent = Usage.from_metadata(ev.usage)
            if spent:
                sv.usage = spent if sv.usage is None else sv.usage + spent
                if self._is_root(run.run_id):
                    self._changes.header = True
        self._touch(run, sv)
        root = self._is_root(run.run_id)
        took = format_duration(sv.elapsed(sv.ended_at))
        if status in FAILED:
            self.failures += 1
            reason = f": {sv.error}" if sv.error else ""
            text = f"{self.context_prefix(run)}{glyph(status)} {step_label(sv)} {status}{reason}"
            line = LogLine(data.ts, text, "error", run.run_id, sv.node_path)
            if root:
                self._log(line, error=True)
            else:
                self._error(line)
        elif root:
            level = "success" if status == "completed" else "warning"
            text = f"{glyph(status)} {step_label(sv)} {took}".rstrip()
            if ev.reused_from:
                text = f"{glyph(status)} {step_label(sv)} {reused_note(sv)}"
            self._log(LogLine(data.ts, text, level, run.run_id, sv.node_path))

    def _step_retrying(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        sv = self._step_by_path_or_name(run, ev.node_path, ev.step_key or ev.step_name)
        if sv is not None:
            sv.attempt = ev.attempt
            self._touch(run, sv)
        if self._is_root(run.run_id):
            reason = f": {_readable(ev.error)}" if ev.error else ""
            text = f"↻ {ev.step_name} retrying (attempt {ev.attempt + 1}){reason}"
            self._log(LogLine(data.ts, text, "warning", run.run_id, ev.node_path))

    def _step_by_path_or_name(self, run: RunState, node_path: str | None, name: str) -> StepView | None:
        if node_path and node_path in run.steps:
            return run.steps[node_path]
        return self._step_by_id(run, None, name)

    def _step_output(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        sv = self._step_by_id(run, ev.step_id, ev.step_name)
        if sv is None:
            sv = StepView(key=f"name:{ev.step_name}", name=ev.step_name, step_id=ev.step_id)
            run.steps[sv.key] = sv
            run.step_ids[ev.step_id] = sv.key
        if sv.output is None:
            limit = self.limits.step_output if self._is_root(run.run_id) else self.limits.child_output
            sv.output = deque(maxlen=limit)
        sv.output.append(ev.line)
        sv.output_total += 1
        self._changes.output.add((run.run_id, sv.key))

    def _loop_iteration(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        run.loops[ev.node_path] = ev.iteration
        self._changes.steps.add((run.run_id, ev.node_path))
        if self._is_root(run.run_id):
            text = f"↻ loop {ev.step}.{ev.marker}: iteration {ev.iteration + 1}"
            self._log(LogLine(data.ts, text, "info", run.run_id, ev.node_path))

    def _engine_log(self, data: EngineEventData, ev: Any) -> None:
        run = self.runs.get(data.run_id)
        prefix = self.context_prefix(run) if run else ""
        where = f"{ev.step_name}: " if ev.step_name else ""
        line = LogLine(data.ts, f"{prefix}{where}{ev.message}", ev.level, data.run_id)
        if run is None or self._is_root(run.run_id):
            self._log(line, error=ev.level in ("warning", "error"))
        elif ev.level in ("warning", "error"):
            self._error(line)

    # ---- gates

    def _gate_waiting(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        gate = GateView(
            run_id=run.run_id,
            gate_name=ev.gate_name,
            step_id=ev.step_id,
            gate_type=ev.gate_type,
            prompt=ev.prompt,
            options=dict(ev.options),
            timeout_secs=ev.timeout_secs,
            node_path=ev.node_path,
            since=data.ts,
        )
        self.gates[(run.run_id, ev.gate_name)] = gate
        sv = run.steps.get(ev.node_path) if ev.node_path else self._step_by_id(run, ev.step_id, ev.gate_name)
        if sv is None:
            key = ev.node_path or f"name:{ev.gate_name}"
            sv = StepView(key=key, name=ev.gate_name, kind="gate", node_path=ev.node_path)
            run.steps[key] = sv
        sv.kind = "gate"
        sv.gate_type = ev.gate_type
        sv.set_status("waiting")
        sv.step_id = ev.step_id or sv.step_id
        if ev.step_id:
            run.step_ids[ev.step_id] = sv.key
        if sv.started_at is None or not sv.starts:
            sv.started_at = data.ts
            sv.starts = max(sv.starts, 1)
        self._touch(run, sv)
        self._changes.gates = True
        self._changes.header = True
        prompt = f": {ev.prompt}" if ev.prompt else ""
        text = (
            f"{self.context_prefix(run)}{glyph('waiting')} gate {ev.gate_name} waiting for approval{prompt}"
        )
        self._log(LogLine(data.ts, text, "warning", run.run_id, ev.node_path))

    def _gate_done(self, run: RunState, gate_name: str) -> GateView | None:
        gate = self.gates.pop((run.run_id, gate_name), None)
        self._changes.gates = True
        self._changes.header = True
        return gate

    def _gate_resolved(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        gate = self._gate_done(run, ev.gate_name)
        sv = self._gate_step(run, gate, ev.step_id, ev.gate_name)
        who = f" by {ev.resolved_by}" if ev.resolved_by else ""
        note = f": {ev.feedback}" if ev.feedback else ""
        if sv is not None:
            sv.set_status("completed" if ev.approved else "failed")
            sv.ended_at = ev.resolved_at or data.ts
            sv.decision = gate_decision(ev.approved, ev.resolved_by, ev.selections, ev.feedback)
            if not ev.approved:
                sv.error = ev.feedback or f"Gate '{ev.gate_name}' rejected"
            self._touch(run, sv)
        if ev.approved:
            text = f"{self.context_prefix(run)}✓ gate {ev.gate_name} approved{who}{note}"
            self._log(LogLine(data.ts, text, "success", run.run_id))
        else:
            text = f"{self.context_prefix(run)}✗ gate {ev.gate_name} rejected{who}{note}"
            self._log(LogLine(data.ts, text, "error", run.run_id), error=True)

    def _gate_step(
        self, run: RunState, gate: GateView | None, step_id: str | None, name: str
    ) -> StepView | None:
        if gate is not None and gate.node_path and gate.node_path in run.steps:
            return run.steps[gate.node_path]
        return self._step_by_id(run, step_id or (gate.step_id if gate else None), name)

    def _gate_timed_out(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        gate = self._gate_done(run, ev.gate_name)
        sv = self._gate_step(run, gate, ev.step_id, ev.gate_name)
        if sv is not None:
            sv.set_status("timed_out" if ev.continued else "failed")
            sv.ended_at = data.ts
            sv.error = None if ev.continued else f"Gate '{ev.gate_name}' timed out"
            self._touch(run, sv)
        how = "continuing" if ev.continued else "failing the run"
        text = f"{self.context_prefix(run)}⧗ gate {ev.gate_name} timed out ({how})"
        self._log(LogLine(data.ts, text, "warning" if ev.continued else "error", run.run_id), error=True)

    # ---- fan-out

    def _fanout(self, run: RunState, step_id: str | None, name: str | None = None) -> FanOutView | None:
        if step_id and step_id in run.fanout_steps:
            return run.fanouts.get(run.fanout_steps[step_id])
        if step_id is None and len(run.fanouts) == 1:
            return next(iter(run.fanouts.values()))
        if name:
            for fan in run.fanouts.values():
                if fan.name == name:
                    return fan
        return None

    def _items_collected(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        sv = None
        if ev.node_path and ev.node_path in run.steps:
            sv = run.steps[ev.node_path]
        elif ev.step_id:
            sv = self._step_by_id(run, ev.step_id, None)
        key = ev.node_path or (sv.key if sv else None) or f"name:foreach:{ev.foreach_name or ev.step_id}"
        fan = run.fanouts.get(key)
        name = ev.foreach_name or (sv.step_key if sv and sv.step_key else "") or key
        if fan is None:
            fan = FanOutView(key, run.run_id, name.removeprefix("foreach:"), ev.node_path, ev.step_id)
            run.fanouts[key] = fan
            self._changes.structure = True
        fan.step_id = ev.step_id or fan.step_id
        if ev.step_id:
            run.fanout_steps[ev.step_id] = key
        fan.max_parallel = ev.max_parallel
        fan.declared = ev.count
        fan.add_all(ev.items)
        self._changes.fanouts.add((run.run_id, key))
        if self._is_root(run.run_id):
            self._changes.header = True
            ordered = " (ordered)" if fan.deps else ""
            text = f"foreach {fan.name}: {ev.count} items{ordered}"
            self._log(LogLine(data.ts, text, "info", run.run_id, ev.node_path))

    def _item_started(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        fan = self._fanout(run, ev.step_id)
        if fan is None:
            return
        fan.start(ev.item_id, data.ts)
        self._changes.fanouts.add((run.run_id, fan.key))
        if self._is_root(run.run_id):
            self._changes.header = True

    def _item_completed(self, data: EngineEventData, ev: Any) -> None:
        status = ev.status or ("completed" if ev.succeeded else "failed")
        if self.upstream is not None and ev.child_run_id and status == "completed":
            pending = self._deferred.pop(ev.child_run_id, None)
            if pending is not None:  # it ended well upstream, which held its events: park it
                pending.append(_SETTLED_UPSTREAM)
                self._park(ev.child_run_id, pending)
        run = self._run(data.run_id)
        fan = self._fanout(run, ev.step_id)
        if fan is None:
            return
        error = _readable(ev.error)
        idx = fan.finish(ev.item_id, status, data.ts, error)
        if ev.usage:
            spent = Usage.from_metadata(ev.usage)
            if spent:
                fan.usage = spent if fan.usage is None else fan.usage + spent
        cause = None
        if ev.child_run_id:
            fan.set_child(idx, ev.child_run_id)
            if status != "completed":
                child = self.runs.get(ev.child_run_id)  # failed children are folded by now
                cause = failure_cause(child.steps.values()) if child is not None else None
                if cause:
                    fan.causes[idx] = cause
        self._changes.fanouts.add((run.run_id, fan.key))
        if self._is_root(run.run_id):
            self._changes.header = True
        if status == "failed":
            self.failures += 1
            # Why, not which step: the child's own error only says `Step 'x' failed`. The line
            # is cut at the log pane's edge: the cause (the error's last line) comes first.
            why = cause_first(cause or error)
            text = f"✗ {fan.name} item {ev.item_id} failed" + (f": {why}" if why else "")
            self._log(LogLine(data.ts, text, "error", run.run_id, fan.node_path), error=True)

    def _item_skipped(self, data: EngineEventData, ev: Any) -> None:
        run = self._run(data.run_id)
        fan = self._fanout(run, ev.step_id)
        if fan is None:
            return
        fan.finish(ev.item_id, "skipped", data.ts, ev.reason)
        self._changes.fanouts.add((run.run_id, fan.key))
        if self._is_root(run.run_id):
            self._changes.header = True
            reason = f": {ev.reason}" if ev.reason else ""
            text = f"⊘ {fan.name} item {ev.item_id} skipped{reason}"
            self._log(LogLine(data.ts, text, "warning", run.run_id))

    def _child_run_started(self, data: EngineEventData, ev: Any) -> None:
        lazy = (
            ev.item_id is not None
            and ev.child_run_id not in self.runs
            and self._materializing != ev.child_run_id
            and not self._is_root(ev.child_run_id)
        )
        if lazy:
            self._deferred[ev.child_run_id] = [data]
        else:
            child = self._run(ev.child_run_id)
            child.workflow_name = ev.workflow_name
            child.parent_run_id = ev.parent_run_id
            child.parent_step_id = ev.parent_step_id
            child.item_id = ev.item_id
            if child.status == "pending":
                child.status = "running"
                child.started_at = child.started_at or data.ts
        if self._materializing == ev.child_run_id:
            return
        parent = self.runs.get(ev.parent_run_id)
        if parent is None:
            return
        if ev.parent_step_id:
            parent.child_runs[ev.parent_step_id] = ev.child_run_id
            sv = self._step_by_id(parent, ev.parent_step_id, None)
            if sv is not None:
                sv.child_run_id = ev.child_run_id
                self._touch(parent, sv)
        if ev.item_id:
            fan = self._fanout(parent, ev.parent_step_id)
            if fan is not None:
                idx = fan.index.get(ev.item_id)
                if idx is None:
                    idx = fan.add(ev.item_id)
                fan.set_child(idx, ev.child_run_id)
                self._changes.fanouts.add((parent.run_id, fan.key))

    # ------------------------------------------------------------------ usage

    def usage(self, run_id: str | None = None) -> Usage | None:
        """What a run (default: the root) spent so far, its children included: its steps' usage
        (a finished `call workflow` step holds its child's total; one still running counts its
        child run live) plus its fan-outs' items (docs/agents.md "Usage")."""
        run = self.runs.get(run_id or self.root_run_id or "")
        return None if run is None else self._run_usage(run, 0)

    def _run_usage(self, run: RunState, depth: int) -> Usage | None:
        parts: list[Usage | None] = [fan.usage for fan in run.fanouts.values()]
        for sv in run.steps.values():
            if sv.kind == "foreach":
                continue
            if sv.kind == "call_workflow" and sv.usage is None and sv.child_run_id and depth < 8:
                child = self.runs.get(sv.child_run_id)
                parts.append(self._run_usage(child, depth + 1) if child is not None else None)
            else:
                parts.append(sv.usage)
        return Usage.total(parts)

    # ------------------------------------------------------------------ exit summary

    def summary_text(self, output_lines: int = 10) -> str:
        """Plain text for the terminal after a run: what ran, what failed, why (`observe.summary`)."""
        from runkon_flow.observe.summary import exit_summary

        return exit_summary(self, output_lines)


def _readable(text: str | None) -> str | None:
    """Error and summary texts as people read them (`cancelled: interrupted (Ctrl-C)`, not the
    engine's `UserRequested(Some("…"))` spelling); None stays None."""
    return readable_error(text) if text else text
