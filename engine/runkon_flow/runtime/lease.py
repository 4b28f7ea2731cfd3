"""The run monitor: one background thread per engine that keeps every active run's lease alive,
notices an external cancel, and forwards cancels to in-flight executors (engine.md §6.4, §11).

Upstream started a refresh thread per run and a keeper thread per call attempt. One thread for
all runs is cheaper (a foreach can start thousands of child runs) and stricter: an external
`cancelling` status is noticed within `cancel_poll_interval` (1 s; upstream 5 s).

Per run, on each tick (every 100 ms):
* every `lease_refresh_interval`: re-acquire the lease with the run's owner token; a refusal or an
  error aborts the run (shutdown flag, token cancelled with LeaseLost) — an unavailable run
  database (`StoreUnavailable`) is kept on the run, which then ends saying so (engine.py);
* every `cancel_poll_interval`: `is_run_cancelled`; true → token cancelled with UserRequested;
* once the token is cancelled: `ActionRegistry.cancel(label, step_id)` for each in-flight call,
  on a background thread (executors' cancel is advisory and may block).
Then each store in use is flushed, so write-behind rows (foreach children) reach other processes
within a tick, and the events those rows report are released to the sinks (report_gate.py).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass

from runkon_flow.cancellation import CancellationReason
from runkon_flow.errors import StoreUnavailable
from runkon_flow.persistence.holders import (
    Holder,
    holder_of,
    release_if_gone,
    this_host,
    this_place,
)
from runkon_flow.persistence.models import RunStatus, new_id
from runkon_flow.persistence.notify import on_cancel_requested
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.runtime.report_gate import ReportGate
from runkon_flow.runtime.state import ExecutionState
from runkon_flow.runtime.threads import fire_and_forget

__all__ = [
    "Holder",
    "RunMonitor",
    "abort",
    "hold_lease",
    "holder_of",
    "lease_clock",
    "new_owner_token",
    "renew_lease",
    "take_lease",
]

log = logging.getLogger("runkon_flow.engine")

_TICK = 0.1


def _token_prefix() -> str:
    """`<host>:<pid>:<process ULID>[:<place>]`: who holds a run is readable from its lease
    (`holder_of`), and whether that process is gone, where the place (its pid namespace on this
    boot) is known (`holder_is_gone`, persistence/holders.py)."""
    place = this_place()
    return f"{this_host()}:{os.getpid()}:{new_id()}" + (f":{place}" if place else "")


_TOKEN_PREFIX = _token_prefix()
_token_counter = itertools.count(1)


def _after_fork() -> None:
    global _TOKEN_PREFIX
    _TOKEN_PREFIX = _token_prefix()


os.register_at_fork(after_in_child=_after_fork)


def new_owner_token(ttl: float | None = None) -> str:
    """A process-unique lease owner token: host, pid and this process's ULID plus a counter
    (cheaper than a ULID per run, which matters when a foreach starts thousands of child runs),
    and `/<ttl>`, the TTL every take and renewal of the lease with this token uses: a reader
    knows when the holder last renewed it — the lease's end less the TTL (`lease_ttl_of`,
    `liveness.last_heartbeat`) — where a dead holder's run stopped. No TTL (None): not said."""
    return f"{_TOKEN_PREFIX}-{next(_token_counter)}" + ("" if ttl is None else f"/{ttl:g}")


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def lease_clock() -> float:
    """The clock of `lease_sure_until`. A lease expires in the store while the machine sleeps, but
    time.monotonic stops during suspend on Linux: CLOCK_BOOTTIME counts it; monotonic elsewhere."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


@dataclass(eq=False)
class _Watch:
    st: ExecutionState
    next_refresh: float
    next_poll: float
    forwarded: set[str]


class RunMonitor:
    """Watches the active runs of one engine. Its thread runs only while some run is active."""

    def __init__(self, tick: float = _TICK) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._runs: dict[int, _Watch] = {}
        self._thread: threading.Thread | None = None
        on_cancel_requested(self.poll_now)  # a cancel made on another machine (PostgreSQL NOTIFY)

    def poll_now(self, run_id: str) -> None:
        """Check `run_id` for a cancel at the next tick instead of at its next scheduled poll."""
        with self._lock:
            for watch in list(self._runs.values()):
                if watch.st.workflow_run_id == run_id:
                    watch.next_poll = 0.0
                    self._wake.notify_all()

    def refresh_now(self, st: ExecutionState) -> None:
        """Confirm `st`'s lease at the next tick instead of at its next scheduled refresh (a run
        below it found its own run taken: this one may have been taken too). Takes no store
        call, so a store's commit may call it."""
        watch = self._runs.get(id(st))
        if watch is not None:
            watch.next_refresh = 0.0
            with self._lock:
                self._wake.notify_all()

    # `_runs` is written without the lock — one dict operation each, atomic in CPython — because
    # every child run of a fan-out registers and unregisters here, from all the workers at once.
    # The lock guards starting and stopping the thread (see `_ensure_thread` and `_loop`).

    def register(self, st: ExecutionState) -> None:
        now = time.monotonic()
        cfg = st.exec_config
        watch = _Watch(st, now + cfg.lease_refresh_interval, now + cfg.cancel_poll_interval, set())
        self._runs[id(st)] = watch
        if self._thread is None:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and self._runs:
                self._thread = threading.Thread(target=self._loop, name="runkon-run-monitor", daemon=True)
                self._thread.start()

    def unregister(self, st: ExecutionState) -> None:
        if self._runs.pop(id(st), None) is not None and not self._runs:
            with self._lock:
                self._wake.notify_all()

    def forward_now(self, st: ExecutionState) -> None:
        """Forward a cancel to `st`'s in-flight executors right away (once each, shared with the loop)."""
        watch = self._runs.get(id(st))
        forward_cancels(st, watch.forwarded if watch is not None else set())

    def active(self) -> list[ExecutionState]:
        return [w.st for w in list(self._runs.values())]

    def _loop(self) -> None:
        while True:
            with self._lock:
                stopping = not self._runs
                if stopping:
                    self._thread = None
                watches = list(self._runs.values())
            if stopping:
                # A run registered between the check above and `_thread = None` saw a live
                # thread and started none: look once more, now that the next register will.
                if self._runs:
                    self._ensure_thread()
                return
            now = time.monotonic()
            stores: dict[int, WorkflowPersistence] = {}
            gates: dict[int, tuple[ReportGate, int]] = {}  # marked before the flush that covers them
            for watch in watches:
                stores[id(watch.st.persistence)] = watch.st.persistence
                gate = watch.st.report_gate
                if gate is not None and id(gate) not in gates:
                    gates[id(gate)] = (gate, gate.mark())
                try:
                    self._check(watch, now)
                except Exception:  # the monitor must outlive any store or executor hiccup
                    log.exception("run monitor check failed for %s", watch.st.workflow_run_id)
            flushed = True
            for store in stores.values():  # write-behind rows reach other processes within a tick
                try:
                    store.flush()
                except Exception as exc:
                    flushed = False
                    log.warning("flushing the store failed: %s", exc)
            if flushed:  # and the events of write-behind runs reach the sinks (report_gate.py)
                for gate, mark in gates.values():
                    gate.release(mark)
            with self._lock:
                if self._runs:
                    self._wake.wait(self._tick)

    def _check(self, watch: _Watch, now: float) -> None:
        st = watch.st
        cfg = st.exec_config
        token = st.cancellation
        if not token.is_cancelled() and now >= watch.next_refresh:
            watch.next_refresh = now + cfg.lease_refresh_interval
            self._refresh(st)
        if not token.is_cancelled() and now >= watch.next_poll:
            watch.next_poll = now + cfg.cancel_poll_interval
            try:
                if st.persistence.is_run_cancelled(st.workflow_run_id):
                    log.info("run %s was cancelled from outside", st.workflow_run_id)
                    abort(st, _outside_reason(st))
            except Exception as exc:
                log.warning("is_run_cancelled(%s) failed: %s", st.workflow_run_id, exc)
        if token.is_cancelled():
            forward_cancels(st, watch.forwarded)

    def _refresh(self, st: ExecutionState) -> None:
        renewed = renew_lease(st)
        if id(st) not in self._runs:
            return  # ended while the refresh was on its way: nothing left to stop
        if not renewed:
            log.warning("run %s %s; stopping it", st.workflow_run_id, _lost_words(st))
            abort(st, CancellationReason.of("LeaseLost"))


