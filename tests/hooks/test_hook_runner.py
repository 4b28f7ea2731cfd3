"""Hooks run for real runs: a shell command gets the event on stdin and in RUNKON_* variables, an
HTTP hook posts it (to a loopback server the test starts); a slow, hanging or failing hook is
reported and never holds up or fails the run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from runkon_flow.events import (
    EngineEventData,
    GateResolved,
    GateTimedOut,
    GateWaiting,
    RunCompleted,
    RunStarted,
    StepCompleted,
    StepOutput,
)
from runkon_flow.hooks import HookEvents, HookRunner, HooksConfig, HookSpec
from runkon_flow.hooks.events import MAX_ENV_VALUE_BYTES
from runkon_flow.persistence import RunStatus
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.workspace import Workspace


def env(run_id: str, event: object, ts: float) -> EngineEventData:
    return EngineEventData(timestamp=int(ts), ts=ts, run_id=run_id, event=event)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the translation


def test_events_a_run_and_its_gate_give_and_when() -> None:
    hooks = HookEvents(pending_too_long=60, stale_after=300)
    assert hooks.feed(env("R", RunStarted(workflow_name="ship"), 0)) == []
    assert hooks.feed(env("C", RunStarted(workflow_name="child", parent_run_id="R"), 1)) == []
    (waiting,) = hooks.feed(env("C", GateWaiting(gate_name="ok", step_id="S", prompt="Go?"), 2))
    assert (waiting.name, waiting.run_id, waiting.root_run_id, waiting.workflow, waiting.prompt) == (
        "gate.waiting",
        "C",
        "R",
        "child",
        "Go?",
    )
    assert hooks.tick(61) == []  # waited 59 s
    (late,) = hooks.tick(62.5)
    assert (late.name, late.gate, late.waited_secs, late.root_run_id) == (
        "gate.pending_too_long",
        "ok",
        60.5,
        "R",
    )
    assert hooks.tick(1000) == []  # once per gate; a run waiting at a gate is not stale
    (resolved,) = hooks.feed(
        env("C", GateResolved(gate_name="ok", step_id="S", approved=True, resolved_by="al"), 70)
    )
    assert (resolved.name, resolved.approved, resolved.by, resolved.waited_secs) == (
        "gate.resolved",
        True,
        "al",
        68,
    )
    hooks.feed(
        env("C", StepOutput(step_name="x", step_id="x", line="still busy"), 400)
    )  # a child's output is life
    assert hooks.tick(650) == []
    (stale,) = hooks.tick(701)
    assert (stale.name, stale.run_id, stale.waited_secs) == ("workflow_run.stale", "R", 301)
    assert hooks.tick(800) == []  # once per quiet spell
    (failed,) = hooks.feed(env("R", RunCompleted(succeeded=False, error="boom"), 900))
    assert (failed.name, failed.status, failed.error, failed.workflow) == (
        "workflow_run.failed",
        "failed",
        "boom",
        "ship",
    )
    assert hooks.runs == {} and hooks.gates == {}  # forgotten once ended
    # A gate's wait is said to the millisecond everywhere: `gate.resolved` said 7.009727478027344.
    hooks.feed(env("R", RunStarted(workflow_name="ship"), 1000.0))
    hooks.feed(env("R", GateWaiting(gate_name="ok", step_id="T", prompt="Go?"), 1000.1))
    (timed_out,) = hooks.feed(env("R", GateTimedOut(gate_name="ok", step_id="T"), 1007.1097274))
    assert (timed_out.name, timed_out.waited_secs) == ("gate.timed_out", 7.01)
    payload = failed.payload()
    assert payload["event"] == "workflow_run.failed" and payload["time"] == "1970-01-01T00:15:00.000Z"
    assert failed.env()["RUNKON_ERROR"] == "boom" and json.loads(failed.env()["RUNKON_EVENT_JSON"]) == payload


def test_a_failed_runs_error_is_why_it_failed_not_which_step() -> None:
    """`notify-send "$RUNKON_WORKFLOW failed: $RUNKON_ERROR"` said `workflow error: Step 'import-all'
    failed after 1 attempts`: the failed step's error says why, as the live view's last line does.
    A step retried to success is not the cause."""
    hooks = HookEvents(pending_too_long=60, stale_after=300)
    hooks.feed(env("R", RunStarted(workflow_name="ship"), 0))

    def step(name: str, error: str | None, ts: float) -> None:
        done = StepCompleted(step_name=name, step_key=name, step_id=name, node_path=name, succeeded=not error)
        hooks.feed(env("R", done.model_copy(update={"error": error}), ts))

    step("flaky", "timed out", 1)
    step("flaky", None, 2)  # its retry passed
    step("import-all", "foreach 'import-all': 8 of 40 items failed", 3)
    run_error = "workflow error: Step 'import-all' failed after 1 attempts"
    (failed,) = hooks.feed(env("R", RunCompleted(succeeded=False, error=run_error), 4))
    assert failed.error == "foreach 'import-all': 8 of 40 items failed"
    hooks.feed(env("Q", RunStarted(workflow_name="ship"), 5))
    (failed,) = hooks.feed(env("Q", RunCompleted(succeeded=False, error="lease lost\nby another"), 6))
    assert failed.error == "lease lost · by another"  # no failed step: the run's error, on one line
    hooks.feed(env("P", RunStarted(workflow_name="ship"), 7))
    hooks.feed(env("P", StepCompleted(step_name="a", step_id="a", succeeded=False, error="went on"), 8))
    (failed,) = hooks.feed(env("P", RunCompleted(succeeded=False, error="engine crashed"), 9))
    assert failed.error == "engine crashed"  # not the error of a step the run went on after


def test_a_child_runs_end_is_not_a_workflow_run_event() -> None:
    hooks = HookEvents()
    hooks.feed(env("R", RunStarted(workflow_name="fan"), 0))
    hooks.feed(env("C", RunStarted(workflow_name="item", parent_run_id="R"), 1))
    assert hooks.feed(env("C", RunCompleted(succeeded=True), 2)) == []
    (done,) = hooks.feed(env("R", RunCompleted(succeeded=True), 3))
    assert (done.name, done.run_id) == ("workflow_run.completed", "R")


# --------------------------------------------------------------------------- real runs


class Receiver:
    """A loopback HTTP server recording POSTed JSON bodies; answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        received: list[dict] = []
        self.received = received
        self.arrived = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"body": json.loads(body), "token": self.headers.get("X-Token")})
                self.send_response(status)
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: object) -> None:
                pass

        outer = self
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "good.wf").write_text('workflow good {\n  script a { run = "echo a" }\n}\n')
    (wf / "bad.wf").write_text('workflow bad {\n  script a { run = "echo broke >&2; exit 3" }\n}\n')
    return wf


