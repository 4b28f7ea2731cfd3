"""Temporary FLOW_OUTPUT parser (engine.md §12.4) used only until `runkon_flow.runtime.flow_output`
exists; agents.py imports the engine's version first. Delete this file once the engine has it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

START = "<<<FLOW_OUTPUT>>>"
END = "<<<END_FLOW_OUTPUT>>>"
FLOW_OUTPUT_INSTRUCTION = (
    "When you are done, end your answer with a block exactly like this:\n"
    f"{START}\n"
    '{"markers": ["<signal>", ...], "context": "<one-line summary for the next step>"}\n'
    f"{END}"
)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


@dataclass
class FlowOutput:
    markers: list[str] = field(default_factory=list)
    context: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


def _fix_backslashes(text: str) -> str:
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            in_string = not in_string
        if in_string and ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt in '"\\/bfnrtu':
                out.append(ch + nxt)
                i += 2
                continue
            out.append("\\\\")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_flow_output(text: str) -> FlowOutput | None:
    start = -1
    pos = text.rfind(START)
    while pos >= 0:
        if text[pos + len(START) :].lstrip()[:1] in ("{", "[", "`"):
            start = pos
            break
        pos = text.rfind(START, 0, pos)
    if start < 0:
        return None
    end = text.find(END, start)
    if end < 0:
        return None
    body = text[start + len(START) : end].strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    body = _fix_backslashes(_TRAILING_COMMA.sub(r"\1", body))
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    markers = data.pop("markers", [])
    context = data.pop("context", "")
    if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
        return None
    if not isinstance(context, str):
        return None
    return FlowOutput(markers, context, data)
