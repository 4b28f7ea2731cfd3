"""`Workspace`: the host glue the CLI and the dashboard share.

A workspace is a few workflow directories plus a store. It loads every `.wf` file, the agents,
identities and schemas beside them, and wires the reference plug-ins into a `FlowEngine`: agent
executors, the item providers, gate resolvers, a workflow resolver over the loaded definitions, the
in-process child runner, the schema resolver, the script environment and a `LocalRunContext`
(working directory = the workflow's directory unless the host chose one) — and the host's own
action executors, item providers and gate resolvers beside them (`actions=…`; docs/workspace.md,
"Plug-ins of your program"). Hosts then only call `validate`, `create_run`, `execute`, `resume`,
`cancel` and `gates`.

Every `reload()` builds a fresh immutable snapshot (definitions, agents, engine); a run keeps the
snapshot it started with, so an edit never changes a running run. All methods are thread-safe:
`execute` runs on the caller's (worker) thread while a UI thread cancels or approves gates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runkon_flow.approvals import ApprovalStoreResolver, GateApprovals
from runkon_flow.cancellation import CancellationReason, CancellationToken, EngineCancelled
from runkon_flow.dsl.ast import (
    AgentRef,
    CallNode,
    CallWorkflowNode,
    DoNode,
    ForEachNode,
    ParallelNode,
    WorkflowDef,
    node_paths,
    walk,
)
from runkon_flow.dsl.loading import FileError, load_workflow_closure, load_workflow_dir
from runkon_flow.dsl.parser import CALL_TIMEOUT
from runkon_flow.dsl.references import bringing_steps, called_workflows, reference_node, said_in_sub_workflow
from runkon_flow.dsl.script_commands import ScriptCheck, check_script_commands
from runkon_flow.dsl.validation import file_warnings, sub_workflow_notes, validate_workflow
from runkon_flow.errors import (
    AlreadyOwned,
    FlowError,
    Problem,
    SourceLocation,
    ValidationErrors,
    WorkflowError,
    WorkflowNotFound,
)
from runkon_flow.event_log import StoredEventWriter
from runkon_flow.event_log import stored_output_lines as output_lines_setting
from runkon_flow.events import EngineLog, EventSink
from runkon_flow.humanize import did_you_mean
from runkon_flow.observe.counts import latest_attempts
from runkon_flow.persistence.holders import release_if_gone
from runkon_flow.persistence.models import (
    FanOutItemRow,
    NewRun,
    RetryRequest,
    RunStatus,
    StepRole,
    StepStatus,
    WorkflowRun,
    WorkflowRunStep,
    now_rfc3339,
)
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.persistence.snapshots import stored_children, stored_definition
from runkon_flow.plugins.agents import (
    AGENTS_DIR,
    AgentCatalog,
    agent_search_dirs,
    build_action_registry,
    command_problem,
    load_agents,
    snippet_candidates,
)
from runkon_flow.plugins.context import LocalRunContext
from runkon_flow.plugins.item_providers import default_providers
from runkon_flow.plugins.protocols import ActionExecutor, GateResolver, ItemProvider, WorkflowResolver
from runkon_flow.plugins.registries import ActionRegistry, ItemProviderRegistry
from runkon_flow.plugins.schemas import SchemaResolver
from runkon_flow.plugins.script_env import IDENTITIES_FILE, DefaultScriptEnvProvider
from runkon_flow.runner import RunnerSettings, spawn_runner
from runkon_flow.runtime.child_runner import InProcessChildRunner
from runkon_flow.runtime.engine import FlowEngine, FlowEngineBuilder
from runkon_flow.runtime.remote_child import ChildOutcome, ChildTask, watch_parent
from runkon_flow.runtime.rerun import NoStepToRerunFrom, RerunPlan, plan_rerun
from runkon_flow.runtime.resume import final_rejection, rejection_refusal
from runkon_flow.runtime.state import emit_to
from runkon_flow.runtime.types import (
    ChildRunInput,
    ChildWorkflowContext,
    ChildWorkflowRunner,
    RunInput,
    RunSettings,
    WorkflowExecConfig,
    WorkflowResult,
)

__all__ = [
    "RAN_ON",
    "REFERENCE_GATE_TYPES",
    "ChildRunnerFactory",
    "InputsError",
    "ResumePlan",
    "ResumeSource",
    "RunNeedsThisProcess",
    "UnknownWorkflow",
    "Workspace",
    "end_unowned_run",
]

log = logging.getLogger(__name__)

#: Gate types a workspace accepts. All of them wait for an approval in the store (engine.md §9.8):
#: `pr_approval`/`pr_checks` are approved by a person here, as there is no PR system to ask.
REFERENCE_GATE_TYPES = ("human_approval", "human_review", "pr_approval", "pr_checks")

_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off", ""})
#: How a remote child's stored events say where it ran: `ran on <node>`.
RAN_ON = "ran on "
_CANCEL_LEASE_SECS = 10  # held only for the one status write

#: (engine, workflow resolver, store) → the runner of a run's foreach children.
ChildRunnerFactory = Callable[[FlowEngine, WorkflowResolver, WorkflowPersistence], ChildWorkflowRunner]


class InputsError(FlowError, ValueError):
    """The inputs given for a run do not fit the workflow's declarations; `problems` lists each."""

    def __init__(self, workflow: str, problems: list[str]) -> None:
        self.workflow = workflow
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RunNeedsThisProcess(WorkflowError):
    """A run of a workspace given plug-ins of this process (`Workspace(actions=…, item_providers=…,
    gate_resolvers=…)`) cannot go to a background runner (`launch`, `hand_over`): that process
    builds its own workspace from the folders, without them, and would fail the run (or run an
    agent file of the same name) later. Nothing is started; the run stays as it was."""

    def __init__(self, run_id: str, plugins: Sequence[str]) -> None:
        self.run_id = run_id
        self.plugins = list(plugins)
        super().__init__(
            f"run '{run_id}' cannot go to a background runner: this workspace runs with plug-ins of "
            f"this process ({'; '.join(self.plugins)}), which a runner process does not have — "
            "run it here (execute, resume or retry on this workspace)"
        )


class UnknownWorkflow(WorkflowNotFound):
    """`workflow not found: <name> (available: …)`, or where no workflow was found at all."""

    def __init__(self, name: str, known: Iterable[str], searched: Iterable[Path] = ()) -> None:
        self.known = sorted(known)
        self.searched = list(searched)
        super().__init__(name)

    def __str__(self) -> str:
        base = super().__str__()
        if self.known:
            close = did_you_mean(self.name, self.known)
            return f"{base} ({close + ' ' if close else ''}available: {', '.join(self.known)})"
        if self.searched:
            where = ", ".join(str(d) for d in self.searched)
            return f"{base} (no .wf files in {where})"
        return base


def end_unowned_run(
    store: WorkflowPersistence,
    run_id: str,
    error: str,
    *,
    status: RunStatus = RunStatus.CANCELLED,
    only_from: RunStatus | None = None,
) -> RunStatus | None:
    """Record `run_id` as `status` (with `error`) if no engine holds it; the lease is borrowed
    for the write, so a live engine is never overruled. Returns None when an engine holds the run
    (it stops the run itself), else the run's status after the call: `status`, or the status
    it was found in under the lease — a finished run (or, with `only_from`, a run in another
    status) is left as it is."""
    with borrowed_lease(store, run_id, status.value) as held:
        if not held:
            return None
        current = store.get_run(run_id)
        if current is None:
            raise WorkflowError(f"no workflow run '{run_id}'")
        found = RunStatus(current.status)
        if found.is_terminal or (only_from is not None and found is not only_from):
            return found
        store.update_run_status(run_id, status, current.result_summary, error)
        return status


def end_unstarted_run(store: WorkflowPersistence, run_id: str, reason: str) -> RunStatus | None:
    """A run created to be started whose start failed before anything ran it (its background
    runner could not be started, or exited before taking the run up): recorded `failed` with
    `reason` — left `pending`, it read as about to start for ever, its duration growing — and
    resumable like any failed run. Only from `pending`: a runner that took the run after all is
    never overruled. The run's status after the call (None: an engine holds it)."""
    return end_unowned_run(store, run_id, reason, status=RunStatus.FAILED, only_from=RunStatus.PENDING)


