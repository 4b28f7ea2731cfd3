"""`--db postgresql://…` and `RUNKON_DB=postgresql://…`: the CLI and the dashboard on a PostgreSQL
server — running, listing, upgrading the schema, and one-line errors without the password."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from runkon_flow.persistence.location import db_location
from runkon_flow.persistence.pg_connect import display_dsn

from tests import pg
from tests.cli.run_helpers import cli, run_id_of, write

HELLO = """workflow hello {
  script greet {
    run = "echo hi"
  }
}
"""


@pytest.fixture
def dsn() -> str:
    return pg.fresh_dsn()


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    write(tmp_path / "wf" / "hello.wf", HELLO)
    return tmp_path / "wf"


def test_a_run_on_a_server_is_listed_and_shown_from_it(capsys, dsn, wf) -> None:
    code, out, err = cli(capsys, "run", "hello", "--dir", str(wf), "--db", dsn, "--progress", "quiet")
    assert code == 0, err
    run_id = run_id_of(out)
    assert f"db={display_dsn(dsn)}" in out.splitlines()[0]
    code, out, _ = cli(capsys, "runs", "--db", dsn)
    assert code == 0 and run_id in out and "completed" in out
    code, out, _ = cli(capsys, "show", run_id, "--db", dsn)
    assert code == 0 and "greet" in out


def test_runkon_db_selects_the_server(capsys, dsn, wf, monkeypatch) -> None:
    monkeypatch.setenv("RUNKON_DB", dsn)
    code, out, err = cli(capsys, "run", "hello", "--dir", str(wf), "--progress", "quiet")
    assert code == 0, err
    run_id = run_id_of(out)
    code, out, _ = cli(capsys, "runs")
    assert run_id in out
    assert db_location().is_server


def test_db_upgrade_creates_then_reports_the_schema(capsys, dsn) -> None:
    code, out, _ = cli(capsys, "db", "upgrade", "--db", dsn)
    assert code == 0
    assert "upgraded to schema version" in out and "had no runkon schema" in out
    code, out, _ = cli(capsys, "db", "upgrade", "--db", dsn)
    assert code == 0 and "is up to date" in out


def _runkon_tables(dsn: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return sorted(row[0] for row in rows)


def test_commands_that_read_or_continue_runs_create_no_tables_in_an_empty_database(capsys, dsn) -> None:
    # As with a SQLite file that does not exist (docs/cli.md): a mistyped URL must not be given
    # runkon's tables and then look like an empty history.
    nothing = f"no runs yet ({display_dsn(dsn)} has no runkon tables)\n"
    assert cli(capsys, "runs", "--db", dsn) == (0, "", nothing)
    assert cli(capsys, "runs", "--db", dsn, "--json") == (0, "[]\n", "")
    # The gate inbox is a listing too: empty, not an error; answering a gate there is one.
    inbox = f"no gate is waiting ({display_dsn(dsn)} has no runkon tables)\n"
    assert cli(capsys, "gates", "--db", dsn) == (0, inbox, "")
    run_id = "01JZZZZZZZZZZZZZZZZZZZZZZZ"
    for argv in (
        ("show", run_id),
        ("logs", run_id),
        ("grep", "x", run_id),
        ("gates", "approve", "--all"),
        ("watch", run_id),
        ("cancel", run_id),
        ("resume", run_id),
        ("gc", "--older-than", "1d"),
    ):
        code, out, err = cli(capsys, *argv, "--db", dsn)
        assert code == 1, (argv, out, err)
        assert f"no runkon tables in {display_dsn(dsn)} (nothing has run with it yet" in err, (argv, err)
    assert _runkon_tables(dsn) == []


def test_a_search_path_naming_no_schema_is_said_plainly_by_the_read_commands(capsys) -> None:
    # `?options=-csearch_path%3Dnosuch`: a typo'd schema, not a database without runs — and no
    # talk of creating tables to a command that only reads.
    url = pg.with_search_path(pg.base_dsn(), "nosuch").replace("://", "://postgres:hunter2@", 1)
    for argv in (("runs",), ("show", "01JZZZZZZZZZZZZZZZZZZZZZZZ"), ("gates",)):
        code, out, err = cli(capsys, *argv, "--db", url)
        assert (code, out) == (1, ""), (argv, err)
        assert f"schema nosuch does not exist in {display_dsn(url)}; nothing was created" in err, (argv, err)
        assert "tables" not in err and "hunter2" not in err and len(err.strip().splitlines()) == 1


def test_an_older_schema_is_refused_until_db_upgrade(capsys, dsn, wf) -> None:
    import psycopg

    cli(capsys, "db", "upgrade", "--db", dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE runkon_schema SET version = 2")
    code, _, err = cli(capsys, "runs", "--db", dsn)
    assert code == 1
    assert "schema version 2, older" in err
    assert len(err.strip().splitlines()) == 1
    # The command it gives names the database given — and works pasted as it is (the test URL's
    # search_path is in an `options=-csearch_path%3D…` parameter, which libpq wants encoded).
    command = re.search(r"run `(runkon-flow db upgrade [^`]*)` once", err)
    assert command is not None, err
    assert command[1] == f"runkon-flow db upgrade --db {shlex.quote(display_dsn(dsn))}"
    code, out, err = cli(capsys, *shlex.split(command[1])[1:])
    assert code == 0 and "was at schema version 2" in out, err
    code, _, err = cli(capsys, "run", "hello", "--dir", str(wf), "--db", dsn, "--progress", "quiet")
    assert code == 0, err


def test_an_unreachable_server_is_one_line_without_the_password(capsys, tmp_path, wf) -> None:
    url = f"postgresql://alice:s3cret@/runs?host={tmp_path}"
    for argv in (("runs", "--db", url), ("run", "hello", "--dir", str(wf), "--db", url)):
        code, out, err = cli(capsys, *argv)
        assert code == 1
        assert "s3cret" not in out + err
        [line] = err.strip().splitlines()
        assert f"cannot connect to run database postgresql://alice@/runs?host={tmp_path}" in line


def test_the_dashboard_opens_a_server_store_and_falls_back_when_it_cannot(dsn, tmp_path) -> None:
    from runkon_flow.persistence.memory import InMemoryStore

    from runkon_tui.host import open_store

    pg.open_db(dsn).close()  # a database something has run with (an empty one: test_startup.py)
    store, problem = open_store(dsn)
    try:
        assert problem is None and type(store).__name__ == "PostgresStore"
    finally:
        store.close()
    store, problem = open_store(f"postgresql://alice:s3cret@/runs?host={tmp_path}")
    assert isinstance(store, InMemoryStore)
    assert "cannot connect to run database" in problem and "s3cret" not in problem


def test_the_dashboard_says_a_search_path_names_no_schema_that_exists(capsys) -> None:
    from runkon_flow.persistence.memory import InMemoryStore

    from runkon_tui.host import open_store

    url = pg.with_search_path(pg.base_dsn(), "nosuch")
    store, problem = open_store(url)
    assert isinstance(store, InMemoryStore)  # runs kept in memory, said so (docs/dashboard.md)
    assert f"schema nosuch does not exist in {display_dsn(url)}; nothing was created" in problem
    assert "tables" not in problem


def test_a_detached_run_on_a_server_completes_and_never_shows_the_password(tmp_path, wf) -> None:
    """`run --detach` hands a server URL to the background runner through its environment (the URL
    may hold a password; a command line is visible to every user of the machine)."""
    import os
    import re
    import subprocess
    import sys
    import time

    from runkon_flow.persistence import RunStatus

    from tests.pg import open_db

    dsn = pg.fresh_dsn()
    secret_dsn = dsn.replace("postgresql://", "postgresql://postgres:hunter2@", 1)
    secret_dsn = secret_dsn.replace("&user=postgres", "")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("RUNKON_DB", None)
    argv = ["run", "hello", "--dir", str(wf), "--db", secret_dsn, "--detach"]
    started = subprocess.run(
        [sys.executable, "-m", "runkon_flow.cli", *argv],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "hunter2" not in started.stdout + started.stderr
    run_id = re.search(r"run_id=(\S+)", started.stdout)[1]
    log = tmp_path / "state" / "runkon" / "logs" / f"{run_id}.log"
    with open_db(dsn) as store:
        deadline = time.monotonic() + 30
        while store.get_run(run_id).status is not RunStatus.COMPLETED:
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.05)
    assert log.exists() and "hunter2" not in log.read_text()


def test_the_gate_inbox_on_a_server_lists_and_approves_a_gate_another_process_waits_at(
    capsys, dsn, tmp_path
) -> None:
    import json

    from tests.cli.gate_helpers import SHIP, waiting_in_a_process

    write(tmp_path / "wf" / "ship.wf", SHIP)
    with waiting_in_a_process(tmp_path, "ship", db=dsn) as (proc, out, run_id):
        code, listed, _ = cli(capsys, "gates", "--json", "--db", dsn)
        gates = [json.loads(line) for line in listed.splitlines()]
        assert code == 0 and [(g["run_id"], g["gate"], g["held"]) for g in gates] == [
            (run_id, "human_approval", True)
        ]
        code, said, _ = cli(
            capsys, "gates", "approve", "--all", "--db", dsn, "--by", "carol", "--note", "pg ok"
        )
        assert code == 0 and said == f"gate human_approval of run {run_id} (ship) approved by carol\n"
        assert proc.wait(timeout=30) == 0
    assert "GateResolved gate=human_approval approved=true by=carol" in out.read_text()
