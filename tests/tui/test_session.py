"""The dashboard's run session (`runkon_tui.session.RunSession`) without a terminal.

What a user does to runs — start, cancel, resume, answer a gate, follow a run held elsewhere,
open a past run, retry items — exercised on a real engine (`Workspace`) over a real store. The
session's workers run on plain threads and their reports are handed back to `handle()` on the
test's thread, as the app does on its UI thread. No Pilot, no Textual.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from runkon_flow import ActionOutput
from runkon_flow.errors import StoreUnavailable, stopped_for_store
from runkon_flow.events import CollectingSink
from runkon_flow.observe.counts import ItemCounts
from runkon_flow.observe.liveness import stopped_at
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import RunStatus
from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.workspace import Workspace

from runkon_tui.catalog import Catalog
from runkon_tui.session import (
    AttachEnded,
    EngineDone,
    Notice,
    PastRunLoaded,
    Refused,
    Report,
    RunRejected,
    RunSession,
)
from runkon_tui.status import short_id
from tests.tui.conftest import release

WAIT_S = 30.0


class ThreadDriver:
    """Workers on plain threads; reports queue up until the test pumps them into the session."""

    def __init__(self) -> None:
        self.reports: queue.Queue[Report] = queue.Queue()
        self.handled: list[tuple[Report, Notice | None]] = []
        self.threads: list[threading.Thread] = []

    def spawn(self, job: Callable[[], None], *, group: str, name: str = "") -> None:
        thread = threading.Thread(target=job, name=name or group, daemon=True)
        self.threads.append(thread)
        thread.start()

    def post(self, report: Report) -> None:
        self.reports.put(report)


class Harness:
    def __init__(self, session: RunSession, driver: ThreadDriver) -> None:
        self.session = session
        self.driver = driver

    def pump(self, until: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
        """Hand reports to the session and fold events (the app's UI thread) until `until()`."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            try:
                report = self.driver.reports.get(timeout=0.02)
            except queue.Empty:
                self.session.fold()
                continue
            self.driver.handled.append((report, self.session.handle(report)))
            self.session.fold()

    def reports_of(self, kind: type) -> list:
        return [r for r, _ in self.driver.handled if isinstance(r, kind)]

    def notices(self) -> list[str]:
        return [n.text for _, n in self.driver.handled if n is not None]

    def run_ended(self) -> bool:
        return not self.session.run_active and bool(self.reports_of(EngineDone))


def make_session(folder: Path, store=None, host=None, collector=None) -> Harness:  # type: ignore[no-untyped-def]
    store = store if store is not None else InMemoryStore()
    if host is None:
        host = Workspace([folder], store, sinks=[collector] if collector is not None else ())
    driver = ThreadDriver()
    catalog = Catalog([folder])
    catalog.reload()
    session = RunSession(
        host=host, store=store, catalog=catalog, driver=driver, clock=time.time, user="tester"
    )
    return Harness(session, driver)


def start(h: Harness, name: str, **inputs: str) -> None:
    entry = h.session.catalog.by_name(name)
    assert entry is not None
    definition = h.session.check_runnable(entry)
    h.session.start(name, definition, h.session.prepare_inputs(name, inputs))


# --------------------------------------------------------------------------- starting


def test_a_started_run_is_shown_live_and_its_outcome_remembered(folder: Path) -> None:
    h = make_session(folder)
    s = h.session
    start(h, "quick", who="tester")
    assert s.run_active
    h.pump(h.run_ended, "the run to end")
    view = s.view
    assert view.status == "completed", view.summary_text()
    assert view.root is not None and view.root.inputs == {"who": "tester"}
    assert view.root.steps["body.0"].last_output(1) == ["hello tester"]
    assert ItemCounts.of(view.active_fanout()).completed == 3  # type: ignore[arg-type]
    assert s.active_run_id is None and s.run_in_view is None
    assert s.run_finished() is not None  # the app's toast: "quick completed in …"
    assert s.workflow_statuses()["quick"] == "completed"
    assert s.exit_code() == 0
    assert s.summary().startswith(f"runkon: quick · run {view.root_run_id} · completed")


def test_only_one_run_at_a_time_and_broken_workflows_are_refused(folder: Path) -> None:
    (folder / "broken.wf").write_text("workflow broken {\n  script x {\n")
    h = make_session(folder)
    s = h.session
    broken = s.catalog.by_name("broken") or next(e for e in s.catalog if e.broken)
    with pytest.raises(Refused) as refused:
        s.check_runnable(broken)
    assert refused.value.notice.title == "Cannot run a broken workflow"
    assert "broken.wf" in refused.value.notice.text

    start(h, "fanout")
    with pytest.raises(Refused, match="already active"):
        s.check_runnable(s.catalog.by_name("quick"))  # type: ignore[arg-type]
    with pytest.raises(Refused, match="a run is active"):
        s.open_past_run("01HZ")
    release(folder, *"abcdefghij")
    h.pump(h.run_ended, "the run to end")
    assert s.view.status == "completed"


def test_a_run_that_fails_validation_never_starts_and_says_where(folder: Path) -> None:
    (folder / "lost.wf").write_text("workflow lost {\n  call nobody-home\n}\n")
    store = InMemoryStore()
    h = make_session(folder, store=store)
    start(h, "lost")
    h.pump(lambda: h.reports_of(RunRejected), "the rejection")
    assert not h.session.run_active
    (notice,) = h.notices()
    assert "lost.wf:2:" in notice and "nobody-home" in notice, notice
    assert any("nobody-home" in line.text for line in h.session.view.error_log)
    assert store.list_runs() == []  # nothing was written


def test_an_agent_program_that_is_not_there_is_a_problem_at_its_command_line(folder: Path) -> None:
    """It started, and the step failed with `failed to start`; the problem names the agent file."""
    (folder / "agents" / "ghost.md").write_text('---\ncommand: ["./no-such-tool", "--x"]\n---\nHi.\n')
    (folder / "haunted.wf").write_text("workflow haunted {\n  call ghost\n}\n")
    store = InMemoryStore()
    h = make_session(folder, store=store)
    start(h, "haunted")
    h.pump(lambda: h.reports_of(RunRejected), "the rejection")
    (notice,) = h.notices()
    assert f"{folder / 'agents' / 'ghost.md'}:2: agent 'ghost': './no-such-tool' not found" in notice, notice
    assert store.list_runs() == []


def test_the_checks_warnings_are_said_when_a_run_starts(folder: Path) -> None:
    """`run` prints the check's warnings before it starts; the dashboard said none, so an agent
    whose program is not on PATH here only showed later as a failed step. They are said in the
    engine log at the run's start and in a toast."""
    (folder / "agents" / "ghost.md").write_text('---\ncommand: ["no-such-program-xyz"]\n---\nHi.\n')
    (folder / "haunted.wf").write_text("workflow haunted {\n  call ghost\n}\n")
    h = make_session(folder)
    s = h.session
    start(h, "haunted")
    h.pump(h.run_ended, "the run to end")
    warning = (
        f"{folder / 'agents' / 'ghost.md'}:2: warning: agent 'ghost': 'no-such-program-xyz' is not a "
        "command on PATH here (the run's PATH may differ)"
    )
    said = [line.text for line in s.view.engine_log if line.level == "warning"]
    assert len(said) == 1 and said[0].startswith(warning), said
    toast = next(n for _, n in h.driver.handled if n is not None and n.severity == "warning")
    assert toast.title == "haunted: 1 warning"
    # Short: its location is in the engine log, and its long hint (`(hint: install it …)`) too.
    message = warning.partition(": warning: ")[2]
    assert toast.text.split("\n") == ["all of it in the engine log (l):", message + "…"]
    assert s.view.status == "failed"  # it ran: a warning stops nothing
    assert not any(line.level == "warning" for line in s.view.error_log)


def test_a_run_with_nothing_to_warn_of_starts_without_a_warning(folder: Path) -> None:
    h = make_session(folder)
    start(h, "quick")
    h.pump(h.run_ended, "the run to end")
    assert not [n for _, n in h.driver.handled if n is not None and n.severity == "warning"]
    assert not [line for line in h.session.view.engine_log if "warning:" in line.text]


# --------------------------------------------------------------------------- cancel and resume


def test_resume_after_cancel_runs_only_the_remaining_items(folder: Path, tmp_path: Path) -> None:
    collector = CollectingSink()
    store = SqliteStore(tmp_path / "runs.db")
    h = make_session(folder, store=store, collector=collector)
    s = h.session
    release(folder, "a", "b")  # the other items wait for their release: the cancel finds them running
    start(h, "fanout")
    fan = lambda: s.view.active_fanout()  # noqa: E731
    h.pump(lambda: fan() is not None and ItemCounts.of(fan()).completed == 2, "two items done")  # type: ignore[arg-type]
    h.pump(lambda: ItemCounts.of(fan()).running == 2, "c and d running")  # type: ignore[arg-type]
    assert s.cancel_label() == f"run {short_id(s.view.root_run_id)} of fanout"
    s.cancel()
    assert s.view.status == "cancelling"
    h.pump(h.run_ended, "the cancel to land")
    run_id = s.view.root_run_id
    assert run_id is not None and s.view.status == "cancelled"
    assert store.get_run(run_id).status is RunStatus.CANCELLED  # type: ignore[union-attr]
    assert s.can_resume() and s.exit_code() == 1

    before = len(collector.events)
    h.driver.handled.clear()
    assert s.resume() is True
    assert s.run_active and not s.can_resume()
    release(folder, *"cdefghij")
    h.pump(h.run_ended, "the resumed run to end")
    assert s.view.status == "completed", s.view.summary_text()
    assert ItemCounts.of(fan()).completed == 10  # type: ignore[arg-type]
    started_again = [
        d.event.item_id for d in collector.events[before:] if d.event.type == "FanOutItemStarted"
    ]
    assert sorted(started_again) == list("cdefghij")
    assert s.exit_code() == 0


def _failed_fixable(folder: Path) -> tuple[Path, Harness]:
    """`fixable.wf` (one script that exits 3), run from a new session until it failed."""
    wf = folder / "fixable.wf"
    wf.write_text('workflow fixable {\n  script check { run = "exit 3" }\n}\n')
    h = make_session(folder)
    start(h, "fixable")
    h.pump(h.run_ended, "the run to fail")
    return wf, h


def test_a_resume_is_drawn_on_the_definition_it_runs_the_file_as_fixed(folder: Path) -> None:
    """`resume` runs the workflow's file as it is now (docs/workspace.md: the fix you just made is
    what you resume with), so the tree must show that file, not the one the run started with."""
    wf, h = _failed_fixable(folder)
    s = h.session
    assert s.view.status == "failed"
    fixed = 'workflow fixable {\n  script check { run = "true" }\n  script report { run = "echo ok" }\n}\n'
    wf.write_text(fixed)
    s.catalog_changed()  # what the file watcher does
    h.driver.handled.clear()
    assert s.resume() is True
    h.pump(h.run_ended, "the resumed run to end")
    assert s.view.status == "completed", s.view.summary_text()
    assert s.view.definition is not None
    assert [step.name for step in s.view.definition.body] == ["check", "report"]
    assert s.view.root is not None and s.view.root.steps["body.1"].status == "completed"


def test_resuming_a_completed_run_changes_nothing_and_says_why(folder: Path) -> None:
    h = make_session(folder)
    start(h, "quick")
    h.pump(h.run_ended, "the run to end")
    h.driver.handled.clear()
    h.session.resume()
    h.pump(h.run_ended, "the refusal")
    assert h.session.view.status == "completed"
    (_, notice), *_ = [(r, n) for r, n in h.driver.handled if isinstance(r, EngineDone)]
    assert notice is not None and notice.title == "Nothing to do"


# --------------------------------------------------------------------------- gates


def test_a_gate_decision_reaches_the_engine_with_the_user_note_and_option(folder: Path) -> None:
    store = InMemoryStore()
    h = make_session(folder, store=store)
    s = h.session
    start(h, "approval")
    h.pump(lambda: s.gate_to_decide() is not None, "the gate to wait")
    assert [g.gate_name for g in s.new_gates()] == ["human_approval"]
    assert s.new_gates() == []  # announced once
    gate = s.gate_to_decide()
    assert gate is not None and gate.prompt == "Release it?"
    s.gate_drafts[f"{gate.run_id}:{gate.step_id or gate.gate_name}"] = "ship it"
    s.decide_gate(gate, True, "ship it", ["now"])
    h.pump(h.run_ended, "the run to end")
    assert s.view.status == "completed", s.view.summary_text()
    assert "gate human_approval approved" in h.notices()
    assert s.gate_drafts == {}  # the note is stored: no draft left
    decided = [st for st in store.get_steps(s.view.root_run_id) if st.step_name == "human_approval"]  # type: ignore[arg-type]
    assert decided and decided[-1].gate_approved_by == "tester"
    assert decided[-1].gate_feedback == "ship it"
    assert "now" in (decided[-1].gate_selections or "")


def test_a_rejected_gate_fails_the_run_with_who_and_why(folder: Path) -> None:
    h = make_session(folder)
    s = h.session
    start(h, "approval")
    h.pump(lambda: s.gate_to_decide() is not None, "the gate to wait")
    s.decide_gate(s.gate_to_decide(), False, "not today")  # type: ignore[arg-type]
    h.pump(h.run_ended, "the run to end")
    assert s.view.status == "failed"
    root = s.view.root
    assert root is not None and root.error is not None
    assert "rejected by tester" in root.error and "not today" in root.error
    # A rejection is final for its run: no resume (it would only ask again), a rerun is offered.
    assert not s.can_resume()  # the footer's `r Resume` is gone
    with pytest.raises(Refused, match="a rejection is final for its run") as refused:
        s.resume()
    assert "gate human_approval was rejected by tester · note: not today" in refused.value.notice.text
    assert "rerun from the gate" in refused.value.notice.text
    assert not s.run_active


# --------------------------------------------------------------------------- runs held elsewhere, past runs


def test_attaching_to_a_run_held_elsewhere_follows_it_and_answers_its_gate(
    folder: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    other = Workspace([folder], SqliteStore(db))  # "another process": its own engine and connection
    run_id = other.create_run("approval", {})
    worker = threading.Thread(target=other.execute, args=(run_id,), daemon=True)
    worker.start()

    h = make_session(folder, store=SqliteStore(db))
    s = h.session
    s.attach(run_id)
    h.pump(lambda: s.attached_run_id == run_id, "the attach")
    assert s.run_in_view == run_id and not s.run_active and not s.can_resume()
    h.pump(lambda: s.gate_to_decide() is not None, "the gate, read from the stored events")
    assert s.view.root_run_id == run_id and s.view.workflow_name == "approval"
    s.decide_gate(s.gate_to_decide(), True, None, ["later"])  # type: ignore[arg-type]
    h.pump(lambda: h.reports_of(AttachEnded), "the followed run to end")
    worker.join(WAIT_S)
    assert h.reports_of(AttachEnded)[0].status == "completed"
    assert s.view.status == "completed"
    assert s.attached_run_id is None and s.follower is None
    assert s.exit_code() == 0  # nothing ran here


@contextmanager
def _followed_at_its_gate(
    folder: Path, db: Path, *, lease_ttl: int
) -> Iterator[tuple[subprocess.Popen[str], str, SqliteStore, Harness]]:
    """`runkon-flow run approval` in a process of its own (the holder), followed by a session
    until its gate waits: (holder, run id, store, harness). The holder is killed on the way out."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", "run", "approval", "--dir", str(folder),
         "--db", str(db), "--lease-ttl", str(lease_ttl), "--progress", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        run_id = holder.stdout.readline().split()[0].removeprefix("run_id=")
        store = SqliteStore(db)
        h = make_session(folder, store=store)
        h.session.attach(run_id)
        h.pump(lambda: h.session.gate_to_decide() is not None, "the gate, read from the stored events")
        yield holder, run_id, store, h
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=WAIT_S)


def test_a_followed_run_whose_holder_dies_stops_its_clock_where_runs_and_show_do(
    folder: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    with _followed_at_its_gate(folder, db, lease_ttl=1) as (holder, run_id, store, h):
        s = h.session
        holder.kill()  # the holder dies: no final status, its lease lapses within a second
        holder.wait(timeout=WAIT_S)
        time.sleep(1.5)  # the dashboard notices a while after the lease ended
        h.pump(lambda: h.reports_of(AttachEnded), "the followed run to end")
    assert s.view.status == "interrupted"
    run = store.get_run(run_id)
    assert run is not None
    stopped = stopped_at(run, store.get_steps(run_id))
    root = s.view.root
    assert stopped is not None and root is not None
    assert root.ended_at == pytest.approx(stopped, abs=0.001)  # as `runs` and `show` have it
    gate = next(sv for sv in root.steps.values() if sv.name == "human_approval")
    assert gate.ended_at == pytest.approx(stopped, abs=0.001)


def test_a_followed_run_stopped_for_want_of_its_database_says_so(folder: Path, tmp_path: Path) -> None:
    """A run followed from its runner's process that stopped because its run database could
    record nothing more (its row says so: `stopped_for_store`) reads as the dashboard says it of
    a run it runs itself — `run stopped: the run database could record nothing more …` — not
    as a process that went away."""
    db = tmp_path / "runs.db"
    with _followed_at_its_gate(folder, db, lease_ttl=600) as (holder, run_id, store, h):
        s = h.session
        full = StoreUnavailable(f"run database {db}: database or disk is full")
        store.update_run_status(run_id, RunStatus.RUNNING, None, stopped_for_store(full))
        holder.kill()  # it stopped; its lease is left (a dead holder: read as gone at once)
        holder.wait(timeout=WAIT_S)
        h.pump(lambda: h.reports_of(AttachEnded), "the followed run to end")
    assert s.view.status == "interrupted"
    log = [line.text for line in s.view.engine_log]
    (stopped,) = [line for line in log if line.startswith("run stopped: ")]
    assert "the run database could record nothing more (run database " in stopped
    assert "when the database works again, r resumes it" in stopped
    assert not [line for line in log if "its process went away" in line], log


def test_opening_a_past_run_gives_the_same_picture_as_live(folder: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    h = make_session(folder, store=store)
    s = h.session
    start(h, "quick", who="past")
    h.pump(h.run_ended, "the run to end")
    live = s.view
    run_id = live.root_run_id
    assert run_id is not None

    s.open_past_run(run_id)
    h.pump(lambda: h.reports_of(PastRunLoaded), "the past run")
    past = s.view
    assert past is not live and past.root_run_id == run_id
    assert past.status == live.status == "completed"
    assert past.step_counts() == live.step_counts()
    assert ItemCounts.of(past.active_fanout()) == ItemCounts.of(live.active_fanout())  # type: ignore[arg-type]
    assert [line.text for line in past.engine_log] == [
        line.text for line in live.engine_log if not line.text.startswith("starting ")
    ]
    assert past.root is not None and past.root.steps["body.0"].last_output(1) == ["hello past"]
    assert s.can_resume() is False  # completed: nothing to resume


def test_an_unknown_run_cannot_be_opened_or_attached(folder: Path) -> None:
    h = make_session(folder)
    s = h.session
    s.open_past_run("01HZNOSUCHRUN")
    s.attach("01HZNOSUCHRUN")
    h.pump(lambda: len(h.driver.handled) == 2, "both answers")
    assert any(text.startswith("cannot open run 01HZNOSUCHRUN") for text in h.notices())
    assert any(text.startswith("cannot attach to run 01HZNOSUCHRUN") for text in h.notices())
    assert s.attached_run_id is None and s.view.root is None


def test_attaching_by_too_short_a_part_of_an_id_says_why_nothing_matched(folder: Path) -> None:
    h = make_session(folder)
    h.session.attach("…NVCN")  # `runkon-tui --attach` with four characters copied
    h.pump(lambda: len(h.driver.handled) == 1, "the answer")
    assert h.notices() == [
        "cannot attach to run …NVCN: no run …NVCN in the run store: "
        "a part of a run id needs at least 6 characters"
    ]


# --------------------------------------------------------------------------- retry and leaving


def test_retrying_items_asks_first_then_never_reruns_completed_ones(folder: Path, tmp_path: Path) -> None:
    collector = CollectingSink()
    store = SqliteStore(tmp_path / "runs.db")
    h = make_session(folder, store=store, collector=collector)
    s = h.session
    release(folder, "a", "b")
    start(h, "fanout")
    fan = lambda: s.view.active_fanout()  # noqa: E731
    h.pump(lambda: fan() is not None and ItemCounts.of(fan()).completed == 2, "a and b done")  # type: ignore[arg-type]
    h.pump(lambda: ItemCounts.of(fan()).running == 2, "c and d running")  # type: ignore[arg-type]
    with pytest.raises(Refused, match="only a finished run can be retried"):
        s.retry_plan(fan(), ["c"])  # type: ignore[arg-type]
    s.cancel()
    h.pump(h.run_ended, "the cancel")
    fanout = fan()
    assert fanout is not None
    plan = s.retry_plan(fanout, ["c", "d"])
    assert plan is not None and plan.question.startswith("Retry 2 items of foreach 'items' (c, d)?")
    assert "2 completed items are kept" in plan.question
    before = len(collector.events)
    release(folder, *"cdefghij")
    h.driver.handled.clear()
    s.retry(plan)
    assert s.run_active
    h.pump(h.run_ended, "the retry")
    started = {d.event.item_id for d in collector.events[before:] if d.event.type == "FanOutItemStarted"}
    assert {"c", "d"} <= started and not started & {"a", "b"}
    assert ItemCounts.of(fan()).completed >= 4, s.view.summary_text()  # type: ignore[arg-type]


def test_a_run_kept_in_memory_cannot_be_left_running(folder: Path) -> None:
    h = make_session(folder)
    assert h.session.why_no_hand_over() == "its runs are kept in memory, which no other process can read"
    assert h.session.hand_over_and_leave() is False  # no run active: the app just leaves


class _Shout:  # an action executor of the program embedding the dashboard
    def name(self) -> str:
        return "shout"

    def execute(self, ctx: object, info: object, params: object) -> ActionOutput:
        return ActionOutput(context="HEY")

    def cancel(self, execution_id: str) -> None:
        pass


def test_runs_on_the_programs_own_plugins_stay_in_the_dashboards_process(
    folder: Path, tmp_path: Path
) -> None:
    # A runner process builds its workspace from the folders alone: it would not find `shout`.
    store = SqliteStore(tmp_path / "runs.db")
    host = Workspace([folder], store, actions=[_Shout()])
    driver, catalog = ThreadDriver(), Catalog([folder])
    session = RunSession(
        host=host, store=store, catalog=catalog, driver=driver, clock=time.time, user="u", runs_in_runner=True
    )
    assert not session.launches  # run here, not each launch refused
    assert session.why_no_hand_over() == (
        "it runs on plug-ins of this program, which a background runner does not have"
    )
    plain = RunSession(
        host=Workspace([folder], store),
        store=store,
        catalog=catalog,
        driver=driver,
        clock=time.time,
        user="u",
        runs_in_runner=True,
    )
    assert plain.launches and plain.why_no_hand_over() is None


def test_a_store_outage_notice_is_in_the_engine_log_not_counted_among_the_errors(folder: Path) -> None:
    # A followed run's store out of reach for a while (a PostgreSQL restart) is a warning: an
    # errors count still saying it once the store is back would point at nothing to mend.
    h = make_session(folder)
    view = h.session.view
    h.session.handle(
        Notice("cannot read run 01ABC from the store, trying again: …", "warning", log_error=True)
    )
    h.session.handle(Notice("reading run 01ABC from the store again", log_error=True))
    h.session.handle(Notice("cancel failed: gone", "error", log_error=True))
    assert [(line.text[:14], line.level) for line in view.engine_log.lines] == [
        ("cannot read ru", "warning"),
        ("reading run 01", "info"),
        ("cancel failed:", "error"),
    ]
    assert [line.text for line in view.error_log.lines] == ["cancel failed: gone"]


def test_an_outdated_answer_of_what_a_resume_runs_does_not_hide_the_current_one(folder: Path) -> None:
    """The tree's note asks the host what `r` resumes with, again after each edit of the files;
    an answer to an earlier question that comes last must not take the current answer's place
    (the question is not asked again, and the note would never say it)."""
    from runkon_flow.workspace import ResumeSource

    from runkon_tui.session import ResumeKnown

    _, h = _failed_fixable(folder)
    s = h.session
    assert s.resume_source() is None  # asked; the answer comes on a worker
    s.catalog_changed()  # the file was saved: asked again
    assert s.resume_source() is None
    answers: list[ResumeKnown] = []
    while len(answers) < 2:  # kept back, to be handed in the order that shows the fault
        report = h.driver.reports.get(timeout=WAIT_S)
        if isinstance(report, ResumeKnown):
            answers.append(report)
        else:
            s.handle(report)
    first, current = sorted(answers, key=lambda r: s.resume_answered(r))
    assert not s.resume_answered(first) and s.resume_answered(current)
    s.handle(current)
    s.handle(first)  # the earlier question's answer, last
    assert s.resume_source() is ResumeSource.FILE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("broken", "the file does not parse now"),
        ("gone", "no file in the watched folders declares its workflow now"),
        ("renamed", "no file in the watched folders declares its workflow now"),
    ],
)
def test_what_a_resume_runs_says_whether_the_file_is_broken_or_gone(
    folder: Path, change: str, reason: str
) -> None:
    """A resume runs the run's own definition when its workflow's file does not parse now and
    when no file declares that workflow any more; the dashboard said "the file does not parse now"
    for both, so a deleted or renamed workflow read as a broken file to go and fix."""
    wf, h = _failed_fixable(folder)
    s = h.session
    if change == "broken":
        wf.write_text("workflow fixable {\n  script check {\n}\n")
    elif change == "gone":
        wf.unlink()
    else:
        wf.write_text('workflow fixed {\n  script check { run = "exit 0" }\n}\n')
    s.catalog.reload()
    s.catalog_changed()
    assert s.resumes_with() is None  # asked; the answer comes on a worker
    h.pump(lambda: s.resumes_with() is not None, "what a resume runs")
    assert s.resumes_with() == f"its own definition ({reason})"
