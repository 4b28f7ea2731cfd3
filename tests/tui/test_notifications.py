"""The dashboard tells you when the run on screen needs you or is done — the bell plus a desktop
notification escape — and runs the hooks file for the runs it starts, like the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runkon_tui.host import open_workspace
from runkon_tui.screens.gate import GateScreen
from tests.tui.conftest import make_app, real_app, select, wait_for
from tests.tui.test_engine_e2e import run_quick


async def test_a_waiting_gate_and_the_runs_end_ring_with_a_desktop_notification(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNKON_NOTIFY", "osc9")
    monkeypatch.delenv("TMUX", raising=False)
    app = real_app(folder)
    written: list[str] = []
    monkeypatch.setattr(app, "write_to_terminal", written.append)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "approval")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate to wait")
        await wait_for(pilot, lambda: written, what="the gate's alert")
        assert written == ["\a\x1b]9;runkon: gate human_approval waits: Release it?\x07"]
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: not app.run_active and len(written) == 2, what="the run's end")
        assert written[1].startswith("\a\x1b]9;runkon: run completed: approval completed after ")


async def test_notifications_can_be_turned_off(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNKON_NOTIFY", "off")
    app = real_app(folder)
    written: list[str] = []
    monkeypatch.setattr(app, "write_to_terminal", written.append)
    async with app.run_test(size=(120, 40)) as pilot:
        await run_quick(pilot, app)
    assert written == []


async def test_an_unknown_notification_style_is_a_start_up_problem(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`RUNKON_NOTIFY=beep` was ignored without a word (the style was guessed); the dashboard now
    says so once, naming the styles it accepts."""
    monkeypatch.setenv("RUNKON_NOTIFY", "beep")
    app = real_app(folder)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        said = [line.text for line in app.problems.lines if "RUNKON_NOTIFY" in line.text]
    assert len(said) == 1, said
    assert "'beep' is not a notification style" in said[0] and "osc9, osc777, bell or off" in said[0]


async def test_hooks_run_for_a_run_started_in_the_dashboard(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNKON_HOOKS", raising=False)
    out = tmp_path / "hook.jsonl"
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(
        f"hooks:\n  - events: ['workflow_run.*', 'gate.waiting']\n    run: cat >> {out}; echo >> {out}\n"
    )
    opened = open_workspace([folder], tmp_path / "runs.db", hooks=str(hooks))
    assert opened.problems == [] and opened.hooks is not None
    app = make_app(host=opened.host, store=opened.store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await run_quick(pilot, app)
            run_id = app.view.root_run_id
    finally:
        opened.hooks.close()
        opened.store.close()
    events = [json.loads(line) for line in out.read_text().splitlines() if line]
    assert len(events) == 1, events  # (once, under a loaded full suite, two were written: which?)
    (event,) = events
    assert (event["event"], event["run_id"], event["workflow"]) == ("workflow_run.completed", run_id, "quick")


def test_a_wrong_hooks_file_is_reported_and_the_dashboard_runs_without_hooks(tmp_path: Path) -> None:
    bad = tmp_path / "hooks.yaml"
    bad.write_text("hooks:\n  - events: gate.waiting\n")
    opened = open_workspace([tmp_path], tmp_path / "runs.db", hooks=str(bad))
    try:
        assert opened.host is not None and opened.hooks is None
        assert opened.problems == [
            f"hooks not used: {bad}:2: hooks.0: give exactly one of 'run' (a shell command) or 'post' (a URL)"
        ]
    finally:
        opened.store.close()


def test_a_run_the_dashboard_executes_fails_with_its_failure_clusters_in_the_hook_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's hooks read the same store as its runs: a failed fan-out's event says why
    its items failed (`failures`), as the CLI's does (docs/notifications.md)."""
    monkeypatch.delenv("RUNKON_HOOKS", raising=False)
    monkeypatch.chdir(tmp_path)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "fan.wf").write_text(
        'workflow fan {\n  foreach each {\n    over = static\n    scope = { items = "a,b,c" }\n'
        '    max_parallel = 1\n    workflow = one\n    inputs = { name = "{{item.id}}" }\n  }\n}\n'
    )
    (flows / "one.wf").write_text(
        'workflow one {\n  inputs { name default = "" }\n'
        '  script work { run = "test {{name}} = b || { echo quota spent >&2; exit 3; }" }\n}\n'
    )
    out = tmp_path / "hook.jsonl"
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(f"hooks:\n  - events: workflow_run.failed\n    run: cat >> {out}; echo >> {out}\n")
    opened = open_workspace([flows], tmp_path / "runs.db", hooks=str(hooks))
    assert opened.host is not None and opened.hooks is not None, opened.problems
    try:
        run_id = opened.host.create_run("fan", {})
        opened.host.execute(run_id)
    finally:
        opened.hooks.close()
        opened.store.close()
    (event,) = [json.loads(line) for line in out.read_text().splitlines() if line]
    assert (event["run_id"], event["error"]) == (run_id, "foreach 'each': 2 of 3 items failed")
    assert event["failures"] == [
        {
            "cluster": 1,
            "foreach": "each",
            "count": 2,
            "what": "Script 'work' exited with code <n> · quota spent",
            "items": ["a", "c"],
        }
    ]
