"""Estimates: how long each step and fan-out of a run should take, from past runs of the same
workflow, narrowed by the live item rate (docs/run-model.md "Estimates").

* **History.** The last `runs` completed top-level runs of the workflow (not this one). For each
  step (by node path) the duration of its latest completed attempt in each run; for a foreach
  the seconds per item (its duration divided by its item count), so a past run of 100 items still
  says something about one of 10,000.
* **Band.** p50–p95 of those durations (nearest rank; with one past run both are that run). A
  foreach's band is its items now × the p50 / p95 seconds per item.
* **Live.** Once items have finished, the rate so far (`elapsed × total / done`) is blended in with
  the weight of the fraction done: at 10 % done the band is mostly history, near the end it is
  the live rate and the band narrows to it. Without history the live rate alone gives the p50 and
  the p95 starts at twice it, narrowing the same way.
* **Over p95.** A running step whose elapsed time is past its p95 is *overdue*; renderers mark it.
* **Not people.** A gate that waits for someone's answer (`ANSWERED_GATES`) is not timed: how long
  a person takes is not a slowdown, so it gets no band, no ETA and no over-p95 mark. Nor is that
  wait counted in a `call workflow` step that contains it: the step's time, in history and live,
  is its duration minus what the workflows it calls (at any depth) waited at such gates, and
  while one of them waits the step gets no ETA and no over-p95 mark (`people_wait`).

Pure reading: `history_of(store, …)` reads rows once; `Estimates` answers from memory, so a
renderer may ask every frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from runkon_flow.humanize import format_duration
from runkon_flow.observe.liveness import step_seconds
from runkon_flow.observe.loader import MAX_CALL_DEPTH
from runkon_flow.observe.records import FanOutView, RunState, StepView
from runkon_flow.persistence.models import RunStatus, StepRole, StepStatus, WorkflowRunStep
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = [
    "ANSWERED_GATES",
    "Band",
    "Estimates",
    "history_of",
    "people_wait",
    "people_wait_in_rows",
    "quantile",
]

#: Seconds a step must outrun its p95 by before it reads `over p95`.
OVER_P95_SLACK = 1.0

#: How many past runs the history reads (the most recent completed ones).
HISTORY_RUNS = 20

#: Gate types that wait for an answer (a person, or a PR's reviewers and checks): their duration
#: is waiting, not work, so history keeps none (a `quality_gate` computes, and is kept).
ANSWERED_GATES = frozenset({"human_approval", "human_review", "pr_approval", "pr_checks"})


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile `q` (0–1) of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Band:
    """Seconds: the typical (p50) and the slow-but-normal (p95) case."""

    p50: float
    p95: float

    def outlived_by(self, seconds: float) -> bool:
        """Past the p95 by more than `OVER_P95_SLACK`: a step of 0.1 s that once took 0.3 s is
        not news (`over p95 (0.0s)` was all it said), nor is a jitter of the machine."""
        return seconds > self.p95 + OVER_P95_SLACK

    def minus(self, elapsed: float) -> Band:
        """What is left of the band after `elapsed` seconds (never below zero)."""
        return Band(max(0.0, self.p50 - elapsed), max(0.0, self.p95 - elapsed))

    def text(self) -> str:
        """`20s–45s` (`20s` when both ends read the same)."""
        low, high = format_duration(self.p50), format_duration(self.p95)
        return low if low == high else f"{low}–{high}"


@dataclass
class Estimates:
    """Past durations of one workflow's steps, by node path."""

    workflow: str
    runs: int = 0  # how many past runs the figures come from
    steps: dict[str, list[float]] = field(default_factory=dict)  # node path → seconds, one per run
    per_item: dict[str, list[float]] = field(default_factory=dict)  # foreach node path → s/item

    def step_band(self, node_path: str | None) -> Band | None:
        """The p50–p95 duration of a (non-foreach) step; None without history."""
        values = self.steps.get(node_path or "")
        if not values:
            return None
        return Band(quantile(values, 0.5), quantile(values, 0.95))

    def fanout_band(self, node_path: str | None, items: int) -> Band | None:
        """A foreach of `items` items from history alone: items × p50/p95 seconds per item."""
        values = self.per_item.get(node_path or "")
        if not values or items <= 0:
            return None
        return Band(items * quantile(values, 0.5), items * quantile(values, 0.95))

    def fanout_total(self, fan: FanOutView, now: float, key: str | None = None) -> Band | None:
        """The fan-out's whole duration, history narrowed by the live rate; None before anything
        is known (no history and no finished item). `key`: as in `running_note`."""
        prior = self.fanout_band(key or fan.node_path, fan.total)
        done, total = fan.done, fan.total
        if fan.first_start is None or done == 0 or total == 0:
            return prior
        elapsed = max(now - fan.first_start, 1e-6)
        live = elapsed * total / done
        w = min(1.0, done / total)
        if prior is None:
            return Band(live, live * (2 - w))
        p50 = (1 - w) * prior.p50 + w * live
        return Band(p50, p50 + (1 - w) * max(0.0, prior.p95 - prior.p50))

    def fanout_eta(self, fan: FanOutView, now: float, key: str | None = None) -> Band | None:
        """Seconds left of the fan-out: its total band minus the time it has run."""
        band = self.fanout_total(fan, now, key)
        if band is None:
            return None
        started = fan.first_start if fan.first_start is not None else now
        return band.minus(max(0.0, now - started))

    def running_note(
        self,
        sv: StepView,
        now: float,
        fan: FanOutView | None = None,
        key: str | None = None,
        waited: float | None = 0.0,
    ) -> str:
        """What a renderer writes after a running step: `ETA 20s–45s`, or `⚠ over p95 (1m10s)`
        once it has run past its p95; "" without history (or when not running). `key` is the
        step's key in the history when it is not its node path (a called workflow's step:
        `<call node path>/<node path>`). `waited`: a call step's seconds spent waiting for people
        in the workflows it calls, None while it waits for one (`people_wait`): no note then."""
        if waited is None:
            return ""
        key = key or sv.node_path
        late = self.overdue(sv, now, fan, key, waited)
        if late is not None:
            return f"⚠ over p95 ({format_duration(late.p95)})"
        if sv.status != "running":
            return ""
        if fan is not None:
            eta = self.fanout_eta(fan, now, key)
        else:
            band = self.step_band(key)
            eta = band.minus(max(0.0, (sv.elapsed(now) or 0.0) - waited)) if band is not None else None
        return f"ETA {eta.text()}" if eta is not None else ""

    def overdue(
        self,
        sv: StepView,
        now: float,
        fan: FanOutView | None = None,
        key: str | None = None,
        waited: float = 0.0,
    ) -> Band | None:
        """The band a running step has outlived (elapsed, less `waited`, > p95), else None."""
        key = key or sv.node_path
        if sv.status not in ("running", "waiting"):
            return None
        elapsed = sv.elapsed(now)
        if elapsed is None:
            return None
        band = self.fanout_band(key, fan.total) if fan is not None else self.step_band(key)
        return band if band is not None and band.outlived_by(elapsed - waited) else None


