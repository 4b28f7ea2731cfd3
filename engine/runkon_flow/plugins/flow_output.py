"""FLOW_OUTPUT blocks (engine.md §12.4): how agents and scripts hand markers, a context summary
and extra variables to later steps.

Agents are told (``FLOW_OUTPUT_INSTRUCTION``) to end with::

    <<<FLOW_OUTPUT>>>
    {"markers": ["has_failures"], "context": "2 tests fail in parser.py"}
    <<<END_FLOW_OUTPUT>>>

Parsing is forgiving where models are sloppy (code fences, trailing commas, lone backslashes)
and strict where it matters (the JSON must be an object; `markers` a string list; `context` a
string) — a malformed block is reported as "no block" rather than half-read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FLOW_OUTPUT_END",
    "FLOW_OUTPUT_INSTRUCTION",
    "FLOW_OUTPUT_START",
    "FlowOutput",
    "parse_flow_output",
]

log = logging.getLogger("runkon_flow.engine")

FLOW_OUTPUT_START = "<<<FLOW_OUTPUT>>>"
FLOW_OUTPUT_END = "<<<END_FLOW_OUTPUT>>>"

FLOW_OUTPUT_INSTRUCTION = """\
When you are done, finish your reply with exactly one block in this form:

<<<FLOW_OUTPUT>>>
{"markers": ["<signal>", ...], "context": "<one or two sentences for the next step>"}
<<<END_FLOW_OUTPUT>>>

`markers` is a JSON array of short signal words the workflow branches on (use [] when nothing
applies); `context` is a short summary of what you did, handed to the next step as
{{prior_context}}. The block must be valid JSON and must be the last thing you write."""

_VALID_ESCAPES = frozenset('"\\/bfnrtu')


@dataclass
class FlowOutput:
    """A parsed block: `extras` keeps every other top-level field (re-emitted on serialisation)."""

    markers: list[str] = field(default_factory=list)
    context: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Compact JSON: markers, context, then the extra fields at top level."""
        payload: dict[str, Any] = {"markers": self.markers, "context": self.context}
        for key, value in self.extras.items():
            if key not in payload:
                payload[key] = value
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    def string_exports(self) -> dict[str, str]:
        """Extra fields whose value is a JSON string — the ones that become template variables."""
        return {k: v for k, v in self.extras.items() if isinstance(v, str)}


def _find_block(text: str) -> str | None:
    """The body of the last start marker followed by `{`, `[` or a backtick, up to its end marker."""
    search_end = len(text)
    while True:
        start = text.rfind(FLOW_OUTPUT_START, 0, search_end)
        if start < 0:
            return None
        body_start = start + len(FLOW_OUTPUT_START)
        rest = text[body_start:].lstrip()
        if rest[:1] in ("{", "[", "`"):
            end = text.find(FLOW_OUTPUT_END, body_start)
            if end < 0:
                return None
            return text[body_start:end].strip()
        search_end = start


def _strip_fence(body: str) -> str:
    if not body.startswith("```"):
        return body
    newline = body.find("\n")
    inner = body[newline + 1 :] if newline >= 0 else body[3:]
    inner = inner.rstrip()
    if inner.endswith("```"):
        inner = inner[:-3]
    return inner.strip()


def _repair(body: str) -> str:
    """Drop trailing commas before `}`/`]` and double lone backslashes inside strings."""
    out: list[str] = []
    in_string = False
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if in_string:
            if ch == "\\":
                nxt = body[i + 1] if i + 1 < n else ""
                if nxt in _VALID_ESCAPES and nxt:
                    out.append(ch + nxt)
                    i += 2
                    continue
                out.append("\\\\")
                i += 1
                continue
            if ch == '"':
                in_string = False
            out.append(ch)
            i += 1
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
            i += 1
            continue
        if ch == ",":
            j = i + 1
            while j < n and body[j] in " \t\r\n":
                j += 1
            if j < n and body[j] in "}]":
                i += 1  # drop the comma, keep the whitespace
                continue
        out.append(ch)
        i += 1
    return "".join(out)


#: How deep a FLOW_OUTPUT block's JSON may nest: a step's output must not be able to make the engine
#: raise RecursionError (a run with such a block ended "internal error", with a traceback).
MAX_NESTING = 100


def _deeper_than(value: object, limit: int) -> bool:
    """Whether `value` (parsed JSON) nests more than `limit` lists/objects deep (iteratively)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_flow_output(text: str) -> FlowOutput | None:
    """The last well-formed FLOW_OUTPUT block in `text`, or None (malformed blocks are logged)."""
    if not text or FLOW_OUTPUT_START not in text:
        return None
    body = _find_block(text)
    if body is None:
        return None
    body = _repair(_strip_fence(body))
    try:
        value = json.loads(body)
    except ValueError as exc:
        log.warning("FLOW_OUTPUT block is not valid JSON: %s", exc)
        return None
    except RecursionError:  # thousands of nested arrays: the step's output, not the engine, is wrong
        log.warning("FLOW_OUTPUT block nests deeper than JSON can be read")
        return None
    if _deeper_than(value, MAX_NESTING):
        # It would be written back out (`to_json`), copied, compared: each of those recurses.
        log.warning("FLOW_OUTPUT block nests more than %d levels", MAX_NESTING)
        return None
    if not isinstance(value, dict):
        log.warning("FLOW_OUTPUT block is not a JSON object")
        return None
    markers = value.pop("markers", [])
    context = value.pop("context", "")
    if markers is None:
        markers = []
    if context is None:
        context = ""
    if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
        log.warning("FLOW_OUTPUT `markers` must be an array of strings")
        return None
    if not isinstance(context, str):
        log.warning("FLOW_OUTPUT `context` must be a string")
        return None
    return FlowOutput(markers=list(markers), context=context, extras=value)
