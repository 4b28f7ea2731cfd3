"""The PostgreSQL `WorkflowPersistence` (psycopg 3, optional extra `runkon-tui[postgres]`): one run
store shared by many processes and machines.

Same rules as the SQLite store (docs/persistence.md; the same contract suite), and the same shape:
one connection per store guarded by a lock, durable writes group-committed (whichever thread holds
the connection runs every queued write in one transaction), write-behind (`durable=False`) run and
step writes queued, folded and sent in batches (`executemany`, pipelined by psycopg). What is
PostgreSQL's own:

* **Server clock.** Lease times (`lease_until`, expiry) are computed and compared with the
  server's `clock_timestamp()`, never a client's: engines on machines whose clocks disagree still
  agree on who holds a run. (An injected `clock` replaces it, for tests that move time.)
* **Fencing under READ COMMITTED.** A step update locks its run row `FOR SHARE` and checks the
  generation on that locked, latest version in the same statement. A takeover (`acquire_lease`,
  an UPDATE of the run row) waits for the step write's transaction and vice versa, so a
  superseded engine's write can never land after another engine took the run.
* **Commits.** Durable writes commit synchronously. Queued write-behind writes (rows a resume
  rebuilds) commit with `synchronous_commit = off` when they ride ahead of a read or a durable
  write (whose synchronous commit makes them durable too); `flush()` and `close()` commit them
  synchronously.
* **Notifications.** Gate decisions and cancel requests `NOTIFY runkon` in their transaction; a
  listener thread wakes the engine that waits (gates at once; cancels are also polled, 1 s).
* **Errors** are one-line `PersistenceError`s naming the DSN without its password.
* **Outages.** A call whose connection is lost or cannot be made (a server restart, a failover)
  waits for the server — a new connection tried with backoff — for up to the outage window
  (`RUNKON_PG_OUTAGE_S`, 30 s; 0: no waiting), said once when it begins and once when it ends,
  and is then run again where that is safe (`_Write.retry_safe`, docs/persistence.md).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import random
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime, timedelta
from typing import Any, NamedTuple, ParamSpec, TypeVar

from runkon_flow.errors import NoRunDatabase, PersistenceError, StoreUnavailable
from runkon_flow.persistence import _shared as sh
from runkon_flow.persistence import postgres_schema as pgs
from runkon_flow.persistence._leader import Leadership
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
from runkon_flow.persistence.notify import cancel_requested, gate_decided
from runkon_flow.persistence.pg_connect import (
    connect,
    connect_failure,
    display_dsn,
    error_line,
    open_connection,
    outages_left_to_the_reader,
    tell_outage,
)
from runkon_flow.persistence.schema import (
    ABANDONED_DESCENDANTS,
    ENDED_DESCENDANT_IDS,
    EVENT_COLUMNS,
    ITEM_CHILD_FAILED_STEPS,
    ITEM_CHILD_USAGE,
    ITEM_COLUMNS,
    RUN_COLUMNS,
    RUN_FINISHED_IN,
    RUN_UNFINISHED,
    STEP_COLUMNS,
    STEP_COPY_COLUMNS,
    UNFINISHED_DESCENDANTS,
)

# Row mapping is the SQLite store's: both return the same columns in the same order.
from runkon_flow.persistence.sqlite import _item_from_row, _run_from_row, _step_from_row

try:
    import psycopg
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger("runkon_flow.persistence")

_HISTORY_BATCH = 128  # queued write-behind run/step writes that a durable write takes along
OUTAGE_ENV = "RUNKON_PG_OUTAGE_S"
OUTAGE_SECONDS = 30.0  # how long a store call waits for a server that went away (default)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 2.0  # seconds between attempts to connect again: doubling
# Server errors that mean the connection is gone or cannot be made now (the server shutting down
# or starting up); class 08 is every connection exception.
_UNREACHABLE_STATES = {"57P01", "57P02", "57P03"}
#: How many times a write run alone is run again after PostgreSQL aborted it to break a deadlock
#: (40P01) or a serialization failure (40001): rolled back whole, nothing of it committed.
_CONFLICT_RETRIES = 3
CHANNEL = "runkon"

P = ParamSpec("P")
R = TypeVar("R")
Op = Callable[[Any], Any]

_TERMINAL_IN = "(" + ", ".join(f"'{s}'" for s in sh.TERMINAL_STEP_STATUSES) + ")"
# The run row locked FOR SHARE: a concurrent takeover is waited for and its generation seen.
_RUN_LOCK = (
    "WITH r AS (SELECT generation FROM workflow_runs WHERE id = "
    "(SELECT workflow_run_id FROM workflow_run_steps WHERE id = %(id)s) FOR SHARE) "
)
_STEP_GUARD = (
    f"WHERE id = %(id)s AND status NOT IN {_TERMINAL_IN} AND (SELECT generation FROM r) = %(generation)s"
)
_STEP_STARTING = (
    _RUN_LOCK + "UPDATE workflow_run_steps SET status = %(status)s, child_run_id = %(child_run_id)s, "
    "started_at = %(now)s " + _STEP_GUARD
)
_STEP_TERMINAL = (
    _RUN_LOCK + "UPDATE workflow_run_steps SET status = %(status)s, ended_at = %(now)s, "
    "result_text = %(result_text)s, context_out = %(context_out)s, markers_out = %(markers_out)s, "
    "structured_output = %(structured_output)s, step_error = %(step_error)s, "
    "child_run_id = COALESCE(%(child_run_id)s, child_run_id), "
    "retry_count = COALESCE(%(retry_count)s, retry_count), "
    "fan_out_total = COALESCE(%(fan_total)s, fan_out_total), "
    "fan_out_completed = COALESCE(%(fan_completed)s, fan_out_completed), "
    "fan_out_failed = COALESCE(%(fan_failed)s, fan_out_failed), "
    "fan_out_skipped = COALESCE(%(fan_skipped)s, fan_out_skipped), "
    "usage = COALESCE(%(usage)s, usage) " + _STEP_GUARD
)
_STEP_OTHER = _RUN_LOCK + "UPDATE workflow_run_steps SET status = %(status)s " + _STEP_GUARD
_RUN_EXISTS = "SELECT 1 FROM workflow_runs WHERE id = %s"
_STEP_COPY = (
    f"INSERT INTO workflow_run_steps (id, workflow_run_id, {STEP_COPY_COLUMNS}) "
    f"SELECT %s, %s, {STEP_COPY_COLUMNS} FROM workflow_run_steps WHERE id = %s AND workflow_run_id = %s"
)
# The columns of a step insert row, in its order (the queued row and the batch's JSON rows alike).
_STEP_INTO = (
    "INSERT INTO workflow_run_steps (id, workflow_run_id, step_name, role, can_commit, "
    "status, position, iteration, started_at, retry_count, gate_type, gate_prompt, "
    "gate_timeout, gate_options, ended_at, result_text, context_out, markers_out, structured_output, "
    "step_error, child_run_id, node_path) "
)
_STEP_INSERT = _STEP_INTO + "VALUES (" + ", ".join(["%s"] * 22) + ")"
# Positions in a step insert row (what a folded update may change).
_S_RUN, _S_STATUS, _S_STARTED, _S_RETRY, _S_ENDED, _S_RESULT = 1, 5, 8, 9, 14, 15
_S_CONTEXT, _S_MARKERS, _S_OUTPUT, _S_ERROR, _S_CHILD = 16, 17, 18, 19, 20

_ITEM_RUNNING = (
    "UPDATE workflow_run_step_fan_out_items SET status = 'running', child_run_id = %s, "
    "dispatched_at = %s, completed_at = NULL WHERE id = %s"
)
_ITEM_PENDING = (
    "UPDATE workflow_run_step_fan_out_items SET status = 'pending', child_run_id = NULL, "
    "dispatched_at = NULL, completed_at = NULL WHERE id = %s"
)
_ITEM_TERMINAL = (
    "UPDATE workflow_run_step_fan_out_items SET status = %s, child_run_id = COALESCE(%s, child_run_id), "
    "completed_at = %s WHERE id = %s"
)
_ITEM_INSERT = (
    "INSERT INTO workflow_run_step_fan_out_items "
    "(id, step_run_id, item_type, item_id, item_ref, status, context, attempt, previous_child_run_id) "
    "SELECT i, %s, t, n, r, 'pending', c, a, p FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::int[], %s::text[]) WITH ORDINALITY AS u(i, t, n, r, c, a, p, o) ORDER BY o "
    "ON CONFLICT (step_run_id, item_type, item_id) DO NOTHING"
)

# The columns of a run insert row, in its order (the queued row and the batch's JSON rows alike).
_RUN_INTO = (
    "INSERT INTO workflow_runs (id, workflow_name, parent_run_id, status, dry_run, "
    '"trigger", started_at, definition_snapshot, inputs, parent_workflow_run_id, iteration, '
    "workflow_title, owner_token, lease_until, generation, result_summary, error, ended_at) "
)
_RUN_INSERT_HEAD = _RUN_INTO + "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
_RUN_INSERT_TAIL = ", %s, %s, %s, %s)"
# Positions in a run insert row (what a folded finish may change); _R_LEASE holds the TTL in
# seconds (server clock) or the lease end (injected clock); None → no lease.
_R_STATUS, _R_TOKEN, _R_LEASE, _R_GENERATION, _R_SUMMARY, _R_ERROR, _R_ENDED = 3, 12, 13, 14, 15, 16, 17
_RUN_FINISH = (
    "UPDATE workflow_runs SET status = %s, result_summary = %s, error = %s, ended_at = %s, "
    "blocked_on = NULL, owner_token = NULL, lease_until = NULL WHERE id = %s AND owner_token = %s"
)
_UNFINISHED_BELOW = UNFINISHED_DESCENDANTS.format(p="%s") + " RETURNING id"
_ENDED_BELOW = ENDED_DESCENDANT_IDS.format(p="%s")
_ITEM_CHILD_USAGE = ITEM_CHILD_USAGE.format(p="%s")
_ITEM_CHILD_FAILED_STEPS = ITEM_CHILD_FAILED_STEPS.format(p="%s")
_CANCEL_STATUSES = (RunStatus.CANCELLED, RunStatus.CANCELLING)
#: How many events a row holds (`models.events_in_row`), in SQL: a packed row's lines, a zipped
#: row's count (kept in its `event_run_id`).
_EVENTS_IN_ROW = (
    f"CASE kind WHEN '{PACKED_EVENTS}' "
    "THEN length(payload) - length(replace(payload, chr(10), '')) + 1 "
    f"WHEN '{ZIPPED_EVENTS}' THEN CASE WHEN event_run_id ~ '^[0-9]{{1,{ZIPPED_COUNT_DIGITS}}}$' "
    "THEN CAST(event_run_id AS BIGINT) ELSE 1 END ELSE 1 END"
)
_EVENT_INSERT = (
    "INSERT INTO workflow_run_events (run_id, seq, ts, event_run_id, kind, payload) "
    "SELECT %s, %s + o, ts, r, k, p FROM unnest(%s::float8[], %s::text[], %s::text[], %s::text[]) "
    "WITH ORDINALITY AS u(ts, r, k, p, o)"
)
# A whole batch of item updates in one statement (one round trip, atomic on its own): applied only
# when every named item exists (else nothing changes and the caller names the missing one). An
# item named twice takes its last update, as if they were applied in order.
# What an item write `u` (id i, status s, child run c, time n) does to its row `t`.
_ITEM_SET = (
    "UPDATE workflow_run_step_fan_out_items t SET status = u.s, "
    "child_run_id = CASE u.s WHEN 'running' THEN u.c WHEN 'pending' THEN NULL "
    "ELSE COALESCE(u.c, t.child_run_id) END, "
    "dispatched_at = CASE u.s WHEN 'running' THEN u.n WHEN 'pending' THEN NULL ELSE t.dispatched_at END, "
    "completed_at = CASE WHEN u.s IN ('running', 'pending') THEN NULL ELSE u.n END "
)
_ITEMS_UPDATE = (
    "WITH u AS (SELECT DISTINCT ON (i) i, s, c, n FROM unnest(%(ids)s::text[], %(statuses)s::text[], "
    "%(children)s::text[], %(nows)s::text[]) WITH ORDINALITY AS x(i, s, c, n, o) ORDER BY i, o DESC) "
    + _ITEM_SET
    + "FROM u WHERE t.id = u.i AND (SELECT count(*) FROM workflow_run_step_fan_out_items "
    "WHERE id IN (SELECT i FROM u)) = (SELECT count(*) FROM u)"
)


# A batch of only queued child rows and item writes (the engine's usual batch) is ONE statement:
# each table's rows in a data-modifying WITH (run rows as JSON, step rows as JSON, item writes as
# arrays), run alone in autocommit — one round trip, one transaction, one synchronous commit, and
# little Python per row (the C JSON encoder, not a parameter adapter per value). Step rows need
# their run rows: foreign keys are checked at the end of the statement, when both are in.
_ROWS = "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(e, o) ORDER BY o"
_RUN_ROWS_HEAD = (
    _RUN_INTO + "SELECT e->>0, e->>1, e->>2, e->>3, (e->>4)::int, e->>5, e->>6, e->>7, e->>8, e->>9, "
    "(e->>10)::int, e->>11, e->>12, "
)
_RUN_ROWS_TAIL = ", (e->>14)::bigint, e->>15, e->>16, e->>17 " + _ROWS
_STEP_ROWS = (
    _STEP_INTO + "SELECT e->>0, e->>1, e->>2, e->>3, (e->>4)::int, e->>5, (e->>6)::int, (e->>7)::int, e->>8, "
    "(e->>9)::int, e->>10, e->>11, e->>12, e->>13, e->>14, e->>15, e->>16, e->>17, e->>18, e->>19, "
    "e->>20, e->>21 " + _ROWS
)
# The item writes (`_ITEMS_UPDATE`'s rules; each item named once, the last update kept — see
# `_item_columns`) and a final check that FAILS the statement — so nothing of the batch stays —
# when an item is unknown: the caller then retries write by write, and the write that names the
# unknown item gets the error. The arrays are read through sub-selects so that the planner does
# not see their lengths: a plan made for the lengths at hand always looked cheaper than the
# general one, and PostgreSQL then planned the statement anew for every batch (~300 µs of server
# CPU, more than running it); blind to them, it keeps one plan for the prepared statement.
_ITEM_ROWS = (
    "w AS ("
    + _ITEM_SET
    + "FROM unnest((SELECT %s::text[]), (SELECT %s::text[]), (SELECT %s::text[]), (SELECT %s::text[])) "
    "AS u(i, s, c, n) "
    "WHERE t.id = u.i{} RETURNING 1) "
    "SELECT CASE WHEN count(*) = %s::int THEN 0 "
    "ELSE ('runkon: fan-out items not found: ' || %s::int - count(*))::int END FROM w"
)
# A fenced batch's condition: its writer's token still owns its run, the run row locked (FOR
# SHARE) until the commit, so a takeover waits for the batch or the batch sees the takeover. A
# refused batch updates nothing, the check above fails it, and its writes run alone (`_fenced`).
_FENCE_HOLDS = " AND EXISTS (SELECT 1 FROM workflow_runs WHERE id = %s AND owner_token = %s FOR SHARE)"
_RUN_GENERATION = "SELECT generation FROM workflow_runs WHERE id = %s FOR SHARE"
_RUNS_LOCK = "SELECT 1 FROM workflow_runs WHERE id = ANY(%s) ORDER BY id FOR SHARE"
# A run's event stream: its writers (on any machine) take it for the append's transaction.
_STREAM_LOCK = "SELECT pg_advisory_xact_lock(hashtext('runkon events'), hashtext(%s))"
_RUN_OWNERS = "SELECT id, owner_token FROM workflow_runs WHERE id = ANY(%s) ORDER BY id FOR SHARE"


@functools.cache
def _batch_statement(run_rows: str | None, steps: bool, items: bool, fenced: bool = False) -> str:
    """The one statement for a batch with run rows (`run_rows`: the store's INSERT), step rows,
    item writes (`fenced`: under one fence) — whichever it has."""
    parts = []
    if run_rows is not None:
        parts.append(f"r AS ({run_rows})")
    if steps:
        parts.append(f"s AS ({_STEP_ROWS})")
    if items:
        return "WITH " + ", ".join([*parts, _ITEM_ROWS.format(_FENCE_HOLDS if fenced else "")])
    return "WITH " + ", ".join(parts) + " SELECT 0"


class _Write:
    """One queued write: `fn(cursor)` runs inside the batch's transaction (or alone, see `single`).

    `sql`/`params` mark a plain statement whose neighbours with the same SQL may be sent together
    with `executemany` (write-behind rows: no result, no check)."""

    __slots__ = (
        "behind",
        "done",
        "error",
        "fenced_by",
        "fn",
        "lead",
        "params",
        "parts",
        "result",
        "retry_safe",
        "single",
        "sql",
        "stream",
        "wake",
    )

    def __init__(self, fn: Op | None, single: bool, behind: bool, sql: str | None = None, params: Any = None):
        self.fn = fn
        self.single = single
        self.behind = behind
        self.sql = sql
        self.params = params
        # Run again when the connection was lost with its commit on the way (the answer lost: it
        # may have committed): the write is idempotent — applied twice it leaves the database and
        # its result as applied once. Plain statements (row inserts, lease releases) are: an
        # insert's commit is checked (`_committed`).
        self.retry_safe = fn is None
        self.parts: list[_ItemPart] | None = None  # fan-out item batches sent as one statement
        self.fenced_by: str | None = None  # a run whose row it reads FOR SHARE (`_fenced_runs`)
        self.stream: str | None = None  # the event stream it appends to (`_STREAM_LOCK`)
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: threading.Lock | None = None  # held while its writer waits as a follower
        self.lead = False  # its writer was woken to lead, not because the write is done

    def run(self, cur: Any) -> Any:
        if self.fn is not None:
            return self.fn(cur)
        cur.execute(self.sql, self.params)
        return None


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Turn any psycopg failure into a one-line PersistenceError naming the DSN (no password)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except psycopg.Error as exc:
            store = args[0]
            assert isinstance(store, PostgresStore)
            raise _failure(store.where, exc) from exc

    return wrapper


def _reading(method: Callable[P, R]) -> Callable[P, R]:
    """`_translated`, for a call that only reads (writes it drains go through `_run_batch`): run
    again, on a new connection, when its connection was lost — within the outage window."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, PostgresStore)
        first = None
        while True:
            try:
                return method(*args, **kwargs)
            except psycopg.Error as exc:
                if not store._gone(exc):
                    raise _failure(store.where, exc) from exc
                with store._lock:
                    first = store._lost(exc, first)

    return wrapper


class _Lost(Exception):
    """A batch's connection was lost; `ambiguous`: its commit was on the way (it may have
    committed)."""

    def __init__(self, exc: BaseException, ambiguous: bool) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.ambiguous = ambiguous


def outage_seconds() -> float:
    """The outage window: `$RUNKON_PG_OUTAGE_S` (seconds, 0: no waiting), else 30 s; 0 in a
    process that waits out outages itself (`pg_connect.leave_outages_to_the_reader`)."""
    if outages_left_to_the_reader():
        return 0.0
    given = os.environ.get(OUTAGE_ENV, "").strip()
    if not given:
        return OUTAGE_SECONDS
    try:
        seconds = float(given)
    except ValueError:
        raise PersistenceError(f"{OUTAGE_ENV}={given!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise PersistenceError(f"{OUTAGE_ENV}={given!r}: give 0 or more seconds")
    return seconds


class PostgresStore(Leadership):
    """A `WorkflowPersistence` in a PostgreSQL database (the connection's current schema).

    `dsn` is a libpq connection string or `postgresql://` URL. An empty database gets the schema on
    first open — unless `create` is False (a command that only reads or continues runs): then it is
    refused with `NoRunDatabase` and left empty. An older one must be upgraded first (`runkon-flow
    db upgrade`, or `upgrade=True`).
    `clock=None` uses the server's clock for leases; tests inject one. `listen=False` starts no
    notification listener. Use `close()` (or `with`) when done.
    """

    def __init__(
        self,
        dsn: str,
        *,
        clock: sh.Clock | None = None,
        upgrade: bool = False,
        create: bool = True,
        listen: bool = True,
        outage_s: float | None = None,
    ) -> None:
        if psycopg is None:
            raise PersistenceError(
                "a postgresql:// run database needs psycopg: pip install 'runkon-tui[postgres]'"
            )
        self.dsn = dsn
        self.where = display_dsn(dsn)
        self._server_clock = clock is None or clock is sh.system_clock
        self._clock: sh.Clock = clock or sh.system_clock
        self._now = sh.now_function(self._clock)
        self._lock = threading.Lock()  # the connection
        self._queue_lock = threading.Lock()  # the queues only; never held while waiting for `_lock`
        self._pending: list[_Write] = []
        self._pending_needs_history = False
        self._history: list[_Write] = []
        self._history_keys: set[str] = set()
        self._foldable: dict[str, list] = {}
        self._closed = False
        self._outage_s = outage_seconds() if outage_s is None else outage_s
        self._outage_since: float | None = None  # monotonic start of the outage under way
        self._gave_up_told: str | None = None  # libpq's words in the last `_gave_up` (said once)
        self._unavailable: StoreUnavailable | None = None  # see `unavailable`
        self._commit_sent = False  # the running batch's commit went out (an answer lost is ambiguous)
        self._retrying = False  # the running batch is run again after an ambiguous loss
        self._db = connect(dsn, self.where)
        try:
            pgs_version = ensure_schema(self._db, self.where, upgrade=upgrade, create=create)
        except psycopg.Error as exc:  # e.g. no rights to create tables, no schema selected
            self._db.close()
            raise _failure(self.where, exc) from None
        except BaseException:
            self._db.close()
            raise
        self.schema_version = pgs_version
        self._cursor = self._db.cursor()
        now_sql = "clock_timestamp()" if self._server_clock else "%(now)s::timestamptz"
        self._now_sql = now_sql
        lease_value = "clock_timestamp() + %s * interval '1 second'" if self._server_clock else "%s"
        self._run_insert = _RUN_INSERT_HEAD + lease_value + _RUN_INSERT_TAIL
        lease_row = (
            "clock_timestamp() + (e->>13)::float8 * interval '1 second'"
            if self._server_clock
            else "(e->>13)::timestamptz"
        )
        self._run_rows = _RUN_ROWS_HEAD + lease_row + _RUN_ROWS_TAIL
        self._listen = listen
        self._listener: _Listener | None = None  # started by the first gate read (a waiter)

    # ------------------------------------------------------------------ connection and queue

    def _reconnect_if_broken(self) -> None:
        """After a lost connection (server restart) the next call starts on a new one."""
        if self._db.broken or self._db.closed:
            self._reconnect()

    def _gone(self, exc: BaseException) -> bool:
        """`exc` says the connection is lost or cannot be made now (not a refused statement)."""
        if not isinstance(exc, psycopg.OperationalError):
            return False
        state = getattr(exc, "sqlstate", None)
        if state is not None:
            return _unreachable_state(state)
        return bool(self._db.broken or self._db.closed)

    def _lost(self, exc: BaseException, first: float | None) -> float:
        """Under `_lock`: the connection was lost (`exc`): wait for the server and reconnect, or
        raise the PersistenceError that ends the call (no window, or the window is over). `first`:
        when the call first lost its connection (None: now), returned — a call whose connections
        keep being lost, the server back each time, gives up after the window too."""
        now = time.monotonic()
        if first is not None and now - first >= self._outage_s:
            raise self._gave_up(exc)
        self._outage_began(exc)
        self._reconnect()
        return now if first is None else first

    def _gave_up(self, exc: BaseException) -> StoreUnavailable:
        """Every call after the window fails at once with this; libpq's words are given once
        per outage (the first), not again in each of the lines that then report a failed call."""
        line = error_line(exc)
        told, self._gave_up_told = self._gave_up_told, line
        gone = self._unavailable = StoreUnavailable(
            f"run database {self.where} unreachable for {self._outage_s:g} s ({OUTAGE_ENV}), "
            + ("gave up" if line == told else f"gave up: {line}")
        )
        return gone

    def unavailable(self) -> StoreUnavailable | None:
        """Why nothing can be recorded now (an outage given up on, until a call finds the server
        back), or None. A fan-out asks before each item it starts."""
        return self._unavailable

    def _outage_began(self, exc: BaseException) -> None:
        """Said once per outage; raises once it has lasted longer than the window."""
        now = time.monotonic()
        if self._outage_s <= 0:
            self._unavailable = StoreUnavailable(f"run database {self.where}: {error_line(exc)}")
            raise self._unavailable
        if self._outage_since is None:
            self._outage_since = now
            text = (
                f"run database {self.where} unreachable ({error_line(exc)}); its calls wait and "
                f"retry for up to {self._outage_s:g} s ({OUTAGE_ENV})"
            )
            log.warning("%s", text)
            tell_outage(text, back=False)
        elif now - self._outage_since >= self._outage_s:
            raise self._gave_up(exc)

    def _reconnect(self) -> None:
        """A new connection; while the server cannot be reached, tried again with backoff until
        the outage window is over (`_outage_began`)."""
        with suppress(Exception):
            self._db.close()
        delay = _BACKOFF_FIRST
        while True:
            try:
                db = open_connection(self.dsn)
                break
            except psycopg.Error as exc:
                if self._outage_s <= 0 or not (
                    isinstance(exc, psycopg.OperationalError) and _unreachable(exc)
                ):
                    raise connect_failure(self.where, exc) from None
                self._outage_began(exc)
                assert self._outage_since is not None
                left = self._outage_since + self._outage_s - time.monotonic()
                time.sleep(max(0.0, min(delay, left)))
                delay = min(delay * 2, _BACKOFF_MAX)
        self._db, self._cursor = db, db.cursor()
        self._unavailable = None
        if self._outage_since is not None:
            lasted = time.monotonic() - self._outage_since
            text = f"run database {self.where} is back after {lasted:.1f} s; carrying on"
            log.warning("%s", text)
            tell_outage(text, back=True)
            self._outage_since = self._gave_up_told = None

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """The cursor for a read, held exclusively; queued writes are committed first."""
        with self._lock:
            if self._closed:
                raise PersistenceError(f"run database {self.where} is closed")
            self._reconnect_if_broken()
            if self._pending or self._history:
                self._drain(None, everything=True)
            yield self._cursor

    def _write(
        self,
        fn: Op | None,
        *,
        single: bool = True,
        durable: bool = True,
        key: str | None = None,
        foldable_row: list | None = None,
        needs: str | None = None,
        sql: str | None = None,
        params: Any = None,
        fenced_by: str | None = None,
        stream: str | None = None,
        retry_safe: bool = False,
    ) -> Any:
        """Queue a write; unless `durable` is False, return its result once committed.

        The SQLite store's group commit (leader and followers), history queue and folding
        (docs/persistence.md), with queued plain statements of the same SQL sent together by
        `executemany`. `fenced_by`: a run whose row the write reads `FOR SHARE` (a fence), locked
        at the start of its batch (`_fenced_runs`); `stream`: the event stream it appends to,
        whose lock its batch takes before that. `retry_safe`: see `_Write.retry_safe`."""
        op = _Write(fn, single, not durable, sql, params)
        op.fenced_by, op.stream = fenced_by, stream
        op.retry_safe = op.retry_safe or retry_safe
        wake = None
        with self._queue_lock:
            if durable:
                self._pending.append(op)
                wake = self._enlist(op)
                history_keys = self._history_keys
                if (key is not None and key in history_keys) or (needs is not None and needs in history_keys):
                    self._pending_needs_history = True
            elif key is None:
                self._pending.append(op)
            else:
                self._history.append(op)
                self._history_keys.add(key)
                if foldable_row is not None:
                    self._foldable[key] = foldable_row
                else:
                    self._foldable.pop(key, None)
        if not durable:
            return None
        self._commit(op, wake)
        if op.error is not None:
            raise op.error
        return op.result

    def _commit(self, op: _Write, wake: threading.Lock | None) -> None:
        """Wait as a follower (`wake`) or lead: commit the queue unless `op` is done by then."""
        if wake is not None and not self._await_turn(op, wake):
            return
        try:
            if not op.done:
                with self._lock:
                    if not op.done:
                        if not self._closed:
                            self._reconnect_if_broken()
                        self._drain(op, everything=False)
        finally:
            self._hand_over()

    @_translated
    def flush(self) -> None:
        """Commit every queued write-behind write now, synchronously. Also when nothing is queued,
        it waits for the connection: another thread may be committing writes it took from the
        queue, and a caller that reports what it queued (the report gate) must not report it
        before that."""
        with self._lock:
            if not self._closed and (self._pending or self._history):
                self._reconnect_if_broken()
            self._drain(None, everything=True, synchronous=True)

    def _fold(self, key: str, change: Callable[[list], bool]) -> bool:
        with self._queue_lock:
            row = self._foldable.get(key)
            return row is not None and change(row)

    def _drain(self, mine: _Write | None, *, everything: bool, synchronous: bool = False) -> None:
        with self._queue_lock:
            batch, self._pending = self._pending, []
            if everything or self._pending_needs_history or len(self._history) >= _HISTORY_BATCH:
                batch = self._history + batch
                self._history = []
                self._history_keys = set()
                self._foldable.clear()
            self._pending_needs_history = False
        if not batch:
            return
        try:
            if self._closed:
                closed = PersistenceError(f"run database {self.where} is closed")
                for queued in batch:
                    queued.error, queued.done = closed, True
                return
            self._run_batch(batch, synchronous or any(not w.behind for w in batch))
        except BaseException:
            with self._queue_lock:
                self._pending[:0] = [w for w in batch if not w.done and w is not mine]
                self._pending_needs_history = True
            self._ensure_leader()
            raise
        finally:
            self._wake_done(batch)

    def _run_batch(self, batch: list[_Write], synchronous: bool) -> None:
        """Run (and commit) the batch; a lost connection is waited out (`_lost`) and the batch
        run again — at once when its commit had not gone out (nothing of it happened), else when
        it turns out not to have committed (`_committed`) or all its writes are `retry_safe`."""
        first = None
        try:
            while True:
                try:
                    self._run_batch_once(batch, synchronous)
                    return
                except _Lost as lost:
                    try:
                        first = self._lost(lost.exc, first)
                    except PersistenceError as exc:
                        self._fail(batch, exc)
                        return
                    if lost.ambiguous:
                        committed = self._committed(batch)
                        if committed:
                            self._settle(batch, lost.exc)
                            return
                        if committed is None and not all(op.retry_safe for op in batch):
                            self._fail(batch, self._unknown_commit(lost.exc))
                            return
                        self._retrying = committed is None
        finally:
            self._retrying = False

    def _unknown_commit(self, exc: BaseException) -> PersistenceError:
        return PersistenceError(
            f"run database {self.where}: the connection was lost while committing ({error_line(exc)}); "
            "the write may or may not have been made"
        )

    def _fail(self, batch: list[_Write], exc: PersistenceError) -> None:
        """Every write of the batch not done fails with `exc`; the write-behind ones are said in
        one line (their callers are gone), not one each."""
        behind = 0
        for op in batch:
            if not op.done:
                op.error, op.done = exc, True
                behind += op.behind
                if op.behind:
                    _tell_failed(op, exc)
        if behind == 1:
            log.warning("run database %s: a write-behind write failed: %s", self.where, exc)
        elif behind:
            log.warning("run database %s: %d write-behind writes failed: %s", self.where, behind, exc)

    def _committed(self, batch: list[_Write]) -> bool | None:
        """Whether a batch (one transaction) whose commit's answer was lost committed: seen by a
        queued row it inserts (its id chosen here, never reused). None when it inserts none."""
        for op in batch:
            if _plain_insert(op):
                table = "workflow_run_steps" if op.sql is _STEP_INSERT else "workflow_runs"
                found = self._cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s", (op.params[0],))
                return found.fetchone() is not None
        return None

    def _settle(self, batch: list[_Write], exc: BaseException) -> None:
        """A batch that did commit, its answer lost: its plain statements and item writes are
        done; its other writes run again, alone, for their results — those that are
        `retry_safe` (the others fail: their result is unknown)."""
        retrying = self._retrying
        self._retrying = True
        try:
            for op in batch:
                if op.fn is None or op.parts is not None:
                    op.result, op.done = None, True
                elif op.retry_safe:
                    self._run_alone(op)
                else:
                    op.error, op.done = self._unknown_commit(exc), True
                    self._report(op)
        finally:
            self._retrying = retrying

    def _run_batch_once(self, batch: list[_Write], synchronous: bool) -> None:
        self._commit_sent = False
        if len(batch) == 1 and synchronous and batch[0].parts is None:
            # (An item write alone goes as the one statement below: its fence check and its
            # update in one transaction, as in a batch.)
            self._run_alone(batch[0])
            return
        cur = self._cursor
        one = self._row_statement(batch) if synchronous else None
        # Queued rows and item updates only (the engine's usual batch): one statement, one round
        # trip. Other plain statements: sent without waiting for the one before (pipeline mode),
        # one round trip up to the item update's count and one for the commit.
        pipelined = one is None and all(op.fn is None or op.parts is not None for op in batch)
        try:
            if one is not None:
                self._commit_sent = True
                with sh.refusals_told_on_commit():
                    cur.execute(*one)  # autocommit: its own transaction, committed synchronously
                results = [None] * len(batch)
            else:
                with sh.refusals_told_on_commit(), self._db.pipeline() if pipelined else nullcontext():
                    cur.execute("BEGIN")
                    if not synchronous:  # only rebuildable rows: no need to wait for the WAL flush
                        cur.execute("SET LOCAL synchronous_commit TO off")
                    # Locks in one order, whoever commits: the event streams the batch appends
                    # to, then the runs fencing its writes, then the rest. A worker's fenced
                    # append holding the top run's row FOR SHARE while it waited for the stream
                    # deadlocked with the owning engine's commit of its own append and then its
                    # lease refresh (an UPDATE of that row).
                    for stream in sorted({op.stream for op in batch if op.stream is not None}):
                        cur.execute(_STREAM_LOCK, (stream,))
                    fenced = _fenced_runs(batch)
                    if fenced:
                        # The runs fencing item writes are locked first, before any other row of
                        # the batch (a child's end): a resume's end locks such a run and then the
                        # runs below it, and the other order could deadlock with it.
                        cur.execute(_RUNS_LOCK, (fenced,))
                    results = self._run_ops(cur, batch, self.where)
                    self._commit_sent = True
                    cur.execute("COMMIT")
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            # Chosen to break a deadlock: nothing was committed and the connection is fine — the
            # writes run one by one, as after any failed batch. (An OperationalError too, taken
            # before for a lost connection: every write of the batch failed.)
            _rollback(cur)
            for op in batch:
                self._run_alone(op)
            return
        except psycopg.OperationalError as exc:
            _rollback(cur)
            if self._gone(exc):  # the connection is gone (`_run_batch` waits for the server)
                raise _Lost(exc, self._commit_sent) from exc
            for op in batch:
                op.error, op.done = _failure(self.where, exc), True
                self._report(op)
            return
        except Exception:
            _rollback(cur)
            for op in batch:  # isolate the failing write; the others succeed on their own
                self._run_alone(op)
            return
        except BaseException:
            _rollback(cur)
            raise
        for op, result in zip(batch, results, strict=True):
            op.result, op.done = result, True

    def _row_statement(self, batch: list[_Write]) -> tuple[str, list] | None:
        """The batch as one statement (`_batch_statement`) and its parameters, or None unless it
        holds only queued run and step inserts and item writes."""
        runs: list[list] = []
        steps: list[list] = []
        items: list[_ItemPart] = []
        run_insert = self._run_insert
        for op in batch:
            parts = op.parts
            if parts is not None:
                items.extend(parts)
            elif op.fn is not None or not op.behind:
                return None
            elif op.sql is run_insert:
                runs.append(op.params)
            elif op.sql is _STEP_INSERT:
                steps.append(op.params)
            else:
                return None
        params: list = []
        if runs:
            params.append(_rows_json(runs))
        if steps:
            params.append(_rows_json(steps))
        fence = items[0].fence if items else None
        if items:
            # One fence for every item write, or none: else the writes go one by one (`_fenced`).
            held = _holder(fence)
            if any(_holder(part.fence) != held for part in items):
                return None
            columns = _item_columns(items, unique=True)
            params.extend(map(_text_array, columns))
            if fence is not None:
                params.extend((fence.run_id, fence.token))
            params.extend((len(columns[0]),) * 2)
        run_rows = self._run_rows if runs else None
        statement = _batch_statement(run_rows, bool(steps), bool(items), fence is not None)
        return statement, params

    @staticmethod
    def _run_ops(cur: Any, batch: list[_Write], where: str) -> list[Any]:
        """Run the batch in order; consecutive plain statements with the same SQL go together.

        Queued child rows alternate (run insert, step insert, run insert, …): in a stretch of
        plain write-behind INSERTs the run rows go first, all in one `executemany`, then the step
        rows (which only need their run rows before them) — two round trips, not one per row."""
        results: list[Any] = []
        for inserts, group in itertools.groupby(batch, key=_plain_insert):
            ops = list(group)
            if inserts:
                for sql in sorted(dict.fromkeys(w.sql for w in ops), key=lambda s: s == _STEP_INSERT):
                    rows = [w.params for w in ops if w.sql == sql]
                    if len(rows) > 1:
                        cur.executemany(sql, rows)
                    else:
                        cur.execute(sql, rows[0])
                results.extend([None] * len(ops))
                continue
            for sql, same in itertools.groupby(ops, key=_same_statement):
                plain = list(same)
                if sql == _ITEM_PARTS and len(plain) > 1:
                    # Several workers' item writes: one statement. If one names an unknown item it
                    # raises, the batch is rolled back and each write runs alone (its own error).
                    refused = _apply_item_parts(cur, [part for w in plain for part in w.parts or ()], where)
                    results.extend(_refused_result(w.parts or (), refused) for w in plain)
                elif sql is not None and sql != _ITEM_PARTS and len(plain) > 1:
                    cur.executemany(sql, [w.params for w in plain])
                    results.extend([None] * len(plain))
                else:
                    results.extend(op.run(cur) for op in plain)
        return results

    def _run_alone(self, op: _Write) -> None:
        retrying = self._retrying
        first = None
        conflicts = 0
        try:
            self._run_alone_once(op)
            while op.error is not None and isinstance(op.error.__cause__, psycopg.Error):
                exc = op.error.__cause__
                if (
                    isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)
                    and conflicts < _CONFLICT_RETRIES
                ):
                    # Chosen to break a deadlock with another process's transaction (a resume's end
                    # locking a run and then the runs below it, against a write that locked a
                    # child first): rolled back, the connection fine — run it again, as
                    # PostgreSQL recommends, after a short random pause (the other goes first).
                    conflicts += 1
                    time.sleep(random.uniform(0.01, 0.05) * conflicts)
                    self._run_alone_once(op)
                    continue
                if not self._gone(exc):
                    return
                # Autocommit (`single`): each statement commits as it runs.
                ambiguous = self._commit_sent or op.single
                try:
                    first = self._lost(exc, first)
                except PersistenceError as failed:
                    op.error = failed
                    return
                if ambiguous:
                    committed = self._committed([op])
                    if committed:
                        op.error, op.result = None, None
                        return
                    if committed is None and not op.retry_safe:
                        op.error = self._unknown_commit(exc)
                        return
                    self._retrying = True
                op.error = None
                self._run_alone_once(op)
        finally:
            self._retrying = retrying
            op.done = True
            if op.error is not None:
                self._report(op)

    def _run_alone_once(self, op: _Write) -> None:
        cur = self._cursor
        self._commit_sent = False
        op.error = None
        try:
            with sh.refusals_told_on_commit():
                if op.single:
                    op.result = op.run(cur)
                else:
                    cur.execute("BEGIN")
                    try:
                        op.result = op.run(cur)
                        self._commit_sent = True
                        cur.execute("COMMIT")
                    except BaseException:
                        _rollback(cur)
                        raise
        except psycopg.Error as exc:
            op.error = _failure(self.where, exc)
            op.error.__cause__ = exc
        except Exception as exc:
            op.error = exc

    def _report(self, op: _Write) -> None:
        if op.behind:
            log.warning("run database %s: a write-behind write failed: %s", self.where, op.error)
            if op.error is not None:
                error = (
                    op.error if isinstance(op.error, PersistenceError) else PersistenceError(str(op.error))
                )
                _tell_failed(op, error)

    def close(self) -> None:
        """Commit queued writes and close; later calls raise PersistenceError. Idempotent."""
        if self._listener is not None:
            self._listener.stop()
        with self._lock:
            if not self._closed:
                try:
                    if not (self._db.broken or self._db.closed):  # (closed: an outage given up on)
                        self._drain(None, everything=True, synchronous=True)
                finally:
                    self._closed = True
                    self._db.close()

    def __enter__(self) -> PostgresStore:
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
        """A new run already `running`, leased by `token` (generation 1) — one INSERT. The lease
        ends at the server's now + ttl; a write-behind caller gets its own clock's estimate."""
        sh.check_ttl(ttl_seconds)
        return self._insert_run(new_run, RunStatus.RUNNING, token, float(ttl_seconds), 1, durable)

    def _insert_run(
        self,
        new_run: NewRun,
        status: RunStatus,
        token: str | None,
        ttl: float | None,
        generation: int,
        durable: bool = True,
    ) -> WorkflowRun:
        lease: Any = ttl
        until: str | None = None
        if ttl is not None:
            estimate = self._clock() + timedelta(seconds=ttl)
            until = sh.rfc3339(estimate)
            if not self._server_clock:
                lease = estimate
        run = sh.new_run_row(
            new_run, self._now(), status=status, owner_token=token, lease_until=until, generation=generation
        )
        row = [
            run.id,
            run.workflow_name,
            run.parent_run_id,
            status.value,
            int(run.dry_run),
            run.trigger,
            run.started_at,
            run.definition_snapshot,
            sh.dump_json(run.inputs),
            run.parent_workflow_run_id,
            run.iteration,
            run.workflow_title,
            token,
            lease,
            generation,
            None,
            None,
            None,
        ]
        sql = self._run_insert
        if not durable:
            self._write(None, durable=False, key="r:" + run.id, foldable_row=row, sql=sql, params=row)
            return run

        def insert(cur: Any) -> str | None:
            try:
                cur.execute("SAVEPOINT run_insert")
                cur.execute(sql + " RETURNING lease_until", row)
                returned = cur.fetchone()[0]
                cur.execute("RELEASE SAVEPOINT run_insert")
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT run_insert")
                if self._retrying:  # this insert, committed before (its answer lost)
                    mine = cur.execute(
                        "SELECT lease_until FROM workflow_runs WHERE id = %s AND started_at = %s "
                        "AND owner_token IS NOT DISTINCT FROM %s",
                        (run.id, run.started_at, token),
                    ).fetchone()
                    if mine is not None:
                        return sh.rfc3339(mine[0]) if mine[0] is not None else None
                raise PersistenceError(f"run {run.id} already exists") from None
            return sh.rfc3339(returned) if returned is not None else None

        run.lease_until = self._write(insert, single=False, key="r:" + run.id, retry_safe=True)
        return run

    @_reading
    def get_run(self, run_id: str) -> WorkflowRun | None:
        with self._conn() as cur:
            row = cur.execute(f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = %s", (run_id,)).fetchone()
        return _run(row) if row else None

    @_reading
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
                "WHERE parent_workflow_run_id = %s OR parent_run_id = %s",
                (parent_run_id, parent_run_id),
            )
        sql = f"SELECT {RUN_COLUMNS} FROM workflow_runs {where} ORDER BY started_at DESC, seq DESC LIMIT %s"
        with self._conn() as cur:
            rows = cur.execute(sql, (*params, max(limit, 0))).fetchall()
        return [_run(r) for r in rows]

    @_reading
    def find_run_ids(self, part: str) -> list[str]:
        """Ids beginning or ending with `part` in any case, newest first (see the protocol)."""
        part = part.upper()
        sql = (
            "SELECT id FROM workflow_runs WHERE upper(left(id, %s)) = %s OR upper(right(id, %s)) = %s "
            "ORDER BY started_at DESC, seq DESC"
        )
        with self._conn() as cur:
            rows = cur.execute(sql, (len(part), part, len(part), part)).fetchall()
        return [r[0] for r in rows]

    @_reading
    def list_active_runs(self, statuses: list[RunStatus]) -> list[WorkflowRun]:
        wanted, unfinished = sh.listed_statuses(statuses)
        sql = (
            f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE status = ANY(%s){unfinished} "
            "ORDER BY started_at DESC, seq DESC"
        )
        with self._conn() as cur:
            rows = cur.execute(sql, (wanted,)).fetchall()
        return [_run(r) for r in rows]

    @_translated
    def update_run_status(
        self, run_id: str, status: RunStatus, result_summary: str | None, error: str | None
    ) -> None:
        status = RunStatus(status)
        if status is RunStatus.WAITING:
            raise PersistenceError(sh.WAITING_REJECTED)
        ended_at = self._now() if status.is_terminal else None
        self._update_run(
            "UPDATE workflow_runs SET status = %s, result_summary = %s, error = %s, ended_at = %s, "
            "blocked_on = NULL WHERE id = %s",
            (status.value, result_summary, error, ended_at, run_id),
            notify="cancel" if status in _CANCEL_STATUSES else None,
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
        """The final status and the lease release in one UPDATE, while `token` owns the run."""
        status = sh.check_finish_status(status)
        now = self._now()
        if not durable and abandoned is None:

            def fold(row: list) -> bool:
                if row[_R_TOKEN] != token:
                    return False  # the queued UPDATE is fenced, and logged
                row[_R_STATUS], row[_R_SUMMARY], row[_R_ERROR], row[_R_ENDED] = (
                    status.value,
                    result_summary,
                    error,
                    now,
                )
                row[_R_TOKEN] = row[_R_LEASE] = None
                return True

            if self._fold("r:" + run_id, fold):
                return True

        def finish(cur: Any) -> bool | list[str]:
            if cur.execute(_RUN_FINISH, (status.value, result_summary, error, now, run_id, token)).rowcount:
                if abandoned is None:
                    return True
                return [row[0] for row in cur.execute(_UNFINISHED_BELOW, (abandoned, now, run_id)).fetchall()]
            row = cur.execute(
                "SELECT status, ended_at, owner_token FROM workflow_runs WHERE id = %s", (run_id,)
            ).fetchone()
            if row is None:
                raise PersistenceError(f"run {run_id} not found")
            if tuple(row) == (status.value, now, None):
                # This very finish, committed before (its answer lost: run again); the children
                # it ended are named all the same, for the engine to say each one's end.
                if abandoned is None:
                    return True
                return [r[0] for r in cur.execute(_ENDED_BELOW, (run_id, abandoned, now)).fetchall()]
            if not durable:
                sh.finish_refused_behind(run_id, status.value, on_refused)
            return False

        single = abandoned is None  # else two statements, in one transaction
        written = self._write(finish, single=single, durable=durable, key="r:" + run_id, retry_safe=True)
        if isinstance(written, list) and ended is not None:
            ended[:] = written
        return written is not False

    @_translated
    def set_rerun_link(
        self, run_id: str, rerun_of: str, rerun_from: str, definition: str = "current"
    ) -> None:
        sql = "UPDATE workflow_runs SET rerun_of = %s, rerun_from = %s, rerun_definition = %s WHERE id = %s"
        self._update_run(sql, (rerun_of, rerun_from, definition, run_id))

    @_translated
    def copy_steps(self, source_run_id: str, target_run_id: str, step_ids: Sequence[str]) -> list[str]:
        new_ids = [sh.new_ordered_id() for _ in step_ids]

        def copy(cur: Any) -> None:
            pairs = zip(new_ids, step_ids, strict=True)
            sh.copy_step_rows(cur, _RUN_EXISTS, _STEP_COPY, source_run_id, target_run_id, pairs)

        self._write(copy)
        return new_ids

    @_translated
    def set_retry_request(self, run_id: str, request: RetryRequest) -> None:
        sql = "UPDATE workflow_runs SET retry_request = %s WHERE id = %s"
        self._update_run(sql, (request.to_json(), run_id))

    @_translated
    def set_waiting_blocked_on(self, run_id: str, blocked_on: dict) -> None:
        self._update_run(
            "UPDATE workflow_runs SET status = 'waiting', blocked_on = %s, ended_at = NULL WHERE id = %s",
            (sh.dump_json(blocked_on), run_id),
        )

    def _update_run(self, sql: str, params: tuple, durable: bool = True, notify: str | None = None) -> None:
        """One UPDATE of a run row; the run id is the last parameter."""
        run_id = params[-1]

        def update(cur: Any) -> None:
            if cur.execute(sql, params).rowcount == 0:
                raise PersistenceError(f"run {run_id} not found")
            if notify is not None:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{notify}:{run_id}"))

        self._write(update, single=notify is None, durable=durable, key="r:" + run_id, retry_safe=True)

    @_translated
    def end_abandoned_descendants(self, run_id: str, error: str) -> list[str]:
        params = (error, self._now(), run_id)
        sql = ABANDONED_DESCENDANTS.format(p="%s") + " RETURNING id"
        return self._write(lambda cur: [row[0] for row in cur.execute(sql, params).fetchall()], single=False)

    @_translated
    def request_cancel(self, run_id: str, error: str | None = None) -> bool:
        def update(cur: Any) -> bool:
            changed = cur.execute(
                "UPDATE workflow_runs SET status = 'cancelling', result_summary = NULL, error = %s, "
                f"ended_at = NULL, blocked_on = NULL WHERE id = %s AND {RUN_UNFINISHED}",
                (error, run_id),
            ).rowcount
            if not changed:
                if cur.execute("SELECT 1 FROM workflow_runs WHERE id = %s", (run_id,)).fetchone() is None:
                    raise PersistenceError(f"run {run_id} not found")
            else:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"cancel:{run_id}"))
            return bool(changed)

        return bool(self._write(update, single=False, key="r:" + run_id))

    @_translated
    def start_run(self, run_id: str, *, resuming: bool) -> RunStatus | None:
        only, statuses = sh.startable(resuming)
        which = "IN" if only else "NOT IN"
        marks = ", ".join(["%s"] * len(statuses))
        started = "" if resuming else ", started_at = %s"
        sql = (
            "UPDATE workflow_runs SET status = 'running', result_summary = NULL, error = NULL, "
            f"ended_at = NULL, blocked_on = NULL{started} WHERE id = %s AND status {which} ({marks})"
        )
        # A run started (not resumed) starts now, not when its row was written: a dashboard
        # writes the row before its background runner takes the run, a second or so earlier.
        params = (run_id, *statuses) if resuming else (self._now(), run_id, *statuses)

        def start(cur: Any) -> RunStatus | None:
            if cur.execute(sql, params).rowcount:
                return None
            row = cur.execute("SELECT status FROM workflow_runs WHERE id = %s", (run_id,)).fetchone()
            if row is None:
                raise PersistenceError(f"run {run_id} not found")
            return RunStatus(row[0])

        return self._write(start, single=False, key="r:" + run_id)

    @_reading
    def is_run_cancelled(self, run_id: str) -> bool:
        with self._conn() as cur:
            row = cur.execute("SELECT status FROM workflow_runs WHERE id = %s", (run_id,)).fetchone()
        return row is not None and row[0] in _CANCEL_STATUSES

    # ------------------------------------------------------------------ leases

    @_translated
    def acquire_lease(self, run_id: str, token: str, ttl_seconds: float) -> int | None:
        """Take or renew the run's lease; expiry is judged by the server's clock. One UPDATE: under
        READ COMMITTED a racing taker waits for the row and re-checks it, so exactly one wins."""
        sh.check_ttl(ttl_seconds)
        self._start_listening()  # this engine now holds a run: cancel requests should reach it
        params: dict[str, Any] = {"id": run_id, "token": token, "ttl": float(ttl_seconds)}
        if not self._server_clock:
            params["now"] = self._clock()
        now = self._now_sql
        sql = (
            "UPDATE workflow_runs SET generation = generation + "
            "CASE WHEN owner_token IS DISTINCT FROM %(token)s THEN 1 ELSE 0 END, "
            f"owner_token = %(token)s, lease_until = {now} + %(ttl)s * interval '1 second' "
            "WHERE id = %(id)s AND (owner_token IS NULL OR owner_token = %(token)s OR lease_until IS NULL "
            f"OR lease_until < {now}) RETURNING generation"
        )

        def acquire(cur: Any) -> int | None:
            row = cur.execute(sql, params).fetchone()
            return None if row is None else row[0]

        # Run again after a lost answer, it renews the lease it took (same token, same generation).
        return self._write(acquire, key="r:" + run_id, retry_safe=True)

    @_translated
    def release_lease(self, run_id: str, token: str) -> None:
        self._write(
            None,
            key="r:" + run_id,
            sql="UPDATE workflow_runs SET owner_token = NULL, lease_until = NULL "
            "WHERE id = %s AND owner_token = %s",
            params=(run_id, token),
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
            StepStatus.RUNNING.value if running else StepStatus.PENDING.value,
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
        key, needs = "s:" + step_id, "r:" + new_step.workflow_run_id
        if not durable:
            self._write(
                None, durable=False, key=key, foldable_row=row, needs=needs, sql=_STEP_INSERT, params=row
            )
            return step_id

        def insert(cur: Any) -> None:
            try:
                cur.execute("SAVEPOINT step_insert")
                cur.execute(_STEP_INSERT, row)
                cur.execute("RELEASE SAVEPOINT step_insert")
            except psycopg.errors.ForeignKeyViolation:
                cur.execute("ROLLBACK TO SAVEPOINT step_insert")
                raise PersistenceError(f"run {new_step.workflow_run_id} not found") from None
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT step_insert")
                if not self._retrying:  # else: this insert (its new id), committed before
                    raise

        self._write(insert, single=False, key=key, needs=needs, retry_safe=True)
        return step_id

    @_translated
    def update_step(self, step_id: str, update: StepUpdate, *, durable: bool = True) -> None:
        """Generation-guarded (stale → LeaseLost); a terminal row is never overwritten."""
        status = StepStatus(update.status)
        now = self._now()
        if not durable and self._fold("s:" + step_id, lambda row: self._fold_step(row, status, update, now)):
            return
        params: dict[str, Any] = {
            "id": step_id,
            "generation": update.generation,
            "status": status.value,
            "now": now,
        }
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

        def update_row(cur: Any) -> None:
            if cur.execute(sql, params).rowcount:
                return
            row = cur.execute(
                "SELECT s.status, r.generation FROM workflow_run_steps s "
                "JOIN workflow_runs r ON r.id = s.workflow_run_id WHERE s.id = %s",
                (step_id,),
            ).fetchone()
            if row is None:
                raise PersistenceError(f"step {step_id} not found")
            if row[1] != update.generation or row[0] not in sh.TERMINAL_STEP_STATUSES:
                raise sh.lease_cancelled()

        self._write(update_row, durable=durable, key="s:" + step_id, retry_safe=True)

    def _fold_step(self, row: list, status: StepStatus, update: StepUpdate, now: str) -> bool:
        """A step update applied to its queued insert row, while its run's insert is queued too."""
        run_row = self._foldable.get("r:" + row[_S_RUN])
        if run_row is None or run_row[_R_GENERATION] != update.generation or update.fan_out is not None:
            return False  # the queued UPDATE checks (and reports) it, and writes the fan-out counts
        if update.usage is not None:  # the insert row has no usage column: the queued UPDATE writes it
            return False
        if StepStatus(row[_S_STATUS]).is_terminal:
            return True
        row[_S_STATUS] = status.value
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

    @_reading
    def get_steps(self, run_id: str) -> list[WorkflowRunStep]:
        with self._conn() as cur:
            rows = cur.execute(
                f"SELECT {STEP_COLUMNS} FROM workflow_run_steps WHERE workflow_run_id = %s "
                "ORDER BY position, id",
                (run_id,),
            ).fetchall()
        return [_step_from_row(r) for r in rows]

    @_reading
    def get_step(self, step_id: str) -> WorkflowRunStep | None:
        with self._conn() as cur:
            row = cur.execute(
                f"SELECT {STEP_COLUMNS} FROM workflow_run_steps WHERE id = %s", (step_id,)
            ).fetchone()
        return _step_from_row(row) if row else None

    @_reading
    def find_gate_ids(self, part: str) -> list[str]:
        """Gate step ids beginning or ending with `part` in any case, oldest first (the protocol)."""
        part = part.upper()
        sql = (
            "SELECT id FROM workflow_run_steps WHERE role = 'gate' "
            "AND (upper(left(id, %s)) = %s OR upper(right(id, %s)) = %s) ORDER BY id"
        )
        with self._conn() as cur:
            rows = cur.execute(sql, (len(part), part, len(part), part)).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ gates

    def _start_listening(self) -> None:
        """The listener runs in stores that hold runs (a lease) or wait at gates, not in every one."""
        if self._listen and self._listener is None and not self._closed:
            with self._queue_lock:
                if self._listener is None:
                    self._listener = _Listener(self.dsn, self.where)

    @_reading
    def get_gate_approval(self, step_id: str) -> GateApprovalState:
        """Also starts the notification listener: whoever reads a gate's state waits for it."""
        self._start_listening()
        with self._conn() as cur:
            row = cur.execute(
                "SELECT gate_approved_at, status, gate_feedback, gate_selections, gate_approved_by "
                "FROM workflow_run_steps WHERE id = %s",
                (step_id,),
            ).fetchone()
        return sh.approval_state(*row) if row else GateApprovalState.pending()

    @staticmethod
    def _open_gate(cur: Any, step_id: str) -> str | None:
        """The gate's options, after checking (with the row locked) that it is still open."""
        row = cur.execute(
            "SELECT status, gate_options FROM workflow_run_steps WHERE id = %s FOR UPDATE", (step_id,)
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

        def approve(cur: Any) -> None:
            sh.validate_gate_selections(step_id, self._open_gate(cur, step_id), selections or [])
            cur.execute(
                "UPDATE workflow_run_steps SET gate_approved_at = %s, gate_approved_by = %s, "
                "gate_feedback = %s, gate_selections = %s, context_out = COALESCE(%s, context_out), "
                "status = 'completed', ended_at = %s WHERE id = %s",
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
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, "gate:" + step_id))

        self._write(approve, single=False, key="s:" + step_id)

    @_translated
    def reject_gate(self, step_id: str, rejected_by: str, feedback: str | None) -> None:
        now = self._now()

        def reject(cur: Any) -> None:
            self._open_gate(cur, step_id)
            cur.execute(
                "UPDATE workflow_run_steps SET gate_approved_by = %s, gate_feedback = %s, status = 'failed', "
                "ended_at = %s WHERE id = %s",
                (rejected_by, feedback, now, step_id),
            )
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, "gate:" + step_id))

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
        """One statement for the whole batch; ids come back in the order of `items`."""
        if not items:
            with self._conn() as cur:
                _require_step(cur, step_run_id)
            return []
        ids = [sh.new_ordered_id() for _ in items]
        lines = list(lineage) if lineage is not None else [ItemLineage()] * len(items)
        if len(lines) != len(items):
            raise ValueError("insert_fan_out_items: one lineage per item")
        columns = (
            ids,
            [t for t, _, _, _ in items],
            [i for _, i, _, _ in items],
            [ref for _, _, ref, _ in items],
            [sh.dump_json(ctx) if ctx else "{}" for _, _, _, ctx in items],
            [line.attempt for line in lines],
            [line.previous_child_run_id for line in lines],
        )

        def insert(cur: Any) -> list[str]:
            _require_step(cur, step_run_id)
            if cur.execute(_ITEM_INSERT, (step_run_id, *columns)).rowcount == len(ids):
                return ids
            existing = {
                (t, i): item
                for item, t, i in cur.execute(
                    "SELECT id, item_type, item_id FROM workflow_run_step_fan_out_items "
                    "WHERE step_run_id = %s",
                    (step_run_id,),
                )
            }
            return [existing[(t, i)] for t, i, _, _ in items]

        return self._write(insert, single=False, needs="s:" + step_run_id, retry_safe=True)

    @_translated
    def update_fan_out_item(self, item_id: str, update: FanOutItemUpdate) -> None:
        sql, params = _item_update(item_id, update, self._now())

        def update_item(cur: Any) -> None:
            if cur.execute(sql, params).rowcount == 0:
                raise PersistenceError(f"fan-out item {item_id} not found")

        self._write(update_item, retry_safe=True)

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
        part = _ItemPart(
            [item_id for item_id, _ in updates],
            [FanOutItemStatus(update.status).value for _, update in updates],
            [update.child_run_id for _, update in updates],
            [now] * len(updates),
            durable,
            fence,
        )
        wake = None
        with self._queue_lock:
            last = self._pending[-1] if self._pending else None
            if last is not None and last.parts is not None and last.behind:
                # Still queued: this batch joins it (one statement for both, order kept).
                last.parts.append(part)
                op = last
                if fence is not None:
                    op.single = False
                if durable:
                    op.behind = False
            else:
                parts = [part]
                # Fenced: the owner's look-up and the update in one transaction, not one each.
                op = _Write(
                    lambda cur: _refused_result(parts, _apply_item_parts(cur, parts, self.where)),
                    fence is None,
                    not durable,
                )
                op.parts = parts
                op.retry_safe = True  # values set, not changed: applied twice as once
                self._pending.append(op)
            if durable:
                wake = self._enlist(op)
                # A durable item write takes the queued history along: an item reported finished
                # has its child's run and step rows committed too (as in the SQLite store).
                if self._history_keys:
                    self._pending_needs_history = True
        if not durable:
            return True
        self._commit(op, wake)
        if op.error is not None:
            raise op.error
        return op.result is not False

    @_reading
    def get_fan_out_items(
        self, step_run_id: str, status_filter: FanOutItemStatus | None = None
    ) -> list[FanOutItemRow]:
        sql = f"SELECT {ITEM_COLUMNS} FROM workflow_run_step_fan_out_items WHERE step_run_id = %s"
        params: tuple[str, ...] = (step_run_id,)
        if status_filter is not None:
            sql += " AND status = %s"
            params += (FanOutItemStatus(status_filter).value,)
        with self._conn() as cur:
            rows = cur.execute(sql + " ORDER BY id", params).fetchall()
        return [_item_from_row(r) for r in rows]

    @_reading
    def item_child_usage(self, step_run_id: str) -> list[tuple[str, str]]:
        """(child run id, usage JSON) of every step row that reported usage in the child runs of
        a foreach step row's items: one query for a whole fan-out (`show --items`). Optional,
        outside the protocol (docs/persistence.md)."""
        with self._conn() as cur:
            rows = cur.execute(_ITEM_CHILD_USAGE, (step_run_id,)).fetchall()
        return [(r[0], r[1]) for r in rows]

    @_reading
    def item_child_failed_steps(self, step_run_id: str) -> list[WorkflowRunStep]:
        """The step rows that failed with an error (failed, timed out or cancelled) in the child
        runs of a foreach step row's items: one query for a whole fan-out (`show`'s failed items
        and failure clusters). Optional, outside the protocol (docs/persistence.md)."""
        with self._conn() as cur:
            rows = cur.execute(_ITEM_CHILD_FAILED_STEPS, (step_run_id,)).fetchall()
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
        """One statement for the batch, numbered on from the stream's last `seq`. Writers of one
        stream (an engine that lost its lease, the one that took over; any machine) take a
        transaction-scoped advisory lock on the stream first: they never collide, and a batch
        becomes visible whole and after the batches numbered before it. With a `generation`, only
        while the run's is that one: the run row is read `FOR SHARE`, so a takeover waits for the
        append or the append sees the takeover."""
        if not events:
            return True
        batch = list(events)
        columns = (
            [e.ts for e in batch],
            [e.event_run_id for e in batch],
            [e.kind for e in batch],
            [e.payload for e in batch],
        )

        def append(cur: Any) -> bool:
            cur.execute(_STREAM_LOCK, (run_id,))
            if generation is None:
                if cur.execute(_RUN_EXISTS, (run_id,)).fetchone() is None:
                    raise PersistenceError(f"run {run_id} not found")
            else:
                row = cur.execute(_RUN_GENERATION, (run_id,)).fetchone()
                if row is None:
                    raise PersistenceError(f"run {run_id} not found")
                if row[0] != generation:
                    sh.log.warning(sh.EVENTS_FENCED, run_id, len(batch))
                    return False
            last = cur.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM workflow_run_events WHERE run_id = %s", (run_id,)
            ).fetchone()[0]
            if self._retrying and self._appended(cur, run_id, last, batch):
                return True
            cur.execute(_EVENT_INSERT, (run_id, last, *columns))
            return True

        fenced_by = run_id if generation is not None else None
        written = self._write(
            append,
            single=False,
            durable=durable,
            needs="r:" + run_id,
            fenced_by=fenced_by,
            stream=run_id,
            retry_safe=True,
        )
        return written is not False

    @staticmethod
    def _appended(cur: Any, run_id: str, last: int, batch: list[NewEvent]) -> bool:
        """The stream ends with `batch` already: an append committed before, its answer lost."""
        tail = cur.execute(
            "SELECT ts, event_run_id, kind, payload FROM workflow_run_events WHERE run_id = %s "
            "AND seq > %s ORDER BY seq",
            (run_id, last - len(batch)),
        ).fetchall()
        return [tuple(row) for row in tail] == [(e.ts, e.event_run_id, e.kind, e.payload) for e in batch]

    @_reading
    def read_events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[StoredEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM workflow_run_events WHERE run_id = %s AND seq > %s ORDER BY seq"
        params: tuple = (run_id, after_seq)
        if limit is not None:
            sql += " LIMIT %s"
            params += (max(limit, 0),)
        with self._conn() as cur:
            return [StoredEvent(*row) for row in cur.execute(sql, params).fetchall()]

    @_reading
    def read_events_at(self, run_id: str, seqs: Sequence[int]) -> list[StoredEvent]:
        wanted = sorted(set(seqs))
        if not wanted:
            return []
        where = "run_id = %s AND seq = ANY(%s)"
        sql = f"SELECT {EVENT_COLUMNS} FROM workflow_run_events WHERE {where} ORDER BY seq"
        with self._conn() as cur:
            return [StoredEvent(*row) for row in cur.execute(sql, (run_id, wanted)).fetchall()]

    @_reading
    def last_event_seq(self, run_id: str) -> int:
        sql = "SELECT COALESCE(MAX(seq), 0) FROM workflow_run_events WHERE run_id = %s"
        with self._conn() as cur:
            return int(cur.execute(sql, (run_id,)).fetchone()[0])

    @_translated
    def delete_finished_runs(self, ended_before: str) -> DeletedRuns:
        """One transaction: finished top-level runs ended before the cutoff, and everything below.
        A run whose lease is live is kept: a retry or resume has taken it and is about to mark it
        running. FOR UPDATE: a lease taken while this runs is waited for and then re-checked."""
        params: dict[str, Any] = {"ended_before": ended_before}
        if not self._server_clock:
            params["now"] = self._clock()
        sql = (
            f"SELECT id FROM workflow_runs WHERE status IN {RUN_FINISHED_IN} AND ended_at < %(ended_before)s "
            "AND COALESCE(parent_run_id, '') = '' AND COALESCE(parent_workflow_run_id, '') = '' "
            f"AND (owner_token IS NULL OR lease_until IS NULL OR lease_until < {self._now_sql}) FOR UPDATE"
        )

        def delete(cur: Any) -> DeletedRuns:
            roots = [r[0] for r in cur.execute(sql, params).fetchall()]
            if not roots:
                return DeletedRuns()
            children: dict[str, list[str]] = {}
            for child, *parents in cur.execute(
                "SELECT id, parent_run_id, parent_workflow_run_id FROM workflow_runs "
                "WHERE COALESCE(parent_run_id, '') != '' OR COALESCE(parent_workflow_run_id, '') != ''"
            ).fetchall():
                for parent in set(parents) - {"", None}:
                    children.setdefault(parent, []).append(child)
            doomed = sh.descendants(roots, children)
            events = cur.execute(
                f"SELECT COALESCE(SUM({_EVENTS_IN_ROW}), 0) FROM workflow_run_events WHERE run_id = ANY(%s)",
                (doomed,),
            ).fetchone()[0]
            cur.execute("DELETE FROM workflow_run_events WHERE run_id = ANY(%s)", (doomed,))
            items = cur.execute(
                "DELETE FROM workflow_run_step_fan_out_items WHERE step_run_id IN (SELECT s.id FROM "
                "workflow_run_steps s WHERE s.workflow_run_id = ANY(%s))",
                (doomed,),
            ).rowcount
            steps = cur.execute(
                "DELETE FROM workflow_run_steps WHERE workflow_run_id = ANY(%s)", (doomed,)
            ).rowcount
            cur.execute("DELETE FROM workflow_runs WHERE id = ANY(%s)", (doomed,))
            return DeletedRuns(len(roots), len(doomed) - len(roots), steps, items, events)

        return self._write(delete, single=False)


# ---------------------------------------------------------------------- schema


def ensure_schema(conn: Any, where: str, *, upgrade: bool, create: bool = True) -> int:
    """Create the schema in an empty database, check it in ours, migrate it when `upgrade`.

    Returns the version now in place. Serialised by an advisory lock, so two processes opening a
    new database at once do not race. Refuses a database that has runkon's table names but no
    `runkon_schema` (another tool's), one newer than this runkon, and — unless `upgrade` — one
    older (other machines may still run the older runkon: upgrading is an explicit step). Unless
    `create`, a database without runkon's tables is refused too (`NoRunDatabase`), untouched: a
    command that only reads runs never creates anything, as with a SQLite file.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('runkon schema'))")
        has_version = conn.execute("SELECT to_regclass('runkon_schema') IS NOT NULL").fetchone()[0]
        if has_version:
            row = conn.execute("SELECT max(version) FROM runkon_schema").fetchone()
            version = row[0] or 0
        else:
            found = [
                name
                for name in pgs.RUNKON_TABLES
                if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]
            ]
            if found:
                raise PersistenceError(
                    f"{where} is not a runkon database: it has a {found[0]} table that runkon did not make "
                    "(no runkon_schema table); point --db / RUNKON_DB at a database of runkon's own"
                )
            _refuse_a_schema_not_ours(conn, where, upgrade=upgrade, create=create)
            if not create:
                raise NoRunDatabase(f"{where} has no runkon tables")
            conn.execute(pgs.VERSION_TABLE)
            version = 0
            upgrade = True  # an empty database: nobody else uses it yet
        if version > pgs.SCHEMA_VERSION:
            raise PersistenceError(
                f"{where} uses schema version {version}, newer than this runkon understands "
                f"({pgs.SCHEMA_VERSION}); upgrade runkon or use another database"
            )
        if version == pgs.SCHEMA_VERSION:
            return version
        if not upgrade:
            raise PersistenceError(
                f"{where} uses schema version {version}, older than this runkon's ({pgs.SCHEMA_VERSION}); "
                f"run `{_upgrade_command(where)}` once (stop older runkons that use it first)"
            )
        for step_version, statements in pgs.MIGRATIONS:
            if step_version > version:
                for statement in statements:
                    conn.execute(statement)
        conn.execute("DELETE FROM runkon_schema")
        conn.execute(
            "INSERT INTO runkon_schema (version, upgraded_at) VALUES (%s, now())", (pgs.SCHEMA_VERSION,)
        )
        return pgs.SCHEMA_VERSION


def _refuse_a_schema_not_ours(conn: Any, where: str, *, upgrade: bool, create: bool = True) -> None:
    """Before runkon's tables go into a schema without them: refuse one that holds other
    programs' tables (unless `upgrade`: `runkon-flow db upgrade` puts them beside those on
    purpose), as a SQLite file holding other tables is refused, and say plainly when the
    `search_path` names no schema that exists (PostgreSQL's own words are "no schema has been
    selected to create in") — to a command that only reads (`create` False) too: a typo'd schema
    is not a database without runs. Nothing is written either way."""
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    if schema is None:
        path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
        raise PersistenceError(
            f"{_missing_schemas(path, where)}; {_missing_schema_remedy(path, create=create)}"
        )
    if upgrade:
        return
    names = [
        f"{_RELKINDS.get(kind, 'table')} {name}"
        for name, kind in conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "ORDER BY c.relname LIMIT 4"
        ).fetchall()
    ]
    if names:
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        raise PersistenceError(
            f"{where} is not a runkon database: its schema {schema} holds {shown}; it was left untouched — "
            "point --db / RUNKON_DB at a database of runkon's own (or a schema: "
            f"?options=-csearch_path%3Drunkon), or run `{_upgrade_command(where)}` to add "
            "runkon's tables beside them"
        )


def _search_path_names(path: str) -> list[str]:
    """The schema names of a `search_path` setting as written (`"$user", public` → $user, public)."""
    names = [name.strip() for name in path.split(",")]
    return [
        name[1:-1].replace('""', '"') if len(name) > 1 and name[0] == name[-1] == '"' else name
        for name in names
        if name
    ]


def _missing_schemas(path: str, where: str) -> str:
    """`schema nosuch does not exist in postgresql://…` for the search_path `path` of which no
    schema exists."""
    names = _search_path_names(path)
    if len(names) == 1:
        return f"schema {names[0]} does not exist in {where}"
    return f"none of the search_path's schemas ({', '.join(names) or 'none given'}) exists in {where}"


def _missing_schema_remedy(path: str, *, create: bool) -> str:
    names = _search_path_names(path)
    if create:
        it = f"it (CREATE SCHEMA {names[0]})" if len(names) == 1 else "one (CREATE SCHEMA …)"
        return f"create {it} or fix the URL's search_path"
    return "nothing was created; check the URL's search_path (--db / $RUNKON_DB)"


def _upgrade_command(where: str) -> str:
    """The `db upgrade` command for the database shown as `where` (its password left out: libpq
    finds it in PGPASSWORD or ~/.pgpass), quoted for a shell."""
    return f"runkon-flow db upgrade --db {shlex.quote(where)}"


_RELKINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "f": "foreign table"}


def schema_version(dsn: str) -> tuple[int | None, int]:
    """(the database's schema version or None when it has none, this runkon's) — for `db` commands."""
    where = display_dsn(dsn)
    conn = connect(dsn, where)
    try:
        try:
            if not conn.execute("SELECT to_regclass('runkon_schema') IS NOT NULL").fetchone()[0]:
                return None, pgs.SCHEMA_VERSION
            return conn.execute("SELECT max(version) FROM runkon_schema").fetchone()[0], pgs.SCHEMA_VERSION
        except psycopg.Error as exc:
            raise _failure(where, exc) from None
    finally:
        conn.close()


# ---------------------------------------------------------------------- notifications


class _Listener:
    """`LISTEN runkon` on a connection of its own, in a daemon thread: a gate decision made by any
    process wakes this process's waiter for that gate at once. Best effort — if the connection
    fails, waiters still poll (gates every second), and the listener retries every few seconds."""

    def __init__(self, dsn: str, where: str) -> None:
        self._dsn = dsn
        self._where = where
        self._stopped = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._loop, name="runkon-pg-listener", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
                self._conn.execute(f"LISTEN {CHANNEL}")
                while not self._stopped.is_set():
                    for note in self._conn.notifies(timeout=0.5, stop_after=64):
                        kind, _, ident = note.payload.partition(":")
                        if kind == "gate":
                            gate_decided(ident)
                        elif kind == "cancel":
                            cancel_requested(ident)
            except Exception as exc:  # the server went away: retry, the waiters poll meanwhile
                if self._stopped.is_set():
                    return
                log.debug("run database %s: notification listener: %s", self._where, exc)
                self._stopped.wait(2.0)
            finally:
                if self._conn is not None:
                    with suppress(Exception):
                        self._conn.close()
                    self._conn = None

    def stop(self) -> None:
        """Ask the thread to end (within half a second, closing its connection); no waiting."""
        self._stopped.set()


# ---------------------------------------------------------------------- helpers


_ITEM_PARTS = "item parts"  # `_same_statement` of a fan-out item write


def _same_statement(op: _Write) -> str | None:
    """What lets consecutive queued writes go as one statement: their SQL, or being item writes."""
    if op.parts is not None:
        return _ITEM_PARTS
    return op.sql if op.fn is None else None


def _plain_insert(op: _Write) -> bool:
    """A queued write-behind row INSERT (a run or step row): no result, no check."""
    return op.fn is None and op.behind and op.sql is not None and op.sql.startswith("INSERT")


def _json_value(value: object) -> str:
    """A run row's lease end under an injected clock (a datetime) as JSON: ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


_ROWS_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_value)
_rows_json = _ROWS_ENCODER.encode


