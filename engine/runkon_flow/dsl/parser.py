"""Recursive-descent parser for the `.wf` language (dsl.md §3–§7, grammar in §4).

`parse_workflow` lexes the whole text, parses exactly one `workflow NAME { … }` from the first token and
ignores whatever follows its closing brace (§1). Every node gets the position of its first token. Option
values are checked while parsing, with the spec's option-level wording, and every mistake raises a
`WfParseError` (or `WfLexError`) carrying file, line and column — never any other exception.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from runkon_flow.dsl.ast import (
    AgentRef,
    AlwaysNode,
    BoolInputCondition,
    CallNode,
    CallWorkflowNode,
    DoNode,
    DoWhileNode,
    ForEachNode,
    GateNode,
    IfNode,
    InputDecl,
    OnFailAgent,
    OnFailContinue,
    ParallelNode,
    ParseNote,
    ScriptNode,
    StepMarkerCondition,
    UnlessNode,
    WhileNode,
    WorkflowDef,
)
from runkon_flow.dsl.durations import (
    U32_MAX,
    U64_MAX,
    DurationError,
    call_timeout_problem,
    gate_timeout_hint,
    parse_gate_timeout,
    unsigned_error,
)
from runkon_flow.dsl.layout import Anchor, AttachedComments, EntrySpan, LayoutRecorder, OptionSpan
from runkon_flow.dsl.lexer import (
    COMMA,
    DOT,
    EOF,
    EQUALS,
    IDENT,
    INT,
    KEYWORD,
    LBRACE,
    LBRACKET,
    RBRACE,
    RBRACKET,
    STRING,
    LineIndex,
    RawToken,
    lex,
)
from runkon_flow.dsl.unclosed import open_brace_hint, unclosed_brace_hint
from runkon_flow.errors import WfParseError
from runkon_flow.humanize import did_you_mean

__all__ = [
    "AGENT_KEYWORDS",
    "CALL_TIMEOUT",
    "KEY_KEYWORDS",
    "MAX_NESTING_DEPTH",
    "SOFT_KEYWORDS",
    "parse_file",
    "parse_with_comments",
    "parse_workflow",
]

# §2.6: keywords usable as names and bare values (every keyword except `meta` and `do`) …
SOFT_KEYWORDS: frozenset[str] = frozenset(
    {
        "required", "default", "description", "boolean", "call", "if", "unless", "while", "parallel",
        "gate", "always", "script", "foreach", "workflow", "inputs",
    }
)  # fmt: skip
# … as keys of key/value pairs …
KEY_KEYWORDS: frozenset[str] = frozenset({"required", "default", "description", "if", "workflow", "inputs"})
# … and as agent names after `call`.
AGENT_KEYWORDS: frozenset[str] = frozenset({"required", "default", "description"})

# `ParseNote.code` of a call `timeout` the engine will refuse when the step runs (dsl.md §3.5).
CALL_TIMEOUT = "call-timeout"

# Blocks nested deeper than this are refused with a clear error instead of exhausting Python's stack.
MAX_NESTING_DEPTH = 200


_TRIGGERS = ("manual", "pr", "scheduled")
_PLAIN_DO_KEYS = ("output", "with")

# The option keys each construct reads (dsl.md §5.2, §6). Any other key is accepted and ignored, as
# §3.6 says; the parser notes it so `validate` can warn (a typo such as `retires = 2` does nothing).
_META_KEYS = ("title", "description", "trigger", "targets", "group")
_SHARED_KEYS = ("retries", "on_fail", "as")
_CALL_KEYS = (*_SHARED_KEYS, "output", "with", "plugin_dirs", "timeout", "max_turns")
_CALL_WORKFLOW_KEYS = _SHARED_KEYS
_LOOP_KEYS = ("max_iterations", "stuck_after", "on_max_iter")
_PARALLEL_KEYS = ("fail_fast", "min_success", "output", "with")
_PARALLEL_CALL_KEYS = ("output", "with", "if", "retries")
_GATE_KEYS = ("prompt", "min_approvals", "mode", "timeout", "on_timeout", "as", "options")
_QUALITY_GATE_KEYS = ("source", "threshold", "on_fail", "as")
_SCRIPT_KEYS = ("run", "env", "timeout", *_SHARED_KEYS)
# what other tools call a required key (GitHub Actions, Make, Docker …): `missing_key` says which
_OTHER_NAMES = {"run": ("command", "cmd", "exec", "shell", "script", "sh", "bash")}
_FOREACH_KEYS = (
    "over", "max_parallel", "workflow", "scope", "filter", "inputs", "ordered", "on_cycle", "on_child_fail",
)  # fmt: skip
# Every option name: a bare value followed by one (`over = static ordered`) is an option written
# without its `= value`, not unquoted text (`_Parser.bare_words`).
_ALL_OPTION_KEYS = frozenset(
    (*_META_KEYS, *_CALL_KEYS, *_LOOP_KEYS, *_PARALLEL_KEYS, *_PARALLEL_CALL_KEYS, *_GATE_KEYS,
     *_QUALITY_GATE_KEYS, *_SCRIPT_KEYS, *_FOREACH_KEYS)
)  # fmt: skip


# --------------------------------------------------------------------------- option values (§3.2)


class _Scalar:
    """A string, integer, identifier, dotted identifier or soft keyword; `quoted` only matters for
    agent references given as option values (§3.3)."""

    __slots__ = ("offset", "quoted", "text")

    def __init__(self, text: str, quoted: bool, offset: int) -> None:
        self.text = text
        self.quoted = quoted
        self.offset = offset


class _List:
    __slots__ = ("items", "offset")

    def __init__(self, items: list[str], offset: int) -> None:
        self.items = items
        self.offset = offset


class _Map:
    __slots__ = ("items", "offset", "value_offsets")

    def __init__(self, items: dict[str, str], offset: int, value_offsets: dict[str, int]) -> None:
        self.items = items
        self.offset = offset
        self.value_offsets = value_offsets  # where each key's value was written


_Value = _Scalar | _List | _Map


def _shape(value: _Value) -> str:
    return "a list" if isinstance(value, _List) else "a map" if isinstance(value, _Map) else "a single value"


def describe_token(tok: RawToken) -> str:
    """How a token is named in error messages (`identifier \\`x\\``, `end of file`, …)."""
    kind = tok[0]
    if kind is IDENT:
        return f"identifier `{tok[1]}`"
    if kind is KEYWORD:
        return f"keyword `{tok[1]}`"
    if kind is STRING:
        text = tok[1] if len(tok[1]) <= 40 else tok[1][:37] + "..."
        return 'string "' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if kind is INT:
        return f"integer `{tok[1]}`"
    if kind is EOF:
        return "end of file"
    return f"`{tok[1]}`"


class _Options:
    """The pairs of one kv_list (§3.1, later duplicates win) plus typed accessors that apply the
    coercions of §3.4 and raise with the construct's message prefix."""

    __slots__ = ("keys", "parser", "prefix", "values")

    def __init__(
        self, parser: _Parser, values: dict[str, _Value], keys: dict[str, RawToken], prefix: str
    ) -> None:
        self.parser = parser
        self.values = values
        self.keys = keys
        self.prefix = prefix

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def fail(self, message: str, value: _Value) -> NoReturn:
        raise self.parser.error_at(self.prefix + message, value.offset)

    def scalar(self, key: str) -> _Scalar | None:
        value = self.values.get(key)
        if value is None or isinstance(value, _Scalar):
            return value
        self.fail(f"`{key}` must be a single value, not {_shape(value)}", value)

    def text(self, key: str) -> str | None:
        value = self.scalar(key)
        return None if value is None else value.text

    def string_list(self, key: str) -> list[str]:
        """A list as-is, a scalar as a one-element list; a map is refused."""
        value = self.values.get(key)
        if value is None:
            return []
        if isinstance(value, _Scalar):
            return [value.text]
        if isinstance(value, _List):
            return list(value.items)
        self.fail(f"`{key}` must be a list of values, not a map", value)

    def string_map(self, key: str, not_a_map: str) -> dict[str, str] | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, _Map):
            return dict(value.items)
        self.fail(not_a_map, value)

    def unsigned(self, key: str, message: str, maximum: int = U32_MAX) -> int | None:
        """`message` is formatted with `reason` (and `text`) when the value is not a valid number."""
        value = self.scalar(key)
        if value is None:
            return None
        reason = unsigned_error(value.text, maximum)
        if reason is not None:
            self.fail(message.format(reason=reason, text=value.text), value)
        return int(value.text)

    def word(self, key: str, allowed: tuple[str, ...], message: str) -> str | None:
        """An enum word compared exactly; `message` is formatted with `word`."""
        value = self.scalar(key)
        if value is None:
            return None
        if value.text not in allowed:
            self.fail(message.format(word=value.text), value)
        return value.text

    def on_fail(self, key: str = "on_fail") -> OnFailContinue | OnFailAgent | None:
        """§6.0: `continue`, a bare name, a quoted path (contains `/`) or a quoted name."""
        value = self.scalar(key)
        if value is None:
            return None
        if value.text == "continue":
            return OnFailContinue(**self.parser.at(value.offset))
        if value.quoted and "/" in value.text:
            self.parser.check_agent_path(value.text, value.offset)
            agent = AgentRef(kind="path", value=value.text, **self.parser.at(value.offset))
        else:
            agent = AgentRef(kind="name", value=value.text, **self.parser.at(value.offset))
        return OnFailAgent(value=agent, **self.parser.at(value.offset))


