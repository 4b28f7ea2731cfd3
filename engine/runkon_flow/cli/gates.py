"""`runkon-flow approve` / `reject` decide one waiting gate of a run; `runkon-flow gates` is the
inbox: every gate waiting in the run database (any run, any process), how long each has waited and
when it times out, and `gates approve|reject` answers several at once with one note."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import time
from typing import Any

from runkon_flow.approvals import GateApprovals, WaitingGate, latest_gate_rows
from runkon_flow.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandFailed,
    StdoutGuard,
    UsageError,
    fitted,
    print_err,
    terminal_width,
    whole_command,
)
from runkon_flow.cli.hints import Hints
from runkon_flow.cli.report import gate_json, gate_state, gates_held
from runkon_flow.cli.store import NoRunsHere, add_db_args, get_run, opened_store
from runkon_flow.humanize import display_line, format_duration, safe_text
from runkon_flow.observe.run_ids import SHORT_ID_MIN
from runkon_flow.persistence.models import StepRole, StepStatus, WorkflowRunStep
from runkon_flow.persistence.protocol import WorkflowPersistence


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
    out = StdoutGuard()
    with opened_store(args, must_exist=True) as store:
        run_id = get_run(store, args.run_id, args).id
        gates = GateApprovals(store)
        waiting = gates.waiting_gates(run_id)
        held = gates_held(store, waiting)  # before: a decision may end the run
        by = _user(args.by)
        named = args.gate
        if not any(g.gate_name == named for g in waiting) and (
            (row := _gate_row(store, named)) is not None
            or (row := _gate_named(store, run_id, named)) is not None
        ):
            if (why := _answered(row)) is not None:
                raise CommandFailed(why)
            named = row.id
        if args.command == "approve":
            gate = gates.approve(run_id, named, by, args.note, args.select or None)
            verb = "approved"
        else:
            gate = gates.reject(run_id, named, by, args.note)
            verb = "rejected"
        _note_unheld(store, [gate], held, args)
        # Which child of a fan-out it was, if one (as `show` and the inbox name it).
        of_item = next((g.item for g in waiting if g.step_id == gate.step_id), None)
    item = f" (item {display_line(of_item)})" if of_item else ""
    out.print(f"gate {gate.gate_name} of run {run_id}{item} {verb} by {by}")
    return EXIT_OK


def _note_unheld(
    store: WorkflowPersistence, decided: list[WaitingGate], held: dict[str, bool], args: argparse.Namespace
) -> None:
    """A decision for a run no engine holds (its process died) wakes nobody until the run is
    resumed: say so, with the command, instead of a bare "approved" that reads as "it goes on".
    `held` is read before deciding: a decision the engine acts on at once can end its run (and
    its lease) before a look after it."""
    roots: list[str] = []
    for gate in decided:
        if not held.get(gate.run_id, True):
            root = _root(store, gate.run_id)
            if root not in roots:
                roots.append(root)
    for root in roots:
        print_err(
            f"run {root} is interrupted (no engine holds it): the decision takes effect when it is "
            f"resumed: {Hints.of(args).resume(root)}"
        )


def _root(store: WorkflowPersistence, run_id: str) -> str:
    """The top-level run of `run_id` (a gate may wait in a child run), the one to resume."""
    current, seen = run_id, set()
    while current not in seen:
        seen.add(current)
        run = store.get_run(current)
        parent = run.parent_workflow_run_id if run is not None else None
        if not parent:
            break
        current = parent
    return current


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


# ---------------------------------------------------------------------------------------- inbox


def _in_run(store: WorkflowPersistence, gate: WaitingGate, run_id: str) -> bool:
    """The gate waits in `run_id` or in one of its descendant runs (call workflow, foreach)."""
    current: str | None = gate.run_id
    seen: set[str] = set()
    while current and current not in seen:
        if current == run_id:
            return True
        seen.add(current)
        run = store.get_run(current)
        current = run.parent_workflow_run_id if run is not None else None
    return False


def _selected(store: WorkflowPersistence, args: argparse.Namespace) -> list[WaitingGate]:
    gates = GateApprovals(store).inbox()
    if args.workflow:
        gates = [g for g in gates if g.workflow_name in args.workflow]
    if args.gate:
        gates = [g for g in gates if g.gate_name in args.gate]
    if args.run:
        gates = [g for g in gates if _in_run(store, g, args.run)]
    return gates


def countdown(gate: WaitingGate, now: float) -> str:
    """`57m57s`, `overdue 3s`, or `` when the gate has no known start."""
    left = gate.time_left(now)
    if left is None:
        return ""
    return format_duration(left) if left >= 0 else f"overdue {format_duration(-left)}"


def _list(
    gates: list[WaitingGate], held: dict[str, bool], args: argparse.Namespace, why: str | None = None
) -> int:
    """`why`: the database holds no runs at all (`NoRunsHere.why`), said after the empty list."""
    out = StdoutGuard()
    now = time.time()
    if args.json:
        for gate in gates:
            out.print(json.dumps(gate_json(gate, now, held[gate.run_id])))
        return EXIT_OK
    if not gates:
        out.print("no gate is waiting" + (f" ({why})" if why else ""))
        return EXIT_OK
    out.print(f"{len(gates)} gate{'' if len(gates) == 1 else 's'} waiting (oldest first)")
    # ITEM only when a gate waits in a foreach child: which of the fan-out's children asks.
    items = any(g.item for g in gates)
    rows = [("STEP ID", "WORKFLOW", *(("ITEM",) if items else ()), "GATE", "WAITED", "TIMES OUT IN", "RUN")]
    for g in gates:
        waited = format_duration(g.waited(now)) if g.since else ""
        run = g.run_id + ("" if held[g.run_id] else " (interrupted: resume it first)")
        item = (display_line(g.item or ""),) if items else ()
        rows.append((g.step_id, g.workflow_name, *item, g.gate_name, waited, countdown(g, now), run))
    shown = len(rows[0]) - 1  # every column but the run's
    widths = [max(len(r[i]) for r in rows) for i in range(shown)]
    width = terminal_width()
    # Two whole ids do not fit beside the rest on 80 columns: the run goes under its gate, with
    # the prompt, instead of every gate wrapping over two lines. Piped output keeps the column.
    run_below = width is not None and sum(widths) + 2 * shown + max(len(r[-1]) for r in rows) > width
    for i, row in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(row[:shown], widths, strict=True))
        out.print(line.rstrip() if run_below else line + "  " + row[-1])
        gate = gates[i - 1] if i else None
        if gate is not None and run_below:
            out.print(f"    run {row[-1]}")
        if gate is not None:
            for detail in _detail_lines(gate, width):
                out.print(detail)
    for line in _answer_lines(Hints.of(args), width, _all_of_these(args)):
        out.print(line)
    return EXIT_OK


def _all_of_these(args: argparse.Namespace) -> str:
    """`--all` with the filters the list was made with: a bare `--all` answers every gate in the
    database, not only the listed ones (`gates --run R` listed 3, `--all` would answer 30)."""
    words = ["--all"]
    for option, values in (("--workflow", args.workflow), ("--gate", args.gate), ("--run", [args.run])):
        words += [part for value in values or () if value for part in (option, shlex.quote(value))]
    return " ".join(words)


def _answer_lines(hints: Hints, width: int | None, every: str = "--all") -> list[str]:
    """How to answer: one line, unless a terminal is too narrow for it (`--db PATH` made it 98
    columns on an 80-column one) — then the pasteable command goes on a line of its own, the
    options it may take on the line above. Piped output keeps the one line. `every`: `--all`
    with the list's filters (`_all_of_these`)."""
    command = hints.command("gates", fill="approve|reject STEP_ID…")
    line = f"answer: {command} [--note TEXT]  (or {every})"
    return whole_command(
        line, width, f"answer ({every} for every gate listed, --note TEXT to say why):", command, "  "
    )


