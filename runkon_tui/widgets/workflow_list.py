"""The workflows list: every `.wf` file, broken ones kept with `file:line:col` and their error, and
ones the host's checks refuse (a missing agent or sub-workflow) flagged the same way."""

from __future__ import annotations

import textwrap
from pathlib import Path

from textual import events
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from runkon_tui.catalog import Catalog, WorkflowEntry
from runkon_tui.status import glyph
from runkon_tui.widgets.markup import esc, paint


class WorkflowList(OptionList):
    """Options are keyed by file path; the prompt shows status, name and, when broken, where."""

    # One line per workflow: a name wider than the list ends in "…" instead of wrapping under its
    # glyph (a broken entry's prompt is laid out to the width by `_broken_prompt`).
    DEFAULT_CSS = """
    WorkflowList { height: 1fr; max-height: 100%; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        self.text_filter = ""
        self._signature: tuple = ()
        self.statuses: dict[str, str] = {}  # workflow name → status of its latest run here
        self._catalog: Catalog | None = None

    def load(self, catalog: Catalog, select_path: str | None = None) -> None:
        """Rebuild the options when the catalog (or a filter/status) changed; keep the highlight."""
        self._catalog = catalog
        entries = [e for e in catalog if self._matches(e)]
        # Only a broken entry's prompt is laid out to the width: with none, a new width (the first
        # layout's, at start-up) rebuilds nothing, and costs no second layout of the whole screen.
        width = self._text_width() if any(e.trouble is not None for e in entries) else 0
        signature = (
            width,
            *(
                (
                    e.path,
                    e.name,
                    catalog.label(e),
                    e.location(),
                    e.trouble.message if e.trouble else "",
                    self.statuses.get(e.name, ""),
                )
                for e in entries
            ),
        )
        if signature == self._signature and select_path is None:
            return
        previous, self._signature = self._signature, signature
        paths = [e.path for e in entries]
        if self._same_rows(previous, signature):
            # Only a status or an error changed (a run started or ended): new prompts in place,
            # without emptying the list, which would cost a layout pass of the whole screen.
            for index, (entry, old, new) in enumerate(zip(entries, previous[1:], signature[1:], strict=True)):
                if old != new:
                    self.replace_option_prompt_at_index(index, self._prompt(entry, width))
            if select_path in paths and self.highlighted != paths.index(select_path):
                self.highlighted = paths.index(select_path)
            return
        current = select_path or self.highlighted_path
        place = self.highlighted
        self.clear_options()
        # `width` as measured above: emptying the list takes its scrollbar away for a moment.
        self.add_options(Option(self._prompt(e, width), id=e.path) for e in entries)
        if current in paths:
            self.highlighted = paths.index(current)
        elif current is not None and place is not None and current not in catalog.entries:
            # The highlighted file was deleted: stay where the cursor was — on another file that
            # declares the same workflow, else on the entry that took its place — not at the top.
            name = next((row[1] for row in previous[1:] if row[0] == current), None)
            same = [i for i, e in enumerate(entries) if e.name == name]
            self.highlighted = same[0] if same else min(place, len(paths) - 1) if paths else None
        elif paths:
            # Start on the first workflow that can run, not on a broken file.
            self.highlighted = next((i for i, e in enumerate(entries) if not e.broken), 0)

    def _same_rows(self, previous: tuple, signature: tuple) -> bool:
        """The same width and the same files in the same order as the options on screen."""
        return (
            bool(previous)
            and previous[0] == signature[0]
            and len(previous) == len(signature) == self.option_count + 1
            and all(a[0] == b[0] for a, b in zip(previous[1:], signature[1:], strict=True))
        )

    def _matches(self, entry: WorkflowEntry) -> bool:
        needle = self.text_filter.lower()
        return not needle or needle in entry.name.lower() or needle in entry.path.lower()

    def _text_width(self) -> int:
        """Columns a prompt line may use (a narrow default before the first layout)."""
        width = self.scrollable_content_region.width
        return width if width > 4 else 22

    def on_resize(self, _: events.Resize) -> None:
        self.load_again()

    def load_again(self) -> None:
        """Rebuild the prompts for a new width (broken entries are laid out to fit it)."""
        if self._catalog is not None:
            self.load(self._catalog)

    def _prompt(self, entry: WorkflowEntry, width: int) -> str:
        if entry.trouble is not None:
            return self._broken_prompt(entry, width)
        status = self.statuses.get(entry.name)
        if status:
            mark = paint(status, glyph(status))
        else:
            mark = "[$text-muted]●[/]"
        label = self._catalog.label(entry) if self._catalog is not None else entry.name
        return f"{mark}\u00a0{esc(label)}"  # no line break between the glyph and the name

    def _broken_prompt(self, entry: WorkflowEntry, width: int) -> str:
        """`✗ name.wf:12:64` on one line (the name shortened, never the position), then the
        message indented under it on at most two lines, `width` columns in all: readable in a
        22-column list."""
        location = entry.location()
        room = width - 2  # the glyph and a space
        if len(location) > room:
            name = Path(entry.path).name
            position = location[len(name) :]
            keep = max(1, room - len(position) - 1)
            location = name[:keep] + "…" + position
            location = location if len(location) <= room else location[: room - 1] + "…"
        message = entry.trouble.message if entry.trouble else ""
        lines = textwrap.wrap(message, max(8, width - 2)) or [""]
        if len(lines) > 2:
            lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), max(8, width - 2), placeholder="…")]
        body = "\n".join(f"  [$text-muted]{esc(line)}[/]" for line in lines)
        return f"[$error]{glyph('failed')}[/]\u00a0{esc(location)}\n{body}"

    @property
    def highlighted_path(self) -> str | None:
        if self.highlighted is None or self.highlighted >= self.option_count:
            return None
        return self.get_option_at_index(self.highlighted).id

    def set_filter(self, text: str, catalog: Catalog, keep: str | None = None) -> None:
        """Show only the files matching `text`; `keep` (a path) stays highlighted if it matches."""
        self.text_filter = text
        self.load(catalog, select_path=keep)
