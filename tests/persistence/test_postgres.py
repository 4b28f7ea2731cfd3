"""What only the PostgreSQL store has to get right: many machines on one server (server-clock
leases, fencing under READ COMMITTED between processes, notifications), its schema versions, and
one-line errors that name the database without its password. The shared rules are in
test_contract.py; see tests/pg.py for which server these run against."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from runkon_flow.approvals import GATE_SIGNALS
from runkon_flow.cancellation import EngineCancelled
from runkon_flow.errors import PersistenceError, StoreUnavailable
from runkon_flow.persistence import NewRun, NewStep, RunStatus, StepStatus, StepUpdate
from runkon_flow.persistence import postgres_schema as pgs
from runkon_flow.persistence import schema as sqlite_schema
from runkon_flow.persistence.pg_connect import display_dsn, is_postgres_url

from tests import pg

REPO = Path(__file__).resolve().parents[2]
STEP_COLUMN_NAMES = [c.strip() for c in sqlite_schema.STEP_COLUMNS.split(",")]


@pytest.fixture
def dsn() -> str:
    return pg.fresh_dsn()


@pytest.fixture
def store(dsn: str):
    from runkon_flow.persistence.postgres import PostgresStore

    s = PostgresStore(dsn)
    yield s
    s.close()


def sql(dsn: str, statement: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


# --------------------------------------------------------------------------- naming the database


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://alice:s3cret@db.example:5432/runs", "postgresql://alice@db.example:5432/runs"),
        (
            "postgresql://alice:s3cret@db/runs?password=x&sslmode=require",
            "postgresql://alice@db/runs?sslmode=require",
        ),
        ("postgresql:///runs?host=/tmp/pg&user=bob", "postgresql:///runs?host=/tmp/pg&user=bob"),
        (  # as given: libpq refuses `options=-csearch_path=team_a`, so it stays encoded
            "postgresql://alice@db/runs?options=-csearch_path%3Dteam_a&PASSWORD=x",
            "postgresql://alice@db/runs?options=-csearch_path%3Dteam_a",
        ),
        ("host=db user=alice password=s3cret dbname=runs", "host=db user=alice password=*** dbname=runs"),
    ],
)
def test_messages_name_the_database_without_its_password(given: str, shown: str) -> None:
    assert display_dsn(given) == shown


def test_only_postgresql_urls_select_the_server_store() -> None:
    assert is_postgres_url("postgresql://db/runs") and is_postgres_url("postgres://db/runs")
    assert not is_postgres_url("runs.db") and not is_postgres_url("") and not is_postgres_url(None)


def test_both_stores_use_the_same_schema_version_numbers() -> None:
    assert pgs.SCHEMA_VERSION == sqlite_schema.SCHEMA_VERSION


# --------------------------------------------------------------------------- server clock


def test_lease_times_come_from_the_server_clock(store, dsn) -> None:
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    assert store.acquire_lease(run.id, "t1", 600) == 1
    # The stored lease end is the server's now + ttl, whatever the client thinks the time is.
    (delta,) = sql(
        dsn,
        "SELECT extract(epoch FROM lease_until - clock_timestamp()) FROM workflow_runs WHERE id = %s",
        (run.id,),
    )[0]
    assert 595 < float(delta) <= 600


def test_lease_expiry_is_judged_by_the_server_clock(store, dsn) -> None:
    run = store.create_run(NewRun(workflow_name="wf"))
    assert store.acquire_lease(run.id, "t1", 30) == 1
    set_lease = (
        "UPDATE workflow_runs SET lease_until = clock_timestamp() + %s * interval '1 second' WHERE id = %s"
    )
    sql(dsn, set_lease, (5, run.id))  # five seconds left on the server's clock
    assert store.acquire_lease(run.id, "t2", 30) is None
    sql(dsn, set_lease, (-0.5, run.id))  # lapsed half a second ago on the server's clock
    assert store.acquire_lease(run.id, "t2", 30) == 2


# --------------------------------------------------------------------------- fencing between processes

ENGINE_A = textwrap.dedent(
    """
    import json, sys
    from runkon_flow.cancellation import EngineCancelled
    from runkon_flow.persistence import StepUpdate
    from runkon_flow.persistence.postgres import PostgresStore
    dsn, run_id, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    store = PostgresStore(dsn, listen=False)
    done = []
    try:
        for step_id in steps:
            store.update_step(step_id, StepUpdate.completed(1, result_text="A"))
            done.append(step_id)
    except EngineCancelled as exc:
        print(json.dumps({"done": done, "stopped": str(exc)}))
    else:
        print(json.dumps({"done": done, "stopped": None}))
    store.close()
    """
)

ENGINE_B = textwrap.dedent(
    """
    import json, sys, time
    import psycopg
    from runkon_flow.persistence.postgres import PostgresStore
    dsn, run_id = sys.argv[1], sys.argv[2]
    store = PostgresStore(dsn, listen=False)
    deadline = time.monotonic() + 30
    while sum(s.status == "completed" for s in store.get_steps(run_id)) < 3:
        assert time.monotonic() < deadline, "engine A never wrote"
        time.sleep(0.01)  # A is busy writing
    with psycopg.connect(dsn, autocommit=True) as conn:  # A's lease lapses (A stopped renewing)
        conn.execute(
            "UPDATE workflow_runs SET lease_until = clock_timestamp() - interval '1 second' WHERE id = %s",
            (run_id,),
        )
    generation = store.acquire_lease(run_id, "engine-b", 60)
    completed = [s.id for s in store.get_steps(run_id) if s.status == "completed"]
    print(json.dumps({"generation": generation, "completed_at_takeover": completed}))
    store.close()
    """
)


@pytest.mark.slow
def test_a_superseded_engine_in_another_process_never_writes_after_the_takeover(store, dsn) -> None:
    """Engine A (its own process) completes steps with generation 1; engine B (another process)
    lets A's lease lapse and takes the run over. Every step write is slowed by a trigger, so A
    has one in flight when B's takeover commits. Whatever A managed to write must already be
    visible to B at the moment it took over: nothing of A's lands afterwards."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "engine-a", 3600)
    steps = [store.insert_step(NewStep(run.id, f"s{i}", position=i, retry_count=0)) for i in range(200)]
    sql(
        dsn,
        "CREATE FUNCTION slow_step() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$",
    )
    sql(
        dsn,
        "CREATE TRIGGER slow BEFORE UPDATE ON workflow_run_steps FOR EACH ROW EXECUTE FUNCTION slow_step()",
    )
    env_cmd = [sys.executable, "-c"]
    a = subprocess.Popen(
        [*env_cmd, ENGINE_A, dsn, run.id, json.dumps(steps)], stdout=subprocess.PIPE, text=True
    )
    b = subprocess.Popen([*env_cmd, ENGINE_B, dsn, run.id], stdout=subprocess.PIPE, text=True)
    out_a, _ = a.communicate(timeout=60)
    out_b, _ = b.communicate(timeout=60)
    result_a, result_b = json.loads(out_a), json.loads(out_b)
    assert result_b["generation"] == 2
    assert result_a["stopped"] == "workflow cancelled: LeaseLost"  # A was fenced off …
    assert 0 < len(result_a["done"]) < len(steps)
    # … and everything A wrote was committed before B's takeover.
    assert sorted(result_a["done"]) == sorted(result_b["completed_at_takeover"])
    completed_now = [s.id for s in store.get_steps(run.id) if s.status is StepStatus.COMPLETED]
    assert sorted(completed_now) == sorted(result_a["done"])


