"""`{{key}}` substitution (engine.md §12.1) and shell quoting."""

from __future__ import annotations

import subprocess

import pytest
from runkon_flow.dsl.templating import (
    shell_quote,
    substitute_variables,
    substitute_variables_keep_literal,
)


def test_known_keys_are_replaced_and_unknown_ones_removed() -> None:
    assert substitute_variables("hi {{name}}, {{missing}}!", {"name": "Ada"}) == "hi Ada, !"


def test_keep_literal_mode_leaves_unknown_placeholders_in_place() -> None:
    text = "{{a}} and {{item.title}}"
    assert substitute_variables_keep_literal(text, {"a": "1"}) == "1 and {{item.title}}"


def test_the_key_is_taken_literally_without_trimming() -> None:
    assert substitute_variables("[{{ name }}]", {"name": "x", " name ": "spaced"}) == "[spaced]"


def test_inserted_values_are_never_rescanned() -> None:
    assert substitute_variables("{{a}}", {"a": "{{b}}", "b": "nope"}) == "{{b}}"


def test_an_unterminated_placeholder_copies_the_rest_verbatim() -> None:
    assert substitute_variables("x {{a}} y {{b", {"a": "1", "b": "2"}) == "x 1 y {{b"


def test_dots_are_part_of_the_key() -> None:
    assert substitute_variables("{{item.id}}", {"item.id": "42"}) == "42"


@pytest.mark.parametrize(
    "value",
    ["plain", "it's", "$(touch pwned)", "`id`", "a\nb", "x; rm -rf /", "'; echo hi; '", '"$HOME"', ""],
)
def test_shell_quote_round_trips_through_sh(value: str) -> None:
    out = subprocess.run(["sh", "-c", f"printf %s {shell_quote(value)}"], capture_output=True, text=True)
    assert out.stdout == value
