"""Semantic validation (dsl.md §9.1): what a workflow author is told before anything runs.

ASTs are built by hand so each test shows exactly the shape it checks; positions are set so the
tests can also check that every problem points at the offending node.
"""

from __future__ import annotations

from typing import Any

import pytest
from runkon_flow.dsl.ast import (
    AgentRef,
    AlwaysNode,
    BoolInputCondition,
    CallNode,
    CallWorkflowNode,
    DoNode,
    DoWhileNode,
    ForEachNode,
    GateNode,
    IfNode,
    InputDecl,
    ParallelNode,
    ScriptNode,
    StepMarkerCondition,
    UnlessNode,
    WhileNode,
    WorkflowDef,
)
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.dsl.validation import (
    ValidationReport,
    check_workflow,
    top_level_step_keys,
    validate_workflow,
)
from runkon_flow.errors import Problem, WfValidationError, WorkflowNotFound

# --------------------------------------------------------------------------- builders


def call(name: str, line: int | None = None, column: int | None = None, **kw: Any) -> CallNode:
    return CallNode(agent=AgentRef(kind="name", value=name), line=line, column=column, **kw)


def script(name: str, line: int | None = None) -> ScriptNode:
    return ScriptNode(name=name, run=f"scripts/{name}.sh", line=line, column=3 if line else None)


def on(step: str, marker: str = "ok") -> StepMarkerCondition:
    return StepMarkerCondition(step=step, marker=marker)


def wf(*body: Any, always: list[Any] | None = None, inputs: list[InputDecl] | None = None, **kw: Any):
    kw.setdefault("name", "w")
    kw.setdefault("source_path", "flows/w.wf")
    return WorkflowDef(body=list(body), always=always or [], inputs=inputs or [], **kw)


def messages(report: ValidationReport) -> list[str]:
    return [p.message for p in report.errors]


NOT_PRODUCED = "Condition references step '{}' which has not been produced at this point in the workflow"


class Provider:
    """A configurable item provider with every optional validation hook."""

    def __init__(
        self,
        name: str,
        *,
        ordered: bool = False,
        scope_error: str | None = None,
        warnings: tuple[str, ...] = (),
        requires_filter: bool = False,
        filter_error: str | None = None,
    ) -> None:
        self._name = name
        self._ordered = ordered
        self._scope_error = scope_error
        self._warnings = list(warnings)
        self._requires_filter = requires_filter
        self._filter_error = filter_error
        self.scopes_seen: list[Any] = []

    def name(self) -> str:
        return self._name

    def parse_scope(self, raw: dict[str, str] | None) -> object | None:
        return raw

    def supports_ordered(self) -> bool:
        return self._ordered

    def validate_scope(self, raw: dict[str, str] | None) -> str | None:
        self.scopes_seen.append(raw)
        return self._scope_error

    def scope_warnings(self, raw: dict[str, str] | None) -> list[str]:
        return self._warnings

    def requires_filter(self) -> bool:
        return self._requires_filter

    def validate_filter(self, filter: dict[str, str]) -> str | None:
        return self._filter_error


def foreach(**kw: Any) -> ForEachNode:
    kw.setdefault("name", "fan")
    kw.setdefault("over", "items")
    kw.setdefault("max_parallel", 2)
    kw.setdefault("workflow", "child")
    kw.setdefault("line", 7)
    kw.setdefault("column", 3)
    return ForEachNode(**kw)


CHILD = WorkflowDef(name="child", inputs=[InputDecl(name="id", required=True)])


def loader_for(*workflows: WorkflowDef):
    table = {w.name: w for w in workflows}

    def load(name: str) -> WorkflowDef:
        if name not in table:
            raise WorkflowNotFound(name)
        return table[name]

    return load


# --------------------------------------------------------------------------- a valid workflow


def test_a_workflow_whose_conditions_follow_their_steps_is_valid() -> None:
    report = validate_workflow(
        wf(
            call("build"),
            IfNode(condition=on("build"), body=[call("deploy")]),
            inputs=[InputDecl(name="dry", input_type="boolean")],
        )
    )
    assert report.ok
    assert report.errors == [] and report.warnings == []


# --------------------------------------------------------------------------- E1 / E2 call workflow


