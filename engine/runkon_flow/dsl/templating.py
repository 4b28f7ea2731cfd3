"""`{{key}}` substitution (engine.md §12.1, dsl.md §8.1).

One left-to-right pass; a placeholder's key is the exact text up to the next `}}` (no trimming);
inserted values are never rescanned, so a value containing `{{x}}` can never trigger a second
substitution; an unterminated `{{` copies the rest verbatim.

Two flavours exist because two places need different things: prompts and env values drop unknown
keys, call-workflow inputs keep them for the child to resolve. Shell command text is never built by
substitution: `dsl.shell_text` replaces each placeholder by a reference to an environment variable.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "field_placeholder_hint",
    "shell_quote",
    "substitute_variables",
    "substitute_variables_keep_literal",
    "unknown_placeholders",
]


def shell_quote(value: str) -> str:
    """POSIX single-quote `value`: wrap in `'…'`, each `'` becomes `'\\''`. Safe for any bytes."""
    return "'" + value.replace("'", "'\\''") + "'"


def _substitute(
    text: str,
    variables: Mapping[str, str],
    keep_unknown: bool,
) -> str:
    if "{{" not in text:
        return text
    out: list[str] = []
    pos = 0
    length = len(text)
    while pos < length:
        start = text.find("{{", pos)
        if start < 0:
            break
        end = text.find("}}", start + 2)
        if end < 0:
            break
        out.append(text[pos:start])
        key = text[start + 2 : end]
        value = variables.get(key)
        if value is not None:
            out.append(value)
        elif keep_unknown:
            out.append(text[start : end + 2])
        pos = end + 2
    out.append(text[pos:])
    return "".join(out)


def unknown_placeholders(text: str, variables: Mapping[str, str]) -> list[str]:
    """The keys of `text`'s placeholders that `variables` has no value for — what
    `substitute_variables` removes — each once, in text order (the same scan)."""
    unknown: list[str] = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0 and (end := text.find("}}", start + 2)) >= 0:
        key = text[start + 2 : end]
        if key not in variables and key not in unknown:
            unknown.append(key)
        pos = end + 2
    return unknown


def substitute_variables(text: str, variables: Mapping[str, str]) -> str:
    """Replace known placeholders; unknown ones are removed (prompts, env values)."""
    return _substitute(text, variables, keep_unknown=False)


def substitute_variables_keep_literal(text: str, variables: Mapping[str, str]) -> str:
    """Replace known placeholders; unknown ones stay literally (call-workflow child inputs)."""
    return _substitute(text, variables, keep_unknown=True)


def field_placeholder_hint(field: str) -> str:
    """What to write for `{{step.field}}` — a step's name before one of its FLOW_OUTPUT fields, as
    a condition names a marker (`step.marker`): the field is a placeholder of its own. Said by
    `validate` (a child's inputs) and by the run (a placeholder with no value)."""
    return f"a step's FLOW_OUTPUT fields are placeholders without the step's name: write `{{{{{field}}}}}`"
