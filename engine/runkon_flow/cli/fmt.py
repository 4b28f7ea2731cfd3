"""`runkon-flow fmt`: rewrite `.wf` files in the canonical layout, never changing their meaning."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from runkon_flow.cli.common import (
    EXIT_USAGE,
    PROG,
    StdoutGuard,
    UsageError,
    expand_paths,
    print_line,
    read_source,
    render_diagnostic,
)
from runkon_flow.dsl.formatter import format_workflow
from runkon_flow.dsl.parser import parse_with_comments, parse_workflow
from runkon_flow.errors import (
    SourceLocation,
    WfError,
)
from runkon_flow.humanize import safe_text


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file's content without ever leaving it half-written; keeps its permissions."""
    real = path.resolve()
    mode = real.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_BARE_NEWLINE = re.compile(r"(?<!\r)\n")


def _line_endings_of(source: str, formatted: str) -> str:
    """`formatted` with the line endings `source` uses (its first line's): a file written on
    Windows stays CRLF — the layout is ours to set, its line endings are not (`fmt --check`
    flagged every CRLF file, and `fmt` rewrote each line of it). A `\r\n` already in the text (a
    string that spans lines) is kept as it is; the meaning check after this covers the result."""
    first = source.find("\n")
    if first <= 0 or source[first - 1] != "\r":
        return formatted
    return _BARE_NEWLINE.sub("\r\n", formatted)


_LINE = re.compile(r"[^\n]*\n|[^\n]+$")  # split at `\n` only (not at `\f` or U+2028, as splitlines)


def _diff_lines(text: str) -> list[str]:
    """`text`'s lines for a diff, each ending in `\n` (a CRLF line's `\r` is not shown: the diff
    is read on a terminal, where a `\r` is at best a `^M`); a last line without a newline says so
    as `diff -u` does."""
    lines = [line[:-2] + "\n" if line.endswith("\r\n") else line for line in _LINE.findall(text)]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def unified_diff(path: Path, source: str, formatted: str) -> str:
    """What `fmt` would change in `path`, as a unified diff (`--- PATH (original)` / `+++ PATH
    (formatted)`, as `black --diff`). Line endings are not shown; a file whose only change is its
    line endings (a CRLF file with some LF lines, all made CRLF) gets a one-line note instead."""
    diff = "".join(
        difflib.unified_diff(
            _diff_lines(source),
            _diff_lines(formatted),
            fromfile=str(path),
            tofile=str(path),
            fromfiledate="(original)",
            tofiledate="(formatted)",
        )
    )
    return diff or f"{path}: only its line endings would change (to CRLF, as its first line's)\n"


STDIN = "-"


def _format_stdin(args: argparse.Namespace) -> int:
    """`fmt -`: the text on stdin, formatted, on stdout — whole, changed or not, as `black -` and
    `ruff format -` do, so an editor can pipe its buffer through it. A text that does not parse
    prints nothing on stdout (the editor keeps its buffer) and its diagnostics on stderr, named
    `--stdin-filename` when given. `--check` and `--diff` say what would change, as for files."""
    name = args.stdin_filename or "<stdin>"
    raw = sys.stdin.buffer.read()
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        print_line(sys.stderr, f"{name}: cannot read: not valid UTF-8 ({exc.reason})")
        return 1
    try:
        wf, comments = parse_with_comments(source, name)
        formatted = _line_endings_of(source, format_workflow(wf, comments))
    except WfError as exc:
        print_line(
            sys.stderr, render_diagnostic(SourceLocation(name, exc.line, exc.column), exc.detail, source)
        )
        return 1
    if formatted != source and parse_workflow(formatted, name) != wf:
        print_line(
            sys.stderr, f"{name}: left unchanged: formatting would change its meaning (a formatter bug)"
        )
        formatted = source
    out = StdoutGuard()
    changed = formatted != source
    if args.diff:
        if changed:
            out.print(unified_diff(Path(name), source, formatted).removesuffix("\n"))
    elif args.check:
        if changed:
            out.print(f"would reformat {name}")
    else:
        out(lambda: (sys.stdout.write(formatted), sys.stdout.flush()))
        return 0
    return 1 if changed else 0


