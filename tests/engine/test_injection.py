"""No value is ever executed, whatever quoting the author put around its placeholder (issue 16).

Every channel a value can reach a process through — script `run` and `env`, agent argv/env/stdin,
FLOW_OUTPUT fields, prior context/output, `call workflow` inputs, foreach inputs and item ids — is
tried with hostile values and the author's quoting in each of its forms. A value that runs creates
`PWNED` in the working directory; a value that arrives is compared byte for byte. And a value is
substituted once: text inside a value that looks like `{{x}}` stays text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runkon_flow.plugins.protocols import ActionOutput, FanOutItem

from tests.engine.conftest import Harness, ListProvider

HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "'$(touch PWNED)'",
    '"$(touch PWNED)"',
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "x\ntouch PWNED",
    "\\'$(touch PWNED)\\'",
]

# The author's quoting around a placeholder `P`, and what `printf %s` prints for a value V.
FORMS = {
    "none": ("printf %s P", lambda v: v),
    "single": ("printf %s 'P'", lambda v: v),
    "double": ('printf %s "P"', lambda v: v),
    "inside-double": ('printf %s "<P>"', lambda v: f"<{v}>"),
    "inside-single": ("printf %s '<P>'", lambda v: f"<{v}>"),
    "command-substitution": ('printf %s "$(printf %s P)"', lambda v: v.rstrip("\n")),
    "double-in-command-substitution": ('printf %s "$(printf %s "P")"', lambda v: v.rstrip("\n")),
    "backticks": ('printf %s "`printf %s P`"', lambda v: v.rstrip("\n")),
    "single-in-backticks": ("printf %s \"`printf %s 'P'`\"", lambda v: v.rstrip("\n")),
}


def wf_string(text: str) -> str:
    """`text` as a .wf string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run_text(form: str, key: str, out: Path | str) -> str:
    shell, _ = FORMS[form]
    return wf_string(shell.replace("P", "{{" + key + "}}") + f" > {out}")


def check(result, h: Harness, out: Path, form: str, value: str) -> None:  # type: ignore[no-untyped-def]
    assert result.all_succeeded, h.store.get_run(result.workflow_run_id).error
    assert not (h.tmp_path / "PWNED").exists(), (form, value)
    assert out.read_text() == FORMS[form][1](value), (form, value)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("value", HOSTILE)
def test_run_inputs(hm: Harness, form: str, value: str) -> None:
    out = hm.tmp_path / "out"
    result = hm.run(f"workflow w {{ script s {{ run = {run_text(form, 'v', out)} }} }}", inputs={"v": value})
    check(result, hm, out, form, value)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("value", HOSTILE[:3])
def test_flow_output_fields_and_prior_context_and_output(hm: Harness, form: str, value: str) -> None:
    block = json.dumps({"markers": [], "context": value, "field": value})
    hm.agents.do("emit", lambda info, params: ActionOutput(context=value, structured_output=block))
    outs = {k: hm.tmp_path / k for k in ("field", "prior_context", "prior_output")}
    steps = " ".join(f"script {k} {{ run = {run_text(form, k, path)} }}" for k, path in outs.items())
    result = hm.run(f"workflow w {{ call emit {steps} }}")
    check(result, hm, outs["field"], form, value)
    assert not (hm.tmp_path / "PWNED").exists()
    # each later script's own (empty) context becomes the prior context of the next one
    assert outs["prior_output"].read_text() == FORMS[form][1](block)


@pytest.mark.parametrize("form", ["none", "single", "double"])
def test_env_values_are_data(hm: Harness, form: str) -> None:
    out = hm.tmp_path / "out"
    quoted = {"none": "{{v}}", "single": "'{{v}}'", "double": '"{{v}}"'}[form]
    command = wf_string(f'printf %s "$X" > {out}')
    for value in HOSTILE:
        result = hm.run(
            f"workflow w {{ script s {{ run = {command} env = {{ X = {wf_string(quoted)} }} }} }}",
            inputs={"v": value},
        )
        assert result.all_succeeded
        assert not (hm.tmp_path / "PWNED").exists()
        assert out.read_text() == quoted.replace("{{v}}", value)


@pytest.mark.parametrize("form", FORMS)
def test_call_workflow_inputs_arrive_once_and_never_run(hm: Harness, form: str) -> None:
    out = hm.tmp_path / "out"
    hm.add_workflow(f"workflow child {{ script s {{ run = {run_text(form, 'x', out)} }} }}")
    for value in [*HOSTILE[:4], "{{secret}}", "{{v}}"]:
        result = hm.run(
            'workflow parent { call workflow child { inputs { x = "{{v}}" } } }',
            inputs={"v": value, "secret": "leaked"},
        )
        check(result, hm, out, form, value)


