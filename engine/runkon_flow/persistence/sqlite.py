"""The SQLite `WorkflowPersistence` (stdlib sqlite3, WAL): the store that survives the process and
lets several engines — threads or processes — share runs safely through leases and generations.

Concurrency: one connection per store guarded by a lock (measured faster than a connection per
thread for the engine's fan-out pattern, bench/bench_store.py), in autocommit mode. Writes are
group-committed: a write queues itself, and whichever thread holds the connection next runs every
queued write in one `BEGIN IMMEDIATE … COMMIT`, so the engine's worker threads share commits (a
WAL commit costs far more than the statements in it) while every call still returns only after
its own write is committed. A write alone in the queue runs as before: a single statement in
autocommit, a read-modify-write in its own transaction. Every sqlite3 failure surfaces as a
`PersistenceError` naming the database file, never as a raw sqlite3 traceback.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from runkon_flow.errors import PersistenceError, StoreUnavailable
from runkon_flow.persistence import _shared as sh
from runkon_flow.persistence._leader import Leadership
from runkon_flow.persistence.foreign import check_runkon_file
from runkon_flow.persistence.models import (
    PACKED_EVENTS,
    ZIPPED_COUNT_DIGITS,
    ZIPPED_EVENTS,
    DeletedRuns,
    FanOutItemRow,
    FanOutItemStatus,
    FanOutItemUpdate,
    Fence,
    GateApprovalState,
    ItemLineage,
    NewEvent,
    NewRun,
    NewStep,
    RetryRequest,
    RunStatus,
    StepStatus,
    StepUpdate,
    StoredEvent,
    WorkflowRun,
    WorkflowRunStep,
)
from runkon_flow.persistence.paths import default_db_path
from runkon_flow.persistence.schema import (
    ABANDONED_DESCENDANT_IDS,
    ABANDONED_DESCENDANTS,
    EVENT_COLUMNS,
    ITEM_CHILD_FAILED_STEPS,
    ITEM_CHILD_USAGE,
    ITEM_COLUMNS,
    RUN_COLUMNS,
    RUN_FINISHED_IN,
    RUN_UNFINISHED,
    STEP_COLUMNS,
    STEP_COPY_COLUMNS,
    UNFINISHED_DESCENDANT_IDS,
    UNFINISHED_DESCENDANTS,
    ensure_schema,
)

# Queued writes past which `try_flush` waits for the connection after all (about 20 fan-out items'
# ends): without it one thread ends up committing ever larger batches while the others queue,
# reports lag, a crash loses more ends, and the garbage collector walks thousands of queued rows.
_QUEUE_LIMIT = 64
_BUSY_TIMEOUT_S = 5.0  # how long a statement waits for another process's lock
_HISTORY_BATCH = 128  # queued history writes that a durable write takes along (one transaction)

P = ParamSpec("P")
R = TypeVar("R")
Op = Callable[[sqlite3.Cursor], Any]

_TERMINAL_IN = "(" + ", ".join(f"'{s}'" for s in sh.TERMINAL_STEP_STATUSES) + ")"
_GENERATION_MATCHES = (
    "(SELECT generation FROM workflow_runs r WHERE r.id = workflow_run_steps.workflow_run_id) = :generation"
)
_STEP_GUARD = f"WHERE id = :id AND status NOT IN {_TERMINAL_IN} AND {_GENERATION_MATCHES}"
_STEP_STARTING = (
    "UPDATE workflow_run_steps SET status = :status, child_run_id = :child_run_id, started_at = :now "
    + _STEP_GUARD
)
_STEP_TERMINAL = (
    "UPDATE workflow_run_steps SET status = :status, ended_at = :now, result_text = :result_text, "
    "context_out = :context_out, markers_out = :markers_out, structured_output = :structured_output, "
    "step_error = :step_error, child_run_id = COALESCE(:child_run_id, child_run_id), "
    "retry_count = COALESCE(:retry_count, retry_count), fan_out_total = COALESCE(:fan_total, fan_out_total), "
    "fan_out_completed = COALESCE(:fan_completed, fan_out_completed), "
    "fan_out_failed = COALESCE(:fan_failed, fan_out_failed), "
    "fan_out_skipped = COALESCE(:fan_skipped, fan_out_skipped), "
    f"usage = COALESCE(:usage, usage) {_STEP_GUARD}"
)
_RUN_EXISTS = "SELECT 1 FROM workflow_runs WHERE id = ?"
_ITEMS_TABLE = "workflow_run_step_fan_out_items"
_RUN_GENERATION = "SELECT generation FROM workflow_runs WHERE id = ?"
_RUN_OWNER = "SELECT owner_token FROM workflow_runs WHERE id = ?"
_STEP_COPY = (
    f"INSERT INTO workflow_run_steps (id, workflow_run_id, {STEP_COPY_COLUMNS}) "
    f"SELECT ?, ?, {STEP_COPY_COLUMNS} FROM workflow_run_steps WHERE id = ? AND workflow_run_id = ?"
)
_STEP_INSERT = (
    "INSERT INTO workflow_run_steps (id, workflow_run_id, step_name, role, can_commit, "
    "status, position, iteration, started_at, retry_count, gate_type, gate_prompt, "
    "gate_timeout, gate_options, ended_at, result_text, context_out, markers_out, structured_output, "
    "step_error, child_run_id, node_path) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Positions in a step insert row (what a folded update may change).
_S_RUN, _S_STATUS, _S_STARTED, _S_RETRY, _S_ENDED, _S_RESULT = 1, 5, 8, 9, 14, 15
_S_CONTEXT, _S_MARKERS, _S_OUTPUT, _S_ERROR, _S_CHILD = 16, 17, 18, 19, 20
_STEP_OTHER = f"UPDATE workflow_run_steps SET status = :status {_STEP_GUARD}"

_ITEM_RUNNING = (
    "UPDATE workflow_run_step_fan_out_items SET status = 'running', child_run_id = ?, dispatched_at = ?, "
    "completed_at = NULL WHERE id = ?"
)
_ITEM_PENDING = (
    "UPDATE workflow_run_step_fan_out_items SET status = 'pending', child_run_id = NULL, "
    "dispatched_at = NULL, completed_at = NULL WHERE id = ?"
)
_ITEM_TERMINAL = (
    "UPDATE workflow_run_step_fan_out_items SET status = ?, child_run_id = COALESCE(?, child_run_id), "
    "completed_at = ? WHERE id = ?"
)
_ITEM_INSERT = (
    "INSERT INTO workflow_run_step_fan_out_items "
    "(id, step_run_id, item_type, item_id, item_ref, status, context, attempt, previous_child_run_id) "
    "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (step_run_id, item_type, item_id) DO NOTHING"
)


#: How many events a row holds (`models.events_in_row`), in SQL: a packed row's lines, a zipped
#: row's count (kept in its `event_run_id`).
_EVENTS_IN_ROW = (
    f"CASE kind WHEN '{PACKED_EVENTS}' "
    "THEN length(payload) - length(replace(payload, char(10), '')) + 1 "
    f"WHEN '{ZIPPED_EVENTS}' THEN CASE WHEN event_run_id GLOB '[0-9]*' AND event_run_id NOT GLOB '*[^0-9]*' "
    f"AND length(event_run_id) <= {ZIPPED_COUNT_DIGITS} THEN CAST(event_run_id AS INTEGER) ELSE 1 END "
    "ELSE 1 END"
)
_EVENT_INSERT = "INSERT INTO workflow_run_events (run_id, seq, ts, event_run_id, kind, payload) VALUES "


_EVENTS_PER_INSERT = 128  # 6 parameters each: far below SQLite's limit


def _chunk_sizes(rows: int, most: int) -> Iterator[int]:
    """Rows per statement for `rows` rows: `most` (a power of two) at a time, the rest in powers
    of two — few distinct statement texts, so the connection's statement cache keeps them all
    prepared."""
    while rows >= most:
        yield most
        rows -= most
    size = most // 2
    while rows:
        if rows >= size:
            yield size
            rows -= size
        size //= 2


@functools.lru_cache(maxsize=64)
def _multi_row(head: str, width: int, rows: int) -> str:
    """`head` followed by `rows` groups of `width` placeholders."""
    return head + ", ".join(["(" + ", ".join("?" * width) + ")"] * rows)


_RUN_INSERT = (
    "INSERT INTO workflow_runs (id, workflow_name, parent_run_id, status, dry_run, "
    '"trigger", started_at, definition_snapshot, inputs, parent_workflow_run_id, iteration, '
    "workflow_title, owner_token, lease_until, generation, result_summary, error, ended_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Positions in a run insert row (what a folded finish may change).
_R_STATUS, _R_TOKEN, _R_LEASE, _R_GENERATION, _R_SUMMARY, _R_ERROR, _R_ENDED = 3, 12, 13, 14, 15, 16, 17
_RUN_FINISH = (
    "UPDATE workflow_runs SET status = ?, result_summary = ?, error = ?, ended_at = ?, blocked_on = NULL, "
    "owner_token = NULL, lease_until = NULL WHERE id = ? AND owner_token = ?"
)
_RUN_ENDED_SO = (
    "SELECT 1 FROM workflow_runs WHERE id = ? AND owner_token IS NULL AND lease_until IS NULL "
    "AND status = ? AND result_summary IS ? AND error IS ? AND ended_at IS ?"
)
_UNFINISHED_BELOW = UNFINISHED_DESCENDANTS.format(p="?")
_ITEM_CHILD_USAGE = ITEM_CHILD_USAGE.format(p="?")
_ITEM_CHILD_FAILED_STEPS = ITEM_CHILD_FAILED_STEPS.format(p="?")
_UNFINISHED_BELOW_IDS = UNFINISHED_DESCENDANT_IDS.format(p="?")


class _Rows(NamedTuple):
    """A table whose queued row inserts a batch writes in one multi-row INSERT."""

    rank: int  # order among merged inserts: runs before steps (a step's foreign key needs its run)
    head: str  # the INSERT up to VALUES
    width: int  # parameters per row


def _rows_of(rank: int, insert: str) -> _Rows:
    """The multi-row form of the one-row `insert`."""
    return _Rows(rank, insert.partition("VALUES")[0] + "VALUES ", insert.count("?"))


_RUN_ROWS = _rows_of(0, _RUN_INSERT)
_STEP_ROWS = _rows_of(1, _STEP_INSERT)

# Fan-out item updates of several writes in one statement each (SQLite 3.33+: UPDATE … FROM).
_ITEM_FROM = "UPDATE workflow_run_step_fan_out_items AS t SET {} FROM ({}) AS v WHERE t.id = v.column{}"
_ITEM_MERGED = {
    _ITEM_TERMINAL: (
        "status = v.column1, child_run_id = COALESCE(v.column2, t.child_run_id), completed_at = v.column3",
        4,
    ),
    _ITEM_RUNNING: (
        "status = 'running', child_run_id = v.column1, dispatched_at = v.column2, completed_at = NULL",
        3,
    ),
}
_CAN_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


_ROWS_PER_STATEMENT = 32  # ≤ 704 parameters: below the 999 of old SQLite builds


@functools.lru_cache(maxsize=64)
def _items_from(sql: str, rows: int) -> str:
    """The item update `sql` (a key of `_ITEM_MERGED`) for `rows` items in one statement."""
    assignments, width = _ITEM_MERGED[sql]
    return _ITEM_FROM.format(assignments, _multi_row("VALUES ", width, rows), width)


class _MergedMismatch(Exception):
    """A merged item update changed fewer rows than it had: the batch runs write by write, so the
    write with the unknown item reports its own error."""


def _run_shared(batch: list[_Write], cur: sqlite3.Cursor) -> list[Any]:
    """Run a batch's writes in order inside its transaction, merging neighbours where that
    changes nothing but the statement count: consecutive row inserts become one multi-row INSERT
    per table (runs first), consecutive fan-out item writes one UPDATE per kind of update (when
    no item is updated twice). A failure anywhere fails the batch, which then runs write by write."""
    results: list[Any] = [None] * len(batch)
    # The owners of the runs fencing item writes, looked up once per batch: between two item
    # groups only row inserts run (a queued child's run and step rows), which change no owner of
    # a run already looked up; any other write may (a finish, a lease) and empties it.
    owners: dict[str, str | None] = {}
    i, n = 0, len(batch)
    while i < n:
        shared = batch[i].shared
        j = i + 1
        if shared is None:
            results[i] = batch[i].fn(cur)
            if owners:
                owners.clear()
        elif type(shared) is tuple:  # row inserts
            tables: dict[_Rows, list] = {shared[0]: list(shared[1])}
            while j < n and type(batch[j].shared) is tuple:
                table, row = batch[j].shared
                params = tables.get(table)
                if params is None:
                    tables[table] = list(row)
                else:
                    params.extend(row)
                j += 1
            for table in sorted(tables, key=lambda t: t.rank):
                _insert_rows(cur, table, tables[table])
        else:  # fan-out item updates
            while j < n and type(batch[j].shared) is list:
                j += 1
            refused = _update_items(cur, batch[i:j], owners)
            if refused:
                for k in range(i, j):
                    if id(batch[k]) in refused:
                        results[k] = False
        i = j
    return results


def _insert_rows(cur: sqlite3.Cursor, table: _Rows, params: list) -> None:
    width = table.width
    start = 0
    for size in _chunk_sizes(len(params) // width, _ROWS_PER_STATEMENT):
        end = start + size * width
        chunk = params if start == 0 and end == len(params) else params[start:end]
        cur.execute(_multi_row(table.head, width, size), chunk)
        start = end


def _fenced(cur: sqlite3.Cursor, ops: list[_Write], owners: dict[str, str | None]) -> set[int]:
    """The item writes of `ops` whose fence fails (by `id`), each dropped and reported: one
    look-up of the owner per fenced run, kept in `owners` for the rest of the batch (a fan-out's
    workers share one), made in the batch's transaction after the writes before it (a nested
    fan-out's run row may be among them; its end comes only after its items were flushed)."""
    refused: set[int] = set()
    for op in ops:
        fence = op.fence
        if fence is None:
            continue
        run_id = fence.run_id
        if run_id not in owners:
            row = cur.execute(_RUN_OWNER, (run_id,)).fetchone()
            owners[run_id] = row[0] if row is not None else None
        if owners[run_id] != fence.token:
            refused.add(id(op))
            if op.behind:
                sh.items_refused_behind(fence, len(op.shared))
    return refused


