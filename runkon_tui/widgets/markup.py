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


def set_text(widget: Any, text: str, *, fixed_height: bool = False) -> bool:
    """`Static.update` only when the text changed, and without a layout pass when the widget's
    height cannot change (header lines) or did not (same number of lines). Returns whether it did.

    A layout pass repaints the whole screen; at 15 ticks a second during a 10,000-item fan-out that
    would cost more than everything else the dashboard does."""
    previous = getattr(widget, "_shown_text", None)
    if previous == text:
        return False
    same_height = previous is not None and previous.count("\n") == text.count("\n")
    widget._shown_text = text
    widget.update(text, layout=not (fixed_height or same_height))
    return True


def tone_text(app: Any, status: str, text: str) -> Text:
    """A Rich Text in the current theme's colour for `status` (for widgets such as DataTable that
    take Rich renderables, where Content's $variables are not available)."""
    color = getattr(app, "theme_variables", {}).get(TONE_VAR[tone(status)].lstrip("$"))
    return Text(text, style=Style(color=color) if color else "")
