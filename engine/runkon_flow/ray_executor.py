"""`--executor ray`: foreach children run as Ray tasks (docs/scale-out.md).

The one module that imports `ray` (an import-linter contract keeps it out of every other module),
and only when a Ray executor is made, so the engine runs without the `[ray]` extra installed.
Ray is used as a stateless executor: the run's truth stays in the shared store, each task carries
plain data (runtime/remote_child.py `ChildTask`) and rebuilds the engine on its node from that
node's checkout (`Workspace.run_child_task`).

Never twice by accident: tasks have `max_retries=0` (Ray would silently run a task again whose
worker died); a dead worker or node is reported as `WorkerLost`. Tasks are spread over the nodes
(`SPREAD`), one CPU each, at most the foreach's `max_parallel` in flight (one waiting thread per
slot in the parent).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.errors import FlowError, WorkflowError
from runkon_flow.persistence.location import DbLocation
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.plugins.protocols import WorkflowResolver
from runkon_flow.runtime.engine import FlowEngine
from runkon_flow.runtime.remote_child import ChildTask, RemoteChildRunner, WorkerLost
from runkon_flow.runtime.types import ChildWorkflowRunner, WorkflowExecConfig
from runkon_flow.workspace import ChildRunnerFactory, Workspace

__all__ = ["RAY_ADDRESS_ENV", "RayExecutor", "RayUnavailable", "UnshareableStore"]

RAY_ADDRESS_ENV = "RAY_ADDRESS"
_INSTALL_HINT = "install it with: pip install 'runkon-tui[ray]'"


class RayUnavailable(FlowError):
    """Ray is not installed, or the cluster cannot be reached."""


class UnshareableStore(FlowError):
    """The run's store cannot be reached by every node of the cluster."""


class RayExecutor:
    """Submits `ChildTask`s to a Ray cluster (`address`, else `$RAY_ADDRESS`).

    `connect()` joins the cluster as a driver and refuses a store the nodes cannot share: an
    in-memory store, or a SQLite file while some node runs on another machine."""

    def __init__(
        self,
        location: DbLocation | None,
        dirs: Sequence[Path | str],
        *,
        address: str | None = None,
        working_dir: Path | str | None = None,
        task_cpus: float = 1.0,
    ) -> None:
        self.location = location
        self.store_url = location.target if location is not None else ""
        self.address = address or os.environ.get(RAY_ADDRESS_ENV) or None
        self.dirs = [str(Path(d).absolute()) for d in dirs]
        self.working_dir = str(Path(working_dir).absolute()) if working_dir is not None else None
        self.task_cpus = task_cpus
        self._remote: Any = None
        self._cancelled: set[Any] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ joining the cluster

    def connect(self) -> RayExecutor:
        """Join the cluster (once per process) and check the store can be shared."""
        if self.location is None:
            raise UnshareableStore(
                "--executor ray needs a run database every node can reach (a postgresql:// URL, or a "
                "SQLite file when all Ray nodes run on this machine), not an in-memory store"
            )
        ray = _ray()
        if not ray.is_initialized():
            where = self.address or f"${RAY_ADDRESS_ENV} / a local cluster"
            silent = _nothing_answers(self.address)
            if silent is not None:
                raise RayUnavailable(f"cannot join the Ray cluster at {where}: {silent}")
            _enable_faulthandler_for_ray()
            try:
                ray.init(
                    address=self.address or "auto",
                    namespace="runkon",
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                )
            except Exception as exc:
                why = _first_line(exc)
                if "Could not find any running Ray instance" in why:  # Ray's words name its own flags
                    why = (
                        "no Ray cluster runs on this machine; start one (ray start --head) or give its "
                        f"address (--ray-address HOST:PORT or ${RAY_ADDRESS_ENV})"
                    )
                raise RayUnavailable(f"cannot join the Ray cluster at {where}: {why}") from None
        if not self.location.is_server:
            foreign = [ip for ip in self.node_addresses() if not _is_local_address(ip)]
            if foreign:
                raise UnshareableStore(
                    f"--executor ray: the SQLite file {self.location.label} cannot be shared with Ray "
                    f"nodes on other machines ({', '.join(sorted(foreign))}); use a postgresql:// URL"
                )
        self._remote = ray.remote(max_retries=0, num_cpus=self.task_cpus, scheduling_strategy="SPREAD")(
            _run_task
        )
        return self

    def node_addresses(self) -> list[str]:
        """The addresses of the cluster's live nodes."""
        return [n["NodeManagerAddress"] for n in _ray().nodes() if n.get("Alive")]

    def runner_factory(self) -> ChildRunnerFactory:
        """What `Workspace(child_runner=…)` takes: each run's foreach children go to this cluster."""
        if self._remote is None:
            self.connect()

        def make(
            engine: FlowEngine, resolver: WorkflowResolver, store: WorkflowPersistence
        ) -> ChildWorkflowRunner:
            return RemoteChildRunner(engine, resolver, store, self)

        return make

    # ------------------------------------------------------------------ RemoteExecutor

    def submit(self, task: ChildTask) -> Any:
        config = {"dirs": self.dirs, "working_dir": self.working_dir, "store_url": self.store_url}
        return self._remote.remote(task.to_dict(), config)

    def wait(self, handle: Any, timeout: float) -> dict[str, Any] | None:
        ray = _ray()
        ready, _ = ray.wait([handle], timeout=timeout)
        if not ready:
            return None
        exceptions = ray.exceptions
        try:
            return ray.get(handle)
        except exceptions.TaskCancelledError:
            raise EngineCancelled(CancellationReason.user()) from None
        except exceptions.RayTaskError as exc:  # the task itself raised: its own words
            cause = getattr(exc, "cause", None)
            raise WorkflowError(_first_line(cause if cause is not None else exc)) from None
        except exceptions.RayError as exc:  # the worker process or its node died
            with self._lock:
                forced = handle in self._cancelled
            if forced:
                raise EngineCancelled(CancellationReason.user()) from None
            raise WorkerLost(f"{type(exc).__name__}: {_first_line(exc)}") from None
        finally:
            with self._lock:
                self._cancelled.discard(handle)

    def force_cancel(self, handle: Any) -> None:
        with self._lock:
            self._cancelled.add(handle)
        try:
            _ray().cancel(handle, force=True)
        except Exception as exc:  # already finished or its worker is gone: wait() says which
            logging.getLogger(__name__).debug("ray.cancel failed: %s", exc)


