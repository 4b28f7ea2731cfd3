"""The records of the run model: a run, its steps, fan-outs and their items, gates and log lines.

Plain data with the small amount of behaviour that keeps them consistent (item counters, bounded
rings). Filled by the reducer (`observe.reducer`) from events, or by the loader (`observe.loader`)
from store rows; read by every renderer. Everything is bounded so a 10,000-item fan-out stays small.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runkon_flow.humanize import error_headline
from runkon_flow.observe.status import ITEM_CODE, ITEM_DONE_CODES, ITEM_STATUSES, TERMINAL
from runkon_flow.usage import Usage

Clock = Callable[[], float]

_PENDING = ITEM_CODE["pending"]
_RUNNING = ITEM_CODE["running"]
_INTERRUPTED = ITEM_CODE["interrupted"]


@dataclass(frozen=True)
class ViewLimits:
    """Memory bounds. Defaults keep a 10,000-item fan-out well under the 300 MB budget."""

    engine_log: int = 5000
    error_log: int = 2000
    step_output: int = 2000
    child_output: int = 50
    child_runs: int = 200  # finished, successful fan-out children kept (older ones: read from the store)
    failed_child_runs: int = 5000  # failed/cancelled children kept, for the errors log and the summary


# --------------------------------------------------------------------------- small records


@dataclass(slots=True)
class LogLine:
    ts: float
    text: str
    level: str = "info"  # debug | info | success | warning | error
    run_id: str = ""
    node_path: str | None = None


class LogBuffer:
    """A bounded ring of lines plus a monotonic count, so a viewer can tell what is new.

    `total` only ever grows, across `clear()` too: a viewer that last saw `total` lines knows
    that everything before the ring's first line is gone (`dropped`), whether the ring dropped
    it or a new run cleared it. (Resetting it let a viewer that drew a line just before a clear
    take the next run's first line for one it had already drawn, and draw it twice.)"""

    __slots__ = ("errors", "lines", "marked", "since_clear", "total")

    def __init__(self, maxlen: int) -> None:
        self.lines: deque[LogLine] = deque(maxlen=maxlen)
        self.total = 0
        self.since_clear = 0  # lines appended since the last clear (dropped ones included)
        self.marked = 0  # `total` at the last `mark` (or clear): the lines before it are replaced
        self.errors = 0  # lines of level "error" appended since the last `mark` or clear

    def append(self, line: LogLine) -> None:
        self.lines.append(line)
        self.total += 1
        self.since_clear += 1
        if line.level == "error":
            self.errors += 1

    @property
    def dropped(self) -> int:
        return self.total - len(self.lines)

    def mark(self) -> None:
        """The lines so far belong to what a newer attempt of the run replaces (a resume)."""
        self.marked = self.total
        self.errors = 0

    @property
    def since_mark(self) -> int:
        """Lines appended since the last `mark` or clear (dropped ones included)."""
        return self.total - self.marked

    @property
    def replaced(self) -> int:
        """How many of `lines`, from the front, came before the last `mark`."""
        return max(0, self.marked - self.dropped)

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[LogLine]:
        return iter(self.lines)

    def clear(self) -> None:
        """Forget every line (a new run on screen); `total` keeps counting."""
        self.lines.clear()
        self.since_clear = 0
        self.marked = self.total
        self.errors = 0


def in_always_list(node_path: str | None) -> bool:
    """The step is one of the run's top-level always list (`always.N`), which runs again at the
    end of every attempt of the run."""
    return node_path is not None and node_path.startswith("always.")


def execution_position(node_path: str | None, position: int | None) -> int | None:
    """The position part of an execution's key (docs/run-model.md, "Counting steps"): the step's
    position in the run, except for the top-level always list, which runs once per attempt of the
    run (a resume runs it again, at a later position) and is counted once, by its latest attempt."""
    if in_always_list(node_path):
        return None
    return position


@dataclass(slots=True)
class StepView:
    """The latest attempt/iteration of one step of one run."""

    key: str
    name: str
    kind: str = "call"
    node_path: str | None = None
    step_key: str | None = None
    step_id: str | None = None
    status: str = "pending"
    iteration: int = 0
    attempt: int = 0
    starts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    duration_ms: int | None = None
    error: str | None = None
    markers: tuple[str, ...] = ()
    child_run_id: str | None = None
    output: deque[str] | None = None
    output_total: int = 0
    position: int | None = None
    # The run whose result this step reuses (a rerun's steps before the one it reruns from): it
    # did not run here, its output and duration are that run's (docs/run-model.md, "Reused steps").
    reused_from: str | None = None
    # A gate's answer in words (`approved by alice · note: ok`), from the event or the stored row.
    decision: str | None = None
    gate_type: str | None = None  # a gate's type (`human_approval`): whether it waits for people
    # What the step spent over all its executions and attempts (tokens, cost), when reported; a
    # `call workflow` step: its child runs' totals. A foreach's is its FanOutView's `usage`.
    usage: Usage | None = None
    # (iteration, position) → the status of that execution's latest attempt: a step inside a loop
    # runs once per iteration and each run counts; retries do not (a step is counted once, by how
    # its last attempt ended). The same key as `observe.counts.row_key` gives a stored row.
    outcomes: dict[tuple[int, int | None], str] = field(default_factory=dict)

    def set_status(self, status: str) -> None:
        """The status of the current execution's latest attempt."""
        self.status = status
        self.outcomes[(self.iteration, execution_position(self.node_path, self.position))] = status

    def to_run_again(self) -> None:
        """A step of the top-level always list when a new attempt of its run starts: pending
        until it runs again, not the ✓ or ✗ of the attempt it replaces (nothing of the list is
        kept: runtime.resume). Its output and usage stay, to read what ran before."""
        self.outcomes.clear()
        self.set_status("pending")
        self.started_at = self.ended_at = self.duration_ms = None
        self.error = None

    def elapsed(self, now: float) -> float | None:
        """Seconds spent: the reported duration when finished, else the live wall time."""
        if self.duration_ms is not None and self.status in TERMINAL:
            return self.duration_ms / 1000
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at)

    def last_output(self, n: int) -> list[str]:
        if not self.output:
            return []
        return list(self.output)[-n:]

    def last_line_worth_showing(self) -> str:
        """The step's last output line that says something (`last_line_worth_showing`)."""
        return last_line_worth_showing(self.output)


