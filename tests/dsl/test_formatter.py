"""`format_workflow`: canonical, readable text that parses back to the same workflow (or a clear refusal)."""

from __future__ import annotations

from typing import Any

import pytest
from runkon_flow.dsl import format_workflow, parse_workflow
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
    OnFailAgent,
    OnFailContinue,
    ParallelNode,
    ScriptNode,
    WhileNode,
    WorkflowDef,
)
from runkon_flow.dsl.formatter import UnformattableError, format_source, quote
from runkon_flow.dsl.lexer import Comment, comments
from runkon_flow.errors import WfError

from .test_parse_workflow import EXAMPLE_14_1


def round_trip(wf: WorkflowDef) -> str:
    """Format, check that it parses back equal and that formatting is stable; return the text."""
    text = format_workflow(wf)
    again = parse_workflow(text, wf.source_path)
    assert again == wf, text
    assert format_workflow(again) == text
    return text


def reformat(source: str) -> str:
    return round_trip(parse_workflow(source))


def wf_with(*body: Any, **fields: Any) -> WorkflowDef:
    return WorkflowDef(name="w", body=list(body), **fields)


def refusal(wf: WorkflowDef) -> str:
    with pytest.raises(UnformattableError) as info:
        format_workflow(wf)
    assert isinstance(info.value, WfError)
    return info.value.message


# --------------------------------------------------------------------------- style


def test_the_canonical_layout() -> None:
    source = """
    workflow   release {
      inputs { version   required  dry boolean }
      meta { group = "Ops" title = "Release" trigger = "pr" targets = [repo] }
      call plan { output = "release-plan" }
      call build { retries = 2 as = "ci-bot" timeout = "15m" with = [a] }
      if dry { call report }
      gate human_approval { timeout = "4h" prompt = "Ship {{version}}?" options = [yes, no] }
      script tag { env = { VERSION = "{{version}}" } run = "tools/tag.sh" timeout = 60 }
      always { call notify }
    }
    """
    assert reformat(source) == (
        "workflow release {\n"
        "  meta {\n"
        '    title   = "Release"\n'
        "    trigger = pr\n"
        '    targets = ["repo"]\n'
        '    group   = "Ops"\n'
        "  }\n"
        "\n"
        "  inputs {\n"
        "    version required\n"
        "    dry     boolean\n"
        "  }\n"
        "\n"
        '  call plan { output = "release-plan" }\n'
        "\n"
        "  call build {\n"
        '    with    = ["a"]\n'
        "    retries = 2\n"
        '    timeout = "15m"\n'
        '    as      = "ci-bot"\n'
        "  }\n"
        "\n"
        "  if dry {\n"
        "    call report\n"
        "  }\n"
        "\n"
        "  gate human_approval {\n"
        '    prompt  = "Ship {{version}}?"\n'
        '    timeout = "4h"\n'
        '    options = ["yes", "no"]\n'
        "  }\n"
        "\n"
        "  script tag {\n"
        '    run     = "tools/tag.sh"\n'
        "    timeout = 60\n"
        '    env     = { VERSION = "{{version}}" }\n'
        "  }\n"
        "\n"
        "  always {\n"
        "    call notify\n"
        "  }\n"
        "}\n"
    )


def test_an_empty_workflow() -> None:
    assert reformat("workflow w {}") == "workflow w {\n}\n"


def test_the_complete_spec_example_round_trips() -> None:
    text = reformat(EXAMPLE_14_1)
    assert "} while check-links.broken_links\n" in text
    assert '      call workflow publish-docs {\n        inputs { channel = "{{channel}}" }\n' in text


def test_comments_and_odd_spacing_are_normalised_away() -> None:
    assert reformat("workflow w{//c\ncall a{retries=1}}") == "workflow w {\n  call a { retries = 1 }\n}\n"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        'say "hi"',
        "back\\slash",
        "new\nline",
        "tab\there",
        "{{var}}",
        "// not a comment",
        "é — ü",
        "\r",
    ],
)
def test_strings_are_quoted_and_escaped_so_they_read_back_exactly(text: str) -> None:
    wf = wf_with(CallNode(agent=AgentRef(kind="name", value="a"), output=text), description=text)
    round_trip(wf)


