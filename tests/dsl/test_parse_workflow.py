"""The workflow declaration, `meta`, `inputs`, top-level `always`, files and nesting (dsl.md §1, §5, §14)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from runkon_flow.dsl import parse_file, parse_workflow
from runkon_flow.dsl.ast import AlwaysNode, CallNode, IfNode, InputDecl, ScriptNode, UnlessNode
from runkon_flow.dsl.parser import MAX_NESTING_DEPTH
from runkon_flow.errors import WfLexError, WfParseError

from .wf_testing import SOURCE, body_error, parse, parse_error

# --------------------------------------------------------------------------- the declaration


def test_an_empty_workflow_has_every_default() -> None:
    wf = parse("workflow empty {}")
    assert wf.to_json() == {
        "name": "empty",
        "title": None,
        "description": "",
        "trigger": "manual",
        "targets": [],
        "group": None,
        "inputs": [],
        "body": [],
        "always": [],
        "source_path": SOURCE,
    }
    assert wf.warnings == []


@pytest.mark.parametrize("name", ["review-pr", "lint_fix", "_x", "gate", "workflow", "inputs", "required"])
def test_the_workflow_name_is_an_identifier_or_a_soft_keyword(name: str) -> None:
    assert parse(f"workflow {name} {{}}").name == name


@pytest.mark.parametrize("name", ["meta", "do", '"quoted"', "7"])
def test_other_workflow_names_are_rejected(name: str) -> None:
    error = parse_error(f"workflow {name} {{}}")
    assert error.message.startswith("expected a workflow name after `workflow`, found")
    assert (error.line, error.column) == (1, 10)


def test_a_file_must_start_with_workflow() -> None:
    error = parse_error("  call a")
    assert error.message == "expected `workflow` at the start of the file, found keyword `call`"
    assert (error.line, error.column) == (1, 3)


def test_an_empty_file_is_a_parse_error() -> None:
    assert parse_error("// only a comment\n").message.endswith("found end of file")


def test_a_missing_closing_brace_points_at_the_end_of_the_file() -> None:
    error = parse_error("workflow w {\n  call a\n")
    assert "found end of file" in error.message
    assert (error.line, error.column) == (3, 1)
    assert str(error).startswith(f"Parse error in {SOURCE}:3:1: expected ")


def _hint(error: WfParseError) -> str:
    """What the printed form adds after the spec's message: ` (hint: …)`."""
    assert error.detail.startswith(error.message + " (hint: "), error.detail
    return error.detail[len(error.message) + len(" (hint: ") : -1]


def test_a_missing_closing_brace_names_the_brace_left_open() -> None:
    """`expected … found end of file` at the last line did not say which `{` lost its `}`; the
    spec's message (and `str()`) stays, the printed detail names the block."""
    error = parse_error('workflow b {\n  script s { run = "x"\n}\n')
    assert error.message.endswith("or `}` closing workflow `b`, found end of file")
    assert (error.line, error.column) == (4, 1)
    assert str(error) == f"Parse error in {SOURCE}:4:1: {error.message}"
    assert _hint(error) == (
        "the `{` of `script s` at line 2, column 12 is not closed: judging by the indentation, "
        "its `}` is missing before line 3"
    )


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        # nothing to go by: the innermost `{` still open
        ("workflow w {\n  call a\n", "the `{` of `workflow w` at line 1, column 12 is not closed"),
        (
            "workflow w { if a.b { while c.d { max_iterations = 2 call x }",
            "the `{` of `if a.b` at line 1, column 21 is not closed (nor is the block around it)",
        ),
        (
            'workflow w {\n  script s { run = x env = { A = "1"',
            "the `{` of the `env` map at line 2, column 28 is not closed (nor are the 2 blocks around it)",
        ),
        # a step keyword back at the workflow's body indent while the `if` is open: the `}` that
        # closes the workflow closes the `if`, and the workflow's `{` is the one left open
        (
            "workflow b {\n  if x.y {\n    call a\n  call c\n}\n",
            "the `{` of `if x.y` at line 2, column 10 is not closed: judging by the indentation, "
            "its `}` is missing before line 4",
        ),
        # a `}` at the `if`'s indent closes the call's options instead
        (
            "workflow b {\n  if x.y {\n    call a {\n      retries = 1\n  }\n}\n",
            "the `{` of `call a` at line 3, column 12 is not closed: judging by the indentation, "
            "its `}` is missing before line 5",
        ),
        (
            "workflow b {\n  parallel {\n    call a\n    call b\n  call c\n}\n",
            "the `{` of `parallel` at line 2, column 12 is not closed: judging by the indentation, "
            "its `}` is missing before line 5",
        ),
        # contents indented unevenly still are inside the block: the workflow lost its `}`
        (
            "workflow b {\n  if x.y {\n      call a\n    call c\n  }\n",
            "the `{` of `workflow b` at line 1, column 12 is not closed",
        ),
        # contents not indented at all say nothing
        (
            "workflow b {\nif x.y {\ncall a\ncall c\n}\n",
            "the `{` of `workflow b` at line 1, column 12 is not closed",
        ),
    ],
)
def test_the_brace_left_open_is_the_one_the_indentation_points_at(text: str, hint: str) -> None:
    error = parse_error(text)
    assert error.message.endswith("found end of file")
    assert _hint(error) == hint


