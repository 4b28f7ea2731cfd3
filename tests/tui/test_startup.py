"""`runkon-tui` starts with the store only and builds the engine right after its first frame
(`open_workspace(..., deferred=True)` → `DeferredHost`): the first frame does not wait for the
engine's runtime, plug-ins, approvals and hooks, and nothing else changes for the user — runs
start, a broken engine is reported, hooks run and their problems are shown."""

from __future__ import annotations

import gc
import sys
import threading
import time
from pathlib import Path

import pytest
from runkon_flow.workspace import Workspace

from runkon_tui.host import DeferredHost, open_workspace
from tests.tui.conftest import make_app, wait_for
from tests.tui.test_engine_e2e import run_quick
from tests.tui.test_new_user import screen_text


async def test_the_engine_is_built_after_the_first_frame_and_runs_work(folder: Path, tmp_path: Path) -> None:
    opened = open_workspace([folder], tmp_path / "runs.db", deferred=True)
    deferred = opened.host
    assert isinstance(deferred, DeferredHost) and not deferred.built  # only the store so far
    app = make_app(host=deferred, store=opened.store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.host, Workspace), what="the engine to be built")
            assert deferred.built and not deferred.problems
            await run_quick(pilot, app)
            assert app.view.status == "completed", app.view.summary_text()
    finally:
        deferred.close()
        opened.store.close()


async def test_an_engine_that_cannot_start_is_reported_after_the_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the [ray] extra
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "hello.wf").write_text('workflow hello { script s { run = "true" } }')
    opened = open_workspace([tmp_path / "wf"], tmp_path / "runs.db", executor="ray", deferred=True)
    assert opened.problems == []  # known only once the engine is built
    app = make_app(host=opened.host, store=opened.store, dirs=[tmp_path / "wf"])
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.host is None, what="the engine to fail")
            await wait_for(pilot, lambda: app._notifications, what="the problem's toast")
            (toast,) = list(app._notifications)
            assert "engine unavailable" in str(toast.message) and "runkon-tui[ray]" in str(toast.message)
            await pilot.pause()
            assert "⏎ Run" not in screen_text(app)[-1]  # browse-only: no Run key
            await pilot.press("enter")  # and enter does not try to run
            await pilot.pause()
            assert app.view.root is None and not app.run_active
    finally:
        opened.store.close()


def test_a_key_before_the_engine_is_built_builds_it_once(folder: Path, tmp_path: Path) -> None:
    builds: list[int] = []
    gate = threading.Event()

    def build() -> tuple[Workspace, list[str], None]:
        builds.append(1)
        gate.wait(5)
        return Workspace([folder], opened.store), [], None

    opened = open_workspace([folder], tmp_path / "runs.db", deferred=True)
    deferred = DeferredHost(build)
    worker = threading.Thread(target=deferred.build)  # the app's build after the first frame
    worker.start()
    seen: list[object] = []
    key = threading.Thread(target=lambda: seen.append(deferred.prepare_inputs("quick", {"who": "me"})))
    key.start()  # a key pressed meanwhile waits for that build instead of starting another
    time.sleep(0.1)
    gate.set()
    worker.join(5)
    key.join(5)
    try:
        assert builds == [1] and seen == [{"who": "me"}]
        assert isinstance(deferred.host, Workspace)
    finally:
        opened.store.close()


def test_hooks_are_opened_with_the_engine_and_their_problems_reach_the_screen(tmp_path: Path) -> None:
    out = tmp_path / "hook.txt"
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(f"hooks:\n  - events: ['workflow_run.*']\n    run: cat >> {out}\n")
    opened = open_workspace([tmp_path], tmp_path / "runs.db", hooks=str(hooks), deferred=True)
    deferred = opened.host
    assert isinstance(deferred, DeferredHost) and opened.hooks is None
    told: list[str] = []
    deferred.on_hook_problem = told.append
    try:
        deferred.build()
        assert deferred.hooks is not None and deferred.hooks.on_problem == told.append
    finally:
        deferred.close()
        opened.store.close()

    bad = tmp_path / "bad.yaml"
    bad.write_text("hooks:\n  - events: gate.waiting\n")
    opened = open_workspace([tmp_path], tmp_path / "runs2.db", hooks=str(bad), deferred=True)
    try:
        deferred = opened.host
        assert isinstance(deferred, DeferredHost)
        assert isinstance(deferred.build(), Workspace) and deferred.hooks is None
        assert deferred.problems == [
            f"hooks not used: {bad}:2: hooks.0: give exactly one of 'run' (a shell command) or 'post' (a URL)"
        ]
    finally:
        opened.store.close()


async def test_the_collector_is_off_until_the_first_frame_then_on(tmp_path: Path) -> None:
    """`runkon-tui` starts with the garbage collector off (cli.main); the app turns it back on
    once its first frame is drawn, so a long session does not leak cycles."""
    gc.disable()  # as cli.main does
    try:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, gc.isenabled, what="the collector to be turned on")
    finally:
        gc.enable()


def test_the_collector_is_on_again_when_runkon_tui_returns(tmp_path: Path) -> None:
    from runkon_tui.cli import main

    assert main([str(tmp_path / "missing")]) == 2  # any way out of main
    assert gc.isenabled()


async def test_a_run_imports_nothing_the_app_did_not_load_right_after_its_first_frame(
    folder: Path, tmp_path: Path
) -> None:
    """A run's end rings the bell through the hooks package (YAML, HTTP): imported then, it held
    the interpreter while the engine's threads were finishing the run. It is loaded after the
    first frame instead, with whatever else a run needs."""
    opened = open_workspace([folder], tmp_path / "runs.db", deferred=True)
    app = make_app(host=opened.host, store=opened.store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.host, Workspace), what="the engine to be built")
            await wait_for(pilot, lambda: gc.isenabled(), what="the start-up heap to be frozen")
            before = set(sys.modules)
            await run_quick(pilot, app)
            assert app.view.status == "completed", app.view.summary_text()
            await pilot.pause()
            assert sorted(set(sys.modules) - before) == []
    finally:
        opened.host.close()
        opened.store.close()
