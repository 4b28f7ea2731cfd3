"""Toasts at the bottom right, just above the status line and the footer, on the screens whose top
rows hold what they are about: the run history's newest runs, the gate inbox's waiting gates, the
search's pattern and first hits. At the top right, under the title (themes/runkon.tcss's rule for
every screen), a toast hid the gate a user had come to answer and the pattern being typed. The
main screen drops them over its Workflows pane instead (docs/dashboard.md, "Toasts").

Set on the rack itself, not in the stylesheet: its margin is the status line's height, which
wraps to two rows at 80 columns, and the rule is whole in one place."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._toast import ToastRack


class ToastsAboveStatus:
    """Mixin for such a screen: `STATUS` is the selector of its status line; `place_toasts` when
    it is mounted, after the status changes and on a resize."""

    STATUS = ""

    def place_toasts(self) -> None:
        """Just above the status line and the footer, however many rows the status takes at this
        width (two at 80 columns, where a fixed margin let a toast cover it)."""
        screen: Screen[object] = self  # type: ignore[assignment]
        if not screen.is_mounted:
            return
        below = screen.query_one(self.STATUS).outer_size.height + screen.query_one(Footer).outer_size.height
        for rack in screen.query(ToastRack):
            if rack.styles.dock != "bottom":
                rack.styles.dock = "bottom"
                rack.styles.align = ("right", "bottom")
            if rack.styles.margin.bottom != below:
                rack.styles.margin = (0, 0, below, 0)
