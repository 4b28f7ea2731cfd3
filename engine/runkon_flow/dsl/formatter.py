"""Canonical `.wf` text for a `WorkflowDef` (the inverse of the parser).

Guarantee: for every workflow the language can express, `parse_workflow(format_workflow(wf)) == wf`
(positions aside). The language cannot express every AST — an agent named `gate`, a plain `do`
directly followed by a `while` loop, a boolean input marked required … — and for those the formatter
raises `UnformattableError` naming the node instead of writing text that would parse differently.

Comments are not part of the AST; `format_source` (or `format_workflow(wf, comments)` with the comments of
`parser.parse_with_comments`) keeps each one with the item it was written next to: an end-of-line comment
stays at the end of its item's line, a comment on its own line stays before the item below it, in the
same block, wherever the canonical order moves that item (rule in `runkon_flow.dsl.layout`).

Style: 2-space indent, one option per line with aligned `=`, short per-call options on one line,
defaults omitted unless the source wrote them (a formatter keeps what was written: `written` on each
node), free text always quoted, enum words and numbers bare, gate timeouts as quoted durations
(`"72h"`), blank lines around steps of more than one line of code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, NamedTuple

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
    ScriptNode,
    UnlessNode,
    WhileNode,
    WorkflowDef,
)
from runkon_flow.dsl.durations import U32_MAX, U64_MAX
from runkon_flow.dsl.layout import Anchor, AttachedComments, Note
from runkon_flow.dsl.lexer import KEYWORDS
from runkon_flow.dsl.parser import AGENT_KEYWORDS, KEY_KEYWORDS, SOFT_KEYWORDS, parse_with_comments
from runkon_flow.errors import WfError

__all__ = ["UnformattableError", "format_source", "format_workflow", "quote"]

INDENT = "  "
_LINE_WIDTH = 100
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
_MODIFIERS = ("required", "boolean", "default", "description")
_DEFAULT_GATE_TIMEOUT = 86400
_WF: Anchor = ("wf",)
_META: Anchor = ("meta",)
_ALWAYS: Anchor = ("always",)


def _inputs(block: int) -> Anchor:
    """The comment anchor of the workflow's `block`-th `inputs { … }` block (from 0)."""
    return ("inputs", block)


def _at(node: Any) -> Anchor:
    """The comment anchor of a step, an input declaration or a parallel call (see `layout`)."""
    return ("node", id(node))


class UnformattableError(WfError):
    """The AST holds something no `.wf` text can express (so formatting would change its meaning)."""

    prefix = "Format error in"