def test_quote_escapes_only_what_the_lexer_needs() -> None:
    assert quote('a"b\\c\nd\te') == '"a\\"b\\\\c\\nd\\te"'


@pytest.mark.parametrize(
    ("seconds", "written"),
    [(7200, '"2h"'), (259200, '"72h"'), (5400, '"90m"'), (45, '"45s"'), (0, '"0s"'), (3601, '"3601s"')],
)
def test_gate_timeouts_are_written_as_quoted_durations(seconds: int, written: str) -> None:
    gate = GateNode(name="pr_checks", gate_type="pr_checks", timeout_secs=seconds)
    assert f"timeout = {written}" in round_trip(wf_with(gate))


def test_the_default_gate_timeout_is_omitted() -> None:
    assert "timeout" not in round_trip(wf_with(GateNode(name="pr_checks", gate_type="pr_checks")))


def test_long_option_lists_are_written_one_per_line() -> None:
    agent = AgentRef(kind="name", value="a")
    text = round_trip(wf_with(CallNode(agent=agent, output="o" * 90, retries=1)))
    assert "  call a {\n" in text


# --------------------------------------------------------------------------- traps that round-trip


@pytest.mark.parametrize("name", ["required", "boolean", "default", "description"])
def test_inputs_named_like_modifiers_start_a_new_inputs_block(name: str) -> None:
    wf = WorkflowDef(
        name="w",
        inputs=[
            InputDecl(name="first", required=True),
            InputDecl(name=name, required=False, default="x"),
            InputDecl(name="last", input_type="boolean"),
        ],
    )
    text = round_trip(wf)
    assert text.count("inputs {") == 2


def test_input_descriptions_and_defaults() -> None:
    wf = WorkflowDef(
        name="w",
        inputs=[
            InputDecl(name="a", required=True, default="d", description="why"),
            InputDecl(name="b", input_type="boolean", default="true", description="flag"),
        ],
    )
    assert '    a required default = "d" description = "why"\n' in round_trip(wf)


@pytest.mark.parametrize("name", ["required", "default", "description"])
def test_agents_named_like_modifiers_are_written_bare(name: str) -> None:
    assert f"  call {name}\n" in round_trip(wf_with(CallNode(agent=AgentRef(kind="name", value=name))))


def test_a_path_agent_is_quoted() -> None:
    assert '  call "plan"\n' in round_trip(wf_with(CallNode(agent=AgentRef(kind="path", value="plan"))))


@pytest.mark.parametrize(
    ("on_fail", "written"),
    [
        (OnFailContinue(), "continue"),
        (OnFailAgent(value=AgentRef(kind="name", value="fixer")), "fixer"),
        (OnFailAgent(value=AgentRef(kind="name", value="gate")), "gate"),
        (OnFailAgent(value=AgentRef(kind="name", value="do")), '"do"'),
        (OnFailAgent(value=AgentRef(kind="name", value="step.field")), '"step.field"'),
        (OnFailAgent(value=AgentRef(kind="name", value="7")), '"7"'),
        (OnFailAgent(value=AgentRef(kind="path", value="agents/fix.md")), '"agents/fix.md"'),
    ],
)
def test_on_fail_is_quoted_only_when_that_keeps_its_meaning(on_fail: Any, written: str) -> None:
    agent = AgentRef(kind="name", value="a")
    for node in (
        CallNode(agent=agent, on_fail=on_fail),
        ScriptNode(name="s", run="x", on_fail=on_fail),
        CallWorkflowNode(workflow="c", on_fail=on_fail),
    ):
        assert f"on_fail = {written}" in round_trip(wf_with(node))


@pytest.mark.parametrize(
    ("options", "written"),
    [
        ({"ship": "Ship now", "hold": "Hold"}, '{\n      ship = "Ship now"\n      hold = "Hold"\n    }'),
        ({"Ship now": "Ship now", "x": "x"}, '["Ship now", "x"]'),
        ({}, "[]"),
        ("plan.choices", '"plan.choices"'),
    ],
)
def test_gate_options_map_list_and_step_field(options: Any, written: str) -> None:
    gate = GateNode(name="human_review", gate_type="human_review", options=options)
    assert f"options = {written}" in round_trip(wf_with(gate))