def _apply_items(cur: sqlite3.Cursor, prepared: list[tuple[str, tuple]]) -> None:
    """One `batch_update_fan_out_items` call's statements; an unknown item fails it (by name)."""
    changed = 0
    for sql, group in itertools.groupby(prepared, key=lambda p: p[0]):
        changed += cur.executemany(sql, [params for _, params in group]).rowcount
    if changed != len(prepared):
        ids = [params[-1] for _, params in prepared]
        found = set()
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ", ".join("?" * len(part))
            found.update(
                r[0] for r in cur.execute(f"SELECT id FROM {_ITEMS_TABLE} WHERE id IN ({marks})", part)
            )
        missing = next((i for i in ids if i not in found), ids[0])
        raise PersistenceError(f"fan-out item {missing} not found")


def _update_items(cur: sqlite3.Cursor, ops: list[_Write], owners: dict[str, str | None]) -> set[int]:
    """Run a group of item writes (merged when it changes nothing but the statement count);
    the writes refused by their fence are left out and returned (by `id`)."""
    refused = _fenced(cur, ops, owners)
    if refused:
        ops = [op for op in ops if id(op) not in refused]
    updates = [u for op in ops for u in op.shared]
    ids = [params[-1] for _, params in updates]
    if len(ops) <= 1 or not _CAN_UPDATE_FROM or len(set(ids)) != len(ids):
        for op in ops:
            _apply_items(cur, op.shared)
        return refused
    by_kind: dict[str, list] = {}
    for sql, params in updates:
        by_kind.setdefault(sql, []).append(params)
    changed = 0
    for sql, rows in by_kind.items():
        merged = _ITEM_MERGED.get(sql)
        if merged is None:
            changed += cur.executemany(sql, rows).rowcount
            continue
        start = 0
        for size in _chunk_sizes(len(rows), _ROWS_PER_STATEMENT):
            params = [p for row in rows[start : start + size] for p in row]
            changed += cur.execute(_items_from(sql, size), params).rowcount
            start += size
    if changed != len(updates):
        raise _MergedMismatch
    return refused


def _take_all(queue: deque[_Write]) -> list[_Write]:
    """Every write in `queue`, oldest first, each sealed as it is taken (one atomic `popleft`
    each: a writer may append meanwhile, and its write is either taken or left queued)."""
    taken: list[_Write] = []
    pop = queue.popleft
    while True:
        try:
            op = pop()
        except IndexError:
            return taken
        op.sealed = True
        taken.append(op)


