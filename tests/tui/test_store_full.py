"""A run the dashboard hosts (`--run-in dashboard`) whose run database stops taking writes (its
disk full, read-only, an I/O error — `StoreUnavailable`) is stopped by the engine and left as it
was stored, to be resumed once the database works again. The dashboard says that — not "engine
crashed" with an "Engine error" toast, as it did."""

from __future__ import annotations

from pathlib import Path

from runkon_flow.persistence.models import RunStatus
from runkon_flow.persistence.sqlite import SqliteStore

from runkon_tui.app import RunkonApp
from tests.tui.conftest import real_app, release, start_fanout_two_done, wait_for


def toasts(app: RunkonApp) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


async def test_a_run_whose_database_takes_no_writes_reads_stopped_and_resumable(
    folder: Path, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_fanout_two_done(pilot, app, folder)
        store._db.execute("PRAGMA query_only = 1")  # the file becomes read-only: SQLITE_READONLY
        release(folder, *"cdefghij")
        await wait_for(pilot, lambda: not app.run_active, what="run to stop", timeout=30)

        view = app.view
        run_id = view.root_run_id
        assert run_id is not None
        log = [line.text for line in view.engine_log]
        assert not [line for line in log if "crash" in line], log
        (stopped,) = [line for line in log if line.startswith("run stopped: ")]
        assert "the run database can record nothing more (run database " in stopped
        assert "attempt to write a readonly database" in stopped
        assert stopped.endswith("stays as it was stored — when the database works again, r resumes it")
        assert view.status == "interrupted"
        assert [title for title, _ in toasts(app)] == ["Run finished"], toasts(app)
        assert "Engine error" not in str(toasts(app))
        assert app.main_screen is not None and app.main_screen.check_action("resume_run", ()) is True

        # The database works again. Nothing more is done by hand: the resume's own first writes
        # (each alone in the queue) tell the store so — before, they did not, the store kept
        # saying it took no writes, and the resumed fan-out stopped again at once.
        store._db.execute("PRAGMA query_only = 0")
        run = store.get_run(run_id)
        assert run is not None and run.status is RunStatus.RUNNING
        assert run.owner_token  # the stopped engine could not let go of its lease …

        # … yet `r` takes the run at once: that engine was this process's, and runs it no more.
        # Before, `r` was refused — "workflow run already owned by another engine" (itself) —
        # until the lease lapsed, and the line above said to wait for that.
        await pilot.press("r")
        refused = lambda: "Nothing to do" in [title for title, _ in toasts(app)]  # noqa: E731
        done = lambda: app.view.status == "completed"  # noqa: E731
        await wait_for(pilot, lambda: refused() or done(), what="resumed run", timeout=30)
        assert not refused() and "owned by another engine" not in str(toasts(app)), toasts(app)
        assert store.unavailable() is None
