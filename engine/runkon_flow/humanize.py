"""Short human renderings shared by every client (CLI printers, dashboard)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `12s`, `4m05s`, `2h03m` — short enough for a status line; empty when unknown.

    A slightly negative value (clock skew between writers) reads as `0.0s`.
    """
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_took(whole: float | None, attempt: float | None = None) -> str:
    """How long a finished run took, as its last line says it (`completed in …`, `failed after …`):
    from its first start, and for a resumed or retried run also its last attempt —
    `19s (this attempt took 0.8s)`, the attempt left out where it reads the same. The CLI and
    the dashboard say it alike."""
    if whole is None:
        return format_duration(attempt)
    took = format_duration(whole)
    if attempt is None or format_duration(attempt) == took:
        return took
    return f"{took} (this attempt took {format_duration(attempt)})"


_CANCEL_KINDS = {
    "Timeout": "timed out",
    "FailFast": "stopped: another step failed (fail_fast)",
    "ParentCancelled": "its parent run was cancelled",
    "EngineShutdown": "the engine shut down",
    "LeaseLost": "another engine took the run over (lease lost)",
}
# The engine's error text for a cancel, upstream's spelling (engine.md §13): kept in the store and
# in events as specified; clients show it as `cancelled: <why>`.
_CANCELLED_TEXT = re.compile(
    r'workflow cancelled: (?:UserRequested\((?:Some\("((?:[^"\\]|\\.)*)"\)|None)\)|(\w+))'
)


def cancel_of(text: str | None) -> tuple[str, str | None] | None:
    """(kind, the user's message) of an error text in the engine's cancel spelling, else None."""
    match = _CANCELLED_TEXT.fullmatch(text or "")
    return _cancel_parts(match) if match is not None else None


def _cancel_parts(match: re.Match[str]) -> tuple[str, str | None]:
    message, kind = match.group(1), match.group(2)
    if kind is not None:
        return kind, None
    return "UserRequested", re.sub(r"\\(.)", r"\1", message) if message is not None else None


def describe_cancel(kind: str, message: str | None = None) -> str:
    """Why a run or step was cancelled, for people: the user's message, else a plain phrase."""
    if kind == "UserRequested":
        return message or "by the user"
    return _CANCEL_KINDS.get(kind, kind)


#: How the engine's `WorkflowError` starts its text (`errors.py`; the two modules are siblings in
#: the layers and do not import each other): words a reader can do without.
ENGINE_ERROR_PREFIX = "workflow error: "


def readable_error(text: str | None) -> str:
    """An error text as clients show it: the engine's `workflow cancelled: UserRequested(Some("…"))`
    becomes `cancelled: …`, and the `workflow error: ` the engine starts many errors with (it
    tells a reader nothing) is left out; anything else is returned unchanged ("" for None)."""
    if not text:
        return ""
    text = text.removeprefix(ENGINE_ERROR_PREFIX)

    return _CANCELLED_TEXT.sub(lambda match: f"cancelled: {describe_cancel(*_cancel_parts(match))}", text)


def error_headline(text: str | None) -> str:
    """An error on one line, for lists: its first line and, when there are more, its last one
    (`Script 'x' exited with code 3 · schema mismatch …`, `… · ValueError: bad`). The first line
    alone says least — which script exited — and the last is where stderr and tracebacks say why."""
    return _headline(_error_lines(text))


def cause_first(text: str | None) -> str:
    """`error_headline` with the last line first (`rate limited: retry after 30s · Script
    'import' exited with code 3`): for a line built once and shown in panes of any width, where
    the right end is what gets cut — it must not be why."""
    return _headline(_error_lines(text)[::-1])


#: The fewest characters of an error's first line worth keeping beside its last (`fit_headline`).
MIN_FIRST_LINE = 12


def fit_headline(text: str | None, room: int, ellipsis: str = "…") -> str:
    """`error_headline` in at most `room` characters, cutting the first line before the last: a
    line cut at the terminal's edge kept `Script 'import' exited with cod…` and lost why."""
    lines = _error_lines(text)
    return (
        _fit_parts(lines[0], lines[-1], room, ellipsis)
        if len(lines) > 1
        else _cut(_headline(lines), room, ellipsis)
    )


def fit_cause(line: str | None, room: int, ellipsis: str = "…") -> str:
    """A one-line error as lists hold it — `error_headline`'s `first · last`, a failure chain's
    `review-one: Script 'lint' exited with code 3 · rate limited …` — in at most `room`
    characters, cut as `fit_headline` cuts: the part before its last ` · ` gives way first, since
    the part after it says why. Cut at its end, an 80-column list kept `Script 'import' exited
    with cod…` and lost the cause."""
    line = line or ""
    if len(line) <= room or " · " not in line:
        return _cut(line, room, ellipsis)
    head, tail = line.rsplit(" · ", 1)
    return _fit_parts(head, tail, room, ellipsis)


def _fit_parts(first: str, last: str, room: int, ellipsis: str) -> str:
    whole = f"{first} · {last}"
    if len(whole) <= room:
        return whole
    keep = room - len(last) - len(" · ") - len(ellipsis)
    if keep >= MIN_FIRST_LINE:
        return f"{first[:keep]}{ellipsis} · {last}"
    return _cut(last, room, ellipsis)


def _cut(text: str, room: int, ellipsis: str) -> str:
    return text if len(text) <= room else text[: max(0, room - len(ellipsis))] + ellipsis


