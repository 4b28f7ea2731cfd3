"""A scripted engine host for dashboard tests where the real engine would race the assertions.

It has the shape of `runkon_tui.host.EngineHost` (the part of `runkon_flow.workspace.Workspace`
the dashboard calls). `execute` plays a scripted event list into the sinks and then blocks until
the test (or a cancel/gate decision) releases it, so a test can look at a run "mid-flight".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from runkon_flow.cancellation import CancellationReason
from runkon_flow.dsl.loading import load_workflow_dir
from runkon_flow.errors import Problem, ValidationErrors
from runkon_flow.events import EngineEventData, GateResolved, RunCancelled, RunCompleted, RunStarted
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.workspace import ResumePlan, ResumeSource

from tests.tui.scenarios import T0

Script = Callable[[str], list[EngineEventData]]


def _play(sinks: Sequence[object], events: list[EngineEventData]) -> None:
    for data in events:
        for sink in sinks:
            sink.emit(data)  # type: ignore[attr-defined]


class ScriptedGates:
    def __init__(self, host: ScriptedHost) -> None:
        self.host = host
        self.decisions: list[tuple] = []

    def approve(self, run_id: str, gate: str, by: str, note: str | None = None, selections=None) -> None:
        self.decisions.append(("approve", run_id, gate, by, note, tuple(selections or ())))
        self.host.finish(
            GateResolved(gate_name="human_approval", approved=True, resolved_by=by, feedback=note),
            RunCompleted(succeeded=True),
        )

    def reject(self, run_id: str, gate: str, by: str, note: str | None = None) -> None:
        self.decisions.append(("reject", run_id, gate, by, note))
        self.host.finish(
            GateResolved(gate_name="human_approval", approved=False, resolved_by=by, feedback=note),
            RunCompleted(succeeded=False, error=note or "Gate 'human_approval' rejected"),
        )


class ScriptedHost:
    def __init__(self, dirs: Sequence[Path], script: Script | None = None) -> None:
        self.dirs = list(dirs)
        self.workflows = load_workflow_dir(self.dirs, strict=False).workflows
        self.script = script
        self.calls: list[tuple] = []
        self.problems: dict[str, list[str]] = {}
        self.warnings: dict[str, list[str]] = {}
        self.gates = ScriptedGates(self)
        self.store = InMemoryStore()
        self._release = threading.Event()
        self._final: list[object] = []
        self._sinks: Sequence[object] = ()
        self._run_id = ""
        self._seq = 0

    # ---- the EngineHost protocol

    def reload(self) -> None:
        self.calls.append(("reload",))
        self.workflows = load_workflow_dir(self.dirs, strict=False).workflows

    def validate(self, name: str) -> list[Problem]:
        self.calls.append(("validate", name))
        return [Problem(p) for p in self.problems.get(name, [])]

    def check(self, name: str) -> tuple[list[Problem], list[Problem]]:
        """`validate`'s problems and the warnings (not recorded in `calls`: said, not acted on)."""
        return [Problem(p) for p in self.problems.get(name, [])], [
            Problem(w) for w in self.warnings.get(name, [])
        ]

    def prepare_inputs(self, name: str, raw: Mapping[str, str]) -> dict[str, str]:
        wf = self.workflows[name]
        out: dict[str, str] = {}
        for decl in wf.inputs:
            if decl.name in raw:
                out[decl.name] = raw[decl.name]
            elif decl.default is not None:
                out[decl.name] = decl.default
            elif decl.input_type == "boolean":
                out[decl.name] = "false"
            else:
                raise ValueError(f"Missing required input: '{decl.name}'")
        return out

    def create_run(self, name: str, inputs: Mapping[str, str]) -> str:
        problems = self.validate(name)
        if problems:
            raise ValidationErrors(problems)
        self._seq += 1
        run_id = f"01HZZSCRIPTED{self._seq:013d}"
        self.calls.append(("create_run", name, dict(inputs), run_id))
        return run_id

    def execute(self, run_id: str, *, sinks: Sequence[object] = (), cancellation: object = None) -> None:
        self.calls.append(("execute", run_id))
        self._run(
            run_id,
            sinks,
            self.script(run_id)
            if self.script
            else [
                EngineEventData(timestamp=int(T0), ts=T0, run_id=run_id, event=RunStarted(workflow_name="x"))
            ],
        )

    def resume(self, run_id: str, *, sinks: Sequence[object] = ()) -> None:
        self.calls.append(("resume", run_id))
        self._run(run_id, sinks, [])

    def resume_plan(self, run_id: str) -> ResumePlan:
        # The file as it is now; scripted runs draw the definition they started with.
        return ResumePlan(ResumeSource.FILE, None)  # type: ignore[arg-type]

    def load_error(self, name: str) -> None:
        return None  # scripted workflows always load

    def unloadable_workflows(self, run_id: str, **_: object) -> list[Problem]:
        return []  # scripted runs call no workflow files

    def cancel(self, run_id: str, message: str | None = None) -> None:
        self.calls.append(("cancel", run_id, message))
        self.finish(RunCancelled(reason=CancellationReason.user(message)))

    # ---- test controls

    def _run(self, run_id: str, sinks: Sequence[object], events: list[EngineEventData]) -> None:
        self._run_id = run_id
        self._sinks = sinks
        self._release.clear()
        _play(sinks, events)
        if not self._release.wait(20):
            raise TimeoutError("scripted run was never released by the test")
        _play(
            sinks,
            [
                EngineEventData(timestamp=int(T0 + 500), ts=T0 + 500, run_id=run_id, event=e)
                for e in self._final
            ],
        )

    def finish(self, *events: object) -> None:
        """End the blocked run with these events (e.g. RunCompleted)."""
        self._final = list(events)
        self._release.set()
