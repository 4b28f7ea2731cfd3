"""The workspace's open problems: what is wrong with the watched files, whatever runs."""

from __future__ import annotations

from runkon_tui.run_view import LogLine

#: What a problem is about: ("parse", a file's path), ("warning", what the loader warned of:
#: one workflow name declared by several files, a file named unlike its workflow …) or
#: ("startup", what start-up found: bad settings or theme, an unusable store, no engine), which
#: holds for the session.
ProblemKey = tuple[str, str]


class OpenProblems:
    """Problems of the workspace still open, one line each: a file that does not parse, a
    workflow name several files declare. The errors log lists them above the run's own errors,
    so a run start (which clears the run's) leaves them; a reload that mends one withdraws it."""

    def __init__(self) -> None:
        self._lines: dict[ProblemKey, LogLine] = {}
        self.lines: list[LogLine] = []
        self.version = 0  # grows with every change, so the errors log can tell it must redraw

    def open(self, key: ProblemKey, line: LogLine) -> bool:
        """Record `line` for `key`; False when that very problem was open already."""
        old = self._lines.get(key)
        if old is not None and (old.text, old.level) == (line.text, line.level):
            return False
        self._lines[key] = line
        self._changed()
        return True

    def close(self, key: ProblemKey) -> bool:
        """Withdraw `key`'s problem; False when none was open."""
        if self._lines.pop(key, None) is None:
            return False
        self._changed()
        return True

    def keys(self, kind: str) -> list[ProblemKey]:
        return [key for key in self._lines if key[0] == kind]

    def __len__(self) -> int:
        return len(self._lines)

    def _changed(self) -> None:
        self.lines = list(self._lines.values())
        self.version += 1
