"""What the dashboard needs from the engine host, and how the CLI opens one.

The dashboard is one client of the engine's public API: `runkon_flow.workspace.Workspace` (the
host glue also used by the `runkon-flow` CLI). `EngineHost` spells out the part we call, so tests
and tools can hand the app any object with this shape.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from runkon_flow.errors import PersistenceError, Problem
from runkon_flow.events import EventSink
from runkon_flow.persistence.protocol import WorkflowPersistence

if TYPE_CHECKING:  # imported when the engine is built, not to start
    from runkon_flow.dsl.loading import FileError
    from runkon_flow.persistence.location import DbLocation
    from runkon_flow.workspace import ResumePlan


class GateApi(Protocol):
    def approve(
        self, run_id: str, gate: str, by: str, note: str | None = None, selections: list[str] | None = None
    ) -> Any: ...

    def reject(self, run_id: str, gate: str, by: str, note: str | None = None) -> Any: ...


class EngineHost(Protocol):
    gates: GateApi

    def reload(self) -> None: ...

    def validate(self, name: str) -> Sequence[Problem]:
        """What would stop a run of `name` (problems with `file:line:col` where known)."""
        ...

    def check(self, name: str) -> tuple[Sequence[Problem], Sequence[Problem]]:
        """`validate`'s problems, and the warnings that stop nothing (said before a run)."""
        ...

    def prepare_inputs(self, name: str, raw: Mapping[str, str]) -> dict[str, str]: ...

    def create_run(self, name: str, inputs: Mapping[str, str]) -> str: ...

    def execute(self, run_id: str, *, sinks: Sequence[EventSink] = ..., cancellation: Any = ...) -> Any: ...

    def resume(self, run_id: str, *, sinks: Sequence[EventSink] = ...) -> Any: ...

    def resume_plan(self, run_id: str) -> ResumePlan:
        """What a resume of `run_id` runs, and which definition that is (here or in a runner)."""
        ...

    def load_error(self, name: str) -> FileError | None:
        """Why the workflow `name` does not load now (its file's error); None when it loads or no
        file declares it (`Workspace.load_error`)."""
        ...

    def unloadable_workflows(
        self, run_id: str, *, retried: Iterable[str] = ..., definition: str | None = ...
    ) -> Sequence[Problem]: ...

    def retry(
        self,
        run_id: str,
        items: Mapping[str, Sequence[str]],
        *,
        definition: str = ...,
        sinks: Sequence[EventSink] = ...,
    ) -> Any: ...

    def cancel(self, run_id: str, message: str | None = None) -> None: ...

    def launch(
        self,
        run_id: str,
        db: Path | str,
        *,
        resume: bool = ...,
        retry: Mapping[str, Sequence[str]] | None = ...,
    ) -> tuple[Any, Path]: ...

    def prepare_rerun(
        self, run_id: str, step: str, inputs: Mapping[str, str] | None = None, *, definition: str = ...
    ) -> tuple[str, Any]: ...

    def end_unstarted(self, run_id: str, reason: str) -> Any:
        """A run whose start failed before anything ran it: `failed` with `reason`, not `pending`."""
        ...


@dataclass
class OpenedHost:
    host: EngineHost | None
    store: WorkflowPersistence
    problems: list[str]
    # For the header: runs kept in memory only, or no runs yet (the database is not made).
    store_note: str | None = None
    hooks: Any = None  # runkon_flow.hooks.HookRunner of the hooks file, when there is one


def open_store(db: Path | str | None) -> tuple[WorkflowPersistence, str | None]:
    """The store at `db` — a SQLite file or a `postgresql://` URL; when None, `$RUNKON_DB` or the
    default file. An unusable database falls back to an in-memory store for this session and says
    why, so the dashboard stays up. One that holds no runs of runkon's yet (a SQLite file that does
    not exist or has 0 bytes, a PostgreSQL database without runkon's tables) is left as it is —
    not created — until a run is started here: an `UnmadeStore`."""
    from runkon_flow.persistence.location import db_location
    from runkon_flow.persistence.memory import InMemoryStore

    try:
        location = db_location(str(db) if db is not None else None)
        store, why = _open_existing(location)
        return (store if store is not None else UnmadeStore(location, why or "")), None
    except Exception as exc:  # PersistenceError names the path; anything else must not kill the UI
        # What it means first: at 80×24 the toast shows six lines of 19 columns, and the reason
        # (a server's own words) runs past them — the errors log keeps it whole.
        reason = exc.message if isinstance(exc, PersistenceError) else str(exc)
        return InMemoryStore(), f"run store unusable, runs kept in memory (not saved): {reason}"


