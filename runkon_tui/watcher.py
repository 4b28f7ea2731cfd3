"""Hot reload: watch the workflow directories with watchfiles and report `.wf` changes.

Runs on its own thread (a Textual thread worker); `stop()` sets the stop event watchfiles checks
every step, so the thread ends within ~50 ms when the dashboard exits. Only `.wf` files count;
a short debounce folds an editor's write-rename-chmod burst into one reload.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

DEBOUNCE_MS = 150


class WorkflowFileFilter(DefaultFilter):
    """DefaultFilter (no editor swap files, no VCS dirs) restricted to `*.wf`."""

    def __call__(self, change: Change, path: str) -> bool:
        return path.endswith(".wf") and super().__call__(change, path)


class WorkflowWatcher:
    def __init__(
        self, dirs: Sequence[Path], on_change: Callable[[set[Path]], None], debounce_ms: int = DEBOUNCE_MS
    ) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self._stop = threading.Event()

    @property
    def watchable(self) -> list[Path]:
        return [d for d in self.dirs if d.is_dir()]

    def run(self) -> None:
        """Block, calling `on_change(paths)` after each debounced burst, until `stop()`."""
        dirs = self.watchable
        if not dirs:
            return
        for changes in watch(
            *dirs,
            watch_filter=WorkflowFileFilter(),
            debounce=self.debounce_ms,
            step=50,
            stop_event=self._stop,
            rust_timeout=500,
            raise_interrupt=False,
            recursive=False,
        ):
            if self._stop.is_set():
                break
            self.on_change({Path(path) for _, path in changes})

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()
