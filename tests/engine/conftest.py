"""Helpers for the engine behaviour tests: scripted executors, a list item provider, and a harness
that parses a workflow, runs it against a real store and collects its events.

Behaviour tests use the `store` fixture (parametrised over every store kind, from
tests/persistence/conftest.py) so the same scenario is proved on the in-memory and SQLite stores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.cancellation import EngineCancelled
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.errors import WorkflowError
from runkon_flow.events import CollectingSink
from runkon_flow.persistence.models import NewRun
from runkon_flow.plugins.protocols import ActionOutput, ActionParams, FanOutItem, StepInfo
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver
from runkon_flow.runtime import (
    DefaultRunContext,
    FlowEngine,
    FlowEngineBuilder,
    RunInput,
    WorkflowExecConfig,
    WorkflowResult,
)

from tests.persistence.conftest import STORE_KINDS, close_store, make_store

Behaviour = Callable[[StepInfo, ActionParams], ActionOutput]


@dataclass
class Call:
    """One recorded executor call."""

    name: str
    inputs: dict[str, str]
    params: ActionParams
    info: StepInfo


class Agents:
    """Executors for many labels at once: `agents.on("a", markers=["x"])`, `agents.fail("b")`.

    Every call is recorded (thread-safe). Unscripted labels succeed with context "<label> done".
    Registered as the fallback executor, so any label works.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.cancelled: list[str] = []

    # ---- scripting
    def on(
        self,
        label: str,
        markers: list[str] | None = None,
        context: str | None = None,
        structured: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Agents:
        def behave(info: StepInfo, params: ActionParams) -> ActionOutput:
            return ActionOutput(
                markers=list(markers or []),
                context=context if context is not None else f"{label} done",
                result_text=f"{label} result",
                structured_output=structured,
                metadata=dict(metadata or {}),
            )

        self.behaviours[label] = behave
        return self

    def fail(self, label: str, message: str = "boom", times: int | None = None) -> Agents:
        """Fail `times` times (None = always), then succeed."""
        count = {"n": 0}

        def behave(info: StepInfo, params: ActionParams) -> ActionOutput:
            count["n"] += 1
            if times is None or count["n"] <= times:
                raise WorkflowError(message)
            return ActionOutput(context=f"{label} done")

        self.behaviours[label] = behave
        return self

    def do(self, label: str, fn: Behaviour) -> Agents:
        self.behaviours[label] = fn
        return self

    # ---- ActionExecutor protocol
    def name(self) -> str:
        return "*"

    def execute(self, ctx: Any, info: StepInfo, params: ActionParams) -> ActionOutput:
        with self._lock:
            self.calls.append(Call(params.name, dict(params.inputs), params, info))
        behave = self.behaviours.get(params.name)
        if behave is None:
            return ActionOutput(context=f"{params.name} done")
        return behave(info, params)

    def cancel(self, execution_id: str) -> None:
        with self._lock:
            self.cancelled.append(execution_id)

    # ---- inspection
    def names(self) -> list[str]:
        with self._lock:
            return [c.name for c in self.calls]

    def inputs_of(self, label: str, index: int = -1) -> dict[str, str]:
        with self._lock:
            return [c.inputs for c in self.calls if c.name == label][index]


def wait_for_cancel(info: StepInfo, params: ActionParams) -> ActionOutput:
    """A cooperative long-running agent: waits (up to 10 s) for its step token, then stops."""
    assert info.cancellation is not None
    info.cancellation.wait(10)
    raise EngineCancelled(info.cancellation.reason())


class ListProvider:
    """An ItemProvider over a fixed list, with optional dependency edges (blocker, dependent)."""

    def __init__(
        self,
        name: str,
        items: list[FanOutItem] | list[str],
        edges: list[tuple[str, str]] | None = None,
        ordered: bool = True,
    ) -> None:
        self._name = name
        self._items = [i if isinstance(i, FanOutItem) else FanOutItem("ticket", i, f"REF-{i}") for i in items]
        self._edges = list(edges or [])
        self._ordered = ordered
        self.calls = 0

    def name(self) -> str:
        return self._name

    def parse_scope(self, raw_scope: dict[str, str] | None) -> object | None:
        return raw_scope

    def items(self, ctx: Any, info: Any, scope: object | None, filter: dict[str, str]) -> list[FanOutItem]:
        self.calls += 1
        return list(self._items)

    def dependencies(self, step_id: str) -> list[tuple[str, str]]:
        return list(self._edges)

    def supports_ordered(self) -> bool:
        return self._ordered


@dataclass
class Harness:
    """Builds an engine around `agents`, runs workflows on `store`, collects events in `sink`."""

    store: Any
    tmp_path: Path
    agents: Agents = field(default_factory=Agents)
    sink: CollectingSink = field(default_factory=CollectingSink)
    workflows: InMemoryWorkflowResolver = field(default_factory=InMemoryWorkflowResolver)
    providers: list[Any] = field(default_factory=list)
    gate_types: tuple[str, ...] = ("human_approval", "human_review", "pr_approval", "pr_checks")
    engine: FlowEngine | None = None

    def add_workflow(self, text: str) -> Any:
        wf = parse_workflow(text)
        self.workflows.add(wf)
        return wf

    def build(self) -> FlowEngine:
        builder = FlowEngineBuilder().action_fallback(self.agents).event_sink(self.sink)
        builder.workflow_resolver(self.workflows)
        for provider in self.providers:
            builder.item_provider(provider)
        for gate_type in self.gate_types:
            builder.gate_resolver(PendingGate(gate_type))
        self.engine = builder.build()
        return self.engine

    def new_run(self, wf: Any, inputs: dict[str, str] | None = None) -> str:
        return self.store.create_run(NewRun(workflow_name=wf.name, inputs=dict(inputs or {}))).id

    def run_input(self, run_id: str | None = None, **kwargs: Any) -> RunInput:
        config = kwargs.pop("exec_config", None) or WorkflowExecConfig(poll_interval=0.05)
        return RunInput(
            persistence=self.store,
            workflow_run_id=run_id,
            run_ctx=kwargs.pop("run_ctx", None) or DefaultRunContext(self.tmp_path),
            exec_config=config,
            **kwargs,
        )

    def run(self, text_or_wf: Any, **kwargs: Any) -> WorkflowResult:
        wf = parse_workflow(text_or_wf) if isinstance(text_or_wf, str) else text_or_wf
        engine = self.engine or self.build()
        run_id = kwargs.pop("run_id", None) or self.new_run(wf, kwargs.get("inputs"))
        return engine.run_workflow(wf, self.run_input(run_id, **kwargs))

    def start(self, text_or_wf: Any, **kwargs: Any) -> Background:
        """Run in a background thread (for gates and cancels); `.join()` returns the result."""
        wf = parse_workflow(text_or_wf) if isinstance(text_or_wf, str) else text_or_wf
        engine = self.engine or self.build()
        run_id = kwargs.pop("run_id", None) or self.new_run(wf, kwargs.get("inputs"))
        return Background(engine, wf, self.run_input(run_id, **kwargs), run_id)

    def steps(self, run_id: str) -> list[Any]:
        return self.store.get_steps(run_id)

    def statuses(self, run_id: str) -> list[tuple[str, str]]:
        return [(s.step_name, str(s.status)) for s in self.steps(run_id)]

    def events(self, *types: str) -> list[Any]:
        return [d.event for d in self.sink.events if not types or d.event.type in types]

    def events_of_run(self, run_id: str, *types: str) -> list[Any]:
        return [
            d.event for d in self.sink.events if d.run_id == run_id and (not types or d.event.type in types)
        ]


class Background:
    """A run executing on its own thread."""

    def __init__(self, engine: FlowEngine, wf: Any, inp: RunInput, run_id: str) -> None:
        self.run_id = run_id
        self.result: WorkflowResult | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = engine.run_workflow(wf, inp)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10.0) -> WorkflowResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class PendingGate:
    """A gate resolver that never decides (decisions come through the approval store)."""

    def __init__(self, gate_type: str) -> None:
        self._type = gate_type

    def gate_type(self) -> str:
        return self._type

    def poll(self, run_id: str, params: Any, ctx: Any) -> Any:
        from runkon_flow.plugins.protocols import GatePoll

        return GatePoll("pending")


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` until true (a test helper for cross-thread hand-offs, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = make_store(request.param, tmp_path)
    yield s
    close_store(s)


@pytest.fixture
def memory_store(tmp_path: Path) -> Iterator[Any]:
    s = make_store("memory", tmp_path)
    yield s
    close_store(s)


@pytest.fixture
def h(store: Any, tmp_path: Path) -> Harness:
    return Harness(store, tmp_path)


@pytest.fixture
def hm(memory_store: Any, tmp_path: Path) -> Harness:
    """A harness on the in-memory store only (for scenarios whose store behaviour is irrelevant)."""
    return Harness(memory_store, tmp_path)
