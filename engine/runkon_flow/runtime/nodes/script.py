"""`script <name>` (engine.md §9.9, dsl.md §6.9): run a shell command with `sh -c`.

Safety: in the `run` text every `{{var}}` is replaced by its *shell-quoted* value, so no input,
host variable or FLOW_OUTPUT export can ever run as shell code; `env` entries carry raw values
(the environment is data, never parsed by the shell) and may not set protected names.

Ours (docs/engine.md): `retries` and `on_fail` (including an agent fallback) work exactly as for
`call`; a timeout kills the whole process group, marks the row `timed_out` and fails the run; a
cancel kills it within a second and records the row `cancelled`; output lines stream as
StepOutput events.
"""

from __future__ import annotations

import os
import re

from runkon_flow.cancellation import CancellationReason
from runkon_flow.dsl.ast import ScriptNode
from runkon_flow.errors import EngineCancelled
from runkon_flow.events import StepRetrying
from runkon_flow.persistence.models import NewStep, StepRole, StepStatus, StepUpdate
from runkon_flow.process import run_process
from runkon_flow.runtime.flow_output import parse_flow_output
from runkon_flow.runtime.resume import restore_step
from runkon_flow.runtime.state import ExecutionState, StepResult
from runkon_flow.runtime.steps import (
    OutputEmitter,
    StepTimedOut,
    StepTrace,
    describe_exception,
    handle_on_fail,
    markers_json,
    record_step_success,
)
from runkon_flow.runtime.templating import substitute_variables, substitute_variables_shell
from runkon_flow.runtime.variables import build_variable_map

__all__ = ["PROTECTED_ENV_NAMES", "build_script_env", "execute_script"]

PROTECTED_ENV_NAMES = frozenset(
    {
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "DYLD_LIBRARY_PATH",
        "PATH",
        "DYLD_INSERT_LIBRARIES",
        "PYTHONPATH",
        "RUBYLIB",
        "NODE_PATH",
        "GH_TOKEN",
    }
)
_INPUT_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_ROLE = StepRole.AGENT.value
_CONTEXT_CHARS = 2000


def build_script_env(st: ExecutionState, node: ScriptNode, variables: dict[str, str]) -> dict[str, str]:
    """Process env < script-env provider < CONDUCTOR_<INPUT> < node `env` (protected names skipped)."""
    env = dict(os.environ)
    provided = st.script_env_provider.env(st.run_ctx, node.as_identity or st.default_as_identity)  # type: ignore[arg-type]
    env.update({str(k): str(v) for k, v in (provided or {}).items()})
    skipped_inputs: list[str] = []
    for key, value in st.inputs.items():
        if _INPUT_NAME.match(key):
            env[f"CONDUCTOR_{key.upper()}"] = value
        else:
            skipped_inputs.append(key)
    if skipped_inputs:
        st.warn(
            f"script '{node.name}': inputs not exported as CONDUCTOR_* (names must be ASCII letters, "
            f"digits, _): {', '.join(sorted(skipped_inputs))}",
            node.name,
            level="info",
        )
    for key, template in node.env.items():
        if not key or "=" in key or "\0" in key:
            st.warn(f"script '{node.name}': env key {key!r} is not a valid variable name; skipped", node.name)
            continue
        if key in PROTECTED_ENV_NAMES:
            st.warn(
                f"script '{node.name}': env key '{key}' is protected and cannot be set; skipped", node.name
            )
            continue
        value = substitute_variables(template, variables)
        if "\0" in value:
            st.warn(f"script '{node.name}': env value of '{key}' contains a NUL byte; skipped", node.name)
            continue
        env[key] = value
    return env


def execute_script(st: ExecutionState, node: ScriptNode, iteration: int, path: str) -> None:
    name = node.name
    position = st.take_position()
    if st.resume_ctx is not None:
        row = st.resume_ctx.take(name, iteration)
        if row is not None:
            restore_step(st, name, row, iteration, position)
            return
    max_attempts = 1 + node.retries
    last_error: str | None = None
    for attempt in range(max_attempts):
        error = _attempt(st, node, path, iteration, position, attempt, last_error)
        if error is None:
            return
        last_error = error
    handle_on_fail(
        st, name, name, node.on_fail, last_error or "", node.retries, iteration, max_attempts, path
    )


