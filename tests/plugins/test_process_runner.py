"""run_process: what a script step or an agent CLI sees when it runs through the engine."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from runkon_flow.cancellation import CancellationReason, CancellationToken
from runkon_flow.process import ProcessResult, run_process

ENV = dict(os.environ)
PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; look at its state where /proc is available.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    return True


def _wait_dead(pid: int, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_captures_stdout_stderr_and_exit_code(tmp_path: Path) -> None:
    result = run_process(["sh", "-c", "echo out; echo err >&2; exit 3"], cwd=tmp_path, env=ENV)
    assert result == ProcessResult(
        exit_code=3, stdout="out\n", stderr="err\n", duration_ms=result.duration_ms
    )
    assert not result.ok
    assert result.stderr_tail() == "err"


def test_runs_in_the_given_directory_with_exactly_the_given_env(tmp_path: Path) -> None:
    result = run_process(
        'sh -c \'pwd; echo "[$ONLY_ME]" "[${HOME:-unset}]"\'',
        cwd=tmp_path,
        env={"ONLY_ME": "yes", "PATH": os.environ["PATH"]},
    )
    assert result.ok
    lines = result.stdout.splitlines()
    assert Path(lines[0]).resolve() == tmp_path.resolve()
    assert lines[1] == "[yes] [unset]"


def test_shell_mode_runs_a_command_line(tmp_path: Path) -> None:
    result = run_process("echo a | tr a b && echo done", cwd=tmp_path, env=ENV, shell=True)
    assert result.ok
    assert result.stdout == "b\ndone\n"


def test_lines_stream_in_order_while_the_command_runs(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    script = (
        "import sys,time\n"
        "for i in range(3):\n"
        " print('line', i, flush=True)\n"
        " print('warn', i, file=sys.stderr, flush=True)\n"
        " time.sleep(0.03)\n"
        "print('no newline at end', end='')\n"
    )
    result = run_process(
        [PY, "-c", script], cwd=tmp_path, env=ENV, on_line=lambda line, s: seen.append((line, s))
    )
    assert result.ok
    assert seen == [
        ("line 0", "stdout"),
        ("warn 0", "stderr"),
        ("line 1", "stdout"),
        ("warn 1", "stderr"),
        ("line 2", "stdout"),
        ("warn 2", "stderr"),
        ("no newline at end", "stdout"),
    ]


def test_first_line_arrives_before_the_command_ends(tmp_path: Path) -> None:
    first_seen = threading.Event()
    ended_flag = tmp_path / "ended"

    def on_line(line: str, stream: str) -> None:
        if line == "hello" and not ended_flag.exists():
            first_seen.set()

    run_process(
        ["sh", "-c", f"echo hello; sleep 0.3; touch {ended_flag}"], cwd=tmp_path, env=ENV, on_line=on_line
    )
    assert first_seen.is_set()


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    seen: list[str] = []
    result = run_process(
        [PY, "-c", "import sys; sys.stdout.buffer.write(b'caf\\xe9 ok\\n')"],
        cwd=tmp_path,
        env=ENV,
        on_line=lambda line, _s: seen.append(line),
    )
    assert result.ok
    assert result.stdout == "caf\ufffd ok\n"
    assert seen == ["caf\ufffd ok"]


def test_stdin_is_delivered_and_absent_stdin_is_empty(tmp_path: Path) -> None:
    prompt = "line one\nline two ünïcode\n" * 2000  # bigger than a pipe buffer
    result = run_process(
        [PY, "-c", "import sys; d=sys.stdin.read(); print(len(d), d[:8])"],
        cwd=tmp_path,
        env=ENV,
        stdin=prompt,
    )
    assert result.stdout.strip() == f"{len(prompt)} line one"
    no_stdin = run_process(["sh", "-c", "cat; echo end"], cwd=tmp_path, env=ENV)
    assert no_stdin.stdout == "end\n"


def test_command_that_ignores_stdin_does_not_hang(tmp_path: Path) -> None:
    result = run_process(["true"], cwd=tmp_path, env=ENV, stdin="x" * 1_000_000)
    assert result.ok


def test_spawn_failure_is_reported_not_raised(tmp_path: Path) -> None:
    missing = run_process(["definitely-not-a-command-xyz"], cwd=tmp_path, env=ENV)
    assert missing.exit_code is None
    assert missing.spawn_error and "definitely-not-a-command-xyz" in missing.spawn_error
    bad_cwd = run_process(["true"], cwd=tmp_path / "nope", env=ENV)
    assert bad_cwd.spawn_error == f"working directory does not exist: {tmp_path / 'nope'}"
    bad_quotes = run_process("echo 'unbalanced", cwd=tmp_path, env=ENV)
    assert bad_quotes.spawn_error and "unbalanced" in bad_quotes.spawn_error
    not_exec = tmp_path / "plain.sh"
    not_exec.write_text("echo hi\n")
    denied = run_process([str(not_exec)], cwd=tmp_path, env=ENV)
    assert denied.spawn_error and "Permission denied" in denied.spawn_error


def test_killed_by_signal_reports_negative_code(tmp_path: Path) -> None:
    result = run_process(["sh", "-c", "kill -9 $$"], cwd=tmp_path, env=ENV)
    assert result.exit_code == -9
    assert not result.timed_out and not result.cancelled


def test_timeout_kills_the_whole_group_including_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    result = run_process(
        ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo started; sleep 30"],
        cwd=tmp_path,
        env=ENV,
        timeout=0.3,
    )
    assert result.timed_out and not result.cancelled
    assert result.exit_code is None
    assert result.stdout == "started\n"
    assert _wait_dead(int(pidfile.read_text()))


def test_timeout_also_kills_children_that_ignore_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "stubborn.pid"
    result = run_process(
        ["sh", "-c", f"(trap '' TERM; echo $$ > {pidfile}; exec sleep 30) & wait"],
        cwd=tmp_path,
        env=ENV,
        timeout=0.3,
    )
    assert result.timed_out
    assert _wait_dead(int(pidfile.read_text()))


def test_cancel_from_another_thread_stops_the_command(tmp_path: Path) -> None:
    token = CancellationToken()
    pidfile = tmp_path / "bg.pid"
    seen = threading.Event()

    def on_line(line: str, _stream: str) -> None:
        if line == "ready":
            seen.set()

    def cancel_soon() -> None:
        seen.wait(5)
        token.cancel(CancellationReason.user("stop"))

    threading.Thread(target=cancel_soon, daemon=True).start()
    finished = threading.Event()
    outcome: list[ProcessResult] = []

    def run() -> None:
        outcome.append(
            run_process(
                ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo ready; sleep 30"],
                cwd=tmp_path,
                env=ENV,
                cancellation=token,
                on_line=on_line,
            )
        )
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(10), "run_process did not return after the cancel"
    assert outcome[0].cancelled and not outcome[0].timed_out
    assert outcome[0].exit_code is None
    assert _wait_dead(int(pidfile.read_text()))


def test_already_cancelled_token_never_spawns(tmp_path: Path) -> None:
    token = CancellationToken()
    token.cancel(CancellationReason.user())
    marker = tmp_path / "ran"
    result = run_process(["touch", str(marker)], cwd=tmp_path, env=ENV, cancellation=token)
    assert result.cancelled
    assert not marker.exists()


def test_huge_output_on_both_streams_does_not_deadlock(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "for i in range(9000):\n"
        " sys.stdout.write('o'*100+'\\n'); sys.stderr.write('e'*100+'\\n')\n"
    )
    count = [0]
    result = run_process(
        [PY, "-c", script], cwd=tmp_path, env=ENV, on_line=lambda _l, _s: count.__setitem__(0, count[0] + 1)
    )
    assert result.ok
    assert count[0] == 18000
    assert len(result.stdout) == 9000 * 101


def test_capture_limit_keeps_head_and_tail(tmp_path: Path) -> None:
    script = "print('FIRST'); print('x'*50000); print('LAST')"
    result = run_process([PY, "-c", script], cwd=tmp_path, env=ENV, max_capture_chars=1000)
    assert result.stdout.startswith("FIRST\n")
    assert result.stdout.endswith("LAST\n")
    assert "characters omitted" in result.stdout
    assert len(result.stdout) < 1100


def test_leftover_background_job_does_not_block_a_finished_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    result = run_process(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo done"], cwd=tmp_path, env=ENV)
    assert result.ok
    assert result.stdout == "done\n"
    assert _wait_dead(int(pidfile.read_text()))


def test_command_that_closes_its_pipes_is_still_awaited(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    result = run_process(
        ["sh", "-c", f"exec >/dev/null 2>&1; sleep 0.2; touch {marker}; exit 4"], cwd=tmp_path, env=ENV
    )
    assert result.exit_code == 4
    assert marker.exists()


def test_a_failing_line_callback_does_not_break_capture(tmp_path: Path) -> None:
    def boom(_line: str, _stream: str) -> None:
        raise RuntimeError("observer bug")

    result = run_process(["sh", "-c", "echo a; echo b"], cwd=tmp_path, env=ENV, on_line=boom)
    assert result.ok and result.stdout == "a\nb\n"


@pytest.mark.parametrize("command", [[], ""])
def test_empty_command_is_a_spawn_error(tmp_path: Path, command: list[str] | str) -> None:
    assert run_process(command, cwd=tmp_path, env=ENV).spawn_error == "empty command"
