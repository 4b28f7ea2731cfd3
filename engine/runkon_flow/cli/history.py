"""`runkon-flow runs` and `runkon-flow show`: run history and one run, as `report` renders them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from runkon_flow.cli.common import (
    EXIT_OK,
    CommandFailed,
    StdoutGuard,
    UsageError,
    positive_int,
    print_err,
    terminal_width,
)
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.report import (
    ITEM_SORTS,
    item_fan_outs,
    items_json,
    items_lines,
    run_json,
    runs_table,
    show_json,
    show_lines,
)
from runkon_flow.cli.store import NoRunsHere, add_db_args, get_run, opened_store
from runkon_flow.humanize import safe_text, terminal_json
from runkon_flow.observe.loader import row_why


def cmd_runs(args: argparse.Namespace) -> int:
    out = StdoutGuard()
    try:
        with opened_store(args, must_exist=True) as store:
            runs = store.list_runs(limit=args.limit, parent_run_id=None if args.all else "")
            rows = [(run, store.get_steps(run.id)) for run in runs]
            whys = [row_why(store, run, steps) for run, steps in rows]
    except NoRunsHere as nothing:
        if args.json:
            out.print("[]")
        else:
            print_err(f"no runs yet ({nothing.why})")
        return EXIT_OK
    if args.json:
        data = [run_json(run, steps, why=why) for (run, steps), why in zip(rows, whys, strict=True)]
        out.print(terminal_json(json.dumps(data, indent=2, ensure_ascii=False)))
    elif not rows:
        print_err("no runs yet")
    else:
        out.print("\n".join(runs_table(rows, width=terminal_width(), whys=whys)))
    return EXIT_OK


def add_runs_parser(sub: Any) -> None:
    p = sub.add_parser(
        "runs",
        help="list past and current runs, newest first",
        description="Run history, newest first: id, workflow, status, start, duration and step counts "
        "(ok/failed/skipped/cancelled), then what the runs spent when any reported usage, then why a "
        "run failed (the cause, as show says it) or was cancelled.",
    )
    add_db_args(p)
    p.add_argument(
        "--limit", "-n", type=positive_int, default=20, metavar="N", help="how many runs (default 20)"
    )
    p.add_argument("--all", action="store_true", help="include child runs (call workflow / foreach)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_runs)


def cmd_show(args: argparse.Namespace) -> int:
    if args.run_id is None:
        if not args.items:  # as argparse says a missing argument, with the usage under it
            usage = args.show_usage().rstrip()
            raise UsageError(f"the following arguments are required: RUN_ID\n{usage}")
        # `show --items RUN_ID`, as people write it: the optional FOREACH took the run id.
        args.run_id, args.items = args.items, ""
    if args.sort is not None and args.items is None:
        raise UsageError("--sort orders the rows of --items: show RUN_ID --items [FOREACH] --sort KEY")
    out = StdoutGuard()
    with opened_store(args, must_exist=True) as store:
        run = get_run(store, args.run_id, args)
        if args.items is not None:
            try:
                fan_outs = item_fan_outs(store, run, args.items or None, args.sort or "order")
            except ValueError as unknown:
                raise CommandFailed(str(unknown)) from None
            if args.json:
                data = items_json(run, fan_outs)
                out.print(terminal_json(json.dumps(data, indent=2, ensure_ascii=False)))
            else:
                out.print(safe_text(items_lines(run, fan_outs, width=terminal_width())))
        elif args.json:
            data = show_json(store, run)
            out.print(terminal_json(json.dumps(data, indent=2, ensure_ascii=False)))
        else:
            out.print(safe_text(show_lines(store, run, hints=Hints.of(args), width=terminal_width())))
    return EXIT_OK


def add_show_parser(sub: Any) -> None:
    p = sub.add_parser(
        "show",
        help="show one run: its steps, fan-out items, errors and waiting gates",
        description=(
            "Show RUN_ID: status, inputs, every step row, failed items grouped into numbered failure "
            "clusters (for retry --cluster N), failed steps' errors and waiting gates."
        ),
    )
    # Optional to argparse only: `show --items RUN_ID` leaves it to --items (cmd_show).
    p.add_argument("run_id", metavar="RUN_ID", nargs="?")
    add_db_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--items",
        nargs="?",
        const="",
        metavar="FOREACH",
        help="one row per fan-out item (of every foreach, or of FOREACH): status, attempt, time, "
        "tokens, cost, child run",
    )
    p.add_argument(
        "--sort",
        choices=ITEM_SORTS,
        help="order the --items rows: most cost or duration first, failures first, by item id "
        "(default: the items' order)",
    )
    p.set_defaults(handler=cmd_show, show_usage=p.format_usage)
