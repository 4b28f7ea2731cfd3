"""Estimates through the CLI: `show` marks a step that took longer than its p95 in past runs of
the same workflow, and the live view gives a running step its ETA band or `over p95`."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from runkon_flow.cli.live import LiveView
from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    GateResolved,
    GateWaiting,
    RunStarted,
    StepStarted,
)
from runkon_flow.observe.estimates import Estimates

from .gate_helpers import GateRun, gate_home
from .run_helpers import cli, run_id_of, write

WF = """workflow est {
  script build { run = "sleep $(cat secs)" }
  script ship { run = "true" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    write(tmp_path / "est.wf", WF)
    return tmp_path


def run(capsys, home: Path, secs: str) -> str:  # type: ignore[no-untyped-def]
    (home / "secs").write_text(secs)
    code, out, err = cli(capsys, "run", "est", "--dir", str(home), "--progress", "quiet")
    assert code == 0, err
    return run_id_of(out)


def test_show_marks_a_step_slower_than_its_p95_in_past_runs(capsys, home: Path) -> None:
    first = run(capsys, home, "0")
    out = cli(capsys, "show", first)[1]
    assert "over p95" not in out  # no past run to compare with
    run(capsys, home, "0")
    slow = run(capsys, home, "2")
    lines = cli(capsys, "show", slow)[1].splitlines()
    [build] = [ln for ln in lines if " build " in ln]
    assert "slow: over p95 (" in build


def test_the_live_view_gives_running_steps_an_eta_band_then_over_p95() -> None:
    clock = [1000.0]
    view = LiveView(io.StringIO(), top_run_id="R", now=lambda: clock[0], width=120, height=20, unicode=True)
    view.estimates = Estimates("est", runs=2, steps={"body.0": [10.0, 20.0]})
    for event in (
        RunStarted(workflow_name="est"),
        StepStarted(step_name="build", step_key="build", kind="script", step_id="s1", node_path="body.0"),
    ):
        view.feed(EngineEventData(timestamp=1000, ts=1000.0, run_id="R", event=event))
    clock[0] = 1005.0
    [line] = [ln for ln in view.render() if "build" in ln]
    assert "ETA 5.0s–15s" in line
    clock[0] = 1025.0
    [line] = [ln for ln in view.render() if "build" in ln]
    assert "⚠ over p95 (20s)" in line


def test_a_call_step_is_not_late_while_its_called_workflow_waits_for_a_person() -> None:
    """The called workflow's gate waits for someone: the call step has no ETA and no over-p95
    while it waits, and after the answer only the time it worked is held against its band."""
    clock = [1000.0]
    view = LiveView(io.StringIO(), top_run_id="R", now=lambda: clock[0], width=120, height=20, unicode=True)
    view.estimates = Estimates("outer", runs=2, steps={"body.0": [10.0, 20.0]})  # the call step
    for run_id, ts, event in (
        ("R", 1000.0, RunStarted(workflow_name="outer")),
        (
            "R",
            1000.0,
            StepStarted(
                step_name="deploy", step_key="deploy", kind="call_workflow", step_id="s1", node_path="body.0"
            ),
        ),
        (
            "R",
            1000.0,
            ChildRunStarted(child_run_id="C", workflow_name="inner", parent_run_id="R", parent_step_id="s1"),
        ),
        ("C", 1000.0, RunStarted(workflow_name="inner", parent_run_id="R")),
        (
            "C",
            1002.0,
            GateWaiting(gate_name="ok", step_id="g1", gate_type="human_approval", node_path="body.0"),
        ),
    ):
        view.feed(EngineEventData(timestamp=int(ts), ts=ts, run_id=run_id, event=event))
    clock[0] = 1600.0  # ten minutes with nobody answering
    [line] = [ln for ln in view.render() if "deploy" in ln]
    assert "over p95" not in line and "ETA" not in line
    answered = GateResolved(
        gate_name="ok", step_id="g1", approved=True, resolved_by="bob", resolved_at=1600.0
    )
    view.feed(EngineEventData(timestamp=1600, ts=1600.0, run_id="C", event=answered))
    clock[0] = 1605.0  # 7 s of work: 2 before the gate, 5 after
    [line] = [ln for ln in view.render() if "deploy" in ln]
    assert "ETA 3.0s–13s" in line
    clock[0] = 1620.0  # 22 s of work
    [line] = [ln for ln in view.render() if "deploy" in ln]
    assert "⚠ over p95 (20s)" in line


RELEASE = """workflow release {
  call workflow ship
}
"""


def test_show_holds_no_persons_wait_against_the_call_step_that_waits(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past releases were approved at once; this one waits for its approver: `show` gives its
    call step no `⚠ over p95` while it waits, and no `slow: over p95` once answered."""
    home = gate_home(tmp_path, monkeypatch, release=RELEASE)
    for _ in range(2):
        past = GateRun(home, "release")
        assert cli(capsys, "approve", past.run_id, "human_approval")[0] == 0
        past.finish()
        past.close()
    waiting = GateRun(home, "release")
    try:
        time.sleep(1.5)  # far past the call step's p95 (its past runs took a fraction of this)
        [line] = [ln for ln in cli(capsys, "show", waiting.run_id)[1].splitlines() if "workflow:ship" in ln]
        assert "over p95" not in line and "ETA" not in line
        assert cli(capsys, "approve", waiting.run_id, "human_approval")[0] == 0
        waiting.finish()
    finally:
        waiting.close()
    [line] = [ln for ln in cli(capsys, "show", waiting.run_id)[1].splitlines() if "workflow:ship" in ln]
    assert "over p95" not in line