def _detail_lines(gate: WaitingGate, width: int | None) -> list[str]:
    """The gate's prompt and options, indented under its row: one line, unless a terminal is too
    narrow for it (an 80-column one for a long prompt) — then the prompt is wrapped to the width
    and the options go on a line of their own (a prompt that spans lines keeps its breaks, each
    line indented: `common.fitted`). Piped output keeps the one line. The prompt holds values
    (`prompt = "Deploy {{version}}?"`): shown safely (`humanize.safe_text`), as `show` does."""
    options = ", ".join(o.value if o.label == o.value else f"{o.value} ({o.label})" for o in gate.options)
    options = safe_text([options])
    # Untrusted: a prompt quotes inputs and earlier steps' output (`{{prior_context}}`), so it is
    # shown as `show` shows it, no escape sequence reaching the terminal (docs/cli.md).
    prompt = safe_text((gate.prompt or "").strip().splitlines())
    tail = f"[options: {options}]" if options else ""
    if not prompt and not tail:
        return []
    line = "    " + "  ".join(p for p in (prompt, tail) if p)
    if width is None or (len(line) <= width and "\n" not in line):
        return [line]
    return [wrapped for piece in (prompt, tail) if piece for wrapped in fitted(f"    {piece}", width)]


def _gate_row(store: WorkflowPersistence, typed: str) -> WorkflowRunStep | None:
    """The gate row `typed` names, read as RUN_ID is: its whole step id (any case), or a part of
    at least SHORT_ID_MIN characters (with or without a leading `…`) that begins or ends exactly
    one gate's step id. Every gate of the store counts, answered ones too: ULIDs begin with their
    time, so a 6-character part of a gate answered minutes ago also begins the one still waiting,
    and taking the waiting one would answer a gate nobody meant. A part several gates share is
    refused (exit 2), each named with its state; None when nothing matches."""
    part = typed.strip().removeprefix("…").removeprefix("...").upper()
    for whole in dict.fromkeys((typed, part)):
        row = store.get_step(whole)
        if row is not None and row.role == StepRole.GATE.value:
            return row
    if len(part) < SHORT_ID_MIN:
        return None
    matches = store.find_gate_ids(part)
    if len(matches) > 1:
        rows = [row for i in matches[:5] if (row := store.get_step(i)) is not None]
        named = ", ".join(f"{r.id} ({r.step_name}, {gate_state(r)})" for r in rows)
        raise UsageError(
            f"gate id '{typed}' matches {len(matches)} gates: {named}"
            + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
            + "; give more of the id"
        )
    return store.get_step(matches[0]) if matches else None


