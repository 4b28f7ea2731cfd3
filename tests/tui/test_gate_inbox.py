"""The dashboard's gate inbox (`i`): gates waiting in runs that other engines execute, marked and
answered together with one note; the decision then shows in the tree of the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runkon_flow.events import GateResolved, GateWaiting, StepStarted
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepStatus, StepUpdate
from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.workspace import Workspace
from textual.widgets import DataTable, Input

from runkon_tui.screens.inbox import BatchNoteScreen, GateInboxScreen
from tests.tui import scenarios
from tests.tui.conftest import feed, make_app, real_app, wait_for


class Elsewhere:
    """Runs of `approval` executed by another engine on the same database file, each waiting at
    its gate on a background thread (as another process would)."""

    def __init__(self, folder: Path, db: Path, count: int) -> None:
        self.store = SqliteStore(db)
        self.ws = Workspace([folder], self.store)
        self.run_ids = [self.ws.create_run("approval", {}) for _ in range(count)]
        self.results: dict[str, object] = {}
        self.threads = [
            threading.Thread(target=self._execute, args=(run_id,), daemon=True) for run_id in self.run_ids
        ]
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 30
        while not all(self.ws.gates.waiting_gates(r) for r in self.run_ids):
            assert time.monotonic() < deadline, "gates did not start waiting"
            time.sleep(0.01)

    def _execute(self, run_id: str) -> None:
        self.results[run_id] = self.ws.execute(run_id)

    def done(self) -> bool:
        return all(not t.is_alive() for t in self.threads)

    def close(self) -> None:
        for run_id, thread in zip(self.run_ids, self.threads, strict=True):
            if thread.is_alive():
                self.ws.cancel(run_id)
                thread.join(timeout=30)
        self.store.close()


@pytest.fixture
def elsewhere(folder: Path, tmp_path: Path) -> Iterator[Elsewhere]:
    runs = Elsewhere(folder, tmp_path / "runs.db", 3)
    yield runs
    runs.close()


def inbox_rows(app) -> list[list[str]]:  # type: ignore[no-untyped-def]
    table = app.screen.query_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def open_inbox(pilot, app, gates: int, timeout: float = 15.0) -> GateInboxScreen:  # type: ignore[no-untyped-def]
    """`i`: the gate inbox, once it lists `gates` waiting gates."""
    await pilot.press("i")
    await wait_for(pilot, lambda: isinstance(app.screen, GateInboxScreen), what="the inbox")
    screen = app.screen
    assert isinstance(screen, GateInboxScreen)
    await wait_for(pilot, lambda: len(screen.gates) == gates, timeout=timeout, what=f"{gates} waiting gates")
    return screen


async def test_mark_two_of_three_waiting_gates_and_approve_them_with_one_note(
    folder: Path, tmp_path: Path, elsewhere: Elsewhere
) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    host = Workspace([folder], store)
    app = make_app(host=host, store=store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_inbox(pilot, app, 3)
            rows = inbox_rows(app)
            assert [r[0] for r in rows] == ["[ ]"] * 3
            assert all(r[1:3] == ["approval", "human_approval"] for r in rows)
            assert all(r[4].startswith("59m") for r in rows)  # 1h timeout counting down
            assert all(r[6] == "Release it?" for r in rows)
            assert sorted(g.run_id for g in screen.gates) == sorted(elsewhere.run_ids)
            waits = [g.since or "" for g in screen.gates]
            assert waits == sorted(waits)  # oldest first
            first, second, third = (g.run_id for g in screen.gates)
            await pilot.press("space", "space")  # marks the first, then the next
            await pilot.pause()
            assert [r[0] for r in inbox_rows(app)] == ["[x]", "[x]", "[ ]"]
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
            dialog = app.screen
            assert "Approve 2 gates" in str(dialog.query_one("#title").render())
            dialog.query_one("#choices").toggle("now")  # type: ignore[attr-defined]
            dialog.query_one("#note", Input).value = "both fine"
            await pilot.press("ctrl+y")
            await wait_for(
                pilot,
                lambda: first in elsewhere.results and second in elsewhere.results,
                timeout=30,
                what="the two approved runs to finish",
            )
            for run_id in (first, second):
                assert elsewhere.results[run_id].status is RunStatus.COMPLETED  # type: ignore[attr-defined]
                gate = next(s for s in store.get_steps(run_id) if s.step_name == "human_approval")
                assert (gate.gate_approved_by, gate.gate_feedback, gate.gate_selections) == (
                    "tester",
                    "both fine",
                    '["now"]',
                )
            assert third not in elsewhere.results  # not marked: still waiting
            await wait_for(pilot, lambda: [g.run_id for g in screen.gates] == [third], what="inbox re-read")
            assert screen.marked == set()
            # The decision shows in the tree of the run, opened from history.
            await pilot.press("escape")
            app.open_past_run(first)
            await wait_for(pilot, lambda: app.view.root_run_id == first, what="the past run")
            await pilot.pause()
            labels = [n.label.plain for n in app.main_screen.tree.nodes_by_uid.values()]  # type: ignore[union-attr]
            gate_label = next(label for label in labels if "human_approval" in label)
            assert "approved by tester · options: now · note: both fine" in gate_label
    finally:
        store.close()


async def test_reject_the_gate_under_the_cursor_when_nothing_is_marked(
    folder: Path, tmp_path: Path, elsewhere: Elsewhere
) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inbox(pilot, app, 3)
            await pilot.press("down")
            rejected = screen.gates[1].run_id
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
            assert "Reject 1 gate" in str(app.screen.query_one("#title").render())
            app.screen.query_one("#note", Input).value = "wrong branch"
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: rejected in elsewhere.results, timeout=30, what="the rejected run")
            result = elsewhere.results[rejected]
            assert result.status is RunStatus.FAILED  # type: ignore[attr-defined]
            assert "rejected by tester: wrong branch" in (result.error or "")  # type: ignore[attr-defined]
            await wait_for(pilot, lambda: len(screen.gates) == 2, what="inbox re-read")
    finally:
        store.close()


async def test_a_reason_typed_right_after_x_is_the_reason_given_and_ctrl_r_rejects(
    folder: Path, tmp_path: Path, elsewhere: Elsewhere
) -> None:
    """`i`, `x`, then typing: the text lands in the reason field (it was dropped on the Reject
    button), and the reject key is the gate dialog's `ctrl+r`; `ctrl+y` (approve) does not
    reject there."""
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_inbox(pilot, app, 3)
            rejected = screen.gates[0].run_id
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
            dialog = app.screen
            await pilot.press(*"not today")
            await pilot.pause()
            assert dialog.query_one("#note", Input).value == "not today"
            assert "Reject 1 gate (ctrl+r)" in str(dialog.query_one("#answer").render())
            await pilot.press("ctrl+y")  # the approve key: not this dialog's answer
            await pilot.pause()
            assert app.screen is dialog and rejected not in elsewhere.results
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: rejected in elsewhere.results, timeout=30, what="the rejected run")
            result = elsewhere.results[rejected]
            assert result.status is RunStatus.FAILED  # type: ignore[attr-defined]
            assert "rejected by tester: not today" in (result.error or "")  # type: ignore[attr-defined]
            gate = next(s for s in store.get_steps(rejected) if s.step_name == "human_approval")
            assert gate.gate_feedback == "not today"
    finally:
        store.close()


async def test_at_80_columns_a_long_prompt_is_cut_and_the_inbox_does_not_scroll_sideways(
    folder: Path, tmp_path: Path
) -> None:
    wf = folder / "approval.wf"
    long = "Release 2.4.0 to production now that the canary has held for an hour without errors?"
    wf.write_text(wf.read_text().replace('"Release it?"', f'"{long}"'))
    runs = Elsewhere(folder, tmp_path / "runs.db", 2)
    store = SqliteStore(tmp_path / "runs.db")
    app = make_app(store=store, clock=time.time)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_inbox(pilot, app, 2)
            await pilot.pause()
            table = app.screen.query_one(DataTable)
            assert table.max_scroll_x == 0, "the inbox scrolls sideways at 80 columns"
            prompt = inbox_rows(app)[0][-1]
            assert prompt.startswith("Release 2.") and prompt.endswith("…")  # `a` shows all of it
    finally:
        runs.close()
        store.close()


def _long_named_gates() -> InMemoryStore:
    """Two gates waiting in runs of a workflow and at a gate whose names are long."""
    store = InMemoryStore()
    for _ in range(2):
        run = store.create_run(NewRun(workflow_name="release-payments-service-to-production"))
        step = store.insert_step(
            NewStep(
                run.id,
                "security_sign_off_by_oncall",
                role="gate",
                position=1,
                node_path="body.1",
                gate_type="human_approval",
                gate_prompt="Ship it?",
                gate_timeout="3600",
            )
        )
        store.update_step(step, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        store.set_waiting_blocked_on(run.id, {"type": "human_approval", "gate_name": step})
    return store


async def test_at_80_columns_long_workflow_and_gate_names_stay_whole() -> None:
    """Long names pushed the columns after them off an 80-column screen, and the table scrolled
    sideways: the less useful columns go first now, so the names stay whole and in view."""
    app = make_app(store=_long_named_gates(), clock=time.time)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), what="the inbox")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert table.max_scroll_x == 0, "the inbox scrolls sideways at 80 columns"
        headers = [str(c.label) for c in table.columns.values()]
        assert headers == ["", "workflow", "gate"]
        row = inbox_rows(app)[0]
        assert "release-payments-service-to-production" in row
        assert "security_sign_off_by_oncall" in row
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
        title = str(app.screen.query_one("#title").render())
        assert "Reject 1 gate — fails its run" in title and "their runs" not in title
        await pilot.press("escape")
        await pilot.press("A", "x")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
        assert "Reject 2 gates — fails their runs" in str(app.screen.query_one("#title").render())


async def test_approving_a_gate_of_an_interrupted_run_says_it_waits_for_a_resume() -> None:
    """No engine holds these runs (their process died): "1 gate approved" alone read as "the run
    goes on", where nothing wakes until the run is resumed."""
    store = _long_named_gates()
    app = make_app(store=store, clock=time.time)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), what="the inbox")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
        await pilot.press("ctrl+y")
        said = lambda: [n.message for n in app._notifications]  # noqa: E731
        await wait_for(pilot, lambda: any("interrupted" in m for m in said()), what="the warning")
        (warning,) = [m for m in said() if "interrupted" in m]
        assert warning.startswith("run …") and warning.endswith(
            "is interrupted (no engine holds it): the decision takes effect on a resume "
            "(h lists the runs, r resumes)"
        )
        assert "1 gate approved" in said()


