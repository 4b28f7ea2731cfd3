"""A run's story in the dashboard, from its start through its resumes (issue 10, "resume reports").

One line per thing that happened, in order, with its time; one `run started`; an elapsed time
that counts the run, not the attempt; attempts marked in the log.
"""

from __future__ import annotations

import threading

from runkon_flow.cancellation import CancellationReason
from runkon_flow.events import EngineEventData, RunCancelled, RunCompleted, RunResumed, RunStarted

from runkon_tui.app import RunkonApp
from runkon_tui.widgets.log_pane import LogView
from tests.tui import scenarios
from tests.tui.conftest import feed, make_app, wait_for
from tests.tui.fakes import ScriptedHost
from tests.tui.test_dashboard import start_review_run
from tests.tui.test_new_user import screen_text

BIG = (140, 42)


def log_lines(app: RunkonApp) -> list[str]:
    """Every line the engine log pane holds, as drawn (time stamp and text; a row whose line is
    gone is drawn blank)."""
    screen = app.main_screen
    assert screen is not None
    view = screen.query_one(LogView)
    source = view.source
    lines = []
    for seq, part in view._rows:
        index = seq - view._dropped
        if part == 0:
            lines.append(source.get(index)[0] if 0 <= index < len(source) else "")
    return lines


async def test_a_run_log_begins_with_one_run_started_line() -> None:
    """The UI may draw a tick between the run's creation (a fresh log) and its first event: the
    line drawn before it (`starting …`) must not leave a stale row that repeats `run started`."""
    first_event = threading.Event()

    def script(run_id: str) -> list[EngineEventData]:
        first_event.wait(10)  # the engine holds its first event until the test let a tick pass
        s = scenarios.Script(run_id=run_id)
        s.emit(RunStarted(workflow_name="review-one", inputs={"file": "x.py"}))
        s.step_run("body.0", "review-file", output=["looks fine"])
        return s.events

    app = make_app()
    host: ScriptedHost = app.host  # type: ignore[assignment]
    host.script = script
    async with app.run_test(size=BIG) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.root_run_id is not None, what="the run to be created")
        await pilot.pause(0.3)  # ticks with the run's fresh, still empty log
        first_event.set()
        await wait_for(pilot, lambda: any("✓ review-file" in line for line in log_lines(app)), what="step")
        lines = log_lines(app)
        assert sum("run started: review-one" in line for line in lines) == 1, lines
        assert "run started: review-one" in lines[0]
        host.finish(RunCompleted(succeeded=True))
        await wait_for(pilot, lambda: not app.run_active, what="the run to end")


def _cancelled_at_first_step() -> scenarios.Script:
    """review-one cancelled in its first step: nothing completed, so its resume starts over."""
    s = scenarios.Script(t0=scenarios.T0)
    s.emit(RunStarted(workflow_name="review-one", inputs={"file": "x.py"}))
    s.start("body.0", "review-file")
    s.emit(RunCancelled(reason=CancellationReason.user("stop")), dt=20)
    return s


def _started_over(after: scenarios.Script, pause: float) -> list[EngineEventData]:
    """The resume of that run, `pause` seconds later: the engine emits RunStarted again."""
    s = scenarios.Script(t0=after.now() + pause)
    s.emit(RunStarted(workflow_name="review-one", inputs={"file": "x.py"}))
    s.step_run("body.0", "review-file", secs=10)
    s.emit(RunCompleted(succeeded=True))
    return s.events