def _attempt(
    st: ExecutionState,
    node: ScriptNode,
    path: str,
    iteration: int,
    position: int,
    attempt: int,
    last_error: str | None,
) -> str | None:
    name = node.name
    if attempt > 0 and st.event_sinks:
        st.emit(
            StepRetrying(step_name=name, attempt=attempt, step_key=name, node_path=path, error=last_error)
        )
    step_id = st.insert_step(
        NewStep(st.workflow_run_id, name, _ROLE, position=position, iteration=iteration, retry_count=attempt)
    )
    trace = StepTrace(st, "script", name, name, path, iteration, position, attempt)
    trace.started(step_id)

    if st.exec_config.dry_run:
        text = "dry-run: script not executed"
        st.update_step(
            step_id,
            StepUpdate.completed(
                st.generation, result_text=text, context_out="", markers_out="[]", attempt=attempt
            ),
        )
        record_step_success(st, name, name, iteration, result_text=text, markers=[], context="")
        trace.completed(StepStatus.COMPLETED)
        return None

    variables = build_variable_map(st)
    command = substitute_variables_shell(node.run, variables)
    try:
        env = build_script_env(st, node, variables)
    except Exception as exc:
        message = (
            f"Script '{name}' failed to execute: script environment provider raised {describe_exception(exc)}"
        )
        st.update_step(step_id, StepUpdate.failed(st.generation, message, attempt))
        trace.completed(StepStatus.FAILED, message)
        return message

    token = st.cancellation.child()
    emitter = OutputEmitter(st, step_id, name, st.exec_config.max_output_lines) if st.event_sinks else None
    cwd = st.run_ctx.working_dir() if st.run_ctx is not None else os.getcwd()
    try:
        result = run_process(
            command,
            cwd=cwd,
            env=env,
            timeout=float(node.timeout) if node.timeout is not None else None,
            cancellation=token,
            on_line=emitter,
            shell=True,
        )
    finally:
        token.detach()

    if result.timed_out:
        text = f"Script '{name}' timed out after {node.timeout}s"
        st.update_step(
            step_id,
            StepUpdate(
                generation=st.generation,
                status=StepStatus.TIMED_OUT,
                result_text=text,
                step_error=text,
                retry_count=attempt,
            ),
        )
        trace.completed(StepStatus.TIMED_OUT, text)
        st.all_succeeded = False
        st.step_results[name] = StepResult(name, StepStatus.TIMED_OUT, text)
        raise StepTimedOut(text)

    if result.cancelled:
        cancelled = EngineCancelled(st.cancellation.reason() or CancellationReason.of("ParentCancelled"))
        st.update_step(
            step_id,
            StepUpdate(
                generation=st.generation,
                status=StepStatus.CANCELLED,
                result_text=f"Script '{name}' cancelled",
                step_error=str(cancelled),
                retry_count=attempt,
            ),
        )
        trace.completed(StepStatus.CANCELLED, str(cancelled))
        raise cancelled

    if result.spawn_error is not None:
        message = f"Script '{name}' failed to execute: {result.spawn_error}"
        st.update_step(step_id, StepUpdate.failed(st.generation, message, attempt))
        trace.completed(StepStatus.FAILED, message)
        return message

    if result.exit_code == 0:
        flow = parse_flow_output(result.stdout)
        if flow is not None:
            markers, context, structured = flow.markers, flow.context, flow.to_json()
        else:
            markers, context, structured = [], result.stdout[:_CONTEXT_CHARS], None
        text = f"Script '{name}' completed"
        st.update_step(
            step_id,
            StepUpdate.completed(
                st.generation,
                result_text=text,
                context_out=context,
                markers_out=markers_json(markers),
                attempt=attempt,
                structured_output=structured,
            ),
        )
        st.note_output(position, structured)
        record_step_success(
            st,
            name,
            name,
            iteration,
            result_text=text,
            markers=markers,
            context=context,
            structured_output=structured,
            metadata={"duration_ms": str(result.duration_ms)},
        )
        trace.completed(StepStatus.COMPLETED, markers=markers)
        return None

    code = result.exit_code if result.exit_code is not None and result.exit_code >= 0 else -1
    message = f"Script '{name}' exited with code {code}"
    stderr = result.stderr.strip()
    if stderr:
        message += "\n" + stderr[:_CONTEXT_CHARS]
    st.update_step(step_id, StepUpdate.failed(st.generation, message, attempt))
    trace.completed(StepStatus.FAILED, message)
    return message
