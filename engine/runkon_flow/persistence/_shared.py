"""Rules both stores must apply identically (engine.md §6.2), kept in one place so the in-memory
and SQLite stores cannot drift apart: clocks and timestamp formats, monotonic ids, gate-approval
derivation and selection validation, and tolerant JSON decoding of stored columns."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.errors import PersistenceError
from runkon_flow.persistence.models import (
    Fence,
    GateApprovalState,
    NewRun,
    RunStatus,
    StepRole,
    StepStatus,
    WorkflowRun,
)
from runkon_flow.persistence.schema import RUN_UNFINISHED

log = logging.getLogger("runkon_flow.persistence")

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime; injectable so lease tests never sleep."""

WAITING_REJECTED = "Use set_waiting_blocked_on() to transition a workflow run to Waiting status"
SELECTION_HEADER = "User selected the following items:"
ALLOWED_ROLES = frozenset(r.value for r in StepRole)
TERMINAL_STEP_STATUSES = tuple(s.value for s in StepStatus if s.is_terminal)


def system_clock() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, e.g. `2026-05-09T07:35:25.123Z` (same as models.now_rfc3339)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _MillisecondStamp:
    """Epoch milliseconds as text with a strftime `pattern` for the second: the stores stamp several
    rows per child run, so the formatted second is cached and only the milliseconds change."""

    __slots__ = ("_cached", "_last", "_pattern", "_suffix")

    def __init__(self, pattern: str, suffix: str) -> None:
        self._pattern = pattern
        self._suffix = suffix
        self._cached: tuple[int, str] = (-1, "")
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, ms: int | None = None) -> str:
        """The text of epoch millisecond `ms` (None: now)."""
        if ms is None:
            ms = time.time_ns() // 1_000_000
        last_ms, text = self._last
        if ms == last_ms:  # the same string object for the same millisecond: a fan-out stamps
            return text  # ~10 rows a millisecond, and a store keeps every stamp
        second, prefix = self._cached
        if ms // 1000 != second:
            second = ms // 1000
            prefix = time.strftime(self._pattern, time.gmtime(second))
            self._cached = (second, prefix)  # one tuple, replaced atomically
        text = f"{prefix}{ms % 1000:03d}{self._suffix}"
        self._last = (ms, text)
        return text


_rfc3339_stamp = _MillisecondStamp("%Y-%m-%dT%H:%M:%S.", "Z")
_sqlite_stamp = _MillisecondStamp("%Y-%m-%d %H:%M:%S.", "")


def rfc3339_now() -> str:
    """`rfc3339(system_clock())`, without building a datetime."""
    return _rfc3339_stamp()


_lease_stamp = _MillisecondStamp("%Y-%m-%dT%H:%M:%S.", "Z")  # its own cache: lease ends are not "now"


def rfc3339_in(seconds: float) -> tuple[float, str]:
    """`system_clock() + seconds` as Unix seconds and as `rfc3339` text (a child run takes a
    lease), without building a datetime."""
    ms = (time.time_ns() + int(seconds * 1_000_000_000)) // 1_000_000
    return ms / 1000, _lease_stamp(ms)


def now_function(clock: Clock) -> Callable[[], str]:
    """The store's "now" as RFC 3339: the cached fast path for the system clock, else `clock`'s."""
    if clock is system_clock:
        return _rfc3339_stamp  # `rfc3339_now` in one call: the stores stamp ~5 rows per child run
    return lambda: rfc3339(clock())


def sqlite_lease_time(moment: datetime) -> str:
    """SQLite's `YYYY-MM-DD HH:MM:SS.SSS` (UTC): sorts as text and parses with SQLite's date functions."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def sqlite_lease_time_in(seconds: float) -> str:
    """`sqlite_lease_time(system_clock() + seconds)` without datetimes (a child run takes a lease)."""
    return _sqlite_stamp((time.time_ns() + int(seconds * 1_000_000_000)) // 1_000_000)


def lease_cancelled() -> EngineCancelled:
    """The fencing error: a write carried a generation that is no longer the run's."""
    return EngineCancelled(CancellationReason.of("LeaseLost"))


def check_ttl(ttl_seconds: float) -> None:
    if ttl_seconds < 0:
        raise PersistenceError(f"lease ttl must not be negative (got {ttl_seconds})")


_FINAL_RUN_STATUSES = {s.value: s for s in RunStatus if s.is_terminal}


#: The store's log line for a write-behind `finish_run` fenced when committed (the caller has gone on).
FINISH_FENCED = "run %s: final status %s not written: another engine owns the run now"