_REFUSALS = ("password", "authentication", "does not exist", "permission denied", "pg_hba.conf")


def _failure(where: str, exc: BaseException) -> PersistenceError:
    """A failed statement or a lost connection to `where`, in one line."""
    return PersistenceError(f"run database {where}: {error_line(exc)}")


def _unreachable_state(state: str) -> bool:
    """A SQLSTATE saying the connection is lost or cannot be made now: class 08, or the server
    shutting down or starting up."""
    return state.startswith("08") or state in _UNREACHABLE_STATES


def _unreachable(exc: BaseException) -> bool:
    """A failed connection attempt that may succeed a little later: the server down, restarting,
    shutting down or starting up — not a refusal (a password, a database that does not exist)."""
    state = getattr(exc, "sqlstate", None)
    if state is not None:
        return _unreachable_state(state)
    line = error_line(exc).lower()
    return not any(word in line for word in _REFUSALS)


def _rollback(cur: Any) -> None:
    with suppress(Exception):
        if cur.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            cur.execute("ROLLBACK")


class _ItemPart(NamedTuple):
    """One `batch_update_fan_out_items` call, waiting to be sent with the calls queued next to it."""

    ids: list[str]
    statuses: list[str]
    children: list[str | None]
    nows: list[str]
    durable: bool
    fence: Fence | None = None


