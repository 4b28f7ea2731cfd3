"""`runkon-flow runs`, `show`, `resume` and `cancel`: run history and continuing or stopping runs,
including runs whose process died and runs another engine still holds."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from runkon_flow.cli import run as cli_run
from runkon_flow.persistence import NewRun, RunStatus, SqliteStore

from tests.cli.run_helpers import cli, cli_env, events_of, run_id_of, spawn, stop, wait_for, write

BUILD = """workflow build {
  script compile { run = "echo compiling" }
  script test { run = "echo testing" }
}
"""
FLAKY = """workflow flaky {
  script prepare { run = "echo prepared >> prepare.log" }
  script check { run = "test -f fixed.flag || { echo 'not fixed yet' >&2; exit 4; }" }
  script finish { run = "echo finished" }
}
"""
FAN = """workflow fan {
  foreach each {
    over         = static
    scope        = { items = "a,b,c" }
    max_parallel = 2
    workflow     = one
    inputs       = { name = "{{item.id}}" }
  }
}
"""
ONE = """workflow one {
  inputs { name default = "" }
  script say { run = "test {{name}} != b && echo ok {{name}}" }
}
"""
WAITER = """workflow waiter {
  script hold { run = "echo $$ > hold.pid; while [ ! -f go ]; do sleep 0.05; done" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    for name, text in (("build", BUILD), ("flaky", FLAKY), ("fan", FAN), ("one", ONE), ("waiter", WAITER)):
        write(tmp_path / "wf" / f"{name}.wf", text)
    return tmp_path


def start(capsys: pytest.CaptureFixture[str], workflow: str) -> tuple[int, str]:
    code, out, _ = cli(capsys, "run", workflow, "--dir", "wf")
    return code, run_id_of(out)


def interrupt(home: Path, run_id: str, status: RunStatus = RunStatus.RUNNING) -> None:
    """Make `run_id` look like its process died mid-run: unfinished status, a lease that lapsed
    minutes ago (a lease ending this very millisecond would still count as held)."""
    with SqliteStore(home / "runs.db", clock=lambda: datetime.now(UTC) - timedelta(minutes=5)) as store:
        store.update_run_status(run_id, status, None, None)
        assert store.acquire_lease(run_id, "dead-engine", 0) is not None


def hold(home: Path, run_id: str) -> None:
    """Make `run_id` look owned by a live engine elsewhere."""
    with SqliteStore(home / "runs.db") as store:
        assert store.acquire_lease(run_id, "live-engine", 600) is not None


def status_of(home: Path, run_id: str) -> RunStatus:
    with SqliteStore(home / "runs.db") as store:
        return store.get_run(run_id).status


# --------------------------------------------------------------------------- runs


def test_runs_lists_history_newest_first_with_status_duration_and_step_counts(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, first = start(capsys, "build")
    _, second = start(capsys, "flaky")
    code, out, err = cli(capsys, "runs")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "RUN",
        "WORKFLOW",
        "STATUS",
        "STARTED",
        "DURATION",
        "OK/FAILED/SKIPPED/CANCELLED",
        "WHY",
    ]
    assert [row.split()[:3] for row in rows] == [[second, "flaky", "failed"], [first, "build", "completed"]]
    assert rows[0].split()[6] == "1/1/0/0" and rows[1].split()[-1] == "2/0/0/0"
    assert rows[0].endswith("  Script 'check' exited with code 4 · not fixed yet")
    assert len(cli(capsys, "runs", "--limit", "1")[1].splitlines()) == 2


def test_runs_fits_an_80_column_terminal_one_run_a_line_with_whole_run_ids() -> None:
    from datetime import UTC, datetime

    from runkon_flow.cli.report import runs_table
    from runkon_flow.persistence import InMemoryStore
    from runkon_flow.persistence.models import NewRun, RunStatus

    store = InMemoryStore()
    ids = []
    for name in ("approve-and-deploy-to-production", "lint"):
        run = store.create_run(NewRun(workflow_name=name))
        store.update_run_status(run.id, RunStatus.COMPLETED, None, None)
        ids.append(run.id)
    rows = [(store.get_run(i), store.get_steps(i)) for i in reversed(ids)]
    now = datetime.now(UTC)
    full = runs_table(rows, now)
    assert full[0].split()[-1] == "OK/FAILED/SKIPPED/CANCELLED" and len(full[0]) > 80
    assert runs_table(rows, now, width=200) == full  # a wide terminal gets the piped table
    narrow = runs_table(rows, now, width=80)
    assert all(len(line) <= 80 for line in narrow), narrow
    assert narrow[0].split() == ["RUN", "WORKFLOW", "STATUS", "STARTED", "TOOK", "✓/✗/⊘/■"]
    assert [line.split()[0] for line in narrow[1:]] == list(reversed(ids))  # ids whole
    assert narrow[1].split()[1] == "lint" and narrow[2].split()[1].startswith("approve-and")
    assert narrow[2].split()[1].endswith("…")
    started = narrow[1].split()[3:5]
    assert len(started[0]) == 5 and len(started[1]) == 5  # MM-DD HH:MM
    assert narrow[1].split()[-1] == "0/0/0/0"


def test_runs_json_is_machine_readable(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, run_id = start(capsys, "build")
    code, out, _ = cli(capsys, "runs", "--json")
    assert code == 0
    [entry] = json.loads(out)
    assert entry["id"] == run_id and entry["workflow"] == "build" and entry["status"] == "completed"
    assert entry["steps"] == {
        "ok": 2,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
        "running": 0,
        "waiting": 0,
        "interrupted": 0,
        "pending": 0,
        "other": 0,
    }
    assert entry["duration_s"] >= 0 and entry["live"] is False


def test_child_runs_are_listed_only_with_all(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start(capsys, "fan")
    assert len(json.loads(cli(capsys, "runs", "--json")[1])) == 1
    everything = json.loads(cli(capsys, "runs", "--json", "--all")[1])
    assert sorted(r["workflow"] for r in everything) == ["fan", "one", "one", "one"]


def test_runs_without_a_database_says_so_and_creates_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "runs") == (0, "", f"no runs yet ({home / 'runs.db'} does not exist)\n")
    assert cli(capsys, "runs", "--json") == (0, "[]\n", "")
    assert not (home / "runs.db").exists()


def test_read_commands_leave_an_empty_file_empty_and_run_still_uses_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = home / "runs.db"
    db.touch()  # `touch runs.db`, or a typo'd path another tool created: SQLite would take it as new
    assert cli(capsys, "runs") == (0, "", f"no runs yet ({db} is empty)\n")
    assert cli(capsys, "runs", "--json") == (0, "[]\n", "")
    assert cli(capsys, "gates") == (0, f"no gate is waiting ({db} is empty)\n", "")  # a listing, as runs
    for argv in (["show", "01ABCDEFGH"], ["logs", "01ABCDEFGH"], ["gates", "approve", "--all"]):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (1, ""), argv
        assert f"run database {db} is empty (nothing has run with it yet" in err, argv
    assert db.stat().st_size == 0
    assert sorted(p.name for p in home.iterdir()) == ["runs.db", "wf"]
    code, run_id = start(capsys, "build")
    assert code == 0 and db.stat().st_size > 0
    assert run_id in cli(capsys, "runs")[1]


def test_a_run_whose_engine_died_is_shown_as_interrupted(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "build")
    interrupt(home, run_id)
    assert cli(capsys, "runs")[1].splitlines()[1].split()[2] == "interrupted"
    assert (
        "status    interrupted  (no engine holds it; resume it to continue)" in cli(capsys, "show", run_id)[1]
    )
    hold(home, run_id)
    assert cli(capsys, "runs")[1].splitlines()[1].split()[2] == "running"


def test_a_run_recorded_but_not_started_has_no_duration_and_one_waiting_at_a_gate_has_its_own(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A pending run's duration ran from when its row was written: `5m00s` for a run that never
    # ran, growing. A run an engine holds at a gate is taking time: its duration runs to now.
    five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    with SqliteStore(home / "runs.db", clock=lambda: five_minutes_ago) as store:
        waiting = store.create_run(NewRun(workflow_name="gated")).id
        store.update_run_status(waiting, RunStatus.RUNNING, None, None)
        store.set_waiting_blocked_on(waiting, {"type": "human_approval", "gate_name": "approve"})
        assert store.acquire_lease(waiting, "live-engine", 3600) is not None
        pending = store.create_run(NewRun(workflow_name="queued")).id
    table = {row.split()[0]: row.split() for row in cli(capsys, "runs")[1].splitlines()[1:]}
    assert table[pending][2] == "pending" and table[pending][-2:] == ["-", "0/0/0/0"]
    assert table[waiting][2] == "waiting" and table[waiting][-2].startswith("5m0")
    durations = {r["id"]: r["duration_s"] for r in json.loads(cli(capsys, "runs", "--json")[1])}
    assert durations[pending] is None and durations[waiting] >= 300
    assert "duration  -" in cli(capsys, "show", pending)[1].splitlines()


def test_a_run_recorded_but_not_started_shows_no_start_time_only_when_it_was_recorded(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its stored start is when its row was written: `runs` showed it as STARTED and `show` as
    # `started`, for a run nothing had run of.
    five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    with SqliteStore(home / "runs.db", clock=lambda: five_minutes_ago) as store:
        pending = store.create_run(NewRun(workflow_name="queued")).id
    recorded = five_minutes_ago.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    row = cli(capsys, "runs")[1].splitlines()[1]
    assert row.split()[:4] == [pending, "queued", "pending", "-"] and recorded not in row
    shown = cli(capsys, "show", pending)[1].splitlines()
    assert f"recorded  {recorded}  (not started yet)" in shown
    assert not any(line.startswith("started") for line in shown)


# --------------------------------------------------------------------------- show


def test_show_lists_every_step_and_the_errors_of_failed_ones(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "flaky")
    code, out, err = cli(capsys, "show", run_id)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:3] == [f"run       {run_id}", "workflow  flaky", "status    failed"]
    # Why it failed (its failed step's error on one line), not only which step: the stored error
    # (`Step 'check' failed after 1 attempt`) is the engine's.
    assert "error     Script 'check' exited with code 4 · not fixed yet" in lines
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == ["POS", "STATUS", "STEP", "ITER", "TRY", "DURATION"]
    assert [row.split()[:3] for row in table[1:3]] == [
        ["0", "completed", "prepare"],
        ["1", "failed", "check"],
    ]
    assert "failed steps" in lines
    assert "  check: Script 'check' exited with code 4" in lines
    assert "    not fixed yet" in lines


def test_show_summarises_fan_out_items_and_names_failed_ones(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "fan")
    out = cli(capsys, "show", run_id)[1]
    assert "children  3 runs (2 completed, 1 failed)" in out
    assert "items 3/3: 2 completed, 1 failed" in out
    [failed_item] = [line for line in out.splitlines() if "item b failed" in line]
    # Why the item failed (its failed step's error), not only which step of the child failed.
    assert "(child run " in failed_item and failed_item.endswith("Script 'say' exited with code 1")


def test_show_calls_the_running_items_of_an_ended_foreach_interrupted(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An attempt a resume replaced (its engine was killed mid-item) keeps item rows that say
    # running; nothing runs them any more, and `show` said "8 running" of a cancelled step.
    _, run_id = start(capsys, "fan")
    with contextlib.closing(sqlite3.connect(home / "runs.db")) as db, db:
        [step_id] = db.execute(
            "SELECT id FROM workflow_run_steps WHERE workflow_run_id = ? AND role = 'foreach'", (run_id,)
        ).fetchone()
        db.execute("UPDATE workflow_run_steps SET status = 'cancelled' WHERE id = ?", (step_id,))
        db.execute(
            "UPDATE workflow_run_step_fan_out_items SET status = 'running' "
            "WHERE step_run_id = ? AND status = 'completed'",
            (step_id,),
        )
    out = cli(capsys, "show", run_id)[1]
    assert "items 1/3: 2 interrupted, 1 failed" in out
    assert "running" not in out.split("POS", 1)[1]


def test_show_json_has_every_step_row(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, run_id = start(capsys, "flaky")
    data = json.loads(cli(capsys, "show", run_id, "--json")[1])
    assert data["id"] == run_id and data["status"] == "failed"
    assert [(s["name"], s["status"]) for s in data["step_rows"]] == [
        ("prepare", "completed"),
        ("check", "failed"),
    ]
    assert "exited with code 4" in data["step_rows"][1]["error"]


def test_show_of_an_unknown_run_or_database_fails_clearly(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "show", "01NOSUCHRUN")
    assert (code, err) == (
        1,
        f"runkon-flow show: error: no run database at {home / 'runs.db'} "
        "(nothing has run with it yet; check --db / $RUNKON_DB)\n",
    )
    assert not (home / "runs.db").exists()
    start(capsys, "build")
    code, _, err = cli(capsys, "show", "01NOSUCHRUN")
    assert code == 1
    assert f"no workflow run '01NOSUCHRUN' in {home / 'runs.db'}" in err


# --------------------------------------------------------------------------- resume


def test_resume_continues_a_failed_run_without_repeating_completed_steps(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, run_id = start(capsys, "flaky")
    assert code == 1
    (home / "wf" / "fixed.flag").touch()
    code, out, err = cli(capsys, "resume", run_id, "--dir", "wf")
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"run_id={run_id} workflow=flaky")
    assert events_of(out)[0][1] == "RunResumed"
    assert (home / "wf" / "prepare.log").read_text() == "prepared\n"
    assert status_of(home, run_id) is RunStatus.COMPLETED
    assert "step=finish" in out


def test_resume_continues_an_interrupted_run(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id)
    (home / "wf" / "fixed.flag").touch()
    assert cli(capsys, "resume", run_id, "--dir", "wf")[0] == 0
    assert status_of(home, run_id) is RunStatus.COMPLETED


def test_a_run_is_found_by_its_id_in_any_case_or_by_a_unique_part_copied_from_the_dashboard(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "build")
    for given in (run_id.lower(), "…" + run_id[-8:], run_id[-8:].lower(), run_id[:10], "…" + run_id[-6:]):
        code, out, err = cli(capsys, "show", given)
        assert (code, err) == (0, ""), given
        assert out.startswith(f"run       {run_id}\n"), given
    code, _, err = cli(capsys, "show", run_id[-5:])  # too short to be told from other runs' parts
    assert code == 1
    # ... and the message says so, rather than leave the user to think the id was mistyped
    assert err == (
        f"runkon-flow show: error: no workflow run '{run_id[-5:]}' in {home / 'runs.db'}: a part of a "
        "run id needs at least 6 characters (`runkon-flow runs` lists the ids)\n"
    )
    code, _, err = cli(capsys, "show", "01NOSUCHRUN")  # long enough: simply not there
    assert err == f"runkon-flow show: error: no workflow run '01NOSUCHRUN' in {home / 'runs.db'}\n"


def test_a_part_of_an_id_that_several_runs_share_is_refused_with_the_runs_it_matches(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start(capsys, "build")
    same_end = [f"01JV{n}ABCDEFGHJKMNPQRSTVWXYZ" for n in range(7)]
    with SqliteStore(home / "runs.db") as store:
        for run_id in same_end:
            store.create_run(NewRun(workflow_name="build", run_id=run_id))
    code, out, err = cli(capsys, "cancel", "…TVWXYZ")
    assert (code, out) == (2, "")
    [message] = err.splitlines()
    assert message.startswith("runkon-flow cancel: error: run id '…TVWXYZ' matches 7 runs: ")
    assert message.endswith(" and 2 more; give more of the id")
    assert sum(run_id in message for run_id in same_end) == 5
    assert {status_of(home, run_id) for run_id in same_end} == {RunStatus.PENDING}  # nothing guessed
    assert cli(capsys, "cancel", "01JV3ABC")[0] == 0
    assert status_of(home, same_end[3]) is RunStatus.CANCELLED


def test_a_run_abandoned_while_cancelling_resumes_instead_of_cancelling_again(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id, RunStatus.CANCELLING)
    (home / "wf" / "fixed.flag").touch()
    code, out, _ = cli(capsys, "resume", run_id, "--dir", "wf")
    assert code == 0
    assert "RunCompleted succeeded=true" in out


def test_resume_of_a_run_held_elsewhere_says_which_process_holds_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Engines' lease tokens carry host and pid: on a shared PostgreSQL store the holder may be on
    # another machine, and its lease is renewed while it lives.
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id)
    with SqliteStore(home / "runs.db") as store:
        assert store.acquire_lease(run_id, "build-7:4242:0123abcd", 600) is not None
    code, _, err = cli(capsys, "resume", run_id, "--dir", "wf")
    assert code == 1
    assert "more, renewed while pid 4242 on build-7 runs it; if that process is gone" in err


def test_resume_refuses_a_run_another_engine_holds(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id)
    hold(home, run_id)
    code, out, err = cli(capsys, "resume", run_id, "--dir", "wf")
    assert code == 1
    assert out == ""
    assert f"workflow run already owned by another engine: {run_id} (its lease runs" in err
    assert "or pass --wait" in err
    assert status_of(home, run_id) is RunStatus.RUNNING  # untouched


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("completed", "already completed; there is nothing to resume"),
        ("child", "is a child of run"),
        ("unknown", "no workflow run '01NOSUCHRUN'"),
    ],
)
def test_resume_refuses_what_cannot_be_resumed(
    home: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    _, run_id = start(capsys, "fan" if setup == "child" else "build")
    if setup == "child":
        with SqliteStore(home / "runs.db") as store:
            run_id = store.list_runs(parent_run_id=run_id)[0].id
    elif setup == "unknown":
        run_id = "01NOSUCHRUN"
    code, out, err = cli(capsys, "resume", run_id, "--dir", "wf")
    assert code == 1
    assert message in err and out == ""


def test_resume_without_the_workflow_folder_uses_the_definition_stored_with_the_run(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        home / "wf" / "inline.wf",
        'workflow inline {\n  script a { run = "echo a" }\n  script b { run = "exit 1" }\n}\n',
    )
    _, run_id = start(capsys, "inline")
    code, out, err = cli(capsys, "resume", run_id)
    assert code == 1  # it really ran again: `b` still fails
    assert "note: workflow 'inline' is not in" in err and "definition stored with the run" in err
    assert "RunResumed" in out


# --------------------------------------------------------------------------- cancel


def test_cancelling_a_run_nobody_runs_marks_it_cancelled_and_it_stays_resumable(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id)
    code, out, _ = cli(capsys, "cancel", run_id, "--message", "not today")
    assert code == 0
    assert "was not running (no engine holds it); marked cancelled" in out
    assert status_of(home, run_id) is RunStatus.CANCELLED
    with SqliteStore(home / "runs.db") as store:
        assert "not today" in store.get_run(run_id).error
    assert cli(capsys, "cancel", run_id) == (0, f"run {run_id} is already cancelled\n", "")
    (home / "wf" / "fixed.flag").touch()
    assert cli(capsys, "resume", run_id, "--dir", "wf")[0] == 0


def test_cancel_of_a_finished_or_unknown_run_fails(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, run_id = start(capsys, "build")
    code, _, err = cli(capsys, "cancel", run_id)
    assert code == 1 and "already finished (completed); there is nothing to cancel" in err
    code, _, err = cli(capsys, "cancel", "01NOSUCHRUN")
    assert code == 1 and "no workflow run '01NOSUCHRUN'" in err


def test_a_run_its_engine_finished_just_before_the_cancel_took_its_lease_stays_finished(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id)  # unfinished and unheld when `cancel` looks at it
    real = cli_run.end_unowned_run

    def finished_meanwhile(store: SqliteStore, rid: str, error: str, **kw: object) -> RunStatus | None:
        store.update_run_status(rid, RunStatus.FAILED, None, "its engine finished it")
        return real(store, rid, error, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cli_run, "end_unowned_run", finished_meanwhile)
    code, _, err = cli(capsys, "cancel", run_id)
    assert code == 1 and "already finished (failed); there is nothing to cancel" in err
    assert status_of(home, run_id) is RunStatus.FAILED


def test_cancel_of_a_held_run_asks_its_engine_and_reports_when_it_does_not_answer(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id)
    hold(home, run_id)
    code, out, _ = cli(capsys, "cancel", run_id, "--no-wait")
    assert code == 0 and "cancel requested" in out
    assert status_of(home, run_id) is RunStatus.CANCELLING
    code, _, err = cli(capsys, "cancel", run_id, "--timeout", "0.3")
    assert code == 1 and "still cancelling after 0.3s" in err


def test_cancel_from_another_process_stops_a_live_run_and_its_message_is_the_reason(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = home / "run.out", home / "run.err"
    proc = spawn(
        ["run", "waiter", "--dir", "wf"],
        home,
        stdout=out,
        stderr=err,
        env=cli_env(RUNKON_DB=str(home / "runs.db")),
    )
    try:
        wait_for((home / "wf" / "hold.pid").exists, "the run to reach its long step")
        run_id = run_id_of(out.read_text())
        code, printed, cancel_err = cli(capsys, "cancel", run_id, "--message", "wrong version")
        assert code == 0, cancel_err
        assert printed == f"run {run_id} cancelled\n"
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        stop(proc)
        (home / "wf" / "go").touch()
    assert status_of(home, run_id) is RunStatus.CANCELLED
    assert "RunCancelled" in out.read_text()
    code, shown, _ = cli(capsys, "show", run_id)
    assert code == 0 and "cancelled: wrong version" in shown, shown


def test_ctrl_c_while_waiting_for_another_engine_stops_waiting_and_leaves_its_run_alone(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "flaky")
    interrupt(home, run_id)
    hold(home, run_id)
    out, err = home / "resume.out", home / "resume.err"
    env = cli_env(RUNKON_DB=str(home / "runs.db"))
    # Started as by `make test &` (a non-interactive shell's background job ignores SIGINT, and an
    # ignored SIGINT is inherited through exec: Python then never raises KeyboardInterrupt): the
    # helper must still give the CLI a terminal's Ctrl-C. This hung for 30 s before 41cb648.
    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = spawn(["resume", run_id, "--dir", "wf", "--wait"], home, stdout=out, stderr=err, env=env)
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        wait_for(lambda: "waiting for its lease to lapse" in err.read_text(), "the resume to wait")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        stop(proc)
    assert f"stopped waiting for run {run_id}" in err.read_text()
    assert status_of(home, run_id) is RunStatus.RUNNING  # the other engine's run was not cancelled


def test_resume_wait_for_a_run_that_completes_meanwhile_refuses_without_the_run_header(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run_id = start(capsys, "build")
    interrupt(home, run_id)
    hold(home, run_id)
    out, err = home / "resume.out", home / "resume.err"
    env = cli_env(RUNKON_DB=str(home / "runs.db"))
    proc = spawn(["resume", run_id, "--dir", "wf", "--wait"], home, stdout=out, stderr=err, env=env)
    try:
        wait_for(lambda: "waiting for its lease to lapse" in err.read_text(), "the resume to wait")
        with SqliteStore(home / "runs.db") as store:  # the other engine finishes the run
            store.update_run_status(run_id, RunStatus.COMPLETED, "done", None)
            store.release_lease(run_id, "live-engine")
        assert proc.wait(timeout=30) == 1
    finally:
        stop(proc)
    assert out.read_text() == ""
    assert f"run {run_id} already completed; there is nothing to resume" in err.read_text()


def test_show_on_a_damaged_database_says_it_is_damaged_not_that_the_run_is_missing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [start(capsys, "build")[1] for _ in range(3)]
    db = home / "runs.db"
    with sqlite3.connect(db) as conn:  # the page of the index that finds runs by id
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'workflow_runs' "
            "AND name LIKE 'sqlite_autoindex%'"
        ).fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * page_size + 8)
        f.write(b"\xa5" * 64)
    code, out, err = cli(capsys, "show", ids[0])
    assert code == 1 and out == ""
    assert f"run database {db} is damaged (" in err
    assert f"cannot tell whether run '{ids[0]}' exists" in err
    assert "no workflow run" not in err


def test_runs_and_a_run_header_show_a_stored_workflow_name_safely(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `.wf` file's names are plain identifiers, but a row another program wrote into a shared
    database may hold anything: `runs` and `watch`'s `run_id=… workflow=…` line printed it raw."""
    db = home / "runs.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    with SqliteStore(db) as store:
        run = store.create_run(NewRun(workflow_name="evil\x1b]0;pwned\x07\x1b[2J\x9b2Jname"))
        store.update_run_status(run.id, RunStatus.CANCELLED, None, None)
    texts = [cli(capsys, "runs", "--db", str(db))[1], cli(capsys, "watch", run.id, "--db", str(db))[1]]
    for text in texts:
        assert "evil" in text and "name" in text
        assert not any(c in text for c in "\x1b\x07\x9b"), text


IMPORT = """workflow import-repos {
  script import {
    run = "echo 'rate limited: retry after 30s (GitHub API quota exhausted)' >&2; exit 3"
  }
}
"""
OUTER = """workflow outer {
  call workflow import-repos
}
"""
CAUSE = "rate limited: retry after 30s (GitHub API quota exhausted)"


@pytest.mark.parametrize("width", [None, 80, 120, 250])
def test_runs_says_why_a_run_failed_as_show_does_at_any_width(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int | None
) -> None:
    """`runs` listed a failed run with no word of why (and `--json` only the stored error, which
    says which step failed): a WHY column gives the cause `show` gives, through a failed `call
    workflow` too; at 80 columns, where no column has room, on a line of its own under the run."""
    from runkon_flow.cli import history

    write(home / "wf" / "import-repos.wf", IMPORT)
    write(home / "wf" / "outer.wf", OUTER)
    code, run_id = start(capsys, "outer")
    assert code == 1
    _, shown, _ = cli(capsys, "show", run_id)
    why = f"import-repos: Script 'import' exited with code 3 · {CAUSE}"
    assert f"error     {why}\n" in shown

    monkeypatch.setattr(history, "terminal_width", lambda: width)
    code, out, _ = cli(capsys, "runs")
    assert code == 0
    header, line, *more = out.splitlines()
    assert all(len(text) <= (width or 1000) for text in out.splitlines()), out
    assert line.startswith(run_id) and " failed " in line
    if width == 80:
        assert header.split()[-1] == "✓/✗/⊘/■" and more == [f"  why: {CAUSE}"]
    else:
        assert header.split()[-1] == "WHY" and more == []
        if width == 120:  # the cause, cut at its end only when even it alone does not fit
            assert line.split("  ")[-1].startswith(CAUSE[:30]) and line.endswith("…")
        else:
            assert line.endswith(why)

    [entry] = json.loads(cli(capsys, "runs", "--json")[1])
    assert entry["why"] == why
    stored = "workflow error: Step 'import-repos' failed after 1 attempt: "  # the engine's, then why
    assert entry["error"].startswith(stored)
    assert json.loads(cli(capsys, "show", run_id, "--json")[1])["why"] == why


def test_runs_lists_no_why_column_when_no_run_has_one(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start(capsys, "build")
    out = cli(capsys, "runs")[1]
    assert "WHY" not in out
    [entry] = json.loads(cli(capsys, "runs", "--json")[1])
    assert entry["why"] is None
