"""Usage: the tokens, turns and money an agent step reports, added up the run tree.

An executor reports usage as metric metadata (engine.md §12.5: `input_tokens`, `output_tokens`,
`cache_read_input_tokens`, `cache_creation_input_tokens`, `num_turns`, `cost_usd`); an agent run
through the reference executor reports it in its FLOW_OUTPUT block as a `usage` object with the
same keys (`usage_metadata` turns one into the other; docs/agents.md). A step row keeps what that
step spent (schema v6, JSON); `call workflow` and `foreach` steps keep their children's sum, so a
run's total is the sum of its own step rows.

At the bottom of the engine's layers: the runtime writes it, the store keeps it as text, events
carry it as a dict, the run model and every renderer read it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["USAGE_KEYS", "Usage", "usage_metadata"]

#: The metric metadata keys that are usage (`duration_ms`, which every script reports, is not).
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "num_turns",
    "cost_usd",
)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one step (or a sum of steps) spent. Zero everywhere = nothing reported."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    num_turns: int = 0
    cost_usd: float = 0.0

    # ---- building

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> Usage | None:
        """The usage in an executor's metric metadata; None when it reports none. Values that
        are not numbers (or negative, or not finite) are left out, as the run totals do."""
        if not metadata:
            return None
        values: dict[str, Any] = {}
        for key in USAGE_KEYS:
            raw = metadata.get(key)
            if raw is None or isinstance(raw, bool):
                continue
            try:
                number = float(str(raw).strip())
            except ValueError:
                continue
            if not math.isfinite(number) or number < 0:
                continue
            values[key] = number if key == "cost_usd" else int(number)
        usage = cls(**values)
        return usage if usage else None

    @classmethod
    def from_json(cls, text: str | None) -> Usage | None:
        """A stored usage (schema v6 `usage` column); None for NULL or unreadable text."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return cls.from_metadata(data) if isinstance(data, dict) else None

    @classmethod
    def total(cls, parts: Iterable[Usage | None]) -> Usage | None:
        """The sum of `parts` (None ones skipped); None when none reported anything."""
        result = None
        for part in parts:
            if part:
                result = part if result is None else result + part
        return result

    @classmethod
    def of_rows(cls, rows: Iterable[Any]) -> Usage | None:
        """What stored step rows spent: the sum of their `usage` (JSON), every attempt — of a run
        or of one step. A `call workflow` or `foreach` row holds its children's sum, so a run's own
        rows are all."""
        return cls.total(cls.from_json(row.usage) for row in rows)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.num_turns + other.num_turns,
            round(self.cost_usd + other.cost_usd, 9),
        )

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    # ---- reading

    @property
    def tokens(self) -> int:
        """Every token the model read or wrote, cached ones included."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
        )

    def as_dict(self) -> dict[str, int | float]:
        """The non-zero fields (what events carry and the store keeps)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))

    def tokens_text(self) -> str:
        """`12.3k` (every token, as `short` counts them); "" when none were reported."""
        return _compact(self.tokens) if self.tokens else ""

    def cost_text(self) -> str:
        """`$0.42` (as `short` writes it); "" when no cost was reported."""
        return _dollars(self.cost_usd) if self.cost_usd else ""

    def short(self) -> str:
        """`12.3k tok · $0.42` — the tree, the header, a table cell."""
        parts = []
        if self.tokens:
            parts.append(f"{self.tokens_text()} tok")
        if self.cost_usd:
            parts.append(self.cost_text())
        if not parts and self.num_turns:
            parts.append(f"{self.num_turns} turn{'s' if self.num_turns != 1 else ''}")
        return " · ".join(parts)

    def long(self) -> str:
        """`12,345 tokens (10,000 in, 2,000 out, 345 cached) · 7 turns · $0.4210` — `show`."""
        parts = []
        if self.tokens:
            detail = [f"{self.input_tokens:,} in", f"{self.output_tokens:,} out"]
            cached = self.cache_read_input_tokens + self.cache_creation_input_tokens
            if cached:
                detail.append(f"{cached:,} cached")
            parts.append(f"{self.tokens:,} tokens ({', '.join(detail)})")
        if self.num_turns:
            parts.append(f"{self.num_turns} turn{'s' if self.num_turns != 1 else ''}")
        if self.cost_usd:
            parts.append(f"${self.cost_usd:.4f}")
        return " · ".join(parts)


def usage_metadata(block: Mapping[str, Any] | None) -> dict[str, str]:
    """The metric metadata in a FLOW_OUTPUT block's `usage` object (`{"usage": {"input_tokens":
    1200, "cost_usd": 0.01}}`), as strings like an executor's metadata; {} without one."""
    usage = block.get("usage") if block else None
    if not isinstance(usage, Mapping):
        return {}
    return {key: str(usage[key]) for key in USAGE_KEYS if key in usage and usage[key] is not None}


def _compact(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def _dollars(cost: float) -> str:
    return f"${cost:.2f}" if cost >= 0.1 else f"${cost:.4f}".rstrip("0").rstrip(".") if cost else "$0"
