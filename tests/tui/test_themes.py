"""Where the dashboard's themes come from, and how a bad theme file is reported."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import pytest

from runkon_tui.themes import (
    BUNDLED_THEMES,
    THEMES_ENV,
    load_themes,
    stylesheet_path,
    themes_dir,
)
from tests.tui.conftest import REPO

GREEN = "name: green\nprimary: '#00aa00'\ndark: true\n"


def test_the_installed_package_serves_the_repository_themes_folder() -> None:
    """The editable install maps `themes/` to the same data package a wheel installs."""
    assert Path(str(resources.files(BUNDLED_THEMES))) == REPO / "themes"
    assert themes_dir() == REPO / "themes"
    themes, errors = load_themes()
    assert errors == []
    assert {"runkon-dark", "runkon-light"} <= {t.name for t in themes}
    assert stylesheet_path() == REPO / "themes" / "runkon.tcss"
    assert stylesheet_path().is_file()


def test_an_uninstalled_checkout_finds_the_folder_next_to_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, BUNDLED_THEMES, None)  # as if the data package were not installed
    assert themes_dir() == REPO / "themes"
    assert {"runkon-dark", "runkon-light"} <= {t.name for t in load_themes()[0]}


def test_the_environment_variable_overrides_the_shipped_themes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "green.yaml").write_text(GREEN, encoding="utf-8")
    (tmp_path / "runkon.tcss").write_text("Screen { }\n", encoding="utf-8")
    monkeypatch.setenv(THEMES_ENV, str(tmp_path))
    themes, errors = load_themes()
    assert [t.name for t in themes] == ["green"]
    assert errors == []
    assert stylesheet_path() == tmp_path / "runkon.tcss"


def test_a_broken_theme_file_is_reported_and_the_others_still_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "green.yaml").write_text(GREEN, encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("name: broken\nprimary: [unclosed\n", encoding="utf-8")
    (tmp_path / "odd.yaml").write_text("name: odd\nprimary: '#fff'\nsparkle: 3\n", encoding="utf-8")
    monkeypatch.setenv(THEMES_ENV, str(tmp_path))
    themes, errors = load_themes()
    assert [t.name for t in themes] == ["green"]
    assert len(errors) == 2
    assert errors[0].startswith(f"{tmp_path / 'broken.yaml'}:3:1: invalid YAML")
    assert errors[1] == f"{tmp_path / 'odd.yaml'}: unknown theme keys: sparkle"


def test_a_missing_theme_folder_falls_back_to_textual_themes_with_a_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(THEMES_ENV, str(tmp_path / "nowhere"))
    themes, errors = load_themes()
    assert themes == []
    assert errors == [f"{tmp_path / 'nowhere'}: theme folder not found; using Textual's built-in themes"]
