"""Semantic validation of a parsed workflow (dsl.md §9.1) and the script-path checks (§9.2).

The parser only knows the shape of one file; this module answers the questions that need more
context: does every condition refer to a step that can have run by then, does every sub-workflow
exist and get its required inputs, does every `foreach` name a provider that accepts its options,
and do script paths point at executable files. Every problem is collected — a user fixing a file
wants the whole list at once — and each carries the file, line and column of the offending node.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from runkon_flow.dsl.ast import (
    AlwaysNode,
    BoolInputCondition,
    CallNode,
    CallWorkflowNode,
    DoNode,
    DoWhileNode,
    ForEachNode,
    GateNode,
    IfNode,
    ParallelNode,
    ScriptNode,
    StepMarkerCondition,
    UnlessNode,
    WhileNode,
    WorkflowDef,
    node_paths,
    walk,
)
from runkon_flow.dsl.references import bringing_steps, called_workflows, said_in_sub_workflow
from runkon_flow.dsl.shell_text import scan_placeholders
from runkon_flow.dsl.templating import field_placeholder_hint, unknown_placeholders
from runkon_flow.errors import (
    FlowError,
    Problem,
    SourceLocation,
    WfValidationError,
    WorkflowNotFound,
)
from runkon_flow.humanize import did_you_mean

__all__ = [
    "ItemProviderLike",
    "ProviderRegistryLike",
    "ScriptNotFound",
    "ScriptResolver",
    "ValidationReport",
    "WorkflowLoader",
    "as_loader",
    "check_workflow",
    "sub_workflow_notes",
    "top_level_step_keys",
    "validate_script_steps",
    "validate_workflow",
]

WorkflowLoader = Callable[[str], WorkflowDef]
"""`name -> WorkflowDef`; raises (any exception) when the workflow cannot be loaded."""


# --------------------------------------------------------------------------- what validation asks


@runtime_checkable
class ItemProviderLike(Protocol):
    """What validation needs from an item provider (engine.md §3.2).

    Only `supports_ordered` is required. Providers may also offer these optional hooks; when a
    hook is missing validation uses the default given in brackets:

    * `validate_scope(raw_scope: dict[str, str] | None) -> str | None` — an error text, or None
      when the scope is acceptable [call `parse_scope(raw_scope)`; an exception's text is the error].
      A text (or exception) with a `scope_key` attribute is placed at that scope key's value.
    * `scope_warnings(raw_scope: dict[str, str] | None) -> list[str]` [no warnings].
    * `requires_filter() -> bool` [False].
    * `validate_filter(filter: dict[str, str]) -> str | None` [every filter is accepted].

    A hook that raises is reported as an error of that `foreach` (never a traceback).
    """

    def supports_ordered(self) -> bool: ...


class ProviderRegistryLike(Protocol):
    """Anything with `get(name) -> provider | None`: a registry or a plain dict."""

    def get(self, name: str, /) -> Any: ...


def as_loader(source: Any) -> WorkflowLoader | None:
    """Normalise what callers pass as a loader.

    Accepts None, a callable `name -> WorkflowDef`, a `WorkflowResolver` (anything with
    `resolve(name)`), or a mapping of name -> WorkflowDef.
    """
    if source is None:
        return None
    if isinstance(source, Mapping):
        mapping = source

        def from_mapping(name: str) -> WorkflowDef:
            try:
                return mapping[name]
            except KeyError:
                raise WorkflowNotFound(name, did_you_mean(name, [str(k) for k in mapping])) from None

        return from_mapping
    resolve = getattr(source, "resolve", None)
    if callable(resolve):
        return resolve  # type: ignore[no-any-return]
    if callable(source):
        return source  # type: ignore[no-any-return]
    raise TypeError(f"not a workflow loader: {source!r}")


# --------------------------------------------------------------------------- the report


@dataclass
class ValidationReport:
    """All findings of one validation. `ok` iff there is no error; warnings never fail a file."""

    errors: list[Problem] = field(default_factory=list)
    warning_problems: list[Problem] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """The warning texts, as dsl.md §9.1 defines them (positions are in `warning_problems`)."""
        return [w.text() for w in self.warning_problems]

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: ValidationReport) -> None:
        self.errors.extend(other.errors)
        self.warning_problems.extend(other.warning_problems)


def in_file_order(problems: Iterable[Problem], file: str | None = None) -> list[Problem]:
    """`problems` by their place: those without one first, then the workflow file's (`file`, and
    those that name no file) by line, then each other file's (an agent file, a sub-workflow's) by
    its name and line — not one file's lines among another's."""
    own = _resolved(file) if file else None

    def place(problem: Problem) -> tuple[int, str, int, int]:
        where = problem.location
        other = bool(where.file) and own is not None and _resolved(where.file or "") != own
        return int(other), (where.file or "") if other else "", where.line or 0, where.column or 0

    return sorted(problems, key=place)


def _resolved(file: str) -> str:
    try:
        return str(Path(file).resolve())
    except (OSError, RuntimeError):
        return file


def file_warnings(wf: WorkflowDef, file: str | None, warnings: Iterable[Problem]) -> list[Problem]:
    """What is said as a workflow file's warnings, `validate` and `run` alike: the parser's (at the
    workflow's place in `file`), then `warnings` in file order."""
    here = SourceLocation(file, wf.line, wf.column)
    return [Problem(text, None, here) for text in wf.warnings] + in_file_order(warnings, file)


# --------------------------------------------------------------------------- §9.1


def top_level_step_keys(wf: WorkflowDef) -> list[str]:
    """The step keys a caller sees after `call workflow <wf>` (dsl.md §9.1): top-level body only."""
    keys: list[str] = []
    for node in wf.body:
        if isinstance(node, (CallNode, CallWorkflowNode, ScriptNode, ForEachNode)):
            keys.append(node.step_key())
        elif isinstance(node, ParallelNode):
            keys.extend(call.step_key() for call in node.calls)
    return keys


def validate_workflow(
    wf: WorkflowDef,
    *,
    loader: Any = None,
    providers: ProviderRegistryLike | Mapping[str, Any] | None = None,
    valid_targets: Sequence[str] = (),
    script_resolver: Any = None,
) -> ValidationReport:
    """Semantic validation (dsl.md §9.1), plus the script checks of §9.2 when a resolver is given.

    `loader` serves `call workflow` and `foreach` children (see `as_loader` for accepted forms);
    without one, sub-workflows contribute only their own name to the produced set and their
    inputs are not checked. `providers` answers `foreach over = …`; without one the provider
    checks are skipped. An empty `valid_targets` skips the target check.
    """
    report = _SemanticValidator(wf, as_loader(loader), providers, valid_targets).run()
    _check_run_placeholders(wf, report)
    if script_resolver is not None:
        report.errors.extend(validate_script_steps(wf, script_resolver))
    return report


def sub_workflow_notes(wf: WorkflowDef, loader: Any, code: str) -> list[Problem]:
    """The parser's `code` notes (`parser.CALL_TIMEOUT`, …) in the workflows `wf` runs as sub-workflows,
    each at its own file:line:col, said as in that file after `in sub-workflow '<name>' of '<wf>': `: a
    run of `wf` reaches those steps too, so checking `wf` alone must not miss them."""
    problems: list[Problem] = []
    children = called_workflows(wf, loader)
    bringing = bringing_steps(wf, children)
    for child in children:
        paths = node_paths(child)
        for note in child.notes:
            if note.code != code:
                continue
            where = SourceLocation(child.source_path or None, note.line, note.column)
            message = said_in_sub_workflow(wf, child.name, note.message, bringing)
            problems.append(Problem(message, note.hint, where, paths.get(id(note.node))))
    return problems


def _check_run_placeholders(wf: WorkflowDef, report: ValidationReport) -> None:
    """A placeholder in `run` with no safe insertion is an error; one the author quoted although
    values are quoted for them is a warning (docs/engine.md, "Values in `run`")."""
    paths = node_paths(wf)
    for node in _scripts(list(wf.body) + list(wf.always)):
        where = SourceLocation(wf.source_path or None, node.line, node.column)
        path = paths.get(id(node))
        for use in scan_placeholders(node.run):
            at = f" (line {use.line} of `run`)" if "\n" in node.run else ""
            if use.problem is not None:
                report.errors.append(
                    Problem(f"Script step '{node.name}': {use.problem}{at}", use.hint, where, path)
                )
            elif use.redundant_quotes:
                report.warning_problems.append(
                    Problem(
                        f"Script step '{node.name}': `{{{{{use.key}}}}}` is quoted in `run`{at}; values are "
                        "inserted already quoted and arrive byte for byte, so the quotes are not needed",
                        None,
                        where,
                        path,
                    )
                )


def check_workflow(
    wf: WorkflowDef,
    *,
    loader: Any = None,
    providers: ProviderRegistryLike | Mapping[str, Any] | None = None,
    valid_targets: Sequence[str] = (),
    script_resolver: Any = None,
) -> ValidationReport:
    """`validate_workflow`, raising `WfValidationError` (with every problem) when it is not ok."""
    report = validate_workflow(
        wf,
        loader=loader,
        providers=providers,
        valid_targets=valid_targets,
        script_resolver=script_resolver,
    )
    if not report.ok:
        raise WfValidationError(report.errors, file=wf.source_path or None)
    return report


class _SemanticValidator:
    """One pass of the "produced set" analysis over one workflow."""

    def __init__(
        self,
        wf: WorkflowDef,
        loader: WorkflowLoader | None,
        providers: Any,
        valid_targets: Sequence[str],
    ) -> None:
        self.wf = wf
        self.loader = loader
        self.providers = providers
        self.valid_targets = list(valid_targets)
        self.booleans = {i.name for i in wf.inputs if i.input_type == "boolean"}
        self.report = ValidationReport()
        self._loaded: dict[str, WorkflowDef | BaseException] = {}
        self.paths = node_paths(wf)

    # ---- plumbing

    def _where(self, *nodes: Any) -> SourceLocation:
        """The position of the first node that knows one (conditions may lack their own)."""
        for node in nodes:
            if node is not None and getattr(node, "line", None) is not None:
                return SourceLocation(self.wf.source_path or None, node.line, node.column)
        return SourceLocation(self.wf.source_path or None, None, None)

    def _path(self, *nodes: Any) -> str | None:
        """The node path of the first node in the workflow tree (a condition is not one)."""
        return next((self.paths[id(n)] for n in nodes if id(n) in self.paths), None)

    def _error(self, message: str, *nodes: Any, hint: str | None = None) -> None:
        self.report.errors.append(Problem(message, hint, self._where(*nodes), self._path(*nodes)))

    def _warn(self, message: str, *nodes: Any, hint: str | None = None) -> None:
        self.report.warning_problems.append(Problem(message, hint, self._where(*nodes), self._path(*nodes)))

    def _load(self, name: str) -> WorkflowDef | BaseException:
        """Load once per validation; the failure is remembered and reported at each use."""
        if name not in self._loaded:
            assert self.loader is not None
            try:
                self._loaded[name] = self.loader(name)
            except Exception as exc:  # a loader may fail any way; the user sees its text
                self._loaded[name] = exc
        return self._loaded[name]

    # ---- the walk

    def run(self) -> ValidationReport:
        self._parse_notes()
        self._duplicate_inputs()
        self._duplicate_step_names()
        produced: set[str] = set()
        self._walk(self.wf.body, produced)
        self._walk(self.wf.always, produced)  # the spec's copy of P: nothing reads P afterwards
        self._targets()
        return self.report

    def _targets(self) -> None:
        """`meta.targets` words outside `valid_targets`, at the value that lists them; and, host list
        or not, a word that reads as several (`targets = "linux, plan9"`: the spec's one-element
        list, one target named `linux, plan9`) is a warning naming the list it meant."""
        at = self.wf.targets_at
        where = SourceLocation(self.wf.source_path or None, *at) if at is not None else self._where(self.wf)
        for target in self.wf.targets:
            words = [w for w in _TARGET_SEPARATORS.split(target) if w]
            if words and words != [target]:
                what = "a comma" if "," in target else "a space"
                listed = ", ".join(f'"{w}"' for w in words)
                message = f"target '{target}' is one target with {what} in its name: a string is never split"
                hint = f"write targets = [{listed}]" if len(words) > 1 else f'write targets = "{words[0]}"'
                self.report.warning_problems.append(Problem(message, hint, where, None))
        if not self.valid_targets:
            return
        valid = ", ".join(self.valid_targets)
        for target in self.wf.targets:
            if target not in self.valid_targets:
                message = f"Unknown target '{target}' in workflow '{self.wf.name}'. Valid targets: {valid}"
                hint = f"Change '{target}' to one of: {valid}"
                self.report.errors.append(Problem(message, hint, where, None))

    def _walk(self, nodes: Iterable[Any], produced: set[str]) -> None:
        for node in nodes:
            self._visit(node, produced)

    def _visit(self, node: Any, produced: set[str]) -> None:
        if isinstance(node, (CallNode, ScriptNode)):
            produced.add(node.step_key())
        elif isinstance(node, CallWorkflowNode):
            self._call_workflow(node, produced)
        elif isinstance(node, ParallelNode):
            for idx, (step, _marker) in sorted(node.call_if.items(), key=lambda kv: int(kv[0])):
                if step not in produced:
                    call = node.calls[int(idx)] if int(idx) < len(node.calls) else None
                    self._step_not_produced(step, call, node, produced=produced)
            self._same_key_in_parallel(node)
            produced.update(call.step_key() for call in node.calls)
        elif isinstance(node, (IfNode, UnlessNode)):
            # The spec walks a branch on a copy and merges everything back; since the set only
            # grows, walking the body in place is the same result without the copy.
            self._condition(node.condition, node, produced)
            self._walk(node.body, produced)
        elif isinstance(node, WhileNode):
            if node.step not in produced:
                self._step_not_produced(node.step, node, produced=produced)
            self._walk(node.body, produced)
        elif isinstance(node, DoWhileNode):
            self._walk(node.body, produced)
            if node.step not in produced:
                self._step_not_produced(node.step, node, produced=produced)
        elif isinstance(node, (DoNode, AlwaysNode)):
            self._walk(node.body, produced)
        elif isinstance(node, GateNode):
            self._gate(node, produced)
        elif isinstance(node, ForEachNode):
            self._foreach(node)
            self._child_input_placeholders(node.inputs, f"foreach '{node.name}'", node, produced, True)
            produced.add(node.step_key())

    # ---- accepted, but most likely mistakes: warnings, never errors (the spec accepts all of them)

    def _parse_notes(self) -> None:
        """What the parser accepted but noted (unknown option keys, `fail_fast = maybe`, a call
        `timeout` the engine will refuse), at the key or value it is about."""
        file = self.wf.source_path or None
        for note in self.wf.notes:
            where = SourceLocation(file, note.line, note.column)
            path = self.paths.get(id(note.node)) if note.node is not None else None
            self.report.warning_problems.append(Problem(note.message, note.hint, where, path))

    def _duplicate_inputs(self) -> None:
        """dsl.md §5.3: duplicate input names are not detected by the language; one is a slip."""
        first: dict[str, Any] = {}
        for decl in self.wf.inputs:
            earlier = first.setdefault(decl.name, decl)
            if earlier is not decl:
                self._warn(
                    f"input `{decl.name}` is declared twice (first at line {earlier.line}, column "
                    f"{earlier.column})",
                    decl,
                    hint="remove one of them",
                )

    def _duplicate_step_names(self) -> None:
        """Two steps with one step key overwrite each other's result (dsl.md §6.0). Calling one agent
        twice is how a workflow repeats work, and a gate cannot be renamed (§13.10), so only a name
        the author chose (a script or foreach) sharing its key with another step is warned about."""
        first: dict[str, Any] = {}
        for node in _steps(list(self.wf.body) + list(self.wf.always)):
            key = node.step_key()
            earlier = first.setdefault(key, node)
            if earlier is node or not (isinstance(earlier, _NAMED_STEPS) or isinstance(node, _NAMED_STEPS)):
                continue
            self._warn(
                f"step name `{key}` is used twice (first at line {earlier.line}, column {earlier.column}): "
                "the later step's result replaces the earlier one's",
                node,
                hint="give one of them another name",
            )

    def _same_key_in_parallel(self, node: ParallelNode) -> None:
        """One step key twice in a `parallel` block: unlike a repeated `call verify` in sequence (§6.0,
        the later result wins), the two run at once and whichever *ends* last wins, so what a later
        condition or `{{…}}` reads is a matter of timing (and a resumed run cannot tell them apart)."""
        first: dict[str, Any] = {}
        for call in node.calls:
            key = call.step_key()
            earlier = first.setdefault(key, call)
            if earlier is call:
                continue
            self._warn(
                f"`{key}` is called twice in this parallel block (first at line {earlier.line}, column "
                f"{earlier.column}): both run at once and whichever ends last replaces the other's result",
                call,
                node,
                hint="each call of a parallel block needs its own step key: call a copy of the agent under "
                "another name, or call it once",
            )

    def _unknown_child_inputs(
        self, given: Mapping[str, str], child: WorkflowDef, what: str, node: Any
    ) -> None:
        """An input the child does not declare is most likely a misspelt one (the language passes it on)."""
        declared = [decl.name for decl in child.inputs]
        for key in given:
            if key in declared:
                continue
            hint = did_you_mean(key, declared) or (
                f"'{child.name}' declares " + ", ".join(f"`{name}`" for name in declared)
                if declared
                else f"'{child.name}' declares no inputs"
            )
            self._warn(f"{what} '{child.name}' declares no input '{key}'", node, hint=hint)

    def _step_not_produced(self, step: str, *nodes: Any, produced: set[str] | None = None) -> None:
        self._error(
            f"Condition references step '{step}' which has not been produced at this point in the workflow",
            *nodes,
            hint=self._not_produced_hint(step, nodes[-1], produced or set()),
        )

    def _not_produced_hint(self, step: str, node: Any, produced: set[str]) -> str | None:
        """Why `step` has not run yet at `node`, and what to write (the spec gives E3 no hint; the
        message alone sent people looking for a typo that was an order)."""
        if isinstance(node, WhileNode) and any(_step_key_of(n) == step for n in walk(node.body)):
            return (
                f"a `while` tests its condition before the first pass, when `{step}` has not run yet: "
                f"run `{step}` once before the loop, or write `do {{ … }} while {node.step}.{node.marker}`"
            )
        later = next(
            (n for n in walk([*self.wf.body, *self.wf.always]) if _step_key_of(n) == step),
            None,
        )
        if later is not None:
            where = f"at line {later.line}" if later.line is not None else "later in the workflow"
            return f"`{step}` first runs {where}, after this: move the condition below it"
        close = did_you_mean(step, sorted(produced))
        if close:
            return close
        return f"no step is named `{step}`" + (
            f"; the steps before this are {', '.join(f'`{k}`' for k in sorted(produced))}" if produced else ""
        )

    def _condition(self, condition: Any, node: Any, produced: set[str]) -> None:
        if isinstance(condition, StepMarkerCondition):
            if condition.step not in produced:
                self._step_not_produced(condition.step, condition, node, produced=produced)
        elif isinstance(condition, BoolInputCondition) and condition.input not in self.booleans:
            self._error(
                f"Condition references '{condition.input}' which is not a declared boolean input",
                condition,
                node,
                hint=self._bool_input_hint(condition.input, produced),
            )

    def _bool_input_hint(self, name: str, produced: set[str]) -> str:
        """What `if <name>` meant: a boolean input misspelt (`if dyr`), a text input (`if version`) or
        a step without its marker (`if planner`) — the hint said to declare `<name> boolean` for all."""
        spec = f"Declare it in the workflow inputs block: `{name} boolean`"  # dsl.md §9.1, E4
        if any(decl.name == name for decl in self.wf.inputs):
            return f"{spec} — it is declared as a text input; or test a step's marker: `step.marker`"
        if name in produced:
            return f"`{name}` is a step: a condition on it names one of its markers, `{name}.<marker>`"
        return did_you_mean(name, sorted(self.booleans)) or spec

    def _child_input_placeholders(
        self, inputs: Mapping[str, str], what: str, node: Any, produced: set[str], in_foreach: bool
    ) -> None:
        """A child's inputs keep a placeholder with no value as written (§12.1), so `{{itme.id}}`
        or `{{planner.risk}}` reaches the child as that text and no run-time warning says so
        (docs/engine.md): warn here of the two shapes that cannot be right — a prefix close to
        `item`, and a step's name before a FLOW_OUTPUT field."""
        for key, value in inputs.items():
            for name in unknown_placeholders(value, {}):  # every placeholder of the value, once
                prefix, dot, field = name.strip().partition(".")
                if not dot or not field or (in_foreach and prefix == "item"):
                    continue
                if prefix in produced:
                    hint = field_placeholder_hint(field)
                elif in_foreach and did_you_mean(prefix, ["item"]):
                    hint = f"did you mean `{{{{item.{field}}}}}`?"
                else:
                    continue
                self._warn(
                    f"{what}: input `{key}` uses `{{{{{name}}}}}`, which no value will fill: the child"
                    " gets that text as it is written",
                    node,
                    hint=hint,
                )

    def _call_workflow(self, node: CallWorkflowNode, produced: set[str]) -> None:
        self._child_input_placeholders(node.inputs, f"`call workflow {node.workflow}`", node, produced, False)
        if self.loader is not None:
            child = self._load(node.workflow)
            if isinstance(child, BaseException):
                self._error(f"Sub-workflow '{node.workflow}' could not be loaded: {child}", node)
            else:
                for decl in child.inputs:
                    if _is_required(decl) and decl.name not in node.inputs:
                        self._error(
                            f"Sub-workflow '{node.workflow}' requires input '{decl.name}' "
                            "but it was not provided at the call site",
                            node,
                        )
                self._unknown_child_inputs(node.inputs, child, "Sub-workflow", node)
                produced.update(top_level_step_keys(child))
        produced.add(node.workflow)

    def _gate(self, node: GateNode, produced: set[str]) -> None:
        if not node.is_quality_gate:
            return
        if node.source is None or node.threshold is None:
            self._error(
                f"Quality gate '{node.name}' is missing required `source` and `threshold` fields",
                node,
                hint="Add `source = <step>` (a prior step with structured output) and `threshold = 70`",
            )
        elif node.source not in produced:
            self._error(
                f"Quality gate '{node.name}' references source step '{node.source}' "
                "which has not been produced at this point in the workflow",
                node,
                hint=f"Ensure a call or script step named '{node.source}' appears before this gate",
            )

    def _foreach(self, node: ForEachNode) -> None:
        name = node.name
        if self.loader is not None:
            child = self._load(node.workflow)
            if isinstance(child, BaseException):
                self._error(
                    f"foreach '{name}': child workflow '{node.workflow}' could not be loaded: {child}", node
                )
            else:
                for decl in child.inputs:
                    if _is_required(decl) and decl.name not in node.inputs:
                        self._error(
                            f"foreach '{name}': child workflow '{node.workflow}' requires input "
                            f"'{decl.name}' but it is not in the inputs map",
                            node,
                            hint=(
                                f'Add `{decl.name} = "{{{{item.id}}}}"` (or another `{{{{item.*}}}}` '
                                "value, or a literal) to the foreach `inputs` map"
                            ),
                        )
                self._unknown_child_inputs(node.inputs, child, f"foreach '{name}': child workflow", node)
        if self.providers is None:
            self._skip_dependents_check(node)
            return
        provider = self.providers.get(node.over)
        if provider is None:
            self._error(
                f"foreach '{name}': unknown provider '{node.over}' "
                "— no ItemProvider registered for this name",
                node,
                hint=_choices_hint("`over` is one of", node.over, _registered_names(self.providers)),
            )
            return
        raw_scope = None if node.scope is None else dict(node.scope)
        scope_error = _ask(provider, "validate_scope", raw_scope, default=_NO_HOOK)
        if scope_error is _NO_HOOK:
            scope_error = _scope_error_from_parse(provider, node.scope)
        if scope_error:
            # at the scope value it is about (`file = "nope.yaml"`), when the provider names one
            at = (node.scope_at or {}).get(getattr(scope_error, "scope_key", None) or "")
            where = SourceLocation(self.wf.source_path or None, *at) if at else self._where(node)
            self.report.errors.append(
                Problem(f"foreach '{name}': {scope_error}", None, where, self._path(node))
            )
        warnings = _ask(provider, "scope_warnings", raw_scope, default=[])
        if isinstance(warnings, _HookFailure):
            self._error(f"foreach '{name}': {warnings}", node)
        else:
            for text in warnings or []:
                self._warn(f"foreach '{name}': {text}", node)
        if node.ordered and not _truthy(_ask(provider, "supports_ordered", default=False)):
            self._error(
                f"foreach '{name}': ordered = true is not supported by provider '{node.over}'",
                node,
                hint=self._ordered_hint(),
            )
        self._skip_dependents_check(node)
        if not node.filter and _truthy(_ask(provider, "requires_filter", default=False)):
            self._error(
                f"foreach '{name}': `filter` is required when over = {node.over}",
                node,
                hint='Add a filter, e.g. `filter = { status = "failed" }`',
            )
        if node.filter:
            filter_error = _ask(provider, "validate_filter", dict(node.filter), default=None)
            if filter_error:
                self._error(f"foreach '{name}': {filter_error}", node)

    def _skip_dependents_check(self, node: ForEachNode) -> None:
        if node.on_child_fail == "skip_dependents" and not node.ordered:
            self._error(
                f"foreach '{node.name}': on_child_fail = skip_dependents "
                "has no effect without ordered = true",
                node,
                hint="Add `ordered = true`, or use `on_child_fail = continue` or `on_child_fail = halt`",
            )

    def _ordered_hint(self) -> str:
        ordered = [
            name
            for name in _registered_names(self.providers)
            if _truthy(_ask(self.providers.get(name), "supports_ordered", default=False))
        ]
        if ordered:
            return f"Remove `ordered = true`, or change `over` to one of: {', '.join(ordered)}"
        return "Remove `ordered = true` (no registered provider supports ordered dispatch)"


def _step_key_of(node: Any) -> str | None:
    """The key a node's result is kept under, for a condition's `step` (None: the node has none
    a condition can test)."""
    if isinstance(node, (CallNode, ScriptNode, CallWorkflowNode)):
        return node.step_key()
    return None


def _is_required(decl: Any) -> bool:
    """dsl.md §5.3: booleans are never required; the parser already resolved string inputs."""
    return bool(decl.required) and decl.input_type != "boolean"


class _HookFailure(str):
    """The text of an exception raised by a provider hook, reported as that foreach's error (at
    the value of its `scope_key` attribute, when it has one)."""

    scope_key: str | None = None


_NO_HOOK: Any = object()


def _ask(provider: Any, hook: str, *args: Any, default: Any) -> Any:
    """Call an optional provider hook; a missing hook gives `default`, a raising one its text."""
    method = getattr(provider, hook, None)
    if method is None:
        return default
    if not callable(method):  # a plain attribute such as `requires_filter = True`
        return method
    try:
        return method(*args)
    except Exception as exc:
        failure = _HookFailure(str(exc) or type(exc).__name__)
        failure.scope_key = getattr(exc, "scope_key", None)
        return failure


def _truthy(value: Any) -> bool:
    return value is True or (not isinstance(value, _HookFailure) and bool(value))


def _scope_error_from_parse(provider: Any, scope: dict[str, str] | None) -> str | None:
    """Default scope check: the scope is fine iff `parse_scope` accepts it."""
    result = _ask(provider, "parse_scope", None if scope is None else dict(scope), default=None)
    return result if isinstance(result, _HookFailure) else None


def _choices_hint(lead: str, word: str, choices: Sequence[str]) -> str | None:
    """`did you mean `static`? `over` is one of: command, files, lines, static` (None without
    choices): what a misspelt name could have been."""
    if not choices:
        return None
    close = did_you_mean(word, choices)
    listed = f"{lead}: {', '.join(choices)}"
    return f"{close} {listed}" if close else listed


def _registered_names(registry: Any) -> list[str]:
    """Provider names in a registry, for hints. Unknown registry shapes give no names."""
    if isinstance(registry, Mapping):
        return sorted(str(k) for k in registry)
    for attr in ("names", "registered_names", "keys"):
        method = getattr(registry, attr, None)
        if callable(method):
            try:
                return sorted(str(n) for n in method())
            except Exception:
                return []
    return []


# --------------------------------------------------------------------------- §9.2 script checks


class ScriptNotFound(FlowError):
    """A script `run` value that resolves to no acceptable file; `searched` lists what was tried."""

    def __init__(self, run: str, searched: Sequence[str]) -> None:
        self.run = run
        self.searched = list(searched)
        super().__init__(f"'{run}' not found. Searched: {', '.join(self.searched)}")


class ScriptResolver:
    """The reference script search (dsl.md §9.2).

    Order: an absolute `run` is taken as is; otherwise `WD/run`, `WD/.conductor/scripts/run`,
    `R/run`, `R/.conductor/scripts/run`, `K/run`. A relative `run` containing `..` is never
    accepted. Candidates under a `.conductor` folder of their root are accepted as soon as they
    exist; any other candidate must stay inside its root after symlinks are resolved.
    `skills_dir=None` means `$HOME/.claude/skills` (unknown when HOME is unset).
    """

    def __init__(
        self,
        working_dir: str | os.PathLike[str],
        repo_dir: str | os.PathLike[str] | None = None,
        skills_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.working_dir = Path(working_dir)
        self.repo_dir = Path(repo_dir) if repo_dir else None
        if skills_dir is not None:
            self.skills_dir: Path | None = Path(skills_dir)
        else:
            home = os.environ.get("HOME")
            self.skills_dir = Path(home) / ".claude" / "skills" if home else None

    def _candidates(self, run: str) -> list[tuple[Path, Path]]:
        """(root, relative candidate) pairs in search order, without duplicates."""
        rel = Path(run)
        scripts = Path(".conductor") / "scripts" / rel
        pairs: list[tuple[Path, Path]] = [(self.working_dir, rel), (self.working_dir, scripts)]
        if self.repo_dir is not None:
            pairs += [(self.repo_dir, rel), (self.repo_dir, scripts)]
        if self.skills_dir is not None:
            pairs.append((self.skills_dir, rel))
        unique: list[tuple[Path, Path]] = []
        for pair in pairs:
            if all(pair[0] / pair[1] != root / path for root, path in unique):
                unique.append(pair)
        return unique

    def resolve(self, run: str) -> Path:
        """The script file `run` names, or `ScriptNotFound` listing every place searched."""
        if Path(run).is_absolute():
            if Path(run).is_file():
                return Path(run)
            raise ScriptNotFound(run, [run])
        candidates = self._candidates(run)
        searched = [str(root / rel) for root, rel in candidates]
        if self.skills_dir is None:
            searched.append(f"~/.claude/skills/{run}")
        if ".." in run:
            raise ScriptNotFound(run, searched)
        for root, rel in candidates:
            path = root / rel
            if not path.is_file():
                continue
            if rel.parts and rel.parts[0] == ".conductor":
                return path
            try:
                if path.resolve(strict=True).is_relative_to(root.resolve(strict=True)):
                    return path
            except OSError:
                continue
        raise ScriptNotFound(run, searched)


_NAMED_STEPS = (ScriptNode, ForEachNode)
#: What separates words a person meant as several targets inside one string.
_TARGET_SEPARATORS = re.compile(r"[,\s]+")
_STEP_NODES = (CallNode, CallWorkflowNode, ScriptNode, ForEachNode)


def _steps(nodes: Iterable[Any]) -> Iterable[Any]:
    """Every node with a step key, in source order, through block bodies (not parallel calls: they
    are agent calls, which may repeat)."""
    return (node for node in walk(list(nodes)) if isinstance(node, _STEP_NODES))


def _scripts(nodes: Iterable[Any]) -> Iterable[ScriptNode]:
    for node in nodes:
        if isinstance(node, ScriptNode):
            yield node
        elif isinstance(node, (IfNode, UnlessNode, WhileNode, DoWhileNode, DoNode, AlwaysNode)):
            yield from _scripts(node.body)


def validate_script_steps(wf: WorkflowDef, resolver: Any) -> list[Problem]:
    """Every script's `run` must name an existing, executable file (dsl.md §9.2).

    `resolver` is anything with `resolve(run) -> path` raising `ScriptNotFound` (or any error
    whose text is the searched list). Values containing `{{` are skipped.
    """
    problems: list[Problem] = []
    paths = node_paths(wf)
    for node in _scripts(list(wf.body) + list(wf.always)):
        if "{{" in node.run:
            continue
        where = SourceLocation(wf.source_path or None, node.line, node.column)
        path_of_node = paths.get(id(node))
        try:
            path = Path(resolver.resolve(node.run))
        except ScriptNotFound as exc:
            searched = ", ".join(exc.searched)
            message = f"Script step '{node.name}': '{node.run}' not found. Searched: {searched}"
            problems.append(Problem(message, None, where, path_of_node))
            continue
        except Exception as exc:
            message = f"Script step '{node.name}': '{node.run}' not found. Searched: {exc}"
            problems.append(Problem(message, None, where, path_of_node))
            continue
        if os.name != "posix":
            continue
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            problems.append(
                Problem(
                    f"Script step '{node.name}': could not read metadata for '{path}': {exc.strerror or exc}",
                    None,
                    where,
                    path_of_node,
                )
            )
            continue
        if not mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
            problems.append(
                Problem(
                    f"Script step '{node.name}': '{path}' is not executable (mode {stat.S_IMODE(mode):04o})",
                    f"Run: chmod +x {path}",
                    where,
                    path_of_node,
                )
            )
    return problems
