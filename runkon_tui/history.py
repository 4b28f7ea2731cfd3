"""Past runs for the dashboard: the engine's loader (`runkon_flow.observe.loader`) plus what only
the dashboard knows — the workflow tree, to give each node its kind and to place rows written
before node paths were stored.

Rows with a `node_path` (schema v2 and later) are placed by it, never by name. For older rows the
legacy placer matches the step name the engine writes (engine.md §8: agent label,
`workflow:<name>`, `foreach:<name>`, gate and script names) to tree nodes; when several nodes share
a name, rows go in position order to the nodes in tree order. Pure: no Textual.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.event_log import each_envelope
from runkon_flow.observe.loader import load_run, parse_time, settle_decided_gates, settle_interrupted
from runkon_flow.observe.loader import load_run_state as _load_run_state
from runkon_flow.persistence.models import WorkflowRun, WorkflowRunStep
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.persistence.snapshots import referenced_run, stored_definition

from runkon_tui.run_view import Clock, RunState, RunView
from runkon_tui.tree_model import NodeSpec, build_tree

Resolver = Callable[[str], WorkflowDef | None]

__all__ = [
    "db_name",
    "definition_of",
    "load_run_state",
    "parse_time",
    "past_run_view",
    "view_from_store",
]


def db_name(spec: NodeSpec) -> str | None:
    """The `step_name` the engine writes for a node (engine.md §8)."""
    if spec.kind in ("call", "parallel_branch"):
        return spec.label
    if spec.kind in ("script", "gate", "foreach"):
        return spec.step_key
    if spec.kind == "call_workflow":
        return f"workflow:{spec.workflow}"
    return None


def definition_of(
    store: WorkflowPersistence, run: WorkflowRun, resolve: Resolver | None
) -> WorkflowDef | None:
    """The definition the run was started with (its snapshot, or the sibling's it shares), else
    today's by name."""
    stored = stored_definition(store, run)
    if stored is not None:
        return stored
    return resolve(run.workflow_name) if resolve is not None else None


def _specs(store: WorkflowPersistence, run: WorkflowRun, resolve: Resolver | None) -> list[NodeSpec]:
    definition = definition_of(store, run, resolve)
    return [s for top in build_tree(definition, None) for s in top.walk()] if definition else []


class _Tree:
    """Node kinds and legacy placement for the runs being loaded (one tree per run)."""

    def __init__(self, store: WorkflowPersistence, resolve: Resolver | None) -> None:
        self.store = store
        self.resolve = resolve
        self._specs: dict[str, list[NodeSpec]] = {}

    def specs(self, run: WorkflowRun) -> list[NodeSpec]:
        # Siblings that share one stored snapshot share its tree: read and built once.
        key = referenced_run(run.definition_snapshot) or run.id
        if key not in self._specs:
            self._specs[key] = _specs(self.store, run, self.resolve)
        return self._specs[key]

    def kinds(self, run: WorkflowRun) -> dict[str, str]:
        return {s.path: s.kind for s in self.specs(run)}

    def place_legacy(self, run: WorkflowRun, rows: list[WorkflowRunStep]) -> dict[str, str]:
        """row id → node path, by step name, for rows that do not record their node path."""
        by_name: dict[str, list[NodeSpec]] = {}
        for spec in self.specs(run):
            name = db_name(spec)
            if name is not None:
                by_name.setdefault(name, []).append(spec)
        rows_by_name: dict[str, list[WorkflowRunStep]] = {}
        for row in rows:
            rows_by_name.setdefault(row.step_name, []).append(row)
        out: dict[str, str] = {}
        for name, named_rows in rows_by_name.items():
            candidates = by_name.get(name)
            if not candidates:
                continue
            positions = sorted({r.position for r in named_rows})
            for row in named_rows:
                out[row.id] = candidates[min(positions.index(row.position), len(candidates) - 1)].path
        return out


def load_run_state(
    store: WorkflowPersistence, run: WorkflowRun, view: RunView, resolve: Resolver | None = None
) -> RunState:
    """One run (and its `call workflow` children) into `view.runs`, e.g. an evicted child run."""
    tree = _Tree(store, resolve)
    return _load_run_state(store, run, view, legacy=tree.place_legacy, kinds=tree.kinds)


def view_from_store(
    store: WorkflowPersistence, run_id: str, resolve: Resolver | None = None, clock: Clock | None = None
) -> RunView:
    """A read-only RunView of a stored run. Raises LookupError for an unknown run id."""
    tree = _Tree(store, resolve)
    view = load_run(store, run_id, clock=clock, legacy=tree.place_legacy, kinds=tree.kinds)
    run = store.get_run(run_id)
    view.definition = definition_of(store, run, resolve) if run is not None else None
    return view


def past_run_view(
    store: WorkflowPersistence, run_id: str, resolve: Resolver | None = None, clock: Clock | None = None
) -> RunView:
    """A read-only view of a stored run: from its stored events when they tell its story — the
    engine, output and error logs exactly as they were shown live — else from its rows (a run
    from before the event log, or one whose stream never says it started: written through the
    store API by a test or a tool, or by an older runkon; the engine log says so). The events are
    read and folded a page (`READ_ROWS` stored rows) at a time, so a big run's stream is never in
    memory whole."""
    run = store.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    top_level = not (run.parent_run_id or run.parent_workflow_run_id)
    pages = each_envelope(store, run_id) if top_level else iter(())
    first = next(pages, None)
    if first is None:
        return view_from_store(store, run_id, resolve, clock)
    envelopes = itertools.chain((first,), pages)
    view = RunView.from_events(envelopes, clock) if clock is not None else RunView.from_events(envelopes)
    if view.root_run_id != run.id:  # the stream holds no start of this run: nothing to draw it on
        view = view_from_store(store, run_id, resolve, clock)
        view.note(f"run {run_id}: its stored events do not include its start, so it is drawn from its rows")
        return view
    view.definition = definition_of(store, run, resolve)
    view.read_only = True
    settle_decided_gates(view, store)
    settle_interrupted(view, run, store.get_steps(run.id))
    return view
