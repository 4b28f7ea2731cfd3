"""Engine events → hook events (`workflow_run.failed`, `gate.waiting`, …), plus the two that are
about time passing rather than anything happening: `gate.pending_too_long` and
`workflow_run.stale`.

`HookEvents` is pure: `feed()` an engine event, `tick(now)` for the timers; both return the hook
events due. It keeps one small record per run it has seen start (child runs point at their
top-level run, so activity deep in a fan-out keeps the run from looking stale) and forgets a run
when it ends.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from runkon_flow.events import EngineEventData
from runkon_flow.humanize import error_headline

__all__ = ["HookEvent", "HookEvents"]


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class HookEvent:
    """What a hook is given: `name` and the run it is about (a gate's own run, which may be a
    child of `root_run_id`); the other fields are set when they apply."""

    name: str
    ts: float
    run_id: str
    root_run_id: str
    workflow: str
    status: str | None = None
    error: str | None = None
    gate: str | None = None
    prompt: str | None = None
    step_id: str | None = None
    waited_secs: float | None = None
    approved: bool | None = None
    by: str | None = None
    note: str | None = None
    # A failed run's failed fan-out items by what went wrong (`observe.clusters.failure_summaries`,
    # added by the runner, which reads the store): JSON only, no environment variable of its own.
    failures: list[dict[str, object]] | None = None

    def payload(self) -> dict[str, object]:
        """The JSON object a hook reads on stdin (or receives as the POST body)."""
        data = {k: v for k, v in asdict(self).items() if v is not None and k not in ("name", "ts")}
        return {"event": self.name, "time": _rfc3339(self.ts), **data}

    def to_json(self) -> str:
        return json.dumps(self.payload(), ensure_ascii=False)

    def env(self) -> dict[str, str]:
        """The same fields as `RUNKON_*` environment variables, plus the whole JSON — each value
        one a process can be started with (see `_env_value`): a long one is cut, saying so, and
        `RUNKON_EVENT_JSON` stays JSON (its long strings cut). stdin has the whole event."""
        payload = self.payload()
        out = {"RUNKON_EVENT_JSON": _env_json(payload)}
        for key, value in payload.items():
            if isinstance(value, list):  # `failures`: a list is JSON, in RUNKON_EVENT_JSON
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            out[f"RUNKON_{key.upper()}"] = _env_value(str(value))
        return out


#: The most bytes (UTF-8) one hook environment variable's value holds. Linux refuses to start a
#: process with a single variable over 128 KiB (MAX_ARG_STRLEN), and all of them together count
#: against ARG_MAX: a run's long error (a script's output) made the hook fail to start, E2BIG.
MAX_ENV_VALUE_BYTES = 64 * 1024
#: No process can be given a NUL in its environment: one becomes U+2400 (␀), as a terminal shows it.
_NUL_SHOWN = "\u2400"


def _env_value(text: str, limit: int = MAX_ENV_VALUE_BYTES) -> str:
    """`text` as an environment value: NUL shown as ␀, and past `limit` bytes cut at a character
    boundary with a marker saying how long it was (the marker counts in the limit)."""
    text = text.replace("\0", _NUL_SHOWN)
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    marker = f" … [cut by runkon: {len(data):,} bytes; the whole event is on stdin]"
    keep = max(0, limit - len(marker.encode()))
    return data[:keep].decode("utf-8", "ignore") + marker


def _env_json(payload: dict[str, object]) -> str:
    """The event's JSON for `RUNKON_EVENT_JSON`: whole when it fits `MAX_ENV_VALUE_BYTES`, else
    still valid JSON, with its strings cut (each marked) to smaller shares until it fits."""
    text = json.dumps(payload, ensure_ascii=False)
    share = MAX_ENV_VALUE_BYTES // 8
    while len(text.encode("utf-8", "surrogatepass")) > MAX_ENV_VALUE_BYTES and share >= 64:
        cut = {k: _env_value(v, share) if isinstance(v, str) else v for k, v in payload.items()}
        text = json.dumps(cut, ensure_ascii=False)
        share //= 2
    return text


@dataclass
class _Run:
    workflow: str
    root: str
    last_activity: float
    stale_sent: bool = False
    # Why the run failed: its failed step's error (`foreach 'each': 8 of 40 items failed`), which
    # says more than the run's own (`workflow error: Step 'each' failed after 1 attempt`).
    # Per step name and key, its last failure's error.
    failed_steps: dict[str, str] = field(default_factory=dict)


#: The engine's error for a run a step failed (`workflow error: Step 'each' failed after 1 attempt`).
_STEP_FAILED = re.compile(r"\bStep '([^']+)' failed after")


def _cause(run: _Run, error: str | None) -> str | None:
    """Why a run failed: when its error only names the step that failed, that step's own error
    (`foreach 'each': 8 of 40 items failed`), as the live view's last line says it; otherwise (a
    lost lease, a crash) the run's error."""
    named = _STEP_FAILED.search(error or "")
    if named is None:
        return error
    return run.failed_steps.get(named.group(1)) or next(reversed(run.failed_steps.values()), None) or error


