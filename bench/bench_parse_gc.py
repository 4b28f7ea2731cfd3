"""Parse memory and speed without touching the collector (issue 16, item 4), side by side.

Usage: `.venv/bin/python bench/bench_parse_gc.py [--sizes 0.004,1,10] [--repeat 5] [--parses 20000]`

Two measurements:
* memory: RSS before and after `--parses` parses of a ~4 KB generated workflow in one process, and
  the number of objects each parse leaves to the cyclic collector (must be 0);
* speed: parse time of each size, interleaved run by run with the old way (collector paused around
  the parse, the AST promoted with `gc.freeze()`/`gc.unfreeze()`) as the floor to compare with;
  min/median/max of `--repeat` runs each, with the load average printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_parse import MB, _Generator
from runkon_flow.dsl.parser import parse_workflow


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _paused(text: str) -> object:
    """The previous session's way: collector off during the parse, AST frozen+unfrozen after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return parse_workflow(text)
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.004,1,10")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parses", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(f"load average: {_load()}")

    small = _Generator(seed=3).workflow(4096)
    gc.collect()
    gc.disable()
    gc.collect()
    parse_workflow(small)
    left = gc.collect()
    gc.enable()
    gc.collect()
    before = _rss_mb()
    start = time.perf_counter()
    for _ in range(args.parses):
        parse_workflow(small)
    print(
        f"memory: {args.parses} parses of {len(small)} B: RSS {before:.1f} -> {_rss_mb():.1f} MB "
        f"in {time.perf_counter() - start:.1f} s; cyclic garbage per parse: {left} objects; "
        f"collector enabled after: {gc.isenabled()}"
    )

    for size in (float(s) for s in args.sizes.split(",")):
        text = _Generator(seed=7).workflow(int(size * MB))
        mbytes = len(text.encode()) / MB
        reps = args.repeat if size >= 1 else args.repeat * 200
        plain: list[float] = []
        paused: list[float] = []
        for _ in range(reps):
            plain.append(_timed(lambda t=text: parse_workflow(t)))
            paused.append(_timed(lambda t=text: _paused(t)))
        for label, times in (("collector untouched", plain), ("collector paused (old)", paused)):
            median = statistics.median(times)
            print(
                f"{mbytes:7.3f} MB  {label:23s} min {min(times):8.4f}  median {median:8.4f}  "
                f"max {max(times):8.4f} s  = {mbytes / median:5.2f} MB/s (median)"
            )
    print(f"load average: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
