"""Log panes: engine events, the selected step's output, errors only.

`LogView` is a Line-API view over a *bounded* source owned by the RunView (a ring buffer with a
monotonic count), so the widget itself stores nothing per line. It follows the tail only while it
is scrolled to the bottom; scrolling up stops following and keeps the viewed lines steady even as
the ring drops old lines; `end` resumes. A text filter shows matching lines only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Protocol

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from runkon_flow.humanize import display_lines
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from runkon_tui.problems import OpenProblems
from runkon_tui.run_view import LogBuffer, LogLine, StepView
from runkon_tui.status import FAILED, format_clock, glyph
from runkon_tui.widgets.markup import esc, set_text, shorten_middle

LEVELS = ("debug", "info", "success", "warning", "error")


class LogSource(Protocol):
    """A bounded list of lines plus how many were ever appended (so drops can be detected)."""

    @property
    def total(self) -> int: ...

    def __len__(self) -> int: ...

    def get(self, i: int) -> tuple[str, str]: ...


class BufferSource:
    """A RunView log buffer; times shown relative to the run's start (stable across time zones)."""

    def __init__(self, buffer: LogBuffer, start: Callable[[], float | None]) -> None:
        self.buffer = buffer
        self.start = start

    @property
    def total(self) -> int:
        return self.buffer.total

    @property
    def count(self) -> int:
        """Lines of the run on screen (the buffer's `total` also counts runs shown before)."""
        return self.buffer.since_clear

    def __len__(self) -> int:
        return len(self.buffer.lines)

    def get(self, i: int) -> tuple[str, str]:
        return self.stamped(self.buffer.lines[i])

    def stamped(self, line: LogLine) -> tuple[str, str]:
        """`line` as the pane shows it: led by its time since the run's start (`--:--` before it)."""
        t0 = self.start()
        stamp = format_clock(line.ts - t0) if t0 is not None else "--:--"
        return f"{stamp} {line.text}", line.level


class ErrorsSource:
    """The errors log: the workspace's open problems, then the run's own error lines. A run
    start clears only the run's; a problem opened or withdrawn has every line drawn again. The
    lines of an attempt a resume replaced stay, dimmed, and are not counted (docs/dashboard.md)."""

    def __init__(self, problems: OpenProblems, run: BufferSource) -> None:
        self.problems = problems
        self.run = run
        self._total = 0
        self._version = -1  # the first look draws everything
        self._run_total = self._run_dropped = 0

    @property
    def total(self) -> int:
        problems, buffer = self.problems, self.run.buffer
        if problems.version == self._version and (not problems.lines or buffer.dropped == self._run_dropped):
            self._total += buffer.total - self._run_total  # the run's lines came (or left its front)
        else:
            # Lines left from the middle (a problem, or the run's behind the problems): to the
            # viewer, every line is new and every line it drew is gone.
            self._total += len(self) + 1
        self._version, self._run_total, self._run_dropped = problems.version, buffer.total, buffer.dropped
        return self._total

    @property
    def count(self) -> int:
        """Open problems and the run's current attempt's errors: its warnings (an empty
        placeholder, a step that failed with `on_fail = continue`) are listed, not counted."""
        return len(self.problems) + self.run.buffer.errors

    def __len__(self) -> int:
        return len(self.problems.lines) + len(self.run)

    def get(self, i: int) -> tuple[str, str]:
        lines = self.problems.lines
        if i < len(lines):
            return self.run.stamped(lines[i])
        i -= len(lines)
        text, level = self.run.get(i)
        return (text, "debug") if i < self.run.buffer.replaced else (text, level)


class OutputSource:
    """A step's output ring (stdout/stderr/agent lines as they were produced), then — once the step
    failed or timed out — why, unless its last line says it already: a failed agent step's output
    is often just its prompt, and `n` (next failure) landed on it without saying what went wrong."""

    def __init__(self, step: StepView | None, fallback: Sequence[str] = ()) -> None:
        self.step = step
        self.fallback = list(fallback)

    def _own(self) -> bool:
        return self.step is not None and self.step.output is not None

    def _why(self) -> list[str]:
        step = self.step
        if step is None or step.status not in FAILED or not step.error:
            return []
        lines = step.output if step.output is not None else self.fallback
        if lines and lines[-1].strip() == step.error.strip():
            return []
        return [f"{glyph(step.status)} {step.status.replace('_', ' ')}: {step.error}"]

    @property
    def total(self) -> int:
        base = self.step.output_total if self._own() else len(self.fallback)  # type: ignore[union-attr]
        return base + len(self._why())

    def __len__(self) -> int:
        base = len(self.step.output) if self._own() else len(self.fallback)  # type: ignore[union-attr, arg-type]
        return base + len(self._why())

    def get(self, i: int) -> tuple[str, str]:
        if self._own():
            output = self.step.output  # type: ignore[union-attr]
            if i < len(output):  # type: ignore[arg-type]
                return output[i], "info"  # type: ignore[index]
        elif i < len(self.fallback):
            return self.fallback[i], "debug"
        return self._why()[0], "error"


