"""The run database a command works on (`--db`, else `$RUNKON_DB`, else the default path; `--memory`
for `run`): a SQLite file, or a PostgreSQL server given as a `postgresql://` URL
(persistence/location.py). Commands that only read or continue runs never create one (nor runkon's
tables in an empty PostgreSQL database); `run` creates it only once the run really starts.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, cast
from urllib.parse import quote

from runkon_flow.cli.common import PROG, CommandFailed, StdoutGuard, UsageError, print_err
from runkon_flow.errors import NoRunDatabase
from runkon_flow.humanize import display_line
from runkon_flow.observe.run_ids import AmbiguousRunId, find_run, why_not_found
from runkon_flow.persistence import InMemoryStore, SqliteStore, WorkflowRun
from runkon_flow.persistence.location import DbLocation, db_location
from runkon_flow.persistence.paths import DEFAULT_DB_HELP
from runkon_flow.persistence.protocol import WorkflowPersistence


def add_db_args(p: argparse.ArgumentParser, *, memory: bool = False) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--db",
        metavar="PATH|URL",
        help=f"run database: a SQLite file or a postgresql:// URL (default: {DEFAULT_DB_HELP})",
    )
    if memory:
        group.add_argument(
            "--memory",
            action="store_true",
            help="keep the run in memory only (no history, cannot be resumed)",
        )


class DeferredStore:
    """The run database of `run`, opened — and so created — only when first used: a run rejected
    before it starts (unknown workflow, bad inputs, a broken or invalid file) writes nothing, not
    even an empty database. `open()` opens it on purpose (to report an unusable database before
    anything else is written); every other attribute is the opened store's."""

    def __init__(self, location: DbLocation) -> None:
        self._location = location
        self._store: Any = None

    def open(self) -> WorkflowPersistence:
        if self._store is None:
            created = self._location.missing_folder()
            self._store = self._location.open()
            if created is not None:  # a typo in --db must not silently start a new, empty history
                print_err(f"{PROG}: created {created}/ for the new run database {self._location.path}")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.open(), name)
        if callable(value):  # bound methods do not change: later calls skip this lookup
            self.__dict__[name] = value
        return value


class NoRunsHere(CommandFailed):
    """A command that only reads or continues runs was pointed at a database that holds none — a
    SQLite file that does not exist, a PostgreSQL database without runkon's tables — and created
    nothing. A SQLite file of 0 bytes (`touch runs.db`, a typo'd path another tool created) is
    left as it is: `empty`. `why` says which (`runs` answers "no runs yet (why)")."""

    def __init__(self, location: DbLocation, *, server: bool, empty: bool = False) -> None:
        label = location.label
        if server:
            self.why, where = f"{label} has no runkon tables", f"no runkon tables in {label}"
        elif empty:
            self.why, where = f"{label} is empty", f"run database {label} is empty"
        else:
            self.why, where = f"{label} does not exist", f"no run database at {label}"
        super().__init__(f"{where} (nothing has run with it yet; check --db / $RUNKON_DB)")


def open_store(args: argparse.Namespace, *, must_exist: bool) -> WorkflowPersistence:
    """The store the command works on. Commands that only read or continue runs never create a
    database nor its tables (a typo in --db must not look like an empty history): `NoRunsHere`;
    `run` gets one that is created only once the run is really started."""
    if getattr(args, "memory", False):
        return InMemoryStore()
    location = location_of(args)
    if not must_exist:
        return cast(WorkflowPersistence, DeferredStore(location))
    if not location.exists():
        raise NoRunsHere(location, server=False)
    if location.empty_file():
        raise NoRunsHere(location, server=False, empty=True)
    try:
        return location.open(create=False)
    except NoRunDatabase:
        raise NoRunsHere(location, server=True) from None


def location_of(args: argparse.Namespace) -> DbLocation:
    """The database `--db` names, else `$RUNKON_DB`'s, else the default file."""
    return db_location(getattr(args, "db", None))


def close_store(store: WorkflowPersistence) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        with suppress(Exception):
            close()


@contextmanager
def opened_store(args: argparse.Namespace, *, must_exist: bool) -> Iterator[WorkflowPersistence]:
    store = open_store(args, must_exist=must_exist)
    try:
        yield store
    finally:
        close_store(store)


def db_label(args: argparse.Namespace) -> str:
    if getattr(args, "memory", False):
        return ":memory:"
    return location_of(args).label


def print_run_header(
    run_id: str, workflow: str, args: argparse.Namespace, guard: StdoutGuard | None = None
) -> None:
    """The first line of run/resume/retry/rerun/watch, the one scripts parse for the run id. A
    reader already gone (`run WF | true`) does not stop the run it heads: it runs, unprinted."""
    (guard or StdoutGuard("stdout closed; the run goes on, printing nothing more")).print(
        f"run_id={run_id} workflow={display_line(workflow, None)} db={db_label(args)}"
    )


def get_run(store: WorkflowPersistence, run_id: str, args: argparse.Namespace) -> WorkflowRun:
    """The run RUN_ID names: its full id in any case, or a unique prefix or suffix of at least
    `SHORT_ID_MIN` characters, with or without the dashboard's leading `…` (`observe.run_ids`). An
    ambiguous part is a usage error listing the runs it matches: a command never acts on a guessed run."""
    try:
        run = find_run(store, run_id)
    except AmbiguousRunId as exc:
        raise UsageError(str(exc)) from None
    if run is None:
        damage = _damage(store) if isinstance(store, SqliteStore) else None
        if damage is not None:
            raise CommandFailed(
                f"run database {db_label(args)} is damaged ({damage}): cannot tell whether run '{run_id}' "
                "exists; restore the file from a backup, or move it aside and start a new one"
            )
        why = why_not_found(run_id)
        if why:
            why += f" (`{PROG} runs` lists the ids)"
        raise CommandFailed(f"no workflow run '{run_id}' in {db_label(args)}{why}")
    return run


def _damage(store: SqliteStore) -> str | None:
    """SQLite's first complaint about the file, if any. A damaged index can make a lookup find
    nothing where the row exists, so "no such run" is said only of a database that checks out."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(store.path.resolve()))}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    problem = str(rows[0][0]) if rows else "no answer to an integrity check"
    if problem == "ok":
        return None
    return " ".join(line for line in problem.splitlines() if not line.startswith("***")) or problem
