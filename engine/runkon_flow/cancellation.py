"""Hierarchical cancellation (engine.md §11.1): why something was cancelled, the token that
carries it, and `EngineCancelled`, the error a cancelled step or run raises.

A token cancels itself and every descendant; the first reason wins. Cancelling a child never
touches its parent or siblings. Waiters can block on `wait()` instead of polling, which is what
lets a cancel reach a sleeping gate or a script watchdog within milliseconds.
"""

from __future__ import annotations

import threading
import time
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from runkon_flow.errors import EngineError
from runkon_flow.humanize import cancel_of, describe_cancel

ReasonKind = Literal["UserRequested", "Timeout", "FailFast", "ParentCancelled", "EngineShutdown", "LeaseLost"]


class CancellationReason(BaseModel):
    """Why something was cancelled; `message` is only used by `UserRequested`."""

    model_config = ConfigDict(frozen=True)

    kind: ReasonKind
    message: str | None = None

    @classmethod
    def user(cls, message: str | None = None) -> CancellationReason:
        return cls(kind="UserRequested", message=message)

    @classmethod
    def of(cls, kind: ReasonKind) -> CancellationReason:
        return cls(kind=kind)

    @classmethod
    def from_error(cls, text: str | None) -> CancellationReason | None:
        """The reason an error text in `EngineCancelled`'s spelling gives (what `request_cancel`
        leaves on a cancelling run's row); None for any other text."""
        found = cancel_of(text)
        if found is None or found[0] not in get_args(ReasonKind):
            return None
        return cls(kind=found[0], message=found[1])  # type: ignore[arg-type]

    def describe(self) -> str:
        """For people: the user's message, else a plain phrase (`timed out`, `by the user`…)."""
        return describe_cancel(self.kind, self.message)

    def debug(self) -> str:
        """The Rust debug spelling used in error texts: `UserRequested(Some("msg"))`, `Timeout`."""
        if self.kind != "UserRequested":
            return self.kind
        if self.message is None:
            return "UserRequested(None)"
        escaped = self.message.replace("\\", "\\\\").replace('"', '\\"')
        return f'UserRequested(Some("{escaped}"))'


class EngineCancelled(EngineError):
    """`Cancelled(reason)`: the step or run stopped because something asked it to."""

    def __init__(self, reason: CancellationReason) -> None:
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return f"workflow cancelled: {self.reason.debug()}"


class CancellationToken:
    """A cancel flag with a parent chain. Copies of the object share state (it is a reference).

    The `threading.Event` behind `wait()` is made only when someone waits: a foreach makes a token
    per item, and most are never waited on.
    """

    __slots__ = ("_cancelled", "_cancelled_at", "_children", "_event", "_lock", "_parent", "_reason")

    def __init__(self, parent: CancellationToken | None = None) -> None:
        self._parent = parent
        self._lock = threading.Lock()
        self._cancelled = False
        self._cancelled_at: float | None = None
        self._event: threading.Event | None = None
        self._reason: CancellationReason | None = None
        # Made with the first child: a foreach makes a token per item, and items have no children.
        self._children: dict[int, CancellationToken] | None = None
        if parent is not None:
            # No lock of the parent's: every worker of a fan-out makes and drops item tokens of
            # one parent, and a lock they all take turns into GIL hand-overs between them. One
            # dict write registers the child; its flag is read after that, and `cancel` sets the
            # flag before it reads the children, so a cancel racing this sees the child or the
            # child sees the cancel.
            children = parent._children
            if children is None:
                with parent._lock:
                    children = parent._children
                    if children is None:
                        children = parent._children = {}
            children[id(self)] = self
            self._cancelled_at = parent._cancelled_at
            self._cancelled = parent._cancelled

    def child(self) -> CancellationToken:
        return CancellationToken(self)

    def cancel(self, reason: CancellationReason) -> None:
        self._cancel(reason, time.monotonic())

    def _cancel(self, reason: CancellationReason | None, at: float) -> None:
        """Set the flag (and `reason`, unless this token has one: the first cancel's stands),
        wake a waiter, then do the same for every child (None: cancelled by the parent). `at`:
        the moment of the cancel that reached this token first (`cancelled_at`)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            if self._cancelled_at is None:
                self._cancelled_at = at
            self._cancelled = True
            event = self._event
            children = list(self._children.values()) if self._children else ()
        if event is not None:
            event.set()
        for c in children:
            c._cancel(None, at)

    def is_cancelled(self) -> bool:
        return self._cancelled

    def cancelled_at(self) -> float | None:
        """`time.monotonic()` when the cancel was made (a parent's, for a token cancelled with
        its parent); None while not cancelled. Everyone waiting out a grace after a cancel
        measures from this one moment, not from when each noticed it."""
        at = self._cancelled_at
        if at is None and self._cancelled:
            return time.monotonic()  # a child made while its parent was being cancelled
        return at

    def reason(self) -> CancellationReason | None:
        tok: CancellationToken | None = self
        while tok is not None:
            if tok._reason is not None:
                return tok._reason
            tok = tok._parent
        return None

    def error(self) -> EngineCancelled:
        """The error a stop because of this token raises: its reason, else `ParentCancelled`."""
        return EngineCancelled(self.reason() or CancellationReason.of("ParentCancelled"))

    def error_if_cancelled(self) -> None:
        if self._cancelled:
            raise self.error()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or `timeout` seconds pass; True when cancelled."""
        with self._lock:
            if self._cancelled:
                return True
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        return event.wait(timeout)

    def detach(self) -> None:
        """Forget this token in its parent so finished children do not pile up in long runs."""
        parent = self._parent
        if parent is not None and parent._children is not None:
            parent._children.pop(id(self), None)  # one dict operation: no lock (see __init__)
