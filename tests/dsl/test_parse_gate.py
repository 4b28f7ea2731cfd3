"""`gate` — approval gates, durations, options and quality gates (dsl.md §3.5, §6.8)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import GateNode

from .wf_testing import body_error, only


def gate(source: str) -> GateNode:
    node = only(source)
    assert isinstance(node, GateNode)
    return node


# --------------------------------------------------------------------------- approval gates


def test_a_gate_has_every_default_and_its_name_is_its_type() -> None:
    node = gate("gate pr_checks {}")
    assert node.to_json() == {
        "type": "gate",
        "name": "pr_checks",
        "gate_type": "pr_checks",
        "prompt": None,
        "min_approvals": 1,
        "approval_mode": "min_approvals",
        "timeout_secs": 86400,
        "on_timeout": "fail",
        "as_identity": None,
        "options": None,
    }
    assert node.is_quality_gate is False


@pytest.mark.parametrize(
    "kind", ["human_approval", "human_review", "pr_approval", "my-custom_gate", "workflow"]
)
def test_any_gate_type_is_accepted_by_the_parser(kind: str) -> None:
    assert gate(f"gate {kind} {{}}").gate_type == kind


def test_a_gate_needs_an_option_block() -> None:
    assert body_error("  gate pr_checks").message == "expected `{` after `gate pr_checks`, found `}`"


def test_every_approval_gate_option() -> None:
    node = gate(
        """gate human_approval {
             prompt     = "Ship build {{build_id}}?"
             timeout    = "4h"
             on_timeout = continue
             as         = "release-bot"
             options    = { ship = "Ship now" hold = "Hold for a day" }
             min_approvals = 2
           }"""
    )
    assert node.prompt == "Ship build {{build_id}}?"
    assert node.timeout_secs == 4 * 3600
    assert node.on_timeout == "continue"
    assert node.as_identity == "release-bot"
    assert node.options == {"ship": "Ship now", "hold": "Hold for a day"}
    assert node.min_approvals == 2


def test_review_decision_mode() -> None:
    assert gate("gate pr_approval { mode = review_decision }").approval_mode == "review_decision"
    assert gate('gate pr_approval { mode = "min_approvals" }').approval_mode == "min_approvals"


def test_review_decision_cannot_be_combined_with_min_approvals() -> None:
    error = body_error("  gate pr_approval { mode = review_decision min_approvals = 1 }")
    assert error.message == 'Cannot specify both mode = "review_decision" and min_approvals'
    assert (error.line, error.column) == (2, 45)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["approve", "reject"]', {"approve": "approve", "reject": "reject"}),
        ("[a b a]", {"a": "a", "b": "b"}),
        ("[]", {}),
        ("{}", {}),
        ('"plan.choices"', "plan.choices"),
        ("plan.choices", "plan.choices"),
    ],
)
def test_options_forms(value: str, expected: object) -> None:
    assert gate(f"gate human_review {{ options = {value} }}").options == expected


def test_options_as_a_plain_word_is_an_error() -> None:
    error = body_error('  gate human_review { options = "approve" }')
    assert error.message == (
        'Invalid `options` value \'approve\': expected a map { key = "label" }, an array ["a", "b"], '
        "or a step field reference like 'step.field'"
    )
    assert (error.line, error.column) == (2, 33)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ('"72h"', 259200),
        ('"30m"', 1800),
        ('"45s"', 45),
        ('"90"', 90),
        ("90", 90),
        ('"0"', 0),
        ('"  2h  "', 7200),
        ('"+2h"', 7200),
        (r'"\"2h\""', 7200),
        ('"5124095576030431h"', 5124095576030431 * 3600),
    ],
)
def test_gate_timeouts(value: str, seconds: int) -> None:
    assert gate(f"gate pr_checks {{ timeout = {value} }}").timeout_secs == seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"1h30m"', "Invalid duration '1h30m': invalid digit found in string"),
        ('"5ms"', "Invalid duration '5ms': invalid digit found in string"),
        ('"2d"', "Invalid duration '2d': invalid digit found in string"),
        ('"1.5h"', "Invalid duration '1.5h': invalid digit found in string"),
        ('"h"', "Invalid duration 'h': cannot parse integer from empty string"),
        ('""', "Invalid duration '': cannot parse integer from empty string"),
        ('"-5s"', "Invalid duration '-5s': invalid digit found in string"),
        (
            '"18446744073709551616"',
            "Invalid duration '18446744073709551616': number too large to fit in target type",
        ),
        ('"5124095576030432h"', "Duration overflow: '5124095576030432h' exceeds u64 range"),
    ],
)
def test_bad_gate_timeouts(value: str, expected: str) -> None:
    """The spec's message comes first; what to write instead follows as a hint (test below)."""
    error = body_error(f"  gate pr_checks {{ timeout = {value} }}")
    assert error.message.split(" (hint: ")[0] == expected
    assert (error.line, error.column) == (2, 30)


