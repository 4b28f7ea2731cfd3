"""Why a stored run failed, in one line: what `show`'s header and the dashboard's run history say,
the same words the run model gives the live view (`RunState.why_failed`) — the failed step's error,
through a failed `call workflow` into the run it called — never only the engine's stored
`Step 'x' failed after 1 attempt`, which the run row keeps as it is."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.live import LiveView
from runkon_flow.cli.report import failure_lines
from runkon_flow.event_log import each_envelope
from runkon_flow.observe import RunModel
from runkon_flow.observe.loader import load_run, row_why_failed
from runkon_flow.persistence import SqliteStore

from tests.cli.run_helpers import cli, run_id_of, write

OUTER = """workflow outer {
  script ok { run = "sh -c 'echo fine'" }
  call workflow inner
}
"""
INNER = """workflow inner {
  script boom { run = "sh boom.sh" }
}
"""


@pytest.mark.parametrize("called", [False, True])
def test_a_stored_failed_run_says_why_as_the_live_model_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], called: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_HOOKS", raising=False)
    write(tmp_path / "wf" / "outer.wf", OUTER)
    write(tmp_path / "wf" / "inner.wf", INNER)
    write(tmp_path / "wf" / "boom.sh", "echo oops >&2\nexit 3\n")
    code, out, _ = cli(capsys, "run", "outer" if called else "inner", "--dir", "wf", "--progress", "quiet")
    assert code == 1
    run_id = run_id_of(out)
    store = SqliteStore(str(tmp_path / "runs.db"))
    run = store.get_run(run_id)
    assert run is not None and "failed after 1 attempt" in (run.error or "")  # stored as it was

    why = row_why_failed(store, run, store.get_steps(run_id))
    assert why == ("inner: " if called else "") + "Script 'boom' exited with code 3 · oops"
    folded = RunModel()
    folded.apply_all(each_envelope(store, run_id))
    assert folded.root is not None and folded.root.why_failed(folded.runs) == why
    loaded = load_run(store, run_id)
    assert loaded.root is not None and loaded.root.why_failed(loaded.runs) == why
    shown = cli(capsys, "show", run_id)[1].splitlines()
    assert f"error     {why}" in shown


def test_a_failed_call_workflow_step_says_why_its_child_failed_wherever_it_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The failed `call workflow` step's own error only names the child's failed step (`Sub-workflow
    'inner' failed: workflow error: Step 'boom' failed after 1 attempt`): `show`'s and the live
    view's failed-steps lines, the live view's step line and the exit summary said only that,
    while the run's `error` line said why. Each now gives the child run's why, by the same rule."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_HOOKS", raising=False)
    write(tmp_path / "wf" / "outer.wf", OUTER)
    write(tmp_path / "wf" / "inner.wf", INNER)
    write(tmp_path / "wf" / "boom.sh", "echo 'schema mismatch: id is text' >&2\nexit 3\n")
    code, out, _ = cli(capsys, "run", "outer", "--dir", "wf", "--progress", "quiet")
    assert code == 1
    run_id = run_id_of(out)
    store = SqliteStore(str(tmp_path / "runs.db"))
    run = store.get_run(run_id)
    assert run is not None
    why = "Script 'boom' exited with code 3 · schema mismatch: id is text"  # the child run's why
    assert row_why_failed(store, run, store.get_steps(run_id)) == f"inner: {why}"

    shown = cli(capsys, "show", run_id)[1].splitlines()
    assert shown[shown.index("failed steps") + 1 :] == [f"  workflow:inner: {why}"]
    lines, _ = failure_lines(store, run, Hints())  # the live view's end, under its last line
    assert lines == ["", "failed steps", f"  workflow:inner: {why}"]

    model = RunModel()
    model.apply_all(each_envelope(store, run_id))
    assert f"  ✗ workflow inner: {why}" in model.summary_text().splitlines()  # the dashboard's, on closing

    stream = io.StringIO()
    view = LiveView(
        stream, top_run_id=run_id, color=False, unicode=True, now=lambda: 0.0, width=200, height=50
    )
    for data in each_envelope(store, run_id):
        view.feed(data)
    assert any(
        line.startswith("✗ inner failed") and line.endswith(f": {why}")
        for line in stream.getvalue().splitlines()
    )
