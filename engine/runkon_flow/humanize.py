"""Short human renderings shared by every client (CLI printers, dashboard)."""

from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `12s`, `4m05s`, `2h03m` — short enough for a status line; empty when unknown.

    A slightly negative value (clock skew between writers) reads as `0.0s`.
    """
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