# --------------------------------------------------------------------------- notifications


def test_a_gate_decision_made_elsewhere_wakes_the_waiting_engine_at_once(dsn) -> None:
    from runkon_flow.persistence.postgres import PostgresStore

    with PostgresStore(dsn) as engine, PostgresStore(dsn, listen=False) as reviewer:
        run_id = engine.create_run(NewRun(workflow_name="wf")).id
        gate = engine.insert_step(
            NewStep(run_id, "review", role="gate", retry_count=0, gate_type="human_approval")
        )
        wake = GATE_SIGNALS.register(gate)
        try:
            assert engine.get_gate_approval(gate).is_pending  # a waiter reads the gate: listening starts
            time.sleep(0.5)  # the listener connects
            started = time.monotonic()
            reviewer.approve_gate(gate, "bob", "ok", None)
            assert wake.wait(1.0), "the waiter was not woken within a second"
            assert time.monotonic() - started < 1.0
            assert engine.get_gate_approval(gate).is_approved
        finally:
            GATE_SIGNALS.unregister(gate)


def test_a_cancel_request_from_another_machine_is_seen_at_the_next_poll(dsn) -> None:
    from runkon_flow.persistence.postgres import PostgresStore

    with PostgresStore(dsn) as engine, PostgresStore(dsn, listen=False) as dashboard:
        run = engine.create_leased_run(NewRun(workflow_name="wf"), "t", 30)
        dashboard.update_run_status(run.id, RunStatus.CANCELLING, None, None)
        assert engine.is_run_cancelled(run.id)


# --------------------------------------------------------------------------- schema and errors


def open_store(dsn: str, **kw):
    from runkon_flow.persistence.postgres import PostgresStore

    return PostgresStore(dsn, listen=False, **kw)


def test_an_empty_database_gets_the_schema_on_first_open(dsn) -> None:
    open_store(dsn).close()
    assert sql(dsn, "SELECT version FROM runkon_schema") == [(pgs.SCHEMA_VERSION,)]
    open_store(dsn).close()  # and is simply used the second time


def test_an_empty_database_opened_only_to_read_is_refused_and_left_empty(dsn) -> None:
    from runkon_flow.errors import NoRunDatabase

    with pytest.raises(NoRunDatabase, match="has no runkon tables"):
        open_store(dsn, create=False)
    tables = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    assert sql(dsn, tables) == []
    open_store(dsn).close()
    open_store(dsn, create=False).close()  # once it has them, it opens


def test_a_database_made_by_another_tool_is_refused_by_name(dsn) -> None:
    sql(dsn, "CREATE TABLE workflow_runs (id TEXT PRIMARY KEY, something TEXT)")
    with pytest.raises(PersistenceError) as caught:
        open_store(dsn)
    message = str(caught.value)
    assert "is not a runkon database" in message and "workflow_runs" in message
    assert "\n" not in message and display_dsn(dsn) in message


def test_a_schema_holding_other_programs_tables_is_refused_untouched(dsn) -> None:
    # As a SQLite file with other tables is: runkon's tables are not slipped in beside them by a
    # mere `runkon-flow runs`; `db upgrade` (upgrade=True) puts them there on purpose.
    sql(dsn, "CREATE TABLE notes (body TEXT)")
    sql(dsn, "CREATE VIEW recent_notes AS SELECT body FROM notes")
    with pytest.raises(PersistenceError) as caught:
        open_store(dsn)
    message = str(caught.value)
    assert "is not a runkon database" in message and "table notes, view recent_notes" in message
    assert "left untouched" in message and "\n" not in message
    assert f"runkon-flow db upgrade --db {shlex.quote(display_dsn(dsn))}`" in message
    tables = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    assert sorted(row[0] for row in sql(dsn, tables)) == ["notes", "recent_notes"]
    open_store(dsn, upgrade=True).close()
    assert sql(dsn, "SELECT version FROM runkon_schema") == [(pgs.SCHEMA_VERSION,)]
    assert sql(dsn, "SELECT count(*) FROM notes") == [(0,)]


def test_a_search_path_naming_no_schema_says_what_to_do(dsn) -> None:
    missing = pg.with_search_path(pg.base_dsn(), "no_such_schema_here")
    with pytest.raises(PersistenceError) as caught:
        open_store(missing)
    message = str(caught.value)
    assert f"schema no_such_schema_here does not exist in {display_dsn(missing)}" in message
    assert "create it (CREATE SCHEMA no_such_schema_here)" in message and "\n" not in message


def test_a_newer_schema_is_refused_with_a_clear_message(dsn) -> None:
    open_store(dsn).close()
    sql(dsn, "UPDATE runkon_schema SET version = 99")
    with pytest.raises(PersistenceError, match=r"schema version 99, newer than this runkon understands"):
        open_store(dsn)