async def test_a_resume_that_starts_over_keeps_the_runs_times_and_marks_the_attempt() -> None:
    first = _cancelled_at_first_step()
    t_end = first.now() + 60 + 0.5 + 10 + 0.5  # the resume 60 s later, its step 10 s, its end
    app = make_app(clock=lambda: t_end)
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, first.events)
        await pilot.pause()
        app.view.begin(scenarios.ROOT, "review-one", resumed=True)  # as the dashboard's resume does
        feed(app, _started_over(first, 60))
        await pilot.pause()
        lines = [line for line in log_lines(app) if "broken.wf" not in line]  # start-up notes
        assert not any(line.startswith("--:--") for line in lines), lines
        assert lines[0] == "00:00 run started: review-one"
        resumed = [line for line in lines if "run resumed" in line]
        assert resumed == [
            "01:21 run resumed: review-one — attempt 2 (no completed step to skip: it starts over)"
        ], lines
        assert lines[-1] == "01:32 ✓ run completed in 1m32s (this attempt took 11s)"  # as the CLI says it
        root = app.view.root
        assert root is not None and root.started_at == scenarios.T0 + 0.5 and root.attempts == 2
        assert "01:32" in screen_text(app)[0]  # the header's elapsed time counts the whole run


def test_a_child_announced_by_its_parent_starts_once_with_its_inputs() -> None:
    """ChildRunStarted (from the parent) comes before the child's own RunStarted: that is its first
    attempt, not a resume."""
    from runkon_flow.events import ChildRunStarted

    from runkon_tui.run_view import RunView

    s = scenarios.Script()
    s.emit(RunStarted(workflow_name="parent", inputs={}))
    sid = s.start("body.0", "workflow:child", "call_workflow")
    s.emit(
        ChildRunStarted(
            child_run_id="CHILD", workflow_name="child", parent_run_id=s.run_id, parent_step_id=sid
        )
    )
    s.emit(RunStarted(workflow_name="child", parent_run_id=s.run_id, inputs={"who": "me"}), "CHILD")
    view = RunView.from_events(s.events)
    child = view.run("CHILD")
    assert child is not None and child.inputs == {"who": "me"}
    assert child.attempts == 1 and not child.resumed


def _failed_before_the_gate() -> scenarios.Script:
    """review-pr failed in its second step; its always block ran (✓ notify) as the run ended."""
    s = scenarios.Script(t0=scenarios.T0)
    s.emit(RunStarted(workflow_name="review-pr", inputs={"pr": "42"}))
    s.step_run("body.0", "resolve-base", "script")
    s.step_run("body.1", "detect-file-types", ok=False, error="agent exited with code 2")
    s.step_run("always.0", "notify", "script", output=["notified"])
    s.emit(RunCompleted(succeeded=False, error="step 'detect-file-types' failed"))
    return s


def _row(app: RunkonApp, label: str) -> str:
    """The tree row that names `label`, from its glyph on (the pane's border left out)."""
    rows = [line for line in screen_text(app) if label in line]
    assert rows, f"no row with {label!r} on screen"
    pane = next(part for part in rows[0].split("│") if label in part)
    return pane.lstrip(" └├▾▸").strip()


async def test_a_resumed_runs_always_block_is_pending_until_it_runs_again() -> None:
    """The always list runs again at the end of every attempt: from the resume's start its row
    shows pending, as the steps that run again do — not the ✓ of the attempt the resume replaced
    — and then the new attempt's own status."""
    first = _failed_before_the_gate()
    app = make_app(clock=lambda: first.now() + 5)
    async with app.run_test(size=BIG) as pilot:
        await pilot.pause()
        feed(app, first.events)
        await pilot.pause()
        assert _row(app, "script notify").startswith("✓"), screen_text(app)
        app.view.begin(scenarios.ROOT, "review-pr", resumed=True)  # as the dashboard's resume does
        again = scenarios.Script(t0=first.now() + 2)
        again.emit(RunResumed(workflow_name="review-pr", skipped_steps=1))
        again.start("body.1", "detect-file-types")
        feed(app, again.events)
        await pilot.pause()
        assert _row(app, "script notify").startswith("· script notify"), screen_text(app)
        assert _row(app, "always").startswith("· always"), screen_text(app)
        assert "✓1 ▶1" in screen_text(app)[0]  # the header counts this attempt's always, not the last
        again.finish("body.1", "detect-file-types")
        again.step_run("always.0", "notify", "script", ok=False, error="exit 1")
        feed(app, again.events[2:])
        await pilot.pause()
        assert _row(app, "script notify").startswith("✗ script notify"), screen_text(app)