def _tell_failed(op: _Write, error: BaseException) -> None:
    """A write-behind write failed at its commit: tell the writers of its item parts that asked
    (`Fence.on_failed`): what they wrote was not recorded."""
    for part in op.parts or ():
        if part.fence is not None and part.fence.on_failed is not None:
            sh.tell_failed_behind(part.fence, error)


def _fenced(cur: Any, parts: list[_ItemPart]) -> set[int]:
    """The parts whose fence fails (by `id`), each write-behind one reported: one look-up of the
    owners of the fenced runs, their rows locked until the commit (a takeover waits for it)."""
    runs = sorted({part.fence.run_id for part in parts if part.fence is not None})
    if not runs:
        return set()
    owners = dict(cur.execute(_RUN_OWNERS, (runs,)).fetchall())
    refused: set[int] = set()
    for part in parts:
        fence = part.fence
        if fence is not None and owners.get(fence.run_id) != fence.token:
            refused.add(id(part))
            if not part.durable:
                sh.items_refused_behind(fence, len(part.ids))
    return refused


def _holder(fence: Fence | None) -> tuple[str, str] | None:
    """What a fence checks (two fan-outs of one run and token check the same)."""
    return None if fence is None else (fence.run_id, fence.token)


def _fenced_runs(batch: list[_Write]) -> list[str]:
    """The runs fencing the batch's writes (item writes, event appends), sorted (locks always
    taken in one order)."""
    runs = {part.fence.run_id for op in batch if op.parts for part in op.parts if part.fence is not None}
    runs.update(op.fenced_by for op in batch if op.fenced_by is not None)
    return sorted(runs) if runs else []


