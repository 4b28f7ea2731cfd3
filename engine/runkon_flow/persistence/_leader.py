"""Leader and followers for the stores' group commit (SQLite and PostgreSQL alike).

A durable write is queued; one writer at a time — the leader — takes the connection and commits
the whole queue in one transaction. The other durable writers (followers) wait on their own
write, on a lock of its own that is released once their write is done, or when the lead passes to
them. Without this, every writer whose write another thread had committed would still take the
connection lock in turn just to see its write done: one thread switch after another per commit,
which on a busy interpreter costs more than the commit itself.

A store mixes in `Leadership` and provides `_queue_lock` (guards the queue) and `_pending` (the
queued writes, oldest first); its queued writes have `wake`, `lead` and `done` attributes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["Leadership"]


class Leadership:
    """The leader/follower protocol around a store's write queue (see the module doc)."""

    _queue_lock: threading.Lock
    _pending: list[Any] | deque[Any]
    _leading: bool = False

    def _enlist(self, op: Any) -> threading.Lock | None:
        """Under `_queue_lock`, right after queueing the durable `op`: the lock its writer follows
        with (`_await_turn`), or None when it leads (then it must `_hand_over` when done)."""
        if self._leading:
            op.wake = wake = threading.Lock()
            wake.acquire()
            return wake
        self._leading = True
        return None

    def _await_turn(self, op: Any, wake: threading.Lock) -> bool:
        """Wait until `op` is done (False) or its writer is to lead (True). Interrupted (Ctrl-C), the
        write stays queued for the next leader, and a lead handed to it meanwhile is passed on."""
        try:
            wake.acquire()
        except BaseException:
            with self._queue_lock:
                op.wake = None
                lead = op.lead
            if lead:
                self._hand_over()
            raise
        return op.lead

    def _hand_over(self) -> None:
        """The leader is done: the oldest queued durable write's writer leads next, or no one."""
        with self._queue_lock:
            self._leading = self._wake_next_leader()

    def _ensure_leader(self) -> None:
        """Writes put back in the queue by an interrupted drain (a reader's or `flush()`'s, which
        do not lead): if no one leads, the oldest waiting follower does, so none waits forever."""
        with self._queue_lock:
            if not self._leading:
                self._leading = self._wake_next_leader()

    def _wake_next_leader(self) -> bool:
        """Under `_queue_lock`: make the writer of the oldest queued durable write lead; False when
        no one waits."""
        for queued in tuple(self._pending):  # one step: a write-behind write may append meanwhile
            wake = queued.wake
            if wake is not None and not queued.done:
                queued.wake, queued.lead = None, True
                wake.release()
                return True
        return False

    def _wake_done(self, batch: Iterable[Any]) -> None:
        """Release the followers whose writes are done (results and errors are set by then)."""
        with self._queue_lock:
            for op in batch:
                wake = op.wake
                if wake is not None and op.done:
                    op.wake = None
                    wake.release()
