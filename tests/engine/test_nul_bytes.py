"""A NUL byte fails its step with a reason naming where the value came from (issue 16, item 3).

No command line, argument or environment variable can carry a NUL: the step fails cleanly, the
run's rows stay consistent (no `running` step inside a finished run), and the message says whose
value it was.
"""

from __future__ import annotations

import json
from pathlib import Path

from runkon_flow.plugins.protocols import ActionOutput, FanOutItem

from tests.engine.conftest import Harness, ListProvider


def failure(h: Harness, result) -> tuple[str, list[tuple[str, str]], str | None]:  # type: ignore[no-untyped-def]
    run = h.store.get_run(result.workflow_run_id)
    return (
        run.status,
        h.statuses(result.workflow_run_id),
        [s.step_error for s in h.steps(result.workflow_run_id)],
    )


def test_an_input_with_a_nul_fails_the_script_naming_the_input(h: Harness) -> None:
    result = h.run('workflow w { script s { run = "echo {{title}}" } }', inputs={"title": "a\0b"})
    status, rows, errors = failure(h, result)
    assert status == "failed" and rows == [("s", "failed")]
    assert errors == [
        "Script 's': the value of {{title}} in `run` (input 'title') contains a NUL byte, "
        "which a command cannot receive"
    ]


def test_a_flow_output_field_with_a_nul_names_the_field_and_its_step(h: Harness) -> None:
    block = json.dumps({"markers": [], "context": "", "branch": "main\0; rm"})
    h.agents.do("emit", lambda info, params: ActionOutput(structured_output=block))
    result = h.run('workflow w { call emit script s { run = "git checkout {{branch}}" } }')
    status, rows, errors = failure(h, result)
    assert status == "failed" and rows == [("emit", "completed"), ("s", "failed")]
    assert "the value of {{branch}} in `run` (FLOW_OUTPUT field 'branch' of step 'emit') contains a NUL" in (
        errors[1] or ""
    )


def test_a_nul_through_env_names_the_placeholder(h: Harness) -> None:
    result = h.run(
        'workflow w { script s { run = "echo \\"$X\\"" env = { X = "x{{v}}" } } }', inputs={"v": "\0"}
    )
    status, rows, errors = failure(h, result)
    assert status == "failed" and rows == [("s", "failed")]
    assert "the value of {{v}} in `env` 'X' (input 'v') contains a NUL byte" in (errors[0] or "")


def test_an_item_line_with_a_nul_fails_the_child_step_naming_the_item(h: Harness, tmp_path: Path) -> None:
    h.providers.append(
        ListProvider(
            "lines", [FanOutItem("lines", "ok", "items.txt:1"), FanOutItem("lines", "bad\0id", "items.txt:2")]
        )
    )
    h.add_workflow('workflow child { script s { run = "echo {{item.id}}" } }')
    result = h.run("workflow parent { foreach fan { over = lines max_parallel = 1 workflow = child } }")
    assert h.store.get_run(result.workflow_run_id).status == "failed"
    children = h.store.list_runs(parent_run_id=result.workflow_run_id)
    by_status = sorted(h.store.get_run(c.id).status for c in children)
    assert by_status == ["completed", "failed"]
    failed = next(c for c in children if c.status == "failed")
    (row,) = h.steps(failed.id)
    assert row.status == "failed"
    assert "{{item.id}} in `run` (field 'id' of this run's foreach item 'items.txt:2') contains a NUL" in (
        row.step_error or ""
    )
    for run in [h.store.get_run(result.workflow_run_id), *children]:
        assert all(s.status != "running" for s in h.steps(run.id))
