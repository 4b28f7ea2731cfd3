"""Agents: markdown files with YAML front matter that a `call` runs (design.md §6).

`call review` looks for `<workflow dir>/agents/review.md`; `call "agents/review.md"` names the file
relative to the workflow directory (it may not leave that directory). The body is the prompt
template; the front matter says how to run it:

    ---
    description: Reviews one change
    runtime: command            # command (default when `command` is set) | echo
    command: ["{{python}}", "{{agent_dir}}/../scripts/review.py"]   # or one string, shlex-split
    model: small                # exported as RUNKON_MODEL (wins over the run's model)
    timeout: 5m                 # seconds, or "500ms" / "30s" / "5m" / "1h"
    env: { LEVEL: strict }      # extra environment; values are {{templated}}
    ---
    Review {{item.id}} …

The `command` runtime writes the rendered prompt to the command's stdin and reads its stdout for a
FLOW_OUTPUT block (markers, context, structured output). The `echo` runtime runs nothing: it
returns the prompt and the front matter's `markers`/`context`/`output`, optionally after a `delay`
and failing on purpose (`fail`) — it exists for demos and tests. See docs/agents.md.
"""

from __future__ import annotations

import difflib
import logging
import os
import random
import re
import shlex
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from runkon_flow.cancellation import CancellationReason, CancellationToken
from runkon_flow.dsl.script_commands import program_problem
from runkon_flow.dsl.shell_text import (
    AGENT_ARGUMENT,
    AGENT_SCRIPT,
    ARGUMENT,
    ShellTemplateError,
    code_arguments,
    code_problem,
    option_problem,
    option_value,
    reads_as_option,
    render_shell_command,
    runs_shell,
    scan_placeholders,
    the_value_of,
)
from runkon_flow.dsl.templating import substitute_variables
from runkon_flow.errors import Problem, SourceLocation, WorkflowError
from runkon_flow.humanize import did_you_mean
from runkon_flow.plugins._yaml import ConfigFileError, YamlDoc, parse_yaml, scalar_text
from runkon_flow.plugins.flow_output import FLOW_OUTPUT_INSTRUCTION, FlowOutput, parse_flow_output
from runkon_flow.plugins.protocols import (
    ActionExecutor,
    ActionFailed,
    ActionOutput,
    ActionParams,
    ClaudeActionParams,
    OutputSchema,
    RunContext,
    ScriptEnvProvider,
    StepInfo,
    VariableSources,
)
from runkon_flow.plugins.registries import ActionRegistry
from runkon_flow.plugins.schemas import schema_instruction
from runkon_flow.process import TooBigPlaces, run_process, too_big_problem
from runkon_flow.usage import usage_metadata

log = logging.getLogger(__name__)

AGENTS_DIR = "agents"
PROMPTS_DIR = "prompts"
#: Env var: multiply every echo-agent `delay` by this factor (0 = no delays; tests use it).
SPEED_ENV = "RUNKON_SAMPLE_SPEED"
#: Env var: the command used for agents whose front matter names no runtime and no command.
DEFAULT_COMMAND_ENV = "RUNKON_AGENT_COMMAND"

Runtime = Literal["command", "echo"]
_RUNTIMES = ("command", "echo")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIRST_N = re.compile(r"^\s*first\s+(\d+)(?:\s+\w+)?\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\.\.\s*(\d+(?:\.\d+)?)\s*$")
_CONTEXT_CHARS = 2000
#: The front matter keys an agent file may have (docs/agents.md). Other keys are ignored (agent
#: files written for other tools load unchanged), except a close misspelling of one of these.
FRONT_MATTER_KEYS = (
    "name", "description", "runtime", "command", "model", "timeout", "env", "markers", "markers_for",
    "context", "output", "fail", "fail_message", "delay",
)  # fmt: skip


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class AgentDef:
    """One agent file, validated. `base_dir` is the workflow directory it belongs to."""

    name: str
    file: Path
    base_dir: Path
    prompt: str
    description: str = ""
    runtime: Runtime = "command"
    command: tuple[str, ...] | None = None
    model: str | None = None
    timeout_s: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # echo runtime
    markers: tuple[str, ...] = ()
    markers_for: int | None = None  # emit markers only on the first N calls in a run
    context: str | None = None
    output: Mapping[str, Any] | None = None
    fail: int = 0  # 0 never; N > 0: the first N calls in a run fail; -1 always
    fail_message: str | None = None
    delay: tuple[float, float] = (0.0, 0.0)
    #: the line of `command` in the front matter (None: not written, the default command is used)
    command_line: int | None = field(default=None, compare=False)

    @property
    def agent_dir(self) -> Path:
        return self.file.parent

    def own_variables(self) -> dict[str, str]:
        """What its `command`, `env` and prompt may refer to about the agent itself."""
        return {
            "agent_name": self.name,
            "agent_dir": str(self.agent_dir),
            "workflow_dir": str(self.base_dir),
            "python": sys.executable,
        }


