"""Reference item providers: what `foreach … over = <name>` iterates (engine.md §3.2, §9.4).

* `static`  — `scope = { items = "a,b,c" }`, or `scope = { file = "items.yaml" }` (or `.json`): a
  list of ids, or of objects `{id, ref, depends_on: [...], <other keys → item context>}`.
  Supports `ordered = true` through the declared `depends_on`.
* `files`   — `scope = { glob = "src/**/*.py"  root = "." }`: one item per file, id = its path
  relative to `root`.
* `lines`   — `scope = { file = "repos.txt" }`: one item per non-empty line not starting with `#`.
* `command` — `scope = { run = "git ls-files '*.md'"  timeout = "30" }`: one item per output line
  (a line that is a JSON object is read like a static object, so it may declare `depends_on`).

Relative paths are resolved against the provider's `base_dir` (the workflow directory). `filter`
is a map of key → value or glob pattern, matched against the item's context plus `id` and `ref`;
every key must match. Each provider also answers the validation hooks `validate_scope`,
`scope_warnings`, `requires_filter` and `validate_filter` (see dsl/validation.py).
"""

from __future__ import annotations

import fnmatch
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runkon_flow.errors import EngineError
from runkon_flow.humanize import did_you_mean
from runkon_flow.plugins._yaml import ConfigFileError, load_data, parse_yaml, scalar_text
from runkon_flow.plugins.protocols import (
    FanOutItem,
    ItemProvider,
    ProviderInfo,
    RunContext,
    overlong_id,
    oversized_ref,
)
from runkon_flow.process import run_process

__all__ = [
    "CommandProvider",
    "FilesProvider",
    "ItemProviderError",
    "LinesProvider",
    "StaticProvider",
    "default_providers",
    "find_cycle",
    "matches_filter",
]

#: The most output an item command may print (characters): all of it is needed (one item a line),
#: so more is refused rather than cut (what a step's output gets: its middle left out).
MAX_COMMAND_OUTPUT = 64_000_000


class ItemProviderError(EngineError):
    """A provider cannot produce its items; `str()` is the bare reason (the engine adds `foreach 'x': `).
    `scope_key`: the scope key whose value is wrong (`file` of a missing items file), when one is:
    validation places the error at that value."""

    def __init__(self, message: str, scope_key: str | None = None) -> None:
        self.message = message
        self.scope_key = scope_key
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class ScopeError(str):
    """`validate_scope`'s error text, with the scope key it is about (`ItemProviderError.scope_key`)."""

    scope_key: str | None = None

    @classmethod
    def of(cls, error: ItemProviderError) -> ScopeError:
        text = cls(error.message)
        text.scope_key = error.scope_key
        return text


def _about(key: str, error: ItemProviderError) -> ItemProviderError:
    """`error`, said about the scope key `key` (unless it names one already)."""
    if error.scope_key is None:
        error.scope_key = key
    return error


# --------------------------------------------------------------------------- shared pieces


def matches_filter(item: FanOutItem, filter: Mapping[str, str]) -> bool:
    """Every filter key must match the item's context value (or `id`/`ref`); values may be globs."""
    for key, pattern in filter.items():
        if key == "id":
            value: str | None = item.item_id
        elif key == "ref":
            value = item.item_ref
        else:
            value = item.context.get(key)
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    return True


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """A dependency cycle among (blocker, dependent) edges as `[a, b, …, a]`, or None."""
    graph: dict[str, list[str]] = {}
    for blocker, dependent in edges:
        graph.setdefault(blocker, []).append(dependent)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack: list[tuple[str, Iterable[str]]] = [(root, iter(graph.get(root, ())))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(graph.get(child, ()))))
    return None


def _context_value(value: Any) -> str:
    text = scalar_text(value)
    if text is not None:
        return text
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _describe(path: Path, base_dir: Path) -> str:
    """How messages name a scope's file: relative to the workflow's folder when it is in it (the
    same words whether that folder was given relative, to `validate`, or absolute, to a run and
    the dashboard), else its absolute path."""
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path.absolute())


