"""The workflows list: every `.wf` file, broken ones kept with `file:line:col` and their error."""

from __future__ import annotations

from textual.widgets import OptionList
from textual.widgets.option_list import Option

from runkon_tui.catalog import Catalog, WorkflowEntry
from runkon_tui.status import glyph
from runkon_tui.widgets.markup import esc, paint


class WorkflowList(OptionList):
    """Options are keyed by file path; the prompt shows status, name and, when broken, where."""

    DEFAULT_CSS = """
    WorkflowList { height: 1fr; max-height: 100%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        self.text_filter = ""
        self._signature: tuple = ()
        self.statuses: dict[str, str] = {}  # workflow name → status of its latest run here

    def load(self, catalog: Catalog, select_path: str | None = None) -> None:
        """Rebuild the options when the catalog (or a filter/status) changed; keep the highlight."""
        entries = [e for e in catalog if self._matches(e)]
        signature = tuple(
            (e.path, e.name, e.location(), e.error.message if e.error else "", self.statuses.get(e.name, ""))
            for e in entries
        )
        if signature == self._signature and select_path is None:
            return
        self._signature = signature
        current = select_path or self.highlighted_path
        self.clear_options()
        self.add_options(Option(self._prompt(e), id=e.path) for e in entries)
        paths = [e.path for e in entries]
        if current in paths:
            self.highlighted = paths.index(current)
        elif paths:
            # Start on the first workflow that can run, not on a broken file.
            self.highlighted = next((i for i, e in enumerate(entries) if not e.broken), 0)

    def _matches(self, entry: WorkflowEntry) -> bool:
        needle = self.text_filter.lower()
        return not needle or needle in entry.name.lower() or needle in entry.path.lower()

    def _prompt(self, entry: WorkflowEntry) -> str:
        if entry.error is not None:
            head = f"[$error]{glyph('failed')}[/]\u00a0{esc(entry.location())}"
            message = entry.error.message
            if len(message) > 48:
                message = message[:47] + "…"
            return f"{head}\n  [$text-muted]{esc(message)}[/]"
        status = self.statuses.get(entry.name)
        if status:
            mark = paint(status, glyph(status))
        else:
            mark = "[$text-muted]●[/]"
        return f"{mark}\u00a0{esc(entry.name)}"  # no line break between the glyph and the name

    @property
    def highlighted_path(self) -> str | None:
        if self.highlighted is None or self.highlighted >= self.option_count:
            return None
        return self.get_option_at_index(self.highlighted).id

    def set_filter(self, text: str, catalog: Catalog) -> None:
        self.text_filter = text
        self.load(catalog)