_KNOWN_SHOWN = 12  # agent names a missing agent's reason lists


@dataclass
class AgentCatalog:
    """Every agent found: by name (`agents/<name>.md`) and by path label (`call "x/y.md"`).

    `errors` lists every broken file; `broken` maps the name/label a workflow would use to the
    problem, so validation can say *why* an agent is unavailable."""

    dirs: list[Path] = field(default_factory=list)
    agents: dict[str, AgentDef] = field(default_factory=dict)
    paths: dict[str, AgentDef] = field(default_factory=dict)
    errors: list[Problem] = field(default_factory=list)
    broken: dict[str, Problem] = field(default_factory=dict)

    def get(self, label: str) -> AgentDef | None:
        return self.agents.get(label) or self.paths.get(label)

    def labels(self) -> list[str]:
        return sorted({*self.agents, *self.paths})

    def why_missing(self, label: str) -> str:
        """A one-line reason for a label that has no agent (for validation messages)."""
        if label in self.broken:
            problem = self.broken[label]
            return problem.render() if problem.location.file else problem.text()
        if _looks_like_path(label):
            where = ", ".join(str(d) for d in self.dirs) or "any workflow directory"
            return f"no agent file '{label}' in {where}"
        places = ", ".join(str(d / AGENTS_DIR / f"{label}.md") for d in self.dirs)
        return f"no agent file {places or f'agents/{label}.md'}; {self._known(label)}"

    def _known(self, label: str) -> str:
        """What the user can call instead (closest first), or how to add one (docs/agents.md)."""
        names = sorted(self.agents)
        if not names and self.broken:
            return f"no agent file loads ({len(self.errors)} with errors)"
        if not names:
            return (
                "no agents are defined yet: write the agent's prompt in that file (front matter "
                "`runtime: echo` runs it without a model; see docs/agents.md)"
            )
        close = did_you_mean(label, names)
        shown = ", ".join(names[:_KNOWN_SHOWN]) + (
            f" and {len(names) - _KNOWN_SHOWN} more" if len(names) > _KNOWN_SHOWN else ""
        )
        return (f"{close} " if close else "") + f"the agents defined: {shown}"


def _looks_like_path(label: str) -> bool:
    return "/" in label or label.endswith(".md")


def split_front_matter(text: str) -> tuple[str | None, str, int]:
    """(front matter text or None, body, 1-based line where the front matter text starts)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text, 0
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            return "".join(lines[1:index]), "".join(lines[index + 1 :]), 2
    raise ConfigFileError(
        Problem("front matter starts with `---` but never ends", None, SourceLocation(None, 1))
    )


def load_agent_file(path: Path, base_dir: Path, *, default_command: Sequence[str] | None = None) -> AgentDef:
    """Read and validate one agent file; raise ConfigFileError naming file and line."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigFileError(
            Problem(f"cannot read agent file: {reason}", None, SourceLocation(file))
        ) from None
    try:
        front, body, first_line = split_front_matter(text)
    except ConfigFileError as exc:
        raise ConfigFileError(
            Problem(exc.problem.message, None, SourceLocation(file, exc.problem.location.line))
        ) from None
    if front is None and not default_command:
        # all of it is the prompt; "missing `command`" at a `runtime` line that is not there (it
        # may be in the prompt, above a `---` that does not open front matter) did not say why
        raise ConfigFileError(
            Problem(
                "no front matter: the file does not start with a `---` line, so all of it is the prompt "
                "and nothing says how to run it",
                "start the file with `---`, then `runtime: echo` (or `command: …`), then `---` and the "
                f"prompt; or set {DEFAULT_COMMAND_ENV} to run plain prompt files",
                SourceLocation(file, 1),
            )
        )
    doc = parse_yaml(front or "", file=file, line_offset=max(first_line - 1, 0))
    data = doc.data if front is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise doc.error("front matter must be a mapping of key: value")
    return _build(doc, data, path, base_dir, body.strip("\n"), default_command)