_held = threading.local()


@contextlib.contextmanager
def refusals_told_on_commit() -> Iterator[None]:
    """Around one transaction of a committing thread: the refusals of write-behind writes found
    in it (`finish_refused_behind`, `items_refused_behind`) are logged and told to their callers
    when the block ends — after its COMMIT — and dropped if it raises (rolled back: the store runs
    the writes again one by one, and a write still refused is told then). Before, a refusal found
    in a batch that then failed was told twice, at the rolled-back attempt and again at the rerun."""
    outer = getattr(_held, "pending", None)
    pending: list[Callable[[], None]] = []
    _held.pending = pending
    try:
        yield
    finally:
        _held.pending = outer
    for tell in pending:
        tell()


def _tell_refused(
    on_refused: Callable[[], object] | None, run_id: str, what: str, warning: str, *args: object
) -> None:
    """Log a write-behind write's refusal (`warning % args`) and call its `on_refused` (what it
    raises is logged: a refused `what` of run `run_id`) — now, or when the transaction in
    `refusals_told_on_commit` commits."""

    def tell() -> None:
        log.warning(warning, *args)
        if on_refused is None:
            return
        try:
            on_refused()
        except Exception:
            log.exception("run %s: on_refused of a fenced %s raised", run_id, what)

    pending = getattr(_held, "pending", None)
    if pending is None:
        tell()
    else:
        pending.append(tell)


def finish_refused_behind(run_id: str, status: str, on_refused: Callable[[], object] | None) -> None:
    """A queued write-behind `finish_run` was fenced when committed: log it and tell the caller
    through `on_refused` (it runs on the committing thread, which holds the store's connection:
    it must not use the store; what it raises is logged, never raised into the commit). Once the
    transaction commits, inside `refusals_told_on_commit`."""
    _tell_refused(on_refused, run_id, "finish", FINISH_FENCED, run_id, status)


EVENTS_FENCED = "run %s: %d event rows not stored: another engine took the run over"
ITEMS_FENCED = "run %s: %d fan-out item update(s) not written: another engine owns the run now"


def tell_failed_behind(fence: Fence, error: BaseException) -> None:
    """A queued write-behind write carrying `fence` failed at its commit: tell its writer
    (`fence.on_failed`, on the committing thread); a writer's mistake there is logged, never
    raised into the commit."""
    if fence.on_failed is None:
        return
    try:
        fence.on_failed(error)
    except Exception:
        log.exception("run database: telling a writer that its write failed raised")


def items_refused_behind(fence: Fence, count: int) -> None:
    """A queued write-behind item batch was fenced when committed: it is dropped; log it and tell
    the writer through `fence.on_refused` (on the committing thread, which holds the store's
    connection: it must not use the store; what it raises is logged, never raised into the
    commit). Once the transaction commits, inside `refusals_told_on_commit`."""
    _tell_refused(fence.on_refused, fence.run_id, "item write", ITEMS_FENCED, fence.run_id, count)


def check_finish_status(status: RunStatus) -> RunStatus:
    """`finish_run` ends a run: only completed, failed and cancelled are accepted."""
    final = _FINAL_RUN_STATUSES.get(status)
    if final is not None:
        return final
    status = RunStatus(status)
    if not status.is_terminal:
        raise PersistenceError(
            f"finish_run needs a terminal status (completed, failed or cancelled), not {status.value}"
        )
    return status


def startable(resuming: bool) -> tuple[bool, tuple[str, ...]]:
    """The statuses `start_run` marks `running`: (True, S) those in S only, (False, S) all but
    those. A run is started only from `pending` (else it was cancelled, or another engine started
    it); a run is resumed unless a cancel was requested (`cancelling`)."""
    if resuming:
        return False, (RunStatus.CANCELLING.value,)
    return True, (RunStatus.PENDING.value,)


def listed_statuses(statuses: list[RunStatus]) -> tuple[list[str], str]:
    """What `list_active_runs` asks the database for: the status values (none given →
    pending/running/waiting), and a term to add to its WHERE — `AND RUN_UNFINISHED` when every
    status asked for is unfinished, so that the status index (partial from schema version 8,
    where SQLite uses it only for a query carrying its very term) serves the query."""
    wanted = [RunStatus(s).value for s in statuses] or [s.value for s in RunStatus if s.is_active]
    unfinished = "" if any(RunStatus(s).is_terminal for s in wanted) else f" AND {RUN_UNFINISHED}"
    return wanted, unfinished


