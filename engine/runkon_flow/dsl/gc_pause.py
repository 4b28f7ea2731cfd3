"""Pause Python's cyclic garbage collector around a parse or a validation.

Both allocate one object per token, node or check, none of which can form a cycle, while a big
workflow's AST is alive: every full collection the allocations trigger rescans that whole AST, so
with the collector running a 10 MB file took far more than ten times a 1 MB one. Reference counting
still frees everything; only the cycle search waits until the work is done. The collector is
process-wide: if it was already off (the caller's choice, or another thread's pause), it stays so.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cyclic_gc_paused"]


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
