"""Foreach children run by a remote executor (runtime/remote_child.py, docs/scale-out.md), here
with an executor that runs each `ChildTask` on a thread of this process against its own workspace
and store connection — the worker's side exactly as a Ray task runs it, without a cluster. The
cluster itself is tested in tests/cluster/."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.errors import WorkflowError
from runkon_flow.event_log import read_envelopes
from runkon_flow.persistence import NewEvent, SqliteStore
from runkon_flow.persistence.models import NewRun, RunStatus
from runkon_flow.persistence.snapshots import definition_snapshot, referenced_run
from runkon_flow.runtime.remote_child import ChildTask, WorkerLost
from runkon_flow.runtime.types import WorkflowExecConfig
from runkon_flow.workspace import RAN_ON, Workspace

FAN = """workflow fan {
  foreach each {
    over         = static
    workflow     = item
    max_parallel = 3
    scope        = { items = "ITEMS" }
    inputs       = { n = "{{item.id}}" }
  }
}
"""
ITEM = """workflow item {
  inputs {
    n default = "0"
  }
  script work {
    run = "./work.sh"
    env = { N = "{{n}}" }
  }
}
"""


def make_dir(tmp_path: Path, items: list[str], *, sleep: str = "0") -> Path:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "fan.wf").write_text(FAN.replace("ITEMS", ",".join(items)))
    (wf / "item.wf").write_text(ITEM)
    work = wf / "work.sh"
    work.write_text(
        f'#!/bin/sh\nif [ -e "stop-$N" ]; then sleep 30; fi\nsleep {sleep}\n'
        'echo "$N" >> ran.txt\necho "item $N done"\n'
    )
    work.chmod(0o755)
    return wf


class ThreadExecutor:
    """A RemoteExecutor whose 'worker' is a thread with a workspace of its own (its own store
    connection), like a Ray worker process. `lose` items make the worker vanish: before the child
    starts, or (`lose_after`) once its child has completed."""

    def __init__(
        self, db: Path, wf: Path, *, lose: set[str] = frozenset(), lose_after: set[str] = frozenset()
    ):
        self.store_url = str(db)
        self.worker = Workspace([wf], SqliteStore(db))
        self.pool = ThreadPoolExecutor(8)
        self.lose, self.lose_after = set(lose), set(lose_after)
        self.refuse: set[str] = set()
        self.forced: list[Any] = []
        self.tasks: list[ChildTask] = []

    def submit(self, task: ChildTask) -> Future:
        self.tasks.append(task)
        return self.pool.submit(self._run, task)

    def _run(self, task: ChildTask) -> dict[str, Any] | None:
        if task.item_id in self.lose:
            return None
        if task.item_id in self.refuse:
            return {"status": "refused"}
        outcome = self.worker.run_child_task(task, node="thread-node").to_dict()
        return None if task.item_id in self.lose_after else outcome

    def wait(self, handle: Future, timeout: float) -> dict[str, Any] | None:
        try:
            outcome = handle.result(timeout)
        except TimeoutError:
            return None
        if handle in self.forced:
            raise EngineCancelled(CancellationReason.user())
        if outcome is None:
            raise WorkerLost("WorkerCrashedError: the worker died")
        if outcome.get("status") == "refused":
            raise WorkflowError("the worker has no agent 'x'")
        return outcome

    def force_cancel(self, handle: Future) -> None:
        self.forced.append(handle)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.worker.store.close()


def driver(db: Path, wf: Path, executor: ThreadExecutor) -> Workspace:
    from runkon_flow.runtime.remote_child import RemoteChildRunner

    return Workspace(
        [wf],
        SqliteStore(db),
        child_runner=lambda engine, resolver, store: RemoteChildRunner(engine, resolver, store, executor),
    )


def items_of(store: Any, run_id: str) -> dict[str, Any]:
    steps = [s for s in store.get_steps(run_id) if s.step_name == "foreach:each"]
    return {row.item_id: row for row in store.get_fan_out_items(steps[-1].id)} if steps else {}


def test_every_item_runs_once_on_the_worker_and_its_child_run_records_the_node(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, [f"i{n}" for n in range(8)])
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf)
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("fan", {})
        result = ws.execute(run_id)
        assert result.all_succeeded, result.error
        assert sorted((wf / "ran.txt").read_text().split()) == sorted(f"i{n}" for n in range(8))
        rows = items_of(ws.store, run_id)
        assert {r.status for r in rows.values()} == {"completed"}
        ran_on = {
            env.run_id: env.event.message
            for env in read_envelopes(ws.store, run_id)[0]
            if env.event.type == "EngineLog" and env.event.message.startswith(RAN_ON)
        }
        assert {r.child_run_id for r in rows.values()} == set(ran_on)
        assert set(ran_on.values()) == {f"{RAN_ON}thread-node"}
        # The worker ran the definition that travelled with the task, stored with each child.
        assert {t.workflow_name for t in executor.tasks} == {"item"}
        children = [ws.store.get_run(r.child_run_id) for r in rows.values()]
        assert {c.status for c in children} == {RunStatus.COMPLETED}
        assert all('"item"' in (definition_snapshot(ws.store, c) or "") for c in children)
        # Their rows share one stored copy (persistence.snapshots), as in-process children do.
        assert sum(referenced_run(c.definition_snapshot) is None for c in children) < len(children)
    finally:
        executor.close()
        ws.store.close()


def test_a_lost_worker_fails_its_item_with_the_reason_and_resume_runs_only_that_item(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, ["a", "b", "c", "d"])
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf, lose={"c"})
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("fan", {})
        assert not ws.execute(run_id).all_succeeded
        rows = items_of(ws.store, run_id)
        assert {k: r.status for k, r in rows.items()} == {
            "a": "completed",
            "b": "completed",
            "c": "failed",
            "d": "completed",
        }
        lost = ws.store.get_run(rows["c"].child_run_id)
        assert lost.status is RunStatus.FAILED and "worker running item 'c' was lost" in (lost.error or "")
        assert lost.owner_token is None  # its lease is let go at once, not after the TTL
        executor.lose.clear()
        assert ws.resume(run_id).all_succeeded
        assert sorted((wf / "ran.txt").read_text().split()) == ["a", "b", "c", "d"]  # nothing twice
        rows = items_of(ws.store, run_id)
        assert {r.status for r in rows.values()} == {"completed"}
        assert rows["c"].attempt == 2 and rows["a"].attempt == 1
    finally:
        executor.close()
        ws.store.close()


def test_a_worker_that_cannot_run_the_child_fails_the_item_and_its_child_run_with_its_words(
    tmp_path: Path,
) -> None:
    wf = make_dir(tmp_path, ["a", "b"])
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf)
    executor.refuse = {"b"}
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("fan", {})
        assert not ws.execute(run_id).all_succeeded
        rows = items_of(ws.store, run_id)
        assert (rows["a"].status, rows["b"].status) == ("completed", "failed")
        child = next(
            c for c in ws.store.list_runs(limit=10, parent_run_id=run_id) if c.id != rows["a"].child_run_id
        )
        assert child.status is RunStatus.FAILED and "the worker has no agent 'x'" in (child.error or "")
        assert child.owner_token is None
    finally:
        executor.close()
        ws.store.close()


def test_a_worker_lost_after_its_child_completed_counts_the_item_as_done(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, ["a", "b"])
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf, lose_after={"b"})
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("fan", {})
        assert ws.execute(run_id).all_succeeded
        assert {r.status for r in items_of(ws.store, run_id).values()} == {"completed"}
        assert sorted((wf / "ran.txt").read_text().split()) == ["a", "b"]
    finally:
        executor.close()
        ws.store.close()


def test_a_cancel_reaches_the_workers_through_the_store_and_stops_in_flight_items(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, ["a", "b", "c", "d"])
    for n in "abcd":
        (wf / f"stop-{n}").touch()  # every child sleeps 30 s
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf)
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("fan", {})
        done: list[Any] = []
        runner = threading.Thread(target=lambda: done.append(ws.execute(run_id)))
        runner.start()
        deadline = time.monotonic() + 30
        while len([r for r in items_of(ws.store, run_id).values() if r.status == "running"]) < 3:
            assert time.monotonic() < deadline, "three items never started"
            time.sleep(0.1)
        time.sleep(1.0)  # the children are inside their 30 s scripts
        asked = time.monotonic()
        ws.cancel(run_id, "enough")
        runner.join(30)
        took = time.monotonic() - asked
        assert done and done[0].status is RunStatus.CANCELLED
        assert took < 5, f"in-flight items took {took:.1f} s to stop"
        children = ws.store.list_runs(limit=100, parent_run_id=run_id)
        assert len(children) == 3 and {c.status for c in children} == {RunStatus.CANCELLED}
        assert not executor.forced  # they stopped through the store, no force needed
        assert not (wf / "ran.txt").exists()
    finally:
        executor.close()
        ws.store.close()


def test_a_child_whose_parent_was_taken_over_stops_itself(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, ["a"])
    (wf / "stop-a").touch()
    db = tmp_path / "runs.db"
    store = SqliteStore(db)
    worker = Workspace([wf], SqliteStore(db))
    try:
        parent = store.create_run(NewRun(workflow_name="fan"))
        generation = store.acquire_lease(parent.id, "engine-1", 30)
        child = store.create_leased_run(
            NewRun(workflow_name="item", parent_run_id=parent.id, parent_workflow_run_id=parent.id),
            "child-token",
            30,
        )
        definition = worker.workflows["item"].to_json()
        task = ChildTask(
            store_url=str(db),
            run_id=child.id,
            top_run_id=parent.id,
            parent_run_id=parent.id,
            parent_generation=generation,
            workflow_name="item",
            definitions={"item": json.dumps(definition)},
            inputs={"n": "a"},
            depth=1,
            owner_token="child-token",
            lease_generation=child.generation,
            lease_ttl_secs=30,
            dry_run=False,
            item_id="a",
        )
        outcome: list[Any] = []
        failure: list[BaseException] = []

        def work() -> None:
            try:
                outcome.append(worker.run_child_task(task))
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        time.sleep(1.0)
        store.release_lease(parent.id, "engine-1")  # another engine resumes the parent
        assert store.acquire_lease(parent.id, "engine-2", 30) == generation + 1
        taken_over = time.monotonic()
        thread.join(15)
        assert not thread.is_alive()
        assert time.monotonic() - taken_over < 5
        # It stopped as a run that lost its lease: the new engine dispatches the item again.
        assert failure and isinstance(failure[0], EngineCancelled) and not outcome
        assert not (wf / "ran.txt").exists()
    finally:
        worker.store.close()
        store.close()


def test_the_worker_runs_the_definition_stored_with_the_run_not_what_its_disk_holds(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, ["a", "b"])
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf)
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("fan", {})
        # The worker's checkout changes before the run reaches it: another child workflow.
        (wf / "item.wf").write_text(ITEM.replace("./work.sh", "./other.sh"))
        (wf / "other.sh").write_text('#!/bin/sh\necho "other $N" >> ran.txt\n')
        (wf / "other.sh").chmod(0o755)
        executor.worker.reload()
        assert ws.execute(run_id).all_succeeded
        assert sorted((wf / "ran.txt").read_text().split()) == ["a", "b"]
    finally:
        executor.close()
        ws.store.close()


def test_call_workflow_children_stay_in_this_process(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, ["a"])
    (wf / "caller.wf").write_text(
        'workflow caller {\n  call workflow item {\n    inputs {\n      n = "x"\n    }\n  }\n}\n'
    )
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf)
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("caller", {})
        assert ws.execute(run_id).all_succeeded
        assert executor.tasks == []
        assert (wf / "ran.txt").read_text().split() == ["x"]
    finally:
        executor.close()
        ws.store.close()


@pytest.mark.parametrize("args", [["--memory"], []])
def test_executor_ray_refuses_a_store_the_nodes_cannot_share_in_one_line(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runkon_flow.cli import main

    wf = make_dir(tmp_path, ["a"])
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    if not args:  # as without the [ray] extra installed: `import ray` fails
        monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["run", "fan", "--dir", str(wf), "--executor", "ray", *args])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    if args:
        assert "--executor ray needs a run database every node can reach" in err
    else:
        assert "pip install 'runkon-tui[ray]'" in err
    assert not (wf / "ran.txt").exists()


def test_retry_with_executor_ray_and_no_ray_says_so_in_one_line_and_retries_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runkon_flow.cli import main

    wf = make_dir(tmp_path, ["a", "b"])
    db = tmp_path / "runs.db"
    executor = ThreadExecutor(db, wf, lose={"b"})
    ws = driver(db, wf, executor)
    try:
        run_id = ws.create_run("fan", {})
        assert not ws.execute(run_id).all_succeeded
    finally:
        executor.close()
        ws.store.close()
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the [ray] extra
    argv = ["retry", run_id, "--failed", "--yes", "--executor", "ray", "--db", str(db), "--dir", str(wf)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'runkon-tui[ray]'" in err[0]
    with SqliteStore(db) as store:
        assert items_of(store, run_id)["b"].status == "failed"
    assert (wf / "ran.txt").read_text().split() == ["a"]


class _WorkerClosesFirst:
    """A store where the worker's end of the child lands just before the parent's cancel request
    — after the parent last looked at the row: the interleaving the Ray cluster test met once."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _worker_ends(self, run_id: str) -> None:
        self.inner.update_run_status(run_id, RunStatus.CANCELLED, None, "cancelled by the worker")

    def request_cancel(self, run_id: str) -> bool:
        self._worker_ends(run_id)
        return self.inner.request_cancel(run_id)

    def update_run_status(self, run_id: str, status: RunStatus, summary: Any, error: Any) -> None:
        if status is RunStatus.CANCELLING:  # a cancel request written without looking
            self._worker_ends(run_id)
        self.inner.update_run_status(run_id, status, summary, error)


