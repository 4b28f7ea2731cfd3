"""Workspace: what the CLI and the dashboard rely on."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runkon_flow.errors import AlreadyOwned, SourceLocation, ValidationErrors, WorkflowError, WorkflowNotFound
from runkon_flow.events import CollectingSink
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import NewRun, RetryRequest, RunStatus
from runkon_flow.runtime.types import WorkflowExecConfig, WorkflowResult
from runkon_flow.workspace import InputsError, ResumeSource, UnknownWorkflow, Workspace


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNKON_SAMPLE_SPEED", "0")


def write(root: Path, rel: str, text: str, mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def echo_agent(root: Path, name: str, extra: str = "") -> None:
    write(root, f"agents/{name}.md", f"---\nruntime: echo\n{extra}---\n{name} for {{{{who}}}}\n")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "wf"
    echo_agent(root, "hello", "markers: [greeted]\n")
    write(
        root,
        "greet.wf",
        'workflow greet {\n  inputs {\n    who default = "world"\n    loud boolean\n  }\n  call hello\n}\n',
    )
    return root


def ws_for(root: Path, store: InMemoryStore | None = None, **kwargs: object) -> Workspace:
    return Workspace([root], store or InMemoryStore(), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- loading


def test_loads_workflows_agents_and_reports_broken_files(home: Path) -> None:
    write(home, "broken.wf", "workflow broken {\n  call\n}\n")
    write(home, "agents/bad.md", "---\nruntime: robot\n---\nx\n")
    ws = ws_for(home)
    assert list(ws.workflows) == ["greet"]
    [error] = ws.load_errors
    assert error.file.endswith("broken.wf") and error.line is not None
    [config] = ws.config_errors
    assert config.file.endswith("bad.md") and config.line == 2 and "unknown runtime 'robot'" in config.message
    assert ws.agents.get("hello") is not None


def test_reload_picks_up_edits_and_keeps_the_last_good_definition(home: Path) -> None:
    ws = ws_for(home)
    engine = ws.engine
    ws.reload()
    assert ws.engine is engine  # nothing changed: nothing rebuilt
    write(home, "other.wf", "workflow other { call hello }\n")
    ws.reload()
    assert sorted(ws.workflows) == ["greet", "other"]
    write(home, "greet.wf", "workflow greet { call }\n")
    os.utime(home / "greet.wf", (time.time() + 5, time.time() + 5))
    ws.reload()
    assert "greet" in ws.workflows  # the last good definition stays usable
    assert [Path(e.file).name for e in ws.load_errors] == ["greet.wf"]


def test_no_run_starts_on_a_last_good_definition_of_a_file_broken_now(home: Path) -> None:
    """A runner process (or `runkon-flow run`) loads the files as they are: a run the dashboard
    starts after an edit broke a called workflow's file must be refused here with that file's
    position, not fail later item by item."""
    write(home, "fan.wf", "workflow fan {\n  call workflow greet\n}\n")
    ws = ws_for(home)
    assert ws.validate("fan") == []
    write(home, "greet.wf", "workflow greet {\n  call\n}\n")
    os.utime(home / "greet.wf", (time.time() + 5, time.time() + 5))
    ws.reload()
    assert "greet" in ws.workflows  # the list and a resume still have its last good definition
    for name in ("fan", "greet"):
        problems = ws.validate(name)
        assert problems, name
        assert any("greet.wf:3:1" in p.render() for p in problems), [p.render() for p in problems]
        with pytest.raises(ValidationErrors):
            ws.create_run(name, {})
    assert ws.store.list_runs() == []  # nothing was written
    write(home, "greet.wf", 'workflow greet {\n  inputs {\n    who default = "world"\n  }\n  call hello\n}\n')
    os.utime(home / "greet.wf", (time.time() + 10, time.time() + 10))
    ws.reload()
    assert ws.validate("fan") == []


def test_find_by_name_or_path(home: Path, tmp_path: Path) -> None:
    ws = ws_for(home)
    assert ws.find("greet").name == "greet"
    assert ws.find(str(home / "greet.wf")).name == "greet"
    elsewhere = tmp_path / "elsewhere"
    echo_agent(elsewhere, "solo")
    write(elsewhere, "solo.wf", "workflow solo { call solo }\n")
    assert ws.find(str(elsewhere / "solo.wf")).name == "solo"
    assert elsewhere.absolute() in ws.dirs
    assert ws.validate("solo") == []  # its agents were found too
    with pytest.raises(UnknownWorkflow) as info:
        ws.find("gret")
    assert str(info.value) == "workflow not found: gret (did you mean `greet`? available: greet, solo)"
    with pytest.raises(WorkflowNotFound):
        ws.find(str(tmp_path / "missing.wf"))


def test_find_a_broken_workflow_says_why(home: Path) -> None:
    write(home, "broken.wf", "workflow broken {\n  call\n}\n")
    ws = ws_for(home)
    with pytest.raises(WorkflowError, match=r"workflow 'broken' cannot be loaded: .*broken\.wf:\d+"):
        ws.find("broken")


# --------------------------------------------------------------------------- validation


def test_validate_explains_missing_and_broken_agents_at_the_call(home: Path) -> None:
    write(home, "agents/broken.md", "---\nfail: sometimes\nruntime: echo\n---\n")
    write(home, "w.wf", "workflow w {\n  call ghost\n  call broken\n}\n")
    ws = ws_for(home)
    problems = ws.validate("w")
    assert [p.message for p in problems] == [
        "call 'ghost': no registered ActionExecutor for 'ghost'",
        "call 'broken': no registered ActionExecutor for 'broken'",
    ]
    assert (
        problems[0].hint
        == f"no agent file {home.absolute() / 'agents' / 'ghost.md'}; the agents defined: hello"
    )
    assert problems[0].location.line == 2
    assert problems[1].hint is not None and "broken.md:2: `fail` must be" in problems[1].hint
    assert problems[1].location.file == str(home.absolute() / "w.wf")


def test_a_problem_two_sub_workflows_down_is_placed_in_its_own_file_and_named_by_its_caller(
    home: Path,
) -> None:
    write(home, "grand.wf", 'workflow grand {\n  script s { run = "true" }\n  call phantom\n}\n')
    write(home, "child.wf", "workflow child {\n  call workflow grand\n}\n")
    write(home, "w.wf", 'workflow w {\n  script s { run = "true" }\n  call workflow child\n}\n')
    [problem] = Workspace([home], InMemoryStore()).validate("w")
    assert problem.location == SourceLocation(str(home / "grand.wf"), 3, 3)
    assert problem.message == (
        "in sub-workflow 'grand' of 'child' (called at line 2): "
        "call 'phantom': no registered ActionExecutor for 'phantom'"
    )
    assert problem.node_path == "body.1"  # w's `call workflow child`: the dashboard marks it


def test_a_foreach_childs_missing_agent_is_found_before_the_run_in_the_childs_file(home: Path) -> None:
    """The engine checks `call workflow` children before a run, and foreach children only as each
    item starts (engine.md §13): `validate --ready` said ok, the run went on past its gate, and
    every item failed with `workflow 'child' failed validation`. Now the run is refused first."""
    write(home, "items.yaml", "- a\n- b\n")
    write(home, "child.wf", "workflow child {\n  call hello\n  call phantom\n}\n")
    write(
        home,
        "w.wf",
        "workflow w {\n  call hello\n  foreach each {\n    over = static\n"
        '    scope = { file = "items.yaml" }\n    max_parallel = 2\n    workflow = child\n  }\n}\n',
    )
    ws = Workspace([home], InMemoryStore())
    [problem] = ws.validate("w")
    assert problem.message == (  # where the foreach is, as a `call workflow`'s `called at line N`
        "in sub-workflow 'child' of 'w' (run by foreach at line 3): "
        "call 'phantom': no registered ActionExecutor for 'phantom'"
    )
    assert problem.location == SourceLocation(str(home / "child.wf"), 3, 3)
    assert problem.node_path == "body.1"  # w's foreach: the dashboard marks it
    with pytest.raises(ValidationErrors):
        ws.create_run("w", {})


CHILD_CALLED_AT_10 = "in sub-workflow 'child' of 'w' (called at line 10)"


def test_validate_places_each_problem_on_its_own_node(home: Path) -> None:
    write(home, "child.wf", "workflow child {\n  call phantom\n}\n")
    write(
        home,
        "w.wf",
        """workflow w {
  call ghost
  parallel {
    call hello
    call ghost
  }
  if ghost.done {
    call hello { with = ["missing-snippet"] }
  }
  call workflow child
}
""",
    )
    problems = Workspace([home], InMemoryStore()).validate("w")
    placed = sorted((p.node_path, p.location.line, p.message) for p in problems)
    assert placed == [
        ("body.0", 2, "call 'ghost': no registered ActionExecutor for 'ghost'"),
        ("body.1.calls.1", 5, "parallel call 'ghost': no registered ActionExecutor for 'ghost'"),
        ("body.2.body.0", 8, placed[2][2]),
        ("body.3", 2, f"{CHILD_CALLED_AT_10}: call 'phantom': no registered ActionExecutor for 'phantom'"),
    ]
    # In the file to edit, at the line that needs it; still the parent's `call workflow` node.
    assert [p.location.file for p in problems if p.node_path == "body.3"] == [str(home / "child.wf")]
    assert placed[2][2].startswith("prompt snippet 'missing-snippet' not found")
    ghost = f"no agent file {home.absolute() / 'agents' / 'ghost.md'}; the agents defined: hello"
    assert [p.hint for p in problems if "'ghost'" in p.message] == [ghost, ghost]


def test_validate_checks_schemas_snippets_on_fail_agents_providers_and_scripts(home: Path) -> None:
    write(home, "scripts/not_exec.sh", "#!/bin/sh\necho hi\n", mode=0o644)
    write(
        home,
        "w.wf",
        """workflow w {
  call hello { output = "nope" with = ["missing-snippet"] on_fail = ghost }
  script s { run = "scripts/not_exec.sh" }
  script t { run = "make lint" }
  foreach f { over = tickets max_parallel = 1 workflow = greet }
}
""",
    )
    problems = {p.message: p for p in ws_for(home).validate("w")}
    assert any(m.startswith("output schema 'nope': schema 'nope' not found") for m in problems)
    assert any(m.startswith("prompt snippet 'missing-snippet' not found") for m in problems)
    assert "on_fail agent 'ghost' not found" in problems
    script = next(p for m, p in problems.items() if m.startswith("Script step 's'"))
    assert "is not executable (mode 0644)" in script.message and script.hint is not None
    assert script.location.line == 3
    assert not any(m.startswith("Script step 't'") for m in problems)  # a command line, not a path
    assert any("unknown provider 'tickets'" in m for m in problems)


def test_validate_says_an_unknown_provider_or_sub_workflow_once_with_the_closest_name(home: Path) -> None:
    """The language rules and the engine's host check each reported a misspelt `over` and a
    misspelt `call workflow` (the dashboard listed both, in two wordings); now once, at the node,
    with what was probably meant."""
    write(
        home,
        "w.wf",
        "workflow w {\n  call workflow gret\n"
        "  foreach f { over = statc max_parallel = 1 workflow = greet }\n}\n",
    )
    problems = [(p.location.line, p.text()) for p in ws_for(home).validate("w")]
    assert problems == [
        (2, "Sub-workflow 'gret' could not be loaded: workflow not found: gret (did you mean `greet`?)"),
        (
            3,
            "foreach 'f': unknown provider 'statc' — no ItemProvider registered for this name (hint: did you "
            "mean `static`? `over` is one of: command, files, lines, static)",
        ),
    ]


def test_validate_names_the_closest_gate_type_of_a_misspelt_one(home: Path) -> None:
    write(home, "w.wf", 'workflow w {\n  gate human_aproval { prompt = "ok?" }\n}\n')
    [problem] = ws_for(home).validate("w")
    assert problem.message == "gate 'human_aproval': no registered GateResolver for type 'human_aproval'"
    assert problem.hint == (
        "did you mean `human_approval`? the gate types are: human_approval, human_review, pr_approval, "
        "pr_checks, quality_gate"
    )


def test_validate_reports_sub_workflow_cycles(home: Path) -> None:
    write(home, "a.wf", "workflow a { call workflow b }\n")
    write(home, "b.wf", "workflow b { call workflow a }\n")
    cycle = [p for p in ws_for(home).validate("a") if "Circular workflow reference: a -> b -> a" in p.message]
    assert [(p.node_path, p.location.line, p.location.column) for p in cycle] == [("body.0", 1, 14)]


# --------------------------------------------------------------------------- inputs


def test_prepare_inputs_fills_defaults_and_normalises_booleans(home: Path) -> None:
    ws = ws_for(home)
    assert ws.prepare_inputs("greet", {}) == {"who": "world", "loud": "false"}
    assert ws.prepare_inputs("greet", {"who": "Ann", "loud": "YES"}) == {"who": "Ann", "loud": "true"}


def test_prepare_inputs_reports_every_problem(home: Path) -> None:
    write(home, "need.wf", "workflow need {\n  inputs {\n    ticket\n    dry boolean\n  }\n  call hello\n}\n")
    with pytest.raises(InputsError) as info:
        ws_for(home).prepare_inputs("need", {"dry": "maybe", "tickt": "1"})
    assert info.value.problems == [
        "Unknown input 'tickt' for workflow 'need' (it declares: ticket, dry); did you mean `ticket`?",
        "Missing required input: 'ticket'.",
        "Input 'dry' is boolean: expected true or false, got 'maybe'.",
    ]


# --------------------------------------------------------------------------- runs


def test_create_then_execute_a_run(home: Path) -> None:
    store = InMemoryStore()
    sink, run_sink = CollectingSink(), CollectingSink()
    ws = ws_for(home, store, sinks=[sink])
    run_id = ws.create_run("greet", {"who": "Ann"})
    row = store.get_run(run_id)
    assert (
        row is not None and row.status is RunStatus.PENDING and row.inputs == {"who": "Ann", "loud": "false"}
    )
    result = ws.execute(run_id, sinks=[run_sink])
    assert result.status is RunStatus.COMPLETED
    assert store.get_steps(run_id)[0].result_text == "hello for Ann"
    assert "RunCompleted" in sink.types() and sink.types() == run_sink.types()
    with pytest.raises(WorkflowError, match="is completed, not pending"):
        ws.execute(run_id)


def test_create_run_refuses_an_invalid_workflow_and_writes_nothing(home: Path) -> None:
    write(home, "w.wf", "workflow w { call ghost }\n")
    store = InMemoryStore()
    with pytest.raises(ValidationErrors, match="no registered ActionExecutor for 'ghost'"):
        ws_for(home, store).create_run("w", {})
    assert store.list_runs() == []


def test_scripts_run_in_the_workflow_directory_by_default(home: Path, tmp_path: Path) -> None:
    write(home, "pwd.wf", 'workflow pwd { script where { run = "pwd" } }\n')
    ws = ws_for(home)
    result = ws.execute(ws.create_run("pwd", {}))
    assert ws.store.get_steps(result.workflow_run_id)[0].context_out == f"{home.absolute()}\n"
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    ws2 = ws_for(home, working_dir=elsewhere)
    result = ws2.execute(ws2.create_run("pwd", {}))
    assert ws2.store.get_steps(result.workflow_run_id)[0].context_out == f"{elsewhere}\n"


def test_a_run_keeps_the_definition_it_was_created_with(home: Path) -> None:
    ws = ws_for(home)
    run_id = ws.create_run("greet", {})
    echo_agent(home, "bye")
    write(home, "greet.wf", "workflow greet { call bye }\n")
    os.utime(home / "greet.wf", (time.time() + 5, time.time() + 5))
    ws.reload()
    ws.execute(run_id)
    assert [s.step_name for s in ws.store.get_steps(run_id)] == ["hello"]


def test_resume_continues_a_failed_run_without_redoing_completed_steps(home: Path) -> None:
    echo_agent(home, "flaky", "fail: first 1 calls\n")
    write(home, "w.wf", "workflow w {\n  call hello\n  call flaky\n}\n")
    ws = ws_for(home)
    run_id = ws.create_run("w", {})
    first = ws.execute(run_id)
    assert first.status is RunStatus.FAILED
    with pytest.raises(WorkflowError, match="is failed, not pending; resume it instead"):
        ws.execute(run_id)
    second = ws.resume(run_id)
    assert second.status is RunStatus.COMPLETED
    assert [(s.step_name, str(s.status)) for s in ws.store.get_steps(run_id)] == [
        ("hello", "completed"),
        ("flaky", "failed"),
        ("flaky", "completed"),
    ]
    with pytest.raises(WorkflowError, match="already completed"):
        ws.resume(run_id)


def test_resume_plan_says_which_definition_a_resume_runs_and_why(home: Path) -> None:
    """One rule, `resume_plan`, for what `resume` runs and what a client says it runs: the file as
    it is now; the stored one for a rerun, a stored retry cut short, a gone file — and a file that
    does not parse now, even here where its last good definition is held: a foreground `resume`
    and a background runner never saw that one (before, this process resumed with it and its
    runner with the stored one)."""
    ws = ws_for(home)
    run_id = ws.create_run("greet", {})
    ws.execute(run_id)
    plan = ws.resume_plan(run_id)
    assert (plan.source, plan.definition) == (ResumeSource.FILE, ws.workflows["greet"])
    write(home, "greet.wf", "workflow greet {\n  call hello\n  call hello\n}\n")
    os.utime(home / "greet.wf", (time.time() + 5, time.time() + 5))
    ws.reload()
    plan = ws.resume_plan(run_id)
    assert plan.source is ResumeSource.FILE and len(plan.definition.body) == 2
    write(home, "greet.wf", "workflow greet {\n  call\n}\n")
    os.utime(home / "greet.wf", (time.time() + 10, time.time() + 10))
    ws.reload()
    assert len(ws.workflows["greet"].body) == 2  # the last good definition, still listed …
    plan = ws.resume_plan(run_id)
    assert plan.source is ResumeSource.STORED and len(plan.definition.body) == 1  # … but not resumed

    write(home, "greet.wf", "workflow greet {\n  call hello\n  call hello\n  call hello\n}\n")
    os.utime(home / "greet.wf", (time.time() + 15, time.time() + 15))
    ws.reload()
    ws.store.set_retry_request(run_id, RetryRequest("2026-01-01T00:00:00Z", {"s": ("a",)}, "stored"))
    assert ws.resume_plan(run_id).source is ResumeSource.FILE  # the retry is over: the run finished
    ws.store.update_run_status(run_id, RunStatus.RUNNING, None, None)  # its engine died mid-retry
    plan = ws.resume_plan(run_id)
    assert plan.source is ResumeSource.RETRY and len(plan.definition.body) == 1
    ws.store.update_run_status(run_id, RunStatus.FAILED, None, None)

    ws.store.set_rerun_link(run_id, "01HZZSOMEOLDERRUN000000000", "hello")
    plan = ws.resume_plan(run_id)
    assert plan.source is ResumeSource.RERUN and len(plan.definition.body) == 1
    (home / "greet.wf").unlink()
    ws.reload()
    other = ws.store.create_run(NewRun("greet", definition_snapshot=json.dumps(plan.definition.to_json())))
    assert ws.resume_plan(other.id).source is ResumeSource.STORED  # the file is gone


def test_resume_of_a_run_abandoned_while_cancelling_runs_it_instead_of_cancelling_it_again(
    home: Path,
) -> None:
    echo_agent(home, "flaky", "fail: first 1 calls\n")
    write(home, "w.wf", "workflow w {\n  call hello\n  call flaky\n}\n")
    ws = ws_for(home)
    run_id = ws.create_run("w", {})
    assert ws.execute(run_id).status is RunStatus.FAILED
    # Another process asked for a cancel, and its engine died before it could act on it.
    ws.store.update_run_status(run_id, RunStatus.CANCELLING, None, None)
    result = ws.resume(run_id)
    assert result.status is RunStatus.COMPLETED
    assert [(s.step_name, str(s.status)) for s in ws.store.get_steps(run_id)][-1] == ("flaky", "completed")


def test_resume_leaves_a_cancelling_run_to_the_engine_still_holding_it(home: Path) -> None:
    ws = ws_for(home)
    run_id = ws.create_run("greet", {})
    ws.store.update_run_status(run_id, RunStatus.CANCELLING, None, None)
    assert ws.store.acquire_lease(run_id, "live-engine", 60) is not None
    with pytest.raises(AlreadyOwned):
        ws.resume(run_id)
    row = ws.store.get_run(run_id)
    assert (row.status, row.owner_token) == (RunStatus.CANCELLING, "live-engine")


class _OvertakenBy:
    """The store of a resume (say the CLI's) that another resume (the dashboard's) overtakes: the
    other one takes the run and finishes it after this one looked at the run, before this one
    takes its lease."""

    def __init__(self, inner: InMemoryStore, other: Callable[[], object]) -> None:
        self.inner = inner
        self.other: Callable[[], object] | None = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def acquire_lease(self, run_id: str, token: str, ttl_seconds: float) -> int | None:
        if self.overtaken_at(token):
            other, self.other = self.other, None
            if other is not None:
                other()
        return self.inner.acquire_lease(run_id, token, ttl_seconds)

    def overtaken_at(self, token: str) -> bool:
        """Whether the other one goes first when this lease is taken (the first taken: yes)."""
        return True


def test_of_two_resumes_at_once_the_slower_one_does_not_run_the_finished_run_again(home: Path) -> None:
    write(
        home,
        "w.wf",
        'workflow w {\n  call hello\n  script check { run = "test -f fixed" }\n'
        '  always {\n    script tidy { run = "echo tidied >> tidy.log" }\n  }\n}\n',
    )
    store = InMemoryStore()
    run_id = ws_for(home, store).create_run("w", {})
    assert ws_for(home, store).execute(run_id).status is RunStatus.FAILED
    (home / "fixed").touch()
    first = ws_for(home, store)
    second = ws_for(home, _OvertakenBy(store, lambda: first.resume(run_id)))  # type: ignore[arg-type]
    with pytest.raises(AlreadyOwned):
        second.resume(run_id)
    assert (home / "tidy.log").read_text() == "tidied\n" * 2  # the first run's, the first resume's
    row = store.get_run(run_id)
    assert (row.status, row.owner_token) == (RunStatus.COMPLETED, None)
    with pytest.raises(WorkflowError, match="already completed"):  # what it says when given again
        second.resume(run_id)


class _RetriedByAnotherFirst(_OvertakenBy):
    """The store of a retry that another retry overtakes: the other one writes its own request and
    runs it after this one wrote its request, before this one's engine takes the run."""

    def overtaken_at(self, token: str) -> bool:
        return not token.startswith("retry-")  # the engine's, not the request's borrowed lease


