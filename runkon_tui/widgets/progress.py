"""How a fan-out's progress is put on screen: each item status counted on its own.

"Done" used to lump completed, failed, skipped and cancelled items together, so a resume (which
puts cancelled items back to pending) made progress go backwards (37/60 → 35/60). The counts come
from `observe.ItemCounts`; completed items never run again, so the completed count only grows.
"""

from __future__ import annotations

from runkon_flow.observe import ItemCounts

from runkon_tui.run_view import FanOutView
from runkon_tui.status import glyph
from runkon_tui.widgets.markup import paint

#: The statuses shown, in this order; completed is always named, the others when there are some.
SHOWN = ("completed", "failed", "skipped", "cancelled", "running", "interrupted", "pending")
ALWAYS = ("completed",)


def _counted(fan: FanOutView) -> list[tuple[str, int]]:
    counts = ItemCounts.of(fan)
    return [(s, getattr(counts, s)) for s in SHOWN if s in ALWAYS or getattr(counts, s)]


def item_words(fan: FanOutView) -> tuple[str, str]:
    """`60 items: 35 completed, 1 failed, 2 cancelled, 22 pending` as (markup, plain text)."""
    counted = _counted(fan)
    head = f"{fan.total} item{'s' if fan.total != 1 else ''}: "
    markup = head + ", ".join(paint(s, f"{n} {s}") if n else f"{n} {s}" for s, n in counted)
    plain = head + ", ".join(f"{n} {s}" for s, n in counted)
    return markup, plain


def item_glyphs(fan: FanOutView) -> tuple[str, str]:
    """The same counts in the status glyphs (`60 items ✓35 ✗1 ■2 ·22`), for a narrow line; the
    glyphs are the grid's own (`?` lists them)."""
    counted = _counted(fan)
    head = f"{fan.total} item{'s' if fan.total != 1 else ''} "
    markup = head + " ".join(paint(s, f"{glyph(s)}{n}") for s, n in counted)
    plain = head + " ".join(f"{glyph(s)}{n}" for s, n in counted)
    return markup, plain
