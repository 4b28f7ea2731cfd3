"""Per-item cost of foreach children on a two-node Ray cluster next to the in-process runner.

    sudo .venv/bin/python bench/bench_ray.py [--sizes 1000 10000] [--repeat 3] [--slots 4] [--dsn URL]

A foreach over N no-op children (each a real child run: run row, lease, a skipped `if`, events,
item rows — on PostgreSQL), run by `runkon-flow run` once with `--executor ray` and once in-process
(`local`), interleaved (local, ray, local, ray, …) so both see the same machine. The cluster is the
tests' one (tests/cluster/raycluster.py): head and worker node in network namespaces of their own,
two CPUs each (one child task per CPU); the driver runs in the head's namespace for both
executors. Before the timed runs a short warm-up run starts the nodes' worker processes.

Per item = the foreach step's wall time / N (from its stored start and end). Prints each run, the
min/median/max per executor, the difference of the medians (the cluster's per-item overhead), the
cluster's memory (RSS of every process of both nodes: idle after the warm-up, and the largest seen
while the runs went on) and the load average before and after. Needs root (network namespaces).
Without `--dsn` (or $RUNKON_TEST_PG_DSN) a throwaway PostgreSQL is started (tests/pgserver.py).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import loadavg, mmm  # noqa: E402

from tests.cluster.raycluster import RayCluster  # noqa: E402

NOOP = """workflow noop {
  inputs {
    n default = "0"
    go default = "false"
  }
  if go {
    script s {
      run = "true"
    }
  }
}
"""
FAN = """workflow fan {{
  foreach each {{
    over = static
    workflow = noop
    max_parallel = {slots}
    scope = {{ file = "items.yaml" }}
    inputs = {{ n = "{{{{item.id}}}}" }}
  }}
}}
"""


def workflows(root: Path, n: int, slots: int) -> Path:
    wf = root / f"wf-{n}"
    wf.mkdir()
    (wf / "noop.wf").write_text(NOOP)
    (wf / "fan.wf").write_text(FAN.format(slots=slots))
    (wf / "items.yaml").write_text("".join(f"- i{i}\n" for i in range(n)))
    return wf


def fresh_db(base: str) -> str:
    import psycopg

    from tests.pg import with_search_path

    schema = "bench_" + secrets.token_hex(4)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return with_search_path(base, schema)


def foreach_seconds(db: str, slots: int) -> tuple[float, float]:
    """The foreach step's wall time, and its steady part: from the end of the first wave (the
    `slots`-th item to complete) to the last item's end, per item after that wave."""
    from runkon_flow.persistence.location import db_location

    store = db_location(db).open()
    try:
        (run,) = store.list_runs(limit=1)
        (step,) = [s for s in store.get_steps(run.id) if s.step_name == "foreach:each"]
        if run.status != "completed":
            raise SystemExit(f"run {run.id} ended {run.status}: {run.error}")
        start, end = (_time(t) for t in (step.started_at, step.ended_at))
        ends = sorted(_time(i.completed_at) for i in store.get_fan_out_items(step.id))
        steady = (ends[-1] - ends[slots - 1]).total_seconds() / max(1, len(ends) - slots)
        return (end - start).total_seconds(), steady
    finally:
        store.close()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def one_run(cluster: RayCluster, wf: Path, base: str, executor: str, slots: int) -> tuple[float, float]:
    db = fresh_db(base)
    argv = [sys.executable, "-m", "runkon_flow.cli", "run", "fan", "--dir", str(wf), "--db", db]
    argv += ["--executor", executor, "--progress", "quiet"]
    done = cluster.run(argv, timeout=3600, cwd=wf)
    if done.returncode != 0:
        raise SystemExit(f"{executor} run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return foreach_seconds(db, slots)


def cluster_rss_mb(cluster: RayCluster) -> float:
    """RSS of every process of both nodes except the driver under test (`runkon_flow.cli`)."""
    total = 0
    for node in (cluster.head, cluster.worker):
        for pid in node.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"runkon_flow.cli" in cmd:
                    continue
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
    return total / 1024


class PeakRss(threading.Thread):
    def __init__(self, cluster: RayCluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.peak, self.stop = cluster, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.peak = max(self.peak, cluster_rss_mb(self.cluster))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4, help="the foreach's max_parallel")
    parser.add_argument("--dsn", default=os.environ.get("RUNKON_TEST_PG_DSN"))
    args = parser.parse_args()
    from tests import pgserver

    server_dir = None
    base = args.dsn
    if not base:
        server_dir, base = pgserver.start()
    print(f"before: {loadavg()}")
    try:
        with tempfile.TemporaryDirectory(prefix="rkb-", dir="/tmp") as tmp, RayCluster() as cluster:
            warm = workflows(Path(tmp), 40, args.slots)
            one_run(cluster, warm, base, "ray", args.slots)  # the nodes' first start
            idle = cluster_rss_mb(cluster)
            peak = PeakRss(cluster)
            peak.start()
            for n in args.sizes:
                wf = workflows(Path(tmp), n, args.slots)
                whole: dict[str, list[float]] = {"local": [], "ray": []}
                steady: dict[str, list[float]] = {"local": [], "ray": []}
                for i in range(args.repeat):
                    for executor in ("local", "ray"):
                        seconds, per = one_run(cluster, wf, base, executor, args.slots)
                        whole[executor].append(seconds / n * 1000)
                        steady[executor].append(per * 1000)
                        print(
                            f"  N={n} #{i + 1} {executor:5}: {seconds:8.2f} s  {seconds / n * 1000:7.2f} "
                            f"ms/item, after the first wave {per * 1000:6.2f} ms/item"
                        )
                print(f"N={n} ms/item ({args.slots} slots)             min   median      max")
                for executor in ("local", "ray"):
                    print(f"  {executor:5} whole step         {mmm(whole[executor], digits=2)}")
                    print(f"  {executor:5} after 1st wave     {mmm(steady[executor], digits=2)}")
                for label, values in (("whole step", whole), ("after the first wave", steady)):
                    diff = statistics.median(values["ray"]) - statistics.median(values["local"])
                    print(f"  cluster overhead per item, {label} (median ray - median local): {diff:.2f} ms")
            peak.stop.set()
            print(
                f"cluster memory (both nodes, RSS): idle after warm-up {idle:.0f} MB, peak {peak.peak:.0f} MB"
            )
    finally:
        if server_dir is not None:
            pgserver.stop(server_dir)
        print(f"after: {loadavg()}")


if __name__ == "__main__":
    main()