def test_E1_a_sub_workflow_that_cannot_be_loaded_is_an_error_naming_the_loaders_reason() -> None:
    node = CallWorkflowNode(workflow="missing", line=4, column=5)
    report = validate_workflow(wf(node), loader=loader_for())
    assert messages(report) == ["Sub-workflow 'missing' could not be loaded: workflow not found: missing"]
    problem = report.errors[0]
    assert problem.hint is None
    assert (problem.location.file, problem.location.line, problem.location.column) == ("flows/w.wf", 4, 5)


def test_E2_every_required_child_input_missing_at_the_call_site_is_reported() -> None:
    child = WorkflowDef(
        name="child",
        inputs=[
            InputDecl(name="a", required=True),
            InputDecl(name="b", required=True, default="x"),
            InputDecl(name="c", default="x"),
            InputDecl(name="flag", input_type="boolean"),
            InputDecl(name="given", required=True),
        ],
    )
    node = CallWorkflowNode(workflow="child", inputs={"given": "1"}, line=2, column=1)
    report = validate_workflow(wf(node), loader=loader_for(child))
    assert messages(report) == [
        "Sub-workflow 'child' requires input 'a' but it was not provided at the call site",
        "Sub-workflow 'child' requires input 'b' but it was not provided at the call site",
    ]
    assert all(p.location.line == 2 for p in report.errors)


def test_a_boolean_child_input_is_never_required_even_if_marked_so() -> None:
    child = WorkflowDef(name="child", inputs=[InputDecl(name="flag", input_type="boolean", required=True)])
    assert validate_workflow(wf(CallWorkflowNode(workflow="child")), loader=loader_for(child)).ok


def test_the_child_is_loaded_once_however_often_it_is_called() -> None:
    calls: list[str] = []

    def load(name: str) -> WorkflowDef:
        calls.append(name)
        raise WorkflowNotFound(name)

    report = validate_workflow(
        wf(CallWorkflowNode(workflow="c"), CallWorkflowNode(workflow="c"), foreach(workflow="c")), loader=load
    )
    assert calls == ["c"]
    assert len(report.errors) == 3  # but every use is still reported


@pytest.mark.parametrize("form", ["dict", "resolver", "callable"])
def test_the_loader_may_be_a_mapping_a_resolver_or_a_callable(form: str) -> None:
    child = WorkflowDef(name="child", body=[call("inner")])

    class Resolver:
        def resolve(self, name: str) -> WorkflowDef:
            return loader_for(child)(name)

    loader = {"dict": {"child": child}, "resolver": Resolver(), "callable": loader_for(child)}[form]
    report = validate_workflow(
        wf(CallWorkflowNode(workflow="child"), IfNode(condition=on("inner"), body=[])), loader=loader
    )
    assert report.ok
    missing = validate_workflow(wf(CallWorkflowNode(workflow="nope")), loader=loader)
    assert messages(missing) == ["Sub-workflow 'nope' could not be loaded: workflow not found: nope"]


# --------------------------------------------------------------------------- produced set: sub-workflows


def test_a_sub_workflow_exports_only_its_top_level_step_keys() -> None:
    child = WorkflowDef(
        name="child",
        body=[
            call("top-call"),
            script("top-script"),
            ParallelNode(calls=[AgentRef(kind="name", value="p1"), AgentRef(kind="path", value="a/p2.md")]),
            CallWorkflowNode(workflow="grandchild"),
            foreach(name="fan", workflow="x"),
            GateNode(name="human_approval", gate_type="human_approval"),
            IfNode(condition=on("top-call"), body=[call("nested")]),
        ],
        always=[call("cleanup")],
    )
    assert top_level_step_keys(child) == ["top-call", "top-script", "p1", "p2", "grandchild", "foreach:fan"]
    visible = ["top-call", "top-script", "p1", "p2", "grandchild", "child"]
    body = [CallWorkflowNode(workflow="child")]
    body += [IfNode(condition=on(step), body=[]) for step in visible]
    assert validate_workflow(wf(*body), loader=loader_for(child)).ok

    for hidden in ["nested", "cleanup", "human_approval"]:
        report = validate_workflow(
            wf(CallWorkflowNode(workflow="child"), IfNode(condition=on(hidden), body=[])),
            loader=loader_for(child),
        )
        assert messages(report) == [NOT_PRODUCED.format(hidden)], hidden


