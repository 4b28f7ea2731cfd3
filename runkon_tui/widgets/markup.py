"""Content-markup helpers shared by the widgets: escaping user text and colouring by status tone.

Colours are theme variables ($success, $error, …) resolved by Textual at render time, so a theme
switch recolours everything without the widgets knowing any colour.
"""

from __future__ import annotations

import re
from typing import Any

from rich.cells import cell_len
from rich.color import Color as RichColor
from rich.style import Style
from rich.text import Text
from runkon_flow.humanize import safe_text
from textual.color import Color, ColorParseError

from runkon_tui.status import tone

TONE_VAR = {
    "muted": "$text-muted",
    "active": "$primary",
    "attention": "$warning",
    "ok": "$success",
    "bad": "$error",
}


# What Textual passes to the terminal as it is (it drops only BEL, BS, VT, FF and CR): ESC and the
# other controls, DEL, C1, and the line separators. Tab and newline are layout, kept.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def terminal_safe(text: str) -> str:
    """User-supplied text with its escape sequences and control characters shown safely
    (`humanize.safe_text`, as the log pane does; tabs and newlines kept): Textual writes an ESC in
    a widget's text to the terminal, so a gate prompt holding `\x1b]0;…\x07` retitled it and
    `\x1b[2J` cleared it under the dashboard. For plain text (no markup): a toast."""
    return safe_text([text]) if _CONTROLS.search(text) else text


def esc(text: str) -> str:
    """Escape Content markup in user-supplied text (workflow names, prompts, errors); its escape
    sequences and control characters are shown safely too (`terminal_safe`)."""
    return terminal_safe(text).replace("[", r"\[")


def paint(status: str, text: str) -> str:
    """`text` in the colour of `status`'s tone."""
    return f"[{TONE_VAR[tone(status)]}]{text}[/]"


def shorten_middle(text: str, width: int, *, least: int = 12) -> str:
    """`text` in at most `width` cells (never fewer than `least`), cut in the middle: a path keeps
    its start and the folder name at its end, a step's path its last step."""
    width = max(least, width)
    if cell_len(text) <= width:
        return text
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail :]


def set_text(widget: Any, text: str, *, fixed_height: bool = False, wraps: bool = False) -> bool:
    """`Static.update` only when the text changed, and without a layout pass when the widget's
    height cannot change (header lines) or did not (same number of lines; not known for text that
    `wraps`: a longer line may take more rows). Returns whether it did.

    A layout pass repaints the whole screen; at 15 ticks a second during a 10,000-item fan-out that
    would cost more than everything else the dashboard does."""
    previous = getattr(widget, "_shown_text", None)
    if previous == text:
        return False
    same_height = not wraps and previous is not None and previous.count("\n") == text.count("\n")
    widget._shown_text = text
    widget.update(text, layout=not (fixed_height or same_height))
    return True


def theme_color(app: Any, variable: str) -> RichColor | None:
    """The current theme's colour `variable` (`success`, `warning`, …) as a Rich colour, for Rich
    renderables. Parsed by Textual, not Rich: the ANSI themes' values (`ansi_green`) are not Rich
    colour names, and Rich refused them (the runs screen never filled under `ansi-dark`). None
    when the theme has no such colour or one that is not a plain colour."""
    value = getattr(app, "theme_variables", {}).get(variable)
    if not value:
        return None
    try:
        return Color.parse(value).rich_color
    except ColorParseError:
        return None


def tone_text(app: Any, status: str, text: str) -> Text:
    """A Rich Text in the current theme's colour for `status` (for widgets such as DataTable that
    take Rich renderables, where Content's $variables are not available)."""
    color = theme_color(app, TONE_VAR[tone(status)].lstrip("$"))
    return Text(text, style=Style(color=color) if color else "")
