"""The commands the CLI suggests (`resume with: …`, `approve: …`, `retry the N failed items: …`)
work when pasted as they are: they carry the `--db` the user gave, and — for commands that load the
workflow — the `--dir` the run was started with. Without them a pasted hint looks in the default
database ("no workflow run …") or runs without the workflow's folder."""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path

import pytest
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.live import LiveView
from runkon_flow.events import EngineEventData, GateWaiting

from tests.cli.gate_helpers import GateRun, gate_home
from tests.cli.run_helpers import cli, run_id_of, write

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
  script work { run = "test {{name}} != b" }
}
"""
DB = "my runs.db"  # a space: the hint must quote it


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the workflows in `flows/`; $RUNKON_DB names another database than the one
    the tests pass with --db, so a hint without --db would look in the wrong place."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "elsewhere.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "flows" / "fan.wf", FAN)
    write(tmp_path / "flows" / "one.wf", ONE)
    return tmp_path


def hint(err: str, prefix: str) -> str:
    """The command after `prefix` on the stderr line that starts with it (up to a `(` remark)."""
    line = next(line for line in err.splitlines() if line.startswith(prefix))
    return line.removeprefix(prefix).split(" (", 1)[0].strip()


def paste(capsys: pytest.CaptureFixture[str], command: str, *more: str) -> tuple[int, str, str]:
    """Type `command` (plus `more`) into a shell in the same folder."""
    argv = shlex.split(command)
    assert argv[0] == "runkon-flow"
    return cli(capsys, *argv[1:], *more)


def failed_run(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    code, out, err = cli(capsys, "run", "fan", "--dir", "flows", "--db", DB, "--progress", "plain")
    assert code == 1
    return run_id_of(out), err


def test_after_a_failed_run_the_resume_and_retry_hints_carry_its_db_and_dir(capsys, home: Path) -> None:
    run_id, err = failed_run(capsys)
    assert f"resume with: runkon-flow resume {run_id} --dir flows --db 'my runs.db'" in err
    assert (
        f"retry the 1 failed item: runkon-flow retry {run_id} --failed --dir flows --db 'my runs.db' "
        "(or --cluster N from the list above)"
    ) in err

    code, out, again = paste(capsys, hint(err, "retry the 1 failed item: "), "--yes", "--progress", "plain")
    assert "no workflow run" not in again and "no run database" not in again
    assert code == 1 and f"run_id={run_id} " in out  # b fails again: the retry really ran

    code, out, again = paste(capsys, hint(err, "resume with: "), "--progress", "plain")
    assert "no workflow run" not in again and "not in" not in again  # found the run and its folder
    assert code == 1 and run_id_of(out) == run_id


def test_a_run_started_from_a_file_path_is_resumed_from_that_files_folder(capsys, home: Path) -> None:
    code, out, err = cli(capsys, "run", "flows/fan.wf", "--db", DB, "--progress", "plain")
    assert code == 1
    assert f"resume with: runkon-flow resume {run_id_of(out)} --dir flows --db 'my runs.db'" in err


def test_without_db_the_hints_stay_short(capsys, home: Path) -> None:
    """$RUNKON_DB (or the default file) is found again by the same shell: no --db is added."""
    code, out, err = cli(capsys, "run", "fan", "--dir", "flows", "--progress", "plain")
    assert code == 1
    assert f"resume with: runkon-flow resume {run_id_of(out)} --dir flows\n" in err


def test_watch_and_show_of_a_failed_run_suggest_commands_with_its_db(capsys, home: Path) -> None:
    run_id, _ = failed_run(capsys)
    code, _, err = cli(capsys, "watch", run_id, "--db", DB, "--progress", "plain")
    assert code == 1
    assert f"resume with: runkon-flow resume {run_id} --db 'my runs.db'\n" in err
    code, out, _ = cli(capsys, "show", run_id, "--db", DB)
    assert code == 0
    assert f"failure clusters (retry one: runkon-flow retry {run_id} --cluster N --db 'my runs.db')" in out


def test_show_and_the_inbox_give_gate_commands_with_the_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    home = gate_home(tmp_path, monkeypatch)
    monkeypatch.setenv("RUNKON_DB", str(home / "elsewhere.db"))  # the gate waits in runs.db
    gate = GateRun(home)
    try:
        code, out, _ = cli(capsys, "show", gate.run_id, "--db", "runs.db")
        assert code == 0
        approve = next(line for line in out.splitlines() if "approve: " in line)
        assert approve.strip() == (
            f"approve: runkon-flow approve {gate.run_id} human_approval --db runs.db "
            "[--select fast|careful] [--note TEXT]"
        )
        code, out, _ = cli(capsys, "gates", "--db", "runs.db")
        assert code == 0
        assert (
            "answer: runkon-flow gates approve|reject STEP_ID… --db runs.db [--note TEXT]  (or --all)" in out
        )

        command = approve.split("approve: ", 1)[1].split(" [", 1)[0]
        code, out, err = paste(capsys, command, "--select", "fast")
        assert code == 0, err
        assert gate.finish().all_succeeded
    finally:
        gate.close()


def test_the_live_views_gate_commands_carry_the_db() -> None:
    stream = io.StringIO()
    view = LiveView(
        stream, top_run_id="R1", color=False, unicode=True, width=200, height=20, hints=Hints(db="a b.db")
    )
    view.feed(
        EngineEventData(timestamp=0, ts=0.0, run_id="R1", event=GateWaiting(gate_name="g", step_id="s"))
    )
    view.close()
    assert (
        "approve: runkon-flow approve R1 g --db 'a b.db'   reject: runkon-flow reject R1 g --db 'a b.db'"
        in stream.getvalue()
    )


def test_the_live_views_gate_commands_are_never_cut_on_a_narrow_terminal() -> None:
    # At 80 columns the line was cut to the terminal: `approve: runkon-flow approve … --db …`,
    # which cannot be pasted, and the reject command was lost.
    db = "/srv/a-rather-long-directory-name/for-the-team-database/shared/runs.db"
    run_id = "01M98CX1SCJ197QC4J40FZGS8M"
    stream = io.StringIO()
    view = LiveView(
        stream, top_run_id=run_id, color=False, unicode=True, width=80, height=20, hints=Hints(db=db)
    )
    view.feed(
        EngineEventData(timestamp=0, ts=0.0, run_id=run_id, event=GateWaiting(gate_name="ship", step_id="s"))
    )
    view.close()
    lines = stream.getvalue().splitlines()
    for verb in ("approve", "reject"):
        command = f"runkon-flow {verb} {run_id} ship --db {db}"
        at = lines.index(f"  {verb}:")  # the command alone on the next line, whole
        assert lines[at + 1] == f"    {command}"
    assert "…" not in stream.getvalue()
    # Without --db each command fits on a line of its own, after its name.
    stream = io.StringIO()
    view = LiveView(stream, top_run_id=run_id, color=False, unicode=True, width=80, height=20, hints=Hints())
    view.feed(
        EngineEventData(timestamp=0, ts=0.0, run_id=run_id, event=GateWaiting(gate_name="ship", step_id="s"))
    )
    view.close()
    lines = stream.getvalue().splitlines()
    assert f"  approve: runkon-flow approve {run_id} ship" in lines
    assert f"  reject:  runkon-flow reject {run_id} ship" in lines


def test_a_db_given_that_names_runkon_db_or_the_default_file_is_left_out_of_hints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--db "$RUNKON_DB"` (or the default file's path, spelled out) made every hint carry it: a
    # long path pushed `approve with: …` and the like past the terminal, for nothing.
    import argparse

    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "a-rather-long-directory-name" / "for-the-team-database" / "runs.db"
    monkeypatch.setenv("RUNKON_DB", str(shared))
    for given in (str(shared), "a-rather-long-directory-name/for-the-team-database/runs.db"):
        assert Hints.of(argparse.Namespace(db=given)).resume("R1") == "runkon-flow resume R1"
    assert Hints.of(argparse.Namespace(db="other.db")).resume("R1") == "runkon-flow resume R1 --db other.db"
    monkeypatch.delenv("RUNKON_DB")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    default = tmp_path / "state" / "runkon" / "runs.db"
    assert Hints.of(argparse.Namespace(db=str(default))).resume("R1") == "runkon-flow resume R1"
    assert Hints.of(argparse.Namespace(db=str(shared))).resume("R1") == f"runkon-flow resume R1 --db {shared}"


def test_run_with_db_set_to_runkon_db_suggests_resume_without_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", "fan", "--dir", "flows", "--db", str(home / "elsewhere.db"))
    assert code == 1
    command = hint(err, "resume with:")
    assert command == f"runkon-flow resume {run_id_of(out)} --dir flows"
    code, _, err = paste(capsys, command)
    assert code == 1 and "no workflow run" not in err  # the same database: it ran again


GREET = """workflow greet {
  inputs { name required }
  script hi { run = "echo {{name}} is here" }
}
"""


def test_an_input_the_run_refused_is_met_by_a_rerun_hint_not_a_resume_that_refuses_it_again(
    capsys, home: Path
) -> None:
    """`-i name=-n` is refused when the step runs (`echo` would read it as its option); it is stored
    with the run, so `resume` failed the same way: the hint says to rerun with another value."""
    write(home / "flows" / "greet.wf", GREET)
    code, out, err = cli(
        capsys, "run", "greet", "-i", "name=-n", "--dir", "flows", "--db", DB, "--progress", "plain"
    )
    run_id = run_id_of(out)
    assert code == 1 and "(input 'name') begins with '-'" in out
    assert "resume with:" not in err
    command = hint(err, "input 'name' was refused; rerun with other inputs: ")
    assert command == f"runkon-flow rerun {run_id} --from hi -i name=… --dir flows --db 'my runs.db'"

    code, out, _ = paste(capsys, command.replace("name=…", "name=Ann"), "--progress", "plain")
    assert code == 0 and "RunCompleted succeeded=true" in out  # the new value is taken


GREET_BY_AGENT = """workflow greet-by-agent {
  inputs { name required }
  call announcer
}
"""
ANNOUNCER = '---\nruntime: command\ncommand: ["echo", "{{name}}"]\n---\nAnnounce.\n'


@pytest.mark.parametrize(
    ("value", "why"),
    [
        pytest.param("-n", "(input 'name') begins with '-'", id="option"),  # echo would read it so
        pytest.param(
            "a" * 300_000,
            "(input 'name') is 300,000 bytes",  # more than a process can receive
            marks=pytest.mark.skipif(sys.platform != "linux", reason="Linux's per-string limit"),
            id="too-big",  # (not the value: pytest puts the test's id in the environment)
        ),
    ],
)
def test_an_input_an_agent_refused_is_named_and_met_by_the_same_rerun_hint_as_a_scripts(
    capsys, home: Path, value: str, why: str
) -> None:
    """An agent's command refused the value too, but its error said only `{{name}}` — not that it
    was the run's input — so the hint was `resume`, which refuses the stored value again."""
    write(home / "flows" / "greet-by-agent.wf", GREET_BY_AGENT)
    write(home / "flows" / "agents" / "announcer.md", ANNOUNCER)
    code, out, err = cli(
        capsys,
        "run",
        "greet-by-agent",
        "-i",
        f"name={value}",
        "--dir",
        "flows",
        "--db",
        DB,
        "--progress",
        "plain",
    )
    run_id = run_id_of(out)
    assert code == 1 and f"the value of {{{{name}}}} in its command's argument 1 {why}" in out
    assert "resume with:" not in err
    command = hint(err, "input 'name' was refused; rerun with other inputs: ")
    assert command == f"runkon-flow rerun {run_id} --from announcer -i name=… --dir flows --db 'my runs.db'"

    code, out, _ = paste(capsys, command.replace("name=…", "name=Ann"), "--progress", "plain")
    assert code == 0 and "RunCompleted succeeded=true" in out  # the new value is taken
