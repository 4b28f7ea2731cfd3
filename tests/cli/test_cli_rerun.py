"""`runkon-flow rerun RUN_ID --from STEP`: a new run, linked to the old one, that reuses the
results of the steps before STEP (their outputs feed the later steps, nothing before STEP runs
again) and runs STEP and what follows, with inputs that can be changed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from runkon_flow.cli.live import LiveView
from runkon_flow.events import parse_event_line
from runkon_flow.persistence import RunStatus, SqliteStore, StepStatus

from tests.cli.run_helpers import cli, events_of, run_id_of, write

CHAIN = """workflow chain {
  inputs {
    target default = "staging"
  }
  script build { run = "sh build.sh" }
  script deploy { run = "sh deploy.sh {{artifact}} {{target}}" }
  script verify { run = "sh verify.sh {{target}}" }
}
"""

BUILD = """n=$(($(cat trace.log 2>/dev/null | wc -l) + 1))
echo "build $n" >> trace.log
printf '<<<FLOW_OUTPUT>>>\\n{"artifact": "app-%s.tar"}\\n<<<END_FLOW_OUTPUT>>>\\n' "$n"
"""

DEPLOY = """if [ -e broken ]; then echo "deploy broke" >&2; exit 1; fi
echo "deploy $1 $2" >> trace.log
"""

VERIFY = """echo "verify $1" >> trace.log
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_HOOKS", raising=False)
    wf = tmp_path / "wf"
    write(wf / "chain.wf", CHAIN)
    write(wf / "build.sh", BUILD)
    write(wf / "deploy.sh", DEPLOY)
    write(wf / "verify.sh", VERIFY)
    return tmp_path


def trace(home: Path) -> list[str]:
    return (home / "wf" / "trace.log").read_text().splitlines()


def failed_run(home: Path, capsys: pytest.CaptureFixture[str]) -> str:
    (home / "wf" / "broken").touch()
    code, out, _ = cli(capsys, "run", "chain", "--dir", "wf", "--progress", "quiet")
    assert code == 1
    (home / "wf" / "broken").unlink()
    return run_id_of(out)


