"""Engine events (engine.md §4, extended per design.md §3) and the `EventSink` protocol.

Every upstream variant is kept with its fields and meaning; the extra fields and variants are
what a dashboard needs so it never has to poll the store: step start/finish for every step kind
with status and error, output lines, child-run links, gate details and fan-out item lists.

Each event is a pydantic model tagged by `type`. `EngineEventData` is the envelope written one per
line to JSON-lines logs; `parse_event_line` reads it back and returns None for unknown variants so
old readers survive new engines.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal, Protocol, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from runkon_flow.cancellation import CancellationReason

StepKind = Literal["call", "call_workflow", "script", "gate", "foreach", "parallel", "parallel_branch"]
StepStatus = Literal[
    "pending", "running", "completed", "failed", "skipped", "waiting", "timed_out", "cancelled"
]
ItemStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# ---------------------------------------------------------------- run lifecycle (upstream)


class RunStarted(_Event):
    """A run's first start. A rerun (docs/when-things-go-wrong.md) is a new run: it starts with
    this too, naming the run it reruns and the step it reruns from (ours). A resume that found no
    completed step starts with this as well; `retried_items` as for `RunResumed`."""

    type: Literal["RunStarted"] = "RunStarted"
    workflow_name: str
    parent_run_id: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    rerun_of: str | None = None
    rerun_from: str | None = None
    retried_items: int = 0


class RunResumed(_Event):
    """`retried_items` (ours): the run goes on to retry that many fan-out items
    (`Workspace.retry`), so it is announced as a retry, not as a start or a resume; 0 otherwise."""

    type: Literal["RunResumed"] = "RunResumed"
    workflow_name: str
    parent_run_id: str | None = None
    skipped_steps: int = 0
    retried_items: int = 0


class RunCancelled(_Event):
    type: Literal["RunCancelled"] = "RunCancelled"
    reason: CancellationReason
    summary: str | None = None


class RunCompleted(_Event):
    type: Literal["RunCompleted"] = "RunCompleted"
    succeeded: bool
    error: str | None = None
    summary: str | None = None


class MetricsUpdated(_Event):
    type: Literal["MetricsUpdated"] = "MetricsUpdated"
    total_cost: float = 0.0
    total_turns: int = 0
    total_duration_ms: int = 0


class Panicked(_Event):
    """The engine thread crashed; emitted before the crash propagates."""

    type: Literal["Panicked"] = "Panicked"
    message: str
    backtrace: str = ""


# ---------------------------------------------------------------- steps (upstream + superset)


class StepStarted(_Event):
    """Upstream: call steps only, `step_name` = agent label. Here: every step kind, every attempt."""

    type: Literal["StepStarted"] = "StepStarted"
    step_name: str
    step_key: str | None = None
    kind: StepKind = "call"
    step_id: str | None = None
    node_path: str | None = None
    position: int | None = None
    iteration: int = 0
    attempt: int = 0
    started_at: float | None = None


class StepCompleted(_Event):
    """Emitted for success *and* failure (`succeeded=False`), with the final step status.

    A rerun (docs/when-things-go-wrong.md) emits one, right after its `RunStarted`, for every step
    it reuses from the run it reruns, in that run's order, with no `StepStarted`: `reused_from`
    names that run and `position` the step's place in it (ours; `duration_ms` is None, nothing ran)."""

    type: Literal["StepCompleted"] = "StepCompleted"
    step_name: str
    succeeded: bool
    step_key: str | None = None
    kind: StepKind = "call"
    step_id: str | None = None
    node_path: str | None = None
    iteration: int = 0
    attempt: int = 0
    status: StepStatus | None = None
    error: str | None = None
    markers: list[str] = Field(default_factory=list)
    duration_ms: int | None = None
    ended_at: float | None = None
    #: What the step spent (`runkon_flow.usage.Usage.as_dict()`: tokens, turns, cost_usd), when
    #: reported; a `call workflow` or `foreach` step: its children's sum.
    usage: dict[str, float] | None = None
    reused_from: str | None = None
    position: int | None = None


class StepRetrying(_Event):
    type: Literal["StepRetrying"] = "StepRetrying"
    step_name: str
    attempt: int
    step_key: str | None = None
    node_path: str | None = None
    error: str | None = None


class StepOutput(_Event):
    """One line of a script's or agent's output, as it is produced (bounded per step)."""

    type: Literal["StepOutput"] = "StepOutput"
    step_id: str
    step_name: str
    line: str
    stream: Literal["stdout", "stderr", "agent"] = "stdout"


class LoopIteration(_Event):
    """A `while`/do-while loop is about to run iteration `iteration` (0-based)."""

    type: Literal["LoopIteration"] = "LoopIteration"
    node_path: str
    step: str
    marker: str
    iteration: int


#: The words of an `EngineLog` saying how many of a step's output lines were not stored (by the
#: engine's per-step cap or the stored stream's): `runkon-flow logs` shows it with that step's output.
OUTPUT_CUT_NOTE = "more lines not stored"


class EngineLog(_Event):
    """A warning or note the engine wants a human to see (e.g. a skipped env key)."""

    type: Literal["EngineLog"] = "EngineLog"
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str
    step_name: str | None = None
    #: The step execution (row id) the note is about, when one: a step inside a loop runs once
    #: per iteration under one name, and a note about one iteration's output is that one's.
    step_id: str | None = None