def test_a_bare_unit_duration_is_a_syntax_error_with_a_quoting_hint() -> None:
    error = body_error("  gate pr_checks { timeout = 2h }")
    assert error.message == '`timeout = 2h`: a number with a unit must be quoted, e.g. `timeout = "2h"`'
    assert (error.line, error.column) == (2, 30)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('min_approvals = "x"', "Invalid min_approvals: invalid digit found in string"),
        ("mode = majority", "Invalid mode for pr_approval: majority"),
        ("on_timeout = skip", "Invalid on_timeout: skip"),
        ('on_timeout = "Fail"', "Invalid on_timeout: Fail"),
        ("prompt = [a]", "`prompt` must be a single value, not a list"),
        ("options = [[a]]", "`options`: list items must be single values, not a list"),
        # checks run in the spec's order: min_approvals, mode, conflict, timeout, on_timeout, options
        ('min_approvals = "x" mode = bad', "Invalid min_approvals: invalid digit found in string"),
        ('mode = bad timeout = "x"', "Invalid mode for pr_approval: bad"),
        ('timeout = "x" on_timeout = skip', "Invalid duration 'x': invalid digit found in string"),
        ('on_timeout = skip options = "x"', "Invalid on_timeout: skip"),
    ],
)
def test_bad_gate_options(options: str, expected: str) -> None:
    assert body_error(f"  gate pr_approval {{ {options} }}").message.split(" (hint: ")[0] == expected


def test_quality_gate_keys_are_ignored_on_approval_gates() -> None:
    node = gate("gate human_approval { source = s threshold = 500 on_fail = whatever }")
    assert node.source is None
    assert "source" not in node.to_json()


# --------------------------------------------------------------------------- quality gates


def test_a_quality_gate_records_fixed_approval_settings_and_flattens_its_own_fields() -> None:
    node = gate("gate quality_gate { source = scorer threshold = 75 on_fail = continue as = bot }")
    assert node.is_quality_gate
    assert node.to_json() == {
        "type": "gate",
        "name": "quality_gate",
        "gate_type": "quality_gate",
        "prompt": None,
        "min_approvals": 1,
        "approval_mode": "min_approvals",
        "timeout_secs": 0,
        "on_timeout": "fail",
        "as_identity": "bot",
        "options": None,
        "source": "scorer",
        "threshold": 75,
        "on_fail_action": "continue",
    }


def test_a_quality_gate_ignores_approval_options() -> None:
    node = gate(
        'gate quality_gate { source = s threshold = 0 prompt = "p" timeout = "2h" mode = x min_approvals = y'
        " }"
    )
    assert (node.prompt, node.timeout_secs, node.on_fail_action, node.threshold) == (None, 0, "fail", 0)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("threshold = 50", "quality_gate requires a `source` field referencing a prior step"),
        ("source = s", "quality_gate requires a `threshold` field (0-100)"),
        ("source = s threshold = 101", "quality_gate threshold must be 0-100, got 101"),
        ('source = s threshold = "high"', "Invalid threshold: invalid digit found in string"),
        ("source = s threshold = 50 on_fail = rescue", "Invalid on_fail for quality_gate: rescue"),
        (
            'source = s threshold = 50 on_fail = "agents/x.md"',
            "Invalid on_fail for quality_gate: agents/x.md",
        ),
        ("source = s threshold = 50 options = [a]", "`options` is not valid on quality_gate gates"),
        ("source = [s] threshold = 50", "`source` must be a single value, not a list"),
    ],
)
def test_bad_quality_gates(options: str, expected: str) -> None:
    assert body_error(f"  gate quality_gate {{ {options} }}").message == expected


def test_a_missing_source_points_at_the_gate_and_a_bad_threshold_at_its_value() -> None:
    error = body_error("  gate quality_gate {\n    threshold = 5\n  }")
    assert (error.line, error.column) == (2, 3)
    error = body_error("  gate quality_gate {\n    source = s\n    threshold = 101\n  }")
    assert (error.line, error.column) == (4, 17)