@pytest.mark.parametrize(
    ("text", "line", "hint"),
    [
        # the call's options block lost its `}`: `call b` back at the call's indent is an option error
        (
            "workflow w {\n  call a {\n    retries = 1\n  call b\n}\n",
            4,
            "is the `{` of `call a` at line 2, column 10 closed? Judging by the indentation, its `}` is "
            "missing before line 4",
        ),
        # an `if` that lost its `}` fails far below, where `} while` meets the workflow's `}`: the
        # `if` is named, not the `do` the error is in
        (
            "workflow w {\n  do {\n    max_iterations = 2\n    if a.b {\n      call x\n\n    call y\n"
            '    script s {\n      run = "true"\n    }\n  } while s.again\n}\n',
            12,
            "is the `{` of `if a.b` at line 4, column 12 closed? Judging by the indentation, its `}` is "
            "missing before line 7",
        ),
    ],
)
def test_a_brace_lost_in_the_middle_of_the_file_is_named_by_the_indentation(
    text: str, line: int, hint: str
) -> None:
    """A missing `}` that the parser meets before the end of the file (most do: at the next step of
    the enclosing block, or where a `while` meets a `}`) had no hint at all: the error named a
    token far from the block that lost it."""
    error = parse_error(text)
    assert not error.message.endswith("found end of file") and error.line == line
    assert _hint(error) == hint


@pytest.mark.parametrize(
    "text",
    [
        "workflow w {\n  call a {\n    retries 1\n  }\n}\n",  # a key without `=`
        "workflow w {\n  calll a\n}\n",
        "workflow w {\n  if a.b {\n    call x bogus\n  }\n}\n",
        "workflow w {\n  do {\n    call x\n  } while\n}\n",
    ],
)
def test_an_error_in_the_middle_of_a_well_indented_file_has_no_brace_hint(text: str) -> None:
    """Only the indentation can tell a lost `}` from another mistake: when every block's contents
    are indented inside it, nothing is hinted."""
    error = parse_error(text)
    assert "closed?" not in error.detail


def test_an_error_at_the_end_of_the_file_that_is_not_about_a_brace_has_no_hint() -> None:
    for text in ("workflow w", "workflow w { script"):
        error = parse_error(text)
        assert error.message.endswith("found end of file")
        assert error.detail == error.message


def test_a_second_workflow_in_the_same_file_is_silently_ignored() -> None:
    wf = parse("workflow first { call a }\nworkflow second { call b }")
    assert wf.name == "first"
    assert [n.agent.value for n in wf.body] == ["a"]


def test_positions_are_recorded_for_the_workflow_and_every_node() -> None:
    wf = parse("// header\nworkflow w {\n  inputs { x }\n  if x {\n    call a\n  }\n}")
    assert (wf.line, wf.column) == (2, 1)
    assert (wf.inputs[0].line, wf.inputs[0].column) == (3, 12)
    if_node = wf.body[0]
    assert (if_node.line, if_node.column) == (4, 3)
    assert (if_node.body[0].line, if_node.body[0].column) == (5, 5)