# ---------------------------------------------------------------------- on the worker

_WORKSPACES: dict[tuple[str, tuple[str, ...], str | None], Workspace] = {}
_WORKSPACES_LOCK = threading.Lock()


def _workspace(config: dict[str, Any]) -> Workspace:
    """One workspace (store connection, loaded agents) per worker process and configuration."""
    key = (config["store_url"], tuple(config["dirs"]), config["working_dir"])
    with _WORKSPACES_LOCK:
        ws = _WORKSPACES.get(key)
        if ws is None:
            store = DbLocation(config["store_url"]).open()
            working_dir = Path(config["working_dir"]) if config["working_dir"] else None
            ws = Workspace(config["dirs"], store, working_dir=working_dir, exec_config=WorkflowExecConfig())
            _WORKSPACES[key] = ws
    return ws


def _run_task(task: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: run one foreach child on this node; returns `ChildOutcome` as a dict."""
    ray = _ray()
    context = ray.get_runtime_context()
    node = (
        f"{ray.util.get_node_ip_address()} (Ray node {context.get_node_id()[:12]}, "
        f"host {socket.gethostname()}, pid {os.getpid()})"
    )
    return _workspace(config).run_child_task(ChildTask.from_dict(task), node=node).to_dict()


# ---------------------------------------------------------------------- helpers


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--executor ray needs Ray, which is not installed; {_INSTALL_HINT}") from None
    return ray


def _is_local_address(ip: str) -> bool:
    """This machine has `ip` (it can bind to it)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


PROBE_TIMEOUT_S = 5.0


def _enable_faulthandler_for_ray() -> None:
    """`ray.init` enables `faulthandler` on `sys.stderr` and fails when that has no file
    descriptor — as under the dashboard, whose Textual app replaces `sys.stderr` with a capture
    whose `fileno()` is -1: every `runkon-tui --executor ray` said `engine unavailable: … file.fileno()
    is not a valid file descriptor`. Enabled here first, on the process's own stderr, Ray leaves it."""
    if faulthandler.is_enabled():
        return
    try:
        if sys.stderr is not None and sys.stderr.fileno() >= 0:
            return  # Ray enables it itself
    except (AttributeError, OSError, ValueError):
        return  # io.UnsupportedOperation (a ValueError): Ray ignores it
    with contextlib.suppress(AttributeError, OSError, ValueError, RuntimeError):
        faulthandler.enable(file=sys.__stderr__, all_threads=False)  # type: ignore[arg-type]


def _nothing_answers(address: str | None) -> str | None:
    """Why nothing can be joined at `address` (HOST:PORT, or ray://HOST:PORT), or None when
    something answers there or the address is not one to probe (none, `auto`, `local`).

    `ray.init` at an address where nothing listens does not fail: Ray's GCS client retries each
    connection for ~40 s, 20 times (over 13 minutes), printing warnings meanwhile; one TCP
    connect first turns that into one line at once."""
    if not address or address in ("auto", "local"):
        return None
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port_text = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        return None  # not HOST:PORT: Ray judges it
    try:
        conn = socket.create_connection((host, int(port_text)), timeout=PROBE_TIMEOUT_S)
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        return (
            f"nothing answers at {host}:{port_text} ({why}); start the head there "
            f"(ray start --head --port={port_text}) or fix --ray-address / ${RAY_ADDRESS_ENV}"
        )
    with conn:
        other = _not_grpc(conn)
    if other is None:
        return None
    return (
        f"what answers at {host}:{port_text} is not a Ray head ({other}); give the port the head "
        f"was started with (ray start --head --port=…, 6379 by default) in --ray-address / ${RAY_ADDRESS_ENV}"
    )


# An HTTP/2 client's first bytes: the connection preface and an empty SETTINGS frame.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _not_grpc(conn: socket.socket) -> str | None:
    """Why the server on `conn` is not a gRPC one (Ray's GCS and its client server are), or None.

    Something else listening there (a web server, another database) accepts the TCP connection,
    and then `ray.init` retries for over 13 minutes, printing warnings: an HTTP/2 server answers
    the client's preface with a SETTINGS frame of its own (RFC 9113 §3.4), anything else does not."""
    try:
        conn.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9:
            got = conn.recv(9 - len(head))
            if not got:
                return "it closed the connection" if not head else "it answers, but not in HTTP/2"
            head += got
    except TimeoutError:
        return f"no answer to an HTTP/2 greeting within {PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    if head[3] == 0x04 and head[5:9] == b"\x00\x00\x00\x00":  # a SETTINGS frame, stream 0
        return None
    return "it answers, but not in HTTP/2 as Ray's gRPC servers do"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
