"""Engine throughput on the SQLite store: a foreach over N no-op child workflows.

    .venv/bin/python bench/bench_engine_sqlite.py [--sizes 1000,10000] [--slots 8] [--repeat 3]
                                                   [--profile] [--breakdown]

Each child is a real run: its own run row, lease, step row and fan-out item updates, written to a
WAL-mode SQLite file in a temporary directory. The floor, measured in the same process, is the
least any durable fan-out must do: a ThreadPoolExecutor(slots) making the same no-op calls while
keeping one status row per item with stdlib sqlite3 (insert all pending in one transaction, then
per item: update running, call, update completed; WAL, synchronous=NORMAL, one shared connection).

Prints per-item µs for both, the ratio (target ≤ 2×), linearity (per-item cost at the largest N
over the smallest; ~1.0 is linear) and peak RSS. `--profile` adds a cProfile of one engine run
(all threads), `--breakdown` the store calls per item with their time, so the cost can be attributed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated N values")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs per size")
    parser.add_argument("--profile", action="store_true", help="cProfile one engine run of the smallest N")
    parser.add_argument(
        "--breakdown", action="store_true", help="count store calls per item in one run of the smallest N"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    print(f"foreach over N no-op child workflows on SQLite (WAL), {args.slots} slots, best of {args.repeat}")
    print(
        f"{'N':>7} {'engine µs/item':>15} {'floor µs/item':>14} {'ratio':>6} {'engine s':>9} {'floor s':>8}"
    )
    per_item: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="runkon-bench-") as tmp:
        counter = 0
        for n in sizes:
            engine_best = floor_best = float("inf")
            for _ in range(args.repeat):
                counter += 1
                engine_best = min(engine_best, engine_run(n, args.slots, Path(tmp) / f"engine-{counter}.db"))
                floor_best = min(floor_best, floor_run(n, args.slots, Path(tmp) / f"floor-{counter}.db"))
            e_us, f_us = engine_best / n * 1e6, floor_best / n * 1e6
            per_item[n] = e_us
            print(
                f"{n:>7} {e_us:>15.0f} {f_us:>14.0f} {e_us / f_us:>5.1f}× "
                f"{engine_best:>9.2f} {floor_best:>8.2f}"
            )
        if len(sizes) > 1:
            small, large = min(sizes), max(sizes)
            print(
                f"linearity: per-item cost at N={large} / N={small} = {per_item[large] / per_item[small]:.2f}"
            )
        print(f"peak RSS: {peak_rss_mb():.0f} MB")
        if args.profile:
            engine_run(min(sizes), args.slots, Path(tmp) / "profile.db", profile=True)
        if args.breakdown:
            engine_run(min(sizes), args.slots, Path(tmp) / "breakdown.db", breakdown=True)


if __name__ == "__main__":
    main()
