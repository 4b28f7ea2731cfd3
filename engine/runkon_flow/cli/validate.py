"""`runkon-flow validate`: syntax, semantic rules, sub-workflow references and cycles of `.wf`
files; with `--ready`, also what `run` would still refuse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from runkon_flow.cli.common import (
    EXIT_USAGE,
    PROG,
    StdoutGuard,
    Target,
    as_named,
    expand_paths,
    print_line,
    read_source,
    render_diagnostic,
)
from runkon_flow.dsl.ast import WorkflowDef, node_paths
from runkon_flow.dsl.loading import load_workflow_dir
from runkon_flow.dsl.parser import CALL_TIMEOUT, parse_workflow
from runkon_flow.dsl.references import find_workflow_cycle, reference_node
from runkon_flow.dsl.script_commands import check_script_commands
from runkon_flow.dsl.validation import file_warnings, in_file_order, sub_workflow_notes, validate_workflow
from runkon_flow.errors import (
    Problem,
    SourceLocation,
    WfError,
    WorkflowNotFound,
)
from runkon_flow.humanize import terminal_json
from runkon_flow.persistence import InMemoryStore
from runkon_flow.plugins.item_providers import default_providers
from runkon_flow.plugins.resolvers import DirectoryWorkflowResolver
from runkon_flow.workspace import Workspace

# --------------------------------------------------------------------------- item providers


def default_provider_registry(base_dir: Path) -> dict[str, Any]:
    """The reference item providers (static, files, lines, command), relative to a workflow dir."""
    return {provider.name(): provider for provider in default_providers(base_dir)}


# --------------------------------------------------------------------------- validate


class _CachingLoader:
    """One directory resolver per workflow directory; each child is parsed once per command.

    A name with no `<name>.wf` is looked for in every `.wf` file of the directory, as `run` and the
    dashboard do (`load_workflow_closure` falls back to `load_workflow_dir`): a callee whose file is
    named differently runs, so `validate` must not call it missing.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.resolver = DirectoryWorkflowResolver(directory)
        self._cache: dict[str, WorkflowDef | Exception] = {}
        self._scanned: dict[str, WorkflowDef] | None = None

    def _declared_elsewhere(self, name: str) -> WorkflowDef | None:
        if self._scanned is None:
            self._scanned = load_workflow_dir([self.directory], strict=False).workflows
        return self._scanned.get(name)

    def __call__(self, name: str) -> WorkflowDef:
        if name not in self._cache:
            try:
                self._cache[name] = self.resolver.resolve(name)
            except WorkflowNotFound as exc:
                self._cache[name] = self._declared_elsewhere(name) or exc
            except Exception as exc:
                self._cache[name] = exc
        found = self._cache[name]
        if isinstance(found, Exception):
            raise found
        return found


