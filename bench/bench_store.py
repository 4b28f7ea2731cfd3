"""Store throughput on the foreach hot path, against a raw sqlite3 floor.

For N items: insert N pending items (one batch), then mark each running and then completed, one
call per item — what the engine does per fan-out item. The floor does the same rows with bare
sqlite3 (same schema, WAL, synchronous=NORMAL, one transaction for the inserts, one autocommit
UPDATE per status change). Also measured: the same per-item updates from 8 threads at once
(their writes share commits: the store's group commit), the same status changes sent 64 at a
time through batch_update_fan_out_items, and the in-memory store for reference.

Run: .venv/bin/python bench/bench_store.py [N ...]   (default: 1000 10000)
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runkon_flow.persistence import FanOutItemStatus, FanOutItemUpdate, NewRun, NewStep
from runkon_flow.persistence._shared import new_ordered_id, rfc3339, system_clock
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.schema import DDL
from runkon_flow.persistence.sqlite import SqliteStore

THREADS = 8
RUNNING = FanOutItemUpdate.running()
DONE = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)


def _prepare(store) -> str:
    run_id = store.create_run(NewRun(workflow_name="bench")).id
    return store.insert_step(NewStep(workflow_run_id=run_id, step_name="fe", role="foreach", retry_count=0))


def store_sequential(store, n: int) -> float:
    step = _prepare(store)
    t0 = time.perf_counter()
    ids = store.insert_fan_out_items(step, [("item", f"i{k}", f"ref{k}", {}) for k in range(n)])
    for item in ids:
        store.update_fan_out_item(item, RUNNING)
        store.update_fan_out_item(item, DONE)
    elapsed = time.perf_counter() - t0
    assert len(store.get_fan_out_items(step, FanOutItemStatus.COMPLETED)) == n
    return elapsed


def store_batched(store, n: int, batch: int = 64) -> float:
    """The same rows with status changes grouped `batch` at a time (batch_update_fan_out_items)."""
    step = _prepare(store)
    t0 = time.perf_counter()
    ids = store.insert_fan_out_items(step, [("item", f"i{k}", f"ref{k}", {}) for k in range(n)])
    for start in range(0, n, batch):
        chunk = ids[start : start + batch]
        store.batch_update_fan_out_items([(item, RUNNING) for item in chunk])
        store.batch_update_fan_out_items([(item, DONE) for item in chunk])
    elapsed = time.perf_counter() - t0
    assert len(store.get_fan_out_items(step, FanOutItemStatus.COMPLETED)) == n
    return elapsed


def store_threaded(store, n: int) -> float:
    step = _prepare(store)
    t0 = time.perf_counter()
    ids = store.insert_fan_out_items(step, [("item", f"i{k}", f"ref{k}", {}) for k in range(n)])

    def one(item: str) -> None:
        store.update_fan_out_item(item, RUNNING)
        store.update_fan_out_item(item, DONE)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, ids))
    elapsed = time.perf_counter() - t0
    assert len(store.get_fan_out_items(step, FanOutItemStatus.COMPLETED)) == n
    return elapsed


def raw_floor(path: Path, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    for statement in DDL:
        conn.execute(statement)
    run_id, step_id = new_ordered_id(), new_ordered_id()
    conn.execute("INSERT INTO workflow_runs (id, workflow_name) VALUES (?, 'bench')", (run_id,))
    conn.execute("INSERT INTO workflow_run_steps (id, workflow_run_id) VALUES (?, ?)", (step_id, run_id))
    t0 = time.perf_counter()
    ids = [new_ordered_id() for _ in range(n)]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO workflow_run_step_fan_out_items "
        "(id, step_run_id, item_type, item_id, item_ref, status, context) "
        "VALUES (?, ?, 'item', ?, ?, 'pending', '{}')",
        [(item, step_id, f"i{k}", f"ref{k}") for k, item in enumerate(ids)],
    )
    conn.execute("COMMIT")
    for item in ids:
        conn.execute(
            "UPDATE workflow_run_step_fan_out_items SET status = 'running', child_run_id = 'dispatching', "
            "dispatched_at = ? WHERE id = ?",
            (rfc3339(system_clock()), item),
        )
        conn.execute(
            "UPDATE workflow_run_step_fan_out_items SET status = 'completed', completed_at = ? WHERE id = ?",
            (rfc3339(system_clock()), item),
        )
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def best_of(repeats: int, make: Callable[[Path], float], tmp: Path) -> float:
    """Best of a few runs, each on a fresh database file."""
    times = []
    for r in range(repeats):
        times.append(make(tmp / f"db{r}-{time.monotonic_ns()}.db"))
    return min(times)


def main(sizes: list[int]) -> None:
    version = f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}"
    print(f"{version}; per item = insert + running + completed")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for n in sizes:
            repeats = 3 if n <= 1000 else 2

            def via(fn: Callable, n: int = n) -> Callable[[Path], float]:
                def run(path: Path) -> float:
                    store = SqliteStore(path)
                    try:
                        return fn(store, n)
                    finally:
                        store.close()

                return run

            floor = best_of(repeats, lambda p, n=n: raw_floor(p, n), tmp)
            seq = best_of(repeats, via(store_sequential), tmp)
            batched = best_of(repeats, via(store_batched), tmp)
            thr = best_of(repeats, via(store_threaded), tmp)
            mem = min(store_sequential(InMemoryStore(), n) for _ in range(repeats))
            mem_thr = min(store_threaded(InMemoryStore(), n) for _ in range(repeats))

            def us(seconds: float, n: int = n) -> str:
                return f"{seconds / n * 1e6:8.1f} µs/item"

            print(f"\nN = {n:,}")
            print(f"  raw sqlite3 floor                      {us(floor)}")
            print(f"  SqliteStore, 1 thread                  {us(seq)}   ratio {seq / floor:4.2f}x")
            print(f"  SqliteStore, updates batched by 64     {us(batched)}   ratio {batched / floor:4.2f}x")
            print(f"  SqliteStore, {THREADS} threads                 {us(thr)}   ratio {thr / floor:4.2f}x")
            print(f"  InMemoryStore, 1 thread                {us(mem)}")
            print(f"  InMemoryStore, {THREADS} threads               {us(mem_thr)}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
