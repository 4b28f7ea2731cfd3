"""`--executor ray` on a real two-node Ray cluster (tests/cluster/raycluster.py: head and worker in
network namespaces of their own, joined by a veth pair) against a throwaway PostgreSQL.

Run apart from the main suite, without xdist (`make test` does: `pytest -p no:xdist -m cluster`):
each test starts its own nodes, and the machine has two cores.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.event_log import read_envelopes
from runkon_flow.persistence.models import RunStatus
from runkon_flow.workspace import RAN_ON

from tests.cluster.raycluster import HEAD_IP, WORKER_IP, RayCluster, require
from tests.pg import fresh_dsn, open_db

pytestmark = pytest.mark.cluster

FLOW = [sys.executable, "-m", "runkon_flow.cli"]


def workflows(tmp_path: Path, count: int, *, sleep: float = 0.0, max_parallel: int = 4) -> Path:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "items.yaml").write_text("".join(f"- i{n:03d}\n" for n in range(count)))
    (wf / "fan.wf").write_text(
        "workflow fan {\n  foreach each {\n    over = static\n    workflow = item\n"
        f"    max_parallel = {max_parallel}\n"
        '    scope = { file = "items.yaml" }\n    inputs = { n = "{{item.id}}" }\n  }\n}\n'
    )
    (wf / "item.wf").write_text(
        'workflow item {\n  inputs {\n    n default = "0"\n  }\n'
        '  script work {\n    run = "./work.sh"\n    env = { N = "{{n}}" }\n  }\n}\n'
    )
    work = wf / "work.sh"
    work.write_text(f'#!/bin/sh\nsleep {sleep}\necho "$N" >> ran.txt\necho "item $N done"\n')
    work.chmod(0o755)
    return wf


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    require()
    with RayCluster() as c:
        yield c


def items(store: Any, run_id: str) -> dict[str, Any]:
    steps = [s for s in store.get_steps(run_id) if s.step_name == "foreach:each"]
    return {row.item_id: row for row in store.get_fan_out_items(steps[-1].id)} if steps else {}


def ran_on(store: Any, run_id: str) -> dict[str, str]:
    """Child run id → the node address its stored `ran on …` line names."""
    envelopes, _ = read_envelopes(store, run_id)
    return {
        env.run_id: env.event.message[len(RAN_ON) :].split(" ", 1)[0]
        for env in envelopes
        if env.event.type == "EngineLog" and env.event.message.startswith(RAN_ON)
    }


def flow(cluster: RayCluster, wf: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return cluster.run([*FLOW, *args, "--dir", str(wf)], timeout=timeout, cwd=wf)


def run_id_of(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("run_id="))
    return line.split()[0].removeprefix("run_id=")


def test_a_200_item_fan_out_runs_on_both_nodes_and_each_child_records_its_node(
    cluster: RayCluster, tmp_path: Path
) -> None:
    db = fresh_dsn()
    wf = workflows(tmp_path, 200)
    done = flow(cluster, wf, "run", "fan", "--db", db, "--executor", "ray", "--ray-address", cluster.address)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_id = run_id_of(done.stdout)
    with open_db(db) as store:
        rows = items(store, run_id)
        assert len(rows) == 200 and {r.status for r in rows.values()} == {"completed"}
        nodes = ran_on(store, run_id)
        assert {r.child_run_id for r in rows.values()} == set(nodes)
        assert collections.Counter(nodes.values()).keys() == {HEAD_IP, WORKER_IP}
        children = store.list_runs(limit=1000, parent_run_id=run_id)
        assert len(children) == 200 and {c.status for c in children} == {RunStatus.COMPLETED}
    assert sorted((wf / "ran.txt").read_text().split()) == sorted(rows)  # each item once


def test_a_cancel_stops_the_in_flight_items_on_both_nodes_within_5_seconds(
    cluster: RayCluster, tmp_path: Path
) -> None:
    db = fresh_dsn()
    wf = workflows(tmp_path, 12, sleep=60)
    proc = cluster.start(
        [*FLOW, "run", "fan", "--dir", str(wf), "--db", db, "--executor", "ray"],
        cwd=wf,
        log=tmp_path / "run.log",
    )
    try:
        with open_db(db) as store:
            run_id = _wait_for(lambda: _top_run(store), 60, "the run never started")
            _wait_for(
                lambda: sum(r.status == "running" for r in items(store, run_id).values()) >= 4,
                90,
                "four items never ran",
            )
            # the children are inside their 60 s scripts (a node's first worker takes seconds to start)
            _wait_for(lambda: _sleeping(cluster) >= 4, 60, "four items' scripts never started")
            assert all(_sleeping(cluster, node) for node in (cluster.head, cluster.worker))
            asked = time.monotonic()
            cancel = subprocess.run(
                [*FLOW, "cancel", run_id, "--db", db, "--no-wait"], capture_output=True, text=True
            )
            assert cancel.returncode == 0, cancel.stderr
            _wait_for(lambda: _sleeping(cluster) == 0, 10, "the items' scripts kept running")
            stopped = time.monotonic() - asked
            proc.wait(30)
            print(f"cancel: in-flight items stopped {stopped:.2f} s after the request")
            assert stopped < 5, f"in-flight items took {stopped:.1f} s to stop"
            assert store.get_run(run_id).status is RunStatus.CANCELLED
            children = store.list_runs(limit=100, parent_run_id=run_id)
            assert children and all(c.status.is_terminal for c in children)
            assert not (wf / "ran.txt").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_killed_worker_node_loses_no_item_and_resume_reruns_no_completed_item(tmp_path: Path) -> None:
    require()
    db = fresh_dsn()
    wf = workflows(tmp_path, 40, sleep=0.3)
    with RayCluster() as cluster:
        proc = cluster.start(
            [*FLOW, "run", "fan", "--dir", str(wf), "--db", db, "--executor", "ray"],
            cwd=wf,
            log=tmp_path / "run.log",
        )
        with open_db(db) as store:
            run_id = _wait_for(lambda: _top_run(store), 60, "the run never started")

            def worker_busy() -> bool:
                done = [r for r in items(store, run_id).values() if r.status == "completed"]
                return len(done) >= 8 and WORKER_IP in ran_on(store, run_id).values()

            _wait_for(worker_busy, 120, "the worker node never ran an item")
            cluster.worker.kill()  # SIGKILL: raylet, object store, workers and their scripts
            assert proc.wait(120) != 0  # the items the worker held failed: the run failed
            before = items(store, run_id)
            completed = {k: r.child_run_id for k, r in before.items() if r.status == "completed"}
            failed = [k for k, r in before.items() if r.status == "failed"]
            assert failed, "no item was running on the killed node"
            assert {r.status for r in before.values()} <= {"completed", "failed"}
            for item in failed:
                child = store.get_run(before[item].child_run_id)
                assert "was lost" in (child.error or ""), child.error
            resumed = flow(cluster, wf, "resume", run_id, "--db", db, "--executor", "ray", timeout=300)
            assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
            after = items(store, run_id)
            assert len(after) == 40 and {r.status for r in after.values()} == {"completed"}  # 0 lost
            for item, child_id in completed.items():  # 0 completed items run again
                assert after[item].child_run_id == child_id and after[item].attempt == before[item].attempt
            lines = collections.Counter((wf / "ran.txt").read_text().split())
            assert all(lines[item] == 1 for item in completed)
            assert set(lines) == set(after)


def _top_run(store: Any) -> str | None:
    runs = store.list_runs(limit=1)
    return runs[0].id if runs else None


def _sleeping(cluster: RayCluster, *nodes: Any) -> int:
    """How many `sleep 60` processes (the items' scripts) run on `nodes` (default: both)."""
    return sum(
        "sleep 60" in cmd
        for node in nodes or (cluster.head, cluster.worker)
        for cmd in cluster.processes(node)
    )


def _wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_detached_run_with_executor_ray_runs_its_items_on_both_nodes_after_the_command_returns(
    cluster: RayCluster, tmp_path: Path
) -> None:
    db = fresh_dsn()
    wf = workflows(tmp_path, 40, sleep=0.2)
    ray = ("--executor", "ray", "--ray-address", cluster.address)
    started = flow(cluster, wf, "run", "fan", "--db", db, *ray, "--detach")
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    assert "running in the background" in started.stdout
    run_id = run_id_of(started.stdout)
    with open_db(db) as store:

        def finished() -> bool:
            run = store.get_run(run_id)
            return run is not None and run.status.is_terminal and run.owner_token is None

        _wait_for(finished, 240, "the detached run never finished")
        run = store.get_run(run_id)
        assert run is not None and run.status is RunStatus.COMPLETED, run.error
        rows = items(store, run_id)
        assert len(rows) == 40 and {r.status for r in rows.values()} == {"completed"}
        nodes = ran_on(store, run_id)  # the children ran on the cluster, not in the runner
        assert {r.child_run_id for r in rows.values()} == set(nodes)
        assert collections.Counter(nodes.values()).keys() == {HEAD_IP, WORKER_IP}


def test_a_dashboard_on_the_head_machine_follows_a_cluster_run_live(
    cluster: RayCluster, tmp_path: Path
) -> None:
    """The dashboard reads only the store: the run's driver and its children run elsewhere (the
    driver in the head's namespace, the children on both nodes), and it still sees the items
    complete one after another while the run goes on."""
    import asyncio

    from runkon_tui.app import RunkonApp
    from tests.tui.conftest import make_app, wait_for

    db = fresh_dsn()
    wf = workflows(tmp_path, 30, sleep=0.4)
    proc = cluster.start(
        [*FLOW, "run", "fan", "--dir", str(wf), "--db", db, "--executor", "ray"],
        cwd=wf,
        log=tmp_path / "run.log",
    )
    seen: list[int] = []
    try:
        with open_db(db) as store:
            run_id = _wait_for(lambda: _top_run(store), 60, "the run never started")
            app: RunkonApp = make_app(host=None, store=store, dirs=[wf], clock=time.time, attach=run_id)

            def completed() -> int:
                fan = app.view.active_fanout()
                return fan.count("completed") if fan is not None else -1

            async def follow() -> None:
                async with app.run_test(size=(120, 40)) as pilot:
                    await wait_for(pilot, lambda: app.attached_run_id == run_id, 30, "attached")
                    while completed() < 30:
                        seen.append(completed())
                        await wait_for(pilot, lambda: completed() > seen[-1], 120, f"items after {seen[-1]}")
                    seen.append(completed())

            asyncio.run(follow())
        assert proc.wait(60) == 0
        moving = [n for n in seen if 0 < n < 30]
        assert len(set(moving)) >= 3, f"the dashboard saw no progress while the run went on: {seen}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_sqlite_file_is_refused_in_one_line_when_a_node_is_on_another_machine(
    cluster: RayCluster, tmp_path: Path
) -> None:
    wf = workflows(tmp_path, 3)
    db = tmp_path / "runs.db"
    done = flow(cluster, wf, "run", "fan", "--db", str(db), "--executor", "ray", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"runkon-flow run: error: --executor ray: the SQLite file {db} cannot be shared with Ray nodes "
        f"on other machines ({WORKER_IP}); use a postgresql:// URL"
    ]
    assert not db.exists() and not (wf / "ran.txt").exists()


