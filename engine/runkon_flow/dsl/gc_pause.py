"""Pause Python's cyclic garbage collector around a parse or a validation.

Both allocate one object per token, node or check, none of which can form a cycle, while a big
workflow's AST is alive: every collection the allocations trigger rescans the young part of that
AST, so with the collector running a 10 MB file took far more than ten times a 1 MB one. Reference
counting still frees everything; only the cycle search waits until the work is done. The collector
is process-wide: if it was already off (the caller's choice, or another thread's pause), it stays so.

A parse also hands over what it built as old objects (`promote`): the AST lives as long as the
workflow is loaded, and letting the young collections that follow traverse all of it once per
generation cost a 10 MB file ~0.4 s each time — more the bigger the heap, as it stops fitting in the
CPU caches. `gc.freeze()` then `gc.unfreeze()` moves every tracked object into the oldest
generation in constant time; garbage cycles young at that moment wait for the next full collection
instead of the next young one. Skipped when the application froze objects itself (the dashboard
does, after start-up): unfreezing would undo that.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cyclic_gc_paused"]


@contextmanager
def cyclic_gc_paused(*, promote: bool = False) -> Iterator[None]:
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            if promote and gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
