"""Validating and running next to big workflows (issue 16, item 6): time and peak memory.

Usage: `.venv/bin/python bench/bench_validate_big.py [--mb 50] [--repeat 1] [--floor /work/main/engine]`

Builds a directory with a 5 KB workflow `small` (it calls nothing) beside a generated valid
`--mb` MB workflow `bench` (`valid_workflow`: no validation errors), then measures, each in a fresh
`runkon-flow` process (wall time and peak RSS from /usr/bin/time):

* `validate bench.wf` — the cost of checking the big file itself;
* `run small.wf --memory` — must not depend on the big file lying beside it.

With `--floor PATH` every measurement is also taken, interleaved, with the engine package at PATH
first on `PYTHONPATH` (e.g. an older checkout), as the figure to compare against.
Prints min/median/max per command and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MB = 1024 * 1024

# One valid stretch of workflow per step number: every node kind a big generated workflow has,
# conditions only on steps produced before them.
BLOCK = """  // stage {n}
  call review-{n} {{ output = "schema-{m}" with = ["rules"] retries = 2 timeout = "15m" }}
  if review-{n}.has_findings {{
    call fix-{n}
    unless fix-{n}.clean {{ call escalate-{n} }}
  }}
  script lint-{n} {{
    run = "tools/lint.sh --since {{{{since}}}}" env = {{ MODE = "{{{{mode}}}}" }} timeout = 300
  }}
  parallel {{ call a-{n} call b-{n} }}
  while lint-{n}.dirty {{ max_iterations = 3 call tidy-{n} }}
  gate approve-{n} {{ type = human_approval prompt = "Ship stage {n}?" timeout = "2h" }}
"""


def valid_workflow(size: int) -> str:
    parts = ['workflow bench {\n  inputs { mode default = "fast" since default = "7d" }\n']
    total, n = len(parts[0]), 0
    while total < size:
        block = BLOCK.format(n=n, m=n % 7)
        parts.append(block)
        total += len(block)
        n += 1
    parts.append("}\n")
    return "".join(parts)


SMALL = "workflow small {\n" + "".join(f'  script s{i} {{ run = "true" }}\n' for i in range(100)) + "}\n"


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def _measure(argv: list[str], cwd: Path, engine_path: str | None) -> tuple[float, float, int]:
    env = dict(os.environ)
    if engine_path:
        env["PYTHONPATH"] = engine_path + os.pathsep + env.get("PYTHONPATH", "")
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "runkon_flow.cli", *argv]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds, kb = proc.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kb) / 1024, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--floor", help="engine package directory to compare with (PYTHONPATH)")
    args = parser.parse_args(argv)
    print(f"load average before: {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "wf").mkdir()
        (folder / "wf" / "small.wf").write_text(SMALL)
        big = valid_workflow(int(args.mb * MB))
        (folder / "wf" / "bench.wf").write_text(big)
        print(f"bench.wf {len(big.encode()) / MB:.1f} MB beside small.wf {len(SMALL)} B")
        commands = {
            "validate bench.wf": ["validate", "wf/bench.wf"],
            "run small.wf": ["run", "wf/small.wf", "--memory"],
        }
        engines = {"this tree": None, **({"floor": args.floor} if args.floor else {})}
        results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for _ in range(args.repeat):
            for label, command in commands.items():
                for engine, path in engines.items():
                    results.setdefault((label, engine), []).append(_measure(command, folder, path))
        for (label, engine), runs in results.items():
            times = [r[0] for r in runs]
            rss = [r[1] for r in runs]
            print(
                f"{label:18s} {engine:9s} exit {sorted({r[2] for r in runs})}  "
                f"time min {min(times):7.2f} median {statistics.median(times):7.2f} max {max(times):7.2f} s  "
                f"peak RSS min {min(rss):7.0f} median {statistics.median(rss):7.0f} max {max(rss):7.0f} MB"
            )
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
