"""`runkon-tui` starts with the store only and builds the engine right after its first frame
(`open_workspace(..., deferred=True)` → `DeferredHost`): the first frame does not wait for the
engine's runtime, plug-ins, approvals and hooks, and nothing else changes for the user — runs
start, a broken engine is reported, hooks run and their problems are shown."""

from __future__ import annotations

import gc
import sys
import threading
import time
from pathlib import Path

import pytest
from runkon_flow.workspace import Workspace

from runkon_tui.host import DeferredHost, open_workspace
from tests.tui.conftest import make_app, wait_for
from tests.tui.test_engine_e2e import run_quick
from tests.tui.test_new_user import screen_text


async def test_the_engine_is_built_after_the_first_frame_and_runs_work(folder: Path, tmp_path: Path) -> None:
    opened = open_workspace([folder], tmp_path / "runs.db", deferred=True)
    deferred = opened.host
    assert isinstance(deferred, DeferredHost) and not deferred.built  # only the store so far
    app = make_app(host=deferred, store=opened.store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.host, Workspace), what="the engine to be built")
            assert deferred.built and not deferred.problems
            await run_quick(pilot, app)
            assert app.view.status == "completed", app.view.summary_text()
    finally:
        deferred.close()
        opened.store.close()


async def test_an_engine_that_cannot_start_is_reported_after_the_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the [ray] extra
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "hello.wf").write_text('workflow hello { script s { run = "true" } }')
    opened = open_workspace([tmp_path / "wf"], tmp_path / "runs.db", executor="ray", deferred=True)
    assert opened.problems == []  # known only once the engine is built
    app = make_app(host=opened.host, store=opened.store, dirs=[tmp_path / "wf"])
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.host is None, what="the engine to fail")
            await wait_for(pilot, lambda: app._notifications, what="the problem's toast")
            (toast,) = list(app._notifications)
            assert "engine unavailable" in str(toast.message) and "runkon-tui[ray]" in str(toast.message)
            await pilot.pause()
            assert "⏎ Run" not in screen_text(app)[-1]  # browse-only: no Run key
            await pilot.press("enter")  # and enter does not try to run
            await pilot.pause()
            assert app.view.root is None and not app.run_active
    finally:
        opened.store.close()


def test_a_key_before_the_engine_is_built_builds_it_once(folder: Path, tmp_path: Path) -> None:
    builds: list[int] = []
    gate = threading.Event()

    def build() -> tuple[Workspace, list[str], None]:
        builds.append(1)
        gate.wait(5)
        return Workspace([folder], opened.store), [], None

    opened = open_workspace([folder], tmp_path / "runs.db", deferred=True)
    deferred = DeferredHost(build)
    worker = threading.Thread(target=deferred.build)  # the app's build after the first frame
    worker.start()
    seen: list[object] = []
    key = threading.Thread(target=lambda: seen.append(deferred.prepare_inputs("quick", {"who": "me"})))
    key.start()  # a key pressed meanwhile waits for that build instead of starting another
    time.sleep(0.1)
    gate.set()
    worker.join(5)
    key.join(5)
    try:
        assert builds == [1] and seen == [{"who": "me"}]
        assert isinstance(deferred.host, Workspace)
    finally:
        opened.store.close()


def test_hooks_are_opened_with_the_engine_and_their_problems_reach_the_screen(tmp_path: Path) -> None:
    out = tmp_path / "hook.txt"
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(f"hooks:\n  - events: ['workflow_run.*']\n    run: cat >> {out}\n")
    opened = open_workspace([tmp_path], tmp_path / "runs.db", hooks=str(hooks), deferred=True)
    deferred = opened.host
    assert isinstance(deferred, DeferredHost) and opened.hooks is None
    told: list[str] = []
    deferred.on_hook_problem = told.append
    try:
        deferred.build()
        assert deferred.hooks is not None and deferred.hooks.on_problem == told.append
    finally:
        deferred.close()
        opened.store.close()

    bad = tmp_path / "bad.yaml"
    bad.write_text("hooks:\n  - events: gate.waiting\n")
    opened = open_workspace([tmp_path], tmp_path / "runs2.db", hooks=str(bad), deferred=True)
    try:
        deferred = opened.host
        assert isinstance(deferred, DeferredHost)
        assert isinstance(deferred.build(), Workspace) and deferred.hooks is None
        assert deferred.problems == [
            f"hooks not used: {bad}:2: hooks.0: give exactly one of 'run' (a shell command) or 'post' (a URL)"
        ]
    finally:
        opened.store.close()


