"""The exit summary: a finished (or abandoned) run in a few plain lines for the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runkon_flow.humanize import format_duration
from runkon_flow.observe.records import RunState, StepView, called_why, step_label
from runkon_flow.observe.status import glyph

if TYPE_CHECKING:
    from runkon_flow.observe.reducer import RunModel


def exit_summary(model: RunModel, output_lines: int = 10) -> str:
    """Plain text for the terminal after a run: what ran, what failed, why (the dashboard prints it
    when it closes)."""
    root = model.root
    if root is None:
        return ""
    now = model.clock()
    status = model.status
    lines = [
        f"runkon: {root.workflow_name} · run {root.run_id} · {status}"
        f" · {format_duration(root.elapsed(now)) or '0.0s'}"
    ]
    counts = model.step_counts()
    if counts:
        parts = [f"{n} {s}" for s, n in sorted(counts.items())]
        lines.append("steps: " + ", ".join(parts))
    for fan in model.fanouts():
        lines.append(
            f"foreach {fan.name}: {fan.count('completed')} completed, {fan.count('failed')} failed,"
            f" {fan.count('skipped')} skipped, {fan.count('cancelled')} cancelled of {fan.total}"
        )
    usage = model.usage()
    if usage:
        lines.append(f"usage: {usage.long()}")
    if root.error:
        lines.append(f"error: {root.error}")
    if root.cancel_reason:
        lines.append(f"cancelled: {root.cancel_reason}")
    if model.crash:
        lines.append(f"engine crashed: {model.crash}")
    failed = model.failed_steps()
    if failed:
        lines.append("failed steps:")
    for run, sv in failed[:20]:
        lines.extend(_failed_step_lines(model, run, sv, output_lines))
    if len(failed) > 20:
        lines.append(f"  … and {len(failed) - 20} more failed steps")
    return "\n".join(lines)


def _failed_step_lines(model: RunModel, run: RunState, sv: StepView, output_lines: int) -> list[str]:
    """A failed step for the exit summary: its error's first line after the name, the rest of
    the error indented under it, then its last output lines minus those the error already
    showed (a script's stderr is both in its error and in its output) and minus repeats."""
    # A failed `call workflow` step: why its child failed, not only at which step.
    why = called_why(sv, model.runs)
    error = [why] if why else [line for line in (sv.error or "").splitlines() if line.strip()]
    reason = f": {error[0]}" if error else ""
    lines = [f"  {glyph(sv.status)} {model.context_prefix(run)}{step_label(sv)}{reason}"]
    lines.extend(f"      {line}" for line in error[1:])
    shown = {line.strip() for line in error}
    previous = None
    for out in (part for entry in sv.last_output(output_lines) for part in entry.splitlines()):
        if out.strip() in shown or out == previous:
            continue
        previous = out
        lines.append(f"      | {out}")
    return lines
