"""The variable map (engine.md §12.2), exports (§14 H) and declared-input defaults (§7.1)."""

from __future__ import annotations

import json

import pytest
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.errors import WorkflowError
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.runtime import (
    ContextEntry,
    DefaultRunContext,
    ExecutionState,
    WorkflowExecConfig,
    apply_workflow_input_defaults,
    build_variable_map,
)


def state(**kwargs: object) -> ExecutionState:
    return ExecutionState(persistence=InMemoryStore(), workflow_run_id="run-1", **kwargs)  # type: ignore[arg-type]


def test_a_fresh_run_sees_inputs_run_id_and_empty_history() -> None:
    st = state(inputs={"ticket": "T-1"}, run_ctx=DefaultRunContext("/tmp"))
    v = build_variable_map(st)
    assert v["ticket"] == "T-1"
    assert v["workflow_run_id"] == "run-1"
    assert v["prior_context"] == ""
    assert v["prior_contexts"] == "[]"
    assert v["dry_run"] == "false"
    assert "prior_output" not in v and "gate_feedback" not in v


def test_injected_variables_override_inputs_and_run_id_wins_over_both() -> None:
    ctx = DefaultRunContext(
        "/tmp", variables={"repo_path": "/r", "ticket": "injected", "workflow_run_id": "x"}
    )
    v = build_variable_map(state(inputs={"ticket": "input"}, run_ctx=ctx))
    assert v["ticket"] == "injected"
    assert v["repo_path"] == "/r"
    assert v["workflow_run_id"] == "run-1"


def test_history_provides_prior_context_prior_output_and_prior_contexts() -> None:
    st = state(exec_config=WorkflowExecConfig(dry_run=True))
    st.add_context(ContextEntry.make("a", 0, "first", ["m"], '{"markers":[],"context":"x"}'))
    st.add_context(ContextEntry.make("b", 1, "second", [], None))
    st.last_gate_feedback = "ship it"
    v = build_variable_map(st)
    assert v["prior_context"] == "second"
    assert v["prior_output"] == '{"markers":[],"context":"x"}'
    assert v["gate_feedback"] == "ship it"
    assert v["dry_run"] == "true"
    assert json.loads(v["prior_contexts"]) == [
        {
            "step": "a",
            "iteration": 0,
            "context": "first",
            "markers": ["m"],
            "structured_output": '{"markers":[],"context":"x"}',
            "output_file": None,
        },
        {
            "step": "b",
            "iteration": 1,
            "context": "second",
            "markers": [],
            "structured_output": None,
            "output_file": None,
        },
    ]


def test_string_exports_become_variables_later_ones_win_reserved_and_non_strings_do_not() -> None:
    st = state(inputs={"repo_path": "/real"})
    st.add_context(ContextEntry.make("s1", 0, "", [], json.dumps({"markers": [], "base_branch": "main"})))
    st.add_context(
        ContextEntry.make(
            "s2",
            0,
            "",
            [],
            json.dumps(
                {
                    "markers": ["ok"],
                    "context": "main",
                    "base_branch": "release/1.0",
                    "count": 3,
                    "repo_path": "/evil",
                }
            ),
        )
    )
    v = build_variable_map(st)
    assert v["base_branch"] == "release/1.0"
    assert "count" not in v
    assert v["repo_path"] == "/real"


def test_an_entry_with_malformed_markers_exports_nothing() -> None:
    st = state()
    st.add_context(ContextEntry.make("s", 0, "", [], json.dumps({"markers": "bad", "x": "y"})))
    assert "x" not in build_variable_map(st)


def test_input_defaults_fill_missing_values_and_booleans_default_to_false() -> None:
    wf = parse_workflow(
        'workflow w { inputs { ticket required  scope default = "full"  dry boolean } call a }'
    )
    assert apply_workflow_input_defaults(wf, {"ticket": "T"}) == {
        "ticket": "T",
        "scope": "full",
        "dry": "false",
    }
    assert apply_workflow_input_defaults(wf, {"ticket": "T", "scope": "inc"})["scope"] == "inc"


def test_a_missing_required_input_is_a_clear_error() -> None:
    wf = parse_workflow("workflow w { inputs { ticket required } call a }")
    with pytest.raises(WorkflowError) as err:
        apply_workflow_input_defaults(wf, {})
    assert err.value.message == "Missing required input: 'ticket'. Use --input ticket=<value>."