def test_rerun_from_a_step_reuses_what_came_before_and_feeds_its_outputs_on(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = failed_run(home, capsys)
    assert trace(home) == ["build 1"]
    code, out, err = cli(
        capsys, "rerun", old, "--from", "deploy", "--dir", "wf", "--progress", "quiet", "-i", "target=prod"
    )
    assert code == 0, err
    new = run_id_of(out)
    assert new != old
    # The plan is a note (stderr): stdout is the `run_id=` line and events, as for run and retry.
    assert f"rerun of {old} from deploy: reusing 1 step (build)" in err
    assert "rerun of" not in out
    assert trace(home) == ["build 1", "deploy app-1.tar prod", "verify prod"]  # build did not run again
    store = SqliteStore(home / "runs.db")
    try:
        run = store.get_run(new)
        assert run is not None and run.status is RunStatus.COMPLETED
        assert (run.rerun_of, run.rerun_from, run.inputs) == (old, "deploy", {"target": "prod"})
        steps = {s.step_name: s for s in store.get_steps(new)}
        assert set(steps) == {"build", "deploy", "verify"}
        assert all(s.status is StepStatus.COMPLETED for s in steps.values())
        old_run = store.get_run(old)
        assert old_run is not None and old_run.status is RunStatus.FAILED  # the old run is untouched
    finally:
        store.close()
    shown = cli(capsys, "show", new)[1]
    assert f"rerun of  {old} from step deploy (1 step reused)" in shown
    listed = json.loads(cli(capsys, "show", new, "--json")[1])
    assert (listed["rerun_of"], listed["rerun_from"]) == (old, "deploy")


def test_a_rerun_starts_as_a_new_run_naming_the_run_and_step_it_reruns(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not `resumed`: its first event is RunStarted with `rerun_of` and `rerun_from`, and the live
    view, `watch` and `replay` say `started (rerun of OLD from STEP)`."""
    old = failed_run(home, capsys)
    code, out, err = cli(
        capsys, "rerun", old, "--from", "deploy", "--dir", "wf", "--progress", "plain", "--events", "ev.jsonl"
    )
    assert code == 0, err
    new = run_id_of(out)
    [(_, first, fields), *rest] = [e for e in events_of(out) if e[0] == new]
    assert (first, fields) == ("RunStarted", f"workflow=chain rerun_of={old} rerun_from=deploy")
    assert "RunResumed" not in {kind for _, kind, _ in rest}
    watched = cli(capsys, "watch", new, "--progress", "plain")[1]
    assert f"RunStarted workflow=chain rerun_of={old} rerun_from=deploy" in watched

    stream = io.StringIO()
    view = LiveView(stream, top_run_id=new, color=False, unicode=True, width=120, height=30)
    for line in (home / "ev.jsonl").read_text().splitlines():
        record = parse_event_line(line)
        assert record is not None
        view.feed(record)
    view.close()
    assert f"run {new} chain started (rerun of {old} from deploy)" in stream.getvalue()


def test_the_always_block_is_not_reused_by_a_rerun_from_a_step_of_the_body(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old run failed before reaching STEP (verify), and its always block ran: it comes after
    every body step, so the rerun runs it again at its end (it was reused, and drawn done from the
    start)."""
    write(
        home / "wf" / "chain.wf",
        CHAIN.rstrip().removesuffix("}") + '  always { script report { run = "sh report.sh" } }\n}\n',
    )
    write(home / "wf" / "report.sh", 'echo "report" >> trace.log\n')
    old = failed_run(home, capsys)
    assert trace(home) == ["build 1", "report"]
    code, out, err = cli(capsys, "rerun", old, "--from", "verify", "--dir", "wf", "--progress", "quiet")
    assert code == 0, err
    assert "reusing 1 step (build)" in err and "reusing" not in out
    assert trace(home) == ["build 1", "report", "deploy app-1.tar staging", "verify staging", "report"]


def test_rerun_from_the_first_step_runs_everything_again_with_the_old_inputs(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = failed_run(home, capsys)
    code, out, err = cli(capsys, "rerun", old, "--from", "build", "--dir", "wf", "--progress", "quiet")
    assert code == 0, err
    assert "reusing no steps" in err and "reusing" not in out
    assert trace(home) == ["build 1", "build 2", "deploy app-2.tar staging", "verify staging"]


def test_rerun_of_a_completed_run_from_a_later_step(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "run", "chain", "--dir", "wf", "--progress", "quiet")
    assert code == 0
    old = run_id_of(out)
    assert cli(capsys, "rerun", old, "--from", "verify", "--dir", "wf", "--progress", "quiet")[0] == 0
    assert trace(home) == ["build 1", "deploy app-1.tar staging", "verify staging", "verify staging"]


def test_an_unknown_step_or_input_is_refused_and_nothing_is_created(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = failed_run(home, capsys)
    code, out, err = cli(capsys, "rerun", old, "--from", "deplyo", "--dir", "wf")
    # A usage error (exit 2): a step of the workflow, as its inputs are (docs/cli.md).
    assert (code, out) == (2, "")
    assert err == (
        "runkon-flow rerun: error: no step 'deplyo' in workflow 'chain' (it has: build, deploy, verify)\n"
    )
    code, _, err = cli(capsys, "rerun", old, "--from", "deploy", "--dir", "wf", "-i", "region=eu")
    assert code == 2 and "Unknown input 'region'" in err
    store = SqliteStore(home / "runs.db")
    try:
        assert [r.id for r in store.list_runs()] == [old]
    finally:
        store.close()
    code, _, err = cli(capsys, "rerun", old, "--dir", "wf")
    assert code == 2 and "--from" in err


def test_a_broken_file_is_refused_and_the_stored_definition_still_works(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = failed_run(home, capsys)
    write(
        home / "wf" / "chain.wf",
        CHAIN.replace('script verify { run = "sh verify.sh {{target}}" }', "call nosuchagent"),
    )
    code, out, err = cli(capsys, "rerun", old, "--from", "deploy", "--dir", "wf", "--progress", "quiet")
    assert code == 1 and out == ""
    assert "nosuchagent" in err
    store = SqliteStore(home / "runs.db")
    try:
        assert [r.id for r in store.list_runs()] == [old]  # nothing created
    finally:
        store.close()
    code, out, err = cli(
        capsys,
        "rerun",
        old,
        "--from",
        "deploy",
        "--definition",
        "stored",
        "--dir",
        "wf",
        "--progress",
        "quiet",
    )
    assert code == 0, err
    assert "stored definition" in err
    assert trace(home) == ["build 1", "deploy app-1.tar staging", "verify staging"]


def test_a_step_of_a_called_workflow_is_refused_with_the_call_to_rerun_from(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--from` names the top-level workflow's steps only (docs/when-things-go-wrong.md); a step
    of a called workflow is refused with the `call workflow` step that reruns it."""
    write(
        home / "wf" / "outer.wf",
        'workflow outer {\n  script prep { run = "true" }\n  call workflow inner\n}\n',
    )
    write(home / "wf" / "inner.wf", 'workflow inner {\n  script compile { run = "true" }\n}\n')
    code, out, _ = cli(capsys, "run", "outer", "--dir", "wf", "--progress", "quiet")
    assert code == 0
    old = run_id_of(out)
    code, out, err = cli(capsys, "rerun", old, "--from", "compile", "--dir", "wf")
    assert (code, out) == (2, "")
    assert (
        "step 'compile' is inside the workflow 'inner' that 'outer' calls (at body.1); rerun names only "
        "the steps of 'outer' itself: rerun from the call, --from inner (or --from body.1)"
    ) in err
    assert cli(capsys, "rerun", old, "--from", "inner", "--dir", "wf", "--progress", "quiet")[0] == 0


def test_from_is_shown_as_required(capsys: pytest.CaptureFixture[str]) -> None:
    """`rerun -h` showed `[--from STEP]` although a rerun without it is refused."""
    code, out, _ = cli(capsys, "rerun", "-h")
    assert code == 0
    assert "usage: runkon-flow rerun [-h] --from STEP " in out
    code, out, err = cli(capsys, "rerun", "01ABC")
    assert (code, out) == (2, "")
    assert "the following arguments are required: --from" in err


def test_watch_and_show_say_which_steps_a_rerun_reused(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reused steps are drawn completed, marked reused from the old run, and counted: the last
    frame of `watch` says ✓3 like `show`, and both name the run that holds their output."""
    monkeypatch.setenv("NO_COLOR", "1")
    old = failed_run(home, capsys)
    code, out, err = cli(capsys, "rerun", old, "--from", "deploy", "--dir", "wf", "--progress", "quiet")
    assert code == 0, err
    new = run_id_of(out)
    watched = cli(capsys, "watch", new, "--progress", "live")[1]
    assert f"✓ build  reused from run {old}" in watched
    assert "steps ✓3 ✗0" in watched
    shown = cli(capsys, "show", new)[1]
    assert "(1 step reused)" in shown
    [build] = [line for line in shown.splitlines() if " build " in line]
    assert build.split()[1] == "completed" and build.endswith(f"reused from run {old}")
    # Its output is the old run's, and `logs` says where rather than `(no output)`.
    logged = cli(capsys, "logs", new, "build")[1]
    assert f"… reused from run {old}: its output is there (runkon-flow logs {old} build)" in logged
    assert "(no output)" not in logged