def _open_existing(location: DbLocation) -> tuple[WorkflowPersistence | None, str | None]:
    """(the store at `location`, None), or (None, why it holds no runs: `PATH does not exist yet`,
    `PATH is empty`, `URL has no runkon tables`) when it holds no runkon tables — then nothing was
    written, as with the read commands (runkon_flow.cli.store): a mistyped --db must not become a
    new, empty database that looks like 'all my runs are gone'."""
    from runkon_flow.errors import NoRunDatabase

    if not location.exists() and _can_be_made(location.path):
        return None, f"{location.label} does not exist yet"
    # One that cannot be made (under a file, a folder that takes no files) is refused by opening
    # it, in the words it always was — nothing can be created there.
    if location.empty_file():
        return None, f"{location.label} is empty"
    try:
        return location.open(create=False), None
    except NoRunDatabase as exc:
        return None, exc.message


def _can_be_made(path: Path | None) -> bool:
    """Whether a SQLite file at `path` could be created: its nearest existing folder takes files."""
    import os

    if path is None:
        return False
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


class UnmadeStore:
    """The run database at `location` while it holds no runs of runkon's: a SQLite file that does
    not exist or has 0 bytes, a PostgreSQL database without runkon's tables. Looking must not
    create a mistyped --db or give it runkon's tables (the read commands leave it alone too), so
    reads answer from an empty store —
    "no runs yet" — and the first write (a run started here) makes it a run database, as
    `runkon-flow run` does; from then on every call goes to it. Reads ask again at most every
    `look_again` seconds whether another process has made it one meanwhile (`runkon-flow run
    --db` the same database), and then show its runs.

    `why` says why it holds none (`PATH does not exist yet`, `URL has no runkon tables`, `PATH is
    empty`), and `note` what the header says: that until it is made (nothing for the default file
    not made yet — a first start, not a typo), then the folder its making created, if any
    (`created typo/ for a new run database`, as `runkon-flow run` says it)."""

    #: The protocol's methods that only read: answered by an empty store until it is made.
    READS = frozenset(
        {
            "get_gate_approval",
            "get_run",
            "list_runs",
            "find_run_ids",
            "list_active_runs",
            "get_steps",
            "get_step",
            "get_fan_out_items",
            "is_run_cancelled",
            "read_events",
            "last_event_seq",
            "flush",
        }
    )
    applies_writes_at_once = False  # the store it becomes never does (runtime/report_gate.py)

    def __init__(self, location: DbLocation, why: str, *, look_again: float = 5.0) -> None:
        from runkon_flow.persistence.memory import InMemoryStore

        self._location = location
        self._lock = threading.Lock()
        self._made: WorkflowPersistence | None = None
        self._empty = InMemoryStore()
        self._look_again = look_again
        self._looked = time.monotonic()
        self.why = why
        # The default file (no --db, no $RUNKON_DB) not made yet is a first start: no warning.
        self._said = location.chosen or location.exists()
        self.created: Path | None = None  # the folder making it created
        # Where a runner started here finds the runs (session.runner_db): it makes the database too.
        if location.is_server:
            self.dsn = location.target
        else:
            self.path = location.path

    @property
    def made(self) -> bool:
        return self._made is not None

    @property
    def note(self) -> str | None:
        """The header's note until a run makes it a run database; then the folder that made."""
        if self.made:
            return f"created {self.created}/ for a new run database" if self.created is not None else None
        return f"no runs yet: {self.why}" if self._said else None

    def make(self) -> WorkflowPersistence:
        """The run database, made now if it is not yet (runkon's tables created; a SQLite file's
        folders too)."""
        with self._lock:
            if self._made is None:
                created = self._location.missing_folder()
                self._made = self._location.open()
                self.created = created
            return self._made

    def close(self) -> None:
        with self._lock:
            if self._made is not None:
                close = getattr(self._made, "close", None)
                if close is not None:
                    close()

    def _reader(self) -> WorkflowPersistence:
        """What answers a read: the made store, else the empty one — having looked again whether
        another process made the database one, if `look_again` seconds have gone by."""
        if self._made is None and time.monotonic() - self._looked >= self._look_again:
            self._looked = time.monotonic()
            try:
                store, _ = _open_existing(self._location)
            except Exception:  # unreachable now: still nothing to show; a write will say why
                store = None
            if store is not None:
                with self._lock:
                    if self._made is None:
                        self._made, store = store, None
                close = getattr(store, "close", None)
                if close is not None:  # made by a write meanwhile
                    close()
        return self._made or self._empty

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self.READS and self._made is None:
            # Asked which store answers at each call: a caller may keep the method (DeferredStore
            # does), and the database may be made meanwhile.
            def read(*args: Any, **kwargs: Any) -> Any:
                return getattr(self._reader(), name)(*args, **kwargs)

            return read
        value = getattr(self._made or self.make(), name)
        if callable(value):  # made: later calls skip this lookup (a run's writes are many)
            self.__dict__[name] = value
        return value


