"""Status vocabulary shared by the view model and the widgets: glyphs, theme classes, durations.

Pure (no Textual): the same glyphs appear in the plain-text exit summary and in snapshots, and a
status maps to a *semantic* style name that the stylesheet binds to theme variables ($success,
$error, …) so no widget ever hard-codes a colour.
"""

from __future__ import annotations

from typing import Final

#: Every status a step, item or run can show. `idle` and `crashed` are dashboard-only run states.
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
    "idle": "○",
    "crashed": "✗",
}

#: Status → the semantic style suffix used in component classes (`…--ok`, `…--bad`, …).
TONE: Final[dict[str, str]] = {
    "pending": "muted",
    "idle": "muted",
    "skipped": "muted",
    "running": "active",
    "waiting": "attention",
    "cancelling": "attention",
    "cancelled": "attention",
    "completed": "ok",
    "failed": "bad",
    "timed_out": "bad",
    "crashed": "bad",
}

TONES: Final = ("muted", "active", "attention", "ok", "bad")

TERMINAL: Final = frozenset({"completed", "failed", "timed_out", "skipped", "cancelled", "crashed"})
FAILED: Final = frozenset({"failed", "timed_out", "crashed"})

#: Compact codes for fan-out items (one byte per item keeps a 10,000-item grid tiny).
ITEM_STATUSES: Final = ("pending", "running", "completed", "failed", "skipped", "cancelled")
ITEM_CODE: Final[dict[str, int]] = {s: i for i, s in enumerate(ITEM_STATUSES)}
ITEM_DONE_CODES: Final = frozenset(ITEM_CODE[s] for s in ("completed", "failed", "skipped", "cancelled"))


def glyph(status: str) -> str:
    return GLYPH.get(status, "?")


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
