"""What a large child definition costs a fan-out on SQLite: a foreach over N no-op children whose
workflow carries a `description` of `--definition-bytes` characters, against the same fan-out of
the bare child (the floor), interleaved, every run in a fresh interpreter.

    .venv/bin/python bench/bench_snapshots.py [--n 10000] [--definition-bytes 2000] [--repeat 6]

Every run row keeps the definition it was started with; a foreach's children share one stored
copy (runkon_flow.persistence.snapshots), so the large child should cost about what the bare
one does, in time and in bytes of database per item. Prints wall time min/median/max per
configuration, the per-round ratio large ÷ bare, bytes per item and the load average.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import loadavg, mmm
from bench_engine_sqlite import PARENT, NoOp, RangeProvider
from bench_events import HostSink  # a host's sink: completions are reported (committed first)
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.persistence import NewRun, SqliteStore
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver
from runkon_flow.runtime import FlowEngineBuilder, RunInput


def child_text(size: int) -> str:
    meta = f'  meta {{\n    description = "{"x" * size}"\n  }}\n' if size else ""
    return f"workflow child {{\n{meta}  call noop\n}}\n"


def one_run(n: int, size: int, db: Path) -> tuple[float, int]:
    """(wall seconds, database bytes) of one fan-out on a fresh file."""
    resolver = InMemoryWorkflowResolver([parse_workflow(child_text(size))])
    parent = parse_workflow(PARENT.format(slots=8))
    engine = (
        FlowEngineBuilder().action(NoOp()).item_provider(RangeProvider(n)).workflow_resolver(resolver).build()
    )
    store = SqliteStore(db)
    run_id = store.create_run(NewRun(workflow_name="fan")).id
    started = time.perf_counter()
    result = engine.run_workflow(
        parent, RunInput(persistence=store, workflow_run_id=run_id, event_sinks=[HostSink()])
    )
    elapsed = time.perf_counter() - started
    if not result.all_succeeded:
        raise SystemExit(f"engine run failed: {result.error}")
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return elapsed, sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--definition-bytes", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.n, int(args.one[0]), Path(args.one[1]))))
        return
    sizes = (0, args.definition_bytes)
    wall: dict[int, list[float]] = {s: [] for s in sizes}
    size_of: dict[int, int] = {}
    print(f"foreach over {args.n} no-op children, SQLite (WAL), 8 slots, {args.repeat} rounds")
    print(f"before: {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.repeat):
            for size in sizes if round_no % 2 == 0 else sizes[::-1]:
                db = Path(tmp) / f"{size}-{round_no}" / "runs.db"
                db.parent.mkdir()
                out = subprocess.run(
                    [sys.executable, __file__, "--n", str(args.n), "--one", str(size), str(db)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                elapsed, db_bytes = json.loads(out.stdout.strip().splitlines()[-1])
                wall[size].append(elapsed)
                size_of[size] = db_bytes
                label = f"round {round_no + 1} child +{size:>5} B"
                print(f"  {label}  wall {elapsed:6.2f} s  db {db_bytes / args.n:5.0f} B/item")
    print(f"after:  {loadavg()}")
    print("wall s:            min   median      max")
    for size in sizes:
        print(f"  child +{size:>5} B {mmm(wall[size], 8, 2)}")
    ratios = [b / a for a, b in zip(wall[0], wall[args.definition_bytes], strict=True)]
    print(f"large ÷ bare per round: {mmm(ratios, 6, 3)}  (min / median / max)")
    bare, large = (size_of[s] / args.n for s in sizes)
    print(
        f"database: {bare:.0f} B/item bare, {large:.0f} B/item with a {args.definition_bytes} B longer child"
    )
    print(f"median ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
