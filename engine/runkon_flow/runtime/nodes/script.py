"""`script <name>` (engine.md §9.9, dsl.md §6.9): run a shell command with `sh -c`.

Safety: values are never spliced into the `run` text. Each `{{var}}` becomes a reference to an
environment variable carrying the value (`dsl.shell_text`), written to suit the author's quoting, so
no input, host variable or FLOW_OUTPUT export can ever run as shell code, and inside quotes it
arrives byte for byte; `env` entries carry raw values (the environment is data, never parsed by the
shell) and may not set protected names. A NUL byte, which no command line or environment can
carry, fails the step naming where the value came from.

Ours (docs/engine.md): `retries` and `on_fail` (including an agent fallback) work exactly as for
`call`; a timeout kills the whole process group, marks the row `timed_out` and fails the run; a
cancel kills it within a second and records the row `cancelled`; output lines stream as
StepOutput events.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence

from runkon_flow.dsl.ast import ScriptNode
from runkon_flow.dsl.shell_text import (
    ShellTemplateError,
    option_problem,
    option_value,
    render_shell_command,
    scan_placeholders,
    the_value_of,
)
from runkon_flow.dsl.templating import substitute_variables
from runkon_flow.plugins.flow_output import parse_flow_output
from runkon_flow.process import MAX_ARG_BYTES, TooBigPlaces, run_process, too_big_problem
from runkon_flow.runtime.attempts import StepAttempt, cancellation_of, run_retried_step
from runkon_flow.runtime.state import ExecutionState
from runkon_flow.runtime.steps import OutputEmitter, describe_exception, record_step_success
from runkon_flow.runtime.variables import (
    build_variable_map,
    describe_variable_source,
    warn_unknown_placeholders,
)
from runkon_flow.usage import Usage, usage_metadata

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
_CONTEXT_CHARS = 2000


def build_script_env(st: ExecutionState, node: ScriptNode, variables: dict[str, str]) -> dict[str, str]:
    """Process env < script-env provider < CONDUCTOR_<INPUT> < node `env` (protected names skipped)."""
    env = dict(os.environ)
    provided = st.script_env_provider.env(st.run_ctx, node.as_identity or st.default_as_identity)  # type: ignore[arg-type]
    env.update({str(k): str(v) for k, v in (provided or {}).items()})
    skipped_inputs: list[str] = []
    # A foreach child's `item.*` inputs are the engine's own (the item's id, ref and context): noting
    # that they are not exported would say the same thing once per item of every fan-out.
    item_child = bool(st.parent_run_id) and "item.ref" in st.inputs
    for key, value in st.inputs.items():
        if "\0" in value:
            st.warn(f"script '{node.name}': input '{key}' contains a NUL byte; not exported", node.name)
        elif _INPUT_NAME.match(key) and len(os.fsencode(value)) + len(key) + 12 > MAX_ARG_BYTES:
            # CONDUCTOR_<KEY>=value and its NUL: longer, and no command of the step could start
            st.warn(
                f"script '{node.name}': input '{key}' is {len(os.fsencode(value)):,} bytes, more than an "
                f"environment variable can hold; not exported as CONDUCTOR_{key.upper()}",
                node.name,
            )
        elif _INPUT_NAME.match(key):
            env[f"CONDUCTOR_{key.upper()}"] = value
        elif not (item_child and key.startswith("item.")):
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
        env[key] = substitute_variables(template, variables)
    return env


def _nul_problem(st: ExecutionState, node: ScriptNode, env: dict[str, str], variables: dict[str, str]) -> str:
    """Why this script cannot start: a NUL byte would reach its command line or environment, which
    no process can receive. Names the value's source (input, FLOW_OUTPUT field, item, …)."""
    name = node.name
    for use in scan_placeholders(node.run):
        if "\0" in variables.get(use.key, ""):
            source = describe_variable_source(st, use.key)
            return (
                f"Script '{name}': {the_value_of(use.key, ' in `run`', source)} contains a NUL byte, "
                "which a command cannot receive"
            )
    for key, template in node.env.items():
        if "\0" not in env.get(key, ""):
            continue
        for use in scan_placeholders(template):
            if "\0" in variables.get(use.key, ""):
                where = " in `env` '" + key + "'"
                value = the_value_of(use.key, where, describe_variable_source(st, use.key))
                return f"Script '{name}': {value} contains a NUL byte, which a command cannot receive"
        return f"Script '{name}': the `env` value of '{key}' contains a NUL byte"
    key = next(k for k, v in env.items() if "\0" in v)
    return (
        f"Script '{name}': environment variable '{key}' (from the script environment provider) "
        "contains a NUL byte"
    )


