"""What QA found in the headless CLI: bad replay files, cancel reasons in people's words, cancelled
steps counted apart from failed ones, broken `.wf` files shown like `validate` shows them, rejected
runs that write nothing, waiting gates' options, and an unwritable database location."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.run_helpers import cli, write

SIMPLE = """workflow simple {
  script hello { run = "echo hello" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a workflow folder; the run database path does not exist yet."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "state" / "runs.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "wf" / "simple.wf", SIMPLE)
    return tmp_path


# --------------------------------------------------------------------------- replay


def test_replaying_a_file_that_is_not_utf8_names_its_first_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "rnd.jsonl").write_bytes(b"\xff\xfe\x00garbage\x93\n\x80more\n")
    code, out, err = cli(capsys, "replay", "rnd.jsonl")
    assert code == 1
    assert err.strip() == "runkon-flow replay: error: rnd.jsonl:1: not a runkon event record (not UTF-8)"
    assert "Traceback" not in err
    assert out == ""


def test_replaying_an_empty_file_says_there_are_no_events(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "empty.jsonl").write_text("")
    (home / "blank.jsonl").write_text("\n\n")
    for name in ("empty.jsonl", "blank.jsonl"):
        code, _, err = cli(capsys, "replay", name)
        assert code == 1
        assert err.strip() == f"runkon-flow replay: error: {name}: no events"


@pytest.mark.parametrize("speed", ["-1", "0", "nan", "fast"])
def test_replay_speed_must_be_a_positive_number(
    home: Path, capsys: pytest.CaptureFixture[str], speed: str
) -> None:
    (home / "empty.jsonl").write_text("")
    code, out, err = cli(capsys, "replay", "--speed", speed, "empty.jsonl")
    assert code == 2
    assert "argument --speed:" in err
    assert out == ""
