"""Rebuild a RunView from store rows, to open a past run read-only (and to resume it).

The store does not record node paths, so rows are matched to tree nodes by the step name the
engine writes (engine.md §8: agent label, `workflow:<name>`, `foreach:<name>`, gate and script
names). When several nodes share a name, rows are assigned in position order to the nodes in tree
order. Retries and loop iterations collapse to the latest row, as in a live view. Pure: no Textual.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from datetime import datetime

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.humanize import readable_error
from runkon_flow.persistence.models import FanOutItemRow, WorkflowRun, WorkflowRunStep
from runkon_flow.persistence.protocol import WorkflowPersistence

from runkon_tui.run_view import Clock, FanOutView, GateView, RunState, RunView, StepView
from runkon_tui.tree_model import NodeSpec, build_tree

Resolver = Callable[[str], WorkflowDef | None]

_ROLE_KIND = {"gate": "gate", "foreach": "foreach", "workflow": "call_workflow"}
_MAX_DEPTH = 5


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (as the stores write it) → Unix seconds; None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def db_name(spec: NodeSpec) -> str | None:
    """The `step_name` the engine writes for a node (engine.md §8)."""
    if spec.kind in ("call", "parallel_branch"):
        return spec.label
    if spec.kind in ("script", "gate", "foreach"):
        return spec.step_key
    if spec.kind == "call_workflow":
        return f"workflow:{spec.workflow}"
    return None


def definition_of(run: WorkflowRun, resolve: Resolver | None) -> WorkflowDef | None:
    """The definition the run was started with (its snapshot), else today's by name."""
    if run.definition_snapshot:
        try:
            return WorkflowDef.from_json(json.loads(run.definition_snapshot))
        except (ValueError, TypeError):
            pass
    return resolve(run.workflow_name) if resolve is not None else None


def _row_order(row: WorkflowRunStep) -> tuple:
    return (row.iteration, row.retry_count, row.started_at or "", row.position)


def _assign(rows: list[WorkflowRunStep], specs: list[NodeSpec]) -> dict[str, list[WorkflowRunStep]]:
    """node path → its rows (oldest first)."""
    by_name: dict[str, list[NodeSpec]] = {}
    for spec in specs:
        name = db_name(spec)
        if name is not None:
            by_name.setdefault(name, []).append(spec)
    rows_by_name: dict[str, list[WorkflowRunStep]] = {}
    for row in rows:
        rows_by_name.setdefault(row.step_name, []).append(row)
    out: dict[str, list[WorkflowRunStep]] = {}
    for name, named_rows in rows_by_name.items():
        candidates = by_name.get(name)
        if not candidates:
            out.setdefault(f"name:{name}", []).extend(named_rows)
            continue
        positions = sorted({r.position for r in named_rows})
        for row in named_rows:
            k = min(positions.index(row.position), len(candidates) - 1)
            out.setdefault(candidates[k].path, []).append(row)
    for path_rows in out.values():
        path_rows.sort(key=_row_order)
    return out


def _step_view(
    key: str, node_path: str | None, spec: NodeSpec | None, rows: list[WorkflowRunStep]
) -> StepView:
    last = rows[-1]
    kind = spec.kind if spec is not None else _ROLE_KIND.get(last.role, "call")
    sv = StepView(key=key, name=last.step_name, kind=kind, node_path=node_path)
    sv.step_key = spec.step_key if spec is not None and spec.step_key else last.step_name
    sv.step_id = last.id
    sv.status = str(last.status)
    sv.iteration = last.iteration
    sv.attempt = last.retry_count
    sv.starts = len(rows)
    sv.started_at = parse_time(last.started_at)
    sv.ended_at = parse_time(last.ended_at)
    sv.error = readable_error(last.step_error) or None
    sv.child_run_id = last.child_run_id if last.child_run_id not in (None, "dispatching") else None
    if last.markers_out:
        try:
            markers = json.loads(last.markers_out)
            sv.markers = tuple(str(m) for m in markers) if isinstance(markers, list) else ()
        except ValueError:
            sv.markers = ()
    text = last.result_text or last.context_out
    if text:
        sv.output = deque(text.splitlines()[-200:], maxlen=200)
        sv.output_total = len(sv.output)
    return sv


