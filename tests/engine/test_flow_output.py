"""FLOW_OUTPUT block parsing (engine.md §12.4)."""

from __future__ import annotations

import json

from runkon_flow.plugins.flow_output import FLOW_OUTPUT_INSTRUCTION, parse_flow_output


def block(body: str) -> str:
    return f"<<<FLOW_OUTPUT>>>\n{body}\n<<<END_FLOW_OUTPUT>>>"


def test_markers_context_and_extras_are_read() -> None:
    out = parse_flow_output("work…\n" + block('{"markers":["ok"],"context":"main","base":"r1","n":3}'))
    assert out is not None
    assert out.markers == ["ok"]
    assert out.context == "main"
    assert out.extras == {"base": "r1", "n": 3}
    assert out.string_exports() == {"base": "r1"}


def test_serialisation_puts_extras_back_at_top_level() -> None:
    out = parse_flow_output(block('{"markers":[],"context":"c","x":"y"}'))
    assert out is not None
    assert json.loads(out.to_json()) == {"markers": [], "context": "c", "x": "y"}


def test_the_last_block_that_starts_with_json_wins() -> None:
    text = (
        block('{"markers":["first"]}')
        + "\nmention of <<<FLOW_OUTPUT>>> in prose\n"
        + block('{"markers":["second"]}')
    )
    out = parse_flow_output(text)
    assert out is not None and out.markers == ["second"]


def test_a_start_marker_in_prose_is_ignored() -> None:
    text = block('{"markers":["real"]}') + "\nI printed <<<FLOW_OUTPUT>>> as asked."
    out = parse_flow_output(text)
    assert out is not None and out.markers == ["real"]


def test_code_fences_are_stripped() -> None:
    out = parse_flow_output(block('```json\n{"markers":["f"],"context":"x"}\n```'))
    assert out is not None and out.markers == ["f"]


def test_trailing_commas_and_lone_backslashes_are_repaired() -> None:
    out = parse_flow_output(block('{"markers":["a",],"context":"C:\\path\\dir",}'))
    assert out is not None
    assert out.markers == ["a"]
    assert out.context == "C:\\path\\dir"


def test_commas_inside_strings_are_kept() -> None:
    out = parse_flow_output(block('{"markers":[],"context":"a, ]b"}'))
    assert out is not None and out.context == "a, ]b"


def test_missing_fields_default_to_empty() -> None:
    out = parse_flow_output(block("{}"))
    assert out is not None and (out.markers, out.context) == ([], "")


def test_wrong_types_or_non_objects_give_none() -> None:
    assert parse_flow_output(block('{"markers":"ok"}')) is None
    assert parse_flow_output(block('{"markers":[1]}')) is None
    assert parse_flow_output(block('{"context":5}')) is None
    assert parse_flow_output(block('["ok"]')) is None
    assert parse_flow_output(block("{not json")) is None


def test_no_block_or_no_end_marker_gives_none() -> None:
    assert parse_flow_output("just text") is None
    assert parse_flow_output('<<<FLOW_OUTPUT>>>\n{"markers":[]}') is None


def test_the_instruction_shows_the_block_format() -> None:
    assert "<<<FLOW_OUTPUT>>>" in FLOW_OUTPUT_INSTRUCTION
    assert "<<<END_FLOW_OUTPUT>>>" in FLOW_OUTPUT_INSTRUCTION


def test_a_block_nested_too_deep_is_malformed_not_an_engine_crash() -> None:
    """100,000 nested arrays in a step's block made `json.loads` raise RecursionError, and the
    run ended "internal error" with a traceback; 101 levels parse but would recurse later."""
    from runkon_flow.plugins.flow_output import FLOW_OUTPUT_END, FLOW_OUTPUT_START

    def nested(depth: int) -> str:
        body = f'{{"markers": ["m"], "x": {"[" * depth}{"]" * depth}}}'
        return f"{FLOW_OUTPUT_START}\n{body}\n{FLOW_OUTPUT_END}\n"

    assert parse_flow_output(nested(100_000)) is None
    assert parse_flow_output(nested(100)) is None  # the object itself is one level
    parsed = parse_flow_output(nested(99))
    assert parsed is not None and parsed.markers == ["m"]
