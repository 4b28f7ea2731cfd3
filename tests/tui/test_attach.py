"""The dashboard follows runs other processes execute (`runkon-flow run --detach`, another
dashboard, cron): it draws them from their stored events, and cancels and approves them through
the store as the CLI does (docs/dashboard.md, "Runs held elsewhere")."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from runkon_flow.event_log import read_envelopes
from runkon_flow.persistence.models import RunStatus
from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.runtime.lease import holder_of
from runkon_flow.workspace import Workspace
from textual.widgets import Input

from runkon_tui.app import RunkonApp
from runkon_tui.screens.confirm import ConfirmScreen
from runkon_tui.screens.gate import GateScreen
from runkon_tui.screens.quit import QuitScreen
from runkon_tui.screens.runs import RunsScreen
from tests.tui.conftest import make_app, real_app, release, select, wait_for

CLI = [sys.executable, "-m", "runkon_flow.cli"]


def detach(folder: Path, db: Path, workflow: str) -> str:
    """`runkon-flow run WORKFLOW --detach` in a separate process; the run id it printed."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runkon_flow.cli",
            "run",
            workflow,
            "--dir",
            str(folder),
            "--db",
            str(db),
            "--detach",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0].removeprefix("run_id=")


def final_status(db: Path, run_id: str, timeout: float = 30.0) -> RunStatus:
    """The run's status once its (other) process has finished it."""
    deadline = time.monotonic() + timeout
    with SqliteStore(db) as store:
        while True:
            run = store.get_run(run_id)
            assert run is not None
            if run.status.is_terminal and run.owner_token is None:
                return run.status
            assert time.monotonic() < deadline, f"run {run_id} still {run.status}"
            time.sleep(0.05)


def app_on(folder: Path, db: Path) -> RunkonApp:
    return real_app(folder, SqliteStore(db))


async def start_fanout(pilot, app: RunkonApp) -> str:  # type: ignore[no-untyped-def]
    """Start the `fanout` workflow from the list; its run id once its items are collected (they
    wait for files under `released/`)."""
    await select(pilot, app, "fanout")
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.view.active_fanout() is not None, what="items collected")
    run_id = app.view.root_run_id
    assert run_id is not None
    return run_id


async def test_attach_to_runs_of_another_process_see_items_move_approve_its_gate_cancel_another(
    folder: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    fanout = detach(folder, db, "fanout")
    approval = detach(folder, db, "approval")
    app = app_on(folder, db)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            # The runs screen lists both, live, with the process that holds them.
            await pilot.press("h")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rows, what="runs")
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            held = {row.run.id: row for row in screen.rows}
            assert set(held) >= {fanout, approval}
            table = screen.query_one("DataTable")
            holder = str(table.get_row(fanout)[6])  # type: ignore[attr-defined]
            assert re.match(r"pid \d+ on \S+ · lease \d+s$", holder), holder
            # Open the fan-out run: it is followed live.
            screen.query_one("DataTable").move_cursor(row=list(held).index(fanout))  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.attached_run_id == fanout, what="attached")
            await wait_for(pilot, lambda: app.view.active_fanout() is not None, what="items collected")
            fan = app.view.active_fanout()
            assert fan is not None
            assert fan.count("completed") == 0
            release(folder, "a", "b")
            await wait_for(pilot, lambda: app.view.active_fanout().count("completed") == 2, what="2 items")
            release(folder, "c")
            await wait_for(pilot, lambda: app.view.active_fanout().count("completed") == 3, what="3 items")
            assert app.main_screen is not None
            assert "3/10" in app.main_screen.tree.nodes_by_uid["body.1"].label.plain
            # Cancel it from here: the store carries the cancel to the process that runs it.
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.view.status == "cancelled", what="cancelled", timeout=30)
            assert final_status(db, fanout) is RunStatus.CANCELLED
            await wait_for(pilot, lambda: app.attached_run_id is None, what="follow to end")

            # Attach straight to the other run and approve its gate.
            app.attach_run(approval)
            await wait_for(pilot, lambda: app.view.waiting_gates(), what="the gate to wait", timeout=30)
            assert app.view.status == "waiting"
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
            app.screen.query_one("#choices").toggle("now")  # type: ignore[attr-defined]
            app.screen.query_one("#note", Input).value = "from the dashboard"
            await pilot.press("ctrl+y")
            await wait_for(
                pilot, lambda: app.view.status == "completed", what="approved run ends", timeout=30
            )
            assert final_status(db, approval) is RunStatus.COMPLETED
            with SqliteStore(db) as store:
                gate = next(s for s in store.get_steps(approval) if s.step_name == "human_approval")
                assert gate.gate_approved_by == "tester" and gate.gate_feedback == "from the dashboard"
    finally:
        release(folder, *"abcdefghij")
        stop_holders(db, fanout, approval)  # a failed test must not leave a gate waiting for an hour


