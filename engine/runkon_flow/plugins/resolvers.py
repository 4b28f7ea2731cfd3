"""Workflow resolvers (engine.md §3.6): how a `call workflow`/`foreach` name becomes a definition.

Both resolvers are also plain loaders (`resolver(name)` works, as does `as_loader()`), so they can
be handed straight to semantic validation and cycle detection.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.parser import parse_file
from runkon_flow.errors import WfError, WorkflowError, WorkflowNotFound
from runkon_flow.humanize import did_you_mean

__all__ = ["DirectoryWorkflowResolver", "InMemoryWorkflowResolver"]


def _acceptable_name(name: str) -> bool:
    """engine.md §3.6 / dsl.md §11.3: alphanumerics (Unicode-aware), `-` and `_`; never empty."""
    return bool(name) and all(ch.isalnum() or ch in "-_" for ch in name)


class DirectoryWorkflowResolver:
    """`<root>/<name>.wf`, trying each root in the order given (the first that has the file wins).

    The file is re-read on every call, so edits are picked up without restarting anything.
    Unknown or unacceptable names raise `WorkflowNotFound`; a file that fails to parse raises
    `WorkflowError` carrying the parser's message (the original error is its `__cause__`).
    """

    def __init__(self, *roots: str | os.PathLike[str]) -> None:
        if not roots:
            raise ValueError("DirectoryWorkflowResolver needs at least one directory")
        self.roots: tuple[Path, ...] = tuple(Path(r) for r in roots)

    @classmethod
    def layered(cls, dirs: Sequence[str | os.PathLike[str]]) -> DirectoryWorkflowResolver:
        """A resolver where later directories override earlier ones, like `load_workflow_dir`."""
        return cls(*reversed(list(dirs)))

    def path_for(self, name: str) -> Path | None:
        """The file `resolve(name)` would read, or None."""
        if not _acceptable_name(name):
            return None
        for root in self.roots:
            path = root / f"{name}.wf"
            if path.is_file():
                return path
        return None

    def names(self) -> list[str]:
        """Every name `resolve` could find (the `.wf` file stems of the roots), sorted."""
        found: set[str] = set()
        for root in self.roots:
            with contextlib.suppress(OSError):
                found.update(p.stem for p in root.glob("*.wf") if _acceptable_name(p.stem))
        return sorted(found)

    def resolve(self, name: str) -> WorkflowDef:
        path = self.path_for(name)
        if path is None:
            raise WorkflowNotFound(name, did_you_mean(name, self.names()))
        try:
            return parse_file(path)
        except WfError as exc:
            raise WorkflowError(str(exc)) from exc

    __call__ = resolve

    def as_loader(self) -> Callable[[str], WorkflowDef]:
        return self.resolve

    def __repr__(self) -> str:
        return f"DirectoryWorkflowResolver({', '.join(repr(str(r)) for r in self.roots)})"


class InMemoryWorkflowResolver:
    """Definitions held in memory, keyed by name (tests, unsaved editor buffers)."""

    def __init__(self, workflows: Mapping[str, WorkflowDef] | Iterable[WorkflowDef] = ()) -> None:
        if isinstance(workflows, Mapping):
            self.workflows: dict[str, WorkflowDef] = dict(workflows)
        else:
            self.workflows = {wf.name: wf for wf in workflows}

    def add(self, wf: WorkflowDef, name: str | None = None) -> None:
        self.workflows[name or wf.name] = wf

    def resolve(self, name: str) -> WorkflowDef:
        try:
            return self.workflows[name]
        except KeyError:
            raise WorkflowNotFound(name) from None

    __call__ = resolve

    def as_loader(self) -> Callable[[str], WorkflowDef]:
        return self.resolve

    def __repr__(self) -> str:
        return f"InMemoryWorkflowResolver({sorted(self.workflows)!r})"
