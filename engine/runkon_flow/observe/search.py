"""Run-wide search: a pattern through every step's and item's stored output in a run (fan-out
children and called workflows included), hits grouped by step or item with line numbers. The one
search `runkon-flow grep` and the dashboard's search mode both use (issue 14 item 4).

Lines are numbered within their step's stored output from 1, as `logs` prints them; a step's
error text is searched too, its lines numbered apart (`stream == "error"`) — but not a line its
output already holds: a failed script's error ends with its stderr, which is in its output too,
and each such line was found twice. A pattern is a Python
regular expression (`re`), or a plain string with `fixed=True`; `ignore_case` folds case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from runkon_flow.observe.outputs import OutputSource, OutputTree, read_outputs
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
    """The hits of one step (or item)."""

    source: OutputSource
    hits: tuple[Hit, ...]


@dataclass(frozen=True, slots=True)
class SearchResult:
    run: WorkflowRun
    groups: tuple[SourceHits, ...]
    searched: int  # sources looked through
    has_events: bool

    @property
    def hit_count(self) -> int:
        return sum(len(g.hits) for g in self.groups)

    @property
    def searched_text(self) -> str:
        return searched_text(self.searched)


def searched_text(searched: int) -> str:
    """How many steps and items were searched, in words that read right for any count:
    `1 step or item`, `5 steps and items` (`grep`'s and the dashboard's search summary)."""
    if searched == 0:
        return "no steps or items"
    return "1 step or item" if searched == 1 else f"{searched} steps and items"


def compile_pattern(pattern: str, *, ignore_case: bool = False, fixed: bool = False) -> re.Pattern[str]:
    """The pattern as a compiled regex. Raises ValueError with the regex's own complaint (and the
    column) for a pattern that is not one, e.g. `bad pattern '(': missing ), unterminated
    subpattern at position 0`."""
    try:
        return re.compile(re.escape(pattern) if fixed else pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"bad pattern {pattern!r}: {exc}") from exc


def _line_hit(regex: re.Pattern[str], number: int, stream: str, text: str) -> Hit | None:
    spans = tuple(m.span() for m in regex.finditer(text) if m.end() > m.start())
    if not spans:
        if regex.search(text) is None:
            return None
        spans = ()  # an empty match (`^`, `x*`): the line matches, nothing to highlight
    return Hit(number, stream, text, spans)


def source_hits(regex: re.Pattern[str], source: OutputSource) -> Iterator[Hit]:
    """One source's hits, its output lines' first and then its error's, as they are found (a
    streamed source's lines are read as they are searched: `grep` prints each hit as it goes)."""
    errors = (source.error or "").splitlines()
    # A failed script's error repeats its stderr lines, which its output holds too: one hit each.
    wanted = {text.strip() for text in errors}
    shown: set[str] = set()
    for number, line in enumerate(source.each_line(), start=1):
        if wanted:
            text = line.text.strip()
            if text in wanted:
                shown.add(text)
        hit = _line_hit(regex, number, line.stream, line.text)
        if hit is not None:
            yield hit
    for number, text in enumerate(errors, start=1):
        hit = _line_hit(regex, number, "error", text)
        if hit is not None and text.strip() not in shown:
            yield hit


def search_sources(regex: re.Pattern[str], sources: Iterable[OutputSource]) -> list[SourceHits]:
    """Hits per source, in the sources' order; sources without a hit are left out."""
    groups = []
    for source in sources:
        hits = tuple(source_hits(regex, source))
        if hits:
            groups.append(SourceHits(source, hits))
    return groups


def search_run(
    store: WorkflowPersistence,
    run: WorkflowRun,
    regex: re.Pattern[str],
    *,
    within: str | None = None,
    tree: OutputTree | None = None,
) -> SearchResult:
    """Search every stored output line of `run` (optionally only the steps or items `within`
    names, as `logs` narrows). `tree` reuses outputs already read."""
    outputs = tree if tree is not None else read_outputs(store, run)
    sources = outputs.narrowed(within) if within else outputs.sources
    return SearchResult(run, tuple(search_sources(regex, sources)), len(sources), outputs.has_events)
