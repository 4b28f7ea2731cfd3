"""A two-node Ray cluster for one test, on this machine, honestly two hosts apart.

The head node and the worker node each run in a network namespace of their own, joined by a veth
pair (10.77.9.1 ↔ 10.77.9.2): Ray advertises a node's external address whatever
`--node-ip-address` says and listens on every interface, so in a namespace whose only address is
the veth's, its traffic never leaves the pair — never the machine's own network. The driver (the
`runkon-flow` under test) runs in the head's namespace. PostgreSQL is reached through its Unix
socket, which every namespace shares.

Every node has its own temporary directory and HOME (a leftover token in `~/.ray` stops the next
cluster from forming). Nodes are stopped by pid — every process in their namespace is killed —
never with `ray stop`, which kills every Ray process on the machine. Needs root (`ip netns`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.pg import in_ci

HEAD_IP = "10.77.9.1"
WORKER_IP = "10.77.9.2"
PORT = 6379
_START_TIMEOUT = 60.0
_counter = itertools.count(1)


def missing() -> str | None:
    """Why a cluster cannot be started here (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install -e '.[test,ray]')"
    return None


def require() -> None:
    why = missing()
    if why is not None:
        if in_ci():
            pytest.fail(f"CI runs the cluster tests: {why}", pytrace=False)
        pytest.skip(f"Ray cluster tests: {why}")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Node:
    name: str
    netns: str
    ip: str
    home: Path
    proc: subprocess.Popen | None = None
    log: Path = field(default_factory=Path)

    def pids(self) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()]

    def kill(self) -> None:
        """SIGKILL every process of this node (everything in its namespace), by pid."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        raise RuntimeError(f"processes of Ray node {self.name} would not die: {self.pids()}")


class RayCluster:
    """`with RayCluster() as c:` a head and a worker node; `c.run([...])` runs a command as the
    driver (in the head's namespace)."""

    def __init__(self, cpus: int = 2) -> None:
        tag = f"{os.getpid() % 100000}{next(_counter)}"
        self.root = Path(tempfile.mkdtemp(prefix="rkc-", dir="/tmp"))  # short: Ray's socket paths
        self.cpus = cpus
        self.head = Node("head", f"rkh{tag}", HEAD_IP, self.root / "head")
        self.worker = Node("worker", f"rkw{tag}", WORKER_IP, self.root / "worker")
        self._veth = (f"rkh{tag}", f"rkw{tag}")
        self.ray_bin = str(Path(sys.executable).parent / "ray")
        self.address = f"{HEAD_IP}:{PORT}"

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> RayCluster:
        try:
            self._network()
            self._start(self.head, ["--head", f"--port={PORT}"])
            self._start(self.worker, [f"--address={self.address}"])
            self.wait_for_nodes(2)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _network(self) -> None:
        a, b = self._veth
        _ip("netns", "add", self.head.netns)
        _ip("netns", "add", self.worker.netns)
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", self.head.netns)
        _ip("link", "set", b, "netns", self.worker.netns)
        for node, dev in ((self.head, a), (self.worker, b)):
            _ip("-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", dev)
            _ip("-n", node.netns, "link", "set", dev, "up")
            _ip("-n", node.netns, "link", "set", "lo", "up")

    def env(self, node: Node) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(HOME=str(node.home), RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS=self.address)
        return env

    def _start(self, node: Node, role: list[str]) -> None:
        node.home.mkdir(parents=True)
        node.log = self.root / f"{node.name}.log"
        argv = [
            "ip", "netns", "exec", node.netns, self.ray_bin, "start", *role,
            f"--node-ip-address={node.ip}",
            f"--num-cpus={self.cpus}",
            "--object-store-memory=100000000",
            f"--temp-dir={node.home / 'ray'}",
            "--disable-usage-stats",
            "--block",
        ]  # fmt: skip
        with node.log.open("w") as log:
            node.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(node), start_new_session=True
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while "block forever" not in node.log.read_text():
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray {node.name} node did not start:\n{node.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def wait_for_nodes(self, count: int) -> None:
        script = (
            "import ray, time, sys\n"
            f"ray.init(address='{self.address}', log_to_driver=False, configure_logging=False)\n"
            f"deadline = time.time() + {_START_TIMEOUT}\n"
            f"while len([n for n in ray.nodes() if n['Alive']]) < {count}:\n"
            "    if time.time() > deadline: sys.exit('nodes missing')\n"
            "    time.sleep(0.2)\n"
        )
        done = self.run([sys.executable, "-c", script], timeout=_START_TIMEOUT + 30)
        if done.returncode != 0:
            raise RuntimeError(f"the Ray cluster did not form: {done.stderr[-2000:]}")

    def close(self) -> None:
        for node in (self.worker, self.head):
            with contextlib.suppress(Exception):
                node.kill()
            if node.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(5)
        for ns in (self.worker.netns, self.head.netns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ the driver

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.head.netns, *argv]

    def run(
        self, argv: list[str], *, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(self.head),
            cwd=cwd,
        )

    def start(self, argv: list[str], *, cwd: Path | None = None, log: Path) -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(self.head),
                cwd=cwd,
                start_new_session=True,
            )

    def processes(self, node: Node) -> list[str]:
        """The command lines of the node's processes (to check what still runs there)."""
        out = []
        for pid in node.pids():
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        return out