def copy_step_rows(
    cur: Any,
    run_exists: str,
    copy_step: str,
    source_run_id: str,
    target_run_id: str,
    pairs: Iterable[tuple[str, str]],
) -> None:
    """`copy_steps` inside a store's transaction, with the store's SQL: `run_exists` takes a run
    id, `copy_step` (new id, target run, step id, source run) and copies one row. Unknown target
    run, or a step not of the source run → `PersistenceError` (the transaction is rolled back)."""
    if cur.execute(run_exists, (target_run_id,)).fetchone() is None:
        raise PersistenceError(f"run {target_run_id} not found")
    for new_id, step_id in pairs:
        if cur.execute(copy_step, (new_id, target_run_id, step_id, source_run_id)).rowcount != 1:
            raise PersistenceError(f"step {step_id} is not a step of run {source_run_id}")


def check_role(role: str) -> None:
    """The canonical schema's CHECK on role, enforced in both stores so they accept the same rows."""
    if role not in ALLOWED_ROLES:
        allowed = ", ".join(sorted(ALLOWED_ROLES))
        raise PersistenceError(f"invalid step role '{role}' (allowed: {allowed})")


# --------------------------------------------------------------------------- ids

# `random` is reseeded in forked children, and ULID randomness needs uniqueness, not secrecy.
_random_bits = random.getrandbits
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_RANDOM_LIMIT = 1 << 80
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as two digits


def _crockford_time(ms: int) -> str:
    """The 10-character timestamp part of a ULID (48 bits, two leading zero bits)."""
    p = _PAIRS
    return f"{p[ms >> 40]}{p[(ms >> 30) & 1023]}{p[(ms >> 20) & 1023]}{p[(ms >> 10) & 1023]}{p[ms & 1023]}"


def _crockford_random(r: int) -> str:
    """The 16-character random part of a ULID (80 bits), two digits per table lookup."""
    p = _PAIRS
    return (
        f"{p[r >> 70]}{p[(r >> 60) & 1023]}{p[(r >> 50) & 1023]}{p[(r >> 40) & 1023]}"
        f"{p[(r >> 30) & 1023]}{p[(r >> 20) & 1023]}{p[(r >> 10) & 1023]}{p[r & 1023]}"
    )


class MonotonicUlids:
    """ULIDs that strictly increase within this process, made without a lock.

    Plain ULIDs are random inside one millisecond, so `ORDER BY id` would shuffle fan-out items
    inserted in the same millisecond. Here the 80-bit "random" part is a random base drawn once
    (again in a forked child) plus a process-wide counter, so within one millisecond every id is
    above the ones made before it, and ids stay unique without any lock: `next()` on an
    `itertools.count` is one atomic step under the GIL. (A lock here was taken three times per
    fan-out item by all the workers at once, and a contended lock makes them hand the GIL to
    each other through the kernel: docs/engine.md, "Why the fan-out takes no shared lock".)
    A clock that steps back keeps the last millisecond. The timestamp and the high random digits
    are encoded once per millisecond and 1,024 ids; digits come two at a time from a table.
    """

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        # Room above the base for 2**60 ids, so the sum never wraps past 80 bits.
        self._base = _random_bits(80) % (_RANDOM_LIMIT - (1 << 60))
        self._counter = itertools.count()
        self._last_ms = -1
        self._head: tuple[int, int, str] = (-1, -1, "")  # (ms, random part >> 10, its first 24 digits)

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms > self._last_ms:
            self._last_ms = ms
        else:
            ms = self._last_ms
        random_part = self._base + next(self._counter)
        high = random_part >> 10
        head = self._head
        if head[0] != ms or head[1] != high:  # replaced whole: a reader sees an old or new tuple
            head = (ms, high, _crockford_time(ms) + _crockford_random(random_part)[:14])
            self._head = head
        return head[2] + _PAIRS[random_part & 1023]


new_ordered_id = MonotonicUlids()


# --------------------------------------------------------------------------- JSON columns


