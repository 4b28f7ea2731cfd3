"""Per-command cost of `run_process` (what every script step, command agent and command item
provider pays), with and without the orphan watchdog's bookkeeping.

    .venv/bin/python bench/bench_spawn.py [--n 200] [--threads 8] [--repeat 5]

Rows: `run_process(["true"])`; `run_process("true", shell=True)` (how script steps run); the same
from `--threads` threads at once (a foreach's workers). Sequential rows alternate guarded and
unguarded calls one by one (the watchdog's register/release made no-ops for the latter), so the
machine's drift hits both alike, and print the median and 90th percentile of `--repeat` × `--n`
calls each; threaded rows print wall time / n, best of `--repeat`. The floor is a bare
`subprocess.run(["true"])` in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from runkon_flow import process
from runkon_flow.process import run_process


@contextlib.contextmanager
def unguarded() -> Iterator[None]:
    """The watchdog's bookkeeping made no-ops: what a command cost before it existed."""
    guard = process._GUARD
    saved = guard.register, guard.release
    guard.register = guard.release = lambda pgid: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        guard.register, guard.release = saved  # type: ignore[method-assign]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def sequential(fn: Callable[[], object], n: int, repeat: int) -> tuple[list[float], list[float]]:
    guarded: list[float] = []
    bare: list[float] = []
    for i in range(n * repeat):
        first_guarded = i % 2 == 0
        for guard_on in (first_guarded, not first_guarded):
            if guard_on:
                guarded.append(timed(fn))
            else:
                with unguarded():
                    bare.append(timed(fn))
    return guarded, bare


def threaded_ms(fn: Callable[[], object], n: int, threads: int) -> float:
    with ThreadPoolExecutor(threads) as pool:
        return timed(lambda: list(pool.map(lambda _: fn(), range(n)))) / n


def describe(samples: list[float]) -> str:
    p90 = sorted(samples)[int(len(samples) * 0.9)]
    return f"median {statistics.median(samples):5.3f} ms, p90 {p90:5.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ)
    cwd = os.getcwd()
    cases: dict[str, Callable[[], object]] = {
        "run_process(['true'])": lambda: run_process(["true"], cwd=cwd, env=env),
        "run_process('true', shell=True)": lambda: run_process("true", cwd=cwd, env=env, shell=True),
    }
    run_process(["true"], cwd=cwd, env=env)  # warm-up (imports, the watchdog's start)

    floor = [timed(lambda: subprocess.run(["true"], check=False)) for _ in range(args.n * args.repeat)]
    print(f"{'subprocess.run([true]) (floor)':<42} {describe(floor)}")
    for name, fn in cases.items():
        guarded, bare = sequential(fn, args.n, args.repeat)
        print(f"{name:<42} {describe(guarded)} with watchdog | {describe(bare)} without")
    for name, fn in cases.items():
        guarded_ms = min(threaded_ms(fn, args.n, args.threads) for _ in range(args.repeat))
        with unguarded():
            bare_ms = min(threaded_ms(fn, args.n, args.threads) for _ in range(args.repeat))
        label = f"{name} ×{args.threads} threads"
        print(f"{label:<42} {guarded_ms:5.3f} ms/command with watchdog | {bare_ms:5.3f} without")


if __name__ == "__main__":
    main()
