"""`HookRunner`: an EventSink that runs the configured hooks, never in the way of the run.

`emit()` (on the engine's thread) only appends to a queue. One thread of the runner translates
events (`HookEvents`) and checks the timers once a second; each hook runs on a small pool of its
own threads, with its timeout: a shell command gets the event as JSON on stdin and as `RUNKON_*`
environment variables (killed with its whole process group when it overruns), an HTTP hook POSTs
the JSON. A failing, slow or hanging hook is logged and reported to `on_problem`; the run never
waits for it and never sees its errors. `close()` lets the hooks already due finish (each within
its timeout), so a CLI run's `workflow_run.completed` hook is not cut off by the process exiting.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from runkon_flow.events import EngineEventData
from runkon_flow.hooks.config import HooksConfig, HookSpec, find_hooks_file, load_hooks
from runkon_flow.hooks.events import HookEvent, HookEvents
from runkon_flow.humanize import format_duration
from runkon_flow.process import run_process

__all__ = ["HookOutcome", "HookRunner", "open_hooks"]

log = logging.getLogger("runkon_flow.hooks")

# Engine events that can make a hook event; every other event only counts as a sign of life.
_TRANSLATED = frozenset(
    {
        "RunStarted",
        "RunResumed",
        "RunCompleted",
        "RunCancelled",
        "GateWaiting",
        "GateResolved",
        "GateTimedOut",
    }
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_STOP = object()


@dataclass(frozen=True)
class HookOutcome:
    hook: str
    event: str
    run_id: str
    ok: bool
    detail: str = ""


class HookRunner:
    """Runs `config`'s hooks for every run whose events it is given (see the module docstring)."""

    def __init__(
        self,
        config: HooksConfig,
        *,
        cwd: Path | None = None,
        on_problem: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        tick: float = 1.0,
        max_workers: int = 4,
        failures: Callable[[str], list[dict[str, object]]] | None = None,
    ) -> None:
        self.config = config
        # A failed run's failure clusters by run id (the caller's store): `workflow_run.failed`'s
        # `failures`, read once when the run has failed and a hook wants the event.
        self._failures = failures
        self._cwd = cwd or Path.cwd()
        self.on_problem = on_problem
        self._clock = clock
        self._tick = tick
        self._events = HookEvents(config.pending_too_long, config.stale_after)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._seen: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="runkon-hook")
        self._lock = threading.Lock()
        self.outcomes: deque[HookOutcome] = deque(maxlen=500)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="runkon-hooks", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the sink (engine thread)

    def emit(self, data: EngineEventData) -> None:
        event = data.event
        if event.type in _TRANSLATED or (event.type == "StepCompleted" and not event.succeeded):
            self._queue.put(data)  # a failed step: why its run failed, if it does (few, unlike steps)
        else:
            self._seen[data.run_id] = data.ts

    # ------------------------------------------------------------------ the runner's thread

    def _loop(self) -> None:
        next_tick = self._clock() + self._tick
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_tick - self._clock()))
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    self._note_activity()
                    return
                if isinstance(item, EngineEventData):
                    self._note_activity()
                    self._dispatch(self._events.feed(item))
                if self._clock() >= next_tick:
                    next_tick = self._clock() + self._tick
                    self._note_activity()
                    self._dispatch(self._events.tick(self._clock()))
            except Exception:  # a bug here must not end the runner (nor reach the engine)
                log.exception("hook runner: could not handle an event")

    def _note_activity(self) -> None:
        seen, self._seen = self._seen, {}
        for run_id, ts in seen.items():
            self._events.activity(run_id, ts)

    def _dispatch(self, events: list[HookEvent]) -> None:
        for event in events:
            hooks = self.config.wants(event.name, event.workflow)
            if hooks and event.name == "workflow_run.failed":
                event = self._with_failures(event)
            for hook in hooks:
                self._pool.submit(self._run, hook, event)

    def _with_failures(self, event: HookEvent) -> HookEvent:
        """`event` with its run's failure clusters, when it had failed items; as it is when it had
        none or they cannot be read (logged: the event still goes out, with its `error`)."""
        if self._failures is None:
            return event
        try:
            failures = self._failures(event.run_id)
        except Exception:
            log.exception("hook runner: could not read the failure clusters of run %s", event.run_id)
            return event
        return replace(event, failures=failures) if failures else event

    # ------------------------------------------------------------------ one hook (pool thread)

    def _run(self, hook: HookSpec, event: HookEvent) -> None:
        try:
            detail = self._post(hook, event) if hook.post else self._shell(hook, event)
        except Exception as exc:  # never let one hook's error escape its thread
            detail = f"{type(exc).__name__}: {exc}"
        outcome = HookOutcome(hook.label, event.name, event.run_id, detail is None, detail or "")
        with self._lock:
            self.outcomes.append(outcome)
        if detail is not None:
            text = f"hook '{hook.label}' on {event.name} (run {event.run_id}) failed: {detail}"
            # A warning only when nobody reports it: the CLI prints it itself, and a warning with
            # no logging set up reaches stderr too (logging's last resort) — the line came twice.
            log.log(logging.WARNING if self.on_problem is None else logging.INFO, "%s", text)
            if self.on_problem is not None:
                try:
                    self.on_problem(text)
                except Exception:
                    log.exception("hook problem callback failed")

    def _shell(self, hook: HookSpec, event: HookEvent) -> str | None:
        assert hook.run is not None
        result = run_process(
            hook.run,
            cwd=self._cwd,
            env={**os.environ, **event.env()},
            stdin=event.to_json() + "\n",
            timeout=hook.timeout,
            shell=True,
            max_capture_chars=20_000,
        )
        if result.ok:
            return None
        if result.spawn_error:
            return result.spawn_error
        if result.timed_out:
            return f"timed out after {format_duration(hook.timeout)} (stopped)"
        tail = result.stderr_tail(300)
        return f"exit {result.exit_code}" + (f": {tail}" if tail else "")

    def _post(self, hook: HookSpec, event: HookEvent) -> str | None:
        assert hook.post is not None
        request = urllib.request.Request(
            hook.post,
            data=event.to_json().encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "runkon-flow hooks", **hook.headers},
        )
        host = urllib.parse.urlsplit(hook.post).hostname or ""
        # Loopback is never sent through a configured proxy.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if host in _LOOPBACK else None
        try:
            with (opener.open if opener else urllib.request.urlopen)(request, timeout=hook.timeout) as reply:
                reply.read(65536)
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code} {exc.reason}"
        except TimeoutError:
            return f"timed out after {format_duration(hook.timeout)}"
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                return f"timed out after {format_duration(hook.timeout)}"
            return f"cannot reach {hook.post}: {reason}"
        return None

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Dispatch what is queued, then wait for the running hooks (each ends by its timeout)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._pool.shutdown(wait=True)


