"""A rerun's reused steps in the one run model: completed, marked reused from the run it reruns,
counted — whether the model is folded from the run's stored event stream (the dashboard following
or reopening it, `watch`, `replay`) or loaded from its rows (history), as `show` counts them."""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.event_log import each_envelope
from runkon_flow.observe import RunModel
from runkon_flow.observe.counts import row_step_counts
from runkon_flow.observe.loader import load_run
from runkon_flow.persistence import SqliteStore

from tests.cli.run_helpers import cli, run_id_of, write

FOUR = """workflow four {
  script a { run = "sh step.sh a" }
  script b { run = "sh step.sh b" }
  script c { run = "sh step.sh c" }
  script d { run = "sh step.sh d" }
}
"""


@pytest.fixture
def runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str]:
    """(a run of four steps, its rerun from `c`)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_HOOKS", raising=False)
    write(tmp_path / "wf" / "four.wf", FOUR)
    write(tmp_path / "wf" / "step.sh", 'echo "$1 out"\n')
    code, out, _ = cli(capsys, "run", "four", "--dir", "wf", "--progress", "quiet")
    assert code == 0
    old = run_id_of(out)
    code, out, err = cli(capsys, "rerun", old, "--from", "c", "--dir", "wf", "--progress", "quiet")
    assert code == 0, err
    return old, run_id_of(out)


def _steps(model: RunModel) -> dict[str, tuple[str, str | None]]:
    assert model.root is not None
    return {sv.name: (sv.status, sv.reused_from) for sv in model.root.steps.values()}


def test_the_stored_stream_of_a_rerun_shows_its_reused_steps_completed_and_reused(
    runs: tuple[str, str], tmp_path: Path
) -> None:
    old, new = runs
    store = SqliteStore(str(tmp_path / "runs.db"))
    folded = RunModel()
    folded.apply_all(each_envelope(store, new))
    assert _steps(folded) == {
        "a": ("completed", old),
        "b": ("completed", old),
        "c": ("completed", None),
        "d": ("completed", None),
    }
    # The same count as `show` and the runs list read from the rows: ✓4, not ✓2.
    assert folded.step_counts()["completed"] == 4 == row_step_counts(store.get_steps(new))["completed"]
    assert f"✓ script a reused from run {old}" in [line.text for line in folded.engine_log.lines]

    loaded = load_run(store, new)  # a past run reopened from the history
    assert _steps(loaded) == _steps(folded)
    assert loaded.step_counts() == folded.step_counts()
