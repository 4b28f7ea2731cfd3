"""Finding and loading `.wf` files (dsl.md §11).

Three entry points:

* `validate_workflow_name` — the name rule used wherever a workflow is looked up by name.
* `load_workflow_by_name` / `load_workflow_defs` — the reference host's `.conductor/workflows`
  layout (worktree first, then repo), kept for compatibility.
* `load_workflow_dir` — what runkon-tui actually uses: scan plain directories of `.wf` files,
  keep going past broken files, and report every broken file with its position so the dashboard
  and the CLI can list them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.parser import parse_file, parse_workflow
from runkon_flow.errors import FlowError, Problem, WfError

__all__ = [
    "CONDUCTOR_WORKFLOWS",
    "FileError",
    "LoadResult",
    "WorkflowDirError",
    "WorkflowLoadError",
    "WorkflowNameError",
    "list_workflow_files",
    "load_workflow_by_name",
    "load_workflow_closure",
    "load_workflow_defs",
    "load_workflow_dir",
    "load_workflow_file",
    "validate_workflow_name",
]

CONDUCTOR_WORKFLOWS = Path(".conductor") / "workflows"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class WorkflowNameError(FlowError, ValueError):
    """A workflow name that can never name a file (§11.1). `str()` is the spec's message."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class WorkflowLoadError(FlowError):
    """A workflow that could not be found or read by name (§11.2). `str()` is the spec's message."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class WorkflowDirError(FlowError):
    """A workflow directory that does not exist or cannot be listed."""

    def __init__(self, directory: str, reason: str) -> None:
        self.directory = directory
        self.reason = reason
        self.message = f"Cannot read workflow directory {directory}: {reason}"
        super().__init__(self.message)


def validate_workflow_name(name: str) -> str:
    """Return `name` if it may name a workflow file: ASCII letters, digits, `-` and `_` only."""
    if not name:
        raise WorkflowNameError("Workflow name must not be empty")
    if not set(name) <= _NAME_CHARS:
        raise WorkflowNameError(
            f"Invalid workflow name '{name}': only alphanumeric characters, hyphens, "
            "and underscores are allowed"
        )
    return name


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise WorkflowLoadError(f"Failed to read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise WorkflowLoadError(f"Failed to read {path}: not valid UTF-8 ({exc.reason})") from exc


def load_workflow_by_name(
    worktree_dir: str | os.PathLike[str] | None,
    repo_dir: str | os.PathLike[str],
    name: str,
) -> WorkflowDef:
    """`.conductor/workflows/<name>.wf` from the worktree, else the repo (§11.2).

    Raises `WorkflowNameError`, `WorkflowLoadError` (not found / unreadable) or the parser's
    `WfError`. The declared name inside the file is not compared with `name`.
    """
    validate_workflow_name(name)
    file_name = f"{name}.wf"
    candidates = []
    if worktree_dir:
        candidates.append(Path(worktree_dir) / CONDUCTOR_WORKFLOWS / file_name)
    candidates.append(Path(repo_dir) / CONDUCTOR_WORKFLOWS / file_name)
    for path in candidates:
        if path.exists():
            return parse_workflow(_read_text(path), source_path=str(path))
    raise WorkflowLoadError(f"Workflow '{name}' not found in .conductor/workflows/")


# --------------------------------------------------------------------------- directory scanning


@dataclass(frozen=True)
class FileError:
    """One `.wf` file that could not be loaded: where, and why."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None

    def render(self) -> str:
        """`file:line:col: message` (the parts that are known)."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"

    def __str__(self) -> str:
        return self.render()

    @classmethod
    def of(cls, problem: Problem) -> FileError:
        """A finding (a host's check, an agent file's error) as a file's error: where, and what."""
        where = problem.location
        return cls(where.file or "", problem.text(), where.line, where.column)


@dataclass
class LoadResult:
    """Every workflow found in some directories, and every file that failed.

    * `workflows` — declared name -> definition, sorted by name; a later file wins a name clash.
    * `errors` — one `FileError` per broken file, sorted by file name (then path).
    * `files` — every `.wf` path scanned -> the declared name it loaded as, or its `FileError`.
    * `warnings` — name clashes and file/declared-name mismatches (informative, never fatal).
    """

    workflows: dict[str, WorkflowDef] = field(default_factory=dict)
    errors: list[FileError] = field(default_factory=list)
    files: dict[str, str | FileError] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def path_of(self, name: str) -> str | None:
        """The file that defines workflow `name` (the one that won a clash)."""
        wf = self.workflows.get(name)
        return wf.source_path if wf is not None else None

    @property
    def ok(self) -> bool:
        return not self.errors