def test_parent_inputs_that_look_like_placeholders_reach_the_child_as_text(hm: Harness) -> None:
    hm.add_workflow("workflow child { call work }")
    hm.run(
        'workflow parent { call workflow child { inputs { x = "{{v}}" } } }',
        inputs={"v": "{{secret}}", "secret": "leaked", "other": "{{secret}}"},
    )
    seen = hm.agents.inputs_of("work")
    assert (seen["x"], seen["v"], seen["other"]) == ("{{secret}}", "{{secret}}", "{{secret}}")


@pytest.mark.parametrize("form", FORMS)
def test_foreach_item_ids_and_inputs_arrive_once_and_never_run(hm: Harness, form: str) -> None:
    values = [*HOSTILE[:4], "{{val}}"]
    items = [FanOutItem("ticket", v, f"R{i}", {"title": v}) for i, v in enumerate(values)]
    hm.providers.append(ListProvider("tickets", items))
    outs = hm.tmp_path / "outs"
    outs.mkdir()
    # each child writes the item id and its `title` input into a file named by the item's ref
    target = f"{outs}/{{{{item.ref}}}}"
    hm.add_workflow(
        f"workflow child {{ script a {{ run = {run_text(form, 'item.id', target)} }} "
        f"script b {{ run = {run_text(form, 't', target)} }} }}"
    )
    result = hm.run(
        "workflow parent { foreach fan { over = tickets max_parallel = 1 workflow = child "
        'inputs = { t = "{{item.title}}" } } }',
        inputs={"val": "leaked"},
    )
    assert result.all_succeeded, hm.store.get_run(result.workflow_run_id).error
    assert not (hm.tmp_path / "PWNED").exists()
    for i, value in enumerate(values):
        assert (outs / f"R{i}").read_text() == FORMS[form][1](value), (form, value)


def test_a_value_in_a_nested_shell_script_fails_the_step_and_never_runs(hm: Harness) -> None:
    """`sh -c '… {{v}}'`: the outer shell would hand the value to an inner one as its code."""
    run = wf_string("sh -c 'echo {{v}}'")
    result = hm.run(f"workflow w {{ script s {{ run = {run} }} }}", inputs={"v": "x; touch PWNED"})
    assert not result.all_succeeded
    (step,) = hm.store.get_steps(result.workflow_run_id)
    assert "would run as code" in (step.result_text or "")
    assert not (hm.tmp_path / "PWNED").exists()


def test_a_value_its_command_would_read_as_an_option_fails_the_step_naming_it(hm: Harness) -> None:
    """`rm {{file}}` with file=`-rf`, `cat {{f}}` with f=`--version`: a whole-word value that begins
    with `-` became an option of the command. The step fails naming the value and its source,
    unless the author wrote `--` before it."""
    out = hm.tmp_path / "out"
    run = wf_string(f"cat {{{{f}}}} > {out}")
    result = hm.run(f"workflow w {{ script s {{ run = {run} }} }}", inputs={"f": "--version"})
    assert not result.all_succeeded
    (step,) = hm.store.get_steps(result.workflow_run_id)
    assert (step.result_text or "").startswith(
        "Script 's': the value of {{f}} in `run` (input 'f') begins with '-' ('--version'): `cat` would "
        "read it as an option, not as its argument (hint: write `--` before it"
    ), step.result_text
    assert not out.exists() or "GNU" not in out.read_text()
    (hm.tmp_path / "--version").write_text("the file's text")
    run = wf_string(f"cat -- {{{{f}}}} > {out}")
    result = hm.run(f"workflow w {{ script s {{ run = {run} }} }}", inputs={"f": "--version"})
    assert result.all_succeeded
    assert out.read_text() == "the file's text"


def test_a_value_piped_into_a_shell_fails_the_step_and_never_runs(hm: Harness) -> None:
    """`printf '%s\\n' {{v}} | sh`: the value was handed over as data, and the shell at the end of
    the pipe read it as its script."""
    run = wf_string("printf '%s\\n' {{v}} | sh")
    result = hm.run(f"workflow w {{ script s {{ run = {run} }} }}", inputs={"v": "touch PWNED"})
    assert not result.all_succeeded
    (step,) = hm.store.get_steps(result.workflow_run_id)
    assert "`{{v}}` is in what `sh` reads from a pipe as its program" in (step.result_text or "")
    assert not (hm.tmp_path / "PWNED").exists()
