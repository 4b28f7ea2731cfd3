"""A past run opened from the history is read from its stored event stream a page at a time, so
a big run's stream is never in memory whole — and it is drawn the same as from the whole list."""

from __future__ import annotations

from runkon_flow.event_log import READ_ROWS, StoredEventWriter, read_envelopes
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import NewRun, RunStatus, StoredEvent

from runkon_tui.history import past_run_view
from runkon_tui.run_view import RunView
from tests.tui import scenarios


class PagedStore(InMemoryStore):
    """Records how many stored rows each read of the event stream asked for (None: all)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int | None] = []

    def read_events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        self.asked.append(limit)
        return super().read_events(run_id, after_seq, limit)


def _stored_fan_out() -> PagedStore:
    """The 120-item review-pr fan-out, stored the way a run's writer stores it: a batch (here of
    ten events) a row, some hundred rows in all."""
    store = PagedStore()
    store.create_run(NewRun(workflow_name="review-pr", run_id=scenarios.ROOT))
    writer = StoredEventWriter(store, scenarios.ROOT)
    for n, data in enumerate(scenarios.foreach_mid_run(120).events, 1):
        writer.emit(data)
        if n % 10 == 0:
            writer.flush()
    writer.close()
    store.update_run_status(scenarios.ROOT, RunStatus.FAILED, None, "stopped")
    return store


def test_a_past_run_is_read_a_page_at_a_time_and_drawn_as_from_all_its_events() -> None:
    store = _stored_fan_out()
    rows = len(store.read_events(scenarios.ROOT))
    assert rows > 3 * READ_ROWS
    whole = RunView.from_events(read_envelopes(store, scenarios.ROOT)[0], lambda: scenarios.T0)
    store.asked.clear()

    view = past_run_view(store, scenarios.ROOT, clock=lambda: scenarios.T0)

    assert store.asked and all(limit is not None and limit <= READ_ROWS for limit in store.asked)
    assert len(store.asked) > rows // READ_ROWS  # the whole stream, page by page
    assert view.read_only
    assert view.events_applied == whole.events_applied
    assert view.summary_text(1000) == whole.summary_text(1000)
    assert view.step_counts() == whole.step_counts()
    (fan,), (was,) = view.fanouts(), whole.fanouts()
    assert (fan.ids, bytes(fan.codes), fan.errors) == (was.ids, bytes(was.codes), was.errors)