@contextlib.contextmanager
def borrowed_lease(store: WorkflowPersistence, run_id: str, purpose: str) -> Iterator[bool]:
    """Hold the run's lease for one short write from outside its engine (a cancel, a retry
    request): yields False, holding nothing, when an engine holds the run — a live engine is
    never overruled — and lets go of it afterwards."""
    token = f"{purpose}-{uuid.uuid4().hex}"
    taken = store.acquire_lease(run_id, token, _CANCEL_LEASE_SECS)
    if taken is None and release_if_gone(store, run_id) is not None:  # its engine is provably gone
        taken = store.acquire_lease(run_id, token, _CANCEL_LEASE_SECS)
    if taken is None:
        yield False
        return
    try:
        yield True
    finally:
        store.release_lease(run_id, token)


class _LoadedResolver:
    """WorkflowResolver over one snapshot's definitions (by declared name), so sub-workflows are the
    definitions the workspace shows, and a broken file is reported with its position."""

    def __init__(self, workflows: Mapping[str, WorkflowDef], broken: Mapping[str, FileError]) -> None:
        self._workflows = dict(workflows)
        self._broken = dict(broken)

    def resolve(self, name: str) -> WorkflowDef:
        found = self._workflows.get(name)
        if found is not None:
            return found
        if name in self._broken:
            raise WorkflowError(self._broken[name].render())
        raise WorkflowNotFound(name, did_you_mean(name, list(self._workflows)))  # as `validate` says it

    __call__ = resolve


@dataclass
class _Snapshot:
    """Everything one `reload()` produced; never mutated afterwards."""

    dirs: tuple[Path, ...]
    signature: tuple[Any, ...]
    workflows: dict[str, WorkflowDef]
    workflow_dirs: dict[str, Path]
    files: dict[str, str | FileError]
    load_errors: list[FileError]
    broken_by_stem: dict[str, FileError]
    # Workflows whose file is broken now, by name: their last good definition is in `workflows`
    # (a list entry and a resume still have one), but a new run must not start on it.
    kept: dict[str, FileError]
    agents: AgentCatalog
    config_errors: list[FileError]
    script_env: DefaultScriptEnvProvider
    schemas: SchemaResolver
    actions: ActionRegistry
    resolver: _LoadedResolver
    engine: FlowEngine
    warnings: list[str] = field(default_factory=list)


class ResumeSource(enum.Enum):
    """Which definition a `resume` runs, and why (`Workspace.resume_plan`)."""

    FILE = "file"  # the workflow's file as it is now: the fix just made is what you resume with
    RERUN = "rerun"  # a rerun: the definition chosen when it was prepared, stored with it
    RETRY = "retry"  # a retry of the stored definition cut short: that definition
    STORED = "stored"  # the file is gone or does not parse now: the definition stored with the run


@dataclass(frozen=True)
class ResumePlan:
    """What a `resume` of a run would run now: the definition, and which one that is."""

    source: ResumeSource
    definition: WorkflowDef


@dataclass
class _Plan:
    """What a created run will execute: the definition as it was when the run was created."""

    definition: WorkflowDef
    directory: Path
    snapshot: _Snapshot
    #: The workflows it starts that run the definitions stored with the run's children, not
    #: today's files (a retry or rerun of the stored definition: `stored_children`), by name.
    children: dict[str, WorkflowDef] = field(default_factory=dict)

    def resolver(self) -> _LoadedResolver:
        """The children's definitions: those stored with the run's children, else today's files."""
        if not self.children:
            return self.snapshot.resolver
        snap = self.snapshot
        broken = {k: v for k, v in snap.broken_by_stem.items() if k not in self.children}
        return _LoadedResolver({**snap.workflows, **self.children}, broken)