def test_positions_do_not_affect_equality() -> None:
    assert parse("workflow w { call a }") == parse("workflow w {\n\n      call   a\n}")


def test_source_path_is_stored_on_the_result_and_in_errors() -> None:
    assert parse_workflow("workflow w {}", "a/b.wf").source_path == "a/b.wf"
    assert parse_workflow("workflow w {}").source_path == ""
    with pytest.raises(WfParseError) as info:
        parse_workflow("workflow {}")
    assert str(info.value).startswith("Parse error in <input>:1:10: ")


def test_unknown_top_level_items_are_errors() -> None:
    error = body_error('  title = "x"')
    assert error.message.startswith("expected `meta`, `inputs`, `always`, a step")
    assert (error.line, error.column) == (2, 3)


# --------------------------------------------------------------------------- meta


def test_meta_sets_title_description_trigger_targets_and_group() -> None:
    wf = parse(
        'workflow w { meta { title = "T" description = "D" trigger = manual targets = [worktree, "repo"]'
        " group = G } }"
    )
    assert (wf.title, wf.description, wf.trigger, wf.targets, wf.group) == (
        "T",
        "D",
        "manual",
        ["worktree", "repo"],
        "G",
    )


def test_quoted_and_bare_meta_values_are_the_same() -> None:
    assert parse('workflow w { meta { trigger = "manual" title = "x" } }') == parse(
        "workflow w { meta { trigger = manual title = x } }"
    )


def test_a_single_target_may_be_written_without_a_list() -> None:
    assert parse("workflow w { meta { targets = repo } }").targets == ["repo"]


def test_later_meta_blocks_override_only_the_keys_they_contain() -> None:
    wf = parse('workflow w { meta { title = "A" group = "G" } call x meta { title = "B" } }')
    assert (wf.title, wf.group) == ("B", "G")


def test_duplicate_meta_keys_keep_the_last_value() -> None:
    assert parse('workflow w { meta { title = "A" title = "B" } }').title == "B"


@pytest.mark.parametrize("trigger", ["pr", "scheduled"])
def test_inactive_triggers_parse_with_a_warning(trigger: str) -> None:
    wf = parse(f"workflow w {{ meta {{ trigger = {trigger} }} }}")
    assert wf.trigger == trigger
    assert wf.warnings == [f"trigger '{trigger}' is not implemented in v1; only 'manual' is active"]


def test_warnings_follow_the_final_trigger() -> None:
    assert parse("workflow w { meta { trigger = pr } meta { trigger = manual } }").warnings == []


def test_an_unknown_trigger_is_an_error_at_its_value() -> None:
    error = parse_error("workflow w {\n  meta {\n    trigger = nightly\n  }\n}")
    assert error.message == "In meta block: unknown trigger: nightly"
    assert (error.line, error.column) == (3, 15)


def test_triggers_are_case_sensitive() -> None:
    assert (
        parse_error("workflow w { meta { trigger = Manual } }").message
        == "In meta block: unknown trigger: Manual"
    )


def test_unknown_meta_keys_are_ignored() -> None:
    assert parse('workflow w { meta { owner = "me" tags = [a, b] extra = { a = b } } }').title is None


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("title = [a]", "In meta block: `title` must be a single value, not a list"),
        ("group = { a = b }", "In meta block: `group` must be a single value, not a map"),
        ("trigger = [manual]", "In meta block: `trigger` must be a single value, not a list"),
        ("targets = { a = b }", "In meta block: `targets` must be a list of values, not a map"),
    ],
)
def test_meta_values_of_the_wrong_shape_are_parse_errors(pair: str, expected: str) -> None:
    assert parse_error(f"workflow w {{ meta {{ {pair} }} }}").message == expected


def test_meta_inside_a_nested_block_is_an_error() -> None:
    error = body_error('  if a.b {\n    meta { title = "x" }\n  }')
    assert error.message == "`meta` is only allowed directly inside `workflow`, not in a nested block"
    assert (error.line, error.column) == (3, 5)


# --------------------------------------------------------------------------- inputs


def inputs_of(block: str) -> list[dict[str, object]]:
    return [decl.to_json() for decl in parse(f"workflow w {{ inputs {{ {block} }} }}").inputs]