class _Write:
    """One queued write: `fn(conn)` runs inside the batch's transaction (or alone, see `single`)."""

    __slots__ = (
        "behind",
        "done",
        "error",
        "fence",
        "fn",
        "lead",
        "renewal",
        "result",
        "sealed",
        "shared",
        "single",
        "wake",
    )

    def __init__(
        self, fn: Op, single: bool, behind: bool, shared: Any = None, fence: Fence | None = None
    ) -> None:
        self.fn = fn
        # What a batch may run together with its neighbours' writes instead of `fn` (see
        # `_run_shared`): (`_Rows`, row) for a plain row insert, or the prepared item updates.
        self.shared = shared
        self.fence = fence  # an item write's: applied only while its token owns its run
        self.single = single  # one write statement: atomic on its own in autocommit
        # A lease renewal by its holder: an update in place, which may commit on a full disk, so
        # it is no news that the file takes writes again (`_run_batch`).
        self.renewal = False
        self.behind = behind  # durable=False: nobody waits for it; a failure is logged
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: threading.Lock | None = None  # held while its writer waits as a follower
        self.lead = False  # its writer was woken to lead, not because the write is done
        self.sealed = False  # taken by a drain: its row can no longer be folded into (`_fold`)


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Turn any sqlite3 failure into a PersistenceError that names the database file."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0]
            assert isinstance(store, SqliteStore)
            kind = StoreUnavailable if _takes_no_writes(exc) else PersistenceError
            raise kind(f"run database {store.path}: {exc}") from exc

    return wrapper


# SQLite's primary result codes (the low byte) saying the file takes no writes now, whatever the
# write: its disk is full, it became read-only, the disk failed.
_NO_WRITES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR})


