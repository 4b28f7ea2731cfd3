"""Tokenizer for the `.wf` language (dsl.md §2).

One compiled regular expression does the work: every match swallows the whitespace and comments in
front of a token, then the token itself, so the Python loop runs once per token rather than once per
character. Positions are 1-based and counted in characters (code points), lines advance on `\\n`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from enum import StrEnum
from typing import NamedTuple, NoReturn

from runkon_flow.errors import WfLexError

__all__ = [
    "KEYWORDS",
    "WHITESPACE",
    "Comment",
    "LineIndex",
    "RawToken",
    "Token",
    "TokenKind",
    "comments",
    "describe_char",
    "lex",
    "tokenize",
]

U32_MAX = 4_294_967_295


# Token kinds as small ints: the parser compares them with `is`, and tuples holding only ints and
# strings are untracked by the garbage collector, which keeps lexing large files linear.
IDENT, KEYWORD, STRING, INT, LBRACE, RBRACE, LBRACKET, RBRACKET, COMMA, EQUALS, DOT, EOF = range(12)

RawToken = tuple[int, str, int]  # (kind, value, character offset of the token's first character)


class TokenKind(StrEnum):
    """Token classes of the public `Token`; the value doubles as the human spelling in messages."""

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


KIND_NAMES: tuple[TokenKind, ...] = tuple(TokenKind)  # raw int kind → TokenKind


class Token(NamedTuple):
    """One token. `value` is the keyword/identifier text, the decoded string, or the integer's
    canonical decimal text (`007` → `7`); for punctuation it is the character; for EOF it is ``""``."""

    kind: TokenKind
    value: str
    line: int
    column: int


class LineIndex:
    """Maps character offsets to 1-based (line, column); built on first use."""

    __slots__ = ("_starts", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def position(self, offset: int) -> tuple[int, int]:
        starts = self._starts
        if starts is None:
            starts = self._starts = [0, *(m.end() for m in _NEWLINE_RE.finditer(self._text))]
        line = bisect_right(starts, offset)
        return line, offset - starts[line - 1] + 1

    def offset(self, line: int, column: int) -> int:
        """The character offset of a 1-based (line, column): the inverse of `position`."""
        self.position(0)
        assert self._starts is not None
        return self._starts[line - 1] + column - 1


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
_G = _TOKEN_RE.groupindex
_G_IDENT, _G_INT, _G_STRING, _G_PUNCT, _G_EOF, _G_ERR = (
    _G[name] for name in ("ident", "int", "string", "punct", "eof", "err")
)
_NEWLINE_RE = re.compile("\n")
_COMMENT_RE = re.compile(r"//[^\n]*")
_STRING_PREFIX_RE = re.compile(r'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+')
_ESCAPE_RE = re.compile(r"\\([\s\S])")
_ESCAPES = {"n": "\n", "t": "\t"}
_PUNCT = {"{": LBRACE, "}": RBRACE, "[": LBRACKET, "]": RBRACKET, ",": COMMA, "=": EQUALS, ".": DOT}


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


def lex(text: str, source_path: str | None = None) -> list[RawToken]:
    """Lex the whole text into `(kind, value, offset)` tuples ending with one EOF token.

    The whole file is lexed even past the workflow's closing brace (§1 step 2). Raises `WfLexError`.
    """
    nul = text.find("\0")
    if nul >= 0:  # no command, argument or environment variable can carry one (issue 16)
        _raise_at(text, nul, "NUL byte (\\u{0000}) in the file; a workflow file is text", source_path)
    tokens: list[RawToken] = []
    append = tokens.append
    keywords = KEYWORDS
    punct = _PUNCT
    decode = decode_string_body
    words: dict[str, str] = {}  # one shared string per distinct identifier keeps big files small
    for match in _TOKEN_RE.finditer(text):
        group = match.lastindex
        if group == _G_IDENT:
            word = match[_G_IDENT]
            word = words.setdefault(word, word)
            append((KEYWORD if word in keywords else IDENT, word, match.start(_G_IDENT)))
        elif group == _G_PUNCT:
            char = match[_G_PUNCT]
            append((punct[char], char, match.start(_G_PUNCT)))
        elif group == _G_STRING:
            append((STRING, decode(match[_G_STRING][1:-1]), match.start(_G_STRING)))
        elif group == _G_INT:
            digits = match[_G_INT]
            value = _int_value(digits)
            if value is None:
                _raise_at(
                    text,
                    match.start(_G_INT),
                    f"Invalid integer '{digits}': number too large to fit in target type",
                    source_path,
                )
            append((INT, value, match.start(_G_INT)))  # type: ignore[arg-type]
        elif group == _G_EOF:
            append((EOF, "", match.start(_G_EOF)))
            break
        else:
            _raise_bad_char(text, match.start(_G_ERR), source_path)
    return tokens


class Comment(NamedTuple):
    """A `//` comment: where it starts and its text (with the slashes, without the newline)."""

    line: int
    column: int
    text: str


def comments(text: str) -> list[Comment]:
    """Every `//` comment of a text that lexes cleanly, in order (the formatter keeps them).

    Only the stretches between tokens are searched, so `//` inside string literals never counts.
    """
    index = LineIndex(text)
    found: list[Comment] = []
    for match in _TOKEN_RE.finditer(text):
        gap_end = match.start(match.lastindex)  # type: ignore[arg-type]
        if gap_end > match.start() and "/" in text[match.start() : gap_end]:
            for comment in _COMMENT_RE.finditer(text, match.start(), gap_end):
                found.append(Comment(*index.position(comment.start()), comment.group().rstrip(WHITESPACE)))
        if match.lastindex in (_G_EOF, _G_ERR):
            break
    return found


def tokenize(text: str, source_path: str | None = None) -> list[Token]:
    """Lex the whole text into `Token`s with 1-based line and column; the list ends with EOF.

    Raises `WfLexError` (file, line, column) for a character that starts no token, an unterminated
    string, or an integer beyond u32.
    """
    index = LineIndex(text)
    return [
        Token(KIND_NAMES[kind], value, *index.position(offset))
        for kind, value, offset in lex(text, source_path)
    ]


def _raise_at(text: str, offset: int, message: str, source_path: str | None) -> NoReturn:
    line, column = LineIndex(text).position(offset)
    raise WfLexError(message, file=source_path or None, line=line, column=column)


def _raise_bad_char(text: str, start: int, source_path: str | None) -> NoReturn:
    """The character at `start` starts no token: an unterminated string, or a stray character."""
    char = text[start]
    if char == '"':
        prefix = _STRING_PREFIX_RE.match(text, start)
        end = prefix.end() if prefix else start
        message = "Unterminated string escape" if text.endswith("\\", end) else "Unterminated string literal"
        _raise_at(text, start, message, source_path)
    line, column = LineIndex(text).position(start)
    negative = _negative_number_message(text, start) if char == "-" else None
    unexpected = f"Unexpected character '{describe_char(char)}'"
    hint = _CHAR_HINTS.get(char)
    raise WfLexError(
        negative or f"{unexpected} at line {line}, col {column}",  # the spec's words (§2.3)
        file=source_path or None,
        line=line,
        column=column,
        # after `file:line:col:`, the place is not said twice; a hint says what to write instead
        detail=negative or (f"{unexpected} (hint: {hint})" if hint else unexpected),
    )


#: What a person most likely meant by a character the language has no use for (§2.3): habits from
#: YAML, shells and C. Shown after `file:line:col:`; the spec's message itself is unchanged.
_CHAR_HINTS = {
    "'": 'strings are written in double quotes: `"…"`',
    ":": "options are written `key = value`, not `key: value`; text with a `:` goes in double quotes",
    "#": "comments start with `//`",
    "/": "comments start with `//`",
    ";": "nothing separates options or steps: remove the `;`",
}


# Options whose value is a count or a number of seconds (dsl.md §6): a `-` in front of their number is
# a person writing a negative number, not a stray character.
_NUMBER_KEYS = frozenset(
    {"retries", "max_turns", "max_iterations", "stuck_after", "min_success", "min_approvals", "max_parallel",
     "threshold", "timeout"}
)  # fmt: skip
_NEGATIVE_RE = re.compile(r"-([0-9]+)")
_KEY_BEFORE_RE = re.compile(rf"([A-Za-z_][A-Za-z0-9_\-]*){_WS_CLASS}*={_WS_CLASS}*\Z")


def _negative_number_message(text: str, start: int) -> str | None:
    """`key = -1`: the language has no negative numbers (§2.3), so the `-` is refused as every stray
    character is, but with the reason a person can act on instead of `Unexpected character '-'`."""
    number = _NEGATIVE_RE.match(text, start)
    key = _KEY_BEFORE_RE.search(text, max(0, start - 200), start)
    if number is None or key is None:
        return None
    name = key.group(1)
    if name == "threshold":
        return "negative numbers are not allowed: threshold must be 0-100"
    if name in _NUMBER_KEYS:
        return f"negative numbers are not allowed: {name} must be 0 or more"
    return f'negative numbers are not allowed: write "-{number.group(1)}" in quotes if `{name}` is text'