def _refused_result(parts: Iterable[_ItemPart], refused: set[int]) -> bool | None:
    """A queued write's result: False when its durable part was refused by its fence."""
    if refused and any(part.durable and id(part) in refused for part in parts):
        return False
    return None


def _apply_item_parts(cur: Any, parts: list[_ItemPart], where: str) -> set[int]:
    """Every part in one statement; if an item is unknown (then nothing changed), part by part, so
    the part that names it — and only that one — fails (a write-behind part's failure is logged).
    Parts whose fence fails are left out; returned (by `id`)."""
    refused = _fenced(cur, parts)
    if refused:
        parts = [part for part in parts if id(part) not in refused]
        if not parts:
            return refused
    missing = _apply_items(cur, parts)
    if missing is None:
        return refused
    if len(parts) == 1 and not refused:
        raise PersistenceError(f"fan-out item {missing} not found")
    # (Not raised for a write-behind part beside refused ones: the refusals stand, and are told.)
    for part in parts:
        missing = _apply_items(cur, [part])
        if missing is None:
            continue
        if part.durable:
            raise PersistenceError(f"fan-out item {missing} not found")
        log.warning("run database %s: a write-behind write failed: fan-out item %s not found", where, missing)
    return refused


def _item_columns(parts: list[_ItemPart], *, unique: bool = False) -> tuple[list, list, list, list]:
    """The parts' updates as columns: ids, statuses, child run ids, times. `unique`: an item named
    more than once keeps only its last update (as if they were applied in order)."""
    if len(parts) == 1:
        part = parts[0]
        columns = (part.ids, part.statuses, part.children, part.nows)
    else:
        columns = (
            [x for p in parts for x in p.ids],
            [x for p in parts for x in p.statuses],
            [x for p in parts for x in p.children],
            [x for p in parts for x in p.nows],
        )
    ids = columns[0]
    if unique and len(set(ids)) < len(ids):
        keep = sorted({item: k for k, item in enumerate(ids)}.values())
        return tuple([column[k] for k in keep] for column in columns)  # type: ignore[return-value]
    return columns


