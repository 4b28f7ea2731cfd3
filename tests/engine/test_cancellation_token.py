"""A cancel reaches every child token, also one made by another thread at that very moment
(item tokens are made and dropped by a fan-out's workers without a lock)."""

from __future__ import annotations

import pytest
from runkon_flow.cancellation import CancellationReason, CancellationToken, EngineCancelled

from tests.threads import switching_often, together


def _race_a_cancel_with_child_tokens(makers: int = 4, per_maker: int = 500) -> list[CancellationToken]:
    """`makers` threads make child tokens (and drop some, as finished items do) while another
    cancels their parent; returns the ones kept."""
    parent = CancellationToken()
    made: list[CancellationToken] = []

    def make_or_cancel(i: int) -> None:
        if i == makers:
            parent.cancel(CancellationReason.user())
            return
        for n in range(per_maker):
            child = parent.child()
            if n % 3 == 0:
                child.detach()  # a finished item lets go of its token: a cancel need not reach it
            else:
                made.append(child)

    together(make_or_cancel, makers + 1)
    return made


def test_a_cancel_racing_child_tokens_made_on_other_threads_reaches_every_one_of_them() -> None:
    with switching_often():
        for _ in range(20):
            made = _race_a_cancel_with_child_tokens()
            assert len(made) == 4 * 333
            assert all(c.is_cancelled() for c in made)
            assert all(c.error().reason.kind == "UserRequested" for c in made[:10])


def test_a_detached_child_is_no_longer_held_by_its_parent() -> None:
    parent = CancellationToken()
    kept, dropped = parent.child(), parent.child()
    dropped.detach()
    dropped.detach()  # twice is harmless
    parent.cancel(CancellationReason.user())
    assert kept.is_cancelled()
    assert not dropped.is_cancelled()


@pytest.mark.parametrize(
    "reason",
    [
        CancellationReason.user(),
        CancellationReason.user('wrong "2.4" \\ again'),
        CancellationReason.of("Timeout"),
    ],
)
def test_a_reason_reads_back_from_the_error_text_a_cancelled_run_stores(reason: CancellationReason) -> None:
    """A cancel from another process reaches the engine as that text on the run's row."""
    assert CancellationReason.from_error(str(EngineCancelled(reason))) == reason


@pytest.mark.parametrize(
    "text", [None, "", "boom", "workflow cancelled: Nonsense", "workflow cancelled: Timeout and more"]
)
def test_any_other_text_gives_no_reason(text: str | None) -> None:
    assert CancellationReason.from_error(text) is None
