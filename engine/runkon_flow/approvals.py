"""Approving and rejecting gates (engine.md §6.2 approval store, §9.8).

A waiting gate is a step row in status `waiting`. `GateApprovals` is what a UI or CLI calls: it
lists the waiting gates of a run (with prompt and options, so they can be shown) and resolves one
by name or step id; `inbox()` lists every gate waiting in the whole store (any run, any process)
and `decide()` resolves one of them by step id, which is how several are answered at once.
In-process waiters are woken at once through `GATE_SIGNALS`; an engine in another process notices
the store change at its next poll (≤ `poll_interval`), or at once on PostgreSQL (NOTIFY).
`ApprovalStoreResolver` is the GateResolver a host registers for gate types decided this way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from runkon_flow.errors import FlowError
from runkon_flow.humanize import did_you_mean
from runkon_flow.persistence.models import RunStatus, StepRole, StepStatus, WorkflowRun, WorkflowRunStep
from runkon_flow.persistence.notify import on_gate_decided
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.plugins.protocols import ITEM_ID_INPUT, GateParams, GatePoll, RunContext

__all__ = [
    "GATE_SIGNALS",
    "ApprovalStoreResolver",
    "Decision",
    "GateApprovalError",
    "GateApprovals",
    "GateOption",
    "WaitingGate",
    "latest_gate_rows",
    "oldest_first",
]


#: Run statuses in which a gate may be waiting (a `running` run too: see `GateApprovals.inbox`).
_MAY_WAIT = (RunStatus.RUNNING, RunStatus.WAITING)


def latest_gate_rows(rows: Iterable[WorkflowRunStep]) -> list[WorkflowRunStep]:
    """The newest row of each gate execution (node, loop iteration) among a run's step `rows` (as
    `get_steps` orders them), in row order: what the gate is now. A gate has older rows when an
    engine died while it waited (or after it was answered) and a resume inserted it again."""
    newest: dict[tuple[str, int], WorkflowRunStep] = {}
    for row in rows:
        if row.role == StepRole.GATE.value:
            key = (row.node_path or row.step_name, row.iteration)
            newest.pop(key, None)  # re-inserted: keep row order
            newest[key] = row
    return list(newest.values())


def oldest_first(gates: Iterable[WaitingGate]) -> list[WaitingGate]:
    """`gates` in the inbox's order: the one waiting longest first (then by step id, so gates that
    began in the same millisecond keep one order). The dashboard's inbox, `gates` and `show` list
    waiting gates so — a fan-out's children alike, whichever child run was created first."""
    return sorted(gates, key=lambda g: (_unix(g.since) or 0.0, g.step_id))


class GateApprovalError(FlowError, ValueError):
    """An approval request that cannot be honoured (unknown run, no such waiting gate, bad selection)."""


class _GateSignals:
    """Per-step wake-up events so an approval made in this process reaches its gate immediately."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}

    def register(self, step_id: str) -> threading.Event:
        with self._lock:
            event = self._events.get(step_id)
            if event is None:
                event = self._events[step_id] = threading.Event()
            return event

    def unregister(self, step_id: str) -> None:
        with self._lock:
            self._events.pop(step_id, None)

    def notify(self, step_id: str) -> None:
        with self._lock:
            event = self._events.get(step_id)
        if event is not None:
            event.set()


GATE_SIGNALS = _GateSignals()
on_gate_decided(GATE_SIGNALS.notify)  # decisions made on other machines (PostgreSQL NOTIFY)


@dataclass(frozen=True)
class GateOption:
    value: str
    label: str


@dataclass(frozen=True)
class WaitingGate:
    """A gate waiting for a human: what a UI shows next to approve/reject."""

    run_id: str
    step_id: str
    gate_name: str
    gate_type: str | None
    prompt: str | None
    options: tuple[GateOption, ...] = field(default_factory=tuple)
    since: str | None = None
    timeout_secs: int | None = None
    workflow_name: str = ""
    #: The foreach item whose child run the gate waits in (or waits under, in a `call workflow`
    #: of that child): which of many children asks. None for a gate outside any fan-out.
    item: str | None = None

    def waited(self, now: float) -> float | None:
        """Seconds this gate has waited at `now` (unix time); None when its start is unknown."""
        start = _unix(self.since)
        return None if start is None else max(0.0, now - start)

    def time_left(self, now: float) -> float | None:
        """Seconds until the gate times out (negative once overdue); None without a start."""
        waited = self.waited(now)
        if waited is None or self.timeout_secs is None:
            return None
        return self.timeout_secs - waited


@dataclass(frozen=True)
class Decision:
    """The outcome of deciding one gate of a batch: the gate, or why it could not be decided."""

    step_id: str
    gate: WaitingGate | None
    error: str | None = None


def _unix(text: str | None) -> float | None:
    """RFC 3339 (or SQLite's `YYYY-MM-DD HH:MM:SS`) text, UTC when no offset, as unix time."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _options(row: WorkflowRunStep) -> tuple[GateOption, ...]:
    if not row.gate_options:
        return ()
    try:
        raw = json.loads(row.gate_options)
    except ValueError:
        return ()
    out: list[GateOption] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("value"), str):
                label = item.get("label")
                out.append(GateOption(item["value"], label if isinstance(label, str) else item["value"]))
    return tuple(out)


