"""Engine throughput on the SQLite store: a foreach over N no-op child workflows.

    .venv/bin/python bench/bench_engine_sqlite.py [--sizes 10000] [--slots 8] [--repeat 5]
                                                   [--rss 100000] [--profile] [--breakdown]

Each child is a real run: its own run row, lease, step row and fan-out item updates, written to a
WAL-mode SQLite file in a temporary directory. The floor, measured in the same process, is the
least any durable fan-out must do: a ThreadPoolExecutor(slots) making the same no-op calls while
keeping one status row per item with stdlib sqlite3 (insert all pending in one transaction, then
per item: update running, call, update completed; WAL, synchronous=NORMAL, one shared connection).

Prints per-item µs of both as min/median/max (interleaved, with the load average) and issue 15
target 2 (ratio ≤ 2.0 with "reported means durable" on: every item reported completed is
committed first). `--rss 100000` adds target 4: peak RSS of a fresh process at 100,000 items and
linearity time(100,000) / time(10,000) ≤ 11. `--profile` adds a cProfile of one engine run
(all threads), `--breakdown` the store calls per item with their time, so the cost can be attributed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _report import loadavg, mmm, peak_rss_mb, verdict
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.persistence import SqliteStore
from runkon_flow.plugins.protocols import ActionOutput, FanOutItem
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver
from runkon_flow.runtime import FlowEngineBuilder, RunInput

PARENT = """workflow fan {{
  foreach all {{
    over         = range
    max_parallel = {slots}
    workflow     = child
  }}
}}
"""
CHILD = "workflow child {\n  call noop\n}\n"


class NoOp:
    """An action that does nothing (the work a benchmark should not measure)."""

    def name(self) -> str:
        return "noop"

    def execute(self, ctx, info, params) -> ActionOutput:
        return ActionOutput()

    def cancel(self, execution_id: str) -> None:
        pass


class RangeProvider:
    """`over = range`: items 0..n-1."""

    def __init__(self, n: int) -> None:
        self.n = n

    def name(self) -> str:
        return "range"

    def parse_scope(self, raw_scope):
        return None

    def items(self, ctx, info, scope, filter) -> list[FanOutItem]:
        return [FanOutItem("range", f"item-{i:06d}") for i in range(self.n)]

    def dependencies(self, step_id: str) -> list[tuple[str, str]]:
        return []

    def supports_ordered(self) -> bool:
        return False


class CountingStore:
    """Wraps a store: counts calls and wall time (lock waits included) per method."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.calls: dict[str, list[float]] = {}

    def __getattr__(self, name: str):
        target = getattr(self._store, name)
        if not callable(target) or name.startswith("_"):
            return target

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                with self._lock:
                    entry = self.calls.setdefault(name, [0, 0.0])
                    entry[0] += 1
                    entry[1] += spent

        return timed

    def report(self, n: int, elapsed: float) -> None:
        print(f"store calls per item (N={n}; wall time summed over threads, lock waits included):")
        total_calls = sum(c for c, _ in self.calls.values())
        for name, (count, spent) in sorted(self.calls.items(), key=lambda kv: -kv[1][1]):
            print(f"  {name:<28} {count / n:>6.2f} calls/item {spent / n * 1e6:>8.0f} µs/item")
        print(
            f"  {'total':<28} {total_calls / n:>6.2f} calls/item   "
            f"(run: {elapsed / n * 1e6:.0f} µs/item wall)"
        )


def engine_run(n: int, slots: int, db: Path, profile: bool = False, breakdown: bool = False) -> float:
    """Seconds for one engine run of a foreach over `n` children on a fresh SQLite file."""
    resolver = InMemoryWorkflowResolver([parse_workflow(CHILD)])
    parent = parse_workflow(PARENT.format(slots=slots))
    engine = (
        FlowEngineBuilder().action(NoOp()).item_provider(RangeProvider(n)).workflow_resolver(resolver).build()
    )
    real_store = SqliteStore(db)
    store = CountingStore(real_store) if breakdown else real_store
    profilers: list[cProfile.Profile] = []

    def profile_this_thread(*_: object) -> None:
        # Called once in each thread the engine starts: swap in a profiler of its own.
        sys.setprofile(None)
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()

    try:
        if profile:
            threading.setprofile(profile_this_thread)
            profile_this_thread()
        started = time.perf_counter()
        result = engine.run_workflow(parent, RunInput(persistence=store))
        elapsed = time.perf_counter() - started
        if profile:
            threading.setprofile(None)  # type: ignore[arg-type]
            for profiler in profilers:
                profiler.disable()
        if not result.all_succeeded:
            raise SystemExit(f"engine run failed: {result.error}")
        if profilers:
            print(f"profile of {len(profilers)} threads (engine, workers, monitor), summed:")
            for order, count in (("tottime", 30), ("cumulative", 45)):
                out = io.StringIO()
                stats = pstats.Stats(profilers[0], stream=out)
                for extra in profilers[1:]:
                    stats.add(extra)
                stats.sort_stats(order).print_stats(count)
                print(out.getvalue())
        if isinstance(store, CountingStore):
            store.report(n, elapsed)
        return elapsed
    finally:
        real_store.close()


