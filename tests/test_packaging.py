"""`pip install .` gives a working runkon-tui: every package and the theme files are in the wheel.

The wheel is built from a copy of the sources in a temporary folder (nothing is written into the
checkout) without build isolation, so the test needs no network: the `test` extra brings setuptools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What the build reads: pyproject.toml names README.md as the long description.
SOURCES = ("pyproject.toml", "README.md", "runkon_tui", "engine", "themes")
THEME_PATTERNS = ("*.yaml", "*.yml", "*.tcss")
BUNDLED = "runkon_tui/bundled_themes"


def _pip(*args: str, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(origin, src / name)
    dist = work / "dist"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src), cwd=work)
    (built,) = dist.glob("runkon_tui-*.whl")
    return built


def _theme_files() -> list[str]:
    return sorted(p.name for pattern in THEME_PATTERNS for p in (REPO / "themes").glob(pattern))


def test_the_wheel_carries_every_theme_file(wheel: Path) -> None:
    shipped = _theme_files()
    assert {"runkon-dark.yaml", "runkon-light.yaml", "runkon.tcss"} <= set(shipped)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in shipped if f"{BUNDLED}/{name}" not in names]
    assert not missing, f"theme files missing from {wheel.name}: {missing}"


def test_the_wheel_carries_every_source_module(wheel: Path) -> None:
    """A package missing from pyproject's explicit list would work in a checkout but not once installed."""
    roots = {"runkon_tui": REPO / "runkon_tui", "runkon_flow": REPO / "engine" / "runkon_flow"}
    expected = {
        f"{name}/{path.relative_to(root).as_posix()}"
        for name, root in roots.items()
        for path in root.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert "runkon_flow/runtime/nodes/__init__.py" in expected
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(expected - names)
    assert not missing, (
        f"modules missing from {wheel.name} (add their package to [tool.setuptools] packages "
        f"in pyproject.toml): {missing}"
    )


def test_an_installed_copy_loads_the_themes_and_the_stylesheet(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp_path)
    probe = (
        "import json, runkon_tui\n"
        "from runkon_tui.themes import load_themes, stylesheet_path, themes_dir\n"
        "themes, errors = load_themes()\n"
        "print(json.dumps({'package': runkon_tui.__file__, 'dir': str(themes_dir()),\n"
        "    'themes': [t.name for t in themes], 'errors': errors, 'css': str(stylesheet_path()),\n"
        "    'css_is_file': stylesheet_path().is_file()}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RUNKON_THEMES_DIR"}
    env["PYTHONPATH"] = str(site)
    # A cwd outside the checkout, as for a user who installed the wheel.
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert Path(seen["package"]).is_relative_to(site), "the probe imported the checkout, not the wheel"
    assert Path(seen["dir"]) == site / BUNDLED
    assert {"runkon-dark", "runkon-light"} <= set(seen["themes"])
    assert seen["errors"] == []
    assert Path(seen["css"]) == site / BUNDLED / "runkon.tcss"
    assert seen["css_is_file"]