def test_review_decision_gates_omit_min_approvals() -> None:
    gate = GateNode(name="pr_approval", gate_type="pr_approval", approval_mode="review_decision")
    text = round_trip(wf_with(gate))
    assert "mode = review_decision" in text
    assert "min_approvals" not in text


def test_quality_gates() -> None:
    gate = GateNode(
        name="quality_gate",
        gate_type="quality_gate",
        timeout_secs=0,
        source="scorer",
        threshold=70,
        on_fail_action="continue",
        as_identity="bot",
    )
    assert "source    = scorer\n    threshold = 70\n    on_fail   = continue\n" in round_trip(wf_with(gate))


def test_parallel_per_call_options_including_if() -> None:
    node = ParallelNode(
        fail_fast=False,
        min_success=1,
        calls=[AgentRef(kind="name", value="a"), AgentRef(kind="path", value="agents/b.md")],
        output="out",
        with_=["w"],
        call_outputs={"1": "o"},
        call_with={"0": []},
        call_if={"1": ("scan", "has.dots")},
        call_retries={"0": 0},
    )
    text = round_trip(wf_with(node))
    assert '    call "agents/b.md" { output = "o" if = "scan.has.dots" }\n' in text
    assert "    call a             { with = [] retries = 0 }\n" in text


LOOP: dict[str, Any] = {"step": "a", "marker": "b", "max_iterations": 2}


def test_a_do_while_may_be_followed_by_a_while_loop() -> None:
    round_trip(wf_with(DoWhileNode(**LOOP), WhileNode(**LOOP)))


def test_at_the_top_level_an_empty_always_block_separates_a_plain_do_from_a_while_loop() -> None:
    wf = parse_workflow("workflow w { do { call a } always { call z } while b.c { max_iterations = 1 } }")
    assert [n.type for n in wf.body] == ["do", "while"]
    text = round_trip(wf)
    assert "  do {\n    call a\n  }\n\n  always {}\n\n  while b.c {\n" in text


def test_a_plain_do_followed_by_another_node_then_while() -> None:
    loop = {"step": "a", "marker": "b", "max_iterations": 2}
    round_trip(wf_with(DoNode(), CallNode(agent=AgentRef(kind="name", value="x")), WhileNode(**loop)))


def test_call_workflow_inputs_use_the_sub_block_and_may_use_keyword_keys() -> None:
    node = CallWorkflowNode(workflow="child", inputs={"if": "x", "ticket_id": "{{ticket_id}}"}, retries=1)
    text = round_trip(wf_with(node))
    assert "inputs {\n" in text
    assert "inputs =" not in text


def test_foreach_inputs_use_the_equals_form() -> None:
    node = ForEachNode(
        name="f",
        over="tickets",
        max_parallel=2,
        workflow="child",
        inputs={"id": "{{item.id}}"},
        scope={},
        ordered=True,
        on_child_fail="skip_dependents",
        on_cycle="warn",
    )
    assert 'inputs        = { id = "{{item.id}}" }' in round_trip(wf_with(node))


def test_the_largest_numbers_are_written() -> None:
    agent = AgentRef(kind="name", value="a")
    round_trip(wf_with(CallNode(agent=agent, retries=2**32 - 1, max_turns=2**32 - 1)))
    round_trip(wf_with(ScriptNode(name="s", run="x", timeout=2**64 - 1)))
    round_trip(wf_with(GateNode(name="g", gate_type="g", timeout_secs=2**64 - 1)))


def test_nested_always_nodes_inside_blocks_and_the_always_list() -> None:
    inner = AlwaysNode(body=[CallNode(agent=AgentRef(kind="name", value="a"))])
    round_trip(WorkflowDef(name="w", body=[DoNode(body=[inner])], always=[inner, AlwaysNode()]))


def test_soft_keyword_names() -> None:
    round_trip(
        WorkflowDef(
            name="workflow",
            inputs=[InputDecl(name="gate", input_type="boolean")],
            body=[ScriptNode(name="call", run="x"), CallWorkflowNode(workflow="inputs")],
        )
    )


# --------------------------------------------------------------------------- ASTs the language cannot express