def test_an_older_schema_must_be_upgraded_explicitly(dsn) -> None:
    open_store(dsn).close()
    sql(dsn, "UPDATE runkon_schema SET version = 1")
    sql(dsn, "ALTER TABLE workflow_run_steps DROP COLUMN node_path")
    with pytest.raises(PersistenceError, match=r"schema version 1, older .*runkon-flow db upgrade"):
        open_store(dsn)
    upgraded = open_store(dsn, upgrade=True)
    try:
        run_id = upgraded.create_run(NewRun(workflow_name="wf")).id
        step = upgraded.insert_step(NewStep(run_id, "s", node_path="body.0"))
        assert upgraded.get_step(step).node_path == "body.0"
        assert upgraded.schema_version == pgs.SCHEMA_VERSION
    finally:
        upgraded.close()


def test_a_database_at_version_10_gains_the_rerun_definition_of_version_11(dsn) -> None:
    open_store(dsn).close()
    sql(dsn, "UPDATE runkon_schema SET version = 10")
    sql(dsn, "ALTER TABLE workflow_runs DROP COLUMN rerun_definition")
    upgraded = open_store(dsn, upgrade=True)
    try:
        old = upgraded.create_run(NewRun(workflow_name="wf")).id
        new = upgraded.create_run(NewRun(workflow_name="wf")).id
        upgraded.set_rerun_link(new, old, "deploy", "stored")
        assert upgraded.get_run(new).rerun_definition == "stored"
        assert upgraded.schema_version == pgs.SCHEMA_VERSION >= 11
    finally:
        upgraded.close()


def test_an_unreachable_server_is_one_line_naming_the_database(tmp_path) -> None:
    dsn = f"postgresql://alice:s3cret@/runs?host={tmp_path}"
    with pytest.raises(PersistenceError) as caught:
        open_store(dsn)
    message = str(caught.value)
    assert message.startswith(
        f"persistence error: cannot connect to run database postgresql://alice@/runs?host={tmp_path}:"
    )
    assert "s3cret" not in message and "\n" not in message


def test_a_missing_database_says_how_to_create_it() -> None:
    from urllib.parse import urlsplit

    base = pg.base_dsn()
    parts = urlsplit(base)
    missing = base.replace(parts.path, "/no_such_runkon_db", 1)
    with pytest.raises(PersistenceError) as caught:
        open_store(missing)
    message = str(caught.value)
    assert 'database "no_such_runkon_db" does not exist; create it (createdb no_such_runkon_db' in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("libpq", "hint"),
    [
        ('FATAL:  password authentication failed for user "alice"', "check the user name and the password"),
        ("fe_sendauth: no password supplied", "give the password in the URL, in PGPASSWORD or in ~/.pgpass"),
        ("Connection refused Is the server running on that host", ""),
    ],
)
def test_a_refused_connection_says_what_to_do(libpq: str, hint: str) -> None:
    from runkon_flow.persistence.pg_connect import connect_hint

    said = connect_hint(libpq)
    assert said.startswith(f"; {hint}") if hint else said == ""


def test_libpq_lines_read_as_sentences_on_one_line() -> None:
    from runkon_flow.persistence.pg_connect import error_line

    libpq = (
        'connection is bad: connection to server on socket "/tmp/.s.PGSQL.5432" failed: No such file or '
        "directory\n\tIs the server running locally and accepting connections on that socket?\n"
    )
    assert error_line(Exception(libpq)) == (
        'connection is bad: connection to server on socket "/tmp/.s.PGSQL.5432" failed: No such file or '
        "directory. Is the server running locally and accepting connections on that socket?"
    )
    assert error_line(Exception("first line:\n  second")) == "first line: second"


def test_wrong_credentials_are_one_line_without_the_password() -> None:
    base = pg.base_dsn()
    bad = base.replace("user=postgres", "user=nobody_here") + "&password=hunter2"
    with pytest.raises(PersistenceError) as caught:
        open_store(bad)
    message = str(caught.value)
    assert "cannot connect to run database" in message and "nobody_here" in message
    assert "hunter2" not in message and "\n" not in message


@contextmanager
def own_store(**options):
    """A store on a server of its own (the test halts or restarts it), its URL and the server's
    directory; `options`: the store's (`outage_s`)."""
    from runkon_flow.persistence.postgres import PostgresStore

    with pg.own_server() as (directory, dsn):
        store = PostgresStore(dsn, **options)
        try:
            yield store, dsn, directory
        finally:
            store.close()


@pytest.fixture
def restartable():
    """A store on a server of its own (this test restarts it), its URL and the server's directory."""
    with own_store() as it:
        yield it


OUTAGE_LOG = "runkon_flow.persistence"


def outage_lines(caplog) -> tuple[list[str], list[str]]:
    """The store's 'unreachable' and 'is back' log lines."""
    said = [r.getMessage() for r in caplog.records if r.name == OUTAGE_LOG]
    return [m for m in said if " unreachable " in m], [m for m in said if " is back after " in m]


def test_a_server_restart_is_ridden_out_and_said_once_when_lost_and_once_when_back(
    restartable, caplog
) -> None:
    from tests import pgserver

    store, dsn, directory = restartable
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    pgserver.restart(directory)
    with caplog.at_level("WARNING", logger=OUTAGE_LOG):
        assert store.get_run(run.id).owner_token == "t1"  # the call in flight waited, on a new connection
        step = store.insert_step(NewStep(run.id, "s", retry_count=0))
        store.update_step(step, StepUpdate.completed(1))
    lost, back = outage_lines(caplog)
    assert len(lost) == 1 and len(back) == 1, (lost, back)
    assert display_dsn(dsn) in lost[0] and "retry for up to 30 s (RUNKON_PG_OUTAGE_S)" in lost[0]
    with pytest.raises(EngineCancelled):
        store.update_step(step, StepUpdate.completed(7))


def test_writes_made_while_the_server_is_down_wait_for_it_and_land_once(restartable, caplog) -> None:
    from runkon_flow.persistence import NewEvent

    from tests import pgserver

    store, _dsn, directory = restartable
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    store.append_events(run.id, [NewEvent(1.0, run.id, "RunStarted", "{}")])
    pgserver.halt(directory)
    timer = threading.Timer(1.0, pgserver.start_again, (directory,))
    timer.start()
    try:
        with caplog.at_level("WARNING", logger=OUTAGE_LOG):
            events = [NewEvent(2.0 + i, run.id, "StepCompleted", f'{{"n": {i}}}') for i in range(5)]
            assert store.append_events(run.id, events, generation=1)
            assert store.acquire_lease(run.id, "t1", 30) == 1  # its own lease, renewed
            assert store.finish_run(run.id, RunStatus.COMPLETED, "done", None, "t1")
    finally:
        timer.join()
    assert [e.seq for e in store.read_events(run.id)] == [1, 2, 3, 4, 5, 6]
    lost, back = outage_lines(caplog)
    assert len(lost) == 1 and len(back) == 1, (lost, back)


