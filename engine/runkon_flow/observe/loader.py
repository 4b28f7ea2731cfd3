"""The run model from store rows: a past run (or one another process runs) as the reducer would
have built it live.

Rows are placed on the workflow tree by the `node_path` they record (schema v2). Rows written
before node paths were stored have none: an optional `legacy` placer (the dashboard passes one
that matches step names to its tree) gives them a path as well as it can, else they are keyed
`name:<step name>`. Retries collapse onto one step (its latest attempt shows); each execution of a
step (loop iterations) keeps its own outcome, counted by `observe.counts`. A stored event stream,
when there is one, is replayed through the same reducer instead (`RunModel.apply_all`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from runkon_flow.event_log import READ_ROWS, envelope_of, top_level_run, unpack
from runkon_flow.events import EngineEventData, FanOutItemCompleted, GateResolved
from runkon_flow.humanize import error_headline, gate_decision, readable_error
from runkon_flow.observe import liveness
from runkon_flow.observe.counts import replaced_always, row_key
from runkon_flow.observe.records import Clock, FanOutView, GateView, RunState, StepView, failure_chain
from runkon_flow.observe.reducer import RunModel
from runkon_flow.observe.status import ITEM_CODE
from runkon_flow.persistence.models import (
    FAILED_STEP_STATUSES,
    FanOutItemRow,
    StepStatus,
    WorkflowRun,
    WorkflowRunStep,
)
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.usage import Usage

#: Gives rows without a stored node path one (row id → node path), for runs written before
#: schema v2; rows it leaves out are keyed by step name.
LegacyPlacer = Callable[[WorkflowRun, list[WorkflowRunStep]], dict[str, str]]

_ROLE_KIND = {"gate": "gate", "foreach": "foreach", "workflow": "call_workflow"}
#: How deep into `call workflow` children a run's tree goes (the history's estimates too).
MAX_CALL_DEPTH = 5
_OUTPUT_LINES = 200


#: Stored time text → Unix seconds (None when absent or unreadable); zone-less text is UTC, as
#: the stores write it — one rule with the liveness module's.
parse_time = liveness.utc_seconds


def _row_order(row: WorkflowRunStep) -> tuple:
    return (row.iteration, row.position, row.retry_count, row.started_at or "")


def _kind(row: WorkflowRunStep) -> str:
    if row.role in _ROLE_KIND:
        return _ROLE_KIND[row.role]
    path = row.node_path or ""
    return "parallel_branch" if ".calls." in path else "call"


def reused_row_ids(run: WorkflowRun, rows: list[WorkflowRunStep]) -> set[str]:
    """The rows of a rerun that it reused (copied from the run it reruns) rather than ran: they
    started before the rerun was created (the copy keeps their times, and the rerun's steps start
    after its row exists; a later resume keeps the run's start). Empty for any other run."""
    created = parse_time(run.started_at) if run.rerun_of else None
    if created is None:
        return set()
    return {row.id for row in rows if (start := parse_time(row.started_at)) is not None and start < created}


def run_spend(run: WorkflowRun, rows: list[WorkflowRunStep]) -> Usage | None:
    """What a run itself spent: its step rows' usage, every attempt, without the steps a rerun
    reused — the run it reruns spent that, and counting it here too would bill it twice (the
    engine's own totals and the run model folded from events leave them out as well)."""
    reused = reused_row_ids(run, rows)
    return Usage.of_rows(row for row in rows if row.id not in reused)


def item_spend(store: WorkflowPersistence, step_id: str, items: Iterable[FanOutItemRow]) -> dict[str, Usage]:
    """What each item's child run spent (the sum of its step rows' usage, as `run_spend` sums a
    run's), by child run id — for a foreach step row's items (`items`, read already). One read
    for the whole fan-out where the store has `item_child_usage` (SQLite, PostgreSQL, memory), else
    one per child run (a store from elsewhere)."""
    bulk = getattr(store, "item_child_usage", None)
    if bulk is not None:
        pairs = bulk(step_id)
    else:
        children = {i.child_run_id for i in items if i.child_run_id and i.child_run_id != "dispatching"}
        pairs = [(child, row.usage) for child in children for row in store.get_steps(child) if row.usage]
    out: dict[str, Usage] = {}
    for child, text in pairs:
        spent = Usage.from_json(text)
        if spent:
            out[child] = out[child] + spent if child in out else spent
    return out


def place_rows(
    run: WorkflowRun, rows: list[WorkflowRunStep], legacy: LegacyPlacer | None
) -> dict[str, list[WorkflowRunStep]]:
    """step key (node path) → its rows, oldest attempt first."""
    unplaced = [r for r in rows if not r.node_path]
    guessed = legacy(run, unplaced) if legacy is not None and unplaced else {}
    out: dict[str, list[WorkflowRunStep]] = {}
    for row in rows:
        key = row.node_path or guessed.get(row.id) or f"name:{row.step_name}"
        out.setdefault(key, []).append(row)
    for path_rows in out.values():
        path_rows.sort(key=_row_order)
    return out


def step_from_rows(key: str, rows: list[WorkflowRunStep], kind: str | None = None) -> StepView:
    """One step from its rows (oldest first): the latest attempt shows, every execution counts."""
    last = rows[-1]
    node_path = None if key.startswith("name:") else key
    sv = StepView(key=key, name=last.step_name, kind=kind or _kind(last), node_path=node_path)
    sv.step_key = last.step_name
    sv.step_id = last.id
    sv.iteration = last.iteration
    sv.position = last.position
    sv.attempt = last.retry_count
    sv.starts = len(rows)
    sv.started_at = parse_time(last.started_at)
    sv.ended_at = parse_time(last.ended_at)
    sv.error = readable_error(last.step_error) or None
    sv.child_run_id = last.child_run_id if last.child_run_id not in (None, "dispatching") else None
    sv.gate_type = last.gate_type
    for row in rows:  # oldest first: the latest attempt of each execution wins
        _, iteration, position = row_key(row)
        sv.outcomes[(iteration, position)] = str(row.status)
    sv.status = str(last.status)
    if last.role != "foreach":  # a foreach's usage is its FanOutView's (set by load_run_state)
        sv.usage = Usage.of_rows(rows)  # every execution's
    if last.role == "gate" and last.gate_approved_by:
        sv.decision = gate_decision(
            str(last.status) == "completed",
            last.gate_approved_by,
            _selections(last.gate_selections),
            last.gate_feedback,
        )
    if last.markers_out:
        try:
            markers = json.loads(last.markers_out)
            sv.markers = tuple(str(m) for m in markers) if isinstance(markers, list) else ()
        except ValueError:
            sv.markers = ()
    text = last.result_text or last.context_out
    if text:
        sv.output = deque(text.splitlines()[-_OUTPUT_LINES:], maxlen=_OUTPUT_LINES)
        sv.output_total = len(sv.output)
    return sv


def _selections(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def fanout_from_rows(
    key: str, run_id: str, step: WorkflowRunStep, items: list[FanOutItemRow], *, run_interrupted: bool = False
) -> FanOutView:
    """A foreach step's items from its rows. Items whose rows still say running when the step has
    ended (an attempt a resume replaced, its engine killed mid-item) or its run lost its engine
    (`run_interrupted`) are `interrupted` (`FanOutView.stop_running`)."""
    fan = FanOutView(key, run_id, step.step_name.removeprefix("foreach:"), step.node_path or key, step.id)
    fan.declared = step.fan_out_total or len(items)
    for row in items:
        idx = fan.add(row.item_id, row.item_ref, str(row.status))
        if row.child_run_id and row.child_run_id != "dispatching":
            fan.child_runs[idx] = row.child_run_id
        if row.attempt > 1:
            fan.attempts[idx] = row.attempt
            if row.previous_child_run_id:
                fan.earlier[idx] = row.previous_child_run_id
        started = parse_time(row.dispatched_at)
        if started is not None:
            fan.started[idx] = started
            if fan.first_start is None or started < fan.first_start:
                fan.first_start = started
        ended = parse_time(row.completed_at)
        if ended is not None:
            fan.ended[idx] = ended
    if run_interrupted or StepStatus(step.status).is_terminal:
        fan.stop_running(parse_time(step.ended_at))
    return fan


_FAILED_ITEM_CODES = frozenset({ITEM_CODE["failed"], ITEM_CODE["cancelled"]})


def fill_item_errors(
    store: WorkflowPersistence, fan: FanOutView, runs: Mapping[str, WorkflowRun] | None = None
) -> None:
    """Give failed and cancelled items loaded from rows their error and its cause, as the reducer
    does live: the error of the child run each ran as (item rows keep none) and the error of that
    run's failed step (`FanOutView.causes`), so failure clusters work on past runs too. An item
    that never got a child run gets the error its `FanOutItemCompleted` said
    (`fill_unrun_item_errors`). `runs`: child runs the caller has read already, by id (`show`
    reads the run's children once for its `children` line and this)."""
    fill_unrun_item_errors(store, fan)
    wanted = {
        idx: child_id
        for idx, child_id in fan.child_runs.items()
        if fan.codes[idx] in _FAILED_ITEM_CODES and idx not in fan.causes
    }
    if not wanted:
        return
    found = item_child_runs(store, fan.run_id, set(wanted.values()), runs)
    causes = item_failure_causes(store, fan.step_id, {c for c in wanted.values() if c in found})
    for idx, child_id in wanted.items():
        child = found.get(child_id)
        if child is None:
            continue
        if child.error and idx not in fan.errors:
            fan.errors[idx] = readable_error(child.error)
        cause = causes.get(child_id)
        if cause:
            fan.causes[idx] = cause


#: From how many child runs `item_child_runs` reads all the run's children in one `list_runs`
#: rather than each one by itself (a few failed items among 10,000 are read one by one).
_RUNS_IN_BULK_FROM = 20
_ALL_RUNS = 2**62


def item_child_runs(
    store: WorkflowPersistence,
    parent_run_id: str,
    children: set[str],
    known: Mapping[str, WorkflowRun] | None = None,
) -> dict[str, WorkflowRun]:
    """The rows of `children` (child runs of a foreach's items), by id: with many, in one read of
    the children of `parent_run_id` (`list_runs`), the rest (a rerun's items may name another
    run's children) one by one, as a few are; a run gone is left out. `known`: the children of
    `parent_run_id` read already, by id — taken from there instead of read again."""
    found: dict[str, WorkflowRun] = {}
    if known is not None:
        found = {c: known[c] for c in children if c in known}
    elif len(children) >= _RUNS_IN_BULK_FROM:
        found = {
            r.id: r for r in store.list_runs(limit=_ALL_RUNS, parent_run_id=parent_run_id) if r.id in children
        }
    for child_id in children - found.keys():
        child = store.get_run(child_id)
        if child is not None:
            found[child_id] = child
    return found


def item_failure_causes(
    store: WorkflowPersistence, step_id: str | None, children: set[str]
) -> dict[str, str]:
    """Why each of `children` (child runs of the items of foreach step row `step_id`) failed, by
    id (`row_failure_cause`; one without a cause is left out): one read for the whole fan-out
    where the store has `item_child_failed_steps` (SQLite, PostgreSQL, memory), else a
    `get_steps` per child (a store from elsewhere)."""
    if not children:
        return {}
    bulk = getattr(store, "item_child_failed_steps", None)
    rows: dict[str, list[WorkflowRunStep]] = {}
    if bulk is not None and step_id is not None:
        for row in bulk(step_id):
            if row.workflow_run_id in children:
                rows.setdefault(row.workflow_run_id, []).append(row)
    else:
        rows = {child_id: store.get_steps(child_id) for child_id in children}
    return {
        child_id: cause for child_id, child_rows in rows.items() if (cause := row_failure_cause(child_rows))
    }


def fill_unrun_item_errors(store: WorkflowPersistence, fan: FanOutView) -> None:
    """Failed and cancelled items without a child run — its workflow could not be loaded or
    started — have their error nowhere in the rows: only the `FanOutItemCompleted` that ended
    them says it (`lint-repo.wf:21:23: expected a step …`). Read it from the stored event stream,
    so `show`, the failure clusters and a reopened run say why, not `(no error recorded)`. The
    stream is read only when such an item exists; the last event of an item wins."""
    if fan.step_id is None:
        return
    missing = {
        fan.ids[idx]: idx
        for idx, code in enumerate(fan.codes)
        if code in _FAILED_ITEM_CODES and idx not in fan.child_runs and idx not in fan.errors
    }
    if not missing:
        return
    found: dict[int, str] = {}
    stream, after = top_level_run(store, fan.run_id), 0
    while rows := store.read_events(stream, after, READ_ROWS):
        after = rows[-1].seq
        for row in (event for packed in rows for event in unpack(packed)):
            if row.kind != "FanOutItemCompleted" or fan.step_id not in row.payload:
                continue
            data = envelope_of(row)
            event: FanOutItemCompleted | None = data.event if data is not None else None  # type: ignore[assignment]
            idx = missing.get(event.item_id) if event is not None and event.step_id == fan.step_id else None
            if idx is not None:
                found[idx] = readable_error(event.error)  # type: ignore[union-attr]
    for idx, error in found.items():
        if error:
            fan.errors[idx] = error


def _failed_row(rows: list[WorkflowRunStep]) -> WorkflowRunStep | None:
    """`records.failed_step` for stored rows: the step row that failed last with an error."""
    failed = [r for r in rows if str(r.status) in FAILED_STEP_STATUSES and r.step_error]
    return max(failed, key=lambda r: (r.ended_at or r.started_at or "", r.id)) if failed else None


def row_failure_cause(rows: list[WorkflowRunStep]) -> str | None:
    """`records.failure_cause` for stored rows: the error of the step row that failed last."""
    last = _failed_row(rows)
    return (readable_error(last.step_error) or None) if last is not None else None


def row_why_failed(store: WorkflowPersistence, run: WorkflowRun, rows: list[WorkflowRunStep]) -> str:
    """`RunState.why_failed` for a stored run and its step rows, without loading the whole model
    (the runs list asks it of every failed run): the cause its failed step gave, a failed `call
    workflow` step's child run asked in turn (`review-one: Script 'lint' exited with code 3 · …`),
    else the run's own error — which only says which step failed."""

    def failure(
        at: tuple[WorkflowRun, list[WorkflowRunStep]],
    ) -> tuple[str | None, tuple[WorkflowRun, list[WorkflowRunStep]] | None, str]:
        run, rows = at
        step = _failed_row(rows)
        child = _failed_child_row(store, step)
        if child is None:
            cause = readable_error(step.step_error) if step is not None else ""
            return cause or readable_error(run.error), None, ""
        return None, (child, store.get_steps(child.id)), child.workflow_name

    return failure_chain((run, rows), failure)


def _failed_child_row(store: WorkflowPersistence, step: WorkflowRunStep | None) -> WorkflowRun | None:
    """`records.failed_child` for a step row: the failed run a `call workflow` row called."""
    called = step is not None and step.role == "workflow" and step.child_run_id not in (None, "dispatching")
    child = store.get_run(step.child_run_id) if called else None  # type: ignore[union-attr,arg-type]
    return child if child is not None and str(child.status) == "failed" else None


def row_called_why(store: WorkflowPersistence, step: WorkflowRunStep) -> str | None:
    """`records.called_why` for a step row: why a failed `call workflow` step failed, as its
    child run's `row_why_failed` (its own error only names the child's failed step); None for
    another step, or a child that is gone or did not fail."""
    child = _failed_child_row(store, step)
    return (row_why_failed(store, child, store.get_steps(child.id)) or None) if child is not None else None


def row_why(store: WorkflowPersistence, run: WorkflowRun, rows: list[WorkflowRunStep]) -> str | None:
    """Why a stored run ended as it did, on one line, for lists (`runs`, the runs screen): a
    failed run's `row_why_failed`, another run's error in people's words (`cancelled: interrupted
    (Ctrl-C)`), None when it has none."""
    if str(run.status) == "failed":
        return row_why_failed(store, run, rows) or None
    return error_headline(run.error) or None


def gate_options(raw: str | None) -> dict[str, str]:
    """A gate row's options (JSON list of {value, label}, or an object) as value → label."""
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


def load_run_state(
    store: WorkflowPersistence,
    run: WorkflowRun,
    model: RunModel,
    *,
    legacy: LegacyPlacer | None = None,
    kinds: Callable[[WorkflowRun], dict[str, str]] | None = None,
    depth: int = 0,
) -> RunState:
    """One run (and, recursively, its `call workflow` children) into `model.runs`. `kinds` may
    name each node path's kind (from the definition) where the row's role cannot tell."""
    parent = run.parent_workflow_run_id or run.parent_run_id or None
    state = RunState(run.id, run.workflow_name, parent_run_id=parent)
    state.status = str(run.status)
    state.started_at = parse_time(run.started_at)
    state.ended_at = parse_time(run.ended_at)
    state.error = readable_error(run.error) or None
    state.summary = readable_error(run.result_summary) or None
    state.inputs = dict(run.inputs)
    node_kinds = kinds(run) if kinds is not None else {}
    rows = store.get_steps(run.id)
    reused = reused_row_ids(run, rows)
    again = replaced_always(rows)
    for key, path_rows in place_rows(run, rows, legacy).items():
        sv = step_from_rows(key, path_rows, node_kinds.get(key))
        if path_rows[-1].id in again:  # an attempt after it started: as `RunModel._always_again`
            sv.to_run_again()
        if path_rows[-1].id in reused:  # did not run here: what it spent is the old run's
            sv.reused_from, sv.usage = run.rerun_of, None
        state.steps[key] = sv
        for row in path_rows:
            state.step_ids[row.id] = key
        last = path_rows[-1]
        if last.role == "foreach":
            fan = fanout_from_rows(key, run.id, last, store.get_fan_out_items(last.id))
            fan.usage = None if sv.reused_from else Usage.of_rows(path_rows)
            fill_item_errors(store, fan)
            state.fanouts[key] = fan
            state.fanout_steps[last.id] = key
        if str(last.status) == "waiting" and last.role == "gate":
            model.gates[(run.id, last.step_name)] = GateView(
                run_id=run.id,
                gate_name=last.step_name,
                step_id=last.id,
                gate_type=last.gate_type,
                prompt=last.gate_prompt,
                options=gate_options(last.gate_options),
                node_path=sv.node_path,
                since=parse_time(last.started_at) or 0.0,
            )
        if sv.child_run_id:
            state.child_runs[last.id] = sv.child_run_id
            if sv.kind == "call_workflow" and depth < MAX_CALL_DEPTH:
                child = store.get_run(sv.child_run_id)
                if child is not None:
                    load_run_state(store, child, model, legacy=legacy, kinds=kinds, depth=depth + 1)
    model.runs[run.id] = state
    return state


def load_run(
    store: WorkflowPersistence,
    run_id: str,
    *,
    clock: Clock | None = None,
    legacy: LegacyPlacer | None = None,
    kinds: Callable[[WorkflowRun], dict[str, str]] | None = None,
) -> RunModel:
    """A read-only model of a stored run. Raises LookupError for an unknown run id."""
    run = store.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id} in the store")
    model = RunModel(clock) if clock is not None else RunModel()
    model.root_run_id = run.id
    model.read_only = True
    load_run_state(store, run, model, legacy=legacy, kinds=kinds)
    settle_interrupted(model, run, store.get_steps(run.id))
    model.failures = sum(
        1 for r in model.runs.values() for sv in r.steps.values() if sv.status in ("failed", "timed_out")
    ) + sum(f.count("failed") for r in model.runs.values() for f in r.fanouts.values())
    model.take_changes()
    return model


INTERRUPTED_NOTE = "no engine holds this run any more (its process went away); resume it to continue"


def settle_decided_gates(model: RunModel, store: WorkflowPersistence) -> bool:
    """A gate answered while no engine held its run (the dashboard or `runkon-flow approve` on an
    interrupted run) has its answer in its step row and in no event: the engine that would have
    told it is gone. Draw it as that engine would have (a `GateResolved`), so it reads approved
    or rejected, not still waiting — and a resume, which skips it, leaves it so. True when one was."""
    settled = False
    for gate in model.waiting_gates():
        row = store.get_step(gate.step_id) if gate.step_id else None
        if row is None or row.gate_approved_by is None:
            continue
        status = StepStatus(row.status)
        if status not in (StepStatus.COMPLETED, StepStatus.FAILED):
            continue
        at = parse_time(row.gate_approved_at or row.ended_at)
        resolved = GateResolved(
            gate_name=gate.gate_name,
            approved=status is StepStatus.COMPLETED,
            step_id=gate.step_id,
            resolved_by=row.gate_approved_by,
            feedback=row.gate_feedback,
            resolved_at=at,
            selections=_selections(row.gate_selections),
        )
        ts = at if at is not None else model.clock()
        model.apply(EngineEventData(timestamp=int(ts), ts=ts, run_id=gate.run_id, event=resolved))
        settled = True
    if settled:
        model.take_changes()
    return settled


def settle_interrupted(model: RunModel, run: WorkflowRun, steps: Iterable[WorkflowRunStep]) -> bool:
    """A stored run that lost its engine is shown `interrupted`, its clocks stopped where it
    stopped (`liveness.stopped_at`), not running on with "now". True when it was. A run that
    died before it recorded any event (the model has nothing of it) is read from its row: its
    workflow, its start, then interrupted — not a run of no name `running` for 0 s."""
    if liveness.display_status(run) != liveness.INTERRUPTED:
        return False
    if run.id not in model.runs:
        state = RunState(
            run.id, run.workflow_name, parent_run_id=run.parent_workflow_run_id or run.parent_run_id or None
        )
        state.status, state.started_at = "running", parse_time(run.started_at)
        model.runs[run.id] = state
        model.root_run_id = model.root_run_id or run.id
    model.mark_interrupted(INTERRUPTED_NOTE, at=liveness.stopped_at(run, steps))
    model.take_changes()
    return True