def test_of_two_retries_at_once_neither_runs_the_items_the_other_chose(home: Path) -> None:
    write(
        home,
        "fan.wf",
        'workflow fan {\n  foreach each {\n    over = static\n    scope = { items = "a,b,c" }\n'
        "    max_parallel = 1\n    workflow = item\n  }\n}\n",
    )
    write(
        home,
        "item.wf",
        'workflow item {\n  script work { run = "echo {{item.id}} >> ran.log; test -f ok-{{item.id}}" }\n}\n',
    )
    (home / "ok-a").touch()
    store = InMemoryStore()
    run_id = ws_for(home, store).create_run("fan", {})
    assert ws_for(home, store).execute(run_id).status is RunStatus.FAILED
    [step] = [s.id for s in store.get_steps(run_id) if s.role == "foreach"]
    (home / "ok-b").touch()
    (home / "ok-c").touch()
    other = ws_for(home, store)
    mine = ws_for(home, _RetriedByAnotherFirst(store, lambda: other.retry(run_id, {step: ["c"]})))  # type: ignore[arg-type]
    with pytest.raises(AlreadyOwned):
        mine.retry(run_id, {step: ["b"]})
    assert sorted((home / "ran.log").read_text().split()) == ["a", "b", "c", "c"]  # c retried once


