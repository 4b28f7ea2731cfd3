"""A value too big for a process (more than 128 KiB in one argument or environment variable on
Linux) fails its step with a reason naming the value and where it came from, instead of
`[Errno 7] Argument list too long: '/bin/sh'`; an input that big is not exported as CONDUCTOR_*,
so the steps that do not use it still run."""

from __future__ import annotations

import json
import sys

import pytest
from runkon_flow.plugins.protocols import ActionOutput, FanOutItem
from runkon_flow.process import TOO_BIG

from tests.engine.conftest import Harness, ListProvider

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux's per-string limit (MAX_ARG_STRLEN)")

BIG = "a" * 300_000


def test_an_item_whose_ref_is_too_big_for_a_command_fails_the_foreach_naming_it(h: Harness) -> None:
    """An item's ref is capped like the values a command can receive (`MAX_ARG_BYTES`): such an
    item ran a child run whose every use of it failed, and its ref was repeated whole in each
    message (600 KB of step error for a 300 KB ref)."""
    h.add_workflow('workflow child { script a { run = "echo {{item.ref}}" } }')
    items = [FanOutItem("ticket", "T1", "tickets.txt:1", {}), FanOutItem("ticket", "T2", BIG, {})]
    h.providers.append(ListProvider("tickets", items))
    result = h.run("workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child } }")
    assert h.store.list_runs(parent_run_id=result.workflow_run_id) == []
    (step,) = h.steps(result.workflow_run_id)
    assert step.status == "failed"
    assert step.step_error == (
        f"foreach 'fan': item 2 ('T2') from item provider 'tickets': its ref is 300,000 bytes, {TOO_BIG}"
    ), step.step_error


@pytest.mark.parametrize(
    ("body", "script_b", "says"),
    [
        # Fields are not capped (a document for an agent's prompt, on stdin, may be any size).
        (BIG, 'run = "printf %s {{t}} | wc -c"', "in `run` (input 't') is 300,000 bytes"),
        # Within 128 KiB, twice in one environment variable it is not.
        (
            "a" * 100_000,
            'run = "printf %s \\"$T\\" | wc -c" env = { T = "{{t}}{{t}}" }',
            "in `env` 'T' (input 't') is 200,000 bytes",
        ),
    ],
    ids=["big-field", "made-too-big"],
)
def test_a_value_too_big_from_an_item_field_fails_only_the_step_using_it_naming_it_and_the_item(
    h: Harness, body: str, script_b: str, says: str
) -> None:
    h.providers.append(ListProvider("tickets", [FanOutItem("ticket", "T1", "tickets.txt:1", {"body": body})]))
    h.add_workflow(f'workflow child {{ script a {{ run = "echo fine" }} script b {{ {script_b} }} }}')
    result = h.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child "
        'inputs = { t = "{{item.body}}" } } }'
    )
    (child,) = h.store.list_runs(parent_run_id=result.workflow_run_id)
    rows = {s.step_name: s for s in h.steps(child.id)}
    assert rows["a"].status == "completed", rows["a"].step_error
    assert rows["b"].status == "failed"
    assert rows["b"].step_error.startswith(
        f"Script 'b' (foreach item 'tickets.txt:1') could not start: the value of {{{{t}}}} {says}, more "
        "than a command can receive (Argument list too long"
    ), rows["b"].step_error
    assert "pass a large value in a file" in rows["b"].step_error


def test_a_big_flow_output_field_names_the_field_and_its_step(h: Harness) -> None:
    block = json.dumps({"markers": [], "context": "", "notes": BIG})
    h.agents.do("emit", lambda info, params: ActionOutput(structured_output=block))
    result = h.run('workflow w { call emit script s { run = "echo \\"{{notes}}\\" | wc -c" } }')
    assert h.store.get_run(result.workflow_run_id).status == "failed"
    error = h.steps(result.workflow_run_id)[1].step_error or ""
    assert error.startswith(
        "Script 's' could not start: the value of {{notes}} in `run` (FLOW_OUTPUT field 'notes' of step "
        "'emit') is 300,000 bytes"
    ), error


def test_a_big_value_in_a_scripts_env_names_the_placeholder_and_its_source(h: Harness) -> None:
    """Scripts and command agents name a too-big value alike (`process.too_big_problem`): the
    placeholder and the place it went to — here an `env` entry — and, for a script, its source."""
    result = h.run(
        'workflow w { inputs { x } script s { run = "echo $BIG | wc -c" env = { BIG = "<{{x}}>" } } }',
        inputs={"x": BIG},
    )
    (step,) = h.steps(result.workflow_run_id)
    assert (step.step_error or "").startswith(
        "Script 's' could not start: the value of {{x}} in `env` 'BIG' (input 'x') is 300,002 bytes, "
        "more than a command can receive (Argument list too long"
    ), step.step_error
