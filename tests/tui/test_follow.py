"""`StoreFollower` (runkon_tui/follow.py): following a run through the store survives the store
being out of reach for a while (a PostgreSQL server restarted mid-run)."""

from __future__ import annotations

import threading
import time

from runkon_flow.errors import PersistenceError
from runkon_flow.observe import outage
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import NewEvent, NewRun, RunStatus, StoredEvent

from runkon_tui.follow import StoreFollower


class FlakyStore:
    """An in-memory store whose reads fail while `down` is set, as a stopped server's do."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self.down = threading.Event()
        self.failed_reads = 0

    def _check(self) -> None:
        if self.down.is_set():
            self.failed_reads += 1
            raise PersistenceError(
                "cannot connect to run database postgresql://db/runkon: Connection refused"
            )

    def read_events(self, run_id, after_seq=0, limit=None):
        self._check()
        return self.store.read_events(run_id, after_seq, limit)

    def get_run(self, run_id):
        self._check()
        return self.store.get_run(run_id)

    def get_steps(self, run_id):
        self._check()
        return self.store.get_steps(run_id)


class Sink:
    def __init__(self) -> None:
        self.rows: list[StoredEvent] = []

    def emit_stored(self, row: StoredEvent) -> None:
        self.rows.append(row)


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_store_out_of_reach_is_waited_out_and_the_run_still_ends_on_screen(monkeypatch) -> None:
    monkeypatch.setattr(outage, "RETRY_SECONDS", 0.01)
    inner = InMemoryStore()
    run = inner.create_leased_run(NewRun(workflow_name="w"), "token", 600)
    inner.append_events(run.id, [NewEvent(time.time(), run.id, "RunStarted", "{}")])
    store = FlakyStore(inner)
    sink = Sink()
    ended: list[str] = []
    problems: list[str | None] = []
    follower = StoreFollower(store, run.id, sink, ended.append, interval=0.01)
    follower.on_problem = problems.append
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(sink.rows) == 1, "the first event is followed")
        store.down.set()
        wait_until(lambda: store.failed_reads >= 3, "reads are tried again while the store is down")
        assert thread.is_alive(), "the follower gave up on the first failed read"
        # The run ends while the follower cannot see it; the server comes back.
        inner.append_events(run.id, [NewEvent(time.time(), run.id, "RunCompleted", "{}")])
        inner.finish_run(run.id, RunStatus.COMPLETED, None, None, "token")
        store.down.clear()
        thread.join(timeout=20)
        assert not thread.is_alive()
    finally:
        follower.stop()
    assert [row.kind for row in sink.rows] == ["RunStarted", "RunCompleted"]
    assert ended == ["completed"]
    assert len(problems) == 2 and problems[1] is None  # told once when it failed, once when back
    assert problems[0] is not None and "trying again" in problems[0] and "Connection refused" in problems[0]