def test_after_an_outage_longer_than_its_lease_a_run_another_engine_took_is_fenced(restartable) -> None:
    """Waiting out the outage does not get round fencing: the lease ran out meanwhile, another
    engine took the run, and the first engine's renewal and writes are refused once it is back."""
    from runkon_flow.persistence.postgres import PostgresStore

    from tests import pgserver
    from tests.cli.run_helpers import wait_for

    store, dsn, directory = restartable
    run = store.create_leased_run(NewRun(workflow_name="wf"), "a", 1)
    step = store.insert_step(NewStep(run.id, "s", retry_count=0))
    pgserver.halt(directory)
    pgserver.start_again(directory)
    other = PostgresStore(dsn)
    try:
        taken: list[int | None] = []
        wait_for(
            lambda: taken.append(other.acquire_lease(run.id, "b", 30)) or taken[-1] is not None,
            "the lease to run out",
        )
        assert taken[-1] == 2
        assert store.acquire_lease(run.id, "a", 1) is None
        with pytest.raises(EngineCancelled):
            store.update_step(step, StepUpdate.completed(1))
    finally:
        other.close()


def test_an_outage_longer_than_the_window_fails_the_call_saying_how_long_it_waited(caplog) -> None:
    from tests import pgserver

    with own_store(outage_s=1) as (store, dsn, directory):
        run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
        pgserver.halt(directory)
        with caplog.at_level("WARNING", logger=OUTAGE_LOG):
            with pytest.raises(PersistenceError) as caught:
                store.get_run(run.id)
            assert (
                f"run database {display_dsn(dsn)} unreachable for 1 s (RUNKON_PG_OUTAGE_S), gave up: "
                in str(caught.value)
            )
            assert isinstance(caught.value, StoreUnavailable)
            # The outage goes on: no second wait, no second line.
            with pytest.raises(StoreUnavailable) as again:
                store.get_run(run.id)
            # libpq's words were given once; the calls that fail after it do not repeat them.
            assert str(again.value).endswith("unreachable for 1 s (RUNKON_PG_OUTAGE_S), gave up")
            pgserver.start_again(directory)
            assert store.get_run(run.id).owner_token == "t1"
        lost, back = outage_lines(caplog)
        assert len(lost) == 1 and len(back) == 1, (lost, back)


def test_a_store_that_gave_up_on_an_outage_takes_writes_again_at_its_first_write_alone() -> None:
    """After an outage given up on (`unavailable()`, which a fan-out asks before each item), the
    first writes of a resume — each alone — find the server back and end that state: a dashboard
    resuming in the same process must not have its first fan-out stop again at once (as SQLite's
    store did: docs/persistence.md, "A full disk stops a fan-out")."""
    from tests import pgserver

    firsts = {
        "read-modify-write": lambda store, run_id: store.acquire_lease(run_id, "t1", 30),
        "single write": lambda store, run_id: store.release_lease(run_id, "t1"),
        "write-behind, flushed alone": lambda store, run_id: (
            store.insert_step(NewStep(run_id, "s", retry_count=0), durable=False),
            store.flush(),
        ),
    }
    with own_store(outage_s=0.5) as (store, _, directory):
        run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
        for kind, first in firsts.items():
            pgserver.halt(directory)
            try:
                with pytest.raises(StoreUnavailable):
                    store.acquire_lease(run.id, "t1", 30)
                assert isinstance(store.unavailable(), StoreUnavailable)
            finally:
                pgserver.start_again(directory)
            first(store, run.id)
            assert store.unavailable() is None, kind


def test_queued_writes_lost_to_an_outage_given_up_on_are_said_in_one_line(caplog) -> None:
    from tests import pgserver

    with own_store(outage_s=0.5) as (store, _, directory):
        try:
            for i in range(3):
                store.create_leased_run(NewRun(workflow_name=f"c{i}"), f"t{i}", 30, durable=False)
            pgserver.halt(directory)
            with caplog.at_level("WARNING", logger=OUTAGE_LOG):
                store.flush()
            failed = [r.getMessage() for r in caplog.records if "write-behind write" in r.getMessage()]
            assert len(failed) == 1 and ": 3 write-behind writes failed: " in failed[0], failed
            assert "unreachable for 0.5 s (RUNKON_PG_OUTAGE_S), gave up" in failed[0]
        finally:
            pgserver.start_again(directory)


def test_without_an_outage_window_a_restart_fails_the_call_in_flight_then_the_store_reconnects() -> None:
    from tests import pgserver

    with own_store(outage_s=0) as (store, dsn, directory):
        run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
        pgserver.restart(directory)
        with pytest.raises(PersistenceError) as caught:
            store.get_run(run.id)
        assert str(caught.value).startswith(f"persistence error: run database {display_dsn(dsn)}: ")
        assert "\n" not in str(caught.value)
        # Nothing was lost, and the next call works on a new connection.
        assert store.get_run(run.id).owner_token == "t1"


def test_a_store_opened_by_a_reader_that_waits_out_outages_itself_fails_at_once(caplog) -> None:
    """`watch` and the dashboard (runs in background runners) say an outage their own way and try
    again every second (observe/outage.py): their store does not hold a read for the window."""
    from runkon_flow.persistence.pg_connect import leave_outages_to_the_reader
    from runkon_flow.persistence.postgres import PostgresStore

    from tests import pgserver

    with pg.own_server() as (directory, dsn):
        with leave_outages_to_the_reader():
            store = PostgresStore(dsn)
        try:
            run = store.create_run(NewRun(workflow_name="wf"))
            pgserver.halt(directory)
            with caplog.at_level("WARNING", logger=OUTAGE_LOG), pytest.raises(PersistenceError) as caught:
                store.get_run(run.id)
            assert "gave up" not in str(caught.value)
            assert outage_lines(caplog) == ([], [])
            pgserver.start_again(directory)
            assert store.get_run(run.id) is not None
        finally:
            store.close()


