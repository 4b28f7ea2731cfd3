"""`runkon-flow logs RUN_ID [STEP|ITEM] [--failed]` and `runkon-flow grep PATTERN RUN_ID`: a run's
stored output from the shell, like `gh run view --log` / `--log-failed`, and a search through all
of it.

Both read the store (`observe.outputs`: rows for the structure, the stored event stream for the
lines), never run anything again: a finished run, a live one, one another process or machine
executes, one on PostgreSQL. Each step (and each fan-out item's steps) gets a heading with its
place and status — `==> each[b] › say (failed) <==`, as `tail` heads files — then its output lines
and its error. `grep` uses the search the dashboard's search mode uses (`observe.search`).

Stored output is untrusted (any script or agent wrote it), so it is printed as the dashboard shows
it (`humanize.display_lines`): escape sequences removed, other control characters as control
pictures — on a terminal, in a pipe and in a file alike, since a saved log is read with `cat` or
`less -R` later. `--raw` prints the stored text unchanged, and only into a pipe or a file.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from runkon_flow.cli.common import EXIT_FAILED, EXIT_OK, CommandFailed, StdoutGuard, UsageError, print_err
from runkon_flow.cli.report import display_status
from runkon_flow.cli.store import add_db_args, get_run, opened_store
from runkon_flow.event_log import CUT_NOTE
from runkon_flow.humanize import did_you_mean, display_line, display_lines
from runkon_flow.observe.counts import row_status
from runkon_flow.observe.outputs import OutputSource, OutputTree, plan_reads, read_outputs, short_step_name
from runkon_flow.observe.search import Hit, compile_pattern, searched_text, source_hits
from runkon_flow.persistence import StepRole, WorkflowRun, WorkflowRunStep
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = ["add_grep_parser", "add_logs_parser", "heading"]

#: The count in a stored `… N more lines not stored` note (event_log.CUT_NOTE).
_CUT_COUNT = re.compile(rf"(\d+) {re.escape(CUT_NOTE)}")
#: Names listed when STEP|ITEM names nothing; a 10,000-item run lists the first ones.
_LISTED_NAMES = 20
#: About how many characters are printed at a time (a step's output is printed in such pieces).
_PIECE = 64 * 1024


def heading(source: OutputSource) -> str:
    """Always sanitised: a label holds item ids, which come from data (file names, API answers)."""
    return f"==> {display_line(source.label, None)} ({source.status}) <=="


def _shown(text: str, raw: bool) -> list[str]:
    """One stored line as printed: its safe rows (tabs kept), or the stored text for `--raw`."""
    return [text] if raw else list(display_lines(text, None))


def _check_raw(args: argparse.Namespace) -> None:
    """`--raw` sends a step's bytes as stored — escape sequences included — so never to a terminal."""
    if args.raw and sys.stdout.isatty():
        raise UsageError(
            "--raw prints stored output with its escape sequences and control characters unchanged, "
            "so only into a pipe or a file, not a terminal (without --raw they are shown safely)"
        )


def _notes(run: WorkflowRun, tree: OutputTree) -> None:
    """What a reader must know about where the lines come from (stderr: stdout stays the log)."""
    status = display_status(run)
    if status in ("running", "waiting", "cancelling", "pending"):
        print_err(f"run {run.id} is {status}: this is its output so far")
    if not tree.has_events:
        print_err(
            f"run {run.id} has no stored output lines (it ran before runkon kept a run's events, or "
            "with event storage off): showing its steps' results and errors"
        )


def _silent_steps(
    store: WorkflowPersistence, run: WorkflowRun, steps: list[WorkflowRunStep], target: str | None
) -> list[str]:
    """The run's own steps that `target` names (every one when None), latest attempt of each, as
    `name (status)` (`foreach:each (completed, no items)`): steps that printed nothing — a foreach
    with no items, a parallel or call workflow with nothing in it — have no output of their own,
    so `logs` and `grep` name them rather than say the run has no steps or no such step."""
    interrupted = display_status(run) == "interrupted"
    rows = {}
    for row in steps:
        short = short_step_name(row.step_name)
        if target is None or target in (row.step_name, short, row.id, row.node_path):
            rows[(row.step_name, row.iteration)] = row  # a later attempt replaces an earlier one
    said = []
    for row in rows.values():
        status = row_status(row, interrupted)
        if row.role == StepRole.FOREACH.value and not store.get_fan_out_items(row.id):
            status += ", no items"
        said.append(f"{display_line(row.step_name, None)} ({status})")
    return said