def quote(text: str) -> str:
    """A string literal that lexes back to exactly `text` (§2.4 escapes)."""
    return (
        '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    )


def _is_ident(text: str) -> bool:
    """A plain identifier that is not a keyword."""
    return bool(_IDENT_RE.match(text)) and text not in KEYWORDS


def _word(text: str) -> str:
    """A value where quoted and bare mean the same: bare when it is a plain identifier."""
    return text if _is_ident(text) else quote(text)


def _duration(seconds: int) -> str:
    """A gate timeout as the most readable quoted duration."""
    if seconds and seconds % 3600 == 0:
        return quote(f"{seconds // 3600}h")
    if seconds and seconds % 60 == 0:
        return quote(f"{seconds // 60}m")
    return quote(f"{seconds}s")


class _Compound(NamedTuple):
    """A list or map value: `fold` on one line (None: it has none), else one entry per line between
    `opener` and `closer` — also when its entries carry comments, so each stays beside its entry."""

    opener: str
    closer: str
    entries: tuple[tuple[int | str, str], ...]  # the entry's comment key (list index, map key), its line
    fold: str | None


def _list(items: Iterable[str]) -> _Compound:
    quoted = [quote(item) for item in items]
    entries = tuple((index, f"{text},") for index, text in enumerate(quoted))
    return _Compound("[", "]", entries, "[" + ", ".join(quoted) + "]")


Pair = tuple[str, str | _Compound]  # key, rendered value


class _Formatter:
    def __init__(self, wf: WorkflowDef, comments: AttachedComments | None = None) -> None:
        self.wf = wf
        self.lines: list[str] = []
        self.notes = comments or AttachedComments()
        # formatting source text (comments given): refuse to delete what the user wrote but the language
        # ignores (an unknown option key, a typo of a real one); an AST alone just has no such keys
        self.refuse_loss = comments is not None

    # ---- errors and checked pieces

    def fail(self, node: Any, message: str) -> UnformattableError:
        return UnformattableError(
            f"cannot format {message}",
            file=self.wf.source_path or None,
            line=getattr(node, "line", None),
            column=getattr(node, "column", None),
        )

    def name(self, text: str, what: str, node: Any) -> str:
        """A *name* position (§2.6): identifier or soft keyword."""
        if _IDENT_RE.match(text) and (text not in KEYWORDS or text in SOFT_KEYWORDS):
            return text
        raise self.fail(node, f"{what} `{text}`: it is not a valid name (letters, digits, `_`, `-`)")

    def key(self, text: str, what: str, node: Any) -> str:
        """A *key* position of a key/value pair: identifier or one of the six key keywords."""
        if _IDENT_RE.match(text) and (text not in KEYWORDS or text in KEY_KEYWORDS):
            return text
        raise self.fail(node, f"{what} key `{text}`: keys must be identifiers (and not most keywords)")

    def number(self, value: int, what: str, node: Any, maximum: int = U32_MAX) -> str:
        """Bare when it fits an INT token (u32, §2.5), quoted beyond that (u64 options)."""
        if not 0 <= value <= maximum:
            raise self.fail(node, f"{what} = {value}: it must be between 0 and {maximum}")
        return str(value) if value <= U32_MAX else quote(str(value))

    def string_map(self, items: dict[str, str], what: str, node: Any) -> _Compound:
        """`{ K = "v" }` on one line when short, else one pair per line."""
        if not items:
            return _Compound("{", "}", (), "{}")
        pairs = [(self.key(k, what, node), quote(v)) for k, v in items.items()]
        one_line = "{ " + " ".join(f"{k} = {v}" for k, v in pairs) + " }"
        width = max(len(k) for k, _ in pairs)
        entries = tuple((k, f"{k.ljust(width)} = {v}") for k, v in pairs)
        return _Compound("{", "}", entries, one_line if len(pairs) == 1 and len(one_line) <= 80 else None)

    def agent(self, ref: AgentRef, node: Any) -> str:
        """The agent after `call`: a name keyword-free identifier, or a quoted path."""
        if ref.kind == "path":
            if ".." in ref.value.split("/"):
                raise self.fail(node, f'agent path "{ref.value}": it contains a `..` component')
            return quote(ref.value)
        if _is_ident(ref.value) or ref.value in AGENT_KEYWORDS:
            return ref.value
        raise self.fail(
            node,
            f"agent name `{ref.value}`: after `call` a name must be an identifier that is not a keyword "
            "(a quoted agent is always a path)",
        )

    def on_fail(self, value: OnFailContinue | OnFailAgent, node: Any) -> str:
        """§6.0: `continue`, a bare name, a quoted name without `/`, or a quoted path with `/`."""
        if isinstance(value, OnFailContinue):
            return "continue"
        ref = value.value
        if ref.value == "continue":
            raise self.fail(node, "on_fail agent `continue`: that word always means 'continue'")
        if ref.kind == "path":
            if "/" not in ref.value or ".." in ref.value.split("/"):
                raise self.fail(node, f'on_fail path "{ref.value}": it needs a `/` and no `..` component')
            return quote(ref.value)
        if _IDENT_RE.match(ref.value) and ref.value not in ("meta", "do"):
            return ref.value
        if "/" in ref.value:
            raise self.fail(node, f"on_fail agent name `{ref.value}`: a quoted value with `/` is a path")
        return quote(ref.value)

    # ---- layout

    def emit(self, depth: int, text: str) -> None:
        self.lines.append(INDENT * depth + text)

    # ---- comments (attached to items by `layout`; each is written once)

    def has_comments(self, anchor: Anchor) -> bool:
        notes = self.notes
        return any(anchor in table for table in (notes.leading, notes.trailing, notes.dangling)) or bool(
            notes.option_keys.get(anchor)
        )

    def lead(self, depth: int, anchor: Anchor | None) -> None:
        """The comments written on their own lines right before the item."""
        if anchor is not None:
            for note in self.notes.leading.pop(anchor, ()):
                self.emit(depth, note.text)

    def trail(self, anchor: Anchor | None, start: int) -> None:
        """The item's end-of-line comments, back at the end of its first line (`start`) or its last.

        One comment per line: two on one line would read back as one comment (`// a  // b`). Of several
        for the first line the first stays and the others follow on their own lines inside the item; of
        several for the last line the last stays and the others go before it, inside the item; for an
        item written on one line, one stays and the others go above it."""
        notes = sorted(self.notes.trailing.pop(anchor, ()) if anchor is not None else ())
        if not notes:
            return
        first = [note.text for note in notes if note.on_first_line]
        last = [note.text for note in notes if not note.on_first_line]
        indent = self.lines[start][: len(self.lines[start]) - len(self.lines[start].lstrip())]
        if len(self.lines) - start == 1:  # one line: the last comment stays on it, the rest above it
            texts = first + last
            self.lines[start] += "  " + texts[-1]
            self.lines[start:start] = [indent + text for text in texts[:-1]]
            return
        inner = indent + INDENT
        if last:
            end = self.lines[-1]
            self.lines[-1:] = [inner + text for text in last[:-1]] + [end + "  " + last[-1]]
        if first:
            self.lines[start] += "  " + first[0]
            self.lines[start + 1 : start + 1] = [inner + text for text in first[1:]]

    def split_trail(self, anchor: Anchor | None) -> bool:
        """Whether the item has end-of-line comments on its first line and on a later one: folded onto
        one line they would run together into one comment, so such an item is not folded."""
        notes = self.notes.trailing.get(anchor, ()) if anchor is not None else ()
        return len({note.on_first_line for note in notes}) == 2

    def take(self, anchor: Anchor) -> list[Note]:
        """Every comment of an item, wherever it was, for an item that is not written as such."""
        notes = self.notes
        taken = [*notes.leading.pop(anchor, ()), *notes.dangling.pop(anchor, ())]
        taken.extend(Note(t.offset, t.text) for t in notes.trailing.pop(anchor, ()))
        if anchor[0] == "opt":
            for entry in notes.entry_keys.pop(anchor, ()):
                taken.extend(self.take(("entry", anchor, entry)))
        return taken

    def inner(self, anchor: Anchor | None, keys: Iterable[str]) -> tuple[bool, list[Note]]:
        """Whether options about to be written carry comments, and the comments that end the block:
        its own closing comments plus those of options that are not written (unknown or ignored keys)."""
        if anchor is None:
            return False, []
        commented = self.notes.option_keys.pop(anchor, set())
        written = set(keys)
        closing = list(self.notes.dangling.pop(anchor, ()))
        for key in commented - written:
            closing.extend(self.take(("opt", anchor, key)))
        return bool(commented & written), sorted(closing)

    def folded(self, pairs: Sequence[Pair], owner: Anchor | None) -> list[Pair]:
        """`pairs` with each list or map value that stays on one line replaced by that line: one whose
        entries carry comments (or with comments before its closing bracket) keeps one entry per line."""
        result: list[Pair] = []
        for key, value in pairs:
            if isinstance(value, _Compound) and value.fold is not None:
                option = None if owner is None else ("opt", owner, key)
                if option is None or not (
                    self.notes.entry_keys.get(option)
                    or self.notes.dangling.get(option)
                    or self.split_trail(option)
                ):
                    value = value.fold
            result.append((key, value))
        return result

    def closing(self, depth: int, notes: Sequence[Note]) -> None:
        for note in notes:
            self.emit(depth, note.text)

    # ---- blocks

    def block(
        self,
        depth: int,
        head: str,
        pairs: Sequence[Pair],
        compact: int = 0,
        braces: bool = False,
        anchor: Anchor | None = None,
    ) -> None:
        """`head { pairs }`: on one line when there are at most `compact` short pairs, else aligned.
        Without pairs the braces are left out unless the construct requires them (`braces`). A block
        holding comments is never written on one line (they would leave their options)."""
        pairs = self.folded(pairs, anchor)
        commented, closing = self.inner(anchor, (k for k, _ in pairs))
        if not pairs and not closing:
            self.emit(depth, f"{head} {{}}" if braces else head)
            return
        one_line = not commented and not closing and len(pairs) <= compact and not self.split_trail(anchor)
        if one_line and all(isinstance(v, str) for _, v in pairs):
            line = f"{head} {{ " + " ".join(f"{k} = {v}" for k, v in pairs) + " }"
            if len(INDENT * depth + line) <= _LINE_WIDTH:
                self.emit(depth, line)
                return
        self.emit(depth, f"{head.rstrip()} {{")
        self.pairs(depth + 1, pairs, anchor)
        self.closing(depth + 1, closing)
        self.emit(depth, "}")

    def pairs(self, depth: int, pairs: Sequence[Pair], owner: Anchor | None = None) -> None:
        pairs = self.folded(pairs, owner)
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            self.option(
                depth, f"{key.ljust(width)} = ", value, None if owner is None else ("opt", owner, key)
            )

    def option(self, depth: int, prefix: str, value: str | _Compound, anchor: Anchor | None) -> None:
        """One option (`prefix` is its `key = `) with its comments; a list or map value that is not
        folded has one entry per line, each with its own comments."""
        self.lead(depth, anchor)
        start = len(self.lines)
        if isinstance(value, str):
            if anchor is not None:  # comments inside the option (`key = // …` value): before it
                self.closing(depth, self.notes.dangling.pop(anchor, ()))
                start = len(self.lines)
            self.emit(depth, prefix + value)
        else:
            self.emit(depth, prefix + value.opener)
            entries = set(self.notes.entry_keys.pop(anchor, ())) if anchor is not None else set()
            for entry, text in value.entries:
                at = None if anchor is None else ("entry", anchor, entry)
                entries.discard(entry)
                self.lead(depth + 1, at)
                entry_start = len(self.lines)
                self.emit(depth + 1, text)
                self.trail(at, entry_start)
            if anchor is not None:  # its closing comments, and those of entries it no longer has
                rest = list(self.notes.dangling.pop(anchor, ()))
                for entry in entries:
                    rest.extend(self.take(("entry", anchor, entry)))
                self.closing(depth + 1, sorted(rest))
            self.emit(depth, value.closer)
        self.trail(anchor, start)

    def body(self, depth: int, nodes: Sequence[Any]) -> None:
        """Nodes one after another; a blank line separates any multi-line node from its neighbours."""
        top_level = nodes is self.wf.body
        previous_multiline = False
        for index, node in enumerate(nodes):
            if top_level and isinstance(node, AlwaysNode):
                raise self.fail(
                    node,
                    "a nested `always` node directly in the workflow body: there `always { … }` "
                    "adds to the workflow's always list",
                )
            start = len(self.lines)
            self.lead(depth, _at(node))
            node_start = len(self.lines)
            self.node(depth, node)
            self.trail(_at(node), node_start)
            if (
                isinstance(node, DoNode)
                and index + 1 < len(nodes)
                and isinstance(nodes[index + 1], WhileNode)
            ):
                # `do { … } while` always reads as a do-while loop (§4 rule 2). At the top level an empty
                # `always {}` (which adds nothing) keeps them apart; inside a block nothing can.
                if not top_level:
                    raise self.fail(
                        nodes[index + 1],
                        "a `while` loop directly after a plain `do` block: the language always reads "
                        "`do { … } while …` as a do-while loop",
                    )
                self.lines.append("")
                separator = ("separator", index + 1)
                self.lead(depth, separator)
                separator_start = len(self.lines)
                self.nested(depth, "always", (), (), anchor=separator)
                self.trail(separator, separator_start)
            # lines of code, not comments: a comment may be written above the step or inside the block
            # around it (several end-of-line comments), and reads back as leading the step either way
            multiline = sum(not line.lstrip().startswith("//") for line in self.lines[node_start:]) > 1
            if index and (multiline or previous_multiline):
                self.lines.insert(start, "")
            previous_multiline = multiline

    def nested(
        self,
        depth: int,
        head: str,
        pairs: Sequence[Pair],
        nodes: Sequence[Any],
        tail: str = "",
        anchor: Anchor | None = None,
    ) -> None:
        """A block with options and child nodes."""
        _commented, closing = self.inner(anchor, (k for k, _ in pairs))
        if not pairs and not nodes and not closing:
            self.emit(depth, f"{head} {{}}{tail}")
            return
        self.emit(depth, f"{head} {{")
        self.pairs(depth + 1, pairs, anchor)
        if pairs and nodes:
            self.lines.append("")
        self.body(depth + 1, nodes)
        self.closing(depth + 1, closing)
        self.emit(depth, f"}}{tail}")

    # ---- workflow

    def workflow(self) -> str:
        wf = self.wf
        ignored = [note for note in wf.notes if note.code == "unknown-option"] if self.refuse_loss else []
        if ignored:
            note = ignored[0]
            more = (
                f" ({len(ignored) - 1} more such key{'s' if len(ignored) > 2 else ''} below)"
                if len(ignored) > 1
                else ""
            )
            hint = f" ({note.hint})" if note.hint else ""
            raise UnformattableError(
                f"cannot format: {note.message}{hint}, and formatting would delete it — correct or remove it "
                f"first{more}",
                file=wf.source_path or None,
                line=note.line,
                column=note.column,
            )
        if self.notes.ignored_code is not None:
            line, column = self.notes.ignored_code
            raise UnformattableError(
                f"cannot format text after the closing `}}` of workflow `{wf.name}`: the language ignores "
                "it and formatting would delete it (if it is another workflow, move it to a file of its own)",
                file=wf.source_path or None,
                line=line,
                column=column,
            )
        self.lead(0, _WF)
        header = len(self.lines)
        self.emit(0, f"workflow {self.name(wf.name, 'workflow name', wf)} {{")
        sections = 0
        meta = self.meta_pairs()
        if meta or self.has_comments(_META):
            self.lead(1, _META)
            start = len(self.lines)
            self.block(1, "meta", meta, braces=True, anchor=_META)
            self.trail(_META, start)
            sections += 1
        if wf.inputs or self.input_blocks():
            if sections:
                self.lines.append("")
            self.inputs(wf.inputs)
            sections += 1
        if wf.body:
            if sections:
                self.lines.append("")
            self.body(1, wf.body)
            sections += 1
        notes = self.notes
        for table in (notes.leading, notes.trailing, notes.dangling):  # empty blocks not written as such
            for anchor in [a for a in table if a[0] == "separator"]:
                table[_ALWAYS].extend(table.pop(anchor))  # type: ignore[arg-type]
        if wf.always or self.has_comments(_ALWAYS):
            if sections:
                self.lines.append("")
            self.lead(1, _ALWAYS)
            start = len(self.lines)
            self.nested(1, "always", (), wf.always, anchor=_ALWAYS)
            self.trail(_ALWAYS, start)
        # The workflow's own closing comments, and (never expected) any comment no item took.
        _commented, closing = self.inner(_WF, ())
        wf_trailing = notes.trailing.pop(_WF, [])
        unplaced = chain(notes.leading.values(), notes.trailing.values(), notes.dangling.values())
        closing = sorted([*closing, *(Note(n.offset, n.text) for n in chain.from_iterable(unplaced))])
        if closing:
            if len(self.lines) > 1:
                self.lines.append("")
            self.closing(1, closing)
        self.emit(0, "}")
        notes.trailing[_WF] = wf_trailing
        self.trail(_WF, header)
        self.closing(0, notes.after)
        return "\n".join(self.lines) + "\n"

    def meta_pairs(self) -> list[Pair]:
        wf = self.wf
        pairs: list[Pair] = []
        if wf.title is not None:
            pairs.append(("title", quote(wf.title)))
        if wf.description or "description" in wf.written:
            pairs.append(("description", quote(wf.description)))
        if wf.trigger != "manual" or "trigger" in wf.written:
            pairs.append(("trigger", wf.trigger))
        if wf.targets or "targets" in wf.written:
            pairs.append(("targets", _list(wf.targets)))
        if wf.group is not None:
            pairs.append(("group", quote(wf.group)))
        return pairs

    def inputs(self, inputs: Sequence[InputDecl]) -> None:
        """One `inputs` block; a new block starts before an input named like a modifier (`required`, …),
        which would otherwise be read as a modifier of the input above it (§4 rule 6)."""
        groups: list[list[InputDecl]] = [[]]
        for decl in inputs:
            if decl.name in _MODIFIERS and groups[-1]:
                groups.append([])
            groups[-1].append(decl)
        # The n-th block written keeps the comments of the n-th block of the source (around `inputs {`
        # and before its `}`); those of any further source blocks end the last one.
        extra = sorted(n for n in self.input_blocks() if n >= len(groups))
        for index, group in enumerate(groups):
            at = _inputs(index)
            if index:
                self.lines.append("")
            self.lead(1, at)
            first = len(self.lines)
            width = max((len(decl.name) for decl in group), default=0)
            self.emit(1, "inputs {")
            for decl in group:
                self.lead(2, _at(decl))
                start = len(self.lines)
                self.emit(2, self.input_decl(decl, width).rstrip())
                self.trail(_at(decl), start)
            closing = self.inner(at, ())[1]
            if index == len(groups) - 1:
                closing = sorted(chain(closing, *(self.take(_inputs(n)) for n in extra)))
            self.closing(2, closing)
            self.emit(1, "}")
            self.trail(at, first)

    def input_blocks(self) -> set[int]:
        """The source's `inputs` blocks that carry comments (by their order in the file)."""
        notes = self.notes
        tables = (notes.leading, notes.trailing, notes.dangling)
        return {int(a[1]) for table in tables for a in table if a[0] == "inputs"}  # type: ignore[call-overload]

    def input_decl(self, decl: InputDecl, width: int) -> str:
        parts = [self.name(decl.name, "input name", decl).ljust(width)]
        if decl.input_type == "boolean":
            if decl.required:
                raise self.fail(
                    decl, f"boolean input `{decl.name}` marked required: booleans are never required"
                )
            parts.append("boolean")
        elif decl.required:
            parts.append("required")
        elif decl.default is None:
            raise self.fail(
                decl,
                f"optional input `{decl.name}` without a default: a string input without one is required",
            )
        if decl.default is not None:
            parts.append(f"default = {quote(decl.default)}")
        if decl.description is not None:
            parts.append(f"description = {quote(decl.description)}")
        return " ".join(parts)

    # ---- nodes

    def node(self, depth: int, node: Any) -> None:
        at = _at(node)
        if isinstance(node, CallNode):
            head = f"call {self.agent(node.agent, node)}"
            self.block(depth, head, self.call_pairs(node), compact=2, anchor=at)
        elif isinstance(node, CallWorkflowNode):
            self.call_workflow(depth, node)
        elif isinstance(node, (IfNode, UnlessNode)):
            self.nested(depth, f"{node.type} {self.condition(node)}", (), node.body, anchor=at)
        elif isinstance(node, WhileNode):
            head = f"while {self.step_marker(node)}"
            self.nested(depth, head, self.loop_pairs(node), node.body, anchor=at)
        elif isinstance(node, DoWhileNode):
            tail = f" while {self.step_marker(node)}"
            self.nested(depth, "do", self.loop_pairs(node), node.body, tail=tail, anchor=at)
        elif isinstance(node, DoNode):
            pairs: list[Pair] = []
            if node.output is not None:
                pairs.append(("output", quote(node.output)))
            if node.with_ or "with" in node.written:
                pairs.append(("with", _list(node.with_)))
            self.nested(depth, "do", pairs, node.body, anchor=at)
        elif isinstance(node, ParallelNode):
            self.parallel(depth, node)
        elif isinstance(node, GateNode):
            self.gate(depth, node)
        elif isinstance(node, AlwaysNode):
            self.nested(depth, "always", (), node.body, anchor=at)
        elif isinstance(node, ScriptNode):
            head = f"script {self.name(node.name, 'script name', node)}"
            self.block(depth, head, self.script_pairs(node), braces=True, anchor=at)
        elif isinstance(node, ForEachNode):
            head = f"foreach {self.name(node.name, 'foreach name', node)}"
            self.block(depth, head, self.foreach_pairs(node), anchor=at)
        else:  # pragma: no cover - the AST's node union is closed
            raise self.fail(node, f"unknown node {type(node).__name__}")

    def call_pairs(self, node: CallNode) -> list[Pair]:
        pairs: list[Pair] = []
        if node.output is not None:
            pairs.append(("output", quote(node.output)))
        if node.with_ or "with" in node.written:
            pairs.append(("with", _list(node.with_)))
        if node.plugin_dirs or "plugin_dirs" in node.written:
            pairs.append(("plugin_dirs", _list(node.plugin_dirs)))
        if node.retries or "retries" in node.written:
            pairs.append(("retries", self.number(node.retries, "retries", node)))
        if node.timeout is not None:
            pairs.append(("timeout", quote(node.timeout)))
        if node.max_turns is not None:
            pairs.append(("max_turns", self.number(node.max_turns, "max_turns", node)))
        if node.as_identity is not None:
            pairs.append(("as", quote(node.as_identity)))
        if node.on_fail is not None:
            pairs.append(("on_fail", self.on_fail(node.on_fail, node)))
        return pairs

    def call_workflow(self, depth: int, node: CallWorkflowNode) -> None:
        head = f"call workflow {self.name(node.workflow, 'workflow name', node)}"
        pairs: list[Pair] = []
        if node.retries or "retries" in node.written:
            pairs.append(("retries", self.number(node.retries, "retries", node)))
        if node.as_identity is not None:
            pairs.append(("as", quote(node.as_identity)))
        if node.on_fail is not None:
            pairs.append(("on_fail", self.on_fail(node.on_fail, node)))
        at = _at(node)
        if not node.inputs and "inputs" not in node.written:
            self.block(depth, head, pairs, compact=2, anchor=at)
            return
        _commented, closing = self.inner(at, ["inputs", *(k for k, _ in pairs)])
        self.emit(depth, f"{head} {{")
        inputs = self.folded([("inputs", self.string_map(node.inputs, "call workflow input", node))], at)
        self.option(depth + 1, "inputs ", inputs[0][1], ("opt", at, "inputs"))
        self.pairs(depth + 1, pairs, at)
        self.closing(depth + 1, closing)
        self.emit(depth, "}")

    def condition(self, node: IfNode | UnlessNode) -> str:
        cond = node.condition
        if isinstance(cond, BoolInputCondition):
            return self.name(cond.input, "condition input", node)
        step = self.name(cond.step, "condition step", node)
        return f"{step}.{self.name(cond.marker, 'condition marker', node)}"

    def step_marker(self, node: WhileNode | DoWhileNode) -> str:
        return f"{self.name(node.step, 'loop step', node)}.{self.name(node.marker, 'loop marker', node)}"

    def loop_pairs(self, node: WhileNode | DoWhileNode) -> list[Pair]:
        pairs: list[Pair] = [("max_iterations", self.number(node.max_iterations, "max_iterations", node))]
        if node.stuck_after is not None:
            pairs.append(("stuck_after", self.number(node.stuck_after, "stuck_after", node)))
        if node.on_max_iter != "fail" or "on_max_iter" in node.written:
            pairs.append(("on_max_iter", node.on_max_iter))
        return pairs

    def parallel(self, depth: int, node: ParallelNode) -> None:
        if not node.calls:
            raise self.fail(node, "a parallel block without calls: it needs at least one")
        indexes = {str(i) for i in range(len(node.calls))}
        for field, mapping in (
            ("call_outputs", node.call_outputs),
            ("call_with", node.call_with),
            ("call_if", node.call_if),
            ("call_retries", node.call_retries),
        ):
            stray = sorted(set(mapping) - indexes)
            if stray:
                raise self.fail(node, f"parallel {field} for call index {stray[0]}: there is no such call")
        pairs: list[Pair] = []
        if not node.fail_fast or "fail_fast" in node.written:
            pairs.append(("fail_fast", "true" if node.fail_fast else "false"))
        if node.min_success is not None:
            pairs.append(("min_success", self.number(node.min_success, "min_success", node)))
        if node.output is not None:
            pairs.append(("output", quote(node.output)))
        if node.with_ or "with" in node.written:
            pairs.append(("with", _list(node.with_)))
        at = _at(node)
        _commented, closing = self.inner(at, (k for k, _ in pairs))
        self.emit(depth, "parallel {")
        self.pairs(depth + 1, pairs, at)
        heads = [f"call {self.agent(ref, node)}" for ref in node.calls]
        per_call = [self.parallel_call_pairs(node, str(i)) for i in range(len(node.calls))]
        width = max((len(h) for h, p in zip(heads, per_call, strict=True) if p), default=0)
        for ref, head, call_pairs in zip(node.calls, heads, per_call, strict=True):
            self.lead(depth + 1, _at(ref))
            start = len(self.lines)
            padded = head.ljust(width) if call_pairs else head
            self.block(depth + 1, padded, call_pairs, compact=4, anchor=_at(ref))
            self.trail(_at(ref), start)
        self.closing(depth + 1, closing)
        self.emit(depth, "}")

    def parallel_call_pairs(self, node: ParallelNode, index: str) -> list[Pair]:
        pairs: list[Pair] = []
        if index in node.call_outputs:
            pairs.append(("output", quote(node.call_outputs[index])))
        if index in node.call_with:
            pairs.append(("with", _list(node.call_with[index])))
        if index in node.call_retries:
            pairs.append(("retries", self.number(node.call_retries[index], "retries", node)))
        if index in node.call_if:
            step, marker = node.call_if[index]
            if "." in step:
                raise self.fail(node, f"parallel call if step `{step}`: the step part cannot contain a dot")
            pairs.append(("if", quote(f"{step}.{marker}")))
        return pairs

    def gate(self, depth: int, node: GateNode) -> None:
        if node.name != node.gate_type:
            raise self.fail(node, f"gate `{node.name}` of type `{node.gate_type}`: a gate's name is its type")
        head = f"gate {self.name(node.name, 'gate type', node)}"
        pairs = self.quality_gate_pairs(node) if node.is_quality_gate else self.gate_pairs(node)
        self.block(depth, head, pairs, braces=True, anchor=_at(node))

    def gate_pairs(self, node: GateNode) -> list[Pair]:
        pairs: list[Pair] = []
        if node.prompt is not None:
            pairs.append(("prompt", quote(node.prompt)))
        if node.approval_mode == "review_decision":
            if node.min_approvals != 1:
                raise self.fail(node, "a review_decision gate with min_approvals: the two cannot be combined")
            pairs.append(("mode", "review_decision"))
        else:
            if "mode" in node.written:
                pairs.append(("mode", "min_approvals"))
            if node.min_approvals != 1 or "min_approvals" in node.written:
                pairs.append(("min_approvals", self.number(node.min_approvals, "min_approvals", node)))
        if node.timeout_secs != _DEFAULT_GATE_TIMEOUT or "timeout" in node.written:
            self.number(node.timeout_secs, "timeout", node, U64_MAX)
            pairs.append(("timeout", _duration(node.timeout_secs)))
        if node.on_timeout != "fail" or "on_timeout" in node.written:
            pairs.append(("on_timeout", node.on_timeout))
        if node.as_identity is not None:
            pairs.append(("as", quote(node.as_identity)))
        options = node.options
        if isinstance(options, str):
            if "." not in options:
                raise self.fail(node, f"gate options `{options}`: a step field reference needs a dot")
            pairs.append(("options", quote(options)))
        elif options is not None:
            if all(k == v for k, v in options.items()):
                pairs.append(("options", _list(options)))
            else:
                pairs.append(("options", self.string_map(options, "gate options", node)))
        return pairs

    def quality_gate_pairs(self, node: GateNode) -> list[Pair]:
        if node.source is None or node.threshold is None or node.on_fail_action is None:
            raise self.fail(node, "a quality_gate without source, threshold and on_fail_action")
        if (
            node.prompt is not None
            or node.min_approvals != 1
            or node.approval_mode != "min_approvals"
            or node.timeout_secs != 0
            or node.on_timeout != "fail"
            or node.options is not None
        ):
            raise self.fail(node, "a quality_gate with approval settings (prompt, timeout, options, …)")
        if node.threshold > 100:
            raise self.fail(node, f"quality_gate threshold {node.threshold}: it must be 0-100")
        pairs: list[Pair] = [
            ("source", _word(node.source)),
            ("threshold", self.number(node.threshold, "threshold", node)),
        ]
        if node.on_fail_action != "fail" or "on_fail" in node.written:
            pairs.append(("on_fail", node.on_fail_action))
        if node.as_identity is not None:
            pairs.append(("as", quote(node.as_identity)))
        return pairs

    def script_pairs(self, node: ScriptNode) -> list[Pair]:
        pairs: list[Pair] = [("run", quote(node.run))]
        if node.timeout is not None:
            pairs.append(("timeout", self.number(node.timeout, "timeout", node, U64_MAX)))
        if node.retries or "retries" in node.written:
            pairs.append(("retries", self.number(node.retries, "retries", node)))
        if node.as_identity is not None:
            pairs.append(("as", quote(node.as_identity)))
        if node.on_fail is not None:
            pairs.append(("on_fail", self.on_fail(node.on_fail, node)))
        if node.env or "env" in node.written:
            pairs.append(("env", self.string_map(node.env, "script env", node)))
        return pairs

    def foreach_pairs(self, node: ForEachNode) -> list[Pair]:
        pairs: list[Pair] = [
            ("over", _word(node.over)),
            ("workflow", _word(node.workflow)),
            ("max_parallel", self.number(node.max_parallel, "max_parallel", node)),
        ]
        if node.ordered or "ordered" in node.written:
            pairs.append(("ordered", "true" if node.ordered else "false"))
        if node.on_cycle != "fail" or "on_cycle" in node.written:
            pairs.append(("on_cycle", node.on_cycle))
        if node.on_child_fail != "continue" or "on_child_fail" in node.written:
            pairs.append(("on_child_fail", node.on_child_fail))
        if node.scope is not None:
            pairs.append(("scope", self.string_map(node.scope, "foreach scope", node)))
        if node.filter or "filter" in node.written:
            pairs.append(("filter", self.string_map(node.filter, "foreach filter", node)))
        if node.inputs or "inputs" in node.written:
            pairs.append(("inputs", self.string_map(node.inputs, "foreach input", node)))
        return pairs


def format_workflow(wf: WorkflowDef, comments: AttachedComments | None = None) -> str:
    """Canonical `.wf` text for `wf`; raises `UnformattableError` for ASTs the language cannot express.

    `comments` (from `parser.parse_with_comments`, which parsed `wf`) are kept, each with the item it was
    written next to (rule in `runkon_flow.dsl.layout`). Without them the output has no comments.
    """
    return _Formatter(wf, comments).workflow()


def format_source(text: str, source_path: str = "") -> str:
    """Reformat `.wf` source text, keeping its comments (what `runkon-flow fmt` wants).

    Raises `WfLexError`/`WfParseError` if the text does not parse, and `UnformattableError` for parsed
    text only when it holds code the language ignores — an option key a construct does not read (a typo
    such as `retires`), code after the workflow's closing `}` — which formatting would delete.
    Everything else the parser produces can be written back.
    """
    wf, comments = parse_with_comments(text, source_path)
    return format_workflow(wf, comments)
