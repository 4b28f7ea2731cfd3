"""`--executor local|ray` and `--ray-address` for `run` and `resume` (docs/scale-out.md).

`local` (the default) runs foreach children in this process; `ray` sends them to a Ray cluster
(`--ray-address`, else `$RAY_ADDRESS`). The choice is made here once, for both commands; Ray itself
is only imported by `runkon_flow.ray_executor`, and only when `ray` is chosen.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from runkon_flow.cli.common import CommandFailed, UsageError
from runkon_flow.cli.store import location_of
from runkon_flow.errors import FlowError
from runkon_flow.workspace import ChildRunnerFactory

__all__ = ["EXECUTORS", "EXECUTOR_ENV", "add_executor_args", "child_runner_for", "detached_executor"]

EXECUTOR_ENV = "RUNKON_EXECUTOR"
EXECUTORS = ("local", "ray")


def add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        help=f"where foreach children run: 'local' (this process, the default) or 'ray' (a Ray "
        f"cluster; needs a run database every node reaches) (default: ${EXECUTOR_ENV}, else local)",
    )
    p.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="the Ray cluster to use with --executor ray (default: $RAY_ADDRESS)",
    )


def chosen_executor(args: argparse.Namespace) -> str:
    value = getattr(args, "executor", None) or os.environ.get(EXECUTOR_ENV, "").strip() or "local"
    if value not in EXECUTORS:
        raise UsageError(f"{EXECUTOR_ENV}={value!r}: expected one of {', '.join(EXECUTORS)}")
    if getattr(args, "ray_address", None) and value != "ray":
        raise UsageError("--ray-address is only used with --executor ray")
    return value


def child_runner_for(args: argparse.Namespace, dirs: Sequence[Path]) -> ChildRunnerFactory | None:
    """The child runner factory `args` ask for (None: in this process). Joins the Ray cluster and
    checks the store can be shared before anything runs: a refusal is one line."""
    if chosen_executor(args) != "ray":
        return None
    if getattr(args, "memory", False):
        raise UsageError(
            "--executor ray needs a run database every node can reach (--db postgresql://…), not --memory"
        )
    if getattr(args, "detach", False):
        return None  # the background runner joins the cluster (`detached_executor`)
    from runkon_flow.ray_executor import RayExecutor, UnshareableStore

    try:
        return RayExecutor(location_of(args), dirs, address=args.ray_address).runner_factory()
    except UnshareableStore as exc:
        raise UsageError(str(exc)) from None
    except FlowError as exc:  # Ray missing, or the cluster cannot be reached
        raise CommandFailed(str(exc)) from None


def detached_executor(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """`run --detach`: the executor and Ray address the background runner is started with (it
    joins the cluster itself, as a foreground `run` would: a refusal is in its log and the
    starting command shows it). (None, None) for local."""
    if chosen_executor(args) != "ray":
        return None, None
    return "ray", getattr(args, "ray_address", None)