def floor_run(n: int, slots: int, db: Path) -> float:
    """Seconds for the floor: thread pool + one sqlite3 status row per item (see module doc)."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE items (id TEXT PRIMARY KEY, status TEXT NOT NULL, started TEXT, ended TEXT)")
    lock = threading.Lock()
    noop = NoOp()
    started = time.perf_counter()
    ids = [f"item-{i:06d}" for i in range(n)]
    with lock:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO items (id, status) VALUES (?, 'pending')", [(i,) for i in ids])
        conn.execute("COMMIT")

    def one(item_id: str) -> None:
        with lock:
            conn.execute(
                "UPDATE items SET status = 'running', started = datetime('now') WHERE id = ?", (item_id,)
            )
        noop.execute(None, None, None)
        with lock:
            conn.execute(
                "UPDATE items SET status = 'completed', ended = datetime('now') WHERE id = ?", (item_id,)
            )

    with ThreadPoolExecutor(slots) as pool:
        for future in [pool.submit(one, i) for i in ids]:
            future.result()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def in_subprocess(what: str, n: int, slots: int) -> tuple[float, float]:
    """(peak RSS MB, seconds) of one `what` run ("engine" or "floor") of N items in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, "--sizes", str(n), "--slots", str(slots)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated N values")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="runs per size, engine and floor interleaved")
    parser.add_argument("--rss", type=int, default=0, help="also: peak RSS and linearity at this N (100000)")
    parser.add_argument("--profile", action="store_true", help="cProfile one engine run of the smallest N")
    parser.add_argument(
        "--breakdown", action="store_true", help="count store calls per item in one run of the smallest N"
    )
    parser.add_argument("--child", choices=["engine", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.child:
        with tempfile.TemporaryDirectory(prefix="runkon-bench-") as tmp:
            run = engine_run if args.child == "engine" else floor_run
            seconds = run(sizes[0], args.slots, Path(tmp) / "child.db")
        print(f"{peak_rss_mb():.1f} {seconds:.3f}")
        return

    print(
        f"foreach over N no-op child workflows on SQLite (WAL, synchronous=NORMAL), {args.slots} slots; "
        f"{args.repeat} repeats, engine and floor interleaved; {loadavg()}"
    )
    print(
        "floor: ThreadPoolExecutor(slots) + stdlib sqlite3, one status row per item "
        "(pending in one transaction, then running and completed, each committed)"
    )
    print(f"{'N':>7} {'':<16} {'min':>8} {'median':>8} {'max':>8}   (µs per item)")
    with tempfile.TemporaryDirectory(prefix="runkon-bench-") as tmp:
        counter = 0
        for n in sizes:
            engine_us: list[float] = []
            floor_us: list[float] = []
            for _ in range(args.repeat):
                counter += 1
                floor_us.append(floor_run(n, args.slots, Path(tmp) / f"floor-{counter}.db") / n * 1e6)
                engine_us.append(engine_run(n, args.slots, Path(tmp) / f"engine-{counter}.db") / n * 1e6)
            print(f"{n:>7} {'engine':<16} {mmm(engine_us)}")
            print(f"{'':>7} {'floor':<16} {mmm(floor_us)}")
            ratios = [e / f for e, f in zip(engine_us, floor_us, strict=True)]
            print(f"{'':>7} {'ratio (per pair)':<16} {mmm(ratios, digits=2)}")
            if n == 10_000:
                ratio = statistics.median(ratios)
                print(
                    f"target 2 (issue 15): SQLite fan-out ≤ 2.0x the sync=NORMAL floor at 10,000, "
                    f"reported-means-durable on: median ratio {ratio:.2f} — {verdict(ratio <= 2.0)}"
                )
        if args.rss:
            small = min(sizes)
            eng_small = [in_subprocess("engine", small, args.slots) for _ in range(2)]
            eng_big = [in_subprocess("engine", args.rss, args.slots) for _ in range(2)]
            floor_big = [in_subprocess("floor", args.rss, args.slots) for _ in range(2)]
            rss = max(r[0] for r in eng_big)
            linear = min(r[1] for r in eng_big) / min(r[1] for r in eng_small)
            limit = args.rss / small * 1.1
            print(
                f"target 4: peak RSS at {args.rss:,} items on SQLite ≤ 250 MB: engine {rss:.0f} MB "
                f"(floor process {max(r[0] for r in floor_big):.0f} MB) — {verdict(rss <= 250)}"
            )
            print(
                f"target 4: time({args.rss:,}) / time({small:,}) ≤ {limit:.0f}: {linear:.1f} "
                f"(best of 2 each) — {verdict(linear <= limit)}"
            )
        print(f"after: {loadavg()}")
        if args.profile:
            engine_run(min(sizes), args.slots, Path(tmp) / "profile.db", profile=True)
        if args.breakdown:
            engine_run(min(sizes), args.slots, Path(tmp) / "breakdown.db", breakdown=True)


if __name__ == "__main__":
    main()