async def test_the_collector_is_off_until_the_first_frame_then_on(tmp_path: Path) -> None:
    """`runkon-tui` starts with the garbage collector off (cli.main); the app turns it back on
    once its first frame is drawn, so a long session does not leak cycles."""
    gc.disable()  # as cli.main does
    try:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, gc.isenabled, what="the collector to be turned on")
    finally:
        gc.enable()


def test_the_collector_is_on_again_when_runkon_tui_returns(tmp_path: Path) -> None:
    from runkon_tui.cli import main

    assert main([str(tmp_path / "missing")]) == 2  # any way out of main
    assert gc.isenabled()


async def test_a_run_imports_nothing_the_app_did_not_load_right_after_its_first_frame(
    folder: Path, tmp_path: Path
) -> None:
    """A run's end rings the bell through the hooks package (YAML, HTTP): imported then, it held
    the interpreter while the engine's threads were finishing the run. It is loaded after the
    first frame instead, with whatever else a run needs."""
    opened = open_workspace([folder], tmp_path / "runs.db", deferred=True)
    app = make_app(host=opened.host, store=opened.store, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.host, Workspace), what="the engine to be built")
            await wait_for(pilot, lambda: gc.isenabled(), what="the start-up heap to be frozen")
            before = set(sys.modules)
            await run_quick(pilot, app)
            assert app.view.status == "completed", app.view.summary_text()
            await pilot.pause()
            assert sorted(set(sys.modules) - before) == []
    finally:
        opened.host.close()
        opened.store.close()


# ------------------------------------------------------------------ the store, opened after the first frame


def test_runkon_tui_starts_without_what_its_first_frame_does_not_use(folder: Path, tmp_path: Path) -> None:
    """What `runkon-tui` has imported and done when the app can draw: the store's code, `sqlite3`
    and `ulid` are not loaded and the database is not opened (nor created) yet, nor are the
    failure clusters (no fan-out on a first frame) loaded. A fresh process: this one has them all."""
    import subprocess

    db = tmp_path / "runs.db"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runkon_tui.host import open_workspace\n"
        "import runkon_tui.app\n"
        "opened = open_workspace([Path(sys.argv[1])], sys.argv[2], deferred=True)\n"
        "heavy = ('sqlite3', 'ulid', 'runkon_flow.persistence.sqlite', 'runkon_flow.persistence.memory',\n"
        "         'runkon_flow.observe.clusters')\n"
        "print(sorted(m for m in heavy if m in sys.modules), Path(sys.argv[2]).exists())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(db)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[] False"


async def test_the_store_is_opened_right_after_the_first_frame_and_used_directly(
    folder: Path, tmp_path: Path
) -> None:
    from runkon_flow.persistence.sqlite import SqliteStore

    from runkon_tui.host import DeferredStore

    db = tmp_path / "runs.db"
    SqliteStore(db).close()  # a run database (one that does not exist yet is not made by a look)
    opened = open_workspace([folder], db, deferred=True)
    lazy = opened.store
    assert isinstance(lazy, DeferredStore) and not lazy.opened
    app = make_app(host=opened.host, store=lazy, dirs=[folder], clock=time.time)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.store is not lazy, what="the store to be opened")
            assert isinstance(app.store, SqliteStore) and app.session.store is app.store
            await wait_for(pilot, lambda: isinstance(app.host, Workspace), what="the engine to be built")
            await run_quick(pilot, app)
            assert app.view.status == "completed", app.view.summary_text()
            assert app.store.get_run(app.view.root_run_id) is not None  # the run went to the file
    finally:
        opened.host.close()
        lazy.close()


async def test_an_unusable_store_is_reported_after_the_first_frame_in_the_same_words(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not sqlite")
    workflows = Path("tests/tui/fixtures/workflows")
    said = open_workspace([workflows], bad)  # opened at once: what it has always said
    (problem,) = said.problems
    assert problem.startswith("run store unusable, runs kept in memory (not saved): cannot open run database")
    assert said.store_note == "in-memory store: runs are not saved"
    opened = open_workspace([workflows], bad, deferred=True)
    assert opened.problems == [] and opened.store_note is None  # known once it is opened
    app = make_app(host=opened.host, store=opened.store, dirs=[workflows])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app._notifications, what="the store's problem")
        assert [n.message for n in app._notifications] == [problem]
        assert problem in [line.text for line in app.view.engine_log]
        assert f"⚠ {said.store_note}" in [line.text for line in app.view.engine_log]
        await pilot.pause()
        assert "in-memory store" in screen_text(app)[0]  # the header, all session
        assert problem in [line.text for line in app.problems.lines]  # the errors log