class TextSource:
    """A fixed list of lines (help texts, messages)."""

    def __init__(self, lines: Sequence[str], level: str = "debug") -> None:
        self.lines = list(lines)
        self.level = level

    @property
    def total(self) -> int:
        return len(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def get(self, i: int) -> tuple[str, str]:
        return self.lines[i], self.level


_EMPTY = TextSource([])


class LogView(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {f"log-view--{level}" for level in LEVELS}

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        background: $surface;
        overflow-x: auto;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
    }
    LogView > .log-view--debug { color: $text-muted; }
    LogView > .log-view--info { color: $foreground; }
    LogView > .log-view--success { color: $success; }
    LogView > .log-view--warning { color: $warning; }
    LogView > .log-view--error { color: $error; }
    """

    BINDINGS = [Binding("end", "follow", "Follow", show=False)]

    class FollowChanged(Message):
        def __init__(self, following: bool) -> None:
            super().__init__()
            self.following = following

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.source: LogSource = _EMPTY
        self.text_filter = ""
        self._seen_total = 0
        self._dropped = 0
        # One entry per screen row: (absolute sequence number of the line, row within it).
        self._rows: list[tuple[int, int]] = []
        self._width = 0
        self._styles: dict[str, Style] | None = None
        self._base_style = Style()
        self.following = True

    # ------------------------------------------------------------------ data

    def set_source(self, source: LogSource | None) -> None:
        self.source = source if source is not None else _EMPTY
        self._seen_total = 0
        self._dropped = 0
        self._rows = []
        self._width = 0
        self.following = True
        self.sync(force=True)

    def set_filter(self, text: str) -> None:
        self.text_filter = text
        self._seen_total = 0
        self._rows = []
        self.sync(force=True)

    def sync(self, force: bool = False) -> None:
        """Pick up lines appended (and dropped) since the last call; follow if at the bottom."""
        source = self.source
        total = source.total
        if total == self._seen_total and not force:
            return
        at_end = self.following or self.scroll_offset.y >= self.max_scroll_y
        count = len(source)
        dropped = total - count
        rows = self._rows
        cut = bisect_left(rows, (dropped, -1)) if dropped > self._dropped else 0
        if cut:
            del rows[:cut]  # lines the ring dropped
        first_new = max(self._seen_total, dropped)
        needle = self.text_filter.lower()
        width = self._width
        for seq in range(first_new, total):
            text, _ = source.get(seq - dropped)
            if needle and needle not in text.lower():
                continue
            parts = display_lines(text)
            for part, row_text in enumerate(parts):
                rows.append((seq, part))
                width = max(width, cell_len(row_text))
        self._width = width
        self._seen_total = total
        self._dropped = dropped
        self.virtual_size = Size(width, len(rows))
        if at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
            # A first over-wide line adds the horizontal scrollbar, one row less: follow again then.
            self.call_after_refresh(self._keep_following)
        elif cut:
            self.scroll_to(y=max(0, self.scroll_offset.y - cut), animate=False, immediate=True, force=True)
        self._set_following(at_end)
        self.refresh()

    def watch_show_horizontal_scrollbar(self, shown: bool) -> None:
        # The scrollbar can appear a layout pass after `sync` (a busy app): the row it takes
        # must not hide the last line of a log that follows its tail.
        if shown and self.following:
            self.call_after_refresh(self._keep_following)

    def _keep_following(self) -> None:
        if self.following and self.scroll_offset.y < self.max_scroll_y:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def _set_following(self, value: bool) -> None:
        if value != self.following:
            self.following = value
            self.post_message(self.FollowChanged(value))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._set_following(new_value >= self.max_scroll_y)

    def scroll_to_line(self, index: int) -> None:
        """Show line `index` of the source (its first screen row) near the top third of the pane
        and stop following the tail, so it stays in view (a search hit)."""
        row = bisect_left(self._rows, (index + self._dropped, 0))
        self._set_following(False)
        self.scroll_to(y=max(0, row - self.size.height // 3), animate=False, immediate=True, force=True)

    def action_follow(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        self._set_following(True)

    # ------------------------------------------------------------------ painting

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None

    def on_focus(self) -> None:
        self._styles = None  # a focused container may be tinted: recompute the base style
        self.refresh()

    def on_blur(self) -> None:
        self._styles = None
        self.refresh()

    def _level_styles(self) -> dict[str, Style]:
        """Each level's style combined with the base style, which is kept in `_base_style`
        (cached: computing the base walks the DOM)."""
        if self._styles is None:
            base = self.rich_style
            self._base_style = base
            self._styles = {lv: base + self.get_component_rich_style(f"log-view--{lv}") for lv in LEVELS}
        return self._styles

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width  # not `size`: that takes in the scrollbar
        styles = self._level_styles()
        base = self._base_style
        source = self.source
        if row >= len(self._rows):
            return Strip.blank(width, base)
        seq, part = self._rows[row]
        index = seq - self._dropped
        if index < 0 or index >= len(source):
            return Strip.blank(width, base)
        text, level = source.get(index)
        parts = display_lines(text)
        text = parts[part] if part < len(parts) else ""
        return _visible(text, styles.get(level, styles["info"]), scroll_x, width, base, styles["debug"])


#: Drawn in a line's first or last column when it goes on beyond the pane's left or right edge: a
#: short pane has no horizontal scrollbar to say so (themes/runkon.tcss), and a long one shows where.
MORE_LEFT, MORE_RIGHT = "‹", "›"


def _visible(text: str, style: Style, scroll_x: int, width: int, base: Style, marker: Style) -> Strip:
    """The `width` columns of `text` from `scroll_x`, marked at an edge where it goes on."""
    length = cell_len(text)
    strip = Strip([Segment(text, style)], length)
    more_left = scroll_x > 0 and length > 0
    more_right = length > scroll_x + width
    if width < 3 or not (more_left or more_right):
        return strip.crop_extend(scroll_x, scroll_x + width, base)
    start = scroll_x + more_left
    middle = strip.crop_extend(start, scroll_x + width - more_right, base)
    parts = [Strip([Segment(MORE_LEFT, marker)], 1)] if more_left else []
    parts.append(middle)
    if more_right:
        parts.append(Strip([Segment(MORE_RIGHT, marker)], 1))
    return Strip.join(parts)


class LogPane(Vertical):
    """The bottom pane: a bar naming the log shown, the filter and the follow state."""

    MODES = ("engine", "output", "errors")
    ALLOW_MAXIMIZE = True  # zoom takes the pane with its bar and border, not the bare lines

    DEFAULT_CSS = """
    LogPane { height: 9; }
    LogPane > #log-bar { height: 1; background: $panel; color: $text-muted; }
    """

    mode: reactive[str] = reactive("engine")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sources: dict[str, LogSource] = {m: _EMPTY for m in self.MODES}
        self.output_title = ""
        self.error_count = 0

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="log-bar")
        yield LogView(id="log-view")

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self._render_bar()

    def set_sources(self, **sources: LogSource | None) -> None:
        for mode, source in sources.items():
            self.sources[mode] = source if source is not None else _EMPTY
            if mode == self.mode:
                self.view.set_source(self.sources[mode])
        self._render_bar()

    def set_output(self, source: LogSource | None, title: str) -> None:
        self.output_title = title
        self.set_sources(output=source)

    def sync(self) -> None:
        self.view.sync()
        self._render_bar()

    def watch_mode(self, mode: str) -> None:
        if self.is_mounted:
            self.view.set_source(self.sources.get(mode))
            self._render_bar()

    def cycle(self) -> None:
        self.mode = self.MODES[(self.MODES.index(self.mode) + 1) % len(self.MODES)]

    def set_filter(self, text: str) -> None:
        self.view.set_filter(text)
        self._render_bar()

    def on_log_view_follow_changed(self, _: LogView.FollowChanged) -> None:
        self._render_bar()

    def on_resize(self) -> None:
        self.call_after_refresh(self._render_bar)  # the bar's width is known once laid out

    def _bar(self, title: str, errors: int, gap: str) -> tuple[str, str]:
        """The bar as markup and as the plain text it draws (measured to fit), the output view
        named `title`, with `gap` before the filter and the follow state."""
        names = {
            "engine": "engine",
            "output": f"output: {title}" if title else "output",
            "errors": f"errors ({errors})" if errors else "errors",
        }
        view = self.view
        parts = [
            f"[b $foreground]{esc(names[m])}[/]" if m == self.mode else esc(names[m]) for m in self.MODES
        ]
        bar, plain = "Log: " + " | ".join(parts), "Log: " + " | ".join(names[m] for m in self.MODES)
        if view.text_filter:
            bar += f"{gap}filter: [$warning]{esc(view.text_filter)}[/]"
            plain += f"{gap}filter: {view.text_filter}"
        mark = "●" if view.following else "○"
        follow = f"[$success]{mark}[/]" if view.following else mark
        return bar + f"{gap}\\[follow {follow}]", plain + f"{gap}[follow {mark}]"

    def _render_bar(self) -> None:
        """`Log: engine | output: <step> | errors (N)   [follow ●]`, kept whole in a narrow pane:
        the gaps close up first, then the step's name is cut in its middle — never the errors
        count or the follow state at the end (a 60-column pane used to lose both)."""
        if not self.is_mounted:
            return
        source = self.sources["errors"]
        errors = source.count if isinstance(source, (BufferSource, ErrorsSource)) else source.total
        title = self.output_title
        room = self.query_one("#log-bar", Static).content_size.width
        bar, plain = self._bar(title, errors, "   ")
        if room > 0 and cell_len(plain) > room:
            over = cell_len(self._bar(title, errors, " ")[1]) - room
            if over > 0 and title:
                title = shorten_middle(title, cell_len(title) - over, least=8)
            bar = self._bar(title, errors, " ")[0]
        set_text(self.query_one("#log-bar", Static), bar, fixed_height=True)
