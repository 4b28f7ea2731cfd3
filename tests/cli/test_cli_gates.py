"""`runkon-flow approve|reject RUN_ID GATE`: resolving a waiting gate from the shell, by gate name or
step id, with a note, a decider and option selections — in this process and across processes."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from runkon_flow.errors import WorkflowError
from runkon_flow.persistence import RunStatus, StepStatus

from tests.cli.gate_helpers import GateRun, gate_home, waiting_in_a_process
from tests.cli.run_helpers import cli, cli_env, run_cli_process, run_id_of, spawn, stop, wait_for, write


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return gate_home(tmp_path, monkeypatch)


@pytest.fixture
def waiting(home: Path) -> Iterator[GateRun]:
    run = GateRun(home)
    yield run
    run.close()


def test_approve_by_gate_name_records_who_and_why_and_the_run_continues(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "approve", waiting.run_id, "human_approval", "--note", "looks good")
    assert (code, err) == (0, "")
    assert out == f"gate human_approval of run {waiting.run_id} approved by alice\n"
    result = waiting.finish()
    assert result.status is RunStatus.COMPLETED
    row = waiting.gate_row()
    assert (row.status, row.gate_approved_by, row.gate_feedback) == (
        StepStatus.COMPLETED,
        "alice",
        "looks good",
    )


def test_approve_by_step_id_with_an_explicit_decider(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    step_id = waiting.ws.gates.waiting_gates(waiting.run_id)[0].step_id
    code, out, _ = cli(capsys, "approve", waiting.run_id, step_id, "--by", "release-bot")
    assert code == 0 and out.endswith("approved by release-bot\n")
    assert waiting.finish().status is RunStatus.COMPLETED
    assert waiting.gate_row().gate_approved_by == "release-bot"


def test_approve_takes_the_short_run_id_the_dashboard_shows(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "approve", "…" + waiting.run_id[-8:], "human_approval")
    assert (code, err) == (0, "")
    assert out == f"gate human_approval of run {waiting.run_id} approved by alice\n"
    assert waiting.finish().status is RunStatus.COMPLETED


def test_approve_with_a_selection_of_the_gates_options(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "approve", waiting.run_id, "human_approval", "--select", "yolo")
    assert code == 1
    assert "invalid selection 'yolo' for gate 'human_approval' (allowed: careful, fast)" in err
    # A misspelt option is told the closest one, as a misspelt gate name is.
    code, _, err = cli(capsys, "approve", waiting.run_id, "human_approval", "--select", "carefull")
    assert code == 1
    assert (
        "invalid selection 'carefull' for gate 'human_approval' "
        "(did you mean `careful`? allowed: careful, fast)" in err
    )
    assert waiting.thread.is_alive()  # still waiting: a bad selection decides nothing
    assert cli(capsys, "approve", waiting.run_id, "human_approval", "--select", "careful")[0] == 0
    assert waiting.finish().status is RunStatus.COMPLETED
    assert json.loads(waiting.gate_row().gate_selections) == ["careful"]


def test_reject_fails_the_run_with_the_note(waiting: GateRun, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "reject", waiting.run_id, "human_approval", "--note", "not on a Friday")
    assert code == 0
    assert out == f"gate human_approval of run {waiting.run_id} rejected by alice\n"
    result = waiting.finish()
    assert result.status is RunStatus.FAILED
    assert "Gate 'human_approval' rejected by alice: not on a Friday" in (result.error or "")
    row = waiting.gate_row()
    assert (row.status, row.gate_approved_by) == (StepStatus.FAILED, "alice")
    assert not any(s.step_name == "deploy" for s in waiting.store.get_steps(waiting.run_id))


def test_a_run_ended_by_a_rejected_gate_is_not_resumed_and_a_rerun_from_the_gate_is_offered(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "reject", waiting.run_id, "human_approval", "--note", "not on a Friday")[0] == 0
    assert waiting.finish().status is RunStatus.FAILED
    steps_before = len(waiting.store.get_steps(waiting.run_id))
    code, out, err = cli(capsys, "resume", waiting.run_id)
    assert code == 1 and out == ""
    assert (
        f"run {waiting.run_id} ended when gate 'human_approval' was rejected by alice (not on a Friday); "
        "a rejection is final for its run, so it is not resumed (that would only ask again)." in err
    )
    assert f"runkon-flow rerun {waiting.run_id} --from human_approval" in err
    # Nothing was asked again: no new gate row, the run stays failed.
    assert len(waiting.store.get_steps(waiting.run_id)) == steps_before
    assert waiting.store.get_run(waiting.run_id).status is RunStatus.FAILED
    # The same answer through the engine's API (what the dashboard's engine thread calls).
    with pytest.raises(WorkflowError, match="a rejection is final for its run"):
        waiting.ws.resume(waiting.run_id)


def test_show_lists_the_waiting_gate_with_the_commands_to_resolve_it(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(capsys, "show", waiting.run_id)[1].splitlines()
    at = out.index("waiting gates")
    assert out[at + 1 : at + 5] == [
        "  human_approval: Ship the build?",
        "    options: fast (Fast lane), careful (Careful rollout)",
        f"    approve: runkon-flow approve {waiting.run_id} human_approval "
        "[--select fast|careful] [--note TEXT]",
        f"    reject:  runkon-flow reject {waiting.run_id} human_approval [--note TEXT]",
    ]


LONG_PROMPT = """workflow release {
  gate human_approval {
    prompt  = "Deploy 2.4.0 to staging? The plan is in the log of plan-deploy."
    options = { ship = "Ship it" canary = "Canary first" }
  }
}
"""


def test_on_an_80_column_terminal_show_fits_the_waiting_gate_and_keeps_its_commands_whole(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt ran one column over 80 (the terminal broke `plan-deploy` from its `.`) and the
    approve line was 107: the prompt is wrapped at words, each command goes whole on a line of its
    own with its options said above it. Piped output keeps one line each."""
    from runkon_flow.cli import history

    write(home / "wf" / "release.wf", LONG_PROMPT)
    run = GateRun(home, "release")
    try:
        monkeypatch.setattr(history, "terminal_width", lambda: 80)
        out = cli(capsys, "show", run.run_id)[1].splitlines()
        assert all(len(line) <= 80 for line in out), out
        at = out.index("waiting gates")
        assert out[at + 1 :] == [
            "  human_approval: Deploy 2.4.0 to staging? The plan is in the log of",
            "    plan-deploy.",
            "    options: ship (Ship it), canary (Canary first)",
            "    approve (optional: --select ship|canary --note TEXT):",
            f"      runkon-flow approve {run.run_id} human_approval",
            "    reject (optional: --note TEXT):",
            f"      runkon-flow reject {run.run_id} human_approval",
        ]
        monkeypatch.setattr(history, "terminal_width", lambda: None)
        piped = cli(capsys, "show", run.run_id)[1].splitlines()
        assert piped[piped.index("waiting gates") + 3] == (
            f"    approve: runkon-flow approve {run.run_id} human_approval "
            "[--select ship|canary] [--note TEXT]"
        )
        code, _, err = cli(capsys, *out[at + 5].split()[1:], "--select", "ship")
        assert (code, err) == (0, "")
        assert run.finish().all_succeeded
    finally:
        run.close()


