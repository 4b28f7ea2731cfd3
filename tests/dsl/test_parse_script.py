"""`script` — shell steps: run, env, integer timeout and the shared options (dsl.md §6.9)."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.ast import AgentRef, OnFailAgent, OnFailContinue, ScriptNode

from .wf_testing import body_error, only


def script(source: str) -> ScriptNode:
    node = only(source)
    assert isinstance(node, ScriptNode)
    return node


def test_a_script_with_only_run_has_every_default() -> None:
    node = script('script check { run = ".conductor/scripts/check.sh" }')
    assert node.to_json() == {
        "type": "script",
        "name": "check",
        "run": ".conductor/scripts/check.sh",
        "env": {},
        "timeout": None,
        "retries": 0,
        "on_fail": None,
        "as_identity": None,
    }
    assert node.step_key() == "check"


def test_every_script_option() -> None:
    node = script(
        """script collect-stats {
             run     = "tools/collect.sh --since {{since}}"
             timeout = 600
             env     = { REPORT_DIR = "{{repo_path}}/out"  MODE = fast  N = 3 }
             on_fail = continue
             retries = 2
             as      = "developer"
           }"""
    )
    assert node.run == "tools/collect.sh --since {{since}}"
    assert node.timeout == 600
    assert node.env == {"REPORT_DIR": "{{repo_path}}/out", "MODE": "fast", "N": "3"}
    assert node.on_fail == OnFailContinue()
    assert (node.retries, node.as_identity) == (2, "developer")


def test_script_timeout_allows_the_u64_range() -> None:
    assert script('script s { run = x timeout = "18446744073709551615" }').timeout == 2**64 - 1


def test_a_later_env_key_wins_and_an_empty_env_is_fine() -> None:
    assert script("script s { run = x env = { A = 1 A = 2 } }").env == {"A": "2"}
    assert script("script s { run = x env = {} }").env == {}


def test_on_fail_agent_on_a_script() -> None:
    node = script('script s { run = x on_fail = "agents/fix.md" }')
    assert node.on_fail == OnFailAgent(value=AgentRef(kind="path", value="agents/fix.md"))


@pytest.mark.parametrize("name", ["gate", "call", "required", "x-1"])
def test_script_names_may_be_soft_keywords(name: str) -> None:
    assert script(f"script {name} {{ run = x }}").name == name


def test_a_missing_run_points_at_the_script() -> None:
    error = body_error("  script s {\n    timeout = 5\n  }")
    assert error.message == "script 's' is missing required `run` field"
    assert (error.line, error.column) == (2, 3)


@pytest.mark.parametrize("written", ["command", "cmd", "shell"])
def test_a_command_written_under_another_tools_name_is_named_at_that_key(written: str) -> None:
    """`command = "make"` (a GitHub Actions or Docker habit) said only that `run` was missing, at
    the script's line, over a line that seemed to have it."""
    error = body_error(f'  script s {{\n    {written} = "make test"\n  }}')
    assert error.message == (
        f"script 's' is missing required `run` field (`{written}` is written: here it is called `run`)"
    )
    assert (error.line, error.column) == (3, 5)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('env = "A=1"', "script 's': `env` must be a map `{ KEY = \"value\" }`"),
        ("env = [A]", "script 's': `env` must be a map `{ KEY = \"value\" }`"),
        (
            'timeout = "30s"',
            "script 's': invalid timeout: invalid digit found in string"
            " (hint: a script timeout is whole seconds: `timeout = 30` for 30s)",
        ),
        (
            'timeout = "5m"',
            "script 's': invalid timeout: invalid digit found in string"
            " (hint: a script timeout is whole seconds: `timeout = 300` for 5m)",
        ),
        ('timeout = "soon"', "script 's': invalid timeout: invalid digit found in string"),
        (
            'timeout = "18446744073709551616"',
            "script 's': invalid timeout: number too large to fit in target type",
        ),
        ('retries = "x"', "script 's': invalid retries: invalid digit found in string"),
        ('on_fail = "../fix.md"', "agent path contains parent-directory traversal (..): ../fix.md"),
        ("run = [a]", "script 's': `run` must be a single value, not a list"),
        ("env = { A = [x] }", "`env`: map values must be single values, not a list"),
        ('env = { "A" = x }', 'expected `key = value` or `}` in the `env` map, found string "A"'),
        # checks run in the spec's order: run, env, timeout, retries, on_fail
        ('run = x timeout = "x" env = "bad"', "script 's': `env` must be a map `{ KEY = \"value\" }`"),
        ('run = x retries = "x" timeout = "x"', "script 's': invalid timeout: invalid digit found in string"),
        (
            'run = x on_fail = "../a" retries = "x"',
            "script 's': invalid retries: invalid digit found in string",
        ),
    ],
)
def test_bad_script_options(options: str, expected: str) -> None:
    source = options if options.startswith("run") else f"run = x {options}"
    assert body_error(f"  script s {{ {source} }}").message == expected


def test_unknown_script_keys_are_ignored() -> None:
    assert script("script s { run = x cwd = here shell = bash }") == script("script s { run = x }")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("script { run = x }", "expected a script name after `script`, found `{`"),
        ("script s run = x", "expected `{` after `script s`, found identifier `run`"),
        ("script s { run = x call a }", "expected `key = value` or `}` in `script s`, found keyword `call`"),
    ],
)
def test_malformed_script_blocks(source: str, expected: str) -> None:
    assert body_error(f"  {source}").message == expected
