"""Where each `//` comment belongs, so `fmt` can keep it next to what it was written about.

Comments are not part of the AST, and the formatter moves things: options come out in a canonical order,
`meta`/`inputs`/`always` blocks are merged, `inputs` move above the steps. Placing comments by line
number therefore drops them into whatever block happens to come next. Instead, while parsing for the
formatter, the parser records the token span of every *item* — the workflow, each `meta`/`inputs`/
top-level `always` block, input, step, parallel call and option — and each comment is attached to one
item (rule in docs/language-decisions.md, "Comments"):

1. a comment after code on the same line *trails* the innermost item holding that code; it is written at
   the end of the item's first line when it was on the item's first line (or on a line between its first
   and last that does not end with a closing bracket: `workflow w` ⏎ `{  // …`), else at the end of its
   last; when several land on one line, only one stays there and the others go on lines of their own
   next to it (inside the item when it spans lines, above it when it is one line), since two comments on
   one line would read back as one;
2. a comment on its own line *leads* the outermost item that starts right after it;
3. otherwise (before a closing `}` or `]`, or inside an item) it belongs to the innermost item around it:
   it leads that item when it is an entry of a list or map value, and ends that item's block or value
   (before its `}`/`]`) otherwise — before the option itself when its value is written on one line;
4. comments outside the workflow (after its closing `}`) stay after it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from runkon_flow.dsl.lexer import RBRACE, RBRACKET, WHITESPACE, LineIndex, RawToken, comments

__all__ = ["Anchor", "AttachedComments", "EntrySpan", "LayoutRecorder", "Note", "OptionSpan", "Trailing"]

# An item's identity: ("wf",), ("meta",), ("always",) for the (merged) top-level blocks; ("inputs", n) for
# the n-th `inputs` block; ("separator", n) for an empty `always {}` before the n-th step (it may be what
# keeps a `do` and a `while` apart); ("node", id(obj)) for a step, an input declaration or a parallel
# call; ("opt", owner, key) for an option; ("entry", option, index or key) for an item of its list or
# map value.
Anchor = tuple[object, ...]
EntrySpan = tuple[int | str, int, int]  # list index or map key, first token, last token
OptionSpan = tuple[str, int, int, tuple[EntrySpan, ...]]  # key, first token, last token, value's entries


class Note(NamedTuple):
    """One comment: `offset` orders comments that end up in the same place."""

    offset: int
    text: str


class Trailing(NamedTuple):
    offset: int
    text: str
    on_first_line: bool


@dataclass
class AttachedComments:
    """Comments keyed by the item they belong to (see the module docstring)."""

    leading: dict[Anchor, list[Note]] = field(default_factory=lambda: defaultdict(list))
    trailing: dict[Anchor, list[Trailing]] = field(default_factory=lambda: defaultdict(list))
    dangling: dict[Anchor, list[Note]] = field(default_factory=lambda: defaultdict(list))
    # owner block → option keys that carry comments (an option the formatter drops, such as an unknown
    # meta key or the ignored options of `if`, leaves its comments at the end of the owner's block)
    option_keys: dict[Anchor, set[str]] = field(default_factory=lambda: defaultdict(set))
    # option → the entries of its list or map value that carry comments (list index or map key)
    entry_keys: dict[Anchor, set[int | str]] = field(default_factory=lambda: defaultdict(set))
    after: list[Note] = field(default_factory=list)
    total: int = 0
    # (line, column) of code after the workflow's closing `}`: the language ignores it (a warning), and
    # the formatter refuses the file rather than delete it (it may be a second workflow)
    ignored_code: tuple[int, int] | None = None


class _Item(NamedTuple):
    first: int
    last: int
    anchor: Anchor


class LayoutRecorder:
    """Collects item spans (token indexes) during one parse; `attach` then places the comments."""

    def __init__(self) -> None:
        self.items: list[_Item] = []

    def add(self, anchor: Anchor, first: int, last: int, options: list[OptionSpan] | None = None) -> None:
        self.items.append(_Item(first, last, anchor))
        for key, key_first, key_last, entries in options or ():
            option = ("opt", anchor, key)
            self.items.append(_Item(key_first, key_last, option))
            for entry, entry_first, entry_last in entries:
                self.items.append(_Item(entry_first, entry_last, ("entry", option, entry)))

    def attach(self, text: str, tokens: list[RawToken]) -> AttachedComments:
        found = comments(text)
        result = AttachedComments(total=len(found))
        lines = LineIndex(text)
        end = max((item.last for item in self.items if item.anchor == ("wf",)), default=len(tokens) - 2)
        if end + 2 < len(tokens):  # the last token is EOF
            result.ignored_code = lines.position(tokens[end + 1][2])
        if not found:
            return result
        offsets = [tok[2] for tok in tokens]
        items = self.items
        placed: list[tuple[int, int, bool, int]] = []  # offset, previous token, own line, line
        wanted: set[int] = set()
        for comment in found:
            offset = lines.offset(comment.line, comment.column)
            line_start = text.rfind("\n", 0, offset) + 1
            own_line = not text[line_start:offset].strip(WHITESPACE)
            before = bisect_left(offsets, offset) - 1
            placed.append((offset, before, own_line, comment.line))
            wanted.update((before, before + 1))
        parent, innermost = _nesting(items, wanted)

        def starting_at(token: int) -> int:
            k = innermost.get(token, -1)
            if k < 0 or items[k].first != token:
                return -1
            while parent[k] >= 0 and items[parent[k]].first == token:
                k = parent[k]
            return k

        for (offset, before, own_line, line), comment in zip(placed, found, strict=True):
            note = Note(offset, comment.text)
            if not own_line and before >= 0:
                k = innermost.get(before, -1)
                if k >= 0:
                    first_line = lines.position(offsets[items[k].first])[0]
                    last_line = lines.position(offsets[items[k].last])[0]
                    # in between (`workflow w` ⏎ `{  // …`): with the item's head, unless after a `}`/`]`
                    closing = tokens[before][0] is RBRACE or tokens[before][0] is RBRACKET
                    on_first = line == first_line or (line != last_line and not closing)
                    result.trailing[items[k].anchor].append(Trailing(offset, note.text, on_first))
                    continue
                result.after.append(note)
                continue
            k = starting_at(before + 1)
            if k >= 0:
                result.leading[items[k].anchor].append(note)
                continue
            k = innermost.get(before + 1, -1)
            while k >= 0 and items[k].first > before:
                k = parent[k]
            if k < 0:
                result.after.append(note)
            elif items[k].anchor[0] == "entry":
                result.leading[items[k].anchor].append(note)
            else:
                result.dangling[items[k].anchor].append(note)
        for anchor in (*result.leading, *result.trailing, *result.dangling):
            if anchor[0] == "entry":
                result.entry_keys[anchor[1]].add(anchor[2])  # type: ignore[index]
                anchor = anchor[1]  # type: ignore[assignment]
            if anchor[0] == "opt":
                result.option_keys[anchor[1]].add(anchor[2])  # type: ignore[arg-type]
        return result


def _nesting(items: list[_Item], wanted: set[int]) -> tuple[list[int], dict[int, int]]:
    """Each item's parent (-1 at the top) and, for each wanted token, the innermost item holding it.

    Item spans nest (an option inside its step, a step inside its block), so one sweep in source order
    with a stack of open items answers both."""
    order = sorted(range(len(items)), key=lambda k: (items[k].first, -items[k].last))
    parent = [-1] * len(items)
    innermost: dict[int, int] = {}
    stack: list[int] = []
    queries = sorted(wanted)
    q = 0
    for k in order:
        first = items[k].first
        while q < len(queries) and queries[q] < first:
            innermost[queries[q]] = _top(stack, items, queries[q])
            q += 1
        while stack and items[stack[-1]].last < first:
            stack.pop()
        parent[k] = stack[-1] if stack else -1
        stack.append(k)
    for token in queries[q:]:
        innermost[token] = _top(stack, items, token)
    return parent, innermost


def _top(stack: list[int], items: list[_Item], token: int) -> int:
    """The innermost open item that still holds `token` (items that ended before it are closed)."""
    while stack and items[stack[-1]].last < token:
        stack.pop()
    return stack[-1] if stack else -1
