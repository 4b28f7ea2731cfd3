"""One-line header (run, status, elapsed, counters) and the gate banner under it."""

from __future__ import annotations

from textual.widgets import Static

from runkon_tui.run_view import RunView
from runkon_tui.status import format_clock, glyph, short_id
from runkon_tui.widgets.markup import esc, paint, set_text

COUNT_ORDER = ("completed", "failed", "running", "waiting", "skipped", "cancelled", "timed_out")


class RunHeader(Static):
    DEFAULT_CSS = """
    RunHeader { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    def show(self, view: RunView, now: float, idle_text: str, note: str | None = None) -> None:
        """`note` (e.g. "in-memory store: runs are not saved") stays next to the name all session."""
        root = view.root
        brand = "[b]runkon[/]" + (f" [$warning b]⚠ {esc(note)}[/]" if note else "")
        if root is None:
            set_text(self, f"{brand} · {esc(idle_text)}", fixed_height=True)
            return
        status = view.status
        parts = [
            brand,
            f"[b]{esc(root.workflow_name)}[/]",
            f"run {short_id(root.run_id)}",
            paint(status, f"{glyph(status)} {status}"),
            format_clock(root.elapsed(now)),
        ]
        if view.read_only:
            parts.append("[$text-muted]read-only[/]")
        counts = view.step_counts()
        shown = [paint(s, f"{glyph(s)}{counts[s]}") for s in COUNT_ORDER if counts.get(s)]
        if shown:
            parts.append(" ".join(shown))
        fan = view.active_fanout()
        if fan is not None:
            parts.append(f"items {fan.done}/{fan.total}")
        set_text(self, " · ".join(parts), fixed_height=True)


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
        prompt = f": {esc(gate.prompt)}" if gate.prompt else ""
        more = f" (+{len(gates) - 1} more)" if len(gates) > 1 else ""
        set_text(
            self,
            f"[$warning b]{glyph('waiting')} gate {esc(gate.gate_name)} waits{prompt}[/]{more}"
            f" — [b]{approve_key}[/] approve · [b]{reject_key}[/] reject",
        )
