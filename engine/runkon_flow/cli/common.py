"""What every `runkon-flow` command shares: the program name, exit statuses and the two error
kinds, the `file:line:col` diagnostic with its source line and caret, reading and naming `.wf`
files, and small argument parsers.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import shutil
import stat
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from runkon_flow.dsl.loading import WorkflowDirError, list_workflow_files
from runkon_flow.errors import (
    FlowError,
    SourceLocation,
    WfError,
)
from runkon_flow.humanize import safe_text

PROG = "runkon-flow"
EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 130
EXIT_USAGE = 2  # a `UsageError`: the command line is wrong


class UsageError(FlowError):
    """The command line itself is wrong (unknown path, bad option value): exit status 2."""


class CommandFailed(FlowError):
    """The command was understood but could not be carried out (exit 1); `str()` is the message."""


def render_diagnostic(
    location: SourceLocation,
    message: str,
    source: str | None,
    *,
    severity: str | None = None,
) -> str:
    """`file:line:col: message`, then the offending source line and a caret under the column."""
    label = f"{severity}: " if severity else ""
    lines = [f"{location.render()}: {label}{message}"]
    if source is None or location.line is None:
        return "\n".join(lines)
    source_lines = source.split("\n")
    if not 1 <= location.line <= len(source_lines):
        return "\n".join(lines)
    text = source_lines[location.line - 1].rstrip("\r")
    gutter = str(location.line)
    lines.append(f" {gutter} | {text}")
    if location.column is not None and location.column >= 1:
        pad = "".join("\t" if ch == "\t" else " " for ch in text[: location.column - 1])
        pad += " " * max(0, location.column - 1 - len(text))
        lines.append(f" {' ' * len(gutter)} | {pad}^")
    return "\n".join(lines)


def print_line(stream: TextIO, text: str) -> None:
    """A message line (an error, a diagnostic): shown safely, as `print_err`, and dropped as
    quietly when no one reads `stream` any more."""
    write_or_silence(stream, safe_text([text]) + "\n")


def read_source(path: Path) -> str:
    """The file's text (UTF-8, exactly as stored); `WfError` (`cannot read file: …`) if it cannot
    be read — the wording every command uses for an unreadable `.wf` file."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise WfError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise WfError(f"cannot read file: not valid UTF-8 ({exc.reason})", file=str(path)) from None


def as_named(file: str, dirs: Sequence[Path]) -> str:
    """A workflow file as the user named it: under the directory (`--dir`, WORKFLOW's or FILE's
    folder) it was found in, spelled the way that directory was typed (`wf/typo.wf`,
    `../bad/syntax.wf`); a file outside them keeps its own path."""
    real = Path(file).resolve()
    for directory in dirs:
        with contextlib.suppress(ValueError):
            return str(directory / real.relative_to(directory.resolve()))
    return file


@dataclass(frozen=True)
class Target:
    """One `.wf` file named on the command line, with the directory its references resolve in."""

    path: Path
    workflow_dir: Path
    explicit_file: bool


def expand_paths(
    raw_paths: Sequence[str], skipped: list[str] | None = None, verb: str = "checks"
) -> list[Target]:
    """Files stay files; a directory means every `.wf` in it; duplicates are dropped.
    Raises `UsageError` for bad paths, and for a file whose name ends in another suffix than
    `.wf` (`items.yaml`: not parsed as a workflow to fail on its first character). A file with no
    suffix is taken as a workflow: `/dev/stdin`, `<(git show HEAD:flow.wf)`. `skipped`: such an
    argument's message is added to it instead and the others are still expanded (`validate
    flows/*` over a folder with a README.md checks every `.wf` given). `verb`: what the command
    does to a directory's files, for that message (`fmt` formats them)."""
    targets: list[Target] = []
    for raw in raw_paths:
        try:
            targets.extend(_targets_of(raw, verb))
        except UsageError as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))
    unique: dict[Path, Target] = {}
    for target in targets:  # a file named twice (or also through its directory) is handled once
        unique.setdefault(target.path.resolve(), target)
    return list(unique.values())