class _BaseProvider:
    """Scope checking, filtering and per-step dependency memory shared by the providers."""

    provider_name = ""
    required_keys: tuple[str, ...] = ()
    known_keys: tuple[str, ...] = ()
    #: For providers with a fixed context, the filter keys that can ever match.
    filter_keys: tuple[str, ...] | None = None

    def __init__(self, base_dir: Path | str = ".") -> None:
        self.base_dir = Path(base_dir)
        self._deps: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._files = _FileCache()  # item files parsed once (see _FileCache)

    def name(self) -> str:
        return self.provider_name

    def supports_ordered(self) -> bool:
        return False

    def dependencies(self, step_id: str) -> list[tuple[str, str]]:
        """(blocker_item_id, dependent_item_id) for the items served to that foreach step."""
        with self._lock:
            return list(self._deps.get(step_id, []))

    def _remember(self, step_id: str, edges: list[tuple[str, str]]) -> None:
        with self._lock:
            self._deps[step_id] = edges
            self._deps.move_to_end(step_id)
            while len(self._deps) > 1000:
                self._deps.popitem(last=False)

    # ---- validation hooks (dsl/validation.py asks for these)

    def validate_scope(self, raw_scope: Mapping[str, str] | None) -> str | None:
        try:
            self.parse_scope(dict(raw_scope) if raw_scope is not None else None)
        except ItemProviderError as exc:
            return ScopeError.of(exc)
        return None

    def scope_warnings(self, raw_scope: Mapping[str, str] | None) -> list[str]:
        unknown = sorted(set(raw_scope or {}) - set(self.known_keys))
        return [f"unknown scope key '{key}' for over = {self.provider_name} (ignored)" for key in unknown]

    def requires_filter(self) -> bool:
        return False

    def validate_filter(self, filter: Mapping[str, str]) -> str | None:
        for key in filter:
            if not key:
                return "filter keys must not be empty"
            if self.filter_keys is not None and key not in self.filter_keys:
                return (
                    f"unknown filter key '{key}' for over = {self.provider_name} "
                    f"(available: {', '.join(self.filter_keys)})"
                )
        return None

    # ---- helpers

    def _require(self, raw: Mapping[str, str] | None, *keys: str) -> dict[str, str]:
        scope = dict(raw or {})
        missing = [k for k in keys if not scope.get(k, "").strip()]
        if missing:
            wanted = " ".join(f'{k} = "…"' for k in keys)
            raise ItemProviderError(
                f"over = {self.provider_name} needs scope {{ {wanted} }} (missing {missing[0]!r})"
            )
        return scope

    def _path(self, text: str) -> Path:
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else self.base_dir / path

    def _serve(
        self,
        info: ProviderInfo,
        items: list[FanOutItem],
        deps: Mapping[str, Sequence[str]],
        filter: Mapping[str, str],
    ) -> list[FanOutItem]:
        served = [item for item in items if matches_filter(item, filter)] if filter else list(items)
        ids = {item.item_id for item in served}
        # An edge to an item the filter removed can never be satisfied; it counts as met.
        edges = [
            (b, item_id) for item_id, blockers in deps.items() if item_id in ids for b in blockers if b in ids
        ]
        self._remember(info.step_id, edges)
        return served


# --------------------------------------------------------------------------- item documents


@dataclass(frozen=True)
class _Declared:
    """Items declared in a file (static, command JSON lines), with their dependencies."""

    items: list[FanOutItem] = field(default_factory=list)
    deps: dict[str, list[str]] = field(default_factory=dict)


