"""Where runs are stored when the user does not say: $RUNKON_DB, then the XDG state directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.persistence import NewRun, SqliteStore, default_db_path


def test_runkon_db_wins() -> None:
    env = {"RUNKON_DB": "/data/my.db", "XDG_STATE_HOME": "/state"}
    assert default_db_path(env) == Path("/data/my.db")


def test_runkon_db_expands_the_home_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path({"RUNKON_DB": "~/runs.db"}) == tmp_path / "runs.db"


def test_xdg_state_home_is_used_next() -> None:
    assert default_db_path({"XDG_STATE_HOME": "/state"}) == Path("/state/runkon/runs.db")


@pytest.mark.parametrize(
    "env", [{}, {"RUNKON_DB": "", "XDG_STATE_HOME": ""}, {"XDG_STATE_HOME": "relative/dir"}]
)
def test_otherwise_the_home_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path(env) == tmp_path / ".local" / "state" / "runkon" / "runs.db"


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "env.db"))
    assert default_db_path() == tmp_path / "env.db"


def test_a_store_without_a_path_opens_the_default_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RUNKON_DB", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with SqliteStore() as store:
        store.create_run(NewRun(workflow_name="wf"))
        assert store.path == tmp_path / "state" / "runkon" / "runs.db"
    assert (tmp_path / "state" / "runkon" / "runs.db").is_file()
