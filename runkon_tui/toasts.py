"""Toasts never cover a dialog: while a modal screen is up (the gate dialog, a confirmation, the
run form) toasts wait, and those already on screen are taken down; when the dialog closes they
come back for the time they had left (docs/dashboard.md, "Toasts and dialogs") — once: a toast
covered again after it came back is dropped, or a dialog after a dialog would keep bringing it
back.

At 80×24 a dialog fills nearly the whole screen, so there is no free corner to move a toast to:
holding it is the only way both stay readable. A toast that no longer says anything true when the
dialog closes (the "Gate" toast of a gate just decided in that dialog) is dropped: it carries a
`relevant` check. Pure: no Textual; the app (runkon_tui/app.py) raises what `release` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = ["MIN_SHOWN_S", "Toast", "ToastHold"]

MIN_SHOWN_S = 3.0
"""A toast taken down by a dialog comes back for at least this long: long enough to read a line."""


@dataclass(frozen=True)
class Toast:
    """What `App.notify` is asked to show, plus when it went up and whether it still holds."""

    message: str
    title: str = ""
    severity: str = "information"
    timeout: float = 5.0
    markup: bool = False
    relevant: Callable[[], bool] | None = None
    shown_at: float | None = None
    came_back: bool = False  # a dialog took it down once already: the next one drops it
    key: str = ""  # what it is about, for `withdraw` ("startup": the start-up problems' toast)


class ToastHold:
    """The toasts on screen and the ones waiting for a dialog to close."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.modal = False
        self.on_screen: list[Toast] = []
        self.held: list[Toast] = []

    def raise_now(self, toast: Toast) -> Toast | None:
        """The toast to show at once (stamped), or None when a dialog is up and it waits."""
        if self.modal:
            self.held.append(toast)
            return None
        now = self.clock()
        shown = replace(toast, shown_at=now)
        self.on_screen = [t for t in self.on_screen if not self._expired(t, now)] + [shown]
        return shown

    def dialog_opened(self) -> bool:
        """A modal screen came up: toasts on screen wait with the rest. True when the screen's
        toasts must be cleared."""
        self.modal = True
        now = self.clock()
        waiting = [t for t in self.on_screen if not self._expired(t, now)]
        self.on_screen = []
        for toast in waiting:
            if toast.came_back:
                continue
            shown_for = now - (toast.shown_at or now)
            left = max(toast.timeout - shown_for, MIN_SHOWN_S)
            self.held.append(replace(toast, timeout=left, shown_at=None, came_back=True))
        return bool(waiting)

    def dialog_closed(self) -> list[Toast]:
        """No modal screen any more: the held toasts still worth showing, oldest first."""
        self.modal = False
        held, self.held = self.held, []
        return [t for t in held if t.relevant is None or t.relevant()]

    def withdraw_stale(self) -> list[Toast] | None:
        """Something changed that may make a toast untrue (a gate was answered, in the inbox or
        elsewhere): None when every toast still holds; else the toasts to put back, each for the
        time it had left, after the screen's toasts are cleared (Textual takes down all or none)."""
        self.held = [t for t in self.held if t.relevant is None or t.relevant()]
        return self._take_down(lambda t: t.relevant is not None and not t.relevant())

    def withdraw(self, key: str) -> list[Toast] | None:
        """Take the toasts about `key` down, on screen or held (a toast that says the same again
        replaces them): as `withdraw_stale`, None when none of them is on screen."""
        self.held = [t for t in self.held if t.key != key]
        return self._take_down(lambda t: t.key == key)

    def _take_down(self, gone: Callable[[Toast], bool]) -> list[Toast] | None:
        now = self.clock()
        live = [t for t in self.on_screen if not self._expired(t, now)]
        if not any(gone(t) for t in live):
            self.on_screen = live
            return None
        self.on_screen = []
        return [
            replace(t, timeout=t.timeout - (now - (t.shown_at or now)), shown_at=None)
            for t in live
            if not gone(t)
        ]

    def clear(self) -> None:
        self.on_screen = []
        self.held = []

    def _expired(self, toast: Toast, now: float) -> bool:
        return toast.shown_at is not None and now - toast.shown_at >= toast.timeout
