"""Code of a test run on many threads at once, so that races happen in a short test (what the
concurrency tests of the stores and the engine share)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def together(target: Callable[[int], object], count: int) -> None:
    """Run `target(i)` on `count` threads started at once; re-raise the first error."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            target(i)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@contextmanager
def switching_often() -> Iterator[None]:
    """Threads swap the GIL every microsecond, not every 5 ms: a race happens, not just may."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def together_beside(
    target: Callable[[int], object], count: int, beside: Callable[[threading.Event], object]
) -> None:
    """`together(target, count)`, threads switching often, while `beside(done)` runs on one more
    thread (a drainer, a UI) until `done` is set once the others have ended."""
    done = threading.Event()
    other = threading.Thread(target=beside, args=(done,))
    with switching_often():
        other.start()
        try:
            together(target, count)
        finally:
            done.set()
            other.join()
