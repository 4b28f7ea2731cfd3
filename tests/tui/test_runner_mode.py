"""Runs started from the dashboard on a database execute in a background runner process of their
own and are followed through the store (docs/dashboard.md, "Where a run runs"): quitting, a
closed terminal or a crash of the dashboard never stops them, and nothing in flight is run twice
on the way out."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.persistence.models import RunStatus
from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.runtime.lease import holder_of

from runkon_tui.app import RunkonApp, SessionReport
from runkon_tui.config import load_config
from runkon_tui.screens.confirm import ConfirmScreen
from runkon_tui.screens.quit import QuitScreen
from runkon_tui.session import Launched, Refused, RunnerFailed
from runkon_tui.status import short_id
from tests import pg
from tests.tui.conftest import real_app, release, select, wait_for
from tests.tui.test_attach import final_status, foreground_run, start_fanout, stop_holders


@pytest.fixture
def db(folder: Path, tmp_path: Path) -> Iterator[Path]:
    """The run database; afterwards every item is released and every runner still holding one
    of its runs is stopped (a failed test must not leave a runner behind)."""
    path = tmp_path / "runs.db"
    yield path
    release(folder, *"abcdefghij")
    if path.exists():
        with SqliteStore(path) as store:
            run_ids = [run.id for run in store.list_runs()]
        stop_holders(path, *run_ids)


def runner_app(folder: Path, db: Path) -> RunkonApp:
    return real_app(folder, SqliteStore(db), runs_in_runner=True)


def headless_session(folder: Path, host: Any, store: Any) -> tuple[Any, list[Any]]:
    """A RunSession in runner mode without the UI (jobs run inline) and the reports it posts."""
    from runkon_tui.catalog import Catalog
    from runkon_tui.session import RunSession

    reports: list[Any] = []

    class Driver:
        def spawn(self, job: Any, *, group: str, name: str = "") -> None:
            job()

        def post(self, report: Any) -> None:
            reports.append(report)

    session = RunSession(
        host=host, store=store, catalog=Catalog([folder]), driver=Driver(), clock=time.time, user="t",
        runs_in_runner=True,
    )  # fmt: skip
    return session, reports


def wait_for_reports(reports: list[Any], count: int) -> list[str]:
    """The kinds of the reports once `count` have come (the runner is watched on its own thread)."""
    deadline = time.monotonic() + 30
    while len(reports) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [type(r).__name__ for r in reports]


def holder_pid(db: Path, run_id: str) -> int | None:
    with SqliteStore(db) as store:
        run = store.get_run(run_id)
    holder = holder_of(run.owner_token) if run is not None else None
    return holder.pid if holder is not None else None


def started_items(db: Path, run_id: str) -> list[str]:
    """Every item start the run's stored event stream records, in order (resumes included)."""
    from runkon_flow.event_log import read_envelopes

    with SqliteStore(db) as store:
        events = read_envelopes(store, run_id)[0]
    return [e.event.item_id for e in events if e.event.type == "FanOutItemStarted"]


def what_the_runner_said(app: RunkonApp, db: Path, run_id: str) -> str:
    """The dashboard's last engine-log lines and the runner's log, for a failure message."""
    from runkon_flow.runner import log_path

    log = log_path(db, run_id)
    said = log.read_text(errors="replace")[-2000:] if log.exists() else "(no runner log)"
    shown = [line.text for line in app.view.engine_log][-6:]
    with SqliteStore(db) as store:
        run = store.get_run(run_id)
    row = f"{run.status} owner={run.owner_token}" if run is not None else "no row"
    return f"run row: {row}; engine log: {shown}; runner log: {said}"


async def quit_answering(pilot: Any, app: RunkonApp, key: str) -> None:
    """`q`, then `key` to the question about the run of ours (b: keep it, c: cancel it)."""
    await pilot.press("q")
    await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit question")
    await pilot.press(key)
    await wait_for(pilot, lambda: not app.is_running, what="exit", timeout=30)


async def two_items_done(pilot: Any, app: RunkonApp, folder: Path) -> None:
    """Let items a and b of the `fanout` run on screen finish; the rest keep waiting."""
    release(folder, "a", "b")
    await wait_for(pilot, lambda: app.view.active_fanout().count("completed") == 2, what="a and b")


async def cancel_on_screen(pilot: Any, app: RunkonApp, *, until_stopped: bool = True) -> None:
    """`c`, then yes: the run on screen is asked to cancel (through the store, to its runner);
    `until_stopped`: then wait until its follower has seen it end."""
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
    await pilot.press("y")
    if until_stopped:
        await wait_for(pilot, lambda: app.attached_run_id is None, what="the cancel", timeout=30)