def call_named(value: str, kind: str = "name") -> CallNode:
    return CallNode(agent=AgentRef(kind=kind, value=value))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wf", "expected"),
    [
        (wf_with(call_named("gate")), "agent name `gate`: after `call` a name must be an identifier"),
        (wf_with(call_named("two words")), "agent name `two words`"),
        (wf_with(call_named("../x.md", "path")), 'agent path "../x.md": it contains a `..` component'),
        (
            wf_with(IfNode(condition=BoolInputCondition(input="x"), body=[DoNode(), WhileNode(**LOOP)])),
            "a `while` loop directly after a plain `do` block",
        ),
        (
            WorkflowDef(name="w", inputs=[InputDecl(name="b", input_type="boolean", required=True)]),
            "boolean input `b` marked required: booleans are never required",
        ),
        (
            WorkflowDef(name="w", inputs=[InputDecl(name="s", required=False)]),
            "optional input `s` without a default",
        ),
        (WorkflowDef(name="meta"), "workflow name `meta`"),
        (WorkflowDef(name="w", inputs=[InputDecl(name="a b", required=True)]), "input name `a b`"),
        (wf_with(CallNode(agent=AgentRef(kind="name", value="a"), retries=2**32)), "retries = 4294967296"),
        (wf_with(CallNode(agent=AgentRef(kind="name", value="a"), max_turns=-1)), "max_turns = -1"),
        (wf_with(ScriptNode(name="s", run="x", timeout=2**64)), "timeout = 18446744073709551616"),
        (
            wf_with(
                CallNode(
                    agent=AgentRef(kind="name", value="a"),
                    on_fail=OnFailAgent(value=AgentRef(kind="name", value="continue")),
                )
            ),
            "on_fail agent `continue`",
        ),
        (
            wf_with(
                ScriptNode(
                    name="s", run="x", on_fail=OnFailAgent(value=AgentRef(kind="path", value="fix.md"))
                )
            ),
            'on_fail path "fix.md": it needs a `/`',
        ),
        (
            wf_with(
                ScriptNode(name="s", run="x", on_fail=OnFailAgent(value=AgentRef(kind="name", value="a/b")))
            ),
            "on_fail agent name `a/b`",
        ),
        (wf_with(ScriptNode(name="s", run="x", env={"call": "v"})), "script env key `call`"),
        (wf_with(CallWorkflowNode(workflow="c", inputs={"a b": "v"})), "call workflow input key `a b`"),
        (wf_with(GateNode(name="a", gate_type="b")), "gate `a` of type `b`"),
        (wf_with(GateNode(name="g", gate_type="g", options="nodot")), "gate options `nodot`"),
        (wf_with(GateNode(name="g", gate_type="g", options={"call": "x"})), "gate options key `call`"),
        (
            wf_with(GateNode(name="g", gate_type="g", approval_mode="review_decision", min_approvals=2)),
            "a review_decision gate with min_approvals",
        ),
        (wf_with(GateNode(name="quality_gate", gate_type="quality_gate")), "a quality_gate without source"),
        (
            wf_with(
                GateNode(
                    name="quality_gate",
                    gate_type="quality_gate",
                    source="s",
                    threshold=5,
                    on_fail_action="fail",
                )
            ),
            "a quality_gate with approval settings",
        ),
        (
            wf_with(
                GateNode(
                    name="quality_gate",
                    gate_type="quality_gate",
                    source="s",
                    threshold=101,
                    on_fail_action="fail",
                    timeout_secs=0,
                )
            ),
            "quality_gate threshold 101",
        ),
        (wf_with(ParallelNode(calls=[])), "a parallel block without calls"),
        (wf_with(AlwaysNode()), "a nested `always` node directly in the workflow body"),
        (
            wf_with(ParallelNode(calls=[AgentRef(kind="name", value="a")], call_retries={"1": 1})),
            "parallel call_retries for call index 1",
        ),
        (
            wf_with(ParallelNode(calls=[AgentRef(kind="name", value="a")], call_if={"0": ("a.b", "c")})),
            "parallel call if step `a.b`",
        ),
        (
            wf_with(WhileNode(step="a", marker="not a name", max_iterations=1)),
            "loop marker `not a name`",
        ),
    ],
)
def test_unexpressible_asts_are_refused_with_a_reason(wf: WorkflowDef, expected: str) -> None:
    assert expected in refusal(wf)


