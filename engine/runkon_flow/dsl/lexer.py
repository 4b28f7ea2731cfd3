"""Tokenizer for the `.wf` language (dsl.md §2).

One compiled regular expression does the work: every match swallows the whitespace and comments in
front of a token, then the token itself, so the Python loop runs once per token rather than once per
character. Positions are 1-based and counted in characters (code points), lines advance on `\\n`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

from runkon_flow.errors import WfLexError

__all__ = [
    "KEYWORDS",
    "WHITESPACE",
    "Token",
    "TokenKind",
    "describe_char",
    "tokenize",
]

U32_MAX = 4_294_967_295


class TokenKind(StrEnum):
    """Token classes; the value doubles as the human spelling used in error messages."""

    IDENT = "identifier"
    KEYWORD = "keyword"
    STRING = "string"
    INT = "integer"
    LBRACE = "{"
    RBRACE = "}"
    LBRACKET = "["
    RBRACKET = "]"
    COMMA = ","
    EQUALS = "="
    DOT = "."
    EOF = "end of file"


class Token(NamedTuple):
    """One token. `value` is the keyword/identifier text, the decoded string, or the integer's
    canonical decimal text (`007` → `7`); for punctuation it is the character; for EOF it is ``""``."""

    kind: TokenKind
    value: str
    line: int
    column: int


# The 17 hard keywords of §2.6 (case-sensitive).
KEYWORDS: frozenset[str] = frozenset(
    {
        "workflow", "meta", "inputs", "call", "if", "unless", "while", "do", "parallel",
        "gate", "always", "script", "foreach", "required", "default", "description", "boolean",
    }
)  # fmt: skip

# Unicode White_Space (Rust `char::is_whitespace`), deliberately NOT Python's `str.isspace`, which also
# accepts U+001C..U+001F. U+FEFF (byte-order mark) is not whitespace (§2.1).
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WS_CLASS = "[" + re.escape(WHITESPACE) + "]"

# Whitespace and comments are consumed possessively so the engine can never backtrack into a comment and
# lex its text; `err` then sees exactly the first character that starts no token.
_TOKEN_RE = re.compile(
    rf"(?:{_WS_CLASS}++|//[^\n]*+)*+"
    r"(?:"
    r"(?P<ident>[A-Za-z_][A-Za-z0-9_\-]*+)"
    r"|(?P<int>[0-9]++)"
    r'|(?P<string>"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+")'
    r"|(?P<punct>[{}\[\],=.])"
    r"|(?P<eof>\Z)"
    r"|(?P<err>[\s\S])"
    r")"
)
_STRING_PREFIX_RE = re.compile(r'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+')
_ESCAPE_RE = re.compile(r"\\([\s\S])")
_ESCAPES = {"n": "\n", "t": "\t"}
_PUNCT = {
    "{": TokenKind.LBRACE,
    "}": TokenKind.RBRACE,
    "[": TokenKind.LBRACKET,
    "]": TokenKind.RBRACKET,
    ",": TokenKind.COMMA,
    "=": TokenKind.EQUALS,
    ".": TokenKind.DOT,
}


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _ESCAPES.get(char, char)


def decode_string_body(body: str) -> str:
    """Apply §2.4 escapes: `\\n`, `\\t`; any other `\\c` gives `c` (so `\\"` and `\\\\` work too)."""
    return _ESCAPE_RE.sub(_unescape, body) if "\\" in body else body


def describe_char(char: str) -> str:
    """A character as it appears in messages: itself when printable, else a `\\u{XXXX}` escape
    (an invisible BOM or NUL in a message would be useless)."""
    if char.isprintable() and char not in WHITESPACE:
        return char
    return f"\\u{{{ord(char):04X}}}"


def _int_value(digits: str) -> str | None:
    """Canonical decimal text of an INT token, or None when it does not fit in a u32."""
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > 10 or int(stripped) > U32_MAX:
        return None
    return stripped


def tokenize(text: str, source_path: str | None = None) -> list[Token]:
    """Lex the whole text (§1 step 2: an error anywhere fails, even after the workflow's `}`).

    The list always ends with one EOF token. Raises `WfLexError` with file, line and column.
    """
    tokens: list[Token] = []
    append = tokens.append
    keywords = KEYWORDS
    line = 1
    line_start = 0  # offset of the first character of the current line
    prev = 0  # offset up to which newlines have been counted
    ident_kind, keyword_kind = TokenKind.IDENT, TokenKind.KEYWORD
    for match in _TOKEN_RE.finditer(text):
        group = match.lastgroup
        start = match.start(group)  # type: ignore[arg-type]
        newlines = text.count("\n", prev, start)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", prev, start) + 1
        prev = start
        column = start - line_start + 1
        if group == "ident":
            word = match.group("ident")
            append(Token(keyword_kind if word in keywords else ident_kind, word, line, column))
        elif group == "punct":
            char = match.group("punct")
            append(Token(_PUNCT[char], char, line, column))
        elif group == "string":
            append(Token(TokenKind.STRING, decode_string_body(match.group("string")[1:-1]), line, column))
        elif group == "int":
            digits = match.group("int")
            value = _int_value(digits)
            if value is None:
                raise WfLexError(
                    f"Invalid integer '{digits}': number too large to fit in target type",
                    file=source_path or None,
                    line=line,
                    column=column,
                )
            append(Token(TokenKind.INT, value, line, column))
        elif group == "eof":
            append(Token(TokenKind.EOF, "", line, column))
            break
        else:
            _raise_bad_char(text, start, line, column, source_path)
    return tokens


def _raise_bad_char(text: str, start: int, line: int, column: int, source_path: str | None) -> None:
    """The character at `start` starts no token: an unterminated string, or a stray character."""
    char = text[start]
    file = source_path or None
    if char == '"':
        prefix = _STRING_PREFIX_RE.match(text, start)
        end = prefix.end() if prefix else start
        message = "Unterminated string escape" if text.endswith("\\", end) else "Unterminated string literal"
        raise WfLexError(message, file=file, line=line, column=column)
    raise WfLexError(
        f"Unexpected character '{describe_char(char)}' at line {line}, col {column}",
        file=file,
        line=line,
        column=column,
    )