async def test_a_run_started_here_runs_in_its_own_process_and_quitting_leaves_it_running(
    folder: Path, db: Path
) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        run_id = await start_fanout(pilot, app)
        assert not app.run_active and app.attached_run_id == run_id  # followed, not hosted
        pid = holder_pid(db, run_id)
        assert pid is not None and pid != os.getpid()
        told = [line.text for line in app.view.engine_log if "background runner" in line.text]
        # what matters fits an 80-column log pane; the pid and the log path come after it
        assert told[0].startswith(
            f"run {short_id(run_id)} is in a background runner: quitting leaves it running ("
        )
        assert len(told[0].split(" (pid")[0]) <= 70
        await two_items_done(pilot, app, folder)
        await quit_answering(pilot, app, "b")  # the run is ours: the question is asked
    assert app.return_code == 0
    assert f"run {run_id} keeps running in the background (pid {pid};" in app.summary()
    assert holder_pid(db, run_id) == pid  # the same process: nothing was handed over
    release(folder, *"cdefghij")
    assert final_status(db, run_id, timeout=60) is RunStatus.COMPLETED
    assert sorted(started_items(db, run_id)) == list("abcdefghij")  # none ran twice


async def test_cancel_then_resume_both_go_through_a_runner_and_completed_items_stay_done(
    folder: Path, db: Path
) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        run_id = await start_fanout(pilot, app)
        await two_items_done(pilot, app, folder)
        await cancel_on_screen(pilot, app, until_stopped=False)
        await wait_for(pilot, lambda: app.view.status == "cancelled", what="cancelled", timeout=30)
        await wait_for(pilot, lambda: app.attached_run_id is None, what="the runner to finish")
        assert final_status(db, run_id) is RunStatus.CANCELLED
        await pilot.press("r")
        await wait_for(pilot, lambda: app.attached_run_id == run_id, what="resumed by a runner", timeout=30)
        try:
            await wait_for(pilot, lambda: holder_pid(db, run_id) is not None, what="the lease", timeout=30)
        except AssertionError as exc:  # seen once in CI (session 19): say what the runner said
            raise AssertionError(f"{exc}; {what_the_runner_said(app, db, run_id)}") from None
        assert holder_pid(db, run_id) != os.getpid() and not app.run_active
        release(folder, *"cdefghij")
        await wait_for(pilot, lambda: app.view.status == "completed", what="resumed run", timeout=60)
        assert app.view.active_fanout().count("completed") == 10
        # The follower replays the run's history first: its earlier end is not announced again.
        told = [n.message for n in app._notifications]
        assert not [t for t in told if "cancelled" in t] and [t for t in told if "completed in" in t]
    assert final_status(db, run_id) is RunStatus.COMPLETED
    starts = started_items(db, run_id)
    assert starts.count("a") == starts.count("b") == 1  # completed before the cancel: not again


async def test_quit_and_cancel_stops_the_runners_run(folder: Path, db: Path) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        run_id = await start_fanout(pilot, app)
        await quit_answering(pilot, app, "c")  # the run is ours: the question is asked
    assert app.return_code == 1  # the run was cancelled
    assert final_status(db, run_id, timeout=30) is RunStatus.CANCELLED
    assert " · cancelled · " in app.summary().splitlines()[0]  # its end, not `cancelling`
    assert app.summary().count(run_id) == 1


async def test_runs_kept_in_memory_run_in_the_dashboard(folder: Path) -> None:
    app = real_app(folder, runs_in_runner=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "fanout")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.run_active, what="the run to start here")
        assert app.attached_run_id is None
        release(folder, *"abcdefghij")
        await wait_for(pilot, lambda: not app.run_active, what="the run to end", timeout=30)
        assert app.view.status == "completed"


