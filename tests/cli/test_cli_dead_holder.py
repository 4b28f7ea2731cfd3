"""A run whose engine process is gone but whose lease has not lapsed yet — the engine stopped when
its run database went away and could not let go of the lease, or it was killed — is taken over at
once when the holder is provably dead: same host, same pid namespace on this boot, no such
process (persistence/holders.py). Before, `resume`, `retry` and the dashboard's `r` said "already
owned by another engine" and `runs` said `running` until the lease lapsed (a TTL: 30 s by
default), although the run's own last words were "resume it". docs/persistence.md, "A dead
holder's lease"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from runkon_flow.observe.liveness import last_heartbeat, lease_end, stopped_at, utc_seconds
from runkon_flow.persistence.holders import holder_is_gone, holder_of, lease_ttl_of, this_host, this_place
from runkon_flow.runtime.lease import new_owner_token

from runkon_tui.history import past_run_view, view_from_store
from tests import pg
from tests.cli.run_helpers import cli, cli_env, run_id_of, spawn, stop, wait_for, write

WAITER = """workflow waiter {
  script first { run = "echo first" }
  script hold { run = "touch started; while [ ! -f go ]; do sleep 0.05; done" }
}
"""


@pytest.fixture(params=pg.BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return pg.database(request.param, tmp_path)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", db)
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "wf" / "waiter.wf", WAITER)
    return tmp_path


def _killed_holding_its_lease(home: Path) -> tuple[str, int]:
    """A real engine process with a ten-minute lease (nothing below may wait for it to lapse),
    killed with SIGKILL while its second step runs: (the run's id, the dead engine's pid)."""
    out, err = home / "out.txt", home / "err.txt"
    proc = spawn(
        ["run", "waiter", "--dir", "wf", "--lease-ttl", "600"], home, stdout=out, stderr=err, env=cli_env()
    )
    try:
        wait_for((home / "wf" / "started").exists, "the run to reach its long step")
        run_id = run_id_of(out.read_text())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
        (home / "wf" / "go").touch()
    return run_id, proc.pid


def test_a_run_whose_engine_is_gone_reads_interrupted_and_resumes_at_once(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, pid = _killed_holding_its_lease(home)
    with pg.open_db(db) as store:
        run = store.get_run(run_id)
    assert run is not None and run.owner_token is not None  # its lease was never let go of
    holder = holder_of(run.owner_token)
    assert holder is not None and holder.pid == pid and holder.place == this_place()

    [entry] = json.loads(cli(capsys, "runs", "--json")[1])
    assert entry["display_status"] == "interrupted", entry
    # Its lease ends ten minutes from now; `show` says where it stopped, never a time to come.
    [stopped] = [line for line in cli(capsys, "show", run_id)[1].splitlines() if line.startswith("stopped ")]
    when = datetime.strptime(stopped.split(None, 1)[1], "%Y-%m-%d %H:%M:%S")
    assert when <= datetime.now(), stopped
    code, _, errors = cli(capsys, "resume", run_id, "--dir", "wf", "--progress", "quiet")
    assert code == 0, errors
    assert "already owned" not in errors
    with pg.open_db(db) as store:
        assert store.get_run(run_id).status.value == "completed"  # type: ignore[union-attr]


def test_a_run_whose_engine_is_gone_stops_its_clock_at_its_last_heartbeat(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its lease runs ten more minutes, but its engine was last known alive when it last renewed
    it — the lease's end less the TTL its owner token carries — or recorded a step after that:
    `runs`, `show` and the dashboard stop its clock there, at once and alike. Before, its duration
    grew with now (`show`'s `stopped` line said now) until the lease's end, and then stood ten
    minutes past the engine's death."""
    run_id, _ = _killed_holding_its_lease(home)
    killed = time.time()
    with pg.open_db(db) as store:
        run = store.get_run(run_id)
        steps = store.get_steps(run_id)
        views = [past_run_view(store, run_id), view_from_store(store, run_id)]
    assert run is not None and lease_ttl_of(run.owner_token) == 600
    assert last_heartbeat(run) == pytest.approx(lease_end(run) - 600)
    stop = stopped_at(run, steps)
    assert stop is not None and stop <= killed  # nothing of the run's after its engine died
    took = stop - utc_seconds(run.started_at)

    [entry] = json.loads(cli(capsys, "runs", "--json")[1])
    assert entry["display_status"] == "interrupted"
    assert entry["duration_s"] == pytest.approx(took, abs=0.001)
    shown = cli(capsys, "show", run_id)[1].splitlines()
    assert f"stopped   {datetime.fromtimestamp(stop).strftime('%Y-%m-%d %H:%M:%S')}" in shown
    for view in views:  # the dashboard's history and a past run opened from it
        assert view.root is not None and view.root.status == "interrupted"
        assert view.elapsed() == pytest.approx(took, abs=0.001)


def test_an_owner_token_says_its_lease_ttl_and_still_who_holds_it() -> None:
    token = new_owner_token(600)
    assert lease_ttl_of(token) == 600 and lease_ttl_of(new_owner_token(0.5)) == 0.5
    assert holder_of(token) == holder_of(new_owner_token())  # the TTL is no part of the place
    # Tokens that do not say: an older runkon's, another tool's, a CLI's short cancel lease.
    assert lease_ttl_of(new_owner_token()) is None
    assert lease_ttl_of("host:42:01J0000000000000000000000:0123456789abcdef-3") is None
    assert lease_ttl_of("cancel-cli") is None and lease_ttl_of("engine-b/30") is None
    assert lease_ttl_of(None) is None


def test_a_run_whose_engine_is_gone_is_cancelled_at_once(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `cancel` borrows the lease to mark a run no engine holds (workspace.borrowed_lease).
    run_id, _ = _killed_holding_its_lease(home)
    code, said, errors = cli(capsys, "cancel", run_id)
    assert code == 0, errors
    assert "was not running (no engine holds it); marked cancelled" in said
    with pg.open_db(db) as store:
        assert store.get_run(run_id).status.value == "cancelled"  # type: ignore[union-attr]


def test_only_a_provably_dead_holder_is_gone(tmp_path: Path) -> None:
    place = this_place()
    if place is None:
        pytest.skip("no /proc here: no holder is ever taken for dead")
    host = this_host()
    # A process that has exited and been reaped: its pid exists no more.
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead = f"{host}:{ended.pid}:01J0000000000000000000000:{place}-1"
    assert holder_is_gone(dead)
    # The same pid without a place (a token of an older runkon, or of a machine without /proc).
    assert not holder_is_gone(f"{host}:{ended.pid}:01J0000000000000000000000-1")
    # Another pid namespace or another machine that shares the host name: never judged from here.
    assert not holder_is_gone(f"{host}:{ended.pid}:01J0000000000000000000000:0123456789abcdef-1")
    assert not holder_is_gone(f"other-{host}:{ended.pid}:01J0000000000000000000000:{place}-1")
    # A live process (this one, and another one: its parent), and a token of this very process.
    assert not holder_is_gone(f"{host}:{os.getppid()}:01J0000000000000000000000:{place}-1")
    assert not holder_is_gone(new_owner_token())
    assert holder_of(new_owner_token()) == holder_of(f"{host}:{os.getpid()}:x:{place}-9")
    assert not holder_is_gone(None) and not holder_is_gone("cancel-cli")
