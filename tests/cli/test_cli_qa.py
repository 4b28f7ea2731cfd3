"""What QA found in the headless CLI: bad replay files, cancel reasons in people's words, cancelled
steps counted apart from failed ones, broken `.wf` files shown like `validate` shows them, rejected
runs that write nothing, waiting gates' options, and an unwritable database location."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.cli.live import LiveView
from runkon_flow.cli.report import show_lines
from runkon_flow.events import (
    EngineEventData,
    FanOutItemCompleted,
    FanOutItemsCollected,
    FanOutItemStarted,
    GateWaiting,
    RunCancelled,
    RunCompleted,
    RunStarted,
    StepCompleted,
    StepOutput,
    StepStarted,
)
from runkon_flow.persistence import InMemoryStore, SqliteStore
from runkon_flow.persistence.models import NewRun, NewStep, StepRole, StepStatus, StepUpdate
from runkon_flow.workspace import Workspace

from tests.cli.run_helpers import cli, write

SIMPLE = """workflow simple {
  script hello { run = "echo hello" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a workflow folder; the run database path does not exist yet."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "state" / "runs.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "wf" / "simple.wf", SIMPLE)
    return tmp_path


# --------------------------------------------------------------------------- replay


def test_replaying_a_file_that_is_not_utf8_names_its_first_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "rnd.jsonl").write_bytes(b"\xff\xfe\x00garbage\x93\n\x80more\n")
    code, out, err = cli(capsys, "replay", "rnd.jsonl")
    assert code == 1
    assert err.strip() == "runkon-flow replay: error: rnd.jsonl:1: not a runkon event record (not UTF-8)"
    assert "Traceback" not in err
    assert out == ""


def test_replaying_an_empty_file_says_there_are_no_events(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "empty.jsonl").write_text("")
    (home / "blank.jsonl").write_text("\n\n")
    for name in ("empty.jsonl", "blank.jsonl"):
        code, _, err = cli(capsys, "replay", name)
        assert code == 1
        assert err.strip() == f"runkon-flow replay: error: {name}: no events"


@pytest.mark.parametrize("speed", ["-1", "0", "nan", "fast"])
def test_replay_speed_must_be_a_positive_number(
    home: Path, capsys: pytest.CaptureFixture[str], speed: str
) -> None:
    (home / "empty.jsonl").write_text("")
    code, out, err = cli(capsys, "replay", "--speed", speed, "empty.jsonl")
    assert code == 2
    assert "argument --speed:" in err
    assert out == ""


# --------------------------------------------------------------------------- cancel reasons

CTRL_C = CancellationReason.user("interrupted (Ctrl-C)")
ENGINE_TEXT = f"workflow cancelled: {CTRL_C.debug()}"  # what the engine stores (engine.md §13)
RUN = "01" + "A" * 24


def _record(ts: float, event: object, run_id: str = RUN) -> EngineEventData:
    return EngineEventData(timestamp=int(ts * 1000), ts=ts, run_id=run_id, event=event)


CANCELLED_RUN = [
    _record(1.0, RunStarted(workflow_name="waiter")),
    _record(1.1, StepStarted(step_name="hold", kind="script", step_id="S1")),
    _record(
        2.0,
        StepCompleted(
            step_name="hold",
            kind="script",
            step_id="S1",
            succeeded=False,
            status="cancelled",
            error=ENGINE_TEXT,
        ),
    ),
    _record(2.1, RunCancelled(reason=CTRL_C)),
]


def test_plain_lines_give_cancel_reasons_in_words_while_the_events_file_keeps_the_engine_text(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "c.jsonl").write_text("".join(r.to_json_line() + "\n" for r in CANCELLED_RUN))
    code, out, _ = cli(capsys, "replay", "c.jsonl")
    assert code == 130
    assert 'error="cancelled: interrupted (Ctrl-C)"' in out
    assert 'RunCancelled reason="interrupted (Ctrl-C)"' in out
    assert "UserRequested" not in out
    assert 'UserRequested(Some(\\"interrupted (Ctrl-C)\\"))' in (home / "c.jsonl").read_text()


