"""Search mode: a pattern through every step's and item's stored output of the run on screen
(fan-out children and called workflows included), hits listed grouped by step or item with their
line numbers; `enter` on a hit opens that step's or item's output in the log pane at the hit.

The search is the engine's (`runkon_flow.observe.search`, the one `runkon-flow grep` uses) over
the store's copy of the run (`observe.outputs`): the whole stored output, not only the lines the
dashboard keeps in memory, read as it is searched — only the first `SEARCH_LIMIT` hits are held,
and a hit's whole step is read again when it is opened. It runs on a thread worker, so a
10,000-item run never freezes the UI.
A pattern in lower case ignores case; one with a capital letter matches case exactly (ripgrep's
"smart case").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from runkon_flow.humanize import display_line
from runkon_flow.observe.outputs import OutputSource
from runkon_flow.observe.search import Hit, SearchResult, compile_pattern, search_run
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from runkon_tui.screens.bottom_toasts import ToastsAboveStatus
from runkon_tui.status import glyph, short_id
from runkon_tui.widgets.log_pane import TextSource
from runkon_tui.widgets.markup import esc, theme_color, tone_text
from runkon_tui.worker_failures import ShowsWorkerFailures

MIN_WRAP_WIDTH = 20  # narrower than this, a line just wraps as the list wraps it
#: A hit's line takes at most this many rows: a 4,000-character line (a minified file, a base64
#: blob) filled the screen with one hit. Longer lines show the part around their first match.
MAX_HIT_ROWS = 4
#: The hits listed: the first this many (as ripgrep's max-count, for the whole run); the rest
#: are counted, not kept. A pattern matching most lines of a big run held millions of hits and
#: list rows — seconds to list and hundreds of MB — for a list no one scrolls through.
SEARCH_LIMIT = 2000

if TYPE_CHECKING:
    from textual.app import App

    from runkon_tui.app import RunkonApp


@dataclass(frozen=True)
class SearchHit:
    """What `enter` on a hit hands back to the main screen: the step (or item) and the line."""

    source: OutputSource
    hit: Hit


class HitSource(TextSource):
    """A step's (or item's) stored output and error lines for the log pane, the hit's line marked
    — a big run's read from the store again (`OutputSource.each_line`: the search kept none)."""

    def __init__(self, found: SearchHit) -> None:
        source = found.source
        lines = list(source.each_line())
        errors = (source.error or "").splitlines()
        super().__init__([line.text for line in lines] + [f"error: {text}" for text in errors])
        self.levels = ["debug" if line.stream == "note" else "info" for line in lines]
        self.levels += ["error"] * len(errors)
        hit = found.hit
        self.index = hit.number - 1 + (len(lines) if hit.stream == "error" else 0)
        if 0 <= self.index < len(self.levels):
            self.levels[self.index] = "warning"

    def get(self, i: int) -> tuple[str, str]:
        return self.lines[i], self.levels[i]


def smart_case(pattern: str) -> bool:
    """Ignore case unless the pattern has a capital letter."""
    return pattern == pattern.lower()


def _hit_text(app: App[object], hit: Hit, width: int | None = None) -> Text:
    """`   12  the line, its matches bold` — a long line wraps under itself, not under the line
    number, when `width` (the list's) is known."""
    where = f"error {hit.number}" if hit.stream == "error" else str(hit.number)
    text = Text(f"  {where:>6}  ", style="dim")
    line = hit.text
    if line.isprintable():
        body = Text(line)
        accent = theme_color(app, "warning")
        for start, end in hit.spans:
            body.stylize(Style(bold=True, color=accent) if accent else Style(bold=True), start, end)
    else:
        body = Text(display_line(line))
    room = (width or 0) - text.cell_len
    if room < MIN_WRAP_WIDTH or body.cell_len <= room:
        return text + body
    body = _around_match(body, hit, room * MAX_HIT_ROWS)
    indent = " " * text.cell_len
    parts = list(body.wrap(app.console, room))
    if len(parts) > MAX_HIT_ROWS:  # words wrapped short of the cells `_around_match` kept
        parts = parts[:MAX_HIT_ROWS]
        parts[-1] = parts[-1][: max(0, len(parts[-1].plain) - 1)] + Text("…")
    for n, part in enumerate(parts):
        if n:
            text.append("\n" + indent)
        text.append_text(part)
    return text