def run(folder: Path, runner: HookRunner, name: str):  # type: ignore[no-untyped-def]
    ws = Workspace([folder], InMemoryStore(), sinks=[runner])
    run_id = ws.create_run(name, {})
    return run_id, ws.execute(run_id)


def test_a_shell_hook_gets_the_event_on_stdin_and_in_the_environment(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "hook.out"
    hook = HookSpec(
        events=["workflow_run.*"],
        run=f'cat > {out}.json; echo "$RUNKON_EVENT $RUNKON_WORKFLOW $RUNKON_STATUS $RUNKON_RUN_ID" > {out}',
    )
    runner = HookRunner(HooksConfig(hooks=[hook]), cwd=tmp_path)
    run_id, result = run(folder, runner, "bad")
    runner.close()
    assert result.status is RunStatus.FAILED
    assert out.read_text() == f"workflow_run.failed bad failed {run_id}\n"
    event = json.loads(Path(f"{out}.json").read_text())
    assert (event["event"], event["run_id"], event["workflow"], event["status"]) == (
        "workflow_run.failed",
        run_id,
        "bad",
        "failed",
    )
    assert event["error"] == "Script 'a' exited with code 3 · broke"  # why, not which step
    assert [(o.event, o.ok) for o in runner.outcomes] == [("workflow_run.failed", True)]


def test_a_failed_run_whose_failure_clusters_cannot_be_read_still_fires_its_hook(
    folder: Path, tmp_path: Path
) -> None:
    """`failures` is read from the store when the run has failed; a store that refuses then costs
    the event its `failures`, not the event (a hook paging someone must still page)."""
    out = tmp_path / "hook.out"
    asked: list[str] = []

    def unreadable(run_id: str) -> list[dict[str, object]]:
        asked.append(run_id)
        raise OSError("database is locked")

    hook = HookSpec(events=["workflow_run.*"], run=f"cat > {out}")
    runner = HookRunner(HooksConfig(hooks=[hook]), cwd=tmp_path, failures=unreadable)
    run_id, result = run(folder, runner, "bad")
    runner.close()
    assert result.status is RunStatus.FAILED and asked == [run_id]  # once, at the run's end
    event = json.loads(out.read_text())
    assert (event["event"], event["error"]) == (
        "workflow_run.failed",
        "Script 'a' exited with code 3 · broke",
    )
    assert "failures" not in event


def test_an_http_hook_posts_the_event_with_its_headers(folder: Path, receiver: Receiver) -> None:
    hook = HookSpec(events=["workflow_run.completed"], post=receiver.url, headers={"X-Token": "t0k"})
    runner = HookRunner(HooksConfig(hooks=[hook]))
    run_id, result = run(folder, runner, "good")
    runner.close()
    assert result.status is RunStatus.COMPLETED
    (got,) = receiver.received
    assert got["token"] == "t0k"
    assert (got["body"]["event"], got["body"]["run_id"], got["body"]["workflow"]) == (
        "workflow_run.completed",
        run_id,
        "good",
    )


def test_a_hook_for_another_workflow_or_event_does_not_run(folder: Path, receiver: Receiver) -> None:
    hooks = [
        HookSpec(events=["workflow_run.failed"], post=receiver.url),
        HookSpec(events=["workflow_run.*"], post=receiver.url, workflows=["release-*"]),
    ]
    runner = HookRunner(HooksConfig(hooks=hooks))
    run(folder, runner, "good")
    runner.close()
    assert receiver.received == [] and list(runner.outcomes) == []


def test_a_hook_that_hangs_never_holds_up_the_run(folder: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    done = tmp_path / "done"
    hook = HookSpec(
        events=["workflow_run.completed"],
        run=f"while [ ! -e {release} ]; do sleep 0.02; done; touch {done}",
        timeout=60,
    )
    runner = HookRunner(HooksConfig(hooks=[hook]), cwd=tmp_path)
    _, result = run(folder, runner, "good")
    assert result.status is RunStatus.COMPLETED  # returned while the hook still waits
    assert not done.exists()
    release.touch()
    runner.close()  # waits for the hook already due
    assert done.exists()
    assert [o.ok for o in runner.outcomes] == [True]


def test_slow_and_failing_hooks_are_stopped_reported_and_the_run_unaffected(
    folder: Path, tmp_path: Path
) -> None:
    bad = Receiver(status=500)
    problems: list[str] = []
    hooks = [
        HookSpec(name="slow", events=["workflow_run.completed"], run="sleep 30", timeout=0.3),
        HookSpec(name="broken", events=["workflow_run.completed"], run="echo nope >&2; exit 4"),
        HookSpec(name="server", events=["workflow_run.completed"], post=bad.url),
        HookSpec(name="nobody", events=["workflow_run.completed"], post="http://127.0.0.1:9/none", timeout=2),
    ]
    try:
        runner = HookRunner(HooksConfig(hooks=hooks), cwd=tmp_path, on_problem=problems.append)
        run_id, result = run(folder, runner, "good")
        assert result.status is RunStatus.COMPLETED
        runner.close()
    finally:
        bad.close()
    outcomes = {o.hook: o for o in runner.outcomes}
    assert not any(o.ok for o in outcomes.values())
    assert outcomes["slow"].detail == "timed out after 0.3s (stopped)"
    assert outcomes["broken"].detail == "exit 4: nope"
    assert outcomes["server"].detail == "HTTP 500 Internal Server Error"
    assert outcomes["nobody"].detail.startswith("cannot reach http://127.0.0.1:9/none")
    assert sorted(problems) == sorted(
        f"hook '{o.hook}' on workflow_run.completed (run {run_id}) failed: {o.detail}"
        for o in outcomes.values()
    )


def test_a_shell_hook_starts_with_a_huge_or_nul_value_cut_and_shown_in_its_environment(
    tmp_path: Path,
) -> None:
    """Linux starts no process with an environment variable over 128 KiB, nor with a NUL in one: a
    run whose error was 300,000 bytes had its hook fail to start ('Argument list too long:
    /bin/sh'), one with a NUL in it ('contains a NUL byte'). Each value is cut (saying so) and a
    NUL shown as ␀; stdin has the whole event."""
    out = tmp_path / "hook"
    hook = HookSpec(
        events=["workflow_run.failed"],
        run=(
            f'cat > {out}.$RUNKON_RUN_ID.stdin; printf %s "$RUNKON_ERROR" > {out}.$RUNKON_RUN_ID.error; '
            f'printf %s "$RUNKON_EVENT_JSON" > {out}.$RUNKON_RUN_ID.json'
        ),
    )
    runner = HookRunner(HooksConfig(hooks=[hook]), cwd=tmp_path)
    error = "é" * 150_000
    for run_id, text in (("R", error), ("Q", "a\0b")):
        runner.emit(env(run_id, RunStarted(workflow_name="ship"), 1))
        runner.emit(env(run_id, RunCompleted(succeeded=False, error=text), 2))
    runner.close()
    assert sorted((o.run_id, o.ok, o.detail) for o in runner.outcomes) == [("Q", True, ""), ("R", True, "")]
    assert json.loads(Path(f"{out}.R.stdin").read_text())["error"] == error  # stdin: the whole event
    seen = Path(f"{out}.R.error").read_text()
    assert len(seen.encode()) <= MAX_ENV_VALUE_BYTES
    assert seen.startswith("é" * 1000)
    assert seen.endswith(" … [cut by runkon: 300,000 bytes; the whole event is on stdin]")
    as_json = json.loads(Path(f"{out}.R.json").read_text())  # still JSON, its long string cut
    assert (as_json["event"], as_json["workflow"], as_json["run_id"]) == ("workflow_run.failed", "ship", "R")
    assert as_json["error"].startswith("é" * 100) and as_json["error"].endswith("on stdin]")
    assert Path(f"{out}.Q.error").read_text() == "a\u2400b"
    assert json.loads(Path(f"{out}.Q.stdin").read_text())["error"] == "a\0b"


def test_hook_environment_values_show_a_nul_and_keep_short_values_whole() -> None:
    from runkon_flow.hooks.events import HookEvent

    event = HookEvent("gate.waiting", 0.0, "R", "R", "ship", prompt="a\0b", note="n" * MAX_ENV_VALUE_BYTES)
    values = event.env()
    assert values["RUNKON_PROMPT"] == "a\u2400b"
    assert values["RUNKON_NOTE"] == "n" * MAX_ENV_VALUE_BYTES  # exactly the limit: whole
    assert "\0" not in "".join(values.values())
    short = HookEvent("gate.waiting", 0.0, "R", "R", "ship", prompt="a\0b").env()["RUNKON_EVENT_JSON"]
    assert json.loads(short)["prompt"] == "a\0b"  # JSON escapes it: kept as it is