def test_a_refusal_names_the_node_position_and_file() -> None:
    wf = parse_workflow("workflow w {\n  if a.b {\n    call x\n  }\n}", "flows/w.wf")
    wf.body[0].body[0].agent = AgentRef(kind="name", value="gate")
    with pytest.raises(UnformattableError) as info:
        format_workflow(wf)
    assert (info.value.file, info.value.line, info.value.column) == ("flows/w.wf", 3, 5)
    assert str(info.value).startswith("Format error in flows/w.wf:3:5: cannot format agent name `gate`")


# --------------------------------------------------------------------------- comments


COMMENTED = """\
// header
workflow w {
  inputs {
    // why a
    a required // trailing note
    b boolean
  }
  // first step
  call x { retries = 1 } // same line
  parallel {
    // the first call
    call p1
    // the second call
    call p2 { retries = 1 }
  }
  if a.b {
    // inside if
    call y
  }
  script s { run = "echo // not a comment" }
  // the end
}
"""


def test_format_source_keeps_every_comment_next_to_what_it_was_written_about() -> None:
    text = format_source(COMMENTED)
    assert [line.strip() for line in text.splitlines() if "// " in line and "echo" not in line] == [
        "// header",
        "// why a",
        "a required  // trailing note",
        "// first step",
        "call x { retries = 1 }  // same line",
        "// the first call",
        "// the second call",
        "// inside if",
        "// the end",
    ]
    assert text.startswith("// header\nworkflow w {\n")
    assert "    // why a\n    a required  // trailing note\n    b boolean\n" in text
    assert "    // the second call\n    call p2 { retries = 1 }\n" in text
    assert "    // inside if\n    call y\n" in text
    assert text.endswith("  }\n\n  // the end\n}\n")
    assert 'run = "echo // not a comment"' in text


def test_format_source_is_stable_and_keeps_the_meaning() -> None:
    text = format_source(COMMENTED)
    assert format_source(text) == text
    assert parse_workflow(text) == parse_workflow(COMMENTED)


def test_format_source_reports_parse_errors() -> None:
    with pytest.raises(WfError) as info:
        format_source("workflow w { call }", "x.wf")
    assert info.value.file == "x.wf"


def test_without_comments_the_formatter_writes_none() -> None:
    assert format_workflow(parse_workflow(COMMENTED)).count("//") == 1  # the one inside the script string


def test_the_lexer_lists_comments_with_positions() -> None:
    assert comments('call a // one\r\n"//not" // two') == [Comment(1, 8, "// one"), Comment(2, 9, "// two")]


# An option the user wrote stays, even when its value is the default (`fmt` keeps what was written).
WRITTEN_DEFAULTS = [
    ('meta { description = "" }', 'description = ""'),
    ("meta { trigger = manual }", "trigger = manual"),
    ("meta { targets = [] }", "targets = []"),
    ("call a { retries = 0 }", "retries = 0"),
    ("call a { with = [] }", "with = []"),
    ("call a { plugin_dirs = [] }", "plugin_dirs = []"),
    ("call workflow b { retries = 0 }", "retries = 0"),
    ("call workflow b { inputs {} }", "inputs {}"),
    ("while a.again { max_iterations = 3  on_max_iter = fail\n call a }", "on_max_iter = fail"),
    ("do { max_iterations = 3  on_max_iter = fail\n call a } while a.again", "on_max_iter = fail"),
    ("do { with = []\n call a }", "with = []"),
    ("parallel { fail_fast = true\n call a\n call b }", "fail_fast = true"),
    ("parallel { with = []\n call a\n call b }", "with = []"),
    ("parallel { call a { retries = 0 }\n call b }", "retries = 0"),
    ("gate human_approval { min_approvals = 1 }", "min_approvals = 1"),
    ("gate human_approval { mode = min_approvals }", "mode = min_approvals"),
    ('gate human_approval { timeout = "24h" }', 'timeout = "24h"'),
    ("gate human_approval { on_timeout = fail }", "on_timeout = fail"),
    ("gate quality_gate { source = a  threshold = 70  on_fail = fail }", "on_fail = fail"),
    ('script s { run = "true"  retries = 0 }', "retries = 0"),
    ('script s { run = "true"  env = {} }', "env = {}"),
    ("foreach f { over = static  workflow = c  max_parallel = 2  ordered = false }", "ordered = false"),
    ("foreach f { over = static  workflow = c  max_parallel = 2  on_cycle = fail }", "on_cycle = fail"),
    (
        "foreach f { over = static  workflow = c  max_parallel = 2  on_child_fail = continue }",
        "on_child_fail = continue",
    ),
    ("foreach f { over = static  workflow = c  max_parallel = 2  filter = {} }", "filter = {}"),
    ("foreach f { over = static  workflow = c  max_parallel = 2  inputs = {} }", "inputs = {}"),
]


