"""One-line header (run, status, elapsed, counters) and the gate banner under it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from runkon_flow.humanize import display_line
from runkon_flow.observe.reducer import FanOutView
from textual.widgets import Static

from runkon_tui.run_view import RunView
from runkon_tui.status import format_clock, glyph, short_id
from runkon_tui.widgets.markup import esc, paint, set_text, shorten_middle
from runkon_tui.widgets.progress import item_glyphs, item_words

MIN_SHORTENED = 20  # an idle part shortened to fit keeps at least this many cells, else it goes

COUNT_ORDER = (
    "completed",
    "failed",
    "running",
    "waiting",
    "skipped",
    "cancelled",
    "interrupted",
    "timed_out",
)


class RunHeader(Static):
    DEFAULT_CSS = """
    RunHeader { height: 1; background: $panel; color: $foreground; padding: 0 1;
                text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(
        self,
        view: RunView,
        now: float,
        idle: Sequence[tuple[int, str]],
        note: str | None = None,
        elsewhere: str = "",
        fan: FanOutView | None = None,
    ) -> None:
        """`note` (e.g. "in-memory store: runs are not saved") stays next to the name all session;
        `idle` is the line with no run on screen, as (priority, text) parts; `elsewhere` says what
        else of ours is going out of sight (`+1 run of ours going (1 at a gate)`); `fan` is the
        fan-out whose items are counted: the one the grid shows (None: the run's active one).

        On a narrow terminal the least useful parts go first (the brand, the run id, then the item counts'
        words give way to their glyphs, then the step counts go, then `elsewhere`), so the workflow, status,
        elapsed time and item counts always fit."""
        root = view.root
        brand = "[b]runkon[/]"
        room = self.size.width - 2 if self.size.width else 1000
        if root is None:
            # The note comes before the idle text; the brand goes first, then the idle parts of
            # lowest priority are shortened in their middle (a folder keeps its start and its
            # name), or left out when that is not enough; a note longer than the line is
            # shortened in its middle too, and what still does not fit is cut at the edge.
            if note:
                note = shorten_middle(note, room - 2)
            idle_line: list[tuple[int, str, str]] = [(1, brand, "runkon")]
            if note:
                idle_line.append((9, f"[$warning b]⚠ {esc(note)}[/]", f"⚠ {note}"))
            idle_line += [(priority, esc(text), text) for priority, text in idle]
            for level in sorted({p[0] for p in idle_line if p[0] < 9}):
                over = cell_len(" · ".join(p[2] for p in idle_line)) - room
                if over <= 0:
                    break
                fitted = []
                for part in idle_line:
                    if part[0] != level or over <= 0:
                        fitted.append(part)
                    elif cell_len(part[2]) - over >= MIN_SHORTENED:
                        short = shorten_middle(part[2], cell_len(part[2]) - over)
                        fitted.append((level, esc(short), short))
                        over = 0
                    else:
                        over -= cell_len(part[2]) + 3  # left out, with its ` · `
                idle_line = fitted
            set_text(self, " · ".join(p[1] for p in idle_line), fixed_height=True)
            return
        warn = f"[$warning b]⚠ {esc(note)}[/]" if note else ""
        status = view.status
        counts = view.step_counts()
        shown = [paint(s, f"{glyph(s)}{counts[s]}") for s in COUNT_ORDER if counts.get(s)]
        fan = fan if fan is not None else view.active_fanout()
        words = item_words(fan) if fan is not None else ("", "")
        glyphs = item_glyphs(fan) if fan is not None else ("", "")
        usage = view.usage()
        # (priority, markup, plain width): lower priority numbers are dropped first; the item
        # counts (priority 3) are not dropped but said in glyphs instead of words. The usage
        # (tokens, cost) goes first, with the brand.
        parts: list[tuple[int, str, str]] = [
            (1, brand, "runkon"),
            (9, warn, f"⚠ {note}" if note else ""),
            (9, f"[b]{esc(root.workflow_name)}[/]", root.workflow_name),
            (2, f"run {short_id(root.run_id)}", f"run {short_id(root.run_id)}"),
            (9, paint(status, f"{glyph(status)} {status}"), f"{glyph(status)} {status}"),
            (8, format_clock(root.elapsed(now)), format_clock(root.elapsed(now))),
            (9, "[$text-muted]read-only[/]" if view.read_only else "", "read-only" if view.read_only else ""),
            (4, " ".join(shown), " ".join(f"{glyph(s)}{counts[s]}" for s in COUNT_ORDER if counts.get(s))),
            (3, *words),
            (1, usage.short() if usage else "", usage.short() if usage else ""),
            (5, f"[$warning]{esc(elsewhere)}[/]" if elsewhere else "", elsewhere),
        ]
        parts = [p for p in parts if p[1]]
        for level in (1, 2, 3, 4, 5):
            if cell_len(" · ".join(p[2] for p in parts)) <= room:
                break
            if level == 3:
                parts = [(9, *glyphs) if p[0] == 3 else p for p in parts]
            else:
                parts = [p for p in parts if p[0] != level]
        over = cell_len(" · ".join(p[2] for p in parts)) - room
        for short in getattr(note, "shorter", ()) if note else ():
            if over <= 0:
                break
            # A note with shorter forms says the longest that fits, not its cut middle.
            shown = f"[$warning b]⚠ {esc(short)}[/]"
            parts = [(9, shown, f"⚠ {short}") if p[1] == warn else p for p in parts]
            note, warn = short, shown
            over = cell_len(" · ".join(p[2] for p in parts)) - room
        if note and over > 0:  # a long note (a path) is shortened in its middle, not the run's state
            short = shorten_middle(note, cell_len(note) - over)
            parts = [(9, f"[$warning b]⚠ {esc(short)}[/]", short) if p[1] == warn else p for p in parts]
        set_text(self, " · ".join(p[1] for p in parts), fixed_height=True)

    def on_resize(self) -> None:
        self.app.call_later(self._reshow)

    def _reshow(self) -> None:
        screen = self.screen
        refresh = getattr(screen, "refresh_header", None)
        if callable(refresh):
            refresh()


class GateBanner(Static):
    """Shown only while a gate waits: what it asks and which keys answer it."""

    DEFAULT_CSS = """
    GateBanner { height: auto; max-height: 3; background: $warning 20%; color: $foreground; padding: 0 1;
                 display: none; }
    GateBanner.-waiting { display: block; }
    """

    def show(self, view: RunView, approve_key: str, reject_key: str) -> None:
        gates = view.waiting_gates()
        if self.has_class("-waiting") != bool(gates):
            self.set_class(bool(gates), "-waiting")
        if not gates:
            return
        gate = gates[0]
        prompt = f": {esc(display_line(gate.prompt))}" if gate.prompt else ""  # untrusted text
        more = f" (+{len(gates) - 1} more)" if len(gates) > 1 else ""
        set_text(
            self,
            f"[$warning b]{glyph('waiting')} gate {esc(gate.gate_name)} waits{prompt}[/]{more}"
            f" — [b]{approve_key}[/] approve · [b]{reject_key}[/] reject",
        )
