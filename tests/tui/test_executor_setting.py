"""The dashboard's executor setting (`executor`/`ray_address` in the settings file, `--executor`,
`$RUNKON_EXECUTOR`): foreach children on a Ray cluster (docs/scale-out.md). The cluster itself is
tested in tests/cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runkon_tui.config import load_config
from runkon_tui.host import open_workspace


def test_the_settings_file_names_the_executor_and_the_cluster(tmp_path: Path) -> None:
    path = tmp_path / "tui.yaml"
    path.write_text("executor: ray\nray_address: 10.0.0.1:6379\n")
    cfg = load_config(path)
    assert (cfg.executor, cfg.ray_address, cfg.error) == ("ray", "10.0.0.1:6379", None)
    cfg.theme = "runkon-light"
    assert cfg.save("theme") is None
    again = load_config(path)
    assert (again.executor, again.ray_address, again.theme) == ("ray", "10.0.0.1:6379", "runkon-light")


def test_an_unknown_executor_in_the_settings_file_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tui.yaml"
    path.write_text("executor: dask\n")
    cfg = load_config(path)
    assert cfg.executor is None and cfg.error == f"{path}: `executor` must be one of local, ray, not 'dask'"


def test_ray_without_ray_installed_opens_the_dashboard_without_an_engine_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the [ray] extra
    opened = open_workspace([tmp_path], tmp_path / "runs.db", executor="ray")
    try:
        assert opened.host is None  # never silently run the fan-out here instead
        assert len(opened.problems) == 1 and "pip install 'runkon-tui[ray]'" in opened.problems[0]
    finally:
        opened.store.close()


def test_ray_with_an_unusable_store_is_refused_not_run_on_an_in_memory_one(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    opened = open_workspace([tmp_path], tmp_path / "not-a-dir" / "runs.db", executor="ray")
    assert opened.host is None
    assert any("every node can reach" in p for p in opened.problems)