def test_the_sub_workflow_name_counts_as_produced_even_when_it_fails_to_load() -> None:
    report = validate_workflow(
        wf(CallWorkflowNode(workflow="gone"), IfNode(condition=on("gone"), body=[])), loader=loader_for()
    )
    assert messages(report) == ["Sub-workflow 'gone' could not be loaded: workflow not found: gone"]


def test_without_a_loader_sub_workflows_are_not_checked_but_still_produce_their_name() -> None:
    report = validate_workflow(
        wf(CallWorkflowNode(workflow="anything"), IfNode(condition=on("anything"), body=[]), foreach())
    )
    assert report.ok


# --------------------------------------------------------------------------- E3 produced-set rules


def test_E3_a_condition_on_a_step_that_has_not_run_yet_is_reported_at_the_condition() -> None:
    node = IfNode(condition=on("later"), body=[], line=3, column=3)
    report = validate_workflow(wf(node, call("later")))
    assert messages(report) == [NOT_PRODUCED.format("later")]
    assert (
        report.errors[0].hint
        == "`later` first runs later in the workflow, after this: move the condition below it"
    )
    assert report.errors[0].location.line == 3


def test_E3_says_why_the_step_has_not_run_and_what_to_write() -> None:
    """The spec gives E3 no hint; the message alone sent people looking for a typo that was an
    order, a typo, or a `while` that tests before its first pass."""
    text = """workflow w {
      if build.ok { call a }
      call build
      if biuld.ok { call a }
      unless nothing.here { call a }
      while check.pending { max_iterations = 3 call check }
    }"""
    hints = [p.hint for p in validate_workflow(parse_workflow(text)).errors]
    assert hints == [
        "`build` first runs at line 3, after this: move the condition below it",
        "did you mean `build`?",
        "no step is named `nothing`; the steps before this are `a`, `build`",
        "a `while` tests its condition before the first pass, when `check` has not run yet: run `check` "
        "once before the loop, or write `do { … } while check.pending`",
    ]


def test_E3_prefers_the_conditions_own_position_when_the_parser_recorded_one() -> None:
    cond = StepMarkerCondition(step="x", marker="y", line=9, column=12)
    report = validate_workflow(wf(UnlessNode(condition=cond, body=[], line=9, column=3)))
    assert (report.errors[0].location.line, report.errors[0].location.column) == (9, 12)


def test_every_problem_names_the_node_it_belongs_to() -> None:
    text = """workflow w {
      call a
      if a.ok {
        unless later.done { call b }
        foreach fan { over = items  max_parallel = 2  workflow = child }
      }
      call later
    }"""
    report = validate_workflow(parse_workflow(text), loader=loader_for(CHILD))
    placed = [(p.node_path, p.message.split(":")[0]) for p in report.errors]
    assert placed == [("body.1.body.0", NOT_PRODUCED.format("later")), ("body.1.body.1", "foreach 'fan'")]


def test_steps_inside_if_and_unless_branches_count_as_produced_afterwards() -> None:
    report = validate_workflow(
        wf(
            call("check"),
            IfNode(condition=on("check"), body=[call("in-if")]),
            UnlessNode(condition=on("check"), body=[script("in-unless")]),
            IfNode(condition=on("in-if"), body=[]),
            IfNode(condition=on("in-unless"), body=[]),
        )
    )
    assert report.ok


def test_a_step_inside_a_branch_is_visible_to_later_nodes_of_the_same_branch_only_in_order() -> None:
    report = validate_workflow(
        wf(
            call("a"),
            IfNode(condition=on("a"), body=[IfNode(condition=on("b"), body=[]), call("b")]),
        )
    )
    assert messages(report) == [NOT_PRODUCED.format("b")]


def test_while_checks_its_condition_before_the_body_so_a_step_made_inside_is_an_error() -> None:
    loop = WhileNode(step="fixer", marker="again", max_iterations=3, body=[call("fixer")], line=5, column=3)
    report = validate_workflow(wf(loop))
    assert messages(report) == [NOT_PRODUCED.format("fixer")]
    assert report.errors[0].location.line == 5


