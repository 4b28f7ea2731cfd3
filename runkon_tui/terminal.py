"""Whether the dashboard's terminal is still there.

A terminal window closed under `make dashboard` (or any parent that outlives a hang-up, as make
does) sends SIGHUP only to the session leader, not to us; Textual's input thread then reads EOF
in a loop and the orphaned dashboard burns a CPU for ever. So the app asks once a second and
leaves when the terminal has hung up (docs/dashboard.md, "When the terminal goes away"). Pure: no
Textual.
"""

from __future__ import annotations

import select

__all__ = ["hung_up"]


def hung_up(fd: int) -> bool:
    """True when `fd` is a terminal (or pipe) whose other side has gone: poll reports POLLHUP or
    POLLERR whatever events were asked for, without reading anything."""
    poller = select.poll()
    try:
        poller.register(fd, 0)
    except (OSError, ValueError):
        return True  # closed under us
    return any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in poller.poll(0))
