"""Selecting a fan-out item whose child run the view does not hold (a past run's items, or an
older child a live view let go) reads that run from the store on a worker: a slow store never
freezes the screen, the log says the run is being read, and its output appears once it is."""

from __future__ import annotations

import threading

from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import (
    FanOutItemStatus,
    FanOutItemUpdate,
    NewRun,
    NewStep,
    RunStatus,
    StepUpdate,
    WorkflowRun,
)

from tests.tui.conftest import make_app, wait_for

ROOT = "01HZZCHILDREAD000000000000"


class SlowStore(InMemoryStore):
    """Reading the run `slow` waits until the test releases it (at most 10 s, so a dashboard that
    reads it on the UI thread fails the test instead of hanging it)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow: str | None = None
        self.entered = threading.Event()
        self.release = threading.Event()

    def get_run(self, run_id: str) -> WorkflowRun | None:
        if run_id == self.slow:
            self.entered.set()
            self.release.wait(10)
        return super().get_run(run_id)


def _past_fan_out() -> tuple[SlowStore, list[str]]:
    """A finished review-pr run whose three fan-out items each ran a child run with output; the
    child run ids."""
    store = SlowStore()
    store.create_run(NewRun(workflow_name="review-pr", run_id=ROOT))
    fan = store.insert_step(NewStep(ROOT, "foreach:review-items", role="foreach", retry_count=0, position=0))
    ids = store.insert_fan_out_items(fan, [("item", f"file-{i}", "", {}) for i in range(3)])
    children = []
    for n, row in enumerate(ids):
        child = store.create_run(NewRun(workflow_name="review-one", parent_workflow_run_id=ROOT)).id
        step = store.insert_step(NewStep(child, "review-file", retry_count=0, position=0))
        store.update_step(step, StepUpdate.completed(0, result_text=f"reviewed file-{n}"))
        store.update_run_status(child, RunStatus.COMPLETED, None, None)
        done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, child)
        store.batch_update_fan_out_items([(row, done)])
        children.append(child)
    store.update_step(fan, StepUpdate.completed(0))
    store.update_run_status(ROOT, RunStatus.COMPLETED, None, None)
    return store, children


async def test_an_items_child_run_is_read_off_the_ui_thread_and_shown_once_read() -> None:
    store, children = _past_fan_out()
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_past_run(ROOT)
        shown = lambda: app.view.root_run_id == ROOT and app.view.fanouts()  # noqa: E731
        await wait_for(pilot, shown, what="the past run")
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None
        grid = screen.grid
        assert grid.fan is not None and app.view.run(children[0]) is None  # not in the view: in the store

        def output() -> tuple[str, list[str]]:
            source = screen.log_pane.sources["output"]
            return screen.log_pane.output_title, [source.get(i)[0] for i in range(source.total)]

        store.slow = children[0]
        grid.focus()
        grid.move_to_item(0)
        await pilot.press("enter")
        await wait_for(pilot, store.entered.is_set, what="the child run being read")
        # The store has not answered, and the screen goes on: it says what it waits for, and keys work.
        assert output() == ("item file-0", [f"file-0: reading run {children[0]} from the store…"])
        await pilot.press("right")
        await wait_for(pilot, lambda: grid.cursor_item == 1, what="the cursor on the next item")
        assert "file-1" in str(screen.item_detail.render())
        store.release.set()
        await wait_for(pilot, lambda: len(output()[1]) > 1, what="the child run's output")
        title, lines = output()
        assert title == "item file-0"
        assert lines[0] == f"run {children[0]} · review-one · completed"
        assert app.view.run(children[0]) is not None
