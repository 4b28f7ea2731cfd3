"""Engine throughput: a foreach over N no-op child workflows on the in-memory store.

    .venv/bin/python bench/bench_engine.py [--sizes 1000,10000] [--slots 8] [--repeat 3] [--sinks] [--profile]

Each child is a real run (run row, lease, step row, events when sinks are attached) whose one
step calls a no-op executor; the parent foreach dispatches them on `--slots` workers. The floor,
measured in the same process, is a bare ThreadPoolExecutor(slots) making the same no-op calls.

Prints per-item µs for engine and floor, the budget 2 × (floor + 100 µs) and whether it is met,
linearity (per-item cost at the largest N over the smallest; ~1.0 is linear) and peak RSS
(ru_maxrss, the process high-water mark after each size). `--sinks` attaches a sink that counts
events (what a dashboard costs); `--profile` prints a cProfile of one run of the largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.plugins.protocols import ActionOutput, ActionParams, FanOutItem, StepInfo
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver
from runkon_flow.runtime import DefaultRunContext, FlowEngineBuilder, RunInput

PARENT = "workflow fan {{ foreach all {{ over = range max_parallel = {slots} workflow = child }} }}"
CHILD = "workflow child { call noop }"


class NoOp:
    def name(self) -> str:
        return "noop"

    def execute(self, ctx: object, info: StepInfo, params: ActionParams) -> ActionOutput:
        return ActionOutput()

    def cancel(self, execution_id: str) -> None:
        pass


class Range:
    """Items "0" … "n-1"."""

    def __init__(self, n: int) -> None:
        self.n = n

    def name(self) -> str:
        return "range"

    def parse_scope(self, raw: object) -> None:
        return None

    def items(self, ctx: object, info: object, scope: object, filter: object) -> list[FanOutItem]:
        return [FanOutItem("n", str(i)) for i in range(self.n)]

    def dependencies(self, step_id: str) -> list[tuple[str, str]]:
        return []

    def supports_ordered(self) -> bool:
        return False


class CountingSink:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def emit(self, data: object) -> None:
        with self._lock:
            self.count += 1


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / (1024 * 1024)


def floor_us(n: int, slots: int) -> tuple[float, float]:
    """A bare ThreadPoolExecutor making the same no-op calls: (wall µs/item, CPU µs/item)."""
    noop = NoOp()
    ctx = DefaultRunContext("/tmp")
    cpu = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        futures = [
            pool.submit(noop.execute, ctx, StepInfo(step_id=str(i)), ActionParams(name="noop", inputs={}))
            for i in range(n)
        ]
        for f in futures:
            f.result()
    return (time.perf_counter() - start) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def engine_us(n: int, slots: int, sinks: bool) -> tuple[float, float, int]:
    """One engine run: (wall µs/item, CPU µs/item, events delivered)."""
    resolver = InMemoryWorkflowResolver([parse_workflow(CHILD)])
    builder = FlowEngineBuilder().action(NoOp()).item_provider(Range(n)).workflow_resolver(resolver)
    sink = CountingSink()
    if sinks:
        builder.event_sink(sink)
    engine = builder.build()
    store = InMemoryStore()
    wf = parse_workflow(PARENT.format(slots=slots))
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    result = engine.run_workflow(wf, RunInput(persistence=store, run_ctx=DefaultRunContext("/tmp")))
    elapsed = time.perf_counter() - start
    cpu_used = time.process_time() - cpu
    assert result.all_succeeded, store.get_run(result.workflow_run_id).error
    return elapsed / n * 1e6, cpu_used / n * 1e6, sink.count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sinks", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(
        f"foreach over N no-op child workflows, max_parallel {args.slots}, in-memory store"
        + (", with a counting sink" if args.sinks else "")
        + f"; best of {args.repeat}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'N':>7} {'engine µs/item':>15} {'(cpu)':>7} {'floor µs/item':>14} {'(cpu)':>7} {'budget':>8} "
        f"{'ok':>3} {'events':>8} {'peak RSS MB':>12}"
    )
    per_item: dict[int, float] = {}
    per_item_cpu: dict[int, float] = {}
    for n in sizes:
        floors = [floor_us(n, args.slots) for _ in range(args.repeat)]
        floor, floor_cpu = min(f[0] for f in floors), min(f[1] for f in floors)
        runs = [engine_us(n, args.slots, args.sinks) for _ in range(args.repeat)]
        best, best_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        per_item[n], per_item_cpu[n] = best, best_cpu
        budget = 2 * (floor + 100)
        print(
            f"{n:>7} {best:>15.1f} {best_cpu:>7.1f} {floor:>14.1f} {floor_cpu:>7.1f} {budget:>8.1f} "
            f"{'yes' if best <= budget else 'NO':>3} {runs[0][2]:>8} {peak_rss_mb():>12.1f}"
        )
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        print(
            f"linearity (µs/item at N={hi} over N={lo}): wall {per_item[hi] / per_item[lo]:.2f}, "
            f"cpu {per_item_cpu[hi] / per_item_cpu[lo]:.2f}"
        )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        engine_us(max(sizes), args.slots, args.sinks)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())


if __name__ == "__main__":
    main()