def _build(
    doc: YamlDoc,
    data: dict[str, Any],
    path: Path,
    base_dir: Path,
    body: str,
    default_command: Sequence[str] | None,
) -> AgentDef:
    def text_key(key: str) -> str | None:
        if key not in data or data[key] is None:
            return None
        value = scalar_text(data[key])
        if value is None:
            raise doc.error(f"`{key}` must be a single value", key)
        return value

    for key in data:
        if isinstance(key, str) and key not in FRONT_MATTER_KEYS:
            close = difflib.get_close_matches(key, FRONT_MATTER_KEYS, n=1, cutoff=0.8)
            if close and close[0] not in data:
                raise doc.error(
                    f"unknown key `{key}`: did you mean `{close[0]}`?",
                    key,
                    hint="keys of other tools are ignored, but this one is a misspelling of ours and would "
                    "silently do nothing",
                )
    stem = path.stem
    declared = text_key("name")
    if declared is not None and declared != stem:
        raise doc.error(
            f"front matter name '{declared}' does not match the file name '{path.name}'",
            "name",
            hint=f"rename the file to {declared}.md or remove `name`",
        )
    command = _command(doc, data.get("command"))
    runtime = text_key("runtime")
    if runtime is None:
        runtime = "command"
    if runtime not in _RUNTIMES:
        close = did_you_mean(runtime, _RUNTIMES)
        expected = f"{close + ' ' if close else ''}expected one of: {', '.join(_RUNTIMES)}"
        raise doc.error(f"unknown runtime '{runtime}' ({expected})", "runtime")
    if runtime == "command" and command is None:
        if default_command:
            command = tuple(default_command)
        else:
            raise doc.error(
                "missing `command` (runtime 'command' runs it with the prompt on stdin)",
                "runtime",
                hint=f"add `command: ...`, use `runtime: echo`, or set {DEFAULT_COMMAND_ENV}",
            )
    env = _env(doc, data.get("env"))
    markers = _markers(doc, data.get("markers"))
    output = data.get("output")
    if output is not None and not isinstance(output, dict):
        raise doc.error("`output` must be a mapping of field: value", "output")
    fail = _fail(doc, data.get("fail"))
    return AgentDef(
        name=stem,
        file=path,
        base_dir=base_dir,
        prompt=body,
        description=text_key("description") or "",
        runtime=runtime,  # type: ignore[arg-type]
        command=command,
        model=text_key("model"),
        timeout_s=_seconds(doc, "timeout", data.get("timeout")),
        env=env,
        markers=markers,
        markers_for=_first_n(doc, "markers_for", data.get("markers_for"), allow_bool=False),
        context=text_key("context"),
        output=output,
        fail=fail,
        fail_message=text_key("fail_message"),
        delay=_delay(doc, data.get("delay")),
        command_line=doc.line_of("command") if data.get("command") is not None else None,
    )


def command_problem(agent: AgentDef, working_dir: Path) -> tuple[Problem, bool] | None:
    """Will the `command` runtime find the agent's program? (problem, is it an error), else None.

    The program is started as a script's first word is (dsl/script_commands.py, one policy): a word
    with `/` is a file relative to the run's working directory and must exist, be a file and be
    executable (errors); a bare word is looked up on PATH — a file of that name in the working
    directory instead is an error (`./x` is meant), found nowhere a warning (the run's PATH may
    differ). The agent's own placeholders (`{{agent_dir}}`, `{{workflow_dir}}`, `{{python}}`) are
    known and substituted; any other placeholder in the program, or a `PATH` in the agent's `env`,
    leaves it to the run. Reported at the `command` line of the agent file."""
    if agent.runtime != "command" or not agent.command:
        return None
    program = substitute_variables(agent.command[0], agent.own_variables())
    if not program or "{{" in program or "PATH" in agent.env:
        return None
    found = program_problem(
        program,
        working_dir,
        "a program without a `/` is looked for on PATH only, not in the working directory",
    )
    if found is None:
        return None
    message, hint, is_error = found
    if program != agent.command[0]:  # as written: `'{{agent_dir}}/x.sh' not found (looked for …)`
        message = message.replace(f"'{program}' not found", f"'{agent.command[0]}' not found", 1)
    default = agent.command_line is None
    origin = f" (the default command, {DEFAULT_COMMAND_ENV})" if default else ""
    if hint is None:
        hint = (
            "the program is the first word of `command`; a relative path is taken from the working "
            "directory (the workflow's folder unless --working-dir), `{{agent_dir}}/…` from the agent "
            "file's folder"
            if "/" in program
            else "install it or put it on PATH, or give its path: `./x` in the working directory, "
            "`{{agent_dir}}/x` next to the agent file"
        )
    where = SourceLocation(str(agent.file), agent.command_line)
    return Problem(f"agent '{agent.name}'{origin}: {message}", hint, where), is_error


