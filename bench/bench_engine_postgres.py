"""Engine throughput on PostgreSQL next to SQLite: a foreach over N no-op child workflows.

    .venv/bin/python bench/bench_engine_postgres.py [--sizes 10000] [--slots 8] [--repeat 3] [--dsn URL]

The same workflow as bench_engine_sqlite.py (each child a real run: run row, lease, step row,
fan-out item updates) on a PostgreSQL store and on a WAL SQLite file, interleaved in one process
(PostgreSQL, SQLite, PostgreSQL, …) so both see the same machine. Each PostgreSQL run gets a fresh
schema. Without `--dsn` (or $RUNKON_TEST_PG_DSN) a throwaway server is started (tests/pgserver.py:
Unix socket, fsync=off — like SQLite's synchronous=NORMAL in WAL mode, no commit waits for the
disk; a production server with fsync on adds its commit latency to each durable write).

Prints per-item µs for each run, min/median/max per store, the ratio PostgreSQL/SQLite of the
medians (target ≤ 2×) and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine_sqlite import CHILD, PARENT, NoOp, RangeProvider  # noqa: E402
from runkon_flow.dsl.parser import parse_workflow  # noqa: E402
from runkon_flow.persistence import SqliteStore  # noqa: E402
from runkon_flow.plugins.resolvers import InMemoryWorkflowResolver  # noqa: E402
from runkon_flow.runtime import FlowEngineBuilder, RunInput  # noqa: E402


def _run(store, n: int, slots: int) -> float:
    resolver = InMemoryWorkflowResolver([parse_workflow(CHILD)])
    parent = parse_workflow(PARENT.format(slots=slots))
    engine = (
        FlowEngineBuilder().action(NoOp()).item_provider(RangeProvider(n)).workflow_resolver(resolver).build()
    )
    try:
        started = time.perf_counter()
        result = engine.run_workflow(parent, RunInput(persistence=store))
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    if not result.all_succeeded:
        raise SystemExit(f"engine run failed: {result.error}")
    return elapsed


def postgres_run(base_dsn: str, n: int, slots: int) -> float:
    import psycopg
    from runkon_flow.persistence.postgres import PostgresStore

    from tests.pg import with_search_path

    schema = "bench_" + secrets.token_hex(4)
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        return _run(PostgresStore(with_search_path(base_dsn, schema)), n, slots)
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def sqlite_run(n: int, slots: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(SqliteStore(Path(tmp) / "runs.db"), n, slots)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default=os.environ.get("RUNKON_TEST_PG_DSN"))
    args = parser.parse_args()
    from tests import pgserver

    server = None
    dsn = args.dsn
    if not dsn:
        server, dsn = pgserver.start()
    try:
        print(f"load before: {loadavg()}")
        for n in [int(s) for s in args.sizes.split(",")]:
            times: dict[str, list[float]] = {"postgres": [], "sqlite": []}
            for round_ in range(args.repeat):
                for kind in ("postgres", "sqlite"):
                    elapsed = (
                        postgres_run(dsn, n, args.slots) if kind == "postgres" else sqlite_run(n, args.slots)
                    )
                    times[kind].append(elapsed / n * 1e6)
                    per_item = times[kind][-1]
                    print(f"  N={n} round {round_ + 1} {kind:<8} {per_item:7.0f} µs/item  load {loadavg()}")
            for kind, values in times.items():
                print(
                    f"N={n} {kind:<8} min {min(values):.0f}  median {statistics.median(values):.0f}  "
                    f"max {max(values):.0f} µs/item"
                )
            ratio = statistics.median(times["postgres"]) / statistics.median(times["sqlite"])
            print(f"N={n} PostgreSQL / SQLite (medians): {ratio:.2f}×  (target ≤ 2×)")
        print(f"load after: {loadavg()}")
    finally:
        if server is not None:
            pgserver.stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
