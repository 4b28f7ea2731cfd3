"""The CLI as a new user meets it (issue 10): who answered a gate and why, a rejection's reason,
a `--db` typo that would silently start a new history (or an empty database for `db upgrade`),
usage errors that name their command, and help texts that say all there is."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from runkon_flow.cli import build_parser
from runkon_flow.persistence import RunStatus

from tests.cli.gate_helpers import GateRun
from tests.cli.run_helpers import cli, run_id_of, write
from tests.cli.test_cli_gates import home, waiting  # noqa: F401  (fixtures)


def test_show_says_who_approved_a_gate_with_which_option_and_note(
    waiting: GateRun,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ("approve", waiting.run_id, "human_approval", "--select", "careful", "--note", "ok")
    assert cli(capsys, *argv)[0] == 0
    assert waiting.finish().status is RunStatus.COMPLETED
    code, out, err = cli(capsys, "show", waiting.run_id)
    assert code == 0, err
    lines = out.splitlines()
    assert "gates" in lines
    decision = lines[lines.index("gates") + 1]
    assert decision.startswith("  human_approval: approved by alice at ")
    assert decision.endswith(" · options: careful · note: ok")


def test_a_rejection_with_a_note_says_the_gate_was_rejected_and_by_whom(
    waiting: GateRun,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(capsys, "reject", waiting.run_id, "human_approval", "--note", "nope")[0] == 0
    result = waiting.finish()
    assert result.status is RunStatus.FAILED
    assert result.error == "workflow error: Gate 'human_approval' rejected by alice: nope"
    out = cli(capsys, "show", waiting.run_id)[1]
    lines = out.splitlines()
    assert "error     Gate 'human_approval' rejected by alice: nope" in lines
    assert "  human_approval: rejected by alice: nope" in lines  # under "failed steps"
    assert "  human_approval: rejected by alice · note: nope" in lines  # under "gates"


def test_a_db_in_a_missing_folder_says_the_folder_was_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "wf" / "hello.wf", 'workflow hello { script s { run = "echo hi" } }\n')
    code, out, err = cli(capsys, "run", "hello", "--dir", "wf", "--db", "typo/runs.db")
    assert code == 0, err
    run_id_of(out)
    assert "created typo/ for the new run database typo/runs.db" in err
    code, _, err = cli(capsys, "run", "hello", "--dir", "wf", "--db", "typo/runs.db")
    assert code == 0 and "created" not in err  # said once, when it happened


def test_the_default_database_folder_is_created_without_a_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first run on a new machine creates ~/.local/state/runkon/: expected, not a typo to flag."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNKON_DB", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "fresh-home" / "state"))
    write(tmp_path / "wf" / "hello.wf", 'workflow hello { script s { run = "echo hi" } }\n')
    code, _, err = cli(capsys, "run", "hello", "--dir", "wf")
    assert code == 0, err
    assert (tmp_path / "fresh-home" / "state" / "runkon" / "runs.db").exists()
    assert "created" not in err


def test_db_upgrade_of_a_database_that_does_not_exist_refuses_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`db upgrade` upgrades existing databases: a mistyped --db must not become a folder and an
    empty database without a word."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "db", "upgrade", "--db", "nodir/x.db")
    assert (code, out) == (1, "")
    assert err == (
        "runkon-flow db: error: no run database at nodir/x.db: db upgrade upgrades an existing one (a "
        "new one is created by the first `runkon-flow run` with it; check --db / $RUNKON_DB)\n"
    )
    assert not (tmp_path / "nodir").exists()
    (tmp_path / "runs.db").touch()  # a file of 0 bytes is no database either: it stays as it is
    code, out, err = cli(capsys, "db", "upgrade", "--db", "runs.db")
    assert (code, out) == (1, "")
    assert err.startswith(
        "runkon-flow db: error: run database runs.db is empty: db upgrade upgrades an existing"
    )
    assert (tmp_path / "runs.db").stat().st_size == 0
    write(tmp_path / "wf" / "hello.wf", 'workflow hello { script s { run = "echo hi" } }\n')
    assert cli(capsys, "run", "hello", "--dir", "wf", "--db", "runs.db")[0] == 0
    code, out, _ = cli(capsys, "db", "upgrade", "--db", "runs.db")
    assert code == 0 and out.startswith("run database runs.db is at schema version ")


@pytest.mark.parametrize(
    ("argv", "first_line", "usage"),
    [
        (
            ("runs", "--limit", "0"),
            "runkon-flow runs: error: argument --limit/-n: must be at least 1, got 0",
            "usage: runkon-flow runs ",
        ),
        (
            ("runs", "extra"),
            "runkon-flow runs: error: unrecognized arguments: extra",
            "usage: runkon-flow runs ",
        ),
        (
            ("show",),
            "runkon-flow show: error: the following arguments are required: RUN_ID",
            "usage: runkon-flow show ",
        ),
        (
            ("db", "upgrade", "--bogus"),
            "runkon-flow db: error: unrecognized arguments: --bogus",
            "usage: runkon-flow db upgrade ",
        ),
        (
            ("nope",),
            "runkon-flow: error: argument COMMAND: invalid choice: 'nope' (choose from",
            "usage: runkon-flow ",
        ),
    ],
)
def test_a_usage_error_names_its_command_as_every_other_error_does(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    first_line: str,
    usage: str,
) -> None:
    """`runkon-flow runs: error: …` as `runkon-flow runs: error: no run database …` is, not a bare
    `runkon-flow: error: …` that leaves the reader to find which command complained."""
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    code, out, err = cli(capsys, *argv)
    assert (code, out) == (2, "")
    first, second, *_ = err.splitlines()
    assert first.startswith(first_line) and second.startswith(usage)


def test_a_workflow_name_where_there_are_no_workflows_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no sample_workflows/ here, no .wf files either
    code, _, err = cli(capsys, "run", "hello", "--memory")
    assert code == 2
    assert err.strip() == (
        f"runkon-flow run: error: workflow not found: hello (no .wf files in {tmp_path});"
        " name a .wf file, or its folder with --dir"
    )
    write(tmp_path / "greet.wf", 'workflow greet {\n  script s { run = "true" }\n}\n')
    code, _, err = cli(capsys, "run", "hello", "--memory")
    assert code == 2 and err.strip().endswith("workflow not found: hello (available: greet)")


def test_help_texts_say_what_the_commands_do(capsys: pytest.CaptureFixture[str]) -> None:
    """`runs -h` names all four step counts, `db -h` says what `db` is for, and every `--db` help
    spells out the whole default, down to the ~/.local/state fallback most machines use."""
    code, out, _ = cli(capsys, "runs", "-h")
    assert code == 0 and "(ok/failed/skipped/cancelled)" in " ".join(out.split())
    code, out, _ = cli(capsys, "db", "-h")
    assert code == 0 and "Manage the run database." in out
    db_helps = {
        f"{command} {sub}".strip(): action.help
        for command, parser in _subparsers(build_parser()).items()
        for sub, subparser in ({"": parser} | _subparsers(parser)).items()
        for action in subparser._actions
        if "--db" in action.option_strings
    }
    assert len(db_helps) >= 15  # every command that opens the run database
    default = "$RUNKON_DB, else $XDG_STATE_HOME/runkon/runs.db, else ~/.local/state/runkon/runs.db"
    assert [where for where, text in db_helps.items() if default not in str(text)] == []


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        name: sub
        for action in parser._actions  # argparse has no public walk of its subcommands
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def test_a_run_step_or_gate_that_names_nothing_exits_1_with_the_closest_name(
    waiting: GateRun,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`show nosuchrun` exited 1 but `logs RUN nosuchstep` 2, and named no step: one convention
    for the commands that read or answer a run — a run, step, item or gate it does not have is
    exit 1 — and a misspelt name is told the closest one the run has (docs/cli.md)."""
    nosuch = "01NOSUCHRUN0000000000000000"
    for argv in (
        ("show", nosuch),
        ("logs", nosuch),
        ("grep", "x", nosuch),
        ("watch", nosuch),
        ("cancel", nosuch),
        ("approve", nosuch, "human_approval"),
        ("reject", nosuch, "human_approval"),
    ):
        code, _, err = cli(capsys, *argv)
        unknown = f"no workflow run '{nosuch}' in {waiting.store.path}\n"
        assert (code, err.split(": error: ", 1)[1]) == (1, unknown)

    run_id = waiting.run_id
    for argv in (("logs", run_id, "biuld"), ("grep", "x", run_id, "biuld")):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (1, "")
        assert err.endswith(
            f"error: no step or item 'biuld' in run {run_id} "
            "(did you mean `build`? it has: build, human_approval)\n"
        )
    code, _, err = cli(capsys, "approve", run_id, "human_aproval")
    assert code == 1
    assert err.endswith(
        f"error: run '{run_id}' has no waiting gate 'human_aproval' "
        "(did you mean `human_approval`? waiting: human_approval)\n"
    )