def open_workspace(
    dirs: Sequence[Path],
    db: Path | str | None,
    working_dir: Path | None = None,
    *,
    executor: str = "local",
    ray_address: str | None = None,
    hooks: str | None = None,
    deferred: bool = False,
) -> OpenedHost:
    """Build the engine host over `dirs` and the run store; problems are reported, not raised.

    `executor="ray"`: foreach children run on a Ray cluster (docs/scale-out.md). If that cannot be
    set up (Ray missing, cluster unreachable, a store the nodes cannot share) the dashboard opens
    without an engine, saying why — runs never fall back to this machine unasked.

    The hooks file (`hooks`, `$RUNKON_HOOKS` or `.runkon/hooks.yaml`) runs for every run started
    here; a wrong one is reported and the dashboard runs without hooks.

    `deferred`: nothing is opened now. The store is a `DeferredStore` and the host a `DeferredHost`
    (it opens the store, then builds the engine and opens the hooks file) — the dashboard opens
    both on a worker right after its first frame, and reports their problems then, so start-up
    waits neither for the store (its code, `sqlite3`, the file) nor for the engine's runtime,
    plug-ins and approvals. `problems` and `store_note` are then the store's, known once open."""
    if deferred:
        lazy = DeferredStore(db)

        def build_deferred() -> tuple[EngineHost | None, list[str], Any]:
            store = lazy.open()
            return _build_engine(
                dirs,
                db,
                store,
                store_usable=lazy.problem is None,
                working_dir=working_dir,
                executor=executor,
                ray_address=ray_address,
                hooks=hooks,
            )

        return OpenedHost(DeferredHost(build_deferred), cast(WorkflowPersistence, lazy), [])
    store, store_problem, note = _open_noting(db)
    host, engine_problems, runner = _build_engine(
        dirs,
        db,
        store,
        store_usable=store_problem is None,
        working_dir=working_dir,
        executor=executor,
        ray_address=ray_address,
        hooks=hooks,
    )
    problems = [store_problem] if store_problem else []
    return OpenedHost(host, store, problems + engine_problems, note, runner)


class StoreNote(str):
    """A note for the header with shorter forms, longest first: the first that fits is said where
    the line has no room for the whole (80 columns with a run on screen) — instead of cutting the
    words that matter."""

    shorter: tuple[str, ...]

    def __new__(cls, text: str, *shorter: str) -> StoreNote:
        note = super().__new__(cls, text)
        note.shorter = shorter
        return note


#: The header's note after an unusable --db: `⚠ runs not saved` where the whole does not fit (80
#: columns with a run on screen), `⚠ not saved` where that does not either (a long workflow name,
#: many item counts).
IN_MEMORY_NOTE = StoreNote("in-memory store: runs are not saved", "runs not saved", "not saved")


def _open_noting(db: Path | str | None) -> tuple[WorkflowPersistence, str | None, str | None]:
    """(the store at `db`, its problem, the note for the header): `open_store`, and whether it
    fell back to memory or holds no runs yet (a typo in --db must not pass for an empty history)."""
    store, problem = open_store(db)
    note = IN_MEMORY_NOTE if problem else None
    if isinstance(store, UnmadeStore):
        note = store.note
    return store, problem, note


