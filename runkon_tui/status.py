"""Status vocabulary as the widgets use it: the engine's statuses and glyphs
(`runkon_flow.observe.status`, shared with the CLI), their theme tones, and clock/id formatting.

Pure (no Textual): a status maps to a *semantic* style name that the stylesheet binds to theme
variables ($success, $error, …) so no widget ever hard-codes a colour.
"""

from __future__ import annotations

from typing import Final

from runkon_flow.observe.status import (
    FAILED,
    GLYPH,
    ITEM_CODE,
    ITEM_DONE_CODES,
    ITEM_STATUSES,
    STATUSES,
    TERMINAL,
    glyph,
)

__all__ = [
    "FAILED",
    "GLYPH",
    "ITEM_CODE",
    "ITEM_DONE_CODES",
    "ITEM_STATUSES",
    "STATUSES",
    "TERMINAL",
    "TONE",
    "TONES",
    "format_clock",
    "glyph",
    "short_id",
    "tone",
]

#: Status → the semantic style suffix used in component classes (`…--ok`, `…--bad`, …).
TONE: Final[dict[str, str]] = {
    "pending": "muted",
    "idle": "muted",
    "skipped": "muted",
    "running": "active",
    "waiting": "attention",
    "cancelling": "attention",
    "cancelled": "attention",
    "interrupted": "attention",
    "completed": "ok",
    "failed": "bad",
    "timed_out": "bad",
    "crashed": "bad",
}

TONES: Final = ("muted", "active", "attention", "ok", "bad")


def tone(status: str) -> str:
    return TONE.get(status, "muted")


def format_clock(seconds: float | None) -> str:
    """Wall-clock style elapsed time for the header: `00:42`, `12:05`, `1:02:03`."""
    if seconds is None or seconds < 0:
        return "--:--"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def short_id(run_id: str | None, width: int = 8) -> str:
    """Run ids are 26-character ULIDs whose head is a shared timestamp; the random tail is what
    tells two runs apart, so the header shows `…` plus the last `width` characters."""
    if not run_id:
        return ""
    if len(run_id) <= width + 1:
        return run_id
    return "…" + run_id[-width:]
