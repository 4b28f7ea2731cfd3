"""`runkon-tui` command line: which folders it opens, usage errors, and a real start on a terminal."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runkon_tui.cli import default_dirs, main, resolve_paths

E2E = Path(__file__).parent / "fixtures" / "e2e"


def test_no_arguments_open_the_cwd_when_it_has_workflows_else_sample_workflows(tmp_path: Path) -> None:
    assert default_dirs(tmp_path) is None
    (tmp_path / "sample_workflows").mkdir()
    assert default_dirs(tmp_path) == [tmp_path / "sample_workflows"]
    (tmp_path / "here.wf").write_text("workflow here {}")
    assert default_dirs(tmp_path) == [tmp_path]


def test_paths_may_be_folders_or_wf_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    wf = tmp_path / "b" / "x.wf"
    wf.parent.mkdir()
    wf.write_text("workflow x {}")
    dirs, select_file, error = resolve_paths([str(tmp_path / "a"), str(wf)], tmp_path)
    assert error is None and dirs == [tmp_path / "a", tmp_path / "b"] and select_file == str(wf)
    assert (
        resolve_paths([str(tmp_path / "nope")], tmp_path)[2]
        == f"{tmp_path / 'nope'}: no such file or directory"
    )
    (tmp_path / "notes.txt").write_text("")
    assert (
        resolve_paths([str(tmp_path / "notes.txt")], tmp_path)[2]
        == f"{tmp_path / 'notes.txt'}: not a .wf file"
    )


def test_usage_errors_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main([str(tmp_path), "--theme", "no-such-theme"]) == 2
    err = capsys.readouterr().err
    assert "unknown theme 'no-such-theme'" in err and "runkon-light" in err and "textual-dark" in err
    assert main([str(tmp_path), "--replay", str(tmp_path / "none.jsonl")]) == 2
    assert "no such event log" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    assert main([]) == 2
    assert "no workflows in" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_installed_command_draws_a_frame_and_quits_cleanly(tmp_path: Path, backend: str) -> None:
    import fcntl
    import pty
    import struct
    import termios

    from tests.pg import database

    folder = tmp_path / "wf"
    shutil.copytree(E2E, folder)
    exe = Path(sys.executable).with_name("runkon-tui")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "RUNKON_TUI_CONFIG": str(tmp_path / "tui.yaml")}
    proc = subprocess.Popen(
        [str(exe), str(folder), "--db", database(backend, tmp_path), "--no-watch"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 20
    try:
        while b"fanout" not in seen or b"Workflows" not in seen:
            assert time.monotonic() < deadline, f"no frame; output so far: {seen[-500:]!r}"
            if select.select([master], [], [], 0.05)[0]:
                seen += os.read(master, 65536)
        os.write(master, b"\x11")  # ctrl+q
        while proc.poll() is None:
            assert time.monotonic() < deadline, "runkon-tui did not quit on ctrl+q"
            if select.select([master], [], [], 0.05)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0
    assert b"Traceback" not in seen
    assert b"unusable" not in seen  # the store opened (no in-memory fallback)
    assert (tmp_path / "tui.yaml").exists() is False  # starting and quitting writes no settings


def test_help_names_the_db_value_as_runkon_flow_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["-h"])
    assert "--db PATH|URL" in capsys.readouterr().out


def test_the_settings_file_is_read_once_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads tui.yaml (executor, run_in, ray_address) and the app used to read it again
    # (theme, keymap): two parses on the way to the first frame, and a file saved between them
    # gave one session two different settings.
    import runkon_tui.app
    import runkon_tui.config
    from runkon_tui.app import RunkonApp

    monkeypatch.delenv("RUNKON_TUI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    settings = runkon_tui.config.config_path()
    settings.parent.mkdir(parents=True)
    settings.write_text("theme: runkon-light\nrun_in: dashboard\n")
    reads: list[Path] = []
    real = runkon_tui.config.load_config

    def counted(path: Path | None = None) -> runkon_tui.config.TuiConfig:
        reads.append(path or runkon_tui.config.config_path())
        return real(path)

    apps: list[RunkonApp] = []
    monkeypatch.setattr(runkon_tui.config, "load_config", counted)
    monkeypatch.setattr(runkon_tui.app, "load_config", counted)
    monkeypatch.setattr(RunkonApp, "run", lambda self: apps.append(self) or 0)
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "a.wf").write_text('workflow a { script s { run = "true" } }')
    assert main([str(tmp_path / "wf"), "--db", str(tmp_path / "runs.db")]) == 0
    assert reads == [settings]
    (app,) = apps
    assert app.config.theme == "runkon-light" and not app.session.runs_in_runner