# --------------------------------------------------------------------------- the parser


class _Parser:
    """One parse. Tokens are the lexer's `(kind, value, offset)` tuples (`tok[0]`, `tok[1]`, `tok[2]`);
    `self.i` is the current token; the last token is always EOF, so one token of lookahead is always safe
    while the current token is not EOF."""

    def __init__(self, tokens: list[RawToken], lines: LineIndex, source_path: str) -> None:
        self.toks = tokens
        self.lines = lines
        self.i = 0
        self.file = source_path or None
        self.depth = 0
        # Only when parsing for the formatter: item spans, and the options of the item being parsed.
        self.layout: LayoutRecorder | None = None
        self.frame: list[OptionSpan] | None = None
        # ... and the entries of the list or map value just parsed (list index or map key, token span).
        self.entries: list[EntrySpan] = []
        self.notes: list[ParseNote] = []

    # ---- errors and token helpers

    def at(self, offset: int) -> dict[str, int]:
        """The `line`/`column` keyword arguments of a node starting at `offset`."""
        line, column = self.lines.position(offset)
        return {"line": line, "column": column}

    def error_at(self, message: str, offset: int, hint: str | None = None) -> WfParseError:
        line, column = self.lines.position(offset)
        return WfParseError(message, file=self.file, line=line, column=column, hint=hint)

    def missing_key(
        self, message: str, key: str, opts: _Options, start: RawToken, how: str | None = None
    ) -> WfParseError:
        """A required `key` not written: at the step (with `how` to write it, if given), or — when a
        written key looks like a misspelling of it (`max_iteration`, `max_paralel`) — at that key,
        saying so."""
        for written, tok in opts.keys.items():
            if written != key and did_you_mean(written, (key,)):
                return self.error_at(f"{message} (`{written}` is written: did you mean `{key}`?)", tok[2])
            if written in _OTHER_NAMES.get(key, ()):
                return self.error_at(f"{message} (`{written}` is written: here it is called `{key}`)", tok[2])
        return self.error_at(f"{message} ({how})" if how else message, start[2])

    def unexpected(self, expected: str, tok: RawToken | None = None) -> NoReturn:
        tok = tok or self.toks[self.i]
        # a `}` missing at the end of the file: the hint says which `{` it would close (shown after
        # `file:line:col:`; the spec's message, `str(error)`, is unchanged)
        hint = unclosed_brace_hint(self.toks, self.lines) if tok[0] is EOF and "`}`" in expected else None
        if tok[0] is not EOF and hint is None:  # before the end: a `{` the indentation says was left open
            at = next(
                (j for j in range(min(self.i, len(self.toks) - 1), -1, -1) if self.toks[j] is tok), None
            )
            hint = open_brace_hint(self.toks, self.lines, at) if at is not None else None
            if hint is None and at is not None and "`key = value`" in expected:
                hint = self.missing_equals_hint(tok, self.toks[at + 1])
        raise self.error_at(f"expected {expected}, found {describe_token(tok)}", tok[2], hint)

    @staticmethod
    def missing_equals_hint(key: RawToken, value: RawToken) -> str | None:
        """`max_parallel 2` where `key = value` was expected: the spec's message names the key as
        what was found (`found identifier `max_parallel``), which reads as if the key were wrong;
        the hint says the `=` is what is missing. A `,` between entries (JSON, HCL habits) is said
        to be one too many."""
        if key[0] is COMMA:
            return "nothing separates options or map entries: remove the `,`"
        if key[0] is not IDENT:  # a step keyword here is a `}` missing before it, not an `=`
            return None
        kind = value[0]
        if kind is STRING:
            shown = describe_token(value).removeprefix("string ")
        elif kind is INT or kind is IDENT:
            shown = value[1]
        elif kind is LBRACKET:
            shown = "[…]"
        elif kind is LBRACE:
            shown = "{ … }"
        else:
            return None
        return f"a key and its value are joined by `=`: write `{key[1]} = {shown}`"

    def advance(self) -> RawToken:
        tok = self.toks[self.i]
        if tok[0] is not EOF:
            self.i += 1
        return tok

    def expect(self, kind: int, expected: str) -> RawToken:
        tok = self.toks[self.i]
        if tok[0] is not kind:
            self.unexpected(expected, tok)
        self.i += 1
        return tok

    def expect_name(self, expected: str) -> RawToken:
        tok = self.toks[self.i]
        if tok[0] is IDENT or (tok[0] is KEYWORD and tok[1] in SOFT_KEYWORDS):
            self.i += 1
            return tok
        self.unexpected(expected, tok)

    def at_keyword(self, word: str) -> bool:
        tok = self.toks[self.i]
        return tok[0] is KEYWORD and tok[1] == word

    def note(self, code: str, message: str, hint: str | None, offset: int, node: Any = None) -> None:
        """Record something accepted but most likely a mistake (see `ParseNote`)."""
        line, column = self.lines.position(offset)
        self.notes.append(ParseNote(code, message, hint, line, column, node))

    def unused_keys(self, opts: _Options, known: tuple[str, ...], where: str, node: Any = None) -> None:
        """Note every key of `opts` that `where` does not read: the spec ignores it silently (§3.6)."""
        for key, tok in opts.keys.items():
            if key in known:
                continue
            hint = did_you_mean(key, known) or (
                "the options of " + where + " are " + ", ".join(f"`{k}`" for k in known) if known else None
            )
            value = opts.values.get(key)
            if key == "if" and isinstance(value, _Scalar) and "." in value.text:
                # `call a { if = b.ok }`: only a parallel block's calls take `if`; a step is made
                # conditional by a block around it, which is what was meant
                hint = (
                    f"to run it only when {value.text} is set, put it in a block: "
                    f"`if {value.text} {{ … }}` (an `if =` option exists only on the calls of a `parallel`)"
                )
            message = f"`{key}` is not an option of {where}; it is ignored"
            self.note("unknown-option", message, hint, tok[2], node)

    def node(self, parser: Callable[[_Parser, RawToken], Any], tok: RawToken) -> Any:
        """Parse one step; the notes made while parsing its own options now know their step."""
        mark = len(self.notes)
        node = parser(self, tok) if self.layout is None else self.recorded(parser, tok)
        if len(self.notes) > mark:
            for note in self.notes[mark:]:
                if note.node is None:
                    note.node = node
        return node

    def check_agent_path(self, path: str, offset: int) -> None:
        if ".." in path.split("/"):
            raise self.error_at(f"agent path contains parent-directory traversal (..): {path}", offset)

    # ---- key/value lists (§3)

    def kv_list(self, prefix: str = "") -> _Options:
        """Greedy pairs: continue while the current token is a key and the next one is `=`."""
        toks = self.toks
        values: dict[str, _Value] = {}
        keys: dict[str, RawToken] = {}
        frame = self.frame
        while True:
            tok = toks[self.i]
            if not (tok[0] is IDENT or (tok[0] is KEYWORD and tok[1] in KEY_KEYWORDS)):
                break
            if toks[self.i + 1][0] is not EQUALS:
                break
            first = self.i
            self.i += 2
            values.pop(tok[1], None)  # a repeated key moves to its latest position
            values[tok[1]] = self.value(tok[1])
            keys[tok[1]] = tok
            if frame is not None:
                frame.append((tok[1], first, self.i - 1, self.take_entries()))
        return _Options(self, values, keys, prefix)

    def bare_placeholder(self, key: str) -> None:
        """Refuse `key = {{name}}` as what it is: a placeholder is text inside a string (§8), but
        written bare it lexes as two `{` and was refused as a map (`map values must be single values,
        not a map`, or `expected key = value … found {`), which says nothing about the quotes."""
        toks = self.toks
        tok, after = toks[self.i], toks[self.i + 1]
        if tok[0] is not LBRACE or after[0] is not LBRACE or after[2] != tok[2] + 1:
            return
        end = self.i + 2
        while toks[end][0] in (IDENT, KEYWORD, INT, DOT) and end - self.i < 10:
            end += 1
        name = "".join(t[1] for t in toks[self.i + 2 : end]) or "…"
        raise self.error_at(
            f'`{{{{{name}}}}}` must be inside double quotes: write `{key} = "{{{{{name}}}}}"` '
            "(a placeholder is text in a string)",
            tok[2],
        )

    def value(self, key: str) -> _Value:
        tok = self.toks[self.i]
        if tok[0] is LBRACKET:
            return self.list_value(key)
        if tok[0] is LBRACE:
            self.bare_placeholder(key)
            return self.map_value(key)
        value = self.scalar_value(f"a value for `{key}`")
        unit = self.toks[self.i]
        # Nothing valid follows a value with an identifier that is not a key: this is `72h` (§2.5).
        if (
            tok[0] is INT
            and unit[0] is IDENT
            and self.lines.position(unit[2])[0] == self.lines.position(tok[2])[0]
            and self.toks[self.i + 1][0] is not EQUALS
        ):
            raise self.error_at(
                f"`{key} = {tok[1]}{unit[1]}`: a number with a unit must be quoted, "
                f'e.g. `{key} = "{tok[1]}{unit[1]}"`',
                tok[2],
            )
        self.bare_words(key, value)
        return value

    def bare_words(self, key: str, value: _Scalar) -> None:
        """`run = echo hi`: after a bare value only a key (`name =`), `}` or a step keyword may
        follow, so a name on the same line that is no key is the second word of text that was
        meant quoted; it was refused at that word (`expected key = value or }, found identifier
        hi`), which does not say the quotes are missing."""
        toks = self.toks
        after = toks[self.i]
        line = self.lines.position(value.offset)[0]
        if (
            value.quoted
            or after[0] is not IDENT
            or toks[self.i + 1][0] is EQUALS
            or after[1] in _ALL_OPTION_KEYS
        ):
            return
        if self.lines.position(after[2])[0] != line:
            return
        words = [value.text]
        j = self.i
        while toks[j][0] in (IDENT, INT) and toks[j + 1][0] is not EQUALS and len(words) < 6:
            if self.lines.position(toks[j][2])[0] != line:
                break
            words.append(toks[j][1])
            j += 1
        text = " ".join(words)
        raise self.error_at(
            f'`{key} = {text}`: text with spaces must be in double quotes: `{key} = "{text}"`',
            value.offset,
        )

    def scalar_value(self, expected: str) -> _Scalar:
        tok = self.toks[self.i]
        kind = tok[0]
        if kind is STRING:
            self.i += 1
            return _Scalar(tok[1], True, tok[2])
        if kind is INT:
            self.i += 1
            return _Scalar(tok[1], False, tok[2])
        if kind is IDENT:
            self.i += 1
            if self.toks[self.i][0] is DOT:
                self.i += 1
                second = self.expect_name(f"a name after `{tok[1]}.`")
                return _Scalar(f"{tok[1]}.{second[1]}", False, tok[2])
            return _Scalar(tok[1], False, tok[2])
        if kind is KEYWORD and tok[1] in SOFT_KEYWORDS:
            self.i += 1
            return _Scalar(tok[1], False, tok[2])
        self.unexpected(expected, tok)

    def list_value(self, key: str) -> _List:
        """`[ a, b c, ]`: optional commas, trailing comma allowed, items must be scalars."""
        start = self.advance()
        items: list[str] = []
        entries = self.entries if self.frame is not None else None
        while True:
            tok = self.toks[self.i]
            if tok[0] is RBRACKET:
                self.i += 1
                return _List(items, start[2])
            if tok[0] is LBRACKET or tok[0] is LBRACE:
                inner = "list" if tok[0] is LBRACKET else "map"
                raise self.error_at(
                    f"`{key}`: list items must be single values, not a {inner}",
                    tok[2],
                )
            first = self.i
            items.append(self.scalar_value(f"a list item or `]` in `{key}`").text)
            if self.toks[self.i][0] is COMMA:
                self.i += 1
            if entries is not None:  # an item's span takes its comma: `"a",  // …` is about "a"
                entries.append((len(items) - 1, first, self.i - 1))

    def map_value(self, key: str) -> _Map:
        """`{ k = v … }`: key tokens only, single values only."""
        start = self.advance()
        toks = self.toks
        items: dict[str, str] = {}
        value_offsets: dict[str, int] = {}
        entries = self.entries if self.frame is not None else None
        while True:
            tok = toks[self.i]
            if not (tok[0] is IDENT or (tok[0] is KEYWORD and tok[1] in KEY_KEYWORDS)):
                break
            if toks[self.i + 1][0] is not EQUALS:
                break
            first = self.i
            self.i += 2
            inner = toks[self.i]
            self.bare_placeholder(tok[1])
            if inner[0] is LBRACKET or inner[0] is LBRACE:
                shape = "list" if inner[0] is LBRACKET else "map"
                raise self.error_at(
                    f"`{key}`: map values must be single values, not a {shape}",
                    inner[2],
                )
            items.pop(tok[1], None)
            value_offsets[tok[1]] = inner[2]
            scalar = self.scalar_value(f"a value for `{tok[1]}` in `{key}`")
            self.bare_words(tok[1], scalar)
            items[tok[1]] = scalar.text
            if entries is not None:
                entries.append((tok[1], first, self.i - 1))
        self.expect(RBRACE, f"`key = value` or `}}` in the `{key}` map")
        return _Map(items, start[2], value_offsets)

    # ---- workflow (§5)

    def parse_workflow(self) -> WorkflowDef:
        toks = self.toks
        start = toks[0]
        if not (start[0] is KEYWORD and start[1] == "workflow"):
            self.unexpected("`workflow` at the start of the file", start)
        self.i = 1
        name = self.expect_name("a workflow name after `workflow`")
        self.expect(LBRACE, f"`{{` after `workflow {name[1]}`")
        meta: dict[str, Any] = {}
        meta_written: set[str] = set()
        inputs: list[InputDecl] = []
        body: list[Any] = []
        always: list[Any] = []
        input_blocks = 0
        parsers = _NODE_PARSERS
        while True:
            tok = toks[self.i]
            if tok[0] is RBRACE:
                self.i += 1
                break
            if tok[0] is KEYWORD:
                word = tok[1]
                first = self.i
                if word == "meta":
                    outer = self.begin_item()
                    meta_written |= self.parse_meta(meta)
                    self.end_item(outer, ("meta",), first)
                    continue
                if word == "inputs":
                    self.parse_inputs(inputs)
                    self.end_item(None, ("inputs", input_blocks), first)
                    input_blocks += 1
                    continue
                if word == "always":
                    self.i += 1
                    self.expect(LBRACE, "`{` after `always`")
                    nodes = self.parse_body(tok)
                    always.extend(nodes)
                    # an empty block may be what keeps a `do` and a `while` apart (the formatter writes
                    # one there): its comments stay with the one written before the step it preceded
                    self.end_item(None, ("always",) if nodes else ("separator", len(body)), first)
                    continue
                parser = parsers.get(word)
                if parser is not None:
                    body.append(self.node(parser, tok))
                    continue
            self.unexpected(
                "`meta`, `inputs`, `always`, a step (call, if, unless, while, do, parallel, gate, script, "
                f"foreach) or `}}` closing workflow `{name[1]}`",
                tok,
            )
        if self.layout is not None:
            self.layout.add(("wf",), 0, self.i - 1)
        warnings: list[str] = []
        trigger = meta.get("trigger", "manual")
        if trigger != "manual":
            warnings.append(f"trigger '{trigger}' is not implemented in v1; only 'manual' is active")
        after = toks[self.i]
        if after[0] is not EOF:  # ignored, as specified (§1 rule 3) — but a stray `}` is worth a word
            line, column = self.lines.position(after[2])
            warnings.append(
                f"text after the closing `}}` of workflow `{name[1]}` (from line {line}, column {column}) "
                "is ignored"
            )
        return WorkflowDef(
            name=name[1],
            title=meta.get("title"),
            description=meta.get("description", ""),
            trigger=trigger,
            targets=meta.get("targets", []),
            targets_at=meta.get("targets_at"),
            group=meta.get("group"),
            inputs=inputs,
            body=body,
            always=always,
            source_path=self.file or "",
            warnings=warnings,
            notes=self.notes,
            written=frozenset(meta_written),
            **self.at(start[2]),
        )

    def parse_meta(self, meta: dict[str, Any]) -> set[str]:
        """§5.2: each block overrides only the keys it contains; unknown keys are ignored.

        Returns the keys this block wrote."""
        self.i += 1
        self.expect(LBRACE, "`{` after `meta`")
        opts = self.kv_list("In meta block: ")
        self.expect(RBRACE, "`key = value` or `}` in the meta block")
        self.unused_keys(opts, _META_KEYS, "`meta`")
        if "title" in opts:
            meta["title"] = opts.text("title")
        if "description" in opts:
            meta["description"] = opts.text("description")
        if "trigger" in opts:
            meta["trigger"] = opts.word("trigger", _TRIGGERS, "unknown trigger: {word}")
        if "targets" in opts:
            meta["targets"] = opts.string_list("targets")
            meta["targets_at"] = self.lines.position(opts.values["targets"].offset)
        if "group" in opts:
            meta["group"] = opts.text("group")
        return set(opts.values)

    def parse_inputs(self, inputs: list[InputDecl]) -> None:
        """§5.3: `name modifier*` repeated; modifier words always attach to the previous input."""
        self.i += 1
        self.expect(LBRACE, "`{` after `inputs`")
        toks = self.toks
        while toks[self.i][0] is not RBRACE:
            first = self.i
            name = self.expect_name("an input name or `}` in the inputs block")
            required = boolean = False
            default: str | None = None
            description: str | None = None
            while True:
                tok = toks[self.i]
                if tok[0] is not KEYWORD:
                    break
                word = tok[1]
                if word == "required":
                    required = True
                elif word == "boolean":
                    boolean = True
                elif word == "default" or word == "description":
                    self.i += 1
                    self.expect(EQUALS, f"`=` after `{word}` of input `{name[1]}`")
                    text = self.scalar_value(f"a value for `{word}` of input `{name[1]}`").text
                    if word == "default":
                        default = text
                    else:
                        description = text
                    continue
                else:
                    break
                self.i += 1
            inputs.append(
                InputDecl(
                    name=name[1],
                    required=False if boolean else (required or default is None),
                    default=default,
                    description=description,
                    input_type="boolean" if boolean else "string",
                    **self.at(name[2]),
                )
            )
            if self.layout is not None:
                self.layout.add(("node", id(inputs[-1])), first, self.i - 1)
        self.i += 1

    # ---- bodies

    def parse_body(self, opener: RawToken) -> list[Any]:
        """Nodes up to and including the closing `}` of a block opened by `opener`."""
        self.depth += 1
        if self.depth > MAX_NESTING_DEPTH:
            raise self.error_at(
                f"blocks are nested too deeply (more than {MAX_NESTING_DEPTH} levels)",
                opener[2],
            )
        toks = self.toks
        parsers = _NODE_PARSERS
        nodes: list[Any] = []
        while True:
            tok = toks[self.i]
            if tok[0] is KEYWORD:
                parser = parsers.get(tok[1])
                if parser is not None:
                    nodes.append(self.node(parser, tok))
                    continue
                if tok[1] in ("meta", "inputs"):
                    raise self.error_at(
                        f"`{tok[1]}` is only allowed directly inside `workflow`, not in a nested block",
                        tok[2],
                    )
            elif tok[0] is RBRACE:
                self.i += 1
                self.depth -= 1
                return nodes
            self.unexpected(
                f"a step (call, if, unless, while, do, parallel, gate, always, script, foreach) or `}}` "
                f"closing `{opener[1]}`",
                tok,
            )

    # ---- item spans for the formatter (only while `self.layout` is set)

    def begin_item(self) -> list[OptionSpan] | None:
        """Start collecting the options of a new item; returns the enclosing item's collection."""
        outer = self.frame
        if self.layout is not None:
            self.frame = []
        return outer

    def take_entries(self) -> tuple[EntrySpan, ...]:
        """The entries the list or map value just parsed recorded (none for a single value)."""
        entries = tuple(self.entries)
        self.entries.clear()
        return entries

    def end_item(self, outer: list[OptionSpan] | None, anchor: Anchor, first: int) -> None:
        """The item that started at token `first` ended at the previous token."""
        if self.layout is not None:
            self.layout.add(anchor, first, self.i - 1, self.frame)
            self.frame = outer

    def recorded(self, parser: Callable[[_Parser, RawToken], Any], tok: RawToken) -> Any:
        """Parse one step as `parser` does, noting its span and its options' spans for the formatter."""
        first = self.i
        outer = self.begin_item()
        node = parser(self, tok)
        self.end_item(outer, ("node", id(node)), first)
        return node

    # ---- nodes (§6)

    def agent_ref(self) -> AgentRef:
        tok = self.toks[self.i]
        if tok[0] is IDENT or (tok[0] is KEYWORD and tok[1] in AGENT_KEYWORDS):
            self.i += 1
            return AgentRef(kind="name", value=tok[1], **self.at(tok[2]))
        if tok[0] is STRING:
            self.i += 1
            self.check_agent_path(tok[1], tok[2])
            return AgentRef(kind="path", value=tok[1], **self.at(tok[2]))
        if tok[0] is KEYWORD and tok[1] == "workflow":
            raise self.error_at("`call workflow` is not allowed inside `parallel`", tok[2])
        self.unexpected('an agent name or a quoted agent path (`call "agents/x.md"`) after `call`', tok)

    def optional_block(self, prefix: str, what: str) -> _Options | None:
        """`{ kv_list }` if the next token opens one."""
        if self.toks[self.i][0] is not LBRACE:
            return None
        self.i += 1
        opts = self.kv_list(prefix)
        self.expect(RBRACE, f"`key = value` or `}}` in the options of {what}")
        return opts

    def parse_call(self, start: RawToken) -> CallNode | CallWorkflowNode:
        nxt = self.toks[self.i + 1]
        if nxt[0] is KEYWORD and nxt[1] == "workflow":
            return self.parse_call_workflow(start)
        self.i += 1
        agent = self.agent_ref()
        opts = self.optional_block("", f"`call {agent.value}`")
        if opts is None:
            return CallNode(agent=agent, **self.at(start[2]))
        self.unused_keys(opts, _CALL_KEYS, f"`call {agent.value}`")
        timeout = opts.scalar("timeout")
        if timeout is not None:
            problem = call_timeout_problem(timeout.text)
            if problem is not None:
                self.note(CALL_TIMEOUT, problem, None, timeout.offset)
        return CallNode(
            agent=agent,
            retries=opts.unsigned("retries", "invalid retries: {reason}") or 0,
            on_fail=opts.on_fail(),
            output=opts.text("output"),
            with_=opts.string_list("with"),
            as_identity=opts.text("as"),
            plugin_dirs=opts.string_list("plugin_dirs"),
            timeout=opts.text("timeout"),
            max_turns=opts.unsigned("max_turns", "invalid u32: {text}"),
            written=frozenset(opts.values),
            **self.at(start[2]),
        )

    def parse_call_workflow(self, start: RawToken) -> CallWorkflowNode:
        """§6.2 and §4 rule 5: at most one `inputs { … }` sub-block among the pairs."""
        self.i += 2
        name = self.expect_name("a workflow name after `call workflow`")
        inputs: dict[str, str] = {}
        if self.toks[self.i][0] is not LBRACE:
            return CallWorkflowNode(workflow=name[1], **self.at(start[2]))
        self.i += 1
        opts = self.kv_list()
        tok = self.toks[self.i]
        written: set[str] = set()
        if tok[0] is KEYWORD and tok[1] == "inputs" and self.toks[self.i + 1][0] is LBRACE:
            first = self.i
            self.i += 1
            inputs = self.map_value("inputs").items
            written.add("inputs")
            if self.frame is not None:
                self.frame.append(("inputs", first, self.i - 1, self.take_entries()))
            more = self.kv_list()
            for key, value in more.values.items():
                opts.values.pop(key, None)
                opts.values[key] = value
                opts.keys[key] = more.keys[key]
            tok = self.toks[self.i]
            if tok[0] is KEYWORD and tok[1] == "inputs" and self.toks[self.i + 1][0] is LBRACE:
                raise self.error_at(
                    f"`call workflow {name[1]}` may contain only one `inputs {{ … }}` block",
                    tok[2],
                )
        self.expect(RBRACE, f"`key = value`, `inputs {{ … }}` or `}}` in `call workflow {name[1]}`")
        if "inputs" in opts.keys:  # §4 rule 5: `inputs = { … }` is read as an ordinary key and dropped
            self.note(
                "unknown-option",
                f"`inputs = {{ … }}` in `call workflow {name[1]}` is ignored: the inputs are not passed",
                "write `inputs { … }` without `=`",
                opts.keys.pop("inputs")[2],
            )
        self.unused_keys(opts, _CALL_WORKFLOW_KEYS, f"`call workflow {name[1]}`")
        return CallWorkflowNode(
            workflow=name[1],
            inputs=inputs,
            retries=opts.unsigned("retries", "invalid retries: {reason}") or 0,
            on_fail=opts.on_fail(),
            as_identity=opts.text("as"),
            written=frozenset(written | set(opts.values)),
            **self.at(start[2]),
        )

    def condition(self) -> tuple[RawToken, RawToken | None]:
        step = self.expect_name(
            f"a condition (`step.marker` or an input name) after `{self.toks[self.i - 1][1]}`"
        )
        if self.toks[self.i][0] is not DOT:
            return step, None
        self.i += 1
        marker = self.expect_name(f"a marker name after `{step[1]}.`")
        return step, marker

    def parse_if(self, start: RawToken) -> IfNode | UnlessNode:
        """§6.3: `if`/`unless` COND `{ [kv_list] nodes }`; the kv_list is accepted and discarded."""
        self.i += 1
        step, marker = self.condition()
        if marker is None:
            condition: Any = BoolInputCondition(input=step[1], **self.at(step[2]))
        else:
            condition = StepMarkerCondition(step=step[1], marker=marker[1], **self.at(step[2]))
        self.expect(LBRACE, f"`{{` after the `{start[1]}` condition")
        self.unused_keys(self.kv_list(), (), f"`{start[1]}` (it takes none)")
        body = self.parse_body(start)
        cls = IfNode if start[1] == "if" else UnlessNode
        return cls(condition=condition, body=body, **self.at(start[2]))

    def loop_options(self, opts: _Options, missing: str, start: RawToken) -> dict[str, Any]:
        """`max_iterations` (required), `stuck_after`, `on_max_iter` of while / do-while (§6.4, §6.5)."""
        max_iterations = opts.unsigned("max_iterations", "Invalid max_iterations: {reason}")
        if max_iterations is None:
            how = (
                "write `max_iterations = N` first inside the loop's braces: the most times its body may "
                "run, a guard against a loop that never ends"
            )
            raise self.missing_key(
                missing, "max_iterations", opts, start, how if "(" not in missing else None
            )
        stuck_after = opts.unsigned("stuck_after", "Invalid stuck_after: {reason}")
        on_max_iter = opts.word("on_max_iter", ("fail", "continue"), "Invalid on_max_iter: {word}")
        return {
            "max_iterations": max_iterations,
            "stuck_after": stuck_after,
            "on_max_iter": on_max_iter or "fail",
            "written": frozenset(opts.values),
        }

    def step_marker(self, loop: str) -> tuple[RawToken, RawToken]:
        step, marker = self.condition()
        if marker is None:
            raise self.error_at(
                f"{loop} condition must be `step.marker`, not a bare identifier `{step[1]}`",
                step[2],
            )
        return step, marker

    def parse_while(self, start: RawToken) -> WhileNode:
        self.i += 1
        step, marker = self.step_marker("while")
        self.expect(LBRACE, "`{` after the `while` condition")
        opts = self.kv_list()
        options = self.loop_options(opts, "while loop requires max_iterations", start)
        self.unused_keys(opts, _LOOP_KEYS, "`while`")
        body = self.parse_body(start)
        return WhileNode(step=step[1], marker=marker[1], body=body, **self.at(start[2]), **options)

    def parse_do(self, start: RawToken) -> DoNode | DoWhileNode:
        """§6.5/§6.6: a `while` right after the block always makes it a do-while (§4 rule 2)."""
        self.i += 1
        tok = self.toks[self.i]
        if tok[0] is not LBRACE:
            if tok[0] is IDENT:
                raise self.error_at(
                    f"expected `{{` after `do`, found identifier `{tok[1]}` (the `do NAME {{ … }}` form "
                    "was removed; write `do { ... } while step.marker` or a plain `do { ... }`)",
                    tok[2],
                )
            self.unexpected("`{` after `do`", tok)
        self.i += 1
        opts = self.kv_list()
        body = self.parse_body(start)
        if self.at_keyword("while"):
            self.i += 1
            step, marker = self.step_marker("do-while")
            missing = "do loop requires max_iterations"
            if self.toks[self.i][0] is LBRACE:
                missing += (
                    " (a `while` right after `do { … }` always makes a do-while loop; put another step "
                    "between them if a separate `while` loop was meant)"
                )
            options = self.loop_options(opts, missing, start)
            self.unused_keys(opts, _LOOP_KEYS, "a do-while loop")
            return DoWhileNode(
                step=step[1],
                marker=marker[1],
                body=body,
                **self.at(start[2]),
                **options,
            )
        for key, key_tok in opts.keys.items():
            if key not in _PLAIN_DO_KEYS:
                raise self.error_at(
                    f"unknown option `{key}` in plain `do` block (only `output` and `with` are allowed)",
                    key_tok[2],
                )
        return DoNode(
            output=opts.text("output"),
            with_=opts.string_list("with"),
            body=body,
            written=frozenset(opts.values),
            **self.at(start[2]),
        )

    def parse_parallel(self, start: RawToken) -> ParallelNode:
        """§6.7: block options first, then one or more `call AGENT [{ per-call options }]`."""
        self.i += 1
        self.expect(LBRACE, "`{` after `parallel`")
        opts = self.kv_list()
        min_success = opts.unsigned("min_success", "Invalid min_success: {reason}")
        calls: list[AgentRef] = []
        call_outputs: dict[str, str] = {}
        call_with: dict[str, list[str]] = {}
        call_if: dict[str, tuple[str, str]] = {}
        call_retries: dict[str, int] = {}
        toks = self.toks
        while toks[self.i][0] is KEYWORD and toks[self.i][1] == "call":
            first = self.i
            self.i += 1
            index = str(len(calls))
            agent = self.agent_ref()
            calls.append(agent)
            outer = self.begin_item()
            per_call = self.optional_block(f"parallel call {index}: ", f"`call {agent.value}`")
            self.end_item(outer, ("node", id(agent)), first)
            if per_call is None:
                continue
            self.unused_keys(per_call, _PARALLEL_CALL_KEYS, "a call inside `parallel`", agent)
            if "output" in per_call:
                call_outputs[index] = per_call.text("output")  # type: ignore[assignment]
            if "with" in per_call:
                call_with[index] = per_call.string_list("with")
            condition = per_call.scalar("if")
            if condition is not None:
                step, dot, marker = condition.text.partition(".")
                if not dot:
                    raise self.error_at(
                        f"if value `{condition.text}` must be in the form `step.marker` (no dot found)",
                        condition.offset,
                    )
                call_if[index] = (step, marker)
            if "retries" in per_call:
                call_retries[index] = per_call.unsigned("retries", "invalid retries: {reason}")  # type: ignore[assignment]
        tok = toks[self.i]
        if tok[0] is not RBRACE:
            self.unexpected(
                "`call` or `}` in the `parallel` block" if calls else "`call` in the `parallel` block"
            )
        if not calls:
            raise self.error_at("parallel block must contain at least one call", start[2])
        self.i += 1
        self.unused_keys(opts, _PARALLEL_KEYS, "`parallel`")
        fail_fast = opts.scalar("fail_fast")
        if fail_fast is not None and fail_fast.text not in ("true", "false"):  # §3.4: a truthy flag
            self.note(
                "flag",
                f"`fail_fast = {fail_fast.text}` counts as false: only `true` turns it on",
                "write `fail_fast = true` or `fail_fast = false`",
                fail_fast.offset,
            )
        return ParallelNode(
            fail_fast=True if fail_fast is None else fail_fast.text == "true",
            min_success=min_success,
            calls=calls,
            output=opts.text("output"),
            call_outputs=call_outputs,
            with_=opts.string_list("with"),
            call_with=call_with,
            call_if=call_if,
            call_retries=call_retries,
            written=frozenset(opts.values),
            **self.at(start[2]),
        )

    def parse_gate(self, start: RawToken) -> GateNode:
        """§6.8: the word after `gate` is both its name and its type."""
        self.i += 1
        name = self.expect_name("a gate type after `gate` (e.g. `human_approval`)")
        self.expect(LBRACE, f"`{{` after `gate {name[1]}`")
        opts = self.kv_list()
        self.expect(RBRACE, f"`key = value` or `}}` in `gate {name[1]}`")
        if name[1] == "quality_gate":
            node = self.quality_gate(start, name, opts)
            self.unused_keys(opts, _QUALITY_GATE_KEYS, "`gate quality_gate`")
            return node
        min_approvals = opts.unsigned("min_approvals", "Invalid min_approvals: {reason}")
        mode = opts.word("mode", ("min_approvals", "review_decision"), "Invalid mode for pr_approval: {word}")
        if mode == "review_decision" and min_approvals is not None:
            raise self.error_at(
                'Cannot specify both mode = "review_decision" and min_approvals',
                opts.keys["min_approvals"][2],
            )
        timeout_secs = 86400
        timeout = opts.scalar("timeout")
        if timeout is not None:
            try:
                timeout_secs = parse_gate_timeout(timeout.text)
            except DurationError as exc:
                hint = gate_timeout_hint(timeout.text)
                message = str(exc) if hint is None else f"{exc} (hint: {hint})"
                raise self.error_at(message, timeout.offset) from None
        on_timeout = opts.word("on_timeout", ("fail", "continue"), "Invalid on_timeout: {word}")
        gate_options = self.gate_options(opts)
        self.unused_keys(opts, _GATE_KEYS, f"`gate {name[1]}`")
        return GateNode(
            name=name[1],
            gate_type=name[1],
            prompt=opts.text("prompt"),
            min_approvals=1 if min_approvals is None else min_approvals,
            approval_mode=mode or "min_approvals",
            timeout_secs=timeout_secs,
            on_timeout=on_timeout or "fail",
            as_identity=opts.text("as"),
            options=gate_options,
            written=frozenset(opts.values),
            **self.at(start[2]),
        )

    def gate_options(self, opts: _Options) -> dict[str, str] | str | None:
        value = opts.values.get("options")
        if value is None:
            return None
        if isinstance(value, _List):
            return {item: item for item in value.items}
        if isinstance(value, _Map):
            return dict(value.items)
        if "." in value.text:
            return value.text
        raise self.error_at(
            f"Invalid `options` value '{value.text}': expected a map {{ key = \"label\" }}, an array "
            '["a", "b"], or a step field reference like \'step.field\'',
            value.offset,
        )

    def quality_gate(self, start: RawToken, name: RawToken, opts: _Options) -> GateNode:
        source = opts.text("source")
        if source is None:
            raise self.missing_key(
                "quality_gate requires a `source` field referencing a prior step", "source", opts, start
            )
        threshold_value = opts.scalar("threshold")
        if threshold_value is None:
            message = "quality_gate requires a `threshold` field (0-100)"
            raise self.missing_key(message, "threshold", opts, start)
        threshold = opts.unsigned("threshold", "Invalid threshold: {reason}")
        if threshold is not None and threshold > 100:
            raise self.error_at(
                f"quality_gate threshold must be 0-100, got {threshold}",
                threshold_value.offset,
            )
        on_fail = opts.word("on_fail", ("fail", "continue"), "Invalid on_fail for quality_gate: {word}")
        if "options" in opts:
            key = opts.keys["options"]
            raise self.error_at("`options` is not valid on quality_gate gates", key[2])
        return GateNode(
            name=name[1],
            gate_type=name[1],
            timeout_secs=0,
            as_identity=opts.text("as"),
            source=source,
            threshold=threshold,
            on_fail_action=on_fail or "fail",
            written=frozenset(opts.values),
            **self.at(start[2]),
        )

    def parse_always(self, start: RawToken) -> AlwaysNode:
        """§6.11: a nested `always` only groups nodes; it takes no options."""
        self.i += 1
        self.expect(LBRACE, "`{` after `always`")
        return AlwaysNode(body=self.parse_body(start), **self.at(start[2]))

    def parse_script(self, start: RawToken) -> ScriptNode:
        """§6.9; checks run in the spec's order: run, env, timeout, retries, on_fail."""
        self.i += 1
        name = self.expect_name("a script name after `script`")
        self.expect(LBRACE, f"`{{` after `script {name[1]}`")
        prefix = f"script '{name[1]}': "
        opts = self.kv_list(prefix)
        self.expect(RBRACE, f"`key = value` or `}}` in `script {name[1]}`")
        run = opts.text("run")
        if run is None:
            raise self.missing_key(f"script '{name[1]}' is missing required `run` field", "run", opts, start)
        env = opts.string_map("env", '`env` must be a map `{ KEY = "value" }`')
        timeout = opts.unsigned("timeout", "invalid timeout: {reason}" + _seconds_hint(opts), U64_MAX)
        retries = opts.unsigned("retries", "invalid retries: {reason}") or 0
        on_fail = opts.on_fail()
        self.unused_keys(opts, _SCRIPT_KEYS, f"`script {name[1]}`")
        return ScriptNode(
            name=name[1],
            run=run,
            env=env or {},
            timeout=timeout,
            retries=retries,
            on_fail=on_fail,
            as_identity=opts.text("as"),
            written=frozenset(opts.values),
            **self.at(start[2]),
        )

    def parse_foreach(self, start: RawToken) -> ForEachNode:
        """§6.10; checks run in the order of the spec's table."""
        self.i += 1
        name = self.expect_name("a foreach name after `foreach`")
        self.expect(LBRACE, f"`{{` after `foreach {name[1]}`")
        prefix = f"foreach '{name[1]}': "
        opts = self.kv_list(prefix)
        self.expect(RBRACE, f"`key = value` or `}}` in `foreach {name[1]}`")

        def missing(key: str) -> NoReturn:
            raise self.missing_key(f"{prefix}missing required key '{key}'", key, opts, start)

        over = opts.text("over")
        if over is None:
            missing("over")
        max_parallel = opts.unsigned("max_parallel", "invalid max_parallel: {reason}")
        if max_parallel is None:
            missing("max_parallel")
        workflow = opts.text("workflow")
        if workflow is None:
            missing("workflow")
        scope = opts.string_map("scope", "scope must be a map")
        scope_value = opts.values.get("scope")
        scope_at = (
            {key: self.lines.position(offset) for key, offset in scope_value.value_offsets.items()}
            if isinstance(scope_value, _Map)
            else None
        )
        filter_ = opts.string_map("filter", 'filter must be a map { key = "value" }')
        inputs = opts.string_map("inputs", 'inputs must be a map { key = "value" }')
        ordered = opts.word(
            "ordered", ("true", "false"), "invalid ordered value '{word}' (expected: true or false)"
        )
        on_cycle = opts.word(
            "on_cycle", ("fail", "warn"), "invalid on_cycle value '{word}' (expected: fail, warn)"
        )
        on_child_fail = opts.word(
            "on_child_fail",
            ("halt", "continue", "skip_dependents"),
            "invalid on_child_fail value '{word}' (expected: halt, continue, skip_dependents)",
        )
        self.unused_keys(opts, _FOREACH_KEYS, f"`foreach {name[1]}`")
        return ForEachNode(
            name=name[1],
            over=over,
            scope=scope,
            scope_at=scope_at,
            filter=filter_ or {},
            ordered=ordered == "true",
            on_cycle=on_cycle or "fail",
            max_parallel=max_parallel,
            workflow=workflow,
            inputs=inputs or {},
            on_child_fail=on_child_fail or "continue",
            written=frozenset(opts.values),
            **self.at(start[2]),
        )