def _waits_for_people(kind: str | None, gate_type: str | None) -> bool:
    """A gate step (its view's kind or its row's role: both "gate") that waits for an answer."""
    return kind == StepRole.GATE.value and gate_type in ANSWERED_GATES


def people_wait(
    sv: StepView, now: float, run_of: Callable[[str], RunState | None], depth: int = 0
) -> float | None:
    """Seconds of a live `call workflow` step's time that the workflows it calls (at any depth)
    spent waiting at gates for people, by each such gate's latest execution; None while one of
    them waits now. 0 for any other step. `run_of`: the model's run by id (`RunModel.runs.get`)."""
    child = run_of(sv.child_run_id) if sv.kind == "call_workflow" and sv.child_run_id else None
    if child is None:
        return 0.0
    total = 0.0
    for step in child.steps.values():
        if _waits_for_people(step.kind, step.gate_type):
            if step.status == "waiting":
                return None
            total += step.elapsed(now) or 0.0
        elif step.kind == "call_workflow" and depth < MAX_CALL_DEPTH:
            inner = people_wait(step, now, run_of, depth + 1)
            if inner is None:
                return None
            total += inner
    return total


def people_wait_in_rows(store: WorkflowPersistence, row: WorkflowRunStep, depth: int = 0) -> float | None:
    """`people_wait` from stored rows: what a `call workflow` row's child run waited for people
    (every execution counted, at any depth); None while a gate of theirs waits."""
    child_id = _called_run(row)
    if child_id is None:
        return 0.0
    total = 0.0
    for inner in store.get_steps(child_id):
        if _waits_for_people(inner.role, inner.gate_type):
            took = step_seconds(inner)
            if took is None:  # still waiting
                return None
            total += took
        elif inner.role == StepRole.WORKFLOW.value and depth < MAX_CALL_DEPTH:
            waited = people_wait_in_rows(store, inner, depth + 1)
            if waited is None:
                return None
            total += waited
    return total


