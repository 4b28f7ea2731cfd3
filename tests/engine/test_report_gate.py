"""The events of foreach children wait in the top-level run's report gate until their rows are
committed (runtime/report_gate.py). Whoever delivers them — a worker, the step's end, the run
monitor's tick — a run's end is never reported before its children's ends: a hooks file saw a
child's late end as a second `workflow_run.completed` (the child's, with no workflow name)."""

from __future__ import annotations

import threading

from runkon_flow.events import EngineEventData, RunCompleted, RunStarted
from runkon_flow.hooks.events import HookEvents
from runkon_flow.runtime.report_gate import ReportGate


class _NotingLock:
    """The gate's delivery lock, saying (`on_wait`) when a caller is about to wait for it."""

    def __init__(self, on_wait: threading.Event) -> None:
        self._lock = threading.Lock()
        self._on_wait = on_wait

    def acquire(self, blocking: bool = True) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self._on_wait.set()
        return self._lock.acquire()

    def release(self) -> None:
        self._lock.release()


def test_a_runs_end_is_not_reported_while_its_last_childs_end_is_still_being_delivered() -> None:
    gate = ReportGate()
    parent_settled = threading.Event()  # the parent's final release returned, or waits its turn
    gate._deliver = _NotingLock(parent_settled)  # type: ignore[assignment]
    received: list[EngineEventData] = []
    threads: list[threading.Thread] = []

    def parent_ends() -> None:
        """The parent's engine thread: its final release, then its own end (not held)."""
        gate.release(gate.mark())
        received.append(EngineEventData.now("parent", RunCompleted(succeeded=True, summary="")))
        parent_settled.set()

    class Sink:
        def emit(self, data: EngineEventData) -> None:
            # The child's end is on its way to the sinks (the monitor's thread, descheduled):
            # the parent finishes meanwhile.
            thread = threading.Thread(target=parent_ends)
            threads.append(thread)
            thread.start()
            parent_settled.wait()
            received.append(data)

    gate.hold([Sink()], "child", RunCompleted(succeeded=True, summary=""))
    gate.release(gate.mark())  # the run monitor's tick delivers the child's end
    for thread in threads:
        thread.join()

    ends = [(d.run_id, d.event.type) for d in received]
    assert ends == [("child", "RunCompleted"), ("parent", "RunCompleted")]
    hooks = HookEvents()
    hooks.feed(EngineEventData.now("parent", RunStarted(workflow_name="fan")))
    hooks.feed(EngineEventData.now("child", RunStarted(workflow_name="item", parent_run_id="parent")))
    said = [(e.name, e.run_id, e.workflow) for d in received for e in hooks.feed(d)]
    assert said == [("workflow_run.completed", "parent", "fan")]