_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


def _seconds_hint(opts: _Options) -> str:
    """A script `timeout` is whole seconds (§6.9) where call and gate timeouts take units: when
    the value was written like theirs (`"5m"`), the spec's message gets the number to write."""
    value = opts.values.get("timeout")
    text = value.text.strip() if isinstance(value, _Scalar) else ""
    if len(text) > 1 and text[-1] in _UNIT_SECONDS and text[:-1].isdigit():
        seconds = int(text[:-1]) * _UNIT_SECONDS[text[-1]]
        return f" (hint: a script timeout is whole seconds: `timeout = {seconds}` for {text})"
    return ""


# Keyword → node parser. Plain functions on the class, not bound methods kept on the instance: a
# parser holding its own bound methods is a reference cycle, and every parse then left its parser,
# its whole token list and line index behind as cyclic garbage (issue 16, item 4).
_NODE_PARSERS: dict[str, Callable[[_Parser, RawToken], Any]] = {
    "call": _Parser.parse_call,
    "if": _Parser.parse_if,
    "unless": _Parser.parse_if,
    "while": _Parser.parse_while,
    "do": _Parser.parse_do,
    "parallel": _Parser.parse_parallel,
    "gate": _Parser.parse_gate,
    "always": _Parser.parse_always,
    "script": _Parser.parse_script,
    "foreach": _Parser.parse_foreach,
}


