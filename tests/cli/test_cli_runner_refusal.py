"""A background runner whose run the engine refuses at its start (an agent the run calls was
deleted after the run was created) says the engine's refusal, as it always has — not the words for
a resume or retry whose workflow does not load."""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.cli import background
from runkon_flow.persistence import SqliteStore
from runkon_flow.workspace import Workspace

from tests.cli.run_helpers import write


def test_a_runner_says_the_engines_refusal_of_a_run_whose_agent_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "wf" / "ship.wf", "workflow ship {\n  call reviewer\n}\n")
    write(tmp_path / "wf" / "agents" / "reviewer.md", "---\nruntime: echo\n---\nreview\n")
    db = tmp_path / "runs.db"
    with SqliteStore(db) as store:
        run_id = Workspace([tmp_path / "wf"], store).create_run("ship", {})
    (tmp_path / "wf" / "agents" / "reviewer.md").unlink()
    assert background.main([run_id, "--db", str(db), "--dir", str(tmp_path / "wf"), "--no-hooks"]) == 1
    out = capsys.readouterr().out
    assert "error: workflow error: workflow 'ship' failed validation:\ncall 'reviewer': " in out
    assert "does not load" not in out
