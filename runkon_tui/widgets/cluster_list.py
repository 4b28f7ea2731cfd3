"""Failure clusters under the fan-out grid: `30 × rate limited …`, one line per error signature.

Shown only while the fan-out on screen has failed (or cancelled) items. Enter on a cluster
filters the grid to its items (enter again, or on another cluster, changes it); `e` asks to retry
the cluster's items through the same confirmation as the grid's `e`/`E`. The clusters come from
`runkon_flow.observe.clusters` — the same grouping `runkon-flow show` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from runkon_tui.run_view import FanOutView
from runkon_tui.widgets.fanout_grid import FanOutGrid
from runkon_tui.widgets.markup import esc

if TYPE_CHECKING:
    from runkon_flow.observe.clusters import FailureCluster


class ClusterList(OptionList):
    """The clusters of one fan-out, biggest first, numbered like `show` numbers them."""

    DEFAULT_CSS = """
    ClusterList {
        height: auto;
        max-height: 8;
        display: none;
        background: $surface;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ClusterList.-shown { display: block; }
    """

    # In the footer while the list has the focus (its heading's hint is cut in a narrow pane); a
    # click picks a cluster too (on_option_list_option_selected).
    BINDINGS = [
        Binding("enter", "pick", "Show cluster", id="show_cluster"),
        Binding("e", "retry_cluster", "Retry cluster", id="retry_cluster"),
    ]

    class Picked(Message):
        """A cluster was chosen (None: the filter was taken off)."""

        def __init__(self, fan: FanOutView, cluster: FailureCluster | None, number: int) -> None:
            super().__init__()
            self.fan = fan
            self.cluster = cluster
            self.number = number

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        self.fan: FanOutView | None = None
        self.clusters: list[FailureCluster] = []
        self.picked: str | None = None  # the signature the grid is filtered to
        self.retry_allowed = False  # the run on screen has finished (the screen's call, as the grid's)
        #: Does retry reach this fan-out at all (the screen's call, as the grid's)?
        self.reachable: Callable[[FanOutView], bool] = lambda fan: True
        self._version = -1
        self._signature: tuple = ()

    def show(self, fan: FanOutView | None) -> None:
        """Follow the fan-out on screen; regroup only when its items changed, redraw only when
        the groups did."""
        if fan is not self.fan:
            self.fan = fan
            self.picked = None
            self._version = -1
        if fan is None:
            self.clusters = []
        elif fan.version != self._version:
            # Imported here, not before the first frame, which has no fan-out to group (~3 ms of
            # regular expressions; the app imports it right after that frame: _NEEDED_LATER).
            from runkon_flow.observe.clusters import clusters_of

            self._version = fan.version
            self.clusters = clusters_of(fan)
        retries = fan is not None and self.reachable(fan)
        signature = (*((c.signature, c.count) for c in self.clusters), self.picked, retries)
        if signature == self._signature:
            return
        self._signature = signature
        highlighted = self.highlighted
        self.clear_options()
        if self.clusters:
            from runkon_flow.observe.clusters import distinct_labels

            common, labels = distinct_labels(self.clusters)
            shared = f" · all: {esc(common)}" if common else ""
            count = len(self.clusters)
            hint = " · e retries" if retries else ""
            head = f"[$text-muted]failure clusters ({count}) · enter filters{hint}{shared}[/]"
            self.add_option(Option(head, id="head", disabled=True))
            self.add_options(
                Option(self._prompt(n, c, label), id=str(n))
                for n, (c, label) in enumerate(zip(self.clusters, labels, strict=True), start=1)
            )
            self.highlighted = max(1, min(highlighted or 1, len(self.clusters)))
        shown = bool(self.clusters)
        if self.has_class("-shown") != shown:
            self.set_class(shown, "-shown")

    def _prompt(self, number: int, cluster: FailureCluster, label: str) -> str:
        """`label`: what tells this cluster from the others (the shared start is in the heading)."""
        mark = "[$warning]▸[/]" if cluster.signature == self.picked else " "
        return f"{mark}{number:>2}. [$error]{cluster.count} ×[/] {esc(label)}"

    def number_of(self, signature: str | None) -> int:
        """The 1-based number of the cluster with `signature` (0: none)."""
        for n, cluster in enumerate(self.clusters, start=1):
            if cluster.signature == signature:
                return n
        return 0

    @property
    def current(self) -> FailureCluster | None:
        idx = self.highlighted  # option 0 is the heading
        return self.clusters[idx - 1] if idx is not None and 1 <= idx <= len(self.clusters) else None

    def action_pick(self) -> None:
        cluster = self.current
        if self.fan is None or cluster is None:
            return
        chosen = None if cluster.signature == self.picked else cluster
        self.picked = chosen.signature if chosen is not None else None
        self._signature = ()
        self.show(self.fan)
        self.post_message(self.Picked(self.fan, chosen, self.number_of(self.picked)))

    def unpick(self) -> None:
        if self.picked is not None:
            self.picked = None
            self._signature = ()
            self.show(self.fan)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`e` is lit once the run on screen has finished, dimmed while it still runs, and not
        offered where retry does not reach (as the grid's `E`); `enter` while a cluster is
        highlighted."""
        if action == "retry_cluster":
            if self.fan is None or not self.reachable(self.fan):
                return False
            return None if self.current is None or not self.retry_allowed else True
        if action == "pick":
            return None if self.current is None else True
        return super().check_action(action, parameters)

    def unavailable_reason(self, action: str) -> str | None:
        """Why a dimmed `e` does nothing (the app says it when it is pressed anyway)."""
        if action == "retry_cluster" and self.current is not None and not self.retry_allowed:
            return "a cluster is retried once the run has finished"
        return None

    def action_retry_cluster(self) -> None:
        cluster = self.current
        if self.fan is None or cluster is None:
            return
        self.post_message(FanOutGrid.RetryRequested(self.fan, list(cluster.item_ids)))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter or a click picks the highlighted cluster (or takes the filter off again)."""
        event.stop()
        self.action_pick()
