"""How a process that runs workflows sets up Python's garbage collector.

Both hosts that own their process call `settle_for_runs` once start-up is done: `runkon-flow`
before it drives a run (cli/drive.py), `runkon-tui` right after its first frame. A library that
embeds the engine keeps its own settings: this is a process-wide choice, not the engine's.

Why (docs/engine.md, "Session 8"): a 10,000-item fan-out spent about a quarter of its time in
collections. Full collections re-scanned everything start-up built — the modules, pydantic's
schemas, Textual's widgets — about nine times a run: frozen, those objects are left out. Young
collections ran every 700 net allocations of container objects, and the engine's threads make
millions: at 7,000 they run a tenth as often, for at most a few thousand more objects waiting to
be freed (10,000-item runs, 3 interleaved pairs each: the dashboard 2.66-3.11 s against
3.03-3.62 s, the engine with a sink that drops events 2.42-2.50 s against 2.72-3.36 s).
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_for_runs"]

#: Net allocations of container objects between two young collections (Python's default: 700).
YOUNG_THRESHOLD = 7_000


def settle_for_runs() -> None:
    """Collect once, freeze what is left (it lives as long as the process) and collect the young
    generation less often. The collector's on/off state is left as it is."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