@dataclass
class _Gate:
    event: HookEvent
    since: float
    late_sent: bool = False


@dataclass
class HookEvents:
    """The translation with its state; not thread-safe (one thread feeds and ticks it)."""

    pending_too_long: float = 1800.0
    stale_after: float = 600.0
    runs: dict[str, _Run] = field(default_factory=dict)
    gates: dict[str, _Gate] = field(default_factory=dict)

    def _run(self, run_id: str, ts: float) -> _Run:
        run = self.runs.get(run_id)
        if run is None:  # a run whose start this sink did not see: take it as top-level
            run = self.runs[run_id] = _Run("", run_id, ts)
        return run

    def activity(self, run_id: str, ts: float) -> None:
        """Something happened in `run_id` at `ts` (any event, even a line of output)."""
        run = self.runs.get(run_id)
        root = self.runs.get(run.root) if run is not None else None
        if root is not None and ts > root.last_activity:
            root.last_activity = ts
            root.stale_sent = False

    def feed(self, data: EngineEventData) -> list[HookEvent]:
        ev = data.event
        kind = ev.type
        ts = data.ts
        if kind in ("RunStarted", "RunResumed"):
            parent = getattr(ev, "parent_run_id", None)
            parent_run = self.runs.get(parent) if parent else None
            root = parent_run.root if parent_run is not None else (parent or data.run_id)
            self.runs[data.run_id] = _Run(ev.workflow_name, root, ts)
        run = self._run(data.run_id, ts)
        self.activity(data.run_id, ts)
        base = {"ts": ts, "run_id": data.run_id, "root_run_id": run.root, "workflow": run.workflow}
        out: list[HookEvent] = []
        top = run.root == data.run_id
        if kind == "RunCompleted" or kind == "RunCancelled":
            if top:
                if kind == "RunCancelled":
                    why = getattr(ev, "summary", None) or ev.reason.describe()
                    out.append(HookEvent("workflow_run.cancelled", status="cancelled", error=why, **base))
                elif ev.succeeded:
                    out.append(HookEvent("workflow_run.completed", status="completed", **base))
                else:
                    why = error_headline(_cause(run, ev.error)) or ev.error
                    out.append(HookEvent("workflow_run.failed", status="failed", error=why, **base))
                self._forget(data.run_id)
            else:
                self.runs.pop(data.run_id, None)
        elif kind == "StepCompleted" and not ev.succeeded and ev.error:
            for name in {ev.step_name, ev.step_key or ev.step_name}:
                run.failed_steps.pop(name, None)
                run.failed_steps[name] = ev.error
        elif kind == "GateWaiting":
            event = HookEvent(
                "gate.waiting",
                gate=ev.gate_name,
                prompt=ev.prompt,
                step_id=ev.step_id,
                status="waiting",
                **base,
            )
            self.gates[ev.step_id or f"{data.run_id}:{ev.gate_name}"] = _Gate(event, ts)
            out.append(event)
        elif kind in ("GateResolved", "GateTimedOut"):
            gate = self.gates.pop(ev.step_id or f"{data.run_id}:{ev.gate_name}", None)
            waited = round(ts - gate.since, 3) if gate is not None else None
            common = {"gate": ev.gate_name, "step_id": ev.step_id, "waited_secs": waited, **base}
            if kind == "GateResolved":
                out.append(
                    HookEvent(
                        "gate.resolved",
                        approved=ev.approved,
                        by=ev.resolved_by,
                        note=ev.feedback,
                        status="approved" if ev.approved else "rejected",
                        **common,
                    )
                )
            else:
                out.append(HookEvent("gate.timed_out", status="timed_out", **common))
        return out

    def _forget(self, root: str) -> None:
        for run_id in [r for r, run in self.runs.items() if run.root == root]:
            del self.runs[run_id]
        for key in [k for k, g in self.gates.items() if g.event.root_run_id == root]:
            del self.gates[key]

    def tick(self, now: float) -> list[HookEvent]:
        """Hook events that time has made due: each gate once when it has waited too long, each
        top-level run once per quiet spell (a run waiting at a gate is not stale: it waits)."""
        out: list[HookEvent] = []
        waiting_roots = {g.event.root_run_id for g in self.gates.values()}
        for gate in self.gates.values():
            waited = now - gate.since
            if not gate.late_sent and waited >= self.pending_too_long:
                gate.late_sent = True
                fields = {
                    k: v for k, v in asdict(gate.event).items() if k not in ("name", "ts", "waited_secs")
                }
                out.append(HookEvent("gate.pending_too_long", ts=now, waited_secs=round(waited, 3), **fields))
        for run_id, run in self.runs.items():
            if run.root != run_id or run.stale_sent or run_id in waiting_roots:
                continue
            if now - run.last_activity >= self.stale_after:
                run.stale_sent = True
                out.append(
                    HookEvent(
                        "workflow_run.stale",
                        ts=now,
                        run_id=run_id,
                        root_run_id=run_id,
                        workflow=run.workflow,
                        status="running",
                        waited_secs=round(now - run.last_activity, 3),
                    )
                )
        return out