def decl(name: str, required: bool, default: str | None = None, description: str | None = None,
         input_type: str = "string") -> dict[str, object]:  # fmt: skip
    return InputDecl(
        name=name, required=required, default=default, description=description, input_type=input_type
    ).to_json()


def test_the_inputs_resolution_example_of_the_spec() -> None:
    assert inputs_of('a b default = "x" c required default = "y" d boolean e boolean required') == [
        decl("a", True),
        decl("b", False, "x"),
        decl("c", True, "y"),
        decl("d", False, input_type="boolean"),
        decl("e", False, input_type="boolean"),
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("ticket_id", decl("ticket_id", True)),
        ("ticket_id required", decl("ticket_id", True)),
        ('scope default = "full"', decl("scope", False, "full")),
        ('scope required default = "full"', decl("scope", True, "full")),
        ('scope default = "full" required', decl("scope", True, "full")),
        ("dry boolean", decl("dry", False, input_type="boolean")),
        ("dry required boolean", decl("dry", False, input_type="boolean")),
        ("dry boolean default = true", decl("dry", False, "true", input_type="boolean")),
        ("n default = 3", decl("n", False, "3")),
        ("n default = 007", decl("n", False, "7")),
        ("mode default = fast", decl("mode", False, "fast")),
        ('c description = "Where"', decl("c", True, description="Where")),
        ('c default = "a" default = "b" description = x description = y', decl("c", False, "b", "y")),
    ],
)
def test_input_declarations(source: str, expected: dict[str, object]) -> None:
    assert inputs_of(source) == [expected]


def test_modifiers_may_span_lines_and_inputs_may_share_a_line() -> None:
    assert inputs_of('a\n  required\n  description\n  =\n  "d" b c') == [
        decl("a", True, description="d"),
        decl("b", True),
        decl("c", True),
    ]


@pytest.mark.parametrize("word", ["required", "boolean", "default", "description"])
def test_an_input_named_like_a_modifier_is_swallowed_by_the_previous_input(word: str) -> None:
    source = f"first {word}" + (' = "v"' if word in ("default", "description") else "")
    assert [d["name"] for d in inputs_of(source)] == ["first"]


@pytest.mark.parametrize("word", ["required", "boolean", "default", "description"])
def test_an_input_named_like_a_modifier_works_first_in_its_block(word: str) -> None:
    assert inputs_of(f"{word} boolean") == [decl(word, False, input_type="boolean")]


@pytest.mark.parametrize("name", ["call", "gate", "workflow", "inputs", "if"])
def test_input_names_may_be_soft_keywords(name: str) -> None:
    assert inputs_of(f"a {name} required") == [decl("a", True), decl(name, True)]


def test_several_inputs_blocks_accumulate_in_order() -> None:
    wf = parse("workflow w { inputs { a } call x inputs { b boolean } }")
    assert [d.name for d in wf.inputs] == ["a", "b"]


def test_duplicate_input_names_are_kept() -> None:
    assert [d["name"] for d in inputs_of("a a")] == ["a", "a"]


def test_an_empty_inputs_block_declares_nothing() -> None:
    assert inputs_of("") == []


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("a default", "expected `=` after `default` of input `a`, found `}`"),
        ("a default = [x]", "expected a value for `default` of input `a`, found `[`"),
        ("a description = { x = y }", "expected a value for `description` of input `a`, found `{`"),
        ('"a"', 'expected an input name or `}` in the inputs block, found string "a"'),
        ("a = 1", "expected an input name or `}` in the inputs block, found `=`"),
        ("meta", "expected an input name or `}` in the inputs block, found keyword `meta`"),
    ],
)
def test_malformed_input_declarations(block: str, expected: str) -> None:
    assert parse_error(f"workflow w {{ inputs {{ {block} }} }}").message == expected


def test_inputs_inside_a_nested_block_is_an_error() -> None:
    assert body_error("  do { inputs { a } }").message == (
        "`inputs` is only allowed directly inside `workflow`, not in a nested block"
    )


# --------------------------------------------------------------------------- always


def test_top_level_always_blocks_append_to_the_always_list() -> None:
    wf = parse("workflow w { always { call a } call b always { call c script s { run = x } } }")
    assert [type(n) for n in wf.always] == [CallNode, CallNode, ScriptNode]
    assert [type(n) for n in wf.body] == [CallNode]
    assert wf.top_level_steps() == 4