def _fanout(key: str, run_id: str, step: WorkflowRunStep, items: list[FanOutItemRow]) -> FanOutView:
    fan = FanOutView(key, run_id, step.step_name.removeprefix("foreach:"), key, step.id)
    fan.declared = step.fan_out_total or len(items)
    for row in items:
        idx = fan.add(row.item_id, row.item_ref, str(row.status))
        if row.child_run_id and row.child_run_id != "dispatching":
            fan.child_runs[idx] = row.child_run_id
        started = parse_time(row.dispatched_at)
        if started is not None:
            fan.started[idx] = started
            if fan.first_start is None or started < fan.first_start:
                fan.first_start = started
        ended = parse_time(row.completed_at)
        if ended is not None:
            fan.ended[idx] = ended
    return fan


def load_run_state(
    store: WorkflowPersistence,
    run: WorkflowRun,
    view: RunView,
    resolve: Resolver | None = None,
    *,
    depth: int = 0,
    definition: WorkflowDef | None = None,
) -> RunState:
    """One run (and, recursively, its `call workflow` children) into `view.runs`."""
    parent = run.parent_workflow_run_id or run.parent_run_id or None
    state = RunState(run.id, run.workflow_name, parent_run_id=parent)
    state.status = str(run.status)
    state.started_at = parse_time(run.started_at)
    state.ended_at = parse_time(run.ended_at)
    state.error = readable_error(run.error) or None
    state.summary = readable_error(run.result_summary) or None
    state.inputs = dict(run.inputs)
    definition = definition or definition_of(run, resolve)
    specs = [s for top in build_tree(definition, None) for s in top.walk()] if definition else []
    spec_by_path = {s.path: s for s in specs}
    rows = store.get_steps(run.id)
    for path, path_rows in _assign(rows, specs).items():
        spec = spec_by_path.get(path)
        sv = _step_view(path, spec.path if spec else None, spec, path_rows)
        state.steps[path] = sv
        for row in path_rows:
            state.step_ids[row.id] = path
        last = path_rows[-1]
        if last.role == "foreach":
            state.fanouts[path] = _fanout(path, run.id, last, store.get_fan_out_items(last.id))
            state.fanout_steps[last.id] = path
        if str(last.status) == "waiting" and last.role == "gate":
            view.gates[(run.id, last.step_name)] = GateView(
                run_id=run.id,
                gate_name=last.step_name,
                step_id=last.id,
                gate_type=last.gate_type,
                prompt=last.gate_prompt,
                options=_gate_options(last.gate_options),
                node_path=spec.path if spec else None,
                since=parse_time(last.started_at) or 0.0,
            )
        if sv.child_run_id:
            state.child_runs[last.id] = sv.child_run_id
            if sv.kind == "call_workflow" and depth < _MAX_DEPTH:
                child = store.get_run(sv.child_run_id)
                if child is not None:
                    load_run_state(store, child, view, resolve, depth=depth + 1)
    view.runs[run.id] = state
    return state


def _gate_options(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if isinstance(data, list):
        options = [o for o in data if isinstance(o, dict) and "value" in o]
        return {str(o["value"]): str(o.get("label", o["value"])) for o in options}
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    return {}


def view_from_store(
    store: WorkflowPersistence, run_id: str, resolve: Resolver | None = None, clock: Clock | None = None
) -> RunView:
    """A read-only RunView of a stored run. Raises LookupError for an unknown run id."""
    run = store.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id} in the store")
    view = RunView(clock) if clock is not None else RunView()
    view.root_run_id = run.id
    view.read_only = True
    view.definition = definition_of(run, resolve)
    load_run_state(store, run, view, resolve, definition=view.definition)
    view.failures = sum(
        1 for r in view.runs.values() for sv in r.steps.values() if sv.status in ("failed", "timed_out")
    ) + sum(f.count("failed") for r in view.runs.values() for f in r.fanouts.values())
    view.take_changes()
    return view


def run_counts(store: WorkflowPersistence, run_id: str) -> dict[str, int]:
    """Steps per status (latest attempt of each step name+iteration), for the runs screen."""
    latest: dict[tuple[str, int, int], WorkflowRunStep] = {}
    for row in store.get_steps(run_id):
        key = (row.step_name, row.iteration, row.position)
        prev = latest.get(key)
        if prev is None or _row_order(row) >= _row_order(prev):
            latest[key] = row
    counts: dict[str, int] = {}
    for row in latest.values():
        status = str(row.status)
        counts[status] = counts.get(status, 0) + 1
    return counts