def _error_lines(text: str | None) -> list[str]:
    return [kept for line in readable_error(text).splitlines() if (kept := line.strip())]


def _headline(lines: list[str]) -> str:
    if not lines:
        return ""
    return lines[0] if len(lines) == 1 else f"{lines[0]} · {lines[-1]}"


def gate_decision(
    approved: bool,
    by: str | None,
    selections: list[str] | tuple[str, ...] = (),
    note: str | None = None,
    at: str | None = None,
) -> str:
    """Who answered a gate, with which options and note, in one phrase: `approved by alice at
    14:02 · options: fast · note: ship it`. Shared by `show`, the inbox and the dashboard tree."""
    text = ("approved" if approved else "rejected") + (f" by {by}" if by else "")
    if at:
        text += f" at {at}"
    if selections:
        text += " · options: " + ", ".join(str(s) for s in selections)
    if note:
        text += f" · note: {note}"
    return text


# Output of a script or agent is untrusted text: printed raw, its escape sequences would recolour,
# retitle or rewrite the reader's terminal. Every client shows it through `display_lines`.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles, links
    r"|\x1b[@-Z\\-_]"  # two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# Other control characters are shown as their Unicode control pictures (␀, ␇, ␡, ␛ of an
# escape the patterns above do not know), so nothing a line holds can move the cursor or ring.
_CONTROLS = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}
_CONTROLS[0x7F] = "\u2421"
_CONTROLS.update({c: "\ufffd" for c in range(0x80, 0xA0)})
_CONTROLS.update({0x2028: " ", 0x2029: " "})


@lru_cache(maxsize=512)
def display_lines(text: str, tab_size: int | None = 4) -> tuple[str, ...]:
    """The screen rows of one line of untrusted output: ANSI escapes removed, control characters
    made visible, one row per embedded line (a carriage return keeps what a terminal would show:
    the text after it). Tabs are expanded to `tab_size` columns (a pane measures cells), or kept
    (`None`: harmless on a terminal, and a piped TSV line stays TSV). Newline and tab are the only
    control characters a row can hold, so printing rows never sends the terminal an escape."""
    if text.isprintable():
        return (text,)
    text = _ANSI.sub("", text)
    rows = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if "\r" in raw:
            raw = raw.rstrip("\r").rsplit("\r", 1)[-1]
        if tab_size is not None:
            raw = raw.expandtabs(tab_size)
        rows.append(raw.translate(_CONTROLS))
    return tuple(rows)


_NUMBER = re.compile(r"\d+")

#: At most this many choices that are equally close are named; more is a guess, so none is.
_TIED_NAMED = 3


def _without_leading_zeros(text: str) -> str:
    return _NUMBER.sub(lambda m: m.group().lstrip("0") or "0", text)


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """`did you mean `x`?` for the choice closest to a misspelt `word`, else None.

    * A choice that is `word` with its numbers' leading zeros ignored comes first: `rec-5` means
      `rec-05` (and `step-007` means `step-7`), though `rec-15`, `rec-25` and `rec-35` are as close
      by spelling — before, the last of those the scorer saw (`rec-35`) was named.
    * Otherwise the closest by spelling (difflib's ratio, at least 0.6). **Decision:** choices
      equally close are never picked among arbitrarily: up to three are named, in the order given
      (`did you mean `rec-15` or `rec-25`?`); more than three is no hint at all (None) — the
      caller's own list of choices says more than a guess among them.
    """
    bare = _without_leading_zeros(word)
    same = list(dict.fromkeys(c for c in choices if c != word and _without_leading_zeros(c) == bare))
    if not same:
        matcher = difflib.SequenceMatcher()
        matcher.set_seq2(word)  # as difflib.get_close_matches scores
        scored: dict[str, float] = {}
        for choice in choices:
            matcher.set_seq1(choice)
            if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
                ratio = matcher.ratio()
                if ratio >= 0.6:
                    scored.setdefault(choice, ratio)
        best = max(scored.values(), default=None)
        same = [c for c, ratio in scored.items() if ratio == best]
    if not same or len(same) > _TIED_NAMED:
        return None
    named = [f"`{c}`" for c in same]
    return (
        "did you mean " + (named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}") + "?"
    )


def safe_text(lines: Iterable[str]) -> str:
    """Report lines that quote untrusted text (errors, stderr, gate notes) as one text a terminal
    may be given: `display_lines` row by row, so no escape sequence from a script reaches it."""
    return "\n".join(row for line in lines for row in display_lines(line, None))


#: What JSON keeps raw (`ensure_ascii=False`, pydantic) that a terminal may act on: DEL, the C1
#: controls (U+009B is a CSI and U+009D an OSC for terminals that read C1 in UTF-8) and the line
#: separators. Inside a JSON string each may be written `\uXXXX` instead, meaning the same.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")


def terminal_json(text: str) -> str:
    """JSON text (`json.dumps(…, ensure_ascii=False)`, `model_dump_json()`) with every character a
    terminal could act on escaped as `\\uXXXX`: the same JSON value, safe to print (C0 controls are
    always escaped by JSON itself)."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def display_line(text: str, tab_size: int | None = 4) -> str:
    """`display_lines` on one row: embedded line breaks shown as ` ⏎ ` (a search hit, a name)."""
    return " ⏎ ".join(display_lines(text, tab_size))