def test_while_body_steps_are_produced_after_the_loop() -> None:
    loop = WhileNode(step="a", marker="again", max_iterations=3, body=[call("inner")])
    assert validate_workflow(wf(call("a"), loop, IfNode(condition=on("inner"), body=[]))).ok


def test_do_while_checks_its_condition_after_the_body_so_the_loop_may_test_its_own_step() -> None:
    loop = DoWhileNode(step="push", marker="pushed", max_iterations=10, body=[script("push")])
    assert validate_workflow(wf(loop)).ok
    missing = DoWhileNode(step="nowhere", marker="m", max_iterations=1, body=[call("x")], line=2, column=1)
    report = validate_workflow(wf(missing))
    assert messages(report) == [NOT_PRODUCED.format("nowhere")]


def test_do_while_body_conditions_are_checked_before_the_loop_condition() -> None:
    loop = DoWhileNode(
        step="nowhere", marker="m", max_iterations=1, body=[IfNode(condition=on("first"), body=[])]
    )
    report = validate_workflow(wf(loop))
    assert messages(report) == [NOT_PRODUCED.format("first"), NOT_PRODUCED.format("nowhere")]


def test_plain_do_and_nested_always_walk_their_bodies_in_sequence() -> None:
    report = validate_workflow(
        wf(
            DoNode(body=[call("a"), IfNode(condition=on("a"), body=[])]),
            AlwaysNode(body=[call("b")]),
            IfNode(condition=on("b"), body=[]),
        )
    )
    assert report.ok


def test_parallel_per_call_if_is_checked_before_the_blocks_own_calls_are_added() -> None:
    par = ParallelNode(
        calls=[
            AgentRef(kind="name", value="scan"),
            AgentRef(kind="name", value="lint", line=4, column=7),
            AgentRef(kind="name", value="docs"),
        ],
        call_if={"1": ("scan", "done"), "2": ("earlier", "yes")},
        line=2,
        column=3,
    )
    report = validate_workflow(wf(call("earlier"), par, IfNode(condition=on("lint"), body=[])))
    assert messages(report) == [NOT_PRODUCED.format("scan")]
    assert (report.errors[0].location.line, report.errors[0].location.column) == (4, 7)


def test_parallel_call_keys_use_the_file_stem_of_path_agents() -> None:
    par = ParallelNode(calls=[AgentRef(kind="path", value=".claude/agents/plan.md")])
    assert validate_workflow(wf(par, IfNode(condition=on("plan"), body=[]))).ok


def test_the_always_list_sees_everything_the_body_produced() -> None:
    report = validate_workflow(
        wf(
            call("build"),
            always=[
                IfNode(condition=on("build"), body=[call("notify")]),
                IfNode(condition=on("notify"), body=[]),
            ],
        )
    )
    assert report.ok


def test_the_body_does_not_see_steps_of_the_always_list() -> None:
    report = validate_workflow(wf(IfNode(condition=on("cleanup"), body=[]), always=[call("cleanup")]))
    assert messages(report) == [NOT_PRODUCED.format("cleanup")]


def test_foreach_produces_its_prefixed_step_key() -> None:
    report = validate_workflow(
        wf(
            foreach(name="fan"),
            IfNode(condition=on("foreach:fan"), body=[]),
            IfNode(condition=on("fan"), body=[]),
        )
    )
    assert messages(report) == [NOT_PRODUCED.format("fan")]


def test_gates_produce_nothing() -> None:
    gate = GateNode(name="human_approval", gate_type="human_approval")
    report = validate_workflow(wf(gate, IfNode(condition=on("human_approval"), body=[])))
    assert messages(report) == [NOT_PRODUCED.format("human_approval")]


# --------------------------------------------------------------------------- E4


def test_E4_a_bare_condition_must_name_a_declared_boolean_input() -> None:
    cond = BoolInputCondition(input="mode")
    report = validate_workflow(
        wf(IfNode(condition=cond, body=[], line=3, column=3), inputs=[InputDecl(name="mode", required=True)])
    )
    assert messages(report) == ["Condition references 'mode' which is not a declared boolean input"]
    hint = (
        "Declare it in the workflow inputs block: `mode boolean` — it is declared as a text input;"
        " or test a step's marker: `step.marker`"
    )
    assert report.errors[0].hint == hint
    assert report.errors[0].text() == (
        f"Condition references 'mode' which is not a declared boolean input (hint: {hint})"
    )


