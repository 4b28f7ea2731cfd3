"""`runkon-flow gc --older-than 30d`: delete finished runs (with their child runs, steps, fan-out
items, stored events and background-run log files) that ended longer ago than the given age.

Only runs that ended — completed, failed or cancelled — are deleted; a run still active, waiting or
interrupted (it may yet be resumed) is kept however old. `--dry-run` says what would go: each run,
oldest first, then the count — a count alone asks the user to trust an age they may have mistyped.
"""

from __future__ import annotations

import argparse
import re
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runkon_flow.cli.common import EXIT_OK, StdoutGuard
from runkon_flow.cli.store import add_db_args, db_label, opened_store
from runkon_flow.humanize import display_line
from runkon_flow.persistence import RunStatus
from runkon_flow.persistence._shared import rfc3339
from runkon_flow.runner import log_path

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` → a timedelta (a unit is required: `30` alone is ambiguous)."""
    match = _AGE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected an age like 30d, 12h, 90m, 45s or 2w, got {text!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def _delete_logs(db: Path, run_ids: list[str]) -> int:
    """The log files of deleted runs started with `run --detach` (or handed over by the dashboard)."""
    count = 0
    for run_id in run_ids:
        with suppress(FileNotFoundError):
            log_path(db, run_id).unlink()
            count += 1
    return count


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def cmd_gc(args: argparse.Namespace) -> int:
    out = StdoutGuard()
    cutoff = rfc3339(datetime.now(UTC) - args.older_than)
    with opened_store(args, must_exist=True) as store:
        runs = [
            r
            for r in store.list_runs(limit=10**9)
            if RunStatus(r.status).is_terminal and r.ended_at is not None and r.ended_at < cutoff
        ]
        doomed = [r.id for r in runs]
        if args.dry_run:
            for run in sorted(runs, key=lambda r: (r.ended_at or "", r.id)):
                status, ended = RunStatus(run.status).value, run.ended_at
                out.print(display_line(f"  {run.id}  {status:<9}  ended {ended}  {run.workflow_name}", None))
            out.print(
                f"would delete {_runs(len(doomed))} that ended before {cutoff} (and their child runs) "
                f"from {db_label(args)}"
            )
            return EXIT_OK
        deleted = store.delete_finished_runs(cutoff)
        logs = _delete_logs(Path(db_label(args)), [r for r in doomed if store.get_run(r) is None])
    out.print(
        f"deleted {_runs(deleted.runs)} that ended before {cutoff} from {db_label(args)}: "
        f"{deleted.child_runs} child runs, {deleted.steps} steps, {deleted.items} fan-out items, "
        f"{deleted.events} events" + (f", {logs} background-run logs" if logs else "")
    )
    return EXIT_OK


def add_gc_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gc",
        help="delete runs that ended long ago (with their events)",
        description=(
            "Delete every run that ended (completed, failed or cancelled) longer ago than --older-than, "
            "with its child runs, steps, fan-out items, stored events and log file (runs started with "
            "--detach). Active, waiting and interrupted runs are never deleted. SQLite reuses the freed "
            "space; the file itself does not shrink."
        ),
    )
    p.add_argument(
        "--older-than",
        type=parse_age,
        required=True,
        metavar="AGE",
        help="how long ago a run must have ended: 30d, 12h, 90m, 45s, 2w",
    )
    p.add_argument("--dry-run", action="store_true", help="only list the runs that would be deleted")
    add_db_args(p)
    p.set_defaults(handler=cmd_gc)
