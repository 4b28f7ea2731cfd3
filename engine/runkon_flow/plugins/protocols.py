"""Extension points (engine.md §3) as Protocols, plus the small value types they exchange.

Every plug-in is called synchronously from engine threads and must be thread-safe. Errors are
signalled by raising `runkon_flow.errors.EngineError` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from runkon_flow.cancellation import CancellationToken
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.errors import WorkflowError
from runkon_flow.process import MAX_ARG_BYTES, TOO_BIG

T = TypeVar("T")


class Extensions:
    """A type-keyed bag (`insert` replaces a value of the same type; `get(Type)` or None)."""

    def __init__(self, values: Mapping[type, Any] | None = None) -> None:
        self._values: dict[type, Any] = dict(values) if values else {}

    def insert(self, value: Any) -> None:
        self._values[type(value)] = value

    def get(self, kind: type[T]) -> T | None:
        return self._values.get(kind)

    def copy(self) -> Extensions:
        return Extensions(self._values)

    def __contains__(self, kind: type) -> bool:
        return kind in self._values

    def __repr__(self) -> str:
        return f"Extensions({list(self._values.values())!r})"


#: The input a foreach child run is given its item's id under (`{{item.id}}` in the child), and
#: with its run row, how any process tells which item a child run — or a run below it — is for.
ITEM_ID_INPUT = "item.id"


# --------------------------------------------------------------------------- actions (§3.1)


@dataclass
class StepInfo:
    step_id: str
    step_timeout: timedelta = timedelta(hours=12)
    # Ours (design.md §3, §5): lets executors stream lines and notice a cancel promptly.
    cancellation: CancellationToken | None = None
    emit_output: Callable[[str, str], None] | None = None  # (line, stream)
    run_id: str | None = None


@dataclass
class ActionParams:
    name: str
    inputs: Mapping[str, str]
    retries_remaining: int = 0
    retry_error: str | None = None
    snippets: list[str] = field(default_factory=list)
    dry_run: bool = False
    gate_feedback: str | None = None
    extensions: Extensions = field(default_factory=Extensions)
    model: str | None = None
    as_identity: str | None = None
    plugin_dirs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VariableSources:
    """In `ActionParams.extensions`, from the engine, about the variable map `ActionParams.inputs`.

    `describe(key)`: where the value of `{{key}}` came from (`input 'key'`, `FLOW_OUTPUT field 'x'
    of step 's'`), for an executor's message about a value it refused — worded as a script step's
    (`dsl.shell_text.the_value_of`), so the CLI's rerun hint names the input either way. Ask only
    on an error: it may walk the run's history.

    `unknown(templates, variables)`: the executor's templates (a prompt, its command, its `env`)
    as it renders them with `variables` (the inputs and its own): each placeholder with no value,
    which renders empty, is warned about on the step's log (once per step and placeholder)."""

    describe: Callable[[str], str]
    unknown: Callable[[Iterable[str], Mapping[str, str]], None] = lambda templates, variables: None


@dataclass
class ActionOutput:
    markers: list[str] = field(default_factory=list)
    context: str | None = None
    result_text: str | None = None
    structured_output: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    child_run_id: str | None = None


