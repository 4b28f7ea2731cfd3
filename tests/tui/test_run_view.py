"""RunView, the pure reducer behind every pane, fed from recorded JSON-lines event logs."""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from runkon_flow.cancellation import CancellationReason
from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    EngineLog,
    FanOutItemCompleted,
    FanOutItemInfo,
    FanOutItemsCollected,
    FanOutItemStarted,
    RunCancelled,
    RunCompleted,
    RunResumed,
    RunStarted,
    StepCompleted,
    StepOutput,
    StepStarted,
)

from runkon_tui.bridge import SETTLED_KEPT, EventBridge
from runkon_tui.run_view import RunView, ViewLimits
from tests.threads import together_beside
from tests.tui.scenarios import EVENTS, ROOT, T0, Script, foreach_mid_run
from tests.tui.scenarios import failed_run as scenarios_failed_run

FROZEN = T0 + 120.0


def replay(name: str, now: float = FROZEN) -> RunView:
    return RunView.from_jsonl(EVENTS / name, clock=lambda: now)


def test_foreach_mid_run_counts_every_item_state() -> None:
    view = replay("foreach_mid_run.jsonl")
    assert view.root_run_id == ROOT
    assert view.status == "running"
    fan = view.active_fanout()
    assert fan is not None and fan.name == "review-items"
    assert fan.total == 120
    assert (fan.count("completed"), fan.count("failed"), fan.count("skipped")) == (33, 2, 2)
    assert (fan.count("running"), fan.count("pending")) == (4, 79)
    assert fan.done == 37
    assert fan.status_of(fan.index["file-010"]) == "failed"
    assert fan.errors[fan.index["file-010"]] == "review-file failed"


def test_eta_extrapolates_from_the_rate_so_far() -> None:
    view = replay("foreach_mid_run.jsonl")
    fan = view.active_fanout()
    assert fan is not None and fan.first_start is not None
    now = fan.first_start + 37.0  # 37 items done in 37 s → 1 item/s, 83 left
    assert round(fan.eta(now) or 0) == 83
    assert fan.elapsed(fan.index["file-040"], fan.started[fan.index["file-040"]] + 5) == 5


def test_an_item_links_to_its_child_run_and_output() -> None:
    view = replay("foreach_mid_run.jsonl")
    fan = view.active_fanout()
    assert fan is not None
    child = view.run(fan.child_runs[fan.index["file-027"]])
    assert child is not None
    assert child.workflow_name == "review-one"
    assert child.item_id == "file-027"
    assert child.status == "failed"
    step = child.steps["body.0"]
    assert step.status == "failed"
    assert step.last_output(5) == ["reviewing file-027", "agent gave up"]


def test_root_steps_keyed_by_node_path_with_durations() -> None:
    view = replay("foreach_mid_run.jsonl")
    root = view.root
    assert root is not None
    assert root.steps["body.0"].status == "completed"
    assert root.steps["body.0"].elapsed(FROZEN) == 0.4
    assert root.steps["body.2.calls.1"].status == "failed"
    assert root.steps["body.2.calls.1"].error == "agent exited with code 2"
    assert root.steps["body.3"].status == "running"
    assert view.step_counts()["completed"] == 4


def test_errors_log_collects_failures_from_the_run_and_its_children() -> None:
    view = replay("foreach_mid_run.jsonl")
    errors = [line.text for line in view.error_log]
    assert any("review-style failed: agent exited with code 2" in t for t in errors)
    assert any(t.startswith("[file-010] ✗ review-file failed") for t in errors)
    assert any("env key PATH skipped" in t for t in errors)
    engine = [line.text for line in view.engine_log]
    assert engine[0] == "run started: review-pr"
    assert "foreach review-items: 120 items" in engine


def test_waiting_gate_is_exposed_with_prompt_and_options_then_cleared_on_approval() -> None:
    view = replay("gate_waiting.jsonl")
    assert view.status == "waiting"
    (gate,) = view.waiting_gates()
    assert gate.prompt == "Merge PR 42?"
    assert gate.options == {"merge": "Merge now", "hold": "Hold for a day"}
    assert view.root is not None and view.root.steps["body.4"].status == "waiting"

    done = replay("gate_approved.jsonl")
    assert done.waiting_gates() == []
    assert done.status == "completed"
    assert done.root is not None and done.root.steps["body.4"].status == "completed"
    assert any("approved by ana: ship it" in line.text for line in done.engine_log)


def test_failed_run_summary_names_failed_steps_with_their_last_output() -> None:
    view = replay("failed_run.jsonl")
    assert view.status == "failed"
    text = view.summary_text(output_lines=2)
    lines = text.splitlines()
    assert lines[0].startswith("runkon: nightly · run 01HZZNIGHTLY00000000000000 · failed · ")
    assert "error: step 'workflow:review-one' failed" in lines
    # the `call workflow` step says why its child failed (`records.called_why`), not only that it did
    assert "  ✗ workflow review-one: agent 'review-file' exited with code 1" in lines
    assert "  ✗ [review-one] review-file: agent 'review-file' exited with code 1" in lines
    assert "      | Traceback: boom" in lines and "      | exit 1" in lines
    assert "      | reading README.md" not in lines  # only the last 2 lines were asked for


def test_loop_iterations_and_child_workflow_links() -> None:
    view = replay("failed_run.jsonl")
    root = view.root
    assert root is not None
    assert root.loops["body.0"] == 1
    assert root.steps["body.0.body.0"].iteration == 1
    assert root.steps["body.0.body.0"].starts == 2
    child = view.child_run_for_step(root.run_id, root.steps["body.1.body.0"].step_id)
    assert child is not None and child.workflow_name == "review-one"