def _takes_no_writes(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _NO_WRITES


class SqliteStore(Leadership):
    """A `WorkflowPersistence` in one SQLite file; the schema is created on first open.

    `path` defaults to `default_db_path()` ($RUNKON_DB, then the XDG state directory). `clock` is
    injectable so lease expiry can be tested without sleeping. Use `close()` (or `with`) when done.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        clock: sh.Clock = sh.system_clock,
    ) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self._clock = clock
        self._now = sh.now_function(clock)
        self._lock = threading.Lock()  # the connection
        # Durable writers' turns and the drain; never held while waiting for `_lock`, never taken
        # by a write-behind write (see `_write`).
        self._queue_lock = threading.Lock()
        self._pending: deque[_Write] = deque()  # durable writes and ordered write-behind ones
        self._pending_needs_history = False  # one of them touches a row the history queue writes
        self._history: deque[_Write] = deque()  # write-behind run, step and item writes (see _write)
        self._history_keys: set[str] = set()  # the rows they write (may name rows already drained)
        # "r:<run id>"/"s:<step id>" → (queued insert, its row): what `_fold` may still change
        self._foldable: dict[str, tuple[_Write, list]] = {}
        self._closed = False
        # Set while the file takes no writes (`_takes_no_writes`): said once, with the write-behind
        # failures meanwhile counted, not each logged (`_no_writes`, `_writes_again`).
        self._unavailable: StoreUnavailable | None = None
        self._failed_meanwhile = 0
        # run id → the token this store last gave its lease to: a later `acquire_lease` with it
        # is a renewal (`_Write.renewal`); dropped when the lease is released or not taken.
        self._lease_holders: dict[str, str] = {}
        self._db = self._open()
        self._cursor = self._db.cursor()  # writes reuse one cursor (conn.execute makes one per call)

    # ------------------------------------------------------------------ connections

    def _open(self) -> sqlite3.Connection:
        """Open the file (creating directories and schema) or explain clearly why it cannot be."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PersistenceError(
                f"cannot create the directory for run database {self.path}: {exc}"
            ) from None
        if self.path.is_dir():
            raise PersistenceError(f"run database {self.path} is a directory, not a file")
        existed = self.path.exists()
        if existed:
            check_runkon_file(self.path)  # read-only: a foreign file is refused before any change
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            if _switch_to_wal(conn).lower() != "wal":
                raise PersistenceError(f"run database {self.path} cannot be switched to WAL mode")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            ensure_schema(conn, str(self.path))
        except (sqlite3.Error, PersistenceError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, PersistenceError):
                raise
            if not existed and not self.path.exists():  # nothing to mistake: the file cannot be made
                raise PersistenceError(self._cannot_create(exc)) from None
            raise PersistenceError(
                f"cannot open run database {self.path}: {exc} (is it a runkon database? "
                "move it aside or point RUNKON_DB elsewhere)"
            ) from None
        return conn

    def _cannot_create(self, exc: sqlite3.Error) -> str:
        """Why a new database file cannot be made here, in the OS's words when it gives them. The
        probe is a file of its own: another process may create the database itself meanwhile."""
        why = str(exc)
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".probe", dir=self.path.parent)
        except OSError as os_exc:
            why = os_exc.strerror or why
        else:
            os.close(fd)
            with suppress(OSError):
                os.unlink(probe)
        return (
            f"cannot create run database {self.path}: {why} (its directory {self.path.parent} does not "
            "accept new files; choose another --db or RUNKON_DB)"
        )

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """The store's connection for a read, held exclusively. Queued write-behind writes are
        committed first, so a read never misses a write this process already made."""
        with self._lock:
            if self._closed:
                raise PersistenceError(f"run database {self.path} is closed")
            if self._pending or self._history:
                self._drain(None, everything=True)
            yield self._db

    def _write(
        self,
        fn: Callable[[sqlite3.Cursor], R],
        *,
        single: bool = True,
        durable: bool = True,
        key: str | None = None,
        foldable_row: list | None = None,
        needs: str | None = None,
        after_history: bool = False,
        shared: Any = None,
        fence: Fence | None = None,
        renewal: bool = False,
    ) -> R:
        """Queue the write `fn(cursor)`; unless `durable` is False, return its result once committed.

        Group commit: whichever thread holds the connection next runs every queued write — its
        own and other threads' — in one transaction, so concurrent writers share commits; a
        writer whose write was committed by another thread meanwhile just takes its result. If
        one write of a batch fails, the batch is rolled back and each write runs again alone, so
        a failure belongs to its own caller only.

        Write-behind (`durable=False`) writes are only queued. Those of run and step rows (`key`
        = "r:<run id>"/"s:<step id>") and fan-out item writes (`after_history`) wait in a history
        queue, committed in call order with the next read, `flush()`, `try_flush()`, `close()`,
        or durable write once enough have gathered (larger transactions are cheaper) — and always
        before a durable write of a row they wrote or insert (`key`, `needs`: a row the durable
        write depends on). Other write-behind writes (the event log) stay in call order with the
        durable ones.

        A write-behind write takes no lock: it is one `deque.append` (and a dict and a set entry
        for a row), atomic under the GIL, because a fan-out's workers make several per item and
        a lock they all take becomes a convoy of GIL hand-overs between the cores (docs/engine.md,
        "Why the fan-out takes no shared lock"). A drain takes the queues with `popleft` until
        they are empty — never by swapping them, which could lose a write appended meanwhile —
        the pending queue first, so every history write queued before a durable write it took
        is taken too; and it marks each write `sealed` before running it (see `_fold`).

        `after_history`: a write that takes every queued history write along (a fan-out item's
        end: the child run's own rows are committed with it, never after it).

        Folding: a queued write-behind INSERT registers its row under `key`; later write-behind
        updates of that row may change the queued row instead of queueing an UPDATE (`_fold`).
        Another write-behind write of the same row ends that, so folding never reorders writes.

        Leader and followers: one durable writer at a time (the leader) takes the connection and
        commits the queue; the others wait on their own write, not on the connection, and are
        woken one by one as the batch that holds their write commits — a chain of threads each
        taking the connection only to find its write done would cost a thread switch apiece.
        A leader done with its batch hands the lead to the oldest durable write still queued.

        `shared`: the write is also data a batch can merge with its neighbours' (`_run_shared`):
        fewer statements per commit, and fewer releases of the GIL by the thread that commits.
        """
        op = _Write(fn, single, not durable, shared, fence)
        op.renewal = renewal
        if not durable:
            if key is None and not after_history:
                self._pending.append(op)
                return None  # type: ignore[return-value]
            # In this order: a drain swaps the dict and the set before it takes the queue, so a
            # queued write's key is always in the set, and its row is foldable only until taken.
            if key is not None:
                if foldable_row is not None:
                    self._foldable[key] = (op, foldable_row)
                else:
                    self._foldable.pop(key, None)  # later changes of the row queue after this one
            self._history.append(op)
            if key is not None:
                self._history_keys.add(key)
            return None  # type: ignore[return-value]
        with self._queue_lock:
            self._pending.append(op)
            wake = self._enlist(op)
            history_keys = self._history_keys
            if (
                (after_history and self._history)
                or (key is not None and key in history_keys)
                or (needs is not None and needs in history_keys)
            ):
                self._pending_needs_history = True
        if wake is None or self._await_turn(op, wake):
            try:
                if not op.done:
                    with self._lock:
                        if not op.done:
                            self._drain(op, everything=False)
            finally:
                self._hand_over()
        if op.error is not None:
            raise op.error
        return op.result

    @_translated
    def flush(self) -> None:
        """Commit every queued write-behind write now. Also when nothing is queued, it waits for
        the connection: another thread may be committing writes it took from the queue, and a
        caller that reports what it queued (the report gate) must not report it before that."""
        with self._lock:
            self._drain(None, everything=True)

    @_translated
    def try_flush(self) -> bool:
        """Commit every queued write now, unless another thread is using the connection: then
        that thread (or the next caller) commits them, and this returns False without waiting.

        A fan-out worker calls it after queueing its item's end instead of waiting for a durable
        write: workers do not queue on the connection, and whichever finds it free commits
        everyone's ends in one transaction (docs/persistence.md, "What completed guarantees").
        Past `_QUEUE_LIMIT` queued writes it waits for the connection instead (back-pressure).
        True means every write queued before the call is committed: even with nothing queued,
        the connection is taken, because another thread may still be committing writes it took."""
        if not self._lock.acquire(blocking=False):
            if len(self._history) + len(self._pending) <= _QUEUE_LIMIT:
                return False
            self._lock.acquire()
        try:
            self._drain(None, everything=True)
        finally:
            self._lock.release()
        return True

    def _fold(self, key: str, change: Callable[[list], bool]) -> bool | None:
        """Apply `change` to the queued insert row of `key` if no drain has taken it; True when done,
        False when not (the row is unchanged), None when it may or may not have been.

        Without a lock: `change` edits a copy, which replaces the row's contents in one step, so
        a drain reads the row whole, before or after. A drain seals each write before it runs
        any: if the insert was sealed meanwhile, the drain may have read it either way, so this
        answers None and the caller queues its UPDATE too — which writes the same values again,
        or finds them there (a terminal step is never overwritten; a finish, fenced on the owner
        the fold has just cleared, is told `maybe_folded`), and nothing is lost."""
        entry = self._foldable.get(key)
        if entry is None or entry[0].sealed:
            return False
        op, row = entry
        changed = row.copy()
        if not change(changed):
            return False
        row[:] = changed
        return None if op.sealed else True

    def _drain(self, mine: _Write | None, *, everything: bool) -> None:
        """Run the queue as one batch (history first when it goes too); the caller holds the
        connection."""
        with self._queue_lock:
            batch = _take_all(self._pending)
            if everything or self._pending_needs_history or len(self._history) >= _HISTORY_BATCH:
                self._history_keys = set()
                self._foldable = {}
                batch[:0] = _take_all(self._history)
            self._pending_needs_history = False
        if not batch:
            return
        try:
            if self._closed:
                closed = PersistenceError(f"run database {self.path} is closed")
                for queued in batch:
                    queued.error, queued.done = closed, True
                return
            self._run_batch(batch)
        except BaseException:  # interrupted (KeyboardInterrupt…): the others' writes go back
            with self._queue_lock:
                self._pending.extendleft(reversed([w for w in batch if not w.done and w is not mine]))
                self._pending_needs_history = True  # conservative: history rows may be among them
            self._ensure_leader()
            raise
        finally:
            self._wake_done(batch)

    def _run_batch(self, batch: list[_Write]) -> None:
        """Run `batch` in one transaction. The one place a store that took no writes learns it
        takes them again: any batch that commits whole — one write alone in the queue (a resume's
        first, taking its run) as much as several — ends the state; a failed batch's writes run
        again each alone do not, as an update in place may fit where an insert cannot, and nor do
        lease renewals alone (a run waiting at a gate renews every few seconds on a full disk:
        each renewal would say "takes writes again", the next failed write "takes no writes")."""
        if self._ran_whole(batch) and self._unavailable is not None and not all(op.renewal for op in batch):
            self._writes_again()

    def _ran_whole(self, batch: list[_Write]) -> bool:
        """Run `batch`; True when it committed as one, every write of it without an error."""
        if len(batch) == 1:
            self._run_alone(batch[0])
            return batch[0].error is None
        conn = self._cursor
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # e.g. locked by another process for longer than the timeout
            self._failed(exc)
            for op in batch:
                op.error, op.done = exc, True
                self._report(op)
            return False
        try:
            with sh.refusals_told_on_commit():
                results = _run_shared(batch, conn)
                conn.execute("COMMIT")
        except Exception:
            _rollback(conn)
            for op in batch:  # isolate the failing write; the others succeed on their own
                self._run_alone(op)
            return False
        except BaseException:
            _rollback(conn)
            raise
        for op, result in zip(batch, results, strict=True):
            op.result, op.done = result, True
        return True

    def _run_alone(self, op: _Write) -> None:
        conn = self._cursor
        try:
            with sh.refusals_told_on_commit():
                if op.single:
                    op.result = op.fn(conn)
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        op.result = op.fn(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        _rollback(conn)
                        raise
        except Exception as exc:
            op.error = exc
            self._failed(exc)
            self._report(op)
        op.done = True

    def _report(self, op: _Write) -> None:
        if not op.behind:
            return
        if op.fence is not None and op.fence.on_failed is not None and op.error is not None:
            error = op.error
            if not isinstance(error, PersistenceError):
                kind = StoreUnavailable if _takes_no_writes(error) else PersistenceError
                error = kind(f"run database {self.path}: {error}")
            sh.tell_failed_behind(op.fence, error)
        if self._unavailable is not None:  # said once: a fan-out's thousand writes are one cause
            self._failed_meanwhile += 1
            return
        sh.log.warning("run database %s: a write-behind write failed: %s", self.path, op.error)

    def _failed(self, exc: BaseException) -> None:
        """A write failed (the caller holds the connection): if the file takes no writes now,
        the store is unavailable until one succeeds — said once."""
        if self._unavailable is None and _takes_no_writes(exc):
            self._unavailable = StoreUnavailable(f"run database {self.path}: {exc}")
            sh.log.warning(
                "run database %s takes no writes (%s): nothing more of a run is recorded until it "
                "does — a fan-out starts no further item; make room, then resume the run",
                self.path,
                exc,
            )

    def _writes_again(self) -> None:
        sh.log.warning(
            "run database %s takes writes again (%d write-behind writes failed meanwhile)",
            self.path,
            self._failed_meanwhile,
        )
        self._unavailable, self._failed_meanwhile = None, 0

    def unavailable(self) -> StoreUnavailable | None:
        """Why nothing can be recorded now (the file takes no writes), or None. A fan-out asks
        before each item it starts: its items' writes are queued, so no call of its fails."""
        return self._unavailable

    def close(self) -> None:
        """Close the connection; later calls raise PersistenceError. Closing twice is harmless."""
        with self._lock:
            if not self._closed:
                try:
                    self._drain(None, everything=True)  # queued writes are committed, not dropped
                finally:
                    self._closed = True
                    self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ runs

    @_translated
    def create_run(self, new_run: NewRun) -> WorkflowRun:
        return self._insert_run(new_run, RunStatus.PENDING, None, None, 0)

    @_translated
    def create_leased_run(
        self, new_run: NewRun, token: str, ttl_seconds: float, *, durable: bool = True
    ) -> WorkflowRun:
        """A new run already `running`, leased by `token` (generation 1) — one INSERT."""
        sh.check_ttl(ttl_seconds)
        if self._clock is sh.system_clock:
            until = sh.sqlite_lease_time_in(ttl_seconds)
        else:
            until = sh.sqlite_lease_time(self._clock() + timedelta(seconds=ttl_seconds))
        return self._insert_run(new_run, RunStatus.RUNNING, token, until, 1, durable)

    def _insert_run(
        self,
        new_run: NewRun,
        status: RunStatus,
        token: str | None,
        lease_until: str | None,
        generation: int,
        durable: bool = True,
    ) -> WorkflowRun:
        """Insert the row and return it as written (no read-back: every column is known here)."""
        run = sh.new_run_row(
            new_run,
            self._now(),
            status=status,
            owner_token=token,
            lease_until=lease_until,
            generation=generation,
        )
        row = [
            run.id,
            run.workflow_name,
            run.parent_run_id,
            status,
            int(run.dry_run),
            run.trigger,
            run.started_at,
            run.definition_snapshot,
            sh.dump_json(run.inputs),
            run.parent_workflow_run_id,
            run.iteration,
            run.workflow_title,
            token,
            lease_until,
            generation,
            None,
            None,
            None,
        ]

        def insert(conn: sqlite3.Cursor) -> None:
            try:
                conn.execute(_RUN_INSERT, row)
            except sqlite3.IntegrityError:
                if conn.execute(_RUN_EXISTS, (run.id,)).fetchone():
                    raise PersistenceError(f"run {run.id} already exists") from None
                raise

        self._write(insert, durable=durable, key="r:" + run.id, foldable_row=row, shared=(_RUN_ROWS, row))
        return run

    @_translated
    def get_run(self, run_id: str) -> WorkflowRun | None:
        with self._conn() as conn:
            row = conn.execute(f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = ?", (run_id,)).fetchone()
        return _run_from_row(row) if row else None

    @_translated
    def list_runs(self, limit: int = 500, parent_run_id: str | None = "") -> list[WorkflowRun]:
        """Newest first; "" → runs without a parent, None → all runs, an id → that run's children."""
        if parent_run_id is None:
            where, params = "", ()
        elif parent_run_id == "":
            where, params = (
                "WHERE COALESCE(parent_run_id, '') = '' AND COALESCE(parent_workflow_run_id, '') = ''",
                (),
            )
        else:
            where, params = (
                "WHERE parent_workflow_run_id = ? OR parent_run_id = ?",
                (parent_run_id, parent_run_id),
            )
        sql = f"SELECT {RUN_COLUMNS} FROM workflow_runs {where} ORDER BY started_at DESC, rowid DESC LIMIT ?"
        with self._conn() as conn:
            rows = conn.execute(sql, (*params, max(limit, 0))).fetchall()
        return [_run_from_row(r) for r in rows]

    @_translated
    def find_run_ids(self, part: str) -> list[str]:
        """Ids beginning or ending with `part` in any case, newest first. The match scans the id
        index alone; only the matching rows (each with its snapshot) are read, to order them."""
        part = part.upper()
        sql = (
            "SELECT id FROM workflow_runs WHERE id IN (SELECT id FROM workflow_runs "
            "WHERE upper(substr(id, 1, ?)) = ? OR upper(substr(id, -?)) = ?) "
            "ORDER BY started_at DESC, rowid DESC"
        )
        with self._conn() as conn:
            rows = conn.execute(sql, (len(part), part, len(part), part)).fetchall()
        return [r[0] for r in rows]

    @_translated
    def list_active_runs(self, statuses: list[RunStatus]) -> list[WorkflowRun]:
        """Runs in any of `statuses` (empty list → pending/running/waiting), newest first."""
        wanted, unfinished = sh.listed_statuses(statuses)
        marks = ", ".join("?" * len(wanted))
        sql = (
            f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE status IN ({marks}){unfinished} "
            "ORDER BY started_at DESC, rowid DESC"
        )
        with self._conn() as conn:
            rows = conn.execute(sql, wanted).fetchall()
        return [_run_from_row(r) for r in rows]

    @_translated
    def update_run_status(
        self, run_id: str, status: RunStatus, result_summary: str | None, error: str | None
    ) -> None:
        status = RunStatus(status)
        if status is RunStatus.WAITING:
            raise PersistenceError(sh.WAITING_REJECTED)
        ended_at = self._now() if status.is_terminal else None
        self._update_run(
            "UPDATE workflow_runs SET status = ?, result_summary = ?, error = ?, ended_at = ?, "
            "blocked_on = NULL WHERE id = ?",
            (status.value, result_summary, error, ended_at, run_id),
        )

    @_translated
    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        result_summary: str | None,
        error: str | None,
        token: str,
        *,
        durable: bool = True,
        on_refused: Callable[[], object] | None = None,
        abandoned: str | None = None,
        ended: list[str] | None = None,
    ) -> bool:
        """The final status and the lease release in one UPDATE (terminal statuses only), while
        `token` owns the run. The ids `abandoned` ends are read first in the same transaction."""
        status = sh.check_finish_status(status)
        now = self._now()
        if self._lease_holders:  # only runs this store leased with `acquire_lease` are in it
            self._lease_holders.pop(run_id, None)
        if not durable and abandoned is None:

            def fold(row: list) -> bool:
                if row[_R_TOKEN] != token:
                    return False  # the queued UPDATE is fenced, and logged
                row[_R_STATUS], row[_R_SUMMARY], row[_R_ERROR], row[_R_ENDED] = (
                    status,
                    result_summary,
                    error,
                    now,
                )
                row[_R_TOKEN] = row[_R_LEASE] = None
                return True

            folded = self._fold("r:" + run_id, fold)
            if folded:
                return True
            maybe_folded = folded is None
        else:
            maybe_folded = False

        def finish(conn: sqlite3.Cursor) -> bool | list[str]:
            if conn.execute(_RUN_FINISH, (status, result_summary, error, now, run_id, token)).rowcount:
                if abandoned is None:
                    return True
                below = [row[0] for row in conn.execute(_UNFINISHED_BELOW_IDS, (run_id,)).fetchall()]
                if below:  # the same rows: read and ended in one write transaction
                    conn.execute(_UNFINISHED_BELOW, (abandoned, now, run_id))
                return below
            # A drain took the queued insert while this finish was folded into it and read it with
            # the finish: the fence finds the owner the fold cleared, but the row ended just as
            # this finish ends it (the same status, texts and end time to the millisecond) —
            # written, not refused. Nothing is written here, so a run another engine ended
            # otherwise is left as it ended, and this finish is refused as before.
            ended = (run_id, status, result_summary, error, now)
            if maybe_folded and conn.execute(_RUN_ENDED_SO, ended).fetchone():
                return True
            if conn.execute("SELECT 1 FROM workflow_runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise PersistenceError(f"run {run_id} not found")
            if not durable:
                sh.finish_refused_behind(run_id, status, on_refused)
            return False

        single = abandoned is None  # else two statements, in one transaction
        written = self._write(finish, single=single, durable=durable, key="r:" + run_id)
        if isinstance(written, list) and ended is not None:
            ended[:] = written
        return written is not False

    @_translated
    def set_rerun_link(
        self, run_id: str, rerun_of: str, rerun_from: str, definition: str = "current"
    ) -> None:
        self._update_run(
            "UPDATE workflow_runs SET rerun_of = ?, rerun_from = ?, rerun_definition = ? WHERE id = ?",
            (rerun_of, rerun_from, definition, run_id),
        )

    @_translated
    def copy_steps(self, source_run_id: str, target_run_id: str, step_ids: Sequence[str]) -> list[str]:
        new_ids = [sh.new_ordered_id() for _ in step_ids]

        def copy(conn: sqlite3.Cursor) -> None:
            pairs = zip(new_ids, step_ids, strict=True)
            sh.copy_step_rows(conn, _RUN_EXISTS, _STEP_COPY, source_run_id, target_run_id, pairs)

        self._write(copy, single=False, key="r:" + target_run_id)
        return new_ids

    @_translated
    def set_retry_request(self, run_id: str, request: RetryRequest) -> None:
        self._update_run(
            "UPDATE workflow_runs SET retry_request = ? WHERE id = ?", (request.to_json(), run_id)
        )

    def set_waiting_blocked_on(self, run_id: str, blocked_on: dict) -> None:
        """The only way into `waiting`: status and what the run waits for change together."""
        self._update_run(
            "UPDATE workflow_runs SET status = 'waiting', blocked_on = ?, ended_at = NULL WHERE id = ?",
            (sh.dump_json(blocked_on), run_id),
        )

    def _update_run(self, sql: str, params: tuple, durable: bool = True) -> None:
        """One UPDATE of a run row; the run id is the last parameter."""

        def update(conn: sqlite3.Cursor) -> None:
            if conn.execute(sql, params).rowcount == 0:
                raise PersistenceError(f"run {params[-1]} not found")

        self._write(update, durable=durable, key="r:" + params[-1])

    @_translated
    def end_abandoned_descendants(self, run_id: str, error: str) -> list[str]:
        params = (error, self._now(), run_id)
        sql = ABANDONED_DESCENDANTS.format(p="?")
        ids_sql = ABANDONED_DESCENDANT_IDS.format(p="?")

        def end(conn: sqlite3.Cursor) -> list[str]:
            ended = [row[0] for row in conn.execute(ids_sql, (run_id,)).fetchall()]
            if ended:  # the same rows: read and ended in one write transaction
                conn.execute(sql, params)
            return ended

        return self._write(end, single=False)

    @_translated
    def request_cancel(self, run_id: str, error: str | None = None) -> bool:
        def update(conn: sqlite3.Cursor) -> bool:
            changed = conn.execute(
                "UPDATE workflow_runs SET status = 'cancelling', result_summary = NULL, error = ?, "
                f"ended_at = NULL, blocked_on = NULL WHERE id = ? AND {RUN_UNFINISHED}",
                (error, run_id),
            ).rowcount
            if (
                not changed
                and conn.execute("SELECT 1 FROM workflow_runs WHERE id = ?", (run_id,)).fetchone() is None
            ):
                raise PersistenceError(f"run {run_id} not found")
            return bool(changed)

        return bool(self._write(update, key="r:" + run_id))

    @_translated
    def start_run(self, run_id: str, *, resuming: bool) -> RunStatus | None:
        only, statuses = sh.startable(resuming)
        which = "IN" if only else "NOT IN"
        marks = ", ".join("?" * len(statuses))
        started = "" if resuming else ", started_at = ?"
        sql = (
            "UPDATE workflow_runs SET status = 'running', result_summary = NULL, error = NULL, "
            f"ended_at = NULL, blocked_on = NULL{started} WHERE id = ? AND status {which} ({marks})"
        )
        # A run started (not resumed) starts now, not when its row was written: a dashboard
        # writes the row before its background runner takes the run, a second or so earlier.
        params = (run_id, *statuses) if resuming else (self._now(), run_id, *statuses)

        def start(conn: sqlite3.Cursor) -> RunStatus | None:
            if conn.execute(sql, params).rowcount:
                return None
            row = conn.execute("SELECT status FROM workflow_runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise PersistenceError(f"run {run_id} not found")
            return RunStatus(row[0])

        return self._write(start, single=False, key="r:" + run_id)

    @_translated
    def is_run_cancelled(self, run_id: str) -> bool:
        with self._conn() as conn:
            row = conn.execute("SELECT status FROM workflow_runs WHERE id = ?", (run_id,)).fetchone()
        return row is not None and row[0] in (RunStatus.CANCELLED, RunStatus.CANCELLING)

    # ------------------------------------------------------------------ leases

    @_translated
    def acquire_lease(self, run_id: str, token: str, ttl_seconds: float) -> int | None:
        """Take or renew the run's lease; the generation moves only when the owner changes.

        Expiry is compared in SQL on `YYYY-MM-DD HH:MM:SS.SSS` UTC text, which sorts chronologically.
        """
        sh.check_ttl(ttl_seconds)
        now = self._clock()
        params = {
            "id": run_id,
            "token": token,
            "now": sh.sqlite_lease_time(now),
            "until": sh.sqlite_lease_time(now + timedelta(seconds=ttl_seconds)),
        }

        def acquire(conn: sqlite3.Cursor) -> int | None:
            cur = conn.execute(
                "UPDATE workflow_runs SET generation = generation + (owner_token IS NOT :token), "
                "owner_token = :token, lease_until = :until "
                "WHERE id = :id AND (owner_token IS NULL OR owner_token = :token OR lease_until IS NULL "
                "OR lease_until < :now)",
                params,
            )
            if cur.rowcount == 0:
                return None
            return conn.execute("SELECT generation FROM workflow_runs WHERE id = ?", (run_id,)).fetchone()[0]

        holders = self._lease_holders
        generation = self._write(
            acquire, single=False, key="r:" + run_id, renewal=holders.get(run_id) == token
        )
        if generation is None:
            holders.pop(run_id, None)
        else:
            holders[run_id] = token
        return generation

    @_translated
    def release_lease(self, run_id: str, token: str) -> None:
        """Hand the run back (clean shutdown) so another engine can take it without waiting."""
        params = (run_id, token)
        self._lease_holders.pop(run_id, None)
        self._write(
            lambda conn: conn.execute(
                "UPDATE workflow_runs SET owner_token = NULL, lease_until = NULL "
                "WHERE id = ? AND owner_token = ?",
                params,
            ),
            key="r:" + run_id,
        )

    # ------------------------------------------------------------------ steps

    @_translated
    def insert_step(self, new_step: NewStep, *, durable: bool = True) -> str:
        sh.check_role(new_step.role)
        step_id = sh.new_ordered_id()
        running = new_step.retry_count is not None
        row = [
            step_id,
            new_step.workflow_run_id,
            new_step.step_name,
            new_step.role,
            int(new_step.can_commit),
            StepStatus.RUNNING if running else StepStatus.PENDING,
            new_step.position,
            new_step.iteration,
            self._now() if running else None,
            new_step.retry_count or 0,
            new_step.gate_type,
            new_step.gate_prompt,
            new_step.gate_timeout,
            new_step.gate_options,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            new_step.node_path,
        ]

        def insert(conn: sqlite3.Cursor) -> None:
            try:
                conn.execute(_STEP_INSERT, row)
            except sqlite3.IntegrityError as exc:
                if "FOREIGN KEY" in str(exc):
                    raise PersistenceError(f"run {new_step.workflow_run_id} not found") from None
                raise

        self._write(
            insert,
            durable=durable,
            key="s:" + step_id,
            foldable_row=row,
            needs="r:" + new_step.workflow_run_id,
            shared=(_STEP_ROWS, row),
        )
        return step_id

    @_translated
    def update_step(self, step_id: str, update: StepUpdate, *, durable: bool = True) -> None:
        """Generation-guarded (stale → LeaseLost); a terminal row is never overwritten."""
        status = StepStatus(update.status)
        now = self._now()
        if not durable and self._fold("s:" + step_id, lambda row: self._fold_step(row, status, update, now)):
            return
        params = {"id": step_id, "generation": update.generation, "status": status, "now": now}
        if status.is_starting:
            sql = _STEP_STARTING
            params["child_run_id"] = update.child_run_id
        elif status.is_terminal:
            sql = _STEP_TERMINAL
            params.update(
                child_run_id=update.child_run_id,
                result_text=update.result_text,
                context_out=update.context_out,
                markers_out=update.markers_out,
                structured_output=update.structured_output,
                step_error=update.step_error,
                retry_count=update.retry_count,
            )
            fan = update.fan_out or (None, None, None, None)
            params.update(fan_total=fan[0], fan_completed=fan[1], fan_failed=fan[2], fan_skipped=fan[3])
            params["usage"] = update.usage
        else:
            sql = _STEP_OTHER

        def update_row(conn: sqlite3.Cursor) -> None:
            if conn.execute(sql, params).rowcount:
                return
            # Nothing matched: explain why (the generation only ever grows, so this is stable).
            row = conn.execute(
                "SELECT s.status, r.generation FROM workflow_run_steps s "
                "JOIN workflow_runs r ON r.id = s.workflow_run_id WHERE s.id = ?",
                (step_id,),
            ).fetchone()
            if row is None:
                raise PersistenceError(f"step {step_id} not found")
            if row[1] != update.generation or row[0] not in sh.TERMINAL_STEP_STATUSES:
                raise sh.lease_cancelled()
            # Already terminal with the right generation: a repeated terminal write is a silent no-op.

        self._write(update_row, durable=durable, key="s:" + step_id)

    def _fold_step(self, row: list, status: StepStatus, update: StepUpdate, now: str) -> bool:
        """A step update applied to the queued insert row, with `update_step`'s rules — only while its
        run's insert is queued too, so the generation to match is known."""
        run_entry = self._foldable.get("r:" + row[_S_RUN])
        if (
            run_entry is None
            or run_entry[0].sealed
            or run_entry[1][_R_GENERATION] != update.generation
            or update.fan_out is not None
        ):
            return False  # the queued UPDATE checks (and reports) it, and writes the fan-out counts
        if update.usage is not None:
            return False  # the insert row has no usage column: the queued UPDATE writes it
        if row[_S_STATUS].is_terminal:
            return True  # a terminal row is never overwritten
        row[_S_STATUS] = status
        if status.is_starting:
            row[_S_CHILD], row[_S_STARTED] = update.child_run_id, now
        elif status.is_terminal:
            row[_S_ENDED], row[_S_RESULT], row[_S_CONTEXT] = now, update.result_text, update.context_out
            row[_S_MARKERS], row[_S_OUTPUT] = update.markers_out, update.structured_output
            row[_S_ERROR] = update.step_error
            if update.child_run_id is not None:
                row[_S_CHILD] = update.child_run_id
            if update.retry_count is not None:
                row[_S_RETRY] = update.retry_count
        return True

    @_translated
    def get_steps(self, run_id: str) -> list[WorkflowRunStep]:
        """Ordered by position; rows at the same position (retries) in insertion order."""
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {STEP_COLUMNS} FROM workflow_run_steps WHERE workflow_run_id = ? "
                "ORDER BY position, id",
                (run_id,),
            ).fetchall()
        return [_step_from_row(r) for r in rows]

    @_translated
    def get_step(self, step_id: str) -> WorkflowRunStep | None:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT {STEP_COLUMNS} FROM workflow_run_steps WHERE id = ?", (step_id,)
            ).fetchone()
        return _step_from_row(row) if row else None

    @_translated
    def find_gate_ids(self, part: str) -> list[str]:
        """Gate step ids beginning or ending with `part` in any case, oldest first (the protocol)."""
        part = part.upper()
        sql = (
            "SELECT id FROM workflow_run_steps WHERE role = 'gate' "
            "AND (upper(substr(id, 1, ?)) = ? OR upper(substr(id, -?)) = ?) ORDER BY id"
        )
        with self._conn() as conn:
            rows = conn.execute(sql, (len(part), part, len(part), part)).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ gates

    @_translated
    def get_gate_approval(self, step_id: str) -> GateApprovalState:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT gate_approved_at, status, gate_feedback, gate_selections, gate_approved_by "
                "FROM workflow_run_steps WHERE id = ?",
                (step_id,),
            ).fetchone()
        return sh.approval_state(*row) if row else GateApprovalState.pending()

    def _open_gate(self, conn: sqlite3.Cursor, step_id: str) -> str | None:
        """The gate's options, after checking it exists and is not resolved yet."""
        row = conn.execute(
            "SELECT status, gate_options FROM workflow_run_steps WHERE id = ?", (step_id,)
        ).fetchone()
        if row is None:
            raise PersistenceError(f"step {step_id} not found")
        if row[0] in sh.TERMINAL_STEP_STATUSES:
            raise sh.gate_already_resolved(step_id, row[0])
        return row[1]

    @_translated
    def approve_gate(
        self, step_id: str, approved_by: str, feedback: str | None, selections: list[str] | None
    ) -> None:
        now = self._now()

        def approve(conn: sqlite3.Cursor) -> None:
            sh.validate_gate_selections(step_id, self._open_gate(conn, step_id), selections or [])
            conn.execute(
                "UPDATE workflow_run_steps SET gate_approved_at = ?, gate_approved_by = ?, "
                "gate_feedback = ?, gate_selections = ?, context_out = COALESCE(?, context_out), "
                "status = 'completed', ended_at = ? WHERE id = ?",
                (
                    now,
                    approved_by,
                    feedback,
                    sh.dump_json(list(selections)) if selections is not None else None,
                    sh.selection_context(selections) if selections else None,
                    now,
                    step_id,
                ),
            )

        self._write(approve, single=False, key="s:" + step_id)

    @_translated
    def reject_gate(self, step_id: str, rejected_by: str, feedback: str | None) -> None:
        now = self._now()

        def reject(conn: sqlite3.Cursor) -> None:
            self._open_gate(conn, step_id)
            conn.execute(
                "UPDATE workflow_run_steps SET gate_approved_by = ?, gate_feedback = ?, status = 'failed', "
                "ended_at = ? WHERE id = ?",
                (rejected_by, feedback, now, step_id),
            )

        self._write(reject, single=False, key="s:" + step_id)

    # ------------------------------------------------------------------ fan-out items

    def insert_fan_out_item(
        self, step_run_id: str, item_type: str, item_id: str, item_ref: str, context: dict[str, str]
    ) -> str:
        """Idempotent on (step, type, id): a repeat returns the existing row's id untouched."""
        return self.insert_fan_out_items(step_run_id, [(item_type, item_id, item_ref, context)])[0]

    @_translated
    def insert_fan_out_items(
        self,
        step_run_id: str,
        items: list[tuple[str, str, str, dict[str, str]]],
        lineage: Sequence[ItemLineage] | None = None,
    ) -> list[str]:
        """One transaction for the whole batch; ids come back in the order of `items`."""
        if not items:
            with self._conn() as conn:
                self._require_step(conn, step_run_id)
            return []
        lines = lineage if lineage is not None else [_FIRST_ATTEMPT] * len(items)
        rows = [
            (sh.new_ordered_id(), step_run_id, t, i, ref, sh.dump_json(ctx) if ctx else "{}", *line)
            for (t, i, ref, ctx), line in zip(items, lines, strict=True)
        ]

        def insert(conn: sqlite3.Cursor) -> list[str]:
            self._require_step(conn, step_run_id)
            inserted = conn.executemany(_ITEM_INSERT, rows).rowcount
            if inserted == len(rows):
                return [r[0] for r in rows]
            existing = {
                (t, i): item
                for item, t, i in conn.execute(
                    "SELECT id, item_type, item_id FROM workflow_run_step_fan_out_items "
                    "WHERE step_run_id = ?",
                    (step_run_id,),
                )
            }
            return [existing[(t, i)] for t, i, _, _ in items]

        return self._write(insert, single=False, needs="s:" + step_run_id)

    @staticmethod
    def _require_step(conn: sqlite3.Connection | sqlite3.Cursor, step_id: str) -> None:
        if conn.execute("SELECT 1 FROM workflow_run_steps WHERE id = ?", (step_id,)).fetchone() is None:
            raise PersistenceError(f"step {step_id} not found")

    @_translated
    def update_fan_out_item(self, item_id: str, update: FanOutItemUpdate) -> None:
        sql, params = _item_update(item_id, update, self._now())

        def update_item(conn: sqlite3.Cursor) -> None:
            if conn.execute(sql, params).rowcount == 0:
                raise PersistenceError(f"fan-out item {item_id} not found")

        self._write(update_item)

    @_translated
    def batch_update_fan_out_items(
        self,
        updates: list[tuple[str, FanOutItemUpdate]],
        *,
        durable: bool = True,
        fence: Fence | None = None,
    ) -> bool:
        """One transaction, all or nothing: an unknown item id rolls the whole batch back. With a
        `fence`, applied only while its token owns its run (checked in the same transaction)."""
        if not updates:
            return True
        now = self._now()
        prepared = [_item_update(item_id, update, now) for item_id, update in updates]

        def update_items(conn: sqlite3.Cursor) -> bool:
            if fence is not None:
                row = conn.execute(_RUN_OWNER, (fence.run_id,)).fetchone()
                if row is None or row[0] != fence.token:
                    if not durable:
                        sh.items_refused_behind(fence, len(prepared))
                    return False
            _apply_items(conn, prepared)
            return True

        # An item write takes the queued history along: an item committed finished has its child's
        # run and step rows committed too.
        written = self._write(
            update_items, single=False, durable=durable, after_history=True, shared=prepared, fence=fence
        )
        return written is not False

    @_translated
    def get_fan_out_items(
        self, step_run_id: str, status_filter: FanOutItemStatus | None = None
    ) -> list[FanOutItemRow]:
        """Insertion order (ids are monotonic); optionally only items in `status_filter`."""
        sql = f"SELECT {ITEM_COLUMNS} FROM workflow_run_step_fan_out_items WHERE step_run_id = ?"
        params: tuple[str, ...] = (step_run_id,)
        if status_filter is not None:
            sql += " AND status = ?"
            params += (FanOutItemStatus(status_filter).value,)
        with self._conn() as conn:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        return [_item_from_row(r) for r in rows]

    @_translated
    def item_child_usage(self, step_run_id: str) -> list[tuple[str, str]]:
        """(child run id, usage JSON) of every step row that reported usage in the child runs of
        a foreach step row's items: one query for a whole fan-out (`show --items`). Optional,
        outside the protocol (docs/persistence.md)."""
        with self._conn() as conn:
            rows = conn.execute(_ITEM_CHILD_USAGE, (step_run_id,)).fetchall()
        return [(r[0], r[1]) for r in rows]

    @_translated
    def item_child_failed_steps(self, step_run_id: str) -> list[WorkflowRunStep]:
        """The step rows that failed with an error (failed, timed out or cancelled) in the child
        runs of a foreach step row's items: one query for a whole fan-out (`show`'s failed items
        and failure clusters). Optional, outside the protocol (docs/persistence.md)."""
        with self._conn() as conn:
            rows = conn.execute(_ITEM_CHILD_FAILED_STEPS, (step_run_id,)).fetchall()
        return [_step_from_row(r) for r in rows]

    # ------------------------------------------------------------------ event log

    @_translated
    def append_events(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        durable: bool = True,
        generation: int | None = None,
    ) -> bool:
        """One write for the batch, numbered on from the stream's last `seq` inside the transaction
        (so two writers of one stream can never collide); with a `generation`, only while the
        run's is that one (the same look-up as the run's existence)."""
        if not events:
            return True
        batch = list(events)

        def append(conn: sqlite3.Cursor) -> bool:
            row = conn.execute(_RUN_GENERATION, (run_id,)).fetchone()
            if row is None:
                raise PersistenceError(f"run {run_id} not found")
            if generation is not None and row[0] != generation:
                sh.log.warning(sh.EVENTS_FENCED, run_id, len(batch))
                return False
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM workflow_run_events WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            # Many rows per statement: one statement step (and one release of the GIL) for up to
            # 128 rows, instead of one per row as executemany does.
            start = 0
            for size in _chunk_sizes(len(batch), _EVENTS_PER_INSERT):
                params: list = []
                add = params.extend
                for e in batch[start : start + size]:
                    seq += 1
                    add((run_id, seq, *e))
                conn.execute(_multi_row(_EVENT_INSERT, 6, size), params)
                start += size
            return True

        return self._write(append, single=False, durable=durable, needs="r:" + run_id) is not False

    @_translated
    def read_events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM workflow_run_events WHERE run_id = ? AND seq > ? ORDER BY seq"
        params: tuple = (run_id, after_seq)
        if limit is not None:
            sql += " LIMIT ?"
            params += (max(limit, 0),)
        with self._conn() as conn:
            return [StoredEvent(*row) for row in conn.execute(sql, params).fetchall()]

    @_translated
    def read_events_at(self, run_id: str, seqs: Sequence[int]) -> list[StoredEvent]:
        wanted = sorted(set(seqs))
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        where = f"run_id = ? AND seq IN ({marks})"
        sql = f"SELECT {EVENT_COLUMNS} FROM workflow_run_events WHERE {where} ORDER BY seq"
        with self._conn() as conn:
            return [StoredEvent(*row) for row in conn.execute(sql, (run_id, *wanted)).fetchall()]

    @_translated
    def last_event_seq(self, run_id: str) -> int:
        sql = "SELECT COALESCE(MAX(seq), 0) FROM workflow_run_events WHERE run_id = ?"
        with self._conn() as conn:
            return int(conn.execute(sql, (run_id,)).fetchone()[0])

    @_translated
    def delete_finished_runs(self, ended_before: str) -> DeletedRuns:
        """One transaction; the runs to delete are gathered in a temporary table. A run whose
        lease is live is kept: a retry or resume has taken it and is about to mark it running."""
        now = sh.sqlite_lease_time(self._clock())

        def delete(conn: sqlite3.Cursor) -> DeletedRuns:
            roots = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM workflow_runs WHERE status IN {RUN_FINISHED_IN} AND ended_at < ? "
                    "AND COALESCE(parent_run_id, '') = '' AND COALESCE(parent_workflow_run_id, '') = '' "
                    "AND (owner_token IS NULL OR lease_until IS NULL OR lease_until < ?)",
                    (ended_before, now),
                )
            ]
            if not roots:
                return DeletedRuns()
            children: dict[str, list[str]] = {}
            for child, *parents in conn.execute(
                "SELECT id, parent_run_id, parent_workflow_run_id FROM workflow_runs "
                "WHERE COALESCE(parent_run_id, '') != '' OR COALESCE(parent_workflow_run_id, '') != ''"
            ):
                for parent in set(parents) - {"", None}:
                    children.setdefault(parent, []).append(child)
            doomed = sh.descendants(roots, children)
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS gc_runs (id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM temp.gc_runs")
            conn.executemany("INSERT INTO temp.gc_runs (id) VALUES (?)", [(r,) for r in doomed])
            events = conn.execute(
                f"SELECT COALESCE(SUM({_EVENTS_IN_ROW}), 0) FROM workflow_run_events "
                "WHERE run_id IN (SELECT id FROM temp.gc_runs)"
            ).fetchone()[0]
            conn.execute("DELETE FROM workflow_run_events WHERE run_id IN (SELECT id FROM temp.gc_runs)")
            items = conn.execute(
                "DELETE FROM workflow_run_step_fan_out_items WHERE step_run_id IN (SELECT s.id FROM "
                "workflow_run_steps s WHERE s.workflow_run_id IN (SELECT id FROM temp.gc_runs))"
            ).rowcount
            steps = conn.execute(
                "DELETE FROM workflow_run_steps WHERE workflow_run_id IN (SELECT id FROM temp.gc_runs)"
            ).rowcount
            conn.execute("DELETE FROM workflow_runs WHERE id IN (SELECT id FROM temp.gc_runs)")
            conn.execute("DELETE FROM temp.gc_runs")
            return DeletedRuns(len(roots), len(doomed) - len(roots), steps, items, events)

        return self._write(delete, single=False)


# ---------------------------------------------------------------------- row mapping


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """`PRAGMA journal_mode = WAL`, tried again while the file is locked, for as long as the busy
    timeout. Processes creating the file together (the first runs on a machine) each hold the
    shared lock the others' switch needs: SQLite then answers "database is locked" at once rather
    than wait, which would deadlock (tests/persistence/test_sqlite.py)."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.001, 0.02))  # apart, so that one of them goes first


def _rollback(conn: sqlite3.Cursor) -> None:
    if conn.connection.in_transaction:
        conn.execute("ROLLBACK")


def _item_update(item_id: str, update: FanOutItemUpdate, now: str) -> tuple[str, tuple]:
    status = FanOutItemStatus(update.status)
    if status is FanOutItemStatus.RUNNING:
        return _ITEM_RUNNING, (update.child_run_id, now, item_id)
    if status is FanOutItemStatus.PENDING:
        return _ITEM_PENDING, (item_id,)
    return _ITEM_TERMINAL, (status, update.child_run_id, now, item_id)


def _run_from_row(row: tuple) -> WorkflowRun:
    return WorkflowRun(
        id=row[0],
        workflow_name=row[1],
        parent_run_id=row[2] or "",
        status=RunStatus(row[3]),
        dry_run=bool(row[4]),
        trigger=row[5],
        started_at=row[6],
        ended_at=row[7],
        result_summary=row[8],
        definition_snapshot=row[9],
        inputs=sh.load_json_object(row[10], "workflow_runs.inputs"),
        parent_workflow_run_id=row[11],
        iteration=row[12],
        blocked_on=sh.load_blocked_on(row[13]),
        total_duration_ms=row[14],
        error=row[15],
        dismissed=bool(row[16]),
        workflow_title=row[17],
        owner_token=row[18],
        lease_until=row[19],
        generation=row[20],
        retry_request=row[21],
        rerun_of=row[22],
        rerun_from=row[23],
        rerun_definition=row[24],
    )


def _step_from_row(row: tuple) -> WorkflowRunStep:
    return WorkflowRunStep(
        id=row[0],
        workflow_run_id=row[1],
        step_name=row[2],
        role=row[3],
        can_commit=bool(row[4]),
        condition_expr=row[5],
        status=StepStatus(row[6]),
        child_run_id=row[7],
        position=row[8],
        started_at=row[9],
        ended_at=row[10],
        result_text=row[11],
        condition_met=None if row[12] is None else bool(row[12]),
        iteration=row[13],
        parallel_group_id=row[14],
        context_out=row[15],
        markers_out=row[16],
        retry_count=row[17],
        gate_type=row[18],
        gate_prompt=row[19],
        gate_timeout=row[20],
        gate_approved_by=row[21],
        gate_approved_at=row[22],
        gate_feedback=row[23],
        structured_output=row[24],
        output_file=row[25],
        gate_options=row[26],
        gate_selections=row[27],
        fan_out_total=row[28],
        fan_out_completed=row[29] or 0,
        fan_out_failed=row[30] or 0,
        fan_out_skipped=row[31] or 0,
        step_error=row[32],
        node_path=row[33],
        usage=row[34],
    )


def _item_from_row(row: tuple) -> FanOutItemRow:
    context = row[9]
    return FanOutItemRow(
        id=row[0],
        step_run_id=row[1],
        item_type=row[2],
        item_id=row[3],
        item_ref=row[4],
        child_run_id=row[5],
        status=_ITEM_STATUS.get(row[6]) or FanOutItemStatus(row[6]),
        dispatched_at=row[7],
        completed_at=row[8],
        context={}
        if not context or context == "{}"
        else sh.load_json_object(context, "fan-out item context"),
        attempt=row[10] if row[10] is not None else 1,
        previous_child_run_id=row[11],
    )


_ITEM_STATUS = {s.value: s for s in FanOutItemStatus}
_FIRST_ATTEMPT = ItemLineage()

__all__ = ["SqliteStore"]
