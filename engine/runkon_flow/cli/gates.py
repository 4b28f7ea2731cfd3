"""`runkon-flow approve` and `runkon-flow reject`: decide a waiting gate from the shell."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from runkon_flow.approvals import GateApprovals
from runkon_flow.cli.common import EXIT_OK
from runkon_flow.cli.store import add_db_args, get_run, opened_store


def _user(explicit: str | None) -> str:
    if explicit:
        return explicit
    name = os.environ.get("USER") or os.environ.get("USERNAME")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def cmd_gate(args: argparse.Namespace) -> int:
    with opened_store(args, must_exist=True) as store:
        get_run(store, args.run_id, args)
        gates = GateApprovals(store)
        by = _user(args.by)
        if args.command == "approve":
            gate = gates.approve(args.run_id, args.gate, by, args.note, args.select or None)
            verb = "approved"
        else:
            gate = gates.reject(args.run_id, args.gate, by, args.note)
            verb = "rejected"
    print(f"gate {gate.gate_name} of run {args.run_id} {verb} by {by}")
    return EXIT_OK


def _add_gate_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_text,
        description=f"{help_text.capitalize()}. GATE is the gate's name or its step id "
        "(`runkon-flow show RUN_ID` lists waiting gates).",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("gate", metavar="GATE")
    p.add_argument("--note", metavar="TEXT", help="feedback recorded with the decision")
    p.add_argument("--by", metavar="NAME", help="who decides (default: $USER)")
    add_db_args(p)
    p.set_defaults(handler=cmd_gate)
    return p


def add_approve_parser(sub: Any) -> None:
    p = _add_gate_parser(sub, "approve", "approve a waiting gate")
    p.add_argument(
        "--select", action="append", metavar="VALUE", help="choose one of the gate's options (repeatable)"
    )


def add_reject_parser(sub: Any) -> None:
    _add_gate_parser(sub, "reject", "reject a waiting gate (the run then fails)")
