"""The variable map every step sees (engine.md §12.2) and declared-input defaults (§7.1).

Built fresh for each call attempt, parallel block, script and call-workflow attempt, so it always
reflects the latest context history. Later sources override earlier ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.templating import field_placeholder_hint, unknown_placeholders
from runkon_flow.errors import WorkflowError
from runkon_flow.humanize import did_you_mean
from runkon_flow.plugins.protocols import VariableSources
from runkon_flow.runtime.state import ExecutionState

__all__ = [
    "apply_workflow_input_defaults",
    "build_variable_map",
    "describe_variable_source",
    "variable_sources",
    "warn_unknown_placeholders",
]


def _prior_contexts_json(st: ExecutionState) -> str:
    cached = st.prior_contexts_json
    if cached is None:
        cached = json.dumps(
            [c.to_json_dict() for c in st.contexts], ensure_ascii=False, separators=(",", ":")
        )
        st.prior_contexts_json = cached
    return cached


def build_variable_map(st: ExecutionState) -> dict[str, str]:
    """inputs → injected → run id → prior context(s) → gate feedback → prior output(_file) →
    dry_run → string exports of every structured output, oldest first (engine.md §12.2)."""
    variables: dict[str, str] = dict(st.inputs)
    if st.run_ctx is not None:
        injected = st.run_ctx.injected_variables()
        if injected:
            variables.update(injected)
    variables["workflow_run_id"] = st.workflow_run_id
    contexts = st.contexts
    variables["prior_context"] = contexts[-1].context if contexts else ""
    variables["prior_contexts"] = _prior_contexts_json(st) if contexts else "[]"
    if st.last_gate_feedback is not None:
        variables["gate_feedback"] = st.last_gate_feedback
    prior_output = prior_output_file = None
    for entry in reversed(contexts):
        if prior_output is None and entry.structured_output is not None:
            prior_output = entry.structured_output
        if prior_output_file is None and entry.output_file is not None:
            prior_output_file = entry.output_file
        if prior_output is not None and prior_output_file is not None:
            break
    if prior_output is not None:
        variables["prior_output"] = prior_output
    if prior_output_file is not None:
        variables["prior_output_file"] = prior_output_file
    variables["dry_run"] = "true" if st.exec_config.dry_run else "false"
    for entry in contexts:
        if entry.exports:
            variables.update(entry.exports)
    return variables


def describe_variable_source(st: ExecutionState, key: str) -> str:
    """Where the value of `{{key}}` came from, for messages (`FLOW_OUTPUT field 'x' of step 's'`).

    Follows `build_variable_map`'s precedence, newest source first; only called when something is
    wrong with a value, so it may walk the history.
    """
    for entry in reversed(st.contexts):
        if key in entry.exports:
            return f"FLOW_OUTPUT field '{key}' of step '{entry.step}'"
    if key in ("prior_output", "prior_output_file", "prior_context"):
        what = {"prior_output": "FLOW_OUTPUT", "prior_output_file": "output file", "prior_context": "context"}
        for entry in reversed(st.contexts):
            if key != "prior_output" or entry.structured_output is not None:
                return f"the {what[key]} of step '{entry.step}'"
    if key == "prior_contexts":
        return "the context history"
    if key == "gate_feedback":
        return "gate feedback"
    if st.run_ctx is not None and key in (st.run_ctx.injected_variables() or {}):
        return f"host variable '{key}'"
    if key.startswith("item."):
        ref = st.inputs.get("item.ref")
        return f"field '{key[5:]}' of this run's foreach item" + (f" '{ref}'" if ref else "")
    return f"input '{key}'"


def variable_sources(st: ExecutionState, step: str) -> VariableSources:
    """`describe_variable_source` and `warn_unknown_placeholders` for the action executor of
    `step` (`call <step>`; `ActionParams.extensions`)."""
    return VariableSources(
        lambda key: describe_variable_source(st, key),
        lambda templates, variables: warn_unknown_placeholders(
            st, f"call '{step}'", step, templates, variables
        ),
    )


def warn_unknown_placeholders(
    st: ExecutionState, what: str, step: str, templates: Iterable[str], variables: Mapping[str, str]
) -> None:
    """A placeholder with no value renders empty (dsl.md §8.1) — a typo (`{{brnach}}`) runs on
    with an empty value. Each such `{{key}}` of `templates` is said as a warning on `step`'s log
    (an EngineLog event: the CLI's progress, the dashboard's log, `runkon-flow logs`), once per
    step and placeholder in a run and its children (a fan-out's thousands of items say it once),
    with the closest known name. `what`: the step as its messages name it (`script 'build'`)."""
    warned = st.settings.warned_placeholders
    for template in templates:
        if "{{" not in template:
            continue
        for key in unknown_placeholders(template, variables):
            said = (st.workflow_name, step, key)
            if said in warned:
                continue
            warned.add(said)
            hint = _step_field_hint(st, key, variables) or did_you_mean(key, list(variables))
            st.warn(
                f"{what}: `{{{{{key}}}}}` has no value here, so it is left empty"
                + (f" (hint: {hint})" if hint else ""),
                step,
            )


def _step_field_hint(st: ExecutionState, key: str, variables: Mapping[str, str]) -> str | None:
    """`{{planner.risk}}` — a step's name before its field, as conditions write `planner.marker` —
    has no value: a FLOW_OUTPUT field is a placeholder of its own, `{{risk}}`. Say so, rather than
    nothing (no name is close to `planner.risk`)."""
    prefix, dot, name = key.strip().partition(".")
    if not dot or prefix == "item":
        return None
    steps = {entry.step for entry in st.contexts}
    if name in variables:
        return field_placeholder_hint(name)
    if prefix in steps:
        fields = sorted({f for entry in st.contexts if entry.step == prefix for f in entry.exports})
        said = ", ".join(f"`{{{{{f}}}}}`" for f in fields) if fields else "none"
        return (
            f"step '{prefix}' set no FLOW_OUTPUT field `{name}` (its fields, each a placeholder"
            f" without the step's name: {said})"
        )
    return None


def apply_workflow_input_defaults(definition: WorkflowDef, inputs: Mapping[str, str]) -> dict[str, str]:
    """Inputs completed from the workflow's declarations (engine.md §7.1).

    A missing required input raises `WorkflowError("Missing required input: '<n>'. Use --input
    <n>=<value>.")`; a declared default fills a missing value; a boolean input with no value is
    `"false"`. Undeclared inputs pass through unchanged.
    """
    out = dict(inputs)
    for decl in definition.inputs:
        if decl.name in out:
            continue
        if decl.default is not None:
            out[decl.name] = decl.default
        elif decl.input_type == "boolean":
            out[decl.name] = "false"
        elif decl.required:
            raise WorkflowError(f"Missing required input: '{decl.name}'. Use --input {decl.name}=<value>.")
    return out
