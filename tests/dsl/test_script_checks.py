"""Script-path checks (dsl.md §9.2): a script step must name an executable file the host can find."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runkon_flow.dsl.ast import DoNode, ForEachNode, IfNode, ScriptNode, StepMarkerCondition, WorkflowDef
from runkon_flow.dsl.validation import (
    ScriptNotFound,
    ScriptResolver,
    validate_script_steps,
    validate_workflow,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="execute bits and symlinks are POSIX features")


def make_script(path: Path, *, executable: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho hi\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def workflow(*runs: str) -> WorkflowDef:
    body = [ScriptNode(name=f"s{i}", run=run, line=i + 2, column=3) for i, run in enumerate(runs)]
    return WorkflowDef(name="w", body=body, source_path="w.wf")


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    wd, repo, skills = tmp_path / "wd", tmp_path / "repo", tmp_path / "skills"
    for d in (wd, repo, skills):
        d.mkdir()
    return wd, repo, skills


def test_a_script_found_in_the_working_dir_and_executable_passes(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    make_script(wd / "tools" / "build.sh")
    assert validate_script_steps(workflow("tools/build.sh"), ScriptResolver(wd, repo, skills)) == []


def test_the_search_order_is_wd_then_conductor_scripts_then_repo_then_skills(
    dirs: tuple[Path, Path, Path],
) -> None:
    wd, repo, skills = dirs
    resolver = ScriptResolver(wd, repo, skills)
    make_script(skills / "x.sh")
    assert resolver.resolve("x.sh") == skills / "x.sh"
    make_script(repo / ".conductor" / "scripts" / "x.sh")
    assert resolver.resolve("x.sh") == repo / ".conductor" / "scripts" / "x.sh"
    make_script(repo / "x.sh")
    assert resolver.resolve("x.sh") == repo / "x.sh"
    make_script(wd / ".conductor" / "scripts" / "x.sh")
    assert resolver.resolve("x.sh") == wd / ".conductor" / "scripts" / "x.sh"
    make_script(wd / "x.sh")
    assert resolver.resolve("x.sh") == wd / "x.sh"


def test_a_missing_script_lists_every_place_searched(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    problems = validate_script_steps(workflow("lint.sh"), ScriptResolver(wd, repo, skills))
    searched = (
        ", ".join(str(p) for p in [wd / "lint.sh", wd / ".conductor/scripts/lint.sh", repo / "lint.sh"])
        + ", "
        + ", ".join(str(p) for p in [repo / ".conductor/scripts/lint.sh", skills / "lint.sh"])
    )
    assert [p.message for p in problems] == [f"Script step 's0': 'lint.sh' not found. Searched: {searched}"]
    assert (problems[0].location.file, problems[0].location.line, problems[0].location.column) == (
        "w.wf",
        2,
        3,
    )


def test_without_a_known_skills_dir_the_home_location_is_still_listed(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    wd, _repo, _skills = dirs
    monkeypatch.delenv("HOME", raising=False)
    with pytest.raises(ScriptNotFound) as info:
        ScriptResolver(wd).resolve("x.sh")
    assert info.value.searched == [
        str(wd / "x.sh"),
        str(wd / ".conductor/scripts/x.sh"),
        "~/.claude/skills/x.sh",
    ]


def test_the_default_skills_dir_is_under_home(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    wd, _repo, skills = dirs
    home = skills.parent / "home"
    monkeypatch.setenv("HOME", str(home))
    make_script(home / ".claude" / "skills" / "deploy" / "run.sh")
    assert ScriptResolver(wd).resolve("deploy/run.sh") == home / ".claude/skills/deploy/run.sh"


def test_a_run_value_with_dot_dot_is_never_accepted_even_when_the_file_exists(
    dirs: tuple[Path, Path, Path],
) -> None:
    wd, repo, skills = dirs
    make_script(wd / "inner" / "ok.sh")
    make_script(wd.parent / "outside.sh")
    resolver = ScriptResolver(wd, repo, skills)
    for run in ["../outside.sh", "inner/../inner/ok.sh"]:
        problems = validate_script_steps(workflow(run), resolver)
        assert len(problems) == 1 and "not found" in problems[0].message, run


def test_an_absolute_path_is_taken_as_is(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    script = make_script(skills.parent / "abs" / "tool.sh")
    resolver = ScriptResolver(wd, repo, skills)
    assert resolver.resolve(str(script)) == script
    missing = script.with_name("nope.sh")
    problems = validate_script_steps(workflow(str(missing)), resolver)
    assert [p.message for p in problems] == [f"Script step 's0': '{missing}' not found. Searched: {missing}"]


def test_a_directory_is_not_a_script(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    (wd / "tools").mkdir()
    assert len(validate_script_steps(workflow("tools"), ScriptResolver(wd, repo, skills))) == 1


@posix_only
def test_a_symlink_escaping_its_root_is_rejected(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    outside = make_script(wd.parent / "secret.sh")
    (wd / "escape.sh").symlink_to(outside)
    problems = validate_script_steps(workflow("escape.sh"), ScriptResolver(wd, repo, skills))
    assert len(problems) == 1 and "'escape.sh' not found" in problems[0].message


@posix_only
def test_a_symlink_that_stays_inside_its_root_is_accepted(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    make_script(wd / "real" / "tool.sh")
    (wd / "tool.sh").symlink_to(wd / "real" / "tool.sh")
    assert validate_script_steps(workflow("tool.sh"), ScriptResolver(wd, repo, skills)) == []


@posix_only
def test_conductor_scripts_are_trusted_as_soon_as_they_exist(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    shared = make_script(wd.parent / "shared" / "push.sh")
    (repo / ".conductor" / "scripts").mkdir(parents=True)
    (repo / ".conductor" / "scripts" / "push.sh").symlink_to(shared)
    resolver = ScriptResolver(wd, repo, skills)
    assert resolver.resolve("push.sh") == repo / ".conductor/scripts/push.sh"
    assert validate_script_steps(workflow(".conductor/scripts/push.sh"), ScriptResolver(repo)) == []


@posix_only
def test_a_script_without_any_execute_bit_gets_the_chmod_hint(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    path = make_script(wd / "build.sh", executable=False)
    problems = validate_script_steps(workflow("build.sh"), ScriptResolver(wd, repo, skills))
    assert [p.text() for p in problems] == [
        f"Script step 's0': '{path}' is not executable (mode 0644) (hint: Run: chmod +x {path})"
    ]


@posix_only
def test_an_execute_bit_for_anyone_is_enough(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    path = make_script(wd / "build.sh")
    path.chmod(0o601)
    assert validate_script_steps(workflow("build.sh"), ScriptResolver(wd, repo, skills)) == []


def test_run_values_with_placeholders_are_skipped(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    assert validate_script_steps(workflow("tools/{{tool}}.sh"), ScriptResolver(wd, repo, skills)) == []


def test_a_command_line_is_checked_as_a_path(dirs: tuple[Path, Path, Path]) -> None:
    """Faithful to the reference: `make lint` is looked for as a file and not found."""
    wd, repo, skills = dirs
    assert len(validate_script_steps(workflow("make lint"), ScriptResolver(wd, repo, skills))) == 1


def test_scripts_nested_in_blocks_and_the_always_list_are_checked(dirs: tuple[Path, Path, Path]) -> None:
    wd, repo, skills = dirs
    cond = StepMarkerCondition(step="a", marker="b")
    wf = WorkflowDef(
        name="w",
        body=[IfNode(condition=cond, body=[DoNode(body=[ScriptNode(name="inner", run="inner.sh")])])],
        always=[ScriptNode(name="final", run="final.sh")],
    )
    problems = validate_script_steps(wf, ScriptResolver(wd, repo, skills))
    assert [p.message.split(":")[0] for p in problems] == ["Script step 'inner'", "Script step 'final'"]


@posix_only
def test_metadata_that_cannot_be_read_is_reported(tmp_path: Path) -> None:
    class Vanishing:
        def resolve(self, run: str) -> Path:
            return tmp_path / "gone.sh"

    problems = validate_script_steps(workflow("gone.sh"), Vanishing())
    assert len(problems) == 1
    assert problems[0].message == (
        f"Script step 's0': could not read metadata for '{tmp_path / 'gone.sh'}': No such file or directory"
    )


def test_validate_workflow_runs_the_script_checks_when_given_a_resolver(
    dirs: tuple[Path, Path, Path],
) -> None:
    wd, repo, skills = dirs
    wf = WorkflowDef(
        name="w",
        body=[
            ScriptNode(name="a", run="missing.sh"),
            ForEachNode(name="f", over="x", max_parallel=1, workflow="c"),
        ],
    )
    report = validate_workflow(wf, script_resolver=ScriptResolver(wd, repo, skills))
    assert len(report.errors) == 1 and report.errors[0].message.startswith("Script step 'a'")
    assert validate_workflow(wf).ok