def _around_match(body: Text, hit: Hit, cells: int) -> Text:
    """`body` cut to about `cells` cells (`…` where it is cut), from a little before the first
    match, so the match is in view however long the line."""
    if body.cell_len <= cells:
        return body
    first = hit.spans[0][0] if hit.spans and body.plain == hit.text else 0
    start = max(0, first - cells // 4)
    keep = cells - 2  # room for the two `…`
    while True:  # by characters, so a line of wide characters is cut to its cells too
        part = body[start : start + keep]
        if part.cell_len <= cells - 2 or keep <= 1:
            break
        keep -= max(1, (part.cell_len - (cells - 2)) // 2)
    cut = Text("…" if start else "") + part
    if start + keep < len(body.plain):
        cut.append("…")
    return cut


def _hit_rows(hit: Hit, room: int) -> int:
    """How many rows `_hit_text` gives a hit at a list width leaving `room` for the line."""
    if room < MIN_WRAP_WIDTH:
        return 1
    return min(MAX_HIT_ROWS, max(1, -(-cell_len(hit.text) // room)))


class SearchScreen(ToastsAboveStatus, ShowsWorkerFailures, Screen[SearchHit | None]):
    DEFAULT_CSS = """
    SearchScreen #search-title { height: 1; background: $panel; padding: 0 1; }
    SearchScreen #search-input { margin: 0 0; }
    SearchScreen OptionList { height: 1fr; }
    SearchScreen #search-status { height: auto; color: $text-muted; padding: 0 1; }
    """
    STATUS = "#search-status"

    #: `q` quits from the results; in the pattern box it is a letter of the pattern.
    BINDINGS = [
        Binding("escape", "back", "Back", id="search_back"),
        Binding("q", "app.quit", "Quit", id="search_quit"),
    ]

    def __init__(self, run_id: str | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.result: SearchResult | None = None
        self.hits: list[SearchHit] = []
        self.searching = False
        self._pattern = ""  # of the result on screen, for a re-wrap

    @property
    def rapp(self) -> RunkonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        what = f"run {short_id(self.run_id)}" if self.run_id else "no run"
        yield Static(f"[b]runkon[/] · search the output of {esc(what)}", id="search-title")
        box = Input(
            placeholder="regular expression · enter searches · lower case ignores case", id="search-input"
        )
        box.cursor_blink = getattr(self.app, "blink", True)
        yield box
        yield OptionList(id="search-results")
        yield Static("", id="search-status")
        yield Footer()

    def on_mount(self) -> None:
        self._status(
            "type a pattern and press enter: every step's and item's stored output is searched"
            if self.run_id
            else "no run on screen: run a workflow or open one from the history (h) first"
        )
        self.query_one(Input).focus()

    def _status(self, text: str) -> None:
        self.query_one("#search-status", Static).update(text)
        self.call_after_refresh(self.place_toasts)  # a status of two rows: toasts above both

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        pattern = event.value
        if not pattern or self.run_id is None:
            return
        try:
            regex = compile_pattern(pattern, ignore_case=smart_case(pattern))
        except ValueError as exc:
            self._status(f"[$error]{esc(str(exc))}[/]")
            return
        self.searching = True
        self._status(f"searching for {esc(pattern)}…")
        self._search(self.run_id, regex, pattern)

    @work(thread=True, exclusive=True, group="search", name="search the run", exit_on_error=False)
    def _search(self, run_id: str, regex: object, pattern: str) -> None:
        store = self.rapp.store
        try:
            run = store.get_run(run_id)
            if run is None:
                result, error = None, f"run {run_id} is not in the run database (a replayed file?)"
            else:
                result, error = search_run(store, run, regex, limit=SEARCH_LIMIT), None  # type: ignore[arg-type]
        except Exception as exc:  # an unreadable store is shown, never fatal
            result, error = None, f"cannot search the run: {exc}"
        self.app.call_from_thread(self._fill, pattern, result, error)

    def worker_failed(self, text: str) -> None:
        super().worker_failed(text)
        self.searching = False
        self._status(f"[$error]{esc(text)}[/]")

    def _fill(self, pattern: str, result: SearchResult | None, error: str | None) -> None:
        self.searching = False
        self.result = result
        self.hits = []
        self._pattern = pattern
        results = self.query_one(OptionList)
        results.clear_options()
        if error is not None or result is None:
            self._status(f"[$error]{esc(error or 'no result')}[/]")
            return
        options: list[Option] = []
        width = self._option_width(result)
        for group in result.groups:
            source = group.source
            label = display_line(source.label, None)  # it names the item: any text
            head = tone_text(self.app, source.status, f"{glyph(source.status)} {label}")
            lines = group.matching  # all of them: more than its hits listed where the limit was reached
            head.append(f"  ({source.status}, {lines:,} line{'' if lines == 1 else 's'})")
            head.stylize("bold", 0, len(label) + 2)
            options.append(Option(head, disabled=True))
            for hit in group.hits:
                options.append(Option(_hit_text(self.app, hit, width), id=f"hit-{len(self.hits)}"))
                self.hits.append(SearchHit(source, hit))
        results.add_options(options)
        searched = result.searched_text
        if self.hits:
            count, groups = result.hit_count, result.sources_matched
            found = f"{count:,} matching line{'' if count == 1 else 's'} in {groups:,} of {searched}"
            if result.cut:
                found = f"first {result.kept:,} of {found} — narrow the pattern to see the rest"
            self._status(f"{found} · enter opens one in the log")
            results.highlighted = next(i for i, o in enumerate(options) if not o.disabled)
            results.focus()
        else:
            self._status(f"no match for {esc(pattern)} in {searched}")

    def _option_width(self, result: SearchResult) -> int:
        """The width an option gets: the list's, less the scrollbar it will show once the rows
        (long hits wrap over several) outgrow its height — a scrollbar the list found only after
        the wrap made it wrap every long hit again, two cells narrower, a stub under each row."""
        results = self.query_one(OptionList)
        region = results.content_region
        room = region.width - len(f"  {'error 0':>6}  ")
        rows = len(result.groups) + sum(_hit_rows(hit, room) for group in result.groups for hit in group.hits)
        return region.width - (results.styles.scrollbar_size_vertical if rows > region.height else 0)

    def on_resize(self) -> None:
        self.call_after_refresh(self._rewrap)  # after the layout gives the list its new width
        self.call_after_refresh(self.place_toasts)

    def _rewrap(self) -> None:
        """Wrap the hits to the new width, the same hit still highlighted (and focus kept)."""
        if self.searching or not self.hits or not self.is_mounted:  # a new search fills it anyway
            return
        results = self.query_one(OptionList)
        highlighted, focused = results.highlighted, self.focused
        self.run_guarded("show the hits", lambda: self._fill(self._pattern, self.result, None))
        if highlighted is not None:
            results.highlighted = highlighted
        if focused is not None and focused is not results:
            focused.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        option_id = event.option.id or ""
        if option_id.startswith("hit-"):
            self.dismiss(self.hits[int(option_id[4:])])

    def action_back(self) -> None:
        if self.focused is self.query_one(OptionList):
            self.query_one(Input).focus()  # back to the pattern first, then out
            return
        self.dismiss(None)