def _not_rewritable(path: Path) -> str | None:
    """Why `fmt` cannot rewrite `path` in place, if it cannot: `/dev/stdin` or `<(…)` is a pipe,
    not a file — validating one works, rewriting it cannot (`fmt -` formats stdin to stdout)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # the write itself says why
    if stat.S_ISREG(mode):
        return None
    return (
        f"{path}: not a regular file, so not rewritten in place (`runkon-flow fmt -` formats stdin to stdout)"
    )


def cmd_fmt(args: argparse.Namespace) -> int:
    if STDIN in args.paths:
        if len(args.paths) > 1:
            raise UsageError("`-` (stdin) cannot be given with other paths")
        return _format_stdin(args)
    if args.stdin_filename:
        raise UsageError("--stdin-filename goes with `-` (formatting stdin)")
    skipped: list[str] = []  # arguments that are not workflows: said last, as `validate` does
    targets = expand_paths(args.paths, skipped, verb="formats")
    out, err = StdoutGuard(), sys.stderr  # `fmt DIR | head -1` still formats every file
    failed = changed = False
    for target in targets:
        path = target.path
        source: str | None = None
        try:
            source = read_source(path)
            wf, comments = parse_with_comments(source, str(path))
            formatted = _line_endings_of(source, format_workflow(wf, comments))
        except WfError as exc:
            failed = True
            location = SourceLocation(str(path), exc.line, exc.column)
            print_line(err, render_diagnostic(location, exc.detail, source))
            print_line(err, f"{path}: left unchanged")
            continue
        if formatted == source:
            continue
        if parse_workflow(formatted, str(path)) != wf:
            failed = True
            print_line(err, f"{path}: left unchanged: formatting would change its meaning (a formatter bug)")
            continue
        changed = True
        if args.diff:
            diff = unified_diff(path, source, formatted).removesuffix("\n")
            # On a terminal, a string's escape sequence is shown as `validate` shows source lines
            # (not acted on); piped, the diff is exact, for `patch`/`git apply`.
            out.print(safe_text(diff.split("\n")) if sys.stdout.isatty() else diff)
            continue
        if args.check:
            out.print(f"would reformat {path}")
            continue
        why_not = _not_rewritable(path)
        if why_not is not None:
            failed = True
            print_line(err, why_not)
            continue
        try:
            _write_atomically(path, formatted)
        except OSError as exc:
            failed = True
            print_line(err, f"{path}: cannot write: {exc.strerror or exc}")
            continue
        out.print(f"reformatted {path}")
    for problem in skipped:  # last, beside the exit status they explain
        print_line(err, f"{PROG} fmt: error: {problem}")
    # As `validate`: what the workflows gave (a file left unchanged, or one that would change
    # under --check/--diff) comes first (1); else an argument that is not a workflow is still a
    # command-line mistake a script must see (2). Docs: docs/validation.md, "fmt".
    if failed or ((args.check or args.diff) and changed):
        return 1
    return EXIT_USAGE if skipped else 0


def add_fmt_parser(sub: Any) -> None:
    p = sub.add_parser(
        "fmt",
        help="rewrite .wf files in the canonical layout",
        description=(
            "Rewrite .wf files in the canonical layout (only files whose text changes are touched). "
            "Comments are kept with what they were written next to: an end-of-line comment stays at "
            "the end of its line, a comment on its own line stays before the item below it. "
            "A file that does not parse is reported and left alone."
        ),
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help=".wf files or directories of them; `-`: stdin to stdout"
    )
    p.add_argument("--check", action="store_true", help="only report files that would change (exit 1 if any)")
    p.add_argument(
        "--diff",
        action="store_true",
        help="print a unified diff of what would change, touching nothing (exit 1 if any file would change)",
    )
    p.add_argument(
        "--stdin-filename",
        metavar="NAME",
        help="with `-`: the file name diagnostics give (an editor passes the buffer's file)",
    )
    p.set_defaults(handler=cmd_fmt)