def _text_array(values: list[str | None]) -> str:
    """A `text[]` literal (`{"a","b",NULL}`): built by str methods in C, where psycopg's list
    adapter spends Python per element — this runs for every batch of item writes."""
    quoted = [
        "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values
    ]
    return "{" + ",".join(quoted) + "}"


def _apply_items(cur: Any, parts: list[_ItemPart]) -> str | None:
    """Apply the parts' updates, all or nothing; None when applied, else an unknown item id."""
    ids, statuses, children, nows = _item_columns(parts)
    params = {"ids": ids, "statuses": statuses, "children": children, "nows": nows}
    # Counted from RETURNING rows, not rowcount: in pipeline mode only a fetch waits for the result.
    if len(cur.execute(_ITEMS_UPDATE + " RETURNING 1", params).fetchall()) == len(set(ids)):
        return None
    found = {
        r[0] for r in cur.execute("SELECT id FROM workflow_run_step_fan_out_items WHERE id = ANY(%s)", (ids,))
    }
    return next((i for i in ids if i not in found), ids[0])


def _require_step(cur: Any, step_id: str) -> None:
    if cur.execute("SELECT 1 FROM workflow_run_steps WHERE id = %s", (step_id,)).fetchone() is None:
        raise PersistenceError(f"step {step_id} not found")


def _item_update(item_id: str, update: FanOutItemUpdate, now: str) -> tuple[str, tuple]:
    status = FanOutItemStatus(update.status)
    if status is FanOutItemStatus.RUNNING:
        return _ITEM_RUNNING, (update.child_run_id, now, item_id)
    if status is FanOutItemStatus.PENDING:
        return _ITEM_PENDING, (item_id,)
    return _ITEM_TERMINAL, (status.value, update.child_run_id, now, item_id)


def _run(row: tuple) -> WorkflowRun:
    """`lease_until` is a timestamptz here: shown as RFC 3339 like every other timestamp."""
    lease = row[19]
    if isinstance(lease, datetime):
        row = (*row[:19], sh.rfc3339(lease), *row[20:])
    return _run_from_row(row)


__all__ = ["PostgresStore", "ensure_schema", "schema_version"]