def test_always_inside_a_block_is_a_nested_always_node() -> None:
    wf = parse("workflow w { if a.b { always { call x } } }")
    assert wf.always == []
    assert isinstance(wf.body[0].body[0], AlwaysNode)


def test_options_are_not_allowed_in_always() -> None:
    error = parse_error("workflow w { always { retries = 1 } }")
    assert error.message.startswith("expected a step (call, if, unless")
    assert "found identifier `retries`" in error.message


# --------------------------------------------------------------------------- the complete example (§14.1)

EXAMPLE_14_1 = """\
// Nightly docs refresh
workflow docs-refresh {
  meta {
    title   = "Docs refresh"
    trigger = manual
    targets = ["repo"]
    group   = "Maintenance"
  }

  inputs {
    since   default = "7d"
    publish boolean
    channel required description = "Where to announce"
  }

  script gather {
    run = "tools/gather-changes.sh"
    env = { SINCE = "{{since}}" }
  }

  unless gather.nothing_changed {
    do {
      with   = ["docs-voice"]
      output = "doc-patch"
      call draft-docs
      call review-docs { retries = 1 }
    }

    do {
      max_iterations = 3
      on_max_iter    = continue
      call fix-links
      script check-links { run = "tools/check-links.sh" timeout = 300 }
    } while check-links.broken_links

    if publish {
      gate human_approval { prompt = "Publish docs to {{channel}}?" timeout = "8h" }
      call workflow publish-docs { inputs { channel = "{{channel}}" } as = "docs-bot" }
    }
  }

  always {
    script notify { run = "tools/notify.sh" env = { STATUS = "{{workflow_status}}" } }
  }
}
"""


def test_the_complete_example_of_the_spec_parses_as_described() -> None:
    wf = parse(EXAMPLE_14_1)
    assert wf.name == "docs-refresh"
    assert (wf.title, wf.trigger, wf.targets, wf.group) == ("Docs refresh", "manual", ["repo"], "Maintenance")
    assert [d.to_json() for d in wf.inputs] == [
        decl("since", False, "7d"),
        decl("publish", False, input_type="boolean"),
        decl("channel", True, description="Where to announce"),
    ]
    assert [n.type for n in wf.body] == ["script", "unless"]
    assert [n.type for n in wf.always] == ["script"]
    assert wf.top_level_steps() == 3
    assert wf.total_nodes() == 12
    unless = wf.body[1]
    assert isinstance(unless, UnlessNode)
    assert [n.type for n in unless.body] == ["do", "do_while", "if"]
    publish = unless.body[2]
    assert isinstance(publish, IfNode)
    assert publish.body[0].timeout_secs == 8 * 3600
    assert publish.body[1].inputs == {"channel": "{{channel}}"}
    assert publish.body[1].as_identity == "docs-bot"


# --------------------------------------------------------------------------- files


def test_parse_file_reads_utf8_and_keeps_the_path_as_given(tmp_path: Path) -> None:
    path = tmp_path / "flow.wf"
    path.write_text('workflow w { meta { description = "plan — build" } }', encoding="utf-8")
    assert parse_file(path).source_path == str(path)
    assert parse_file(str(path)).description == "plan — build"


def test_parse_file_reports_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.wf"
    with pytest.raises(WfParseError) as info:
        parse_file(path)
    assert info.value.message.startswith(f"Failed to read {path}: ")
    assert info.value.file == str(path)


def test_parse_file_reports_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.wf"
    path.write_bytes(b'workflow w { meta { title = "caf\xe9" } }')
    with pytest.raises(WfParseError) as info:
        parse_file(path)
    assert info.value.message.startswith("cannot read file: not valid UTF-8 (")  # the CLI's wording
    assert "codec" not in info.value.message


def test_parse_file_reports_a_directory(tmp_path: Path) -> None:
    with pytest.raises(WfParseError) as info:
        parse_file(tmp_path)
    assert info.value.message.startswith(f"Failed to read {tmp_path}: ")


