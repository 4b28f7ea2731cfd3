"""Store fixtures shared by the persistence contract suite and the engine behaviour tests.

`make_store(kind, tmp_path, clock=None)` builds a fresh store of either kind; the `store` fixture is
parametrised over `STORE_KINDS`, so a test written once runs against every backend. Other test
folders can reuse it with `from tests.persistence.conftest import STORE_KINDS, make_store`
(tests/ is a package for exactly this reason).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite")
"""The stores the engine behaviour tests run against (tests/engine parametrises over these)."""

CONTRACT_STORE_KINDS = (*STORE_KINDS, "postgres")
"""Every store: the contract suite runs against all three. PostgreSQL cases need a server
(tests/pg.py: $RUNKON_TEST_PG_DSN, or a throwaway one started when the binaries are installed)."""


class FakeClock:
    """A settable UTC clock for lease tests: time moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


def make_store(kind: str, tmp_path: Path, clock: FakeClock | None = None):
    """A fresh, empty store of `kind` ("memory", "sqlite" or "postgres"); SQLite files live under
    `tmp_path`, PostgreSQL stores each get a schema of their own on the test server."""
    kwargs = {"clock": clock} if clock is not None else {}
    if kind == "memory":
        return InMemoryStore(**kwargs)
    if kind == "sqlite":
        return SqliteStore(tmp_path / "runs.db", **kwargs)
    if kind == "postgres":
        from runkon_flow.persistence.postgres import PostgresStore

        from tests.pg import fresh_dsn

        return PostgresStore(fresh_dsn(), **kwargs)
    raise ValueError(f"unknown store kind {kind!r}")


def close_store(store) -> None:
    """Release a store's resources (SQLite connections); harmless for in-memory stores."""
    close = getattr(store, "close", None)
    if close is not None:
        close()


@pytest.fixture(params=CONTRACT_STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_kind: str, tmp_path: Path, clock: FakeClock) -> Iterator:
    """A fresh store of every kind, driven by the test's `clock`."""
    s = make_store(store_kind, tmp_path, clock)
    yield s
    close_store(s)
