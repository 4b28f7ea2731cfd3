"""Run-wide search (`runkon-flow grep`, the dashboard's `s`) over a big fan-out, against a floor.

Builds a finished run with N foreach items in a SQLite file through the store API (each item a
child run with one step row and three stored output lines), then times, interleaved:

* **search**: `observe.outputs.read_outputs` + `observe.search.search_run` — what `grep` does:
  the rows for the structure (one `get_run` + `get_steps` per item) and the stored event stream;
* **floor**: reading the same stream with `store.read_events` and matching the regex against every
  `StepOutput` line's JSON text, with no structure at all — the least any search must do.

`--screen`: the dashboard's search screen showing a pattern that matches every line (`.`) —
`enter` to the list drawn, and peak RSS — next to the engine's search with the same limit, each
round in a fresh process (the list holds the first `SEARCH_LIMIT` hits, docs/dashboard.md).

    .venv/bin/python bench/bench_search.py [--items N] [--rounds R] [--screen] [--lines L --width W]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import loadavg, mmm, peak_rss_mb
from runkon_flow.event_log import unpack
from runkon_flow.observe.outputs import read_outputs
from runkon_flow.observe.search import compile_pattern, search_run
from runkon_flow.persistence import SqliteStore
from runkon_flow.persistence.models import (
    FanOutItemStatus,
    FanOutItemUpdate,
    NewEvent,
    NewRun,
    NewStep,
    RunStatus,
    StepUpdate,
)


def build(store: SqliteStore, items: int, lines: int = 0, width: int = 0, filler: str = "x") -> str:
    """The run; with `lines`, each item also prints that many lines of `width` characters (a run
    with a big output: `--items 25 --lines 2000 --width 4000` stores about 200 MB)."""
    run = store.create_run(NewRun(workflow_name="fan")).id
    fan = store.insert_step(NewStep(run, "foreach:each", role="foreach", retry_count=0, position=0))
    rows = store.insert_fan_out_items(fan, [("item", f"i{n}", "", {}) for n in range(items)])
    events: list[NewEvent] = []
    updates = []
    for n, row in enumerate(rows):
        child = store.create_run(NewRun(workflow_name="one", parent_workflow_run_id=run)).id
        step = store.insert_step(NewStep(child, "say", retry_count=0, position=0))
        failed = n % 20 == 0
        if failed:
            store.update_step(step, StepUpdate.failed(0, f"rate limited after {n} ms"))
        else:
            store.update_step(step, StepUpdate.completed(0, result_text="done"))
        store.update_run_status(child, RunStatus.FAILED if failed else RunStatus.COMPLETED, None, None)
        more = ((f"line {k} of i{n} " + filler * width)[:width] for k in range(lines))
        for line in (f"hello i{n}", f"working on i{n} · 42 files", *more, "boom" if failed else "ok"):
            payload = json.dumps({"step_id": step, "step_name": "say", "line": line})
            events.append(NewEvent(time.time(), child, "StepOutput", payload))
        status = FanOutItemStatus.FAILED if failed else FanOutItemStatus.COMPLETED
        updates.append((row, FanOutItemUpdate.terminal(status, child)))
    store.batch_update_fan_out_items(updates)
    store.append_events(run, events)
    store.update_run_status(run, RunStatus.FAILED, None, None)
    return run


def search(store: SqliteStore, run_id: str, regex: re.Pattern[str]) -> int:
    run = store.get_run(run_id)
    assert run is not None
    return search_run(store, run, regex, tree=read_outputs(store, run)).hit_count


def floor(store: SqliteStore, run_id: str, regex: re.Pattern[str]) -> int:
    hits, after = 0, 0
    while rows := store.read_events(run_id, after, 5000):
        after = rows[-1].seq
        events = (e for row in rows for e in unpack(row))
        hits += sum(
            1 for e in events if e.kind == "StepOutput" and regex.search(json.loads(e.payload)["line"])
        )
    return hits


# --------------------------------------------------------------------------- the dashboard's list


def one_round(kind: str, db: str, run_id: str, pattern: str) -> dict[str, float]:
    """In this process (a fresh one per round: peak RSS is per process): `screen` — the
    dashboard's search screen at 200×50, `enter` to the list drawn; `floor` — the engine's search
    with the same limit and no screen. Seconds and peak RSS (MB)."""
    import asyncio

    from runkon_tui.screens.search import SEARCH_LIMIT

    store = SqliteStore(Path(db))
    regex = compile_pattern(pattern)
    if kind == "floor":
        run = store.get_run(run_id)
        assert run is not None
        t0 = time.perf_counter()
        search_run(store, run, regex, limit=SEARCH_LIMIT)
        return {"seconds": time.perf_counter() - t0, "peak_mb": peak_rss_mb()}

    from textual.widgets import Input

    from runkon_tui.app import RunkonApp
    from runkon_tui.screens.search import SearchScreen

    async def drive() -> float:
        app = RunkonApp([], store=store, watch=False, blink=False)
        async with app.run_test(size=(200, 50)) as pilot:
            await pilot.pause()
            screen = SearchScreen(run_id)
            await app.push_screen(screen)
            await pilot.pause()
            screen.query_one(Input).value = pattern
            t0 = time.perf_counter()
            await pilot.press("enter")
            while screen.result is None or screen.searching:
                await asyncio.sleep(0.005)
            await pilot.pause()  # the list drawn
            return time.perf_counter() - t0

    seconds = asyncio.run(drive())
    return {"seconds": seconds, "peak_mb": peak_rss_mb()}


def report_screen(store: SqliteStore, path: Path, run_id: str, items: int, rounds: int, pattern: str) -> None:
    """`--screen`: the dashboard's search of a pattern matching every line (`.`), next to the
    engine's search alone, each round a fresh process, interleaved."""
    import subprocess

    store.close()
    figures: dict[str, list[dict[str, float]]] = {"dashboard": [], "floor": []}
    for _ in range(rounds):
        for kind in figures:
            argv = [sys.executable, __file__, "--one", kind, str(path), run_id, pattern]
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            figures[kind].append(json.loads(done.stdout.splitlines()[-1]))
    print(f"{pattern!r} over {items} items, {rounds} rounds interleaved; floor: the engine's search alone")
    print(f"{'':22} {'min':>8} {'median':>8} {'max':>8}")
    for kind, rows in figures.items():
        print(f"{kind + ' (s)':22} {mmm([r['seconds'] for r in rows], digits=2)}")
        print(f"{kind + ' peak RSS (MB)':22} {mmm([r['peak_mb'] for r in rows])}")
    print(loadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--screen", action="store_true", help="the dashboard's search screen for '.' (try --items 20000)"
    )
    parser.add_argument("--lines", type=int, default=0, help="more lines each item prints (a big output)")
    parser.add_argument("--width", type=int, default=100, help="characters in each of those lines")
    parser.add_argument(
        "--filler", default="x", help="what those lines repeat ('e ': `--pattern e` matches every other one)"
    )
    parser.add_argument("--pattern", default=".", help="the --screen search's pattern")
    parser.add_argument("--one", nargs=4, metavar=("KIND", "DB", "RUN", "PATTERN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_round(*args.one)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.db"
        store = SqliteStore(path)
        started = time.perf_counter()
        run_id = build(store, args.items, args.lines, args.width, args.filler)
        took, size = time.perf_counter() - started, path.stat().st_size / 1e6
        print(f"built {args.items} items ({size:,.0f} MB database) in {took:.1f} s; {loadavg()}")
        if args.screen:
            report_screen(store, path, run_id, args.items, args.rounds, args.pattern)
            return
        regex = compile_pattern("boom|rate limited")
        times: dict[str, list[float]] = {"search": [], "floor": []}
        for _ in range(args.rounds):
            for name, fn in (("search", search), ("floor", floor)):
                t0 = time.perf_counter()
                fn(store, run_id, regex)
                times[name].append(time.perf_counter() - t0)
        print(f"{'':8} {'min':>8} {'median':>8} {'max':>8}   (seconds, {args.rounds} rounds interleaved)")
        for name, values in times.items():
            print(f"{name:8} {mmm(values, digits=3)}")
        found, bare = search(store, run_id, regex), floor(store, run_id, regex)
        print(f"hits: search {found} (lines + errors), floor {bare}")
        print(loadavg())
        store.close()


if __name__ == "__main__":
    main()
