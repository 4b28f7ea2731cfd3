"""`call` — agent references and every call option (dsl.md §6.0, §6.1)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import AgentRef, CallNode, OnFailAgent, OnFailContinue

from .wf_testing import body_error, only, parse_body


def call(source: str) -> CallNode:
    node = only(source)
    assert isinstance(node, CallNode)
    return node


# --------------------------------------------------------------------------- agent references


def test_a_bare_call_has_every_default() -> None:
    assert call("call summarize").to_json() == {
        "type": "call",
        "agent": {"kind": "name", "value": "summarize"},
        "retries": 0,
        "on_fail": None,
        "output": None,
        "with": [],
        "as_identity": None,
        "plugin_dirs": [],
        "timeout": None,
        "max_turns": None,
    }


@pytest.mark.parametrize("name", ["review-pr", "required", "default", "description", "true", "continue"])
def test_agent_names_are_identifiers_or_three_modifier_keywords(name: str) -> None:
    assert call(f"call {name}").agent == AgentRef(kind="name", value=name)


@pytest.mark.parametrize("word", ["gate", "if", "boolean", "inputs", "always", "meta", "do"])
def test_other_keywords_cannot_be_agent_names(word: str) -> None:
    error = body_error(f"  call {word}")
    assert error.message == (
        'expected an agent name or a quoted agent path (`call "agents/x.md"`) after `call`, '
        f"found keyword `{word}`"
    )
    assert (error.line, error.column) == (2, 8)


def test_a_quoted_agent_is_always_a_path_even_without_a_slash() -> None:
    node = call('call "plan"')
    assert node.agent == AgentRef(kind="path", value="plan")
    assert node.step_key() == "plan"


def test_the_step_key_of_a_path_is_its_file_stem() -> None:
    assert call('call ".claude/agents/plan.md"').step_key() == "plan"
    assert call('call "agents/triage.v2.md"').step_key() == "triage.v2"


@pytest.mark.parametrize("path", ["../secrets/agent.md", "agents/../../x.md", "a/..", ".."])
def test_parent_directory_traversal_in_an_agent_path_is_refused(path: str) -> None:
    error = body_error(f'  call "{path}"')
    assert error.message == f"agent path contains parent-directory traversal (..): {path}"
    assert (error.line, error.column) == (2, 8)


@pytest.mark.parametrize("path", ["..agents/x.md", "agents/x..md", "./agents/x.md", "/abs/x.md"])
def test_dots_that_are_not_a_parent_component_are_fine(path: str) -> None:
    assert call(f'call "{path}"').agent.value == path


def test_consecutive_calls_need_no_separator() -> None:
    assert [n.agent.value for n in parse_body("call a call b\ncall c")] == ["a", "b", "c"]


# --------------------------------------------------------------------------- options


def test_every_call_option() -> None:
    node = call(
        """call draft-notes {
             output      = "release-notes"
             with        = ["tone-guide", "changelog-rules"]
             timeout     = "15m"
             as          = "docs-bot"
             on_fail     = "agents/fallback-notes.md"
             retries     = 2
             plugin_dirs = ["plugins/a", "plugins/b"]
             max_turns   = 40
           }"""
    )
    assert node.to_json() == {
        "type": "call",
        "agent": {"kind": "name", "value": "draft-notes"},
        "retries": 2,
        "on_fail": {"kind": "agent", "value": {"kind": "path", "value": "agents/fallback-notes.md"}},
        "output": "release-notes",
        "with": ["tone-guide", "changelog-rules"],
        "as_identity": "docs-bot",
        "plugin_dirs": ["plugins/a", "plugins/b"],
        "timeout": "15m",
        "max_turns": 40,
    }


def test_options_on_one_line_need_no_separators() -> None:
    node = call('call a { retries = 1 output = "x" as = bot }')
    assert (node.retries, node.output, node.as_identity) == (1, "x", "bot")


def test_a_comma_between_pairs_is_an_error() -> None:
    error = body_error("  call a { retries = 1, output = x }")
    assert error.message == "expected `key = value` or `}` in the options of `call a`, found `,`"
    assert (error.line, error.column) == (2, 23)


def test_an_empty_option_block_is_allowed() -> None:
    assert call("call a {}") == call("call a")


def test_unknown_keys_are_ignored() -> None:
    assert call("call a { retires = 2 model = fast }") == call("call a")


def test_a_repeated_key_keeps_its_last_value() -> None:
    assert call("call a { retries = 1 retries = 3 }").retries == 3


@pytest.mark.parametrize("value", ["2", '"2"', '"+2"', "002"])
def test_retries_accepts_bare_and_quoted_unsigned_numbers(value: str) -> None:
    assert call(f"call a {{ retries = {value} }}").retries == 2


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"-1"', "invalid digit found in string"),
        ('"two"', "invalid digit found in string"),
        ('" 2"', "invalid digit found in string"),
        ('"+"', "invalid digit found in string"),
        ('""', "cannot parse integer from empty string"),
        ('"4294967296"', "number too large to fit in target type"),
        ("many", "invalid digit found in string"),
    ],
)
def test_bad_retries_name_the_reason(value: str, reason: str) -> None:
    error = body_error(f"  call a {{ retries = {value} }}")
    assert error.message == f"invalid retries: {reason}"
    assert (error.line, error.column) == (2, 22)


def test_max_turns_is_an_unsigned_number() -> None:
    assert call("call a { max_turns = 4294967295 }").max_turns == 4294967295
    assert body_error('  call a { max_turns = "lots" }').message == "invalid u32: lots"


@pytest.mark.parametrize("value", ['"30s"', '"5m"', '"1h"', '"500ms"', "90", '"whenever"'])
def test_call_timeout_is_kept_as_text_for_the_runtime(value: str) -> None:
    assert call(f"call a {{ timeout = {value} }}").timeout == value.strip('"')


def test_with_and_plugin_dirs_accept_a_single_value_as_a_one_item_list() -> None:
    node = call('call a { with = tone plugin_dirs = "p" }')
    assert (node.with_, node.plugin_dirs) == (["tone"], ["p"])


def test_with_list_syntax_allows_optional_and_trailing_commas() -> None:
    assert call("call a { with = [a, b c, d,] }").with_ == ["a", "b", "c", "d"]
    assert call("call a { with = [] }").with_ == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("with = { a = b }", "`with` must be a list of values, not a map"),
        ("plugin_dirs = { a = b }", "`plugin_dirs` must be a list of values, not a map"),
        ("output = [a]", "`output` must be a single value, not a list"),
        ("as = { a = b }", "`as` must be a single value, not a map"),
        ("timeout = [a]", "`timeout` must be a single value, not a list"),
        ("retries = [1]", "`retries` must be a single value, not a list"),
        ("on_fail = [a]", "`on_fail` must be a single value, not a list"),
        ("with = [[a]]", "`with`: list items must be single values, not a list"),
        ("with = [{ a = b }]", "`with`: list items must be single values, not a map"),
        ("with = [, a]", "expected a list item or `]` in `with`, found `,`"),
        ("with = [a,, b]", "expected a list item or `]` in `with`, found `,`"),
        ("with = [a", "expected a list item or `]` in `with`, found `}`"),
    ],
)
def test_values_of_the_wrong_shape_are_parse_errors(source: str, expected: str) -> None:
    assert body_error(f"  call a {{ {source} }}").message == expected


# --------------------------------------------------------------------------- on_fail (§6.0)


@pytest.mark.parametrize("value", ["continue", '"continue"'])
def test_on_fail_continue_quoted_or_bare(value: str) -> None:
    assert call(f"call a {{ on_fail = {value} }}").on_fail == OnFailContinue()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fixer", AgentRef(kind="name", value="fixer")),
        ('"fixer"', AgentRef(kind="name", value="fixer")),
        ('"agents/fixer.md"', AgentRef(kind="path", value="agents/fixer.md")),
        ("step.field", AgentRef(kind="name", value="step.field")),
        ("gate", AgentRef(kind="name", value="gate")),
        ("7", AgentRef(kind="name", value="7")),
    ],
)
def test_on_fail_agent_references(value: str, expected: AgentRef) -> None:
    assert call(f"call a {{ on_fail = {value} }}").on_fail == OnFailAgent(value=expected)


def test_a_quoted_on_fail_path_is_checked_for_traversal() -> None:
    error = body_error('  call a {\n    on_fail = "../x/fix.md"\n  }')
    assert error.message == "agent path contains parent-directory traversal (..): ../x/fix.md"
    assert (error.line, error.column) == (3, 15)