class LoseTheAnswer:
    """The store's cursor, except that the first statement `when(query)` picks is run — and
    committed — and then the connection is lost before its answer arrives (a server gone at
    that instant)."""

    def __init__(self, store, when) -> None:
        self._cur = store._cursor
        self._when = when
        self.fired = False

    def execute(self, query, params=None, **kwargs):
        import psycopg

        result = self._cur.execute(query, params, **kwargs)
        if not self.fired and self._when(str(query)):
            self.fired = True
            self._cur.connection.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    def __getattr__(self, name):
        return getattr(self._cur, name)


def lose_the_answer(store, when) -> LoseTheAnswer:
    store._cursor = lost = LoseTheAnswer(store, when)
    return lost


def test_an_event_append_whose_commit_answer_was_lost_is_in_the_stream_once(store, caplog) -> None:
    from runkon_flow.persistence import NewEvent

    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    store.append_events(run.id, [NewEvent(1.0, run.id, "RunStarted", "{}")])
    lost = lose_the_answer(store, lambda q: q == "COMMIT")
    events = [NewEvent(2.0 + i, run.id, "StepCompleted", f'{{"n": {i}}}') for i in range(3)]
    with caplog.at_level("WARNING", logger=OUTAGE_LOG):
        assert store.append_events(run.id, events, generation=1)
    assert lost.fired
    assert [(e.seq, e.kind) for e in store.read_events(run.id)] == [
        (1, "RunStarted"),
        (2, "StepCompleted"),
        (3, "StepCompleted"),
        (4, "StepCompleted"),
    ]
    assert len(outage_lines(caplog)[0]) == 1


def test_a_finish_whose_answer_was_lost_is_not_taken_for_a_refusal(store) -> None:
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    lost = lose_the_answer(store, lambda q: q.startswith("UPDATE workflow_runs SET status"))
    assert store.finish_run(run.id, RunStatus.COMPLETED, "done", None, "t1") is True
    assert lost.fired
    assert store.get_run(run.id).status is RunStatus.COMPLETED


def test_a_lease_renewal_whose_answer_was_lost_is_the_engines_own_not_a_takeover(store) -> None:
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    lost = lose_the_answer(store, lambda q: q.startswith("UPDATE workflow_runs SET generation"))
    assert store.acquire_lease(run.id, "t1", 30) == 1  # renewed: same generation, not refused
    assert lost.fired
    assert store.acquire_lease(run.id, "t2", 30) is None  # still held: another engine is refused


def test_queued_rows_whose_commit_answer_was_lost_are_written_once_without_complaint(
    store, dsn, caplog
) -> None:
    runs = [
        store.create_leased_run(NewRun(workflow_name=f"c{i}"), f"t{i}", 30, durable=False) for i in range(5)
    ]
    for run in runs:
        store.insert_step(NewStep(run.id, "s", retry_count=0), durable=False)
    lost = lose_the_answer(store, lambda q: q.startswith("WITH"))
    with caplog.at_level("WARNING", logger=OUTAGE_LOG):
        store.flush()
    assert lost.fired
    assert sql(dsn, "SELECT count(*) FROM workflow_runs") == [(5,)]
    assert sql(dsn, "SELECT count(*) FROM workflow_run_steps") == [(5,)]
    assert not [r for r in caplog.records if "write-behind write failed" in r.getMessage()]


def test_a_write_that_cannot_be_run_twice_fails_when_its_commit_answer_was_lost(store) -> None:
    run = store.create_run(NewRun(workflow_name="wf"))
    lose_the_answer(store, lambda q: q == "COMMIT")
    with pytest.raises(
        PersistenceError, match=r"lost while committing .*; the write may or may not have been made"
    ):
        store.start_run(run.id, resuming=False)
    assert (
        store.get_run(run.id).status is RunStatus.RUNNING
    )  # it had committed: resumable as any failed write


# --------------------------------------------------------------------------- write-behind


def test_write_behind_child_rows_are_batched_and_folded_into_two_inserts(store, dsn) -> None:
    """A foreach child's four writes reach the server as two INSERTs (the rows, not four statements),
    and only when something needs them: a read, a durable write or flush()."""
    runs = []
    for i in range(20):
        run = store.create_leased_run(NewRun(workflow_name=f"c{i}"), f"t{i}", 30, durable=False)
        step = store.insert_step(NewStep(run.id, "s", retry_count=0), durable=False)
        store.update_step(step, StepUpdate.completed(1, result_text="ok"), durable=False)
        store.finish_run(run.id, RunStatus.COMPLETED, "done", None, f"t{i}", durable=False)
        runs.append((run.id, step))
    assert sql(dsn, "SELECT count(*) FROM workflow_runs") == [(0,)]  # still queued
    store.flush()
    rows = sql(dsn, "SELECT status, owner_token, lease_until FROM workflow_runs")
    assert rows == [("completed", None, None)] * 20
    assert sql(dsn, "SELECT count(*) FROM workflow_run_steps WHERE status = 'completed'") == [(20,)]