def _to_waiting(row: WorkflowRunStep) -> WaitingGate:
    timeout: int | None = None
    if row.gate_timeout is not None:
        try:
            timeout = int(row.gate_timeout)
        except ValueError:
            timeout = None
    return WaitingGate(
        run_id=row.workflow_run_id,
        step_id=row.id,
        gate_name=row.step_name,
        gate_type=row.gate_type,
        prompt=row.gate_prompt,
        options=_options(row),
        since=row.started_at,
        timeout_secs=timeout,
    )


class _FanOutItems:
    """Which foreach item each gate's run belongs to: a foreach child run is given its item as
    the input `item.id` (stored with the run, so any process reads it while the item runs; the
    item row names its child only once it ends), and a run below it — a `call workflow` inside
    the child — belongs to the same item. Each run is read once per listing."""

    def __init__(self, store: WorkflowPersistence, known: Iterable[WorkflowRun] = ()) -> None:
        self._store = store
        self._item: dict[str, str | None] = {}  # run id → its item (None: not in a fan-out)
        self._known = {run.id: run for run in known}  # rows already read: not read again

    def name(self, gates: list[WaitingGate]) -> list[WaitingGate]:
        return [replace(g, item=self.item_of(g.run_id)) for g in gates]

    def item_of(self, run_id: str) -> str | None:
        chain: list[str] = []
        current: str | None = run_id
        item: str | None = None
        while current and current not in chain:
            if current in self._item:
                item = self._item[current]
                break
            chain.append(current)
            run = self._known.get(current) or self._store.get_run(current)
            if run is None:
                break
            item = run.inputs.get(ITEM_ID_INPUT)
            if item is not None:
                break
            current = run.parent_workflow_run_id
        for seen in chain:
            self._item[seen] = item
        return item