MULTI_LINE_PROMPT = """workflow release {
  gate human_approval {
    prompt  = "Deploy 2.4.0 to staging?
             The plan is in the log of plan-deploy."
  }
}
"""


def test_on_a_terminal_a_prompt_that_spans_lines_keeps_its_breaks_indented_in_show_and_gates(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt may span lines (raw newlines are kept): its second line went out at column 0,
    or, in `show` on a terminal too narrow for it, was joined to the first."""
    from runkon_flow.cli import gates, history

    write(home / "wf" / "release.wf", MULTI_LINE_PROMPT)
    run = GateRun(home, "release")
    try:
        for width, expected in (
            (
                80,
                ["  human_approval: Deploy 2.4.0 to staging?", "    The plan is in the log of plan-deploy."],
            ),
            (
                36,
                [
                    "  human_approval: Deploy 2.4.0 to",
                    "    staging?",
                    "    The plan is in the log of",
                    "    plan-deploy.",
                ],
            ),
        ):
            monkeypatch.setattr(history, "terminal_width", lambda width=width: width)
            shown = cli(capsys, "show", run.run_id)[1].splitlines()
            at = shown.index("waiting gates")
            assert shown[at + 1 : at + 1 + len(expected)] == expected, (width, shown)
        monkeypatch.setattr(gates, "terminal_width", lambda: 80)
        listed = cli(capsys, "gates")[1].splitlines()
        at = listed.index("    Deploy 2.4.0 to staging?")
        assert listed[at + 1] == "    The plan is in the log of plan-deploy."
        code, _, err = cli(capsys, "approve", run.run_id, "human_approval")
        assert (code, err) == (0, "")
        assert run.finish().all_succeeded
    finally:
        run.close()


def test_an_unknown_gate_names_the_gates_that_do_wait(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "approve", waiting.run_id, "qa_signoff")
    assert (code, out) == (1, "")
    assert f"run '{waiting.run_id}' has no waiting gate 'qa_signoff' (waiting: human_approval)" in err
    assert waiting.thread.is_alive()


def test_a_run_without_a_waiting_gate_or_an_unknown_run_is_refused(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "wf" / "plain.wf", 'workflow plain {\n  script a { run = "echo a" }\n}\n')
    code, out, _ = cli(capsys, "run", "plain", "--dir", "wf")
    run_id = run_id_of(out)
    code, _, err = cli(capsys, "approve", run_id, "human_approval")
    assert code == 1 and f"run '{run_id}' has no gate waiting for approval" in err
    code, _, err = cli(capsys, "reject", "01NOSUCHRUN", "human_approval")
    assert code == 1 and "no workflow run '01NOSUCHRUN'" in err


def test_a_missing_gate_argument_is_a_usage_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "approve", "01SOMERUN")
    assert code == 2 and "the following arguments are required: GATE" in err


def test_an_approval_from_another_process_reaches_a_run_waiting_in_a_real_process(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with waiting_in_a_process(home, "ship") as (proc, out, run_id):
        assert "GateWaiting gate=human_approval" in out.read_text()
        assert cli(capsys, "approve", run_id, "human_approval", "--note", "go")[0] == 0
        assert proc.wait(timeout=30) == 0
    text = out.read_text()
    assert "GateResolved gate=human_approval approved=true by=alice feedback=go" in text
    assert "line=deployed" in text


def test_a_run_ended_by_a_rejection_offers_a_rerun_from_the_gate_not_a_resume(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` ended with `resume with: runkon-flow resume …`, a command that is refused for a run a
    rejection ended (docs/engine.md, "A rejected gate is final")."""
    with waiting_in_a_process(home, "ship") as (proc, _out, run_id):
        assert cli(capsys, "reject", run_id, "human_approval", "--note", "no")[0] == 0
        assert proc.wait(timeout=30) == 1
    err = (home / "run.err").read_text()
    assert "resume with:" not in err
    assert (
        f"gate 'human_approval' was rejected; to ask again in a new run: "
        f"runkon-flow rerun {run_id} --from human_approval --dir wf\n"
    ) in err


def test_the_gate_of_a_resumed_run_is_approved_even_with_the_dead_engines_row_still_waiting(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = cli_env(RUNKON_DB=str(home / "runs.db"), RUNKON_LEASE_TTL="1")
    out, err = home / "run.out", home / "run.err"
    crashed = spawn(["run", "ship", "--dir", "wf"], home, stdout=out, stderr=err, env=env)
    try:
        wait_for(lambda: "GateWaiting" in out.read_text(), "the gate to wait", timeout=60)
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=30)
    finally:
        stop(crashed)
    run_id = run_id_of(out.read_text())
    res_out, res_err = home / "resume.out", home / "resume.err"
    resumed = spawn(
        ["resume", run_id, "--dir", "wf", "--wait"], home, stdout=res_out, stderr=res_err, env=env
    )
    try:
        wait_for(lambda: "GateWaiting" in res_out.read_text(), "the resumed gate to wait", timeout=60)
        shown = cli(capsys, "show", run_id)[1]
        assert shown.count(f"approve: runkon-flow approve {run_id} human_approval") == 1
        assert cli(capsys, "approve", run_id, "human_approval")[0] == 0
        assert resumed.wait(timeout=30) == 0
    finally:
        stop(resumed)
    assert "line=deployed" in res_out.read_text()


def test_a_gate_waiting_in_a_child_run_is_shown_and_approved_through_the_top_level_run(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "wf" / "release.wf", "workflow release {\n  call workflow ship\n}\n")
    release = GateRun(home, "release")
    try:
        run_id = release.run_id
        child = release.ws.gates.waiting_gates(run_id)[0].run_id
        shown = cli(capsys, "show", run_id)[1]
        assert f"  human_approval (in child run {child}): Ship the build?" in shown
        assert f"approve: runkon-flow approve {child} human_approval" in shown
        assert cli(capsys, "approve", run_id, "human_approval")[0] == 0
        assert release.finish().status is RunStatus.COMPLETED
    finally:
        release.close()


def test_a_run_that_ends_the_moment_its_gate_is_answered_is_not_called_interrupted(
    home: Path, waiting: GateRun, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether an engine holds the run is read before deciding: the engine acts on a decision at
    once, and a run that finished (its lease let go) before a look after the decision was said to
    be interrupted, `resume` and all (seen under load with a run in another process)."""
    from runkon_flow.approvals import GateApprovals

    def then_finish(original, run: GateRun):  # type: ignore[no-untyped-def]
        def decide(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            result = original(self, *args, **kwargs)
            run.finish()  # the engine has ended the run and let go of its lease
            return result

        return decide

    monkeypatch.setattr(GateApprovals, "approve", then_finish(GateApprovals.approve, waiting))
    code, _, err = cli(capsys, "approve", waiting.run_id, "human_approval", "--select", "fast")
    assert (code, err) == (0, "")
    assert waiting.store.get_run(waiting.run_id).status is RunStatus.COMPLETED
    other = GateRun(home)
    try:
        monkeypatch.setattr(GateApprovals, "decide_many", then_finish(GateApprovals.decide_many, other))
        code, _, err = cli(capsys, "gates", "approve", "--all", "--select", "fast")
        assert (code, err) == (0, "")
        assert other.store.get_run(other.run_id).status is RunStatus.COMPLETED
    finally:
        other.close()


def test_a_run_printing_plain_lines_says_how_to_answer_its_waiting_gate(home: Path) -> None:
    """Piped (CI, `| tee`), `run` printed the gate's event line and then sat at it without a word
    of how to answer it — the live view prints the commands; now plain output says them on stderr,
    and they work."""
    with waiting_in_a_process(home, "ship") as (proc, out, run_id):
        err = home / "run.err"
        wait_for(lambda: "reject:" in err.read_text(), "the answer lines")
        said = err.read_text().splitlines()
        approve = next(line for line in said if "approve:" in line)
        reject = next(line for line in said if "reject:" in line)
        assert approve == f"gate human_approval waits — approve: runkon-flow approve {run_id} human_approval"
        assert reject.endswith(f"reject:  runkon-flow reject {run_id} human_approval")
        assert reject.index("reject:") == approve.index("approve:")
        assert "approve" not in out.read_text().split("GateWaiting", 1)[1]  # stdout: event lines only
        words = approve.split("approve: ", 1)[1].split()[1:]
        done = run_cli_process(words, home, cli_env(RUNKON_DB=str(home / "runs.db")))
        assert done.returncode == 0, done.stderr
        proc.wait(timeout=60)
        assert proc.returncode == 0, err.read_text()


def test_watching_a_run_whose_gate_was_answered_prints_no_answer_commands(
    waiting: GateRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """`watch` prints a run's stored history: its gate's waiting line is long answered, and the
    commands that would answer it are not said (they were, for a finished run, once plain `run`
    said them)."""
    assert cli(capsys, "approve", waiting.run_id, "human_approval")[0] == 0
    assert waiting.finish().status is RunStatus.COMPLETED
    code, out, err = cli(capsys, "watch", waiting.run_id, "--progress", "plain")
    assert code == 0 and "GateWaiting" in out and "GateResolved" in out
    assert "approve:" not in err and "reject:" not in err, err
