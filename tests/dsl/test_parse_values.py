"""The key/value sub-language: keys, value forms, lists, maps and coercions (dsl.md §3)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.durations import (
    DurationError,
    parse_call_timeout,
    parse_gate_timeout,
    parse_unsigned,
    unsigned_error,
)

from .wf_testing import body_error, only, parse, parse_error

# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("key", ["env_var", "required", "default", "description", "if", "workflow", "inputs"])
def test_map_keys_are_identifiers_or_the_six_key_keywords(key: str) -> None:
    assert only(f"script s {{ run = x env = {{ {key} = v }} }}").env == {key: "v"}


@pytest.mark.parametrize(
    "key", ["boolean", "call", "gate", "unless", "while", "parallel", "always", "script"]
)
def test_other_keywords_are_not_keys(key: str) -> None:
    error = body_error(f"  script s {{ run = x env = {{ {key} = v }} }}")
    assert error.message == f"expected `key = value` or `}}` in the `env` map, found keyword `{key}`"


def test_a_key_without_equals_ends_the_pairs() -> None:
    error = body_error("  call a { retries 2 }")
    assert (
        error.message
        == "expected `key = value` or `}` in the options of `call a`, found identifier `retries`"
    )


def test_pairs_are_read_greedily_across_lines_and_on_one_line() -> None:
    node = only("parallel {\n  output = x with = [a]\n  min_success\n  =\n  1 call a }")
    assert (node.output, node.with_, node.min_success) == ("x", ["a"], 1)


# --------------------------------------------------------------------------- value forms


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('"quoted text"', "quoted text"),
        ("42", "42"),
        ("0042", "42"),
        ("bare-word", "bare-word"),
        ("step1.ready", "step1.ready"),
        ("step1 . ready", "step1.ready"),
        ("a.gate", "a.gate"),
        ("required", "required"),
        ("gate", "gate"),
        ("workflow", "workflow"),
        ("inputs", "inputs"),
        ("true", "true"),
    ],
)
def test_scalar_value_forms(value: str, text: str) -> None:
    assert only(f"call a {{ output = {value} }}").output == text


@pytest.mark.parametrize("value", ["meta", "do"])
def test_meta_and_do_are_never_values(value: str) -> None:
    assert body_error(f"  call a {{ output = {value} }}").message == (
        f"expected a value for `output`, found keyword `{value}`"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a.b.c", "expected `key = value` or `}` in the options of `call a`, found `.`"),
        ("gate.x", "expected `key = value` or `}` in the options of `call a`, found `.`"),
        ("a.", "expected a name after `a.`, found `}`"),
        ("a.5", "expected a name after `a.`, found integer `5`"),
        ("1.5", "expected `key = value` or `}` in the options of `call a`, found `.`"),
        ("=", "expected a value for `output`, found `=`"),
        ("}", "expected a value for `output`, found `}`"),
    ],
)
def test_malformed_scalars(value: str, expected: str) -> None:
    assert body_error(f"  call a {{ output = {value} }}").message == expected


def test_quoted_and_bare_values_mean_the_same_outside_on_fail() -> None:
    bare = "foreach f { over = tickets max_parallel = 2 workflow = child ordered = true on_cycle = warn }"
    quoted = 'foreach f { over = "tickets" max_parallel = "2" workflow = "child" '
    quoted += 'ordered = "true" on_cycle = "warn" }'
    assert only(bare) == only(quoted)


def test_lists_take_any_scalar_form() -> None:
    node = only('call a { with = ["q", 7, bare, a.b, gate, required] }')
    assert node.with_ == ["q", "7", "bare", "a.b", "gate", "required"]


def test_maps_take_any_scalar_form_and_later_keys_win() -> None:
    node = only('script s { run = x env = { A = "q" B = 7 C = a.b D = gate A = again } }')
    assert node.env == {"A": "again", "B": "7", "C": "a.b", "D": "gate"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("{ A = 1, B = 2 }", "expected `key = value` or `}` in the `env` map, found `,`"),
        ('{ "A" = 1 }', 'expected `key = value` or `}` in the `env` map, found string "A"'),
        ("{ A = [1] }", "`env`: map values must be single values, not a list"),
        ("{ A = { B = 1 } }", "`env`: map values must be single values, not a map"),
        ("{ A }", "expected `key = value` or `}` in the `env` map, found identifier `A`"),
        ("{ A = }", "expected a value for `A` in `env`, found `}`"),
    ],
)
def test_malformed_maps(env: str, expected: str) -> None:
    assert body_error(f"  script s {{ run = x env = {env} }}").message == expected


@pytest.mark.parametrize(
    ("step", "expected", "column"),
    [
        ("script s { run = {{cmd}} }", '`{{cmd}}` must be inside double quotes: write `run = "{{cmd}}"`', 20),
        (
            "script s { run = x env = { A = {{n}} } }",
            '`{{n}}` must be inside double quotes: write `A = "{{n}}"`',
            34,
        ),
        (
            "call workflow c { inputs { name = {{item.id}} } }",
            '`{{item.id}}` must be inside double quotes: write `name = "{{item.id}}"`',
            37,
        ),
        (
            "foreach f { over = static max_parallel = 1 workflow = c inputs = { who = {{ }} } }",
            '`{{…}}` must be inside double quotes: write `who = "{{…}}"`',
            76,
        ),
    ],
)
def test_a_bare_placeholder_is_told_to_go_in_quotes(step: str, expected: str, column: int) -> None:
    """`env = { A = {{n}} }` said `map values must be single values, not a map` and `run = {{cmd}}`
    `expected key = value or } in the run map, found {`: neither said the placeholder needs quotes."""
    error = body_error(f"  {step}")
    assert error.message == f"{expected} (a placeholder is text in a string)"
    assert (error.line, error.column) == (2, column)


@pytest.mark.parametrize(
    ("step", "expected", "column"),
    [
        (
            "script s { run = echo hi there }",
            '`run = echo hi there`: text with spaces must be in double quotes: `run = "echo hi there"`',
            20,
        ),
        (
            'script s { run = "x" env = { A = b c } }',
            '`A = b c`: text with spaces must be in double quotes: `A = "b c"`',
            36,
        ),
        (
            "call workflow c { inputs { who = John Smith } }",
            '`who = John Smith`: text with spaces must be in double quotes: `who = "John Smith"`',
            36,
        ),
    ],
)
def test_unquoted_text_with_spaces_is_told_to_go_in_quotes(step: str, expected: str, column: int) -> None:
    """`run = echo hi` was refused at `hi` with `expected key = value or } in script s, found
    identifier hi`, which does not say the quotes are missing; now at the value, saying so."""
    error = body_error(f"  {step}")
    assert error.message == expected
    assert (error.line, error.column) == (2, column)


def test_a_bare_value_before_the_next_key_or_line_is_fine() -> None:
    assert only("script s { run = x retries = 2 }").run == "x"
    assert [n.run for n in parse("workflow w {\n  script s { run = x }\n  script t { run = y }\n}").body] == [
        "x",
        "y",
    ]


def test_an_option_name_after_a_bare_value_is_not_taken_for_unquoted_text() -> None:
    """`over = static ordered`: an option written without its `= value`, not the text `static
    ordered` — the message names the option, not missing quotes."""
    error = body_error("  foreach f { over = static ordered workflow = w }")
    assert "double quotes" not in error.message
    assert error.message == "expected `key = value` or `}` in `foreach f`, found identifier `ordered`"


def test_an_unterminated_map_at_the_end_of_the_file() -> None:
    error = parse_error("workflow w {\n  script s { run = x env = { A = 1")
    assert error.message == "expected `key = value` or `}` in the `env` map, found end of file"
    assert (error.line, error.column) == (2, 35)


# --------------------------------------------------------------------------- unknown keys (§3.6)


@pytest.mark.parametrize(
    ("plain", "with_unknown"),
    [
        ("workflow w { meta { title = t } }", "workflow w { meta { title = t colour = red } }"),
        ("workflow w { call a }", "workflow w { call a { retires = 2 } }"),
        ("workflow w { call workflow c }", "workflow w { call workflow c { colour = red } }"),
        (
            "workflow w { parallel { call a } }",
            "workflow w { parallel { colour = red call a { colour = red } } }",
        ),
        ("workflow w { gate g {} }", "workflow w { gate g { colour = red } }"),
        ("workflow w { script s { run = x } }", "workflow w { script s { run = x colour = red } }"),
        (
            "workflow w { foreach f { over = o max_parallel = 1 workflow = c } }",
            "workflow w { foreach f { over = o max_parallel = 1 workflow = c colour = red } }",
        ),
        (
            "workflow w { while a.b { max_iterations = 1 } }",
            "workflow w { while a.b { max_iterations = 1 c = r } }",
        ),
        (
            "workflow w { do { max_iterations = 1 } while a.b }",
            "workflow w { do { max_iterations = 1 c = r } while a.b }",
        ),
        ("workflow w { if a.b {} }", "workflow w { if a.b { colour = red } }"),
        ("workflow w { unless a {} }", "workflow w { unless a { colour = [red] } }"),
    ],
)
def test_unknown_keys_are_ignored_everywhere_except_plain_do(plain: str, with_unknown: str) -> None:
    assert parse(with_unknown) == parse(plain)


def test_unknown_keys_of_any_shape_are_ignored() -> None:
    assert only("call a { tags = [x, y] extra = { k = v } }") == only("call a")


# --------------------------------------------------------------------------- coercions


@pytest.mark.parametrize(
    ("text", "maximum", "reason"),
    [
        ("0", 2**32 - 1, None),
        ("+7", 2**32 - 1, None),
        ("4294967295", 2**32 - 1, None),
        ("00000000000000000004294967295", 2**32 - 1, None),
        ("4294967296", 2**32 - 1, "number too large to fit in target type"),
        ("18446744073709551615", 2**64 - 1, None),
        ("18446744073709551616", 2**64 - 1, "number too large to fit in target type"),
        ("", 10, "cannot parse integer from empty string"),
        ("+", 10, "invalid digit found in string"),
        ("-", 10, "invalid digit found in string"),
        ("-0", 10, "invalid digit found in string"),
        ("++1", 10, "invalid digit found in string"),
        ("1_000", 10**9, "invalid digit found in string"),
        ("٣", 10, "invalid digit found in string"),
        ("²", 10, "invalid digit found in string"),
        ("9" * 5000, 10, "number too large to fit in target type"),
    ],
)
def test_unsigned_numbers_follow_rust_rules(text: str, maximum: int, reason: str | None) -> None:
    assert unsigned_error(text, maximum) == reason
    if reason is None:
        assert parse_unsigned(text, maximum) == int(text)
    else:
        with pytest.raises(DurationError, match=reason):
            parse_unsigned(text, maximum)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("2h", 7200), ("\t3m\n", 180), ('"4h"', 14400), ('""5""', 5)],
)
def test_gate_durations(text: str, seconds: int) -> None:
    assert parse_gate_timeout(text) == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("500ms", 0.5), ("90", 90.0), ("0ms", 0.0)],
)
def test_call_timeouts_are_interpreted_at_run_time(text: str, seconds: float) -> None:
    assert parse_call_timeout(text) == seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h30m", "invalid timeout '1h30m': invalid digit found in string"),
        (" 30s", "invalid timeout ' 30s': invalid digit found in string"),
        ("ms", "invalid timeout 'ms': cannot parse integer from empty string"),
        ("1.5s", "invalid timeout '1.5s': invalid digit found in string"),
        ("soon", "invalid timeout 'soon': invalid digit found in string"),
    ],
)
def test_bad_call_timeouts(text: str, expected: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_call_timeout(text)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("line", "written"),
    [
        ('  script s { run "make test" }', 'run = "make test"'),
        ("  call a { retries 2 }", "retries = 2"),
        ("  foreach f { over = static max_parallel 2 workflow = c }", "max_parallel = 2"),
        (
            '  foreach f { over = static scope { file = "x.yaml" } max_parallel = 2 workflow = c }',
            "scope = { … }",
        ),
        ('  call workflow c { inputs { a = "1" } }\n  script s { env = { A "1" } run = x }', 'A = "1"'),
    ],
)
def test_a_key_without_its_equals_sign_is_told_the_equals_sign_is_missing(line: str, written: str) -> None:
    """`max_parallel 2` said only `found identifier `max_parallel`` (the spec's message, kept),
    which reads as if the key were wrong: the hint says what to write."""
    error = body_error(line)
    assert error.message.startswith("expected `key = value` or `}` in ")
    assert error.detail.endswith(f"(hint: a key and its value are joined by `=`: write `{written}`)")


def test_a_step_keyword_where_an_option_was_expected_gets_no_equals_sign_hint() -> None:
    """A `}` missing before the next step is no missing `=`: `call = b` would be wrong advice."""
    error = body_error("  call a { retries = 1\n  call b\n")
    assert "joined by `=`" not in error.detail


@pytest.mark.parametrize(
    "line",
    ['  call a { retries = 1, timeout = "1m" }', '  script s { run = x env = { A = "1", B = "2" } }'],
)
def test_a_comma_between_options_or_map_entries_is_said_to_be_one_too_many(line: str) -> None:
    """JSON and HCL put commas between entries; `found `,`` alone did not say to drop it."""
    error = body_error(line)
    assert error.detail.endswith("found `,` (hint: nothing separates options or map entries: remove the `,`)")
