"""Run one external command the way the engine needs it (scripts, agent CLIs, item commands).

Why not `subprocess.run`: a step must be stoppable within a second even when the command spawned
grandchildren that keep the pipes open (`sh -c 'sleep 30 & sleep 30'`), its output must stream line
by line to the dashboard while it runs, and a chatty command must never deadlock on a full pipe.

So every command gets its own session/process group; stdout and stderr are read concurrently with
a selector on the calling thread (which is also where `on_line` is called, so callbacks never race
each other); a timeout or a cancel terminates the WHOLE group (SIGTERM, a short grace, SIGKILL).

A group of its own also means nothing ties the command to the engine: so every live group is
registered with this process's orphan watchdog (`runkon_flow.process_watchdog`), which kills it
if the engine process dies without reaping it (SIGKILL, OOM, crash). A shell command waits at a
gate (one line on stdin) until its group is registered, so none of its code runs unguarded.
POSIX only.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import errno
import logging
import os
import select
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runkon_flow.cancellation import CancellationToken
from runkon_flow.dsl.shell_text import scan_placeholders, the_value_of
from runkon_flow.orphan_guard import OrphanGuard

log = logging.getLogger(__name__)

LineCallback = Callable[[str, str], None]
"""`on_line(line, stream)` with `stream` = "stdout" | "stderr"; the line has no trailing newline."""

#: After SIGTERM, how long the group gets to exit before SIGKILL.
TERM_GRACE_S = 0.25
#: When the direct child exited but something it left behind still holds the pipes open, how long
#: we keep reading before that leftover group is terminated (a finished step leaves no stragglers).
DRAIN_GRACE_S = 0.5
#: The loop wakes at least this often to notice a cancel or a deadline.
_TICK_S = 0.02
#: A line longer than this (no newline yet) is flushed to `on_line` in pieces.
_MAX_LINE_CHARS = 64 * 1024
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProcessResult:
    """What happened. `exit_code` is None when the process never started or was killed by us
    (timeout/cancel); a negative code means "killed by that signal" (Python's convention)."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    cancelled: bool = False
    duration_ms: int = 0
    spawn_error: str | None = None
    #: The command's largest argument or environment variable when it could not start because they
    #: were too big for a process (E2BIG, "Argument list too long"): (`argument N` /
    #: `environment variable 'K'`, the environment variable's name or None, bytes).
    too_big: tuple[str, str | None, int] | None = None
    stdout_dropped: int = 0  # characters of stdout past `max_capture_chars`, left out of `stdout`

    @property
    def ok(self) -> bool:
        """Started, finished by itself, and exited 0."""
        return self.exit_code == 0 and not (self.timed_out or self.cancelled or self.spawn_error)

    def stderr_tail(self, max_chars: int = 2000) -> str:
        """The last `max_chars` characters of trimmed stderr — what error messages quote."""
        text = self.stderr.strip()
        return text if len(text) <= max_chars else text[-max_chars:]


class _Capture:
    """Keeps the first and last halves of a stream once it exceeds `limit` characters, so both the
    command's opening lines and its final FLOW_OUTPUT block survive a flood of output."""

    def __init__(self, limit: int) -> None:
        self._head_limit = max(limit // 2, 0)
        self._tail_limit = max(limit - self._head_limit, 0)
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self._dropped = 0

    def add(self, text: str) -> None:
        if not text:
            return
        room = self._head_limit - self._head_len
        if room > 0:
            piece = text[:room]
            self._head.append(piece)
            self._head_len += len(piece)
            text = text[room:]
            if not text:
                return
        self._tail.append(text)
        self._tail_len += len(text)
        while self._tail_len > self._tail_limit and self._tail:
            excess = self._tail_len - self._tail_limit
            first = self._tail[0]
            if len(first) <= excess:
                self._tail.popleft()
                self._tail_len -= len(first)
                self._dropped += len(first)
            else:
                self._tail[0] = first[excess:]
                self._tail_len -= excess
                self._dropped += excess

    @property
    def dropped(self) -> int:
        return self._dropped

    def text(self) -> str:
        head = "".join(self._head)
        tail = "".join(self._tail)
        if not self._dropped:
            return head + tail
        return f"{head}\n[… {self._dropped} characters omitted …]\n{tail}"


class _Stream:
    """One pipe: incremental UTF-8 decoding (errors replaced), line splitting, capture."""

    def __init__(self, name: str, limit: int, on_line: LineCallback | None) -> None:
        self.name = name
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._capture = _Capture(limit)
        self._on_line = on_line
        self._partial = ""

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final=final)
        self._capture.add(text)
        if self._on_line is None:
            return
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._emit(line)
        if len(self._partial) > _MAX_LINE_CHARS:
            self._emit(self._partial)
            self._partial = ""
        if final and self._partial:
            self._emit(self._partial)
            self._partial = ""

    def _emit(self, line: str) -> None:
        assert self._on_line is not None
        try:
            self._on_line(line.removesuffix("\r"), self.name)
        except Exception:  # a broken observer must not break the command it observes
            log.exception("on_line callback failed for %s line", self.name)

    def text(self) -> str:
        return self._capture.text()

    @property
    def dropped(self) -> int:
        return self._capture.dropped


#: Put before a shell command's text, on the same line (the shell's line numbers stay right): the
#: shell first waits for one line on stdin, which the engine writes only once the orphan watchdog
#: knows the new group — so no code of the command ever runs unguarded. Should the engine die in
#: between, the read hits EOF and the shell exits without running anything. `read` of a pipe
#: takes no byte past the newline, so stdin content written after it reaches the command intact.
_GATE = "read -r _ || exit 125; "
#: The same when the command gets no stdin: it then reads /dev/null, as every command without one.
_GATE_NO_STDIN = _GATE + "exec </dev/null; "


def _argv(command: str | Sequence[str], shell: bool) -> list[str] | str:
    if shell:
        return command if isinstance(command, str) else shlex.join(command)
    return shlex.split(command) if isinstance(command, str) else list(command)


def _write_stdin(pipe: object, data: bytes) -> None:
    """Feed stdin from a helper thread so a command that reads slowly can't deadlock us."""
    try:
        pipe.write(data)  # type: ignore[attr-defined]
    except (BrokenPipeError, OSError, ValueError):
        pass  # the command stopped reading; that is its business
    finally:
        with contextlib.suppress(OSError, ValueError):
            pipe.close()  # type: ignore[attr-defined]


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """True if the group still existed."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


_GUARD = OrphanGuard(TERM_GRACE_S)
os.register_at_fork(after_in_child=_GUARD.forget_after_fork)
atexit.register(_GUARD.shutdown)


def orphan_watchdog_pid() -> int | None:
    """The pid of this process's orphan watchdog (None before the first command) — for diagnostics."""
    return _GUARD.watchdog_pid()


def run_process(
    command: str | Sequence[str],
    *,
    cwd: str | Path,
    env: Mapping[str, str],
    stdin: str | None = None,
    timeout: float | None = None,
    cancellation: CancellationToken | None = None,
    on_line: LineCallback | None = None,
    shell: bool = False,
    max_capture_chars: int = 1_000_000,
) -> ProcessResult:
    """Run `command` to completion, timeout or cancel; never raises for the command's own failures.

    `env` is the complete environment (the caller merges `os.environ` if it wants it). A string
    command is split with shlex unless `shell=True`, in which case it runs under `/bin/sh -c`.
    stdin is `/dev/null` when `stdin` is None, so a command can never grab the terminal.
    """
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    if cancellation is not None and cancellation.is_cancelled():
        return ProcessResult(None, "", "", cancelled=True, duration_ms=0)
    cwd_path = Path(cwd)
    if not cwd_path.is_dir():
        return ProcessResult(None, "", "", spawn_error=f"working directory does not exist: {cwd_path}")
    try:
        argv = _argv(command, shell)
    except ValueError as exc:  # unbalanced quotes in a string command
        return ProcessResult(None, "", "", spawn_error=f"cannot split command {command!r}: {exc}")
    if not argv:
        return ProcessResult(None, "", "", spawn_error="empty command")
    nul = _nul_byte(argv, env, shell)
    if nul is not None:  # no process can receive one: say which, instead of Popen's ValueError
        return ProcessResult(None, "", "", spawn_error=nul)
    if shell:  # what Popen(shell=True) runs, behind the gate
        argv = ["/bin/sh", "-c", (_GATE if stdin is not None else _GATE_NO_STDIN) + str(argv)]
    _GUARD.prepare()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd_path,
            env=dict(env),
            stdin=subprocess.PIPE if stdin is not None or shell else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        if exc.errno != errno.E2BIG:
            return ProcessResult(None, "", "", duration_ms=elapsed_ms(), spawn_error=str(exc))
        what, name, size = largest_part(argv, env)
        return ProcessResult(
            None,
            "",
            "",
            duration_ms=elapsed_ms(),
            spawn_error=f"{exc.strerror}: its {what} is {size:,} bytes",
            too_big=(what, name, size),
        )
    except ValueError as exc:
        return ProcessResult(None, "", "", duration_ms=elapsed_ms(), spawn_error=str(exc))
    _GUARD.register(proc.pid)  # at once: until the watchdog knows the group, it is unguarded
    try:
        return _supervise(proc, shell, stdin, timeout, cancellation, on_line, max_capture_chars, started)
    finally:
        _GUARD.release(proc.pid)


def _supervise(
    proc: subprocess.Popen[bytes],
    gated: bool,
    stdin: str | None,
    timeout: float | None,
    cancellation: CancellationToken | None,
    on_line: LineCallback | None,
    max_capture_chars: int,
    started: float,
) -> ProcessResult:
    """Open its gate, feed, read and (if it comes to that) kill the started command; reap it."""
    gate = b"\n" if gated else b""
    if stdin is not None and proc.stdin is not None:
        threading.Thread(
            target=_write_stdin,
            args=(proc.stdin, gate + stdin.encode("utf-8")),
            name=f"stdin-{proc.pid}",
            daemon=True,
        ).start()
    elif gated and proc.stdin is not None:
        _write_stdin(proc.stdin, gate)  # one byte into an empty pipe: never blocks

    streams = {
        "stdout": _Stream("stdout", max_capture_chars, on_line),
        "stderr": _Stream("stderr", max_capture_chars, on_line),
    }
    timed_out = cancelled = False
    killed = _pump(proc, streams, timeout, cancellation, started)
    if killed == "timeout":
        timed_out = True
    elif killed == "cancel":
        cancelled = True
    returncode = proc.wait()
    return ProcessResult(
        exit_code=None if (timed_out or cancelled) else returncode,
        stdout=streams["stdout"].text(),
        stderr=streams["stderr"].text(),
        timed_out=timed_out,
        cancelled=cancelled,
        duration_ms=int((time.monotonic() - started) * 1000),
        stdout_dropped=streams["stdout"].dropped,
    )


def _pump(
    proc: subprocess.Popen[bytes],
    streams: dict[str, _Stream],
    timeout: float | None,
    cancellation: CancellationToken | None,
    started: float,
) -> str | None:
    """Read both pipes until they close; returns "timeout"/"cancel" if we had to kill the group."""
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe, selectors.EVENT_READ, name)
    exit_fd = _exit_fd(proc)
    deadline = None if timeout is None else started + max(timeout, 0.0)
    killed: str | None = None
    kill_at: float | None = None  # when SIGKILL follows the SIGTERM
    hard_stop: float | None = None  # when we stop waiting for pipes whatever happens
    exited_at: float | None = None
    try:
        while sel.get_map() or proc.poll() is None:
            now = time.monotonic()
            if killed is None:
                if cancellation is not None and cancellation.is_cancelled():
                    killed = "cancel"
                elif deadline is not None and now >= deadline:
                    killed = "timeout"
                if killed is not None:
                    _signal_group(proc.pid, signal.SIGTERM)
                    kill_at = now + TERM_GRACE_S
                    hard_stop = kill_at + 0.5
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if killed is None and exited_at is not None and now - exited_at >= DRAIN_GRACE_S:
                # The command is done but left something holding our pipes: clean up after it.
                log.debug("pid %s exited; terminating leftovers holding its pipes", proc.pid)
                _signal_group(proc.pid, signal.SIGTERM)
                killed = "drain"
                kill_at = now + TERM_GRACE_S
                hard_stop = kill_at + 0.5
            if kill_at is not None and now >= kill_at:
                _signal_group(proc.pid, signal.SIGKILL)
                kill_at = None
            if hard_stop is not None and now >= hard_stop and proc.poll() is not None:
                break  # something outside the group (it called setsid) holds the pipes; give up
            if not sel.get_map():
                # Pipes closed but the command still runs (or is just exiting): wait for it in short
                # slices, still honouring cancel/timeout.
                _wait_exit(proc, exit_fd, _TICK_S)
                continue
            for key, _ in sel.select(_TICK_S):
                stream = streams[key.data]
                try:
                    data = os.read(key.fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    stream.feed(data)
                else:
                    stream.feed(b"", final=True)
                    sel.unregister(key.fileobj)
    finally:
        for key in list(sel.get_map().values()):
            streams[key.data].feed(b"", final=True)
        sel.close()
        if exit_fd is not None:
            os.close(exit_fd)
        for pipe in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
        if killed is not None or proc.poll() is None:
            # Nothing of the group may outlive the call (pipes can close before every member died).
            _signal_group(proc.pid, signal.SIGKILL)
    return killed if killed in ("timeout", "cancel") else None


#: The most bytes one argument or environment entry (`NAME=value` and its NUL) may have on Linux
#: (MAX_ARG_STRLEN, 32 pages): a longer one fails the command's start with E2BIG.
MAX_ARG_BYTES = 131072

#: What follows the size of a value too big for a process (`ProcessResult.too_big`) in a message.
TOO_BIG = (
    "more than a command can receive (Argument list too long; Linux takes at most 128 KiB in one "
    "argument or environment variable) — pass a large value in a file: write it to one and pass the "
    "file's path"
)


#: For each place of a command a value may be too big in (`argument N`, or an environment
#: variable's name): what to call it when a placeholder's value made it so (`in `run``), what to
#: call it otherwise (`the `run` text`), and the templates its text came from.
TooBigPlaces = Mapping[str, tuple[str, str, Sequence[str]]]


def too_big_problem(
    who: str,
    too_big: tuple[str, str | None, int],
    places: TooBigPlaces,
    variables: Mapping[str, str],
    source: Callable[[str], str | None] | None = None,
) -> str:
    """Why `who` (`Script 'b'`, `agent 'x'`) could not start when a value was too big for a process
    (E2BIG, `ProcessResult.too_big`): the largest argument or environment variable — by the
    placeholder whose value made it so (the largest one in its templates) and, given `source`,
    where that value came from — its size, and what to do (`TOO_BIG`). Scripts and command agents
    say it alike."""
    what, env_name, size = too_big
    in_label, label, templates = places.get(env_name if env_name is not None else what, ("", what, ()))
    keys = [u.key for t in templates for u in scan_placeholders(t) if u.key in variables]
    key = max(keys, key=lambda k: len(variables[k]), default=None)
    if key is not None:
        label = the_value_of(key, f" in {in_label}", source(key) if source else None)
    return f"{who} could not start: {label} is {size:,} bytes, {TOO_BIG}"


def largest_part(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str, str | None, int]:
    """The largest argument or environment entry (`NAME=value`, as the kernel counts it) of a
    command, and the size of that argument or value in bytes: what to name when it cannot start
    for E2BIG (a single one over 128 KiB on Linux, or all of them over ARG_MAX)."""
    best, most = ("command line", None, 0), -1
    for index, part in enumerate(argv):
        size = len(os.fsencode(part))
        if size > most:
            best, most = (f"argument {index}", None, size), size
    for key, value in env.items():
        size = len(os.fsencode(value))
        if size + len(os.fsencode(key)) + 1 > most:
            best, most = (f"environment variable {key!r}", key, size), size + len(os.fsencode(key)) + 1
    return best


def _nul_byte(argv: Sequence[str], env: Mapping[str, str], shell: bool) -> str | None:
    """Which argument or environment variable holds a NUL byte, if any."""
    for index, part in enumerate(argv):
        if "\0" in part:
            return (
                "the command text contains a NUL byte" if shell else f"argument {index} contains a NUL byte"
            )
    for key, value in env.items():
        if "\0" in key or "\0" in value:
            return f"environment variable {key!r} contains a NUL byte"
    return None


def _exit_fd(proc: subprocess.Popen[bytes]) -> int | None:
    """A pidfd of the (not yet reaped) command, readable once it exits (Linux ≥ 5.3), else None.

    Why: most commands close their pipes a few µs before the kernel reports their exit, and
    `Popen.wait(timeout)` then polls with sleeps of 0.5 ms, 1 ms, … — over a millisecond per command.
    """
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


def _wait_exit(proc: subprocess.Popen[bytes], exit_fd: int | None, timeout: float) -> None:
    """Return when the command has exited (not reaped: the caller polls) or after `timeout`."""
    if exit_fd is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        return
    poller = select.poll()  # not select(): the fd may be above FD_SETSIZE in a busy process
    poller.register(exit_fd, select.POLLIN)
    poller.poll(timeout * 1000)