def test_E4_an_undeclared_name_is_reported_and_a_boolean_input_is_accepted() -> None:
    body = [
        UnlessNode(condition=BoolInputCondition(input="dry"), body=[]),
        IfNode(condition=BoolInputCondition(input="ghost"), body=[]),
    ]
    report = validate_workflow(wf(*body, inputs=[InputDecl(name="dry", input_type="boolean")]))
    assert messages(report) == ["Condition references 'ghost' which is not a declared boolean input"]
    assert report.errors[0].hint == "Declare it in the workflow inputs block: `ghost boolean`"


def test_E4_a_misspelt_boolean_input_or_a_step_without_its_marker_is_named() -> None:
    """`if dyr` (for `dry`) and `if planner` (for `planner.<marker>`) were told to declare
    `dyr boolean` / `planner boolean`: advice that turns a typo into a second mistake."""
    body = [
        call("planner"),
        IfNode(condition=BoolInputCondition(input="dyr"), body=[]),
        IfNode(condition=BoolInputCondition(input="planner"), body=[]),
    ]
    report = validate_workflow(wf(*body, inputs=[InputDecl(name="dry", input_type="boolean")]))
    assert [p.hint for p in report.errors] == [
        "did you mean `dry`?",
        "`planner` is a step: a condition on it names one of its markers, `planner.<marker>`",
    ]


# --------------------------------------------------------------------------- E5 / E6 quality gates


def test_E5_a_quality_gate_without_source_or_threshold_is_reported() -> None:
    gate = GateNode(name="quality_gate", gate_type="quality_gate", threshold=50, line=6, column=3)
    report = validate_workflow(wf(gate))
    assert messages(report) == [
        "Quality gate 'quality_gate' is missing required `source` and `threshold` fields"
    ]
    assert "threshold = 70" in (report.errors[0].hint or "")
    assert "source" in (report.errors[0].hint or "")


def test_E6_a_quality_gate_source_must_have_been_produced() -> None:
    gate = GateNode(name="quality_gate", gate_type="quality_gate", source="scorer", threshold=50)
    report = validate_workflow(wf(gate))
    assert [p.text() for p in report.errors] == [
        "Quality gate 'quality_gate' references source step 'scorer' which has not been produced at this "
        "point in the workflow (hint: Ensure a call or script step named 'scorer' appears before this gate)"
    ]
    assert validate_workflow(wf(call("scorer"), gate)).ok


def test_other_gates_are_not_checked_for_a_source() -> None:
    assert validate_workflow(wf(GateNode(name="pr_checks", gate_type="pr_checks", source="ignored"))).ok


# --------------------------------------------------------------------------- E7 – E12 foreach


def test_E7_a_foreach_child_that_cannot_be_loaded_is_reported() -> None:
    report = validate_workflow(wf(foreach(workflow="absent")), loader=loader_for())
    assert messages(report) == [
        "foreach 'fan': child workflow 'absent' could not be loaded: workflow not found: absent"
    ]
    assert report.errors[0].location.line == 7


def test_E8_required_child_inputs_must_be_in_the_foreach_inputs_map() -> None:
    report = validate_workflow(wf(foreach()), loader=loader_for(CHILD))
    assert messages(report) == [
        "foreach 'fan': child workflow 'child' requires input 'id' but it is not in the inputs map"
    ]
    hint = report.errors[0].hint or ""
    assert '`id = "{{item.id}}"`' in hint and "literal" in hint
    ok = validate_workflow(wf(foreach(inputs={"id": "{{item.id}}"})), loader=loader_for(CHILD))
    assert ok.ok


def test_E9_an_unknown_provider_is_reported_and_stops_the_other_provider_checks() -> None:
    node = foreach(over="tickets", ordered=True, inputs={"id": "x"})
    report = validate_workflow(wf(node), loader=loader_for(CHILD), providers={"repos": Provider("repos")})
    assert messages(report) == [
        "foreach 'fan': unknown provider 'tickets' — no ItemProvider registered for this name"
    ]