def _targets_of(raw: str, verb: str) -> list[Target]:
    path = Path(raw)
    if path.is_dir():
        try:
            files = list_workflow_files(path)
        except WorkflowDirError as exc:
            raise UsageError(str(exc)) from None
        if not files:
            raise UsageError(f"no .wf files in directory {raw}")
        return [Target(f, path, False) for f in files]
    if path.exists():
        if path.suffix and path.suffix != ".wf":
            raise UsageError(
                f"{raw} is not a workflow file (its name does not end in .wf); "
                f"a directory {verb} every .wf file in it"
            )
        return [Target(path, path.parent, True)]
    raise UsageError(f"no such file or directory: {raw}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def terminal_width() -> int | None:
    """The terminal's width when stdout is one (a table may drop a column to fit); None when
    piped: scripts and files get every column."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def fitted(line: str, width: int | None, indent: str = "    ") -> list[str]:
    """`line` wrapped at words (not at hyphens) to a terminal's `width`, the lines after the first
    led by `indent`: a terminal breaks a line one column over its width wherever that falls. A
    text that spans lines (a prompt may) keeps its own breaks, each line after the first led by
    `indent` too. Piped (`width` None): as it is. `show` and `gates` fit prompts with it."""
    if width is None:
        return [line]
    first, *more = line.splitlines() or [line]
    fitted_lines: list[str] = []
    for part in (first, *(indent + m.strip() for m in more if m.strip())):
        if len(part) <= width:
            fitted_lines.append(part)
        else:
            fitted_lines += textwrap.wrap(part, width, subsequent_indent=indent, break_on_hyphens=False) or [
                part
            ]
    return fitted_lines


def whole_command(line: str, width: int | None, head: str, command: str, indent: str) -> list[str]:
    """`line`, which holds a command to paste, as it is when it fits the terminal's `width` (or
    piped); else `head` (saying what `line` said beside the command) and the command alone on the
    next line, led by `indent` — a terminal must not break a command where it reaches the edge."""
    if width is None or len(line) <= width:
        return [line]
    return [head, f"{indent}{command}"]


def print_err(text: str) -> None:
    """A message on stderr. Shown safely (`humanize.safe_text`: no escape sequence, control
    characters made visible): messages quote what the CLI did not write — a `.wf` file's source
    line under a diagnostic, an item command's stderr, an error a plug-in raised. A stderr no one
    reads any more (`reader_gone_error`) takes this and every later message quietly."""
    write_or_silence(sys.stderr, safe_text([text]) + "\n")


def reader_gone_error(exc: BaseException) -> bool:
    """Whether a failed write means no one reads the stream any more: a closed pipe (EPIPE) or a
    terminal that hung up (EIO: its window was closed, its SSH connection dropped)."""
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EIO)


def silence(stream: TextIO) -> None:
    """Point `stream`'s file descriptor at /dev/null: what is still buffered, and Python's flush
    at exit, then go nowhere instead of failing again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = open(os.devnull, "w")  # noqa: SIM115 - lives until the process exits
        os.dup2(devnull.fileno(), stream.fileno())


def write_or_silence(stream: TextIO, text: str) -> None:
    """`text` written to `stream` and flushed; if its reader is gone (`reader_gone_error`), the
    stream is silenced and the text dropped — a message is no reason to stop a command."""
    try:
        stream.write(text)
        stream.flush()
    except OSError as exc:
        if not reader_gone_error(exc):
            raise
        silence(stream)


class StdoutGuard:
    """Printing to a stdout whose reader went away (`run … | head -2`, `validate DIR | head -1`, a
    terminal closed under it): the command's outcome is its own, not the pipe's. The first write
    that fails so (`reader_gone_error`: EPIPE, or EIO from a hung-up terminal) stops the printing
    (stdout then points at /dev/null, so Python's exit flush cannot fail either), says `note` once
    on stderr, and the command goes on to its end and its usual exit status. Every command that
    prints to stdout prints through one."""

    def __init__(self, note: str = "stdout closed; the rest of the output is not printed") -> None:
        self.closed = False
        self._note = note

    def __call__(self, action: Callable[[], object]) -> None:
        if self.closed:
            return
        try:
            action()
        except OSError as exc:
            if not reader_gone_error(exc):
                raise
            self._gone()

    def reader_gone(self) -> bool:
        """Whether stdout's reader has gone away, asked of the pipe without writing to it: a command
        that waits between its lines (`watch ID | grep -m1 X`) learns it now, not at its next
        line minutes later. Once gone, it is handled as a failed write is (the note said once)."""
        if not self.closed and _reader_closed(sys.stdout):
            self._gone()
        return self.closed

    def _gone(self) -> None:
        self.closed = True
        silence(sys.stdout)
        with contextlib.suppress(OSError, ValueError):
            print_err(f"{PROG}: {self._note}")

    def print(self, text: str) -> None:
        """`text` and a newline, flushed at once: a closed pipe shows here, not at exit."""
        self(lambda: print(text, flush=True))


def _reader_closed(stream: TextIO) -> bool:
    """True when `stream` is a pipe or socket whose reading end is closed, asked without writing
    and without waiting. Linux reports a closed reader as POLLERR (checked here); BSDs and macOS
    may say POLLHUP instead, and only for the events asked for, hence POLLOUT (not checked on
    those systems). A terminal, a file, or a system without poll() is never taken as closed."""
    poll = getattr(select, "poll", None)
    try:
        fd = stream.fileno()
        if poll is None or not (stat.S_ISFIFO(mode := os.fstat(fd).st_mode) or stat.S_ISSOCK(mode)):
            return False
        poller = poll()
        poller.register(fd, select.POLLOUT)
        return any(revents & (select.POLLERR | select.POLLHUP) for _, revents in poller.poll(0))
    except (OSError, ValueError):
        return False


def plain(exc: BaseException) -> str:
    """An error's message without the engine's `workflow error: ` style prefix."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc)
