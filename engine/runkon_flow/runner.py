"""Background runners: a run executed by a process of its own, in its own session.

`spawn_runner` starts `python -m runkon_flow.cli.background RUN_ID …` detached from the caller —
a new session (no controlling terminal: closing the terminal, or killing the caller's process
group, does not reach it), stdin from /dev/null, stdout/stderr appended to
`<db dir>/logs/<run id>.log` (for a PostgreSQL server: runkon's state directory). It executes a
pending run (`runkon-flow run --detach`, and every run the dashboard starts on a database), resumes
one (`resume=True`, waiting for the current holder's lease: also how a run the dashboard hosts is
handed over when you quit it and keep the run going), or retries items of a finished one
(`retry=`, with the definition stored with the run).
UI-free: the CLI and the dashboard both use it. A server URL reaches the runner through
`$RUNKON_DB`, never its command line (it may hold a password).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runkon_flow.persistence.location import DbLocation
from runkon_flow.persistence.paths import DB_ENV

__all__ = ["ERROR_PREFIX", "RunnerSettings", "hook_problems", "log_path", "runner_error", "spawn_runner"]

#: How a runner's log says it stopped on an error of its own (not the run failing: that is the
#: run's outcome, in the store).
ERROR_PREFIX = "runkon-flow (detached): error: "


@dataclass(frozen=True)
class RunnerSettings:
    """What a runner started for a host gets besides the run, so a run handed over keeps running
    as it started: the hooks file and where foreach children run (None: the runner's defaults)."""

    hooks: str | None = None
    executor: str | None = None
    ray_address: str | None = None
    #: The host runs without hooks (its hooks file is wrong): so does the runner, which would
    #: otherwise find the same file and refuse to run at all.
    no_hooks: bool = False


_FILE_NAME_ID = re.compile(r"[0-9A-Za-z_-]{1,100}")


def log_path(db: Path | str | DbLocation, run_id: str) -> Path:
    """Where a background run's output goes: `logs/<run id>.log` beside the database. An id that is
    not a plain name (the engine's never are; a row written into a shared database by other means
    could be `../../x`) gets `logs/invalid-run-id-<digest>.log`: the path `gc` deletes and a
    runner appends to stays inside `logs/`."""
    name = run_id if _FILE_NAME_ID.fullmatch(run_id) else _digest_name(run_id)
    return _location(db).state_dir() / "logs" / f"{name}.log"


def _digest_name(run_id: str) -> str:
    digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"invalid-run-id-{digest}"


def runner_error(log: Path, start: int = 0) -> str | None:
    """The last error a runner wrote to `log` after byte `start` (where its own output began; a
    log is shared by every runner of the run), or None when it stopped without one."""
    try:
        with open(log, "rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    errors = [line for line in text.splitlines() if line.startswith(ERROR_PREFIX)]
    return errors[-1].removeprefix(ERROR_PREFIX).strip() if errors else None


#: How a runner's log says a hook failed (the CLI's report of it, `cli.drive.prepare_hooks`).
_HOOK_PROBLEM_PREFIX = "runkon-flow: hook '"


def hook_problems(log: Path, start: int = 0) -> list[str]:
    """The hooks that failed in a runner, as its log after byte `start` says them (`hook 'chat' on
    gate.waiting (run 01J…) failed: exit 3`): the runner runs the hooks of the runs it executes,
    so only its log knows."""
    try:
        with open(log, "rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = text.splitlines()
    return [line.removeprefix("runkon-flow: ") for line in lines if line.startswith(_HOOK_PROBLEM_PREFIX)]


def _location(db: Path | str | DbLocation) -> DbLocation:
    return db if isinstance(db, DbLocation) else DbLocation(str(db))


def spawn_runner(
    db: Path | str | DbLocation,
    run_id: str,
    dirs: Sequence[Path],
    *,
    resume: bool = False,
    lease_ttl: int | None = None,
    events: str | None = None,
    hooks: str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    retry: Mapping[str, Sequence[str]] | None = None,
    retry_definition: str = "stored",
    no_hooks: bool = False,
) -> tuple[subprocess.Popen, Path]:
    """Start the background runner for `run_id`; returns the process and its log file. Raises
    OSError when the log file cannot be written. `hooks`: a hooks file given with --hooks, passed
    on as $RUNKON_HOOKS (without it the runner looks where it was started, as the command did).
    `no_hooks`: the runner runs no hooks, whatever $RUNKON_HOOKS or .runkon/hooks.yaml say.
    `retry`: fan-out step row → item ids to run again (`Workspace.retry`, with `retry_definition`:
    `stored`, or `current` for today's file).
    `executor`/`ray_address`: --executor/--ray-address for the runner (where foreach children
    run; docs/scale-out.md)."""
    log = log_path(db, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    location = _location(db)
    argv = [sys.executable, "-m", "runkon_flow.cli.background", run_id]
    env = None
    if location.is_server:
        env = {**os.environ, DB_ENV: location.target}
    else:
        argv += ["--db", location.target]
    for d in dirs:
        argv += ["--dir", str(Path(d).resolve())]
    if lease_ttl is not None:
        argv += ["--lease-ttl", str(lease_ttl)]
    if events:
        argv += ["--events", str(Path(events).resolve())]
    if no_hooks:
        argv.append("--no-hooks")
    elif hooks:
        env = {**(env or os.environ), "RUNKON_HOOKS": str(Path(hooks).resolve())}
    if executor:
        argv += ["--executor", executor]
    if ray_address:
        argv += ["--ray-address", ray_address]
    if resume:
        argv.append("--resume")
    if retry:
        # In a file beside the log, not on the command line: a cluster of thousands of items
        # would pass the kernel's 128 KiB limit for one argument. The runner deletes it.
        request = log.with_name(f"{log.stem}.retry-{os.getpid()}-{time.time_ns()}.json")
        request.write_text(json.dumps({step: list(ids) for step, ids in retry.items()}), encoding="utf-8")
        argv += ["--retry-file", str(request)]
        if retry_definition != "stored":
            argv += ["--retry-definition", retry_definition]
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    return proc, log
