"""What `retry` reaches — one rule for `runkon-flow retry` and the dashboard's `E` and `e`.

Retry (`Workspace.retry`) runs chosen items of a finished top-level run's own foreach steps again.
A fan-out inside a child run — a workflow the run calls, or a fan-out item's child run — is out of
its reach, and so is a child run itself: `retry` says so, and the dashboard does not offer its
keys for such a fan-out (it offered them, then refused when they were pressed).
"""

from __future__ import annotations

#: Why a fan-out in a workflow the run calls is not retried (the CLI's words and the dashboard's).
CALLED_FANOUT = "a fan-out in a workflow it calls is not offered by retry yet"


def retrying(items: int) -> str:
    """How a retry is announced where a run would say it started or resumed (the live view, the
    dashboard's log): `retrying 8 failed items` (`RunResumed.retried_items`)."""
    return f"retrying {items} failed item{'' if items == 1 else 's'}"


def retry_refusal(run_id: str, parent_run_id: str | None, fan_run_id: str | None = None) -> str | None:
    """Why `retry` of run `run_id` (whose parent is `parent_run_id`) cannot run items of a fan-out
    of run `fan_run_id` (default: the run's own) again; None when it can."""
    if parent_run_id:
        return f"run {run_id} is a child of run {parent_run_id}; retry that run instead"
    if fan_run_id is not None and fan_run_id != run_id:
        return CALLED_FANOUT
    return None
