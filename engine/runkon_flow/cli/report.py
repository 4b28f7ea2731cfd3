"""What `runkon-flow runs` and `runkon-flow show` print: run history and one run's steps, read
from the store (never from events), as aligned text or as JSON. Steps and fan-out items are
counted by the run model's one rule (`runkon_flow.observe.counts`), as the live view and the
dashboard count them.

A run whose row says running/waiting/cancelling but whose lease has lapsed has no engine behind
it any more (its process died): it is shown as `interrupted`, which is what a user needs to know
to decide to resume it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from runkon_flow.approvals import GateApprovals, WaitingGate, oldest_first
from runkon_flow.cli.common import fitted, whole_command
from runkon_flow.cli.hints import Hints
from runkon_flow.humanize import (
    display_line,
    error_headline,
    fit_cause,
    format_duration,
    gate_decision,
    readable_error,
)
from runkon_flow.observe import liveness
from runkon_flow.observe.clusters import RunCluster, by_fan_out, latest_foreach_rows, run_clusters
from runkon_flow.observe.counts import ItemCounts, latest_attempts, row_attempts, row_status, row_step_counts
from runkon_flow.observe.estimates import Estimates, history_of, people_wait_in_rows
from runkon_flow.observe.loader import (
    fanout_from_rows,
    fill_item_errors,
    item_spend,
    reused_row_ids,
    row_called_why,
    row_why,
    row_why_failed,
    run_spend,
)
from runkon_flow.observe.records import FanOutView, StepView
from runkon_flow.observe.status import ITEM_STATUSES, outcome
from runkon_flow.persistence.models import (
    FanOutItemRow,
    FanOutItemStatus,
    RunStatus,
    StepRole,
    StepStatus,
    WorkflowRun,
    WorkflowRunStep,
)
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.usage import Usage

__all__ = [
    "display_status",
    "final_steps",
    "gate_json",
    "gate_state",
    "gate_where",
    "gates_held",
    "item_fan_outs",
    "items_json",
    "items_lines",
    "lease_is_live",
    "parse_time",
    "run_duration",
    "run_json",
    "runs_table",
    "show_json",
    "show_lines",
    "step_counts",
]

_FAILED = (StepStatus.FAILED, StepStatus.TIMED_OUT)


#: Stored time text as an aware datetime (zone-less text is UTC), one rule for every reader.
parse_time = liveness.utc_moment


def _seconds(now: datetime | None) -> float | None:
    return None if now is None else now.timestamp()


def lease_is_live(run: WorkflowRun, now: datetime | None = None) -> bool:
    """Some engine holds this run right now (an owner and an unexpired lease)."""
    return liveness.lease_is_live(run, _seconds(now))


def display_status(run: WorkflowRun, now: datetime | None = None) -> str:
    """The stored status, except `interrupted` for an unfinished run that no engine holds."""
    return liveness.display_status(run, _seconds(now))


def run_duration(
    run: WorkflowRun, steps: Iterable[WorkflowRunStep] = (), now: datetime | None = None
) -> float | None:
    """Seconds from start to end: to now while an engine runs it, to where it stopped when it is
    interrupted (`observe.liveness.stopped_at`: it never keeps growing)."""
    return liveness.run_seconds(run, steps, _seconds(now))


def final_steps(rows: Iterable[WorkflowRunStep]) -> list[WorkflowRunStep]:
    """The last attempt of each step execution (`observe.counts`): retries and resumed re-runs add
    rows, but a user counts a step once, by how it ended."""
    return latest_attempts(rows)


#: Steps not finished, each counted on its own after the four outcomes (`steps_cell`).
UNFINISHED = ("running", "waiting", "interrupted", "pending")


def step_counts(rows: Iterable[WorkflowRunStep], run_interrupted: bool = False) -> dict[str, int]:
    """ok / failed / skipped / cancelled, then the steps not finished — running, waiting,
    interrupted (still running or waiting when the run lost its engine: `run_interrupted`),
    pending — by the run model's one counting rule (`row_step_counts`, as the runs screen counts
    them); `other` sums those."""
    counts: Counter[str] = Counter()
    for status, n in row_step_counts(rows, run_interrupted).items():
        counts[outcome(status)] += n
    ok, failed = counts["completed"], counts["failed"]
    skipped, cancelled = counts["skipped"], counts["cancelled"]
    return {
        "ok": ok,
        "failed": failed,
        "skipped": skipped,
        "cancelled": cancelled,
        **{status: counts[status] for status in UNFINISHED},
        "other": sum(counts.values()) - ok - failed - skipped - cancelled,
    }


def steps_cell(counts: dict[str, int]) -> str:
    """`runs`' step counts: `3/0/0/0`, then the unfinished ones in words — `3/0/0/0 +1 running`,
    `3/0/0/0 +1 interrupted` — so a run an engine runs and one that lost it read apart there too."""
    cell = f"{counts['ok']}/{counts['failed']}/{counts['skipped']}/{counts['cancelled']}"
    return " ".join([cell, *(f"+{counts[s]} {s}" for s in UNFINISHED if counts[s])])


def _duration_text(seconds: float | None) -> str:
    return format_duration(seconds) if seconds is not None else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [
        max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
        for i in range(len(header))
    ]
    out = []
    for cells in (header, *rows):
        out.append(indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return out


# --------------------------------------------------------------------------- runs


def runs_table(
    runs: Sequence[tuple[WorkflowRun, Sequence[WorkflowRunStep]]],
    now: datetime | None = None,
    width: int | None = None,
    whys: Sequence[str | None] = (),
) -> list[str]:
    """One aligned line per run: id, workflow, status, started, duration, steps ok/failed/skipped/
    cancelled, then USAGE (tokens · cost) when some run reported any, then WHY (`whys`, one per
    run: `loader.row_why`) when some run has one.

    Wider than `width` (the terminal's; None: piped, every column in full), the table gives way
    one step at a time until it fits, so that an 80-column terminal does not wrap each run over
    two lines: USAGE goes, then the start loses its year and seconds, then the headers of the
    duration and the step counts shorten (TOOK, the dashboard's ✓/✗/⊘/■), then long workflow
    names are cut with "…". Run ids stay whole: every command takes the full id. WHY, the cause,
    matters more than the columns that give way: it takes the room of the first of those tables
    that leaves room for every why whole, else of the narrowest when that leaves it `_MIN_WHY`
    columns, each cause cut before its headline (`humanize.fit_cause`); else (80 columns) each
    run's why goes on a line of its own under the run's line (`  why: …`), fitted to the width."""
    rows = []
    usages = []
    for run, steps in runs:
        status = display_status(run, now)
        counts = step_counts(steps, status == liveness.INTERRUPTED)
        rows.append(
            [
                display_line(run.id, None),  # a row another program wrote may hold anything
                display_line(run.workflow_name, None),
                status,
                liveness.started_time(run),
                _duration_text(run_duration(run, steps, now)),
                steps_cell(counts),
            ]
        )
        usages.append(run_spend(run, list(steps)))
    said = [display_line(why or "", None) for why in whys] or [""] * len(rows)
    header = ["RUN", "WORKFLOW", "STATUS", "STARTED", "DURATION", "OK/FAILED/SKIPPED/CANCELLED"]
    stages = list(_giving_way(header, rows, usages, runs))
    if width is None:  # piped: every column in full
        names, cells = stages[0]
        if any(said):
            return _table([*names, "WHY"], [[*c, w] for c, w in zip(cells, said, strict=True)])
        return _table(names, cells)
    if not any(said):
        for names, cells in stages:
            if _fits(_table(names, cells), width):
                return _table(names, cells)
    else:  # the first table with room for every why whole, else the narrowest with room for some
        longest = max(len(why) for why in said)
        for index, (names, cells) in enumerate(stages):
            room = width - max(len(line) for line in _table(names, cells)) - len("  ")
            if room >= longest or (index == len(stages) - 1 and room >= _MIN_WHY):
                fitted_whys = [fit_cause(why, room) for why in said]
                return _table([*names, "WHY"], [[*c, w] for c, w in zip(cells, fitted_whys, strict=True)])
    table = _cut_names(*stages[-1], width)
    if not any(said):
        return table
    lines = table[:1]
    for line, why in zip(table[1:], said, strict=True):
        lines.append(line)
        if why:
            lines.append(f"  why: {fit_cause(why, width - len('  why: '))}")
    return lines


def _giving_way(
    header: list[str],
    rows: list[list[str]],
    usages: list[Usage | None],
    runs: Sequence[tuple[WorkflowRun, Sequence[WorkflowRunStep]]],
) -> Iterator[tuple[list[str], list[list[str]]]]:
    """The runs table's columns as a narrow terminal makes them give way, widest first: with
    USAGE (when some run reported any), without it, the start short, the headers short."""
    if any(usages):
        yield [*header, "USAGE"], [[*r, u.short() if u else ""] for r, u in zip(rows, usages, strict=True)]
    yield header, rows
    short = [
        [*r[:3], liveness.started_time(run, "%m-%d %H:%M"), *r[4:]]
        for r, (run, _) in zip(rows, runs, strict=True)
    ]
    yield header, short
    yield _SHORT_HEADER, short


#: The last two headers as the dashboard shows the step counts.
_SHORT_HEADER = ["RUN", "WORKFLOW", "STATUS", "STARTED", "TOOK", "✓/✗/⊘/■"]


def _cut_names(names: list[str], cells: list[list[str]], width: int) -> list[str]:
    """The narrowest table: long workflow names cut with "…" (never below `_MIN_NAME`) to fit."""
    table = _table(names, cells)
    over = max(len(line) for line in table) - width
    if over <= 0:
        return table
    room = max(_MIN_NAME, max(len(row[1]) for row in cells) - over)
    cut = [[row[0], row[1][: room - 1] + "…" if len(row[1]) > room else row[1], *row[2:]] for row in cells]
    return _table(names, cut)


#: A workflow name is never cut shorter than this (then the terminal wraps the line instead).
_MIN_NAME = 8


def _fits(table: list[str], width: int) -> bool:
    return max(len(line) for line in table) <= width


#: A WHY column narrower than this says too little: the why goes on a line of its own instead.
_MIN_WHY = 24


def _usage_json(usage: Usage | None) -> dict[str, int | float] | None:
    """A usage as `--json` writes it: its non-zero fields, or null when nothing was reported."""
    return usage.as_dict() if usage else None


def run_json(
    run: WorkflowRun,
    steps: Sequence[WorkflowRunStep],
    now: datetime | None = None,
    *,
    with_steps: bool = False,
    items: Mapping[str, ItemCounts] | None = None,
    why: str | None = None,
) -> dict[str, Any]:
    """A run as plain JSON data (stable keys; times as stored, RFC 3339 UTC). `status` is the
    stored status, `display_status` the one the text shows (`interrupted` for an unfinished run no
    engine holds; its steps still running or waiting likewise, `row_status`), and durations stop
    where the text's do. `items`: a foreach step row's item counts by its id (`show --json`).
    `why`: why it failed or was cancelled, on one line as `runs` and `show` say it
    (`loader.row_why`); `error` keeps the stored text, which only says which step failed."""
    interrupted = display_status(run, now) == liveness.INTERRUPTED
    until = liveness.unfinished_until(run, steps, _seconds(now))
    data: dict[str, Any] = {
        "id": run.id,
        "workflow": run.workflow_name,
        "title": run.workflow_title,
        "status": RunStatus(run.status).value,
        "display_status": display_status(run, now),
        "live": lease_is_live(run, now),
        "started_at": run.started_at or None,
        "ended_at": run.ended_at,
        "duration_s": run_duration(run, steps, now),
        "inputs": dict(run.inputs),
        "error": run.error,
        "why": why,
        "parent_run_id": run.parent_workflow_run_id or run.parent_run_id or None,
        "rerun_of": run.rerun_of,
        "rerun_from": run.rerun_from,
        "rerun_definition": run.rerun_definition,
        "steps": step_counts(steps, interrupted),
        "usage": _usage_json(run_spend(run, steps)),
    }
    if with_steps:
        attempts = row_attempts(steps)  # the TRY column's number (`attempt`: the stored retry_count)
        data["step_rows"] = [
            {
                "id": s.id,
                "name": s.step_name,
                "role": s.role,
                "position": s.position,
                "iteration": s.iteration,
                "attempt": s.retry_count,
                "try": attempts[s.id][0],
                "status": StepStatus(s.status).value,
                "display_status": row_status(s, interrupted),
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "duration_s": liveness.step_seconds(s, until),
                "error": s.step_error,
                "child_run_id": s.child_run_id,
                "markers": s.markers_out,
                "usage": _usage_json(Usage.from_json(s.usage)),
                **({"items": asdict(items[s.id])} if items and s.id in items else {}),
            }
            for s in steps
        ]
    return data


@dataclass
class _ShowReading:
    """What `show` and `show --json` read of a run, each once: its child runs (the `children`
    line, the failed items' errors, the retried items' earlier attempts), each foreach row's item
    rows and view, and the failure clusters — whose filled views (`fans`) say why each failed
    item failed, so the failed-items list reads nothing more (`item_child_failed_steps` once per
    fan-out: it was read again for the ten items the text lists)."""

    children: list[WorkflowRun]
    known: dict[str, WorkflowRun]  # the children by id
    fan_outs: dict[str, tuple[list[FanOutItemRow], FanOutView]]
    clusters: list[RunCluster]
    fans: dict[str, FanOutView]

    @classmethod
    def of(
        cls, store: WorkflowPersistence, run: WorkflowRun, steps: list[WorkflowRunStep], interrupted: bool
    ) -> _ShowReading:
        children = store.list_runs(limit=1_000_000, parent_run_id=run.id)
        fan_outs = {
            s.id: _fan_out(store, s, run_interrupted=interrupted)
            for s in steps
            if s.role == StepRole.FOREACH.value
        }
        fans: dict[str, FanOutView] = {}
        known = {c.id: c for c in children}
        rows = {step_id: items for step_id, (items, _) in fan_outs.items()}
        clusters = run_clusters(store, run.id, steps, rows, fans=fans, runs=known)
        return cls(children, known, fan_outs, clusters, fans)

    def filled(self, store: WorkflowPersistence, step_id: str) -> FanOutView:
        """Foreach row `step_id`'s view with its failed items' errors (the clusters' view)."""
        fan = self.fans.get(step_id)
        if fan is None:  # not one of the latest fan-outs the clusters read: filled here
            fan = self.fan_outs[step_id][1]
            fill_item_errors(store, fan, self.known)
            self.fans[step_id] = fan
        return fan


def show_json(store: WorkflowPersistence, run: WorkflowRun, now: datetime | None = None) -> dict[str, Any]:
    """`show --json`: the run with every step row, each foreach row's item counts (items still
    running in an interrupted run counted `interrupted`, as the text counts them) and the failure
    clusters."""
    steps = store.get_steps(run.id)
    interrupted = display_status(run, now) == liveness.INTERRUPTED
    read = _ShowReading.of(store, run, steps, interrupted)
    current = {s.id for s in final_steps(steps)}
    known = read.known
    items = {step_id: ItemCounts.of(fan) for step_id, (_, fan) in read.fan_outs.items()}
    retried = [
        r
        for s in steps
        if s.id in read.fan_outs and s.id in current
        for r in retried_items(store, s, read.fan_outs[s.id][0], known)
    ]
    data = run_json(run, steps, now, with_steps=True, items=items, why=row_why(store, run, steps))
    data["children"] = {"total": len(read.children), **children_counts(read.children, now)}
    data["retried_items"] = [asdict(r) for r in retried]
    data["failure_clusters"] = clusters_json(read.clusters)
    data["failed_items"] = failed_items_json(read.clusters, read.fans)
    gates = waiting_gates(store, run)
    held, stamp = gates_held(store, gates), _seconds(now) or time.time()
    data["waiting_gates"] = [gate_json(gate, stamp, held[gate.run_id]) for gate in gates]
    return data


def failed_items_json(clusters: Sequence[RunCluster], fans: Mapping[str, FanOutView]) -> list[dict[str, Any]]:
    """Every failed or cancelled item of the run's latest fan-outs (`show` lists the first ten
    failed ones), in cluster order: its child run, why it failed (the cause's headline, as the
    text says it) and the number of its failure cluster (for `retry --cluster N`)."""
    out = []
    for rc in clusters:
        fan = fans[rc.step.id]
        for idx in rc.cluster.indices:
            child = fan.child_runs.get(idx)
            error = error_headline(fan.causes.get(idx) or fan.errors.get(idx) or "")
            out.append(
                {
                    "foreach": rc.foreach,
                    "step_id": rc.step.id,
                    "item": fan.ids[idx],
                    "status": ITEM_STATUSES[fan.codes[idx]],
                    "child_run_id": child,
                    "error": error or None,
                    "cluster": rc.number,
                }
            )
    return out


def gates_held(store: WorkflowPersistence, gates: list[WaitingGate]) -> dict[str, bool]:
    """Per run: whether an engine holds it now (a decision for an unheld run wakes nobody yet)."""
    out: dict[str, bool] = {}
    for gate in gates:
        if gate.run_id not in out:
            run = store.get_run(gate.run_id)
            out[gate.run_id] = run is not None and lease_is_live(run)
    return out


def gate_json(gate: WaitingGate, now: float, held: bool) -> dict[str, Any]:
    """A waiting gate as `gates --json` and `show --json` give it: one shape wherever a gate is."""
    waited = gate.waited(now)
    left = gate.time_left(now)
    return {
        "step_id": gate.step_id,
        "run_id": gate.run_id,
        "workflow": gate.workflow_name,
        "item": gate.item,
        "gate": gate.gate_name,
        "gate_type": gate.gate_type,
        "prompt": gate.prompt,
        "options": {o.value: o.label for o in gate.options},
        "since": gate.since,
        "waited_secs": None if waited is None else round(waited, 3),
        "timeout_secs": gate.timeout_secs,
        "time_left_secs": None if left is None else round(left, 3),
        "held": held,
    }


def gate_where(gate: WaitingGate, run_id: str) -> str:
    """Where a gate `run_id`'s `show` lists waits, when not in that run itself: ` (in child run X,
    item Y)` — a call workflow's or foreach's child run, and which of a fan-out's children."""
    if gate.run_id == run_id:
        return ""
    item = f", item {display_line(gate.item)}" if gate.item else ""
    return f" (in child run {gate.run_id}{item})"


def waiting_gates(store: WorkflowPersistence, run: WorkflowRun) -> list[WaitingGate]:
    """The gates `show` lists as waiting: of an unfinished run (interrupted ones too: approve,
    then resume) and its child runs (call workflow, foreach); one per gate, the newest row (an
    older `waiting` row of the same gate belongs to an engine that died). Oldest first, as the
    inbox (`gates`, the dashboard's) lists them: a fan-out's gates came newest child run first."""
    if RunStatus(run.status).is_terminal:
        return []
    newest = {(g.run_id, g.gate_name): g for g in GateApprovals(store).waiting_gates(run.id)}
    return oldest_first(newest.values())


# --------------------------------------------------------------------------- show


def _timing_note(
    store: WorkflowPersistence,
    step: WorkflowRunStep,
    fan: FanOutView | None,
    est: Estimates,
    now: float,
    run_interrupted: bool = False,
) -> str:
    """A running step's ETA band from past runs (`ETA 20s–45s`) or `⚠ over p95 (…)`; a finished
    step that took longer than its p95 in past runs: `slow: over p95 (…)` (docs/run-model.md).
    `fan`: a foreach step's items, else None. A call step's time leaves out its children's waits
    for people. `run_interrupted`: no engine holds the run, so a step still running in it is
    interrupted (`row_status`) and gets no note measured against now."""
    if row_status(step, run_interrupted) == "interrupted":
        return ""
    status = StepStatus(step.status)
    if status in (StepStatus.RUNNING, StepStatus.WAITING):
        sv = StepView(key=step.node_path or step.id, name=step.step_name, node_path=step.node_path)
        sv.status, sv.started_at = status.value, liveness.utc_seconds(step.started_at)
        return est.running_note(sv, now, fan, waited=people_wait_in_rows(store, step))
    took = liveness.step_seconds(step)
    if status is not StepStatus.COMPLETED or took is None:
        return ""
    took -= people_wait_in_rows(store, step) or 0.0
    band = (
        est.fanout_band(step.node_path, step.fan_out_total or 0)
        if fan is not None
        else est.step_band(step.node_path)
    )
    if band is None or not band.outlived_by(took):
        return ""
    return f"slow: over p95 ({format_duration(band.p95)})"


def _fan_out(
    store: WorkflowPersistence, step: WorkflowRunStep, *, run_interrupted: bool = False
) -> tuple[list[FanOutItemRow], FanOutView]:
    """A foreach step's item rows (read once for everything `show` says of them), as a view too —
    where items still running when the step or its run ended are `interrupted`, as in the
    dashboard (`fanout_from_rows`)."""
    items = store.get_fan_out_items(step.id)
    key = step.node_path or step.id
    return items, fanout_from_rows(key, step.workflow_run_id, step, items, run_interrupted=run_interrupted)


def _item_summary(items: list[FanOutItemRow], fan: FanOutView) -> str:
    """`items 58/60: 57 ok, 1 failed, 2 skipped`."""
    if not items:
        return ""
    counts = ItemCounts.of(fan)
    shown = ("running", "interrupted", "completed", "failed", "skipped", "cancelled", "pending")
    parts = [f"{getattr(counts, s)} {s}" for s in shown if getattr(counts, s)]
    return f"items {counts.finished}/{counts.total}: {', '.join(parts)}"


def _item_detail_lines(items: list[FanOutItemRow], fan: FanOutView) -> list[str]:
    """Lines naming a foreach's failed items (the first ten), with their child run and why each
    failed: `fan` has its failed items' errors filled (`loader.fill_item_errors`, as the failure
    clusters have them), read once for the whole fan-out."""
    if not items:
        return []
    failed_lines = []
    failed = [i for i in items if FanOutItemStatus(i.status) is FanOutItemStatus.FAILED]
    for item in failed[:10]:
        child = item.child_run_id if item.child_run_id not in (None, "", "dispatching") else None
        idx = fan.index.get(item.item_id)
        # why (its failed step's error), not which step; the child run's error without one
        text = error_headline(fan.causes.get(idx) or fan.errors.get(idx) or "") if idx is not None else ""
        error = f": {text}" if text else ""
        where = f" (child run {child})" if child else ""
        failed_lines.append(f"    item {item.item_id} failed{where}{error}")
    if len(failed) > 10:
        failed_lines.append(f"    … and {len(failed) - 10} more failed items")
    return failed_lines


@dataclass(frozen=True)
class RetriedItem:
    """An item of a fan-out that a resume or retry ran again: its attempt now, and the child run of
    the attempt before it (kept, so `show` of it still tells why it failed)."""

    foreach: str
    step_id: str
    item: str
    attempt: int
    status: str
    child_run_id: str | None
    previous_child_run_id: str | None
    previous_status: str | None


def retried_items(
    store: WorkflowPersistence,
    step: WorkflowRunStep,
    items: Sequence[FanOutItemRow],
    known: Mapping[str, WorkflowRun] | None = None,
) -> list[RetriedItem]:
    """The items of foreach row `step` on their second attempt or later, in item order: what `show`
    lists under `items of foreach '…' run again by a resume or retry`, and `show --json` as
    `retried_items`. The earlier attempt's child run of each is taken from `known` (the run's
    children, read once) or read."""
    known = known or {}
    out = []
    for item in items:
        if item.attempt <= 1:
            continue
        before = item.previous_child_run_id
        previous = (known.get(before) or store.get_run(before)) if before else None
        child = item.child_run_id if item.child_run_id not in (None, "", "dispatching") else None
        out.append(
            RetriedItem(
                foreach=step.step_name.removeprefix("foreach:"),
                step_id=step.id,
                item=item.item_id,
                attempt=item.attempt,
                status=FanOutItemStatus(item.status).value,
                child_run_id=child,
                previous_child_run_id=item.previous_child_run_id or None,
                previous_status=display_status(previous) if previous is not None else None,
            )
        )
    return out


def _attempt_lines(retried: Sequence[RetriedItem]) -> list[str]:
    """Retried items with their earlier attempt, under a heading naming the foreach: `b: attempt 2
    completed (earlier attempt: child run X failed)` — the failed child run is kept, so `show X`
    still tells why it failed."""
    if not retried:
        return []
    lines = ["", f"items of foreach '{retried[0].foreach}' run again by a resume or retry"]
    for item in retried[:10]:
        earlier = ""
        if item.previous_child_run_id:
            state = f" {item.previous_status}" if item.previous_status else ""
            earlier = f" (earlier attempt: child run {item.previous_child_run_id}{state})"
        lines.append(f"  {item.item}: attempt {item.attempt} {item.status}{earlier}")
    if len(retried) > 10:
        lines.append(f"  … and {len(retried) - 10} more retried items")
    return lines


def children_counts(children: Sequence[WorkflowRun], now: datetime | None = None) -> dict[str, int]:
    """The run's child runs per status as `runs` shows a status (`interrupted` for one no engine
    holds), by status name: `show`'s `children` line and `show --json`'s `children`."""
    return dict(sorted(Counter(display_status(c, now) for c in children).items()))


def _try_cell(attempt: int, attempts: int) -> str:
    """The TRY cell of a step row: its attempt number when the step ran more than once (its own
    retries, or a resume or retry of the run ran it again: two `foreach:each` rows read 1 and 2),
    else empty."""
    return str(attempt) if attempts > 1 else ""


def cluster_lines(
    run: WorkflowRun,
    clusters: Sequence[RunCluster],
    hints: Hints | None = None,
    *,
    limit: int | None = None,
    items: int = 5,
    width: int | None = None,
    rest: str = "",
) -> list[str]:
    """Failed items grouped by error signature, per fan-out, numbered for `retry --cluster N`:
    `1. 30 × rate limited after <n> requests  (items a, b, … (28 more))`. With `hints`, the
    heading says how to retry one. The brief list a plain run ends with: the first `limit`
    clusters (by number), `items` ids each, every line fitted to `width` (a label gives up the
    part before its last ` · ` first, `humanize.fit_cause`), then `… and K more kinds` and
    `rest` (where the others are listed)."""
    if not clusters:
        return []
    retry_one = hints.command("retry", run.id, "--cluster", fill="N", definitions=True) if hints else ""
    how = f" (retry one: {retry_one})" if hints else ""
    lines = ["", f"failure clusters{how}"]
    room = width or 1 << 30
    shown = 0
    for group in by_fan_out(clusters):
        if limit is not None and shown >= limit:
            break
        step = group.clusters[0].step
        iteration = f" (iteration {step.iteration})" if step.iteration else ""
        lines.append(_cut(f"  foreach '{group.clusters[0].foreach}'{iteration}", room, "…"))
        # What every cluster of the fan-out starts with is said once, so each line starts with
        # what tells it apart (a script's clusters all begin `Script 'x' exited with code <n>`).
        if group.common:
            lines.append("    all: " + fit_cause(group.common, room - 9))
        for rc, label in zip(group.clusters, group.labels, strict=True):
            if limit is not None and shown >= limit:
                break
            shown += 1
            head = f"    {rc.number}. {rc.cluster.count} × "
            lines.append(head + fit_cause(label, room - len(head)))
            lines.append(_cut(f"       items {rc.cluster.items_text(items)}", room, "…"))
    more = len(clusters) - shown
    if more:
        lines.append(f"  … and {more} more kind{'' if more == 1 else 's'}" + (f" {rest}" if rest else ""))
    return lines


def _cut(text: str, room: int, ellipsis: str) -> str:
    return text if len(text) <= room else text[: max(0, room - len(ellipsis))] + ellipsis


#: A run's closing lines under `--progress plain` or `quiet` list this many failure clusters, with
#: this many item ids each, in this many columns: what went wrong, not `show`'s whole list.
BRIEF_CLUSTERS = 3
BRIEF_ITEMS = 3
BRIEF_WIDTH = 80


def brief_failures(run: WorkflowRun, clusters: Sequence[RunCluster], hints: Hints) -> list[str]:
    """The failure clusters a run that printed no list of them (plain, quiet) ends with, above
    the retry hint: the first three, numbered as `show` numbers them (`run_clusters`; from the
    fan-outs read once for the hint too: `retry_plan.fanout_clusters`), then `… and K more kinds
    (runkon-flow show RUN lists them all)`. [] without failed items."""
    rest = f"({hints.command('show', run.id)} lists them all)"
    lines = cluster_lines(
        run, clusters, limit=BRIEF_CLUSTERS, items=BRIEF_ITEMS, width=BRIEF_WIDTH, rest=rest
    )
    return lines[1:]  # stderr's lines above it are hints, not a report: no blank line


def clusters_json(clusters: Sequence[RunCluster]) -> list[dict[str, Any]]:
    return [
        {
            "number": rc.number,
            "foreach": rc.foreach,
            "step_id": rc.step.id,
            "count": rc.cluster.count,
            "signature": rc.cluster.signature,
            "example": rc.cluster.example,
            "items": list(rc.cluster.item_ids),
        }
        for rc in clusters
    ]


def gate_answer(step: WorkflowRunStep, when_rejected: bool = False) -> str | None:
    """Who answered a gate row, when, with which options and note (`approved by alice at … ·
    note: ok`); None for a gate nobody answered. The store keeps the time of an approval only;
    `when_rejected` gives a rejection its row's end, when it was rejected."""
    if not step.gate_approved_by:
        return None
    chosen: list[str] = []
    with suppress(ValueError, TypeError):
        raw = json.loads(step.gate_selections) if step.gate_selections else []
        chosen = [str(c) for c in raw] if isinstance(raw, list) else []
    approved = StepStatus(step.status) is StepStatus.COMPLETED
    when = step.gate_approved_at or (step.ended_at if when_rejected else None)
    at = liveness.local_time(when) if when else None
    return gate_decision(approved, step.gate_approved_by, chosen, step.gate_feedback, at)


def gate_state(step: WorkflowRunStep) -> str:
    """A gate row's state in words, for a message naming gates: `waiting`, `approved by alice at
    …`, `rejected by bob at …`, or its status (`failed`: timed out; `cancelled`: a resume
    inserted the gate again)."""
    return gate_answer(step, when_rejected=True) or StepStatus(step.status).value


def _gate_decisions(steps: list[WorkflowRunStep]) -> list[str]:
    """Who answered each gate, when, with which options and note (the store keeps all of it)."""
    lines = []
    for step in steps:
        decision = gate_answer(step)
        if decision is not None:
            lines.append(f"  {step.step_name}: {decision}")
    return ["", "gates", *lines] if lines else []


def failed_step_lines(store: WorkflowPersistence, steps: Sequence[WorkflowRunStep]) -> list[str]:
    """`failed steps` and each failed step's error (at most 20 lines of it); [] when none failed.
    A failed `call workflow` step says why its child run failed, as the run's `error` line does
    (`loader.row_called_why`): its own error only names the child's failed step."""
    failed = [s for s in final_steps(steps) if StepStatus(s.status) in _FAILED]
    if not failed:
        return []
    lines = ["", "failed steps"]
    for step in failed:
        rejected = f"rejected by {step.gate_approved_by}" if step.gate_approved_by else ""
        if rejected and step.gate_feedback:
            rejected += f": {step.gate_feedback}"
        called = row_called_why(store, step)
        raw = called or readable_error(step.step_error or step.result_text or rejected or "(no error text)")
        text = raw.strip().splitlines() or ["(no error text)"]
        lines.append(f"  {step.step_name}: {text[0]}")
        lines.extend(f"    {line}" for line in text[1:20])
        if len(text) > 20:
            lines.append(f"    … {len(text) - 20} more lines")
    return lines


def failure_lines(store: WorkflowPersistence, run: WorkflowRun, hints: Hints) -> tuple[list[str], bool]:
    """What went wrong in a run, for the end of `run`, `retry` and `watch`: its failure clusters,
    then its failed steps. The clusters stand for the list of failed items `show` adds (a fan-out
    of thousands fails in a few ways). Also whether any cluster was listed."""
    steps = store.get_steps(run.id)
    # The retry hint printed under them says how to retry one.
    clusters = cluster_lines(run, run_clusters(store, run.id, steps))
    return clusters + failed_step_lines(store, steps), bool(clusters)


def show_lines(
    store: WorkflowPersistence,
    run: WorkflowRun,
    now: datetime | None = None,
    hints: Hints | None = None,
    width: int | None = None,
) -> list[str]:
    """The full report of one run: header, every step row, failed steps' errors, waiting gates.
    `hints`: how the commands it suggests are spelled (the `--db` the user gave). `width`: the
    terminal's, which the waiting gates' lines are fitted to (None: piped, one line each)."""
    hints = hints or Hints()
    steps = store.get_steps(run.id)
    reused = reused_row_ids(run, steps)  # the rows a rerun copied rather than ran (empty otherwise)
    lines = [
        f"run       {run.id}",
        f"workflow  {run.workflow_name}" + (f"  ({run.workflow_title})" if run.workflow_title else ""),
    ]
    status = display_status(run, now)
    lines.append(
        f"status    {status}"
        + ("  (no engine holds it; resume it to continue)" if status == "interrupted" else "")
    )
    parent = run.parent_workflow_run_id or run.parent_run_id
    if parent:
        lines.append(f"parent    {parent}")
    if run.rerun_of:
        stored = run.rerun_definition == "stored"
        lines.append(
            f"rerun of  {run.rerun_of} from step {run.rerun_from} "
            f"({len(reused)} step{'' if len(reused) == 1 else 's'} reused"
            + ("; the stored definition, the workflows it starts as they ran)" if stored else ")")
        )
    if RunStatus(run.status) is RunStatus.PENDING:
        # Nothing has run: the stored start is when the run was recorded.
        lines.append(f"recorded  {liveness.local_time(run.started_at)}  (not started yet)")
    else:
        lines.append(f"started   {liveness.local_time(run.started_at)}")
    if run.ended_at:
        lines.append(f"ended     {liveness.local_time(run.ended_at)}")
    elif status == liveness.INTERRUPTED:
        stop = liveness.stopped_at(run, steps)
        if stop is not None:
            # A run read interrupted before its lease's end (its holder provably gone) has not
            # reached it yet: never a stop in the future (its duration counts to now likewise).
            stop = min(stop, time.time() if now is None else now.timestamp())
            lines.append(f"stopped   {datetime.fromtimestamp(stop).strftime('%Y-%m-%d %H:%M:%S')}")
    lines.append(f"duration  {_duration_text(run_duration(run, steps, now))}")
    if run.inputs:
        lines.append("inputs    " + ", ".join(f"{k}={v}" for k, v in sorted(run.inputs.items())))
    usage = run_spend(run, steps)
    if usage:
        lines.append(f"usage     {usage.long()}")
    reused_spend = Usage.of_rows(s for s in steps if s.id in reused)
    if reused_spend:  # the run it reruns spent that: not this run's, but the user may ask
        lines.append(
            f"          not counted: {reused_spend.short()} spent on reused steps in run {run.rerun_of}"
        )
    if status == "failed":  # why, not only which step (`Step 'x' failed after 1 attempt`)
        lines.append(f"error     {row_why_failed(store, run, steps)}")
    elif run.error:
        lines.append(f"error     {readable_error(run.error)}")
    read = _ShowReading.of(store, run, steps, status == liveness.INTERRUPTED)
    children = read.children
    if children:
        counts = children_counts(children, now)
        lines.append(
            f"children  {len(children)} runs (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"
        )

    lines.append("")
    if not steps:
        lines.append("no steps recorded")
        return lines
    table_rows, notes = [], []
    estimates = history_of(store, run.workflow_name, exclude=run.id)
    moment = (now or datetime.now(UTC)).timestamp()
    # A fan-out a resume or retry ran again keeps its earlier row, whose failed items are not
    # failures any more: only the latest row's are listed (its heading names the earlier attempts).
    current = {s.id for s in final_steps(steps)}
    interrupted = status == liveness.INTERRUPTED
    until = liveness.unfinished_until(run, steps, _seconds(now))
    attempts = row_attempts(steps)
    known = read.known
    for step in steps:
        extra, fan = "", None
        if step.role == StepRole.FOREACH.value:
            items, fan = read.fan_outs[step.id]
            extra = _item_summary(items, fan)
            if not items and step.ended_at:  # it ran and found nothing to fan out over: say so
                extra = "no items"
            if step.id in current:
                notes.extend(_item_detail_lines(items, read.filled(store, step.id)))
                notes.extend(_attempt_lines(retried_items(store, step, items, known)))
        elif step.child_run_id and step.child_run_id != "dispatching":
            extra = f"child run {step.child_run_id}"
        timing = _timing_note(store, step, fan, estimates, moment, interrupted) if estimates.runs else ""
        spent = Usage.from_json(step.usage)
        # A reused step did not run here: its output is the earlier run's (`logs` reads it there).
        reuse = f"reused from run {run.rerun_of}" if step.id in reused else ""
        for note in (reuse, spent.short() if spent else "", timing):
            if note:
                extra = f"{extra} · {note}" if extra else note
        table_rows.append(
            [
                str(step.position),
                row_status(step, interrupted),
                step.step_name,
                str(step.iteration) if step.iteration else "",
                _try_cell(*attempts[step.id]),
                _duration_text(liveness.step_seconds(step, until)),
                extra,
            ]
        )
    lines.extend(_table(["POS", "STATUS", "STEP", "ITER", "TRY", "DURATION", ""], table_rows))
    lines.extend(cluster_lines(run, read.clusters, hints))

    failed = failed_step_lines(store, steps)
    lines.extend(failed)
    if notes:
        if not failed and notes[0]:
            lines.append("")
        lines.extend(notes)

    lines.extend(_gate_decisions(steps))

    gates = waiting_gates(store, run)
    if gates:
        lines.append("")
        lines.append("waiting gates")
        for gate in gates:
            where = gate_where(gate, run.id)
            lines.extend(
                fitted(f"  {gate.gate_name}{where}" + (f": {gate.prompt}" if gate.prompt else ""), width)
            )
            select = ""
            if gate.options:
                if any(o.label and o.label != o.value for o in gate.options):
                    labelled = (
                        f"{o.value} ({o.label})" if o.label and o.label != o.value else o.value
                        for o in gate.options
                    )
                    lines.extend(fitted("    options: " + ", ".join(labelled), width))
                select = f"--select {'|'.join(o.value for o in gate.options)} "
            for verb, optional in (("approve", f"{select}--note TEXT"), ("reject", "--note TEXT")):
                command = hints.command(verb, gate.run_id, gate.gate_name)
                line = f"    {verb}:{' ' * (8 - len(verb))}{command} [{optional.replace(' --', '] [--')}]"
                lines += whole_command(line, width, f"    {verb} (optional: {optional}):", command, "      ")
    return lines


# --------------------------------------------------------------------------- show --items

#: `show --items --sort` keys; `order` (the default) is the items' own order.
ITEM_SORTS = ("order", "cost", "duration", "status", "item")
#: `--sort status`: what needs a look first — failures, then what has not ended, then the rest.
_STATUS_RANK = {s: n for n, s in enumerate(("failed", "cancelled", "interrupted", "running", "pending"))}
#: An item id is never cut shorter than this (then the terminal wraps the line instead).
_MIN_ITEM = 8


def _item_records(
    store: WorkflowPersistence, step: WorkflowRunStep, run_interrupted: bool, until: float | None
) -> list[dict[str, Any]]:
    """One record per item of a foreach step row, in the items' order: two reads for the whole
    fan-out — its item rows and its children's usage (`loader.item_spend`) — never one per item."""
    items, fan = _fan_out(store, step, run_interrupted=run_interrupted)
    spend = item_spend(store, step.id, items)
    records = []
    for item in items:
        idx = fan.index[item.item_id]
        child = fan.child_runs.get(idx)
        start, end = fan.started.get(idx), fan.ended.get(idx)
        status = ITEM_STATUSES[fan.codes[idx]]
        if end is None and start is not None and status == "running":
            end = until if until is not None else time.time()
        usage = spend.get(child) if child else None
        records.append(
            {
                "item": item.item_id,
                "ref": item.item_ref or None,
                "status": status,
                "attempt": item.attempt,
                "duration_s": max(0.0, end - start) if start is not None and end is not None else None,
                "usage": usage,
                "child_run_id": child,
            }
        )
    return records


def _sorted_items(records: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """Most first for cost and duration (items without one last), failures first for status."""
    if sort == "cost":
        return sorted(records, key=lambda r: -(r["usage"].cost_usd if r["usage"] else -1.0))
    if sort == "duration":
        return sorted(records, key=lambda r: -(r["duration_s"] if r["duration_s"] is not None else -1.0))
    if sort == "status":
        return sorted(records, key=lambda r: _STATUS_RANK.get(r["status"], len(_STATUS_RANK)))
    if sort == "item":
        return sorted(records, key=lambda r: r["item"])
    return records


def item_fan_outs(
    store: WorkflowPersistence,
    run: WorkflowRun,
    foreach: str | None,
    sort: str = "order",
    now: datetime | None = None,
) -> list[tuple[WorkflowRunStep, list[dict[str, Any]]]]:
    """The run's latest fan-outs (`latest_foreach_rows`: a retried one's current row, each loop
    iteration's own), or only those of the foreach named `foreach` (`each` or `foreach:each`),
    each with its items' records sorted by `sort`. An unknown name → ValueError naming the known."""
    steps = store.get_steps(run.id)
    rows = latest_foreach_rows(steps)
    if foreach:
        name = foreach.removeprefix("foreach:")
        chosen = [s for s in rows if s.step_name.removeprefix("foreach:") == name]
        if not chosen:
            known = ", ".join(dict.fromkeys(s.step_name.removeprefix("foreach:") for s in rows)) or "none"
            raise ValueError(f"run {run.id} has no foreach '{name}' (its foreach steps: {known})")
        rows = chosen
    interrupted = display_status(run, now) == liveness.INTERRUPTED
    until = liveness.unfinished_until(run, steps, _seconds(now))
    return [(s, _sorted_items(_item_records(store, s, interrupted, until), sort)) for s in rows]


def _items_total(records: Sequence[dict[str, Any]]) -> tuple[Counter[str], Usage | None]:
    return Counter(r["status"] for r in records), Usage.total(r["usage"] for r in records)


def items_lines(
    run: WorkflowRun,
    fan_outs: Sequence[tuple[WorkflowRunStep, list[dict[str, Any]]]],
    width: int | None = None,
) -> list[str]:
    """`show --items`: per fan-out a heading, one row per item — ITEM, STATUS, TRY, TOOK, TOKENS,
    COST, CHILD RUN — and a total line. Wider than `width`, item ids are cut with "…" (never
    below `_MIN_ITEM`); child run ids stay whole (every command takes the full id)."""
    if not fan_outs:
        return [f"run {run.id} has no foreach steps"]
    lines: list[str] = []
    for step, records in fan_outs:
        iteration = f" (iteration {step.iteration})" if step.iteration else ""
        if lines:
            lines.append("")
        lines.append(f"foreach '{step.step_name.removeprefix('foreach:')}'{iteration}")
        if not records:
            lines.append("  no items")
            continue
        header = ["ITEM", "STATUS", "TRY", "TOOK", "TOKENS", "COST", "CHILD RUN"]
        cells = [
            [
                display_line(r["item"], None),
                r["status"],
                str(r["attempt"]),
                _duration_text(r["duration_s"]),
                r["usage"].tokens_text() if r["usage"] else "",
                r["usage"].cost_text() if r["usage"] else "",
                r["child_run_id"] or "",
            ]
            for r in records
        ]
        table = _table(header, cells, indent="  ")
        over = max(len(line) for line in table) - width if width is not None else 0
        if over > 0:
            longest = max(len(c[0]) for c in cells)
            room = max(_MIN_ITEM, longest - over)
            for c in cells:
                if len(c[0]) > room:
                    c[0] = c[0][: room - 1] + "…"
            table = _table(header, cells, indent="  ")
        lines.extend(table)
        counts, spent = _items_total(records)
        shown = ("completed", "failed", "skipped", "cancelled", "interrupted", "running", "pending")
        parts = ", ".join(f"{counts[s]} {s}" for s in shown if counts[s])
        total = f"  total: {len(records)} item{'' if len(records) == 1 else 's'} ({parts})"
        lines.extend(fitted(total + (f" · {spent.short()}" if spent else ""), width, "    "))
    return lines


def items_json(
    run: WorkflowRun, fan_outs: Sequence[tuple[WorkflowRunStep, list[dict[str, Any]]]]
) -> dict[str, Any]:
    """`show --items --json`: the rows `items_lines` prints, per fan-out, with its total."""
    out = []
    for step, records in fan_outs:
        counts, spent = _items_total(records)
        out.append(
            {
                "foreach": step.step_name.removeprefix("foreach:"),
                "step_id": step.id,
                "iteration": step.iteration,
                "items": [{**r, "usage": _usage_json(r["usage"])} for r in records],
                "total": {"items": len(records), "statuses": dict(counts), "usage": _usage_json(spent)},
            }
        )
    return {"run": run.id, "fan_outs": out}