def test_cancelling_a_run_leaves_nothing_running() -> None:
    view = replay("cancelled_foreach.jsonl")
    assert view.status == "cancelled"
    fan = view.active_fanout()
    assert fan is not None
    assert fan.count("running") == 0
    assert fan.count("cancelled") == 3
    assert fan.count("completed") == 5
    assert fan.count("pending") == 12
    assert view.root is not None and view.root.steps["body.3"].status == "cancelled"
    assert "■ run cancelled (stop)" in view.engine_log.lines[-1].text
    assert "cancelled: stop" in view.summary_text().splitlines()


def test_a_cancelled_run_resumed_to_completion_no_longer_reports_its_cancel() -> None:
    s = Script()
    s.emit(RunStarted(workflow_name="review-pr"))
    s.emit(RunCancelled(reason=CancellationReason.user("cancelled from the dashboard")))
    s.emit(RunResumed(workflow_name="review-pr", skipped_steps=1))
    s.emit(RunCompleted(succeeded=True))
    view = RunView(clock=lambda: FROZEN)
    view.apply_all(s.events)
    assert view.status == "completed"
    summary = view.summary_text()
    assert "completed" in summary.splitlines()[0]
    assert not any(line.startswith("cancelled:") for line in summary.splitlines())


def test_a_resume_leaves_the_replaced_attempt_s_errors_in_the_log_but_not_open() -> None:
    """The errors log counts the current attempt's lines (`since_mark`); the ones a resume
    replaced stay in front (`replaced`, fewer once the ring drops them) under a line saying so."""
    limits = ViewLimits(error_log=4)
    view = RunView(clock=lambda: FROZEN, limits=limits)
    s = Script()
    s.emit(RunStarted(workflow_name="p"))
    s.emit(RunCompleted(succeeded=False, error="first"))
    s.emit(RunResumed(workflow_name="p", skipped_steps=0))
    view.apply_all(s.events)
    errors = view.error_log
    assert (len(errors), errors.since_mark, errors.replaced) == (2, 0, 2)
    assert errors.lines[-1].text == "▲ above: attempt 1's errors (attempt 2 replaced it)"
    s.events.clear()
    s.emit(RunCompleted(succeeded=False, error="second"))
    s.emit(RunResumed(workflow_name="p", skipped_steps=0))
    s.emit(RunCompleted(succeeded=False, error="third"))
    view.apply_all(s.events)
    assert errors.since_mark == 1 and "third" in errors.lines[-1].text
    assert errors.replaced == 3 and errors.lines[-2].text.startswith("▲ above: attempt 2's errors")
    view.begin("other", "p")  # another run on screen: nothing of it was replaced
    assert (errors.since_mark, errors.replaced) == (0, 0)


def test_unknown_event_types_and_blank_lines_are_ignored() -> None:
    lines = (EVENTS / "gate_waiting.jsonl").read_text().splitlines()
    future = '{"timestamp": 1, "ts": 1.0, "run_id": "x", "event": {"type": "SomethingNew", "a": 1}}'
    view = RunView.from_jsonl([lines[0], "", future, *lines[1:]], clock=lambda: FROZEN)
    assert view.status == "waiting"


def test_mark_cancelling_and_crash_show_in_status() -> None:
    view = replay("gate_waiting.jsonl")
    view.mark_cancelling()
    assert view.status == "cancelling"
    view.mark_crashed("RuntimeError: boom")
    assert view.status == "failed"
    assert view.crash == "RuntimeError: boom"
    assert "engine crashed: RuntimeError: boom" in view.summary_text()
    assert view.waiting_gates() == []


def test_memory_stays_bounded_under_a_flood() -> None:
    limits = ViewLimits(
        engine_log=100, error_log=50, step_output=30, child_output=5, child_runs=10, failed_child_runs=20
    )
    view = RunView(clock=lambda: FROZEN, limits=limits)
    s = Script()
    s.emit(RunStarted(workflow_name="review-pr"))
    sid = s.start("body.0", "resolve-base", "script")
    for i in range(1000):
        s.emit(StepOutput(step_id=sid, step_name="resolve-base", line=f"line {i}"), dt=0.0)
    view.apply_all(s.events)
    step = view.root.steps["body.0"]  # type: ignore[union-attr]
    assert len(step.output or ()) == 30 and step.output_total == 1000
    assert step.last_output(1) == ["line 999"]
    for i in range(200):
        child = f"child-{i}"
        view.apply(
            EngineEventData(
                timestamp=1,
                ts=1.0,
                run_id=child,
                event=ChildRunStarted(
                    child_run_id=child,
                    workflow_name="c",
                    parent_run_id=ROOT,
                    parent_step_id=sid,
                    item_id=f"i{i}",
                ),
            )
        )
        done = RunCompleted(succeeded=i % 2 == 0)
        view.apply(EngineEventData(timestamp=1, ts=1.0, run_id=child, event=done))
    # The root and the 20 latest failed children are folded; the 10 latest good ones are held
    # unfolded until someone looks; older ones are dropped (the store still has them).
    assert len(view.runs) == 1 + 20
    assert "child-199" in view.runs and "child-0" not in view.runs and "child-198" not in view.runs
    good = view.run("child-198")
    assert good is not None and good.status == "completed" and good.item_id == "i198"
    assert view.run("child-100") is None
    assert len(view.error_log) == 50 and view.error_log.total == 100  # one line per failed child
    assert view.error_log.dropped == 50


