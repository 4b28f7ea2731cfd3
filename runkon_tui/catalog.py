"""The workflow list's model: every `.wf` file of the watched directories, good or broken.

A file that fails to parse stays listed with its `file:line:col` error, and — when it parsed
before — keeps its last good definition, so a half-typed edit never blanks the tree. Loading is a
plain function of the directories (run it on any thread); `Catalog.merge` folds a fresh load into
the previous state and is cheap enough for the UI thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.loading import FileError, LoadResult, load_workflow_dir


@dataclass
class WorkflowEntry:
    """One `.wf` file as the list shows it."""

    path: str
    name: str
    definition: WorkflowDef | None = None
    error: FileError | None = None
    #: What would stop a run of a file that parses (a missing agent or sub-workflow …): the host's
    #: checks, run on a worker after each load (`Catalog.set_problems`); empty until then.
    problems: tuple[FileError, ...] = ()

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def trouble(self) -> FileError | None:
        """What the list flags: the parse error, else the first problem the checks found."""
        return self.error if self.error is not None else next(iter(self.problems), None)

    @property
    def title(self) -> str:
        if self.definition is not None and self.definition.title:
            return self.definition.title
        return self.name

    def location(self) -> str:
        """`broken.wf:3:14` — the file name with the position of its trouble (empty when fine)."""
        trouble = self.trouble
        if trouble is None:
            return ""
        where = Path(self.path).name
        if trouble.line is not None:
            where += f":{trouble.line}"
            if trouble.column is not None:
                where += f":{trouble.column}"
        return where


@dataclass
class CatalogDiff:
    """What a reload changed, so the UI can say so and refresh only when needed."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.broken or self.fixed)


def load(dirs: Sequence[Path]) -> LoadResult:
    """Parse every `.wf` of `dirs`; a missing directory is reported, never raised."""
    return load_workflow_dir([str(d) for d in dirs], strict=False)


class Catalog:
    """Entries keyed by file path, in list order (by workflow name, broken files by file name)."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.entries: dict[str, WorkflowEntry] = {}
        self.warnings: list[str] = []
        #: Declared name → the file a run of that name uses (the loader's pick when files clash).
        self.used: dict[str, str] = {}
        self._declared: Counter[str] = Counter()  # name → files that parse and declare it

    def reload(self) -> CatalogDiff:
        """Synchronous load + merge (used at start-up, before the first frame)."""
        return self.merge(load(self.dirs))

    def merge(self, result: LoadResult) -> CatalogDiff:
        diff = CatalogDiff()
        entries: dict[str, WorkflowEntry] = {}
        for path, outcome in result.files.items():
            old = self.entries.get(path)
            if isinstance(outcome, FileError):
                name = old.name if old is not None else Path(path).stem
                last_good = old.definition if old is not None else None
                entries[path] = WorkflowEntry(path, name, last_good, outcome)
                if old is None:
                    diff.added.append(path)
                elif old.error != outcome:
                    diff.broken.append(path)
                continue
            definition = result.workflows.get(outcome)
            if definition is None or definition.source_path not in (path, ""):
                # Another file won this name; keep the loser visible with its own parse result.
                definition = next(
                    (wf for wf in result.workflows.values() if wf.source_path == path),
                    old.definition if old is not None else None,
                )
            # The last check's findings hold until the next check (run after every load) says.
            problems = old.problems if old is not None and old.name == outcome else ()
            entries[path] = WorkflowEntry(path, outcome, definition, problems=problems)
            if old is None:
                diff.added.append(path)
            elif old.error is not None:
                diff.fixed.append(path)
            elif old.definition != definition:
                diff.changed.append(path)
        # Directory-level errors (a watched folder that vanished) are listed under the folder.
        for err in result.errors:
            if err.file not in result.files:
                entries[err.file] = WorkflowEntry(err.file, Path(err.file).name, None, err)
        diff.removed = [p for p in self.entries if p not in entries]
        self.entries = dict(sorted(entries.items(), key=lambda kv: _sort_key(kv[1])))
        self.warnings = list(result.warnings)
        self.used = {name: wf.source_path for name, wf in result.workflows.items() if wf.source_path}
        self._declared = Counter(e.name for e in self.entries.values() if not e.broken)
        return diff

    def set_problems(self, found: dict[str, list[FileError]]) -> bool:
        """The host's checks of every workflow (name → what would stop its run); True when that
        changed what the list shows. A file that does not parse keeps only its parse error."""
        changed = False
        for entry in self.entries.values():
            problems = () if entry.broken else tuple(found.get(entry.name, ()))
            if problems != entry.problems:
                entry.problems = problems
                changed = True
        return changed

    # ---- lookups

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def twins(self, entry: WorkflowEntry) -> list[WorkflowEntry]:
        """The other files that parse and declare `entry`'s workflow name (a clash: one name,
        several files; a run of the name uses one of them, `used`)."""
        if entry.broken or self._declared[entry.name] < 2:  # the list asks for every row, often
            return []
        return [e for e in self.entries.values() if e.name == entry.name and e is not entry and not e.broken]

    def label(self, entry: WorkflowEntry) -> str:
        """The list's text for `entry`: its workflow name, led by its file name when another
        file declares the same name (two identical rows told nothing apart)."""
        if self.twins(entry):
            return f"{Path(entry.path).name} · {entry.name}"
        return entry.name

    def clash(self, entry: WorkflowEntry) -> str:
        """What to say about a name `entry` shares with other files (empty when it does not)."""
        twins = self.twins(entry)
        if not twins:
            return ""
        others = ", ".join(Path(e.path).name for e in twins)
        used = self.used.get(entry.name)
        runs = f"; a run of {entry.name} uses {Path(used).name}" if used else ""
        return f"{entry.name} is also declared in {others}{runs}"

    def not_run(self, entry: WorkflowEntry) -> str:
        """Why `entry` cannot run, when it parses but a run of its name uses another file (a
        clash the loader settled for that file); empty otherwise."""
        used = self.used.get(entry.name)
        if entry.broken or used is None or used == entry.path:
            return ""
        return f"{Path(entry.path).name} cannot run: a run of {entry.name} uses {Path(used).name}"

    def by_name(self, name: str) -> WorkflowEntry | None:
        return next((e for e in self.entries.values() if e.name == name), None)

    def definition(self, name: str) -> WorkflowDef | None:
        """The (last good) definition declared as `name`, for child-workflow expansion."""
        entry = self.by_name(name)
        return entry.definition if entry is not None else None

    def find(self, name_or_path: str) -> WorkflowEntry | None:
        entry = self.entries.get(name_or_path)
        if entry is not None:
            return entry
        resolved = str(Path(name_or_path))
        for path, candidate in self.entries.items():
            if Path(path).resolve() == Path(resolved).resolve():
                return candidate
        return self.by_name(name_or_path)


def _sort_key(entry: WorkflowEntry) -> tuple[str, str]:
    return (entry.name.lower(), entry.path)