class ActionFailed(WorkflowError):
    """An executor's failure after its agent did some work: `metadata` is what it reported, as
    `ActionOutput.metadata` (usage keys, docs/agents.md "Usage") — an attempt that fails has still
    spent its tokens, so the step row and the run's totals keep them. Raise any other error when
    there is nothing to report."""

    def __init__(self, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.metadata: dict[str, str] = dict(metadata or {})


@dataclass(frozen=True)
class ClaudeActionParams:
    max_turns: int | None = None


@dataclass(frozen=True)
class FieldDef:
    name: str
    required: bool = True
    field_type: Any = "string"
    desc: str | None = None
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutputSchema:
    name: str
    fields: list[FieldDef] = field(default_factory=list)
    markers: dict[str, str] | None = None


@runtime_checkable
class RunContext(Protocol):
    def injected_variables(self) -> dict[str, str]: ...
    def working_dir(self) -> Path: ...
    def working_dir_str(self) -> str: ...
    def get(self, key: str) -> str | None: ...
    def run_id(self) -> str: ...
    def workflow_name(self) -> str: ...
    def parent_run_id(self) -> str | None: ...


@runtime_checkable
class ActionExecutor(Protocol):
    def name(self) -> str: ...
    def execute(self, ctx: RunContext, info: StepInfo, params: ActionParams) -> ActionOutput: ...
    def cancel(self, execution_id: str) -> None: ...


# --------------------------------------------------------------------------- items (§3.2)

#: The longest item id (characters) a foreach takes from its provider: an id is a store key,
#: part of the fan-out's unique index (512 characters are at most 2,048 bytes of UTF-8, under
#: PostgreSQL's ~2,700-byte index entry), and it is shown in the dashboard's grid and in logs.
#: A longer one fails the step (docs/item-providers.md).
MAX_ITEM_ID_CHARS = 512


def overlong_id(item_id: str) -> str | None:
    """Why `item_id` is refused — `the id is 2,000,000 characters long, more than the 512 …` — or
    None when it is not too long. The id itself is not repeated (it may be megabytes): its start
    (quoted, escapes shown) says which it is. The engine's check and the providers' say it alike."""
    if len(item_id) <= MAX_ITEM_ID_CHARS:
        return None
    return (
        f"the id is {len(item_id):,} characters long, more than the {MAX_ITEM_ID_CHARS} an item id "
        f"may have (it starts {item_id[:40]!r}…)"
    )


def oversized_ref(item_ref: str) -> str | None:
    """Why an item is refused for its ref — over `MAX_ARG_BYTES`, the most a value may hold and
    still reach a command: `its ref is 300,000 bytes, more than a command can receive (…) — pass a
    large value in a file …` — or None. A ref names where an item comes from; it is shown in every
    list and message about the item (a 300 KB ref made 600 KB step errors) and can reach no command.
    The engine's check and the providers' say it alike.

    An item's fields are not capped (decision, docs/item-providers.md): a field may be a document
    for an agent's prompt, which goes on stdin; a field too big for the command or `env` entry a
    step puts it in fails that step, naming the value and the item."""
    if len(item_ref) * 4 <= MAX_ARG_BYTES:  # at most 4 bytes a character: no need to count them
        return None
    size = len(item_ref.encode("utf-8", "surrogatepass"))
    return f"its ref is {size:,} bytes, {TOO_BIG}" if size > MAX_ARG_BYTES else None


@dataclass
class FanOutItem:
    item_type: str
    item_id: str
    item_ref: str = ""
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class ProviderInfo:
    step_id: str


@runtime_checkable
class ItemProvider(Protocol):
    def name(self) -> str: ...
    def parse_scope(self, raw_scope: dict[str, str] | None) -> object | None: ...
    def items(
        self, ctx: RunContext, info: ProviderInfo, scope: object | None, filter: dict[str, str]
    ) -> list[FanOutItem]: ...
    def dependencies(self, step_id: str) -> list[tuple[str, str]]: ...
    def supports_ordered(self) -> bool: ...


# --------------------------------------------------------------------------- gates (§3.3)


@dataclass(frozen=True)
class GatePoll:
    state: Literal["approved", "rejected", "pending"]
    feedback: str | None = None


@dataclass
class GateParams:
    gate_name: str
    prompt: str | None
    min_approvals: int
    approval_mode: str
    options: dict[str, str]
    timeout_secs: int
    as_identity: str | None
    step_id: str


@runtime_checkable
class GateResolver(Protocol):
    def gate_type(self) -> str: ...
    def poll(self, run_id: str, params: GateParams, ctx: RunContext) -> GatePoll: ...


# --------------------------------------------------------------------------- misc (§3.5, §3.6)


@runtime_checkable
class ScriptEnvProvider(Protocol):
    def env(self, ctx: RunContext, as_identity: str | None) -> dict[str, str]: ...


@runtime_checkable
class WorkflowResolver(Protocol):
    def resolve(self, name: str) -> WorkflowDef: ...
