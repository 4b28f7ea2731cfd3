"""Persistence entities (engine.md §6.1) and status enums (§5).

Plain dataclasses with slots: they cross thread and process boundaries, must be cheap to build on
the fan-out hot path, and a store keeps one of each per foreach item (slots: ~200 bytes a row
instead of ~800, which is most of a 100,000-item fan-out's memory). Timestamps are RFC 3339 UTC
strings, identifiers ULIDs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple


def new_id() -> str:
    """A 26-character Crockford base32 ULID."""
    # Imported here: `ulid` asks the installed packages for its version when imported (~10 ms),
    # and the row models are imported by every reader of runs (the dashboard before its first
    # frame) that never makes an id.
    from ulid import ULID

    return str(ULID())


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING = "waiting"
    NEEDS_RESUME = "needs_resume"
    CANCELLING = "cancelling"

    @property
    def is_terminal(self) -> bool:
        return self in _RUN_TERMINAL

    @property
    def is_active(self) -> bool:
        return self in _RUN_ACTIVE


# Sets, not tuples of members looked up on every call: the engine asks these several times per
# foreach item (run rows, step rows, item rows).
_RUN_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
_RUN_ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"
    TIMED_OUT = "timed_out"
    # Ours (design.md §5): a step stopped by a cancel is `cancelled`, never `completed`/`failed`.
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _STEP_TERMINAL

    @property
    def is_starting(self) -> bool:
        return self in _STEP_STARTING

    @property
    def short_label(self) -> str:
        return _SHORT[self]


_STEP_TERMINAL = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.TIMED_OUT, StepStatus.CANCELLED}
)
_STEP_STARTING = frozenset({StepStatus.RUNNING, StepStatus.WAITING})
#: The statuses a failed step row may end with, its error then saying why the run failed
#: (`observe.loader.row_failure_cause`; `schema.ITEM_CHILD_FAILED_STEPS` reads them in SQL).
FAILED_STEP_STATUSES = ("failed", "timed_out", "cancelled")

_SHORT = {
    StepStatus.COMPLETED: "ok",
    StepStatus.FAILED: "FAIL",
    StepStatus.SKIPPED: "skip",
    StepStatus.RUNNING: "...",
    StepStatus.PENDING: "-",
    StepStatus.WAITING: "wait",
    StepStatus.TIMED_OUT: "tout",
    StepStatus.CANCELLED: "cncl",
}


class FanOutItemStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in _ITEM_UNFINISHED


_ITEM_UNFINISHED = frozenset({FanOutItemStatus.PENDING, FanOutItemStatus.RUNNING})


class StepRole(StrEnum):
    """Roles allowed by the canonical schema's CHECK (engine.md §15.1: we write only these)."""

    AGENT = "agent"
    GATE = "gate"
    FOREACH = "foreach"
    WORKFLOW = "workflow"


@dataclass(slots=True)
class WorkflowRun:
    id: str
    workflow_name: str
    parent_run_id: str = ""
    status: RunStatus = RunStatus.PENDING
    dry_run: bool = False
    trigger: str = ""
    started_at: str = ""
    ended_at: str | None = None
    result_summary: str | None = None
    definition_snapshot: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    parent_workflow_run_id: str | None = None
    iteration: int = 0
    blocked_on: dict | None = None
    total_duration_ms: int | None = None
    error: str | None = None
    dismissed: bool = False
    workflow_title: str | None = None
    owner_token: str | None = None
    lease_until: str | None = None
    generation: int = 0
    retry_request: str | None = None  # JSON of the last `RetryRequest` (schema v4); None = never retried
    rerun_of: str | None = None  # the run this one reruns (schema v7; docs/when-things-go-wrong.md)
    rerun_from: str | None = None  # the step it reruns from; the steps before it were reused
    # Which definition the rerun runs (schema v11): "stored" — the old run's, and the workflows it
    # starts as the old run ran them — or "current"; None for a run that is no rerun (and for a
    # rerun made before v11, whose children started from today's files).
    rerun_definition: str | None = None


@dataclass(slots=True)
class NewRun:
    workflow_name: str
    parent_run_id: str = ""
    dry_run: bool = False
    trigger: str = "manual"
    definition_snapshot: str | None = None
    parent_workflow_run_id: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    iteration: int = 0
    run_id: str | None = None  # a caller-chosen id; None → a fresh ULID
    #: The title when the snapshot does not say it (a sibling's reference: `persistence.snapshots`).
    workflow_title: str | None = None