def test_the_provider_is_asked_about_the_scope_and_its_error_is_prefixed_with_the_foreach() -> None:
    provider = Provider("items", scope_error="scope needs `label`")
    report = validate_workflow(wf(foreach(scope={"x": "1"})), providers={"items": provider})
    assert messages(report) == ["foreach 'fan': scope needs `label`"]
    assert provider.scopes_seen == [{"x": "1"}]


def test_an_absent_scope_is_still_shown_to_the_provider() -> None:
    provider = Provider("items")
    validate_workflow(wf(foreach()), providers={"items": provider})
    assert provider.scopes_seen == [None]


def test_scope_warnings_become_validation_warnings_not_errors() -> None:
    provider = Provider("items", warnings=("no scope specified; inferred at runtime",))
    report = validate_workflow(wf(foreach()), providers={"items": provider})
    assert report.ok
    assert report.warnings == ["foreach 'fan': no scope specified; inferred at runtime"]
    assert report.warning_problems[0].location.line == 7


def test_E10_ordered_needs_a_provider_that_supports_it_and_the_hint_names_those_that_do() -> None:
    providers = {
        "items": Provider("items"),
        "tickets": Provider("tickets", ordered=True),
        "worktrees": Provider("worktrees", ordered=True),
    }
    report = validate_workflow(wf(foreach(ordered=True)), providers=providers)
    assert messages(report) == ["foreach 'fan': ordered = true is not supported by provider 'items'"]
    assert report.errors[0].hint == "Remove `ordered = true`, or change `over` to one of: tickets, worktrees"
    assert validate_workflow(wf(foreach(over="tickets", ordered=True)), providers=providers).ok


def test_E10_hint_when_no_provider_supports_ordering() -> None:
    report = validate_workflow(wf(foreach(ordered=True)), providers={"items": Provider("items")})
    assert (
        report.errors[0].hint == "Remove `ordered = true` (no registered provider supports ordered dispatch)"
    )


def test_E11_skip_dependents_without_ordered_is_an_error() -> None:
    report = validate_workflow(
        wf(foreach(on_child_fail="skip_dependents")), providers={"items": Provider("items")}
    )
    assert messages(report) == [
        "foreach 'fan': on_child_fail = skip_dependents has no effect without ordered = true"
    ]
    assert "ordered = true" in (report.errors[0].hint or "")
    assert "continue" in (report.errors[0].hint or "")
    ordered = Provider("items", ordered=True)
    node = foreach(on_child_fail="skip_dependents", ordered=True)
    assert validate_workflow(wf(node), providers={"items": ordered}).ok


def test_E11_is_checked_even_without_a_provider_registry() -> None:
    report = validate_workflow(wf(foreach(on_child_fail="skip_dependents")))
    assert len(report.errors) == 1 and "skip_dependents" in report.errors[0].message


def test_E12_a_provider_may_require_a_filter() -> None:
    providers = {"workflow_runs": Provider("workflow_runs", requires_filter=True)}
    report = validate_workflow(wf(foreach(over="workflow_runs")), providers=providers)
    assert messages(report) == ["foreach 'fan': `filter` is required when over = workflow_runs"]
    assert report.errors[0].hint == 'Add a filter, e.g. `filter = { status = "failed" }`'
    ok = validate_workflow(
        wf(foreach(over="workflow_runs", filter={"status": "failed"})), providers=providers
    )
    assert ok.ok


def test_a_non_empty_filter_is_validated_by_the_provider() -> None:
    providers = {"runs": Provider("runs", filter_error="status 'running' is not terminal")}
    report = validate_workflow(wf(foreach(over="runs", filter={"status": "running"})), providers=providers)
    assert messages(report) == ["foreach 'fan': status 'running' is not terminal"]
    assert validate_workflow(wf(foreach(over="runs")), providers=providers).ok


def test_foreach_checks_are_reported_together_in_the_spec_order() -> None:
    provider = Provider("items", scope_error="bad scope", filter_error="bad filter")
    node = foreach(ordered=True, filter={"k": "v"}, scope={"a": "b"})
    report = validate_workflow(wf(node), loader=loader_for(CHILD), providers={"items": provider})
    assert messages(report) == [
        "foreach 'fan': child workflow 'child' requires input 'id' but it is not in the inputs map",
        "foreach 'fan': bad scope",
        "foreach 'fan': ordered = true is not supported by provider 'items'",
        "foreach 'fan': bad filter",
    ]


