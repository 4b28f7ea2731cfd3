"""The `.wf` abstract syntax tree (dsl.md §12).

Pydantic models whose `to_json()` is exactly the spec's canonical JSON shape. Source positions
ride along on every node (`line`, `column`) for error messages but are excluded from the JSON form
and from equality, so `parse(format(ast)) == ast` holds even though formatting moves things around.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

MAX_WORKFLOW_DEPTH = 5


# Equal bookkeeping sets shared between nodes (see AstModel.model_post_init); the keys are sets of
# field names and option keys, so these stay small whatever is parsed.
_SHARED_FIELD_SETS: dict[tuple[type, frozenset[str]], set[str]] = {}
_SHARED_WRITTEN: dict[frozenset[str], frozenset[str]] = {}


class AstModel(BaseModel):
    """Base: frozen-ish models; positions and written keys are excluded from JSON and equality."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    line: int | None = Field(default=None, exclude=True, repr=False)
    column: int | None = Field(default=None, exclude=True, repr=False)
    # The option keys the source spelled out (set by the parser), so the formatter keeps an option
    # the user wrote even when its value is the default. Not part of the JSON form or of equality.
    written: frozenset[str] = Field(default=frozenset(), exclude=True, repr=False)

    def model_post_init(self, context: Any, /) -> None:
        """Share the per-node bookkeeping sets between nodes that have equal ones.

        A big workflow has hundreds of thousands of nodes, and pydantic gives each its own set of
        the fields that were passed (~700 bytes for a call), as the parser gives each its own
        `written` frozenset: almost all of them are equal. One shared object per distinct value
        halves the memory an AST takes per input byte. Nothing reads `__pydantic_fields_set__`
        but pydantic's `exclude_unset`, which nobody uses on the AST.
        """
        fields_set = self.__pydantic_fields_set__
        key = (type(self), frozenset(fields_set))
        shared = _SHARED_FIELD_SETS.get(key)
        if shared is None:
            shared = _SHARED_FIELD_SETS[key] = fields_set
        object.__setattr__(self, "__pydantic_fields_set__", shared)
        written = self.written
        if written:
            self.__dict__["written"] = _SHARED_WRITTEN.setdefault(written, written)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AstModel) or type(other) is not type(self):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:  # pragma: no cover - models are not used as dict keys
        return hash(json.dumps(self.to_json(), sort_keys=True))

    def to_json(self) -> Any:
        """The canonical JSON-compatible form (dsl.md §12)."""
        return self.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- leaves


class AgentRef(AstModel):
    kind: Literal["name", "path"]
    value: str

    def label(self) -> str:
        """What the action registry is keyed by: the name or the path text."""
        return self.value

    def step_key(self) -> str:
        """The name, or the file stem of a path (`.claude/agents/plan.md` → `plan`)."""
        if self.kind == "name":
            return self.value
        last = PurePosixPath(self.value).name
        return last.rsplit(".", 1)[0] if "." in last[1:] else last


class OnFailContinue(AstModel):
    kind: Literal["continue"] = "continue"


class OnFailAgent(AstModel):
    kind: Literal["agent"] = "agent"
    value: AgentRef


OnFail = Annotated[OnFailContinue | OnFailAgent, Field(discriminator="kind")]


class StepMarkerCondition(AstModel):
    kind: Literal["step_marker"] = "step_marker"
    step: str
    marker: str


class BoolInputCondition(AstModel):
    kind: Literal["bool_input"] = "bool_input"
    input: str


Condition = Annotated[StepMarkerCondition | BoolInputCondition, Field(discriminator="kind")]


class InputDecl(AstModel):
    name: str
    required: bool = False
    default: str | None = None
    description: str | None = None
    input_type: Literal["string", "boolean"] = "string"


# --------------------------------------------------------------------------- nodes


class CallNode(AstModel):
    type: Literal["call"] = "call"
    agent: AgentRef
    retries: int = 0
    on_fail: OnFail | None = None
    output: str | None = None
    with_: list[str] = Field(default_factory=list, alias="with")
    as_identity: str | None = None
    plugin_dirs: list[str] = Field(default_factory=list)
    timeout: str | None = None
    max_turns: int | None = None

    def step_key(self) -> str:
        return self.agent.step_key()