async def test_a_database_that_does_not_exist_is_said_after_the_first_frame_and_not_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflows = Path("tests/tui/fixtures/workflows").resolve()
    monkeypatch.chdir(tmp_path)
    opened = open_workspace([workflows], Path("typo/deeper/runs.db"), deferred=True)  # as typed
    assert not (tmp_path / "typo").exists()
    app = make_app(host=opened.host, store=opened.store, dirs=[workflows])
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.store_note, what="the store to be opened")
            await pilot.pause()
            assert "⚠ no runs yet: typo/deeper/runs.db does not exist yet" in screen_text(app)[0]
            assert not (tmp_path / "typo").exists()  # a look made nothing
    finally:
        opened.store.close()


async def test_attach_waits_for_the_store_opened_after_the_first_frame(folder: Path, tmp_path: Path) -> None:
    from tests.tui.test_attach import detach, final_status

    db = tmp_path / "runs.db"
    run_id = detach(folder, db, "quick")
    final_status(db, run_id)
    opened = open_workspace([folder], db, deferred=True)
    app = make_app(host=opened.host, store=opened.store, dirs=[folder], clock=time.time, attach=run_id)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.view.root_run_id == run_id, what="the attached run")
            await wait_for(pilot, lambda: app.view.status == "completed", what="its stored end")
    finally:
        opened.host.close()
        opened.store.close()


# ------------------------------------------------------------------ a database that holds no runs yet


def _app_on(opened, folder: Path):  # type: ignore[no-untyped-def]
    return make_app(host=opened.host, store=opened.store, dirs=[folder], clock=time.time)


async def _look_only(opened, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """A session on `opened` that only looks: the engine built, the history opened, nothing run."""
    app = _app_on(opened, folder)
    async with app.run_test(size=(200, 50)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.host, Workspace), what="the engine to be built")
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None) == [], what="the history")


async def _browse_then_run(opened, folder: Path, db_label: str, why: str) -> str:  # type: ignore[no-untyped-def]
    """A session on `opened`, a database that holds no runs: the header and the history say so,
    and a run started here is kept in it. The header after the run."""
    app = _app_on(opened, folder)
    async with app.run_test(size=(200, 50)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.host, Workspace), what="the engine to be built")
        await pilot.pause()
        assert f"⚠ no runs yet: {db_label} {why}" in screen_text(app)[0]
        await pilot.press("h")
        await wait_for(pilot, lambda: getattr(app.screen, "rows", None) == [], what="the history")
        await pilot.pause()
        status = " ".join(line.strip() for line in screen_text(app)[-4:])
        assert f"no runs yet ({db_label} {why}) — run a workflow" in status, status
        await pilot.press("escape")
        await run_quick(pilot, app)
        assert app.view.status == "completed", app.view.summary_text()
        await pilot.pause()
        header = screen_text(app)[0]
        assert "no runs yet" not in header  # it holds one now
        return header


async def test_a_run_database_of_0_bytes_is_left_as_it_is_until_a_run_starts_here(
    folder: Path, tmp_path: Path
) -> None:
    # `touch runs.db` (or a typo'd path another tool made): looking must not give it runkon's
    # tables — the read commands leave it alone too — but a run started here makes it a run
    # database, as `runkon-flow run` does.
    from runkon_flow.persistence.sqlite import SqliteStore

    db = tmp_path / "runs.db"
    db.touch()
    opened = open_workspace([folder], db, deferred=True)
    try:
        await _look_only(opened, folder)
        assert db.stat().st_size == 0
        await _browse_then_run(opened, folder, str(db), "is empty")
    finally:
        opened.host.close()  # type: ignore[union-attr]
        opened.store.close()
    with SqliteStore(db) as store:
        assert [run.workflow_name for run in store.list_runs()] == ["quick"]


async def test_an_empty_postgresql_database_gets_runkon_tables_only_when_a_run_starts_here(
    folder: Path,
) -> None:
    from runkon_flow.persistence.pg_connect import display_dsn

    from tests import pg
    from tests.cli.test_cli_postgres import _runkon_tables

    dsn = pg.fresh_dsn()
    opened = open_workspace([folder], dsn, deferred=True)
    try:
        await _look_only(opened, folder)
        assert _runkon_tables(dsn) == []
        await _browse_then_run(opened, folder, display_dsn(dsn), "has no runkon tables")
    finally:
        opened.host.close()  # type: ignore[union-attr]
        opened.store.close()
    assert "workflow_runs" in _runkon_tables(dsn)
    with pg.open_db(dsn) as store:
        assert [run.workflow_name for run in store.list_runs()] == ["quick"]


