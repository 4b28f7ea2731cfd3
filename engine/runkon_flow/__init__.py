"""runkon_flow — a workflow engine for scripted, branching and parallel agentic work.

Pure Python, synchronous and thread-safe; no UI. The dashboard (`runkon_tui`) and the headless
CLI (`runkon_flow.cli`) are two clients of the same public API.

Embedding it (docs/engine.md, "Using it"): every name a host program needs is here —

    from runkon_flow import FlowEngineBuilder, RunInput, SqliteStore, parse_file

    engine = FlowEngineBuilder().action(my_executor).item_provider(my_items).event_sink(my_sink).build()
    result = engine.run_workflow(parse_file("flows/nightly.wf"), RunInput(persistence=SqliteStore("runs.db")))

— or `Workspace` for folders of `.wf` files with their agents (docs/workspace.md). The names are
imported on first use, so `import runkon_flow` (which every submodule import runs) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from runkon_flow.approvals import ApprovalStoreResolver, GateApprovals
    from runkon_flow.cancellation import CancellationToken, EngineCancelled
    from runkon_flow.dsl import FileError, load_workflow_dir, parse_file, parse_workflow, validate_workflow
    from runkon_flow.dsl.ast import WorkflowDef
    from runkon_flow.errors import (
        AlreadyOwned,
        EngineError,
        FlowError,
        Problem,
        SourceLocation,
        ValidationErrors,
        WfError,
        WorkflowError,
        WorkflowInvalid,
        WorkflowNotFound,
    )
    from runkon_flow.events import CollectingSink, EngineEventData, EventSink, JsonLinesSink
    from runkon_flow.persistence import (
        InMemoryStore,
        RunStatus,
        SqliteStore,
        StepStatus,
        WorkflowPersistence,
        WorkflowRun,
        WorkflowRunStep,
    )
    from runkon_flow.plugins.context import LocalRunContext
    from runkon_flow.plugins.protocols import (
        ActionExecutor,
        ActionFailed,
        ActionOutput,
        ActionParams,
        FanOutItem,
        GateParams,
        GatePoll,
        GateResolver,
        ItemProvider,
        ProviderInfo,
        RunContext,
        StepInfo,
    )
    from runkon_flow.runtime import (
        FlowEngine,
        FlowEngineBuilder,
        RunInput,
        WorkflowExecConfig,
        WorkflowResult,
        apply_workflow_input_defaults,
    )
    from runkon_flow.workspace import InputsError, RunNeedsThisProcess, Workspace

#: Public name → the module that defines it (imported when the name is first asked for).
_EXPORTS = {
    # building and running an engine
    "FlowEngine": "runkon_flow.runtime",
    "FlowEngineBuilder": "runkon_flow.runtime",
    "RunInput": "runkon_flow.runtime",
    "WorkflowExecConfig": "runkon_flow.runtime",
    "WorkflowResult": "runkon_flow.runtime",
    "apply_workflow_input_defaults": "runkon_flow.runtime",
    "Workspace": "runkon_flow.workspace",
    "InputsError": "runkon_flow.workspace",
    "RunNeedsThisProcess": "runkon_flow.workspace",
    "GateApprovals": "runkon_flow.approvals",
    "ApprovalStoreResolver": "runkon_flow.approvals",
    "CancellationToken": "runkon_flow.cancellation",
    # the language
    "WorkflowDef": "runkon_flow.dsl.ast",
    "parse_file": "runkon_flow.dsl",
    "parse_workflow": "runkon_flow.dsl",
    "load_workflow_dir": "runkon_flow.dsl",
    "FileError": "runkon_flow.dsl",
    "validate_workflow": "runkon_flow.dsl",
    # plug-ins a host writes (docs/engine.md, "Using it")
    "ActionExecutor": "runkon_flow.plugins.protocols",
    "ActionFailed": "runkon_flow.plugins.protocols",
    "ActionOutput": "runkon_flow.plugins.protocols",
    "ActionParams": "runkon_flow.plugins.protocols",
    "StepInfo": "runkon_flow.plugins.protocols",
    "ItemProvider": "runkon_flow.plugins.protocols",
    "FanOutItem": "runkon_flow.plugins.protocols",
    "ProviderInfo": "runkon_flow.plugins.protocols",
    "GateResolver": "runkon_flow.plugins.protocols",
    "GateParams": "runkon_flow.plugins.protocols",
    "GatePoll": "runkon_flow.plugins.protocols",
    "RunContext": "runkon_flow.plugins.protocols",
    "LocalRunContext": "runkon_flow.plugins.context",
    # events
    "EventSink": "runkon_flow.events",
    "EngineEventData": "runkon_flow.events",
    "CollectingSink": "runkon_flow.events",
    "JsonLinesSink": "runkon_flow.events",
    # stores and what they hold
    "SqliteStore": "runkon_flow.persistence",
    "InMemoryStore": "runkon_flow.persistence",
    "WorkflowPersistence": "runkon_flow.persistence",
    "WorkflowRun": "runkon_flow.persistence",
    "WorkflowRunStep": "runkon_flow.persistence",
    "RunStatus": "runkon_flow.persistence",
    "StepStatus": "runkon_flow.persistence",
    # errors
    "FlowError": "runkon_flow.errors",
    "WfError": "runkon_flow.errors",
    "EngineError": "runkon_flow.errors",
    "WorkflowError": "runkon_flow.errors",
    "WorkflowNotFound": "runkon_flow.errors",
    "ValidationErrors": "runkon_flow.errors",
    "WorkflowInvalid": "runkon_flow.errors",
    "AlreadyOwned": "runkon_flow.errors",
    "Problem": "runkon_flow.errors",
    "SourceLocation": "runkon_flow.errors",
    "EngineCancelled": "runkon_flow.cancellation",
}

__all__ = [
    "ActionExecutor",
    "ActionFailed",
    "ActionOutput",
    "ActionParams",
    "AlreadyOwned",
    "ApprovalStoreResolver",
    "CancellationToken",
    "CollectingSink",
    "EngineCancelled",
    "EngineError",
    "EngineEventData",
    "EventSink",
    "FanOutItem",
    "FileError",
    "FlowEngine",
    "FlowEngineBuilder",
    "FlowError",
    "GateApprovals",
    "GateParams",
    "GatePoll",
    "GateResolver",
    "InMemoryStore",
    "InputsError",
    "ItemProvider",
    "JsonLinesSink",
    "LocalRunContext",
    "Problem",
    "ProviderInfo",
    "RunContext",
    "RunInput",
    "RunNeedsThisProcess",
    "RunStatus",
    "SourceLocation",
    "SqliteStore",
    "StepInfo",
    "StepStatus",
    "ValidationErrors",
    "WfError",
    "WorkflowDef",
    "WorkflowError",
    "WorkflowExecConfig",
    "WorkflowInvalid",
    "WorkflowNotFound",
    "WorkflowPersistence",
    "WorkflowResult",
    "WorkflowRun",
    "WorkflowRunStep",
    "Workspace",
    "apply_workflow_input_defaults",
    "load_workflow_dir",
    "parse_file",
    "parse_workflow",
    "validate_workflow",
]  # every key of _EXPORTS (tests/engine/test_embedding.py)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