def _declared_from_entries(
    entries: Sequence[Any], item_type: str, where: Any, *, check_unknown_deps: bool = True
) -> _Declared:
    """Turn a list of ids or `{id, ref, depends_on, …}` objects into items; `where(index, key)`
    gives a "file:line: " prefix for messages."""
    items: list[FanOutItem] = []
    deps: dict[str, list[str]] = {}
    seen: dict[str, int] = {}  # id -> index of its entry
    repeats: dict[str, list[int]] = {}  # a duplicated id -> the indexes of all its entries
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            raw_id = entry.get("id")
            item_id = scalar_text(raw_id)
            if item_id is None or not item_id.strip():
                others = [f"`{k}`" for k in entry if k != "id"][:5]
                has = (
                    f" (it has {', '.join(others)}; every item needs an `id: …`)"
                    if raw_id is None and others
                    else ""
                )
                raise ItemProviderError(f"{where(index, None)}item {index + 1} has no `id`{has}")
            ref = scalar_text(entry.get("ref")) or item_id
            raw_deps = entry.get("depends_on", [])
            if isinstance(raw_deps, str):
                raw_deps = [d.strip() for d in raw_deps.split(",") if d.strip()]
            if not isinstance(raw_deps, list) or any(scalar_text(d) is None for d in raw_deps):
                raise ItemProviderError(
                    f"{where(index, 'depends_on')}item '{item_id}': `depends_on` must be a list of ids"
                )
            context = {
                str(k): _context_value(v) for k, v in entry.items() if k not in ("id", "ref", "depends_on")
            }
            blockers = [scalar_text(d) or "" for d in raw_deps]
        else:
            item_id = scalar_text(entry)
            if item_id is None or not item_id.strip():
                raise ItemProviderError(
                    f"{where(index, None)}item {index + 1} must be an id or an object with `id`"
                )
            ref, context, blockers = item_id, {}, []
        if too_long := overlong_id(item_id):
            raise ItemProviderError(f"{where(index, 'id')}item {index + 1}: {too_long}")
        if too_big := oversized_ref(ref):
            raise ItemProviderError(f"{where(index, 'ref')}item {index + 1} ('{item_id}'): {too_big}")
        if item_id in seen:
            repeats.setdefault(item_id, [seen[item_id]]).append(index)
            continue
        seen[item_id] = index
        items.append(FanOutItem(item_type, item_id, ref, context))
        if blockers:
            deps[item_id] = blockers
    if repeats:

        def at(index: int) -> str:
            located = where(index, "id").rstrip(": ")
            return located if located[-1:].isdigit() else f"item {index + 1}"

        first = min(indexes[1] for indexes in repeats.values())
        s = "s" if len(repeats) > 1 else ""
        raise ItemProviderError(f"{where(first, 'id')}duplicate item id{s} {_duplicates(repeats, at)}")
    if check_unknown_deps:
        for index, item in enumerate(items):
            for blocker in deps.get(item.item_id, []):
                if blocker not in seen:
                    prefix = where(index, "depends_on")
                    close = did_you_mean(blocker, list(seen))  # only on this error: any number of ids
                    raise ItemProviderError(
                        f"{prefix}item '{item.item_id}' depends on unknown item '{blocker}'"
                        + (f" ({close})" if close else "")
                    )
    return _Declared(items, deps)


def _duplicates(repeats: Mapping[str, list[int]], at: Callable[[int], str]) -> str:
    """`'a' (items.yaml:1, items.yaml:4), 'b' (…)`: each duplicated id (the first ten) and where
    its entries are (`at`; the first five of each; their positions when they share a line)."""
    shown = []
    for item_id, indexes in list(repeats.items())[:10]:
        located = [at(index) for index in indexes[:5]]
        if len(set(located)) < len(located):  # a JSON file on one line
            located = [f"item {index + 1}" for index in indexes[:5]]
        places = ", ".join(located)
        if len(indexes) > 5:
            places += f", … ({len(indexes)} in all)"
        shown.append(f"'{item_id}' ({places})")
    more = f" and {len(repeats) - 10} more" if len(repeats) > 10 else ""
    return ", ".join(shown) + more