class GateApprovals:
    """The approval API over a store: list waiting gates, approve or reject one."""

    def __init__(self, store: WorkflowPersistence) -> None:
        self._store = store

    def waiting_gates(self, run_id: str, include_children: bool = True) -> list[WaitingGate]:
        """Gates in status `waiting` of the run and (by default) of its descendant runs — a gate
        inside a `call workflow` or foreach child is approved through the top-level run too. The
        run's own gates come first, in position order; `WaitingGate.run_id` names the gate's run.
        Unknown run → GateApprovalError."""
        if self._store.get_run(run_id) is None:
            raise GateApprovalError(f"no workflow run '{run_id}'")
        gates = self._own_gates(run_id)
        active = self._store.list_active_runs(list(_MAY_WAIT)) if include_children else []
        for run in active:
            if run.id != run_id and self._descends_from(run.parent_workflow_run_id, run_id):
                gates.extend(self._own_gates(run.id))
        return _FanOutItems(self._store, active).name(gates)

    def inbox(self) -> list[WaitingGate]:
        """Every gate waiting in the store, of any run held by any process, oldest first.

        A gate sets its run `waiting`, but the run's status does not say every gate that waits: a
        resumed run is marked `running` first, and a decision sets the run `running` again. So the
        gates of `running` runs are read too (see `_own_gates` for which rows count).
        `workflow_name` is filled in.
        """
        gates: list[WaitingGate] = []
        active = self._store.list_active_runs(list(_MAY_WAIT))
        for run in active:
            gates.extend(replace(g, workflow_name=run.workflow_name) for g in self._own_gates(run.id))
        return _FanOutItems(self._store, active).name(oldest_first(gates))

    def decide(
        self,
        step_id: str,
        approve: bool,
        by: str,
        note: str | None = None,
        selections: list[str] | None = None,
    ) -> WaitingGate:
        """Approve or reject the waiting gate whose step row is `step_id`, wherever its run is.
        The engine waiting for it is woken (in this process at once, elsewhere at its next poll or
        by the store's notification)."""
        row = self._store.get_step(step_id)
        if row is None or row.role != StepRole.GATE.value:
            raise GateApprovalError(f"no gate with step id '{step_id}'")
        if StepStatus(row.status) is not StepStatus.WAITING:
            decided = f" by {row.gate_approved_by}" if row.gate_approved_by else ""
            raise GateApprovalError(
                f"gate '{row.step_name}' ({step_id}) is not waiting: {StepStatus(row.status).value}{decided}"
            )
        run = self._store.get_run(row.workflow_run_id)
        target = replace(_to_waiting(row), workflow_name=run.workflow_name if run is not None else "")
        if approve:
            self._check_selections(target, list(selections or []))
            self._store.approve_gate(step_id, by, note, list(selections or []) or None)
        else:
            self._store.reject_gate(step_id, by, note)
        GATE_SIGNALS.notify(step_id)
        return target

    def decide_many(
        self,
        step_ids: list[str],
        approve: bool,
        by: str,
        note: str | None = None,
        selections: list[str] | None = None,
    ) -> list[Decision]:
        """`decide` each gate with the same note; one that cannot be decided (already answered,
        unknown, bad selection) is reported in its `Decision` and does not stop the others."""
        out: list[Decision] = []
        for step_id in dict.fromkeys(step_ids):
            try:
                out.append(Decision(step_id, self.decide(step_id, approve, by, note, selections)))
            except (GateApprovalError, FlowError) as exc:
                out.append(Decision(step_id, None, str(exc)))
        return out

    @staticmethod
    def _check_selections(target: WaitingGate, chosen: list[str]) -> None:
        if not chosen:
            return
        allowed = {o.value for o in target.options}
        if not allowed:
            raise GateApprovalError(f"gate '{target.gate_name}' offers no options to select from")
        bad = [s for s in chosen if s not in allowed]
        if bad:
            # A misspelt option is told the closest one, as a misspelt gate name is.
            close = did_you_mean(bad[0], sorted(allowed)) if len(bad) == 1 else None
            raise GateApprovalError(
                f"invalid selection {', '.join(repr(b) for b in bad)} for gate '{target.gate_name}' "
                f"({close + ' ' if close else ''}allowed: {', '.join(sorted(allowed))})"
            )

    def _own_gates(self, run_id: str) -> list[WaitingGate]:
        """The run's waiting gates, in row order (`latest_gate_rows`: an older `waiting` row of a
        gate belongs to an engine that died before a resume inserted the gate again)."""
        return [
            _to_waiting(row)
            for row in latest_gate_rows(self._store.get_steps(run_id))
            if StepStatus(row.status) is StepStatus.WAITING
        ]

    def _descends_from(self, parent_id: str | None, ancestor: str) -> bool:
        seen: set[str] = set()
        while parent_id and parent_id not in seen:
            if parent_id == ancestor:
                return True
            seen.add(parent_id)
            parent = self._store.get_run(parent_id)
            parent_id = parent.parent_workflow_run_id if parent is not None else None
        return False

    def _find(self, run_id: str, gate: str) -> WaitingGate:
        waiting = self.waiting_gates(run_id)
        if not waiting:
            raise GateApprovalError(f"run '{run_id}' has no gate waiting for approval")
        by_id = [g for g in waiting if g.step_id == gate]
        if by_id:
            return by_id[0]
        by_name = [g for g in waiting if g.gate_name == gate]
        if not by_name:
            names = sorted({g.gate_name for g in waiting})
            close = did_you_mean(gate, names)
            raise GateApprovalError(
                f"run '{run_id}' has no waiting gate '{gate}' "
                f"({close + ' ' if close else ''}waiting: {', '.join(names)})"
            )
        runs = list(dict.fromkeys(g.run_id for g in by_name))
        target_run = run_id if run_id in runs else runs[0]
        if target_run != run_id and len(runs) > 1:
            steps = ", ".join(f"{g.item}: {g.step_id}" if g.item else g.step_id for g in by_name)
            raise GateApprovalError(
                f"gate '{gate}' is waiting in {len(runs)} child runs of '{run_id}'; "
                f"name it by step id ({steps})"
            )
        # The newest row of that run: a resumed run inserts its gate again, and an older `waiting`
        # row of the same name belongs to an engine that died (approving it would wake nobody).
        return [g for g in by_name if g.run_id == target_run][-1]

    def approve(
        self,
        run_id: str,
        gate: str,
        by: str,
        note: str | None = None,
        selections: list[str] | None = None,
    ) -> WaitingGate:
        """Approve the waiting gate named `gate` (or with step id `gate`); `selections` must be
        values of the gate's options. Returns the gate that was approved."""
        target = self._find(run_id, gate)
        chosen = list(selections or [])
        self._check_selections(target, chosen)
        self._store.approve_gate(target.step_id, by, note, chosen or None)
        GATE_SIGNALS.notify(target.step_id)
        return target

    def reject(self, run_id: str, gate: str, by: str, note: str | None = None) -> WaitingGate:
        """Reject the waiting gate named `gate` (or with step id `gate`); the run then fails."""
        target = self._find(run_id, gate)
        self._store.reject_gate(target.step_id, by, note)
        GATE_SIGNALS.notify(target.step_id)
        return target


class ApprovalStoreResolver:
    """GateResolver for a gate type that people decide through `GateApprovals` (the dashboard, the
    `approve`/`reject` commands), registered so the engine accepts the type (engine.md §3.3).

    The decision is already in the store, which the engine reads itself at every poll, so this
    resolver has no verdict of its own and answers pending. Echoing the stored decision back would
    make the engine write it a second time — refused by the store as "already completed".
    """

    def __init__(self, gate_type: str) -> None:
        self._type = gate_type

    def gate_type(self) -> str:
        return self._type

    def poll(self, run_id: str, params: GateParams, ctx: RunContext) -> GatePoll:
        return GatePoll("pending")