def list_workflow_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The `.wf` files directly inside `directory`, by file name.

    Only regular files whose extension is exactly `wf` count; dotfiles are skipped (editor lock
    and backup files such as `.#review.wf` are not workflows). Raises `WorkflowDirError`.
    """
    root = Path(directory)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        raise WorkflowDirError(str(directory), "no such directory") from None
    except NotADirectoryError:
        raise WorkflowDirError(str(directory), "not a directory") from None
    except OSError as exc:
        raise WorkflowDirError(str(directory), exc.strerror or str(exc)) from exc
    files = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".wf") or entry.name == ".wf":
            continue
        try:
            if not entry.is_file():
                continue
        except OSError:
            pass  # reported as unreadable when we try to load it
        files.append(root / entry.name)
    return files


def load_workflow_file(path: str | os.PathLike[str]) -> WorkflowDef | FileError:
    """Parse one file; any failure becomes a `FileError` with the best position known."""
    try:
        return parse_file(path)
    except WfError as exc:
        return FileError(str(path), exc.detail, exc.line, exc.column)
    except OSError as exc:
        return FileError(str(path), f"Failed to read {path}: {exc.strerror or exc}")
    except Exception as exc:  # a parser bug must not hide the other files from the user
        return FileError(str(path), f"internal error while parsing: {type(exc).__name__}: {exc}")


def load_workflow_dir(dirs: Sequence[str | os.PathLike[str]], *, strict: bool = True) -> LoadResult:
    """Load every `.wf` file of `dirs` (in order; later directories override earlier ones).

    A broken file never stops the scan: it is recorded in `errors` and `files`. Two files that
    declare the same name: the later one (by directory order, then file name) wins, with a
    warning. A missing or unreadable directory raises `WorkflowDirError` when `strict`, else it is
    recorded as a `FileError` for that directory (what a long-running watcher wants).
    """
    result = LoadResult()
    found: dict[str, WorkflowDef] = {}
    errors: list[FileError] = []
    for directory in dirs:
        try:
            paths = list_workflow_files(directory)
        except WorkflowDirError as exc:
            if strict:
                raise
            errors.append(FileError(str(directory), exc.message))
            continue
        for path in paths:
            loaded = load_workflow_file(path)
            if isinstance(loaded, FileError):
                errors.append(loaded)
                result.files[str(path)] = loaded
                continue
            result.files[str(path)] = loaded.name
            if path.stem != loaded.name:
                result.warnings.append(
                    f"{path}: declares workflow '{loaded.name}' but is named '{path.name}'; "
                    f"name it '{loaded.name}.wf' so `call workflow {loaded.name}` finds it "
                    "without reading every file"
                )
            previous = found.get(loaded.name)
            if previous is not None:
                result.warnings.append(
                    f"Workflow '{loaded.name}' is declared in both {previous.source_path} and {path}; "
                    f"using {path}"
                )
            found[loaded.name] = loaded
    result.workflows = {name: found[name] for name in sorted(found)}
    result.errors = sorted(errors, key=lambda e: (Path(e.file).name, e.file))
    return result


def load_workflow_closure(
    dirs: Sequence[str | os.PathLike[str]], roots: Sequence[str | os.PathLike[str]]
) -> LoadResult | None:
    """Load only `roots` (`.wf` paths or workflow names) and the workflows they call, transitively.

    What running or validating one workflow needs, at a cost proportional to it and its callees, not
    to everything that happens to lie in the same directories (a 50 MB file beside a 5 KB workflow
    made every run of the small one parse the big one). A name is looked up as `<name>.wf`, later
    directories first, like `load_workflow_dir`'s "later wins". Returns None when that is not
    enough to be sure — a name with no such file, or a file declaring another name — so the caller
    falls back to `load_workflow_dir` and reports exactly what a full scan would.
    """
    folders = [Path(d) for d in dirs]

    def file_for(name: str) -> Path | None:
        for folder in reversed(folders):
            candidate = folder / f"{name}.wf"
            if candidate.is_file():
                return candidate
        return None

    queue: list[tuple[str | None, Path]] = []
    for root in roots:
        text = os.fspath(root)
        if text.endswith(".wf") or os.sep in text or "/" in text:
            queue.append((None, Path(text)))
        else:
            found = file_for(text)
            if found is None:
                return None
            queue.append((text, found))
    result = LoadResult()
    loaded_names: dict[str, WorkflowDef] = {}
    while queue:
        expected, path = queue.pop()
        key = str(path)
        if key in result.files:
            continue
        loaded = load_workflow_file(path)
        if isinstance(loaded, FileError):
            result.files[key] = loaded
            result.errors.append(loaded)
            continue
        if expected is not None and loaded.name != expected:
            return None
        result.files[key] = loaded.name
        loaded_names[loaded.name] = loaded
        for name in loaded.workflow_refs():
            if name in loaded_names:
                continue
            found = file_for(name)
            if found is None:
                return None
            queue.append((name, found))
    result.workflows = {name: loaded_names[name] for name in sorted(loaded_names)}
    result.errors.sort(key=lambda e: (Path(e.file).name, e.file))
    return result


def load_workflow_defs(
    worktree_dir: str | os.PathLike[str] | None,
    repo_dir: str | os.PathLike[str] | None,
) -> tuple[list[WorkflowDef], list[FileError]]:
    """The reference host's "load everything" (§11.4): repo first, then the worktree on top.

    Returns definitions sorted by name and per-file failures (the spec's warnings) sorted by
    file name. Failures are keyed by file stem: a worktree failure replaces the repo's one for the
    same stem, but a repo failure stays even when the worktree copy parses (as in the reference).
    """
    dirs: list[Path] = []
    repo_wf = Path(repo_dir) / CONDUCTOR_WORKFLOWS if repo_dir else None
    if repo_wf is not None and repo_wf.is_dir():
        dirs.append(repo_wf)
    if worktree_dir and (not repo_dir or Path(worktree_dir) != Path(repo_dir)):
        tree_wf = Path(worktree_dir) / CONDUCTOR_WORKFLOWS
        if tree_wf.is_dir():
            dirs.append(tree_wf)
    found: dict[str, WorkflowDef] = {}
    failures: dict[str, FileError] = {}
    for directory in dirs:
        for path in list_workflow_files(directory):
            loaded = load_workflow_file(path)
            if isinstance(loaded, FileError):
                failures[path.stem] = FileError(path.name, loaded.message, loaded.line, loaded.column)
            else:
                found[loaded.name] = loaded
    definitions = [found[name] for name in sorted(found)]
    return definitions, sorted(failures.values(), key=lambda e: e.file)