def take_lease(st: ExecutionState, token: str) -> int | None:
    """Acquire `st`'s run lease for `token`; on success `st` holds it (owner token, generation,
    `lease_sure_until` from just before the write) and the generation is returned, else None."""
    began = lease_clock()
    generation = st.persistence.acquire_lease(st.workflow_run_id, token, st.exec_config.lease_ttl_secs)
    if generation is None and _let_go_for_the_dead(st):
        began = lease_clock()
        generation = st.persistence.acquire_lease(st.workflow_run_id, token, st.exec_config.lease_ttl_secs)
    if generation is not None:
        st.owner_token, st.lease_generation = token, generation
        st.lease_sure_until = began + st.exec_config.lease_ttl_secs
    return generation


def _let_go_for_the_dead(st: ExecutionState) -> bool:
    """The run's lease was refused: let go of it if its holder is provably gone (an engine that
    stopped when its run database went away, and could not let go of the lease itself)."""
    gone = release_if_gone(st.persistence, st.workflow_run_id)
    if gone is not None:
        log.info(
            "run %s: the engine that held it (%s) is gone; taking the run over without waiting for its lease",
            st.workflow_run_id,
            gone,
        )
    return gone is not None


def renew_lease(st: ExecutionState) -> bool:
    """Re-acquire `st`'s lease with its owner token; True when it was renewed (and
    `lease_sure_until` moves on), False when it is lost or could not be renewed."""
    began = lease_clock()
    try:
        generation = st.persistence.acquire_lease(
            st.workflow_run_id, st.owner_token or "", st.exec_config.lease_ttl_secs
        )
    except Exception as exc:
        log.warning("lease refresh for run %s failed: %s", st.workflow_run_id, exc)
        if isinstance(exc, StoreUnavailable) and st.lease_store_gone is None:
            st.lease_store_gone = exc  # the database was away: no one took the run over
        return False
    if generation is not None and generation != st.lease_generation:
        # Not a renewal: the lease had been let go of — this run ended meanwhile, or another
        # engine took the run over while this process stood still (Ctrl-Z, a frozen VM) and
        # finished it — and the refresh took the free lease again. Let go of it: the run is
        # not this engine's any more, and a finished run must not be left owned.
        try:
            st.persistence.release_lease(st.workflow_run_id, st.owner_token or "")
        except Exception as exc:
            log.warning("could not release the lease of run %s: %s", st.workflow_run_id, exc)
        return False
    if generation is None:
        return False
    st.lease_sure_until = began + st.exec_config.lease_ttl_secs
    return True


