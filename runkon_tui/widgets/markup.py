"""Content-markup helpers shared by the widgets: escaping user text and colouring by status tone.

Colours are theme variables ($success, $error, …) resolved by Textual at render time, so a theme
switch recolours everything without the widgets knowing any colour.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text

from runkon_tui.status import tone

TONE_VAR = {
    "muted": "$text-muted",
    "active": "$primary",
    "attention": "$warning",
    "ok": "$success",
    "bad": "$error",
}


def esc(text: str) -> str:
    """Escape Content markup in user-supplied text (workflow names, prompts, errors)."""
    return text.replace("[", r"\[")


def paint(status: str, text: str) -> str:
    """`text` in the colour of `status`'s tone."""
    return f"[{TONE_VAR[tone(status)]}]{text}[/]"


def tone_text(app: Any, status: str, text: str) -> Text:
    """A Rich Text in the current theme's colour for `status` (for widgets such as DataTable that
    take Rich renderables, where Content's $variables are not available)."""
    color = getattr(app, "theme_variables", {}).get(TONE_VAR[tone(status)].lstrip("$"))
    return Text(text, style=Style(color=color) if color else "")