@pytest.mark.parametrize(("step", "kept"), WRITTEN_DEFAULTS)
def test_an_option_written_with_its_default_value_is_kept(step: str, kept: str) -> None:
    source = f"workflow w {{\n{step}\n}}\n"
    text = format_source(source)
    assert kept in " ".join(text.split())  # alignment pads `key = value`
    assert format_source(text) == text  # and formatting again changes nothing
    assert parse_workflow(text) == parse_workflow(source)


def test_a_default_that_was_not_written_is_still_left_out() -> None:
    text = format_source(
        "workflow w {\n foreach f { over = static  workflow = c  max_parallel = 2 }\n"
        ' gate human_approval { prompt = "ok?" }\n}\n'
    )
    for option in ("on_child_fail", "on_cycle", "ordered", "timeout", "on_timeout", "min_approvals"):
        assert option not in text


SPREAD = """\
workflow w {
  meta {
    targets = ["worktree",  // first target
               // the second
               "repo"]  // after the list
  }
  script s {
    run = "x.sh"
    env = {  // env brace
      A = "1"  // about A
      // about B
      B = "2"
      // before the brace
    }  // after env
  }
  call workflow child {
    inputs {
      x = "1"  // about x
    }
  }
  call a {  // opened
    retries = 1
  }  // closed
}
"""


def test_comments_on_the_entries_of_a_list_or_map_stay_beside_them() -> None:
    text = format_source(SPREAD)
    assert (
        '    targets = [\n      "worktree",  // first target\n      // the second\n      "repo",\n'
        "    ]  // after the list\n" in text
    )
    assert (
        '    env = {  // env brace\n      A = "1"  // about A\n      // about B\n      B = "2"\n'
        "      // before the brace\n    }  // after env\n" in text
    )
    assert '    inputs {\n      x = "1"  // about x\n    }\n' in text
    assert "  call a {  // opened\n    retries = 1\n  }  // closed\n" in text  # not run together on one line
    assert format_source(text) == text
    assert parse_workflow(text) == parse_workflow(SPREAD)


def test_lists_and_maps_without_comments_on_their_entries_still_fold() -> None:
    text = format_source(
        'workflow w {\n  meta {\n    targets = [\n      "a",\n      "b",\n    ]  // t\n  }\n}\n'
    )
    assert '    targets = ["a", "b"]  // t\n' in text


def test_comments_of_each_inputs_block_stay_with_it() -> None:
    source = (
        "workflow w {\n  inputs {  // first\n    a required\n  }  // one\n\n"
        "  inputs {  // second\n    required required\n  }  // two\n}\n"
    )
    assert format_source(source) == source


def test_comments_of_a_head_spread_over_lines_stay_with_it_one_per_line() -> None:
    """`workflow w` ⏎ `{  // …`: a comment between an item's first and last lines goes with its head
    (it went to its last line, the workflow's closing `}`); two for one line are not run together
    into one comment (`// cond  // open` reads back as one)."""
    source = (
        "workflow w\n{  // about w\n  if a.b  // cond\n  {  // open\n    call c\n  }\n"
        "  // about d\n  call d\n  call e { retries = 2 }  // e\n}\n"
    )
    assert format_source(source) == (
        "workflow w {  // about w\n  if a.b {  // cond\n    // open\n    call c\n  }\n\n"
        "  // about d\n  call d\n  call e { retries = 2 }  // e\n}\n"
    )
