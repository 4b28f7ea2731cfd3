"""Which `{` a file that ends too early left open (a hint for the parser's end-of-file errors).

A missing `}` is found only when the file ends: the parser's `expected … or `}` …, found end of file`
is reported at the last line, far from the block that lost its brace. This module looks at the tokens
again — only then, never while parsing a file that is correct — and names the `{` that is not closed:
its line and column and what it opens (`script s`, `workflow b`, the `env` map).

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

__all__ = ["unclosed_brace_hint"]

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


def unclosed_brace_hint(toks: list[RawToken], lines: LineIndex) -> str | None:
    """The hint for an error at the end of the file: which `{` is not closed, or None if all are."""
    # the first token of every line (a line inside a multi-line string, or only a comment, has none)
    first_of_line: dict[int, int] = {}
    line_of: list[int] = []
    column_of: list[int] = []
    for index, tok in enumerate(toks):
        line, column = lines.position(tok[2])
        line_of.append(line)
        column_of.append(column)
        first_of_line.setdefault(line, index)
    end = len(toks) - 1  # the EOF token
    # each `{` with the token that closes it by count (`end` for one never closed)
    closer: dict[int, int] = {}
    stack: list[int] = []
    for index, tok in enumerate(toks):
        if tok[0] is LBRACE:
            stack.append(index)
        elif tok[0] is RBRACE and stack:
            closer[stack.pop()] = index
    if not stack:
        return None
    for brace in stack:
        closer[brace] = end

    best: tuple[int, int, int] | None = None  # (line where the `}` is missing, -brace, brace)
    for brace, close in closer.items():
        line = _dedent_line(brace, close, toks, line_of, column_of, first_of_line)
        if line is not None and (best is None or (line, -brace) < best[:2]):
            best = (line, -brace, brace)
    if best is not None:
        brace = best[2]
        name, _ = _opener(toks, brace)
        where = f"line {line_of[brace]}, column {column_of[brace]}"
        return (
            f"the `{{` of {name} at {where} is not closed: judging by the indentation, its `}}` is "
            f"missing before line {best[0]}"
        )
    brace = stack[-1]
    name, _ = _opener(toks, brace)
    more = f" (nor are the {len(stack) - 1} blocks around it)" if len(stack) > 2 else ""
    more = " (nor is the block around it)" if len(stack) == 2 else more
    return f"the `{{` of {name} at line {line_of[brace]}, column {column_of[brace]} is not closed{more}"


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
