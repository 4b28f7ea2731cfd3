"""What storing the event stream costs: a foreach over N no-op child workflows on SQLite, with event
storage off and on, side by side (interleaved, same process, fresh database each run).

    .venv/bin/python bench/bench_events.py [--n 10000] [--slots 8] [--repeat 5]

Three configurations, each run `--repeat` times in turn, each round starting one configuration
later (A B C, B C A, C A B, …), every run in a fresh interpreter (`--same-process` for all in
this one):

* `no sinks`   — the engine with no event sink at all (it then builds no event objects);
* `host sink`  — a sink like the CLI's progress printer: events are queued and a main-thread loop
                 drains them (10 Hz) and drops them; this is "event storage off" for a real host;
* `+ stored`   — the same host sink plus `StoredEventWriter` (what `Workspace` adds to every run).

Every run first settles the garbage collector as both real hosts do before a run
(`runkon_flow.heap.settle_for_runs`: `runkon-flow run` before it drives one, `runkon-tui` after its
first frame); `--gc default` keeps Python's defaults instead (what an embedding library may have).

With `--split`, two more configurations say where the extra time of `+ stored` goes:

* `serialise` — the writer turns every event into its packed rows (as `+ stored`) and drops them;
* `rows`      — the writer stores as many packed rows, with one fixed event's text, without
                serialising.

Prints run time min/median/max per configuration, the extra time of `+ stored` over each baseline
(median against median), events per item, and the database size per item (main file + WAL after a
checkpoint) with and without the event log. The load average is printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import loadavg
from bench_engine_sqlite import CHILD, PARENT, NoOp, RangeProvider
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.event_log import StoredEventWriter, line_of, pack_lines, unpack
from runkon_flow.heap import settle_for_runs
from runkon_flow.persistence import NewRun, SqliteStore
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver
from runkon_flow.runtime import FlowEngineBuilder, RunInput


class HostSink:
    """Queues events for a main-thread consumer, like the CLI's EventQueue + printer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list = []
        self.seen = 0

    def emit(self, data) -> None:
        with self._lock:
            self._items.append(data)

    def drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        self.seen += len(items)


class SerialiseOnly(StoredEventWriter):
    """Turns events into rows as the real writer does, then drops them (`--split`)."""

    def _write_batch(self) -> None:
        queue = self._queue
        pack_lines(self._lines([queue.popleft() for _ in range(len(queue))]))


# A typical stored row of the bench's run (a child's StepStarted, 143 bytes of payload).
_FIXED = (
    '{"step_name":"noop","step_key":"noop","step_id":"01M8YBTS3PE2SPETXB3QSQ7BJR",'
    '"node_path":"body.0","position":0,"started_at":1796315374.7108505}'
)


class RowsOnly(StoredEventWriter):
    """Stores the rows of as many events with a fixed payload, serialising nothing (`--split`)."""

    def emit(self, data) -> None:
        self._queue.append(line_of(data.ts, data.run_id, "StepStarted", _FIXED))


WRITERS = {"stored": StoredEventWriter, "serialise": SerialiseOnly, "rows": RowsOnly}


def one_run(
    n: int, slots: int, db: Path, mode: str, gc_mode: str = "settled"
) -> tuple[float, float, int, int]:
    """(wall seconds, process CPU seconds, events stored, database bytes) for one run of `mode` on a
    fresh file. Both times cover the run and the writer's last write, not the read-back after."""
    resolver = InMemoryWorkflowResolver([parse_workflow(CHILD)])
    parent = parse_workflow(PARENT.format(slots=slots))
    engine = (
        FlowEngineBuilder().action(NoOp()).item_provider(RangeProvider(n)).workflow_resolver(resolver).build()
    )
    store = SqliteStore(db)
    run_id = store.create_run(NewRun(workflow_name="fan")).id
    host = HostSink() if mode != "none" else None
    writer = WRITERS[mode](store, run_id) if mode in WRITERS else None
    sinks = [s for s in (host, writer) if s is not None]
    done = threading.Event()
    result: list = []
    if gc_mode == "settled":
        settle_for_runs()

    def go() -> None:
        try:
            result.append(
                engine.run_workflow(
                    parent, RunInput(persistence=store, workflow_run_id=run_id, event_sinks=sinks)
                )
            )
        finally:
            done.set()

    started, cpu_started = time.perf_counter(), time.process_time()
    thread = threading.Thread(target=go)
    thread.start()
    while not done.wait(0.1):  # the host's main loop: drain at 10 Hz
        if host is not None:
            host.drain()
    thread.join()
    if writer is not None:
        writer.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if host is not None:
        host.drain()
    if not result or not result[0].all_succeeded:
        raise SystemExit(f"engine run failed: {result[0].error if result else 'no result'}")
    stored = sum(len(unpack(row)) for row in store.read_events(run_id)) if mode == "stored" else 0
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return elapsed, cpu, stored, size


