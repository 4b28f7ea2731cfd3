"""Workflow names, loading by name and scanning workflow directories (dsl.md §11), and the resolvers."""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.dsl.loading import (
    FileError,
    WorkflowDirError,
    WorkflowLoadError,
    WorkflowNameError,
    list_workflow_files,
    load_workflow_by_name,
    load_workflow_defs,
    load_workflow_dir,
    validate_workflow_name,
)
from runkon_flow.errors import WfParseError, WorkflowError, WorkflowNotFound
from runkon_flow.plugins.resolvers import DirectoryWorkflowResolver, InMemoryWorkflowResolver


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def good(name: str, extra: str = "") -> str:
    return f"workflow {name} {{\n  call step-{name}\n{extra}}}\n"


# --------------------------------------------------------------------------- §11.1 names


@pytest.mark.parametrize("name", ["review-pr", "lint_fix", "2fa", "-x", "A1"])
def test_names_of_letters_digits_hyphens_and_underscores_are_accepted(name: str) -> None:
    assert validate_workflow_name(name) == name


def test_an_empty_name_is_rejected() -> None:
    with pytest.raises(WorkflowNameError) as info:
        validate_workflow_name("")
    assert str(info.value) == "Workflow name must not be empty"


@pytest.mark.parametrize("name", ["a/b", "../etc", "a.b", "naïve", "a b"])
def test_other_characters_are_rejected(name: str) -> None:
    with pytest.raises(WorkflowNameError) as info:
        validate_workflow_name(name)
    assert str(info.value) == (
        f"Invalid workflow name '{name}': only alphanumeric characters, hyphens, and underscores are allowed"
    )


# --------------------------------------------------------------------------- §11.2 conductor layout


def test_load_by_name_prefers_the_worktree_copy(tmp_path: Path) -> None:
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    write(repo / ".conductor/workflows/ship.wf", good("from-repo"))
    assert load_workflow_by_name(tree, repo, "ship").name == "from-repo"
    write(tree / ".conductor/workflows/ship.wf", good("from-tree"))
    loaded = load_workflow_by_name(tree, repo, "ship")
    assert loaded.name == "from-tree"
    assert loaded.source_path == str(tree / ".conductor/workflows/ship.wf")
    assert load_workflow_by_name("", repo, "ship").name == "from-repo"


def test_load_by_name_reports_missing_workflows_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(WorkflowLoadError) as info:
        load_workflow_by_name(None, tmp_path, "ghost")
    assert str(info.value) == "Workflow 'ghost' not found in .conductor/workflows/"
    with pytest.raises(WorkflowNameError):
        load_workflow_by_name(None, tmp_path, "../ghost")


def test_load_by_name_surfaces_parse_errors(tmp_path: Path) -> None:
    write(tmp_path / ".conductor/workflows/bad.wf", "workflow bad { call }")
    with pytest.raises(WfParseError) as info:
        load_workflow_by_name(None, tmp_path, "bad")
    assert info.value.file == str(tmp_path / ".conductor/workflows/bad.wf")
    assert info.value.line == 1


def test_load_by_name_reports_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / ".conductor/workflows/bin.wf"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"workflow \xff {}")
    with pytest.raises(WorkflowLoadError) as info:
        load_workflow_by_name(None, tmp_path, "bin")
    assert str(info.value).startswith(f"Failed to read {path}: ")


# --------------------------------------------------------------------------- load_workflow_dir


def test_good_and_broken_files_load_together_and_every_broken_file_is_named(tmp_path: Path) -> None:
    write(tmp_path / "a.wf", good("a"))
    write(tmp_path / "b.wf", "workflow b {\n  call x\n  while ready { call y }\n}\n")
    write(tmp_path / "c.wf", good("c"))
    write(tmp_path / "d.wf", "workflow d {\n  # nope\n}\n")
    result = load_workflow_dir([tmp_path])
    assert list(result.workflows) == ["a", "c"]
    assert [(Path(e.file).name, e.line, e.column) for e in result.errors] == [("b.wf", 3, 9), ("d.wf", 2, 3)]
    assert (
        result.errors[1].render()
        == f"{tmp_path / 'd.wf'}:2:3: Unexpected character '#' (hint: comments start with `//`)"
    )  # the place once
    assert result.files[str(tmp_path / "a.wf")] == "a"
    assert isinstance(result.files[str(tmp_path / "b.wf")], FileError)
    assert list(result.files) == [str(tmp_path / f"{n}.wf") for n in "abcd"]
    assert not result.ok


