"""Hooks and terminal notifications of `runkon-flow run`: the hooks file is found (--hooks,
$RUNKON_HOOKS, .runkon/hooks.yaml), checked before a run exists, and run off the engine's thread;
on a terminal the run's end and a waiting gate ring the bell with a desktop notification."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runkon_flow.hooks import TerminalAlerts, alert_sequence
from runkon_flow.persistence import SqliteStore

from tests.cli.run_helpers import cli, cli_env, run_cli_process, run_id_of, wait_for, write

GOOD = 'workflow good {\n  script a { run = "echo a" }\n}\n'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_HOOKS", raising=False)
    write(tmp_path / "wf" / "good.wf", GOOD)
    return tmp_path


def hooks_file(path: Path, out: Path, events: str = "workflow_run.*") -> Path:
    return write(
        path,
        f"hooks:\n  - events: {events}\n    run: cat >> {out}; echo >> {out}\n",
    )


def events_in(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_hooks_from_the_project_file_run_for_a_cli_run(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = home / "events.jsonl"
    hooks_file(home / ".runkon" / "hooks.yaml", out)
    code, printed, err = cli(capsys, "run", "good", "--dir", "wf", "--progress", "quiet")
    assert (code, err) == (0, "")
    run_id = run_id_of(printed)
    (event,) = events_in(out)  # the hook finished before the command returned
    assert (event["event"], event["run_id"], event["workflow"]) == ("workflow_run.completed", run_id, "good")


def test_hooks_option_and_env_choose_the_file(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    by_option, by_env = home / "option.jsonl", home / "env.jsonl"
    monkeypatch.setenv("RUNKON_HOOKS", str(hooks_file(home / "env.yaml", by_env)))
    assert cli(capsys, "run", "good", "--dir", "wf", "--progress", "quiet")[0] == 0
    assert len(events_in(by_env)) == 1
    option = hooks_file(home / "option.yaml", by_option)
    assert cli(capsys, "run", "good", "--dir", "wf", "--progress", "quiet", "--hooks", str(option))[0] == 0
    assert len(events_in(by_option)) == 1 and len(events_in(by_env)) == 1


def test_a_wrong_hooks_file_stops_the_command_before_a_run_exists(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(home / "hooks.yaml", "hooks:\n  - events: workflow_run.finished\n    run: echo\n")
    code, out, err = cli(capsys, "run", "good", "--dir", "wf", "--hooks", str(bad))
    assert (code, out) == (2, "")
    assert f"{bad}:2: hooks.0.events: 'workflow_run.finished' matches no event" in err
    store = SqliteStore(home / "runs.db")
    try:
        assert store.list_runs() == []
    finally:
        store.close()


FAN = """workflow fan {
  foreach each {
    over = static
    scope = { items = "a,b,c,d,e,f,g" }
    max_parallel = 2
    workflow = one
    inputs = { name = "{{item.id}}" }
  }
}
"""
ONE = """workflow one {
  inputs { name default = "" }
  script work { run = "sh work.sh {{name}}" }
}
"""
WORK = r"""case $1 in
  b) echo "rate limited: retry after 30s" >&2 ;;
  e) echo "rate limited: retry after 45s" >&2 ;;
  d|f|g) echo "schema mismatch in /data/$1.json line 4: expected int" >&2 ;;
  *) exit 0 ;;
esac
exit 3
"""


def test_a_failed_runs_hook_event_says_what_went_wrong_with_its_failed_items(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`error` says `5 of 7 items failed`; `failures` says why, by failure cluster, numbered as
    `show` numbers them (and `retry --cluster N` takes them). JSON only: no RUNKON_FAILURES."""
    write(home / "wf" / "fan.wf", FAN)
    write(home / "wf" / "one.wf", ONE)
    write(home / "wf" / "work.sh", WORK)
    out = home / "events.jsonl"
    write(
        home / ".runkon" / "hooks.yaml",
        f"hooks:\n  - events: workflow_run.failed\n    run: cat >> {out}; echo >> {out}; "
        f'echo "${{RUNKON_FAILURES-none}}" > {home}/env.txt\n',
    )
    code, printed, err = cli(capsys, "run", "fan", "--dir", "wf", "--progress", "quiet")
    assert code == 1, err
    run_id = run_id_of(printed)
    (event,) = events_in(out)
    assert event["error"] == "foreach 'each': 5 of 7 items failed"
    assert event["failures"] == [
        {
            "cluster": 1,
            "foreach": "each",
            "count": 3,
            "what": "Script 'work' exited with code <n> · schema mismatch in <path> line <n>: expected int",
            "items": ["d", "f", "g"],
        },
        {
            "cluster": 2,
            "foreach": "each",
            "count": 2,
            "what": "Script 'work' exited with code <n> · rate limited: retry after <n>s",
            "items": ["b", "e"],
        },
    ]
    assert (home / "env.txt").read_text() == "none\n"
    _, shown, _ = cli(capsys, "show", run_id, "--json")
    numbered = {c["number"]: c["items"] for c in json.loads(shown)["failure_clusters"]}
    assert numbered == {f["cluster"]: f["items"] for f in event["failures"]}


