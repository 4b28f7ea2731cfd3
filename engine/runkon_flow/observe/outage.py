"""Waiting out a store outage while following a run — one rule for `runkon-flow watch` and the
dashboard's follower of a run held elsewhere (runkon_tui/follow.py).

A read the store refuses (`PersistenceError`: a PostgreSQL server restarted or out of reach) does
not end the following. The first failure of a row is said once (`tell(text)`), the read is tried
again every `RETRY_SECONDS`, and once one succeeds that is said once too (`tell(None)`). With
`give_up_after`, an outage longer than that many seconds raises the store's error (`watch` then
exits 1); without, it is waited out for as long as the follower lives (the dashboard: the user
closes the run). Every read of a follower goes through it, the ones made after the run ended too
(`watch`'s failed steps and what to type next).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from runkon_flow.errors import PersistenceError

__all__ = ["RETRY_SECONDS", "StoreOutage"]

RETRY_SECONDS = 1.0

T = TypeVar("T")


class StoreOutage:
    """Reads of run `run_id` from the store failing in a row: said once through `tell`, given up
    on after `give_up_after` seconds (never when None)."""

    def __init__(
        self, run_id: str, tell: Callable[[str | None], None], *, give_up_after: float | None = None
    ) -> None:
        self.run_id = run_id
        self.tell = tell
        self.give_up_after = give_up_after
        self.since: float | None = None

    def read(self, fn: Callable[[], T], *, wait: Callable[[float], Any] = time.sleep) -> T:
        """`fn()` — reads of the store — tried again every `RETRY_SECONDS` (`wait`: how to
        sleep, e.g. a stop event's `wait`) while the store refuses it."""
        while True:
            try:
                value = fn()
            except PersistenceError as exc:
                self.failed(exc)
                wait(RETRY_SECONDS)
                continue
            self.over()
            return value

    def failed(self, exc: PersistenceError) -> None:
        """A read failed: said if it is the first of an outage; `exc` raised once the outage has
        lasted longer than `give_up_after`."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
            limit = f" for up to {self.give_up_after:.0f} s" if self.give_up_after is not None else ""
            self.tell(
                f"cannot read run {self.run_id} from the store ({exc}); trying again every second{limit}"
            )
        elif self.give_up_after is not None and now - self.since > self.give_up_after:
            raise exc

    def over(self) -> None:
        """A read succeeded: the end of an outage is said once."""
        if self.since is not None:
            self.since = None
            self.tell(None)