def test_a_missing_closing_brace_is_named_in_the_problem_of_a_broken_file(tmp_path: Path) -> None:
    """The dashboard's problems show `FileError.render()`: it names the `{` left open."""
    write(tmp_path / "b.wf", "workflow b {\n  if x.y {\n    call a\n  call c\n}\n")
    (error,) = load_workflow_dir([tmp_path]).errors
    assert error.render().endswith(
        "found end of file (hint: the `{` of `if x.y` at line 2, column 10 is not closed: judging by the "
        "indentation, its `}` is missing before line 4)"
    )


def test_workflows_are_keyed_by_declared_name_and_sorted(tmp_path: Path) -> None:
    write(tmp_path / "1.wf", good("zeta"))
    write(tmp_path / "2.wf", good("alpha"))
    result = load_workflow_dir([tmp_path])
    assert list(result.workflows) == ["alpha", "zeta"]
    assert result.path_of("zeta") == str(tmp_path / "1.wf")
    assert any("declares workflow 'zeta' but is named '1.wf'" in w for w in result.warnings)


def test_later_directories_override_earlier_ones_with_a_warning(tmp_path: Path) -> None:
    base, override = tmp_path / "base", tmp_path / "override"
    write(base / "ship.wf", good("ship"))
    write(base / "other.wf", good("other"))
    write(override / "ship.wf", good("ship", "  call extra\n"))
    result = load_workflow_dir([base, override])
    assert result.path_of("ship") == str(override / "ship.wf")
    assert len(result.workflows["ship"].body) == 2
    assert result.warnings == [
        f"Workflow 'ship' is declared in both {base / 'ship.wf'} and {override / 'ship.wf'}; "
        f"using {override / 'ship.wf'}"
    ]
    assert sorted(result.workflows) == ["other", "ship"]


def test_only_regular_dot_wf_files_are_scanned(tmp_path: Path) -> None:
    write(tmp_path / "ok.wf", good("ok"))
    write(tmp_path / "notes.txt", "not a workflow")
    write(tmp_path / "upper.WF", "broken")
    write(tmp_path / ".#ok.wf", "editor lock file")
    (tmp_path / "dir.wf").mkdir()
    write(tmp_path / "nested" / "deep.wf", good("deep"))
    assert [p.name for p in list_workflow_files(tmp_path)] == ["ok.wf"]
    result = load_workflow_dir([tmp_path])
    assert list(result.workflows) == ["ok"] and result.errors == []


def test_errors_are_sorted_by_file_name_across_directories(tmp_path: Path) -> None:
    write(tmp_path / "one" / "z.wf", "workflow z {")
    write(tmp_path / "two" / "a.wf", "workflow a {")
    result = load_workflow_dir([tmp_path / "one", tmp_path / "two"])
    assert [Path(e.file).name for e in result.errors] == ["a.wf", "z.wf"]


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowDirError) as info:
        load_workflow_dir([tmp_path / "nope"])
    assert str(info.value) == f"Cannot read workflow directory {tmp_path / 'nope'}: no such directory"
    write(tmp_path / "file.wf", good("file"))
    with pytest.raises(WorkflowDirError, match="not a directory"):
        load_workflow_dir([tmp_path / "file.wf"])


def test_a_lenient_scan_records_a_missing_directory_and_keeps_going(tmp_path: Path) -> None:
    write(tmp_path / "ok" / "a.wf", good("a"))
    result = load_workflow_dir([tmp_path / "gone", tmp_path / "ok"], strict=False)
    assert list(result.workflows) == ["a"]
    assert [e.message for e in result.errors] == [
        f"Cannot read workflow directory {tmp_path / 'gone'}: no such directory"
    ]


def test_an_unreadable_directory_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()

    def denied(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("runkon_flow.dsl.loading.os.scandir", denied)
    with pytest.raises(WorkflowDirError) as info:
        load_workflow_dir([locked])
    assert str(info.value) == f"Cannot read workflow directory {locked}: Permission denied"


def test_an_undecodable_file_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "bin.wf").write_bytes(b"\xff\xfe")
    result = load_workflow_dir([tmp_path])
    assert len(result.errors) == 1
    assert result.errors[0].message.startswith("cannot read file: not valid UTF-8")  # the CLI's words


# --------------------------------------------------------------------------- §11.4 load_workflow_defs


def test_load_workflow_defs_merges_repo_and_worktree(tmp_path: Path) -> None:
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    write(repo / ".conductor/workflows/a.wf", good("a"))
    write(repo / ".conductor/workflows/b.wf", good("b"))
    write(repo / ".conductor/workflows/broken.wf", "workflow broken {")
    write(tree / ".conductor/workflows/b.wf", good("b", "  call extra\n"))
    write(tree / ".conductor/workflows/broken.wf", good("broken"))
    write(tree / ".conductor/workflows/zz.wf", "workflow zz")
    defs, failures = load_workflow_defs(tree, repo)
    assert [d.name for d in defs] == ["a", "b", "broken"]
    assert len(next(d for d in defs if d.name == "b").body) == 2
    # the repo failure for `broken` stays even though the worktree copy parses (as in the reference)
    assert [f.file for f in failures] == ["broken.wf", "zz.wf"]


