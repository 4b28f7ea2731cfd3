"""A run whose engine died (kill -9, lease lapsed) is `interrupted`, and its duration stops where
the run stopped — in `runs`, `show` and the dashboard's history alike — instead of growing with
the clock (issue 10 bug 6; docs/run-model.md "Interrupted runs")."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from runkon_flow.event_log import read_stored
from runkon_flow.humanize import format_duration
from runkon_flow.observe.liveness import last_heartbeat, lease_end, stopped_at, utc_seconds

from runkon_tui.history import past_run_view, view_from_store
from tests import pg
from tests.cli.run_helpers import cli, cli_env, run_id_of, spawn, stop, wait_for, write

WAITER = """workflow waiter {
  script first { run = "echo first" }
  script hold { run = "echo holding; touch started; while [ ! -f go ]; do sleep 0.05; done" }
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


def _killed_mid_run(home: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A real engine process, killed with SIGKILL while its second step runs; returns once the
    run shows `interrupted` and its 1 s lease has lapsed."""
    out, err = home / "out.txt", home / "err.txt"
    env = cli_env()
    proc = spawn(["run", "waiter", "--dir", "wf", "--lease-ttl", "1"], home, stdout=out, stderr=err, env=env)
    try:
        wait_for((home / "wf" / "started").exists, "the run to reach its long step")
        run_id = run_id_of(out.read_text())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
        (home / "wf" / "go").touch()  # the script, if the orphan watchdog has not stopped it yet

    def interrupted() -> bool:
        return json.loads(cli(capsys, "runs", "--json")[1])[0]["display_status"] == "interrupted"

    wait_for(interrupted, "the run to read interrupted", interval=0.1)
    _lapsed(run_id)  # (it reads so at once, its process being gone: persistence/holders.py)
    return run_id


def _lapsed(run_id: str) -> None:
    """Until the run's lease has lapsed: the duration then stops at its end."""

    def lapsed() -> bool:
        with pg.open_db(os.environ["RUNKON_DB"]) as store:
            run = store.get_run(run_id)
        until = lease_end(run) if run is not None else None
        return until is None or until < time.time()

    wait_for(lapsed, "the lease to lapse", interval=0.1)


def test_an_interrupted_runs_duration_stops_where_the_run_stopped(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _killed_mid_run(home, capsys)
    with pg.open_db(db) as store:
        run = store.get_run(run_id)
        steps = store.get_steps(run_id)
    assert run is not None and run.ended_at is None
    stop_at = stopped_at(run, steps)
    # where its engine was last known alive: its last lease renewal (the lease's end less its 1 s
    # TTL), or a step it recorded after that — not the lease's end, up to a TTL after it died
    heartbeat = last_heartbeat(run)
    assert heartbeat == pytest.approx(lease_end(run) - 1)
    assert stop_at == max(heartbeat, *(utc_seconds(s.started_at) or 0 for s in steps)) < lease_end(run)
    expected = stop_at - utc_seconds(run.started_at)

    [entry] = json.loads(cli(capsys, "runs", "--json")[1])
    table = cli(capsys, "runs")[1].splitlines()[1]
    shown = cli(capsys, "show", run_id)[1].splitlines()
    time.sleep(1.2)  # a growing duration would now be a second longer
    [later] = json.loads(cli(capsys, "runs", "--json")[1])
    assert entry["duration_s"] == later["duration_s"] == pytest.approx(expected)
    assert cli(capsys, "runs")[1].splitlines()[1] == table
    assert cli(capsys, "show", run_id)[1].splitlines() == shown
    assert "status    interrupted  (no engine holds it; resume it to continue)" in shown
    assert any(line.startswith("stopped   ") for line in shown)


def test_the_dashboards_view_of_an_interrupted_run_stops_its_clocks(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _killed_mid_run(home, capsys)
    now = [time.time()]
    with pg.open_db(db) as store:
        run = store.get_run(run_id)
        stop_at = stopped_at(run, store.get_steps(run_id))
        views = [
            past_run_view(store, run_id, clock=lambda: now[0]),
            view_from_store(store, run_id, clock=lambda: now[0]),
        ]
    for view in views:
        root = view.root
        assert root is not None and root.status == "interrupted"
        first = view.elapsed()
        hold = next(sv for sv in root.steps.values() if sv.name == "hold")
        held = hold.elapsed(now[0])
        now[0] += 3600  # an hour later, the picture is the same
        assert view.elapsed() == first == pytest.approx(stop_at - root.started_at)
        assert hold.elapsed(now[0]) == held
        now[0] -= 3600


FAN = """workflow fan {
  foreach each {
    over         = static
    scope        = { items = "a,b,c" }
    max_parallel = 2
    workflow     = item
    inputs       = { name = "{{item.id}}" }
  }
}
"""
ITEM = """workflow item {
  inputs { name default = "" }
  script hold { run = "touch started-{{name}}; while [ ! -f go ]; do sleep 0.05; done" }
}
"""


def _fan_killed_mid_items(home: Path, db: str, capsys: pytest.CaptureFixture[str]) -> str:
    """A fan-out run that once completed (so `show` has a p95 to measure against), then one whose
    engine is killed with SIGKILL while two of its three items run; returns the latter's id once it
    shows `interrupted`."""
    wf = home / "wf"
    write(wf / "fan.wf", FAN)
    write(wf / "item.wf", ITEM)
    (wf / "go").touch()
    assert cli(capsys, "run", "fan", "--dir", "wf", "--progress", "quiet")[0] == 0
    (wf / "go").unlink()
    for started in wf.glob("started-*"):
        started.unlink()
    out, err = home / "out.txt", home / "err.txt"
    proc = spawn(
        ["run", "fan", "--dir", "wf", "--lease-ttl", "1"], home, stdout=out, stderr=err, env=cli_env()
    )
    try:
        wait_for(lambda: len(list(wf.glob("started-*"))) == 2, "two items to run")
        run_id = run_id_of(out.read_text())

        def stored() -> bool:  # the events saying so, which `watch` reads
            with pg.open_db(db) as store:
                return [e.kind for e in read_stored(store, run_id)[0]].count("FanOutItemStarted") == 2

        wait_for(stored, "the items' start to be stored")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
        (wf / "go").touch()  # the scripts, if the orphan watchdog has not stopped them yet

    def interrupted() -> bool:
        runs = json.loads(cli(capsys, "runs", "--json")[1])
        return any(r["id"] == run_id and r["display_status"] == "interrupted" for r in runs)

    wait_for(interrupted, "the run to read interrupted", interval=0.1)
    _lapsed(run_id)
    return run_id


def test_show_calls_the_foreach_step_of_an_interrupted_run_interrupted(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its row still says running: `show` listed it `running`, with a `⚠ over p95` note measured
    # against now — nothing runs it any more (the run model's rule, `RunModel.mark_interrupted`).
    run_id = _fan_killed_mid_items(home, db, capsys)
    shown = cli(capsys, "show", run_id)[1]
    [row] = [line for line in shown.splitlines() if "foreach:each" in line]
    assert row.split()[1] == "interrupted", row
    assert "items 0/3: 2 interrupted, 1 pending" in row
    assert "p95" not in shown


def test_watch_of_an_interrupted_run_says_its_running_items_are_interrupted(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The live view's last frame said `running`, `▶2` and each item's step running on with the clock.
    run_id = _fan_killed_mid_items(home, db, capsys)
    code, out, err = cli(capsys, "watch", run_id, "--progress", "live")
    assert code == 1 and f"run {run_id} is interrupted" in err
    last = out.rsplit("\x1b[J", 1)[-1]  # the frame `close` prints as plain text
    [header] = [line for line in last.splitlines() if f"run {run_id}" in line]
    assert " · interrupted · " in header, header
    [fan] = [line for line in last.splitlines() if line.startswith("  foreach each")]
    assert fan.endswith("0/3 ✓0 ✗0 ⊘0 ▶0 ■2 interrupted"), fan
    assert "› hold" not in last  # no step listed as running


def test_show_json_and_text_say_the_same_of_an_interrupted_run(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The text said the foreach step was interrupted with a duration of `-`, and `--json` said
    # `running` for it, with no duration and nothing of its items.
    run_id = _fan_killed_mid_items(home, db, capsys)
    with pg.open_db(db) as store:
        run = store.get_run(run_id)
        [step] = store.get_steps(run_id)
        stop_at = stopped_at(run, [step])
    took = stop_at - utc_seconds(step.started_at)
    [row] = [line for line in cli(capsys, "show", run_id)[1].splitlines() if "foreach:each" in line]
    assert row.split()[1:4] == ["interrupted", "foreach:each", format_duration(took)], row
    data = json.loads(cli(capsys, "show", run_id, "--json")[1])
    assert (data["status"], data["display_status"]) == ("running", "interrupted")
    [shown] = data["step_rows"]
    assert (shown["status"], shown["display_status"]) == ("running", "interrupted")
    assert shown["duration_s"] == pytest.approx(took)
    assert shown["items"] == {
        "total": 3,
        "completed": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
        "running": 0,
        "pending": 1,
        "interrupted": 2,
    }


def test_runs_counts_the_steps_an_interrupted_run_left_unfinished_apart_from_running_ones(
    home: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its step counts were `1/0/0/0`, as for a run whose engine runs its second step; the runs
    # screen counts that step ■ interrupted, not ▶ running.
    run_id = _killed_mid_run(home, capsys)
    assert cli(capsys, "runs")[1].splitlines()[1].split()[-3:] == ["1/0/0/0", "+1", "interrupted"]
    [entry] = json.loads(cli(capsys, "runs", "--json")[1])
    assert {k: entry["steps"][k] for k in ("ok", "running", "interrupted", "other")} == {
        "ok": 1,
        "running": 0,
        "interrupted": 1,
        "other": 1,
    }
    with pg.open_db(db) as store:  # an engine elsewhere takes it up: its step runs again
        assert store.acquire_lease(run_id, "live-engine", 600) is not None
    row = cli(capsys, "runs")[1].splitlines()[1].split()
    assert row[2] == "running" and row[-3:] == ["1/0/0/0", "+1", "running"]