def _load_item_file(path: Path, label: str, item_type: str) -> _Declared:
    """Read a `.yaml`/`.yml`/`.json` list of items (or `{items: [...]}`).

    Fast path: `json` for `.json`, libyaml for YAML, no line numbers. Only when the file is wrong
    is it parsed again with the pure YAML composer, which knows the line of every entry, so every
    message still names file:line (file:line:col for a syntax error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ItemProviderError(f"items file not found: {label}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemProviderError(
            f"cannot read items file {label}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ItemProviderError(
                    f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
                ) from None
        else:
            data = load_data(text, file=label)
    except ConfigFileError as exc:
        raise ItemProviderError(exc.problem.render()) from None
    try:
        return _declared_from_document(data, label, item_type, lambda *path: None)
    except ItemProviderError as unlocated:
        try:
            doc = parse_yaml(text, file=label)
        except ConfigFileError:
            raise unlocated from None  # valid JSON that YAML cannot read: the message without a line
        try:
            _declared_from_document(doc.data, label, item_type, doc.line_of)
        except ItemProviderError as located:
            raise located from None
        raise unlocated from None


def _found_instead(data: Any, label: str) -> str:
    """What an items file holds instead of a list, and how to write it (`: it is a map …`)."""
    json_file = label.endswith(".json")
    if isinstance(data, dict) and data:
        keys = [str(k) for k in data]
        if len(keys) == 1 and isinstance(data[keys[0]], list):
            return f": it is a map whose only key is `{keys[0]}` — put the list under `items`, or at the top"
        named = ", ".join(f"`{k}`" for k in keys[:3]) + (", …" if len(keys) > 3 else "")
        entry = f'`{{"id": "{keys[0]}", …}}`' if json_file else f"`- id: {keys[0]}`, its fields under it"
        return f": it is a map ({named}) — write a list with one entry per item, its id in `id`: {entry}"
    if isinstance(data, str):
        return ": it is a single string — " + ('write `["a", "b"]`' if json_file else "one `- id` a line")
    if isinstance(data, dict):
        return ": it is an empty map"
    return ": it is " + ("true or false" if isinstance(data, bool) else "a number")


def _declared_from_document(
    data: Any, label: str, item_type: str, line_of: Callable[..., int | None]
) -> _Declared:
    """Items of a parsed item file; `line_of(*path)` is the line of an entry (None: unknown)."""
    prefix: tuple[str, ...] = ()
    if isinstance(data, dict) and "items" in data:
        data, prefix = data["items"], ("items",)
    if data is None:
        data = []
    if not isinstance(data, list):
        line = line_of()
        where = f"{label}:{line}:" if line else f"{label}:"
        instead = _found_instead(data, label)
        raise ItemProviderError(f"{where} expected a list of items (or `items: [...]`){instead}")

    def where(index: int, key: str | None) -> str:
        line = line_of(*prefix, index, *((key,) if key else ()))
        return f"{label}:{line}: " if line else f"{label}: "

    return _declared_from_entries(data, item_type, where)


class _FileCache:
    """Parsed item files by (path, modification time, size, inode): a run validates its scope and
    then collects its items, and each file is read and parsed once for all of that. An edited
    file has a new modification time, so it is read again."""

    def __init__(self, size: int = 16) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int, int, int], Any] = OrderedDict()
        self._size = size

    def get(self, path: Path, load: Callable[[], Any]) -> Any:
        try:
            stat = path.stat()
        except OSError:
            return load()  # let the loader say what is wrong with the file
        key = (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = load()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value


# --------------------------------------------------------------------------- static


@dataclass(frozen=True)
class StaticScope:
    inline: tuple[str, ...] | None = None
    file: Path | None = None
    label: str = ""


class StaticProvider(_BaseProvider):
    """Items written inline or in a YAML/JSON file next to the workflow; supports `ordered`."""

    provider_name = "static"
    known_keys = ("items", "file")

    def supports_ordered(self) -> bool:
        return True

    def parse_scope(self, raw_scope: dict[str, str] | None) -> StaticScope:
        scope = dict(raw_scope or {})
        has_items, has_file = bool(scope.get("items", "").strip()), bool(scope.get("file", "").strip())
        if has_items == has_file:
            raise ItemProviderError(
                'over = static needs exactly one of scope { items = "a,b,c" } or { file = "items.yaml" }'
            )
        if has_items:
            parts = [p.strip() for p in scope["items"].replace("\n", ",").split(",")]
            ids = [p for p in parts if p]
            for number, item_id in enumerate(ids, start=1):
                if too_long := overlong_id(item_id):
                    raise ItemProviderError(f"scope items: item {number}: {too_long}", "items")
            numbers: dict[str, list[int]] = {}  # one pass: `ids.count` per id took 30 s for 50,000
            for index, item_id in enumerate(ids):
                numbers.setdefault(item_id, []).append(index)
            repeats = {i: indexes for i, indexes in numbers.items() if len(indexes) > 1}
            if repeats:
                s = "s" if len(repeats) > 1 else ""
                listed = _duplicates(repeats, lambda index: f"item {index + 1}")
                raise ItemProviderError(f"duplicate item id{s} in scope items: {listed}", "items")
            return StaticScope(inline=tuple(ids))
        file_text = scope["file"].strip()
        path = self._path(file_text)
        if path.suffix.lower() not in (".yaml", ".yml", ".json"):
            raise ItemProviderError(f"items file must end in .yaml, .yml or .json: {file_text}", "file")
        parsed = StaticScope(file=path, label=_describe(path, self.base_dir))
        try:
            self._read(parsed)  # a broken file is a scope error, reported before the run
        except ItemProviderError as exc:
            raise _about("file", exc) from None
        return parsed

    def scope_warnings(self, raw_scope: Mapping[str, str] | None) -> list[str]:
        warnings = super().scope_warnings(raw_scope)
        try:
            scope = self.parse_scope(dict(raw_scope) if raw_scope is not None else None)
        except ItemProviderError:
            return warnings
        declared = self._read(scope)
        cycle = find_cycle((b, d) for d, blockers in declared.deps.items() for b in blockers)
        if cycle:
            warnings.append(f"{scope.label}: dependency cycle {' -> '.join(cycle)}")
        return warnings

    def _read(self, scope: StaticScope) -> _Declared:
        if scope.inline is not None:
            return _Declared([FanOutItem(self.provider_name, i, i, {}) for i in scope.inline])
        assert scope.file is not None
        file, label = scope.file, scope.label
        return self._files.get(file, lambda: _load_item_file(file, label, self.provider_name))

    def items(
        self, ctx: RunContext, info: ProviderInfo, scope: object | None, filter: dict[str, str]
    ) -> list[FanOutItem]:
        parsed = scope if isinstance(scope, StaticScope) else self.parse_scope(None)
        declared = self._read(parsed)
        return self._serve(info, declared.items, declared.deps, filter)


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FilesScope:
    pattern: str
    root: Path


class FilesProvider(_BaseProvider):
    """One item per file matching a glob under `root`; id = the path relative to `root`."""

    provider_name = "files"
    known_keys = ("glob", "root")
    filter_keys = ("id", "ref", "path", "name", "stem", "suffix", "dir")

    def parse_scope(self, raw_scope: dict[str, str] | None) -> FilesScope:
        scope = self._require(raw_scope, "glob")
        pattern = scope["glob"].strip()
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ItemProviderError(f"glob must be relative to root and stay inside it: {pattern}", "glob")
        root = self._path(scope.get("root", "").strip() or ".")
        if not root.is_dir():
            raise ItemProviderError(f"root directory not found: {_describe(root, self.base_dir)}", "root")
        return FilesScope(pattern, root)

    def items(
        self, ctx: RunContext, info: ProviderInfo, scope: object | None, filter: dict[str, str]
    ) -> list[FanOutItem]:
        parsed = scope if isinstance(scope, FilesScope) else self.parse_scope(None)
        found: list[FanOutItem] = []
        for path in sorted(parsed.root.glob(parsed.pattern)):
            if not path.is_file():
                continue
            rel = path.relative_to(parsed.root).as_posix()
            context = {
                "path": str(path),
                "name": path.name,
                "stem": path.stem,
                "suffix": path.suffix,
                "dir": path.parent.relative_to(parsed.root).as_posix(),
            }
            found.append(FanOutItem(self.provider_name, rel, str(path), context))
        return self._serve(info, found, {}, filter)


# --------------------------------------------------------------------------- lines


@dataclass(frozen=True)
class LinesScope:
    file: Path
    label: str


class LinesProvider(_BaseProvider):
    """One item per meaningful line of a text file (blank lines and `#` comments skipped)."""

    provider_name = "lines"
    known_keys = ("file",)
    filter_keys = ("id", "ref", "line")

    def parse_scope(self, raw_scope: dict[str, str] | None) -> LinesScope:
        scope = self._require(raw_scope, "file")
        path = self._path(scope["file"].strip())
        parsed = LinesScope(path, _describe(path, self.base_dir))
        try:
            self._read(parsed)
        except ItemProviderError as exc:
            raise _about("file", exc) from None
        return parsed

    def _read(self, scope: LinesScope) -> list[FanOutItem]:
        return self._files.get(scope.file, lambda: self._parse(scope))

    def _parse(self, scope: LinesScope) -> list[FanOutItem]:
        try:
            text = scope.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ItemProviderError(f"lines file not found: {scope.label}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ItemProviderError(
                f"cannot read lines file {scope.label}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        items: list[FanOutItem] = []
        seen: set[str] = set()
        for number, line in enumerate(text.splitlines(), start=1):
            value = line.strip()
            if not value or value.startswith("#") or value in seen:
                continue
            if too_long := overlong_id(value):
                raise ItemProviderError(f"{scope.label}:{number}: {too_long}")
            seen.add(value)
            items.append(
                FanOutItem(self.provider_name, value, f"{scope.label}:{number}", {"line": str(number)})
            )
        return items

    def items(
        self, ctx: RunContext, info: ProviderInfo, scope: object | None, filter: dict[str, str]
    ) -> list[FanOutItem]:
        parsed = scope if isinstance(scope, LinesScope) else self.parse_scope(None)
        return self._serve(info, self._read(parsed), {}, filter)


# --------------------------------------------------------------------------- command


@dataclass(frozen=True)
class CommandScope:
    run: str
    timeout: float | None


class CommandProvider(_BaseProvider):
    """One item per line a shell command prints (run in the run's working directory)."""

    provider_name = "command"
    known_keys = ("run", "timeout")

    def __init__(self, base_dir: Path | str = ".", env: Mapping[str, str] | None = None) -> None:
        super().__init__(base_dir)
        self._env = env

    def supports_ordered(self) -> bool:
        return True

    def parse_scope(self, raw_scope: dict[str, str] | None) -> CommandScope:
        scope = self._require(raw_scope, "run")
        timeout_text = scope.get("timeout", "").strip()
        timeout = None
        if timeout_text:
            try:
                timeout = float(timeout_text)
            except ValueError:
                timeout = -1.0
            if timeout <= 0:
                raise ItemProviderError(
                    f"timeout must be a positive number of seconds, got '{timeout_text}'", "timeout"
                )
        return CommandScope(scope["run"], timeout)

    def items(
        self, ctx: RunContext, info: ProviderInfo, scope: object | None, filter: dict[str, str]
    ) -> list[FanOutItem]:
        parsed = scope if isinstance(scope, CommandScope) else self.parse_scope(None)
        cwd = ctx.working_dir()
        env = dict(os.environ if self._env is None else self._env)
        result = run_process(
            parsed.run,
            cwd=cwd,
            env=env,
            shell=True,
            timeout=parsed.timeout,
            max_capture_chars=MAX_COMMAND_OUTPUT,
        )
        if result.spawn_error:
            raise ItemProviderError(f"item command could not start: {result.spawn_error}")
        if result.timed_out:
            raise ItemProviderError(f"item command timed out after {parsed.timeout:g}s: {parsed.run}")
        if result.exit_code != 0:
            tail = result.stderr_tail(500)
            message = f"item command exited with code {result.exit_code}: {parsed.run}"
            raise ItemProviderError(f"{message}\n{tail}" if tail else message)
        if result.stdout_dropped:
            # Its middle was left out to bound memory: items would be missing (and one made up).
            raise ItemProviderError(
                f"item command printed more than {MAX_COMMAND_OUTPUT:,} characters, the most it may: "
                f"{parsed.run}"
            )
        entries: list[Any] = []
        for number, line in enumerate(result.stdout.splitlines(), start=1):
            value = line.strip()
            if not value:
                continue
            if value.startswith("{"):
                try:
                    entries.append(json.loads(value))
                except json.JSONDecodeError as exc:
                    raise ItemProviderError(
                        f"item command output line {number}: invalid JSON: {exc.msg}"
                    ) from None
            else:
                if too_long := overlong_id(value):
                    raise ItemProviderError(f"item command output line {number}: {too_long}")
                entries.append(value)
        unique: list[Any] = []
        seen: set[str] = set()
        for entry in entries:
            key = str(entry.get("id")) if isinstance(entry, dict) else str(entry)
            if key not in seen:
                seen.add(key)
                unique.append(entry)
        declared = _declared_from_entries(
            unique, self.provider_name, lambda index, _key: "item command output: "
        )
        return self._serve(info, declared.items, declared.deps, filter)


def default_providers(base_dir: Path | str, *, env: Mapping[str, str] | None = None) -> list[ItemProvider]:
    """All four reference providers, resolving relative paths against `base_dir`."""
    return [
        StaticProvider(base_dir),
        FilesProvider(base_dir),
        LinesProvider(base_dir),
        CommandProvider(base_dir, env),
    ]