class CallWorkflowNode(AstModel):
    type: Literal["call_workflow"] = "call_workflow"
    workflow: str
    inputs: dict[str, str] = Field(default_factory=dict)
    retries: int = 0
    on_fail: OnFail | None = None
    as_identity: str | None = None

    def step_key(self) -> str:
        return self.workflow


class IfNode(AstModel):
    type: Literal["if"] = "if"
    condition: Condition
    body: list[Node] = Field(default_factory=list)


class UnlessNode(AstModel):
    type: Literal["unless"] = "unless"
    condition: Condition
    body: list[Node] = Field(default_factory=list)


class _LoopFields(AstModel):
    step: str
    marker: str
    max_iterations: int
    stuck_after: int | None = None
    on_max_iter: Literal["fail", "continue"] = "fail"
    body: list[Node] = Field(default_factory=list)


class WhileNode(_LoopFields):
    type: Literal["while"] = "while"


class DoWhileNode(_LoopFields):
    type: Literal["do_while"] = "do_while"


class DoNode(AstModel):
    type: Literal["do"] = "do"
    output: str | None = None
    with_: list[str] = Field(default_factory=list, alias="with")
    body: list[Node] = Field(default_factory=list)


class ParallelNode(AstModel):
    type: Literal["parallel"] = "parallel"
    fail_fast: bool = True
    min_success: int | None = None
    calls: list[AgentRef] = Field(default_factory=list)
    output: str | None = None
    call_outputs: dict[str, str] = Field(default_factory=dict)
    with_: list[str] = Field(default_factory=list, alias="with")
    call_with: dict[str, list[str]] = Field(default_factory=dict)
    call_if: dict[str, tuple[str, str]] = Field(default_factory=dict)
    call_retries: dict[str, int] = Field(default_factory=dict)


class GateNode(AstModel):
    """`gate <type> { … }`. The quality-gate fields are flattened into the JSON only for quality gates."""

    type: Literal["gate"] = "gate"
    name: str
    gate_type: str
    prompt: str | None = None
    min_approvals: int = 1
    approval_mode: Literal["min_approvals", "review_decision"] = "min_approvals"
    timeout_secs: int = 86400
    on_timeout: Literal["fail", "continue"] = "fail"
    as_identity: str | None = None
    options: dict[str, str] | str | None = None
    # quality_gate only
    source: str | None = None
    threshold: int | None = None
    on_fail_action: Literal["fail", "continue"] | None = None

    @property
    def is_quality_gate(self) -> bool:
        return self.gate_type == "quality_gate"

    @model_serializer(mode="wrap")
    def _flatten_quality_gate(self, handler: Any) -> Any:
        data = handler(self)
        if self.gate_type != "quality_gate":
            for key in ("source", "threshold", "on_fail_action"):
                data.pop(key, None)
        return data


class AlwaysNode(AstModel):
    type: Literal["always"] = "always"
    body: list[Node] = Field(default_factory=list)


class ScriptNode(AstModel):
    type: Literal["script"] = "script"
    name: str
    run: str
    env: dict[str, str] = Field(default_factory=dict)
    timeout: int | None = None
    retries: int = 0
    on_fail: OnFail | None = None
    as_identity: str | None = None

    def step_key(self) -> str:
        return self.name


class ForEachNode(AstModel):
    type: Literal["for_each"] = "for_each"
    name: str
    over: str
    scope: dict[str, str] | None = None
    # Where each scope value was written, as (line, column), so a problem with one (a missing
    # items file) is reported there; not part of the JSON form or of equality.
    scope_at: dict[str, tuple[int, int]] | None = Field(default=None, exclude=True, repr=False)
    filter: dict[str, str] = Field(default_factory=dict)
    ordered: bool = False
    on_cycle: Literal["fail", "warn"] = "fail"
    max_parallel: int
    workflow: str
    inputs: dict[str, str] = Field(default_factory=dict)
    on_child_fail: Literal["halt", "continue", "skip_dependents"] = "continue"

    def step_key(self) -> str:
        return f"foreach:{self.name}"


Node = Annotated[
    CallNode
    | CallWorkflowNode
    | IfNode
    | UnlessNode
    | WhileNode
    | DoWhileNode
    | DoNode
    | ParallelNode
    | GateNode
    | AlwaysNode
    | ScriptNode
    | ForEachNode,
    Field(discriminator="type"),
]