def test_the_live_view_gives_cancel_reasons_in_words() -> None:
    stream = io.StringIO()
    view = LiveView(stream, top_run_id=RUN, color=False, unicode=True, now=lambda: 3.0, width=120, height=30)
    for record in CANCELLED_RUN:
        view.feed(record)
    view.close()
    text = stream.getvalue()
    assert "hold cancelled" in text and ": cancelled: interrupted (Ctrl-C)" in text
    assert f"run {RUN} cancelled after 1.1s (interrupted (Ctrl-C))" in text
    assert "UserRequested" not in text


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x00 bell\x07"


def test_the_live_view_sends_no_escape_sequence_from_a_steps_output_or_error_to_the_terminal() -> None:
    """A script's output and error are untrusted: the live view showed the running step's last
    line and a failed step's error raw, so a script could retitle, clear or recolour the terminal."""
    stream = io.StringIO()
    view = LiveView(stream, top_run_id=RUN, color=True, unicode=True, now=lambda: 3.0, width=120, height=30)
    for record in [
        _record(1.0, RunStarted(workflow_name="hostile")),
        _record(1.1, StepStarted(step_name="noisy", kind="script", step_id="S1")),
        _record(1.2, StepOutput(step_id="S1", step_name="noisy", line=HOSTILE)),
        _record(1.3, StepStarted(step_name="bad", kind="script", step_id="S2")),
    ]:
        view.feed(record)
    view.tick()
    view.feed(
        _record(
            2.0, StepCompleted(step_name="bad", kind="script", step_id="S2", succeeded=False, error=HOSTILE)
        )
    )
    view.feed(_record(2.1, RunCompleted(succeeded=False, error=HOSTILE)))
    view.close()
    text = stream.getvalue()
    assert "red" in text and "␇" in text  # shown, made visible
    for sequence in ("\x1b]", "\x07", "\x1b[2J", "\x1b[31mred", "\x00"):
        assert sequence not in text, sequence


def test_the_live_view_sends_no_escape_sequence_from_a_gate_prompt_to_the_terminal() -> None:
    """A gate's prompt quotes inputs and earlier steps' output (`{{prior_context}}`): the live
    view's `gate … waiting: <prompt>` line printed it raw."""
    stream = io.StringIO()
    view = LiveView(stream, top_run_id=RUN, color=True, unicode=True, now=lambda: 3.0, width=120, height=30)
    view.feed(_record(1.0, RunStarted(workflow_name="hostile")))
    view.feed(_record(1.1, GateWaiting(gate_name="ship", step_id="G1", prompt=HOSTILE)))
    view.tick()
    view.close()
    text = stream.getvalue()
    assert "gate ship waiting: " in text and "red" in text and "␇" in text
    for sequence in ("\x1b]", "\x07", "\x1b[2J", "\x1b[31mred", "\x00"):
        assert sequence not in text, sequence