@pytest.mark.parametrize("injected_clock", [False, True], ids=["server clock", "injected clock"])
def test_child_rows_sent_with_an_item_write_keep_every_column(dsn, injected_clock: bool) -> None:
    """The engine's usual batch (queued child run and step rows, then a durable item write) goes as
    one statement with its rows as JSON: every column lands as the durable path writes it, the
    lease ends at the server's now + ttl (or the injected clock's estimate)."""
    from datetime import UTC, datetime

    from runkon_flow.persistence import FanOutItemUpdate
    from runkon_flow.persistence.postgres import PostgresStore

    from tests.persistence.conftest import FakeClock

    clock = FakeClock() if injected_clock else None
    with PostgresStore(dsn, clock=clock) as store:
        parent = store.create_run(NewRun(workflow_name="wf"))
        fe = store.insert_step(NewStep(parent.id, "fe", role="foreach", retry_count=0))
        item, other = store.insert_fan_out_items(fe, [("t", "a", "", {}), ("t", "b", "", {})])
        pairs = []
        for durable in (True, False):
            run = store.create_leased_run(
                NewRun(
                    workflow_name="child",
                    parent_run_id=parent.id,
                    definition_snapshot='{"title": "Chïld \\n \'q\'"}',
                    inputs={"k": "v é", "n": "1"},
                    iteration=3,
                    dry_run=True,
                    trigger="manual",
                ),
                "tok",
                600,
                durable=durable,
            )
            step = NewStep(
                run.id,
                "s",
                role="gate",
                can_commit=True,
                position=4,
                iteration=2,
                retry_count=None,
                gate_type="human",
                gate_prompt="ok?",
                gate_timeout="5m",
                gate_options='["a"]',
                node_path="body.1",
            )
            pairs.append((run.id, store.insert_step(step, durable=durable)))
        odd = 'a "quoted\\" {x,y} NULL, é'  # any text survives the batch's array literal
        store.batch_update_fan_out_items(
            [
                (other, FanOutItemUpdate.running("first")),
                (item, FanOutItemUpdate.running(pairs[1][0])),
                (other, FanOutItemUpdate.running(odd)),  # named twice: the last update stays
            ]
        )
        # Written: nothing is queued any more, another connection sees the rows.
        assert not store._history and not store._pending
        (durable_run, durable_step), (queued_run, queued_step) = pairs
        columns = (
            'status, dry_run, "trigger", definition_snapshot, inputs, iteration, workflow_title, '
            "owner_token, generation, parent_run_id"
        )
        select = f"SELECT {columns} FROM workflow_runs WHERE id = %s"
        assert sql(dsn, select, (queued_run,)) == sql(dsn, select, (durable_run,))
        step_columns = ", ".join(c for c in STEP_COLUMN_NAMES if c not in ("id", "workflow_run_id"))
        select = f"SELECT {step_columns} FROM workflow_run_steps WHERE id = %s"
        assert sql(dsn, select, (queued_step,)) == sql(dsn, select, (durable_step,))
        (lease,) = sql(dsn, "SELECT lease_until FROM workflow_runs WHERE id = %s", (queued_run,))[0]
        if injected_clock:
            assert lease == datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
        else:
            (delta,) = sql(dsn, "SELECT extract(epoch FROM %s - clock_timestamp())", (lease,))[0]
            assert 590 < float(delta) <= 600
        assert [i.child_run_id for i in store.get_fan_out_items(fe)] == [queued_run, odd]
        # One transaction wrote the child's rows and the item write that reports it.
        xmins = sql(
            dsn,
            "SELECT (SELECT xmin::text FROM workflow_runs WHERE id = %s), "
            "(SELECT xmin::text FROM workflow_run_steps WHERE id = %s), "
            "(SELECT xmin::text FROM workflow_run_step_fan_out_items WHERE id = %s)",
            (queued_run, queued_step, item),
        )[0]
        assert len(set(xmins)) == 1


def test_the_batch_statement_is_planned_once_not_per_batch(store) -> None:
    """Batches of different sizes reuse one plan of the (prepared) batch statement: planning it
    anew for every batch cost the server more than running it."""
    from runkon_flow.persistence import FanOutItemUpdate

    parent = store.create_run(NewRun(workflow_name="wf"))
    fe = store.insert_step(NewStep(parent.id, "fe", role="foreach", retry_count=0))
    # Enough items that a plan for one or two of them differs from the plan for any number.
    items = iter(store.insert_fan_out_items(fe, [("t", str(n), "", {}) for n in range(3000)]))
    for size in [1, 2, 1, 1, 2, 1] * 4:  # psycopg prepares the statement at its 6th run
        updates = []
        for _ in range(size):
            child = store.create_leased_run(
                NewRun(workflow_name="c", parent_run_id=parent.id), "t", 30, durable=False
            )
            store.insert_step(NewStep(child.id, "s", retry_count=0), durable=False)
            updates.append((next(items), FanOutItemUpdate.running(child.id)))
        store.batch_update_fan_out_items(updates)
    with store._lock:
        plans = store._cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE 'WITH r AS%'"
        ).fetchall()
    assert len(plans) == 1
    generic, custom = plans[0]
    assert generic >= 10 and custom <= 5


def test_reads_from_other_threads_see_queued_writes(store) -> None:
    run = store.create_leased_run(NewRun(workflow_name="c"), "t", 30, durable=False)
    seen = []
    reader = threading.Thread(target=lambda: seen.append(store.get_run(run.id)))
    reader.start()
    reader.join()
    assert seen[0] is not None and seen[0].status is RunStatus.RUNNING


def test_queued_item_batches_go_together_and_a_bad_one_fails_alone(store, caplog) -> None:
    """A write-behind item batch still queued is sent with the next batch in one statement; if it
    names an unknown item, only it fails (logged) and the durable batch after it still lands."""
    from runkon_flow.persistence import FanOutItemStatus, FanOutItemUpdate

    run_id = store.create_run(NewRun(workflow_name="wf")).id
    step = store.insert_step(NewStep(run_id, "fe", role="foreach", retry_count=0))
    a, b, c = store.insert_fan_out_items(step, [("t", x, "", {}) for x in "abc"])
    store.batch_update_fan_out_items([(a, FanOutItemUpdate.running("child-a"))])
    done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED)
    store.batch_update_fan_out_items([(a, done)], durable=False)
    store.batch_update_fan_out_items([("nope", done)], durable=False)
    store.batch_update_fan_out_items([(b, FanOutItemUpdate.running("child-b"))])
    rows = {r.id: r for r in store.get_fan_out_items(step)}
    assert (rows[a].status, rows[a].child_run_id) == (FanOutItemStatus.COMPLETED, "child-a")
    assert (rows[b].status, rows[b].child_run_id) == (FanOutItemStatus.RUNNING, "child-b")
    assert rows[c].status is FanOutItemStatus.PENDING
    assert "fan-out item nope not found" in caplog.text
    with pytest.raises(PersistenceError, match="fan-out item nope not found"):
        store.batch_update_fan_out_items([(c, done), ("nope", done)])
    assert {r.id: r.status for r in store.get_fan_out_items(step)}[c] is FanOutItemStatus.PENDING


