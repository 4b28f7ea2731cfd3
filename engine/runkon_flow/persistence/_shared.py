"""Rules both stores must apply identically (engine.md §6.2), kept in one place so the in-memory
and SQLite stores cannot drift apart: clocks and timestamp formats, monotonic ids, gate-approval
derivation and selection validation, and tolerant JSON decoding of stored columns."""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from runkon_flow.cancellation import CancellationReason
from runkon_flow.errors import EngineCancelled, PersistenceError
from runkon_flow.persistence.models import GateApprovalState, StepRole, StepStatus

log = logging.getLogger("runkon_flow.persistence")

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime; injectable so lease tests never sleep."""

WAITING_REJECTED = "Use set_waiting_blocked_on() to transition a workflow run to Waiting status"
SELECTION_HEADER = "User selected the following items:"
ALLOWED_ROLES = frozenset(r.value for r in StepRole)
TERMINAL_STEP_STATUSES = tuple(s.value for s in StepStatus if s.is_terminal)


def system_clock() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, e.g. `2026-05-09T07:35:25.123Z` (same as models.now_rfc3339)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sqlite_lease_time(moment: datetime) -> str:
    """SQLite's `YYYY-MM-DD HH:MM:SS.SSS` (UTC): sorts as text and parses with SQLite's date functions."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def lease_cancelled() -> EngineCancelled:
    """The fencing error: a write carried a generation that is no longer the run's."""
    return EngineCancelled(CancellationReason.of("LeaseLost"))


def check_ttl(ttl_seconds: float) -> None:
    if ttl_seconds < 0:
        raise PersistenceError(f"lease ttl must not be negative (got {ttl_seconds})")


def check_role(role: str) -> None:
    """The canonical schema's CHECK on role, enforced in both stores so they accept the same rows."""
    if role not in ALLOWED_ROLES:
        allowed = ", ".join(sorted(ALLOWED_ROLES))
        raise PersistenceError(f"invalid step role '{role}' (allowed: {allowed})")


# --------------------------------------------------------------------------- ids

# `random` is reseeded in forked children, and ULID randomness needs uniqueness, not secrecy.
_random_bits = random.getrandbits
_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TO_CROCKFORD = bytes.maketrans(_RFC4648, b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


class MonotonicUlids:
    """ULIDs that strictly increase within this process.

    Plain ULIDs are random inside one millisecond, so `ORDER BY id` would shuffle fan-out items
    inserted in the same millisecond. Incrementing the previous value keeps insertion order and
    the ULID format (26 Crockford base32 characters, millisecond timestamp prefix).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        fresh = (ms << 80) | _random_bits(80)
        with self._lock:
            value = fresh if fresh > self._last else self._last + 1
            self._last = value
        # 160 bits → 32 base32 digits; the last 26 hold the 128-bit value (top digit ≤ 7).
        return base64.b32encode(value.to_bytes(20, "big"))[-26:].translate(_TO_CROCKFORD).decode()


new_ordered_id = MonotonicUlids()


# --------------------------------------------------------------------------- JSON columns


def load_json_object(text: str | None, what: str) -> dict:
    """Decode a stored JSON object; malformed or non-object text is logged and read as `{}` (§6.3)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("malformed JSON in %s ignored: %.80r", what, text)
        return {}
    if not isinstance(value, dict):
        log.warning("JSON in %s is not an object, ignored: %.80r", what, text)
        return {}
    return value


def load_blocked_on(text: str | None) -> dict | None:
    """`blocked_on` is optional: absent stays None, malformed is logged and read as None."""
    if not text:
        return None
    return load_json_object(text, "workflow_runs.blocked_on") or None


def dump_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def workflow_title(definition_snapshot: str | None) -> str | None:
    """The snapshot's `"title"` key, when the snapshot is a JSON object with a string title."""
    if not definition_snapshot:
        return None
    try:
        value = json.loads(definition_snapshot)
    except ValueError:
        return None
    title = value.get("title") if isinstance(value, dict) else None
    return title if isinstance(title, str) else None


# --------------------------------------------------------------------------- gates


def validate_gate_selections(step_id: str, gate_options: str | None, selections: list[str]) -> None:
    """Selections must be values of the gate's stored options (§6.2); nothing to check when empty."""
    if not selections:
        return
    if not gate_options:
        raise PersistenceError(
            f"Gate selections provided but no options configured for this gate (step {step_id})"
        )
    try:
        options = json.loads(gate_options)
    except ValueError as exc:
        raise PersistenceError(f"Invalid gate options JSON in database for step {step_id}: {exc}") from None
    allowed: set[str] = set()
    if isinstance(options, list):
        for option in options:
            if isinstance(option, dict) and isinstance(option.get("value"), str):
                allowed.add(option["value"])
    if not allowed:
        raise PersistenceError(f"No valid options found in gate configuration (step {step_id})")
    for selection in selections:
        if selection not in allowed:
            listed = ", ".join(sorted(allowed))
            raise PersistenceError(
                f"Invalid gate selection '{selection}' - not in allowed options: [{listed}]"
            )


def selection_context(selections: list[str]) -> str:
    """The `context_out` an approval with selections hands to later steps."""
    return SELECTION_HEADER + "\n" + "".join(f"- {item}\n" for item in selections)


def gate_already_resolved(step_id: str, status: str) -> PersistenceError:
    return PersistenceError(f"gate step {step_id} is already {status}; it cannot be approved or rejected")


def approval_state(
    approved_at: str | None,
    status: str,
    feedback: str | None,
    selections_json: str | None,
    by: str | None,
) -> GateApprovalState:
    """Approved if approved_at is set or the row is completed; rejected if failed; else pending."""
    if approved_at or status == StepStatus.COMPLETED:
        return GateApprovalState("approved", feedback, _load_selections(selections_json), by)
    if status == StepStatus.FAILED:
        return GateApprovalState("rejected", feedback, (), by)
    return GateApprovalState.pending()


def _load_selections(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("malformed gate_selections ignored: %.80r", text)
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)
