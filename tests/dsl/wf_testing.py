"""Small helpers shared by the parser tests: parse a snippet, or parse it expecting a failure."""

from __future__ import annotations

from typing import Any

import pytest
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.errors import WfError, WfLexError, WfParseError

SOURCE = "flows/test.wf"


def parse(text: str) -> WorkflowDef:
    """Parse a whole workflow text as if it came from `flows/test.wf`."""
    return parse_workflow(text, SOURCE)


def parse_body(body: str) -> list[Any]:
    """The body nodes of `workflow w { <body> }`."""
    return parse(f"workflow w {{\n{body}\n}}\n").body


def only(body: str) -> Any:
    """The single node of `workflow w { <body> }`."""
    nodes = parse_body(body)
    assert len(nodes) == 1, nodes
    return nodes[0]


def parse_error(text: str) -> WfParseError:
    """The parse error a whole workflow text raises."""
    with pytest.raises(WfParseError) as info:
        parse(text)
    return info.value


def body_error(body: str) -> WfParseError:
    """The parse error of `workflow w { <body> }` (the body starts on line 2)."""
    return parse_error(f"workflow w {{\n{body}\n}}\n")


def lex_error(text: str) -> WfLexError:
    with pytest.raises(WfLexError) as info:
        parse(text)
    return info.value


def message(error: WfError) -> str:
    return error.message
