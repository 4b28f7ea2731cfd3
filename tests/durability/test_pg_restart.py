"""A PostgreSQL server restarting, or away for a few seconds, in the middle of a run: the engine's
store calls wait for it (said once on stderr when it goes, once when it is back) and the run goes
on — a fan-out completes every item exactly once, its event stream without a gap or a repeat; an
outage longer than the window (RUNKON_PG_OUTAGE_S) fails the run, which a resume completes. A step
that completed is never run again. Runs on a throwaway server of its own (restarting a shared one
would disturb other tests)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from runkon_flow.persistence import RunStatus

from tests import pg, pgserver
from tests.cli.run_helpers import cli_env, first_line, run_cli_process, spawn, stop, wait_for, write
from tests.durability.recording_fan import lines_in, start_recording_fan
from tests.pg import open_db

SLOW = """workflow slow {
  script one   { run = "echo one >> ran.log" }
  script wait  { run = "touch started; while [ ! -f go ]; do sleep 0.05; done; echo wait >> ran.log" }
  script three { run = "echo three >> ran.log" }
}
"""


def slow_run(tmp_path: Path, dsn: str, env: dict[str, str]):
    """`SLOW` started on `dsn` in `tmp_path/wf`: (process, the workflow folder, its stdout, its
    stderr). Its second step waits for `go` in that folder."""
    wf = tmp_path / "wf"
    write(wf / "slow.wf", SLOW)
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    proc = spawn(
        ["run", "slow", "--dir", str(wf), "--db", dsn, "--progress", "quiet"],
        wf,
        stdout=out,
        stderr=err,
        env=env,
    )
    return proc, wf, out, err


@pytest.fixture
def own_server() -> Iterator[tuple[Path, str]]:
    """A server of this test's own, and its URL with a password (trust auth ignores it)."""
    with pg.own_server() as (directory, dsn):
        secret = dsn.replace("postgresql://", "postgresql://postgres:hunter2@", 1)
        yield directory, secret.replace("&user=postgres", "")


@pytest.mark.slow
def test_a_server_restart_mid_run_leaves_the_run_finished_or_resumable(tmp_path: Path, own_server) -> None:
    directory, dsn = own_server
    env = cli_env()
    proc, wf, out, err = slow_run(tmp_path, dsn, env)
    try:
        wait_for(lambda: (wf / "started").exists() or proc.poll() is not None, "the second step to start")
        pgserver.restart(directory)
        (wf / "go").touch()
        proc.wait(timeout=60)
    finally:
        stop(proc)
    run_id = first_line(out).split()[0].removeprefix("run_id=")
    shown = dsn.replace("postgres:hunter2@", "postgres@")
    problems = [line for line in err.read_text().splitlines() if "run database" in line]
    assert all(shown in line and "hunter2" not in line for line in problems), problems
    if proc.returncode != 0:  # a write fell into the outage: the run stays resumable
        resumed = run_cli_process(["resume", run_id, "--dir", str(wf), "--db", dsn, "--wait"], wf, env)
        assert resumed.returncode == 0, resumed.stderr
    with open_db(dsn) as store:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
    ran = (wf / "ran.log").read_text().split()
    assert ran == ["one", "wait", "three"] or re.fullmatch(r"one (wait )+three", " ".join(ran))


ITEMS = [f"item-{i:03d}" for i in range(120)]


def fan_out(tmp_path: Path, dsn: str, **env: str):
    """The 120-item fan-out started on `dsn`: (process, its stdout, its stderr, the items' record)."""
    return start_recording_fan(tmp_path, "outage", ITEMS, dsn, cli_env(**env))


def outage_said(err: Path) -> tuple[list[str], list[str]]:
    lines = err.read_text().splitlines()
    return [line for line in lines if " unreachable " in line], [
        line for line in lines if " is back after " in line
    ]


def check_items_once(dsn: str, run_id: str, *, resumed: bool = False) -> None:
    """Every item once and completed (its row, unless `resumed`: then the last foreach row's
    aggregate); the run's event stream without a gap or a repeat."""
    from runkon_flow.persistence import FanOutItemStatus, StepRole

    with open_db(dsn) as store:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
        rows = [s for s in store.get_steps(run_id) if s.role == StepRole.FOREACH.value]
        items = store.get_fan_out_items(rows[-1].id)
        events = store.read_events(run_id)
    aggregate = json.loads(rows[-1].structured_output)["items"]
    assert [entry["item_id"] for entry in aggregate] == ITEMS
    assert {entry["status"] for entry in aggregate} == {"completed"}
    if not resumed:
        assert len(rows) == 1
        assert sorted(i.item_id for i in items) == ITEMS
        assert {i.status for i in items} == {FanOutItemStatus.COMPLETED}
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    bodies = [(e.ts, e.event_run_id, e.kind, e.payload) for e in events]
    assert len(set(bodies)) == len(bodies), "an event was appended twice"


