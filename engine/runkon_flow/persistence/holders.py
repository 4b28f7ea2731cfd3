"""Who holds a run's lease, read from its owner token, and whether that process is provably gone.

An engine's owner token is `<host>:<pid>:<process ULID>[:<place>]-<n>[/<ttl>]` (runtime/lease.py):
the TTL is the one every take and renewal of the lease with that token uses, so the holder last
renewed it at the lease's end less the TTL (`lease_ttl_of`; where a dead holder's run stopped,
observe/liveness.py). The place names the pid namespace the pid belongs to — a digest of this
boot of the kernel (`/proc/sys/kernel/random/boot_id`) and of the process's pid namespace
(`/proc/self/ns/pid`):

* two containers or machines may share a host name, and a pid of one means nothing in the other;
* a pid namespace's inode is unique only within one running kernel (every machine's first pid
  namespace has the same one), so the boot id comes along.

A holder is **provably gone** when its token names this host and this place and no process has
its pid here any more (`holder_is_gone`): the run's lease then counts as lapsed at once — a
resume or retry takes the run over, and readers show it `interrupted` — instead of after up to a
lease TTL. A pid reused by another process reads as alive (the lease is waited out, as before);
a token without a place (written by an older runkon, another tool, or where /proc is missing)
never counts as gone early. docs/persistence.md, "A dead holder's lease".

An engine of this very process that stopped running a run but could not let go of its lease (the
run database took no write then: `stopped_holding`) is as gone for that lease: `release_if_gone`
lets go of it in its name, so the dashboard that ran the run resumes it at once once the database
works again (before, `r` was refused as "owned by another engine" — itself — until the lease lapsed).
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = [
    "Holder",
    "holder_is_gone",
    "holder_of",
    "lease_holder_gone",
    "lease_ttl_of",
    "release_if_gone",
    "stopped_holding",
    "this_host",
    "this_place",
]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_PID_NS = "/proc/self/ns/pid"


def this_host() -> str:
    """The host name as a token carries it (no `:`, which separates the token's parts)."""
    return socket.gethostname().replace(":", "_")


def this_place() -> str | None:
    """This process's pid namespace on this boot of this kernel, as 16 hex digits; None where it
    cannot be told (no /proc: not Linux, or /proc not mounted)."""
    try:
        boot = _BOOT_ID.read_text(encoding="ascii").strip()
        ns = os.readlink(_PID_NS)  # "pid:[4026531836]"
    except (OSError, ValueError):
        return None
    if not boot or not ns:
        return None
    return hashlib.sha256(f"{boot}/{ns}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Holder:
    """The process an owner token belongs to. `str()` is how every message and the dashboard name
    it: `pid 4242 on build-7` (`build-7:4242` reads as a host and a port). `place`: its pid
    namespace and boot (`this_place`), None when the token does not say."""

    host: str
    pid: int
    place: str | None = None

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def holder_of(token: str | None) -> Holder | None:
    """Host and pid of the engine that holds a lease, from its token; None for tokens that do not
    say (other tools, runkon before tokens carried them, a CLI's short cancel lease)."""
    if not token:
        return None
    host, sep, rest = token.partition(":")
    pid, sep2, rest = rest.partition(":")
    if not (sep and sep2 and pid.isdigit()):
        return None
    _ulid, sep3, place = rest.partition(":")
    place = place.partition("-")[0] if sep3 else ""
    return Holder(host, int(pid), place or None)


def lease_ttl_of(token: str | None) -> float | None:
    """The lease TTL, in seconds, an engine's owner token carries (`…-<n>/<ttl>`); None for a token
    that does not say (an older runkon's, another tool's, a CLI's short cancel lease)."""
    if not token or holder_of(token) is None:
        return None
    number, sep, ttl = token.rpartition("-")[2].partition("/")
    if not (sep and number.isdigit()):
        return None
    try:
        value = float(ttl)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


_HERE: tuple[str, str | None] | None = None


def _here() -> tuple[str, str | None]:
    global _HERE
    if _HERE is None:
        _HERE = (this_host(), this_place())
    return _HERE


def _forget_here() -> None:
    global _HERE
    _HERE = None


os.register_at_fork(after_in_child=_forget_here)  # a child may be given a pid namespace of its own


def holder_is_gone(token: str | None) -> bool:
    """True only when the process that holds this lease provably no longer exists: its token
    names this host and this pid namespace on this boot, its pid is not this process, and no
    process has that pid here. Anything uncertain — another machine or container, a token
    without a place, a pid in use (even by another program), no permission to tell — is False:
    the lease is then waited out as before."""
    holder = holder_of(token)
    if holder is None or holder.place is None or holder.pid <= 0 or os.name != "posix":
        return False
    host, place = _here()
    if place is None or holder.place != place or holder.host != host or holder.pid == os.getpid():
        return False
    try:
        os.kill(holder.pid, 0)  # signal 0: nothing is sent, only whether the pid exists
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, another user's
        return False
    return False


#: (run id, owner token) of the leases engines of this process stopped holding without letting go
#: of them (`stopped_holding`); an entry goes when `release_if_gone` lets go of it.
_STOPPED_HERE: set[tuple[str, str]] = set()


def stopped_holding(run_id: str, token: str) -> None:
    """An engine of this process stopped running `run_id` but could not let go of its lease
    `token` (its run database took no write): that holder is gone, though its pid is this
    process's — `release_if_gone` counts it so. A set add, atomic under the GIL."""
    if token:
        _STOPPED_HERE.add((run_id, token))


def lease_holder_gone(run_id: str, token: str | None) -> bool:
    """The holder of `run_id`'s lease `token` runs it no more: an engine of this process stopped
    holding it (`stopped_holding`), or its process is provably gone (`holder_is_gone`). The one
    rule both `release_if_gone` (a resume takes the run) and readers (observe/liveness.py's
    `lease_is_live`: the run reads `interrupted`) go by, so the run list and the run view agree."""
    if not token:
        return False
    return (run_id, token) in _STOPPED_HERE or holder_is_gone(token)


def release_if_gone(store: WorkflowPersistence, run_id: str) -> Holder | None:
    """A run whose lease was refused: if its holder is provably gone (`lease_holder_gone`:
    `holder_is_gone`, or an engine of this process that stopped holding it), let go of the lease in
    that holder's name — `release_lease` is fenced on that very token, so a run another engine
    took meanwhile keeps its owner — and return who it was (the caller then takes the lease as
    usual); else None, nothing written. An engine that stopped because its run database went away
    could not let go of its lease: this is how a resume takes the run at once."""
    run = store.get_run(run_id)
    if run is None or not run.owner_token:
        return None
    token = run.owner_token
    if not lease_holder_gone(run_id, token):
        return None
    store.release_lease(run_id, token)
    _STOPPED_HERE.discard((run_id, token))
    return holder_of(token)
