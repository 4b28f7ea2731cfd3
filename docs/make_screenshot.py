"""Regenerate docs/screenshot.svg: the dashboard mid-run on the sample `fan-out-lint` workflow.

    .venv/bin/python docs/make_screenshot.py

Runs the real engine (in-memory store) headless at 120×40 and saves the screen once a good part
of the 60 repositories is done, with one running item selected.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def shoot(target: Path) -> None:
    os.environ.setdefault("RUNKON_TUI_CONFIG", str(Path(tempfile.mkdtemp()) / "tui.yaml"))
    os.environ["RUNKON_SAMPLE_SPEED"] = "1"
    from runkon_flow.persistence.memory import InMemoryStore
    from runkon_flow.workspace import Workspace

    from runkon_tui.app import RunkonApp

    folder = ROOT / "sample_workflows"
    store = InMemoryStore()
    app = RunkonApp([Path("sample_workflows")], host=Workspace([folder], store), store=store, watch=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        entry = app.catalog.by_name("fan-out-lint")
        assert entry is not None
        app.request_run(entry)
        while True:
            await asyncio.sleep(0.1)
            fan = app.view.active_fanout()
            if fan is not None and fan.done >= 30 and fan.count("running") >= 3:
                break
        screen = app.main_screen
        assert screen is not None and fan is not None
        running = next(i for i in range(len(fan.ids)) if fan.status_of(i) == "running")
        screen.grid.focus()
        screen.grid.move_to_item(running)
        await pilot.pause()
        app.drain()
        await pilot.pause()
        app.save_screenshot(filename=target.name, path=str(target.parent))
        app.request_cancel()
        await pilot.pause()
        await pilot.press("y")
        while app.run_active:
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(shoot(ROOT / "docs" / "screenshot.svg"))
    print("wrote docs/screenshot.svg")
