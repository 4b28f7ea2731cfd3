"""The orphan watchdog: a tiny process that kills an engine's commands when the engine dies.

Every command the engine starts (`runkon_flow.process.run_process`) leads its own process group, so
nothing ties it to the engine: if the engine is SIGKILLed (kill -9, the OOM killer, a crash) its
scripts would run to completion, and a `resume` would start the in-flight item a second time while
the first copy still runs. So each engine process starts one of these (lazily, at its first
command) with one end of a socket pair as stdin, whose other end only the engine holds, and tells
it over that socket which process groups are live:

    +<pgid>\\n   a command started (its group)
    -<pgid>\\n   it finished and was reaped

When the engine dies for any reason, the kernel closes its end of the socket; the read here hits EOF
and every group still registered gets SIGTERM, a short grace, then SIGKILL — what a cancel does.
Nothing here is tied to a thread of the engine (unlike prctl(PR_SET_PDEATHSIG)), and grandchildren
in the group die too.

Run as a script (`python -I -S process_watchdog.py <grace seconds>`), so it imports only the
standard library and nothing of `runkon_flow`: it starts in a few milliseconds and costs ~10 MB.
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: The fd the engine's socket arrives on.
_PIPE_FD = 0
#: How often the groups are checked during the grace after SIGTERM.
_POLL_S = 0.01
#: After each read, let messages gather this long: nothing here is urgent (they wait in the socket
#: buffer; the engine's death is noticed at most this much later), and waking for every single
#: message would cost the engine ~40 µs of CPU per command on a 2-core machine.
_BATCH_S = 0.01


def read_until_eof(fd: int) -> set[int]:
    """Follow the engine's messages; return the groups still live when the engine's end closes."""
    live: set[int] = set()
    pending = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""  # a reset connection means the same as EOF: the engine is gone
        if not data:
            return live
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            apply_message(live, line)
        time.sleep(_BATCH_S)


def apply_message(live: set[int], line: bytes) -> None:
    """`+N` adds group N, `-N` removes it; anything else (never sent) is ignored."""
    try:
        pgid = int(line[1:])
    except ValueError:
        return
    if pgid <= 1:
        return  # never signal "every process" or init, whatever arrives
    if line.startswith(b"+"):
        live.add(pgid)
    elif line.startswith(b"-"):
        live.discard(pgid)


def _signal_group(pgid: int, sig: int) -> bool:
    """True if the group still had members (zombies count: a reaper may not have run yet)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_groups(groups: set[int], grace_s: float) -> None:
    """SIGTERM every group, wait up to `grace_s` for them to go, SIGKILL what is left."""
    alive = {pgid for pgid in groups if _signal_group(pgid, signal.SIGTERM)}
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        alive = {pgid for pgid in alive if _signal_group(pgid, 0)}
    for pgid in alive:
        _signal_group(pgid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Wait for the engine to die, then kill the groups it left running."""
    # Only the engine's death may end the watch: a Ctrl-C or a closing terminal is the engine's to
    # handle (it cancels its runs and reaps their commands itself).
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        grace_s = float(argv[1]) if len(argv) > 1 else 0.25
    except ValueError:
        grace_s = 0.25
    kill_groups(read_until_eof(_PIPE_FD), grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