def test_runs_another_process_starts_on_a_database_left_as_it_was_are_shown(tmp_path: Path) -> None:
    from runkon_flow.persistence import NewRun
    from runkon_flow.persistence.location import db_location
    from runkon_flow.persistence.sqlite import SqliteStore

    from runkon_tui.host import UnmadeStore

    db = tmp_path / "runs.db"
    db.touch()
    seen = UnmadeStore(db_location(str(db)), f"{db} is empty", look_again=0)
    assert seen.list_runs() == [] and db.stat().st_size == 0
    with SqliteStore(db) as elsewhere:  # `runkon-flow run --db runs.db` meanwhile
        run = elsewhere.create_run(NewRun(workflow_name="hello"))
    assert [r.id for r in seen.list_runs()] == [run.id] and seen.made and seen.note is None
    seen.close()


def test_a_read_kept_from_before_a_run_made_the_database_reads_the_database(tmp_path: Path) -> None:
    # The dashboard's DeferredStore keeps the methods it hands out: one kept while the database
    # held no runs must not go on answering "no runs" once a run started here made it.
    from runkon_flow.persistence import NewRun

    db = tmp_path / "runs.db"
    db.touch()
    store = open_workspace([tmp_path], db, deferred=True).store
    list_runs = store.list_runs
    assert list_runs() == []
    run = store.create_run(NewRun(workflow_name="hello"))
    assert [r.id for r in list_runs()] == [run.id]
    store.close()


async def test_start_up_problems_found_before_and_after_the_first_frame_are_one_toast_counting_all(
    tmp_path: Path,
) -> None:
    # A bad theme setting is found at mount, an unusable --db once the store is opened after the
    # first frame: two toasts, each titled `start-up problem` as if it were the only one.
    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not sqlite")
    workflows = tmp_path / "wf"
    workflows.mkdir()
    (workflows / "hello.wf").write_text('workflow hello { script s { run = "true" } }')
    opened = open_workspace([workflows], bad, deferred=True)
    app = make_app(host=opened.host, store=opened.store, dirs=[workflows], theme="nosuch")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.problems.lines) == 2, what="both problems")
        await pilot.pause()
        toasts = [(n.title, str(n.message)) for n in app._notifications]
        (title, message), *others = toasts
        assert not others, toasts
        assert title == "2 of 2 start-up problems (all in the errors log)"
        assert message.startswith("run store unusable, runs kept in memory (not saved)")
        assert [line.text.split(":")[0] for line in app.problems.lines] == [
            "unknown theme 'nosuch'; available",
            "run store unusable, runs kept in memory (not saved)",
        ]


async def test_a_run_database_that_does_not_exist_is_not_made_until_a_run_starts_here(
    folder: Path, tmp_path: Path
) -> None:
    # `--db ~/runs.bd` for `~/runs.db`: the dashboard made a new, empty database there, and its
    # empty history looked like "all my runs are gone". Now nothing is made until a run starts
    # here, as the read commands refuse to make one; a run made in a new folder says so.
    from runkon_flow.persistence.sqlite import SqliteStore

    db = tmp_path / "typo" / "runs.db"
    opened = open_workspace([folder], db, deferred=True)
    try:
        await _look_only(opened, folder)
        assert not db.parent.exists()
        header = await _browse_then_run(opened, folder, str(db), "does not exist yet")
        assert f"⚠ created {db.parent}/ for a new run database" in header, header
    finally:
        opened.host.close()  # type: ignore[union-attr]
        opened.store.close()
    with SqliteStore(db) as store:
        assert [run.workflow_name for run in store.list_runs()] == ["quick"]


def test_the_default_run_database_not_made_yet_is_a_first_start_not_a_warning(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No --db, no $RUNKON_DB, nothing run yet: a first start, not a typo — the header has no ⚠
    # (the history still says why it is empty), and nothing is made by looking.
    from runkon_flow.persistence.paths import default_db_path

    from runkon_tui.host import UnmadeStore

    monkeypatch.delenv("RUNKON_DB", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    opened = open_workspace([folder], None)
    try:
        assert isinstance(opened.store, UnmadeStore) and opened.store_note is None
        assert opened.store.why == f"{default_db_path()} does not exist yet"
        assert not default_db_path().exists()
    finally:
        opened.store.close()