async def test_a_runner_that_stops_on_an_error_of_its_own_says_why(folder: Path, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        log = tmp_path / "runner.log"
        run_id = app.host.create_run("quick", {})  # type: ignore[union-attr]
        runner = subprocess.Popen(["sleep", "30"])  # stands in for a runner that took the run
        try:
            app.post_message(SessionReport(Launched(run_id, "quick", None, runner, log)))
            await wait_for(pilot, lambda: app.attached_run_id == run_id, what="following")
            app.post_message(
                SessionReport(RunnerFailed(run_id, "run '…' is completed", log, runner.pid, False))
            )
            await wait_for(pilot, lambda: app.attached_run_id is None, what="following stops")
        finally:
            runner.kill()
            runner.wait()
        assert any(
            "the background runner of run" in line.text and "stopped: run '…' is completed" in line.text
            for line in app.view.engine_log
        )


def test_the_settings_file_and_the_command_line_choose_where_runs_run(tmp_path: Path) -> None:
    path = tmp_path / "tui.yaml"
    path.write_text("run_in: dashboard\n")
    assert (load_config(path).run_in, load_config(path).error) == ("dashboard", None)
    path.write_text("run_in: cloud\n")
    assert load_config(path).error == f"{path}: `run_in` must be one of runner, dashboard, not 'cloud'"


def test_a_real_runner_error_reaches_the_dashboard(folder: Path, tmp_path: Path) -> None:
    """End to end without the UI: a runner asked to resume a completed run stops with the
    engine's refusal, and the launch job reports it."""
    from runkon_flow.workspace import Workspace

    db = tmp_path / "runs.db"
    store = SqliteStore(db)
    host = Workspace([folder], store)
    run_id = host.create_run("quick", {})
    host.execute(run_id)
    session, reports = headless_session(folder, host, store)
    session._launch("resume", "quick", None, run_id=run_id, resume=True)
    kinds = wait_for_reports(reports, 2)
    assert kinds == ["Launched", "RunnerFailed"], reports
    assert "completed" in reports[-1].text
    store.close()


def test_a_hook_that_fails_in_the_runner_is_told_in_the_dashboard(folder: Path, tmp_path: Path) -> None:
    """A run started here runs its hooks in its runner, whose stderr is the runner's log: a hook
    that failed was said nowhere on screen (docs/notifications.md promises a warning toast)."""
    from runkon_flow.runner import RunnerSettings
    from runkon_flow.workspace import Workspace

    from runkon_tui.session import Notice

    hooks = tmp_path / "hooks.yaml"
    hooks.write_text("hooks:\n  - name: pager\n    events: workflow_run.*\n    run: exit 4\n")
    db = tmp_path / "runs.db"
    store = SqliteStore(db)
    host = Workspace([folder], store, runner_settings=RunnerSettings(hooks=str(hooks)))
    run_id = host.create_run("quick", {})
    session, reports = headless_session(folder, host, store)
    session._launch("run", "quick", None, run_id=run_id)
    wait_for_reports(reports, 2)
    deadline = time.monotonic() + 30
    while not any(isinstance(r, Notice) for r in reports) and time.monotonic() < deadline:
        time.sleep(0.05)  # the runner is watched on its own thread
    (notice,) = [r for r in reports if isinstance(r, Notice)]
    assert (notice.severity, notice.title) == ("warning", "Hook failed")
    assert notice.text == f"hook 'pager' on workflow_run.completed (run {run_id}) failed: exit 4"
    store.close()


def test_with_a_wrong_hooks_file_a_run_started_here_runs_without_hooks_in_its_runner_too(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard said `hooks not used: …` and went on without hooks (docs/notifications.md),
    but the runner of a run started here found the same file and refused: "Run not started"."""
    from runkon_tui.host import open_workspace

    bad = tmp_path / "hooks.yaml"
    bad.write_text("hooks:\n  - on: gate.*\n    run: echo\n")
    monkeypatch.setenv("RUNKON_HOOKS", str(bad))
    db = tmp_path / "runs.db"
    opened = open_workspace([folder], db)
    assert any(p.startswith("hooks not used: ") for p in opened.problems), opened.problems
    host, store = opened.host, opened.store
    run_id = host.create_run("quick", {})  # type: ignore[union-attr]
    session, reports = headless_session(folder, host, store)
    session._launch("run", "quick", None, run_id=run_id)
    wait_for_reports(reports, 1)
    deadline = time.monotonic() + 60
    while store.get_run(run_id).status is not RunStatus.COMPLETED and time.monotonic() < deadline:
        time.sleep(0.05)  # the runner runs it
    assert store.get_run(run_id).status is RunStatus.COMPLETED, reports
    assert not [r for r in reports if isinstance(r, RunnerFailed)], reports
    store.close()


async def test_attaching_to_a_resumed_run_does_not_announce_its_earlier_end(
    folder: Path, tmp_path: Path
) -> None:
    """The follower replays the run's history: the end of the attempt before the resume is drawn,
    not announced (no toast, no bell) — only an end that happens while following is."""
    import threading

    from runkon_flow.workspace import Workspace

    db = tmp_path / "runs.db"
    store = SqliteStore(db)
    host = Workspace([folder], store)
    run_id = host.create_run("fanout", {})
    engine = threading.Thread(target=host.execute, args=(run_id,))
    engine.start()
    release(folder, "a")
    deadline = time.monotonic() + 30
    while "a" not in started_items(db, run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    host.cancel(run_id)
    engine.join(timeout=30)
    assert store.get_run(run_id).status is RunStatus.CANCELLED  # type: ignore[union-attr]
    runner, _ = host.launch(run_id, db, resume=True)  # another process takes it up again
    try:
        app = runner_app(folder, db)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: holder_pid(db, run_id) == runner.pid, what="the runner", timeout=30)
            app.attach_run(run_id)
            await wait_for(
                pilot, lambda: app.view.status == "running", what="the resumed attempt", timeout=30
            )
            release(folder, *"bcdefghij")
            await wait_for(pilot, lambda: app.view.status == "completed", what="the run's end", timeout=60)
            await pilot.pause(0.3)
            told = [n.message for n in app._notifications]
        assert not [t for t in told if "cancelled" in t], told
        assert [t for t in told if "completed in" in t], told
    finally:
        release(folder, *"abcdefghij")
        runner.wait(timeout=60)
        store.close()


async def test_retrying_failed_items_from_the_grid_runs_them_in_a_runner(folder: Path, db: Path) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        release(folder, "a", "b")
        run_id = await start_fanout(pilot, app)
        fan = lambda: app.view.active_fanout()  # noqa: E731
        await wait_for(pilot, lambda: fan().count("completed") == 2, what="a and b", timeout=30)
        await wait_for(pilot, lambda: fan().count("running") == 2, what="c and d to start", timeout=30)
        await cancel_on_screen(pilot, app)
        assert app.view.status == "cancelled"
        grid = app.main_screen.grid  # type: ignore[union-attr]
        grid.focus()
        await pilot.pause()
        await pilot.press("E")  # every failed or cancelled item
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="retry confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.attached_run_id == run_id, what="the retry's runner", timeout=30)
        await wait_for(pilot, lambda: holder_pid(db, run_id) is not None, what="the lease", timeout=30)
        assert holder_pid(db, run_id) != os.getpid() and not app.run_active
        release(folder, *"cdefghij")
        await wait_for(pilot, lambda: app.view.status == "completed", what="the retried run", timeout=60)
        assert fan().count("completed") == 10
    assert final_status(db, run_id) is RunStatus.COMPLETED
    starts = started_items(db, run_id)
    assert starts.count("a") == starts.count("b") == 1  # completed: never run again
    assert starts.count("c") == starts.count("d") == 2  # cancelled, then retried


@pytest.mark.parametrize("backend", pg.BACKENDS)
async def test_on_sqlite_and_postgresql_the_runner_runs_it_to_its_end(
    folder: Path, tmp_path: Path, backend: str
) -> None:
    db = pg.database(backend, tmp_path)
    store = pg.open_db(db)
    app = real_app(folder, store, runs_in_runner=True)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            run_id = await start_fanout(pilot, app)

            def holder() -> int | None:
                run = store.get_run(run_id)
                token = holder_of(run.owner_token) if run is not None else None
                return token.pid if token is not None else None

            await wait_for(pilot, lambda: holder() is not None, what="the runner's lease", timeout=30)
            assert holder() != os.getpid()
            release(folder, *"abcdefghij")
            await wait_for(pilot, lambda: app.view.status == "completed", what="the run's end", timeout=60)
            assert app.view.active_fanout().count("completed") == 10
        assert store.get_run(run_id).status is RunStatus.COMPLETED  # type: ignore[union-attr]
    finally:
        release(folder, *"abcdefghij")
        store.close()


@pytest.mark.parametrize("to", ["start", "resume"])
def test_a_runner_killed_before_it_took_the_run_up_is_reported(folder: Path, tmp_path: Path, to: str) -> None:
    """No error line in its log (SIGKILL, out of memory): the run it was to start is still
    pending, or the run it was to resume has no new event, and the dashboard says so instead of
    following a run nobody will take up."""
    from runkon_flow.workspace import Workspace

    db = tmp_path / "runs.db"
    store = SqliteStore(db)
    host = Workspace([folder], store)
    log = tmp_path / "killed.log"

    def launch(run_id: str, db: Any, **_: Any) -> tuple[subprocess.Popen, Path]:
        return subprocess.Popen(["sh", "-c", "kill -9 $$"]), log

    host.launch = launch  # type: ignore[method-assign]
    session, reports = headless_session(folder, host, store)
    if to == "start":
        session._launch("run quick", "quick", None, inputs={})
    else:
        done = host.create_run("quick", {})
        host.execute(done)
        session._launch(f"resume {done}", "quick", None, run_id=done, resume=True)
    assert wait_for_reports(reports, 2) == ["Launched", "RunnerFailed"], reports
    assert reports[-1].text == "it exited with status -9 before taking the run up"
    # "Run not started": the new run is not left pending for ever (the resumed one stays as it was).
    run = store.get_run(reports[-1].run_id)
    assert run is not None
    if to == "start":
        assert run.status is RunStatus.FAILED
        reason = (
            "not started: its background runner stopped: it exited with status -9 before taking the run up"
        )
        assert run.error == reason
    else:
        assert run.status is RunStatus.COMPLETED
    store.close()


def test_a_run_whose_runner_cannot_be_started_is_not_left_pending(folder: Path, tmp_path: Path) -> None:
    """The runner could not be started at all (its log folder unwritable): the dashboard said
    "Run not started", and the run it had just created stayed `pending` in the history for ever."""
    from runkon_flow.workspace import Workspace

    store = SqliteStore(tmp_path / "runs.db")
    host = Workspace([folder], store)

    def launch(run_id: str, db: Any, **_: Any) -> tuple[subprocess.Popen, Path]:
        raise PermissionError(13, "Permission denied", str(tmp_path / "logs"))

    host.launch = launch  # type: ignore[method-assign]
    session, reports = headless_session(folder, host, store)
    session._launch("run quick", "quick", None, inputs={})
    assert wait_for_reports(reports, 1) == ["LaunchFailed"], reports
    [run] = store.list_runs(limit=10)
    assert run.status is RunStatus.FAILED and run.ended_at
    assert run.error is not None and run.error.startswith("not started: cannot start a background runner: ")
    store.close()


async def test_resuming_an_interrupted_run_follows_the_runner_to_the_end(folder: Path, db: Path) -> None:
    """An interrupted run's row still says `running` under its dead engine's lapsed lease: the
    follower waits for the new runner to hold the run instead of calling it interrupted at once."""
    with foreground_run(folder, db) as (holder, run_id):
        app = runner_app(folder, db)
        async with app.run_test(size=(120, 40)) as pilot:
            app.attach_run(run_id)
            await wait_for(pilot, lambda: app.view.active_fanout() is not None, what="items", timeout=30)
            holder.kill()  # its engine dies: no final status, the lease lapses within a second
            holder.wait(timeout=30)
            await wait_for(pilot, lambda: app.view.status == "interrupted", what="interrupted", timeout=30)
            await pilot.press("r")
            await wait_for(
                pilot, lambda: holder_pid(db, run_id) not in (None, holder.pid), what="a runner", timeout=30
            )
            await wait_for(
                pilot, lambda: app.view.status == "running", what="the resumed attempt", timeout=30
            )
            assert app.attached_run_id == run_id  # still followed: not judged interrupted again
            release(folder, *"abcdefghij")
            await wait_for(pilot, lambda: app.view.status == "completed", what="the resumed run", timeout=60)
        assert final_status(db, run_id) is RunStatus.COMPLETED


async def test_a_second_resume_while_the_first_runner_starts_is_refused(folder: Path, db: Path) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        run_id = await start_fanout(pilot, app)
        await cancel_on_screen(pilot, app)
        assert app.session.resume() is True
        assert not app.session.can_resume() and not app.session.finished_on_screen()
        with pytest.raises(Refused, match="being started in a background runner"):
            app.session.resume()
        await wait_for(pilot, lambda: app.attached_run_id == run_id, what="the runner", timeout=30)
        release(folder, *"abcdefghij")
        await wait_for(pilot, lambda: app.view.status == "completed", what="the resumed run", timeout=60)


async def start_approval_then_fanout(pilot: Any, app: RunkonApp) -> tuple[str, str]:
    """Start `approval` (it waits at its gate), then `fanout` on screen: two runs of ours going,
    one of them out of sight. Their run ids (approval's first)."""
    await select(pilot, app, "approval")
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate", timeout=30)
    approval = app.view.root_run_id
    assert approval is not None
    fanout = await start_fanout(pilot, app)
    assert fanout != approval and app.attached_run_id == fanout
    return approval, fanout


async def test_quitting_asks_about_a_run_of_ours_out_of_sight_and_keep_leaves_both_running(
    folder: Path, db: Path
) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        approval, fanout = await start_approval_then_fanout(pilot, app)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit question")
        question = str(app.screen.query_one("#question").render())
        assert "2 runs started here" in question and "are active" in question
        assert "approval" in question and "fanout" in question
        await pilot.press("b")
        await wait_for(pilot, lambda: not app.is_running, what="exit", timeout=30)
    assert app.return_code == 0
    summary = app.summary()
    for run_id in (fanout, approval):
        assert f"run {run_id} keeps running in the background" in summary
        assert holder_pid(db, run_id) not in (None, os.getpid())  # still in its runner


async def test_quit_and_cancel_stops_every_run_of_ours_and_says_how_each_ended(
    folder: Path, db: Path
) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        approval, fanout = await start_approval_then_fanout(pilot, app)
        await quit_answering(pilot, app, "c")
    # Left once both runners stopped: the store has both ends, and the summary says them.
    with SqliteStore(db) as store:
        assert [store.get_run(r).status for r in (fanout, approval)] == [RunStatus.CANCELLED] * 2  # type: ignore[union-attr]
    summary = app.summary()
    assert " · cancelled · " in summary.splitlines()[0]  # the run on screen: its end
    assert summary.count(fanout) == 1  # not also under "also cancelled"
    assert f"run {approval} of approval: cancelled" in summary
    assert app.return_code == 1


async def test_a_run_cancelled_on_the_way_out_makes_the_exit_status_1_though_the_one_on_screen_completed(
    folder: Path, db: Path
) -> None:
    """Exit 1 says some run started here did not succeed: one cancelled because you quit counts,
    on screen or not (docs/dashboard.md, Starting it)."""
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        approval, _ = await start_approval_then_fanout(pilot, app)
        release(folder, *"abcdefghij")
        await wait_for(pilot, lambda: app.view.status == "completed", what="the fanout run", timeout=60)
        await quit_answering(pilot, app, "c")
    assert f"run {approval} of approval: cancelled" in app.summary()
    assert app.return_code == 1


async def test_the_workflow_list_shows_a_run_of_ours_going_out_of_sight(folder: Path, db: Path) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        approval, _ = await start_approval_then_fanout(pilot, app)
        entry = app.catalog.by_name("approval")
        assert entry is not None
        listing = app.main_screen.workflow_list  # type: ignore[union-attr]

        def mark() -> str:
            return str(listing.get_option(entry.path).prompt).split("\u00a0")[0]

        await wait_for(pilot, lambda: "◷" in mark(), what="approval shown waiting", timeout=10)
        app.host.gates.approve(approval, "human_approval", "tester", None, ["now"])  # type: ignore[union-attr]
        await wait_for(pilot, lambda: "✓" in mark(), what="approval shown completed", timeout=30)
        told = [n.message for n in app._notifications]
        assert any(f"approval (run {short_id(approval)}) completed" in t for t in told), told
        await cancel_on_screen(pilot, app)
        app.open_past_run(approval)  # fanout, its end drawn here, goes out of sight
        await wait_for(pilot, lambda: app.view.root_run_id == approval, what="approval opened")
        await pilot.pause(2.5)  # two reads of runs out of sight: the end drawn here is not told again
        told = [n.message for n in app._notifications]
        assert not [t for t in told if "— h lists it" in t and "fanout" in t], told


async def test_keeping_a_run_out_of_sight_still_says_how_the_run_on_screen_ended(
    folder: Path, db: Path
) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        approval, fanout = await start_approval_then_fanout(pilot, app)
        await cancel_on_screen(pilot, app)
        await quit_answering(pilot, app, "b")  # asked about approval, still at its gate
    assert app.return_code == 1  # the run on screen was cancelled
    lines = app.summary().splitlines()
    assert fanout in lines[0] and " · cancelled · " in lines[0]
    assert f"run {approval} keeps running in the background" in app.summary()
    assert f"run {fanout} keeps running" not in app.summary()


def out_of_sight(folder: Path, tmp_path: Path, name: str, runner: Any) -> tuple[Any, list[Any], Launched]:
    """A headless session whose run of `name` (pending in its store) a runner `runner` runs,
    then out of sight (as when another run is started); its reports; the launch. The store is
    left open: the stopped follower's thread may still be ending its last read."""
    import threading

    from runkon_flow.persistence.models import NewRun

    store = SqliteStore(tmp_path / "runs.db")
    session, reports = headless_session(folder, host=None, store=store)
    session.driver.spawn = lambda job, **_: threading.Thread(
        target=job, daemon=True
    ).start()  # follower loops
    launched = Launched(store.create_run(NewRun(workflow_name=name)).id, name, None, runner, tmp_path / "log")
    session.handle(launched)
    session.stop_following()
    return session, reports, launched


def test_a_run_of_ours_whose_runner_died_before_starting_leaves_no_status_behind(
    folder: Path, tmp_path: Path
) -> None:
    from runkon_tui.session import OursRead

    dead = subprocess.Popen(["true"])
    dead.wait()
    session, reports, _ = out_of_sight(folder, tmp_path, "fanout", dead)  # pending: never taken up
    session.poll_background()
    wait_for_reports(reports, len(reports) + 1)
    session.handle(next(r for r in reversed(reports) if isinstance(r, OursRead)))
    assert "fanout" not in session.workflow_statuses()  # not `pending` for good
    assert session.runs_going() == []


def test_a_run_of_ours_out_of_sight_that_starts_waiting_at_a_gate_is_told(
    folder: Path, tmp_path: Path
) -> None:
    from runkon_tui.session import OursRead

    runner = subprocess.Popen(["sleep", "30"])
    try:
        session, _, launched = out_of_sight(folder, tmp_path, "approval", runner)
        run_id = launched.run_id
        left_waiting = session.handle(OursRead({run_id: ("waiting", False, launched)}))
        assert left_waiting is None  # it was left waiting: nothing new
        assert session.handle(OursRead({run_id: ("running", False, launched)})) is None
        told = session.handle(OursRead({run_id: ("waiting", False, launched)}))
        assert told is not None and told.severity == "warning"
        assert told.text == f"approval (run {short_id(run_id)}) waits at a gate — i opens the gate inbox"
        assert session.workflow_statuses()["approval"] == "waiting"
    finally:
        runner.kill()
        runner.wait()


async def test_the_quit_question_follows_the_runs_still_going(folder: Path, db: Path) -> None:
    app = runner_app(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        approval, fanout = await start_approval_then_fanout(pilot, app)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit question")
        question = app.screen

        def asked() -> str:
            return str(question.query_one("#question").render())

        assert "2 runs started here" in asked()
        app.host.cancel(approval, "cancelled elsewhere")  # type: ignore[union-attr]
        await wait_for(
            pilot, lambda: asked().startswith(f"Run {short_id(fanout)} of fanout is active"), timeout=30
        )
        assert str(question.query_one("#cancel").label) == "Cancel run (c)"
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.is_running, what="exit", timeout=30)
    assert final_status(db, fanout) is RunStatus.CANCELLED


async def test_the_header_says_runs_of_ours_go_on_out_of_sight_instead_of_idle(tmp_path: Path) -> None:
    """A run started here waits at its gate out of sight (another run was started over it): the
    header no longer says plain `idle` as if nothing went on (docs/dashboard.md, "80×24")."""
    from runkon_flow.persistence.memory import InMemoryStore
    from runkon_flow.persistence.models import NewRun

    from runkon_tui.session import OursRead
    from tests.tui import scenarios
    from tests.tui.conftest import feed, make_app

    store = InMemoryStore()
    app = make_app(store=store)
    runner = subprocess.Popen(["sleep", "30"])
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.main_screen
            assert screen is not None

            def header() -> str:
                return str(screen.header.render())

            assert header().endswith(" · idle")
            app.session.poll_background = lambda: None  # type: ignore[method-assign]  # the test reads for it
            run_id = store.create_run(NewRun(workflow_name="review-pr")).id
            launched = Launched(run_id, "review-pr", None, runner, tmp_path / "log")
            app.session.handle(launched)
            app.session.stop_following()  # out of sight: a run started over it, not yet drawn
            for status in ("running", "waiting"):
                app.post_message(SessionReport(OursRead({run_id: (status, False, launched)})))
                await pilot.pause()
            assert header() == "1 broken · idle here · 1 run of ours going (1 at a gate) — h lists it"

            app.session.bridge.watch(None)
            feed(app, scenarios.failed_run().events)  # another run, ended, on screen
            await pilot.pause()
            assert "✗ failed" in header() and header().endswith(" · +1 run of ours going (1 at a gate)")
    finally:
        runner.kill()
        runner.wait()


@pytest.mark.parametrize("in_runner", [True, False], ids=["runner", "dashboard"])
@pytest.mark.parametrize("how", ["resume", "retry"])
def test_a_run_whose_child_workflow_is_broken_is_refused_before_anything_starts(
    folder: Path, tmp_path: Path, in_runner: bool, how: str
) -> None:
    """Resuming or retrying a run whose fan-out workflow no longer parses used to start a runner
    (or the engine), which refused it; the dashboard then showed the runner's error line and
    "Run not started". Now it says what is wrong at file:line:col, as for a new run, and
    starts nothing and writes nothing."""
    from runkon_flow.workspace import Workspace

    from runkon_tui.history import past_run_view

    store = SqliteStore(tmp_path / "runs.db")
    host = Workspace([folder], store)
    run_id = host.create_run("quick", {})
    (folder / "quick-item.wf").write_text("workflow quick-item {{\n")  # the typo of the day
    host.reload()
    before = (store.get_run(run_id), store.last_event_seq(run_id))
    session, reports = headless_session(folder, host, store)
    session.runs_in_runner = in_runner
    session.show(past_run_view(store, run_id, session.catalog.definition, time.time))
    if how == "resume":
        session.resume(run_id)
    elif in_runner:
        session._launch("retry", "quick", None, run_id=run_id, retry={"x": ["x"]})
    else:
        session._engine_job("quick", {}, run_id, {"x": ["x"]})
    [report] = reports
    assert type(report).__name__ == "RunRejected", reports
    assert any(f"{folder / 'quick-item.wf'}:" in p for p in report.problems), report.problems
    assert (store.get_run(run_id), store.last_event_seq(run_id)) == before
    session.handle(report)
    assert session.view.read_only and not session.run_active  # the past run it was, nothing going
    store.close()


def test_a_resume_in_a_runner_is_checked_on_the_definition_the_runner_resumes_with(
    folder: Path, tmp_path: Path
) -> None:
    """The run's file is broken now: the runner resumes the run's own definition (as the engine
    here would: `Workspace.resume_plan`, not the last good one it holds). Checked on the last good
    one, the dashboard refused a resume for a workflow only that definition calls."""
    from runkon_flow.workspace import Workspace

    from runkon_tui.history import past_run_view

    def save(text: str, moment: int) -> None:
        (folder / "outer.wf").write_text(text)
        os.utime(folder / "outer.wf", (time.time() + moment, time.time() + moment))
        host.reload()

    (folder / "kid.wf").write_text('workflow kid {\n  script s { run = "true" }\n}\n')
    store = SqliteStore(tmp_path / "runs.db")
    host = Workspace([folder], store)
    save("workflow outer {\n  call workflow kid\n}\n", 5)
    run_id = host.create_run("outer", {})  # stored: it calls kid
    save("workflow outer {\n  call workflow gone\n}\n", 10)  # the last good definition
    save("workflow outer {\n  call workflow\n", 15)  # broken now

    def no_runner(*_: object, **__: object) -> None:
        raise RuntimeError("no runner in this test")

    host.launch = no_runner  # type: ignore[method-assign]
    session, reports = headless_session(folder, host, store)
    session.show(past_run_view(store, run_id, session.catalog.definition, time.time))
    session.resume(run_id)
    [report] = reports
    assert type(report).__name__ == "LaunchFailed", reports  # past the check: kid loads
    assert "no runner in this test" in report.text
    store.close()


def test_a_run_started_in_a_runner_says_the_checks_warnings(folder: Path, db: Path) -> None:
    """The dashboard's runs go to a background runner by default: the check's warnings (an agent
    program not on PATH here) were said nowhere there — the runner's log only — and the step just
    failed. They come with the launch, to the engine log and a toast."""
    from runkon_flow.workspace import Workspace

    (folder / "agents" / "ghost.md").write_text('---\ncommand: ["no-such-program-xyz"]\n---\nHi.\n')
    (folder / "haunted.wf").write_text("workflow haunted {\n  call ghost\n}\n")
    store = SqliteStore(db)
    host = Workspace([folder], store)
    session, reports = headless_session(folder, host, store)
    session.catalog.reload()
    session._launch("run haunted", "haunted", host.find("haunted"), inputs={})
    launched = next(r for r in reports if isinstance(r, Launched))
    launched.runner.wait(timeout=60)
    warning = (
        f"{folder / 'agents' / 'ghost.md'}:2: warning: agent 'ghost': 'no-such-program-xyz' is not a "
        "command on PATH here (the run's PATH may differ)"
    )
    assert len(launched.warnings) == 1 and launched.warnings[0].startswith(warning), launched.warnings
    notice = session.handle(launched)
    assert notice is not None and notice.severity == "warning"
    # Short: its location is in the engine log, and its long hint (`(hint: install it …)`) too.
    message = warning.partition(": warning: ")[2]
    assert notice.text.split("\n") == ["all of it in the engine log (l):", message + "…"]
    assert [line.text for line in session.view.engine_log if line.level == "warning"] == list(
        launched.warnings
    )
    session.stop_following()
    store.close()
