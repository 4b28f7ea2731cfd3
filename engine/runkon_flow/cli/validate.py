"""`runkon-flow` — the headless command line.

Each subcommand is one `add_<name>_parser(subparsers)` function that declares its arguments and
sets `handler=<function(args) -> exit code>`; registering it is one line in `SUBCOMMANDS`. Handlers
print results on stdout and diagnostics on stderr, and return an exit code:
0 success, 1 the files/run had problems, 2 the command line was wrong.

A user's mistake never produces a traceback: `UsageError` means exit 2, any `FlowError` escaping a
handler is printed as one line with exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from runkon_flow import __version__
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.formatter import format_workflow
from runkon_flow.dsl.lexer import comments
from runkon_flow.dsl.loading import WorkflowDirError, list_workflow_files
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.dsl.references import find_workflow_cycle, reference_node
from runkon_flow.dsl.validation import ScriptResolver, validate_workflow
from runkon_flow.errors import FlowError, Problem, SourceLocation, WfError
from runkon_flow.plugins.item_providers import default_providers
from runkon_flow.plugins.resolvers import DirectoryWorkflowResolver

__all__ = [
    "SUBCOMMANDS",
    "UsageError",
    "as_named",
    "build_parser",
    "main",
    "read_source",
    "render_diagnostic",
]

PROG = "runkon-flow"


class UsageError(FlowError):
    """The command line itself is wrong (unknown path, bad option value): exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main()` always returns a status."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().rstrip()}")


# --------------------------------------------------------------------------- shared helpers


def render_diagnostic(
    location: SourceLocation,
    message: str,
    source: str | None,
    *,
    severity: str | None = None,
) -> str:
    """`file:line:col: message`, then the offending source line and a caret under the column."""
    label = f"{severity}: " if severity else ""
    lines = [f"{location.render()}: {label}{message}"]
    if source is None or location.line is None:
        return "\n".join(lines)
    source_lines = source.split("\n")
    if not 1 <= location.line <= len(source_lines):
        return "\n".join(lines)
    text = source_lines[location.line - 1].rstrip("\r")
    gutter = str(location.line)
    lines.append(f" {gutter} | {text}")
    if location.column is not None and location.column >= 1:
        pad = "".join("\t" if ch == "\t" else " " for ch in text[: location.column - 1])
        pad += " " * max(0, location.column - 1 - len(text))
        lines.append(f" {' ' * len(gutter)} | {pad}^")
    return "\n".join(lines)


def _print(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")


def read_source(path: Path) -> str:
    """The file's text (UTF-8, exactly as stored); `WfError` (`cannot read file: …`) if it cannot
    be read — the wording every command uses for an unreadable `.wf` file."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise WfError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise WfError(f"cannot read file: not valid UTF-8 ({exc.reason})", file=str(path)) from None


def as_named(file: str, dirs: Sequence[Path]) -> str:
    """A workflow file as the user named it: under the directory (`--dir`, WORKFLOW's or FILE's
    folder) it was found in, spelled the way that directory was typed (`wf/typo.wf`,
    `../bad/syntax.wf`); a file outside them keeps its own path."""
    real = Path(file).resolve()
    for directory in dirs:
        with contextlib.suppress(ValueError):
            return str(directory / real.relative_to(directory.resolve()))
    return file


@dataclass(frozen=True)
class _Target:
    """One `.wf` file named on the command line, with the directory its references resolve in."""

    path: Path
    workflow_dir: Path
    explicit_file: bool


def _expand_paths(raw_paths: Sequence[str]) -> list[_Target]:
    """Files stay files; a directory means every `.wf` in it; duplicates are dropped.
    Raises `UsageError` for bad paths."""
    targets: list[_Target] = []
    for raw in raw_paths:
        path = Path(raw)
        if path.is_dir():
            try:
                files = list_workflow_files(path)
            except WorkflowDirError as exc:
                raise UsageError(str(exc)) from None
            if not files:
                raise UsageError(f"no .wf files in directory {raw}")
            targets.extend(_Target(f, path, False) for f in files)
        elif path.exists():
            targets.append(_Target(path, path.parent, True))
        else:
            raise UsageError(f"no such file or directory: {raw}")
    unique: dict[Path, _Target] = {}
    for target in targets:  # a file named twice (or also through its directory) is handled once
        unique.setdefault(target.path.resolve(), target)
    return list(unique.values())


# --------------------------------------------------------------------------- item providers


def default_provider_registry(base_dir: Path) -> dict[str, Any]:
    """The reference item providers (static, files, lines, command), relative to a workflow dir."""
    return {provider.name(): provider for provider in default_providers(base_dir)}


# --------------------------------------------------------------------------- validate


class _CachingLoader:
    """One directory resolver per workflow directory; each child is parsed once per command."""

    def __init__(self, directory: Path) -> None:
        self.resolver = DirectoryWorkflowResolver(directory)
        self._cache: dict[str, WorkflowDef | Exception] = {}

    def __call__(self, name: str) -> WorkflowDef:
        if name not in self._cache:
            try:
                self._cache[name] = self.resolver.resolve(name)
            except Exception as exc:
                self._cache[name] = exc
        found = self._cache[name]
        if isinstance(found, Exception):
            raise found
        return found


def _validate_one(
    target: _Target,
    wf: WorkflowDef,
    args: argparse.Namespace,
    loaders: dict[Path, _CachingLoader],
    registries: dict[Path, Any],
    workspaces: dict[Path, Any],
) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings for one parsed workflow."""
    loader = loaders.setdefault(target.workflow_dir, _CachingLoader(target.workflow_dir))
    if target.workflow_dir not in registries:
        registries[target.workflow_dir] = args.provider_registry(target.workflow_dir)
    script_resolver = None
    if args.scripts:
        working_dir = Path(args.working_dir) if args.working_dir else target.workflow_dir
        script_resolver = ScriptResolver(working_dir, args.repo_dir or working_dir, args.skills_dir)
    report = validate_workflow(
        wf,
        loader=loader,
        providers=registries[target.workflow_dir],
        valid_targets=args.targets,
        script_resolver=script_resolver,
    )
    errors = list(report.errors)
    cycle = find_workflow_cycle(wf.name, loader, root=wf)
    if cycle is not None:
        node = reference_node(wf, cycle.chain[1]) if len(cycle.chain) > 1 else None
        where = node if node is not None else wf
        errors.append(
            Problem(cycle.message, None, SourceLocation(str(target.path), where.line, where.column))
        )
    if args.ready:  # what the language check already said (same place, same subject) is not repeated
        said = {_subject(p) for p in errors}
        errors.extend(p for p in _readiness_problems(target, wf, workspaces) if _subject(p) not in said)
    errors.sort(key=lambda p: (p.location.line or 0, p.location.column or 0))
    warnings = [Problem(w, None, SourceLocation(str(target.path), wf.line, wf.column)) for w in wf.warnings]
    return errors, warnings + report.warning_problems


def _subject(problem: Problem) -> tuple[int | None, int | None, str]:
    """A problem's place and what it is about (`Script step 's'`), whatever the details say."""
    return problem.location.line, problem.location.column, problem.message.split(":", 1)[0]


def _readiness_problems(target: _Target, wf: WorkflowDef, workspaces: dict[Path, Any]) -> list[Problem]:
    """`--ready`: what `runkon-flow run` would still refuse — agents, item providers, gate types,
    schemas, snippets and script files as the workflow's directory provides them."""
    from runkon_flow.persistence import InMemoryStore
    from runkon_flow.workspace import Workspace

    workspace = workspaces.get(target.workflow_dir)
    if workspace is None:
        workspace = workspaces[target.workflow_dir] = Workspace([target.workflow_dir], InMemoryStore())
    problems = []
    for problem in workspace.validate(wf.name):
        where = problem.location
        if where.file:
            named = as_named(where.file, [target.workflow_dir])
            problem = dataclasses.replace(problem, location=dataclasses.replace(where, file=named))
        problems.append(problem)
    return problems


def cmd_validate(args: argparse.Namespace) -> int:
    targets = _expand_paths(args.paths)
    out, err = sys.stdout, sys.stderr
    loaders: dict[Path, _CachingLoader] = {}
    registries: dict[Path, Any] = {}
    workspaces: dict[Path, Any] = {}
    failed = False
    documents: list[Any] = []
    for target in targets:
        source: str | None = None
        try:
            source = read_source(target.path)
            wf = parse_workflow(source, str(target.path))
        except WfError as exc:
            failed = True
            location = SourceLocation(str(target.path), exc.line, exc.column)
            _print(err, render_diagnostic(location, exc.message, source))
            continue
        errors, warnings = _validate_one(target, wf, args, loaders, registries, workspaces)
        for problem in errors:
            _print(err, render_diagnostic(problem.location, problem.text(), source))
        for problem in warnings:
            _print(err, render_diagnostic(problem.location, problem.text(), source, severity="warning"))
        failed = failed or bool(errors)
        if args.json:
            documents.append(wf.to_json())
        elif not errors:
            _print(out, f"{target.path}: ok")
    if args.json:
        single = len(targets) == 1 and targets[0].explicit_file
        payload = (documents[0] if documents else None) if single else documents
        if payload is not None:
            _print(out, json.dumps(payload, indent=2, ensure_ascii=False))
    return 1 if failed else 0


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
        "--scripts", action="store_true", help="also check that script `run` paths exist and are executable"
    )
    p.add_argument(
        "--working-dir", metavar="DIR", help="script search root (default: the workflow's directory)"
    )
    p.add_argument("--repo-dir", metavar="DIR", help="second script search root (default: the working dir)")
    p.add_argument("--skills-dir", metavar="DIR", help="last script search root (default: ~/.claude/skills)")
    p.add_argument(
        "--ready",
        action="store_true",
        help="also check what `run` checks before it starts: agents, item providers, gate types, "
        "output schemas, prompt snippets and script files, as the workflow's directory provides them",
    )
    p.set_defaults(handler=cmd_validate, provider_registry=default_provider_registry)


# --------------------------------------------------------------------------- fmt


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file's content without ever leaving it half-written; keeps its permissions."""
    real = path.resolve()
    mode = real.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_fmt(args: argparse.Namespace) -> int:
    targets = _expand_paths(args.paths)
    out, err = sys.stdout, sys.stderr
    failed = changed = False
    for target in targets:
        path = target.path
        source: str | None = None
        try:
            source = read_source(path)
            wf = parse_workflow(source, str(path))
            formatted = format_workflow(wf, comments(source))
        except WfError as exc:
            failed = True
            location = SourceLocation(str(path), exc.line, exc.column)
            _print(err, render_diagnostic(location, exc.message, source))
            _print(err, f"{path}: left unchanged")
            continue
        if formatted == source:
            continue
        if parse_workflow(formatted, str(path)) != wf:
            failed = True
            _print(err, f"{path}: left unchanged: formatting would change its meaning (a formatter bug)")
            continue
        changed = True
        if args.check:
            _print(out, f"would reformat {path}")
            continue
        try:
            _write_atomically(path, formatted)
        except OSError as exc:
            failed = True
            _print(err, f"{path}: cannot write: {exc.strerror or exc}")
            continue
        _print(out, f"reformatted {path}")
    return 1 if failed or (args.check and changed) else 0


def add_fmt_parser(sub: Any) -> None:
    p = sub.add_parser(
        "fmt",
        help="rewrite .wf files in the canonical layout",
        description=(
            "Rewrite .wf files in the canonical layout (only files whose text changes are touched). "
            "Comments are kept, each on its own line before the item that followed it. "
            "A file that does not parse is reported and left alone."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=".wf files or directories of them")
    p.add_argument("--check", action="store_true", help="only report files that would change (exit 1 if any)")
    p.set_defaults(handler=cmd_fmt)


# --------------------------------------------------------------------------- wiring

SUBCOMMANDS: dict[str, Callable[[Any], None]] = {
    "validate": add_validate_parser,
    "fmt": add_fmt_parser,
}
"""name -> function adding that subcommand's parser (which sets `handler`). Add new commands here."""


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog=PROG, description="Run and check runkon-flow workflows (.wf files).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for add_parser in SUBCOMMANDS.values():
        add_parser(sub)
    return parser


def _silence_stdout() -> None:
    """After the reader went away, point stdout at /dev/null so the interpreter's final flush
    does not print a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _options_before_command(argv: list[str]) -> None:
    """`runkon-flow --db X runs` reads `X` as the command; say where options go instead."""
    at = next((i for i, word in enumerate(argv) if word in SUBCOMMANDS), None)
    early = [w for w in argv[:at] if w.startswith("-") and w not in ("-h", "--help", "--version")]
    if at is not None and early:
        command = argv[at]
        moved = " ".join([command, *argv[:at], *argv[at + 1 :]])
        raise UsageError(f"options go after the command: {PROG} {moved}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `runkon-flow` console script; returns the exit status."""
    parser = build_parser()
    try:
        _options_before_command(list(sys.argv[1:] if argv is None else argv))
        args = parser.parse_args(argv)
    except UsageError as exc:
        _print(sys.stderr, f"{PROG}: error: {exc}")
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except UsageError as exc:
        _print(sys.stderr, f"{PROG} {args.command}: error: {exc}")
        return 2
    except FlowError as exc:
        _print(sys.stderr, f"{PROG} {args.command}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _print(sys.stderr, f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `runkon-flow validate dir | head -1`
        _silence_stdout()
        return 1


import runkon_flow.cli_run  # noqa: E402, F401 - registers run/resume/cancel/runs/show/approve/reject/replay

if __name__ == "__main__":  # pragma: no cover
    # `python -m runkon_flow.cli`: use the imported module, where cli_run registered its commands.
    from runkon_flow.cli import main as _main

    sys.exit(_main())