def stop_holders(db: Path, *run_ids: str) -> None:
    """SIGTERM the background runners still holding these runs (their pid is in the lease token)."""
    with SqliteStore(db) as store:
        for run_id in run_ids:
            run = store.get_run(run_id)
            holder = holder_of(run.owner_token) if run is not None else None
            if holder is not None and holder.pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(holder.pid, signal.SIGTERM)


async def test_a_past_run_shows_the_logs_it_showed_live(folder: Path, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    app = app_on(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        run_id = app.host.create_run("quick", {"who": "tester"})  # type: ignore[union-attr]
        app.attach_run(run_id)  # a pending run: followed until some engine starts it
        await wait_for(pilot, lambda: app.attached_run_id == run_id, what="attached")
        other = SqliteStore(db)
        try:
            Workspace([folder], other).execute(run_id)
        finally:
            other.close()
        await wait_for(pilot, lambda: app.view.status == "completed", what="the run to end")
        live_log = [(line.text, line.level) for line in app.view.engine_log]
        live_output = app.view.root.steps["body.0"].last_output(5)  # type: ignore[union-attr]
        await wait_for(pilot, lambda: app.attached_run_id is None, what="follow to end")
        app.open_past_run(run_id)
        await wait_for(pilot, lambda: app.view.read_only, what="past run")
        assert [(line.text, line.level) for line in app.view.engine_log] == live_log
        assert app.view.root.steps["body.0"].last_output(5) == live_output == ["hello tester"]  # type: ignore[union-attr]


async def test_quitting_keeps_the_run_going_in_the_background_and_it_can_be_attached_again(
    folder: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    app = app_on(folder, db)
    watcher: subprocess.Popen | None = None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            run_id = await start_fanout(pilot, app)
            release(folder, "a")
            await wait_for(pilot, lambda: app.view.active_fanout().count("completed") == 1, what="item a")
            watcher = subprocess.Popen(  # a `watch` in another terminal sees the run through the hand-over
                [*CLI, "watch", run_id, "--db", str(db), "--progress", "plain"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit question")
            await pilot.press("b")
            await wait_for(pilot, lambda: not app.is_running, what="exit", timeout=30)
        assert app.return_code == 0
        assert f"run {run_id} keeps running in the background" in app.summary()
        assert f"runkon-tui --attach {run_id}" in app.summary()
        release(folder, *"bcdefghij")
        assert final_status(db, run_id, timeout=60) is RunStatus.COMPLETED
        assert watcher.wait(timeout=60) == 0  # followed to the end, never "interrupted" or "cancelled"
        with SqliteStore(db) as store:
            kinds = [e.event.type for e in read_envelopes(store, run_id)[0] if e.run_id == run_id]
            items = store.get_fan_out_items(
                next(s.id for s in store.get_steps(run_id) if s.role == "foreach" and s.status == "completed")
            )
            assert {i.item_id for i in items if i.status == "completed"} == set("abcdefghij")
            prepare = [s for s in store.get_steps(run_id) if s.step_name == "prepare"]
        assert "RunResumed" in kinds and kinds[-1] == "RunCompleted"
        assert len(prepare) == 1  # finished before the hand-over: not run again
        # The run can be attached again (here: its finished history, with its logs).
        again = app_on(folder, db)
        async with again.run_test(size=(120, 40)) as pilot:
            again.open_past_run(run_id)
            await wait_for(
                pilot, lambda: again.view.read_only and again.view.root is not None, what="past run"
            )
            assert again.view.status == "completed"
    finally:
        release(folder, *"abcdefghij")
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=30)


@contextlib.contextmanager
def foreground_run(folder: Path, db: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`runkon-flow run fanout` in a process of its own with a 1 s lease (kill it, and the run is
    interrupted a second later): the process and its run id. Killed and every item released at
    the end."""
    holder = subprocess.Popen(
        [
            *CLI,
            "run",
            "fanout",
            "--dir",
            str(folder),
            "--db",
            str(db),
            "--lease-ttl",
            "1",
            "--progress",
            "plain",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None
        yield holder, holder.stdout.readline().split()[0].removeprefix("run_id=")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        release(folder, *"abcdefghij")


async def test_a_holder_that_dies_shows_interrupted_and_resume_here_takes_the_run_over(
    folder: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    with foreground_run(folder, db) as (runner, run_id):
        app = app_on(folder, db)
        async with app.run_test(size=(120, 40)) as pilot:
            app.attach_run(run_id)
            await wait_for(pilot, lambda: app.view.active_fanout() is not None, what="items collected")
            release(folder, "a")
            await wait_for(pilot, lambda: app.view.active_fanout().count("completed") == 1, what="item a")
            runner.kill()  # the holder dies: no final status, its lease lapses within a second
            runner.wait(timeout=30)
            await wait_for(pilot, lambda: app.view.status == "interrupted", what="interrupted", timeout=30)
            assert app.attached_run_id is None
            # Nothing runs any more: the foreach it was in reads interrupted, and no ETA is given.
            root = app.view.root
            assert root is not None and root.steps["body.1"].status == "interrupted"
            await pilot.pause()
            screen = main_screen_of(app)
            assert "ETA" not in str(screen.item_detail.render())
            assert "■1" in str(screen.header.render()) and "▶" not in str(screen.header.render())
            assert main_screen_of(app).check_action("resume_run", ()) is True
            release(folder, *"bcdefghij")
            await pilot.press("r")  # this dashboard takes the run over
            # The final event is drawn a moment before the engine thread returns (run_active).
            await wait_for(pilot, lambda: not app.run_active, what="the engine to return", timeout=60)
            assert any(line.text.startswith("run resumed: fanout") for line in app.view.engine_log)
            assert app.view.status == "completed", app.view.summary_text()
        assert final_status(db, run_id) is RunStatus.COMPLETED


def main_screen_of(app: RunkonApp):  # type: ignore[no-untyped-def]
    screen = app.main_screen
    assert screen is not None
    return screen


async def test_a_run_kept_going_in_the_background_runs_the_dashboards_hooks_to_its_end(
    folder: Path, tmp_path: Path, monkeypatch
) -> None:
    from runkon_tui.host import open_workspace

    monkeypatch.delenv("RUNKON_HOOKS", raising=False)  # only the file given to the dashboard
    out = tmp_path / "hook.jsonl"
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(
        f"hooks:\n  - events: ['workflow_run.completed']\n    run: cat >> {out}; echo >> {out}\n"
    )
    db = tmp_path / "runs.db"
    opened = open_workspace([folder], db, hooks=str(hooks))
    assert opened.problems == []
    app = make_app(host=opened.host, store=opened.store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            run_id = await start_fanout(pilot, app)
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit question")
            await pilot.press("b")
            await wait_for(pilot, lambda: not app.is_running, what="exit", timeout=30)
    finally:
        opened.hooks.close()
    assert f"run {run_id} keeps running in the background" in app.summary()
    assert not out.exists() or not out.read_text().strip()  # the dashboard did not finish it
    release(folder, *"abcdefghij")
    assert final_status(db, run_id, timeout=60) is RunStatus.COMPLETED
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the runner's hook runs just after the run's end
    (event,) = [json.loads(line) for line in out.read_text().splitlines() if line]
    assert (event["event"], event["run_id"]) == ("workflow_run.completed", run_id)


async def test_closing_the_terminal_with_nothing_running_exits_with_129(
    folder: Path, tmp_path: Path, monkeypatch
) -> None:
    import runkon_tui.app as app_module

    app = app_on(folder, tmp_path / "runs.db")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        monkeypatch.setattr(app_module, "hung_up", lambda fd: True)  # the window was closed
        app._leave_if_terminal_gone()  # what its once-a-second check does
        await wait_for(pilot, lambda: not app.is_running, what="exit", timeout=30)
    assert app.return_value == 129  # what `runkon-tui` exits with: as if killed by SIGHUP


async def test_closing_the_terminal_keeps_a_hosted_run_going_in_the_background(
    folder: Path, tmp_path: Path, monkeypatch
) -> None:
    import runkon_tui.app as app_module

    db = tmp_path / "runs.db"
    app = app_on(folder, db)
    async with app.run_test(size=(120, 40)) as pilot:
        run_id = await start_fanout(pilot, app)
        monkeypatch.setattr(app_module, "hung_up", lambda fd: True)  # the window was closed
        app._leave_if_terminal_gone()  # what its once-a-second check does
        await wait_for(pilot, lambda: not app.is_running, what="exit", timeout=30)
    assert app.return_value == app.return_code == 129  # the command's exit status, as if SIGHUP
    assert f"run {run_id} keeps running in the background" in app.summary()
    release(folder, *"abcdefghij")
    assert final_status(db, run_id, timeout=60) is RunStatus.COMPLETED


async def test_attach_takes_the_short_id_the_dashboard_shows_and_refuses_an_ambiguous_one(
    folder: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    first, second = detach(folder, db, "quick"), detach(folder, db, "quick")
    final_status(db, first), final_status(db, second)
    shared = next(first[:n] for n in range(len(first), 0, -1) if second.startswith(first[:n]))  # time
    assert len(shared) >= 6
    app = real_app(folder, SqliteStore(db), attach="…" + second[-8:].lower())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.view.root_run_id == second, what="the run by its short id")
        assert app.view.status == "completed"
        app.attach_run(shared)
        told = lambda: [n.message for n in app._notifications if "runs: " in n.message]  # noqa: E731
        await wait_for(pilot, told, what="the ambiguity said")
        assert told()[0].startswith(f"cannot attach to run {shared}: run id '{shared}' matches ")
        assert told()[0].endswith("; give more of the id")
        assert app.view.root_run_id == second  # nothing guessed