def test_load_workflow_defs_without_directories_is_empty(tmp_path: Path) -> None:
    assert load_workflow_defs(tmp_path / "x", tmp_path / "y") == ([], [])


# --------------------------------------------------------------------------- resolvers


def test_directory_resolver_reads_root_slash_name_dot_wf(tmp_path: Path) -> None:
    write(tmp_path / "ship.wf", good("ship"))
    resolver = DirectoryWorkflowResolver(tmp_path)
    assert resolver.resolve("ship").name == "ship"
    assert resolver("ship").source_path == str(tmp_path / "ship.wf")
    assert resolver.as_loader()("ship").name == "ship"


def test_directory_resolver_rereads_the_file_on_every_call(tmp_path: Path) -> None:
    path = write(tmp_path / "ship.wf", good("ship"))
    resolver = DirectoryWorkflowResolver(tmp_path)
    assert len(resolver.resolve("ship").body) == 1
    path.write_text(good("ship", "  call more\n"))
    assert len(resolver.resolve("ship").body) == 2


@pytest.mark.parametrize("name", ["ghost", "", "../ship", "sub/ship", "ship.wf", "a b"])
def test_directory_resolver_raises_not_found_for_unknown_or_unsafe_names(tmp_path: Path, name: str) -> None:
    """Not found, with the closest workflow the directory has when one is close (`ship.wf` was
    meant as `ship`)."""
    write(tmp_path / "ship.wf", good("ship"))
    write(tmp_path / "sub" / "ship.wf", good("ship"))
    with pytest.raises(WorkflowNotFound) as info:
        DirectoryWorkflowResolver(tmp_path / "sub" if name == "../ship" else tmp_path).resolve(name)
    close = " (did you mean `ship`?)" if "ship" in name else ""
    assert str(info.value) == f"workflow not found: {name}{close}"


def test_directory_resolver_names_the_closest_workflow_of_a_misspelt_name(tmp_path: Path) -> None:
    """`call workflow procss-item` said only `workflow not found: procss-item`."""
    write(tmp_path / "process-item.wf", good("process-item"))
    write(tmp_path / "report.wf", good("report"))
    resolver = DirectoryWorkflowResolver(tmp_path)
    assert resolver.names() == ["process-item", "report"]
    with pytest.raises(WorkflowNotFound) as info:
        resolver.resolve("procss-item")
    assert str(info.value) == "workflow not found: procss-item (did you mean `process-item`?)"


def test_directory_resolver_accepts_unicode_letters_in_names(tmp_path: Path) -> None:
    write(tmp_path / "café.wf", good("cafe"))
    assert DirectoryWorkflowResolver(tmp_path).resolve("café").name == "cafe"


def test_directory_resolver_reports_parse_failures_as_workflow_errors(tmp_path: Path) -> None:
    write(tmp_path / "bad.wf", "workflow bad {\n  call\n}")
    with pytest.raises(WorkflowError) as info:
        DirectoryWorkflowResolver(tmp_path).resolve("bad")
    # the text a failed step records: it names the place, so the user can jump to the mistake
    assert str(info.value).startswith(f"workflow error: Parse error in {tmp_path / 'bad.wf'}:3:1: expected ")
    assert isinstance(info.value.__cause__, WfParseError)


def test_directory_resolver_tries_roots_in_order_and_layered_reverses_them(tmp_path: Path) -> None:
    write(tmp_path / "one" / "ship.wf", good("ship"))
    write(tmp_path / "two" / "ship.wf", good("ship", "  call two\n"))
    write(tmp_path / "two" / "only.wf", good("only"))
    first_wins = DirectoryWorkflowResolver(tmp_path / "one", tmp_path / "two")
    assert len(first_wins.resolve("ship").body) == 1
    assert first_wins.resolve("only").name == "only"
    later_wins = DirectoryWorkflowResolver.layered([tmp_path / "one", tmp_path / "two"])
    assert len(later_wins.resolve("ship").body) == 2


def test_in_memory_resolver_accepts_a_mapping_or_definitions(tmp_path: Path) -> None:
    from runkon_flow.dsl.parser import parse_workflow

    a = parse_workflow(good("a"))
    by_iter = InMemoryWorkflowResolver([a])
    by_map = InMemoryWorkflowResolver({"alias": a})
    assert by_iter.resolve("a") is a and by_map("alias") is a
    with pytest.raises(WorkflowNotFound, match="workflow not found: alias"):
        by_iter.resolve("alias")