def one_run_in_subprocess(
    n: int, slots: int, db: Path, mode: str, gc_mode: str
) -> tuple[float, float, int, int]:
    """`one_run` in a fresh interpreter: 36 runs in one process each inherit the heap the runs
    before them left, and a run's time then depends on its place in the sequence too."""
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--n",
            str(n),
            "--slots",
            str(slots),
            "--gc",
            gc_mode,
            "--one",
            mode,
            str(db),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{proc.stdout}\n{proc.stderr}")
    elapsed, cpu, stored, size = json.loads(proc.stdout.strip().splitlines()[-1])
    return elapsed, cpu, stored, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--split", action="store_true", help="also measure serialising alone and rows alone")
    parser.add_argument(
        "--same-process", action="store_true", help="every run in this process (the old way; see below)"
    )
    parser.add_argument(
        "--gc",
        choices=("settled", "default"),
        default="settled",
        help="the collector as the real hosts set it before a run (default), or Python's defaults",
    )
    parser.add_argument("--one", nargs=2, metavar=("MODE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # one run in this (fresh) process, for the parent to read
        print(json.dumps(one_run(args.n, args.slots, Path(args.one[1]), args.one[0], args.gc)))
        return
    run = one_run if args.same_process else one_run_in_subprocess
    n = args.n
    modes = ("none", "host", "stored") + (("serialise", "rows") if args.split else ())
    names = {
        "none": "no sinks",
        "host": "host sink",
        "stored": "+ stored",
        "serialise": "serialise",
        "rows": "rows",
    }
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    sizes: dict[str, int] = {}
    events = 0
    print(
        f"foreach over {n} no-op children, SQLite (WAL), {args.slots} slots, {args.repeat} rounds, "
        f"garbage collector {args.gc}"
    )
    print(f"before: {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="runkon-bench-events-") as tmp:
        for round_no in range(args.repeat):
            # Each round starts one configuration later: a run's place in the round matters on a
            # loaded machine (the same configuration measured 3 % and 14 % slower in 2nd and 4th
            # place), and `+ stored` must not always take the last place.
            shift = round_no % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                db_dir = Path(tmp) / f"{mode}-{round_no}"
                db_dir.mkdir()
                elapsed, used, stored, size = run(n, args.slots, db_dir / "runs.db", mode, args.gc)
                cpu[mode].append(used)
                wall[mode].append(elapsed)
                sizes[mode] = size
                events = max(events, stored)
                print(
                    f"  round {round_no + 1} {names[mode]:<10} wall {elapsed:6.2f} s  "
                    f"cpu {cpu[mode][-1]:6.2f} s  db {size / n:7.0f} B/item"
                )
    print(f"after:  {loadavg()}")
    for label, series in (("wall", wall), ("process CPU", cpu)):
        print(f"{label}: {'config':<10} {'min s':>7} {'median s':>9} {'max s':>7} {'µs/item (median)':>17}")
        for mode in modes:
            t = series[mode]
            med = statistics.median(t)
            print(f"  {names[mode]:<10} {min(t):7.2f} {med:9.2f} {max(t):7.2f} {med / n * 1e6:17.0f}")
        versus = [("stored", "none")] + [(m, "host") for m in modes if m not in ("none", "host")]
        for mode, base in versus:
            pairs = [s / b - 1 for s, b in zip(series[mode], series[base], strict=True)]
            ratio = statistics.median(series[mode]) / statistics.median(series[base]) - 1
            print(
                f"  {names[mode]} vs {names[base]}: medians {100 * ratio:+.1f} %  (per round: min "
                f"{100 * min(pairs):+.1f} %, median {100 * statistics.median(pairs):+.1f} %, "
                f"max {100 * max(pairs):+.1f} %)"
            )
    print(f"events stored: {events} ({events / n:.1f} per item)")
    extra = (sizes["stored"] - sizes["host"]) / n
    print(
        f"database: {sizes['host'] / n:.0f} B/item without events, {sizes['stored'] / n:.0f} B/item "
        f"with (+{extra:.0f} B/item for the event log)"
    )


if __name__ == "__main__":
    main()
