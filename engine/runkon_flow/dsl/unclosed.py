"""Which `{` lost its `}` (a hint for the parser's errors).

A missing `}` is reported where the parser notices it, far from the block that lost its brace: at
the last line (`expected … or `}` …, found end of file`), or earlier, at the next step of an enclosing
block or where a `while` meets a `}`. This module looks at the tokens again — only then, never while
parsing a file that is correct — and names the `{` that is not closed: its line and column and what it
opens (`script s`, `workflow b`, the `env` map). Before the end of the file it says something only when
the indentation does (`open_brace_hint`): there the error is most often about something else.

Braces match by count, so a missing `}` makes the braces after it close the wrong blocks, and the one
left open at the end is often the outermost (the workflow's). The indentation says more: a line indented
like an enclosing block while a block is still open (a step keyword at the workflow's body indent while
a step's braces are open, or a `}` left of the block's own first line) is where that block's `}` was
most likely forgotten. That block is named when there is one; otherwise the innermost `{` still open.
"""

from __future__ import annotations

from runkon_flow.dsl.lexer import (
    DOT,
    EOF,
    EQUALS,
    IDENT,
    INT,
    KEYWORD,
    LBRACE,
    RBRACE,
    STRING,
    LineIndex,
    RawToken,
)

__all__ = ["open_brace_hint", "unclosed_brace_hint"]

# The words that begin something written with braces (§4).
_OPENERS = frozenset(
    {"workflow", "meta", "inputs", "call", "if", "unless", "while", "do", "parallel", "gate", "always",
     "script", "foreach"}
)  # fmt: skip
_PHRASE = (IDENT, KEYWORD, STRING, INT, DOT)


def _opener(toks: list[RawToken], brace: int) -> tuple[str, int]:
    """What the `{` at token `brace` opens, as a message names it, and the token its phrase starts at."""
    if brace >= 2 and toks[brace - 1][0] is EQUALS:
        return f"the `{toks[brace - 2][1]}` map", brace - 2
    j = brace - 1
    while j >= 0 and brace - j <= 6 and toks[j][0] in _PHRASE:
        if toks[j][0] is KEYWORD and toks[j][1] in _OPENERS:
            if toks[j][1] == "workflow" and j > 0 and toks[j - 1][0] is KEYWORD and toks[j - 1][1] == "call":
                j -= 1
            words = ""
            for tok in toks[j:brace]:
                text = f'"{tok[1]}"' if tok[0] is STRING else tok[1]
                words += text if tok[0] is DOT or words.endswith(".") or not words else " " + text
            return f"`{words}`", j
        j -= 1
    return "a block", brace


def _positions(toks: list[RawToken], lines: LineIndex) -> tuple[list[int], list[int], dict[int, int]]:
    """Each token's line and column, and the first token of every line (a line inside a multi-line
    string, or only a comment, has none)."""
    first_of_line: dict[int, int] = {}
    line_of: list[int] = []
    column_of: list[int] = []
    for index, tok in enumerate(toks):
        line, column = lines.position(tok[2])
        line_of.append(line)
        column_of.append(column)
        first_of_line.setdefault(line, index)
    return line_of, column_of, first_of_line


def open_brace_hint(toks: list[RawToken], lines: LineIndex, at: int) -> str | None:
    """The hint for an error before the end of the file, at token `at`: a `{` whose contents the
    indentation says ended before its `}` by count — `call a {` with `retries = 1`, then `call b`
    back at the call's own indent, fails at `call b`; an `if` that lost its `}` fails many lines on,
    where a `while` meets the `}` meant for the workflow — or None. Only the indentation can say so
    here (an error in the middle of a file is most often about something else), so when it says
    nothing, nothing is hinted."""
    positions = _positions(toks, lines)
    found = _forgotten(toks, positions, at)
    if found is None:
        return None
    brace, line = found
    name, _ = _opener(toks, brace)
    line_of, column_of, _ = positions
    return (
        f"is the `{{` of {name} at line {line_of[brace]}, column {column_of[brace]} closed? Judging by "
        f"the indentation, its `}}` is missing before line {line}"
    )


def unclosed_brace_hint(toks: list[RawToken], lines: LineIndex) -> str | None:
    """The hint for an error at the end of the file: which `{` is not closed, or None if all are."""
    positions = _positions(toks, lines)
    line_of, column_of, _ = positions
    stack = _open_at(toks, len(toks) - 1)
    if not stack:
        return None
    found = _forgotten(toks, positions, len(toks) - 1)  # the EOF token
    if found is not None:
        brace, line = found
        name, _ = _opener(toks, brace)
        where = f"line {line_of[brace]}, column {column_of[brace]}"
        return (
            f"the `{{` of {name} at {where} is not closed: judging by the indentation, its `}}` is "
            f"missing before line {line}"
        )
    brace = stack[-1]
    name, _ = _opener(toks, brace)
    more = f" (nor are the {len(stack) - 1} blocks around it)" if len(stack) > 2 else ""
    more = " (nor is the block around it)" if len(stack) == 2 else more
    return f"the `{{` of {name} at line {line_of[brace]}, column {column_of[brace]} is not closed{more}"


def _open_at(toks: list[RawToken], end: int) -> list[int]:
    """The `{`s still open, by count, before token `end`, outermost first."""
    stack: list[int] = []
    for index in range(end):
        if toks[index][0] is LBRACE:
            stack.append(index)
        elif toks[index][0] is RBRACE and stack:
            stack.pop()
    return stack


def _forgotten(
    toks: list[RawToken], positions: tuple[list[int], list[int], dict[int, int]], end: int
) -> tuple[int, int] | None:
    """(the `{`, the line before which its `}` is missing) for the block whose contents the
    indentation says ended earliest, among the `{`s before token `end` — each with the `}` that
    closes it by count, or `end` if none does — or None when the indentation says nothing."""
    line_of, column_of, first_of_line = positions
    closer: dict[int, int] = {}
    stack: list[int] = []
    for index in range(end):
        if toks[index][0] is LBRACE:
            stack.append(index)
        elif toks[index][0] is RBRACE and stack:
            closer[stack.pop()] = index
    for brace in stack:
        closer[brace] = end
    best: tuple[int, int, int] | None = None  # (line where the `}` is missing, -brace, brace)
    for brace, close in closer.items():
        line = _dedent_line(brace, close, toks, line_of, column_of, first_of_line)
        if line is not None and (best is None or (line, -brace) < best[:2]):
            best = (line, -brace, brace)
    return None if best is None else (best[2], best[0])


def _dedent_line(
    brace: int,
    close: int,
    toks: list[RawToken],
    line_of: list[int],
    column_of: list[int],
    first_of_line: dict[int, int],
) -> int | None:
    """The first line between the `{` at `brace` and the `}` that closes it by count (`close`) that is
    indented like an enclosing block — a `}` left of the line the block starts on, or anything else no
    further right than that line — or None. A block whose contents are not indented says nothing."""
    _, start = _opener(toks, brace)
    indent = column_of[first_of_line[line_of[start]]]
    inline = brace + 1 < close and line_of[brace + 1] == line_of[brace]  # contents after the `{`
    checked_flat = inline
    for line in range(line_of[brace] + 1, line_of[close] + 1):
        index = first_of_line.get(line)
        if index is None or index <= brace or index > close or toks[index][0] is EOF:
            continue
        tok, column = toks[index], column_of[index]
        if tok[0] is RBRACE:
            if column < indent:
                return line
            continue
        if not checked_flat:  # the first line of contents: not indented → no indentation to go by
            checked_flat = True
            if column <= indent:
                return None
            continue
        if column <= indent:
            return line
    return None
