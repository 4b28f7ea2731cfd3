"""Shared set-up for the dashboard tests: isolated settings, a frozen clock, a fixed fixture folder."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.events import CollectingSink, EngineEventData
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.workspace import Workspace

from runkon_tui.app import RunkonApp
from runkon_tui.widgets.log_pane import LogPane
from tests.tui.fakes import ScriptedHost
from tests.tui.scenarios import T0

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DIR = Path("tests/tui/fixtures/workflows")  # relative: it is shown in the header
E2E = Path(__file__).parent / "fixtures" / "e2e"
NOW = T0 + 60.0


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the end-to-end workflows (tests/tui/fixtures/e2e) for the real engine, so runs and
    edits never touch the repository; `released/` is where the `fanout` items wait for their file."""
    target = tmp_path / "workflows"
    shutil.copytree(E2E, target)
    (target / "released").mkdir()
    return target


def release(folder: Path, *items: str) -> None:
    """Let the `fanout` fixture's items finish: each one's agent waits for its file here."""
    for item in items:
        (folder / "released" / item).touch()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Settings and runner logs never touch the real home directory; relative fixture paths
    resolve; times show in UTC, so the screens (which show local time) look the same on every
    developer's machine."""
    monkeypatch.setenv("RUNKON_TUI_CONFIG", str(tmp_path / "settings" / "tui.yaml"))
    # Runners of a PostgreSQL run log to runkon's state directory: never the real one.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("RUNKON_THEMES_DIR", raising=False)
    monkeypatch.chdir(REPO)
    had = os.environ.get("TZ")
    use_zone(monkeypatch, "UTC")
    yield
    if had is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = had
    time.tzset()


def use_zone(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    """Show times in `zone` (the C library's local time too) until the test ends."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()


def fixed_store_clock() -> datetime:
    return datetime.fromtimestamp(T0, UTC)


def make_app(
    *,
    host: Any = "scripted",
    dirs: list[Path] | None = None,
    theme: str | None = None,
    store: Any = None,
    watch: bool = False,
    clock: Callable[[], float] = lambda: NOW,
    **kwargs: Any,
) -> RunkonApp:
    """A dashboard for tests: frozen clock, no blinking, no animation, no file watching."""
    folders = dirs or [FIXTURE_DIR]
    if host == "scripted":
        host = ScriptedHost(folders)
    app = RunkonApp(
        folders,
        host=host,
        store=store if store is not None else InMemoryStore(clock=fixed_store_clock),
        theme=theme,
        clock=clock,
        watch=watch,
        blink=False,
        user="tester",
        **kwargs,
    )
    app.animation_level = "none"
    return app


def real_app(
    folder: Path, store: Any = None, collector: CollectingSink | None = None, **kwargs: Any
) -> RunkonApp:
    """A dashboard on the real engine over `folder` (its runs in `store`, in memory if none; the
    engine's events also to `collector`), on the wall clock: runs take real time."""
    store = store if store is not None else InMemoryStore()
    host = Workspace([folder], store, sinks=[collector] if collector is not None else ())
    return make_app(host=host, store=store, dirs=[folder], clock=time.time, **kwargs)


def feed(app: RunkonApp, events: Iterable[EngineEventData]) -> None:
    """Push scripted events through the real bridge and fold them, as a UI tick would."""
    for data in events:
        app.bridge.emit(data)
    app.drain()


def pane_lines(pane: LogPane, mode: str = "output") -> list[tuple[str, str]]:
    """Every (text, level) line of the log pane's `mode` view, as it would draw them."""
    source = pane.sources[mode]
    return [source.get(i) for i in range(len(source))]


async def wait_for(
    pilot: Any, condition: Callable[[], object], timeout: float = 15.0, what: str = ""
) -> None:
    """Let the app run until `condition()` holds (no fixed sleeps racing the engine)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests of this folder on a fresh event loop (no async plugin needed)."""
    import asyncio
    import inspect

    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


async def start_fanout_two_done(pilot, app, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """Start the `fanout` fixture from the dashboard with items a and b released: once they are
    completed and c and d are running (blocked until released)."""
    await select(pilot, app, "fanout")
    release(folder, "a", "b")
    await pilot.press("enter")  # no inputs: starts at once
    fan = lambda: app.view.active_fanout()  # noqa: E731
    await wait_for(pilot, lambda: fan() is not None and fan().count("completed") == 2, what="two items")
    await wait_for(pilot, lambda: fan().count("running") == 2, what="c and d to start")


async def select(pilot, app, name: str) -> None:  # type: ignore[no-untyped-def]
    """Highlight workflow `name` in the list and focus the list, as a user's arrow keys would."""
    entry = app.catalog.by_name(name)
    assert entry is not None, name
    screen = app.main_screen
    assert screen is not None
    screen.workflow_list.highlighted = [e.path for e in app.catalog].index(entry.path)
    screen.workflow_list.focus()
    await pilot.pause()