def test_a_provider_without_hooks_gets_sensible_defaults() -> None:
    class Minimal:
        def parse_scope(self, raw: dict[str, str] | None) -> object | None:
            if raw and "bad" in raw:
                raise ValueError("unknown scope key 'bad'")
            return raw

        def supports_ordered(self) -> bool:
            return False

    providers = {"m": Minimal()}
    assert validate_workflow(wf(foreach(over="m", filter={"any": "thing"})), providers=providers).ok
    report = validate_workflow(wf(foreach(over="m", scope={"bad": "1"})), providers=providers)
    assert messages(report) == ["foreach 'fan': unknown scope key 'bad'"]


def test_a_provider_hook_that_crashes_is_reported_not_raised() -> None:
    class Broken(Provider):
        def validate_filter(self, filter: dict[str, str]) -> str | None:
            raise RuntimeError("filter backend unavailable")

    report = validate_workflow(wf(foreach(filter={"a": "b"})), providers={"items": Broken("items")})
    assert messages(report) == ["foreach 'fan': filter backend unavailable"]


def test_a_registry_object_with_get_and_names_is_accepted() -> None:
    class Registry:
        def __init__(self) -> None:
            self._p = {"a": Provider("a"), "b": Provider("b", ordered=True)}

        def get(self, name: str) -> Provider | None:
            return self._p.get(name)

        def names(self) -> list[str]:
            return list(self._p)

    report = validate_workflow(wf(foreach(over="a", ordered=True)), providers=Registry())
    assert report.errors[0].hint == "Remove `ordered = true`, or change `over` to one of: b"


# --------------------------------------------------------------------------- E13


def test_E13_targets_must_be_in_the_hosts_list() -> None:
    workflow = wf(targets=["worktree", "branch"], line=1, column=1)
    report = validate_workflow(workflow, valid_targets=["worktree", "ticket", "repo"])
    assert [p.text() for p in report.errors] == [
        "Unknown target 'branch' in workflow 'w'. Valid targets: worktree, ticket, repo "
        "(hint: Change 'branch' to one of: worktree, ticket, repo)"
    ]
    assert report.errors[0].location.line == 1


def test_an_empty_target_list_skips_the_target_check() -> None:
    assert validate_workflow(wf(targets=["anything"])).ok


def test_a_target_with_a_comma_or_space_in_it_is_a_warning_naming_the_list_it_meant() -> None:
    report = validate_workflow(wf(targets=["linux, plan9", "repo", "a b", "pr,"]))
    assert report.ok
    assert [p.text() for p in report.warning_problems] == [
        "target 'linux, plan9' is one target with a comma in its name: a string is never split "
        '(hint: write targets = ["linux", "plan9"])',
        "target 'a b' is one target with a space in its name: a string is never split "
        '(hint: write targets = ["a", "b"])',
        "target 'pr,' is one target with a comma in its name: a string is never split "
        '(hint: write targets = "pr")',
    ]


# --------------------------------------------------------------------------- reporting


def test_every_problem_is_collected_in_walk_order_as_in_the_spec_example() -> None:
    """dsl.md §14.4: one run reports the E4, the E3 and the E6 together."""
    workflow = wf(
        IfNode(condition=BoolInputCondition(input="mode"), body=[call("a")], line=3, column=3),
        WhileNode(step="fixer", marker="again", max_iterations=3, body=[call("fixer")], line=4, column=3),
        GateNode(
            name="quality_gate", gate_type="quality_gate", source="scorer", threshold=50, line=8, column=3
        ),
        inputs=[InputDecl(name="mode", required=True)],
    )
    report = validate_workflow(workflow)
    assert messages(report) == [
        "Condition references 'mode' which is not a declared boolean input",
        NOT_PRODUCED.format("fixer"),
        "Quality gate 'quality_gate' references source step 'scorer' which has not been produced at this "
        "point in the workflow",
    ]
    assert [p.location.line for p in report.errors] == [3, 4, 8]
    assert all(p.location.file == "flows/w.wf" for p in report.errors)