def _whose(run: WorkflowRun, target: str | None) -> str:
    """`run R (completed)`, or `step 'each' of run R`: the subject of a "printed nothing" note."""
    if target is None:
        return f"run {run.id} ({display_status(run)})"
    return f"step '{display_line(target, None)}' of run {run.id}"


def _narrowed(
    store: WorkflowPersistence, tree: OutputTree, target: str | None
) -> tuple[list[OutputSource], list[str]]:
    """The sources STEP|ITEM names, and — when there are none — the steps it names that printed
    nothing (`_silent_steps`). A STEP|ITEM that names nothing the run has is an unknown thing, exit
    1 as an unknown run id is (docs/cli.md, "Exit status"), with the closest name the run has."""
    if target is None:
        if tree.sources:
            return tree.sources, []
        return [], _silent_steps(store, tree.run, store.get_steps(tree.run.id), None)
    found = tree.narrowed(target)
    if found:
        return found, []
    steps = store.get_steps(tree.run.id)  # read once: the steps that printed nothing, and the names
    silent = _silent_steps(store, tree.run, steps, target)
    if silent:
        return [], silent
    names = tree.names()
    # Steps that printed nothing are names the run has too (`each` of a foreach with no items).
    names += [n for n in dict.fromkeys(short_step_name(r.step_name) for r in steps) if n not in names]
    listed = ", ".join(display_line(name, None) for name in names[:_LISTED_NAMES])
    if len(names) > _LISTED_NAMES:
        listed += f", … ({len(names)} in all)"
    close = did_you_mean(target, names)
    hint = f"{display_line(close, None)} " if close else ""
    raise CommandFailed(
        f"no step or item '{display_line(target, None)}' in run {tree.run.id}"
        + (f" ({hint}it has: {listed})" if names else "")
    )


def _source_rows(source: OutputSource, raw: bool) -> Iterator[str]:
    """One source's heading, lines and error, row by row (the lines read as they are printed)."""
    yield heading(source)
    for line in source.each_line():
        yield from _shown(f"… {line.text}" if line.stream == "note" else line.text, raw)
    if not source.has_lines and not source.error:
        yield "(no output)"
    if source.error:
        first, *rest = [row for line in source.error.splitlines() for row in _shown(line, raw)] or [""]
        yield f"error: {first}"
        yield from (f"       {line}" for line in rest)


def _print_rows(guard: StdoutGuard, rows: Iterable[str]) -> None:
    """`rows`, each on its line, then a blank line — printed in pieces of about `_PIECE`
    characters, so a step's output of any length is never one string in memory. Stops reading
    once stdout's reader has gone away."""
    piece: list[str] = []
    size = 0
    for row in rows:
        piece.append(row)
        size += len(row) + 1
        if size >= _PIECE:
            guard.print("\n".join(piece))
            piece, size = [], 0
            if guard.closed:
                return
    if piece:
        guard.print("\n".join(piece))
    guard.print("")


def cmd_logs(args: argparse.Namespace) -> int:
    _check_raw(args)
    with opened_store(args, must_exist=True) as store:
        run = get_run(store, args.run_id, args)
        tree = read_outputs(store, run, stream=True)  # lines read as they are printed: flat memory
        _notes(run, tree)
        sources, silent = _narrowed(store, tree, args.target)
        if args.failed:
            failed = {id(s) for s in tree.failed()}
            sources = [s for s in sources if id(s) in failed]
            if not sources:
                where = f" '{args.target}'" if args.target else ""
                print_err(f"no failed steps or items{where} in run {run.id} ({display_status(run)})")
                return EXIT_OK
        if silent:  # steps that ran and printed nothing: say which, not "no steps"
            print_err(f"{_whose(run, args.target)} printed nothing: {', '.join(silent)}")
        elif not sources:
            print_err(f"run {run.id} has no steps yet ({display_status(run)})")
        guard = StdoutGuard()  # `logs … | head`
        plan_reads(sources)  # the rows their lines are in, read a set at a time
        for source in sources:
            if guard.closed:
                break
            _print_rows(guard, _source_rows(source, args.raw))
    return EXIT_OK