def test_a_file_with_a_byte_order_mark_is_a_lexer_error(tmp_path: Path) -> None:
    path = tmp_path / "bom.wf"
    path.write_bytes(b"\xef\xbb\xbfworkflow w {}")
    with pytest.raises(WfLexError) as info:
        parse_file(path)
    assert str(info.value) == f"Lexer error in {path}: Unexpected character '\\u{{FEFF}}' at line 1, col 1"


def test_windows_line_endings_are_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "crlf.wf"
    path.write_bytes(b"workflow w {\r\n  call a\r\n}\r\n")
    wf = parse_file(path)
    assert (wf.body[0].line, wf.body[0].column) == (2, 3)


# --------------------------------------------------------------------------- nesting depth


def nested_ifs(depth: int) -> str:
    return "workflow w {\n" + "if a.b {\n" * depth + "call x\n" + "}\n" * depth + "}\n"


def test_deep_nesting_up_to_the_limit_parses() -> None:
    wf = parse(nested_ifs(MAX_NESTING_DEPTH))
    assert wf.total_nodes() == MAX_NESTING_DEPTH + 1


def test_nesting_beyond_the_limit_is_a_clear_error_not_a_crash() -> None:
    error = parse_error(nested_ifs(MAX_NESTING_DEPTH + 1))
    assert error.message == f"blocks are nested too deeply (more than {MAX_NESTING_DEPTH} levels)"
    assert (error.line, error.column) == (MAX_NESTING_DEPTH + 2, 1)


def test_absurd_nesting_is_still_a_parse_error() -> None:
    text = "workflow w {" + "do {" * 100_000 + "}" * 100_000 + "}"
    assert "nested too deeply" in parse_error(text).message


def test_deep_nesting_also_parses_in_a_worker_thread() -> None:
    outcome: list[object] = []

    def work() -> None:
        try:
            outcome.append(parse(nested_ifs(MAX_NESTING_DEPTH)).total_nodes())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert outcome == [MAX_NESTING_DEPTH + 1]


# ------------------------------------------------------------------ the spec's must-fail list (§14.3)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "workflow w { gate pr_checks { timeout = 2h } }",
            "`timeout = 2h`: a number with a unit must be quoted",
        ),
        ("workflow w { do build { call a } }", "expected `{` after `do`, found identifier `build`"),
        ("workflow w { do { retries = 2 call a } }", "unknown option `retries` in plain `do` block"),
        (
            "workflow w { while ready { max_iterations = 2 call a } }",
            "while condition must be `step.marker`, not a bare identifier `ready`",
        ),
        ("workflow w { parallel { } }", "parallel block must contain at least one call"),
        ('workflow w { call "../secrets/agent.md" }', "agent path contains parent-directory traversal (..)"),
        ("workflow w { script s { timeout = 5 } }", "script 's' is missing required `run` field"),
        (
            "workflow w { gate quality_gate { source = s threshold = 101 } }",
            "quality_gate threshold must be 0-100, got 101",
        ),
        (
            "workflow w { foreach f { over = repos workflow = c } }",
            "foreach 'f': missing required key 'max_parallel'",
        ),
        ("workflow w { meta { trigger = nightly } }", "In meta block: unknown trigger: nightly"),
    ],
)
def test_every_must_fail_example_of_the_spec_fails(source: str, expected: str) -> None:
    error = parse_error(source)
    assert error.message.startswith(expected)
    assert error.line == 1
    assert error.column is not None


def test_the_validation_example_of_the_spec_parses() -> None:
    wf = parse(
        """workflow v {
             inputs { mode }
             if mode { call a }
             while fixer.again {
               max_iterations = 3
               call fixer
             }
             gate quality_gate { source = scorer threshold = 50 }
           }"""
    )
    assert [n.type for n in wf.body] == ["if", "while", "gate"]
    assert wf.inputs[0].required is True


def test_text_after_the_closing_brace_is_ignored_with_a_warning() -> None:
    """Ignored as specified, but a stray `}` or a second workflow in the file is worth a word."""
    wf = parse_workflow("workflow x {\n  call a\n}}\nworkflow y { call b }\n", "x.wf")
    assert [type(n).__name__ for n in wf.body] == ["CallNode"]
    assert wf.warnings == ["text after the closing `}` of workflow `x` (from line 3, column 2) is ignored"]
    assert parse_workflow("workflow x { call a }\n// a comment after it\n").warnings == []
