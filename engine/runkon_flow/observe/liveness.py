"""Is a stored run held by an engine right now, and when did a run that lost its engine stop?

A run whose row says running/waiting/cancelling but whose lease has lapsed has no engine behind it
any more (its process died): every renderer shows it as `interrupted` — `runs`, `show`, the
dashboard's history and a past run opened from it. So does one whose lease has not lapsed yet but
whose holder is provably gone (this host and pid namespace, no such process:
persistence/holders.py), at once rather than when the lease lapses. Its duration stops where the run stopped,
never at "now", so it does not keep growing (docs/run-model.md, "Interrupted runs"):

* the holder's last heartbeat when the row has a lease whose owner token carries its TTL: the
  lease's end less the TTL, when the engine last renewed it (three times per TTL, for as long as
  it ran) — the last moment it was known alive, at most a renewal interval before it died, where
  the lease's end is up to a whole TTL after (a `--lease-ttl 600` run's clock ran on ten minutes);
* else (a token of an older runkon) the lease's end;
* else (the lease was let go of and nobody took the run) the last thing the run recorded: the
  latest start or end of any of its step rows, or its own start.

Times are Unix seconds. Lease times are SQLite's `YYYY-MM-DD HH:MM:SS.SSS` in UTC without a zone,
step and run times RFC 3339: both read as UTC, whatever this machine's time zone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from runkon_flow.persistence.holders import lease_holder_gone, lease_ttl_of
from runkon_flow.persistence.models import RunStatus, WorkflowRun, WorkflowRunStep

__all__ = [
    "INTERRUPTED",
    "display_status",
    "last_heartbeat",
    "lease_end",
    "lease_is_live",
    "local_time",
    "run_end",
    "run_seconds",
    "started_time",
    "step_seconds",
    "stopped_at",
    "unfinished_until",
    "utc_moment",
    "utc_seconds",
]

INTERRUPTED = "interrupted"

_HELD = (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.CANCELLING)


def utc_moment(text: str | None) -> datetime | None:
    """RFC 3339 or SQLite `YYYY-MM-DD HH:MM:SS[.fff]` (UTC when it names no zone) → an aware
    datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def local_time(text: str | None, fmt: str = "%Y-%m-%d %H:%M:%S", missing: str = "-") -> str:
    """A stored UTC time in the reader's own zone: the CLI and the dashboard show the same clock
    a person sees on the wall, never the store's UTC; `missing` when absent or unreadable."""
    moment = utc_moment(text)
    return moment.astimezone().strftime(fmt) if moment is not None else missing


def started_time(run: WorkflowRun, fmt: str = "%Y-%m-%d %H:%M:%S", missing: str = "-") -> str:
    """When the run started, as `local_time` writes it; `missing` for a run recorded but not
    started yet (`pending`): its stored start is only when it was recorded, and nothing has run."""
    if RunStatus(run.status) is RunStatus.PENDING:
        return missing
    return local_time(run.started_at, fmt, missing)


def utc_seconds(text: str | None) -> float | None:
    """`utc_moment` as Unix seconds."""
    moment = utc_moment(text)
    return None if moment is None else moment.timestamp()


def step_seconds(row: WorkflowRunStep, until: float | None = None) -> float | None:
    """How long a stored step row ran (start to end). One that has not ended runs to `until` —
    its unfinished run's `run_end`: now while an engine runs it, where it stopped once it is
    interrupted (`unfinished_until`) — and has no duration (None) without it."""
    start, end = utc_seconds(row.started_at), utc_seconds(row.ended_at)
    if end is None:
        end = until
    return None if start is None or end is None else max(0.0, end - start)


def unfinished_until(
    run: WorkflowRun, steps: Iterable[WorkflowRunStep] = (), now: float | None = None
) -> float | None:
    """Where the clocks of a run's steps that have not ended stop (`step_seconds`'s `until`): the
    run's `run_end` while the run is unfinished (now, or where an interrupted run stopped); None
    for a finished run, whose unended rows (an attempt a resume replaced) ran no known time."""
    if RunStatus(run.status).is_terminal:
        return None
    return run_end(run, steps, now)


def lease_end(run: WorkflowRun) -> float | None:
    """When the run's lease runs (or ran) out; None when nobody holds or held it."""
    return utc_seconds(run.lease_until)


def last_heartbeat(run: WorkflowRun) -> float | None:
    """When the run's holder last took or renewed its lease: the lease's end less the TTL its owner
    token carries (`lease_ttl_of`) — on the clock that wrote the lease (PostgreSQL's server's).
    None when the row has no lease, or its token does not say its TTL (an older runkon's)."""
    until, ttl = lease_end(run), lease_ttl_of(run.owner_token)
    return None if until is None or ttl is None else until - ttl


def lease_is_live(run: WorkflowRun, now: float | None = None) -> bool:
    """Some engine holds this run right now: an owner and an unexpired lease, whose holder is not
    provably gone (`lease_holder_gone`: a process of this host and pid namespace that no longer
    exists, e.g. one that stopped when its run database went away and could not let go of the
    lease, or an engine of this very process that stopped holding it so — the dashboard's own,
    whose `runs` list and run view then both read the run `interrupted`)."""
    until = lease_end(run)
    return (
        bool(run.owner_token)
        and until is not None
        and until >= (time.time() if now is None else now)
        and not lease_holder_gone(run.id, run.owner_token)
    )


def display_status(run: WorkflowRun, now: float | None = None) -> str:
    """The stored status, except `interrupted` for an unfinished run that no engine holds."""
    status = RunStatus(run.status)
    if status in _HELD and not lease_is_live(run, now):
        return INTERRUPTED
    return status.value


def stopped_at(run: WorkflowRun, steps: Iterable[WorkflowRunStep]) -> float | None:
    """Where an interrupted run's clock stops: its holder's last heartbeat (`last_heartbeat`), else
    (a token that does not say its TTL) its lease's end, else its last recorded activity (the
    latest step start or end, or the run's start) — whichever is later, as a step recorded after
    the last renewal is a later sign of life (and another machine's clock may run ahead of the one
    that wrote the lease)."""
    latest = utc_seconds(run.started_at)
    for step in steps:
        for text in (step.started_at, step.ended_at):
            moment = utc_seconds(text)
            if moment is not None and (latest is None or moment > latest):
                latest = moment
    until = last_heartbeat(run)
    if until is None:
        until = lease_end(run)
    if until is None:
        return latest
    return until if latest is None else max(until, latest)


def run_end(
    run: WorkflowRun, steps: Iterable[WorkflowRunStep] = (), now: float | None = None
) -> float | None:
    """When the run's duration ends: its recorded end; for an interrupted run where it stopped
    (`stopped_at`); for a run an engine executes (a run waiting at a gate too), now. None for a
    finished run with no end, and for a run recorded but not started yet (`pending`: its
    `started_at` is when it was recorded — nothing has run, so no time is taken)."""
    ended = utc_seconds(run.ended_at)
    if ended is not None:
        return ended
    status = RunStatus(run.status)
    if status.is_terminal or status is RunStatus.PENDING:
        return None
    current = time.time() if now is None else now
    if display_status(run, current) == INTERRUPTED:
        stop = stopped_at(run, steps)
        return current if stop is None else min(stop, current)
    return current


def run_seconds(
    run: WorkflowRun, steps: Iterable[WorkflowRunStep] = (), now: float | None = None
) -> float | None:
    """Seconds from start to `run_end`; None when the run has not started (`pending`)."""
    start = utc_seconds(run.started_at)
    end = run_end(run, steps, now)
    return None if start is None or end is None else max(0.0, end - start)