def _validate_one(
    target: Target,
    wf: WorkflowDef,
    args: argparse.Namespace,
    loaders: dict[Path, _CachingLoader],
    registries: dict[Path, Any],
    workspaces: dict[Path, Any],
    checked: frozenset[Path] = frozenset(),
) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings for one parsed workflow; `checked` are the files this command checks itself
    (a sub-workflow's warning is said with that file's own, not again for each caller)."""
    loader = loaders.setdefault(target.workflow_dir, _CachingLoader(target.workflow_dir))
    if target.workflow_dir not in registries:
        registries[target.workflow_dir] = args.provider_registry(target.workflow_dir)
    report = validate_workflow(
        wf, loader=loader, providers=registries[target.workflow_dir], valid_targets=args.targets
    )
    errors = list(report.errors)
    warnings = list(report.warning_problems)
    # a call timeout the engine cannot read in a workflow this one calls fails this run too
    found = sub_workflow_notes(wf, loader, CALL_TIMEOUT)
    warnings.extend(
        p for p in found if p.location.file is None or Path(p.location.file).resolve() not in checked
    )
    if args.scripts or args.ready:  # the one script policy (dsl/script_commands.py), as `run` applies it
        scripts = check_script_commands(wf, _working_dir(args, target))
        if args.scripts:
            errors.extend(scripts.errors)
        warnings.extend(scripts.warnings)
    cycle = find_workflow_cycle(wf.name, loader, root=wf)
    if cycle is not None:
        node = reference_node(wf, cycle.chain[1]) if len(cycle.chain) > 1 else None
        where = node if node is not None else wf
        location = SourceLocation(str(target.path), where.line, where.column)
        errors.append(Problem(cycle.message, None, location, node_paths(wf).get(id(node))))
    if args.ready:  # what the language check already said (same node, same words) is not repeated
        said = {_subject(p) for p in errors}
        ready, ready_warnings = _readiness_problems(target, wf, workspaces, args)
        errors.extend(p for p in ready if _subject(p) not in said)
        # and the warnings `run` says before it starts that the language check has not (an agent
        # program not on PATH, docs/agents.md)
        own = target.path.resolve()
        warnings.extend(
            p for p in ready_warnings if p.location.file and Path(p.location.file).resolve() != own
        )
        # a warning `run` makes an error of (a call timeout it cannot read) is said once, as the error
        said = {_subject(p) for p in errors}
        warnings = [p for p in warnings if _subject(p) not in said]
    return in_file_order(errors, str(target.path)), file_warnings(wf, str(target.path), warnings)


def _source(problem: Problem, target: Target, source: str) -> str | None:
    """The text of the file a problem is in (a sub-workflow's, for a problem found there), for the
    line shown under it; None when it cannot be read."""
    file = problem.location.file
    if file is None or Path(file) == target.path:
        return source
    try:
        return read_source(Path(file))
    except WfError:
        return None


def _working_dir(args: argparse.Namespace, target: Target) -> Path:
    """Where the scripts would run: `--working-dir`, else the workflow's directory (as `run` does)."""
    return Path(args.working_dir).absolute() if args.working_dir else target.workflow_dir


def _subject(problem: Problem) -> tuple[int | None, int | None, str | None, str]:
    """A problem with its file left out: both passes name the same node with the same words."""
    where = problem.location
    return where.line, where.column, problem.node_path, problem.text()


def _readiness_problems(
    target: Target, wf: WorkflowDef, workspaces: dict[Path, Any], args: argparse.Namespace
) -> tuple[list[Problem], list[Problem]]:
    """`--ready`: what `runkon-flow run` would still refuse — agents (and their programs), item
    providers, gate types, schemas, snippets and script files as the workflow's directory provides
    them — and the warnings `run` would say before it starts."""

    workspace = workspaces.get(target.workflow_dir)
    if workspace is None:
        workspace = workspaces[target.workflow_dir] = Workspace(
            [target.workflow_dir], InMemoryStore(), working_dir=_working_dir(args, target)
        )
    found, warned = workspace.check(wf.name)

    def named(problems: list[Problem]) -> list[Problem]:
        placed = []
        for problem in problems:
            where = problem.location
            if where.file:
                file = as_named(where.file, [target.workflow_dir])
                problem = dataclasses.replace(problem, location=dataclasses.replace(where, file=file))
            placed.append(problem)
        return placed

    return named(found), named(warned)


def cmd_validate(args: argparse.Namespace) -> int:
    skipped: list[str] = []  # arguments that are not workflows: said, after every workflow given
    targets = expand_paths(args.paths, skipped)
    out, err = StdoutGuard(), sys.stderr  # `validate DIR | head -1`: the status is still the check's
    loaders: dict[Path, _CachingLoader] = {}
    registries: dict[Path, Any] = {}
    workspaces: dict[Path, Any] = {}
    failed = False
    documents: list[Any] = []
    checked = frozenset(target.path.resolve() for target in targets)
    for target in targets:
        source: str | None = None
        try:
            source = read_source(target.path)
            wf = parse_workflow(source, str(target.path))
        except WfError as exc:
            failed = True
            location = SourceLocation(str(target.path), exc.line, exc.column)
            print_line(err, render_diagnostic(location, exc.detail, source))
            continue
        errors, warnings = _validate_one(target, wf, args, loaders, registries, workspaces, checked)
        for problem in errors:
            print_line(
                err, render_diagnostic(problem.location, problem.text(), _source(problem, target, source))
            )
        for problem in warnings:
            text = _source(problem, target, source)
            print_line(err, render_diagnostic(problem.location, problem.text(), text, severity="warning"))
        failed = failed or bool(errors)
        if args.json:
            documents.append(wf.to_json())
        elif not errors:
            out.print(f"{target.path}: ok")
    if args.json:
        single = len(args.paths) == 1 and bool(targets) and targets[0].explicit_file
        payload = (documents[0] if documents else None) if single else documents
        if payload is not None:
            out.print(terminal_json(json.dumps(payload, indent=2, ensure_ascii=False)))
    for problem in skipped:  # last, beside the exit status they explain
        print_line(err, f"{PROG} validate: error: {problem}")
    # A workflow with errors is the finding (1); else an argument that is not one is still a
    # command-line mistake a script must see (2). Docs: docs/cli.md, "validate".
    return 1 if failed else EXIT_USAGE if skipped else 0


def _parse_targets(text: str) -> list[str]:
    targets = [t.strip() for t in text.split(",") if t.strip()]
    if not targets:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as worktree,repo")
    return targets


def add_validate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check .wf files: syntax, semantic rules, sub-workflow references and cycles",
        description=(
            "Check workflow files. A directory means every .wf file in it; references "
            "(`call workflow`, `foreach … workflow =`) resolve in the directory of each file. "
            "Prints `PATH: ok` per valid file, and each problem as file:line:col with the source line."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=".wf files or directories of them")
    p.add_argument("--json", action="store_true", help="print the parsed workflow(s) as canonical JSON")
    p.add_argument(
        "--targets",
        type=_parse_targets,
        default=[],
        metavar="LIST",
        help="comma-separated valid `meta.targets` words (default: not checked)",
    )
    p.add_argument(
        "--scripts",
        action="store_true",
        help="also check that the command each script `run` starts with can be run: a ./path must be an "
        "executable file, a bare word a command on PATH (docs/validation.md, Script checks)",
    )
    p.add_argument(
        "--working-dir",
        metavar="DIR",
        help="the directory scripts run in, for --scripts and --ready (default: the workflow's directory)",
    )
    p.add_argument(
        "--ready",
        action="store_true",
        help="also check what `run` checks before it starts: agents, item providers, gate types, "
        "output schemas, prompt snippets and script files, as the workflow's directory provides them",
    )
    p.set_defaults(handler=cmd_validate, provider_registry=default_provider_registry)
