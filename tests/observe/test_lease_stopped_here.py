"""A lease an engine of this very process stopped holding (its run database took no write, so it
could not let go of it: `holders.stopped_holding`) reads as no engine's: the run list, `runs`
and the holder column say `interrupted` at once, as the run view and `r` do — not `running` until
the lease lapses (docs/persistence.md, "A dead holder's lease")."""

from __future__ import annotations

import time

import pytest
from runkon_flow.observe.liveness import INTERRUPTED, display_status, lease_is_live
from runkon_flow.persistence import holders
from runkon_flow.persistence.models import RunStatus, WorkflowRun
from runkon_flow.runtime.lease import new_owner_token

from runkon_tui.screens.runs import holder_text, live_status


@pytest.fixture(autouse=True)
def fresh_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holders, "_STOPPED_HERE", set())


def held(run_id: str, token: str) -> WorkflowRun:
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 600))
    return WorkflowRun(
        id=run_id,
        workflow_name="w",
        status=RunStatus.RUNNING,
        started_at="2026-12-08T00:00:00Z",
        owner_token=token,
        lease_until=until,
    )


def test_a_lease_this_process_stopped_holding_reads_interrupted_at_once() -> None:
    token = new_owner_token()  # this process's: `holder_is_gone` never counts it gone
    run, other = held("run-a", token), held("run-b", token)
    assert lease_is_live(run) and display_status(run) == "running"

    holders.stopped_holding("run-a", token)

    assert not lease_is_live(run)
    assert display_status(run) == INTERRUPTED == live_status(run)
    assert holder_text(run) == ""  # no "pid … · lease 599s" for an engine that runs it no more
    # Only that run and that very token: another run, or another engine's lease on it, is held.
    assert lease_is_live(other) and display_status(other) == "running"
    assert lease_is_live(held("run-a", new_owner_token()))
