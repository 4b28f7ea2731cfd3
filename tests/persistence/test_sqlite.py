"""What only the SQLite store promises: the canonical file layout, durability across reopen, clear
errors for unusable files, and SQLite-level concurrency (busy waits, one transaction per batch)."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from runkon_flow.errors import PersistenceError
from runkon_flow.persistence import (
    FanOutItemStatus,
    FanOutItemUpdate,
    Fence,
    NewEvent,
    NewRun,
    NewStep,
    RunStatus,
    SqliteStore,
    StepStatus,
    StepUpdate,
    schema,
)
from runkon_flow.persistence import sqlite as sqlite_module
from runkon_flow.persistence.schema import DDL, RUN_UNFINISHED, SCHEMA_VERSION

from tests.threads import together_beside

from .conftest import FakeClock

ITEM_INSERT = "INSERT INTO workflow_run_step_fan_out_items (id, step_run_id, item_type, item_id) VALUES"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def sqlite_store(db: Path, clock: FakeClock):
    store = SqliteStore(db, clock=clock)
    yield store
    store.close()


def raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


# --------------------------------------------------------------------------- schema


def test_the_file_has_the_canonical_tables_and_columns(sqlite_store, db) -> None:
    conn = raw(db)
    assert columns(conn, "workflow_runs") == CANONICAL_RUN_COLUMNS
    assert columns(conn, "workflow_run_steps") == CANONICAL_STEP_COLUMNS
    assert columns(conn, "workflow_run_step_fan_out_items") == CANONICAL_ITEM_COLUMNS
    conn.close()


CANONICAL_RUN_COLUMNS = [
    "id", "workflow_name", "parent_run_id", "status", "dry_run", "trigger", "started_at", "ended_at",
    "result_summary", "definition_snapshot", "inputs", "parent_workflow_run_id", "iteration", "blocked_on",
    "total_duration_ms", "error", "dismissed", "workflow_title", "owner_token", "lease_until", "generation",
    "retry_request",  # ours, schema v4
    "rerun_of", "rerun_from",  # ours, schema v7 (v5 unused)
    "rerun_definition",  # ours, schema v11
]  # fmt: skip
CANONICAL_STEP_COLUMNS = [
    "id", "workflow_run_id", "step_name", "role", "can_commit", "condition_expr", "status", "child_run_id",
    "position", "started_at", "ended_at", "result_text", "condition_met", "iteration", "parallel_group_id",
    "context_out", "markers_out", "retry_count", "gate_type", "gate_prompt", "gate_timeout",
    "gate_approved_by", "gate_approved_at", "gate_feedback", "structured_output", "output_file",
    "gate_options", "gate_selections", "fan_out_total", "fan_out_completed", "fan_out_failed",
    "fan_out_skipped", "step_error", "node_path",
    "usage",  # ours, schema v6
]  # fmt: skip
CANONICAL_ITEM_COLUMNS = [
    "id", "step_run_id", "item_type", "item_id", "item_ref", "child_run_id", "status", "dispatched_at",
    "completed_at", "context",
    "attempt", "previous_child_run_id",  # ours, schema v4
]  # fmt: skip


def test_the_six_canonical_indexes_exist(sqlite_store, db) -> None:
    conn = raw(db)
    names = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    }
    conn.close()
    assert names == {
        "idx_workflow_runs_status",
        "idx_workflow_runs_parent_workflow_run_id",
        "idx_workflow_run_steps_run",
        "idx_steps_status_gate",
        "idx_workflow_run_steps_child_run_id",
        "idx_fan_out_items_step",
    }


def test_the_file_is_in_wal_mode_and_records_its_schema_version(sqlite_store, db) -> None:
    conn = raw(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_defaults_match_the_canonical_schema(sqlite_store, db) -> None:
    conn = raw(db)
    conn.execute("INSERT INTO workflow_runs (id, workflow_name) VALUES ('r', 'wf')")
    conn.execute("INSERT INTO workflow_run_steps (id, workflow_run_id) VALUES ('s', 'r')")
    conn.execute(f"{ITEM_INSERT} ('i', 's', 't', 'x')")
    conn.close()
    run = sqlite_store.get_run("r")
    assert (run.status, run.dry_run, run.trigger, run.iteration, run.dismissed, run.generation) == (
        RunStatus.PENDING, False, "", 0, False, 0,
    )  # fmt: skip
    assert run.started_at.endswith("Z")
    step = sqlite_store.get_step("s")
    assert (step.step_name, step.role, step.status, step.position, step.retry_count) == (
        "",
        "agent",
        "pending",
        0,
        0,
    )
    assert (step.fan_out_total, step.fan_out_completed, step.fan_out_failed, step.fan_out_skipped) == (
        None,
        0,
        0,
        0,
    )
    item = sqlite_store.get_fan_out_items("s")[0]
    assert (item.item_ref, item.status, item.context) == ("", "pending", {})


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO workflow_runs (id, workflow_name, status) VALUES ('x', 'wf', 'timed_out')",
        "INSERT INTO workflow_run_steps (id, workflow_run_id, role) VALUES ('x', 'r', 'actor')",
        "INSERT INTO workflow_run_steps (id, workflow_run_id, status) VALUES ('x', 'r', 'done')",
        "INSERT INTO workflow_run_steps (id, workflow_run_id) VALUES ('x', 'no-such-run')",
        f"{ITEM_INSERT} ('j', 's', 't', 'x')",
    ],
)
def test_the_schema_rejects_rows_the_spec_forbids(sqlite_store, db, statement) -> None:
    run_id = sqlite_store.create_run(NewRun(workflow_name="wf", run_id="r")).id
    step_id = sqlite_store.insert_step(NewStep(workflow_run_id=run_id, step_name="s"))
    conn = raw(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"{ITEM_INSERT} ('i', ?, 't', 'x')", (step_id,))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(statement.replace("'s'", f"'{step_id}'"))
    conn.close()


def test_a_cancelled_step_status_is_allowed(sqlite_store) -> None:
    run_id = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    gen = sqlite_store.acquire_lease(run_id, "t", 60)
    step_id = sqlite_store.insert_step(NewStep(workflow_run_id=run_id, step_name="s", retry_count=0))
    sqlite_store.update_step(step_id, StepUpdate(generation=gen, status=StepStatus.CANCELLED))
    assert sqlite_store.get_step(step_id).status is StepStatus.CANCELLED


# --------------------------------------------------------------------------- durability


def test_everything_survives_closing_and_reopening(db, clock) -> None:
    with SqliteStore(db, clock=clock) as first:
        run_id = first.create_run(NewRun(workflow_name="wf", inputs={"k": "v"})).id
        gen = first.acquire_lease(run_id, "t", 60)
        step_id = first.insert_step(
            NewStep(workflow_run_id=run_id, step_name="fe", role="foreach", retry_count=0)
        )
        ids = first.insert_fan_out_items(step_id, [("t", "a", "ra", {"c": "1"}), ("t", "b", "rb", {})])
        first.update_fan_out_item(ids[0], FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, "child"))
        first.update_step(step_id, StepUpdate.completed(gen, result_text="done"))
        first.set_waiting_blocked_on(run_id, {"type": "pr_checks", "gate_name": "g"})
        before = (first.get_run(run_id), first.get_steps(run_id), first.get_fan_out_items(step_id))
    with SqliteStore(db, clock=clock) as second:
        after = (second.get_run(run_id), second.get_steps(run_id), second.get_fan_out_items(step_id))
        assert after == before
        assert second.acquire_lease(run_id, "t", 60) == gen


def test_two_stores_on_one_file_see_each_others_writes(db) -> None:
    with SqliteStore(db) as a, SqliteStore(db) as b:
        run_id = a.create_run(NewRun(workflow_name="wf")).id
        b.update_run_status(run_id, RunStatus.CANCELLING, None, None)
        assert a.is_run_cancelled(run_id)


def test_timestamps_are_rfc3339_and_the_lease_uses_sqlite_datetime_text(sqlite_store, db, clock) -> None:
    run_id = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    clock.advance(0.25)
    sqlite_store.acquire_lease(run_id, "t", 30)
    conn = raw(db)
    started, lease = conn.execute("SELECT started_at, lease_until FROM workflow_runs").fetchone()
    conn.close()
    assert started == "2026-01-01T12:00:00.000Z"
    assert lease == "2026-01-01 12:00:30.250"


def test_a_lease_written_in_whole_seconds_is_still_compared_correctly(sqlite_store, db, clock) -> None:
    """Rows written by other tools use SQLite's `datetime('now')` form without fractions."""
    live = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    expired = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    conn = raw(db)
    conn.execute(
        "UPDATE workflow_runs SET owner_token = 'other', lease_until = '2026-01-01 12:00:01' WHERE id = ?",
        (live,),
    )
    conn.execute(
        "UPDATE workflow_runs SET owner_token = 'other', lease_until = '2026-01-01 11:59:59' WHERE id = ?",
        (expired,),
    )
    conn.close()
    clock.advance(0.5)
    assert sqlite_store.acquire_lease(live, "me", 10) is None
    assert sqlite_store.acquire_lease(expired, "me", 10) == 1