def test_workers_item_writes_share_one_statement_and_a_bad_one_fails_only_its_caller(store, dsn) -> None:
    """Foreach workers' durable item writes queued behind a busy connection are committed together
    (one statement for all of them, with the child rows queued before them); a write naming an
    unknown item fails for its own caller only, and the others land."""
    from runkon_flow.persistence import FanOutItemStatus, FanOutItemUpdate

    run_id = store.create_run(NewRun(workflow_name="wf")).id
    step = store.insert_step(NewStep(run_id, "fe", role="foreach", retry_count=0))
    ids = store.insert_fan_out_items(step, [("t", f"i{n}", "", {}) for n in range(8)])
    outcome: dict[int, object] = {}

    def worker(n: int) -> None:
        new_run = NewRun(workflow_name="c", parent_run_id=run_id)
        child = store.create_leased_run(new_run, "t", 30, durable=False)
        store.insert_step(NewStep(child.id, "s", retry_count=0), durable=False)
        target = "nope" if n == 5 else ids[n]
        try:
            store.batch_update_fan_out_items([(target, FanOutItemUpdate.running(child.id))])
            outcome[n] = child.id
        except PersistenceError as exc:
            outcome[n] = exc

    with store._lock:  # the connection is busy: all eight queue behind one leader
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(store._pending) < 8 and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in threads:
        t.join(timeout=30)
    assert "fan-out item nope not found" in str(outcome.pop(5))
    rows = {r.id: r for r in store.get_fan_out_items(step)}
    for n, child in outcome.items():
        assert (rows[ids[n]].status, rows[ids[n]].child_run_id) == (FanOutItemStatus.RUNNING, child)
    assert rows[ids[5]].status is FanOutItemStatus.PENDING
    assert sql(dsn, "SELECT count(*) FROM workflow_runs WHERE parent_run_id = %s", (run_id,)) == [(8,)]


def test_a_cancel_from_another_machine_reaches_the_engine_before_its_next_poll(dsn, tmp_path) -> None:
    """The engine polls for cancels only every 30 s here; the NOTIFY sent with the cancel request
    makes it look at once, so the run stops within a second or so (plus the step's kill)."""
    from runkon_flow.persistence.postgres import PostgresStore
    from runkon_flow.runtime.types import WorkflowExecConfig
    from runkon_flow.workspace import Workspace

    (tmp_path / "slow.wf").write_text(
        'workflow slow {\n  script wait { run = "touch started; sleep 30" }\n}\n'
    )
    with PostgresStore(dsn) as engine_store, PostgresStore(dsn, listen=False) as dashboard:
        ws = Workspace([tmp_path], engine_store, exec_config=WorkflowExecConfig(cancel_poll_interval=30.0))
        run_id = ws.create_run("slow", {})
        done = threading.Event()
        worker = threading.Thread(target=lambda: (ws.execute(run_id), done.set()), daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.02)
        time.sleep(0.3)  # the engine's store is listening since it took the lease
        asked = time.monotonic()
        dashboard.update_run_status(run_id, RunStatus.CANCELLING, None, None)
        assert done.wait(10), "the run did not stop"
        assert time.monotonic() - asked < 5.0, time.monotonic() - asked  # without the notification: 30 s
        assert dashboard.get_run(run_id).status is RunStatus.CANCELLED


# --------------------------------------------------------------------------- item fence


def _until_one_waits_for_a_lock(look) -> None:  # type: ignore[no-untyped-def]
    """Until a session of the test database waits for a lock (the write a test holds back), read
    on `look` (autocommit); at most 10 s, after which the test's own assertions say what failed."""
    waiting = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + 10
    while look.execute(waiting).fetchone()[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.parametrize("write", ["item", "events"])
def test_a_fenced_write_does_not_deadlock_with_a_resumes_end(store, dsn, write: str) -> None:
    """A stale engine's group commit holds a child's queued end and its fenced item write (or
    event append); a
    resume ending the run locks the run row and then the runs below it (`finish_run(…,
    abandoned=…)`). The commit locks the fencing run first, so the two queue instead of each
    holding what the other waits for (before: the child's row, then the run's — a deadlock, one
    of them aborted; here the resume's, as it gives up first)."""
    import psycopg
    from runkon_flow.persistence import FanOutItemStatus, FanOutItemUpdate, Fence, NewEvent

    run = store.create_leased_run(NewRun(workflow_name="wf"), "stale", 60)
    step_id = store.insert_step(NewStep(run.id, "fe", role="foreach", retry_count=0))
    (item,) = store.insert_fan_out_items(step_id, [("t", "a", "", {})])
    child = store.create_leased_run(NewRun(workflow_name="child", parent_run_id=run.id), "c", 60)
    store.batch_update_fan_out_items([(item, FanOutItemUpdate.running(child.id))])
    store.finish_run(child.id, RunStatus.COMPLETED, None, None, "c", durable=False)  # queued
    with psycopg.connect(dsn) as resume, psycopg.connect(dsn, autocommit=True) as look:
        resume.execute("SET deadlock_timeout = '10ms'")  # it is the one to notice a deadlock
        resume.execute(
            "UPDATE workflow_runs SET owner_token = 'new-owner', generation = 2 WHERE id = %s", (run.id,)
        )
        written: list[bool] = []
        done = FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, child.id)
        event = NewEvent(ts=1.0, event_run_id=child.id, kind="RunCompleted", payload="{}")

        def stale_commit() -> None:
            if write == "item":
                written.append(store.batch_update_fan_out_items([(item, done)], fence=Fence(run.id, "stale")))
            else:  # queued, then committed with the child's end by a flush (the monitor's tick)
                store.append_events(run.id, [event], durable=False, generation=1)
                store.flush()
                written.append(False)

        commit = threading.Thread(target=stale_commit)
        commit.start()
        _until_one_waits_for_a_lock(look)  # until the stale engine's commit waits for the run's row
        resume.execute(
            "UPDATE workflow_runs SET status = 'cancelled', owner_token = NULL WHERE id = %s", (child.id,)
        )  # before: DeadlockDetected
        resume.commit()
        commit.join()
    assert written == [False]
    assert store.get_fan_out_items(step_id)[0].status is FanOutItemStatus.RUNNING
    assert store.read_events(run.id) == []
    assert store.get_run(child.id).status is RunStatus.CANCELLED  # the resume's end of it, not the stale one


