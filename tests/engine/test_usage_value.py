"""`runkon_flow.usage.Usage`: what is read from metadata and FLOW_OUTPUT, how it adds and reads."""

from __future__ import annotations

from runkon_flow.usage import Usage, usage_metadata


def test_metadata_numbers_are_read_and_bad_values_left_out() -> None:
    metadata = {"input_tokens": "1200", "output_tokens": "3.0", "cost_usd": "0.25", "num_turns": "x"}
    usage = Usage.from_metadata({**metadata, "duration_ms": "9"})
    assert usage == Usage(input_tokens=1200, output_tokens=3, cost_usd=0.25)
    assert Usage.from_metadata({"duration_ms": "50"}) is None  # every script reports a duration: not usage
    assert Usage.from_metadata({"cost_usd": "-1", "input_tokens": "nan"}) is None
    assert Usage.from_metadata(None) is None


def test_a_flow_output_usage_object_becomes_metadata() -> None:
    block = {"markers": [], "usage": {"input_tokens": 10, "cost_usd": 0.5, "colour": "red"}}
    assert usage_metadata(block) == {"input_tokens": "10", "cost_usd": "0.5"}
    assert usage_metadata({"usage": "lots"}) == {} and usage_metadata(None) == {}


def test_sums_json_and_words() -> None:
    a, b = Usage(1000, 200, 300, 0, 2, 0.1), Usage(500, 0, 0, 0, 1, 0.025)
    total = Usage.total([a, None, b])
    assert total == Usage(1500, 200, 300, 0, 3, 0.125)
    assert Usage.from_json(total.to_json()) == total
    assert Usage.from_json("not json") is None and Usage.total([None]) is None
    assert total.short() == "2.0k tok · $0.12"
    assert total.long() == "2,000 tokens (1,500 in, 200 out, 300 cached) · 3 turns · $0.1250"
    assert Usage(cost_usd=0.004).short() == "$0.004" and Usage(num_turns=1).short() == "1 turn"