def _called_run(row: WorkflowRunStep) -> str | None:
    """The child run of a `call workflow` row (named on the row from the moment the child exists)."""
    if row.role != StepRole.WORKFLOW.value or row.child_run_id == "dispatching":
        return None
    return row.child_run_id or None


def history_of(
    store: WorkflowPersistence, workflow: str, *, exclude: str | None = None, runs: int = HISTORY_RUNS
) -> Estimates:
    """The durations of `workflow`'s steps in its last `runs` completed top-level runs (leaving
    out run `exclude`, the one being estimated). Reads one run list and each run's step rows."""
    est = Estimates(workflow)
    past = [
        r
        for r in store.list_runs(limit=500)
        if r.workflow_name == workflow and r.id != exclude and RunStatus(r.status) is RunStatus.COMPLETED
    ][:runs]
    for run in past:
        _add_run(store, est, run.id, "", 0)
    est.runs = len(past)
    return est


def _add_run(
    store: WorkflowPersistence, est: Estimates, run_id: str, prefix: str, depth: int
) -> float | None:
    """One past run's completed steps into `est`, keyed by node path; the steps of a workflow it
    called under `<call step's node path>/` (the dashboard tree's node uid), so a called
    workflow's `body.0` is never taken for the caller's. Returns what the run (at any depth)
    waited for people, from the rows it reads anyway (every execution counted; None while a gate
    of theirs waits), so a call step's time leaves out what its children waited for people."""
    latest: dict[str, WorkflowRunStep] = {}
    waited: float | None = 0.0
    for row in store.get_steps(run_id):
        if _waits_for_people(row.role, row.gate_type) and waited is not None:
            took = step_seconds(row)
            waited = None if took is None else waited + took
        if row.node_path and StepStatus(row.status) is StepStatus.COMPLETED:
            seen = latest.get(row.node_path)
            if seen is None or (row.started_at or "") >= (seen.started_at or ""):
                latest[row.node_path] = row
    for path, row in latest.items():
        if _waits_for_people(row.role, row.gate_type):
            continue  # waiting for people: no estimate (a late answer is not a slow step)
        key = prefix + path
        took = step_seconds(row)
        if row.role == StepRole.WORKFLOW.value and row.child_run_id and depth < MAX_CALL_DEPTH:
            inner = _add_run(store, est, row.child_run_id, f"{key}/", depth + 1)
            if took is not None:
                took = max(0.0, took - (inner or 0.0))
            if waited is not None:
                waited = None if inner is None else waited + inner
        if took is not None:
            if row.role == StepRole.FOREACH.value:
                if row.fan_out_total:
                    est.per_item.setdefault(key, []).append(took / row.fan_out_total)
            else:
                est.steps.setdefault(key, []).append(took)
    return waited