def test_a_workers_fenced_append_does_not_deadlock_with_the_parents_lease_refresh(store, dsn) -> None:
    """A remote worker appends to the top run's stream fenced by its generation (the run's row
    read FOR SHARE); the engine that owns the run commits, in one group commit, its own append
    (the stream's advisory lock) and then its lease refresh (an UPDATE of that row). A batch takes
    the streams' locks before the runs' rows, so the worker waits for the stream holding nothing
    the refresh needs (before: it held the row FOR SHARE while it waited for the stream, the
    refresh waited for the row — a deadlock; the parent's refresh aborted, and a failed refresh
    stops the run as LeaseLost)."""
    import psycopg
    from runkon_flow.persistence import NewEvent

    run = store.create_leased_run(NewRun(workflow_name="wf"), "owner", 60)
    event = NewEvent(ts=1.0, event_run_id=run.id, kind="EngineLog", payload="{}")
    with psycopg.connect(dsn) as parent, psycopg.connect(dsn, autocommit=True) as look:
        parent.execute("SET deadlock_timeout = '10ms'")  # it is the one to notice a deadlock
        parent.execute("SELECT pg_advisory_xact_lock(hashtext('runkon events'), hashtext(%s))", (run.id,))
        written: list[bool] = []

        def worker_commit() -> None:  # the append commits with the worker's queued rows
            store.append_events(run.id, [event], durable=False)  # queued earlier, unfenced
            written.append(store.append_events(run.id, [event], generation=1))

        worker = threading.Thread(target=worker_commit)
        worker.start()
        _until_one_waits_for_a_lock(look)  # until the worker's append waits for the stream
        parent.execute(
            "UPDATE workflow_runs SET lease_until = lease_until + interval '1 second' "
            "WHERE id = %s AND owner_token = 'owner'",
            (run.id,),
        )  # before: DeadlockDetected
        parent.commit()
        worker.join()
    assert written == [True]
    assert [e.kind for e in store.read_events(run.id)] == ["EngineLog", "EngineLog"]


def test_a_group_commit_chosen_as_a_deadlocks_victim_runs_its_writes_one_by_one(store, dsn) -> None:
    """A group commit that PostgreSQL aborts to break a deadlock (another transaction locked its
    rows in the other order) committed nothing, and its connection is fine: its writes run one by
    one, as after any failed batch (before: DeadlockDetected is an OperationalError, taken for a
    lost connection — every write of the batch failed, the write-behind ones dropped: here both
    runs' ends; a durable one, a lease refresh, stops its run)."""
    import psycopg

    first = store.create_leased_run(NewRun(workflow_name="a"), "t", 60)
    second = store.create_leased_run(NewRun(workflow_name="b"), "t", 60)
    store.finish_run(first.id, RunStatus.COMPLETED, None, None, "t", durable=False)  # queued
    store.finish_run(second.id, RunStatus.COMPLETED, None, None, "t", durable=False)
    with psycopg.connect(dsn) as other, psycopg.connect(dsn, autocommit=True) as look:
        other.execute("SET deadlock_timeout = '10s'")  # the store's commit is the one to notice it
        other.execute("UPDATE workflow_runs SET trigger = 'x' WHERE id = %s", (second.id,))
        flush = threading.Thread(target=store.flush)  # locks the first run, then waits for the second
        flush.start()
        _until_one_waits_for_a_lock(look)
        other.execute("UPDATE workflow_runs SET trigger = 'x' WHERE id = %s", (first.id,))  # the cycle
        other.commit()
        flush.join()
    assert store.get_run(first.id).status is RunStatus.COMPLETED
    assert store.get_run(second.id).status is RunStatus.COMPLETED


def test_a_lone_write_chosen_as_a_deadlocks_victim_is_run_again(store, dsn) -> None:
    """A write run alone (a durable one, or one of a failed group commit's) that PostgreSQL aborts
    to break a deadlock committed nothing: the store runs it again, as PostgreSQL recommends
    (before: it failed — here a resumed run's end that also ends the child it abandoned, which
    another transaction had locked before locking the run; a write-behind one was dropped)."""
    import psycopg

    parent = store.create_leased_run(NewRun(workflow_name="fan"), "t", 60)
    child = store.create_run(
        NewRun(workflow_name="item", parent_run_id=parent.id, parent_workflow_run_id=parent.id)
    )
    written: list[bool] = []
    with psycopg.connect(dsn) as other, psycopg.connect(dsn, autocommit=True) as look:
        other.execute("SET deadlock_timeout = '10s'")  # the store's write is the one to notice it
        other.execute("UPDATE workflow_runs SET trigger = 'x' WHERE id = %s", (child.id,))
        end = threading.Thread(  # locks the run, then waits for the child
            target=lambda: written.append(
                store.finish_run(parent.id, RunStatus.FAILED, None, "x", "t", abandoned="abandoned")
            )
        )
        end.start()
        _until_one_waits_for_a_lock(look)
        other.execute("UPDATE workflow_runs SET trigger = 'x' WHERE id = %s", (parent.id,))  # the cycle
        other.commit()
        end.join()
    assert written == [True]
    assert store.get_run(parent.id).status is RunStatus.FAILED
    assert (store.get_run(child.id).status, store.get_run(child.id).error) == (
        RunStatus.CANCELLED,
        "abandoned",
    )


def test_an_abandoning_finish_whose_answer_was_lost_still_names_the_runs_it_ended(store) -> None:
    """A resume's `finish_run(…, abandoned=…)` ends the children it did not reach again, and the
    engine says each one's end from the ids the store gives back. Its commit answer lost and the
    write run again, the finish found itself done and answered "written" with no ids: those
    children's stored stream read them running for good."""
    run = store.create_leased_run(NewRun(workflow_name="wf"), "t1", 30)
    below = [
        store.create_leased_run(NewRun(workflow_name="leaf", parent_workflow_run_id=run.id), f"c{i}", 30).id
        for i in range(2)
    ]
    lost = lose_the_answer(store, lambda q: q == "COMMIT")
    ended: list[str] = []
    assert store.finish_run(run.id, RunStatus.COMPLETED, "ok", None, "t1", abandoned="gone", ended=ended)
    assert lost.fired
    assert sorted(ended) == sorted(below)
    assert all(store.get_run(i).status is RunStatus.CANCELLED for i in below)