# --------------------------------------------------------------------------- public API


def parse_workflow(text: str, source_path: str = "") -> WorkflowDef:
    """Parse the one workflow in `text` (tokens after its closing `}` are lexed, then ignored).

    Sets `source_path`, the position of every node, and `warnings` (e.g. a trigger that is not active).
    Raises `WfLexError` or `WfParseError` naming `source_path`, line and column.
    """
    tokens = lex(text, source_path or None)
    return _Parser(tokens, LineIndex(text), source_path).parse_workflow()


def parse_with_comments(text: str, source_path: str = "") -> tuple[WorkflowDef, AttachedComments]:
    """`parse_workflow`, plus the text's comments attached to the items they were written next to
    (what the formatter needs to keep them in place; see `runkon_flow.dsl.layout`)."""
    tokens = lex(text, source_path or None)
    parser = _Parser(tokens, LineIndex(text), source_path)
    layout = parser.layout = LayoutRecorder()
    wf = parser.parse_workflow()
    return wf, layout.attach(text, tokens)


def parse_file(path: str | os.PathLike[str]) -> WorkflowDef:
    """Read `path` as UTF-8 and parse it; `source_path` is the path exactly as given."""
    source_path = os.fspath(path)
    try:
        text = Path(source_path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:  # worded as the CLI words it, not as Python does
        raise WfParseError(f"cannot read file: not valid UTF-8 ({exc.reason})", file=source_path) from None
    except (OSError, ValueError) as exc:
        raise WfParseError(f"Failed to read {source_path}: {exc}", file=source_path) from None
    return parse_workflow(text, source_path)
