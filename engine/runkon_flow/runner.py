"""Background runners: a run executed by a process of its own, in its own session.

`spawn_runner` starts `python -m runkon_flow.cli.background RUN_ID …` detached from the caller —
a new session (no controlling terminal: closing the terminal, or killing the caller's process
group, does not reach it), stdin from /dev/null, stdout/stderr appended to
`<db dir>/logs/<run id>.log`. It executes a pending run (`runkon-flow run --detach`) or resumes one
(`resume=True`, waiting for the current holder's lease: how the dashboard hands a run over when
you quit it and keep the run going). UI-free: the CLI and the dashboard both use it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["log_path", "spawn_runner"]


def log_path(db: Path, run_id: str) -> Path:
    """Where a background run's output goes: `logs/<run id>.log` beside the database."""
    return db.parent / "logs" / f"{run_id}.log"


def spawn_runner(
    db: Path,
    run_id: str,
    dirs: Sequence[Path],
    *,
    resume: bool = False,
    lease_ttl: int | None = None,
    events: str | None = None,
) -> tuple[subprocess.Popen, Path]:
    """Start the background runner for `run_id`; returns the process and its log file. Raises
    OSError when the log file cannot be written."""
    log = log_path(db, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "runkon_flow.cli.background", run_id, "--db", str(db)]
    for d in dirs:
        argv += ["--dir", str(Path(d).resolve())]
    if lease_ttl is not None:
        argv += ["--lease-ttl", str(lease_ttl)]
    if events:
        argv += ["--events", str(Path(events).resolve())]
    if resume:
        argv.append("--resume")
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc, log
