"""Thread helpers for the engine: a daemon worker pool, deadline-bounded calls, background cancels.

Why not `concurrent.futures`: its workers are joined at interpreter exit, so one executor that
never returns would hang the whole process (the dashboard could not quit). Ours are daemon
threads, and a step that must be pre-empted can be abandoned after a short grace period.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from runkon_flow.cancellation import CancellationReason, CancellationToken

__all__ = ["DeadlineOutcome", "WorkerPool", "call_with_deadline", "fire_and_forget"]

log = logging.getLogger("runkon_flow.engine")

_STOP = object()


class WorkerPool:
    """`size` daemon threads taking tasks from one queue. Tasks must not raise (they are wrapped)."""

    def __init__(self, size: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._size = max(1, size)
        self._name = name

    def _ensure_started(self) -> None:
        # Threads start lazily, one per submitted task up to `size`, so a small fan-out never
        # pays for idle workers.
        if len(self._threads) < self._size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._tasks.put((fn, args))
        self._ensure_started()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is _STOP:
                return
            fn, args = task
            try:
                fn(*args)
            except BaseException:  # a task must never take its worker down
                log.exception("worker task failed")

    def shutdown(self) -> None:
        """Ask every worker to exit after its current task (does not wait)."""
        for _ in self._threads:
            self._tasks.put(_STOP)


class DeadlineOutcome:
    """Result of `call_with_deadline`: `finished` (the call returned or raised), `value`/`error`,
    and `timed_out` (the deadline passed first)."""

    __slots__ = ("error", "finished", "timed_out", "value")

    def __init__(self) -> None:
        self.finished = False
        self.timed_out = False
        self.value: Any = None
        self.error: BaseException | None = None


def call_with_deadline(
    fn: Callable[[], Any],
    token: CancellationToken,
    timeout: float,
    grace: float,
    tick: float = 0.05,
) -> DeadlineOutcome:
    """Run `fn` on a daemon thread; stop waiting when it returns, when `timeout` seconds pass
    (then `token` is cancelled with Timeout) or when `token` is cancelled from outside. After a
    stop, the call gets `grace` seconds to notice its cancelled token before it is abandoned."""
    outcome = DeadlineOutcome()
    done = threading.Event()

    def target() -> None:
        try:
            outcome.value = fn()
        except BaseException as exc:
            outcome.error = exc
        finally:
            done.set()

    threading.Thread(target=target, name="step-dispatch", daemon=True).start()
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        remaining = deadline - time.monotonic()
        if done.wait(min(tick, max(remaining, 0.0))):
            break
        if token.is_cancelled():
            break
        if time.monotonic() >= deadline:
            outcome.timed_out = True
            token.cancel(CancellationReason.of("Timeout"))
            break
    if not done.is_set():
        done.wait(grace)
    outcome.finished = done.is_set()
    return outcome


def fire_and_forget(fn: Callable[..., Any], *args: Any, name: str = "engine-bg") -> None:
    """Run `fn(*args)` on a daemon thread, logging (never raising) its errors."""

    def target() -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("background task %s failed", name)

    threading.Thread(target=target, name=name, daemon=True).start()
