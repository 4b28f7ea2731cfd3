"""`runkon-flow gates`: the gate inbox — every gate waiting in the run database, whichever process
runs it, with how long it waited and its countdown; several answered at once with one note, and
the decision shown by `show` afterwards."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runkon_flow.persistence import RunStatus, SqliteStore
from runkon_flow.persistence.models import NewRun, NewStep, StepStatus, StepUpdate

from tests.cli.gate_helpers import GateRun, gate_home, waiting_in_a_process
from tests.cli.run_helpers import cli, wait_for

CHECK = """workflow check {
  gate human_approval {
    prompt  = "Checked?"
    timeout = "30s"
  }
  script after { run = "echo checked" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return gate_home(tmp_path, monkeypatch, check=CHECK)


@pytest.fixture
def waiting_ship(home: Path) -> Iterator[GateRun]:
    run = GateRun(home)
    yield run
    run.close()


@pytest.fixture
def two_waiting(home: Path) -> Iterator[tuple[GateRun, GateRun]]:
    first = GateRun(home)
    second = GateRun(home)
    yield first, second
    first.close()
    second.close()


def test_the_inbox_lists_every_waiting_gate_with_its_wait_and_countdown(
    two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = two_waiting
    code, out, err = cli(capsys, "gates")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "2 gates waiting (oldest first)"
    assert lines[1].split() == ["STEP", "ID", "WORKFLOW", "GATE", "WAITED", "TIMES", "OUT", "IN", "RUN"]
    rows = [line.split() for line in lines[2:] if line and not line.startswith(" ")]
    assert [r[-1] for r in rows[:2]] == [first.run_id, second.run_id]  # oldest first
    assert all(r[1:3] == ["ship", "human_approval"] for r in rows[:2])
    assert all(r[4].startswith("59m") for r in rows[:2])  # timeout 1h, waited seconds
    assert "    Ship the build?  [options: fast (Fast lane), careful (Careful rollout)]" in lines


def test_on_an_80_column_terminal_each_gate_is_one_line_with_its_run_below_it(
    two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runkon_flow.cli import gates

    first, second = two_waiting
    monkeypatch.setattr(gates, "terminal_width", lambda: 80)
    code, out, _ = cli(capsys, "gates")
    lines = out.splitlines()
    assert code == 0 and all(len(line) <= 80 for line in lines), lines
    assert lines[1].split()[-1] == "IN"  # no RUN column
    assert [line.strip() for line in lines if line.startswith("    run ")] == [
        f"run {first.run_id}",
        f"run {second.run_id}",
    ]
    assert "    Ship the build?  [options: fast (Fast lane), careful (Careful rollout)]" in lines


def test_on_an_80_column_terminal_the_answer_with_a_db_keeps_its_command_whole_on_one_line(
    waiting_ship: GateRun, home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gates --db PATH`'s answer line was 104 columns on an 80-column terminal, wrapped mid-command:
    the command goes on a line of its own there, still pasteable. Piped output keeps one line."""
    from runkon_flow.cli import gates

    (home / "ci-shared-state").symlink_to(home)
    db = "ci-shared-state/runs.db"
    command = f"runkon-flow gates approve|reject STEP_ID… --db {db}"
    monkeypatch.setattr(gates, "terminal_width", lambda: 80)
    code, out, _ = cli(capsys, "gates", "--db", db)
    lines = out.splitlines()
    assert code == 0 and all(len(line) <= 80 for line in lines), lines
    assert lines[-2:] == ["answer (--all for every gate listed, --note TEXT to say why):", f"  {command}"]
    monkeypatch.setattr(gates, "terminal_width", lambda: None)
    piped = cli(capsys, "gates", "--db", db)[1].splitlines()
    assert piped[-1] == f"answer: {command} [--note TEXT]  (or --all)"
    pasted = lines[-1].replace("approve|reject STEP_ID…", f"approve {lines[2].split()[0]}")
    code, out, err = cli(capsys, *pasted.split()[1:])
    assert (code, err) == (0, ""), out
    assert waiting_ship.finish().status is RunStatus.COMPLETED


LONG_PROMPT = """workflow release {
  gate human_approval {
    prompt  = "Deploy 2.4.0 to staging? The plan is in the log of plan-deploy."
    timeout = "2h"
    options = { ship = "Ship it" canary = "Canary first" }
  }
}
"""


def test_a_long_prompt_is_wrapped_to_an_80_column_terminal(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt and its options made a 117-column line on an 80-column terminal; there the
    options go on their own line. Piped output keeps them on one line, for grep."""
    from runkon_flow.cli import gates

    (home / "wf" / "release.wf").write_text(LONG_PROMPT)
    run = GateRun(home, "release")
    try:
        monkeypatch.setattr(gates, "terminal_width", lambda: 80)
        code, out, _ = cli(capsys, "gates")
        lines = out.splitlines()
        assert code == 0 and all(len(line) <= 80 for line in lines), lines
        assert "    Deploy 2.4.0 to staging? The plan is in the log of plan-deploy." in lines
        assert "    [options: ship (Ship it), canary (Canary first)]" in lines
        monkeypatch.setattr(gates, "terminal_width", lambda: None)
        assert (
            "    Deploy 2.4.0 to staging? The plan is in the log of plan-deploy.  "
            "[options: ship (Ship it), canary (Canary first)]"
        ) in cli(capsys, "gates")[1].splitlines()
    finally:
        run.close()


def test_the_inbox_as_json_counts_down_to_the_timeout(
    two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = two_waiting
    listed = [
        json.loads(line) for line in cli(capsys, "gates", "--json", "--run", first.run_id)[1].splitlines()
    ]
    assert len(listed) == 1
    gate = listed[0]
    assert (gate["run_id"], gate["workflow"], gate["gate"], gate["held"]) == (
        first.run_id,
        "ship",
        "human_approval",
        True,
    )
    assert gate["timeout_secs"] == 3600
    assert 0 <= gate["waited_secs"] < 60
    short = "…" + first.run_id[-8:]  # as the dashboard shows it
    assert [
        json.loads(line)["run_id"] for line in cli(capsys, "gates", "--json", "--run", short)[1].splitlines()
    ] == [first.run_id]
    assert gate["time_left_secs"] == pytest.approx(3600 - gate["waited_secs"], abs=0.01)
    assert gate["options"] == {"fast": "Fast lane", "careful": "Careful rollout"}


def test_approve_several_gates_at_once_with_one_note(
    two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = two_waiting
    ids = [first.gate_row().id, second.gate_row().id]
    code, out, err = cli(capsys, "gates", "approve", *ids, "--note", "batch ok", "--select", "fast")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"gate human_approval of run {first.run_id} (ship) approved by alice",
        f"gate human_approval of run {second.run_id} (ship) approved by alice",
    ]
    for run in (first, second):
        assert run.finish().status is RunStatus.COMPLETED
        row = run.gate_row()
        assert (row.gate_approved_by, row.gate_feedback, json.loads(row.gate_selections)) == (
            "alice",
            "batch ok",
            ["fast"],
        )
    assert cli(capsys, "gates")[1] == "no gate is waiting\n"
    shown = cli(capsys, "show", first.run_id)[1].splitlines()
    decided = shown[shown.index("gates") + 1]
    assert decided.startswith("  human_approval: approved by alice at ")
    assert decided.endswith(" · options: fast · note: batch ok")


def test_gates_are_named_by_a_short_step_id_as_runs_are(
    two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    """RUN_ID takes the end of an id (`…C0DVAD3M`); a step id had to be whole, and a short one
    said `no gate with step id '…'` of a gate that waits."""
    first, second = two_waiting
    first_id = first.gate_row().id
    code, out, err = cli(capsys, "gates", "approve", "…" + first_id[-8:].lower(), "--select", "fast")
    assert (code, err) == (0, "")
    assert out == f"gate human_approval of run {first.run_id} (ship) approved by alice\n"
    assert first.finish().status is RunStatus.COMPLETED
    assert second.gate_row().status == StepStatus.WAITING.value
    code, _, err = cli(capsys, "gates", "reject", "ZZZZZZ")  # no such gate: an error like any other
    assert code == 1 and err == "runkon-flow gates: error: ZZZZZZ: no gate with step id 'ZZZZZZ'\n"


def _gates_of_one_time(home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    """A run with two gates whose ids share their time part `01M99PK`, as gates asked minutes
    apart do: the older answered by bob, the newer waiting. Returns (run, answered, waiting)."""
    import runkon_flow.persistence._shared as shared

    ids = iter(["01M99PK5YX3WGTQKJ6PT6QDMTF", "01M99PK9V9N1QYJ9ZKGJEC62HA"])
    with SqliteStore(home / "runs.db") as store, monkeypatch.context() as patched:
        run = store.create_run(NewRun(workflow_name="ship"))
        patched.setattr(shared, "new_ordered_id", lambda: next(ids))  # the two gates' ids only
        answered = store.insert_step(NewStep(run.id, "first", role="gate", position=1, node_path="body.1"))
        store.update_step(answered, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        store.approve_gate(answered, "bob", "looked fine", None)
        waiting = store.insert_step(NewStep(run.id, "second", role="gate", position=2, node_path="body.2"))
        store.update_step(waiting, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        store.update_run_status(run.id, RunStatus.RUNNING, None, None)
    return run.id, answered, waiting


def test_a_short_gate_id_an_answered_gate_shares_is_refused_not_taken_for_the_waiting_one(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ULIDs begin with their time: `01M99P` began the only waiting gate's id and the id of one
    bob answered a minute before, and `gates approve 01M99P` approved the waiting one. Every gate
    of the store is matched now, each candidate named with its state."""
    run_id, answered, waiting = _gates_of_one_time(home, monkeypatch)
    for command in (
        ["gates", "approve", "01m99p"],
        ["approve", run_id, "01M99PK"],
        ["reject", run_id, "01M99P"],
    ):
        code, out, err = cli(capsys, *command)
        assert (code, out) == (2, ""), command
        assert f"gate id '{command[-1]}' matches 2 gates: {answered} (first, approved by bob at " in err
        assert err.endswith(f"{waiting} (second, waiting); give more of the id\n")
    with SqliteStore(home / "runs.db") as store:
        assert store.get_step(waiting).status == StepStatus.WAITING.value
    # More of the id (a part only the waiting gate has) answers it, through its run too.
    code, out, _ = cli(capsys, "reject", run_id, "…" + waiting[-6:].lower(), "--by", "carol")
    assert (code, out) == (0, f"gate second of run {run_id} rejected by carol\n")


def test_a_short_gate_id_of_an_answered_gate_says_who_answered_it(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A part only the answered gate has said `no gate with step id '…'` (only waiting gates were
    matched); its whole id, given to `approve`, said the run `has no gate waiting`. Exit 1, as
    for every gate that is not waiting."""
    run_id, answered, waiting = _gates_of_one_time(home, monkeypatch)
    said = f"gate 'first' ({answered}) was already answered: approved by bob at "
    code, _, err = cli(capsys, "gates", "approve", "…" + answered[-6:].lower(), "…" + waiting[-6:])
    assert code == 1 and f"runkon-flow gates: error: {answered}: {said}" in err  # and: no engine holds it
    assert err.endswith(" · note: looked fine\n")
    for typed in (answered, answered[:10]):
        code, out, err = cli(capsys, "approve", run_id, typed)
        assert (code, out) == (1, "") and err.startswith(f"runkon-flow approve: error: {said}")
    # The other gate named in the same `gates approve` was answered, as a unique part still is.
    with SqliteStore(home / "runs.db") as store:
        assert store.get_step(waiting).gate_approved_by == "alice"
    code, _, err = cli(capsys, "gates", "reject", "ZZZZZZ")
    assert code == 1 and err == "runkon-flow gates: error: ZZZZZZ: no gate with step id 'ZZZZZZ'\n"


def test_reject_all_of_one_workflow_leaves_the_others_waiting(
    home: Path, two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    check = GateRun(home, "check")
    try:
        code, out, _ = cli(capsys, "gates", "reject", "--all", "--workflow", "ship", "--note", "not today")
        assert code == 0 and out.count("rejected by alice") == 2
        for run in two_waiting:
            result_ship = run.finish()
            assert result_ship.status is RunStatus.FAILED
            assert "rejected by alice: not today" in (result_ship.error or "")
        left = [json.loads(line) for line in cli(capsys, "gates", "--json")[1].splitlines()]
        assert [(g["workflow"], g["run_id"]) for g in left] == [("check", check.run_id)]
    finally:
        check.close()


def test_a_gate_already_answered_is_reported_and_the_others_still_decided(
    two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = two_waiting
    first_id, second_id = first.gate_row().id, second.gate_row().id
    assert cli(capsys, "gates", "reject", first_id, "--by", "bob")[0] == 0
    code, out, err = cli(capsys, "gates", "approve", first_id, second_id)
    assert code == 1
    # Said as every error is (`runkon-flow gates approve: 01…:` lacked the `error:`).
    assert err.startswith(
        f"runkon-flow gates: error: {first_id}: "
        f"gate 'human_approval' ({first_id}) was already answered: rejected by bob at "
    )
    assert out == f"gate human_approval of run {second.run_id} (ship) approved by alice\n"
    assert first.finish().status is RunStatus.FAILED
    assert second.finish().status is RunStatus.COMPLETED


def test_answering_needs_gates_named_or_all(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SqliteStore(home / "runs.db").close()
    code, _, err = cli(capsys, "gates", "approve")
    assert code == 2 and "name the gates to approve by STEP_ID" in err
    code, _, err = cli(capsys, "gates", "list", "--all")
    assert code == 2 and "go with 'gates approve' or 'gates reject'" in err
    code, _, err = cli(capsys, "gates", "reject", "--all", "--select", "x")
    assert code == 2 and "--select goes with 'gates approve'" in err
    assert cli(capsys, "gates", "approve", "--all") == (0, "no gate is waiting that matches\n", "")


def test_the_inbox_of_a_database_nothing_has_run_with_is_empty_as_runs_says_no_runs_yet(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gates` before the first run (the default database does not exist yet) said `error: no run
    database at …` with exit 1, so a script polling `gates --json` failed where `runs` says `no
    runs yet`. Listing stays read-only and says why it is empty; answering still needs runs."""
    db = home / "runs.db"
    assert cli(capsys, "gates") == (0, f"no gate is waiting ({db} does not exist)\n", "")
    assert cli(capsys, "gates", "--json") == (0, "", "")
    assert not db.exists()  # nothing created
    db.touch()
    assert cli(capsys, "gates", "list") == (0, f"no gate is waiting ({db} is empty)\n", "")
    assert db.stat().st_size == 0
    code, _, err = cli(capsys, "gates", "approve", "--all")
    assert code == 1 and f"run database {db} is empty" in err


def test_the_inbox_shows_a_gate_of_another_process_and_its_approval_reaches_that_engine(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with waiting_in_a_process(home, "check") as (proc, out, run_id):
        time.sleep(1.1)
        listed = [json.loads(line) for line in cli(capsys, "gates", "--json")[1].splitlines()]
        assert [(g["run_id"], g["gate"], g["held"]) for g in listed] == [(run_id, "human_approval", True)]
        assert listed[0]["waited_secs"] >= 1.0
        assert listed[0]["time_left_secs"] <= 29.0
        assert cli(capsys, "gates", "approve", listed[0]["step_id"], "--note", "from the inbox")[0] == 0
        assert proc.wait(timeout=30) == 0
    assert (
        'GateResolved gate=human_approval approved=true by=alice feedback="from the inbox"' in out.read_text()
    )


def test_a_gate_waiting_in_a_run_marked_running_is_listed_and_can_be_answered(
    waiting_ship: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's status does not say every gate that waits: an engine resuming a run marks it
    `running` before its gate waits again, and a decision sets it `running`. The inbox reads the
    gate rows themselves, so the gate is listed and its approval reaches the engine."""
    waiting_ship.store.update_run_status(waiting_ship.run_id, RunStatus.RUNNING, None, None)
    listed = [json.loads(line) for line in cli(capsys, "gates", "--json")[1].splitlines()]
    assert [(g["run_id"], g["gate"]) for g in listed] == [(waiting_ship.run_id, "human_approval")]
    code, out, _ = cli(capsys, "gates")
    assert code == 0 and out.splitlines()[0] == "1 gate waiting (oldest first)"
    assert cli(capsys, "gates", "approve", "--all", "--note", "ok")[0] == 0
    assert waiting_ship.finish().status is RunStatus.COMPLETED
    assert cli(capsys, "gates")[1] == "no gate is waiting\n"


def test_a_gate_answered_after_a_resume_is_not_listed_for_its_dead_engines_row(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An engine died with its gate waiting; the resume inserted the gate again and it was
    approved. The dead engine's `waiting` row is history, not a gate to answer."""
    store = SqliteStore(home / "runs.db")
    try:
        run = store.create_run(NewRun(workflow_name="ship"))
        dead = store.insert_step(
            NewStep(run.id, "human_approval", role="gate", position=1, node_path="body.1")
        )
        store.update_step(dead, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        again = store.insert_step(
            NewStep(run.id, "human_approval", role="gate", position=1, node_path="body.1")
        )
        store.update_step(again, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        store.update_run_status(run.id, RunStatus.RUNNING, None, None)
        assert [g["step_id"] for g in map(json.loads, cli(capsys, "gates", "--json")[1].splitlines())] == [
            again
        ]
        store.approve_gate(again, "alice", None, None)
        assert cli(capsys, "gates")[1] == "no gate is waiting\n"
    finally:
        store.close()


def test_answering_a_gate_of_an_interrupted_run_says_it_waits_for_a_resume(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The inbox marks such a gate `(interrupted: resume it first)`, but answering it said only
    `approved by alice`, which reads as "the run goes on": nothing wakes until it is resumed."""
    store = SqliteStore(home / "runs.db")
    try:
        run = store.create_run(NewRun(workflow_name="ship"))
        gate = store.insert_step(
            NewStep(run.id, "human_approval", role="gate", position=1, node_path="body.1")
        )
        store.update_step(gate, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        store.update_run_status(run.id, RunStatus.RUNNING, None, None)  # its engine died
        code, out, err = cli(capsys, "gates", "approve", gate, "--note", "ok")
        assert (code, out) == (0, f"gate human_approval of run {run.id} (ship) approved by alice\n")
        assert err == (
            f"run {run.id} is interrupted (no engine holds it): the decision takes effect when it is "
            f"resumed: runkon-flow resume {run.id}\n"
        )
    finally:
        store.close()


def test_the_answer_hint_keeps_the_filters_the_list_was_made_with(
    home: Path, two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    """`gates --workflow check` listed one gate and ended with `(or --all)`: pasted, that answers
    every gate in the database, the two `ship` gates too."""
    check = GateRun(home, "check")
    try:
        code, out, _ = cli(capsys, "gates", "--workflow", "check")
        assert code == 0 and out.splitlines()[0] == "1 gate waiting (oldest first)"
        assert out.splitlines()[-1].endswith("[--note TEXT]  (or --all --workflow check)")
        code, out, _ = cli(capsys, "gates", "--run", check.run_id[-8:], "--gate", "human_approval")
        assert out.splitlines()[-1].endswith(f"(or --all --gate human_approval --run {check.run_id})")
        assert cli(capsys, "gates")[1].splitlines()[-1].endswith("[--note TEXT]  (or --all)")
    finally:
        check.close()


def test_a_prompt_with_escape_sequences_is_listed_safely(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prompt quotes inputs and earlier steps' output (`{{prior_context}}`): `gates` printed it
    raw, so a colour or a window title in it reached the terminal (`show` already cleaned it)."""
    store = SqliteStore(home / "runs.db")
    try:
        run = store.create_run(NewRun(workflow_name="ship"))
        prompt = "Deploy v1\x1b[31mRED\x1b]0;pwned\x07 now?\nsecond line\x07"
        gate = store.insert_step(
            NewStep(run.id, "human_approval", role="gate", position=1, node_path="body.1", gate_prompt=prompt)
        )
        store.update_step(gate, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        store.update_run_status(run.id, RunStatus.RUNNING, None, None)
        code, out, _ = cli(capsys, "gates")
        assert code == 0
        assert "\x1b" not in out and "\x07" not in out
        assert "    Deploy v1RED now?\nsecond line␇\n" in out  # as `show` prints it
    finally:
        store.close()


def test_the_inbox_shows_a_prompt_holding_escape_sequences_safely(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gate's prompt holds values (`prompt = "Deploy {{version}}?"`); `gates` printed it raw,
    so a value could retitle, clear or recolour the terminal of whoever listed the gates."""
    store = SqliteStore(home / "runs.db")
    try:
        run = store.create_run(NewRun(workflow_name="ship"))
        prompt = "Deploy x\x1b]0;pwned\x07\x1b[2J\u009b2Jy?"
        step = store.insert_step(
            NewStep(run.id, "human_approval", role="gate", position=1, node_path="body.1", gate_prompt=prompt)
        )
        store.update_step(step, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        store.update_run_status(run.id, RunStatus.RUNNING, None, None)
        code, out, _ = cli(capsys, "gates")
    finally:
        store.close()
    assert code == 0 and "Deploy x" in out and "y?" in out
    assert not any(c in out for c in "\x1b\x07\u009b"), out


FANNED = """workflow fanned {
  foreach each {
    over = static
    scope = { items = "rec-01,rec-02" }
    max_parallel = 2
    workflow = check
  }
}
"""


def test_gates_of_foreach_children_name_the_item_each_asks_for(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two children of one fan-out wait at the same gate: the inbox says which item each is for
    (an ITEM column, `item` in JSON), and `approve RUN GATE`, which cannot choose, names them."""
    (home / "wf" / "fanned.wf").write_text(FANNED, encoding="utf-8")
    run = GateRun(home, "fanned")
    try:
        wait_for(lambda: len(run.ws.gates.waiting_gates(run.run_id)) == 2, "both children's gates to wait")

        code, out, _ = cli(capsys, "gates")
        lines = out.splitlines()
        assert code == 0 and lines[1].split()[:5] == ["STEP", "ID", "WORKFLOW", "ITEM", "GATE"]
        rows = sorted(line.split()[1:4] for line in lines[2:] if line.split()[1:2] == ["check"])
        assert rows == [["check", "rec-01", "human_approval"], ["check", "rec-02", "human_approval"]]

        listed = [json.loads(line) for line in cli(capsys, "gates", "--json")[1].splitlines()]
        assert sorted(g["item"] for g in listed) == ["rec-01", "rec-02"]

        code, _, err = cli(capsys, "approve", run.run_id, "human_approval")
        assert code == 1
        by_item = {g["item"]: g["step_id"] for g in listed}
        assert f"rec-01: {by_item['rec-01']}" in err and f"rec-02: {by_item['rec-02']}" in err

        shown = cli(capsys, "show", run.run_id)[1]
        assert {g["run_id"]: g["item"] for g in listed} == {
            child: item
            for child, item in re.findall(r"human_approval \(in child run (\w+), item (rec-0\d)\)", shown)
        }

        # Answered, each says which item it was for, as the list did.
        child_of = {g["item"]: g["run_id"] for g in listed}
        code, out, _ = cli(capsys, "gates", "approve", by_item["rec-01"])
        assert (code, out) == (
            0,
            f"gate human_approval of run {child_of['rec-01']} (check, item rec-01) approved by alice\n",
        )
        code, out, _ = cli(capsys, "approve", run.run_id, by_item["rec-02"])
        assert (code, out) == (
            0,
            f"gate human_approval of run {run.run_id} (item rec-02) approved by alice\n",
        )
    finally:
        run.close()


def test_a_gate_outside_any_fan_out_has_no_item_column(
    waiting_ship: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(capsys, "gates")[1]
    assert "ITEM" not in out.splitlines()[1]
    assert json.loads(cli(capsys, "gates", "--json")[1])["item"] is None


def test_show_lists_a_fan_out_s_gates_oldest_first_as_the_inbox_does(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three items of a fan-out wait at their gates, g1's waiting longest. The inbox (`gates`, the
    dashboard's) lists g1, g2, g3; `show` listed g3, g2, g1 — its children newest first."""
    from datetime import UTC, datetime, timedelta

    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    with SqliteStore(home / "runs.db", clock=lambda: moment[0]) as store:
        run = store.create_leased_run(NewRun(workflow_name="check"), "t", 3600)
        store.insert_step(NewStep(run.id, "foreach:each", "foreach", retry_count=0, node_path="body.0"))
        for name in ("g1", "g2", "g3"):
            moment[0] += timedelta(seconds=10)
            child = store.create_leased_run(
                NewRun(workflow_name="one", parent_workflow_run_id=run.id, inputs={"item.id": name}),
                "t",
                3600,
            )
            gate = store.insert_step(NewStep(child.id, "human_approval", role="gate", retry_count=0))
            store.update_step(gate, StepUpdate(generation=child.generation, status=StepStatus.WAITING))
    shown = cli(capsys, "show", run.id)[1].splitlines()
    listed = [
        line.split("item ")[1][:2] for line in shown[shown.index("waiting gates") :] if ", item " in line
    ]
    assert listed == ["g1", "g2", "g3"]
    inbox = [
        json.loads(line)["item"] for line in cli(capsys, "gates", "--run", run.id, "--json")[1].splitlines()
    ]
    assert inbox == listed
    assert [
        g["item"] for g in json.loads(cli(capsys, "show", run.id, "--json")[1])["waiting_gates"]
    ] == listed


def test_approving_a_gate_by_name_after_it_was_answered_says_who_answered_it(
    two_waiting: tuple[GateRun, GateRun], capsys: pytest.CaptureFixture[str]
) -> None:
    """`approve RUN human_approval` once bob had rejected it said `run '…' has no gate waiting for
    approval`: the user, who may have meant to overrule bob, could not tell it was answered, by
    whom, or when. It says so, as a short step id of that gate does (exit 1)."""
    first, _ = two_waiting
    gate_id = first.gate_row().id
    assert cli(capsys, "reject", first.run_id, "human_approval", "--by", "bob")[0] == 0
    code, out, err = cli(capsys, "approve", first.run_id, "human_approval")
    assert (code, out) == (1, "")
    assert err.startswith(
        f"runkon-flow approve: error: gate 'human_approval' ({gate_id}) "
        "was already answered: rejected by bob at "
    ), err
    assert first.finish().status is RunStatus.FAILED
    code, _, err = cli(capsys, "approve", first.run_id, "nosuch")
    assert code == 1 and "no gate" in err and "already answered" not in err
