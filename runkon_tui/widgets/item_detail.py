"""Under the grid: fan-out counters, progress and ETA, then the selected item's child run."""

from __future__ import annotations

from rich.cells import cell_len
from runkon_flow.humanize import cause_first, format_duration
from runkon_flow.observe.estimates import Estimates
from textual.widgets import Static

from runkon_tui.run_view import FanOutView, RunView
from runkon_tui.status import glyph, short_id
from runkon_tui.tree_model import history_key
from runkon_tui.widgets.markup import esc, paint, set_text
from runkon_tui.widgets.progress import item_glyphs, item_words


class ItemDetail(Static):
    DEFAULT_CSS = """
    ItemDetail { height: 4; background: $surface; color: $foreground; }
    """

    _last: tuple[RunView | None, FanOutView | None, int | None, float, bool] | None = None

    def on_resize(self) -> None:
        """The counters are said in words or glyphs by the width: say them again when it changes
        (the first `show` may come before the pane has its size)."""
        if self._last is not None:
            self.show(*self._last)

    def show(
        self,
        view: RunView | None,
        fan: FanOutView | None,
        selected: int | None,
        now: float,
        has_foreach: bool = False,
    ) -> None:
        """`view` is None when the tree shows another workflow than the run on screen;
        `has_foreach`: the tree has a foreach (the run's own or a called workflow's)."""
        self._last = (view, fan, selected, now, has_foreach)
        if fan is None or view is None:
            if view is not None and view.root is not None and view.active and has_foreach:
                text = "[$text-muted]the fan-out has not started yet[/]"
            elif view is not None and view.root is not None:
                text = "[$text-muted]no fan-out in this run[/]"
            else:  # nothing running: say what this pane is for
                text = "[$text-muted]foreach items show here[/]"
            set_text(self, text, fixed_height=True)
            return
        # A short pane (80×24: three rows) has room for the counters on one line, the selected
        # item, and why it failed: words there only when they fit one line.
        rows = 1 if selected is not None and self.size.height <= 3 else 2
        lines = [self._counters(view, fan, now, self.size.width, rows)]
        if selected is not None and 0 <= selected < len(fan.ids):
            lines.extend(self._item(view, fan, selected, now, self.size.width))
        set_text(self, "\n".join(lines), fixed_height=True)

    #: Past runs of the workflow on screen (the screen sets it): the ETA becomes a p50–p95 band.
    estimates: Estimates | None = None

    def _counters(self, view: RunView | None, fan: FanOutView, now: float, width: int, rows: int = 2) -> str:
        """Every item status on its own (completed never includes failed or cancelled ones), in
        words when they fit on `rows` lines, else in the grid's glyphs; then the ETA: a band from
        past runs narrowed by the live rate (`observe.estimates`), else the average rate so far."""
        tail = ""
        if fan.done < fan.total and fan.count("running") and (view is None or view.active):
            band = None
            if self.estimates is not None and view is not None:
                key = history_key(view, fan.run_id, fan.node_path)
                band = self.estimates.fanout_eta(fan, now, key) if key is not None else None
            eta = fan.eta(now)
            if band is not None:
                tail = f" · ETA {band.text()}"
            elif eta is not None:
                tail = f" · ETA {format_duration(eta)}"
        text, plain = item_words(fan)
        if width and cell_len(plain + tail) > rows * width:  # words on `rows` lines, else glyphs
            text, _ = item_glyphs(fan)
        return text + tail

    @staticmethod
    def _item(view: RunView, fan: FanOutView, idx: int, now: float, width: int = 0) -> list[str]:
        status = fan.status_of(idx)
        item_id = fan.ids[idx]
        elapsed = fan.elapsed(idx, now)
        took = f" {format_duration(elapsed)}" if elapsed is not None else ""
        child_id = fan.child_runs.get(idx)
        run = f" · run {short_id(child_id)}" if child_id else ""
        # One row, so the error under it stays in a short pane (80×24: the grid pane is ~22
        # columns): the run id, then "selected:", then the status word give way, in that order.
        for lead, word, tail in (
            ("selected: ", True, run),
            ("selected: ", True, ""),
            ("", True, ""),
            ("", False, ""),
        ):
            plain = f"{lead}{item_id} {glyph(status)}{' ' + status if word else ''}{took}{tail}"
            if not width or cell_len(plain) <= width:
                break
        shown = paint(status, glyph(status) + (" " + status if word else ""))
        lines = [f"{lead}[b]{esc(item_id)}[/] {shown}{took}{tail}"]
        # Why, not which step: the failed step's error (`rate limited …`) before the run's own
        # (`Step 'import' failed after 1 attempt`), its last line first, as the pane cuts the end;
        # right under the item, where a short pane (80×24) still shows it.
        error = fan.errors.get(idx)
        if error and status in ("failed", "cancelled"):  # not an earlier attempt's, once retried
            lines.append(f"  [$error]{esc(cause_first(fan.causes.get(idx) or error))}[/]")
        attempt = fan.attempts.get(idx)
        if attempt:
            lines.append(f"  attempt {attempt}{ItemDetail._earlier(view, fan.earlier.get(idx))}")
        if fan.refs[idx] and fan.refs[idx] != item_id:
            lines.append(f"  ref: {esc(fan.refs[idx])}")
        waits = fan.waits_on(idx)
        if waits and status == "pending":
            shown = ", ".join(f"{esc(d)} ({s})" for d, s in waits[:5])
            more = f" +{len(waits) - 5}" if len(waits) > 5 else ""
            lines.append(f"  waits on: {shown}{more}")
        child = view.run(child_id) if child_id else None
        if child is not None:
            for sv in list(child.steps.values())[-2:]:
                line = f"  {paint(sv.status, glyph(sv.status))} {esc(sv.step_key or sv.name)}"
                if sv.usage:  # what this item spent, step by step (the tree says the fan-out's sum)
                    line += f" [$text-muted]· {esc(sv.usage.short())}[/]"
                last = sv.last_line_worth_showing()
                if last:
                    line += f"  [$text-muted]{esc(last[:120])}[/]"
                lines.append(line)
        return lines

    @staticmethod
    def _earlier(view: RunView, run_id: str | None) -> str:
        """`· earlier: run …ABCD ✗ failed` — the attempt before is kept, never replaced."""
        if not run_id:
            return ""
        earlier = view.run(run_id)
        status = earlier.status if earlier is not None and earlier.status != "pending" else ""
        shown = f" {paint(status, glyph(status) + ' ' + status)}" if status else ""
        return f" · earlier: run {short_id(run_id)}{shown}"