class _AnswersSecond:
    """An executor whose task is still running at the first look and has ended at the second."""

    def __init__(self) -> None:
        self.looks = 0

    def wait(self, handle: Any, timeout: float) -> dict[str, Any] | None:
        self.looks += 1
        if self.looks == 1:
            return None
        return {"status": "cancelled", "all_succeeded": False, "error": "cancelled by the worker"}

    def force_cancel(self, handle: Any) -> None:
        raise AssertionError("the worker answered: nothing to force")


def test_a_child_the_worker_closed_during_our_cancel_request_stays_closed(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from runkon_flow.cancellation import CancellationToken
    from runkon_flow.runtime.remote_child import RemoteChildRunner

    inner = SqliteStore(tmp_path / "runs.db")
    try:
        child = inner.create_run(NewRun(workflow_name="item"))
        inner.update_run_status(child.id, RunStatus.RUNNING, None, None)
        store = _WorkerClosesFirst(inner)
        runner = RemoteChildRunner(SimpleNamespace(workflow_resolver=None), None, store, _AnswersSecond())  # type: ignore[arg-type]
        cancellation = CancellationToken()
        cancellation.cancel(CancellationReason.user())
        params = SimpleNamespace(cancellation=cancellation, item_id="a")
        result = runner._await("handle", child.id, "token", "item", params, 10.0, time.monotonic())  # type: ignore[arg-type]
        assert result.status is RunStatus.CANCELLED
        row = inner.get_run(child.id)
        assert row is not None and row.status is RunStatus.CANCELLED  # not left `cancelling`
    finally:
        inner.close()


class _RayThatHangs:
    """Stands in for `ray`: its `init` is what joining an address where nothing listens does —
    Ray retries for over 13 minutes — so the test fails at once instead of hanging."""

    def __init__(self) -> None:
        self.inits = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs: Any) -> None:
        self.inits += 1
        raise TimeoutError("ray.init was called: it would retry for 13 minutes")


