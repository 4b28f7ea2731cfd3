"""Property tests for the `.wf` parser and formatter (hypothesis).

1. No input — random text, token soup, or mutations of real and generated workflows — makes the parser
   raise anything but a `WfError`; whatever parses also formats and parses back to the same workflow.
2. Every valid workflow AST survives `parse_workflow(format_workflow(ast)) == ast`, and formatting is
   stable (formatting the re-parsed AST gives the same text).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runkon_flow.dsl import format_workflow, parse_workflow
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
    StepMarkerCondition,
    UnlessNode,
    WhileNode,
    WorkflowDef,
)
from runkon_flow.dsl.formatter import UnformattableError, format_source
from runkon_flow.dsl.lexer import KEYWORDS, comments, lex
from runkon_flow.dsl.parser import AGENT_KEYWORDS, KEY_KEYWORDS, SOFT_KEYWORDS
from runkon_flow.errors import WfError

from tests.corpus import CONFORMANCE_DIR

from .test_parse_workflow import EXAMPLE_14_1

CORPUS = CONFORMANCE_DIR
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U32 = 2**32 - 1
U64 = 2**64 - 1


def parse_or_wf_error(text: str) -> WorkflowDef | None:
    """Parse `text`; a `WfError` is an acceptable outcome, any other exception fails the test."""
    try:
        return parse_workflow(text, "fuzz.wf")
    except WfError:
        return None


def assert_round_trips(wf: WorkflowDef) -> None:
    text = format_workflow(wf)
    again = parse_workflow(text, wf.source_path)
    assert again == wf, text
    assert format_workflow(again) == text


def assert_source_round_trips(source: str, wf: WorkflowDef) -> None:
    """`source` parsed to `wf`: reformatting it with its comments keeps the meaning and is stable — or
    is refused, when it holds code the parser ignores (an unknown option key, code after the workflow),
    which formatting would delete."""
    assert_round_trips(wf)
    try:
        text = format_source(source)
    except UnformattableError as error:
        ignored = any(n.code == "unknown-option" for n in wf.notes)
        assert ignored or any(w.startswith("text after the closing") for w in wf.warnings), error
        return
    assert parse_workflow(text, wf.source_path) == wf
    assert format_source(text) == text


# --------------------------------------------------------------------------- 1. robustness

FRAGMENTS = [
    *sorted(KEYWORDS),
    "{", "}", "[", "]", ",", "=", ".", " ", "\n", "\t", "//", "/", "#", '"', "\\",
    "x", "a.b", "step.marker", "7", "007", "4294967296", '"2h"', "2h", '"agents/x.md"', '"../x"',
    "retries", "on_fail", "continue", "output", "with", "as", "timeout", "max_iterations", "on_max_iter",
    "stuck_after", "fail_fast", "min_success", "options", "source", "threshold", "run", "env", "over",
    "max_parallel", "scope", "filter", "ordered", "on_cycle", "on_child_fail", "mode", "review_decision",
    "prompt", "title", "trigger", "targets", "group", "quality_gate", "true", "false", "\ufeff", "é",
]  # fmt: skip


def _seed_texts() -> list[str]:
    texts = [EXAMPLE_14_1]
    if CORPUS.is_dir():
        texts.extend(path.read_text(encoding="utf-8") for path in sorted(CORPUS.glob("*.wf")))
    return texts


SEEDS = _seed_texts()

token_soup = st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(" ".join)
workflow_soup = token_soup.map(lambda body: f"workflow w {{ {body} }}")


@st.composite
def mutated(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    """A text with a few random edits: deletions, duplications, insertions and replacements."""
    text = draw(texts)
    for _ in range(draw(st.integers(1, 4))):
        size = len(text)
        start = draw(st.integers(0, size))
        end = draw(st.integers(start, min(size, start + 40)))
        action = draw(st.sampled_from(["delete", "duplicate", "insert", "replace"]))
        if action == "delete":
            text = text[:start] + text[end:]
        elif action == "duplicate":
            text = text[:end] + text[start:end] + text[end:]
        else:
            piece = draw(st.sampled_from(FRAGMENTS) | st.text(max_size=3))
            text = text[:start] + piece + (text[start:] if action == "insert" else text[end:])
    return text


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_only_ever_raises_wf_errors(text: str) -> None:
    parse_or_wf_error(text)
    parse_or_wf_error("workflow w {" + text)


@SETTINGS
@given(workflow_soup)
def test_token_soup_only_ever_raises_wf_errors_and_what_parses_round_trips(text: str) -> None:
    wf = parse_or_wf_error(text)
    if wf is not None:
        assert_source_round_trips(text, wf)


@SETTINGS
@given(mutated(st.sampled_from(SEEDS)))
def test_mutated_real_workflows_only_ever_raise_wf_errors_and_what_parses_round_trips(text: str) -> None:
    wf = parse_or_wf_error(text)
    if wf is not None:
        assert_source_round_trips(text, wf)


# --------------------------------------------------------------------------- 2. generated valid ASTs

IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,7}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
NAME = IDENT | st.sampled_from(sorted(SOFT_KEYWORDS))
KEY = IDENT | st.sampled_from(sorted(KEY_KEYWORDS))
# Cheap to draw, yet covering everything quoting must get right: quotes, backslashes, newlines, tabs,
# CR, `//`, `{{…}}`, dots, slashes, non-ASCII and Unicode line separators.
TEXT = st.text('aZ09 _-./"\\\n\t\r{}#é—\u2028', max_size=10) | st.sampled_from(
    ["", "{{ticket_id}}", 'say "hi"', "a\\b", "two\nlines", "gate", "continue", "x.y", "// c", "\\"]
)
U32S = st.integers(0, U32) | st.sampled_from([0, 1, 3, U32])
U64S = st.integers(0, U64) | st.sampled_from([0, 60, 3600, 86400, U32 + 1, U64])
STRING_MAP = st.dictionaries(KEY, TEXT, max_size=3)


def _no_parent(path: str) -> bool:
    return ".." not in path.split("/")


AGENT = st.one_of(
    st.builds(AgentRef, kind=st.just("name"), value=IDENT | st.sampled_from(sorted(AGENT_KEYWORDS))),
    st.builds(AgentRef, kind=st.just("path"), value=TEXT.filter(_no_parent)),
)
ON_FAIL = st.none() | st.one_of(
    st.builds(OnFailContinue),
    st.builds(
        OnFailAgent,
        value=st.one_of(
            st.builds(
                AgentRef, kind=st.just("name"), value=TEXT.filter(lambda s: "/" not in s and s != "continue")
            ),
            st.builds(
                AgentRef, kind=st.just("path"), value=st.tuples(TEXT, TEXT).map("/".join).filter(_no_parent)
            ),
        ),
    ),
)
OPTIONAL_TEXT = st.none() | TEXT


def call_nodes() -> st.SearchStrategy[CallNode]:
    return st.builds(
        CallNode,
        agent=AGENT,
        retries=U32S,
        on_fail=ON_FAIL,
        output=OPTIONAL_TEXT,
        with_=st.lists(TEXT, max_size=3),
        as_identity=OPTIONAL_TEXT,
        plugin_dirs=st.lists(TEXT, max_size=2),
        timeout=OPTIONAL_TEXT,
        max_turns=st.none() | U32S,
    )


def call_workflow_nodes() -> st.SearchStrategy[CallWorkflowNode]:
    return st.builds(
        CallWorkflowNode,
        workflow=NAME,
        inputs=STRING_MAP,
        retries=U32S,
        on_fail=ON_FAIL,
        as_identity=OPTIONAL_TEXT,
    )


@st.composite
def parallel_nodes(draw: st.DrawFn) -> ParallelNode:
    calls = draw(st.lists(AGENT, min_size=1, max_size=4))
    indexes = st.sampled_from([str(i) for i in range(len(calls))])
    return ParallelNode(
        fail_fast=draw(st.booleans()),
        min_success=draw(st.none() | U32S),
        calls=calls,
        output=draw(OPTIONAL_TEXT),
        call_outputs=draw(st.dictionaries(indexes, TEXT, max_size=2)),
        with_=draw(st.lists(TEXT, max_size=2)),
        call_with=draw(st.dictionaries(indexes, st.lists(TEXT, max_size=2), max_size=2)),
        call_if=draw(
            st.dictionaries(indexes, st.tuples(TEXT.filter(lambda s: "." not in s), TEXT), max_size=2)
        ),
        call_retries=draw(st.dictionaries(indexes, U32S, max_size=2)),
    )


@st.composite
def gate_nodes(draw: st.DrawFn) -> GateNode:
    if draw(st.booleans()):
        return GateNode(
            name="quality_gate",
            gate_type="quality_gate",
            timeout_secs=0,
            as_identity=draw(OPTIONAL_TEXT),
            source=draw(TEXT),
            threshold=draw(st.integers(0, 100)),
            on_fail_action=draw(st.sampled_from(["fail", "continue"])),
        )
    kind = draw(NAME.filter(lambda s: s != "quality_gate"))
    mode = draw(st.sampled_from(["min_approvals", "review_decision"]))
    options = draw(
        st.one_of(
            st.none(),
            STRING_MAP,
            st.lists(TEXT, max_size=3).map(lambda items: {i: i for i in items}),
            st.tuples(TEXT, TEXT).map(".".join),
        )
    )
    return GateNode(
        name=kind,
        gate_type=kind,
        prompt=draw(OPTIONAL_TEXT),
        min_approvals=1 if mode == "review_decision" else draw(U32S),
        approval_mode=mode,
        timeout_secs=draw(U64S),
        on_timeout=draw(st.sampled_from(["fail", "continue"])),
        as_identity=draw(OPTIONAL_TEXT),
        options=options,
    )


def script_nodes() -> st.SearchStrategy[ScriptNode]:
    return st.builds(
        ScriptNode,
        name=NAME,
        run=TEXT,
        env=STRING_MAP,
        timeout=st.none() | U64S,
        retries=U32S,
        on_fail=ON_FAIL,
        as_identity=OPTIONAL_TEXT,
    )


def foreach_nodes() -> st.SearchStrategy[ForEachNode]:
    return st.builds(
        ForEachNode,
        name=NAME,
        over=TEXT,
        scope=st.none() | STRING_MAP,
        filter=STRING_MAP,
        ordered=st.booleans(),
        on_cycle=st.sampled_from(["fail", "warn"]),
        max_parallel=U32S,
        workflow=TEXT,
        inputs=STRING_MAP,
        on_child_fail=st.sampled_from(["halt", "continue", "skip_dependents"]),
    )


LEAVES = st.one_of(
    call_nodes(), call_workflow_nodes(), parallel_nodes(), gate_nodes(), script_nodes(), foreach_nodes()
)
CONDITION = st.one_of(
    st.builds(StepMarkerCondition, step=NAME, marker=NAME), st.builds(BoolInputCondition, input=NAME)
)
LOOP = {
    "step": NAME,
    "marker": NAME,
    "max_iterations": U32S,
    "stuck_after": st.none() | U32S,
    "on_max_iter": st.sampled_from(["fail", "continue"]),
}


def separate_do_from_while(nodes: list[Any]) -> list[Any]:
    """Inside a block a plain `do` right before a `while` cannot be written (it reads as do-while): put a
    call between."""
    fixed: list[Any] = []
    for node in nodes:
        if isinstance(node, WhileNode) and fixed and isinstance(fixed[-1], DoNode):
            fixed.append(CallNode(agent=AgentRef(kind="name", value="between")))
        fixed.append(node)
    return fixed


def bodies(children: st.SearchStrategy[Any], top_level: bool = False) -> st.SearchStrategy[list[Any]]:
    """Node lists; directly in the workflow body an `always { … }` is the always list, never a node."""
    nodes = st.lists(children, max_size=3)
    if top_level:  # the formatter itself keeps a top-level `do` and `while` apart
        return nodes.map(lambda items: [n for n in items if not isinstance(n, AlwaysNode)])
    return nodes.map(separate_do_from_while)


def blocks(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    body = bodies(children)
    return st.one_of(
        st.builds(IfNode, condition=CONDITION, body=body),
        st.builds(UnlessNode, condition=CONDITION, body=body),
        st.builds(WhileNode, body=body, **LOOP),
        st.builds(DoWhileNode, body=body, **LOOP),
        st.builds(DoNode, output=OPTIONAL_TEXT, with_=st.lists(TEXT, max_size=2), body=body),
        st.builds(AlwaysNode, body=body),
    )


NODES = st.recursive(LEAVES, blocks, max_leaves=4)


@st.composite
def input_decls(draw: st.DrawFn) -> InputDecl:
    boolean = draw(st.booleans())
    default = draw(OPTIONAL_TEXT)
    required = False if boolean else (default is None or draw(st.booleans()))
    return InputDecl(
        name=draw(NAME),
        required=required,
        default=default,
        description=draw(OPTIONAL_TEXT),
        input_type="boolean" if boolean else "string",
    )


WORKFLOWS = st.builds(
    WorkflowDef,
    name=NAME,
    title=OPTIONAL_TEXT,
    description=TEXT,
    trigger=st.sampled_from(["manual", "pr", "scheduled"]),
    targets=st.lists(TEXT, max_size=3),
    group=OPTIONAL_TEXT,
    inputs=st.lists(input_decls(), max_size=4),
    body=bodies(NODES, top_level=True),
    always=bodies(NODES),
)


@SETTINGS
@given(WORKFLOWS)
def test_generated_workflows_survive_format_then_parse(wf: WorkflowDef) -> None:
    assert_round_trips(wf)


@SETTINGS
@given(mutated(WORKFLOWS.map(format_workflow)))
def test_mutated_generated_workflows_only_ever_raise_wf_errors_and_what_parses_round_trips(text: str) -> None:
    wf = parse_or_wf_error(text)
    if wf is not None:
        assert_source_round_trips(text, wf)


# --------------------------------------------------------------------------- 3. comments stay in place


def _code(line: str) -> str:
    return " ".join(line.split())


@st.composite
def with_comments(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> tuple[str, dict[str, tuple[str, str]]]:
    """A formatted text with `//@tN@` comments added at the end of some lines and `//@oN@` comments on
    lines of their own before others; returns it and, for each marker, where it must stay: (`trail`, the
    code of its line) or (`lead`, the code of the line below it)."""
    text = draw(texts.filter(lambda text: text.splitlines() == text.split("\n")[:-1]))  # no CR in strings
    lines = text.splitlines()
    out: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    for line in lines:
        code = line.split("//", 1)[0] if line.lstrip().startswith("//") else line
        if not code.strip() or line.lstrip().startswith("//"):
            out.append(line)
            continue
        if draw(st.integers(0, 3)) == 0:
            marker = f"@o{len(where)}@"
            where[marker] = ("lead", _code(line))
            out.append(" " * (len(line) - len(line.lstrip())) + "//" + marker)
        if draw(st.integers(0, 3)) == 0:
            marker = f"@t{len(where)}@"
            where[marker] = ("trail", _code(line))
            line += "  //" + marker
        out.append(line)
    return "\n".join(out) + "\n", where


def assert_comments_stay(source: str, where: dict[str, tuple[str, str]]) -> None:
    text = format_source(source)
    assert parse_workflow(text) == parse_workflow(source)
    assert format_source(text) == text
    found = comments(text)
    lines = text.splitlines()
    code_of = {comment.line: lines[comment.line - 1][: comment.column - 1] for comment in found}
    seen: list[str] = []
    for comment in found:
        markers = re.findall(r"@[to]\d+@", comment.text)
        assert len(markers) <= 1, f"comments run together: {comment.text}\n{text}"
        if not markers:
            continue
        seen.append(markers[0])
        kind, code = where[markers[0]]
        before = lines[comment.line - 1][: comment.column - 1]
        if kind == "trail":
            assert _code(before) == code, f"{markers[0]} left `{code}`\n{text}"
        else:
            assert not before.strip(), f"{markers[0]} is no longer on a line of its own\n{text}"
            below = (
                _code(code_of.get(n, line)) for n, line in enumerate(lines[comment.line :], comment.line + 1)
            )
            assert next(c for c in below if c) == code, f"{markers[0]} is no longer above `{code}`\n{text}"
    assert sorted(seen) == sorted(where), text


@SETTINGS
@given(with_comments(WORKFLOWS.map(format_workflow)))
def test_comments_added_to_formatted_workflows_stay_where_they_were_written(
    case: tuple[str, dict[str, tuple[str, str]]],
) -> None:
    assert_comments_stay(*case)


@SETTINGS
@given(with_comments(st.sampled_from(SEEDS).map(format_source)))
def test_comments_added_to_the_corpus_stay_where_they_were_written(
    case: tuple[str, dict[str, tuple[str, str]]],
) -> None:
    assert_comments_stay(*case)


@st.composite
def respread(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> tuple[str, int]:
    """The same tokens laid out anyhow: between two tokens a space, a line break, an end-of-line
    comment `//@N@` or a comment on a line of its own (`workflow` ⏎ `w  //@0@` ⏎ `{` …); returns the
    text and how many comments it added."""
    text = draw(texts.filter(lambda text: text.splitlines() == text.split("\n")[:-1]))
    tokens = lex(text)
    out: list[str] = []
    added = 0
    for token, following in itertools.pairwise(tokens):
        between = text[token[2] : following[2]]
        out.append(between.rstrip(" \t\n"))
        if "\n" in between and "//" in between:  # the token, then a comment of the text's own
            out.append("\n")
            continue
        choice = draw(st.integers(0, 5))
        if choice < 2:
            out.append(f"  //@{added}@\n" if choice == 0 else f"\n//@{added}@\n")
            added += 1
        else:
            out.append("\n" if choice == 2 else " ")
    return "".join(out) + "\n", added


def assert_comments_kept_apart(source: str, added: int) -> None:
    wf = parse_workflow(source)
    text = format_source(source)
    assert parse_workflow(text) == wf
    assert format_source(text) == text
    found = [re.findall(r"@\d+@", comment.text) for comment in comments(text)]
    assert all(len(markers) <= 1 for markers in found), f"comments run together\n{text}"
    assert sorted(m for markers in found for m in markers) == sorted(f"@{n}@" for n in range(added)), text


@SETTINGS
@given(respread(WORKFLOWS.map(format_workflow)))
def test_generated_workflows_laid_out_anyhow_with_comments_format_stably_keeping_each_comment(
    case: tuple[str, int],
) -> None:
    assert_comments_kept_apart(*case)


@SETTINGS
@given(respread(st.sampled_from(SEEDS)))
def test_the_corpus_laid_out_anyhow_with_comments_formats_stably_keeping_each_comment(
    case: tuple[str, int],
) -> None:
    assert_comments_kept_apart(*case)
