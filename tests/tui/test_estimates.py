"""Estimates in the dashboard, on the real engine: after past runs of a workflow, a running step
that has outlived its p95 is marked `over p95` in the tree."""

from __future__ import annotations

import time
from pathlib import Path

from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.workspace import Workspace

from tests.tui.conftest import make_app, select, wait_for

WF = """workflow est {
  script build { run = "while [ ! -f go ]; do sleep 0.05; done" }
}
"""


async def test_a_running_step_past_its_p95_is_marked_in_the_tree(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "est.wf").write_text(WF)
    monkeypatch.chdir(folder)
    store = SqliteStore(tmp_path / "runs.db")
    app = make_app(host=Workspace([folder], store), store=store, dirs=[folder], clock=time.time)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "est")
        (folder / "go").touch()
        for n in (1, 2):  # two quick past runs: p95 is a fraction of a second
            await pilot.press("enter")
            done = lambda n=n: len(store.list_runs()) == n and not app.run_active  # noqa: E731
            await wait_for(pilot, done, what=f"run {n} to end", timeout=60)
            assert app.view.status == "completed"
        (folder / "go").unlink()
        await pilot.press("enter")
        tree = app.main_screen.tree  # type: ignore[union-attr]
        label = lambda: tree.nodes_by_uid["body.0"].label.plain  # noqa: E731
        await wait_for(pilot, lambda: "over p95" in label(), what="the over-p95 mark", timeout=30)
        assert "⚠ over p95 (" in label()
        (folder / "go").touch()
        await wait_for(pilot, lambda: not app.run_active, what="run end", timeout=60)
        await pilot.pause()
        assert "over p95" not in label()  # finished: no longer running late
    store.close()


OUTER = """workflow outer {
  script prep { run = "true" }
  call workflow inner
}
"""
INNER = """workflow inner {
  script build { run = "while [ ! -f go ]; do sleep 0.05; done" }
}
"""


async def test_a_step_of_a_called_workflow_past_its_p95_is_marked_too(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Past runs' durations of a called workflow's steps are kept under the call's node path, so
    its `body.0` is estimated from its own past, not from the caller's `body.0` (a quick `prep`)."""
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "outer.wf").write_text(OUTER)
    (folder / "inner.wf").write_text(INNER)
    monkeypatch.chdir(folder)
    store = SqliteStore(tmp_path / "runs.db")
    app = make_app(host=Workspace([folder], store), store=store, dirs=[folder], clock=time.time)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "outer")
        (folder / "go").touch()
        for n in (1, 2):
            await pilot.press("enter")
            done = lambda n=n: len(store.list_runs()) == n and not app.run_active  # noqa: E731
            await wait_for(pilot, done, what=f"run {n} to end", timeout=60)
            assert app.view.status == "completed"
        (folder / "go").unlink()
        await pilot.press("enter")
        tree = app.main_screen.tree  # type: ignore[union-attr]
        label = lambda: tree.nodes_by_uid["body.1/body.0"].label.plain  # noqa: E731
        try:
            mark = lambda: "over p95" in label()  # noqa: E731
            await wait_for(pilot, mark, what="the called step's over-p95 mark", timeout=30)
            estimates = tree.estimates
            assert estimates is not None and estimates.step_band("body.1/body.0") is not None
        finally:
            (folder / "go").touch()  # the run ends whatever happened
        await wait_for(pilot, lambda: not app.run_active, what="run end", timeout=60)
    store.close()