class Workspace:
    """Workflow directories + a store, wired to an engine. See the module docstring."""

    def __init__(
        self,
        dirs: Sequence[Path | str],
        store: WorkflowPersistence,
        *,
        sinks: Sequence[EventSink] = (),
        working_dir: Path | None = None,
        exec_config: WorkflowExecConfig | None = None,
        store_events: bool = True,
        stored_output_lines: int | None = None,
        only: Sequence[str] = (),
        child_runner: ChildRunnerFactory | None = None,
        runner_settings: RunnerSettings | None = None,
        actions: Sequence[ActionExecutor] = (),
        item_providers: Sequence[ItemProvider] = (),
        gate_resolvers: Sequence[GateResolver] = (),
    ) -> None:
        self.store = store
        #: The host's own plug-ins, by the name each gives itself (`name()`, `gate_type()`): put on
        #: every snapshot's engine and run, over a reference one (an agent file, a provider, a
        #: store-backed gate type) of the same name. Runs using them stay in this process.
        self._own_actions = _by_name("action", actions, lambda a: a.name())
        self._own_providers = _by_name("item provider", item_providers, lambda p: p.name())
        self._own_gates = _by_name("gate resolver", gate_resolvers, lambda g: g.gate_type())
        #: Given to the background runner a run is handed over to (`hand_over`): the host's hooks
        #: file and executor, so the run goes on with the same hooks and on the same cluster.
        self.runner_settings = runner_settings or RunnerSettings()
        #: Builds the runner of each run's foreach children (None: in this process). The Ray
        #: executor (runkon_flow.ray_executor) passes one that sends them to a cluster.
        self._child_runner = child_runner
        #: `only`: load just these workflows (names or `.wf` paths) and what they call, not every
        #: file of `dirs` — what a command that runs or checks one workflow wants. Empty: everything
        #: (the dashboard). Falls back to everything when a callee is not found as `<name>.wf`.
        self._roots = [str(_abs(r)) if r.endswith(".wf") or os.sep in r or "/" in r else r for r in only]
        #: Keep every run's events in the store (`runkon_flow.event_log`), so any process can watch
        #: the run and a past run shows its logs; output lines are kept up to
        #: `stored_output_lines` per step (None: `$RUNKON_STORED_OUTPUT_LINES`, else the default;
        #: a bad value there is a ValueError naming the variable).
        self.store_events = store_events
        self.stored_output_lines = (
            output_lines_setting() if stored_output_lines is None else stored_output_lines
        )
        self.gates = GateApprovals(store)
        config = exec_config or WorkflowExecConfig()
        #: The engine passes on at least as many lines per step as are stored: a stored limit
        #: above the engine's own cap (2,000) would otherwise store no more than the cap.
        self.exec_config = dataclasses.replace(
            config, max_output_lines=max(config.max_output_lines, self.stored_output_lines)
        )
        self._dirs = [_abs(d) for d in dirs]
        self._sinks = list(sinks)
        self._working_dir = _abs(working_dir) if working_dir is not None else None
        self._lock = threading.RLock()
        self._plans: dict[str, _Plan] = {}
        self._active: dict[str, tuple[FlowEngine, CancellationToken]] = {}
        self._handed_over: dict[str, str] = {}  # run id → the owner token to let go of
        self._snap: _Snapshot | None = None
        self.reload()

    # ------------------------------------------------------------------ what is loaded

    @property
    def dirs(self) -> list[Path]:
        return list(self._snapshot().dirs)

    @property
    def workflows(self) -> dict[str, WorkflowDef]:
        """Declared name → definition, sorted by name (a broken edit keeps the last good one)."""
        return dict(self._snapshot().workflows)

    @property
    def load_errors(self) -> list[FileError]:
        """One entry per `.wf` file that does not parse (file, line, column, message)."""
        return list(self._snapshot().load_errors)

    @property
    def config_errors(self) -> list[FileError]:
        """Broken agent files and identities files, with file and line."""
        return list(self._snapshot().config_errors)

    @property
    def agents(self) -> AgentCatalog:
        return self._snapshot().agents

    @property
    def engine(self) -> FlowEngine:
        """The engine of the current snapshot (for hosts that need the low-level API)."""
        return self._snapshot().engine

    def workflow_dir(self, name: str) -> Path:
        """The directory the workflow `name` was loaded from."""
        snap = self._snapshot()
        self._lookup(snap, name)
        return snap.workflow_dirs[name]

    def _snapshot(self) -> _Snapshot:
        snap = self._snap
        assert snap is not None
        return snap

    # ------------------------------------------------------------------ loading

    def reload(self) -> None:
        """Re-scan `.wf` files, agents and identities. Does nothing when no file changed, so it is
        cheap enough to call on every file-watcher event."""
        with self._lock:
            previous = self._snap
            dirs = tuple(self._dirs)
            extra_agent_files = [a.file for a in previous.agents.paths.values()] if previous else []
            signature = _signature(dirs, extra_agent_files)
            if previous is not None and previous.dirs == dirs and previous.signature == signature:
                return
            self._snap = self._build(dirs, signature, previous)

    def _build(
        self, dirs: tuple[Path, ...], signature: tuple[Any, ...], previous: _Snapshot | None
    ) -> _Snapshot:
        result = None
        if self._roots:
            result = load_workflow_closure(dirs, self._roots)
        if result is None:
            result = load_workflow_dir(dirs, strict=False)
        workflows = dict(result.workflows)
        workflow_dirs = {name: Path(wf.source_path).parent for name, wf in workflows.items()}
        broken_by_stem: dict[str, FileError] = {}
        kept: dict[str, FileError] = {}
        for path, outcome in result.files.items():
            if not isinstance(outcome, FileError):
                continue
            stem = Path(path).stem
            broken_by_stem[stem] = outcome
            # Keep the last good definition of a file that was fine before this edit.
            old_name = previous.files.get(path) if previous is not None else None
            if isinstance(old_name, str) and old_name not in workflows and previous is not None:
                workflows[old_name] = previous.workflows[old_name]
                workflow_dirs[old_name] = previous.workflow_dirs[old_name]
                kept[old_name] = outcome
        workflows = dict(sorted(workflows.items()))

        path_refs = [
            (label, workflow_dirs[name]) for name, wf in workflows.items() for label in _path_labels(wf)
        ]
        agents = load_agents(dirs, path_refs=path_refs)
        script_env, identity_problems = DefaultScriptEnvProvider.from_dirs(dirs)
        config_errors = [FileError.of(p) for p in [*agents.errors, *identity_problems]]
        schemas = SchemaResolver(dirs)
        explain = self._explain_missing(agents)
        actions = ActionRegistry(  # the host's own actions over agents of their names
            {**build_action_registry(agents, script_env=script_env).named, **self._own_actions},
            explain_missing=explain,
        )
        resolver = _LoadedResolver(workflows, broken_by_stem)
        builder = FlowEngineBuilder().workflow_resolver(resolver).script_env_provider(script_env)
        builder.explain_missing_action(explain)
        for executor in actions.named.values():
            builder.action(executor)
        for provider in self._providers(dirs[0] if dirs else Path.cwd()):
            builder.item_provider(provider)
        for gate_type in REFERENCE_GATE_TYPES:
            builder.gate_resolver(ApprovalStoreResolver(gate_type))
        for gate in self._own_gates.values():  # after the reference ones: the host's own wins
            builder.gate_resolver(gate)
        return _Snapshot(
            dirs=dirs,
            signature=_signature(dirs, [a.file for a in agents.paths.values()])
            if agents.paths
            else signature,
            workflows=workflows,
            workflow_dirs=workflow_dirs,
            files=dict(result.files),
            load_errors=list(result.errors),
            broken_by_stem=broken_by_stem,
            kept=kept,
            agents=agents,
            config_errors=config_errors,
            script_env=script_env,
            schemas=schemas,
            actions=actions,
            resolver=resolver,
            engine=builder.build(),
            warnings=list(result.warnings),
        )

    def _providers(self, directory: Path) -> list[ItemProvider]:
        """The item providers of a run in `directory`: the reference ones rooted there, then the
        host's own (a later one of a name replaces the earlier one in a registry)."""
        return [*default_providers(directory), *self._own_providers.values()]

    def _explain_missing(self, agents: AgentCatalog) -> Callable[[str], str]:
        """Why a `call` has no executor: the agent catalog's reason, and the host's own actions."""
        own = sorted(self._own_actions)
        if not own:
            return agents.why_missing

        def explain(label: str) -> str:
            close = did_you_mean(label, own)
            theirs = f"this program's actions: {', '.join(own)}"
            return f"{agents.why_missing(label)}; {f'{close} ' if close else ''}{theirs}"

        return explain

    def own_plugins(self) -> list[str]:
        """The host's own plug-ins this workspace was given, by kind (`actions: a, b`): empty when
        it runs only the reference ones from its folders — then a run may go to a runner."""
        kinds = (
            ("actions", self._own_actions),
            ("item providers", self._own_providers),
            ("gate types", self._own_gates),
        )
        return [f"{kind}: {', '.join(sorted(names))}" for kind, names in kinds if names]

    # ------------------------------------------------------------------ lookup

    def find(self, name_or_path: str) -> WorkflowDef:
        """A workflow by declared name, or by `.wf` path. A file outside the workspace directories
        adds its directory to the workspace (so its agents and sub-workflows are found)."""
        snap = self._snapshot()
        if name_or_path.endswith(".wf") or os.sep in name_or_path or "/" in name_or_path:
            path = Path(name_or_path)
            if not path.is_file():
                raise WorkflowNotFound(name_or_path)
            directory = _abs(path).parent
            if directory not in snap.dirs:
                with self._lock:
                    if directory not in self._dirs:
                        self._dirs.append(directory)
                self.reload()
                snap = self._snapshot()
            outcome = snap.files.get(str(directory / path.name))
            if isinstance(outcome, FileError):
                raise WorkflowError(f"cannot load {path}: {outcome.render()}")
            if isinstance(outcome, str):
                return snap.workflows[outcome]
            raise WorkflowNotFound(name_or_path)
        return self._lookup(snap, name_or_path)

    def load_error(self, name: str) -> FileError | None:
        """Why the workflow declared `name` does not load now: its file's error (a file that
        parsed before, by its last good name; else one named `<name>.wf`); None when it loads or
        no file of that name is there."""
        snap = self._snapshot()
        kept = snap.kept.get(name)
        if kept is not None or name in snap.workflows:
            return kept
        return snap.broken_by_stem.get(name)

    def _lookup(self, snap: _Snapshot, name: str) -> WorkflowDef:
        found = snap.workflows.get(name)
        if found is not None:
            return found
        if name in snap.broken_by_stem:
            raise WorkflowError(f"workflow '{name}' cannot be loaded: {snap.broken_by_stem[name].render()}")
        raise UnknownWorkflow(name, snap.workflows, self._dirs)

    # ------------------------------------------------------------------ validation

    def validate(self, name: str) -> list[Problem]:
        """Every problem that would stop a run of `name`: the language rules (dsl.md §9.1), the
        engine's host checks (agents, providers, gate types, sub-workflows, cycles), and ours
        (schemas, prompt snippets, on_fail agents, script files). Empty list = ready to run."""
        return self.check(name)[0]

    def check(self, name: str) -> tuple[list[Problem], list[Problem]]:
        """`validate`'s problems, and the warnings `runkon-flow validate --scripts` says for the
        workflow's own file (the parser's, the language rules' and the script check's, each at its
        place): they stop nothing. `run`, `resume`, `retry` and `rerun` say them before a run."""
        wf = self.find(name)
        snap = self._snapshot()  # after find(): it may have added a directory
        directory = snap.workflow_dirs.get(wf.name, Path(wf.source_path).parent)
        providers = ItemProviderRegistry(self._providers(directory))
        problems: list[Problem] = []
        if wf.name in snap.kept:
            broken = snap.kept[wf.name]
            where = SourceLocation(broken.file, broken.line, broken.column)
            problems.append(Problem(broken.message, location=where))
        # As the files are now, as a runner process or `runkon-flow run` would load them: a called
        # workflow whose file is broken is not stood in for by its last good definition.
        as_on_disk = _LoadedResolver(
            {name: w for name, w in snap.workflows.items() if name not in snap.kept},
            {**snap.broken_by_stem, **snap.kept},
        )
        report = validate_workflow(wf, loader=as_on_disk, providers=providers)
        problems.extend(report.errors)
        scripts = check_script_commands(wf, self._working_dir or directory)
        children = called_workflows(wf, as_on_disk)
        brought_by = bringing_steps(wf, children)  # a sub-workflow's problems' steps
        programs = _agent_programs(wf, children, brought_by, snap.agents, self._working_dir or directory)
        warnings = file_warnings(
            wf, wf.source_path or None, [*report.warning_problems, *scripts.warnings, *programs.warnings]
        )
        try:
            snap.engine.validate(wf)
        except ValidationErrors as exc:  # a missing agent's hint is the catalog's reason
            problems.extend(_not_said_already(exc.errors, report.errors, wf))
        problems.extend(_fan_out_children_host_problems(snap.engine, wf, children, brought_by))
        problems.extend(self._extra_checks(snap, wf, directory, as_on_disk, scripts.errors))
        problems.extend(programs.errors)
        return _unique(problems, wf), _unique(warnings, wf)

    def _extra_checks(
        self,
        snap: _Snapshot,
        wf: WorkflowDef,
        directory: Path,
        resolver: _LoadedResolver,
        script_errors: list[Problem],
    ) -> list[Problem]:
        problems: list[Problem] = []
        file = wf.source_path or None
        paths = node_paths(wf)
        for node in walk(list(wf.body) + list(wf.always)):
            where = SourceLocation(file, node.line, node.column)
            path = paths.get(id(node))
            for schema in _schemas_of(node):
                found = snap.schemas.check(schema)
                if found is not None:
                    reason = found.render() if found.location.file else found.text()
                    problems.append(Problem(f"output schema '{schema}': {reason}", None, where, path))
            for snippet in _snippets_of(node):
                candidates = snippet_candidates(snippet, directory, list(snap.dirs))
                if not any(p.is_file() for p in candidates):
                    looked = ", ".join(str(p) for p in candidates)
                    message = f"prompt snippet '{snippet}' not found (looked for {looked})"
                    problems.append(Problem(message, None, where, path))
            on_fail = getattr(node, "on_fail", None)
            if (
                on_fail is not None
                and on_fail.kind == "agent"
                and snap.agents.get(on_fail.value.label()) is None
                and on_fail.value.label() not in self._own_actions
            ):
                label = on_fail.value.label()
                problems.append(
                    Problem(f"on_fail agent '{label}' not found", snap.agents.why_missing(label), where, path)
                )
        problems.extend(script_errors)
        # The language accepts any call `timeout` text and the engine fails the step when it cannot
        # read it (dsl.md §3.5); a run that is bound to fail there is refused before it starts.
        for note in wf.notes:
            if note.code == CALL_TIMEOUT:
                where = SourceLocation(file, note.line, note.column)
                problems.append(Problem(note.message, note.hint, where, paths.get(id(note.node))))
        # ... and in the workflows it calls, which the run reaches too (at their own file:line:col)
        problems.extend(sub_workflow_notes(wf, resolver, CALL_TIMEOUT))
        return problems

    # ------------------------------------------------------------------ inputs

    def prepare_inputs(self, name: str, raw: Mapping[str, str]) -> dict[str, str]:
        """The inputs a run of `name` gets: declared defaults filled, booleans normalised to
        "true"/"false" (yes/no/1/0/on/off accepted), unknown names and missing required inputs
        rejected — every problem at once, as an `InputsError`."""
        return self._prepare_inputs(self.find(name), raw)

    def _prepare_inputs(self, wf: WorkflowDef, raw: Mapping[str, str]) -> dict[str, str]:
        declared = {d.name: d for d in wf.inputs}
        problems: list[str] = []
        for key in raw:
            if key not in declared:
                known = ", ".join(declared) or "no inputs"
                hint = did_you_mean(key, list(declared))
                problems.append(
                    f"Unknown input '{key}' for workflow '{wf.name}' (it declares: {known})"
                    + (f"; {hint}" if hint else ".")
                )
        prepared: dict[str, str] = {}
        for decl in wf.inputs:
            value = raw.get(decl.name)
            if decl.input_type == "boolean":
                text = (value if value is not None else decl.default or "false").strip().lower()
                if text in _TRUE:
                    prepared[decl.name] = "true"
                elif text in _FALSE:
                    prepared[decl.name] = "false"
                else:
                    problems.append(f"Input '{decl.name}' is boolean: expected true or false, got '{value}'.")
                continue
            if value is None:
                value = decl.default
            if value is None:
                if decl.required:
                    problems.append(f"Missing required input: '{decl.name}'.")
                continue
            prepared[decl.name] = value
        if problems:
            raise InputsError(wf.name, problems)
        return prepared

    # ------------------------------------------------------------------ runs

    def create_run(self, name: str, inputs: Mapping[str, str]) -> str:
        """Validate, prepare the inputs, write the `pending` run row; returns its id.

        Raises `ValidationErrors` (every problem) or `InputsError`; nothing is written then."""
        wf = self.find(name)
        problems = self.validate(name)
        if problems:
            raise ValidationErrors(problems)
        prepared = self.prepare_inputs(name, inputs)
        snap = self._snapshot()
        run = self.store.create_run(
            NewRun(
                workflow_name=wf.name,
                dry_run=self.exec_config.dry_run,
                trigger=wf.trigger,
                definition_snapshot=json.dumps(wf.to_json(), ensure_ascii=False),
                inputs=prepared,
            )
        )
        directory = snap.workflow_dirs.get(wf.name, Path(wf.source_path).parent)
        with self._lock:
            self._plans[run.id] = _Plan(wf, directory, snap)
        return run.id

    def execute(
        self,
        run_id: str,
        *,
        sinks: Sequence[EventSink] = (),
        cancellation: CancellationToken | None = None,
    ) -> WorkflowResult:
        """Run a `pending` run to its end on the calling thread (a failed run is a result, not an
        exception)."""
        run = self._run_row(run_id)
        if run.status is not RunStatus.PENDING:
            hint = "; resume it instead" if run.status in (RunStatus.FAILED, RunStatus.CANCELLED) else ""
            raise WorkflowError(f"run '{run_id}' is {run.status.value}, not pending{hint}")
        with self._lock:
            plan = self._plans.pop(run_id, None)
        if plan is None:
            plan = self._plan_from_row(run)
        return self._drive(plan, run, sinks, cancellation, resume=False)

    def resume(self, run_id: str, *, sinks: Sequence[EventSink] = ()) -> WorkflowResult:
        """Continue a failed, cancelled or interrupted run with the current definition: completed
        steps (and completed foreach items) are not run again.

        A run left `cancelling` by an engine that died before it could stop the run is first
        recorded `cancelled` (the cancel is over), so the resumed run is not cancelled again at
        once. A run whose engine is alive is left alone: the engine then refuses the resume with
        `AlreadyOwned` (and finishes the cancel itself)."""
        run = self._run_row(run_id)
        if run.status is RunStatus.COMPLETED:
            raise WorkflowError(f"run '{run_id}' already completed; there is nothing to resume")
        if run.parent_run_id:
            raise WorkflowError(
                f"run '{run_id}' is a child run; resume its top-level run {run.parent_run_id}"
            )
        with self._lock:
            if run_id in self._active:
                raise WorkflowError(f"run '{run_id}' is still running")
        rows = self.store.get_steps(run_id)
        rejected = final_rejection(rows)
        if rejected is not None:
            raise WorkflowError(rejection_refusal(run_id, rejected))
        _, plan = self._resume_plan(run)
        self._refuse_unloadable(plan, rows, set())  # the run stays as it was: resumable once fixed
        # The generation this resume decided on: a borrowed lease below moves it (by one each).
        seen = run.generation
        if run.status is RunStatus.CANCELLING:  # its engine may be gone: then the cancel is over
            error = run.error or str(EngineCancelled(CancellationReason.user()))
            if end_unowned_run(self.store, run_id, error, only_from=RunStatus.CANCELLING) is not None:
                seen += 1
        if run.status.is_terminal and self._retry_over(run):
            seen += 1
        return self._drive(plan, run, sinks, None, resume=True, seen_generation=seen)

    def _retry_over(self, run: WorkflowRun) -> bool:
        """A finished run resumed with today's file: its last retry (of the stored definition) is
        over, so a resume of this attempt, if it is cut short, must not go back to that
        definition (`_continues_stored_retry`). Written under a borrowed lease, as the retry
        request itself was; an engine holding the run refuses the resume anyway. Whether the
        lease was borrowed."""
        request = _stored_retry(run)
        if request is None:
            return False
        with borrowed_lease(self.store, run.id, "resume") as held:
            if held:
                self.store.set_retry_request(run.id, dataclasses.replace(request, definition="current"))
        return held

    def resume_plan(self, run_id: str) -> ResumePlan:
        """What `resume` would run now and why (see `_resume_plan`): what a client draws the
        resumed run on and says a resume runs, so its picture and the engine agree — the same
        answer in this process and in a background runner (`launch`), which loads the files
        afresh."""
        source, plan = self._resume_plan(self._run_row(run_id))
        return ResumePlan(source, plan.definition)

    def unloadable_workflows(
        self,
        run_id: str,
        *,
        retried: Iterable[str] = (),
        definition: str | None = None,
        children: dict[str, WorkflowDef] | None = None,
    ) -> list[Problem]:
        """The workflows a `resume` of run `run_id` (or, with `definition`, a `retry` reopening the
        fan-out rows `retried`) would start that do not load from today's files: each at its
        file:line:col, as `run` refuses them. Empty: nothing stops it. `children`: the run's
        `stored_children`, when the caller has read them already (not read a second time)."""
        run = self._run_row(run_id)
        if definition is None:
            _, plan = self._resume_plan(run)
        else:
            plan = self._stored_plan(run, children) if definition == "stored" else self._current_plan(run)
        return self._unloadable(plan, self.store.get_steps(run_id), set(retried))

    def _unloadable(self, plan: _Plan, rows: Sequence[WorkflowRunStep], reopened: set[str]) -> list[Problem]:
        """The called and fan-out workflows (and theirs, at any depth) of the `call workflow` and
        `foreach` steps that will run — those a resume does not restore from a completed row, and
        the fan-outs in `reopened` — whose file is broken or gone now. A child is loaded by name
        when it starts, from the file as it is then: a broken one fails every item that runs it."""
        snap, wf = plan.snapshot, plan.definition
        done: set[str] = set()
        unfinished: set[str] = set()
        for row in latest_attempts(rows):
            if row.node_path:
                completed = StepStatus(row.status) is StepStatus.COMPLETED and row.id not in reopened
                (done if completed else unfinished).add(row.node_path)
        paths = node_paths(wf)
        # (workflow name, the workflow naming it, the step naming it when already known)
        todo: list[tuple[str, WorkflowDef, CallWorkflowNode | ForEachNode | None]] = [
            (node.workflow, wf, node)
            for node in walk(list(wf.body) + list(wf.always))
            if isinstance(node, (CallWorkflowNode, ForEachNode))
            and (paths.get(id(node)) in unfinished or paths.get(id(node)) not in done)
        ]
        problems: list[Problem] = []
        seen: set[str] = set()
        while todo:
            name, owner, node = todo.pop(0)
            if name in seen:
                continue
            seen.add(name)
            stored = plan.children.get(name)  # runs what it ran before: today's file does not matter
            broken = None if stored is not None else snap.kept.get(name) or snap.broken_by_stem.get(name)
            child = stored or (snap.workflows.get(name) if broken is None else None)
            if child is not None:
                todo.extend((ref, child, None) for ref in child.workflow_refs())
            elif broken is not None:
                where = SourceLocation(broken.file, broken.line, broken.column)
                problems.append(Problem(f"workflow '{name}' does not load: {broken.message}", location=where))
            else:  # gone: named at the step that would start it (a stored definition may have no file)
                node = node or reference_node(owner, name)
                where = (
                    SourceLocation(owner.source_path, node.line, node.column)
                    if owner.source_path and node is not None
                    else SourceLocation()
                )
                problems.append(
                    Problem(f"workflow '{name}' is not in {', '.join(map(str, snap.dirs))}", location=where)
                )
        return problems

    def _refuse_unloadable(self, plan: _Plan, rows: Sequence[WorkflowRunStep], reopened: set[str]) -> None:
        """Raise `ValidationErrors` (before anything is written) when `_unloadable` finds any."""
        problems = self._unloadable(plan, rows, reopened)
        if problems:
            raise ValidationErrors(problems)

    def _resume_plan(self, run: WorkflowRun) -> tuple[ResumeSource, _Plan]:
        """A resume runs the workflow's file as it is now (the fix just made is what you resume
        with), a rerun the definition chosen when it was prepared, a retry cut short (its engine
        died, or it was handed over) the definition the retry chose, and a run whose workflow's
        file is gone or does not parse now the definition stored with it, and the workflows it
        starts as they ran (`_stored_plan`). **Decision:** also a file that parsed before and does
        not now, whose last good definition this process may still hold (a dashboard that read
        it): that copy is only in a process that happened to read the file while it parsed — a
        foreground `runkon-flow resume` and a background runner load the files afresh and never
        saw it — so one run resumed with another definition depending on where the resume ran
        (the dashboard's own engine took the last good one, its runner the stored one). The
        stored definition is what the run ran, `show` and the dashboard draw it, and every
        process has it; the resume says which it runs (`note: … does not parse now …`)."""
        if run.rerun_of:  # the definition the rerun chose; with `stored`, its children as they ran
            stored = run.rerun_definition == "stored" or _continues_stored_retry(run)
            return ResumeSource.RERUN, self._stored_plan(run) if stored else self._plan_from_row(run)
        if _continues_stored_retry(run):
            return ResumeSource.RETRY, self._stored_plan(run)
        snap = self._snapshot()
        wf = snap.workflows.get(run.workflow_name)
        if wf is None or run.workflow_name in snap.kept:
            # Nothing of today's to resume with: the run as it ran, children included.
            return ResumeSource.STORED, self._stored_plan(run)
        return ResumeSource.FILE, _Plan(wf, snap.workflow_dirs[wf.name], snap)

    def retry(
        self,
        run_id: str,
        items: Mapping[str, Sequence[str]],
        *,
        definition: str = "stored",
        sinks: Sequence[EventSink] = (),
        children: dict[str, WorkflowDef] | None = None,
        known_items: Mapping[str, list[FanOutItemRow]] | None = None,
    ) -> WorkflowResult:
        """Retry chosen fan-out items of a finished run (docs/when-things-go-wrong.md).

        `items` maps fan-out step row ids to the item ids to run again; every other item keeps its
        outcome, completed items are never touched. The request is written under a borrowed lease
        (refused with `AlreadyOwned` while an engine holds the run), then the run is resumed with
        the `stored` definition or the `current` file: the reopened fan-outs run only the chosen
        items, their aggregate output and the steps after them are brought up to date, and the
        run's final status follows. `children`: the run's `stored_children`, and `known_items`:
        the item rows of its latest fan-outs by step row id, when the caller has read them already
        (a fan-out's 10,000 child runs and item rows are not read a second time)."""
        if definition not in ("stored", "current"):
            raise WorkflowError(f"retry: definition must be 'stored' or 'current', not '{definition}'")
        run = self._run_row(run_id)
        if run.parent_run_id:
            raise WorkflowError(f"run '{run_id}' is a child run; retry its top-level run {run.parent_run_id}")
        if not run.status.is_terminal:
            raise WorkflowError(f"run '{run_id}' is {run.status.value}; only a finished run can be retried")
        if not items or not any(items.values()):
            raise WorkflowError(f"run '{run_id}': no items chosen to retry")
        plan = self._stored_plan(run, children) if definition == "stored" else self._current_plan(run)
        self._refuse_unloadable(plan, self.store.get_steps(run_id), set(items))
        request = RetryRequest(now_rfc3339(), {k: tuple(v) for k, v in items.items()}, definition)
        with borrowed_lease(self.store, run_id, "retry") as held:
            if not held:
                raise AlreadyOwned(run_id)
            under_lease = self._run_row(run_id)
            if not under_lease.status.is_terminal:
                status = under_lease.status.value
                raise WorkflowError(f"run '{run_id}' is {status}; only a finished run can be retried")
            self.store.set_retry_request(run_id, request)
        # Run by the engine only if nobody took the run after this request: another retry's
        # request would be the one on the row.
        seen = under_lease.generation
        count = sum(len(ids) for ids in request.items.values())
        return self._drive(
            plan,
            self._run_row(run_id),
            sinks,
            None,
            resume=True,
            seen_generation=seen,
            retried_items=count,
            known_items=known_items,
        )

    def _called_step(self, rows: list[WorkflowRunStep], step: str) -> tuple[str, str] | None:
        """(called workflow, node path of its `call workflow` step) when `step` names a step of a
        workflow the run called (at any depth below a top-level call), else None."""
        names = {step, f"foreach:{step}", f"workflow:{step}"}
        for row in rows:
            if row.role != StepRole.WORKFLOW.value or not row.child_run_id:
                continue
            todo, seen = [row.child_run_id], set()
            while todo:
                child = todo.pop()
                if child in seen or len(seen) > 50:
                    continue
                seen.add(child)
                for inner in self.store.get_steps(child):
                    if inner.step_name in names:
                        return row.step_name.removeprefix("workflow:"), row.node_path or ""
                    if inner.role == StepRole.WORKFLOW.value and inner.child_run_id:
                        todo.append(inner.child_run_id)
        return None

    def prepare_rerun(
        self,
        run_id: str,
        step: str,
        inputs: Mapping[str, str] | None = None,
        *,
        definition: str = "current",
        children: dict[str, WorkflowDef] | None = None,
    ) -> tuple[str, RerunPlan]:
        """Create a run that reruns the finished run `run_id` from `step` (docs/when-things-go-
        wrong.md): a `pending` run of the `current` file or the `stored` definition, linked to the
        old run, holding copies of the old run's completed steps before `step`, with the old run's
        inputs (those the definition still declares) updated by `inputs`. Start it with
        `resume(new_id)`: the copied steps are restored, `step` and what follows run. Nothing is
        written when the step, the inputs or the definition are wrong. With `stored`, the
        workflows it starts run as the old run ran them (`children`: the old run's
        `stored_children`, when the caller has read them already)."""
        if definition not in ("stored", "current"):
            raise WorkflowError(f"rerun: definition must be 'stored' or 'current', not '{definition}'")
        old = self._run_row(run_id)
        if old.parent_run_id or old.parent_workflow_run_id:
            top = old.parent_run_id or old.parent_workflow_run_id
            raise WorkflowError(f"run '{run_id}' is a child run; rerun its top-level run {top}")
        if not old.status.is_terminal:
            raise WorkflowError(
                f"run '{run_id}' is {old.status.value}; only a finished run can be rerun (cancel it first)"
            )
        plan = self._stored_plan(old, children) if definition == "stored" else self._current_plan(old)
        wf = plan.definition
        if definition == "current":
            problems = self.validate(wf.name)
            if problems:
                raise ValidationErrors(problems)
        rows = self.store.get_steps(run_id)
        try:
            rerun = plan_rerun(wf, rows, step)
        except WorkflowError as exc:
            called = self._called_step(rows, step)
            if called is None:
                raise
            call, path = called
            raise NoStepToRerunFrom(
                f"step '{step}' is inside the workflow '{call}' that '{wf.name}' calls (at {path}); "
                f"rerun names only the steps of '{wf.name}' itself: rerun from the call, "
                f"--from {call} (or --from {path})"
            ) from exc
        self._refuse_unloadable(plan, rerun.reused, set())
        declared = {d.name for d in wf.inputs}
        kept = {k: v for k, v in old.inputs.items() if k in declared}
        prepared = self._prepare_inputs(wf, {**kept, **(inputs or {})})
        new = self.store.create_run(
            NewRun(
                workflow_name=wf.name,
                dry_run=old.dry_run,
                trigger=wf.trigger,
                definition_snapshot=json.dumps(wf.to_json(), ensure_ascii=False),
                inputs=prepared,
            )
        )
        # The choice is kept (`rerun_definition`): with `stored`, the workflows the rerun starts
        # run as the old run ran them — now, and in a resume or retry of the rerun (`_ran_children`).
        self.store.set_rerun_link(new.id, run_id, rerun.step, definition)
        self.store.copy_steps(run_id, new.id, [row.id for row in rerun.reused])
        return new.id, rerun

    def _current_plan(self, run: WorkflowRun) -> _Plan:
        """Today's file for the run's workflow (an error when it is gone or broken)."""
        snap = self._snapshot()
        wf = self._lookup(snap, run.workflow_name)
        return _Plan(wf, snap.workflow_dirs[wf.name], snap)

    def cancel(self, run_id: str, message: str | None = None) -> None:
        """Cancel a run: at once if it runs in this process (a child run id works too), otherwise by
        writing `cancelling`, which the engine running it notices within about a second. A run
        that never started is marked `cancelled` directly."""
        reason = CancellationReason.user(message)
        with self._lock:
            own = self._active.get(run_id)
            engines = {id(e): e for e, _ in self._active.values()}
        if own is not None:
            engine, token = own
            # The token alone suffices before the engine has picked the run up (it starts by
            # checking it) and after it has finished (then nothing is left to stop).
            token.cancel(reason)
            with contextlib.suppress(WorkflowError):  # not (or no longer) active in the engine
                engine.cancel_run(run_id, reason)
            return
        for engine in engines.values():
            if run_id in engine.active_runs():
                engine.cancel_run(run_id, reason)
                return
        run = self._run_row(run_id)
        if run.status.is_terminal:
            raise WorkflowError(f"run '{run_id}' already {run.status.value}")
        if run.status is RunStatus.CANCELLING:
            return
        error = str(EngineCancelled(reason))
        if run.status is RunStatus.PENDING:
            with self._lock:
                self._plans.pop(run_id, None)
            # Under a borrowed lease: a runner that has just taken the run is asked (below), and
            # a run that ended since the look above keeps its end.
            settled = end_unowned_run(self.store, run_id, error, only_from=RunStatus.PENDING)
            if settled is RunStatus.CANCELLED:
                return
            if settled is not None and settled.is_terminal:
                raise WorkflowError(f"run '{run_id}' already {settled.value}")
        self.store.request_cancel(run_id, error)  # if it ended since the look above, it keeps its end

    def launch(
        self,
        run_id: str,
        db: Path | str,
        *,
        resume: bool = False,
        retry: Mapping[str, Sequence[str]] | None = None,
    ) -> tuple[subprocess.Popen, Path]:
        """Execute a pending run of this workspace, resume one (`resume`) or retry items of one
        (`retry`, with the stored definition) in a background runner: a process of its own
        (`runkon_flow.runner`) that reads `db`, with this host's hooks and executor. How the
        dashboard runs on a database — the run never depends on the dashboard's process — and how
        `hand_over` keeps a run going. Returns the runner process and its log file.

        `RunNeedsThisProcess` (nothing started, nothing changed) when this workspace has plug-ins
        of the host's own: the runner's workspace, built from the folders, would not have them."""
        own = self.own_plugins()
        if own:  # before anything changes: the run stays as it was
            raise RunNeedsThisProcess(run_id, own)
        with self._lock:
            self._plans.pop(run_id, None)  # create_run's plan: the runner reads the run's row
        settings = self.runner_settings
        return spawn_runner(
            db,
            run_id,
            self.dirs,
            resume=resume,
            lease_ttl=int(self.exec_config.lease_ttl_secs),
            hooks=settings.hooks,
            executor=settings.executor,
            ray_address=settings.ray_address,
            retry=retry,
            no_hooks=settings.no_hooks,
        )

    def end_unstarted(self, run_id: str, reason: str) -> RunStatus | None:
        """`end_unstarted_run` on this workspace's store: a run whose start failed is not left
        `pending` (the dashboard's "Run not started")."""
        return end_unstarted_run(self.store, run_id, reason)

    def hand_over(self, run_id: str, db: Path | str) -> tuple[int, Path]:
        """Keep a run this workspace executes going in a background runner, so this process can
        exit (the dashboard's "keep running in the background"): a runner process is started that
        resumes the run as soon as it can take its lease; this engine then stops the run as one
        that lost its lease — in-flight steps are interrupted, no final status is written — and
        lets go of the lease at once. The runner resumes it: completed steps and foreach items are
        not run again, interrupted ones are. Returns the runner's pid and log file."""
        with self._lock:
            own = self._active.get(run_id)
        if own is None:
            raise WorkflowError(f"run '{run_id}' is not running in this workspace")
        run = self._run_row(run_id)
        proc, log_file = self.launch(run_id, db, resume=True)  # RunNeedsThisProcess: nothing stopped
        with self._lock:
            self._handed_over[run_id] = run.owner_token or ""
        engine, token = own
        reason = CancellationReason.of("LeaseLost")
        token.cancel(reason)
        with contextlib.suppress(WorkflowError):
            engine.cancel_run(run_id, reason)
        return proc.pid, log_file

    def run_child_task(
        self, task: ChildTask, *, node: str = "", sinks: Sequence[EventSink] = ()
    ) -> ChildOutcome:
        """Run one foreach child another process created and leased (a remote worker's side,
        runtime/remote_child.py): with the definitions that travel with the task, this
        workspace's agents, scripts and providers, under the task's lease. The child's rows go to
        this workspace's store, its events to the top-level run's stored stream (first one line
        saying which node ran it). It stops itself when its parent is taken over or cancelled."""
        snap = self._snapshot()
        definitions = {
            name: WorkflowDef.from_json(json.loads(text)) for name, text in task.definitions.items()
        }
        definition = definitions[task.workflow_name]
        directory = snap.workflow_dirs.get(definition.name) or (snap.dirs[0] if snap.dirs else Path.cwd())
        writer = (
            StoredEventWriter(self.store, task.top_run_id, max_output_lines=self.stored_output_lines)
            if self.store_events
            else None
        )
        every_sink = (*self._sinks, *sinks, *([writer] if writer is not None else []))
        if node:
            emit_to(every_sink, task.run_id, EngineLog(level="info", message=f"{RAN_ON}{node}"))
        cancellation = CancellationToken()
        if writer is not None and task.parent_run_id == task.top_run_id:
            # The stream is the parent's, held at the generation the task names: fenced by it, so
            # a child still running after another engine took the parent over stores nothing more
            # in that engine's stream (and stops). Deeper down the top run's generation is unknown.
            lost = CancellationReason.of("LeaseLost")
            writer.lease_taken(task.top_run_id, task.parent_generation, lambda: cancellation.cancel(lost))
        stop_watching = watch_parent(self.store, task, cancellation)
        config = dataclasses.replace(
            self.exec_config, shutdown=None, lease_ttl_secs=task.lease_ttl_secs, dry_run=task.dry_run
        )
        settings = RunSettings(
            action_registry=snap.actions,
            item_provider_registry=ItemProviderRegistry(self._providers(directory)),
            script_env_provider=snap.script_env,
            run_ctx=LocalRunContext(self._working_dir or directory, task.run_id, definition.name),
            exec_config=config,
            schema_resolver=snap.schemas,
            event_sinks=every_sink,
        )
        parent = ChildWorkflowContext(
            settings, task.parent_run_id, depth=max(0, task.depth - 1), cancellation=cancellation
        )
        resolver = _LoadedResolver(definitions, {})
        try:
            result = snap.engine.run_child(
                definition,
                ChildRunInput(
                    workflow_run_id=task.run_id,
                    persistence=self.store,
                    depth=task.depth,
                    cancellation=cancellation,
                    child_runner=InProcessChildRunner(snap.engine, resolver, self.store),
                    inputs_override=dict(task.inputs),
                    owner_token=task.owner_token,
                    lease_generation=task.lease_generation,
                ),
                parent,
            )
        finally:
            stop_watching()
            if writer is not None:
                writer.close()
        status = result.status or (RunStatus.COMPLETED if result.all_succeeded else RunStatus.FAILED)
        return ChildOutcome(
            status=status.value,
            all_succeeded=result.all_succeeded,
            error=result.error,
            output=result.final_structured_output,
            output_known=result.output_known,
            duration_ms=result.total_duration_ms,
            node=node,
        )

    def active_runs(self) -> list[str]:
        """Top-level runs executing in this workspace right now."""
        with self._lock:
            return list(self._active)

    # ------------------------------------------------------------------ internals

    def _run_row(self, run_id: str) -> WorkflowRun:
        run = self.store.get_run(run_id)
        if run is None:
            raise WorkflowError(f"no workflow run '{run_id}'")
        return run

    def _plan_from_row(self, run: WorkflowRun) -> _Plan:
        """A run created elsewhere: use the definition it was created with, else the current one."""
        snap = self._snapshot()
        wf = stored_definition(self.store, run)
        if wf is not None:
            directory = snap.workflow_dirs.get(wf.name) or Path(wf.source_path or ".").absolute().parent
            return _Plan(wf, directory, snap)
        wf = self._lookup(snap, run.workflow_name)
        return _Plan(wf, snap.workflow_dirs[wf.name], snap)

    def _stored_plan(self, run: WorkflowRun, children: dict[str, WorkflowDef] | None = None) -> _Plan:
        """The definition stored with the run, and for the workflows it starts the definitions
        stored with its child runs (`children`, when read already): what ran before runs again (a
        workflow the run never started has nothing stored and runs today's file)."""
        plan = self._plan_from_row(run)
        plan.children = self._ran_children(run) if children is None else children
        return plan

    def stored_children(self, run_id: str) -> dict[str, WorkflowDef]:
        """The definitions the workflows run `run_id` started ran with, by name: what they run in
        a retry with the stored definition (`retry` says how each differs from today's file)."""
        return self._ran_children(self._run_row(run_id))

    def _ran_children(self, run: WorkflowRun) -> dict[str, WorkflowDef]:
        """`stored_children` of `run`; for a rerun of the stored definition, also those of the run
        it reruns (and so on back), for the workflows the rerun has not started itself yet: a
        rerun that chose `stored` starts them as the old run ran them, and so does its resume or
        retry (`rerun_definition`). What the rerun itself started comes first (the newest)."""
        found = stored_children(self.store, run)
        seen = {run.id}
        while run.rerun_of and run.rerun_definition == "stored" and run.rerun_of not in seen:
            earlier = self.store.get_run(run.rerun_of)
            if earlier is None:  # deleted since: what the rerun started is all there is
                break
            seen.add(earlier.id)
            found = {**stored_children(self.store, earlier), **found}
            run = earlier
        return found

    def _drive(
        self,
        plan: _Plan,
        run: WorkflowRun,
        sinks: Sequence[EventSink],
        cancellation: CancellationToken | None,
        *,
        resume: bool,
        seen_generation: int | None = None,
        retried_items: int = 0,
        known_items: Mapping[str, list[FanOutItemRow]] | None = None,
    ) -> WorkflowResult:
        snap = plan.snapshot
        token = cancellation or CancellationToken()
        with self._lock:
            if run.id in self._active:
                raise WorkflowError(f"run '{run.id}' is already running in this workspace")
            self._active[run.id] = (snap.engine, token)
        writer = (
            StoredEventWriter(self.store, run.id, max_output_lines=self.stored_output_lines)
            if self.store_events
            else None
        )
        try:
            resolver = plan.resolver()
            if self._child_runner is not None:
                runner = self._child_runner(snap.engine, resolver, self.store)
            elif plan.children:  # the engine's own runner would resolve today's files
                runner = InProcessChildRunner(snap.engine, resolver, self.store)
            else:
                runner = None
            inp = RunInput(
                persistence=self.store,
                child_runner=runner,
                workflow_run_id=run.id,
                workflow_name=plan.definition.name,
                action_registry=snap.actions,
                item_provider_registry=ItemProviderRegistry(self._providers(plan.directory)),
                script_env_provider=snap.script_env,
                run_ctx=LocalRunContext(self._working_dir or plan.directory, run.id, plan.definition.name),
                cancellation=token,
                exec_config=dataclasses.replace(self.exec_config, shutdown=None),
                inputs=dict(run.inputs),
                schema_resolver=snap.schemas,
                event_sinks=[*self._sinks, *sinks, *([writer] if writer is not None else [])],
                seen_generation=seen_generation,
                retried_items=retried_items,
                known_items=known_items,
            )
            if resume:
                return snap.engine.resume_workflow(plan.definition, inp)
            return snap.engine.run_workflow(plan.definition, inp)
        finally:
            if writer is not None:
                writer.close()  # every event of the run is stored before execute/resume returns
            with self._lock:
                handed_to_runner = self._handed_over.pop(run.id, None)
            if handed_to_runner:  # the stopped engine kept the lease: the runner waits for it
                with contextlib.suppress(Exception):
                    self.store.release_lease(run.id, handed_to_runner)
            with self._lock:
                if self._active.get(run.id, (None, None))[1] is token:
                    del self._active[run.id]


