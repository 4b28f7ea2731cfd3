"""LocalRunContext and DefaultScriptEnvProvider as a host uses them."""

from __future__ import annotations

from pathlib import Path

from runkon_flow.plugins.context import LocalRunContext
from runkon_flow.plugins.protocols import RunContext, ScriptEnvProvider
from runkon_flow.plugins.script_env import DefaultScriptEnvProvider


def test_local_run_context_reports_what_it_was_given(tmp_path: Path) -> None:
    ctx = LocalRunContext(tmp_path, "run-1", "deploy", {"repo_path": "/src"}, parent_run_id="run-0")
    assert isinstance(ctx, RunContext)
    assert ctx.working_dir() == tmp_path
    assert ctx.working_dir_str() == str(tmp_path)
    assert ctx.run_id() == "run-1"
    assert ctx.workflow_name() == "deploy"
    assert ctx.parent_run_id() == "run-0"
    assert ctx.get("repo_path") == "/src"
    assert ctx.get("missing") is None


def test_injected_variables_cannot_be_mutated_from_outside(tmp_path: Path) -> None:
    source = {"a": "1"}
    ctx = LocalRunContext(tmp_path, variables=source)
    source["a"] = "changed"
    ctx.injected_variables()["a"] = "also changed"
    assert ctx.injected_variables() == {"a": "1"}


def test_for_run_and_with_variables_make_bound_copies(tmp_path: Path) -> None:
    host = LocalRunContext(tmp_path, variables={"a": "1"})
    bound = host.for_run("r9", "nightly").with_variables({"b": "2", "a": "3"})
    assert (bound.run_id(), bound.workflow_name(), bound.injected_variables()) == (
        "r9",
        "nightly",
        {"a": "3", "b": "2"},
    )
    assert host.run_id() == "" and host.injected_variables() == {"a": "1"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_env_for_a_configured_identity_expands_host_variables(tmp_path: Path) -> None:
    _write(tmp_path / "identities.yaml", "docs-bot:\n  GH_TOKEN: ${BOT_TOKEN}\n  RETRIES: 3\n  FLAG: true\n")
    provider, problems = DefaultScriptEnvProvider.from_dirs([tmp_path], environ={"BOT_TOKEN": "s3cret"})
    assert problems == []
    assert isinstance(provider, ScriptEnvProvider)
    ctx = LocalRunContext(tmp_path)
    assert provider.env(ctx, "docs-bot") == {"GH_TOKEN": "s3cret", "RETRIES": "3", "FLAG": "true"}
    assert provider.env(ctx, None) == {}
    assert provider.env(ctx, "someone-else") == {}
    assert provider.identities == ["docs-bot"]


def test_missing_host_variable_expands_to_empty(tmp_path: Path) -> None:
    provider = DefaultScriptEnvProvider({"bot": {"T": "x${NOPE}y"}}, environ={})
    assert provider.env(LocalRunContext(tmp_path), "bot") == {"T": "xy"}


def test_base_env_applies_to_everyone_and_identity_overrides_it(tmp_path: Path) -> None:
    provider = DefaultScriptEnvProvider({"bot": {"MODE": "bot"}}, base={"MODE": "base", "K": "v"}, environ={})
    ctx = LocalRunContext(tmp_path)
    assert provider.env(ctx, None) == {"MODE": "base", "K": "v"}
    assert provider.env(ctx, "bot") == {"MODE": "bot", "K": "v"}


def test_no_identities_file_means_empty_env(tmp_path: Path) -> None:
    provider, problems = DefaultScriptEnvProvider.from_dirs([tmp_path])
    assert problems == []
    assert provider.env(LocalRunContext(tmp_path), "x") == {}


def test_later_directories_override_earlier_ones(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    _write(first / "identities.yaml", "bot:\n  A: one\n  B: one\n")
    _write(second / "identities.yaml", "bot:\n  B: two\n")
    provider, _ = DefaultScriptEnvProvider.from_dirs([first, second], environ={})
    assert provider.env(LocalRunContext(tmp_path), "bot") == {"A": "one", "B": "two"}


def test_mistakes_in_identities_file_name_file_and_line(tmp_path: Path) -> None:
    bad_name = _write(tmp_path / "identities.yaml", "bot:\n  OK: 1\n  BAD-NAME: x\n")
    _, problems = DefaultScriptEnvProvider.from_dirs([tmp_path])
    assert [p.render() for p in problems] == [
        f"{bad_name}:3: identity 'bot': 'BAD-NAME' is not a valid environment variable name"
    ]
    _write(bad_name, "bot:\n  LIST: [1, 2]\n")
    _, problems = DefaultScriptEnvProvider.from_dirs([tmp_path])
    assert [p.render() for p in problems] == [
        f"{bad_name}:2: identity 'bot': value of 'LIST' must be a string"
    ]
    _write(bad_name, "bot: [1\n")
    _, problems = DefaultScriptEnvProvider.from_dirs([tmp_path])
    assert problems[0].location.file == str(bad_name)
    assert problems[0].location.line == 1  # where the unclosed list starts
    assert problems[0].message.startswith("invalid YAML:")
    _write(bad_name, "- just\n- a list\n")
    _, problems = DefaultScriptEnvProvider.from_dirs([tmp_path])
    assert (
        problems[0].render() == f"{bad_name}:1: expected a mapping of identity name → {{ VARIABLE: value }}"
    )
