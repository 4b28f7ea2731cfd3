"""Engine throughput: a foreach over N no-op child workflows on the in-memory store.

    .venv/bin/python bench/bench_engine.py [--sizes 10000] [--slots 8] [--repeat 5] [--sinks] [--profile]
                                           [--rss 100000]

Each child is a real run (run row, lease, step row, events when sinks are attached) whose one
step calls a no-op executor; the parent foreach dispatches them on `--slots` workers. The floor,
measured in the same process, is a bare ThreadPoolExecutor(slots) making the same no-op calls.

Prints per-item µs (wall and CPU) of engine and floor as min/median/max, interleaved, with the
load average, and issue 15 target 3 (≤ 75 µs/item at 10,000). `--rss 100000` adds target 4: the
peak RSS of a fresh process running 100,000 items (and of one running the floor), and linearity
time(100,000) / time(10,000) ≤ 11. `--sinks` attaches a sink that counts
events (what a dashboard costs); `--profile` prints a cProfile of one run of the largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _report import loadavg, mmm, peak_rss_mb, verdict
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


def rss_in_subprocess(what: str, n: int, slots: int) -> tuple[float, float]:
    """(peak RSS MB, seconds) of one `what` run ("engine" or "floor") of N items in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, "--sizes", str(n), "--slots", str(slots)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def child(what: str, n: int, slots: int) -> None:
    start = time.perf_counter()
    if what == "engine":
        engine_us(n, slots, False)
    else:
        floor_us(n, slots)
    print(f"{peak_rss_mb():.1f} {time.perf_counter() - start:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sinks", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--rss", type=int, default=0, help="also: peak RSS and linearity at this N (100000)")
    parser.add_argument("--child", choices=["engine", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        child(args.child, sizes[0], args.slots)
        return

    print(
        f"foreach over N no-op child workflows, max_parallel {args.slots}, in-memory store"
        + (", with a counting sink" if args.sinks else "")
        + f"; {args.repeat} repeats, engine and floor interleaved; {loadavg()}"
    )
    print("floor: a bare ThreadPoolExecutor(slots) making the same no-op calls")
    print(f"{'N':>7} {'':<16} {'min':>8} {'median':>8} {'max':>8}   (µs per item)")
    medians: dict[int, float] = {}
    for n in sizes:
        engine_runs: list[tuple[float, float, int]] = []
        floor_runs: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            floor_runs.append(floor_us(n, args.slots))
            engine_runs.append(engine_us(n, args.slots, args.sinks))
        medians[n] = statistics.median(r[0] for r in engine_runs)
        print(f"{n:>7} {'engine wall':<16} {mmm([r[0] for r in engine_runs])}")
        print(f"{'':>7} {'floor wall':<16} {mmm([r[0] for r in floor_runs])}")
        print(f"{'':>7} {'engine cpu':<16} {mmm([r[1] for r in engine_runs])}")
        print(f"{'':>7} {'floor cpu':<16} {mmm([r[1] for r in floor_runs])}")
        ratio = medians[n] / statistics.median(r[0] for r in floor_runs)
        print(f"{'':>7} engine/floor (medians) {ratio:.1f}x   events per run {engine_runs[0][2]}")
        if n == 10_000:
            floor_median = statistics.median(r[0] for r in floor_runs)
            print(
                f"target 3 (issue 15): in-memory fan-out ≤ 75 µs/item at 10,000: median {medians[n]:.1f} "
                f"µs/item (floor {floor_median:.1f}) — {verdict(medians[n] <= 75)}"
                " (wall time on a quiet machine; see the load above)"
            )
    if args.rss:
        small = min(sizes)
        eng_small = [rss_in_subprocess("engine", small, args.slots) for _ in range(2)]
        eng_big = [rss_in_subprocess("engine", args.rss, args.slots) for _ in range(2)]
        floor_big = [rss_in_subprocess("floor", args.rss, args.slots) for _ in range(2)]
        rss = max(r[0] for r in eng_big)
        linear = min(r[1] for r in eng_big) / min(r[1] for r in eng_small)
        print(
            f"target 4: peak RSS at {args.rss:,} items ≤ 250 MB: engine {rss:.0f} MB "
            f"(floor process {max(r[0] for r in floor_big):.0f} MB) — {verdict(rss <= 250)}"
        )
        print(
            f"target 4: time({args.rss:,}) / time({small:,}) ≤ {args.rss / small * 1.1:.0f}: {linear:.1f} "
            f"(best of 2 each, whole process) — {verdict(linear <= args.rss / small * 1.1)}"
        )
    print(f"after: {loadavg()}")
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