# --------------------------------------------------------------------------- helpers


def _continues_stored_retry(run: WorkflowRun) -> bool:
    """Whether resuming `run` continues a retry of the stored definition that never ended: its
    request is on the row and the run has not finished since (a finished retry leaves the run
    failed, cancelled or completed, and a later resume runs today's file like any other; that
    resume marks the request over, `_retry_over`, so its own interruption is not mistaken for
    the retry's)."""
    return not run.status.is_terminal and _stored_retry(run) is not None


def _stored_retry(run: WorkflowRun) -> RetryRequest | None:
    """The run's last retry request when it chose the stored definition."""
    request = RetryRequest.from_json(run.retry_request)
    return request if request is not None and request.definition == "stored" else None


def _by_name(kind: str, plugins: Iterable[Any], name_of: Callable[[Any], str]) -> dict[str, Any]:
    """The host's plug-ins of one kind by the name each gives itself; two of one name are refused
    (which one a run got would depend on the order they were listed in)."""
    found: dict[str, Any] = {}
    for plugin in plugins:
        name = name_of(plugin)
        if not isinstance(name, str) or not name:
            raise ValueError(f"Workspace: a {kind} must name itself with a non-empty string, not {name!r}")
        if name in found:
            raise ValueError(f"Workspace: two {kind}s named '{name}'")
        found[name] = plugin
    return found