def _too_big_places(st: ExecutionState, node: ScriptNode, values: dict[str, str]) -> TooBigPlaces:
    """Where a script's values go (`too_big_problem`): `run` (its placeholders are the variables
    `values`), each `env` entry, each input exported as CONDUCTOR_*, the `run` text itself."""
    places: dict[str, tuple[str, str, Sequence[str]]] = {"argument 2": ("`run`", "the `run` text", ())}
    for key in st.inputs:
        name = f"CONDUCTOR_{key.upper()}"
        places[name] = ("", f"input '{key}' (exported as {name})", ())
    for key, template in node.env.items():
        places[key] = (f"`env` '{key}'", f"the `env` value of '{key}'", (template,))
    for name in values:
        places[name] = ("`run`", "a value in `run`", (node.run,))
    return places


def execute_script(st: ExecutionState, node: ScriptNode, iteration: int, path: str) -> None:
    run_retried_step(
        st,
        node.name,
        node.name,
        iteration,
        path,
        retries=node.retries,
        on_fail=node.on_fail,
        attempt=lambda position, attempt, last_error: _attempt(
            st, node, path, iteration, position, attempt, last_error
        ),
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
    step = StepAttempt(st, "script", name, name, path, iteration, position, attempt, last_error)

    if st.exec_config.dry_run:
        text = "dry-run: script not executed"
        step.completed(result_text=text, context="", markers=[])
        record_step_success(st, name, name, iteration, result_text=text, markers=[], context="")
        return None

    if "\0" in node.run:
        return step.failed(f"Script '{name}': the `run` text contains a NUL byte")
    variables = build_variable_map(st)
    warn_unknown_placeholders(st, f"script '{name}'", name, [node.run, *node.env.values()], variables)
    try:
        command, values = render_shell_command(node.run, variables)
    except ShellTemplateError as exc:
        return step.failed(f"Script '{name}': {exc}")
    option = option_value(scan_placeholders(node.run), variables)
    if option is not None:
        use, value = option
        source, problem = describe_variable_source(st, use.key), option_problem(use, value)
        return step.failed(f"Script '{name}': {the_value_of(use.key, ' in `run`', source)} {problem}")
    try:
        env = build_script_env(st, node, variables)
    except Exception as exc:
        return step.failed(
            f"Script '{name}' failed to execute: script environment provider raised {describe_exception(exc)}"
        )
    env.update(values)
    problem = _nul_problem(st, node, env, variables) if any("\0" in v for v in env.values()) else None
    if problem is not None:
        return step.failed(problem)

    token = st.cancellation.child()
    emitter = (
        OutputEmitter(st, step.step_id, name, st.exec_config.max_output_lines) if st.event_sinks else None
    )
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
        if emitter is not None:
            emitter.finish()

    if result.timed_out:
        text = f"Script '{name}' timed out after {node.timeout}s"
        raise step.timed_out(text, text)
    if result.cancelled:
        raise step.cancelled(f"Script '{name}' cancelled", cancellation_of(st, None))
    if result.too_big is not None:
        item = st.inputs.get("item.ref") if st.parent_run_id else None
        who = f"Script '{name}'" + (f" (foreach item '{item}')" if item else "")
        places = _too_big_places(st, node, values)
        source = functools.partial(describe_variable_source, st)
        return step.failed(too_big_problem(who, result.too_big, places, variables, source))
    if result.spawn_error is not None:
        return step.failed(f"Script '{name}' failed to execute: {result.spawn_error}")

    if result.exit_code == 0:
        flow = parse_flow_output(result.stdout)
        metadata = {"duration_ms": str(result.duration_ms)}
        if flow is not None:
            markers, context, structured = flow.markers, flow.context, flow.to_json()
            metadata.update(usage_metadata(flow.extras))  # a script wrapping an agent may report usage
        else:
            markers, context, structured = [], result.stdout[:_CONTEXT_CHARS], None
        text = f"Script '{name}' completed"
        step.completed(
            result_text=text,
            context=context,
            markers=markers,
            structured_output=structured,
            usage=Usage.from_metadata(metadata),
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
            metadata=metadata,
        )
        return None

    code = result.exit_code if result.exit_code is not None and result.exit_code >= 0 else -1
    message = f"Script '{name}' exited with code {code}"
    stderr = result.stderr.strip()
    if stderr:
        message += "\n" + stderr[:_CONTEXT_CHARS]
    flow = parse_flow_output(result.stdout)  # an agent it wraps may have spent before failing
    return step.failed(message, usage=Usage.from_metadata(usage_metadata(flow.extras)) if flow else None)