def test_a_failing_hook_is_reported_and_the_run_still_succeeds(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        home / ".runkon" / "hooks.yaml",
        "hooks:\n  - name: pager\n    events: workflow_run.completed\n    run: echo down >&2; exit 4\n",
    )
    code, out, err = cli(capsys, "run", "good", "--dir", "wf", "--progress", "quiet")
    run_id = run_id_of(out)
    assert code == 0
    assert err == f"runkon-flow: hook 'pager' on workflow_run.completed (run {run_id}) failed: exit 4: down\n"


def test_a_failing_hook_is_reported_once_by_the_real_command(home: Path) -> None:
    """The CLI reports a failed hook itself; the hook runner's log warning also reached stderr
    (logging's last resort, with nothing configured), so every failure was printed twice. Only a
    real process shows it: pytest's log capture takes the warning."""
    write(
        home / ".runkon" / "hooks.yaml",
        "hooks:\n  - name: pager\n    events: workflow_run.completed\n    run: exit 4\n",
    )
    done = run_cli_process(["run", "good", "--dir", "wf", "--progress", "quiet"], home, cli_env())
    assert done.returncode == 0, done.stderr
    run_id = run_id_of(done.stdout)
    line = f"runkon-flow: hook 'pager' on workflow_run.completed (run {run_id}) failed: exit 4\n"
    assert done.stderr == line


def test_alert_sequences_for_each_terminal() -> None:
    assert alert_sequence("t", "b", {"RUNKON_NOTIFY": "off"}) == ""
    assert alert_sequence("t", "b", {}) == "\a"
    assert alert_sequence("t", "b;x\x1b", {"TERM_PROGRAM": "iTerm.app"}) == "\a\x1b]9;t: b x \x07"
    assert alert_sequence("t", "b", {"VTE_VERSION": "7000"}) == "\a\x1b]777;notify;t;b\x07"
    # C1 controls end the OSC (U+009C) or start a CSI (U+009B) in VTE: a value in a gate prompt
    assert alert_sequence("t", "b\x9c\x9b2J\x9d", {"VTE_VERSION": "7000"}) == "\a\x1b]777;notify;t;b  2J \x07"
    assert alert_sequence("t", "b", {"RUNKON_NOTIFY": "osc9", "TMUX": "/tmp/x"}) == (
        "\a\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\"
    )


def test_terminal_alerts_on_a_gate_and_on_the_runs_end() -> None:
    import io

    from runkon_flow.events import EngineEventData, GateWaiting, RunCompleted, RunStarted

    stream = io.StringIO()
    alerts = TerminalAlerts(stream, "R", {"RUNKON_NOTIFY": "osc777"})
    for run_id, event in [
        ("R", RunStarted(workflow_name="ship")),
        ("C", RunCompleted(succeeded=True)),  # a child's end: no alert
        ("R", GateWaiting(gate_name="go", prompt="Ship?")),
        ("R", RunCompleted(succeeded=False)),
    ]:
        alerts.feed(EngineEventData.now(run_id, event))
    assert stream.getvalue() == (
        "\a\x1b]777;notify;runkon: gate go waits;Ship?\x07"
        "\a\x1b]777;notify;runkon: run failed;ship R failed\x07"
    )


def _run_on_a_tty(home: Path, *extra: str) -> str:
    """`runkon-flow run good` with stdout and stderr on a pseudo-terminal; what it wrote there."""
    master, slave = pty.openpty()
    env = cli_env(RUNKON_DB=str(home / "runs.db"), RUNKON_NOTIFY="osc777", TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", "run", "good", "--dir", "wf", *extra],
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the terminal closed with the process
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_a_run_on_a_terminal_notifies_when_it_ends_unless_told_not_to(home: Path) -> None:
    shown = _run_on_a_tty(home)
    assert "\a\x1b]777;notify;runkon: run completed;good " in shown
    quiet = _run_on_a_tty(home, "--no-notify")
    assert "\x1b]777" not in quiet and "\a" not in quiet


def test_an_unknown_notification_style_is_warned_about_once(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`RUNKON_NOTIFY=beep` was ignored without a word; run now says so on stderr, once, with the
    accepted styles — and not under --no-notify, where no style is used."""
    monkeypatch.setenv("RUNKON_NOTIFY", "beep")
    code, _, err = cli(capsys, "run", "good", "--dir", "wf")
    assert code == 0, err
    warned = [line for line in err.splitlines() if "RUNKON_NOTIFY" in line]
    assert warned == [
        "runkon-flow: warning: RUNKON_NOTIFY='beep' is not a notification style; it is ignored and the "
        "style guessed from the terminal (use osc9, osc777, bell or off)"
    ]
    code, _, err = cli(capsys, "run", "good", "--dir", "wf", "--no-notify")
    assert code == 0 and "RUNKON_NOTIFY" not in err


def test_a_detached_run_runs_the_hooks_given_with_the_command(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = home / "detached.jsonl"
    option = hooks_file(home / "elsewhere" / "hooks.yaml", out)
    code, printed, err = cli(capsys, "run", "good", "--dir", "wf", "--detach", "--hooks", str(option))
    assert code == 0, err
    run_id = run_id_of(printed)
    assert "RUNKON_HOOKS" not in os.environ  # nothing leaks into this process
    wait_for(lambda: out.exists() and bool(out.read_text().strip()), "the detached run's hook", timeout=60)
    (event,) = events_in(out)
    assert (event["event"], event["run_id"]) == ("workflow_run.completed", run_id)
