"""Estimates through the CLI: `show` marks a step that took longer than its p95 in past runs of
the same workflow, and the live view gives a running step its ETA band or `over p95`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from runkon_flow.cli.live import LiveView
from runkon_flow.events import EngineEventData, RunStarted, StepStarted
from runkon_flow.observe.estimates import Estimates

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