def _gate_named(store: WorkflowPersistence, run_id: str, name: str) -> WorkflowRunStep | None:
    """The run's newest row of its gate `name` (its last loop iteration's), when it has one: a
    gate answered before is then said answered, by whom and when — not `has no gate waiting`."""
    rows = [r for r in latest_gate_rows(store.get_steps(run_id)) if r.step_name == name]
    return rows[-1] if rows else None


def _answered(row: WorkflowRunStep) -> str | None:
    """Why the gate row cannot be answered (`gate 'g' (01…) was already answered: approved by
    alice at …`), or None while it waits."""
    if StepStatus(row.status) is StepStatus.WAITING:
        return None
    already = "was already answered" if row.gate_approved_by else "is not waiting"
    return f"gate '{row.step_name}' ({row.id}) {already}: {gate_state(row)}"


def _full_ids(store: WorkflowPersistence, given: list[str]) -> list[str]:
    """The step ids `given` names (`_gate_row`); one that names no gate is passed on as typed
    (and reported as no gate), one of an answered gate as its whole id (reported as answered)."""
    out = []
    for typed in given:
        row = _gate_row(store, typed)
        out.append(row.id if row is not None else typed)
    return out


def cmd_gates(args: argparse.Namespace) -> int:
    out = StdoutGuard()
    if args.action == "list" and (args.ids or args.all):
        raise UsageError("step ids and --all go with 'gates approve' or 'gates reject'")
    if args.action != "list" and not args.ids and not args.all:
        listing = Hints.of(args).command("gates")
        raise UsageError(f"name the gates to {args.action} by STEP_ID (see: {listing}) or pass --all")
    if args.ids and args.all:
        raise UsageError("give STEP_IDs or --all, not both")
    if args.select and args.action != "approve":
        raise UsageError("--select goes with 'gates approve'")
    if args.action == "list":
        try:
            with opened_store(args, must_exist=True) as store:
                if args.run:
                    args.run = get_run(store, args.run, args).id
                gates = _selected(store, args)
                return _list(gates, gates_held(store, gates), args)
        except NoRunsHere as nothing:
            if args.run:  # a run named in a database without runs: not found, as everywhere
                raise
            # As `runs` says "no runs yet": the inbox of a database nothing has run with is empty,
            # not an error — a script polling `gates --json` before the first run reads nothing.
            return _list([], {}, args, why=nothing.why)
    with opened_store(args, must_exist=True) as store:
        if args.run:
            args.run = get_run(store, args.run, args).id
        ids = _full_ids(store, args.ids) if args.ids else []
        ids = ids or [g.step_id for g in _selected(store, args)]
        if not ids:
            out.print("no gate is waiting that matches")
            return EXIT_OK
        by = _user(args.by)
        approve = args.action == "approve"
        waiting = [g for g in GateApprovals(store).inbox() if g.step_id in set(ids)]
        held = gates_held(store, waiting)  # before: a decision may end its run
        items = {g.step_id: g.item for g in waiting}
        decisions = GateApprovals(store).decide_many(ids, approve, by, args.note, args.select or None)
        _note_unheld(store, [d.gate for d in decisions if d.gate is not None], held, args)
        # Answered before (or meanwhile): said as `approve` says it, who answered it and when.
        answered = {
            d.step_id: _answered(row)
            for d in decisions
            if d.gate is None and (row := store.get_step(d.step_id))
        }
    verb = "approved" if approve else "rejected"
    failed = 0
    for decision in decisions:
        if decision.gate is None:
            failed += 1
            # An error like every other (docs/cli.md, "Decisions"): `runkon-flow gates: error: …`.
            why = answered.get(decision.step_id) or decision.error
            print_err(f"runkon-flow gates: error: {decision.step_id}: {why}")
            continue
        g = decision.gate
        # The item, as the list's ITEM column says it: children of one fan-out look alike.
        of_item = items.get(g.step_id)
        item = f", item {display_line(of_item)}" if of_item else ""
        out.print(f"gate {g.gate_name} of run {g.run_id} ({g.workflow_name}{item}) {verb} by {by}")
    return EXIT_FAILED if failed else EXIT_OK


def add_gates_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gates",
        help="the gate inbox: every waiting gate in the run database; approve or reject several",
        description="List every gate waiting in the run database — runs of this machine and of others — "
        "with how long it has waited and when it times out (oldest first); "
        "'gates approve|reject STEP_ID…' answers several at once with one note.",
    )
    p.add_argument("action", nargs="?", choices=("list", "approve", "reject"), default="list")
    p.add_argument("ids", nargs="*", metavar="STEP_ID", help="gates to answer (their step ids, as listed)")
    p.add_argument("--all", action="store_true", help="answer every listed gate (after the filters below)")
    p.add_argument("--workflow", action="append", metavar="NAME", help="only gates of this workflow")
    p.add_argument("--gate", action="append", metavar="NAME", help="only gates with this name")
    p.add_argument("--run", metavar="RUN_ID", help="only gates of this run and its child runs")
    p.add_argument("--note", metavar="TEXT", help="feedback recorded with every decision")
    p.add_argument("--by", metavar="NAME", help="who decides (default: $USER)")
    p.add_argument(
        "--select", action="append", metavar="VALUE", help="approve choosing this option (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="list as JSON lines (one object per gate)")
    add_db_args(p)
    p.set_defaults(handler=cmd_gates)