def test_malformed_json_columns_are_read_as_empty_and_logged(sqlite_store, db, caplog) -> None:
    run_id = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    step_id = sqlite_store.insert_step(NewStep(workflow_run_id=run_id, step_name="fe", role="foreach"))
    sqlite_store.insert_fan_out_item(step_id, "t", "a", "", {"k": "v"})
    conn = raw(db)
    conn.execute("UPDATE workflow_runs SET inputs = '{broken', blocked_on = '[1]'")
    conn.execute("UPDATE workflow_run_step_fan_out_items SET context = 'nope'")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="runkon_flow.persistence"):
        run = sqlite_store.get_run(run_id)
        item = sqlite_store.get_fan_out_items(step_id)[0]
    assert (run.inputs, run.blocked_on, item.context) == ({}, None, {})
    assert len(caplog.records) == 3


# --------------------------------------------------------------------------- unusable files


def test_a_file_that_is_not_a_database_gives_a_clear_error_naming_it(tmp_path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(PersistenceError) as info:
        SqliteStore(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "not a database" in message
    assert info.value.__cause__ is None
    assert bad.read_bytes().startswith(b"these are my notes")


def test_a_directory_in_place_of_the_file_gives_a_clear_error(tmp_path) -> None:
    with pytest.raises(PersistenceError, match="is a directory"):
        SqliteStore(tmp_path)


def test_an_impossible_parent_directory_gives_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PersistenceError, match="cannot create the directory"):
        SqliteStore(blocker / "sub" / "runs.db")


def test_missing_parent_directories_are_created(tmp_path) -> None:
    path = tmp_path / "a" / "b" / "runs.db"
    with SqliteStore(path) as store:
        store.create_run(NewRun(workflow_name="wf"))
    assert path.is_file()


def test_a_database_from_a_newer_runkon_is_refused(db) -> None:
    conn = raw(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(PersistenceError, match="newer than this runkon"):
        SqliteStore(db)


def test_a_steps_table_without_the_cancelled_status_is_refused_up_front(db) -> None:
    conn = raw(db)
    conn.execute(
        "CREATE TABLE workflow_run_steps (id TEXT PRIMARY KEY, workflow_run_id TEXT NOT NULL, "
        "status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','running','completed','failed',"
        "'skipped','waiting','timed_out')))"
    )
    conn.close()
    with pytest.raises(PersistenceError, match="does not allow 'cancelled'"):
        SqliteStore(db)


def test_an_existing_canonical_database_is_reused(db) -> None:
    with SqliteStore(db) as store:
        run_id = store.create_run(NewRun(workflow_name="wf")).id
    conn = raw(db)
    conn.execute("PRAGMA user_version = 0")  # as if created by a tool that does not version it
    conn.close()
    with SqliteStore(db) as store:
        assert store.get_run(run_id) is not None


def test_a_version_1_database_gains_node_paths_and_its_old_steps_still_open(db) -> None:
    conn = raw(db)
    for statement in schema.DDL:
        conn.execute(statement)  # the version-1 file: no node_path column
    conn.execute("INSERT INTO workflow_runs (id, workflow_name) VALUES ('r', 'wf')")
    conn.execute("INSERT INTO workflow_run_steps (id, workflow_run_id, step_name) VALUES ('s', 'r', 'old')")
    conn.execute("PRAGMA user_version = 1")
    assert "node_path" not in columns(conn, "workflow_run_steps")
    conn.close()
    with SqliteStore(db) as store:
        assert [(s.step_name, s.node_path) for s in store.get_steps("r")] == [("old", None)]
        new = store.insert_step(NewStep(workflow_run_id="r", step_name="new", position=1, node_path="body.1"))
        assert store.get_step(new).node_path == "body.1"
    conn = raw(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    assert columns(conn, "workflow_run_steps")[-2:] == ["node_path", "usage"]  # v2, then v6
    conn.close()


def test_a_closed_store_refuses_work_clearly(db) -> None:
    store = SqliteStore(db)
    store.close()
    store.close()
    with pytest.raises(PersistenceError, match="closed"):
        store.get_run("x")


def test_database_failures_surface_as_persistence_errors(sqlite_store, db) -> None:
    conn = raw(db)
    conn.execute("DROP TABLE workflow_run_step_fan_out_items")
    conn.close()
    with pytest.raises(PersistenceError, match=f"run database {db}: no such table"):
        sqlite_store.get_fan_out_items("s")


# --------------------------------------------------------------------------- concurrency


def test_a_writer_waits_for_another_process_lock_instead_of_failing(sqlite_store, db) -> None:
    run_id = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"

        def let_go() -> None:
            holder.stdin.write("go\n")
            holder.stdin.flush()

        release = threading.Timer(0.3, let_go)
        release.start()
        sqlite_store.update_run_status(run_id, RunStatus.RUNNING, None, None)
        release.join()
    finally:
        holder.communicate(timeout=10)
    assert sqlite_store.get_run(run_id).status is RunStatus.RUNNING


def test_write_behind_rows_reach_other_connections_with_a_flush_a_read_or_a_write_of_them(db) -> None:
    with SqliteStore(db) as writer, SqliteStore(db) as watcher:
        child = writer.create_leased_run(NewRun(workflow_name="child"), "t", 30, durable=False).id
        step_id = writer.insert_step(NewStep(child, "s", retry_count=0), durable=False)
        assert watcher.get_run(child) is None  # queued, not committed yet
        writer.flush()
        assert watcher.get_steps(child)[0].id == step_id
        writer.finish_run(child, RunStatus.FAILED, "ok", None, "t", durable=False)
        writer.update_run_status(child, RunStatus.RUNNING, None, None)  # durable, same row: in order
        assert watcher.get_run(child).status is RunStatus.RUNNING
        writer.update_step(step_id, StepUpdate.completed(1, result_text="late"), durable=False)
        assert writer.get_step(step_id).result_text == "late"  # a read commits what is queued
        writer.update_step(step_id, StepUpdate.failed(1, "never seen"), durable=False)
    with SqliteStore(db) as reopened:  # close() commits what is still queued
        assert reopened.get_step(step_id).result_text == "late"  # (a terminal row stays as it is)
        assert reopened.get_run(child).status is RunStatus.RUNNING


def test_a_durable_write_depending_on_a_queued_row_commits_it_first(db) -> None:
    with SqliteStore(db) as store:
        run = store.create_leased_run(NewRun(workflow_name="child"), "t", 30, durable=False)
        step = store.insert_step(NewStep(run.id, "s"))  # durable, needs the queued run row
        fan = store.insert_step(NewStep(run.id, "fe", role="foreach", retry_count=0), durable=False)
        assert store.insert_fan_out_items(fan, [("t", "a", "", {})])  # needs the queued step row
        gate = store.insert_step(NewStep(run.id, "g", role="gate"), durable=False)
        store.approve_gate(gate, "me", None, None)  # writes the queued row
        store.finish_run(run.id, RunStatus.COMPLETED, None, None, "t", durable=False)
        assert store.acquire_lease(run.id, "other", 30) == 2  # after the queued release, not before
        assert [s.id for s in store.get_steps(run.id)] == [step, fan, gate]


def child_rows(store: SqliteStore, durable: bool) -> tuple:
    """A foreach child's whole life (run, one step: started, completed; run finished), as rows."""
    run = store.create_leased_run(
        NewRun(workflow_name="child", inputs={"item.id": "7"}), "t", 30, durable=durable
    )
    ok = store.insert_step(NewStep(run.id, "work", retry_count=0), durable=durable)
    store.update_step(
        ok,
        StepUpdate.completed(
            1, child_run_id="c", result_text="r", context_out="x", markers_out='["m"]', attempt=0
        ),
        durable=durable,
    )
    store.update_step(ok, StepUpdate.failed(1, "late"), durable=durable)  # a terminal row stays as it is
    bad = store.insert_step(NewStep(run.id, "other", position=1), durable=durable)
    store.update_step(
        bad, StepUpdate(generation=1, status=StepStatus.RUNNING, child_run_id="k"), durable=durable
    )
    store.update_step(bad, StepUpdate.failed(1, "boom", attempt=2), durable=durable)
    store.finish_run(run.id, RunStatus.FAILED, "summary", "boom", "t", durable=durable)
    store.flush()
    strip = lambda row: {k: v for k, v in asdict(row).items() if k != "id" and k != "workflow_run_id"}  # noqa: E731
    return strip(store.get_run(run.id)), [strip(s) for s in store.get_steps(run.id)]


def test_write_behind_updates_folded_into_queued_inserts_leave_the_same_rows(db, clock) -> None:
    with SqliteStore(db, clock=clock) as store:
        separate = child_rows(store, durable=True)
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        folded = child_rows(store, durable=False)
        store._db.set_trace_callback(None)
    assert folded == separate
    writes = [s.split()[0] + " " + s.split()[2] for s in statements if s.startswith(("INSERT", "UPDATE"))]
    # Each row is inserted once, in its final state; the two step rows in one statement.
    assert writes == ["INSERT workflow_runs", "INSERT workflow_run_steps"]


def test_item_writes_of_several_writers_share_statements_and_keep_their_own_errors(
    sqlite_store, caplog
) -> None:
    """Fan-out item writes committed together run as one UPDATE per kind (ended, started), and the
    rows end exactly as written one by one; an unknown item among them fails only its own write."""
    run_id = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    step_id = sqlite_store.insert_step(NewStep(workflow_run_id=run_id, step_name="fe", role="foreach"))
    ids = sqlite_store.insert_fan_out_items(step_id, [("t", str(i), "", {}) for i in range(9)])
    sqlite_store.batch_update_fan_out_items([(ids[0], FanOutItemUpdate.running("c0"))])
    sqlite_store.batch_update_fan_out_items([(ids[1], FanOutItemUpdate.running("c1"))])
    statements: list[str] = []
    sqlite_store._db.set_trace_callback(statements.append)
    for n in (0, 1):  # as two workers do: this item ended, the next one starts
        sqlite_store.batch_update_fan_out_items(
            [
                (
                    ids[n],
                    FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED if n else FanOutItemStatus.FAILED),
                ),
                (ids[n + 2], FanOutItemUpdate.running(f"c{n + 2}")),
            ],
            durable=False,
        )
    sqlite_store.flush()
    sqlite_store._db.set_trace_callback(None)
    assert [s[:60] for s in statements if s.startswith("UPDATE")] == [
        "UPDATE workflow_run_step_fan_out_items AS t SET status = v.c",
        "UPDATE workflow_run_step_fan_out_items AS t SET status = 'ru",
    ]
    rows = {r.id: r for r in sqlite_store.get_fan_out_items(step_id)}
    assert [(rows[i].status, rows[i].child_run_id) for i in ids[:4]] == [
        (FanOutItemStatus.FAILED, "c0"),
        (FanOutItemStatus.COMPLETED, "c1"),
        (FanOutItemStatus.RUNNING, "c2"),
        (FanOutItemStatus.RUNNING, "c3"),
    ]
    assert rows[ids[0]].completed_at and rows[ids[2]].dispatched_at and rows[ids[2]].completed_at is None
    with caplog.at_level(logging.WARNING, logger="runkon_flow.persistence"):
        sqlite_store.batch_update_fan_out_items([(ids[4], FanOutItemUpdate.running("c4"))], durable=False)
        sqlite_store.batch_update_fan_out_items(
            [("no-such-item", FanOutItemUpdate.running("x"))], durable=False
        )
        sqlite_store.batch_update_fan_out_items([(ids[5], FanOutItemUpdate.running("c5"))], durable=False)
        sqlite_store.flush()
    rows = {r.id: r for r in sqlite_store.get_fan_out_items(step_id)}
    assert (rows[ids[4]].child_run_id, rows[ids[5]].child_run_id) == ("c4", "c5")
    assert "write-behind write failed: persistence error: fan-out item no-such-item not found" in caplog.text


def test_a_failing_write_behind_write_is_logged_and_spares_the_others(sqlite_store, caplog) -> None:
    run = sqlite_store.create_leased_run(NewRun(workflow_name="wf"), "t", 30)
    step_id = sqlite_store.insert_step(NewStep(run.id, "s", retry_count=0))
    other = sqlite_store.create_run(NewRun(workflow_name="other")).id
    with caplog.at_level(logging.WARNING, logger="runkon_flow.persistence"):
        sqlite_store.update_step(step_id, StepUpdate.completed(7), durable=False)  # stale generation
        sqlite_store.update_run_status(other, RunStatus.FAILED, None, "boom")
    assert sqlite_store.get_step(step_id).status is StepStatus.RUNNING
    assert sqlite_store.get_run(other).status is RunStatus.FAILED
    assert "write-behind write failed: workflow cancelled: LeaseLost" in caplog.text


def test_writes_queued_while_the_connection_is_busy_share_one_commit(sqlite_store) -> None:
    """Group commit: writers that queue up behind a busy connection are committed together."""
    run = sqlite_store.create_leased_run(NewRun(workflow_name="wf"), "t", 30)
    statements: list[str] = []
    ids: list[str] = []
    with sqlite_store._lock:  # the connection is busy (as if another write were committing)
        threads = [
            threading.Thread(
                target=lambda n=n: ids.append(
                    sqlite_store.insert_step(NewStep(run.id, f"s{n}", retry_count=0))
                )
            )
            for n in range(8)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(sqlite_store._pending) < 8 and time.monotonic() < deadline:
            time.sleep(0.001)
        sqlite_store._db.set_trace_callback(statements.append)
    for t in threads:
        t.join()
    sqlite_store._db.set_trace_callback(None)
    assert sorted(s.id for s in sqlite_store.get_steps(run.id)) == sorted(ids)
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]


def test_writers_waiting_for_a_shared_commit_each_get_their_own_result(sqlite_store) -> None:
    """Followers of a group commit return their own write's result (or error), not another's."""
    run = sqlite_store.create_leased_run(NewRun(workflow_name="wf"), "t", 30)
    results: dict[int, object] = {}

    def write(n: int) -> None:
        try:
            if n % 4 == 3:  # a write that fails alone: an unknown step
                sqlite_store.update_step(f"missing-{n}", StepUpdate.completed(1))
            results[n] = sqlite_store.insert_step(NewStep(run.id, f"s{n}", retry_count=0))
        except PersistenceError as exc:
            results[n] = exc

    with sqlite_store._lock:  # the connection is busy: all of them queue behind one leader
        threads = [threading.Thread(target=write, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(sqlite_store._pending) < 12 and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    steps = {s.id: s.step_name for s in sqlite_store.get_steps(run.id)}
    for n, outcome in results.items():
        if n % 4 == 3:
            assert str(outcome).endswith(f"step missing-{n} not found")
        else:
            assert steps[outcome] == f"s{n}"
    assert len(results) == 16


def test_ctrl_c_while_waiting_for_a_shared_commit_leaves_the_store_usable(sqlite_store) -> None:
    """A Ctrl-C that lands while the main thread waits for another writer's commit interrupts only
    that wait: the write is still committed with the queue, and later writers are not stuck."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("a Ctrl-C (SIGINT) interrupts only the main thread")
    run = sqlite_store.create_leased_run(NewRun(workflow_name="wf"), "t", 30)
    leader_ids: list[str] = []
    main = threading.get_ident()
    queue = sqlite_store._pending

    def interrupt_once_waiting() -> None:
        """SIGINT the main thread once its write waits as a follower (never before)."""
        deadline = time.monotonic() + 20
        while not any(op.wake is not None for op in list(queue)) and time.monotonic() < deadline:
            time.sleep(0.005)
        signal.pthread_kill(main, signal.SIGINT)

    def unstick() -> None:
        """Never hang the suite: if the interrupt did not arrive, wake the waiting follower."""
        with sqlite_store._queue_lock:
            for op in queue:
                if op.wake is not None:
                    wake, op.wake = op.wake, None
                    wake.release()

    # Test runners (pytest-xdist workers) may ignore SIGINT: a real terminal's Ctrl-C raises.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watchdog = threading.Timer(30, unstick)
    try:
        with sqlite_store._lock:  # busy connection: the first writer leads, the main thread follows
            step = NewStep(run.id, "leader", retry_count=0)
            leader = threading.Thread(target=lambda: leader_ids.append(sqlite_store.insert_step(step)))
            leader.start()
            deadline = time.monotonic() + 10
            while not queue and time.monotonic() < deadline:
                time.sleep(0.001)
            watchdog.start()
            threading.Thread(target=interrupt_once_waiting, daemon=True).start()
            with pytest.raises(KeyboardInterrupt):
                sqlite_store.insert_step(NewStep(run.id, "interrupted", retry_count=0))
    finally:
        watchdog.cancel()
        signal.signal(signal.SIGINT, previous)
    leader.join(timeout=30)
    assert leader_ids
    later: list[str] = []
    threads = [
        threading.Thread(target=lambda n=n: later.append(sqlite_store.insert_step(NewStep(run.id, f"l{n}"))))
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(later) == 4
    names = sorted(s.step_name for s in sqlite_store.get_steps(run.id))
    assert names == ["interrupted", "l0", "l1", "l2", "l3", "leader"]


HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    """
)


def test_fan_out_batches_take_one_transaction_and_reads_one_query(sqlite_store, db) -> None:
    run_id = sqlite_store.create_run(NewRun(workflow_name="wf")).id
    step_id = sqlite_store.insert_step(NewStep(workflow_run_id=run_id, step_name="fe", role="foreach"))
    statements: list[str] = []
    sqlite_store._db.set_trace_callback(statements.append)
    try:
        ids = sqlite_store.insert_fan_out_items(step_id, [("t", str(i), "", {}) for i in range(200)])
        sqlite_store.insert_fan_out_items(step_id, [("t", str(i), "", {}) for i in range(200)])
        sqlite_store.batch_update_fan_out_items([(i, FanOutItemUpdate.running()) for i in ids])
        sqlite_store.get_fan_out_items(step_id)
    finally:
        sqlite_store._db.set_trace_callback(None)
    assert sum(s.startswith("BEGIN") for s in statements) == 3
    assert sum(s.startswith("COMMIT") for s in statements) == 3
    selects = [s for s in statements if s.startswith("SELECT")]
    assert len(selects) == 4  # a step check per insert batch, one id lookup for the repeat, one read


def test_many_threads_across_two_stores_on_one_file_lose_nothing(db) -> None:
    with SqliteStore(db) as a, SqliteStore(db) as b:
        run_id = a.create_run(NewRun(workflow_name="wf")).id
        step_id = a.insert_step(NewStep(workflow_run_id=run_id, step_name="fe", role="foreach"))
        errors: list[BaseException] = []

        def worker(store: SqliteStore, w: int) -> None:
            try:
                for i in range(25):
                    item = store.insert_fan_out_item(step_id, "t", f"{w}-{i}", "", {})
                    store.update_fan_out_item(item, FanOutItemUpdate.running())
                    store.update_fan_out_item(item, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(a if w % 2 else b, w)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(a.get_fan_out_items(step_id, FanOutItemStatus.COMPLETED)) == 200


# --------------------------------------------------------------------------- several processes

LEASE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from runkon_flow.persistence import SqliteStore, StepUpdate
    from runkon_flow.cancellation import EngineCancelled
    db, run_id, token, go, step_id = sys.argv[1:6]
    store = SqliteStore(db)
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    while go != "-" and not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.002)
    gen = store.acquire_lease(run_id, token, 30)
    out = {"generation": gen}
    if gen is not None and step_id != "-":
        try:
            store.update_step(step_id, StepUpdate.completed(gen, result_text=token))
            out["wrote"] = True
        except EngineCancelled as exc:
            out["wrote"] = str(exc)
    store.close()
    print(json.dumps(out), flush=True)
    """
)


def spawn(db: Path, run_id: str, token: str, go: Path | None = None, step_id: str = "-") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", LEASE_SCRIPT, str(db), run_id, token, str(go) if go else "-", step_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def result(proc: subprocess.Popen) -> dict:
    # Read through the same buffered pipe `spawn` used: communicate() would skip text it buffered.
    out = proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0, err
    proc.stdout.close()
    proc.stderr.close()
    return json.loads(out)


@pytest.mark.slow
def test_two_processes_racing_for_a_lease_exactly_one_wins(db, tmp_path) -> None:
    with SqliteStore(db) as store:
        run_id = store.create_run(NewRun(workflow_name="wf")).id
    go = tmp_path / "go"
    racers = [spawn(db, run_id, f"proc-{n}", go) for n in range(2)]
    go.touch()
    generations = sorted((result(p)["generation"] for p in racers), key=lambda g: g is None)
    assert generations == [1, None]


@pytest.mark.slow
def test_an_expired_owner_is_superseded_by_another_process_and_fenced(db) -> None:
    import time

    with SqliteStore(db) as owner:
        run_id = owner.create_run(NewRun(workflow_name="wf")).id
        old_gen = owner.acquire_lease(run_id, "owner", 30)
        step_id = owner.insert_step(NewStep(workflow_run_id=run_id, step_name="s", retry_count=0))

        assert result(spawn(db, run_id, "usurper"))["generation"] is None  # the lease is live

        assert owner.acquire_lease(run_id, "owner", 0.2) == old_gen  # renew with a short lease …
        time.sleep(0.25)  # … and let it lapse
        taken = result(spawn(db, run_id, "usurper", step_id=step_id))
        assert taken == {"generation": old_gen + 1, "wrote": True}

        with pytest.raises(Exception, match="LeaseLost"):
            owner.update_step(step_id, StepUpdate.completed(old_gen, result_text="owner"))
        assert owner.acquire_lease(run_id, "owner", 30) is None
        step = owner.get_step(step_id)
        assert (step.status, step.result_text) == (StepStatus.COMPLETED, "usurper")


def test_a_version_1_file_gains_the_event_log_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in DDL:
        conn.execute(statement)
    conn.execute("INSERT INTO workflow_runs (id, workflow_name, status) VALUES ('r1', 'wf', 'completed')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SqliteStore(path) as store:
        store.append_events("r1", [NewEvent(1.0, "r1", "RunStarted", "{}")])
        assert [e.kind for e in store.read_events("r1")] == ["RunStarted"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_another_process_reads_the_events_a_run_appends(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with SqliteStore(path) as writer, SqliteStore(path) as reader:
        run_id = writer.create_run(NewRun(workflow_name="wf")).id
        writer.append_events(run_id, [NewEvent(1.0, run_id, "RunStarted", "{}")])
        assert [e.seq for e in reader.read_events(run_id)] == [1]
        writer.append_events(run_id, [NewEvent(2.0, run_id, "RunCompleted", '{"succeeded":true}')])
        assert [e.kind for e in reader.read_events(run_id, after_seq=1)] == ["RunCompleted"]


def test_a_file_made_at_version_6_gains_the_rerun_link_of_version_7(tmp_path: Path) -> None:
    """Version 5 was reserved for the rerun link, which landed after 6: a file made at 6 has no
    rerun columns and must still be read (and rerun) after the upgrade."""
    db = tmp_path / "v6.db"
    SqliteStore(db).close()
    conn = raw(db)
    conn.execute("ALTER TABLE workflow_runs DROP COLUMN rerun_of")
    conn.execute("ALTER TABLE workflow_runs DROP COLUMN rerun_from")
    conn.execute("PRAGMA user_version = 6")
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    try:
        old = store.create_run(NewRun(workflow_name="wf")).id
        new = store.create_run(NewRun(workflow_name="wf")).id
        store.set_rerun_link(new, old, "deploy")
        assert (store.get_run(new).rerun_of, store.get_run(new).rerun_from) == (old, "deploy")
    finally:
        store.close()
    conn = raw(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_file_made_at_version_10_gains_the_rerun_definition_of_version_11(tmp_path: Path) -> None:
    """A file made before version 11 has no `rerun_definition`: it is opened, its reruns read as
    before (None: their children started from today's files), and a new rerun records its choice."""
    db = tmp_path / "v10.db"
    with SqliteStore(db) as store:
        old = store.create_run(NewRun(workflow_name="wf")).id
        before = store.create_run(NewRun(workflow_name="wf")).id
        store.set_rerun_link(before, old, "deploy")
    conn = raw(db)
    conn.execute("ALTER TABLE workflow_runs DROP COLUMN rerun_definition")
    conn.execute("PRAGMA user_version = 10")
    conn.commit()
    conn.close()
    with SqliteStore(db) as store:
        assert store.get_run(before).rerun_definition is None
        new = store.create_run(NewRun(workflow_name="wf")).id
        store.set_rerun_link(new, old, "deploy", "stored")
        assert store.get_run(new).rerun_definition == "stored"
    conn = raw(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 11
    conn.close()


def test_a_file_made_at_version_7_gets_the_partial_indexes_of_version_8(tmp_path: Path) -> None:
    """Version 8 narrows three canonical indexes to the rows looked up through them; a file made
    before keeps its runs, and active runs are still found through the (now partial) index."""
    db = tmp_path / "v7.db"
    with SqliteStore(db) as store:
        waiting = store.create_run(NewRun(workflow_name="wf")).id
        store.set_waiting_blocked_on(waiting, {"type": "pr_checks", "gate_name": "g"})
        done = store.create_run(NewRun(workflow_name="wf")).id
        store.update_run_status(done, RunStatus.COMPLETED, "ok", None)
    conn = raw(db)
    for name, create in INDEXES_V1.items():
        conn.execute(f"DROP INDEX {name}")
        conn.execute(create)
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    with SqliteStore(db) as store:
        assert [r.id for r in store.list_active_runs([])] == [waiting]
        assert [r.id for r in store.list_active_runs([RunStatus.COMPLETED])] == [done]
    conn = raw(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 8
    definitions = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN SELECT id FROM workflow_runs WHERE status IN (?) AND {RUN_UNFINISHED}",
        ("waiting",),
    ).fetchall()
    conn.close()
    for name in INDEXES_V1:
        assert " WHERE " in definitions[name]
    assert "idx_workflow_runs_status" in plan[0][-1]


INDEXES_V1 = {
    "idx_workflow_runs_status": "CREATE INDEX idx_workflow_runs_status ON workflow_runs(status)",
    "idx_steps_status_gate": "CREATE INDEX idx_steps_status_gate ON workflow_run_steps(status, gate_type)",
    "idx_workflow_run_steps_child_run_id": (
        "CREATE INDEX idx_workflow_run_steps_child_run_id ON workflow_run_steps(child_run_id)"
    ),
}


def test_a_finished_foreach_child_is_in_none_of_the_partial_indexes(sqlite_store, db) -> None:
    """What version 8 saves per child: its run row and step row touch 6 b-trees, not 9."""
    parent = sqlite_store.create_run(NewRun(workflow_name="fan")).id
    child = sqlite_store.create_leased_run(
        NewRun(workflow_name="child", parent_workflow_run_id=parent), "t", 30, durable=False
    )
    step = sqlite_store.insert_step(NewStep(child.id, "noop", retry_count=0), durable=False)
    sqlite_store.update_step(step, StepUpdate.completed(1, result_text="ok"), durable=False)
    sqlite_store.finish_run(child.id, RunStatus.COMPLETED, "1 step", None, "t", durable=False)
    sqlite_store.flush()
    conn = raw(db)
    counts = [
        conn.execute(f"SELECT count(*) FROM {table} INDEXED BY {name} WHERE {where}").fetchone()[0]
        for table, name, where in (
            ("workflow_runs", "idx_workflow_runs_status", RUN_UNFINISHED),
            ("workflow_run_steps", "idx_steps_status_gate", "gate_type IS NOT NULL"),
            ("workflow_run_steps", "idx_workflow_run_steps_child_run_id", "child_run_id IS NOT NULL"),
        )
    ]
    conn.close()
    assert counts == [1, 0, 0]  # only the parent, still pending, is in the status index


# --------------------------------------------------------------------------- lock-free write-behind


def test_write_behind_lives_of_many_threads_racing_drains_end_in_their_final_rows(db) -> None:
    """A fan-out's workers queue their children's rows and fold updates into them without a lock
    while other threads commit the queue: every run, step and item ends as its last write left it."""
    threads, children = 8, 150
    with SqliteStore(db) as store:
        parent = store.create_run(NewRun(workflow_name="fan")).id
        fan = store.insert_step(NewStep(workflow_run_id=parent, step_name="fe", role="foreach"))
        items = store.insert_fan_out_items(
            fan, [("t", f"{w}-{i}", "", {}) for w in range(threads) for i in range(children)]
        )

        def worker(w: int) -> None:
            for i in range(children):
                run = store.create_leased_run(NewRun(workflow_name="child"), f"tok{w}", 30, durable=False)
                step = store.insert_step(NewStep(run.id, "work", retry_count=0), durable=False)
                store.update_step(step, StepUpdate(generation=1, status=StepStatus.RUNNING), durable=False)
                store.update_step(step, StepUpdate.completed(1, result_text=run.id), durable=False)
                store.finish_run(run.id, RunStatus.COMPLETED, run.id, None, f"tok{w}", durable=False)
                store.batch_update_fan_out_items(
                    [
                        (
                            items[w * children + i],
                            FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, run.id),
                        )
                    ],
                    durable=False,
                )
                store.try_flush()

        def drainer(done: threading.Event) -> None:
            while not done.is_set():
                store.flush()

        together_beside(worker, threads, drainer)
    with SqliteStore(db) as other:
        runs = other.list_runs(limit=10_000, parent_run_id=None)
        kids = [r for r in runs if r.workflow_name == "child"]
        assert len(kids) == threads * children
        assert {(r.status, r.owner_token, r.lease_until) for r in kids} == {(RunStatus.COMPLETED, None, None)}
        assert all(r.result_summary == r.id for r in kids)
        for r in kids:
            [step] = other.get_steps(r.id)
            assert (step.status, step.result_text) == (StepStatus.COMPLETED, r.id)
        rows = other.get_fan_out_items(fan)
        assert {i.status for i in rows} == {FanOutItemStatus.COMPLETED}
        assert {i.child_run_id for i in rows} == {r.id for r in kids}


@contextmanager
def connection_taken(store: SqliteStore) -> Iterator[None]:
    """Another thread holds `store`'s connection (as a long read does) until the block ends."""
    holding, let_go = threading.Event(), threading.Event()

    def reader() -> None:
        with store._conn():
            holding.set()
            let_go.wait(10)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        let_go.set()
        thread.join()


def test_try_flush_leaves_the_queue_to_the_thread_holding_the_connection(db) -> None:
    with SqliteStore(db) as store, SqliteStore(db) as other:
        run = store.create_leased_run(NewRun(workflow_name="child"), "t", 30, durable=False)
        with connection_taken(store):
            assert other.get_run(run.id) is not None  # the read committed what was queued
            queued = store.create_leased_run(NewRun(workflow_name="later"), "t", 30, durable=False)
            started = time.monotonic()
            assert store.try_flush() is False  # without waiting for the reader
            assert time.monotonic() - started < 1.0
            assert other.get_run(queued.id) is None  # still queued: nobody has committed it
        assert store.try_flush() is True
        assert other.get_run(queued.id) is not None


def test_a_fold_overtaken_by_a_drain_answers_not_sure_so_the_update_is_queued_too(db) -> None:
    """The one interleaving the lock-free fold must survive, made to happen: a drain takes the
    queued insert while an update is being folded into it (None: it may or may not have read it)."""
    with SqliteStore(db) as store, SqliteStore(db) as other:
        run = store.create_leased_run(NewRun(workflow_name="child"), "t", 30, durable=False)

        def change_while_a_drain_runs(row: list) -> bool:
            drain = threading.Thread(target=store.flush)
            drain.start()
            drain.join()
            row[3] = RunStatus.COMPLETED  # too late: the insert is already committed
            return True

        assert store._fold("r:" + run.id, change_while_a_drain_runs) is None
        assert other.get_run(run.id).status is RunStatus.RUNNING
        # The public path: a finish whose fold is refused queues its UPDATE, which is not lost.
        store.finish_run(run.id, RunStatus.COMPLETED, "done", None, "t", durable=False)
        store.flush()
        assert other.get_run(run.id).status is RunStatus.COMPLETED


class _TokenThatLetsADrainIn(str):
    """An owner token whose comparison — the finish's fold makes one before it changes the queued
    row — lets `drain` take the queue first and waits until it has (its transaction begun, the
    rows not yet read)."""

    drain: Callable[[], None]

    def __ne__(self, other: object) -> bool:
        self.drain()
        return str(self) != other

    __hash__ = str.__hash__


def test_a_write_behind_finish_a_drain_takes_with_its_insert_is_written_not_refused(db, caplog) -> None:
    """A fan-out child's end folded into its queued insert while another thread's commit took that
    insert: the commit wrote the run ended, and the finish's fenced UPDATE, queued in case it had
    not, found the owner the fold cleared. The run was said lost to another engine ('final status
    completed not written', 'lease lost') and its end event replaced — though it ended as stored."""
    with SqliteStore(db) as store, SqliteStore(db) as other:
        token = _TokenThatLetsADrainIn("t")
        run = store.create_leased_run(NewRun(workflow_name="child"), token, 30, durable=False)
        store.insert_step(NewStep(run.id, "work", retry_count=0), durable=False)  # a batch of two
        began, go = threading.Event(), threading.Event()

        def paused_at_begin(statement: str) -> None:
            if statement.startswith("BEGIN"):
                began.set()  # the queue is taken (its writes sealed), no row read yet
                assert go.wait(10)

        drainer: list[threading.Thread] = []

        def drain() -> None:
            if drainer:
                return
            store._db.set_trace_callback(paused_at_begin)
            drainer.append(threading.Thread(target=store.flush))
            drainer[0].start()
            assert began.wait(10)

        token.drain = drain
        refused: list[str] = []
        with caplog.at_level(logging.WARNING):
            store.finish_run(
                run.id,
                RunStatus.COMPLETED,
                "done",
                None,
                token,
                durable=False,
                on_refused=lambda: refused.append(run.id),
            )
            go.set()
            drainer[0].join(10)
            store._db.set_trace_callback(None)
            assert other.get_run(run.id).status is RunStatus.COMPLETED  # the insert carried the end
            store.flush()  # the UPDATE queued in case it had not
        assert refused == []
        assert "not written" not in caplog.text
        ended = other.get_run(run.id)
        assert (ended.status, ended.result_summary, ended.owner_token) == (RunStatus.COMPLETED, "done", None)


def test_a_write_behind_finish_a_drain_took_without_it_is_refused_once_another_engine_ended_the_run(
    db,
) -> None:
    """The fence keeps its purpose after such a race: here the commit read the insert before the
    fold changed it, and another engine then took the run over and ended it otherwise — the
    queued finish writes nothing and is told refused."""
    with SqliteStore(db) as store, SqliteStore(db) as other:
        token = _TokenThatLetsADrainIn("t")
        run = store.create_leased_run(NewRun(workflow_name="child"), token, 30, durable=False)
        drained: list[bool] = []

        def drain() -> None:  # the whole commit, before the fold changes the row
            if not drained:
                drained.append(True)
                store.flush()

        token.drain = drain
        refused: list[str] = []
        store.finish_run(
            run.id,
            RunStatus.COMPLETED,
            "done",
            None,
            token,
            durable=False,
            on_refused=lambda: refused.append(run.id),
        )
        assert other.get_run(run.id).status is RunStatus.RUNNING  # committed without the finish
        other.release_lease(run.id, "t")  # as a resume does when the holder is provably gone
        assert other.acquire_lease(run.id, "t2", 30) == 2
        other.finish_run(run.id, RunStatus.FAILED, "theirs", "boom", "t2")
        store.flush()
        assert refused == [run.id]
        ended = other.get_run(run.id)
        assert (ended.status, ended.result_summary, ended.owner_token) == (RunStatus.FAILED, "theirs", None)


def test_try_flush_waits_for_the_connection_once_too_many_writes_are_queued(db) -> None:
    """Back-pressure: a fan-out's workers stop running ahead of the commits (and the ends a crash
    could lose stay few) once ~20 items' writes wait."""
    with SqliteStore(db) as store, SqliteStore(db) as other:
        with connection_taken(store):
            runs = [
                store.create_leased_run(NewRun(workflow_name=f"w{i}"), "t", 30, durable=False).id
                for i in range(sqlite_module._QUEUE_LIMIT + 1)
            ]
            answer: list[bool] = []
            flusher = threading.Thread(target=lambda: answer.append(store.try_flush()))
            flusher.start()
            flusher.join(0.3)
            assert flusher.is_alive()  # waiting for the reader
        flusher.join(10)
        assert answer == [True]
        assert all(other.get_run(r) is not None for r in runs)


def test_a_second_store_in_the_same_process_keeps_the_first_ones_writes_visible(tmp_path: Path) -> None:
    """Closing any descriptor of the file drops every POSIX lock this process holds on it, and
    SQLite's lock is what tells another process closing its last connection that the WAL is
    still in use. Opening a second store here (a poll, the dashboard beside its workspace) once
    did that: the other process then checkpointed and deleted the WAL under the first store,
    whose later writes went to a deleted file nobody else could read (a resumed run's row stayed
    `cancelled` and unowned while its runner ran), and readers could see a malformed database."""
    path = tmp_path / "runs.db"
    first = SqliteStore(path)
    first.create_run(NewRun(workflow_name="wf", run_id="before"))
    SqliteStore(path).close()  # a second store opened and closed beside the first

    def runs_seen_elsewhere() -> str:  # another process opens, reads and closes the database
        reader = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        reader += "print(sorted(r[0] for r in c.execute('SELECT id FROM workflow_runs'))); c.close()"
        done = subprocess.run([sys.executable, "-c", reader, str(path)], check=True, capture_output=True)
        return done.stdout.decode().strip()

    assert runs_seen_elsewhere() == "['before']"
    first.create_run(NewRun(workflow_name="wf", run_id="after"))
    try:
        assert runs_seen_elsewhere() == "['after', 'before']"
    finally:
        first.close()


FIRST_OPEN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from runkon_flow.persistence import NewRun, SqliteStore
    folder, rounds, start, me = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    errors = []
    for n in range(rounds):
        at = start + n * 0.25
        time.sleep(max(0.0, at - time.time() - 0.005))
        while time.time() < at:  # every process opens the new file in the same millisecond
            pass
        try:
            with SqliteStore(f"{folder}/runs-{n}.db") as store:
                store.create_run(NewRun(workflow_name="wf", run_id=f"{me}-{n}"))
        except Exception as exc:
            errors.append(str(exc))
    print(json.dumps(errors))
    """
)


@pytest.mark.slow
def test_processes_opening_a_new_database_at_the_same_moment_all_open_it(tmp_path: Path) -> None:
    """The first runs on a machine (the dashboard and a `run --detach`, two scripts) create the file
    together. Switching a new file to WAL, SQLite answers "database is locked" at once instead of
    waiting when another connection is doing the same: one of them failed to open the database,
    the message blaming its folder ("does not accept new files")."""
    rounds, racers = 20, 6
    start = time.time() + 3.0  # after every process has started
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_OPEN_SCRIPT, str(tmp_path), str(rounds), str(start), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(racers)
    ]
    errors = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        errors += json.loads(out)
    assert errors == []
    for n in range(rounds):
        with SqliteStore(tmp_path / f"runs-{n}.db") as store:
            assert len(store.list_runs()) == racers


def test_a_failed_open_never_deletes_a_database_another_process_just_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explaining why it could not create the file, a store probed the folder by creating and
    deleting the database path itself: a process that created the database in that instant (the
    dashboard and a `run --detach` starting together) lost it, with its first runs."""
    import os

    path = tmp_path / "runs.db"
    connect, close = sqlite3.connect, os.close
    others: list[SqliteStore] = []

    def connect_once_failing(*args, **kwargs):
        monkeypatch.setattr(sqlite3, "connect", connect)
        raise sqlite3.OperationalError("unable to open database file")

    def close_then_another_process_opens(fd: int) -> None:
        close(fd)
        if not others:  # the probe's file is closed, not yet deleted: the other one opens now
            monkeypatch.setattr(os, "close", close)
            others.append(SqliteStore(path))
            others[0].create_run(NewRun(workflow_name="wf", run_id="theirs"))

    monkeypatch.setattr(sqlite3, "connect", connect_once_failing)
    monkeypatch.setattr(os, "close", close_then_another_process_opens)
    with pytest.raises(PersistenceError, match="cannot create run database"):
        SqliteStore(path)
    assert others, "the failed open explained itself without probing the folder"
    others[0].close()
    with SqliteStore(path) as store:
        assert [run.id for run in store.list_runs()] == ["theirs"]
    assert not list(tmp_path.glob(".*.probe"))  # the probe cleaned up after itself


def test_an_item_write_queued_after_its_runs_end_in_the_same_batch_is_refused(sqlite_store) -> None:
    """The owners fencing item writes are looked up once per batch; a write between two item
    groups that may change an owner (here the run's queued end) makes the next group look again."""
    store = sqlite_store
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 10)
    step_id = store.insert_step(NewStep(run.id, "fe", role="foreach", retry_count=0))
    a, b = store.insert_fan_out_items(step_id, [("t", "a", "", {}), ("t", "b", "", {})])
    fence = Fence(run.id, "t1")
    done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)
    store.batch_update_fan_out_items([(a, done)], durable=False, fence=fence)
    store.finish_run(run.id, RunStatus.COMPLETED, None, None, "t1", durable=False)
    store.batch_update_fan_out_items([(b, done)], durable=False, fence=fence)
    store.flush()
    assert [r.status for r in store.get_fan_out_items(step_id)] == ["completed", "pending"]
    assert store.get_run(run.id).status is RunStatus.COMPLETED


def _room_for(store: SqliteStore, pages: int) -> None:
    """Let the file grow to `pages` pages at most: past them a write fails as on a full disk
    (SQLITE_FULL, "database or disk is full")."""
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_is_said_once_and_the_store_says_it_takes_no_writes_until_it_does(
    tmp_path: Path, caplog
) -> None:
    """A fan-out's write-behind writes on a full disk: one line, not one per failed write (a
    400-item fan-out logged 1,924), and `unavailable()` tells the engine to start nothing more."""
    from runkon_flow.errors import StoreUnavailable

    store = SqliteStore(tmp_path / "runs.db")
    try:
        store.create_run(NewRun(workflow_name="p"))
        used = store._db.execute("PRAGMA page_count").fetchone()[0]
        _room_for(store, used)
        assert store.unavailable() is None
        with caplog.at_level(logging.WARNING, logger="runkon_flow.persistence"):
            for i in range(200):  # each flush a batch that cannot commit, then each write alone
                store.create_leased_run(NewRun(workflow_name=f"c{i}" * 100), "t", 30, durable=False)
                if i % 20 == 0:
                    store.flush()
            store.flush()
            said = [r.getMessage() for r in caplog.records]
            assert len(said) == 1, said
            assert "takes no writes (database or disk is full)" in said[0] and "resume the run" in said[0]
            assert isinstance(store.unavailable(), StoreUnavailable)
            with pytest.raises(StoreUnavailable, match="database or disk is full"):
                store.create_run(NewRun(workflow_name="durable" * 2000))
            _room_for(store, 100_000)  # room made
            for i in range(2):
                store.create_leased_run(NewRun(workflow_name=f"d{i}"), "t", 30, durable=False)
            store.flush()
        assert store.unavailable() is None
        back = [r.getMessage() for r in caplog.records][1:]
        assert len(back) == 1 and "takes writes again (" in back[0], back
        assert "write-behind writes failed meanwhile)" in back[0]
    finally:
        store.close()


def _refusing(store: SqliteStore, cause: str) -> Callable[[], None]:
    """Make `store` meet a file that takes no writes (`cause`: "full" — its disk full — or
    "readonly"), let a write fail on it, and return what makes room again."""
    from runkon_flow.errors import StoreUnavailable

    if cause == "full":
        _room_for(store, store._db.execute("PRAGMA page_count").fetchone()[0])
        undo = lambda: _room_for(store, 100_000)  # noqa: E731
    else:
        store._db.execute("PRAGMA query_only = 1")
        undo = lambda: store._db.execute("PRAGMA query_only = 0")  # noqa: E731
    with pytest.raises(StoreUnavailable):
        store.create_run(NewRun(workflow_name="refused" * 2000))
    assert isinstance(store.unavailable(), StoreUnavailable)
    return undo


# The first writes of a resume, each alone in the queue: before, only a transaction of several
# writes ended the state, so a dashboard resuming in the same process (`--run-in dashboard`) had
# its first fan-out stop again at once ("no further item starts") though the database took writes.
_FIRST_WRITES: dict[str, Callable[[SqliteStore, str], object]] = {
    # a read-modify-write in a transaction of its own: the resume taking the run
    "start_run": lambda s, run_id: s.start_run(run_id, resuming=True),
    "acquire_lease": lambda s, run_id: s.acquire_lease(run_id, "t2", 30),
    # one statement in autocommit
    "release_lease": lambda s, run_id: s.release_lease(run_id, "t2"),
    "insert_step": lambda s, run_id: s.insert_step(NewStep(run_id, "fe", role="foreach", retry_count=0)),
    # a write-behind write committed by the next flush, alone: a group commit of one
    "write_behind": lambda s, run_id: (
        s.insert_step(NewStep(run_id, "fe", role="foreach", retry_count=0), durable=False),
        s.flush(),
    ),
}


@pytest.mark.parametrize("cause", ["full", "readonly"])
@pytest.mark.parametrize("first", sorted(_FIRST_WRITES))
def test_a_store_that_took_no_writes_takes_them_again_at_its_first_write_that_commits(
    tmp_path: Path, caplog, cause: str, first: str
) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    try:
        run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
        store.update_run_status(run.id, RunStatus.FAILED, None, "stopped")  # a run stopped, to be resumed
        store.release_lease(run.id, "t1")
        room = _refusing(store, cause)
        room()  # the cause removed: room made, the file writable again
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="runkon_flow.persistence"):
            _FIRST_WRITES[first](store, run.id)
        assert store.unavailable() is None
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and "takes writes again (" in said[0], said
    finally:
        store.close()


def test_a_write_that_fits_while_its_batch_does_not_leaves_the_store_taking_no_writes(
    tmp_path: Path, caplog
) -> None:
    """On a full disk an update in place may commit where an insert cannot: when a batch fails and
    its writes are run again each alone, those that fit are no news — the state stays, said once,
    and a fan-out starts nothing more (before the fix above, as now)."""
    store = SqliteStore(tmp_path / "runs.db")
    try:
        run = store.create_run(NewRun(workflow_name="wf"))
        step_id = store.insert_step(NewStep(run.id, "s", role="agent", retry_count=0))
        _refusing(store, "full")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="runkon_flow.persistence"):
            for i in range(20):  # each batch: an update in place that fits, an insert that does not
                running = StepUpdate(generation=0, status=StepStatus.RUNNING, result_text=str(i))
                store.update_step(step_id, running, durable=False)
                store.create_leased_run(NewRun(workflow_name=f"c{i}" * 2000), "t", 30, durable=False)
                store.flush()
        assert store.unavailable() is not None
        assert not caplog.records, [r.getMessage() for r in caplog.records]
    finally:
        store.close()


