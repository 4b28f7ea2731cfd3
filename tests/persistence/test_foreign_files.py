"""A file that is not a runkon database is refused untouched, byte for byte (issue 16, item 5).

Opening a store switches the file to WAL and writes runkon's tables, indexes and `user_version`:
done to another program's database, that silently changes it. Such a file is refused with a clear
message before anything is written — not even the journal mode changes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from runkon_flow.errors import PersistenceError
from runkon_flow.persistence import SqliteStore
from runkon_flow.persistence.models import NewRun


def foreign_db(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_a_database_with_other_tables_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    before = foreign_db(path)
    with pytest.raises(PersistenceError) as info:
        SqliteStore(path)
    message = str(info.value)
    assert f"cannot open run database {path}: not a runkon database (it holds table notes)" in message
    assert "left untouched" in message and "RUNKON_DB" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no -wal / -shm beside it
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def test_a_runkon_database_that_another_tool_added_tables_to_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE extra (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(PersistenceError, match="it holds table extra"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes\n" * 300)
    with pytest.raises(PersistenceError, match="file is not a database \\(not an SQLite file\\)"):
        SqliteStore(path)
    assert path.read_bytes() == b"these are my notes\n" * 300
    assert [p.name for p in tmp_path.iterdir()] == ["notes.db"]


def test_a_newer_schema_is_refused_before_the_journal_mode_changes(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(PersistenceError, match="schema version 999, newer than this runkon understands"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_runkon_databases_and_empty_files_still_open(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with SqliteStore(path) as store:
        run_id = store.create_run(NewRun(workflow_name="w")).id
    with SqliteStore(path) as store:
        assert store.get_run(run_id) is not None
    empty = tmp_path / "empty.db"
    empty.touch()
    SqliteStore(empty).close()
    blank = tmp_path / "blank.db"
    sqlite3.connect(blank).close()  # an SQLite file with no schema at all
    SqliteStore(blank).close()


def test_a_database_another_process_is_creating_is_read_in_one_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check reads the schema, then the schema version. A process creating the database
    between the two reads once made it look like a file with no tables but a version — refused
    as foreign (seen with six processes opening a new database at once)."""
    from runkon_flow.persistence import foreign
    from runkon_flow.persistence.schema import ensure_schema

    path = tmp_path / "runs.db"
    creator = sqlite3.connect(path, isolation_level=None)
    creator.execute("PRAGMA journal_mode = WAL")
    connect = sqlite3.connect

    def racing_connect(*args, **kwargs):  # type: ignore[no-untyped-def]
        conn = connect(*args, **kwargs)

        def between_the_reads(statement: str) -> None:
            if statement.startswith("PRAGMA user_version"):
                ensure_schema(creator, str(path))  # the other process creates the schema now

        conn.set_trace_callback(between_the_reads)
        return conn

    monkeypatch.setattr(foreign.sqlite3, "connect", racing_connect)
    foreign.check_runkon_file(path)  # no error: the schema is read as it was, or as it is now
    monkeypatch.undo()
    creator.close()
    SqliteStore(path).close()
