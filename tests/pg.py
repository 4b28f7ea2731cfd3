"""PostgreSQL for the tests: which server, and a fresh empty schema per store.

The server is, in order:
1. `$RUNKON_TEST_PG_DSN` (a `postgresql://` URL; .ci/run exports the one it started);
2. else a throwaway server this test process starts itself (tests/pgserver.py) when the server
   binaries are installed, stopped when the process exits;
3. else none: the PostgreSQL cases skip, saying how to enable them — except under CI
   (`CI` set to a true value), where they fail instead.

Every store gets a schema of its own (`search_path` in the URL), dropped at exit, so tests never
see each other's rows and a developer's own server keeps nothing.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests import pgserver

ENV = "RUNKON_TEST_PG_DSN"
HOW_TO_ENABLE = (
    f"PostgreSQL tests need a server: set {ENV}=postgresql://… (a database the tests may create "
    "schemas in), or install the PostgreSQL server binaries (initdb, pg_ctl) so the tests start one"
)

_lock = threading.Lock()
_state: dict[str, object] = {}
_schemas: list[str] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def base_dsn() -> str:
    """The server's URL, starting a throwaway server if needed; skips (fails under CI) without one."""
    with _lock:
        if "dsn" not in _state:
            _state["dsn"], _state["error"] = _find_server()
        dsn, error = _state["dsn"], _state["error"]
    if dsn is None:
        if in_ci():
            pytest.fail(f"CI needs PostgreSQL and none is reachable: {error}", pytrace=False)
        pytest.skip(f"{HOW_TO_ENABLE} ({error})")
    return dsn  # type: ignore[return-value]


def _find_server() -> tuple[str | None, str | None]:
    given = os.environ.get(ENV, "").strip()
    if given:
        error = _reachable(given)
        if error is not None:  # asked for explicitly: never a silent skip
            pytest.fail(f"{ENV} is set but the server is not reachable: {error}", pytrace=False)
        return given, None
    if pgserver.server_binaries() is None:
        return None, f"{ENV} is not set and no server binaries were found"
    try:
        directory, dsn = pgserver.start()
    except Exception as exc:
        return None, f"starting a throwaway server failed: {exc}"
    _state["dir"] = directory
    atexit.register(pgserver.stop, directory)
    return dsn, None


def _reachable(dsn: str) -> str | None:
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def with_search_path(dsn: str, schema: str) -> str:
    """`dsn` whose connections use `schema` (added as libpq `options`)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    # Not urlunsplit: it drops the `//` of a URL with an empty host (`postgresql:///db?host=/tmp/…`).
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query, safe='/')}"


def fresh_dsn() -> str:
    """A URL of the test server whose connections see a new, empty schema of their own."""
    import psycopg

    base = base_dsn()
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    with _lock:
        if not _schemas:
            atexit.register(_drop_schemas, base)
        _schemas.append(schema)
    return with_search_path(base, schema)


def _drop_schemas(base: str) -> None:
    if "dir" in _state:  # a throwaway server: it is about to be deleted anyway
        return
    import psycopg

    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            for schema in _schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    except psycopg.Error:
        pass


BACKENDS = ("sqlite", "postgres")
"""The persistent stores a process-level test (CLI, crash and resume) runs against."""


def database(backend: str, tmp_path: Path) -> str:
    """A fresh `--db` value: a SQLite file under `tmp_path`, or a URL of an empty PostgreSQL schema."""
    return fresh_dsn() if backend == "postgres" else str(tmp_path / "runs.db")


def open_db(db: str):
    """The store a `--db` value names (a context manager: `with open_db(db) as store`)."""
    from runkon_flow.persistence.location import db_location

    return db_location(db).open()


@contextmanager
def own_server() -> Iterator[tuple[Path, str]]:
    """A throwaway server for one test that must restart it (a shared one must not be disturbed):
    (its directory, its URL). Skips without the server binaries — fails under CI."""
    if pgserver.server_binaries() is None:
        message = "needs the PostgreSQL server binaries (initdb, pg_ctl) to restart a server of its own"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    directory, dsn = pgserver.start()
    try:
        yield directory, dsn
    finally:
        pgserver.stop(directory)
