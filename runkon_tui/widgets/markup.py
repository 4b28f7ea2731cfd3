"""Content-markup helpers shared by the widgets: escaping user text and colouring by status tone.

Colours are theme variables ($success, $error, …) resolved by Textual at render time, so a theme
switch recolours everything without the widgets knowing any colour.
"""

from __future__ import annotations

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
