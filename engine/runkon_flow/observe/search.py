"""Run-wide search: a pattern through every step's and item's stored output in a run (fan-out
children and called workflows included), hits grouped by step or item with line numbers. The one
search `runkon-flow grep` and the dashboard's search mode both use (issue 14 item 4).

Lines are numbered within their step's stored output from 1, as `logs` prints them; a step's
error text is searched too, its lines numbered apart (`stream == "error"`) — but not a line its
output already holds: a failed script's error ends with its stderr, which is in its output too,
and each such line was found twice. A pattern is a Python
regular expression (`re`), or a plain string with `fixed=True`; `ignore_case` folds case.

`search_run(..., limit=N)` keeps the first N hits and only counts the rest (the dashboard's
search: a pattern matching most lines of a big run would hold millions of hits), reading the run
as it searches — memory bounded by the hits kept, not by the run's output; `grep` streams
`source_hits` and keeps none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from runkon_flow.observe.outputs import OutputSource, OutputTree, walk_outputs
from runkon_flow.persistence.models import WorkflowRun
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = [
    "Hit",
    "SearchResult",
    "SourceHits",
    "compile_pattern",
    "search_run",
    "search_sources",
    "searched_text",
    "source_hits",
]


@dataclass(frozen=True, slots=True)
class Hit:
    """One matching line: its number in its step's output (or error), its stream, its text and
    where the pattern matched in it (start, end) — for highlighting."""

    number: int
    stream: str
    text: str
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class SourceHits:
    """The hits of one step (or item) kept, and how many lines of it match (more than the hits
    kept in the source a search's `limit` was reached in)."""

    source: OutputSource
    hits: tuple[Hit, ...]
    matching: int


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The hits kept (`groups`: the first `limit` of them, grouped by source) and the count of
    all: `hit_count` matching lines in `sources_matched` sources, of `searched`."""

    run: WorkflowRun
    groups: tuple[SourceHits, ...]
    searched: int  # sources looked through
    has_events: bool
    hit_count: int  # matching lines, kept or not
    sources_matched: int  # sources with a matching line, kept or not

    @property
    def kept(self) -> int:
        """The hits kept: all of them unless the search's `limit` was reached."""
        return sum(len(g.hits) for g in self.groups)

    @property
    def cut(self) -> bool:
        """Some matching lines were counted, not kept (the search's `limit`)."""
        return self.kept < self.hit_count

    @property
    def searched_text(self) -> str:
        return searched_text(self.searched)


def searched_text(searched: int) -> str:
    """How many steps and items were searched, in words that read right for any count:
    `1 step or item`, `20,000 steps and items` (`grep`'s and the dashboard's search summary)."""
    if searched == 0:
        return "no steps or items"
    return "1 step or item" if searched == 1 else f"{searched:,} steps and items"


def compile_pattern(pattern: str, *, ignore_case: bool = False, fixed: bool = False) -> re.Pattern[str]:
    """The pattern as a compiled regex. Raises ValueError with the regex's own complaint (and the
    column) for a pattern that is not one, e.g. `bad pattern '(': missing ), unterminated
    subpattern at position 0`."""
    try:
        return re.compile(re.escape(pattern) if fixed else pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"bad pattern {pattern!r}: {exc}") from exc


#: The matches marked in a hit kept by a search (`search_sources`): `e` over a stored line of
#: 4,000 characters is 2,000 matches apart, and 2,000 such hits kept held about 800 MB of spans in
#: the dashboard's list. The first this many are marked, past the line's first screens anyway.
MARKED_PER_HIT = 100


def _hit(
    regex: re.Pattern[str], number: int, stream: str, text: str, first: re.Match[str], most: int | None = None
) -> Hit:
    """The hit of a line whose first match is `first`; an empty match (`^`, `x*`) is not marked,
    and matches that touch are one span: `.` over a 4,000-character line is one span, not 4,000
    (2,000 such hits held a GB of spans in the dashboard's list). `most`: mark no more spans."""
    spans: list[tuple[int, int]] = []
    for match in regex.finditer(text, first.start()):
        start, end = match.span()
        if end <= start:
            continue
        if spans and spans[-1][1] >= start:
            spans[-1] = (spans[-1][0], end)
        elif most is not None and len(spans) >= most:
            break
        else:
            spans.append((start, end))
    return Hit(number, stream, text, tuple(spans))


def source_hits(regex: re.Pattern[str], source: OutputSource) -> Iterator[Hit]:
    """One source's hits, its output lines' first and then its error's, as they are found (a
    streamed source's lines are read as they are searched: `grep` prints each hit as it goes)."""
    for number, stream, text, first in _matching_lines(regex, source):
        yield _hit(regex, number, stream, text, first)


def _matching_lines(
    regex: re.Pattern[str], source: OutputSource
) -> Iterator[tuple[int, str, str, re.Match[str]]]:
    """(number, stream, text, first match) of each matching line of `source`, in `source_hits`'
    order: the search without the hits (what a search past its `limit` only counts)."""
    errors = (source.error or "").splitlines()
    # A failed script's error repeats its stderr lines, which its output holds too: one hit each.
    wanted = {text.strip() for text in errors}
    shown: set[str] = set()
    for number, line in enumerate(source.each_line(), start=1):
        if wanted:
            text = line.text.strip()
            if text in wanted:
                shown.add(text)
        first = regex.search(line.text)
        if first is not None:
            yield number, line.stream, line.text, first
    for number, text in enumerate(errors, start=1):
        first = regex.search(text)
        if first is not None and text.strip() not in shown:
            yield number, "error", text, first


def search_sources(
    regex: re.Pattern[str], sources: Iterable[OutputSource], *, limit: int | None = None
) -> tuple[list[SourceHits], int, int]:
    """(hits per source, in the sources' order — sources without a hit left out —, matching lines,
    sources with one). Past `limit` hits, matching lines are counted and not kept: no `Hit` is made
    for them (their matches are not looked for), and sources past it are not listed."""
    groups: list[SourceHits] = []
    total = matched = 0
    room = limit if limit is not None else -1
    for source in sources:
        hits: list[Hit] = []
        count = 0
        for number, stream, text, first in _matching_lines(regex, source):
            count += 1
            if room != 0:
                hits.append(_hit(regex, number, stream, text, first, MARKED_PER_HIT))
                room -= 1
        if count:
            matched += 1
            total += count
            if hits:
                groups.append(SourceHits(source, tuple(hits), count))
    return groups, total, matched


def search_run(
    store: WorkflowPersistence,
    run: WorkflowRun,
    regex: re.Pattern[str],
    *,
    within: str | None = None,
    tree: OutputTree | None = None,
    limit: int | None = None,
) -> SearchResult:
    """Search every stored output line of `run` (optionally only the steps or items `within`
    names, as `logs` narrows). `tree` reuses outputs already read; without it the run is walked
    and read as it is searched (`walk_outputs(…, stream=True)`): only the sources with a hit kept
    are held, and a big run's lines are read from `store` (to stay open while the hits' sources'
    `each_line()` may be read). `limit`: keep the first that many hits and count the rest
    (`SearchResult.cut`)."""
    if tree is not None:
        sources: Iterable[OutputSource] = tree.narrowed(within) if within else tree.sources
        has_events = tree.has_events
    else:  # streamed: only the sources with a hit kept are held, and a few stored rows
        walked, has_events = walk_outputs(store, run, stream=True)
        sources = (s for s in walked if within in s.names) if within else walked
    searched = _Counted(sources)
    groups, total, matched = search_sources(regex, searched, limit=limit)
    return SearchResult(run, tuple(groups), searched.count, has_events, total, matched)


class _Counted:
    """The sources a search went through, counted as it goes (a streamed walk keeps none)."""

    def __init__(self, sources: Iterable[OutputSource]) -> None:
        self._sources = sources
        self.count = 0

    def __iter__(self) -> Iterator[OutputSource]:
        for source in self._sources:
            self.count += 1
            yield source
