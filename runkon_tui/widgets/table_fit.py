"""Filling a DataTable that re-reads its rows (the runs screen, the gate inbox): columns sized
afresh, the cursor kept, and a last column of free text (a run's error, a gate's prompt) cut to
the room the other columns leave, with `…`, so the table never scrolls sideways: at 80 columns
the columns that say which row it is stay in view, and the whole text is one `enter` away."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

MIN_LAST_WIDTH = 12  # narrower than this, the text scrolls sideways rather than say nothing


#: How a last column's text is cut to a room: `fit(text, room)` (e.g. `humanize.fit_cause`, which
#: keeps an error's cause); without one it is cut at its end with "…".
Fit = Callable[[str, int], str]


def _fit_last_column(
    table: DataTable[object], headers: Sequence[str], rows: Sequence[Sequence[Text]], fit: Fit | None = None
) -> None:
    """Truncate each row's last cell in place to what `table`'s width leaves for it (with the
    vertical scrollbar counted, as it appears once the rows outgrow the screen); `fit`: how."""
    if not rows or not headers:
        return
    padding = 2 * table.cell_padding
    used = sum(
        max(cell_len(header), *(row[i].cell_len for row in rows)) + padding
        for i, header in enumerate(headers[:-1])
    )
    room = table.size.width - used - padding - table.styles.scrollbar_size_vertical
    for row in rows:
        cell, width = row[-1], max(MIN_LAST_WIDTH, room)
        if fit is not None and cell.cell_len > width:
            cell.plain = fit(cell.plain, width)
        cell.truncate(width, overflow="ellipsis")  # wide characters: `fit` counts characters


MIN_CUT_WIDTH = 8  # a name cut to fit keeps at least this many columns


def fit_columns(
    table: DataTable[object],
    headers: Sequence[str],
    rows: Sequence[Sequence[Text]],
    *,
    droppable: Sequence[str] = (),
    cuttable: Sequence[str] = (),
) -> tuple[list[str], list[list[Text]]]:
    """The columns of `rows` that fit `table`'s width, so the columns that matter most stay in
    view at 80 columns instead of being pushed off the right edge: while they do not fit (a free
    text last column counted at `MIN_LAST_WIDTH`), the columns of `droppable` go, in that order;
    when even then too wide, the cells of `cuttable` are cut with `…`, the widest first.
    Before the first layout (no width yet) everything is kept."""
    names, kept = list(headers), [list(row) for row in rows]
    width = table.size.width
    if not rows or width <= 0:
        return names, kept
    padding = 2 * table.cell_padding
    # The vertical scrollbar only once the rows outgrow the table: counted always, it cut a name
    # one column short on a screen that had room for it whole (the runs screen's `review-…`).
    header = table.header_height if table.show_header else 0
    outgrown = len(rows) + header > table.size.height
    room = width - (table.styles.scrollbar_size_vertical if outgrown else 0)

    def widths() -> list[int]:
        return [max(cell_len(h), *(row[i].cell_len for row in kept)) for i, h in enumerate(names)]

    def needed(ws: list[int]) -> int:
        last = min(ws[-1], MIN_LAST_WIDTH) if names[-1] not in cuttable else ws[-1]
        return sum(ws[:-1]) + last + padding * len(ws)

    for name in droppable:
        if needed(widths()) <= room:
            break
        if name in names and len(names) > 1:
            index = names.index(name)
            del names[index]
            for row in kept:
                del row[index]
    ws = widths()
    excess = needed(ws) - room
    cut = [names.index(n) for n in cuttable if n in names]
    while excess > 0:
        index = max(cut, key=lambda i: ws[i], default=None)
        if index is None or ws[index] <= max(MIN_CUT_WIDTH, cell_len(names[index])):
            break
        ws[index] -= 1
        excess -= 1
    for index in cut:
        for row in kept:
            row[index].truncate(ws[index], overflow="ellipsis")
    return names, kept


def refill(
    table: DataTable[object],
    headers: Sequence[str],
    rows: Sequence[Sequence[Text]],
    keys: Sequence[Hashable],
    *,
    fit_last: bool = True,
    fit: Fit | None = None,
) -> None:
    """Replace every row (`keys`: one per row), the cursor on the same row number. The columns
    start over each time: a DataTable column keeps the widest cell it ever held, so clearing only
    the rows left a once-long error's column as wide as before. `fit`: how the last column is
    cut (`fit_last`), by default at its end."""
    keep = table.cursor_row
    table.clear(columns=True)
    table.add_columns(*headers)
    if fit_last:
        _fit_last_column(table, headers, rows, fit)
    for key, row in zip(keys, rows, strict=True):
        table.add_row(*row, key=str(key))
    if keep is not None and rows:
        table.move_cursor(row=min(keep, len(rows) - 1))