# ---------------------------------------------------------------- gates


class GateWaiting(_Event):
    type: Literal["GateWaiting"] = "GateWaiting"
    gate_name: str
    step_id: str | None = None
    gate_type: str | None = None
    prompt: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    timeout_secs: int | None = None
    node_path: str | None = None


class GateResolved(_Event):
    type: Literal["GateResolved"] = "GateResolved"
    gate_name: str
    approved: bool
    step_id: str | None = None
    resolved_by: str | None = None
    feedback: str | None = None
    resolved_at: float | None = None
    selections: list[str] = Field(default_factory=list)


class GateTimedOut(_Event):
    type: Literal["GateTimedOut"] = "GateTimedOut"
    gate_name: str
    step_id: str | None = None
    continued: bool = False


# ---------------------------------------------------------------- fan-out and child runs


class FanOutItemInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    item_ref: str = ""
    status: ItemStatus = "pending"
    depends_on: list[str] = Field(default_factory=list)


class FanOutItemsCollected(_Event):
    type: Literal["FanOutItemsCollected"] = "FanOutItemsCollected"
    count: int
    step_id: str | None = None
    foreach_name: str | None = None
    node_path: str | None = None
    max_parallel: int | None = None
    items: list[FanOutItemInfo] = Field(default_factory=list)


class FanOutItemStarted(_Event):
    type: Literal["FanOutItemStarted"] = "FanOutItemStarted"
    item_id: str
    step_id: str | None = None


class FanOutItemCompleted(_Event):
    type: Literal["FanOutItemCompleted"] = "FanOutItemCompleted"
    item_id: str
    succeeded: bool
    step_id: str | None = None
    child_run_id: str | None = None
    status: ItemStatus | None = None
    error: str | None = None
    usage: dict[str, float] | None = None  # what the item's child run spent, when reported


class FanOutItemSkipped(_Event):
    """Upstream emits nothing for skipped items; a grid needs to know."""

    type: Literal["FanOutItemSkipped"] = "FanOutItemSkipped"
    item_id: str
    step_id: str | None = None
    reason: str | None = None


class ChildRunStarted(_Event):
    """Links a child run to its parent run, parent step and (for fan-out) item."""

    type: Literal["ChildRunStarted"] = "ChildRunStarted"
    child_run_id: str
    workflow_name: str
    parent_run_id: str
    parent_step_id: str | None = None
    item_id: str | None = None


EngineEvent = Annotated[
    RunStarted
    | RunResumed
    | RunCancelled
    | RunCompleted
    | MetricsUpdated
    | Panicked
    | StepStarted
    | StepCompleted
    | StepRetrying
    | StepOutput
    | LoopIteration
    | EngineLog
    | GateWaiting
    | GateResolved
    | GateTimedOut
    | FanOutItemsCollected
    | FanOutItemStarted
    | FanOutItemCompleted
    | FanOutItemSkipped
    | ChildRunStarted,
    Field(discriminator="type"),
]

#: Every event class, in the union's order (the union inside `Annotated`).
EVENT_CLASSES: tuple[type[_Event], ...] = get_args(get_args(EngineEvent)[0])
EVENT_TYPES: frozenset[str] = frozenset(t.model_fields["type"].default for t in EVENT_CLASSES)


class EngineEventData(BaseModel):
    """The envelope: `timestamp` is integer Unix seconds (upstream); `ts` is the precise time."""

    model_config = ConfigDict(frozen=True)

    timestamp: int
    ts: float
    run_id: str
    event: EngineEvent

    @classmethod
    def now(cls, run_id: str, event: Any) -> EngineEventData:
        t = time.time()
        return cls(timestamp=int(t), ts=t, run_id=run_id, event=event)

    def to_json_line(self) -> str:
        return self.model_dump_json()


_ENVELOPE = TypeAdapter(EngineEventData)


def parse_event_line(line: str) -> EngineEventData | None:
    """Read one JSON-lines record; unknown event types (and blank lines) give None."""
    line = line.strip()
    if not line:
        return None
    try:
        return _ENVELOPE.validate_json(line)
    except ValidationError:
        raw = json.loads(line)
        event = raw.get("event") if isinstance(raw, dict) else None
        if isinstance(event, dict) and event.get("type") not in EVENT_TYPES:
            return None
        raise


@runtime_checkable
class EventSink(Protocol):
    """Receives every event synchronously on an engine thread. Must be quick and must not raise
    (the engine survives a raising sink, but the sink loses that event)."""

    def emit(self, data: EngineEventData) -> None: ...


class CollectingSink:
    """Keeps every event in memory; for tests and small tools."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.events: list[EngineEventData] = []

    def emit(self, data: EngineEventData) -> None:
        with self._lock:
            self.events.append(data)

    def of_type(self, name: str) -> list[Any]:
        with self._lock:
            return [d.event for d in self.events if d.event.type == name]

    def types(self) -> list[str]:
        with self._lock:
            return [d.event.type for d in self.events]


class JsonLinesSink:
    """Appends one JSON object per event to a file; the file can be replayed later."""

    def __init__(self, path: str) -> None:
        import threading

        self._lock = threading.Lock()
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def emit(self, data: EngineEventData) -> None:
        with self._lock:
            self._fh.write(data.to_json_line() + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()