def _command(doc: YamlDoc, raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            parts = shlex.split(raw)
        except ValueError as exc:
            raise doc.error(f"`command` cannot be split into arguments: {exc}", "command") from None
    elif isinstance(raw, list) and all(scalar_text(p) is not None for p in raw):
        parts = [scalar_text(p) or "" for p in raw]
    else:
        raise doc.error("`command` must be a string or a list of strings", "command")
    if not parts:
        raise doc.error("`command` is empty", "command")
    return tuple(parts)


def _env(doc: YamlDoc, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise doc.error("`env` must be a mapping of NAME: value", "env")
    env: dict[str, str] = {}
    for key, value in raw.items():
        key = str(key)
        if not _ENV_NAME.match(key):
            raise doc.error(f"`env`: '{key}' is not a valid environment variable name", "env", key)
        text = scalar_text(value)
        if text is None:
            raise doc.error(f"`env`: value of '{key}' must be a single value", "env", key)
        env[key] = text
    return env


def _markers(doc: YamlDoc, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    result = []
    for index, item in enumerate(items):
        text = scalar_text(item)
        if text is None:
            raise doc.error("`markers` must be a list of strings", "markers", index)
        result.append(text)
    return tuple(result)


def _first_n(doc: YamlDoc, key: str, raw: Any, *, allow_bool: bool) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        if allow_bool:
            return -1 if raw else 0
    elif isinstance(raw, int) and raw >= 0:
        return raw
    elif isinstance(raw, str) and (m := _FIRST_N.match(raw)):
        return int(m.group(1))
    expected = "true, false, " if allow_bool else ""
    raise doc.error(f'`{key}` must be {expected}a count, or "first N calls" (got {raw!r})', key)


def _fail(doc: YamlDoc, raw: Any) -> int:
    value = _first_n(doc, "fail", raw, allow_bool=True)
    return 0 if value is None else value


def parse_seconds(text: str) -> float | None:
    """`"500ms"`, `"30s"`, `"5m"`, `"1h"` or a bare number of seconds → seconds; None if invalid."""
    m = _DURATION.match(text)
    if not m:
        return None
    number = float(m.group(1))
    return number * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def _seconds(doc: YamlDoc, key: str, raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    value = parse_seconds(raw) if isinstance(raw, str) else None
    if value is None or value <= 0:
        raise doc.error(
            f'`{key}` must be a positive number of seconds or like "30s", "5m" (got {raw!r})', key
        )
    return value


def _delay(doc: YamlDoc, raw: Any) -> tuple[float, float]:
    if raw is None:
        return (0.0, 0.0)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0:
        return (float(raw), float(raw))
    if isinstance(raw, str):
        if m := _RANGE.match(raw):
            low, high = float(m.group(1)), float(m.group(2))
            if low <= high:
                return (low, high)
        elif (value := parse_seconds(raw)) is not None:
            return (value, value)
    raise doc.error(
        f'`delay` must be seconds (e.g. 0.5), a duration, or a range like "0.2..1.5" (got {raw!r})', "delay"
    )


# --------------------------------------------------------------------------- catalog


def agent_search_dirs(workflow_dir: Path) -> list[Path]:
    """Where `call <name>` looks: `<dir>/agents`, and `<dir>/../agents` for the conductor layout
    (`.conductor/workflows` next to `.conductor/agents`)."""
    found = [workflow_dir / AGENTS_DIR]
    if workflow_dir.name == "workflows":
        found.append(workflow_dir.parent / AGENTS_DIR)
    return found


def resolve_agent_path(label: str, base_dir: Path) -> Path:
    """The file a quoted agent path names, relative to `base_dir`; ValueError if it escapes it."""
    pure = PurePosixPath(label)
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(
            f"agent path '{label}' must be relative to the workflow directory and stay inside it"
        )
    candidate = (base_dir / pure).resolve()
    root = base_dir.resolve()
    if not candidate.is_relative_to(root):
        raise ValueError(f"agent path '{label}' resolves outside the workflow directory {base_dir}")
    return base_dir / pure


def load_agents(
    dirs: Sequence[Path],
    *,
    path_refs: Iterable[tuple[str, Path]] = (),
    default_command: Sequence[str] | str | None = None,
) -> AgentCatalog:
    """Scan `<dir>/agents/*.md` in every workflow dir (a later dir wins a name clash) and load the
    quoted-path agents named by `path_refs` (`(label, workflow dir)` pairs, e.g. from the
    workflows' `call "…"` nodes). Never raises for a user's mistake: see `AgentCatalog.errors`.

    `default_command` (or the RUNKON_AGENT_COMMAND environment variable) is used for agent files
    that name neither a runtime nor a command — e.g. plain prompt files written for another host."""
    if default_command is None:
        default_command = os.environ.get(DEFAULT_COMMAND_ENV) or None
    if isinstance(default_command, str):
        default_command = shlex.split(default_command)
    catalog = AgentCatalog(dirs=[Path(d) for d in dirs])
    for directory in catalog.dirs:
        for agents_dir in agent_search_dirs(directory):
            if not agents_dir.is_dir():
                continue
            for path in sorted(agents_dir.glob("*.md")):
                _load_into(catalog, path.stem, path, directory, default_command, by_name=True)
    seen: set[str] = set()
    for label, base_dir in path_refs:
        if label in seen or label in catalog.paths:
            continue
        seen.add(label)
        try:
            path = resolve_agent_path(label, Path(base_dir))
        except ValueError as exc:
            _broken(catalog, label, Problem(str(exc)))
            continue
        if not path.is_file():
            _broken(catalog, label, Problem(f"agent file not found: {path}"), record=False)
            continue
        _load_into(catalog, label, path, Path(base_dir), default_command, by_name=False)
    return catalog


def _broken(catalog: AgentCatalog, label: str, problem: Problem, *, record: bool = True) -> None:
    catalog.broken[label] = problem
    if record:
        catalog.errors.append(problem)


def _load_into(
    catalog: AgentCatalog,
    label: str,
    path: Path,
    base_dir: Path,
    default_command: Sequence[str] | None,
    *,
    by_name: bool,
) -> None:
    try:
        agent = load_agent_file(path, base_dir, default_command=default_command)
    except ConfigFileError as exc:
        problem = exc.problem
        if problem.location.file is None:
            problem = Problem(problem.message, problem.hint, SourceLocation(str(path)))
        _broken(catalog, label, problem)
        if by_name:
            catalog.agents.pop(label, None)
        return
    if by_name:
        catalog.agents[label] = agent
        catalog.broken.pop(label, None)
        # Also reachable as `call "agents/<name>.md"` from its own directory.
        rel = path.relative_to(base_dir).as_posix() if path.is_relative_to(base_dir) else None
        if rel is not None:
            catalog.paths[rel] = agent
    else:
        catalog.paths[label] = agent


# --------------------------------------------------------------------------- execution


class _CallCounter:
    """How many times each agent ran in each run (for `fail: first N` / `markers_for`).

    Bounded: only the most recent runs are remembered."""

    def __init__(self, max_runs: int = 2000) -> None:
        self._runs: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_runs = max_runs

    def next(self, run_id: str, agent: str) -> int:
        with self._lock:
            counts = self._runs.get(run_id)
            if counts is None:
                counts = self._runs[run_id] = {}
                while len(self._runs) > self._max_runs:
                    self._runs.popitem(last=False)
            else:
                self._runs.move_to_end(run_id)
            counts[agent] = counts.get(agent, 0) + 1
            return counts[agent]


@dataclass
class AgentRuntime:
    """What every agent executor of one registry shares."""

    catalog: AgentCatalog
    script_env: ScriptEnvProvider | None = None
    base_env: Mapping[str, str] | None = None  # None → os.environ at call time
    counter: _CallCounter = field(default_factory=_CallCounter)
    sleep: Callable[[float], None] | None = None  # test hook for echo delays without a token
    _active: dict[str, CancellationToken] = field(default_factory=dict)

    def speed(self) -> float:
        raw = (self.base_env if self.base_env is not None else os.environ).get(SPEED_ENV)
        if raw is None:
            raw = os.environ.get(SPEED_ENV, "1")
        try:
            return max(float(raw), 0.0)
        except ValueError:
            return 1.0


class AgentExecutor:
    """ActionExecutor for one agent, registered under the label workflows use (name or path)."""

    def __init__(self, label: str, agent: AgentDef, runtime: AgentRuntime) -> None:
        self._label = label
        self.agent = agent
        self._rt = runtime

    def name(self) -> str:
        return self._label

    def cancel(self, execution_id: str) -> None:
        """Stop the attempt running under `execution_id` (the step id); no-op if none."""
        token = self._rt._active.get(execution_id)
        if token is not None:
            token.cancel(CancellationReason.user("agent cancelled by the engine"))

    def execute(self, ctx: RunContext, info: StepInfo, params: ActionParams) -> ActionOutput:
        token = CancellationToken(info.cancellation) if info.cancellation is not None else CancellationToken()
        # `_active` is changed by single dict operations (atomic under the GIL), not under a lock
        # all the workers of a fan-out would take twice per item (docs/engine.md, "Why the fan-out
        # takes no shared lock"); a step id belongs to one attempt, so no two calls share a key.
        active = self._rt._active
        active[info.step_id] = token
        try:
            token.error_if_cancelled()
            prompt = self.render_prompt(params)
            if params.dry_run:
                return ActionOutput(
                    result_text=f"dry-run: agent '{self.agent.name}' would receive:\n{prompt}"
                )
            if self.agent.runtime == "echo":
                return self._echo(ctx, info, params, token)
            return self._command(ctx, info, params, prompt, token)
        finally:
            if active.get(info.step_id) is token:
                active.pop(info.step_id, None)
            token.detach()

    # ---- prompt

    def variables(self, params: ActionParams) -> dict[str, str]:
        """The step's variable map plus what an agent file may refer to about itself."""
        return {**params.inputs, **self.agent.own_variables()}

    def source_of(self, params: ActionParams) -> Callable[[str], str | None]:
        """Where the value of `{{key}}` came from (`input 'key'`), as the engine says it
        (`VariableSources`); None for the agent's own variables and without an engine."""
        sources = params.extensions.get(VariableSources)

        def describe(key: str) -> str | None:
            if sources is None or key not in params.inputs or key in self.agent.own_variables():
                return None
            return sources.describe(key)

        return describe

    @staticmethod
    def _say_unknown(params: ActionParams, templates: Sequence[str], variables: Mapping[str, str]) -> None:
        """Placeholders of `templates` with no value render empty: the engine warns of each on the
        step's log (`VariableSources.unknown`)."""
        sources = params.extensions.get(VariableSources)
        if sources is not None:
            sources.unknown(templates, variables)

    def render_prompt(self, params: ActionParams) -> str:
        """The full prompt: the task (see `render_task`) plus the output instruction."""
        schema = params.extensions.get(OutputSchema)
        instruction = schema_instruction(schema) if schema is not None else FLOW_OUTPUT_INSTRUCTION
        return f"{self.render_task(params)}\n\n{instruction}\n"

    def render_task(self, params: ActionParams) -> str:
        """Body, snippets, gate feedback and the previous error — what the agent is asked to do."""
        variables = self.variables(params)
        templates = [self.agent.prompt, *(self._snippet(snippet) for snippet in params.snippets)]
        self._say_unknown(params, templates, variables)
        parts = [substitute_variables(template, variables).strip("\n") for template in templates]
        if params.gate_feedback:
            parts.append(f"Reviewer feedback from the last gate: {params.gate_feedback}")
        if params.retry_error:
            parts.append(f"The previous attempt failed with: {params.retry_error}")
        return "\n\n".join(p for p in parts if p)

    def _snippet(self, name: str) -> str:
        if not _NAME.match(name):
            raise WorkflowError(f"agent '{self.agent.name}': invalid prompt snippet name '{name}'")
        candidates = snippet_candidates(name, self.agent.base_dir, self._rt.catalog.dirs)
        for path in candidates:
            if path.is_file():
                try:
                    return path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise WorkflowError(f"cannot read prompt snippet {path}: {exc}") from None
        looked = ", ".join(str(p) for p in candidates)
        raise WorkflowError(
            f"agent '{self.agent.name}': prompt snippet '{name}' not found (looked for {looked})"
        )

    # ---- echo runtime

    def _echo(
        self, ctx: RunContext, info: StepInfo, params: ActionParams, token: CancellationToken
    ) -> ActionOutput:
        agent = self.agent
        # Counted only for an agent whose behaviour depends on it: the counter is shared by every
        # worker of a fan-out, and a lock they all take costs more than the echo itself.
        counted = agent.fail != 0 or agent.markers_for is not None
        call_no = self._rt.counter.next(info.run_id or ctx.run_id(), agent.name) if counted else 0
        variables = self.variables(params)
        shown = self.render_task(params)
        if info.emit_output is not None:  # first, so a watcher sees the task while the agent "works"
            for line in shown.splitlines()[:50]:
                info.emit_output(line, "stdout")
        low, high = agent.delay
        delay = (random.uniform(low, high) if high > low else low) * self._rt.speed()
        if delay > 0 and token.wait(delay):
            raise token.error()
        token.error_if_cancelled()
        if agent.fail == -1 or (agent.fail > 0 and call_no <= agent.fail):
            message = agent.fail_message or f"agent '{agent.name}' failed on purpose (call {call_no})"
            # What `output: {usage: …}` says it spent, as a real agent that fails late reports it.
            output = agent.output or {}
            spent = usage_metadata({str(k): _template_value(v, variables) for k, v in output.items()})
            raise ActionFailed(substitute_variables(message, variables), spent)
        markers: list[str] = []
        if agent.markers_for is None or call_no <= agent.markers_for:
            markers = [m for m in (substitute_variables(m, variables) for m in agent.markers) if m]
        context = (
            substitute_variables(agent.context, variables)
            if agent.context is not None
            else shown[:_CONTEXT_CHARS]
        )
        structured = None
        metadata = {"duration_ms": str(int(delay * 1000))}
        if agent.output is not None:
            extras = {str(k): _template_value(v, variables) for k, v in agent.output.items()}
            structured = FlowOutput(markers, context, extras).to_json()
            metadata.update(usage_metadata(extras))  # `output: {usage: {...}}` as a block's would
        return ActionOutput(
            markers=markers,
            context=context,
            result_text=shown,
            structured_output=structured,
            metadata=metadata,
        )

    # ---- command runtime

    def _command(
        self, ctx: RunContext, info: StepInfo, params: ActionParams, prompt: str, token: CancellationToken
    ) -> ActionOutput:
        agent = self.agent
        assert agent.command is not None
        variables = self.variables(params)
        self._say_unknown(params, [*agent.command, *agent.env.values()], variables)
        source_of = self.source_of(params)
        nul = _nul_placeholder([*agent.command, *agent.env.values()], variables)
        if nul is not None:
            raise WorkflowError(
                f"agent '{agent.name}': {the_value_of(nul, '', source_of(nul))} contains a NUL byte, which "
                "a command cannot receive"
            )
        argv, values = _render_command(agent.name, agent.command, variables, source_of)
        env = self._environment(ctx, info, params, variables)
        env.update(values)
        limit = info.step_timeout.total_seconds() if info.step_timeout else None
        timeout = min(t for t in (agent.timeout_s, limit) if t) if (agent.timeout_s or limit) else None
        result = run_process(
            argv,
            cwd=ctx.working_dir(),
            env=env,
            stdin=prompt,
            timeout=timeout,
            cancellation=token,
            on_line=info.emit_output,
        )
        if result.cancelled:
            raise token.error()
        if result.too_big is not None:
            places = _too_big_places(agent.command, agent.env, values)
            raise WorkflowError(
                too_big_problem(f"agent '{agent.name}'", result.too_big, places, variables, source_of)
            )
        if result.spawn_error is not None:
            raise WorkflowError(f"agent '{agent.name}' failed to start {argv[0]!r}: {result.spawn_error}")
        if result.timed_out:
            raise WorkflowError(f"agent '{agent.name}' timed out after {_fmt_seconds(timeout or 0)}")
        if result.exit_code != 0:
            message = f"agent '{agent.name}' exited with code {result.exit_code}"
            tail = result.stderr_tail()
            parsed = parse_flow_output(result.stdout)  # a block written before it failed: its usage
            spent = usage_metadata(parsed.extras if parsed is not None else None)
            raise ActionFailed(f"{message}\n{tail}" if tail else message, spent)
        return self.parse_output(result.stdout, result.duration_ms)

    def parse_output(self, stdout: str, duration_ms: int = 0) -> ActionOutput:
        parsed = parse_flow_output(stdout)
        metadata = {"duration_ms": str(duration_ms)}
        if parsed is None:
            return ActionOutput(
                context=stdout[:_CONTEXT_CHARS], result_text=stdout.strip(), metadata=metadata
            )
        metadata.update(usage_metadata(parsed.extras))  # {"usage": {...}} in the block (docs/agents.md)
        return ActionOutput(
            markers=list(parsed.markers),
            context=parsed.context,
            result_text=stdout.strip(),
            structured_output=parsed.to_json(),
            metadata=metadata,
        )

    def _environment(
        self, ctx: RunContext, info: StepInfo, params: ActionParams, variables: Mapping[str, str]
    ) -> dict[str, str]:
        agent = self.agent
        env = dict(os.environ if self._rt.base_env is None else self._rt.base_env)
        if self._rt.script_env is not None:
            env.update(self._rt.script_env.env(ctx, params.as_identity))
        env.update({k: substitute_variables(v, variables) for k, v in agent.env.items()})
        model = agent.model or params.model
        extras = {
            "RUNKON_AGENT": agent.name,
            "RUNKON_AGENT_FILE": str(agent.file),
            "RUNKON_RUN_ID": info.run_id or ctx.run_id(),
            "RUNKON_STEP_ID": info.step_id,
            "RUNKON_WORKFLOW": ctx.workflow_name(),
            "RUNKON_RETRIES_REMAINING": str(params.retries_remaining),
            "RUNKON_DRY_RUN": "true" if params.dry_run else "false",
        }
        if model:
            extras["RUNKON_MODEL"] = model
        schema = params.extensions.get(OutputSchema)
        if schema is not None:
            extras["RUNKON_OUTPUT_SCHEMA"] = schema.name
        claude = params.extensions.get(ClaudeActionParams)
        if claude is not None and claude.max_turns is not None:
            extras["RUNKON_MAX_TURNS"] = str(claude.max_turns)
        if params.as_identity:
            extras["RUNKON_IDENTITY"] = params.as_identity
        if params.plugin_dirs:
            extras["RUNKON_PLUGIN_DIRS"] = os.pathsep.join(params.plugin_dirs)
        env.update(extras)
        return env


def _code_arguments(command: Sequence[str]) -> dict[int, tuple[bool, str]]:
    """The arguments `command` runs as code, each with whether a shell runs it as its whole script
    (its placeholders then become references, dsl.shell_text) and what runs it (`sh -c`,
    `docker exec … sh -c`, `ssh`): the script of `sh [options] -c
    <script> …` (also behind `env`, `timeout`, …, and after options like `-o pipefail` or
    `--norc`); the program of `python3 -c`, `node -e`, `perl -e`, `awk`, `sed`, `jq` …; the words
    of a remote command (`ssh HOST …`)."""
    found: dict[int, tuple[bool, str]] = {}
    for first, end, name in code_arguments(list(command)):
        whole_script = end == first + 1 and runs_shell(name)
        found.update((index, (whole_script, name)) for index in range(first, end))
    return found


def _render_command(
    name: str,
    command: Sequence[str],
    variables: Mapping[str, str],
    source_of: Callable[[str], str | None] = lambda key: None,
) -> tuple[list[str], dict[str, str]]:
    """The argv (values substituted; arguments are data) and, for a shell's `-c` script, the
    environment variables its placeholders refer to (dsl.shell_text). A placeholder in the program
    of another interpreter (`python3 -c "print('{{v}}')"`, `awk`, `sed` …) is refused: its value
    would run. A refused value is named with `source_of` its placeholder (`input 'v'`)."""
    # The program word may itself be a placeholder (`{{python}}`): look at what it stands for.
    program = substitute_variables(command[0], variables) if command else ""
    code = _code_arguments([program, *command[1:]]) if command else {}
    argv: list[str] = []
    values: dict[str, str] = {}
    operands = False  # after a `--` argument
    for index, part in enumerate(command):
        whole_script, runs = code.get(index, (False, ""))
        uses = scan_placeholders(part, AGENT_SCRIPT if whole_script else AGENT_ARGUMENT)
        if whole_script:
            try:
                text, values = render_shell_command(part, variables, wording=AGENT_SCRIPT)
            except ShellTemplateError as exc:
                raise WorkflowError(f"agent '{name}': {exc}") from None
            option = option_value(uses, variables)
            if option is not None:
                use, value = option
                raise WorkflowError(
                    f"agent '{name}': in its shell command, {the_value_of(use.key, '', source_of(use.key))} "
                    f"{option_problem(use, value, AGENT_SCRIPT)}"
                )
            argv.append(text)
        elif index in code and uses:
            key = uses[0].key
            source = source_of(key)
            shown = f"`{{{{{key}}}}}`" + (f" ({source})" if source else "")
            problem, hint = code_problem(shown, key, runs, ARGUMENT, AGENT_ARGUMENT)
            raise WorkflowError(
                f"agent '{name}': {problem}, where its value would run as code (hint: {hint})"
            )
        else:
            # (an argument opening with an unterminated `{{` is plain text: no placeholder)
            if index > 0 and not operands and uses and uses[0].start == 0:
                use = replace(uses[0], option_of=Path(program).name)
                value = variables.get(use.key)
                if value is not None and reads_as_option(use.option_of or "", value):
                    where = f" in its command's argument {index}"
                    raise WorkflowError(
                        f"agent '{name}': {the_value_of(use.key, where, source_of(use.key))} "
                        f"{option_problem(use, value, AGENT_ARGUMENT)}"
                    )
            operands = operands or (index > 0 and part == "--")
            argv.append(substitute_variables(part, variables))
    return argv, values


def _too_big_places(
    command: Sequence[str], env: Mapping[str, str], values: Mapping[str, str]
) -> TooBigPlaces:
    """Where an agent's values go (`too_big_problem`): its shell command (its placeholders are the
    variables `values`), each of its command's arguments, each `env` entry."""
    places: dict[str, tuple[str, str, Sequence[str]]] = {}
    for index, template in enumerate(command):
        label = f"its command's argument {index}"
        places[f"argument {index}"] = (label, label, (template,))
    for key, template in env.items():
        places[key] = (f"its `env` '{key}'", f"its `env` value of '{key}'", (template,))
    scripts = [t for t in command if scan_placeholders(t)]
    for name in values:
        places[name] = ("its shell command", "a value in its shell command", scripts)
    return places


def _nul_placeholder(templates: Sequence[str], variables: Mapping[str, str]) -> str | None:
    """The first placeholder in `templates` whose value holds a NUL byte."""
    for template in templates:
        for use in scan_placeholders(template):
            if "\0" in variables.get(use.key, ""):
                return use.key
    return None


def _template_value(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return substitute_variables(value, variables)
    if isinstance(value, list):
        return [_template_value(v, variables) for v in value]
    if isinstance(value, dict):
        return {str(k): _template_value(v, variables) for k, v in value.items()}
    return value


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def snippet_candidates(name: str, base_dir: Path, dirs: Sequence[Path]) -> list[Path]:
    """`prompts/<name>.md` in the agent's own workflow dir first, then every other dir (latest first)."""
    ordered = [base_dir, *[d for d in reversed(dirs) if d != base_dir]]
    result: list[Path] = []
    for directory in ordered:
        result.append(directory / PROMPTS_DIR / f"{name}.md")
        if directory.name == "workflows":
            result.append(directory.parent / PROMPTS_DIR / f"{name}.md")
    return result


# --------------------------------------------------------------------------- registry


def build_action_registry(
    catalog: AgentCatalog,
    *,
    script_env: ScriptEnvProvider | None = None,
    base_env: Mapping[str, str] | None = None,
) -> ActionRegistry:
    """One executor per label a workflow may use: every agent name and every loaded path label.

    No fallback: an unknown agent is reported by the engine's validation before the run."""
    runtime = AgentRuntime(catalog=catalog, script_env=script_env, base_env=base_env)
    executors: dict[str, ActionExecutor] = {}
    for label, agent in {**catalog.paths, **catalog.agents}.items():
        executors[label] = AgentExecutor(label, agent, runtime)
    return ActionRegistry(executors, explain_missing=catalog.why_missing)
