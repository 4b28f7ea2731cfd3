"""What the language accepts, as the spec says it must, but a person most likely did not mean:
option keys that do nothing, `fail_fast = maybe`, a call timeout the engine cannot read, a negative
number, duplicate inputs and step names, inputs a sub-workflow does not declare. Each is said where
it was written; none changes what parses or makes a valid workflow invalid."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.lexer import tokenize
from runkon_flow.errors import WfLexError

from tests.dsl.wf_testing import SOURCE, parse_body

# --------------------------------------------------------------------------- negative numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call a { retries = -1 }", "negative numbers are not allowed: retries must be 0 or more"),
        ("call a { max_turns =\n -3 }", "negative numbers are not allowed: max_turns must be 0 or more"),
        ("gate quality_gate { threshold = -5 }", "negative numbers are not allowed: threshold must be 0-100"),
        ("script s { timeout = -1 }", "negative numbers are not allowed: timeout must be 0 or more"),
        (
            "inputs { n default = -2 }",
            'negative numbers are not allowed: write "-2" in quotes if `default` is text',
        ),
    ],
)
def test_a_negative_number_after_a_key_says_so_instead_of_unexpected_character(
    text: str, expected: str
) -> None:
    with pytest.raises(WfLexError) as info:
        tokenize(f"workflow w {{ {text} }}", SOURCE)
    assert info.value.message == expected
    assert "Unexpected character" not in str(info.value)


def test_a_minus_anywhere_else_keeps_the_specs_message() -> None:
    with pytest.raises(WfLexError) as info:
        tokenize("workflow w { call a { with = [-1] } }", SOURCE)
    assert info.value.message == "Unexpected character '-' at line 1, col 31"


def test_what_parses_is_unchanged_a_minus_inside_a_name_or_a_string_is_fine() -> None:
    [call] = parse_body('  call re-try { retries = 1 as = "-1" }')
    assert (call.agent.value, call.retries, call.as_identity) == ("re-try", 1, "-1")