def last_line_worth_showing(lines: Iterable[str] | None) -> str:
    """The last output line that is not blank and not inside a FLOW_OUTPUT block: what a one-line
    glimpse of a step shows (its `<<<END_FLOW_OUTPUT>>>` marker says nothing to a person)."""
    last, in_block = "", False
    for line in lines or ():
        rest, kept = line.strip(), []
        while rest:  # a block may open and close mid-line: `<<<FLOW_OUTPUT>>> {…} <<<END_FLOW_OUTPUT>>>`
            if in_block:
                _, end, rest = rest.partition(_BLOCK_END)
                in_block = not end
            else:
                before, start, rest = rest.partition(_BLOCK_START)
                kept.append(before.strip())
                in_block = bool(start)
        text = " ".join(part for part in kept if part)
        if text:
            last = text
    return last


_BLOCK_START, _BLOCK_END = "<<<FLOW_OUTPUT>>>", "<<<END_FLOW_OUTPUT>>>"


@dataclass(slots=True)
class GateView:
    run_id: str
    gate_name: str
    step_id: str | None = None
    gate_type: str | None = None
    prompt: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    timeout_secs: int | None = None
    node_path: str | None = None
    since: float = 0.0


class FanOutView:
    """One foreach step's items: one status byte per item, so 10,000 items cost kilobytes."""

    __slots__ = (
        "attempts",
        "causes",
        "child_runs",
        "codes",
        "counts",
        "declared",
        "deps",
        "dirty_hi",
        "dirty_lo",
        "earlier",
        "ended",
        "errors",
        "first_start",
        "ids",
        "index",
        "key",
        "max_parallel",
        "name",
        "node_path",
        "refs",
        "run_id",
        "started",
        "step_id",
        "usage",
        "version",
    )

    def __init__(self, key: str, run_id: str, name: str, node_path: str | None, step_id: str | None) -> None:
        self.key = key
        self.run_id = run_id
        self.name = name
        self.node_path = node_path
        self.step_id = step_id
        self.max_parallel: int | None = None
        self.declared = 0
        self.ids: list[str] = []
        self.refs: list[str] = []
        self.index: dict[str, int] = {}
        self.codes = bytearray()
        self.counts = [0] * len(ITEM_STATUSES)
        self.deps: dict[int, tuple[str, ...]] = {}
        self.child_runs: dict[int, str] = {}
        # Items run more than once (a retry, or a resume re-running an unfinished item): the
        # attempt on screen (2, 3 …) and the child run of the attempt before it, which is kept.
        self.attempts: dict[int, int] = {}
        self.earlier: dict[int, str] = {}
        self.started: dict[int, float] = {}
        self.ended: dict[int, float] = {}
        self.errors: dict[int, str] = {}  # the item's error as reported (its child run's error)
        # Why a failed item's child run failed: its failed step's error (`failure_cause`), which
        # says more than the run's "Step 'x' failed after 1 attempt". Failure clusters use it.
        self.causes: dict[int, str] = {}
        self.usage: Usage | None = None  # what the items' child runs spent, summed (every attempt)
        self.first_start: float | None = None
        self.version = 0
        self.dirty_lo, self.dirty_hi = 1 << 62, -1

    # ---- mutation

    def add(self, item_id: str, ref: str = "", status: str = "pending", deps: Iterable[str] = ()) -> int:
        idx = self.index.get(item_id)
        if idx is None:
            idx = len(self.ids)
            self.index[item_id] = idx
            self.ids.append(item_id)
            self.refs.append(ref)
            self.codes.append(_PENDING)
            self.counts[_PENDING] += 1
        elif ref:
            self.refs[idx] = ref
        dep_tuple = tuple(deps)
        if dep_tuple:
            self.deps[idx] = dep_tuple
        self.set_code(idx, ITEM_CODE.get(status, _PENDING))
        return idx

    def add_all(self, items: Iterable[Any]) -> None:
        """`add` for each of a collected list (`FanOutItemInfo`s): a fresh fan-out of pending
        items without dependencies, the common case, is filled in bulk (10,000 items in one tick)."""
        items = list(items)
        fresh = not self.ids and all(i.status == "pending" and not i.depends_on for i in items)
        ids = [i.item_id for i in items]
        if not fresh or len(set(ids)) != len(ids):
            for item in items:
                self.add(item.item_id, item.item_ref, item.status, item.depends_on)
            return
        self.ids = ids
        self.refs = [i.item_ref for i in items]
        self.index = {item_id: idx for idx, item_id in enumerate(ids)}
        self.codes = bytearray([_PENDING]) * len(ids)
        self.counts[_PENDING] += len(ids)
        self.version += len(ids)

    def set_code(self, idx: int, code: int) -> None:
        old = self.codes[idx]
        if old != code:
            self.counts[old] -= 1
            self.counts[code] += 1
            self.codes[idx] = code
            if idx < self.dirty_lo:
                self.dirty_lo = idx
            if idx > self.dirty_hi:
                self.dirty_hi = idx
        self.version += 1

    def stop_running(self, at: float | None) -> None:
        """The fan-out ended (its step ended, or its run lost its engine) with items still
        running: nothing runs them any more, so they are `interrupted` and their clocks stop at
        `at` (an item that has its own end keeps it). The one rule for `show`, the dashboard's
        grid and its counts; a resume starts them again (`start`)."""
        start = self.codes.find(_RUNNING)
        if start < 0:
            return
        for idx in range(start, len(self.codes)):
            if self.codes[idx] == _RUNNING:
                self.set_code(idx, _INTERRUPTED)
                if at is not None and idx not in self.ended:
                    self.ended[idx] = at

    def take_dirty(self) -> tuple[int, int] | None:
        """The range of item indices whose status changed since the last call (for repainting
        only the grid rows that show them)."""
        if self.dirty_hi < self.dirty_lo:
            return None
        span = (self.dirty_lo, self.dirty_hi)
        self.dirty_lo, self.dirty_hi = 1 << 62, -1
        return span

    def set_child(self, idx: int, child_run_id: str) -> None:
        """The item now runs as `child_run_id`; another child run than before is its next attempt."""
        before = self.child_runs.get(idx)
        if before is not None and before != child_run_id:
            self.earlier[idx] = before
            self.attempts[idx] = self.attempts.get(idx, 1) + 1
        self.child_runs[idx] = child_run_id

    def start(self, item_id: str, ts: float) -> int:
        idx = self.add(item_id) if item_id not in self.index else self.index[item_id]
        self.set_code(idx, _RUNNING)
        self.started[idx] = ts
        self.ended.pop(idx, None)
        if self.first_start is None or ts < self.first_start:
            self.first_start = ts
        return idx

    def finish(self, item_id: str, status: str, ts: float, error: str | None = None) -> int:
        idx = self.add(item_id) if item_id not in self.index else self.index[item_id]
        self.set_code(idx, ITEM_CODE.get(status, ITEM_CODE["failed"]))
        self.ended[idx] = ts
        if error:
            self.errors[idx] = error
        return idx

    # ---- reading

    @property
    def total(self) -> int:
        return max(len(self.ids), self.declared)

    def count(self, status: str) -> int:
        return self.counts[ITEM_CODE[status]]

    @property
    def done(self) -> int:
        return sum(self.counts[c] for c in ITEM_DONE_CODES)

    def status_of(self, idx: int) -> str:
        return ITEM_STATUSES[self.codes[idx]]

    def elapsed(self, idx: int, now: float) -> float | None:
        start = self.started.get(idx)
        if start is None:
            return None
        return max(0.0, self.ended.get(idx, now) - start)

    def eta(self, now: float) -> float | None:
        """Seconds left at the average rate so far; None until something has finished."""
        done = self.done
        remaining = self.total - done
        if self.first_start is None or done == 0:
            return None
        if remaining <= 0:
            return 0.0
        spent = max(now - self.first_start, 1e-6)
        return remaining * spent / done

    def waits_on(self, idx: int) -> list[tuple[str, str]]:
        """For an ordered foreach: the dependencies of item `idx` that have not finished yet."""
        result = []
        for dep in self.deps.get(idx, ()):
            didx = self.index.get(dep)
            status = self.status_of(didx) if didx is not None else "pending"
            if didx is None or self.codes[didx] not in ITEM_DONE_CODES:
                result.append((dep, status))
        return result

    def first_failed(self) -> int | None:
        code = ITEM_CODE["failed"]
        idx = self.codes.find(bytes([code]))
        return None if idx < 0 else idx