def test_changes_say_what_a_batch_touched() -> None:
    view = RunView(clock=lambda: FROZEN)
    s = Script()
    s.emit(RunStarted(workflow_name="review-pr"))
    sid = s.start("body.3", "foreach:review-items", "foreach")
    view.apply_all(s.events)
    first = view.take_changes()
    assert first.header and (ROOT, "body.3") in first.steps
    assert not view.take_changes()  # nothing new since

    more = Script(t0=s.t)
    more.emit(
        FanOutItemsCollected(
            count=2,
            step_id=sid,
            node_path="body.3",
            items=[FanOutItemInfo(item_id="a"), FanOutItemInfo(item_id="b")],
        )
    )
    more.emit(FanOutItemStarted(item_id="a", step_id=sid))
    more.emit(FanOutItemCompleted(item_id="a", step_id=sid, succeeded=True))
    view.apply_all(more.events)
    changes = view.take_changes()
    assert (ROOT, "body.3") in changes.fanouts
    assert not changes.output and not changes.gates


def test_items_collected_on_resume_keep_finished_items_finished() -> None:
    view = replay("cancelled_foreach.jsonl")
    fan = view.active_fanout()
    assert fan is not None
    s = Script(t0=T0 + 500)
    s.emit(RunStarted(workflow_name="review-pr"))  # the resume's own start (or RunResumed)
    sid2 = s.start("body.3", "foreach:review-items", "foreach")
    infos = [
        FanOutItemInfo(item_id=i, status="completed" if n < 5 else "pending") for n, i in enumerate(fan.ids)
    ]
    s.emit(FanOutItemsCollected(count=20, step_id=sid2, node_path="body.3", items=infos))
    view.apply_all(s.events)
    assert fan.count("completed") == 5 and fan.count("pending") == 15 and fan.count("cancelled") == 0
    s2 = Script(t0=s.t)
    s2.emit(FanOutItemStarted(item_id="file-007", step_id=sid2))
    view.apply_all(s2.events)
    assert fan.status_of(fan.index["file-007"]) == "running"


def test_ordered_items_report_what_they_wait_on() -> None:
    view = RunView(clock=lambda: FROZEN)
    s = Script()
    s.emit(RunStarted(workflow_name="review-pr"))
    sid = s.start("body.3", "foreach:review-items", "foreach")
    s.emit(
        FanOutItemsCollected(
            count=3,
            step_id=sid,
            node_path="body.3",
            items=[
                FanOutItemInfo(item_id="a"),
                FanOutItemInfo(item_id="b", depends_on=["a"]),
                FanOutItemInfo(item_id="c", depends_on=["a", "b"]),
            ],
        )
    )
    s.emit(FanOutItemStarted(item_id="a", step_id=sid))
    view.apply_all(s.events)
    fan = view.active_fanout()
    assert fan is not None
    assert fan.waits_on(fan.index["c"]) == [("a", "running"), ("b", "pending")]
    view.apply(
        EngineEventData(
            timestamp=1,
            ts=s.t + 1,
            run_id=ROOT,
            event=FanOutItemCompleted(item_id="a", step_id=sid, succeeded=True),
        )
    )
    assert fan.waits_on(fan.index["c"]) == [("b", "pending")]
    assert fan.waits_on(fan.index["a"]) == []


def test_events_without_node_paths_still_land_on_a_step() -> None:
    view = RunView(clock=lambda: FROZEN)
    s = Script()
    s.emit(RunStarted(workflow_name="w"))
    s.emit(StepStarted(step_name="alpha"))
    view.apply_all(s.events)
    assert view.root is not None and view.root.steps["name:alpha"].status == "running"


