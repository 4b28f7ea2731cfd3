"""The top-level `always` list on resume (docs/engine.md, "Resume and the always list").

A resumed run is a new attempt of the same run; its `always` list runs again at the end of it, so
a report it writes describes how the run finally ended, not the attempt that failed before.
Proved on every store kind (memory and SQLite) through the `h` fixture.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.observe import RunModel, load_run
from runkon_flow.observe.counts import row_step_counts
from runkon_flow.persistence.memory import InMemoryStore

from tests.engine.conftest import Harness, wait_for_cancel, wait_until

REPORTING = "workflow w { call a call b call c always { call report } }"


def resume(h: Harness, text: str, run_id: str):  # type: ignore[no-untyped-def]
    return h.engine.resume_workflow(parse_workflow(text), h.run_input(run_id))


def test_the_always_list_runs_again_after_a_resume_and_sees_the_final_status(h: Harness) -> None:
    h.agents.fail("b", "first attempt breaks", times=1)
    first = h.run(REPORTING)
    assert first.status == "failed"
    assert h.agents.inputs_of("report")["workflow_status"] == "failed"
    h.agents.calls.clear()

    result = resume(h, REPORTING, first.workflow_run_id)
    assert result.all_succeeded
    assert h.agents.names() == ["b", "c", "report"]  # a is kept; the always list runs again
    assert h.agents.inputs_of("report")["workflow_status"] == "completed"
    reports = [s for s in h.steps(first.workflow_run_id) if s.step_name == "report"]
    assert [str(s.status) for s in reports] == ["completed", "completed"]  # one row per attempt
    # ...and still one step of the run (at a later position this time, after c): a, b, c and
    # report, each counted once by its latest attempt, live, from rows and from the model.
    assert row_step_counts(h.steps(first.workflow_run_id)) == {"completed": 4}
    assert RunModel.from_events(h.sink.events).step_counts() == {"completed": 4}
    assert load_run(h.store, first.workflow_run_id).step_counts() == {"completed": 4}


def test_an_always_step_named_like_a_body_step_is_not_taken_for_it_on_resume(h: Harness) -> None:
    text = "workflow w { call notify call b always { call notify } }"
    h.agents.fail("b", "first attempt breaks", times=1)
    first = h.run(text)
    h.agents.calls.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["b", "notify"]  # the body's notify is kept, the always one runs


def test_a_body_step_is_never_taken_for_an_always_step_that_completed_before_it(h: Harness) -> None:
    text = "workflow w { call b call notify always { call notify } }"
    h.agents.fail("b", "first attempt breaks", times=1)
    first = h.run(text)
    assert h.agents.names() == ["b", "notify"]  # only the always list's notify ran
    h.agents.calls.clear()
    h.sink.events.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["b", "notify", "notify"]  # the body's, then the always list's
    assert h.events()[0].type == "RunStarted"  # nothing of the body was complete: it starts over


def test_a_call_workflow_in_the_always_list_runs_afresh_on_resume(h: Harness) -> None:
    h.add_workflow("workflow summary { call collect call write }")
    text = "workflow w { call b always { call workflow summary } }"
    h.agents.fail("b", "first attempt breaks", times=1)
    first = h.run(text)
    h.agents.calls.clear()
    assert resume(h, text, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["b", "collect", "write"]


def test_the_resume_line_counts_only_the_steps_it_skips(h: Harness) -> None:
    """`RunResumed.skipped_steps` (the dashboard's "skipping N completed steps", the CLI's
    `skipped=N`) is the number of steps this attempt does not run again: not the always list's
    rows, nor a row of a step the workflow no longer has (renamed since the run failed)."""
    before = "workflow w { call a call b call c always { call report } }"
    after = "workflow w { call a2 call b call c always { call report } }"
    h.agents.fail("c", "first attempt breaks", times=1)
    first = h.run(before)
    assert first.status == "failed"
    h.agents.calls.clear()
    h.sink.events.clear()
    assert resume(h, after, first.workflow_run_id).all_succeeded
    assert h.agents.names() == ["a2", "c", "report"]  # only b is skipped
    (resumed,) = [d.event for d in h.sink.events if d.event.type == "RunResumed"]
    assert resumed.skipped_steps == 1
    assert any(
        line.text.endswith("(skipping 1 completed step)")
        for line in RunModel.from_events(h.sink.events).engine_log
    )


def test_a_resume_cancelled_before_its_always_list_counts_that_list_pending_from_rows_too(
    tmp_path: Path,
) -> None:
    """The views (folded from the events: `RunModel._always_again`) showed `report` pending —
    the resumed attempt was cancelled before its always list ran, and a cancelled run skips it —
    while the runs list, counting the rows, took the first attempt's ✓ for it: `✓2` against
    the views' `✓1`. Rows, the model loaded from them and the events now count the same. The
    store's clock moves a millisecond a call, so each row's start is later than the one before
    (rows are stamped to the millisecond: a body row started in the same one as an always row
    is not taken for a later attempt's)."""
    ticks = itertools.count()
    start = datetime.now(UTC)
    store = InMemoryStore(clock=lambda: start + timedelta(milliseconds=next(ticks)))
    h = Harness(store, tmp_path)
    h.agents.fail("b", "first attempt breaks", times=1)
    first = h.run(REPORTING)
    run_id = first.workflow_run_id
    assert row_step_counts(h.steps(run_id)) == {"completed": 2, "failed": 1}  # a and report; b
    h.agents.do("b", wait_for_cancel)
    engine = h.engine
    assert engine is not None
    resumed = threading.Thread(target=resume, args=(h, REPORTING, run_id))
    resumed.start()
    assert wait_until(lambda: h.agents.names().count("b") == 2)
    engine.cancel_run(run_id)
    resumed.join(10)
    assert store.get_run(run_id).status == "cancelled"  # type: ignore[union-attr]
    assert h.agents.names() == ["a", "b", "report", "b"]  # its always list did not run again
    counted = {"completed": 1, "cancelled": 1, "pending": 1}  # a; b; report
    assert RunModel.from_events(h.sink.events).step_counts() == counted
    assert row_step_counts(h.steps(run_id)) == counted
    loaded = load_run(store, run_id)
    assert loaded.step_counts() == counted
    report = loaded.root.steps["always.0"]  # type: ignore[union-attr]
    assert (report.status, report.started_at, report.ended_at) == ("pending", None, None)