def _lost_words(st: ExecutionState) -> str:
    """How a run lost its lease, for the log: taken over, or not renewed for want of a database."""
    if st.lease_store_gone is not None:
        return "could not renew its lease (the run database can record nothing now)"
    return "lost its lease"


def hold_lease(st: ExecutionState) -> None:
    """Before `st` starts a child: past `lease_sure_until` another engine may have taken the run
    over while this process stood still (SIGSTOP, Ctrl-Z), before the monitor noticed; confirm the
    lease first, and stop the run (EngineCancelled(LeaseLost)) when it is lost. Otherwise one
    clock read: the monitor's renewals keep the time ahead."""
    if lease_clock() < st.lease_sure_until:
        return
    if not renew_lease(st):
        log.warning("run %s %s; stopping it before it starts a child", st.workflow_run_id, _lost_words(st))
        abort(st, CancellationReason.of("LeaseLost"))
        raise st.cancellation.error()


def _outside_reason(st: ExecutionState) -> CancellationReason:
    """Why the run was cancelled from outside: what the canceller left on the cancelling row
    (`runkon-flow cancel --message`), else by the user."""
    run = st.persistence.get_run(st.workflow_run_id)
    left = (
        CancellationReason.from_error(run.error)
        if run is not None and run.status is RunStatus.CANCELLING
        else None
    )
    return left or CancellationReason.user()


def abort(st: ExecutionState, reason: CancellationReason) -> None:
    """Stop a run: shutdown flag, cancel its token (first reason wins)."""
    # The flag lives in exec_config, which child runs share with their parent: only a top-level
    # run may raise it.
    if st.depth == 0 and st.exec_config.shutdown is not None:
        st.exec_config.shutdown.set()
    st.cancellation.cancel(reason)


def forward_cancels(st: ExecutionState, forwarded: set[str]) -> None:
    """Tell each in-flight executor of `st` (once) that its execution should stop."""
    for step_id, label in list(st.current_executions.items()):
        if step_id in forwarded:
            continue
        forwarded.add(step_id)
        fire_and_forget(st.action_registry.cancel, label, step_id, name="executor-cancel")