def test_show_and_the_end_of_run_send_no_escape_sequence_from_a_steps_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed script's stderr is in its error: `show` and the failed steps `run` prints at its
    end quoted it raw."""
    write(home / "wf" / "hostile.wf", 'workflow hostile {\n  script bad { run = "sh bad.sh" }\n}\n')
    write(home / "wf" / "bad.sh", "printf '\\033]0;pwned\\007\\033[2Jgone\\n' >&2\nexit 3\n")
    code, out, err = cli(capsys, "run", "hostile", "--dir", "wf", "--progress", "plain")
    assert code == 1
    run_id = out.split("run_id=")[1].split()[0]
    _, shown, _ = cli(capsys, "show", run_id)
    for text in (out, err, shown):
        assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text, text
    assert "gone" in shown


def test_show_gives_cancel_reasons_in_words_and_the_store_keeps_the_engine_text(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = home / "state" / "runs.db"
    db.parent.mkdir()
    with SqliteStore(db) as store:
        run = store.create_run(NewRun(workflow_name="waiter"))
        step_id = store.insert_step(NewStep(workflow_run_id=run.id, step_name="hold", retry_count=0))
        store.update_step(step_id, StepUpdate.failed(run.generation, f"child run stopped: {ENGINE_TEXT}"))
    code, out, err = cli(capsys, "cancel", run.id, "--message", "interrupted (Ctrl-C)")
    assert code == 0, err
    code, out, _ = cli(capsys, "show", run.id)
    assert code == 0
    assert "error     cancelled: interrupted (Ctrl-C)" in out.splitlines()
    assert "  hold: child run stopped: cancelled: interrupted (Ctrl-C)" in out.splitlines()
    assert "UserRequested" not in out
    with SqliteStore(db) as store:
        assert store.get_run(run.id).error == ENGINE_TEXT
        assert store.get_steps(run.id)[0].step_error == f"child run stopped: {ENGINE_TEXT}"


def test_a_cancel_the_engine_raises_is_exit_130_with_the_reason_in_words(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def shut_down(*args: object, **kwargs: object) -> None:
        raise EngineCancelled(CancellationReason.of("EngineShutdown"))

    monkeypatch.setattr(Workspace, "execute", shut_down)
    code, _, err = cli(capsys, "run", "simple", "--dir", "wf")
    assert code == 130
    assert "cancelled: the engine shut down" in err
    assert "EngineShutdown" not in err


# --------------------------------------------------------------------------- cancelled steps are not failures


def _steps_then_ctrl_c() -> list[EngineEventData]:
    records = [_record(1.0, RunStarted(workflow_name="swarm"))]
    outcomes = [("a", "completed"), ("b", "completed"), ("c", "failed")] + [
        (f"x{i}", "cancelled") for i in range(3)
    ]
    for i, (name, status) in enumerate(outcomes):
        records.append(_record(1.1 + i / 10, StepStarted(step_name=name, kind="script", step_id=name)))
        records.append(
            _record(
                1.15 + i / 10,
                StepCompleted(
                    step_name=name,
                    kind="script",
                    step_id=name,
                    succeeded=status == "completed",
                    status=status,
                    error=ENGINE_TEXT if status == "cancelled" else None,
                ),
            )
        )
    records.append(_record(6.4, RunCancelled(reason=CTRL_C)))
    return records


@pytest.mark.parametrize(("unicode", "counts"), [(True, "steps ✓2 ✗1 ■3"), (False, "steps +2 x1 #3")])
def test_the_status_line_counts_cancelled_steps_apart_from_failed_ones(unicode: bool, counts: str) -> None:
    stream = io.StringIO()
    view = LiveView(
        stream, top_run_id=RUN, color=False, unicode=unicode, now=lambda: 7.0, width=120, height=30
    )
    for record in _steps_then_ctrl_c()[:-1]:
        view.feed(record)
    assert view.render()[0].endswith(counts)  # while it runs
    view.feed(_steps_then_ctrl_c()[-1])
    view.close()
    final = stream.getvalue().splitlines()[-1]
    assert "cancelled" in final and final.endswith(counts)  # the last frame, printed as plain text
    cancel_glyph = "■" if unicode else "#"
    assert f"{cancel_glyph} x0 cancelled" in stream.getvalue()


def test_fan_out_progress_counts_cancelled_items_apart_from_skipped_ones() -> None:
    view = LiveView(
        io.StringIO(), top_run_id=RUN, color=False, unicode=True, now=lambda: 2.0, width=120, height=30
    )
    view.feed(_record(1.0, RunStarted(workflow_name="fan")))
    view.feed(_record(1.1, FanOutItemsCollected(foreach_name="each", count=4, step_id="F")))
    for item, status in (("a", "completed"), ("b", "cancelled"), ("c", "skipped")):
        view.feed(_record(1.2, FanOutItemStarted(item_id=item, step_id="F")))
        view.feed(
            _record(
                1.3,
                FanOutItemCompleted(
                    item_id=item, step_id="F", succeeded=status == "completed", status=status
                ),
            )
        )
    fan_line = next(line for line in view.render() if "foreach each" in line)
    assert fan_line.endswith("3/4 ✓1 ✗0 ⊘1 ■1 ▶0")


# --------------------------------------------------------------------------- a broken .wf given to run

SYNTAX_ERROR = 'workflow syntax {\n  script a { run = "x" }\n  script { }\n}\n'


def test_run_prints_a_broken_file_exactly_as_validate_does(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(home / "bad" / "syntax.wf", SYNTAX_ERROR)
    (home / "sub").mkdir()
    monkeypatch.chdir(home / "sub")
    code, _, validated = cli(capsys, "validate", "../bad/syntax.wf")
    assert code == 1
    code, out, err = cli(capsys, "run", "../bad/syntax.wf")
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert "\n".join(lines[:-1]) + "\n" == validated
    assert lines[:3] == [
        "../bad/syntax.wf:3:10: expected a script name after `script`, found `{`",
        " 3 |   script { }",
        "   |          ^",
    ]
    assert (
        lines[-1] == "runkon-flow run: error: workflow '../bad/syntax.wf' cannot be loaded; nothing was run"
    )


def test_run_of_a_workflow_file_that_is_not_utf8_says_so_like_validate(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "bad").mkdir()
    (home / "bad" / "binary.wf").write_bytes(b"workflow \xff\xfe {\n}\n")
    _, _, validated = cli(capsys, "validate", "bad/binary.wf")
    for target, shown in (("bad/binary.wf", "bad/binary.wf"), ("binary", "bad/binary.wf")):
        code, _, err = cli(capsys, "run", target, "--dir", "bad")
        assert code == 1
        assert err.splitlines()[0] == f"{shown}: cannot read file: not valid UTF-8 (invalid start byte)"
        assert err.splitlines()[0] == validated.strip()
        assert "Failed to read" not in err


# --------------------------------------------------------------------------- rejected runs write nothing

NEEDS_VERSION = 'workflow release {\n  inputs { version }\n  script tag { run = "echo {{version}}" }\n}\n'
INVALID = "workflow lost {\n  call nobody\n}\n"


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["run", "nope", "--dir", "wf"], 2),
        (["run", "release", "--dir", "wf"], 2),
        (["run", "release", "--dir", "wf", "-i", "colour=red"], 2),
        (["run", "bad/syntax.wf"], 1),
        (["run", "lost", "--dir", "wf"], 1),
        (["run", "lost", "--dir", "wf", "--events", "e.jsonl"], 1),
    ],
)
def test_a_rejected_run_does_not_create_the_run_database(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], status: int
) -> None:
    write(home / "wf" / "release.wf", NEEDS_VERSION)
    write(home / "wf" / "lost.wf", INVALID)
    write(home / "bad" / "syntax.wf", SYNTAX_ERROR)
    code, out, err = cli(capsys, *argv)
    assert code == status, err
    assert out == ""
    assert not (home / "state").exists()
    assert not (home / "e.jsonl").exists()


def test_a_started_run_creates_the_database(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = cli(capsys, "run", "simple", "--dir", "wf", "--events", "e.jsonl")
    assert code == 0
    assert (home / "state" / "runs.db").is_file()
    assert "RunCompleted" in (home / "e.jsonl").read_text()


def test_an_unusable_database_leaves_the_events_file_as_it_was(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "junk.db").write_text("this is not sqlite" * 100)
    (home / "old.jsonl").write_text("kept\n")
    for events in ("old.jsonl", "new.jsonl"):
        code, _, err = cli(capsys, "run", "simple", "--dir", "wf", "--db", "junk.db", "--events", events)
        assert code == 1
        assert "cannot open run database junk.db" in err
    assert (home / "old.jsonl").read_text() == "kept\n"
    assert not (home / "new.jsonl").exists()


# --------------------------------------------------------------------------- show: a waiting gate's options


def _waiting_gate_report(options: str | None) -> list[str]:
    store = InMemoryStore()
    run = store.create_run(NewRun(workflow_name="ship"))
    step_id = store.insert_step(
        NewStep(
            workflow_run_id=run.id,
            step_name="human_approval",
            role=StepRole.GATE.value,
            retry_count=0,
            gate_type="human_approval",
            gate_options=options,
        )
    )
    store.update_step(step_id, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
    lines = show_lines(store, store.get_run(run.id))
    return [line.replace(run.id, "RUN") for line in lines[lines.index("waiting gates") + 1 :]]


def test_show_offers_a_waiting_gates_options_with_the_approve_command() -> None:
    options = '[{"value": "canary", "label": "canary"}, {"value": "ship", "label": "Ship it"}]'
    assert _waiting_gate_report(options) == [
        "  human_approval",
        "    options: canary, ship (Ship it)",
        "    approve: runkon-flow approve RUN human_approval [--select canary|ship] [--note TEXT]",
        "    reject:  runkon-flow reject RUN human_approval [--note TEXT]",
    ]
    plain = '[{"value": "canary", "label": "canary"}, {"value": "ship", "label": "ship"}]'
    assert _waiting_gate_report(plain)[1] == (
        "    approve: runkon-flow approve RUN human_approval [--select canary|ship] [--note TEXT]"
    )


def test_show_of_a_gate_without_options_offers_no_select() -> None:
    assert (
        _waiting_gate_report(None)[1] == "    approve: runkon-flow approve RUN human_approval [--note TEXT]"
    )


# ------------------------------------------------------------------- a database that cannot be created


def test_a_database_that_cannot_be_created_says_so_without_the_foreign_database_hint(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # procfs accepts no new files, whoever runs the test (a chmod'ed folder would not stop root).
    code, out, err = cli(capsys, "run", "simple", "--dir", "wf", "--db", "/proc/runkon-test.db")
    assert code == 1
    assert out == ""
    assert "cannot create run database /proc/runkon-test.db: " in err
    assert "its directory /proc does not accept new files" in err
    assert "is it a runkon database" not in err
    assert not Path("/proc/runkon-test.db").exists()


def test_an_existing_file_that_is_not_a_database_keeps_the_move_it_aside_hint(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "junk.db").write_text("this is not sqlite" * 100)
    code, _, err = cli(capsys, "run", "simple", "--dir", "wf", "--db", "junk.db")
    assert code == 1
    assert "cannot open run database junk.db: file is not a database (not an SQLite file)" in err
    assert "left untouched — move it aside or choose another --db or RUNKON_DB" in err


def test_json_and_plain_progress_carry_no_raw_c1_control_or_line_separator(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON keeps DEL, C1 controls and U+2028 raw (`ensure_ascii=False`, pydantic): a step printing
    U+009B (a CSI for terminals reading C1 in UTF-8) reached the terminal through `--progress plain`,
    `watch --json`, `show --json` and `runs --json`. They are written `\\u009b` now: the same JSON."""
    write(home / "wf" / "c1.wf", 'workflow c1 {\n  script out { run = "sh out.sh" }\n}\n')
    write(home / "wf" / "out.sh", "printf 'a\\302\\2332Jb\\342\\200\\250c\\177d\\n'\n")
    code, out, err = cli(capsys, "run", "c1", "--dir", "wf", "--progress", "plain")
    assert code == 0, err
    run_id = out.split("run_id=")[1].split()[0]
    texts = [out, err]
    for args in (
        ["watch", run_id, "--json"],
        ["watch", run_id],
        ["show", run_id, "--json"],
        ["runs", "--json"],
    ):
        _, shown, _ = cli(capsys, *args)
        texts.append(shown)
    for text in texts:
        assert not any(0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text), text
    assert 'line="a\\u009b2Jb\\u2028c\\u007fd"' in out
    assert '"line":"a\\u009b2Jb\\u2028c\\u007fd"' in texts[2]