#: How deep `RunState.why_failed` (and `loader.row_why_failed`) follows failed `call workflow`
#: steps into their child runs.
NESTING_LIMIT = 16

T = TypeVar("T")


def failed_step(steps: Iterable[StepView]) -> StepView | None:
    """The step that failed last with an error (None when no failed step recorded one)."""
    failed = [sv for sv in steps if sv.status in ("failed", "timed_out", "cancelled") and sv.error]
    return max(failed, key=lambda sv: sv.ended_at or 0.0) if failed else None


def failure_cause(steps: Iterable[StepView]) -> str | None:
    """Why a run failed, in its own words: the error of the step that failed last (a run's own
    error only says which step failed). None when no failed step recorded an error."""
    step = failed_step(steps)
    return step.error if step is not None else None


@dataclass(slots=True)
class RunState:
    """One run (the root run or a child run) as seen through its events."""

    run_id: str
    workflow_name: str = ""
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    item_id: str | None = None
    status: str = "pending"
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    summary: str | None = None
    cancel_reason: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    steps: dict[str, StepView] = field(default_factory=dict)
    step_ids: dict[str, str] = field(default_factory=dict)
    loops: dict[str, int] = field(default_factory=dict)
    fanouts: dict[str, FanOutView] = field(default_factory=dict)
    fanout_steps: dict[str, str] = field(default_factory=dict)
    child_runs: dict[str, str] = field(default_factory=dict)  # parent step id → child run id
    resumed: bool = False
    # Attempts of this run seen so far: 1 for its first start, one more for each resume (0 when
    # the run was read from rows, which do not say). Its times count from the first attempt.
    attempts: int = 0
    #: When the attempt seen last began (a resume or retry seen here; None: the first start).
    attempt_started_at: float | None = None
    total_cost: float = 0.0
    total_turns: int = 0

    def elapsed(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def why_failed(self, runs: Mapping[str, RunState] | None = None) -> str:
        """Why the run failed, on one line: the cause its failed step gave, else the run's own
        error. That error only says which step failed (`workflow error: Step 'import-all' failed
        after 1 attempts`); the step says why (`foreach 'import-all': 8 of 40 items failed`). A
        failed `call workflow` step's child run (from `runs`, when known) is asked in turn:
        `review-one: Script 'lint' exited with code 3 · …`."""

        def failure(run: RunState) -> tuple[str | None, RunState | None, str]:
            step = failed_step(run.steps.values())
            child = failed_child(step, runs)
            if child is None:
                return (step.error if step is not None else None) or run.error, None, ""
            return None, child, child.workflow_name

        return failure_chain(self, failure)


def failed_child(step: StepView | None, runs: Mapping[str, RunState] | None) -> RunState | None:
    """The failed run a failed `call workflow` `step` called, when `runs` holds it. Only a `call
    workflow` step's child tells its story: a fan-out's children are many."""
    child_id = step.child_run_id if step is not None and step.kind == "call_workflow" else None
    child = runs.get(child_id) if runs is not None and child_id else None
    return child if child is not None and child.status == "failed" else None


def called_why(step: StepView, runs: Mapping[str, RunState] | None) -> str | None:
    """Why a failed `call workflow` step failed, on one line: its child run's `why_failed`
    (`Script 'import' exited with code 3 · schema mismatch …`) — its own error only says that
    the child failed at some step (`Sub-workflow 'x' failed: workflow error: Step 'import'
    failed after 1 attempt`). None for another step, or a child not in `runs` or not failed."""
    child = failed_child(step, runs)
    return (child.why_failed(runs) or None) if child is not None else None


def failure_chain(run: T, failure: Callable[[T], tuple[str | None, T | None, str]]) -> str:
    """Why `run` failed, on one line: `failure(run)` gives its cause, or the failed run its failed
    `call workflow` step called and that run's workflow name, asked in turn — `review-one: Script
    'lint' exited with code 3 · …`. The run model's `RunState.why_failed` and the stored rows'
    `loader.row_why_failed` walk the chain alike."""
    where = ""
    for _ in range(NESTING_LIMIT):
        cause, child, name = failure(run)
        if child is None:
            return where + error_headline(cause)
        where += f"{name}: "
        run = child
    return where.rstrip(": ")


@dataclass
class Changes:
    """What a batch of events touched, so widgets refresh only what changed."""

    header: bool = False
    steps: set[tuple[str, str]] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)
    fanouts: set[tuple[str, str]] = field(default_factory=set)
    output: set[tuple[str, str]] = field(default_factory=set)
    engine_log: bool = False
    error_log: bool = False
    gates: bool = False
    finished: bool = False
    structure: bool = False  # a new run/fan-out appeared

    def __bool__(self) -> bool:
        return bool(
            self.header
            or self.steps
            or self.runs
            or self.fanouts
            or self.output
            or self.engine_log
            or self.error_log
            or self.gates
            or self.finished
            or self.structure
        )


def reused_note(sv: StepView) -> str:
    """What a rerun's reused step says where a finished step says its duration (log lines, the
    live view and `watch`): it did not run here, and which run holds its output."""
    return f"reused from run {sv.reused_from}" if sv.reused_from else ""


def step_label(sv: StepView) -> str:
    """How a step is named in logs: its kind word (when not an agent call) and its name."""
    name = sv.step_key or sv.name
    if sv.kind == "script":
        return f"script {name}"
    if sv.kind == "gate":
        return f"gate {name}"
    if sv.kind == "call_workflow":
        return f"workflow {name.removeprefix('workflow:')}"
    if sv.kind == "foreach":
        return f"foreach {name.removeprefix('foreach:')}"
    if sv.kind == "parallel":
        return "parallel"
    return name