def _abs(path: Path | str) -> Path:
    """Absolute and normalised (`a/../b` → `b`) without resolving symlinks, so one directory has
    one spelling."""
    return Path(os.path.abspath(path))


def _signature(dirs: Sequence[Path], extra_files: Iterable[Path]) -> tuple[Any, ...]:
    """(path, mtime, size) of every file a reload reads, so an unchanged tree skips the work."""
    entries: list[tuple[str, int, int]] = []

    def add(path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            entries.append((str(path), -1, -1))
            return
        entries.append((str(path), st.st_mtime_ns, st.st_size))

    for directory in dirs:
        add(directory)
        for folder in (directory, *agent_search_dirs(directory)):
            if not folder.is_dir():
                continue
            add(folder)
            pattern = "*.md" if folder.name == AGENTS_DIR else "*.wf"
            for path in sorted(folder.glob(pattern)):
                add(path)
        add(directory / IDENTITIES_FILE)
    for path in extra_files:
        add(path)
    return tuple(entries)


def _path_labels(wf: WorkflowDef) -> list[str]:
    """Quoted agent paths used by `wf` (calls, parallel calls, on_fail agents)."""
    labels: list[str] = []
    for _node, ref in _agent_refs(wf):
        label = ref.label()
        if "/" in label or label.endswith(".md"):
            labels.append(label)
    return labels


def _agent_refs(wf: WorkflowDef) -> Iterator[tuple[Any, AgentRef]]:
    """(node, agent) of every agent `wf` calls: calls, parallel calls, on_fail agents, in order."""
    for node in walk(list(wf.body) + list(wf.always)):
        if isinstance(node, CallNode):
            yield node, node.agent
        elif isinstance(node, ParallelNode):
            yield from ((node, agent) for agent in node.calls)
        on_fail = getattr(node, "on_fail", None)
        if on_fail is not None and on_fail.kind == "agent":
            yield node, on_fail.value


def _agent_programs(
    wf: WorkflowDef,
    children: Sequence[WorkflowDef],
    brought_by: Mapping[str, CallWorkflowNode | ForEachNode],
    agents: AgentCatalog,
    working_dir: Path,
) -> ScriptCheck:
    """The `command` program of every agent `wf` and the workflows it runs as sub-workflows call
    (calls, parallel calls, on_fail agents), checked as a script's first word is
    (`command_problem`): once per agent file, at its `command` line, belonging to the first step of
    `wf` that calls it — a sub-workflow's is said as `in sub-workflow 'c' of 'wf': …`, with no step
    of `wf` (a run reaches it too, in the parent's working directory). An agent that is missing or
    broken is said elsewhere (the engine's check, with the catalog's reason)."""
    found = ScriptCheck()
    paths = node_paths(wf)
    seen: set[Path] = set()
    for owner in (wf, *children):
        for node, ref in _agent_refs(owner):
            agent = agents.get(ref.label())
            if agent is None or agent.file in seen:
                continue
            seen.add(agent.file)
            problem = command_problem(agent, working_dir)
            if problem is None:
                continue
            if owner is wf:
                located = dataclasses.replace(problem[0], node_path=paths.get(id(node)))
            else:
                said = said_in_sub_workflow(wf, owner.name, problem[0].message, brought_by)
                step_path = _step_path(paths, brought_by, owner.name)
                located = dataclasses.replace(problem[0], message=said, node_path=step_path)
            (found.errors if problem[1] else found.warnings).append(located)
    return found


def _fan_out_children_host_problems(
    engine: Any,
    wf: WorkflowDef,
    children: Sequence[WorkflowDef],
    brought_by: Mapping[str, CallWorkflowNode | ForEachNode],
) -> list[Problem]:
    """The engine's host check (a missing or broken agent, an unknown provider or gate type) of
    the workflows `wf` runs only through a `foreach`: the engine checks `call workflow` children
    and, as engine.md §13 says, not foreach children, which it checks as each item starts — so
    `validate --ready` said ok, the run went on (past its gates) and then every item failed with
    `workflow 'c' failed validation`. Said as a `call workflow` child's are: in the child's file,
    `in sub-workflow 'c' of 'wf': …`, belonging to the step that brings it in."""
    checked = {wf.name}  # what the engine's own check reaches: `call workflow`, at any depth
    by_name = {child.name: child for child in children}
    pending = [wf]
    while pending:
        owner = pending.pop()
        for node in walk([*owner.body, *owner.always]):
            if isinstance(node, CallWorkflowNode) and node.workflow not in checked:
                checked.add(node.workflow)
                if node.workflow in by_name:
                    pending.append(by_name[node.workflow])
    problems: list[Problem] = []
    paths = node_paths(wf)
    for child in children:
        if child.name in checked:
            continue
        try:
            engine.validate(child)
        except ValidationErrors as exc:
            for p in exc.errors:
                if child.source_path and p.location.file in (None, child.source_path):  # the child's own
                    where = dataclasses.replace(p.location, file=child.source_path)
                    p = dataclasses.replace(
                        p,
                        message=said_in_sub_workflow(wf, child.name, p.message, brought_by),
                        location=where,
                    )
                problems.append(dataclasses.replace(p, node_path=_step_path(paths, brought_by, child.name)))
    return problems


def _step_path(
    paths: Mapping[int, str], brought_by: Mapping[str, CallWorkflowNode | ForEachNode], child: str
) -> str | None:
    """The node path of the step that brings sub-workflow `child` in (`Problem.node_path`)."""
    step = brought_by.get(child)
    return paths.get(id(step)) if step is not None else None


def _schemas_of(node: Any) -> list[str]:
    if isinstance(node, (CallNode, DoNode)):
        return [node.output] if node.output else []
    if isinstance(node, ParallelNode):
        return sorted({s for s in [node.output, *node.call_outputs.values()] if s})
    return []


def _snippets_of(node: Any) -> list[str]:
    if isinstance(node, (CallNode, DoNode)):
        return list(node.with_)
    if isinstance(node, ParallelNode):
        return sorted({*node.with_, *(s for extra in node.call_with.values() for s in extra)})
    return []


def _not_said_already(host: list[Problem], language: list[Problem], wf: WorkflowDef) -> list[Problem]:
    """The engine's host problems without those the language rules said already at the same
    `foreach` or `call workflow`: with a loader and the providers, `validate_workflow` reports an
    unknown `over` and a sub-workflow that cannot be loaded (with a did-you-mean), and the engine's
    `no registered ItemProvider` / `sub-workflow could not be loaded` said each a second time, in
    other words. Problems of other nodes, and a sub-workflow's own (placed in its file), stay."""
    paths = node_paths(wf)
    nodes = {path: node for node in walk([*wf.body, *wf.always]) if (path := paths.get(id(node)))}
    said = {(p.node_path, p.location.line, p.location.column) for p in language}
    return [
        p
        for p in host
        if not (
            isinstance(nodes.get(p.node_path or ""), (ForEachNode, CallWorkflowNode))
            # the engine's own (in `wf`'s file), not one placed in a sub-workflow's file
            and p.location.file in (None, wf.source_path or None)
            and (p.node_path, p.location.line, p.location.column) in said
        )
    ]


def _unique(problems: list[Problem], wf: WorkflowDef) -> list[Problem]:
    """Each problem once per place, in order, located in `wf`'s file when it names no file (the
    engine knows positions, not files)."""
    seen: set[tuple[str, str | None, str]] = set()
    unique: list[Problem] = []
    for problem in problems:
        if problem.location.file is None:
            location = dataclasses.replace(problem.location, file=wf.source_path or None)
            problem = dataclasses.replace(problem, location=location)
        key = (problem.location.render(), problem.node_path, problem.text())  # one per place
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique
