"""Our themes: YAML files in the repository's `themes/` folder, registered as Textual themes.

The folder ships inside the wheel as the data package `runkon_tui.bundled_themes` (see
pyproject.toml), so an installed copy finds the same files as a checkout.

A theme file names the semantic colours Textual derives everything from (primary, success,
warning, error, …). Run states are drawn only through those variables, so the built-in Textual
themes work just as well as ours. A broken theme file is reported, never fatal.
"""

from __future__ import annotations

import os
from dataclasses import fields
from importlib import resources
from pathlib import Path

import yaml
from textual.theme import Theme

THEMES_ENV = "RUNKON_THEMES_DIR"
DEFAULT_THEME = "runkon-dark"
STYLESHEET = "runkon.tcss"
BUNDLED_THEMES = "runkon_tui.bundled_themes"

_THEME_KEYS = frozenset(f.name for f in fields(Theme))
# libyaml's loader when PyYAML has it: the themes are read before the first frame (10× faster).
_YAML_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ThemeFileError(Exception):
    """A theme file that cannot be used; the message names the file."""


def themes_dir() -> Path:
    """`$RUNKON_THEMES_DIR`, else the themes installed with the package.

    Wheels and editable installs both provide `runkon_tui.bundled_themes`; a checkout put on
    `sys.path` without installing has no such package, so there the `themes/` folder next to
    `runkon_tui/` is used.
    """
    override = os.environ.get(THEMES_ENV)
    if override:
        return Path(override)
    try:
        bundled = resources.files(BUNDLED_THEMES)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "themes"
    # pip installs unpacked, so this is a real folder; Textual needs a file path for the stylesheet.
    return Path(str(bundled))


#: Our theme variables, which runkon.tcss uses; a theme may set them under `variables`, else
#: `theme_variable_defaults` derives them.
PANE_BORDER = "pane-border"


def theme_variable_defaults(theme: Theme) -> dict[str, str]:
    """`$pane-border`, the unfocused panes' border, for a theme that does not set it (Textual's):
    the panel lightened on a dark background, darkened on a light one, where a lightened panel
    turns near-white and the border vanishes."""
    colors = theme.to_color_system().generate()
    return {PANE_BORDER: colors["panel-lighten-2" if theme.dark else "panel-darken-2"]}


def stylesheet_path() -> Path:
    return themes_dir() / STYLESHEET


def load_theme_file(path: Path) -> Theme:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except OSError as exc:
        raise ThemeFileError(f"{path}: cannot read theme: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ThemeFileError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ThemeFileError(f"{path}: a theme must be a mapping of colour names to values")
    unknown = sorted(set(data) - _THEME_KEYS)
    if unknown:
        raise ThemeFileError(f"{path}: unknown theme keys: {', '.join(unknown)}")
    if "name" not in data or "primary" not in data:
        raise ThemeFileError(f"{path}: a theme needs at least `name` and `primary`")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise ThemeFileError(f"{path}: `variables` must be a mapping")
    data["variables"] = {str(k): str(v) for k, v in variables.items()}
    try:
        return Theme(**data)
    except (TypeError, ValueError) as exc:
        raise ThemeFileError(f"{path}: {exc}") from exc


def load_themes(directory: Path | None = None) -> tuple[list[Theme], list[str]]:
    """Every `*.yaml` theme in the folder, plus one error text per file that failed."""
    folder = directory or themes_dir()
    themes: list[Theme] = []
    errors: list[str] = []
    if not folder.is_dir():
        return themes, [f"{folder}: theme folder not found; using Textual's built-in themes"]
    for path in sorted(folder.glob("*.y*ml")):
        try:
            themes.append(load_theme_file(path))
        except ThemeFileError as exc:
            errors.append(str(exc))
    return themes, errors