def open_hooks(
    explicit: str | None = None,
    *,
    cwd: Path | None = None,
    on_problem: Callable[[str], None] | None = None,
    failures: Callable[[str], list[dict[str, object]]] | None = None,
) -> HookRunner | None:
    """The hook runner for the hooks file that applies (`--hooks`, `$RUNKON_HOOKS`,
    `.runkon/hooks.yaml`), or None when there is none or it has no hooks. A wrong file raises
    `ConfigFileError` (file:line). `failures`: a failed run's failure clusters, by run id."""
    return hooks_from(find_hooks_file(explicit, cwd), cwd=cwd, on_problem=on_problem, failures=failures)


def hooks_from(
    path: Path | None,
    *,
    cwd: Path | None = None,
    on_problem: Callable[[str], None] | None = None,
    failures: Callable[[str], list[dict[str, object]]] | None = None,
) -> HookRunner | None:
    """The hook runner for the hooks file at `path` (found by `find_hooks_file`), or None when
    there is none or it has no hooks. A wrong file raises `ConfigFileError` (file:line).
    `failures`: a failed run's failure clusters, by run id (`observe.clusters.failure_summaries`
    over the runs' store: hooks sit below observe and read no store themselves)."""
    if path is None:
        return None
    config = load_hooks(path)
    if not config.hooks:
        return None
    return HookRunner(config, cwd=cwd, on_problem=on_problem, failures=failures)
