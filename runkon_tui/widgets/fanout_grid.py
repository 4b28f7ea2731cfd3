"""The fan-out grid: one cell per foreach item, coloured by status, virtualised with the Line API.

Only the rows on screen are ever rendered (`render_line`), and a row is a handful of segments
(runs of equal status), so 10,000 items scroll as smoothly as 10. Colours come from component
classes bound to theme variables in CSS ($success, $error, …), never from fixed colours.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from runkon_tui.run_view import FanOutView
from runkon_tui.status import GLYPH, ITEM_CODE, ITEM_STATUSES

_CELL_GLYPHS = [GLYPH[s] for s in ITEM_STATUSES]
_FAILED_CODES = frozenset({ITEM_CODE["failed"]})


_RETRYABLE = ("failed", "cancelled")


class FanOutGrid(ScrollView, can_focus=True):
    """Items of one foreach, `cols` per row; a cursor picks an item."""

    COMPONENT_CLASSES = {
        "fanout-grid--pending",
        "fanout-grid--running",
        "fanout-grid--completed",
        "fanout-grid--failed",
        "fanout-grid--skipped",
        "fanout-grid--cancelled",
        "fanout-grid--interrupted",
        "fanout-grid--cursor",
    }

    DEFAULT_CSS = """
    FanOutGrid {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        background: $surface;
    }
    FanOutGrid > .fanout-grid--pending { color: $text-muted; }
    FanOutGrid > .fanout-grid--running { color: $primary; text-style: bold; }
    FanOutGrid > .fanout-grid--completed { color: $success; }
    FanOutGrid > .fanout-grid--failed { color: $error; text-style: bold; }
    FanOutGrid > .fanout-grid--skipped { color: $text-muted; }
    FanOutGrid > .fanout-grid--cancelled { color: $warning; }
    FanOutGrid > .fanout-grid--interrupted { color: $warning; }
    FanOutGrid > .fanout-grid--cursor { text-style: reverse; }
    """

    BINDINGS = [
        Binding("up", "cursor(0,-1)", "Up", show=False),
        Binding("down", "cursor(0,1)", "Down", show=False),
        Binding("left", "cursor(-1,0)", "Left", show=False),
        Binding("right", "cursor(1,0)", "Right", show=False),
        Binding("home", "cursor_to(0)", "First", show=False),
        Binding("end", "cursor_to(-1)", "Last", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("enter", "select_item", "Item", id="select_item"),
        Binding("e", "retry(False)", "Retry item", id="retry_item", show=False),
    ]

    class ItemHighlighted(Message):
        """The cursor moved onto an item (`index` into the fan-out's items)."""

        def __init__(self, grid: FanOutGrid, fan: FanOutView, index: int) -> None:
            super().__init__()
            self.grid = grid
            self.fan = fan
            self.index = index

    class ItemSelected(ItemHighlighted):
        """Enter or a click on an item: show its child run."""

    class RetryRequested(Message):
        """`e` (the item under the cursor) or `E` (every failed item): run them again."""

        def __init__(self, fan: FanOutView, item_ids: list[str]) -> None:
            super().__init__()
            self.fan = fan
            self.item_ids = item_ids

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.fan: FanOutView | None = None
        self.retry_allowed = False  # the run on screen has finished and can be retried (the screen's call)
        #: Does retry reach this fan-out at all (the screen's call: `RunModel.retry_refusal`)?
        self.reachable: Callable[[FanOutView], bool] = lambda fan: True
        self.failed_only = False
        self.text_filter = ""
        self.cluster: str | None = None  # a failure cluster's signature: show only its items
        self.cursor = 0  # position in the visible list
        self._visible: list[int] | None = None  # None = every item, in order
        self._visible_version = -1
        self._styles: list[Style] | None = None
        self._cursor_styles: list[Style] = []
        self._base_style = Style()
        self._cols = 1
        self._picked = False  # an item was chosen: keep showing the cursor after focus leaves

    # ------------------------------------------------------------------ data

    def show(self, fan: FanOutView | None) -> None:
        """Switch to another fan-out (or none); keeps the cursor when it is the same one."""
        if fan is not self.fan:
            self.fan = fan
            self.cursor = 0
            self.cluster = None  # clusters belong to one fan-out
            self._picked = False
            self._visible_version = -1
            self.scroll_to(y=0, animate=False, force=True)
        self.update()

    def set_filter(self, *, failed_only: bool | None = None, text: str | None = None) -> None:
        if failed_only is not None:
            self.failed_only = failed_only
        if text is not None:
            self.text_filter = text
        self._visible_version = -1
        self.cursor = 0
        self.update()

    def set_cluster(self, signature: str | None) -> None:
        """Show only the items of the failure cluster `signature` (None: every item again)."""
        self.cluster = signature
        self._visible_version = -1
        self.cursor = 0
        self.update()

    def update(self) -> None:
        """The fan-out changed: repaint the rows on screen that show a changed item (all of them
        when a filter is on or the number of items changed)."""
        fan = self.fan
        rows_before = self.virtual_size.height
        self._refresh_visible()
        self._resize()
        dirty = fan.take_dirty() if fan is not None else None
        if self._visible is not None or self.virtual_size.height != rows_before or dirty is None:
            self.refresh()
            return
        cols = max(1, self._cols)
        top = self.scroll_offset.y
        first = max(dirty[0] // cols, top)
        last = min(dirty[1] // cols, top + self.size.height - 1)
        if first <= last:
            self.refresh_lines(first, last - first + 1)  # virtual rows; ScrollView maps them

    def _refresh_visible(self) -> None:
        fan = self.fan
        if fan is None:
            self._visible = []
            return
        filtering = self.failed_only or bool(self.text_filter) or self.cluster is not None
        if not filtering:
            self._visible = None
            return
        if fan.version == self._visible_version and self._visible is not None:
            return
        needle = self.text_filter.lower()
        codes = fan.codes
        members: set[int] | None = None
        if self.cluster is not None:
            from runkon_flow.observe.clusters import clusters_of  # see ClusterList.show

            picked = [c for c in clusters_of(fan) if c.signature == self.cluster]
            members = set(picked[0].indices) if picked else set()
        visible = []
        for idx in range(len(fan.ids)):
            if self.failed_only and codes[idx] not in _FAILED_CODES:
                continue
            if members is not None and idx not in members:
                continue
            if needle and needle not in fan.ids[idx].lower() and needle not in fan.refs[idx].lower():
                continue
            visible.append(idx)
        self._visible = visible
        self._visible_version = fan.version

    @property
    def visible_count(self) -> int:
        if self.fan is None:
            return 0
        return len(self.fan.ids) if self._visible is None else len(self._visible)

    def item_at(self, position: int) -> int | None:
        if position < 0 or position >= self.visible_count:
            return None
        return position if self._visible is None else self._visible[position]

    @property
    def cursor_item(self) -> int | None:
        return self.item_at(self.cursor)

    def move_to_item(self, idx: int) -> None:
        """Put the cursor on item `idx` (if visible under the current filter) and announce it."""
        visible = self._visible
        position = idx if visible is None else (visible.index(idx) if idx in visible else -1)
        if position >= 0:
            self._set_cursor(position, select=True)

    def shows_item(self, idx: int) -> bool:
        """Whether item `idx` passes the filters (failed only, text, cluster)."""
        self._refresh_visible()
        return self._visible is None or idx in self._visible

    def highlight_item(self, idx: int) -> None:
        """Put the cursor on item `idx` without opening its output (a search hit shows its own).
        The item must be shown (`shows_item`): the screen takes off filters that hide it."""
        visible = self._visible
        position = idx if visible is None else visible.index(idx)
        self._picked = True
        self._set_cursor(position)

    # ------------------------------------------------------------------ geometry

    def _resize(self) -> None:
        width = max(1, self.scrollable_content_region.width)
        self._cols = width
        rows = (self.visible_count + width - 1) // width
        self.virtual_size = Size(width, rows)

    def on_resize(self, event: events.Resize) -> None:
        self._resize()
        self._scroll_cursor_visible()

    # ------------------------------------------------------------------ painting

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None

    def _cell_styles(self) -> list[Style]:
        """Per-status styles already combined with the widget's base style (computing the base
        style walks the DOM, too slow to do for every line of every frame)."""
        if self._styles is None:
            base = self.rich_style
            self._base_style = base
            self._styles = [base + self.get_component_rich_style(f"fanout-grid--{s}") for s in ITEM_STATUSES]
            cursor = self.get_component_rich_style("fanout-grid--cursor", partial=True)
            self._cursor_styles = [style + cursor for style in self._styles]
        return self._styles

    def render_line(self, y: int) -> Strip:
        scroll_y = self.scroll_offset.y
        row = scroll_y + y
        width = self.size.width
        styles = self._cell_styles()
        base = self._base_style
        fan = self.fan
        if fan is None:
            return Strip.blank(width, base)
        cols = self._cols
        start = row * cols
        total = self.visible_count
        if start >= total:
            return Strip.blank(width, base)
        end = min(start + cols, total)
        cursor_styles = self._cursor_styles
        codes = fan.codes
        visible = self._visible
        cursor = self.cursor if (self.has_focus or self._picked) else -1
        segments: list[Segment] = []
        run_code = -1
        run_text: list[str] = []
        for pos in range(start, end):
            idx = pos if visible is None else visible[pos]
            code = codes[idx]
            if pos == cursor:
                if run_text:
                    segments.append(Segment("".join(run_text), styles[run_code]))
                    run_text = []
                segments.append(Segment(_CELL_GLYPHS[code], cursor_styles[code]))
                run_code = -1
                continue
            if code != run_code and run_text:
                segments.append(Segment("".join(run_text), styles[run_code]))
                run_text = []
            run_code = code
            run_text.append(_CELL_GLYPHS[code])
        if run_text:
            segments.append(Segment("".join(run_text), styles[run_code]))
        used = end - start
        if used < width:
            segments.append(Segment(" " * (width - used), base))
        return Strip(segments, width)

    # ------------------------------------------------------------------ cursor and keys

    def _set_cursor(self, position: int, *, select: bool = False) -> None:
        total = self.visible_count
        if total == 0 or self.fan is None:
            return
        position = max(0, min(total - 1, position))
        old_row = self.cursor // self._cols
        self.cursor = position
        self.refresh_lines(old_row)
        self.refresh_lines(position // self._cols)
        self._scroll_cursor_visible()
        idx = self.item_at(position)
        if idx is not None:
            if select:
                self._picked = True
            message = self.ItemSelected if select else self.ItemHighlighted
            self.post_message(message(self, self.fan, idx))

    def _scroll_cursor_visible(self) -> None:
        row = self.cursor // max(1, self._cols)
        top = self.scroll_offset.y
        height = max(1, self.scrollable_content_region.height)
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, force=True)

    def action_cursor(self, dx: int, dy: int) -> None:
        self._set_cursor(self.cursor + dx + dy * self._cols)

    def action_cursor_to(self, position: int) -> None:
        self._set_cursor(self.visible_count - 1 if position < 0 else position)

    def action_page(self, direction: int) -> None:
        rows = max(1, self.scrollable_content_region.height)
        self._set_cursor(self.cursor + direction * rows * self._cols)

    def action_select_item(self) -> None:
        self._set_cursor(self.cursor, select=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`E` (the screen's key, asking this) is in the footer while this fan-out has failed or
        cancelled items and retry reaches it (`reachable`: not a called workflow's, as
        `runkon-flow retry`): lit once the run on screen has finished (the screen sets
        `retry_allowed`), dimmed while it still runs."""
        if action == "retry":
            fan = self.fan
            if fan is None or not self.reachable(fan):
                return False
            if parameters == (True,):
                if not any(fan.count(status) for status in _RETRYABLE):
                    return False
                return True if self.retry_allowed else None
        return True

    def action_retry(self, every_failed: bool) -> None:
        """Ask to retry the item under the cursor, or every failed or cancelled item; the app
        checks the run can be retried and asks before anything runs."""
        fan = self.fan
        if fan is None:
            return
        if every_failed:  # filtered to a failure cluster: the cluster's items
            self._refresh_visible()
            in_cluster = self.cluster is not None and self._visible is not None
            shown = self._visible if in_cluster else range(len(fan.ids))
            ids = [fan.ids[i] for i in shown if fan.status_of(i) in _RETRYABLE]
        else:
            idx = self.cursor_item
            ids = [fan.ids[idx]] if idx is not None and fan.status_of(idx) in _RETRYABLE else []
        if not ids:
            what = "no failed or cancelled items" if every_failed else "only a failed or cancelled item"
            self.notify(f"nothing to retry: {what} can be retried", severity="warning")
            return
        self.post_message(self.RetryRequested(fan, ids))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        position = (offset.y + self.scroll_offset.y) * self._cols + offset.x
        if position < self.visible_count:
            self.focus()
            self._set_cursor(position, select=True)

    def on_focus(self) -> None:
        self._styles = None
        self.refresh()

    def on_blur(self) -> None:
        self._styles = None
        self.refresh()