@dataclass(slots=True)
class WorkflowRunStep:
    id: str
    workflow_run_id: str
    step_name: str = ""
    role: str = StepRole.AGENT.value
    can_commit: bool = False
    condition_expr: str | None = None
    status: StepStatus = StepStatus.PENDING
    child_run_id: str | None = None
    position: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    result_text: str | None = None
    condition_met: bool | None = None
    iteration: int = 0
    parallel_group_id: str | None = None
    context_out: str | None = None
    markers_out: str | None = None
    retry_count: int = 0
    gate_type: str | None = None
    gate_prompt: str | None = None
    gate_timeout: str | None = None
    gate_approved_by: str | None = None
    gate_approved_at: str | None = None
    gate_feedback: str | None = None
    structured_output: str | None = None
    output_file: str | None = None
    gate_options: str | None = None
    gate_selections: str | None = None
    fan_out_total: int | None = None
    fan_out_completed: int = 0
    fan_out_failed: int = 0
    fan_out_skipped: int = 0
    step_error: str | None = None
    node_path: str | None = None  # place in the workflow tree (`body.2`); None on rows before schema v2
    usage: str | None = None  # JSON `runkon_flow.usage.Usage`: tokens/cost this step spent (schema v6)


@dataclass(slots=True)
class NewStep:
    workflow_run_id: str
    step_name: str
    role: str = StepRole.AGENT.value
    can_commit: bool = False
    position: int = 0
    iteration: int = 0
    retry_count: int | None = None  # given → inserted `running` with started_at; None → `pending`
    gate_type: str | None = None
    gate_prompt: str | None = None
    gate_timeout: str | None = None
    gate_options: str | None = None  # JSON array of {"value": …, "label": …}
    node_path: str | None = None  # the node's address in the workflow tree: `body.2`, `body.1.then.0`


@dataclass(slots=True)
class StepUpdate:
    generation: int
    status: StepStatus
    child_run_id: str | None = None
    result_text: str | None = None
    context_out: str | None = None
    markers_out: str | None = None
    retry_count: int | None = None
    structured_output: str | None = None
    step_error: str | None = None
    #: A foreach row's final counts (total, completed, failed, skipped): written with a terminal
    #: status into the `fan_out_*` columns; None leaves them as they are.
    fan_out: tuple[int, int, int, int] | None = None
    #: What the step spent (JSON `runkon_flow.usage.Usage`), written with a terminal status; None
    #: leaves the column as it is.
    usage: str | None = None

    @classmethod
    def completed(
        cls,
        generation: int,
        *,
        child_run_id: str | None = None,
        result_text: str | None = None,
        context_out: str | None = None,
        markers_out: str | None = None,
        attempt: int | None = None,
        structured_output: str | None = None,
        usage: str | None = None,
    ) -> StepUpdate:
        return cls(
            generation=generation,
            usage=usage,
            status=StepStatus.COMPLETED,
            child_run_id=child_run_id,
            result_text=result_text,
            context_out=context_out,
            markers_out=markers_out,
            retry_count=attempt,
            structured_output=structured_output,
        )

    @classmethod
    def failed(
        cls,
        generation: int,
        message: str,
        attempt: int | None = None,
        child_run_id: str | None = None,
        usage: str | None = None,
    ) -> StepUpdate:
        """`usage`: what the failed attempt spent (JSON, as `completed`'s), when it said."""
        return cls(
            generation=generation,
            status=StepStatus.FAILED,
            result_text=message,
            step_error=message,
            retry_count=attempt,
            child_run_id=child_run_id,
            usage=usage,
        )


@dataclass(slots=True)
class FanOutItemRow:
    id: str
    step_run_id: str
    item_type: str
    item_id: str
    item_ref: str = ""
    child_run_id: str | None = None
    status: FanOutItemStatus = FanOutItemStatus.PENDING
    dispatched_at: str | None = None
    completed_at: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    attempt: int = 1  # 1 = the item's first attempt; a retry's row says 2, 3 … (schema v4)
    previous_child_run_id: str | None = None  # the child run of the attempt before this one


class ItemLineage(NamedTuple):
    """Where a new fan-out item row stands in its item's history: its attempt number and the
    child run of the attempt before it (docs/when-things-go-wrong.md)."""

    attempt: int = 1
    previous_child_run_id: str | None = None


