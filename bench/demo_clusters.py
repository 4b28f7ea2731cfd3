"""The issue-14 "done when" scenario at full size, by hand (not a test: it takes minutes).

A 10,000-item fan-out where 500 items fail in three error kinds (messages differ per item:
numbers, hex request ids, paths, addresses, times). Through the real CLI in subprocesses:

1. `run` → failed; `show` lists three failure clusters (checked);
2. fix one kind, `retry --cluster 1` → only that cluster's items run again and complete (checked);
3. fix the rest, `retry --cluster 1` twice (the first cluster left each time) → the run ends
   completed; every retried item is attempt 2 with its earlier failed child run kept (checked in
   the database).

Prints the time of each phase and the load. Usage: .venv/bin/python bench/demo_clusters.py [N]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import loadavg
from runkon_flow.persistence import FanOutItemStatus, RunStatus, SqliteStore

WORK = r"""n=$(echo "$1" | sed 's/^i0*//'); n=${n:-0}
[ $((n % 20)) -ne 0 ] && exit 0
kind=$((n / 20 % 3))
test -f "fixed-$kind" && exit 0
case $kind in
  0) echo "rate limited: retry after $((n % 50 + 5))s (request 0x$(printf '%06x' $((n * 7919))))" >&2 ;;
  1) echo "schema mismatch in /data/batch-$((n / 100))/$1.json line $((n % 97)): expected int" >&2 ;;
  2) echo "connection reset by 10.0.$((n % 250)).7:443 at 2026-12-03T13:$((n % 60)):00Z" >&2 ;;
esac
exit 3
"""


def cli(home: Path, *args: str) -> tuple[int, str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "runkon-flow"), *args],
        cwd=home,
        capture_output=True,
        text=True,
        env={**os.environ, "RUNKON_DB": str(home / "runs.db")},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start


def clusters_of(home: Path, run_id: str) -> list[dict]:
    """The run's failure clusters, as `show --json` lists them."""
    return json.loads(cli(home, "show", run_id, "--json")[1])["failure_clusters"]


def retry_first_cluster(home: Path, run_id: str) -> None:
    """`retry --cluster 1`, its time and what it planned to run again."""
    code, out, secs = cli(home, "retry", run_id, "--cluster", "1", "--yes", "--progress", "quiet")
    plan = next(ln.strip() for ln in out.splitlines() if "foreach 'each'" in ln)
    print(f"retry -c 1     exit {code}  {secs:7.1f} s  ({plan})")


def main(n: int = 10_000) -> None:
    print(f"demo_clusters: {n} items, {n // 20} failing in three kinds; {loadavg()} (shared, noisy machine)")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        items = ",".join(f"i{k:05d}" for k in range(n))
        (home / "fan.wf").write_text(
            "workflow fan {\n  foreach each {\n    over = static\n"
            f'    scope = {{ items = "{items}" }}\n'
            '    max_parallel = 16\n    workflow = one\n    inputs = { name = "{{item.id}}" }\n  }\n}\n'
        )
        (home / "one.wf").write_text(
            'workflow one {\n  inputs { name default = "" }\n'
            '  script work { run = "sh work.sh {{name}}" }\n}\n'
        )
        (home / "work.sh").write_text(WORK)

        code, out, secs = cli(home, "run", "fan", "--progress", "quiet")
        run_id = re.search(r"run_id=(\w+)", out)[1]  # type: ignore[index]
        print(f"run            exit {code}  {secs:7.1f} s")
        code, out, secs = cli(home, "show", run_id)
        section = out[out.index("failure clusters") :].split("\n\nfailed steps")[0]
        print(f"show           exit {code}  {secs:7.1f} s\n{section}")
        clusters = clusters_of(home, run_id)
        per_kind = [len(range(k, n // 20, 3)) for k in range(3)]
        assert sorted(c["count"] for c in clusters) == sorted(per_kind), clusters
        first_kind = clusters[0]["signature"]
        kind = 0 if "rate limited" in first_kind else 1 if "schema" in first_kind else 2
        (home / f"fixed-{kind}").touch()

        retry_first_cluster(home, run_id)
        left = clusters_of(home, run_id)
        assert all(c["signature"] != first_kind for c in left) and len(left) == 2, left
        print(f"clusters left  {[(c['number'], c['count'], c['signature'].splitlines()[-1]) for c in left]}")

        # The other two kinds fixed too: retry cluster by cluster (each time the first one left).
        for k in range(3):
            (home / f"fixed-{k}").touch()
        for left_n in (2, 1):
            retry_first_cluster(home, run_id)
            assert len(clusters_of(home, run_id)) == left_n - 1

        store = SqliteStore(home / "runs.db")
        try:
            run = store.get_run(run_id)
            assert run is not None and run.status is RunStatus.COMPLETED, run
            steps = [s for s in store.get_steps(run_id) if s.role == "foreach"]
            steps.sort(key=lambda s: (s.started_at or "", s.id))
            first = {i.item_id: i for i in store.get_fan_out_items(steps[0].id)}
            last = {i.item_id: i for i in store.get_fan_out_items(steps[-1].id)}
            failed_first = [k for k, i in first.items() if i.status is FanOutItemStatus.FAILED]
            assert len(failed_first) == n // 20
            for item in failed_first:
                row = last[item]
                assert row.status is FanOutItemStatus.COMPLETED and row.attempt == 2, row
                assert row.previous_child_run_id == first[item].child_run_id
                earlier = store.get_run(first[item].child_run_id or "")
                assert earlier is not None and earlier.status is RunStatus.FAILED
            print(
                f"ended {run.status.value}: {len(steps)} fan-out attempts; all {len(failed_first)} failed "
                "items completed on attempt 2, their failed first attempts kept"
            )
        finally:
            store.close()
    print(loadavg())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