class DeferredStore:
    """The run store at `db`, opened on first use or by `open()` on a worker: any store attribute
    opens it. Until then the dashboard draws its first frame without the store's code, `sqlite3`
    and the database file. Thread-safe: whoever comes first opens, others wait.

    Once open, `store` is the store (an in-memory one when `db` is unusable), `problem` why it is
    unusable and `note` what the header says all session (see `open_store`); the dashboard swaps
    this for `store` and shows `problem` as a start-up problem."""

    def __init__(self, db: Path | str | None) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._store: WorkflowPersistence | None = None
        self.problem: str | None = None
        self.note: str | None = None

    @property
    def opened(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> WorkflowPersistence:
        return self.open()

    def open(self) -> WorkflowPersistence:
        with self._lock:
            if self._store is None:
                store, self.problem, self.note = _open_noting(self._db)
                self._store = store
            return self._store

    def close(self) -> None:
        with self._lock:
            close = getattr(self._store, "close", None)  # an in-memory store has nothing to close
            if close is not None:
                close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self.open(), name)
        if callable(value):  # a bound method of the opened store: later calls skip this lookup
            self.__dict__[name] = value
        return value


def _build_engine(
    dirs: Sequence[Path],
    db: Path | str | None,
    store: WorkflowPersistence,
    *,
    store_usable: bool,
    working_dir: Path | None,
    executor: str,
    ray_address: str | None,
    hooks: str | None,
) -> tuple[EngineHost | None, list[str], Any]:
    """(the Workspace or None, problems, the hooks runner or None). `store_usable` False: `store`
    is an in-memory stand-in for the unusable database at `db` (Ray nodes cannot share it)."""
    from runkon_flow.hooks import ConfigFileError, find_hooks_file, hooks_from
    from runkon_flow.observe.clusters import failure_summaries
    from runkon_flow.runner import RunnerSettings

    problems: list[str] = []
    runner = None
    hooks_file = None
    hooks_broken = False
    try:
        hooks_file = find_hooks_file(hooks, cwd=Path.cwd())
        runner = hooks_from(hooks_file, cwd=Path.cwd(), failures=partial(failure_summaries, store))
    except ConfigFileError as exc:
        problems.append(f"hooks not used: {exc}")
        hooks_broken = True  # runs started here run without hooks, in a runner too
    try:
        from runkon_flow.workspace import Workspace

        child_runner = None
        if executor == "ray":
            from runkon_flow.persistence.location import db_location
            from runkon_flow.ray_executor import RayExecutor

            location = db_location(str(db) if db is not None else None) if store_usable else None
            child_runner = RayExecutor(location, dirs, address=ray_address).runner_factory()
        host = Workspace(
            list(dirs),
            store,
            working_dir=working_dir,
            child_runner=child_runner,
            sinks=[runner] if runner else (),
            # A run handed over when the dashboard quits goes on with these hooks, on this executor.
            runner_settings=RunnerSettings(
                hooks=str(hooks_file.resolve()) if hooks_file is not None and not hooks_broken else None,
                executor=executor,
                ray_address=ray_address,
                no_hooks=hooks_broken,
            ),
        )
    except Exception as exc:  # the dashboard still lists workflows and history without an engine
        problems.append(f"engine unavailable: {type(exc).__name__}: {exc}")
        if runner is not None:
            runner.close()
        return None, problems, None
    return host, problems, runner


class DeferredHost:
    """The engine host, built on first use (or by `build()` on a worker): any `EngineHost`
    attribute builds it. Until then the dashboard can draw its first frame without the engine's
    runtime, plug-ins, approvals and hooks. Thread-safe: whoever comes first builds, others wait.

    The dashboard swaps it for the built host (`host`, None when the engine is unavailable) and
    shows `problems` as start-up problems; `hooks` is the hooks runner to close at exit."""

    def __init__(self, build: Callable[[], tuple[EngineHost | None, list[str], Any]]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self.built = False
        self.host: EngineHost | None = None
        self.problems: list[str] = []
        self.hooks: Any = None
        # Told about a hook that failed (set before the first use: the runner is made with it).
        self.on_hook_problem: Callable[[str], None] | None = None

    def build(self) -> EngineHost | None:
        with self._lock:
            if not self.built:
                self.host, self.problems, self.hooks = self._build()
                if self.hooks is not None and self.on_hook_problem is not None:
                    self.hooks.on_problem = self.on_hook_problem
                self.built = True
        return self.host

    def close(self) -> None:
        """At exit: hooks already due finish (each within its timeout)."""
        with self._lock:  # a build under way finishes first (its hooks runner is closed too)
            pass
        if self.hooks is not None:
            self.hooks.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        host = self.build()
        if host is None:
            raise RuntimeError("; ".join(self.problems) or "engine unavailable")
        return getattr(host, name)