def test_a_ray_address_where_nothing_listens_is_one_line_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from runkon_flow.cli import main

    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = _RayThatHangs()
    monkeypatch.setitem(sys.modules, "ray", fake)
    wf = make_dir(tmp_path, ["a"])
    address = f"127.0.0.1:{port}"
    argv = ["run", "fan", "--dir", str(wf), "--db", str(tmp_path / "runs.db"), "--executor", "ray"]
    code = main([*argv, "--ray-address", address])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert f"cannot join the Ray cluster at {address}: nothing answers at {address}" in err
    assert f"ray start --head --port={port}" in err
    assert fake.inits == 0
    assert not (wf / "ran.txt").exists()


@pytest.mark.parametrize("server", ["http", "silent"])
def test_a_ray_address_where_something_else_listens_is_one_line_without_joining(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    """A web server on the port (or one that accepts and never answers): `ray.init` would retry
    for over 13 minutes; the probe's HTTP/2 greeting gets no gRPC answer, so it is one line."""
    import socket
    import threading

    from runkon_flow import ray_executor
    from runkon_flow.cli import main

    monkeypatch.setattr(ray_executor, "PROBE_TIMEOUT_S", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            if server == "http":
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    fake = _RayThatHangs()
    monkeypatch.setitem(sys.modules, "ray", fake)
    wf = make_dir(tmp_path, ["a"])
    address = f"127.0.0.1:{port}"
    argv = ["run", "fan", "--dir", str(wf), "--db", str(tmp_path / "runs.db"), "--executor", "ray"]
    try:
        code = main([*argv, "--ray-address", address])
    finally:
        listener.close()
        for conn in held:
            conn.close()
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert f"cannot join the Ray cluster at {address}: what answers at {address} is not a Ray head (" in err
    assert ("not in HTTP/2" if server == "http" else "no answer to an HTTP/2 greeting") in err
    assert fake.inits == 0
    assert not (wf / "ran.txt").exists()


_UNDER_A_STDERR_WITHOUT_FD = r"""
import faulthandler, sys, types
from runkon_flow.persistence.location import db_location
from runkon_flow.ray_executor import RayExecutor

class Capture:  # as Textual's app replaces sys.stderr while the dashboard runs
    def write(self, text): return len(text)
    def flush(self): pass
    def fileno(self): return -1

ray = types.ModuleType("ray")
ray.is_initialized = lambda: False
def init(**kwargs):  # what ray.init does first (ray/_private/worker.py connect)
    if not faulthandler.is_enabled():
        faulthandler.enable(all_threads=False)
ray.init = init
ray.nodes = lambda: []
ray.remote = lambda **kwargs: (lambda fn: fn)
sys.modules["ray"] = ray
faulthandler.disable()
sys.stderr = Capture()
try:
    RayExecutor(db_location(sys.argv[1]), []).connect()
except Exception as exc:
    print(f"refused: {exc}")
    raise SystemExit(1) from None
print("joined")
"""


def test_ray_joins_under_a_stderr_without_a_file_descriptor(tmp_path: Path) -> None:
    # The dashboard's `--executor ray` said `engine unavailable: … file.fileno() is not a valid
    # file descriptor` whatever the cluster: Ray's faulthandler.enable() met Textual's capture.
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _UNDER_A_STDERR_WITHOUT_FD, str(tmp_path / "runs.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "joined", done.stdout + done.stderr


class _Clock:
    """`time.monotonic` of the cancel, the fan-out and the remote runner in the cancel tests below:
    it moves only when the executor waits, by as long as that wait took, so their deadlines —
    the runner's force-cancel, the fan-out's giving up — are compared on one timeline that a
    loaded machine cannot stretch (before, each side read the wall clock, and under load the
    runner's confirmation could come after the fan-out had given up)."""

    def __init__(self) -> None:
        self._now = 1_000.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from types import SimpleNamespace

        from runkon_flow import cancellation
        from runkon_flow.runtime import remote_child
        from runkon_flow.runtime.nodes import foreach

        for module in (cancellation, remote_child, foreach):  # each reads only time.monotonic
            monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=self.monotonic))


class _IgnoresTheStore(ThreadExecutor):
    """Tasks that never look at the store (stuck in a subprocess): only the force-cancel stops
    them, as Ray's does. Each wait takes `timeout + lag` on `clock`; the wait after a
    force-cancel confirms it (the task ends at once, released)."""

    lag = 0.0

    def __init__(self, db: Path, wf: Path, clock: _Clock) -> None:
        super().__init__(db, wf)
        self.released = threading.Event()
        self.started = threading.Event()  # a task runs: its item is recorded running
        self.clock = clock

    def _run(self, task: ChildTask) -> dict[str, Any] | None:
        self.started.set()
        self.released.wait(60)
        return None

    def wait(self, handle: Future, timeout: float) -> dict[str, Any] | None:
        self.clock.advance(timeout + self.lag)
        if handle in self.forced:
            handle.result(60)  # released by the force-cancel: it ends now, whatever the load
        return super().wait(handle, timeout)

    def force_cancel(self, handle: Future) -> None:
        super().force_cancel(handle)
        self.released.set()


def _cancel_once_an_item_runs(ws: Workspace, executor: _IgnoresTheStore) -> str:
    """Run the fan, cancel it once an item runs; the run ends cancelled, its remote child
    force-cancelled first. Returns the run's id."""
    run_id = ws.create_run("fan", {})
    done: list[Any] = []
    runner = threading.Thread(target=lambda: done.append(ws.execute(run_id)))
    runner.start()
    assert executor.started.wait(60), "the item never started"
    ws.cancel(run_id, "enough")
    runner.join(60)
    assert done and done[0].status is RunStatus.CANCELLED
    assert executor.forced, "the run ended before its remote child was force-cancelled"
    children = ws.store.list_runs(limit=10, parent_run_id=run_id)
    assert [c.status for c in children] == [RunStatus.CANCELLED]
    return run_id


def test_a_cancelled_foreach_waits_for_the_force_cancel_of_its_remote_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The foreach gave up on in-flight children after the engine's 1 s grace, before the remote
    # runner force-cancelled them (2 s): the run ended with the tasks still running and, in a
    # process about to exit, their child rows left `running`.
    wf = make_dir(tmp_path, ["a"])
    db = tmp_path / "runs.db"
    clock = _Clock()
    clock.install(monkeypatch)
    executor = _IgnoresTheStore(db, wf, clock)
    ws = driver(db, wf, executor)
    try:
        run_id = _cancel_once_an_item_runs(ws, executor)
        assert items_of(ws.store, run_id)["a"].status == "cancelled"
    finally:
        executor.released.set()
        executor.close()
        ws.store.close()


class _SlowToAnswer(_IgnoresTheStore):
    """An executor slow to answer (`ray.wait` on a loaded machine): each wait takes a second
    longer than asked."""

    lag = 1.0


def test_a_long_cancel_grace_still_force_cancels_remote_children_before_the_foreach_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With cancel_grace ≥ 5 s the foreach gave up the moment the runner's force-cancel was due,
    # each measured from when it noticed the cancel: a runner slow to notice (its executor slow to
    # answer) force-cancelled after the run had ended with the task still running.
    wf = make_dir(tmp_path, ["a"])
    db = tmp_path / "runs.db"
    clock = _Clock()
    clock.install(monkeypatch)
    executor = _SlowToAnswer(db, wf, clock)
    from runkon_flow.runtime.remote_child import RemoteChildRunner

    ws = Workspace(
        [wf],
        SqliteStore(db),
        exec_config=WorkflowExecConfig(cancel_grace=5.0),
        child_runner=lambda engine, resolver, store: RemoteChildRunner(engine, resolver, store, executor),
    )
    try:
        _cancel_once_an_item_runs(ws, executor)
    finally:
        executor.released.set()
        executor.close()
        ws.store.close()


class _OtherVersions(ThreadExecutor):
    """Each task crosses to the worker as a dict (as Ray sends it), edited by `edit` as a driver
    of another runkon version would have sent it."""

    def __init__(self, db: Path, wf: Path, edit: Any) -> None:
        super().__init__(db, wf)
        self.edit = edit

    def _run(self, task: ChildTask) -> dict[str, Any] | None:
        received = ChildTask.from_dict(self.edit(task.to_dict()))
        return self.worker.run_child_task(received, node="thread-node").to_dict()


def test_a_worker_runs_the_task_of_a_newer_driver_ignoring_the_fields_it_does_not_know(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: a field a newer driver added (a cluster upgraded node by node) failed every item
    # with "ChildTask.__init__() got an unexpected keyword argument".
    wf = make_dir(tmp_path, ["a", "b"])
    db = tmp_path / "runs.db"
    executor = _OtherVersions(db, wf, lambda task: {**task, "priority": 3})
    ws = driver(db, wf, executor)
    try:
        result = ws.execute(ws.create_run("fan", {}))
        assert result.all_succeeded, result.error
        assert sorted((wf / "ran.txt").read_text().split()) == ["a", "b"]
        assert "ignoring field(s) priority this runkon does not know" in caplog.text
    finally:
        executor.close()
        ws.store.close()


def test_a_task_lacking_a_field_the_worker_needs_fails_its_item_saying_why(tmp_path: Path) -> None:
    wf = make_dir(tmp_path, ["a"])
    db = tmp_path / "runs.db"
    executor = _OtherVersions(
        db, wf, lambda task: {k: v for k, v in task.items() if k != "parent_generation"}
    )
    ws = driver(db, wf, executor)
    try:
        result = ws.execute(ws.create_run("fan", {}))
        assert not result.all_succeeded
        item = items_of(ws.store, result.workflow_run_id)["a"]
        assert item.status == "failed"
        (child,) = ws.store.list_runs(limit=10, parent_run_id=result.workflow_run_id)
        assert "without parent_generation: it runs an older runkon" in (child.error or "")
    finally:
        executor.close()
        ws.store.close()


def test_a_worker_stores_no_events_in_the_stream_of_a_parent_taken_over(tmp_path: Path) -> None:
    # Before: a worker's child stored its events into the top-level run's stream whoever held
    # that run: after another engine took the parent over, they went into its stream.
    wf = make_dir(tmp_path, ["a"])
    db = tmp_path / "runs.db"
    store = SqliteStore(db)
    worker = Workspace([wf], SqliteStore(db))
    try:
        parent = store.create_run(NewRun(workflow_name="fan"))
        generation = store.acquire_lease(parent.id, "engine-1", 30)
        child = store.create_leased_run(
            NewRun(workflow_name="item", parent_run_id=parent.id, parent_workflow_run_id=parent.id),
            "child-token",
            30,
        )
        task = ChildTask(
            store_url=str(db),
            run_id=child.id,
            top_run_id=parent.id,
            parent_run_id=parent.id,
            parent_generation=generation,
            workflow_name="item",
            definitions={"item": json.dumps(worker.workflows["item"].to_json())},
            inputs={"n": "a"},
            depth=1,
            owner_token="child-token",
            lease_generation=child.generation,
            lease_ttl_secs=30,
            dry_run=False,
            item_id="a",
        )
        store.release_lease(parent.id, "engine-1")  # another engine resumes the parent …
        assert store.acquire_lease(parent.id, "engine-2", 30) == generation + 1
        with contextlib.suppress(EngineCancelled):  # … while this worker, which had the task, runs it
            worker.run_child_task(task)
        assert store.read_events(parent.id) == []
        # the parent's own engine still writes its stream
        resumed = [NewEvent(1.0, parent.id, "RunResumed", "{}")]
        assert store.append_events(parent.id, resumed, generation=generation + 1)
    finally:
        worker.store.close()
        store.close()