async def test_a_prompt_in_the_inbox_never_sends_its_escape_sequences_to_the_terminal() -> None:
    """The inbox's prompt column and its note dialog drew a prompt raw: a window-title sequence in
    it (an input, an agent's context) retitled the terminal."""
    store = InMemoryStore()
    run = store.create_run(NewRun(workflow_name="ship"))
    step = store.insert_step(
        NewStep(
            run.id,
            "human_approval",
            role="gate",
            position=1,
            node_path="body.1",
            gate_type="human_approval",
            gate_prompt="v1\x1b[31mRED\x1b]0;pwned\x07 ship?",
            gate_timeout="3600",
        )
    )
    store.update_step(step, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
    store.set_waiting_blocked_on(run.id, {"type": "human_approval", "gate_name": step})
    app = make_app(store=store, clock=time.time)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), what="the inbox")
        (row,) = inbox_rows(app)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
        listed = "".join(str(w.render()) for w in app.screen.query("Static, Label"))
        for shown in (row[-1], listed):
            assert "v1RED" in shown and "\x1b" not in shown and "\x07" not in shown, repr(shown)


async def test_gates_of_a_fan_out_s_children_name_their_items(folder: Path, tmp_path: Path) -> None:
    """Children of one foreach waiting at the same gate look alike but for their item: the inbox
    has an item column while such a gate waits, and the note dialog names the item too."""
    (folder / "fanned.wf").write_text(
        'workflow fanned {\n  foreach each {\n    over = static\n    scope = { items = "rec-01,rec-02" }\n'
        "    max_parallel = 2\n    workflow = approval\n  }\n}\n",
        encoding="utf-8",
    )
    runner = SqliteStore(tmp_path / "runs.db")
    ws = Workspace([folder], runner)
    run_id = ws.create_run("fanned", {})
    thread = threading.Thread(target=ws.execute, args=(run_id,), daemon=True)
    thread.start()
    store = SqliteStore(tmp_path / "runs.db")
    app = make_app(host=Workspace([folder], store), store=store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_inbox(pilot, app, 2, timeout=30)
            await pilot.pause()
            table = screen.query_one(DataTable)
            headers = [str(c.label) for c in table.columns.values()]
            assert headers[:4] == ["", "workflow", "item", "gate"]
            assert sorted(r[1:4] for r in map(tuple, inbox_rows(app))) == [
                ("approval", "rec-01", "human_approval"),
                ("approval", "rec-02", "human_approval"),
            ]
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
            listed = str(app.screen.query_one("#gates").render())
            assert any(f"approval [rec-0{n}] · human_approval" in listed for n in (1, 2))
            await pilot.press("escape")
    finally:
        ws.cancel(run_id)
        thread.join(timeout=30)
        runner.close()
        store.close()


def _gate_toasts(app) -> list[str]:  # type: ignore[no-untyped-def]
    """The "Gate" toasts on the screen on top, and those held for a dialog to close."""
    from textual.widgets._toast import Toast

    drawn = [t._notification.title for t in app.screen.query(Toast)]
    held = [t.title for t in app.toasts.held]
    return [title for title in drawn + held if title == "Gate"]


async def test_a_gate_approved_in_the_inbox_is_never_announced_again() -> None:
    """Its "Gate" toast, held while the note dialog was up, came back when the dialog closed —
    the run on screen still showed the gate waiting until its engine told the answer — and a
    late `GateWaiting` for it (a stale read) raised the toast again."""
    store = InMemoryStore()
    run_id = store.create_run(NewRun(workflow_name="review-pr", run_id=scenarios.ROOT)).id
    step = store.insert_step(
        NewStep(run_id, "human_approval", role="gate", gate_type="human_approval", node_path="body.4")
    )
    store.update_step(step, StepUpdate(generation=0, status=StepStatus.WAITING))
    store.set_waiting_blocked_on(run_id, {"type": "human_approval", "gate_name": "human_approval"})
    events = [
        data.model_copy(update={"event": data.event.model_copy(update={"step_id": step})})
        if isinstance(data.event, StepStarted | GateWaiting) and data.event.node_path == "body.4"
        else data
        for data in scenarios.gate_waiting().events
    ]
    app = make_app(store=store)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause()
        feed(app, events)  # the run on screen waits at the gate; no engine will say it was answered
        await wait_for(pilot, lambda: _gate_toasts(app), what="the Gate toast")
        await open_inbox(pilot, app, 1)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="the note dialog")
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: isinstance(app.screen, GateInboxScreen), what="the inbox")
        await wait_for(pilot, lambda: store.get_step(step).gate_approved_by == "tester", what="the answer")  # type: ignore[union-attr]
        assert _gate_toasts(app) == []
        await pilot.press("escape")
        await pilot.pause()
        assert app.view.waiting_gates(), "the view still shows the gate waiting (a stale read)"
        assert _gate_toasts(app) == []
        resolved = scenarios.Script().emit(
            GateResolved(gate_name="human_approval", approved=True, step_id=step)
        )
        feed(app, [resolved])  # its engine tells the answer
        feed(app, [events[-1]])  # then a stale read of the run brings the gate back for a moment
        await pilot.pause()
        assert app.view.waiting_gates()
        assert _gate_toasts(app) == []
