"""`runkon-flow replay`: print a recorded `--events` file exactly as a live run prints it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runkon_flow.cli.common import CommandFailed, StdoutGuard, UsageError, print_err
from runkon_flow.cli.drive import add_progress_args, make_printer
from runkon_flow.cli.output import RunOutcome
from runkon_flow.events import EngineEventData, parse_event_line


def _replay_records(path: Path, handle: Any) -> Iterator[EngineEventData]:
    """The event records of an `--events` file, line by line; a line that is not UTF-8 JSON of an
    event stops the replay with its line number (unknown event types and blank lines are skipped)."""
    for number, raw in enumerate(handle, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandFailed(f"{path}:{number}: not a runkon event record (not UTF-8)") from None
        try:
            data = parse_event_line(line)
        except ValueError as exc:
            raise CommandFailed(f"{path}:{number}: not a runkon event record ({_why(exc)})") from None
        if data is not None:
            yield data


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}


def _why(exc: ValueError) -> str:
    """Why a line is not an event, in words (pydantic's `4 validation errors for EngineEventData`
    names its own internals): not JSON, not an object, which fields are missing or wrong."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(exc, ValidationError):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "not an event"
    missing: dict[str, list[str]] = {}
    wrong: list[str] = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if not loc:  # the line itself
            return f"{_JSON_TYPES.get(type(error.get('input')), 'a value')} in JSON, not an event object"
        if len(loc) > 2 and loc[0] == "event":  # ('event', 'StepStarted', 'step_name')
            owner, field = f"its {loc[1]} event", ".".join(loc[2:])
        else:
            owner, field = "", ".".join(loc)
        if error["type"] == "missing":
            missing.setdefault(owner, []).append(field)
        else:
            whose = f"{owner}'s {field}" if owner else field
            wrong.append(f"{whose} should {error['msg'].removeprefix('Input should ')}")
    said = [f"{owner or 'it'} has no {_and(fields)}" for owner, fields in missing.items()]
    return "; ".join(said + wrong) or "not an event"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; decoded per line to name a bad line
    except OSError as exc:
        raise UsageError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    printer, _live = make_printer(args.progress, sys.stdout, None)
    # A reader that goes away (`replay FILE | head`) does not change the exit status: the file is
    # read to its end (without pauses) and the recorded run's status is the answer.
    out = StdoutGuard("stdout closed; reading the rest of the file without printing")
    outcome = RunOutcome()
    previous: float | None = None
    seen = 0
    try:
        with handle:
            for data in _replay_records(path, handle):
                if args.speed is not None and previous is not None and not out.closed:
                    time.sleep(min(1.0, max(0.0, data.ts - previous) / args.speed))
                previous = data.ts
                seen += 1
                outcome.observe(data)
                out(lambda data=data: printer.feed(data))
                out(printer.tick)
    finally:
        out(printer.close)
    if not seen:
        raise CommandFailed(f"{path}: no events")
    if outcome.status is None:  # otherwise exit 1 with nothing said reads like "the run failed"
        print_err(
            f"{path} ends before the run did (no RunCompleted or RunCancelled): the file was cut off, "
            "or recorded while the run was still going or when its process died"
        )
    return outcome.exit_code


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def add_replay_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="print a recorded --events file like a live run",
        description=(
            "Print the events of FILE (written by `run --events`) exactly as a live run prints them. "
            "Exit status: that of the recorded run (0 completed, 1 failed or unfinished, 130 cancelled); "
            "1 also when FILE holds no events or a line that is not an event record."
        ),
    )
    p.add_argument("file", metavar="FILE")
    add_progress_args(p, events=False)
    p.add_argument(
        "--speed",
        type=positive_float,
        default=None,
        metavar="X",
        help="replay the recorded timing X times faster (X > 0; pauses capped at 1 s); default: no pauses",
    )
    p.set_defaults(handler=cmd_replay)
