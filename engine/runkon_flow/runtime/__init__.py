"""The engine runtime: FlowEngine, execution state, one module per node kind.

Public API (see docs/engine.md):

    engine = FlowEngineBuilder().action(my_executor).workflow_dir("workflows").build()
    result = engine.run_workflow(definition, RunInput(persistence=InMemoryStore(), inputs={...}))
"""

from runkon_flow.plugins.registries import ActionRegistry, GateResolverRegistry, ItemProviderRegistry
from runkon_flow.runtime.child_runner import InProcessChildRunner
from runkon_flow.runtime.engine import FlowEngine, FlowEngineBuilder
from runkon_flow.runtime.resume import ResumeContext
from runkon_flow.runtime.state import ContextEntry, ExecutionState, StepResult
from runkon_flow.runtime.steps import StepTimedOut
from runkon_flow.runtime.summary import build_summary
from runkon_flow.runtime.types import (
    ChildRunInput,
    ChildWorkflowContext,
    ChildWorkflowInput,
    ChildWorkflowRunner,
    DefaultRunContext,
    LlmRunMetrics,
    NoOpScriptEnvProvider,
    RunInput,
    SchemaResolver,
    WorkflowExecConfig,
    WorkflowResult,
)
from runkon_flow.runtime.validate import validate_workflow_for_host
from runkon_flow.runtime.variables import apply_workflow_input_defaults, build_variable_map

__all__ = [
    "ActionRegistry",
    "ChildRunInput",
    "ChildWorkflowContext",
    "ChildWorkflowInput",
    "ChildWorkflowRunner",
    "ContextEntry",
    "DefaultRunContext",
    "ExecutionState",
    "FlowEngine",
    "FlowEngineBuilder",
    "GateResolverRegistry",
    "InProcessChildRunner",
    "ItemProviderRegistry",
    "LlmRunMetrics",
    "NoOpScriptEnvProvider",
    "ResumeContext",
    "RunInput",
    "SchemaResolver",
    "StepResult",
    "StepTimedOut",
    "WorkflowExecConfig",
    "WorkflowResult",
    "apply_workflow_input_defaults",
    "build_summary",
    "build_variable_map",
    "validate_workflow_for_host",
]
