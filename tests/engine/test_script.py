"""`script` steps (engine.md §9.9, §14 H; design.md §5 hostile-input guarantees)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from runkon_flow.plugins.protocols import ActionOutput
from runkon_flow.runtime import DefaultRunContext, WorkflowExecConfig

from tests.engine.conftest import Harness, wait_until

HOSTILE = [
    "$(touch pwned)",
    "`touch pwned`",
    "'; touch pwned; '",
    '"; touch pwned; "',
    "x\ntouch pwned",
    "a; touch pwned",
    "$HOME && touch pwned",
]


class EnvProvider:
    def __init__(self) -> None:
        self.identities: list[str | None] = []

    def env(self, ctx, as_identity):
        self.identities.append(as_identity)
        return {"GH_TOKEN": f"token-for-{as_identity}", "FROM_PROVIDER": "yes"}


def test_example_h_flow_output_exports_reach_later_steps(h: Harness, tmp_path: Path) -> None:
    block = '{"markers":["ok"],"context":"main","base_branch":"release/1.0","count":3,"repo_path":"/evil"}'
    script = tmp_path / "emit.sh"
    script.write_text(f"echo noise\necho '<<<FLOW_OUTPUT>>>'\necho '{block}'\necho '<<<END_FLOW_OUTPUT>>>'\n")
    result = h.run(
        f"""workflow w {{ script s {{ run = "sh {script}" }} if s.ok {{ call next }} }}""",
        run_ctx=DefaultRunContext(h.tmp_path, variables={"repo_path": "/real"}),
    )
    assert result.all_succeeded, h.store.get_run(result.workflow_run_id).error
    seen = h.agents.inputs_of("next")
    assert seen["base_branch"] == "release/1.0"
    assert seen["prior_context"] == "main"
    assert json.loads(seen["prior_output"]) == json.loads(block)
    assert "count" not in seen and seen["repo_path"] == "/real"
    row = h.steps(result.workflow_run_id)[0]
    assert (row.status, row.role, row.result_text, row.markers_out) == (
        "completed",
        "agent",
        "Script 's' completed",
        '["ok"]',
    )


def test_without_a_block_the_first_2000_characters_of_stdout_are_the_context(h: Harness) -> None:
    result = h.run("""workflow w { script s { run = "printf 'x%.0s' $(seq 1 2500)" } }""")
    row = h.steps(result.workflow_run_id)[0]
    assert row.context_out == "x" * 2000 and row.markers_out == "[]" and row.structured_output is None


def test_a_non_zero_exit_fails_with_the_code_and_stderr(h: Harness) -> None:
    result = h.run("""workflow w { script s { run = "echo oops >&2; exit 3" } call after }""")
    row = h.steps(result.workflow_run_id)[0]
    assert row.status == "failed" and row.step_error == "Script 's' exited with code 3\noops"
    assert (  # why, on one line: the step's error's first and last line
        h.store.get_run(result.workflow_run_id).error
        == "workflow error: Step 's' failed after 1 attempt: Script 's' exited with code 3 · oops"
    )
    assert h.agents.names() == []


def test_scripts_run_in_the_run_context_working_directory(h: Harness) -> None:
    result = h.run("""workflow w { script s { run = "pwd" } }""")
    assert h.steps(result.workflow_run_id)[0].context_out.strip() == str(h.tmp_path)


def test_environment_layers_provider_inputs_and_node_env_with_protected_names_skipped(
    h: Harness, tmp_path: Path
) -> None:
    provider = EnvProvider()
    out = tmp_path / "env.txt"
    result = h.run(
        f"""workflow w {{
              inputs {{ ticket_id required }}
              script s {{
                as  = "dev"
                run = "env > {out}"
                env = {{ MODE = "fast-{{{{ticket_id}}}}" PATH = "/evil" GH_TOKEN = "stolen"
                        RAW = "$(touch pwned)" }}
              }}
            }}""",
        inputs={"ticket_id": "T-1", "item.odd": "x"},
        script_env_provider=provider,
    )
    assert result.all_succeeded
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["FROM_PROVIDER"] == "yes" and env["GH_TOKEN"] == "token-for-dev"
    assert env["CONDUCTOR_TICKET_ID"] == "T-1"
    assert env["MODE"] == "fast-T-1"
    assert env["RAW"] == "$(touch pwned)"
    assert env["PATH"] != "/evil"
    assert provider.identities == ["dev"]
    warnings = " ".join(e.message for e in h.events("EngineLog"))
    assert "'PATH' is protected" in warnings and "'GH_TOKEN' is protected" in warnings
    assert "item.odd" in warnings
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_input_values_never_run_as_shell_code(h: Harness, tmp_path: Path, value: str) -> None:
    out = tmp_path / "out.txt"
    result = h.run(
        f"""workflow w {{ inputs {{ title required }}
              script s {{ run = "printf %s {{{{title}}}} > {out}" }} }}""",
        inputs={"title": value},
    )
    assert result.all_succeeded
    assert out.read_text() == value
    assert not (tmp_path / "pwned").exists()


def test_flow_output_exports_cannot_inject_shell_code_either(h: Harness, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"

    def evil(info, params):
        return ActionOutput(structured_output=json.dumps({"markers": [], "branch": "main; touch pwned"}))

    h.agents.do("agent", evil)
    result = h.run(f"""workflow w {{ call agent script s {{ run = "printf %s {{{{branch}}}} > {out}" }} }}""")
    assert result.all_succeeded
    assert out.read_text() == "main; touch pwned"
    assert not (tmp_path / "pwned").exists()


def test_output_lines_stream_as_step_output_events(h: Harness) -> None:
    h.run("""workflow w { script s { run = "echo one; echo two >&2" } }""")
    lines = {(e.line, e.stream) for e in h.events("StepOutput")}
    assert lines == {("one", "stdout"), ("two", "stderr")}
    assert {e.step_name for e in h.events("StepOutput")} == {"s"}


def test_retries_are_honoured_each_attempt_a_new_row(h: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    result = h.run(
        f"""workflow w {{
              script s {{ retries = 2 run = "test -f {marker} || {{ touch {marker}; exit 1; }}" }} }}"""
    )
    assert result.all_succeeded
    assert [(r.retry_count, r.status) for r in h.steps(result.workflow_run_id)] == [
        (0, "failed"),
        (1, "completed"),
    ]
    assert [e.attempt for e in h.events("StepRetrying")] == [1]


def test_on_fail_continue_and_on_fail_agent_work_for_scripts(h: Harness) -> None:
    result = h.run(
        """workflow w {
             script a { run = "exit 1" on_fail = continue }
             script b { run = "exit 2" on_fail = fixer }
           }"""
    )
    assert h.agents.names() == ["fixer"]
    assert h.agents.inputs_of("fixer")["failed_step"] == "b"
    assert h.agents.inputs_of("fixer")["failure_reason"] == "Script 'b' exited with code 2"
    assert result.status == "failed"


def test_dry_run_does_not_execute_scripts(h: Harness, tmp_path: Path) -> None:
    result = h.run(
        f"""workflow w {{ script s {{ run = "touch {tmp_path}/ran" }} }}""",
        exec_config=WorkflowExecConfig(dry_run=True),
    )
    assert result.all_succeeded and not (tmp_path / "ran").exists()
    assert h.steps(result.workflow_run_id)[0].result_text == "dry-run: script not executed"


def test_a_script_timeout_kills_it_marks_the_row_timed_out_and_fails_the_run(h: Harness) -> None:
    result = h.run("""workflow w { script s { run = "sleep 30" timeout = 0 } always { call cleanup } }""")
    row = h.steps(result.workflow_run_id)[0]
    assert (row.status, row.step_error) == ("timed_out", "Script 's' timed out after 0s")
    assert result.status == "failed" and h.agents.names() == ["cleanup"]


def test_a_missing_working_directory_is_a_clear_step_failure(h: Harness, tmp_path: Path) -> None:
    result = h.run(
        """workflow w { script s { run = "true" } }""", run_ctx=DefaultRunContext(tmp_path / "missing")
    )
    assert h.steps(result.workflow_run_id)[0].step_error.startswith("Script 's' failed to execute:")


def test_cancelling_a_run_kills_a_running_script_and_records_it_cancelled(h: Harness) -> None:
    engine = h.build()
    results: list = []
    wf_text = """workflow w { script s { run = "sleep 30" } call after }"""
    from runkon_flow.dsl.parser import parse_workflow

    wf = parse_workflow(wf_text)
    run_id = h.new_run(wf)
    thread = threading.Thread(target=lambda: results.append(engine.run_workflow(wf, h.run_input(run_id))))
    thread.start()
    assert wait_until(lambda: bool(h.events("StepOutput", "StepStarted")))
    engine.cancel_run(run_id)
    thread.join(5)
    assert not thread.is_alive()
    [result] = results
    assert result.status == "cancelled"
    assert h.statuses(run_id) == [("s", "cancelled")]
    assert h.events("RunCancelled")[0].reason.kind == "UserRequested"