def load_json_object(text: str | None, what: str) -> dict:
    """Decode a stored JSON object; malformed or non-object text is logged and read as `{}` (§6.3)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("malformed JSON in %s ignored: %.80r", what, text)
        return {}
    if not isinstance(value, dict):
        log.warning("JSON in %s is not an object, ignored: %.80r", what, text)
        return {}
    return value


def load_blocked_on(text: str | None) -> dict | None:
    """`blocked_on` is optional: absent stays None, malformed is logged and read as None."""
    if not text:
        return None
    return load_json_object(text, "workflow_runs.blocked_on") or None


# One encoder for every call (json.dumps with options would build one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump_json(value: object) -> str:
    """Compact JSON, non-ASCII kept (the stored form of inputs, contexts, blocked_on, selections)."""
    return _ENCODER.encode(value)


def workflow_title(definition_snapshot: str | None) -> str | None:
    """The snapshot's `"title"` key, when the snapshot is a JSON object with a string title."""
    if not definition_snapshot:
        return None
    return _title_of(definition_snapshot)


@functools.lru_cache(maxsize=64)
def _title_of(definition_snapshot: str) -> str | None:
    # Cached: a foreach creates thousands of child runs with the same snapshot string.
    try:
        value = json.loads(definition_snapshot)
    except ValueError:
        return None
    title = value.get("title") if isinstance(value, dict) else None
    return title if isinstance(title, str) else None


# --------------------------------------------------------------------------- runs


def new_run_row(
    new_run: NewRun,
    started_at: str,
    *,
    status: RunStatus = RunStatus.PENDING,
    owner_token: str | None = None,
    lease_until: str | None = None,
    generation: int = 0,
) -> WorkflowRun:
    """The run `create_run`/`create_leased_run` write, in every store: all of it known up front."""
    return WorkflowRun(
        id=new_run.run_id or new_ordered_id(),
        workflow_name=new_run.workflow_name,
        parent_run_id=new_run.parent_run_id,
        status=status,
        dry_run=new_run.dry_run,
        trigger=new_run.trigger,
        started_at=started_at,
        definition_snapshot=new_run.definition_snapshot,
        inputs=dict(new_run.inputs),
        parent_workflow_run_id=new_run.parent_workflow_run_id,
        iteration=new_run.iteration,
        workflow_title=new_run.workflow_title or workflow_title(new_run.definition_snapshot),
        owner_token=owner_token,
        lease_until=lease_until,
        generation=generation,
    )


# --------------------------------------------------------------------------- gates


def validate_gate_selections(step_id: str, gate_options: str | None, selections: list[str]) -> None:
    """Selections must be values of the gate's stored options (§6.2); nothing to check when empty."""
    if not selections:
        return
    if not gate_options:
        raise PersistenceError(
            f"Gate selections provided but no options configured for this gate (step {step_id})"
        )
    try:
        options = json.loads(gate_options)
    except ValueError as exc:
        raise PersistenceError(f"Invalid gate options JSON in database for step {step_id}: {exc}") from None
    allowed: set[str] = set()
    if isinstance(options, list):
        for option in options:
            if isinstance(option, dict) and isinstance(option.get("value"), str):
                allowed.add(option["value"])
    if not allowed:
        raise PersistenceError(f"No valid options found in gate configuration (step {step_id})")
    for selection in selections:
        if selection not in allowed:
            listed = ", ".join(sorted(allowed))
            raise PersistenceError(
                f"Invalid gate selection '{selection}' - not in allowed options: [{listed}]"
            )


def selection_context(selections: list[str]) -> str:
    """The `context_out` an approval with selections hands to later steps."""
    return SELECTION_HEADER + "\n" + "".join(f"- {item}\n" for item in selections)


def gate_already_resolved(step_id: str, status: str) -> PersistenceError:
    return PersistenceError(f"gate step {step_id} is already {status}; it cannot be approved or rejected")


def approval_state(
    approved_at: str | None,
    status: str,
    feedback: str | None,
    selections_json: str | None,
    by: str | None,
) -> GateApprovalState:
    """Approved if approved_at is set or the row is completed; rejected if failed; else pending."""
    if approved_at or status == StepStatus.COMPLETED:
        return GateApprovalState("approved", feedback, _load_selections(selections_json), by)
    if status == StepStatus.FAILED:
        return GateApprovalState("rejected", feedback, (), by)
    return GateApprovalState.pending()


def _load_selections(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("malformed gate_selections ignored: %.80r", text)
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)


# --------------------------------------------------------------------------- retention


def descendants(roots: list[str], children: dict[str, list[str]]) -> list[str]:
    """`roots` and every run below them (children of children…), each once, roots first."""
    seen = dict.fromkeys(roots)
    frontier = list(roots)
    while frontier:
        nxt = []
        for run_id in frontier:
            for child in children.get(run_id, ()):
                if child not in seen:
                    seen[child] = None
                    nxt.append(child)
        frontier = nxt
    return list(seen)
