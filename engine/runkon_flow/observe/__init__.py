"""The run model: one UI-free picture of a run, built the same way from live events, from a stored
or recorded event stream and from store rows, and drawn by every renderer (the dashboard, the
CLI's live view, `show`, `runs`, `replay`). See docs/run-model.md.

    model = RunModel()                  # fold events: live, recorded or stored
    model.apply_all(events)
    model = load_run(store, run_id)     # or seed it from store rows
    model.step("body.2").status, model.step_counts(), ItemCounts.of(fan), model.summary_text()
"""

from runkon_flow.observe.compact import compact
from runkon_flow.observe.counts import ItemCounts, latest_attempts, row_step_counts, step_counts
from runkon_flow.observe.loader import LegacyPlacer, load_run, load_run_state, parse_time
from runkon_flow.observe.records import (
    Changes,
    FanOutView,
    GateView,
    LogBuffer,
    LogLine,
    RunState,
    StepView,
    ViewLimits,
    step_label,
)
from runkon_flow.observe.reducer import RunModel
from runkon_flow.observe.status import FAILED, GLYPH, TERMINAL, glyph, outcome
from runkon_flow.observe.summary import exit_summary

__all__ = [
    "FAILED",
    "GLYPH",
    "TERMINAL",
    "Changes",
    "FanOutView",
    "GateView",
    "ItemCounts",
    "LegacyPlacer",
    "LogBuffer",
    "LogLine",
    "RunModel",
    "RunState",
    "StepView",
    "ViewLimits",
    "compact",
    "exit_summary",
    "glyph",
    "latest_attempts",
    "load_run",
    "load_run_state",
    "outcome",
    "parse_time",
    "row_step_counts",
    "step_counts",
    "step_label",
]
