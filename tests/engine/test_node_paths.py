"""Every step row records its place in the workflow tree (`node_path`), whatever kind of step wrote
it, so a past run is drawn on the same nodes the live run was."""

from __future__ import annotations

import json

from runkon_flow.approvals import GateApprovals
from runkon_flow.plugins.protocols import ActionOutput
from runkon_flow.runtime import WorkflowExecConfig

from tests.engine.conftest import Harness, ListProvider, wait_until

EVERY_KIND = """workflow w {
  call setup
  if setup.never { call review }
  call flaky { retries = 1 }
  call loop
  script lint { run = "true" }
  parallel { call a call b { if = "setup.nope" } }
  while loop.again { max_iterations = 3 call loop }
  foreach fan { over = tickets max_parallel = 2 workflow = child }
  call scorer
  gate quality_gate { source = scorer threshold = 10 }
  call workflow child
  call review
  always { call cleanup }
}"""


def started_paths(h: Harness, run_id: str) -> dict[str, str]:
    """step id → the node path the live StepStarted/StepCompleted events gave it."""
    return {
        e.step_id: e.node_path
        for e in h.events_of_run(run_id, "StepStarted", "StepCompleted")
        if e.step_id is not None
    }


def test_every_kind_of_step_row_records_the_node_path_its_events_carry(h: Harness) -> None:
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["t1", "t2"]))
    h.agents.fail("flaky", times=1)
    loops = {"n": 0}

    def loop(info, params):
        loops["n"] += 1
        return ActionOutput(markers=["again"] if loops["n"] < 3 else [], context="looped")

    h.agents.do("loop", loop)
    h.agents.on("scorer", structured=json.dumps({"confidence": 90}))
    result = h.run(EVERY_KIND)
    assert result.all_succeeded
    rows = h.steps(result.workflow_run_id)
    placed = sorted((r.node_path, r.step_name, r.retry_count, r.iteration) for r in rows)
    assert placed == sorted([
        ("body.0", "setup", 0, 0),
        ("body.2", "flaky", 0, 0),
        ("body.2", "flaky", 1, 0),
        ("body.3", "loop", 0, 0),
        ("body.4", "lint", 0, 0),
        ("body.5.calls.0", "a", 0, 0),
        ("body.5.calls.1", "b", 0, 0),
        ("body.6.body.0", "loop", 0, 0),
        ("body.6.body.0", "loop", 0, 1),
        ("body.7", "foreach:fan", 0, 0),
        ("body.8", "scorer", 0, 0),
        ("body.9", "quality_gate", 0, 0),
        ("body.10", "workflow:child", 0, 0),
        ("body.11", "review", 0, 0),
        ("always.0", "cleanup", 0, 0),
    ])  # fmt: skip
    live = started_paths(h, result.workflow_run_id)
    assert {r.id: r.node_path for r in rows if r.id in live} == live
    children = [r.child_run_id for r in rows if r.step_name == "workflow:child"]
    children += [i.child_run_id for r in rows if r.role == "foreach" for i in h.store.get_fan_out_items(r.id)]
    for child in children:
        assert [(r.step_name, r.node_path) for r in h.steps(child)] == [("work", "body.0")]


def test_human_and_dry_run_gates_record_their_node_path(h: Harness) -> None:
    text = 'workflow w { call a if a.x { call b } gate human_approval { timeout = "1h" } }'
    run = h.start(text)
    assert wait_until(lambda: bool(h.events_of_run(run.run_id, "GateWaiting")))
    GateApprovals(h.store).approve(run.run_id, "human_approval", by="ada")
    run.join()
    assert [(r.step_name, r.node_path) for r in h.steps(run.run_id)] == [
        ("a", "body.0"),
        ("human_approval", "body.2"),
    ]
    dry = h.run(text, exec_config=WorkflowExecConfig(dry_run=True, poll_interval=0.05))
    assert [r.node_path for r in h.steps(dry.workflow_run_id)][-1] == "body.2"