def add_logs_parser(sub: Any) -> None:
    p = sub.add_parser(
        "logs",
        help="print a run's stored output, step by step and item by item",
        description=(
            "Print RUN_ID's stored output: every step's and fan-out item's output lines and error, in "
            "the order the run went, each under a heading with its place and status. STEP or ITEM "
            "(a step name, node path or step id, or a fan-out item id) narrows to that step or item. "
            "Works for finished, live and interrupted runs, and runs other processes execute."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("target", metavar="STEP|ITEM", nargs="?", help="only this step or fan-out item")
    p.add_argument(
        "--failed", action="store_true", help="only failed steps and items (latest attempts), with errors"
    )
    _add_raw_arg(p)
    add_db_args(p)
    p.set_defaults(handler=cmd_logs)


def _add_raw_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw",
        action="store_true",
        help="print stored output unchanged, escape sequences and control characters included "
        "(only into a pipe or a file; by default they are removed or shown as ␛ ␇ ␀ pictures)",
    )


def cmd_grep(args: argparse.Namespace) -> int:
    try:
        regex = compile_pattern(args.pattern, ignore_case=args.ignore_case, fixed=args.fixed_strings)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    _check_raw(args)
    # `grep … | head -1`: the exit status still says whether something matched (1 is "no match").
    guard = StdoutGuard("stdout closed; the rest of the matches are not printed")
    lines = groups = 0
    with opened_store(args, must_exist=True) as store:
        run = get_run(store, args.run_id, args)
        tree = read_outputs(store, run, stream=True)  # lines read as they are searched: flat memory
        _notes(run, tree)
        # An unknown STEP|ITEM: exit 1 with why, not "no match".
        sources, silent = _narrowed(store, tree, args.target)
        plan_reads(sources)
        for source in sources:
            found = source_hits(regex, source)
            first = next(found, None)
            if first is None:
                continue
            groups += 1
            hits, printed = itertools.chain((first,), found), [0]
            if not guard.closed:
                _print_rows(guard, _hit_rows(source, hits, args.raw, printed))
            lines += printed[0] + sum(1 for _ in hits)  # those not printed (stdout closed) count too
    searched = searched_text(len(sources))
    if silent:  # nothing to search: say what the steps are, not "in no steps or items"
        summary = (
            f"no match for {args.pattern!r}: {_whose(run, args.target)} printed nothing: {', '.join(silent)}"
        )
    elif lines:
        summary = f"{lines} matching line{'' if lines == 1 else 's'} in {groups} of {searched}"
    else:
        summary = f"no match for {args.pattern!r} in {searched} of run {run.id}"
    print_err(summary)
    _cut_notes(sources)
    return EXIT_OK if lines else EXIT_FAILED


def _hit_rows(source: OutputSource, hits: Iterator[Hit], raw: bool, printed: list[int]) -> Iterator[str]:
    """One source's heading and its hits, `number:text` (`error N:text` in its error), counted in
    `printed[0]` as they go."""
    yield heading(source)
    for hit in hits:
        printed[0] += 1
        where = f"error {hit.number}" if hit.stream == "error" else str(hit.number)
        yield f"{where}:{hit.text if raw else display_line(hit.text, None)}"


def _cut_notes(sources: list[OutputSource]) -> None:
    """A step whose output went on past what is stored was searched only up to there: say so, or
    "no match" would read as "not in the output"."""
    for source in sources:
        notes = [line.text for line in source.lines if line.stream == "note"]
        if notes:
            kept = source.output_line_count
            cut = sum(int(n) for note in notes for n in _CUT_COUNT.findall(note))
            more = f" ({cut} more lines not stored)" if cut else ""
            print_err(f"note: {source.label}: lines after line {kept} were not stored, so not searched{more}")


def add_grep_parser(sub: Any) -> None:
    p = sub.add_parser(
        "grep",
        help="search every step's and item's stored output in a run",
        description=(
            "Search RUN_ID's stored output — every step's and fan-out item's lines and errors, child "
            "runs included — for PATTERN (a Python regular expression). Hits are grouped by step or "
            "item, each line with its number in that step's output (as `logs` prints it). Exit 0 "
            "when something matched, 1 when nothing did, 2 for a bad pattern."
        ),
    )
    p.add_argument("pattern", metavar="PATTERN")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("target", metavar="STEP|ITEM", nargs="?", help="only this step or fan-out item")
    p.add_argument("-i", "--ignore-case", action="store_true", help="ignore case")
    p.add_argument(
        "-F", "--fixed-strings", action="store_true", help="PATTERN is a plain string, not a regex"
    )
    _add_raw_arg(p)
    add_db_args(p)
    p.set_defaults(handler=cmd_grep)
