"""`run dir/x.wf` parses and checks only that workflow and what it calls (issue 16, item 6).

A 5 KB workflow once took 51 s to start because a 50 MB file lay beside it: every run loaded every
`.wf` file of the directory. Now only the workflow and its callees are read; a name that cannot be
found as `<name>.wf` falls back to the full scan, so nothing that worked before stops working.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.dsl import loading
from runkon_flow.persistence import InMemoryStore
from runkon_flow.workspace import Workspace

from tests.cli.run_helpers import cli, write


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the `.wf` files parsed while the test runs."""
    seen: list[str] = []
    real = loading.load_workflow_file

    def recording(path):  # type: ignore[no-untyped-def]
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(loading, "load_workflow_file", recording)
    return seen


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    main = 'workflow main { script s { run = "echo main" } call workflow helper }'
    write(tmp_path / "wf" / "main.wf", main)
    write(tmp_path / "wf" / "helper.wf", 'workflow helper { script h { run = "echo helper" } }')
    write(tmp_path / "wf" / "big.wf", "workflow big {\n" + '  script x { run = "true" }\n' * 5000 + "}\n")
    write(tmp_path / "wf" / "broken.wf", "workflow broken { call }")
    return tmp_path


def test_run_by_path_reads_only_the_workflow_and_its_callees(
    folder: Path, parsed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", "wf/main.wf", "--memory")
    assert code == 0, err
    assert "line=main" in out and "line=helper" in out
    assert sorted(set(parsed)) == ["helper.wf", "main.wf"]
    assert "broken" not in err


def test_run_by_name_reads_only_the_workflow_and_its_callees(
    folder: Path, parsed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "run", "helper", "--dir", "wf", "--memory")
    assert code == 0, err
    assert sorted(set(parsed)) == ["helper.wf"]


def test_a_callee_not_found_by_file_name_falls_back_to_the_whole_directory(folder: Path) -> None:
    write(folder / "wf" / "main.wf", "workflow main { call workflow renamed }")
    write(folder / "wf" / "other-name.wf", 'workflow renamed { script r { run = "true" } }')
    ws = Workspace([folder / "wf"], InMemoryStore(), only=["main"])
    assert {"main", "renamed", "big", "helper"} <= set(ws.workflows)
    assert [Path(e.file).name for e in ws.load_errors] == ["broken.wf"]


def test_a_broken_root_is_reported_at_its_position(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "run", "wf/broken.wf", "--memory")
    assert code == 1
    assert "wf/broken.wf:1:" in err


def test_the_detached_runner_reads_only_the_workflow_and_its_callees(
    folder: Path, parsed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from runkon_flow.cli import background
    from runkon_flow.persistence import SqliteStore

    db = folder / "runs.db"
    with SqliteStore(db) as store:
        run_id = Workspace([folder / "wf"], store, only=["main"]).create_run("main", {})
    parsed.clear()
    assert background.main([run_id, "--db", str(db), "--dir", str(folder / "wf")]) == 0
    assert sorted(set(parsed)) == ["helper.wf", "main.wf"]
    with SqliteStore(db) as store:
        assert store.get_run(run_id).status == "completed"