def _start(ws: Workspace, run_id: str) -> tuple[threading.Thread, list[WorkflowResult]]:
    results: list[WorkflowResult] = []
    worker = threading.Thread(target=lambda: results.append(ws.execute(run_id)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not any(s.step_name == "slow" for s in ws.store.get_steps(run_id)):
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.01)
    return worker, results


@pytest.fixture
def slow_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNKON_SAMPLE_SPEED", "1")
    echo_agent(home, "slow", "delay: 30\n")
    write(home, "slow.wf", "workflow slow {\n  call slow\n  call hello\n}\n")
    return home


def test_cancel_an_active_run_from_another_thread(slow_home: Path) -> None:
    ws = ws_for(slow_home)
    run_id = ws.create_run("slow", {})
    worker, results = _start(ws, run_id)
    assert ws.active_runs() == [run_id]
    ws.cancel(run_id, "changed my mind")
    worker.join(10)
    assert not worker.is_alive()
    assert results[0].status is RunStatus.CANCELLED
    assert ws.active_runs() == []
    assert "hello" not in [s.step_name for s in ws.store.get_steps(run_id)]


def test_cancel_from_another_workspace_on_the_same_store(slow_home: Path) -> None:
    store = InMemoryStore()
    config = WorkflowExecConfig(cancel_poll_interval=0.05)
    runner = ws_for(slow_home, store, exec_config=config)
    run_id = runner.create_run("slow", {})
    worker, results = _start(runner, run_id)
    ws_for(slow_home, store).cancel(run_id)
    worker.join(10)
    assert not worker.is_alive()
    assert results[0].status is RunStatus.CANCELLED


def test_cancel_of_a_pending_run_a_runner_has_just_taken_is_left_to_that_runner(home: Path) -> None:
    ws = ws_for(home)
    run_id = ws.create_run("greet", {})
    assert ws.store.acquire_lease(run_id, "runner", 60) is not None  # taken, not marked running yet
    ws.cancel(run_id, "not now")
    row = ws.store.get_run(run_id)
    assert (row.status, row.owner_token) == (RunStatus.CANCELLING, "runner")  # the runner stops it
    assert "not now" in (row.error or "")


def test_cancel_a_pending_run_and_finished_runs(home: Path) -> None:
    ws = ws_for(home)
    pending = ws.create_run("greet", {})
    ws.cancel(pending)
    row = ws.store.get_run(pending)
    assert row is not None and row.status is RunStatus.CANCELLED
    done = ws.create_run("greet", {})
    ws.execute(done)
    with pytest.raises(WorkflowError, match="already completed"):
        ws.cancel(done)
    with pytest.raises(WorkflowError, match="no workflow run 'nope'"):
        ws.cancel("nope")
