"""The duration and number conventions of the `.wf` language (dsl.md §3.4, §3.5).

Three timeout conventions exist and they are easy to confuse, so they live together here:
gate `timeout` (h/m/s, parsed when the file is loaded), call `timeout` (ms/h/m/s, kept as text and
interpreted when the step runs) and script `timeout` (plain integer seconds, see `parse_unsigned`).
"""

from __future__ import annotations

from runkon_flow.dsl.lexer import WHITESPACE

__all__ = [
    "U32_MAX",
    "U64_MAX",
    "DurationError",
    "call_timeout_problem",
    "gate_timeout_hint",
    "parse_call_timeout",
    "parse_gate_timeout",
    "parse_unsigned",
    "unsigned_error",
]

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

_EMPTY = "cannot parse integer from empty string"
_INVALID = "invalid digit found in string"
_TOO_LARGE = "number too large to fit in target type"


class DurationError(ValueError):
    """A duration or number text that does not follow the language's rules; `str()` is the message."""


def unsigned_error(text: str, maximum: int) -> str | None:
    """Why `text` is not an unsigned decimal ≤ `maximum`, in the reference's wording; None if it is.

    Like Rust's `u32::from_str`: one optional leading `+`, then ASCII digits only (no spaces, no `-`).
    """
    if not text:
        return _EMPTY
    digits = text[1:] if text[0] == "+" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return _INVALID
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(maximum)) or int(significant) > maximum:
        return _TOO_LARGE
    return None


def parse_unsigned(text: str, maximum: int = U32_MAX) -> int:
    """`text` as an unsigned integer ≤ `maximum`; raises `DurationError(reason)` otherwise."""
    reason = unsigned_error(text, maximum)
    if reason is not None:
        raise DurationError(reason)
    return int(text)


def parse_gate_timeout(text: str) -> int:
    """A gate `timeout` in seconds (§3.5): trim, strip quotes, then `<n>h`, `<n>m`, `<n>s` or `<n>`.

    Raises `DurationError` with `Invalid duration '<s>': <reason>` or
    `Duration overflow: '<s>' exceeds u64 range`.
    """
    cleaned = text.strip(WHITESPACE).strip('"')
    multiplier = 1
    number = cleaned
    if cleaned.endswith("h"):
        number, multiplier = cleaned[:-1], 3600
    elif cleaned.endswith("m"):
        number, multiplier = cleaned[:-1], 60
    elif cleaned.endswith("s"):
        number = cleaned[:-1]
    reason = unsigned_error(number, U64_MAX)
    if reason is not None:
        raise DurationError(f"Invalid duration '{text}': {reason}")
    seconds = int(number) * multiplier
    if seconds > U64_MAX:
        raise DurationError(f"Duration overflow: '{text}' exceeds u64 range")
    return seconds


def parse_call_timeout(text: str) -> float:
    """A call `timeout` in seconds (§3.5), as the engine interprets it when the step runs.

    Suffixes are checked in the order `ms`, `h`, `m`, `s`; a bare integer means seconds; no trimming.
    Raises `DurationError` with `invalid timeout '<s>': <reason>`.
    """
    number, scale = text, 1.0
    for suffix, factor in (("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], factor
            break
    reason = unsigned_error(number, U64_MAX)
    if reason is not None:
        raise DurationError(f"invalid timeout '{text}': {reason}")
    return int(number) * scale


def call_timeout_problem(text: str) -> str | None:
    """Why a call `timeout` will fail its step when it runs, worded for the person who wrote it; None
    if it is fine. Accepts exactly what `parse_call_timeout` accepts: the engine (and engine.md) keep
    their run-time text, this is what `validate` says before the run gets there."""
    try:
        parse_call_timeout(text)
    except DurationError:
        pass
    else:
        return None
    number = text
    for suffix in ("ms", "h", "m", "s"):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            break
    if unsigned_error(number, U64_MAX) == _TOO_LARGE:
        return f"invalid timeout '{text}': the number is too large"
    return (
        f"invalid timeout '{text}': expected a whole number of seconds or a duration like "
        '"500ms", "30s", "5m", "1h" (one number, one unit, no spaces)'
    )


def gate_timeout_hint(text: str) -> str | None:
    """A hint for a gate `timeout` that `parse_gate_timeout` refused: the spec's message names Rust's
    reason (`invalid digit found in string`), which does not say what to write instead."""
    try:
        parse_gate_timeout(text)
    except DurationError as exc:
        if str(exc).startswith("Duration overflow") or str(exc).endswith(_TOO_LARGE):
            return None
        return 'a gate timeout is a whole number of seconds or one number with h, m or s: "30s", "5m", "8h"'
    return None