BLOCK_NODE_TYPES = (IfNode, UnlessNode, WhileNode, DoWhileNode, DoNode, AlwaysNode)


@dataclass
class ParseNote:
    """Something the parser accepted, as the spec says it must, but that is most likely a mistake
    (an option key that does nothing, `fail_fast = maybe`, a call `timeout` that will fail its step).

    The parser is the only place that still knows where the key or value was written, so it records
    the position; validation turns each note into a warning (`code` lets a stricter check, such as
    `Workspace.validate`, make an error of it). `node` is the step it belongs to, when there is one.
    """

    code: str
    message: str
    hint: str | None
    line: int
    column: int
    node: Any = None


class WorkflowDef(AstModel):
    name: str
    title: str | None = None
    description: str = ""
    trigger: Literal["manual", "pr", "scheduled"] = "manual"
    targets: list[str] = Field(default_factory=list)
    # Where the `targets` value was written, as (line, column), so a problem with a target is
    # reported there; not part of the JSON form or of equality.
    targets_at: tuple[int, int] | None = Field(default=None, exclude=True, repr=False)
    group: str | None = None
    inputs: list[InputDecl] = Field(default_factory=list)
    body: list[Node] = Field(default_factory=list)
    always: list[Node] = Field(default_factory=list)
    source_path: str = ""
    warnings: list[str] = Field(default_factory=list, exclude=True, repr=False)
    # Positioned findings of the parser (see ParseNote); not part of the JSON form or of equality.
    notes: list[ParseNote] = Field(default_factory=list, exclude=True, repr=False)

    # ---- derived facts (dsl.md §12, used by EXPECTED.md and the UI)

    def top_level_steps(self) -> int:
        return len(self.body) + len(self.always)

    def total_nodes(self) -> int:
        return count_nodes(self.body) + count_nodes(self.always)

    def input(self, name: str) -> InputDecl | None:
        return next((i for i in self.inputs if i.name == name), None)

    def workflow_refs(self) -> list[str]:
        """Targets of every `call workflow` and `foreach … workflow =`, sorted and de-duplicated."""
        refs: set[str] = set()
        for node in walk(self.body + self.always):
            if isinstance(node, (CallWorkflowNode, ForEachNode)):
                refs.add(node.workflow)
        return sorted(refs)

    @classmethod
    def from_json(cls, data: Any) -> WorkflowDef:
        return cls.model_validate(data)


def count_nodes(nodes: list[Any]) -> int:
    total = 0
    for node in nodes:
        total += 1
        if isinstance(node, ParallelNode):
            total += len(node.calls)
        elif isinstance(node, BLOCK_NODE_TYPES):
            total += count_nodes(node.body)
    return total


def node_paths(wf: WorkflowDef) -> dict[int, str]:
    """`id(node)` → the node's address in the workflow tree, exactly as the engine writes it on
    step rows and events (`body.2`, `body.1.body.0`, `always.0`; a parallel block's calls, which
    are `AgentRef`s, are `body.3.calls.1`). Lets a check say which node a problem belongs to."""
    paths: dict[int, str] = {}
    _add_paths(wf.body, "body", paths)
    _add_paths(wf.always, "always", paths)
    return paths


def _add_paths(nodes: list[Any], prefix: str, paths: dict[int, str]) -> None:
    # A module-level function, not a closure: a recursive closure is a reference cycle, and
    # validation leaves no garbage for the cyclic collector (tests/dsl/test_parse_memory.py).
    for index, node in enumerate(nodes):
        path = f"{prefix}.{index}"
        paths[id(node)] = path
        if isinstance(node, ParallelNode):
            for i, ref in enumerate(node.calls):
                paths[id(ref)] = f"{path}.calls.{i}"
        elif isinstance(node, BLOCK_NODE_TYPES):
            _add_paths(node.body, f"{path}.body", paths)


def walk(nodes: list[Any]):  # type: ignore[no-untyped-def]
    """Every node, depth first, recursing through block bodies."""
    for node in nodes:
        yield node
        if isinstance(node, BLOCK_NODE_TYPES):
            yield from walk(node.body)


for _model in (IfNode, UnlessNode, WhileNode, DoWhileNode, DoNode, AlwaysNode, WorkflowDef):
    _model.model_rebuild()
