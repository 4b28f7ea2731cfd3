"""How far behind an attached dashboard is: a run executed by another process (`runkon-flow run
--detach`), followed by a headless `runkon-tui` (`attach_run`); for every fan-out item completion
the time from the engine emitting it to the dashboard folding it on screen (the drain tick that
repaints it).

    .venv/bin/python bench/bench_attach.py [--items 400] [--parallel 4] [--item-seconds 0.05]

The path measured: the engine's event writer (stores every 0.2 s) → SQLite → the dashboard's
store follower (reads every 0.25 s) → the event bridge → the 10 Hz drain. Item completions that
happened before the dashboard caught up with the run's history are left out. Target: p99 ≤ 1 s.
Prints min/median/p99/max and the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.workspace import Workspace

from runkon_tui.app import RunkonApp

PARENT = """workflow fan {{
  foreach items {{
    over         = static
    scope        = {{ items = "{items}" }}
    max_parallel = {parallel}
    workflow     = item
  }}
}}
"""
CHILD = 'workflow item {{\n  script work {{ run = "sleep {seconds}" }}\n}}\n'


def start_detached(folder: Path, db: Path, workflow: str, env: dict[str, str] | None = None) -> str:
    """Start `workflow` in a background runner (`runkon-flow run --detach`); its run id."""
    argv = [sys.executable, "-m", "runkon_flow.cli", "run", workflow, "--dir", str(folder), "--db", str(db)]
    started = subprocess.run([*argv, "--detach"], capture_output=True, text=True, check=True, env=env)
    return started.stdout.split()[0].removeprefix("run_id=")


async def follow(folder: Path, db: Path, run_id: str, timeout: float) -> tuple[list[float], float]:
    store = SqliteStore(db)
    app = RunkonApp([folder], host=Workspace([folder], store), store=store, watch=False, user="bench")
    emitted: list[float] = []
    latencies: list[float] = []
    caught_up = [float("inf")]
    bridge_emit = app.bridge.emit

    def emit(data):  # the follower thread hands each stored event to the bridge
        if data.event.type == "FanOutItemCompleted":
            emitted.append(data.ts)
        bridge_emit(data)

    app.bridge.emit = emit  # type: ignore[method-assign]
    drain = app.drain

    def timed_drain() -> None:
        batch = emitted[: len(emitted)]
        del emitted[: len(batch)]
        drain()
        now = time.time()
        latencies.extend(now - ts for ts in batch if ts > caught_up[0])

    app.drain = timed_drain  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        app.attach_run(run_id)
        deadline = time.monotonic() + timeout
        while app.attached_run_id is None and time.monotonic() < deadline:
            await pilot.pause(0.05)
        while app._follower is not None and app._follower.last_seq == 0:
            await pilot.pause(0.05)
        caught_up[0] = time.time() + 0.5  # history replayed: from now on, live
        while app.attached_run_id is not None and time.monotonic() < deadline:
            await pilot.pause(0.05)
        status = app.view.status
    store.close()
    if status != "completed":
        raise SystemExit(f"the run ended {status}")
    return latencies, caught_up[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--item-seconds", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runkon-bench-attach-") as tmp:
        folder = Path(tmp) / "wf"
        folder.mkdir()
        items = ",".join(f"i{n}" for n in range(args.items))
        (folder / "fan.wf").write_text(PARENT.format(items=items, parallel=args.parallel))
        (folder / "item.wf").write_text(CHILD.format(seconds=args.item_seconds))
        db = Path(tmp) / "runs.db"
        print(f"load before: {os.getloadavg()}")
        run_id = start_detached(folder, db, "fan")
        latencies, _ = asyncio.run(follow(folder, db, run_id, timeout=600))
        print(f"load after:  {os.getloadavg()}")
    if not latencies:
        raise SystemExit("no item completed after the dashboard caught up; use more --items")
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(
        f"{len(ordered)} item completions seen live: min {ordered[0]:.3f} s, median "
        f"{statistics.median(ordered):.3f} s, p99 {p99:.3f} s, max {ordered[-1]:.3f} s "
        f"(target p99 ≤ 1 s: {'OK' if p99 <= 1.0 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
