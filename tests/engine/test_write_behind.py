"""Foreach children write their rows behind (docs/persistence.md): what a user watching the database
from another process must still see — every row once the run is over, a running child while it
runs, and a gate inside a child that can be approved from elsewhere."""

from __future__ import annotations

import threading
from pathlib import Path

from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.persistence import RunStatus, SqliteStore, StepStatus
from runkon_flow.plugins.protocols import ActionOutput

from .conftest import Harness, ListProvider, wait_until

CHILD = "workflow child { call work }"
FAN = "workflow fan {{ foreach all {{ over = tickets max_parallel = {slots} workflow = child }} }}"


def harness(tmp_path: Path, items: list[str]) -> Harness:
    h = Harness(SqliteStore(tmp_path / "runs.db"), tmp_path)
    h.add_workflow(CHILD)
    h.providers.append(ListProvider("tickets", items))
    return h


def test_when_a_fan_out_ends_every_child_row_is_in_the_database(tmp_path: Path) -> None:
    items = [f"t{i}" for i in range(40)]
    h = harness(tmp_path, items)
    try:
        # The engine creates the run itself: nothing reads the store before the run ends.
        result = h.build().run_workflow(parse_workflow(FAN.format(slots=4)), h.run_input(None))
        assert result.all_succeeded
        with SqliteStore(tmp_path / "runs.db") as other:  # another connection: only committed rows
            children = other.list_runs(limit=100, parent_run_id=result.workflow_run_id)
            assert len(children) == len(items)
            assert {c.status for c in children} == {RunStatus.COMPLETED}
            assert all(c.owner_token is None and c.result_summary for c in children)
            for child in children:
                [step] = other.get_steps(child.id)
                assert (step.step_name, step.status) == ("work", StepStatus.COMPLETED)
            [fan] = other.get_steps(result.workflow_run_id)
            assert {i.child_run_id for i in other.get_fan_out_items(fan.id)} == {c.id for c in children}
            assert other.get_run(result.workflow_run_id).status is RunStatus.COMPLETED
    finally:
        h.store.close()


def test_a_running_child_shows_up_in_the_database_while_it_runs(tmp_path: Path) -> None:
    h = harness(tmp_path, ["only"])
    release = threading.Event()

    def hold(info, params):
        release.wait(10)
        return ActionOutput(context="done")

    h.agents.do("work", hold)
    run = h.start(FAN.format(slots=1))
    try:
        with SqliteStore(tmp_path / "runs.db") as other:

            def child_is_visible() -> bool:
                children = other.list_runs(parent_run_id=run.run_id)
                return bool(children) and [s.status for s in other.get_steps(children[0].id)] == [
                    StepStatus.RUNNING
                ]

            assert wait_until(child_is_visible)
        release.set()
        assert run.join().all_succeeded
    finally:
        release.set()
        h.store.close()


def test_a_gate_in_a_child_can_be_approved_from_another_connection(tmp_path: Path) -> None:
    h = Harness(SqliteStore(tmp_path / "runs.db"), tmp_path)
    h.add_workflow('workflow child { gate human_approval { prompt = "go?" } call work }')
    h.providers.append(ListProvider("tickets", ["one"]))
    run = h.start(FAN.format(slots=1))
    try:
        with SqliteStore(tmp_path / "runs.db") as other:

            def waiting_gate() -> str | None:
                for child in other.list_runs(parent_run_id=run.run_id):
                    for step in other.get_steps(child.id):
                        if step.status is StepStatus.WAITING:
                            return step.id
                return None

            assert wait_until(lambda: waiting_gate() is not None)
            other.approve_gate(waiting_gate(), "reviewer", "fine", None)
        assert run.join().all_succeeded
        assert h.agents.names() == ["work"]
    finally:
        h.store.close()


class CheckingSink:
    """Looks each reported item up through another connection at the moment it is reported."""

    def __init__(self, db: Path) -> None:
        self.other = SqliteStore(db)
        self.fan_step: str | None = None
        self.seen: list[tuple[str, str, str]] = []  # (event, item id, committed status)

    def emit(self, data) -> None:
        event = data.event
        if event.type == "FanOutItemsCollected":
            self.fan_step = event.step_id
        if event.type in ("FanOutItemStarted", "FanOutItemCompleted"):
            rows = {r.item_id: r.status.value for r in self.other.get_fan_out_items(event.step_id)}
            self.seen.append((event.type, event.item_id, rows[event.item_id]))


def test_an_item_is_reported_started_and_completed_only_once_that_is_committed(tmp_path: Path) -> None:
    """Workers queue their items' ends without waiting for a commit (docs/persistence.md): what
    the sinks hear must still be in the database already, for every item, in order."""
    items = [f"t{i:03d}" for i in range(300)]
    h = harness(tmp_path, items)
    checking = CheckingSink(tmp_path / "runs.db")
    h.sink = checking  # type: ignore[assignment]
    try:
        result = h.build().run_workflow(parse_workflow(FAN.format(slots=8)), h.run_input(None))
        assert result.all_succeeded
    finally:
        h.store.close()
        checking.other.close()
    completed = {i: s for kind, i, s in checking.seen if kind == "FanOutItemCompleted"}
    started = {i: s for kind, i, s in checking.seen if kind == "FanOutItemStarted"}
    assert sorted(completed) == items and set(completed.values()) == {"completed"}
    assert sorted(started) == items and set(started.values()) <= {"running", "completed"}
    order = [(kind, i) for kind, i, _ in checking.seen]
    assert all(order.index(("FanOutItemStarted", i)) < order.index(("FanOutItemCompleted", i)) for i in items)
