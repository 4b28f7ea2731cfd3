"""`runkon-flow` — the headless command line.

One module per command group, each with `add_<name>_parser(subparsers)` functions that declare the
arguments and set `handler=<function(args) -> exit code>`: `validate`, `fmt`, `run` (run, resume,
cancel; `detach` runs one in the background), `history` (runs, show), `gates` (approve, reject, inbox),
`replay`, `watch`, `gc`, `logs` (logs, grep) and `db`. Registering a command is one line in
`SUBCOMMANDS`. Shared pieces:
`common` (errors, exit statuses, diagnostics, `.wf` paths), `store` (the run database), `drive`
(one run in the foreground), `output` and `live` (progress printers), `report` (what `runs` and
`show` print).

Handlers print results on stdout and diagnostics on stderr, and return an exit code:
0 success, 1 the files/run had problems, 2 the command line was wrong.

A user's mistake never produces a traceback: `UsageError` means exit 2, any `FlowError` escaping a
handler is printed as one line with exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from runkon_flow import __version__
from runkon_flow.cli import db, fmt, gates, gc, history, logs, replay, run, validate, watch
from runkon_flow.cli.common import (
    PROG,
    UsageError,
    as_named,
    print_line,
    read_source,
    reader_gone_error,
    render_diagnostic,
    silence,
)
from runkon_flow.errors import FlowError

__all__ = [
    "SUBCOMMANDS",
    "UsageError",
    "as_named",
    "build_parser",
    "main",
    "read_source",
    "render_diagnostic",
]


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main()` always returns a status."""

    def error(self, message: str) -> NoReturn:
        raise _ParseError(f"{message}\n{self.format_usage().rstrip()}", who=" ".join(self.prog.split()[:2]))


class _ParseError(UsageError):
    """A usage error argparse found: `who` is `runkon-flow runs` (a subcommand's parser; `runkon-flow
    db` for `db upgrade`), so it is laid out as a handler's errors are, or `runkon-flow`."""

    def __init__(self, message: str, *, who: str) -> None:
        super().__init__(message)
        self.who = who


SUBCOMMANDS: dict[str, Callable[[Any], None]] = {
    "validate": validate.add_validate_parser,
    "fmt": fmt.add_fmt_parser,
    "run": run.add_run_parser,
    "resume": run.add_resume_parser,
    "retry": run.add_retry_parser,
    "rerun": run.add_rerun_parser,
    "cancel": run.add_cancel_parser,
    "runs": history.add_runs_parser,
    "show": history.add_show_parser,
    "logs": logs.add_logs_parser,
    "grep": logs.add_grep_parser,
    "approve": gates.add_approve_parser,
    "reject": gates.add_reject_parser,
    "gates": gates.add_gates_parser,
    "replay": replay.add_replay_parser,
    "watch": watch.add_watch_parser,
    "gc": gc.add_gc_parser,
    "db": db.add_db_parser,
}
"""name -> function adding that subcommand's parser (which sets `handler`). Add new commands here."""


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog=PROG, description="Run and check runkon-flow workflows (.wf files).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for add_parser in SUBCOMMANDS.values():
        add_parser(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command the arguments chose: `runs`' parser, `db upgrade`'s."""
    for action in parser._actions:  # argparse has no public way to walk its subcommands
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            return _command_parser(chosen, args) if chosen is not None else parser
    return parser


def _options_before_command(argv: list[str]) -> None:
    """`runkon-flow --db X runs` reads `X` as the command; say where options go instead."""
    at = next((i for i, word in enumerate(argv) if word in SUBCOMMANDS), None)
    early = [w for w in argv[:at] if w.startswith("-") and w not in ("-h", "--help", "--version")]
    if at is not None and early:
        command = argv[at]
        moved = " ".join([command, *argv[:at], *argv[at + 1 :]])
        raise UsageError(f"options go after the command: {PROG} {moved}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `runkon-flow` console script; returns the exit status.

    With `argv` None (the process's own command line), `runkon-flow` owns the process, and a
    run settles the garbage collector first (`runkon_flow.heap.settle_for_runs`, in `drive.execute`);
    called with arguments (from tests or another program) it leaves that program's collector alone."""
    parser = build_parser()
    try:
        _options_before_command(list(sys.argv[1:] if argv is None else argv))
        args, extra = parser.parse_known_args(argv)
        if extra:  # argparse reports these from the top parser, without the command's name
            _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as exc:
        print_line(sys.stderr, f"{exc.who if isinstance(exc, _ParseError) else PROG}: error: {exc}")
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    args.owns_process = argv is None
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except UsageError as exc:
        print_line(sys.stderr, f"{PROG} {args.command}: error: {exc}")
        return 2
    except FlowError as exc:
        print_line(sys.stderr, f"{PROG} {args.command}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        print_line(sys.stderr, f"{PROG}: interrupted")
        return 130
    except OSError as exc:  # e.g. `runkon-flow validate dir | head -1`, or the terminal closed
        if not reader_gone_error(exc):
            raise
        silence(sys.stdout)  # the interpreter's final flush must not fail a second time
        return 1