@dataclass(frozen=True)
class RetryRequest:
    """A retry asked of a finished run, kept on the run row (`workflow_runs.retry_request`).

    `items` maps each fan-out step row to reopen to the item ids to run again; every other item of
    that fan-out keeps its outcome. Completed rows written before `requested_at` that come after
    the earliest reopened fan-out are not reused, so the steps after it are brought up to date.
    Rows written by the retry itself are newer, so resuming an interrupted retry continues it."""

    requested_at: str
    items: dict[str, tuple[str, ...]]
    definition: str = "stored"  # "stored" | "current": which definition the retry runs

    def to_json(self) -> str:
        return json.dumps(
            {
                "requested_at": self.requested_at,
                "definition": self.definition,
                "items": {step: list(ids) for step, ids in self.items.items()},
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> RetryRequest | None:
        """The stored request, or None when there is none or it cannot be read."""
        if not text:
            return None
        try:
            data = json.loads(text)
            items = {str(k): tuple(str(i) for i in v) for k, v in dict(data["items"]).items()}
            return cls(str(data["requested_at"]), items, str(data.get("definition", "stored")))
        except (ValueError, TypeError, KeyError):
            return None


class FanOutItemUpdate(NamedTuple):
    """`Running(child_run_id)` or `Terminal(status)`; a terminal update may also carry the child id.
    (Immutable; a named tuple because the engine makes one per finished foreach item.)"""

    status: FanOutItemStatus
    child_run_id: str | None = None

    @classmethod
    def running(cls, child_run_id: str = "dispatching") -> FanOutItemUpdate:
        return cls(FanOutItemStatus.RUNNING, child_run_id)

    @classmethod
    def terminal(cls, status: FanOutItemStatus, child_run_id: str | None = None) -> FanOutItemUpdate:
        return cls(status, child_run_id)


class Fence(NamedTuple):
    """Who writes: a write carrying it applies only while `token` owns the run `run_id` (the run
    whose step the written rows belong to). An engine paused past its lease (SIGSTOP, Ctrl-Z)
    whose run another engine took over must not write over the new owner's rows. `on_refused` is
    called when a write-behind write is dropped at its commit (on the committing thread, which
    holds the store: it must not use the store). `on_failed(error)` likewise when a write-behind
    write carrying this fence failed at its commit (a full disk, a read-only file: `error` is the
    `StoreUnavailable` or `PersistenceError` its caller would have met): it was not recorded, so
    what it records must not be reported (a fan-out item's end, runtime/nodes/foreach.py)."""

    run_id: str
    token: str
    on_refused: Callable[[], object] | None = None
    on_failed: Callable[[BaseException], object] | None = None


@dataclass(frozen=True)
class GateApprovalState:
    """Pending, Approved(feedback, selections) or Rejected(feedback); `by` is who resolved it."""

    state: str  # "pending" | "approved" | "rejected"
    feedback: str | None = None
    selections: tuple[str, ...] = ()
    by: str | None = None

    @classmethod
    def pending(cls) -> GateApprovalState:
        return cls("pending")

    @property
    def is_pending(self) -> bool:
        return self.state == "pending"

    @property
    def is_approved(self) -> bool:
        return self.state == "approved"

    @property
    def is_rejected(self) -> bool:
        return self.state == "rejected"


class NewEvent(NamedTuple):
    """One engine event to append to a run's stored stream (docs/persistence.md, "Event log").

    `event_run_id` is the run the event is about — a child run's own id for its events — while the
    stream it is appended to is the top-level run's. `payload` is the event as JSON. A tuple: a
    fan-out writes several per item, so it must be cheap to build."""

    ts: float  # Unix seconds, the envelope's precise time
    event_run_id: str
    kind: str  # the event type, e.g. "StepCompleted"
    payload: str


#: The `kind` of a stored row that packs many events, one per line (`runkon_flow.event_log.pack`;
#: event kinds are CamelCase, so it names no event). The stores count its lines as events.
PACKED_EVENTS = "events"
#: A packed row whose text is compressed (zlib, then base64 so that a TEXT column holds it). Its
#: `event_run_id` says how many events it packs, so the stores count them without inflating it.
ZIPPED_EVENTS = "events.z"


#: The most digits a zipped row's event count may have (a 64-bit integer always holds them);
#: the stores' SQL counts by the same rule (`events_in_row`).
ZIPPED_COUNT_DIGITS = 18


def events_in_row(kind: str, event_run_id: str, payload: str) -> int:
    """How many events a stored row holds. A zipped row whose count is not 1 to `ZIPPED_COUNT_DIGITS`
    ASCII digits (made by hand, or damaged) counts as one, in every store's SQL too."""
    if kind == PACKED_EVENTS:
        return payload.count("\n") + 1
    if kind == ZIPPED_EVENTS:
        count = event_run_id
        return int(count) if count.isascii() and count.isdigit() and len(count) <= ZIPPED_COUNT_DIGITS else 1
    return 1


class StoredEvent(NamedTuple):
    """An event as read back: `seq` counts 1, 2, 3 … within `run_id`'s stream, in append order.
    A tuple, as `NewEvent`: the in-memory store keeps one per event, readers build thousands."""

    run_id: str
    seq: int
    ts: float
    event_run_id: str
    kind: str
    payload: str


@dataclass(frozen=True)
class DeletedRuns:
    """What `delete_finished_runs` removed."""

    runs: int = 0  # top-level runs
    child_runs: int = 0
    steps: int = 0
    items: int = 0
    events: int = 0
