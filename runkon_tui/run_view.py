"""The dashboard's run picture: the engine's run model (`runkon_flow.observe`), under the names the
widgets use.

There is no reducer here: `RunView` *is* `runkon_flow.observe.RunModel`, the one reducer that
also drives `runkon-flow run`'s live view, `show` and `replay` (docs/run-model.md). The dashboard
feeds it live from the event bridge (in compact form, `compact`) and reads it on a UI timer.
"""

from __future__ import annotations

from runkon_flow.observe.compact import compact
from runkon_flow.observe.records import (
    Changes,
    Clock,
    FanOutView,
    GateView,
    LogBuffer,
    LogLine,
    RunState,
    StepView,
    ViewLimits,
)
from runkon_flow.observe.reducer import RunModel

RunView = RunModel

__all__ = [
    "Changes",
    "Clock",
    "FanOutView",
    "GateView",
    "LogBuffer",
    "LogLine",
    "RunState",
    "RunView",
    "StepView",
    "ViewLimits",
    "compact",
]
