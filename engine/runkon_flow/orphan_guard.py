"""The engine process's link to its orphan watchdog (`runkon_flow.process_watchdog`): every live
command group is registered, and the watchdog kills them all if this process dies without reaping
them (SIGKILL, OOM, crash) — so a resumed item never runs beside its orphaned copy.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["OrphanGuard"]

log = logging.getLogger("runkon_flow.process")


class OrphanGuard:
    """This process's link to its orphan watchdog (see `runkon_flow.process_watchdog`).

    Why a separate process and not prctl(PR_SET_PDEATHSIG): the death signal fires when the
    *thread* that forked the child exits, and the engine starts commands from worker threads that
    come and go; setting it needs `preexec_fn`, which is unsafe with threads and forbids vfork; and
    it reaches only the direct child, never the grandchildren in its group. A watchdog reading a
    socket only this process holds the other end of sees EOF exactly when the process is gone,
    however it died, and kills whole groups. It costs one short send per command start and end.
    (A socket pair rather than a pipe so a send to a dead watchdog can use MSG_NOSIGNAL: an
    embedding application that restored SIGPIPE's default action would otherwise die of it.)

    The watchdog is started before the first command. If it dies (someone killed it) the next message
    fails, and a new one is started and told every live group. If none can be started, a warning
    is logged and commands run unguarded (as before) until a later retry succeeds.
    """

    #: After a failed start, how long commands run unguarded before the next attempt.
    RETRY_AFTER_S = 30.0
    #: A watchdog that leaves no room in its socket for this long is hung: it is replaced. (It
    #: reads every 10 ms; a burst of more messages than the buffer holds waits a little.)
    SEND_TIMEOUT_S = 2.0

    def __init__(self, term_grace_s: float) -> None:
        self._term_grace_s = term_grace_s  # the watchdog's SIGTERM → SIGKILL grace, as for a cancel
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._live: set[int] = set()
        self._failed_at: float | None = None
        self._warned = False
        self._closed = False

    def prepare(self) -> None:
        """Start the watchdog now if none runs, before a command starts: a registration that had
        to start it first would leave the new command unguarded for milliseconds."""
        if self._sock is not None:  # (unlocked peek: the common case costs nothing)
            return
        with self._lock:
            if self._sock is None:
                self._start()

    def register(self, pgid: int) -> None:
        """`pgid` leads a live command: kill it if this process dies."""
        with self._lock:
            self._live.add(pgid)
            self._send(f"+{pgid}\n".encode())

    def release(self, pgid: int) -> None:
        """The command of group `pgid` was reaped: forget it (its pid may be reused)."""
        with self._lock:
            self._live.discard(pgid)
            if self._sock is not None:
                self._send(f"-{pgid}\n".encode())

    def watchdog_pid(self) -> int | None:
        """The pid of the current watchdog, None before the first command (or if none runs)."""
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def shutdown(self) -> None:
        """At interpreter exit: close our end — the watchdog kills whatever is still registered
        (commands of daemon threads, which would otherwise be orphaned) — and reap the watchdog,
        so not even a zombie of it is left. No watchdog is started after this."""
        with self._lock:
            self._closed = True
            sock, proc = self._sock, self._proc
            self._sock = self._proc = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        if proc is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.wait(timeout=self._term_grace_s + 1.0)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's socket, or the watchdog would wait for this child too."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._lock = threading.Lock()
        self._sock = None
        self._proc = None
        self._live = set()

    # ---- under the lock

    def _send(self, message: bytes) -> None:
        if self._sock is not None:
            try:
                self._sock.sendall(message, _NO_SIGPIPE)  # waits at most SEND_TIMEOUT_S for room
                return
            except OSError:  # the watchdog died (EPIPE) or hangs (no room for that long)
                pass
            log.warning("orphan watchdog %s stopped listening; starting a new one", self._pid())
            self._stop()
        self._start()  # tells the new watchdog every live group, this message included

    def _pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        now = time.monotonic()
        if self._closed:
            return
        if self._failed_at is not None and now - self._failed_at < self.RETRY_AFTER_S:
            return
        try:
            self._sock, self._proc = _start_watchdog(self._term_grace_s)
            self._failed_at = None
            if self._live:
                self._sock.sendall("".join(f"+{pgid}\n" for pgid in self._live).encode(), _NO_SIGPIPE)
        except OSError as exc:
            self._stop()
            self._failed_at = now
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot start the orphan watchdog (%s): commands started now keep running "
                    "if this process is killed",
                    exc,
                )

    def _stop(self) -> None:
        """Close our end of the socket — after killing the watchdog, or it would take our closing
        for our death and kill the live groups."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


#: send() flag that turns SIGPIPE into EPIPE (Linux, BSDs; macOS has none and gets 0: there Python's
#: default of ignoring SIGPIPE is what protects us).
_NO_SIGPIPE = getattr(socket, "MSG_NOSIGNAL", 0)


def _start_watchdog(term_grace_s: float) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """Start a watchdog; returns our end of its socket and the process. Raises OSError."""
    if getattr(sys, "frozen", False) or not sys.executable:
        raise OSError("no Python interpreter to run it with")  # a frozen app's executable is the app
    script = Path(__file__).with_name("process_watchdog.py")
    if not script.is_file():
        raise OSError(f"{script} is missing")
    ours, theirs = socket.socketpair()  # both close-on-exec: no other child inherits them
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(script), str(term_grace_s)],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            close_fds=True,
            start_new_session=True,  # the terminal's Ctrl-C / hang-up must not reach it
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    with contextlib.suppress(OSError):  # room for thousands of messages, not ~280 (capped by wmem_max)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ours.settimeout(OrphanGuard.SEND_TIMEOUT_S)
    return ours, proc
