"""Stored times read the same everywhere: SQLite/PostgreSQL zone-less text is UTC, whatever the
machine's time zone (a past run's durations and a lease's end must not shift by the offset)."""

from __future__ import annotations

import time

import pytest
from runkon_flow.observe.liveness import utc_seconds
from runkon_flow.observe.loader import parse_time


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york")
def test_zone_less_stored_time_is_utc_for_the_run_model_and_liveness_alike() -> None:
    utc = parse_time("2026-12-03T12:00:00Z")
    assert utc == 1_796_299_200.0
    assert parse_time("2026-12-03 12:00:00") == utc
    assert parse_time("2026-12-03T12:00:00.000") == utc
    assert utc_seconds("2026-12-03 12:00:00") == utc
    assert parse_time("2026-12-03T13:00:00+01:00") == utc
    assert parse_time("not a time") is None and parse_time(None) is None