@pytest.mark.slow
def test_a_fan_out_rides_out_a_server_outage_and_completes_every_item_once(
    tmp_path: Path, own_server
) -> None:
    directory, dsn = own_server
    proc, out, err, ran = fan_out(tmp_path, dsn)
    try:
        wait_for(lambda: lines_in(ran) >= 40 or proc.poll() is not None, "40 items to run")
        assert proc.poll() is None, err.read_text()
        pgserver.halt(directory)
        time.sleep(2.0)  # an outage of a few seconds (the halt and the start take about one each)
        pgserver.start_again(directory)
        proc.wait(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 0, err.read_text()  # no resume needed
    run_id = first_line(out).split()[0].removeprefix("run_id=")
    assert Counter(ran.read_text().split()) == Counter(ITEMS), "an item ran twice or not at all"
    lost, back = outage_said(err)
    assert len(lost) == 1 and len(back) == 1, err.read_text()
    assert "retry for up to 30 s (RUNKON_PG_OUTAGE_S)" in lost[0]
    # No failed poll, renewal or write: nothing but the two lines (whose server error may itself
    # say "failed": psycopg's "consuming input failed: server closed the connection …").
    others = [line for line in err.read_text().splitlines() if line not in (lost[0], back[0])]
    assert not any("failed" in line for line in others), err.read_text()
    check_items_once(dsn, run_id)


@pytest.mark.slow
def test_an_outage_longer_than_the_window_fails_the_run_resumable(tmp_path: Path, own_server) -> None:
    directory, dsn = own_server
    proc, out, err, ran = fan_out(tmp_path, dsn, RUNKON_PG_OUTAGE_S="2", RUNKON_LEASE_TTL="1")
    try:
        wait_for(lambda: lines_in(ran) >= 40 or proc.poll() is not None, "40 items to run")
        assert proc.poll() is None, err.read_text()
        pgserver.halt(directory)
        proc.wait(timeout=120)
    finally:
        stop(proc)
        pgserver.start_again(directory)
    assert proc.returncode != 0
    said = err.read_text()
    assert "unreachable for 2 s (RUNKON_PG_OUTAGE_S), gave up" in said, said
    assert len(outage_said(err)[0]) >= 1
    run_id = first_line(out).split()[0].removeprefix("run_id=")
    # The items not started did not fail: one line for the step, not one per item.
    assert "could not run" not in said and said.count("no further item starts") == 1, said
    last = said.splitlines()[-1]
    assert f"run {run_id} stays as it was stored" in last and f"runkon-flow resume {run_id}" in last, said
    env = cli_env(RUNKON_LEASE_TTL="1")
    resumed = run_cli_process(
        ["resume", run_id, "--dir", str(tmp_path / "wf"), "--db", dsn, "--wait"], tmp_path, env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert set(ran.read_text().split()) == set(ITEMS)
    check_items_once(dsn, run_id, resumed=True)


@pytest.mark.slow
def test_watch_waits_out_an_outage_its_own_way_while_the_run_rides_it_out(tmp_path: Path, own_server) -> None:
    """`watch` says the outage as it always did (observe/outage.py: one line, tried every second)
    — its store does not also hold its reads for the window — and follows the run to its end."""
    directory, dsn = own_server
    env = cli_env()
    run, wf, run_out, run_err = slow_run(tmp_path, dsn, env)
    watch = None
    try:
        wait_for(lambda: (wf / "started").exists() or run.poll() is not None, "the second step to start")
        run_id = first_line(run_out).split()[0].removeprefix("run_id=")
        out, err = tmp_path / "watch.out", tmp_path / "watch.err"
        watch = spawn(
            ["watch", run_id, "--db", dsn, "--progress", "quiet"], wf, stdout=out, stderr=err, env=env
        )
        wait_for(lambda: "RunStarted" in out.read_text() or watch.poll() is not None, "the watch to follow")
        pgserver.halt(directory)
        wait_for(
            lambda: "cannot read run" in err.read_text() or watch.poll() is not None, "the watch to say so"
        )
        pgserver.start_again(directory)
        (wf / "go").touch()
        assert run.wait(timeout=60) == 0, run_err.read_text()
        assert watch.wait(timeout=60) == 0, err.read_text()
    finally:
        stop(run)
        if watch is not None:
            stop(watch)
    said = err.read_text()
    assert said.count("cannot read run") == 1, said
    assert " unreachable (" not in said, said  # the store's own outage line is the engine's, not the watch's
    assert "RunCompleted succeeded=true" in out.read_text()
    lost, back = outage_said(run_err)
    assert len(lost) == 1 and len(back) == 1, run_err.read_text()