def test_problems_render_as_file_line_column_message() -> None:
    report = validate_workflow(wf(IfNode(condition=on("x"), body=[], line=12, column=5)))
    assert (
        report.errors[0].render()
        == f"flows/w.wf:12:5: {NOT_PRODUCED.format('x')} (hint: no step is named `x`)"
    )


def test_check_workflow_raises_with_every_problem_and_returns_the_report_when_ok() -> None:
    bad = wf(
        IfNode(condition=on("x"), body=[], line=2, column=3),
        IfNode(condition=on("y"), body=[], line=5, column=3),
    )
    with pytest.raises(WfValidationError) as info:
        check_workflow(bad)
    assert [p.message for p in info.value.problems] == [NOT_PRODUCED.format("x"), NOT_PRODUCED.format("y")]
    assert info.value.file == "flows/w.wf"
    assert str(info.value) == (
        f"Validation error in flows/w.wf:2:3: {NOT_PRODUCED.format('x')} (hint: no step is named `x`); "
        f"flows/w.wf:5:3: {NOT_PRODUCED.format('y')} (hint: no step is named `y`)"
    )
    good = check_workflow(wf(call("x")))
    assert isinstance(good, ValidationReport) and good.ok


def test_problem_objects_are_plain_values() -> None:
    report = validate_workflow(wf(IfNode(condition=on("x"), body=[], line=1, column=2)))
    assert isinstance(report.errors[0], Problem)
    assert (
        report.errors[0]
        == validate_workflow(wf(IfNode(condition=on("x"), body=[], line=1, column=2))).errors[0]
    )


def test_problems_are_ordered_by_file_then_line_the_workflows_own_first() -> None:
    """`validate --ready` put an agent file's problem at line 2 among the workflow's own lines (by
    line alone, across files): the workflow's own come first, by line, then each other file's."""
    from runkon_flow.dsl.validation import in_file_order
    from runkon_flow.errors import Problem, SourceLocation

    def at(file: str | None, line: int | None) -> Problem:
        return Problem(f"{file}:{line}", location=SourceLocation(file, line, 1))

    problems = [at("agents/z.md", 2), at("flow.wf", 9), at("agents/a.md", 5), at(None, 4), at("flow.wf", 3)]
    assert [p.message for p in in_file_order(problems, "flow.wf")] == [
        "flow.wf:3",
        "None:4",  # no file: the workflow's own (the engine knows positions, not files)
        "flow.wf:9",
        "agents/a.md:5",
        "agents/z.md:2",
    ]
    assert [p.location.line for p in in_file_order(problems)] == [2, 3, 4, 5, 9]  # one file: by line


def test_a_child_input_whose_placeholder_no_value_can_fill_is_a_warning_with_what_to_write() -> None:
    """A foreach's or call workflow's inputs keep an unknown placeholder as written (§12.1): the
    child got the text `{{itme.id}}` for its `service`, and neither `validate` nor the run said a
    word. The two shapes that cannot be right are warned of; `{{item.id}}` and plain names are not."""
    child = wf(call("deployer"), inputs=[InputDecl(name="service", required=True)])
    child.name = "deploy-one"
    body = [
        call("planner"),
        ForEachNode(
            name="deploy",
            over="static",
            max_parallel=1,
            workflow="deploy-one",
            inputs={"service": "{{itme.id}}", "extra": "{{item.id}} {{version}}"},
        ),
        CallWorkflowNode(workflow="deploy-one", inputs={"service": "{{planner.risk}}"}),
    ]
    report = validate_workflow(wf(*body), loader={"deploy-one": child})
    assert [(p.message, p.hint) for p in report.warning_problems if "no value will fill" in p.message] == [
        (
            "foreach 'deploy': input `service` uses `{{itme.id}}`, which no value will fill: the child"
            " gets that text as it is written",
            "did you mean `{{item.id}}`?",
        ),
        (
            "`call workflow deploy-one`: input `service` uses `{{planner.risk}}`, which no value will"
            " fill: the child gets that text as it is written",
            "a step's FLOW_OUTPUT fields are placeholders without the step's name: write `{{risk}}`",
        ),
    ]