def test_bridge_queues_from_many_threads_and_nudges_only_for_urgent_events() -> None:
    nudged: list[str] = []
    bridge = EventBridge(on_urgent=lambda d: nudged.append(d.event.type))
    bridge.watch(ROOT)
    # Without the children's announcements nothing is held back (holding: the tests below).
    events = [e for e in foreach_mid_run().events if not isinstance(e.event, ChildRunStarted)]

    def pump(chunk: list[EngineEventData]) -> None:
        for e in chunk:
            bridge.emit(e)

    threads = [threading.Thread(target=pump, args=(events[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drained = bridge.drain(limit=10) + bridge.drain()
    assert len(drained) == len(events) and len(bridge) == 0
    assert nudged == []  # child runs ending are not urgent; the watched run has not ended

    bridge.emit(EngineEventData.now("child-x", RunCompleted(succeeded=True)))
    bridge.emit(EngineEventData.now(ROOT, RunCompleted(succeeded=True)))
    assert nudged == ["RunCompleted"]


def _one_item(bridge: EventBridge, s: Script, child: str, *, ok: bool, end: bool = True) -> None:
    """A fan-out item whose child run has one step with output, through `bridge`, as the engine
    sends it: the child's announcement, the item's start, the child's events, the item's end."""
    start = len(s.events)
    s.emit(
        ChildRunStarted(
            child_run_id=child, workflow_name="c", parent_run_id=ROOT, parent_step_id="fan", item_id=child
        )
    )
    s.emit(FanOutItemStarted(item_id=child, step_id="fan"))
    s.emit(RunStarted(workflow_name="c"), child)
    s.emit(StepStarted(step_id=f"{child}-s", step_name="work", node_path="body.0"), child)
    s.emit(StepOutput(step_id=f"{child}-s", step_name="work", line=f"working on {child}"), child)
    if end:
        _end_item(bridge, s, child, ok=ok, start=start)
        return
    for data in s.events[start:]:
        bridge.emit(data)


def _end_item(bridge: EventBridge, s: Script, child: str, *, ok: bool, start: int | None = None) -> None:
    first = len(s.events) if start is None else start
    s.emit(StepCompleted(step_id=f"{child}-s", step_name="work", node_path="body.0", succeeded=ok), child)
    s.emit(RunCompleted(succeeded=ok, error=None if ok else "work failed"), child)
    status = "completed" if ok else "failed"
    s.emit(FanOutItemCompleted(item_id=child, step_id="fan", succeeded=ok, child_run_id=child, status=status))
    for data in s.events[first:]:
        bridge.emit(data)


def _fan_out_view(bridge: EventBridge | None, s: Script) -> RunView:
    """A view of a run with a fan-out whose items the tests send, fed by `bridge` if given."""
    s.emit(RunStarted(workflow_name="p"))
    s.emit(StepStarted(step_name="foreach:items", kind="foreach", step_id="fan", node_path="body.0"))
    s.emit(FanOutItemsCollected(count=0, step_id="fan", node_path="body.0"))
    view = RunView.from_events(s.events, clock=lambda: FROZEN)
    if bridge is not None:
        view.upstream = bridge.release
    return view


def _kinds(queued: list) -> list[str]:
    return [d[0] if isinstance(d, tuple) else d.event.type for d in queued]


def test_a_fan_out_child_that_ends_well_reaches_the_ui_only_as_its_items_events() -> None:
    bridge, s = EventBridge(), Script()
    view = _fan_out_view(bridge, s)
    _one_item(bridge, s, "kid-1", ok=True)
    queued = bridge.drain()
    assert _kinds(queued) == ["ChildRunStarted", "FanOutItemStarted", "FanOutItemCompleted"]
    view.apply_all(queued)
    fan = view.active_fanout()
    assert fan is not None and fan.count("completed") == 1
    assert "kid-1" not in view.runs  # nothing of the child folded until someone looks
    child = view.run("kid-1")  # selected: one of the last settled children, the bridge has it
    assert child is not None and child.status == "completed"
    assert child.steps["body.0"].last_output(1) == ["working on kid-1"]


def test_a_child_taken_twice_while_its_end_is_recorded_is_given_once() -> None:
    """The UI asks for a child (selected, then selected again) exactly while its engine thread
    records the child's successful end: the first ask gets every event, the second nothing — not
    the same events again with the bridge's own bookkeeping in them."""
    bridge, s = EventBridge(), Script()
    _one_item(bridge, s, "kid-1", ok=True, end=False)
    asks: list[list] = []

    class UiAsksMidway(dict):
        """The held children, where the engine's un-holding of kid-1 lets the UI in first."""

        def pop(self, key, *default):  # type: ignore[no-untyped-def]
            if key == "kid-1" and not asks:
                asks.append([])  # (re-entered by the first ask's own pop)
                asks[0] = bridge.release("kid-1")
                asks.append(bridge.release("kid-1"))
            return super().pop(key, *default)

    bridge._held = UiAsksMidway(bridge._held)
    _end_item(bridge, s, "kid-1", ok=True)
    first, second = asks
    assert [d.event.type for d in first] == [
        "RunStarted",
        "StepStarted",
        "StepOutput",
        "StepCompleted",
        "RunCompleted",
    ]
    assert second == []
    assert _kinds(bridge.drain()) == ["ChildRunStarted", "FanOutItemStarted", "FanOutItemCompleted"]
    assert bridge.release("kid-1") == []


def test_an_older_settled_child_is_left_to_the_store() -> None:
    bridge, s = EventBridge(), Script()
    view = _fan_out_view(bridge, s)
    for n in range(SETTLED_KEPT + 1):
        _one_item(bridge, s, f"kid-{n}", ok=True)
    view.apply_all(bridge.drain())
    assert view.run("kid-0") is None  # the dashboard then reads it from the store
    newest = view.run(f"kid-{SETTLED_KEPT}")
    assert newest is not None and newest.status == "completed"


@pytest.mark.parametrize("fed", ["live", "stored"])
def test_a_failing_fan_out_child_sends_what_was_held_first_and_folds_like_the_originals(
    fed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `stored`: a followed run's events, held undecoded, are sent decoded and in order.
    bridge, s = EventBridge(), Script()
    view = _fan_out_view(bridge, s)
    head = len(s.events)
    _one_item(bridge if fed == "live" else StoredFeed(bridge, monkeypatch), s, "kid-2", ok=False)  # type: ignore[arg-type]
    queued = bridge.drain()
    assert _kinds(queued) == [d.event.type for d in s.events[head:]]  # nothing held back, in order
    view.apply_all(queued)
    direct = RunView.from_events(s.events, clock=lambda: FROZEN)
    child, expected = view.run("kid-2"), direct.run("kid-2")
    assert child is not None and expected is not None
    assert child.status == expected.status == "failed"
    assert child.steps["body.0"].last_output(1) == ["working on kid-2"]
    assert view.active_fanout().causes == direct.active_fanout().causes  # type: ignore[union-attr]


class StoredFeed:
    """Hands a bridge each event as the dashboard's follower does: as its stored row (written by
    the real writer's serializer), counting the rows the bridge decodes."""

    def __init__(self, bridge: EventBridge, monkeypatch: Any) -> None:
        from runkon_flow.event_log import envelope_of

        import runkon_tui.bridge as bridge_module

        self.bridge = bridge
        self.decoded: list[str] = []

        def counting(row: Any) -> Any:
            self.decoded.append(row.kind)
            return envelope_of(row)

        monkeypatch.setattr(bridge_module, "envelope_of", counting)

    def emit(self, data: EngineEventData) -> None:
        from runkon_flow.event_log import _payload
        from runkon_flow.persistence.models import StoredEvent

        row = StoredEvent(ROOT, 1, data.ts, data.run_id, data.event.type, _payload(data.event))
        self.bridge.emit_stored(row)


def test_a_followed_child_that_ends_well_is_decoded_only_when_looked_at(monkeypatch: Any) -> None:
    bridge, s = EventBridge(), Script()
    view = _fan_out_view(bridge, s)
    feed = StoredFeed(bridge, monkeypatch)
    _one_item(feed, s, "kid-1", ok=True)  # type: ignore[arg-type]
    queued = bridge.drain()
    assert _kinds(queued) == ["ChildRunStarted", "FanOutItemStarted", "FanOutItemCompleted"]
    assert feed.decoded == ["ChildRunStarted", "FanOutItemStarted", "FanOutItemCompleted"]
    view.apply_all(queued)
    child = view.run("kid-1")  # selected: decoded now, and drawn as the live one is
    assert child is not None and child.status == "completed"
    assert child.steps["body.0"].last_output(1) == ["working on kid-1"]
    assert feed.decoded[3:] == ["RunStarted", "StepStarted", "StepOutput", "StepCompleted", "RunCompleted"]


@pytest.mark.parametrize("fed", ["live", "stored"])
def test_a_child_s_note_keeps_it_folded_and_its_warning_unfolds_it(fed: str, monkeypatch: Any) -> None:
    """An `info` note of a fan-out child (a foreach's script child notes its `item.*` inputs) is
    held with its quiet events — undecoded when followed — and folded when the child is looked at,
    where the engine's own fold shows it; a warning is someone's business now: the child unfolds."""
    bridge, s = EventBridge(), Script()
    view = _fan_out_view(bridge, s)
    feed = StoredFeed(bridge, monkeypatch) if fed == "stored" else bridge
    for child, level in (("kid-n", "info"), ("kid-w", "warning")):
        _one_item(feed, s, child, ok=True, end=False)  # type: ignore[arg-type]
        note = len(s.events)
        s.emit(EngineLog(level=level, message=f"{level} about {child}", step_name="work"), child)  # type: ignore[arg-type]
        _end_item(feed, s, child, ok=True, start=note)  # type: ignore[arg-type]
    items = ["ChildRunStarted", "FanOutItemStarted", "FanOutItemCompleted"]
    queued = bridge.drain()
    assert _kinds(queued)[:3] == items  # the noted child: only its item's events
    assert _kinds(queued)[3:] == [d.event.type for d in s.events[-9:]]  # the warned one: everything
    if fed == "stored":
        assert feed.decoded[:3] == items  # type: ignore[union-attr]
    view.apply_all(queued)
    assert "kid-n" not in view.runs and "kid-w" in view.runs
    assert [line.text for line in view.error_log] == ["[kid-w] work: warning about kid-w"]
    child = view.run("kid-n")  # selected: its held events, the note among them, folded now
    assert child is not None and child.status == "completed"
    if fed == "stored":
        assert "EngineLog" in feed.decoded[3:]  # type: ignore[union-attr]
    direct = RunView.from_events(s.events, clock=lambda: FROZEN)  # the engine's fold: the same rule
    assert "kid-n" not in direct.runs and "kid-w" in direct.runs
    direct.run("kid-n")
    assert [line.text for line in view.engine_log] == [line.text for line in direct.engine_log]
    assert [line.text for line in view.error_log] == [line.text for line in direct.error_log]


def test_a_failed_item_s_log_line_says_why_it_failed_not_only_which_step() -> None:
    s = Script()
    view = _fan_out_view(None, s)
    _one_item(EventBridge(), s, "kid-3", ok=False, end=False)
    cause = "Script 'work' exited with code 3\nwarming up\nschema mismatch in rec-3.json line 9: expected int"
    s.emit(
        StepCompleted(step_id="kid-3-s", step_name="work", node_path="body.0", succeeded=False, error=cause),
        "kid-3",
    )
    which_step = "workflow error: Step 'work' failed after 1 attempts"
    s.emit(RunCompleted(succeeded=False, error=which_step), "kid-3")
    s.emit(FanOutItemCompleted(item_id="kid-3", step_id="fan", succeeded=False, child_run_id="kid-3"))
    view = RunView.from_events(s.events, clock=lambda: FROZEN)
    errors = [line.text for line in view.engine_log if "item kid-3" in line.text]
    assert errors == [  # why first: the pane cuts the line at its right edge
        "✗ body.0 item kid-3 failed: schema mismatch in rec-3.json line 9: expected int"
        " · Script 'work' exited with code 3"
    ]


def test_a_failed_run_says_why_in_the_log_not_only_which_step_failed() -> None:
    s = Script()
    s.emit(RunStarted(workflow_name="deploy"))
    error = "Script 'push' exited with code 3\nconnecting…\npermission denied (publickey)"
    s.step_run("body.0", "push", "script", ok=False, error=error)
    s.emit(RunCompleted(succeeded=False, error="workflow error: Step 'push' failed after 1 attempts"))
    view = RunView.from_events(s.events, clock=lambda: FROZEN)
    assert [line.text for line in view.engine_log][-1] == (
        "✗ run failed after 2.0s: Script 'push' exited with code 3 · permission denied (publickey)"
    )


def test_a_run_failed_in_a_fan_out_says_how_many_items_failed() -> None:
    s = Script()
    view = _fan_out_view(None, s)
    _one_item(EventBridge(), s, "kid-4", ok=False)
    s.emit(
        StepCompleted(
            step_name="foreach:items",
            kind="foreach",
            step_id="fan",
            node_path="body.0",
            succeeded=False,
            error="foreach 'items': 1 of 1 items failed",
        )
    )
    s.emit(RunCompleted(succeeded=False, error="workflow error: Step 'foreach:items' failed"))
    view = RunView.from_events(s.events, clock=lambda: FROZEN)
    assert [line.text for line in view.engine_log][-1].endswith(": foreach 'items': 1 of 1 items failed")


def test_a_run_failed_in_a_called_workflow_names_it_and_says_why() -> None:
    s = Script()
    s.emit(RunStarted(workflow_name="nightly"))
    sid = s.start("body.0", "workflow:lint", "call_workflow")
    s.emit(ChildRunStarted(child_run_id="kid", workflow_name="lint", parent_run_id=ROOT, parent_step_id=sid))
    s.emit(RunStarted(workflow_name="lint", parent_run_id=ROOT), "kid")
    s.step_run("body.0", "ruff", "script", ok=False, error="Script 'ruff' exited with code 1", run_id="kid")
    s.emit(RunCompleted(succeeded=False, error="workflow error: Step 'ruff' failed after 1 attempts"), "kid")
    s.finish("body.0", "workflow:lint", "call_workflow", ok=False, error="Sub-workflow 'lint' failed")
    s.emit(
        RunCompleted(succeeded=False, error="workflow error: Step 'workflow:lint' failed after 1 attempts")
    )
    view = RunView.from_events(s.events, clock=lambda: FROZEN)
    assert [line.text for line in view.engine_log][-1].endswith(": lint: Script 'ruff' exited with code 1")
    root = view.root
    assert root is not None and root.why_failed(view.runs) == "lint: Script 'ruff' exited with code 1"
    assert root.why_failed() == "Sub-workflow 'lint' failed"  # the child unknown: its step's words


def test_looking_at_a_running_child_hands_over_what_the_bridge_held_and_later_events_follow() -> None:
    bridge, s = EventBridge(), Script()
    view = _fan_out_view(bridge, s)
    _one_item(bridge, s, "kid-3", ok=True, end=False)
    view.apply_all(bridge.drain())
    child = view.run("kid-3")  # selected in the grid
    assert child is not None and child.steps["body.0"].status == "running"
    assert child.steps["body.0"].last_output(1) == ["working on kid-3"]
    bridge.emit(s.emit(StepOutput(step_id="kid-3-s", step_name="work", line="half way"), "kid-3"))
    _end_item(bridge, s, "kid-3", ok=True)
    view.apply_all(bridge.drain())
    child = view.run("kid-3")
    assert child is not None and child.status == "completed"
    assert child.steps["body.0"].last_output(2) == ["working on kid-3", "half way"]


def test_a_child_asked_for_while_it_settles_shows_its_end() -> None:
    bridge, s = EventBridge(), Script()
    view = _fan_out_view(bridge, s)
    _one_item(bridge, s, "kid-4", ok=True, end=False)
    view.apply_all(bridge.drain())
    _end_item(bridge, s, "kid-4", ok=True)  # between the UI's tick and its look
    child = view.run("kid-4")
    assert child is not None and child.status == "completed"
    view.apply_all(bridge.drain())
    child = view.run("kid-4")
    assert child is not None and child.status == "completed"
    assert child.steps["body.0"].last_output(1) == ["working on kid-4"]


def test_a_raising_nudge_never_reaches_the_engine() -> None:
    def boom(_: EngineEventData) -> None:
        raise RuntimeError("app is gone")

    bridge = EventBridge(on_urgent=boom)
    bridge.watch(ROOT)
    bridge.emit(EngineEventData.now(ROOT, RunCompleted(succeeded=True)))
    assert len(bridge) == 1


# ---------------------------------------------------------------- logs recorded from the real engine
# (tests/tui/fixtures/events/engine_*.jsonl: the e2e fixture workflows run through Workspace with a
# JsonLinesSink; re-record with the engine when its events change shape.)


def _engine_log(name: str) -> RunView:
    lines = (EVENTS / name).read_text().splitlines()
    last = max(float(json.loads(line)["ts"]) for line in lines)
    return RunView.from_jsonl(lines, clock=lambda: last + 1)


def test_engine_log_of_a_completed_run_with_a_foreach() -> None:
    view = _engine_log("engine_quick.jsonl")
    root = view.root
    assert root is not None and root.workflow_name == "quick" and root.inputs == {"who": "engine"}
    assert view.status == "completed"
    assert {p: s.status for p, s in root.steps.items()} == {
        "body.0": "completed",
        "body.1": "completed",
        "body.2": "completed",
    }
    assert root.steps["body.0"].last_output(1) == ["hello engine"]
    fan = view.active_fanout()
    assert fan is not None and fan.name == "items" and fan.ids == ["x", "y", "z"]
    assert fan.count("completed") == 3 and len(fan.child_runs) == 3
    children = [view.run(c) for c in fan.child_runs.values()]
    assert {c.item_id for c in children} == {"x", "y", "z"}
    assert all(c.status == "completed" and c.workflow_name == "quick-item" for c in children)
    assert view.error_log.total == 0


def test_engine_log_of_an_approved_gate() -> None:
    view = _engine_log("engine_approval.jsonl")
    assert view.status == "completed" and view.waiting_gates() == []
    gate = view.root.steps["body.1"]  # type: ignore[union-attr]
    assert gate.kind == "gate" and gate.status == "completed"
    assert any("gate human_approval approved by ana: ship it" in line.text for line in view.engine_log)

    lines = (EVENTS / "engine_approval.jsonl").read_text().splitlines()
    upto = next(i for i, line in enumerate(lines) if '"GateWaiting"' in line)
    waiting = RunView.from_jsonl(lines[: upto + 1])
    (gate_view,) = waiting.waiting_gates()
    assert gate_view.prompt == "Release it?" and gate_view.options == {
        "now": "Release now",
        "later": "Tomorrow",
    }
    assert waiting.status == "waiting"


def test_engine_log_of_a_cancelled_foreach() -> None:
    view = _engine_log("engine_fanout_cancelled.jsonl")
    assert view.status == "cancelled"
    fan = view.active_fanout()
    assert fan is not None and fan.total == 10
    assert fan.count("completed") >= 2 and fan.count("running") == 0
    assert fan.count("completed") + fan.count("cancelled") + fan.count("pending") == 10
    assert view.root.steps["body.1"].status == "cancelled"  # type: ignore[union-attr]
    assert "body.2" not in view.root.steps  # type: ignore[union-attr]
    assert "cancelled: enough" in view.summary_text().splitlines()
    assert "UserRequested" not in view.summary_text()


def test_events_queued_in_compact_form_fold_exactly_like_the_originals() -> None:
    import gc

    from runkon_tui.run_view import compact

    events = foreach_mid_run().events + scenarios_failed_run().events
    direct = RunView.from_events(events, clock=lambda: FROZEN)
    bridge = EventBridge()
    for data in events:
        bridge.emit(data)
    queued = bridge.drain()
    assert sum(1 for d in queued if isinstance(d, tuple)) > len(queued) // 2
    via_bridge = RunView(clock=lambda: FROZEN)
    via_bridge.apply_all(queued)
    assert via_bridge.summary_text() == direct.summary_text()
    assert [line.text for line in via_bridge.engine_log] == [line.text for line in direct.engine_log]
    assert [line.text for line in via_bridge.error_log] == [line.text for line in direct.error_log]
    fan, fan2 = direct.active_fanout(), via_bridge.active_fanout()
    assert fan is not None and fan2 is not None and bytes(fan.codes) == bytes(fan2.codes)
    done = next(e for e in events if e.event.type == "StepCompleted")
    kept = compact(done)
    gc.collect()
    assert isinstance(kept, tuple) and not gc.is_tracked(kept)  # invisible to the garbage collector


def test_fan_out_children_are_folded_only_when_needed() -> None:
    view = replay("foreach_mid_run.jsonl")
    fan = view.active_fanout()
    assert fan is not None
    ok_child = fan.child_runs[fan.index["file-003"]]
    running_child = fan.child_runs[fan.index["file-038"]]
    failed_child = fan.child_runs[fan.index["file-010"]]
    assert failed_child in view.runs  # a failure is folded at once (errors log, summary)
    assert ok_child not in view.runs and running_child not in view.runs  # held, not folded
    running = view.run(running_child)
    assert running is not None and running.status == "running"
    assert running.steps["body.0"].last_output(1) == ["reviewing file-038"]
    assert running_child in view.runs
    s = Script(t0=T0 + 100)
    s.emit(
        StepOutput(step_id=f"step-{running_child}-body.0-0", step_name="review-file", line="more"),
        running_child,
    )
    view.apply_all(s.events)
    assert running.steps["body.0"].last_output(1) == ["more"]  # now folded live
    assert (running_child, "body.0") in view.take_changes().output


def test_cancel_texts_read_as_plain_words_in_logs_errors_and_the_summary() -> None:
    engine_text = 'workflow cancelled: UserRequested(Some("interrupted (Ctrl-C)"))'
    s = Script()
    s.emit(RunStarted(workflow_name="nightly"))
    s.emit(
        FanOutItemsCollected(
            step_id="fan", foreach_name="files", count=1, items=[FanOutItemInfo(item_id="a")]
        )
    )
    s.emit(FanOutItemStarted(step_id="fan", item_id="a"))
    s.emit(
        FanOutItemCompleted(step_id="fan", item_id="a", succeeded=False, status="failed", error=engine_text)
    )
    s.step_run("body.1", "lint", "script", ok=False, error=engine_text)
    s.emit(RunCompleted(succeeded=False, error=engine_text))
    view = RunView.from_events(s.events, clock=lambda: FROZEN)
    texts = [line.text for line in view.engine_log] + view.summary_text().splitlines()
    assert not [t for t in texts if "UserRequested" in t]
    assert "✗ script lint failed: cancelled: interrupted (Ctrl-C)" in texts
    assert "✗ files item a failed: cancelled: interrupted (Ctrl-C)" in texts
    assert "error: cancelled: interrupted (Ctrl-C)" in texts
    assert view.root is not None and view.root.steps["body.1"].error == "cancelled: interrupted (Ctrl-C)"


def test_a_multi_line_step_error_is_indented_under_its_step_and_not_repeated_as_output() -> None:
    s = Script()
    s.emit(RunStarted(workflow_name="fail"))
    s.step_run("body.0", "first", "script")
    error = "Script 'boom' exited with code 3\nsome stderr"
    s.step_run(
        "body.1",
        "boom",
        "script",
        ok=False,
        error=error,
        output=["building", "building", "some stderr", *error.splitlines()],
    )
    s.emit(RunCompleted(succeeded=False, error="workflow error: Step 'boom' failed after 1 attempts"))
    lines = RunView.from_events(s.events, clock=lambda: FROZEN).summary_text().splitlines()
    at = lines.index("  ✗ script boom: Script 'boom' exited with code 3")
    assert lines[at + 1 :] == ["      some stderr", "      | building"]


def test_many_workers_and_a_ui_looking_at_children_lose_and_repeat_no_event() -> None:
    """Eight engine threads send 60 children each (one in seven fails) while the UI thread drains
    and asks for children at random, with threads switching as often as they can. What the UI
    gets of a child — from its looks and from the queue, in the order it got them — is the
    child's own sequence: every event once, in order; all of it for a child that failed or was
    looked at while it ran, and for the last settled ones a look afterwards still has them all."""
    workers, per_worker = 8, 60
    emitted: dict[str, list[tuple]] = {}  # child → (type, ts) in the order its thread sent them
    seen: dict[str, list[tuple]] = {}  # child → (type, ts) in the order the UI got them
    running: list[str] = []
    bridge = EventBridge()

    def key(data: object) -> tuple:
        if isinstance(data, tuple):
            return data[0], data[1]
        return data.event.type, data.ts  # type: ignore[attr-defined]

    def run_of(data: object) -> str:
        return data[2] if isinstance(data, tuple) else data.run_id  # type: ignore[attr-defined]

    def send(clock: Iterator[int], child: str, event: Any, run_id: str | None = None) -> None:
        data = EngineEventData(timestamp=0, ts=float(next(clock)), run_id=run_id or child, event=event)
        if run_id is None:
            emitted[child].append((event.type, data.ts))
        bridge.emit(data)

    def worker(w: int) -> None:
        clock = itertools.count(w * 1_000_000)
        for n in range(per_worker):
            child = f"kid-{w}-{n}"
            ok = n % 7 != 3
            emitted[child] = []
            announce = ChildRunStarted(
                child_run_id=child, workflow_name="c", parent_run_id=ROOT, item_id=child
            )
            send(clock, child, announce, ROOT)
            running.append(child)
            send(clock, child, RunStarted(workflow_name="c"))
            for step in range(2):
                send(clock, child, StepStarted(step_id=f"{child}-{step}", step_name="work"))
                for line in range(3):
                    output = StepOutput(step_id=f"{child}-{step}", step_name="work", line=str(line))
                    send(clock, child, output)
                ended = StepCompleted(step_id=f"{child}-{step}", step_name="work", succeeded=ok or step == 0)
                send(clock, child, ended)
            send(clock, child, RunCompleted(succeeded=ok))
            send(clock, child, FanOutItemCompleted(item_id=child, succeeded=ok, child_run_id=child), ROOT)

    def ui(done: threading.Event) -> None:
        chooser = random.Random(7)
        while True:
            finished = done.is_set()
            for data in bridge.drain():
                seen.setdefault(run_of(data), []).append(key(data))
            if finished:
                return
            for _ in range(20):  # mostly children that are running now (the last ones started)
                if running:
                    child = running[-1 - chooser.randrange(min(len(running), 12))]
                    seen.setdefault(child, []).extend(key(d) for d in bridge.release(child))

    together_beside(worker, workers, ui)

    whole = 0
    for child, sent in emitted.items():
        got = seen.get(child, [])
        # Nothing of it (an ok child nobody looked at, or one looked at after it left the
        # bridge), or all of it, in order, once.
        assert got in ([], sent), child
        whole += got == sent
        if int(child.rsplit("-", 1)[1]) % 7 == 3:
            assert got == sent, f"failed child {child} must reach the UI whole"
    failed = sum(int(c.rsplit("-", 1)[1]) % 7 == 3 for c in emitted)
    assert whole > failed  # and children looked at arrived whole too


def test_an_item_that_failed_then_completed_on_resume_is_not_among_the_failed_steps() -> None:
    s = Script()
    _fan_out_view(None, s)
    _one_item(EventBridge(), s, "kid-1", ok=False)  # item kid-1 fails in child run kid-1
    s.emit(RunResumed(workflow_name="p", skipped_steps=0))
    again = ChildRunStarted(
        child_run_id="kid-1b", workflow_name="c", parent_run_id=ROOT, parent_step_id="fan", item_id="kid-1"
    )
    s.emit(again)
    s.emit(FanOutItemStarted(item_id="kid-1", step_id="fan"))
    s.emit(RunStarted(workflow_name="c"), "kid-1b")
    s.emit(StepStarted(step_id="kid-1b-s", step_name="work", node_path="body.0"), "kid-1b")
    s.emit(StepCompleted(step_id="kid-1b-s", step_name="work", node_path="body.0", succeeded=True), "kid-1b")
    s.emit(RunCompleted(succeeded=True), "kid-1b")
    s.emit(FanOutItemCompleted(item_id="kid-1", step_id="fan", succeeded=True, child_run_id="kid-1b"))
    fan_done = StepCompleted(
        step_name="foreach:items", kind="foreach", step_id="fan", node_path="body.0", succeeded=True
    )
    s.emit(fan_done)
    s.emit(RunCompleted(succeeded=True))
    view = RunView.from_events(s.events, clock=lambda: FROZEN)
    assert view.status == "completed" and view.active_fanout().count("completed") == 1  # type: ignore[union-attr]
    assert view.failed_steps() == []  # the first attempt's failure is history
    assert "failed steps" not in view.summary_text()