def test_a_lease_renewal_on_a_full_disk_leaves_the_store_taking_no_writes(
    tmp_path: Path, caplog, clock: FakeClock
) -> None:
    """A run waiting at a gate on a full disk renews its lease every few seconds: an update in
    place that commits where an insert cannot. Before, each renewal said "takes writes again" and
    the next failed write "takes no writes" — two lines a heartbeat, and a fan-out not yet stopped
    was let start items between them. A lease taken by a new holder (a resume) still ends it."""
    store = SqliteStore(tmp_path / "runs.db", clock=clock)
    try:
        run = store.create_run(NewRun(workflow_name="wf"))
        assert store.acquire_lease(run.id, "t1", 30) == 1
        _refusing(store, "full")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="runkon_flow.persistence"):
            for i in range(3):
                assert store.acquire_lease(run.id, "t1", 30) == 1  # renewed: it fits
                assert store.unavailable() is not None, i
                store.create_leased_run(NewRun(workflow_name=f"c{i}" * 2000), "t", 30, durable=False)
                store.flush()  # fails, counted, not said again
            assert not caplog.records, [r.getMessage() for r in caplog.records]
            clock.advance(31)  # t1's holder died: its lease lapsed
            assert store.acquire_lease(run.id, "t2", 30) == 2  # taken by a resume: news
        assert store.unavailable() is None
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and "takes writes again (3 write-behind" in said[0], said
    finally:
        store.close()
