"""`runkon-flow run … | head -2` (issue 10, bug 6): a reader that goes away must not kill the run.

The run keeps going silently to its end, its lease is released and the exit status says how it
ended; stderr carries one note and no traceback. `watch` and `replay` follow the same rule: their
exit status is the run's, never the pipe's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.run_helpers import cli_env, open_store, write


def test_run_piped_into_head_completes_and_releases_its_lease(tmp_path: Path) -> None:
    steps = "".join(f'  script s{i} {{ run = "sleep 0.05; echo line {i}" }}\n' for i in range(12))
    write(tmp_path / "main.wf", "workflow main {\n" + steps + "}\n")
    db = tmp_path / "runs.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", "run", "main.wf", "--db", str(db), "--progress", "plain"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.readline()
    proc.stdout.close()  # what `head -2` does
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)

    assert "Traceback" not in err
    assert "is closed" not in err
    assert code == 0, err
    store = open_store(db)
    (run,) = store.list_runs()
    assert run.status.value == "completed"
    assert run.owner_token is None and run.lease_until is None


# More plain output than a pipe holds (64 KiB), so the command is still writing when the reader
# goes away: each output line is an event line.
LOUD = 'workflow main {\n  script a { run = "seq 1 1500" }\n  script b { run = "seq 1 1500" }\n}\n'


def _first_line_then_close(args: list[str], cwd: Path, *, lines: int = 1) -> tuple[int, str]:
    """`runkon-flow ARGS | head -1` (`lines=0`: `| true`, gone before the first line): (exit
    status, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runkon_flow.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(lines):
        proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


# Lines long enough that `logs` and `grep` outgrow a pipe (64 KiB) too.
WIDE = LOUD.replace("seq 1 1500", "seq -f 'line %g, with padding to make it long enough' 1 1500")


def _completed_run(tmp_path: Path, workflow: str = LOUD) -> tuple[Path, str]:
    write(tmp_path / "main.wf", workflow)
    db = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, "-m", "runkon_flow.cli", "run", "main.wf", "--db", str(db), "--progress", "quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    store = open_store(db)
    (run,) = store.list_runs()
    store.close()
    return db, run.id


def test_watch_of_a_completed_run_piped_into_head_exits_0_not_failed(tmp_path: Path) -> None:
    """`watch ID | head -1; echo ${PIPESTATUS[0]}` says 0 for a completed run: 1 means it failed."""
    db, run_id = _completed_run(tmp_path)
    for extra in (["--progress", "plain"], ["--json"]):
        code, err = _first_line_then_close(["watch", run_id, "--db", str(db), *extra], tmp_path)
        assert "Traceback" not in err
        assert code == 0, err
        assert f"stdout closed; stopped watching run {run_id} (the run is not affected)" in err


def test_replay_piped_into_head_exits_with_the_recorded_runs_status(tmp_path: Path) -> None:
    write(tmp_path / "main.wf", LOUD)
    events = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "runkon_flow.cli", "run", "main.wf", "--memory", "--events", str(events)],
        cwd=tmp_path,
        capture_output=True,
        env=cli_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0
    code, err = _first_line_then_close(["replay", str(events), "--progress", "plain"], tmp_path)
    assert "Traceback" not in err
    assert code == 0, err


def test_logs_and_grep_piped_into_head_exit_by_what_they_found(tmp_path: Path) -> None:
    """`grep PATTERN ID | head -1` said 1 ("no match") for a pattern with 3,000 matches, and
    `logs ID | head -1` 1 for a run whose output was all there."""
    db, run_id = _completed_run(tmp_path, WIDE)
    for args in (["logs", run_id], ["grep", "padding", run_id]):
        code, err = _first_line_then_close([*args, "--db", str(db)], tmp_path)
        assert "Traceback" not in err
        assert code == 0, (args, err)
        assert "stdout closed" in err or args[0] == "grep"  # grep writes its hits in one go


def _reader_gone_at_once(args: list[str], cwd: Path) -> tuple[int, str]:
    """`runkon-flow ARGS | true`: the reader is gone before the first line (exit status, stderr)."""
    return _first_line_then_close(args, cwd, lines=0)


def test_validate_runs_show_and_gates_into_a_closed_pipe_exit_by_what_they_found(tmp_path: Path) -> None:
    """`validate DIR | head -1` said 1 ("invalid") for valid files, and `runs`, `show`, `gates`
    1 for a database they read without trouble: the exit status is the command's, not the pipe's."""
    db, run_id = _completed_run(tmp_path)
    write(tmp_path / "other.wf", 'workflow other {\n  script a { run = "true" }\n}\n')
    for args in (
        ["validate", "."],
        ["validate", ".", "--json"],
        ["runs", "--db", str(db)],
        ["show", run_id, "--db", str(db)],
        ["gates", "--db", str(db)],
    ):
        code, err = _reader_gone_at_once(args, tmp_path)
        assert "Traceback" not in err
        assert code == 0, (args, err)
        assert "runkon-flow: stdout closed; the rest of the output is not printed" in err, args
    write(tmp_path / "broken.wf", "workflow broken {\n")
    code, err = _reader_gone_at_once(["validate", "."], tmp_path)
    assert code == 1  # still what the check found
    assert "broken.wf:2:1" in err


def test_fmt_into_a_closed_pipe_still_formats_every_file(tmp_path: Path) -> None:
    """`fmt DIR | head -1` stopped at the first `reformatted` line, leaving the other files as
    they were, and exited 1."""
    for name in ("a", "b"):
        write(tmp_path / f"{name}.wf", f'workflow {name} {{ script s {{ run = "true" }} }}\n')
    code, err = _reader_gone_at_once(["fmt", "."], tmp_path)
    assert (code, "Traceback" in err) == (0, False), err
    for name in ("a", "b"):
        assert (tmp_path / f"{name}.wf").read_text() != f'workflow {name} {{ script s {{ run = "true" }} }}\n'


def test_run_into_a_reader_gone_before_its_first_line_still_runs(tmp_path: Path) -> None:
    """`run WF | true`: the `run_id=` line itself met the closed pipe, and the command exited 1
    leaving its run `pending` for good. The run goes on, unprinted, and ends completed."""
    write(tmp_path / "main.wf", LOUD)
    db = tmp_path / "runs.db"
    code, err = _reader_gone_at_once(["run", "main.wf", "--db", str(db), "--progress", "plain"], tmp_path)
    assert "Traceback" not in err
    assert code == 0, err
    assert err.count("stdout closed") == 1
    store = open_store(db)
    (run,) = store.list_runs()
    assert run.status.value == "completed"
    assert run.owner_token is None and run.lease_until is None
    store.close()
