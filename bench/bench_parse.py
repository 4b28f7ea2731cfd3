"""Parser throughput: generate ~1 MB and ~10 MB `.wf` files, time parsing, print MB/s and the ratio.

Usage: `.venv/bin/python bench/bench_parse.py [--sizes 1,10] [--repeat 3] [--keep DIR]`

The generated workflow is a realistic mix of every node kind (calls with options, call workflow with
inputs, if/unless, while, do-while, plain do, parallel with per-call options, all gate kinds, scripts
with env maps, foreach, nested always), comments, escapes and multi-line strings, nested a few levels
deep. Targets (issue): ≥ 2 MB/s on both sizes, and time(10 MB) / time(1 MB) ≤ 11 (linear growth).
If semantic validation is available it is timed too (parse + validate).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runkon_flow.dsl.parser import parse_file, parse_workflow

MB = 1024 * 1024


class _Generator:
    """Deterministic pseudo-random workflow text."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counter = 0
        self.produced: list[str] = ["setup"]

    def ident(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def marker(self) -> str:
        return f"{self.rng.choice(self.produced)}.{self.rng.choice(['ready', 'has_failures', 'again'])}"

    def leaf(self, pad: str) -> str:
        rng = self.rng
        kind = rng.randrange(9)
        name = self.ident(rng.choice(["review", "build", "lint_fix", "plan"]))
        self.produced.append(name)
        if kind == 0:
            return f"{pad}call {name}\n"
        if kind == 1:
            return (
                f"{pad}call {name} {{\n"
                f'{pad}  output  = "schema-{self.counter % 7}"\n'
                f'{pad}  with    = ["tone-guide", "rules", snippet-{self.counter % 5}]\n'
                f'{pad}  timeout = "15m"\n'
                f"{pad}  retries = {rng.randrange(4)}\n"
                f'{pad}  as      = "bot"\n'
                f'{pad}  on_fail = "agents/fallback.md"\n'
                f"{pad}}}\n"
            )
        if kind == 2:
            return f'{pad}call "agents/{name}.md" {{ retries = 2 on_fail = continue max_turns = 30 }}\n'
        if kind == 3:
            return (
                f"{pad}script {name} {{\n"
                f'{pad}  run     = ".conductor/scripts/{name}.sh --since {{{{since}}}}"\n'
                f"{pad}  timeout = 600\n"
                f'{pad}  env     = {{ REPORT_DIR = "{{{{repo_path}}}}/out"  MODE = fast\n'
                f'{pad}              QUOTE = "a \\"b\\"" }}\n'
                f"{pad}}}\n"
            )
        if kind == 4:
            return (
                f"{pad}call workflow child-{self.counter % 13} {{\n"
                f"{pad}  retries = 1\n"
                f"{pad}  inputs {{\n"
                f'{pad}    ticket_id = "{{{{ticket_id}}}}"\n'
                f"{pad}    mode      = incremental\n"
                f"{pad}  }}\n"
                f'{pad}  as = "docs-bot"\n'
                f"{pad}}}\n"
            )
        if kind == 5:
            calls = "".join(
                f'{pad}  call {self.ident("check")} {{ retries = 1 if = "{self.marker()}" }}\n'
                for _ in range(3)
            )
            return (
                f"{pad}parallel {{\n{pad}  fail_fast = false\n{pad}  min_success = 2\n"
                f'{pad}  with = ["house-style"]\n{calls}{pad}  call type-check\n{pad}}}\n'
            )
        if kind == 6:
            return rng.choice(
                [
                    f'{pad}gate human_approval {{\n{pad}  prompt = "Ship {{{{build_id}}}}?\n'
                    f'{pad}  (second line)"\n{pad}  timeout = "4h"\n{pad}  on_timeout = continue\n'
                    f'{pad}  options = {{ ship = "Ship now" hold = "Hold" }}\n{pad}}}\n',
                    f'{pad}gate pr_approval {{ mode = review_decision timeout = 7200 as = "reviewer" }}\n',
                    f"{pad}gate quality_gate {{ source = {self.produced[-2]} threshold = 70\n"
                    f"{pad}  on_fail = continue }}\n",
                    f'{pad}gate human_review {{ options = ["approve", "reject"] timeout = "30m" }}\n',
                ]
            )
        if kind == 7:
            return (
                f"{pad}foreach {name} {{\n"
                f"{pad}  over          = tickets\n"
                f'{pad}  scope         = {{ label = "needs-triage" }}\n'
                f"{pad}  max_parallel  = 3\n"
                f"{pad}  workflow      = triage-one\n"
                f'{pad}  inputs        = {{ ticket_id = "{{{{item.id}}}}" }}\n'
                f"{pad}  ordered       = true\n"
                f"{pad}  on_child_fail = skip_dependents\n"
                f"{pad}}}\n"
            )
        comment = f'{pad}// {name}: a comment with {{{{braces}}}} and "quotes" that the lexer skips\n'
        return f"{comment}{pad}call {name}\n"

    def block(self, pad: str, depth: int) -> str:
        rng = self.rng
        inner = "".join(self.node(pad + "  ", depth + 1) for _ in range(rng.randrange(2, 5)))
        kind = rng.randrange(6)
        if kind == 0:
            return f"{pad}if {self.marker()} {{\n{inner}{pad}}}\n"
        if kind == 1:
            return f"{pad}unless {self.marker()} {{\n{inner}{pad}}}\n"
        if kind == 2:
            head = f"{pad}while {self.marker()} {{\n{pad}  max_iterations = 5\n{pad}  stuck_after = 2\n"
            return f"{head}{inner}{pad}}}\n"
        if kind == 3:
            head = f"{pad}do {{\n{pad}  max_iterations = 3\n{pad}  on_max_iter = continue\n"
            return f"{head}{inner}{pad}}} while {self.marker()}\n"
        if kind == 4:
            # A plain `do` directly followed by `while` would be read as a do-while: end with a call.
            head = f'{pad}do {{\n{pad}  output = "patch"\n{pad}  with = "voice"\n'
            return f"{head}{inner}{pad}}}\n{pad}call after-do\n"
        return f"{pad}always {{\n{inner}{pad}}}\n"

    def node(self, pad: str, depth: int) -> str:
        if depth < 4 and self.rng.random() < 0.3:
            return self.block(pad, depth)
        return self.leaf(pad)

    def workflow(self, target_bytes: int) -> str:
        head = (
            "// generated by bench/bench_parse.py\n"
            "workflow bench {\n"
            '  meta {\n    title = "Benchmark"\n    description = "Generated — every node kind"\n'
            '    trigger = manual\n    targets = ["worktree", "repo"]\n    group = "Bench"\n  }\n'
            '  inputs {\n    ticket_id required\n    since default = "7d"\n    publish boolean\n'
            '    channel required description = "Where to announce"\n  }\n'
            '  script setup { run = "tools/setup.sh" }\n'
        )
        parts = [head]
        size = len(head)
        while size < target_bytes:
            chunk = self.node("  ", 0)
            parts.append(chunk)
            size += len(chunk.encode())
        parts.append('  always {\n    script notify { run = "tools/notify.sh" }\n  }\n}\n')
        return "".join(parts)


def _best(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs, each from the same collector state (what the runs before it
    left behind — a big AST, pending collections — would otherwise land on whichever run is next)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10", help="comma-separated sizes in MB (default 1,10)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per size; the best is reported")
    parser.add_argument("--keep", type=Path, help="write the generated files into this directory")
    args = parser.parse_args(argv)

    try:
        from runkon_flow.dsl.validation import validate_workflow
    except ImportError:
        validate_workflow = None  # type: ignore[assignment]

    sizes = [float(s) for s in args.sizes.split(",")]
    times: dict[float, float] = {}
    validate_times: dict[float, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for size in sizes:
            text = _Generator(seed=7).workflow(int(size * MB))
            path = folder / f"bench-{size:g}mb.wf"
            path.write_text(text, encoding="utf-8")
            mbytes = len(text.encode()) / MB
            nodes = parse_file(path).total_nodes()  # (the AST is not kept: one file's is alive at a time)
            source = str(path)
            elapsed = _best(lambda t=text, p=source: parse_workflow(t, p), args.repeat)
            times[size] = elapsed
            line = f"{mbytes:6.2f} MB  {nodes:8d} nodes  "
            line += f"parse {elapsed:7.3f} s = {mbytes / elapsed:6.2f} MB/s"
            if validate_workflow is not None:
                both = _best(
                    lambda t=text, p=source, v=validate_workflow: v(parse_workflow(t, p)), args.repeat
                )
                validate_times[size] = both
                line += f"  | parse+validate {both:7.3f} s = {mbytes / both:6.2f} MB/s"
            print(line, flush=True)
    if len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        ratio = times[large] / times[small]
        print(f"parse time ratio {large:g} MB / {small:g} MB = {ratio:.2f} (size ratio {large / small:g})")
        if validate_times:
            both = validate_times[large] / validate_times[small]
            print(f"parse+validate time ratio {large:g} MB / {small:g} MB = {both:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
