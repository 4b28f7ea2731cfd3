"""The one status vocabulary of a run and its glyphs, shared by every renderer.

A step, a fan-out item and a run show one of these statuses, each with one glyph, in the
dashboard, in `runkon-flow run`'s live view, in `show` and in the exit summary. The glyphs are the
dashboard's (`▶` running, `◷` waiting); the CLI's former `▸`/`‖` are gone (docs/run-model.md).
"""

from __future__ import annotations

from typing import Final

#: Every status a step, item or run can show. `idle` and `crashed` are run states of a viewer
#: (nothing started yet; the engine died without a final event); `interrupted` is a stored run
#: that no engine holds any more.
STATUSES: Final = (
    "pending",
    "running",
    "waiting",
    "completed",
    "failed",
    "timed_out",
    "skipped",
    "cancelled",
    "cancelling",
    "interrupted",
    "idle",
    "crashed",
)

GLYPH: Final[dict[str, str]] = {
    "pending": "·",
    "running": "▶",
    "waiting": "◷",
    "completed": "✓",
    "failed": "✗",
    "timed_out": "⧗",
    "skipped": "⊘",
    "cancelled": "■",
    "cancelling": "■",
    "interrupted": "■",
    "idle": "○",
    "crashed": "✗",
}

#: The same glyphs for terminals that cannot show them (`runkon-flow run` on a non-UTF-8 stream).
ASCII_GLYPH: Final[dict[str, str]] = {
    "pending": ".",
    "running": ">",
    "waiting": "=",
    "completed": "+",
    "failed": "x",
    "timed_out": "x",
    "skipped": "-",
    "cancelled": "#",
    "cancelling": "#",
    "interrupted": "#",
    "idle": "o",
    "crashed": "x",
}

TERMINAL: Final = frozenset({"completed", "failed", "timed_out", "skipped", "cancelled", "crashed"})
FAILED: Final = frozenset({"failed", "timed_out", "crashed"})

#: Compact codes for fan-out items (one byte per item keeps a 10,000-item grid tiny). An item is
#: `interrupted` when its fan-out ended (its step ended, or its run lost its engine) while it was
#: still running: nothing runs it any more, and a resume runs it again (`FanOutView.stop_running`).
ITEM_STATUSES: Final = ("pending", "running", "completed", "failed", "skipped", "cancelled", "interrupted")
ITEM_CODE: Final[dict[str, int]] = {s: i for i, s in enumerate(ITEM_STATUSES)}
ITEM_DONE_CODES: Final = frozenset(ITEM_CODE[s] for s in ("completed", "failed", "skipped", "cancelled"))


def glyph(status: str, *, ascii: bool = False) -> str:
    """The glyph of a status (`?` for one outside the vocabulary)."""
    return (ASCII_GLYPH if ascii else GLYPH).get(status, "?")


def outcome(status: str) -> str:
    """How a finished step or item is counted: `completed`, `failed` (also `timed_out`, `crashed`),
    `skipped`, `cancelled`; unfinished ones keep their status (`pending`, `running`, `waiting`)."""
    return "failed" if status in FAILED else status
