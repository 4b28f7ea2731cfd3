"""Estimates in the dashboard, on the real engine: after past runs of a workflow, a running step
that has outlived its p95 is marked `over p95` in the tree."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from runkon_flow.persistence.sqlite import SqliteStore
from textual.pilot import Pilot

from runkon_tui.app import RunkonApp
from tests.tui.conftest import real_app, select, wait_for

WF = """workflow est {
  script build { run = "while [ ! -f go ]; do sleep 0.05; done" }
}
"""


def engine_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **workflows: str
) -> tuple[Path, SqliteStore, RunkonApp]:
    """`wf/NAME.wf` for each of `workflows` (the working folder), run by the real engine into a
    SQLite store."""
    folder = tmp_path / "wf"
    folder.mkdir()
    for name, text in workflows.items():
        (folder / f"{name}.wf").write_text(text)
    monkeypatch.chdir(folder)
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store)
    return folder, store, app


async def start_late_after_two_quick_runs(
    pilot: Pilot, app: RunkonApp, store: SqliteStore, folder: Path, workflow: str
) -> None:
    """Two past runs of `workflow` whose build finds `go` at once (p95: a fraction of a second),
    then a third, left running: its build waits until the test touches `go` again."""
    await select(pilot, app, workflow)
    (folder / "go").touch()
    for n in (1, 2):
        await pilot.press("enter")
        done = lambda n=n: len(store.list_runs()) == n and not app.run_active  # noqa: E731
        await wait_for(pilot, done, what=f"run {n} to end", timeout=60)
        assert app.view.status == "completed"
    (folder / "go").unlink()
    await pilot.press("enter")


async def test_a_running_step_past_its_p95_is_marked_in_the_tree(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder, store, app = engine_app(tmp_path, monkeypatch, est=WF)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_late_after_two_quick_runs(pilot, app, store, folder, "est")
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
    folder, store, app = engine_app(tmp_path, monkeypatch, outer=OUTER, inner=INNER)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_late_after_two_quick_runs(pilot, app, store, folder, "outer")
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


GATED = """workflow gated {
  script build { run = "true" }
  gate human_approval { prompt = "Ship it?" }
}
"""


async def third_run_waiting_after_two_quick_answers(
    pilot: Pilot, app: RunkonApp, store: SqliteStore, workflow: str
) -> None:
    """Two past runs of `workflow` whose gate was approved at once, then a third left waiting at it."""
    await select(pilot, app, workflow)
    for n in (1, 2, 3):
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.waiting_gates(), what=f"run {n}'s gate", timeout=60)
        if n == 3:
            break
        [gate] = app.view.waiting_gates()
        store.approve_gate(gate.step_id, "tester", None, None)  # answered at once
        done = lambda n=n: len(store.list_runs()) == n and not app.run_active  # noqa: E731
        await wait_for(pilot, done, what=f"run {n} to end", timeout=60)
        assert app.view.status == "completed"


async def test_a_gate_waiting_for_a_person_is_never_marked_over_p95(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The report: `⚠ over p95 (13s)` on a human approval gate. Past answers came quickly, this
    one is slow: that is a person taking their time, not a step running late, so the tree shows
    the gate waiting with no ETA and no over-p95 mark."""
    from runkon_flow.observe.liveness import step_seconds

    _, store, app = engine_app(tmp_path, monkeypatch, gated=GATED)
    async with app.run_test(size=(120, 40)) as pilot:
        await third_run_waiting_after_two_quick_answers(pilot, app, store, "gated")
        past = [
            step_seconds(s) or 0.0
            for r in store.list_runs()
            if r.status == "completed"
            for s in store.get_steps(r.id)
            if s.step_name == "human_approval"
        ]
        assert len(past) == 2
        tree = app.main_screen.tree  # type: ignore[union-attr]
        label = lambda: tree.nodes_by_uid["body.1"].label.plain  # noqa: E731
        [gate] = app.view.waiting_gates()
        try:
            waited = lambda: time.time() - gate.since > max(past) + 1.0  # noqa: E731
            await wait_for(pilot, waited, what="the gate to wait longer than any past one", timeout=60)
            await wait_for(pilot, lambda: tree.estimates is not None, what="the estimates", timeout=30)
            await pilot.pause(0.6)  # a few ticks of the tree's clock
            assert "awaiting approval" in label()
            assert "over p95" not in label() and "ETA" not in label(), label()
        finally:
            store.approve_gate(gate.step_id, "tester", None, None)  # the run ends whatever happened
        await wait_for(pilot, lambda: not app.run_active, what="run end", timeout=60)
    store.close()


CALLS_GATED = """workflow outer {
  call workflow gated
}
"""


async def test_a_call_whose_workflow_waits_for_a_person_is_not_over_p95(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same person taking their time, one workflow down: the call step holds the wait in its
    elapsed time, but its band and its mark leave the person's wait out."""
    _, store, app = engine_app(tmp_path, monkeypatch, gated=GATED, outer=CALLS_GATED)
    async with app.run_test(size=(120, 40)) as pilot:
        await third_run_waiting_after_two_quick_answers(pilot, app, store, "outer")
        tree = app.main_screen.tree  # type: ignore[union-attr]
        label = lambda: tree.nodes_by_uid["body.0"].label.plain  # noqa: E731
        [gate] = app.view.waiting_gates()
        try:
            await wait_for(pilot, lambda: tree.estimates is not None, what="the estimates", timeout=30)
            await pilot.pause(2.0)  # longer than both past calls took, gate and all
            assert "over p95" not in label() and "ETA" not in label(), label()
        finally:
            store.approve_gate(gate.step_id, "tester", None, None)
        await wait_for(pilot, lambda: not app.run_active, what="run end", timeout=60)
    store.close()