FORCE = """
import sys, time
from runkon_flow.cancellation import EngineCancelled
from runkon_flow.persistence.location import DbLocation
from runkon_flow.ray_executor import RayExecutor, _ray

ex = RayExecutor(DbLocation(sys.argv[1]), [sys.argv[2]]).connect()
ray = _ray()

marker = sys.argv[2] + "/started"

def stuck(task, config):  # a task that never looks at the store (hung in a library call)
    import pathlib, subprocess
    pathlib.Path(marker).touch()
    subprocess.run(["sleep", "60"])
    return {}

ex._remote = ray.remote(max_retries=0, num_cpus=1)(stuck)
handle = ex._remote.remote({}, {})
import pathlib
while not pathlib.Path(marker).exists():
    assert ex.wait(handle, 0.1) is None
time.sleep(0.5)
asked = time.monotonic()
ex.force_cancel(handle)
while True:  # ended: cancelled, or returned early because its subprocess was killed
    try:
        if ex.wait(handle, 0.2) is not None:
            break
    except EngineCancelled:
        break
print(f"stopped {time.monotonic() - asked:.2f}")
"""


def test_a_task_that_ignores_the_store_is_force_cancelled_with_its_subprocesses(
    cluster: RayCluster, tmp_path: Path
) -> None:
    db = fresh_dsn()
    done = cluster.run([sys.executable, "-c", FORCE, db, str(tmp_path)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    stopped = float(done.stdout.split()[-1])
    assert stopped < 5
    _wait_for(lambda: _sleeping(cluster) == 0, 5, "the task's subprocess outlived the force-cancel")
