"""A table whose last column is free text (a run's error, a gate's prompt) cuts that text to the
room the other columns leave, with `…`, so the table never scrolls sideways: at 80 columns the
columns that say which row it is stay in view, and the whole text is one `enter` away."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

MIN_LAST_WIDTH = 12  # narrower than this, the text scrolls sideways rather than say nothing


def fit_last_column(table: DataTable[object], headers: Sequence[str], rows: Sequence[Sequence[Text]]) -> None:
    """Truncate each row's last cell in place to what `table`'s width leaves for it (with the
    vertical scrollbar counted, as it appears once the rows outgrow the screen)."""
    if not rows or not headers:
        return
    padding = 2 * table.cell_padding
    used = sum(
        max(cell_len(header), *(row[i].cell_len for row in rows)) + padding
        for i, header in enumerate(headers[:-1])
    )
    room = table.size.width - used - padding - table.styles.scrollbar_size_vertical
    for row in rows:
        row[-1].truncate(max(MIN_LAST_WIDTH, room), overflow="ellipsis")
