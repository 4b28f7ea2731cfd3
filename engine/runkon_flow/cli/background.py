"""The background process of `runkon-flow run --detach` (`python -m runkon_flow.cli.background`):
executes one pending run, printing plain progress lines to its log file (see `cli.detach`).

Kept out of the `runkon_flow.cli` package's imports so `python -m` runs it fresh.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from runkon_flow.cli.common import print_line
from runkon_flow.cli.drive import execute, open_events_file
from runkon_flow.cli.run import exec_config_for
from runkon_flow.persistence import SqliteStore
from runkon_flow.workspace import Workspace

SIGNAL_MESSAGE = "the detached runner was sent SIGTERM or SIGINT"


def main(argv: Sequence[str] | None = None) -> int:
    """Execute the pending run in this process. SIGTERM (or SIGINT) cancels it cleanly, a second
    one forces the exit, as for `run`; SIGHUP is ignored."""
    parser = argparse.ArgumentParser(prog="runkon_flow.cli.background")
    parser.add_argument("run_id")
    parser.add_argument("--db", required=True)
    parser.add_argument("--dir", dest="dirs", action="append", default=[])
    parser.add_argument("--lease-ttl", type=int)
    parser.add_argument("--events")
    args = parser.parse_args(argv)
    args.progress = "plain"
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    print_line(sys.stdout, f"detached runner pid {os.getpid()} for run {args.run_id}")
    store = SqliteStore(args.db)
    try:
        ws = Workspace([Path(d) for d in args.dirs], store, exec_config=exec_config_for(args.lease_ttl))
        events_file = open_events_file(args.events, append=False)
        return execute(
            args,
            store,
            args.run_id,
            lambda queue: ws.execute(args.run_id, sinks=[queue]),
            lambda rid: ws.cancel(rid, SIGNAL_MESSAGE),
            events_file=events_file,
            durable=True,
        )
    except Exception as exc:
        print_line(sys.stdout, f"runkon-flow (detached): error: {exc}")
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
