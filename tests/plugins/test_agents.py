"""Agent files (markdown + front matter) and the executors that run them."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from runkon_flow.cancellation import CancellationReason, CancellationToken, EngineCancelled
from runkon_flow.errors import WorkflowError
from runkon_flow.plugins.agents import (
    AgentExecutor,
    build_action_registry,
    load_agents,
    parse_seconds,
)
from runkon_flow.plugins.context import LocalRunContext
from runkon_flow.plugins.protocols import (
    ActionExecutor,
    ActionParams,
    ClaudeActionParams,
    Extensions,
    FieldDef,
    OutputSchema,
    StepInfo,
)
from runkon_flow.plugins.script_env import DefaultScriptEnvProvider

FAST_ENV = {**os.environ, "RUNKON_SAMPLE_SPEED": "0"}


def agent(
    root: Path, name: str, front: str, body: str = "Prompt for {{who}}.", folder: str = "agents"
) -> Path:
    path = root / folder / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{front}---\n{body}\n" if front is not None else body)
    return path


def executor(root: Path, label: str, **kwargs: object) -> AgentExecutor:
    catalog = load_agents([root])
    assert catalog.errors == [], [p.render() for p in catalog.errors]
    registry = build_action_registry(catalog, base_env=kwargs.pop("base_env", FAST_ENV), **kwargs)  # type: ignore[arg-type]
    found = registry.resolve(label)
    assert isinstance(found, AgentExecutor)
    return found


def run(
    ex: ActionExecutor,
    root: Path,
    inputs: dict[str, str] | None = None,
    *,
    run_id: str = "run-1",
    step_id: str = "step-1",
    lines: list[tuple[str, str]] | None = None,
    token: CancellationToken | None = None,
    **params: object,
):  # type: ignore[no-untyped-def]
    info = StepInfo(
        step_id,
        cancellation=token,
        emit_output=(lambda line, stream: lines.append((line, stream))) if lines is not None else None,
        run_id=run_id,
    )
    return ex.execute(
        LocalRunContext(root, run_id, "wf"), info, ActionParams(ex.name(), inputs or {}, **params)
    )  # type: ignore[arg-type]


# --------------------------------------------------------------------------- loading


def test_catalog_finds_agents_by_name_and_by_their_relative_path(tmp_path: Path) -> None:
    agent(tmp_path, "review", "runtime: echo\ndescription: Reviews things\n")
    catalog = load_agents([tmp_path])
    assert catalog.errors == []
    assert catalog.labels() == ["agents/review.md", "review"]
    review = catalog.get("review")
    assert review is not None and review.description == "Reviews things" and review.runtime == "echo"
    assert catalog.get("agents/review.md") is review
    assert review.prompt == "Prompt for {{who}}."


def test_a_later_directory_wins_a_name_clash(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    agent(first, "a", "runtime: echo\ndescription: first\n")
    agent(second, "a", "runtime: echo\ndescription: second\n")
    catalog = load_agents([first, second])
    assert catalog.get("a").description == "second"  # type: ignore[union-attr]


def test_conductor_layout_agents_beside_the_workflows_folder(tmp_path: Path) -> None:
    workflows = tmp_path / ".conductor" / "workflows"
    workflows.mkdir(parents=True)
    agent(tmp_path / ".conductor", "plan", "runtime: echo\n")
    assert load_agents([workflows]).get("plan") is not None


def test_quoted_path_agents_resolve_relative_to_the_workflow_dir(tmp_path: Path) -> None:
    agent(tmp_path, "plan", "runtime: echo\n", folder=".claude/agents")
    catalog = load_agents(
        [tmp_path],
        path_refs=[
            (".claude/agents/plan.md", tmp_path),
            ("../outside.md", tmp_path),
            ("missing/x.md", tmp_path),
        ],
    )
    assert catalog.get(".claude/agents/plan.md") is not None
    assert "stay inside" in catalog.why_missing("../outside.md")
    assert catalog.why_missing("missing/x.md") == f"agent file not found: {tmp_path / 'missing/x.md'}"
    assert [p.message for p in catalog.errors] == [
        "agent path '../outside.md' must be relative to the workflow directory and stay inside it"
    ]


def test_path_agents_cannot_escape_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    agent(outside, "evil", "runtime: echo\n")
    wf_dir = tmp_path / "wf"
    wf_dir.mkdir()
    (wf_dir / "link").symlink_to(outside / "agents")
    catalog = load_agents([wf_dir], path_refs=[("link/evil.md", wf_dir)])
    assert catalog.get("link/evil.md") is None
    assert "outside the workflow directory" in catalog.why_missing("link/evil.md")


@pytest.mark.parametrize(
    ("front", "line", "message"),
    [
        ("runtime: echo\nmarkers: [a\n", 3, "invalid YAML"),
        ("description: x\nruntime: robot\n", 3, "unknown runtime 'robot' (expected one of: command, echo)"),
        ("description: x\n", 2, "missing `command`"),
        ("runtime: echo\nname: other\n", 3, "front matter name 'other' does not match the file name 'a.md'"),
        ("runtime: echo\nfail: sometimes\n", 3, "`fail` must be true, false, a count"),
        ("runtime: echo\ntimeout: soon\n", 3, "`timeout` must be a positive number"),
        ("runtime: echo\ndelay: 1..0\n", 3, "`delay` must be seconds"),
        ('command: "sh -c \'x"\n', 2, "`command` cannot be split"),
        ("command: []\n", 2, "`command` is empty"),
        (
            "runtime: echo\nenv:\n  BAD-NAME: 1\n",
            4,
            "`env`: 'BAD-NAME' is not a valid environment variable name",
        ),
        ("- a\n- b\n", 2, "front matter must be a mapping"),
    ],
)
def test_mistakes_are_reported_with_file_and_line(
    tmp_path: Path, front: str, line: int, message: str
) -> None:
    path = agent(tmp_path, "a", front)
    catalog = load_agents([tmp_path], default_command=None)
    assert catalog.get("a") is None
    [problem] = catalog.errors
    assert problem.location.file == str(path)
    assert problem.location.line == line, problem.render()
    assert message in problem.message
    assert catalog.why_missing("a") == problem.render()


def test_unterminated_front_matter_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "agents" / "a.md"
    path.parent.mkdir()
    path.write_text("---\nruntime: echo\nno end\n")
    [problem] = load_agents([tmp_path]).errors
    assert problem.render() == f"{path}:1: front matter starts with `---` but never ends"


def test_a_file_without_front_matter_and_no_default_command_says_it_has_none(tmp_path: Path) -> None:
    """Front matter written without the opening `---` made the whole file a prompt, reported as
    `missing `command`` at line 1 of a file whose line 1 said `runtime: echo`."""
    path = agent(tmp_path, "a", None, body="runtime: echo\n---\nSay hi.")
    [problem] = load_agents([tmp_path], default_command=None).errors
    assert (problem.location.file, problem.location.line) == (str(path), 1)
    assert problem.message.startswith("no front matter: the file does not start with a `---` line")
    assert problem.hint is not None and "start the file with `---`" in problem.hint


def test_plain_prompt_files_use_the_default_command(tmp_path: Path) -> None:
    agent(tmp_path, "plain", None, body="Just a prompt.")
    assert load_agents([tmp_path], default_command=None).get("plain") is None
    catalog = load_agents([tmp_path], default_command="my-agent --print")
    assert catalog.get("plain").command == ("my-agent", "--print")  # type: ignore[union-attr]


def test_unknown_front_matter_keys_are_ignored(tmp_path: Path) -> None:
    agent(tmp_path, "a", "runtime: echo\ntools: [Read, Write]\ncolor: blue\nallowed-tools: Bash\nhooks: {}\n")
    assert load_agents([tmp_path]).errors == []


@pytest.mark.parametrize(
    ("front", "line", "key", "meant"),
    [
        ("runtime: echo\nmarker: [pending]\n", 3, "marker", "markers"),
        ("runtime: echo\ncontxt: checked\n", 3, "contxt", "context"),
        ("runtime: command\ncomand: [x]\n", 3, "comand", "command"),
        ("runtime: echo\nfail_mesage: no\n", 3, "fail_mesage", "fail_message"),
    ],
)
def test_a_misspelt_front_matter_key_is_an_error_not_ignored(
    tmp_path: Path, front: str, line: int, key: str, meant: str
) -> None:
    """`marker: [pending]` was ignored like another tool's key, so the agent never set a marker and
    the `while checker.pending` loop around it ended at once, without a word."""
    path = agent(tmp_path, "a", front)
    [problem] = load_agents([tmp_path]).errors
    assert (problem.location.file, problem.location.line) == (str(path), line)
    assert problem.message == f"unknown key `{key}`: did you mean `{meant}`?"


def test_missing_agent_explains_where_it_looked(tmp_path: Path) -> None:
    catalog = load_agents([tmp_path])
    assert catalog.why_missing("ghost") == (
        f"no agent file {tmp_path / 'agents' / 'ghost.md'}; no agents are defined yet: write the agent's "
        "prompt in that file (front matter `runtime: echo` runs it without a model; see docs/agents.md)"
    )


def test_missing_agent_names_the_agents_there_are_closest_first(tmp_path: Path) -> None:
    """The spec's `no registered ActionExecutor for 'x'` says nothing a user can act on: the reason
    (the validation hint) says which agents exist and which one was probably meant."""
    for name in ("review", "reviewer", "plan", *(f"a{i:02}" for i in range(12))):
        agent(tmp_path, name, "runtime: echo\n")
    reason = load_agents([tmp_path]).why_missing("reveiw")
    assert reason == (
        f"no agent file {tmp_path / 'agents' / 'reveiw.md'}; did you mean `review`? the agents defined: "
        "a00, a01, a02, a03, a04, a05, a06, a07, a08, a09, a10, a11 and 3 more"
    )
    assert (
        load_agents([tmp_path])
        .why_missing("zzz")
        .endswith(
            "; the agents defined: a00, a01, a02, a03, a04, a05, a06, a07, a08, a09, a10, a11 and 3 more"
        )
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("90", 90), ("x", None)]
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_seconds(text) == seconds


# --------------------------------------------------------------------------- echo runtime


def test_echo_returns_the_rendered_prompt_and_templated_markers(tmp_path: Path) -> None:
    agent(
        tmp_path,
        "rev",
        'runtime: echo\nmarkers: [reviewed, "{{extra}}"]\ncontext: "looked at {{who}}"\n',
        body="Review {{who}}; unknown {{nope}} vanishes.",
    )
    lines: list[tuple[str, str]] = []
    out = run(executor(tmp_path, "rev"), tmp_path, {"who": "repo-7", "extra": ""}, lines=lines)
    assert out.markers == ["reviewed"]
    assert out.context == "looked at repo-7"
    assert out.result_text == "Review repo-7; unknown  vanishes."
    assert out.structured_output is None
    assert lines == [("Review repo-7; unknown  vanishes.", "stdout")]


def test_echo_output_becomes_structured_output(tmp_path: Path) -> None:
    agent(
        tmp_path,
        "score",
        "runtime: echo\nmarkers: [scored]\noutput:\n  confidence: 87\n  branch: rel/{{v}}\n",
    )
    out = run(executor(tmp_path, "score"), tmp_path, {"v": "2"})
    assert json.loads(out.structured_output) == {  # type: ignore[arg-type]
        "markers": ["scored"],
        "context": out.context,
        "confidence": 87,
        "branch": "rel/2",
    }


def test_echo_fails_the_first_n_calls_of_each_run(tmp_path: Path) -> None:
    agent(tmp_path, "flaky", "runtime: echo\nfail: first 2 attempts\n")
    ex = executor(tmp_path, "flaky")
    for call in (1, 2):
        with pytest.raises(WorkflowError, match=f"agent 'flaky' failed on purpose \\(call {call}\\)"):
            run(ex, tmp_path)
    assert run(ex, tmp_path).result_text is not None
    with pytest.raises(WorkflowError):
        run(ex, tmp_path, run_id="another-run")


def test_echo_fail_true_always_fails_with_a_custom_message(tmp_path: Path) -> None:
    agent(tmp_path, "bad", 'runtime: echo\nfail: true\nfail_message: "cannot reach {{who}}"\n')
    ex = executor(tmp_path, "bad")
    for _ in range(3):
        with pytest.raises(WorkflowError, match="cannot reach db"):
            run(ex, tmp_path, {"who": "db"})


def test_echo_markers_for_first_calls_only(tmp_path: Path) -> None:
    agent(tmp_path, "check", "runtime: echo\nmarkers: [needs_work]\nmarkers_for: first 2 calls\n")
    ex = executor(tmp_path, "check")
    assert [run(ex, tmp_path).markers for _ in range(3)] == [["needs_work"], ["needs_work"], []]


def test_echo_delay_is_cancellable(tmp_path: Path) -> None:
    agent(tmp_path, "slow", "runtime: echo\ndelay: 30\n")
    ex = executor(tmp_path, "slow", base_env={**os.environ, "RUNKON_SAMPLE_SPEED": "1"})
    token = CancellationToken()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(ex, tmp_path, token=token)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    token.cancel(CancellationReason.user("stop it"))
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(errors[0], EngineCancelled)
    assert str(errors[0]) == 'workflow cancelled: UserRequested(Some("stop it"))'


def test_engine_cancel_by_execution_id_stops_a_running_agent(tmp_path: Path) -> None:
    agent(tmp_path, "slow", "runtime: echo\ndelay: 30\n")
    ex = executor(tmp_path, "slow", base_env={**os.environ, "RUNKON_SAMPLE_SPEED": "1"})
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(ex, tmp_path, step_id="s9")
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    while worker.is_alive() and not errors:
        ex.cancel("s9")
        worker.join(0.05)
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(errors[0], EngineCancelled)


def test_speed_zero_skips_delays(tmp_path: Path) -> None:
    agent(tmp_path, "slow", "runtime: echo\ndelay: 30\n")
    out = run(executor(tmp_path, "slow"), tmp_path)
    assert out.metadata["duration_ms"] == "0"


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    agent(tmp_path, "cmd", f"command: [touch, {marker}]\n", body="Do it")
    out = run(executor(tmp_path, "cmd"), tmp_path, dry_run=True)
    assert not marker.exists()
    assert out.result_text is not None and out.result_text.startswith(
        "dry-run: agent 'cmd' would receive:\nDo it"
    )


# --------------------------------------------------------------------------- prompt assembly


def test_snippets_feedback_and_retry_error_are_appended(tmp_path: Path) -> None:
    agent(tmp_path, "w", "runtime: echo\n", body="Write for {{who}}.")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "tone.md").write_text("Be kind to {{who}}.\n")
    ex = executor(tmp_path, "w")
    prompt = ex.render_prompt(
        ActionParams("w", {"who": "Ann"}, snippets=["tone"], gate_feedback="shorter", retry_error="boom")
    )
    assert prompt.startswith(
        "Write for Ann.\n\nBe kind to Ann.\n\nReviewer feedback from the last gate: shorter\n\n"
        "The previous attempt failed with: boom\n\n"
    )
    assert "<<<FLOW_OUTPUT>>>" in prompt


def test_missing_snippet_fails_the_step_naming_the_paths(tmp_path: Path) -> None:
    agent(tmp_path, "w", "runtime: echo\n")
    with pytest.raises(
        WorkflowError, match=r"prompt snippet 'nope' not found \(looked for .*prompts/nope.md"
    ):
        run(executor(tmp_path, "w"), tmp_path, snippets=["nope"])
    with pytest.raises(WorkflowError, match="invalid prompt snippet name"):
        run(executor(tmp_path, "w"), tmp_path, snippets=["../etc/passwd"])


def test_schema_replaces_the_generic_output_instruction(tmp_path: Path) -> None:
    agent(tmp_path, "w", "runtime: echo\n", body="Go.")
    schema = OutputSchema("verdict", [FieldDef("confidence", field_type="number", desc="0-100")])
    prompt = executor(tmp_path, "w").render_prompt(
        ActionParams("w", {}, extensions=Extensions({OutputSchema: schema}))
    )
    assert "schema 'verdict'" in prompt
    assert "- confidence: number — 0-100" in prompt


# --------------------------------------------------------------------------- command runtime

AGENT_SCRIPT = """
import json, os, sys
prompt = sys.stdin.read()
print("working in", os.getcwd())
print("model", os.environ.get("RUNKON_MODEL"), "agent", os.environ.get("RUNKON_AGENT"))
print("token", os.environ.get("GH_TOKEN", "-"), "level", os.environ.get("LEVEL"))
print("turns", os.environ.get("RUNKON_MAX_TURNS", "-"))
print("got", prompt.splitlines()[0])
print("<<<FLOW_OUTPUT>>>")
print(json.dumps({"markers": ["done"], "context": "summarised", "branch": "b1"}))
print("<<<END_FLOW_OUTPUT>>>")
"""


def command_agent(root: Path, name: str = "cmd", extra: str = "", script: str = AGENT_SCRIPT) -> None:
    (root / "scripts").mkdir(exist_ok=True)
    (root / "scripts" / f"{name}.py").write_text(script)
    agent(
        root,
        name,
        f'command: ["{{{{python}}}}", "{{{{workflow_dir}}}}/scripts/{name}.py"]\n{extra}',
        body="Task: {{task}}",
    )


def test_command_gets_prompt_on_stdin_env_and_working_dir(tmp_path: Path) -> None:
    command_agent(tmp_path, extra='model: small\nenv:\n  LEVEL: "{{level}}"\n')
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "identities.yaml").write_text("bot:\n  GH_TOKEN: t0ken\n")
    provider, _ = DefaultScriptEnvProvider.from_dirs([tmp_path])
    ex = executor(tmp_path, "cmd", script_env=provider)
    lines: list[tuple[str, str]] = []
    info = StepInfo("s1", emit_output=lambda line, stream: lines.append((line, stream)), run_id="r1")
    params = ActionParams(
        "cmd",
        {"task": "tidy up", "level": "high"},
        as_identity="bot",
        model="big",
        extensions=Extensions({ClaudeActionParams: ClaudeActionParams(max_turns=7)}),
    )
    out = ex.execute(LocalRunContext(work, "r1", "wf"), info, params)
    assert out.markers == ["done"]
    assert out.context == "summarised"
    assert json.loads(out.structured_output) == {"markers": ["done"], "context": "summarised", "branch": "b1"}  # type: ignore[arg-type]
    text = out.result_text or ""
    assert f"working in {work}" in text
    assert "model small agent cmd" in text  # the agent's own model wins over the run's
    assert "token t0ken level high" in text
    assert "turns 7" in text
    assert "got Task: tidy up" in text
    assert ("got Task: tidy up", "stdout") in lines


def test_command_without_flow_output_uses_stdout_as_context(tmp_path: Path) -> None:
    command_agent(tmp_path, script="print('x' * 3000)")
    out = run(executor(tmp_path, "cmd"), tmp_path)
    assert out.markers == [] and out.structured_output is None
    assert out.context == "x" * 2000


def test_command_failure_reports_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    command_agent(
        tmp_path,
        script="import sys; print('noise'); print('bad thing happened', file=sys.stderr); sys.exit(2)",
    )
    with pytest.raises(WorkflowError) as info:
        run(executor(tmp_path, "cmd"), tmp_path)
    assert str(info.value) == "workflow error: agent 'cmd' exited with code 2\nbad thing happened"


def test_command_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    agent(tmp_path, "ghost", "command: no-such-binary-anywhere --x\n")
    with pytest.raises(WorkflowError, match="agent 'ghost' failed to start 'no-such-binary-anywhere'"):
        run(executor(tmp_path, "ghost"), tmp_path)


def test_command_timeout_from_front_matter(tmp_path: Path) -> None:
    command_agent(tmp_path, extra="timeout: 200ms\n", script="import time; time.sleep(30)")
    with pytest.raises(WorkflowError, match=r"agent 'cmd' timed out after 0\.2s"):
        run(executor(tmp_path, "cmd"), tmp_path)


def test_step_timeout_caps_the_command(tmp_path: Path) -> None:
    command_agent(tmp_path, script="import time; time.sleep(30)")
    ex = executor(tmp_path, "cmd")
    info = StepInfo("s1", step_timeout=timedelta(milliseconds=200), run_id="r")
    with pytest.raises(WorkflowError, match="timed out"):
        ex.execute(LocalRunContext(tmp_path, "r", "wf"), info, ActionParams("cmd", {}))


def test_cancelling_the_step_token_kills_the_command(tmp_path: Path) -> None:
    started = tmp_path / "started"
    command_agent(
        tmp_path, script=f"import time, pathlib; pathlib.Path({str(started)!r}).touch(); time.sleep(30)"
    )
    ex = executor(tmp_path, "cmd")
    token = CancellationToken()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(ex, tmp_path, token=token)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    while not started.exists() and worker.is_alive():
        worker.join(0.02)
    token.cancel(CancellationReason.of("FailFast"))
    worker.join(10)
    assert not worker.is_alive()
    assert str(errors[0]) == "workflow cancelled: FailFast"


def test_registry_keys_match_what_the_engine_looks_up(tmp_path: Path) -> None:
    agent(tmp_path, "a", "runtime: echo\n")
    registry = build_action_registry(load_agents([tmp_path]))
    assert sorted(registry.named) == ["a", "agents/a.md"]
    assert all(isinstance(ex, ActionExecutor) and ex.name() == label for label, ex in registry.named.items())
    assert registry.fallback is None and not registry.has_action("b")


def test_python_placeholder_is_this_interpreter(tmp_path: Path) -> None:
    command_agent(tmp_path, script="import sys; print(sys.executable)")
    out = run(executor(tmp_path, "cmd"), tmp_path)
    assert out.result_text == sys.executable
