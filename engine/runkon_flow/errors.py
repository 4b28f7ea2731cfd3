"""Every error runkon_flow raises on purpose.

Two families share one root, `FlowError`:

* `WfError` and its subclasses are the *language* errors (lexing, parsing, semantic validation).
  They carry the file, line and column so a user can jump to the mistake. Their `str()` keeps the
  reference implementation's message prefixes (`Lexer error in …`, `Parse error in …`; dsl.md §1:
  tools grep for them) and names the place as `file:line:col`, so wherever the text ends up (a
  step's error, a log) it still points at the mistake.
* `EngineError` and its subclasses are the *runtime* errors of engine.md §13. Their `str()` is the
  exact text the engine writes into `step_error`, `result_text` and the run's `error` column.
  (`EngineCancelled` lives in `runkon_flow.cancellation`, with the reason it carries: this module is
  the bottom of the engine and imports nothing of it.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


class FlowError(Exception):
    """Root of every error runkon_flow raises deliberately."""


# --------------------------------------------------------------------------- language errors


@dataclass(frozen=True)
class SourceLocation:
    """A 1-based position in a `.wf` file; `file` is the path as the user gave it."""

    file: str | None = None
    line: int | None = None
    column: int | None = None

    def render(self) -> str:
        """`file:line:col` with whatever parts are known."""
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True)
class Problem:
    """One validation finding. `hint` is printed as ` (hint: …)` after the message (dsl.md §9.1).

    `node_path` names the workflow node the problem belongs to, in the engine's step addressing
    (`body.2`, `body.1.body.0`, `body.3.calls.1`; see `dsl.ast.node_paths`), or None for a problem
    of the whole workflow (a reference cycle, a bad `meta` target). A problem found inside a
    sub-workflow belongs to the `call workflow` node that brings it in."""

    message: str
    hint: str | None = None
    location: SourceLocation = field(default_factory=SourceLocation)
    node_path: str | None = None

    def text(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message

    def render(self) -> str:
        """`file:line:col: message (hint: …)` — the form the CLI prints."""
        return f"{self.location.render()}: {self.text()}"


def in_sub_workflow(
    name: str, caller: str, message: str, called_at: int | None = None, *, by_foreach: bool = False
) -> str:
    """How a problem found in sub-workflow `name` of `caller` is said (placed in the
    sub-workflow's file): the engine's host check, the parser's notes, the agent-program and
    foreach-children checks. `called_at` is the line of `caller`'s file whose step brings it in —
    a `call workflow` (`called at line 3`) or, `by_foreach`, a foreach that runs it per item
    (`run by foreach at line 4`): the file the problem is placed in does not say which step of
    `caller` reaches it."""
    if called_at is None:
        called = ""
    elif by_foreach:
        called = f" (run by foreach at line {called_at})"
    else:
        called = f" (called at line {called_at})"
    return f"in sub-workflow '{name}' of '{caller}'{called}: {message}"


class WfError(FlowError):
    """A user's mistake in a `.wf` file. Never shown as a traceback."""

    prefix = "Workflow error in"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        #: The message as printed after `file:line:col:` (validate, the dashboard's problems): the
        #: message itself, or, for the spec's `Unexpected character '#' at line 3, col 5`, that
        #: message without the position the prefix already gives (`Unexpected character '#'`);
        #: then ` (hint: …)` when there is a `hint` (which `str()`, the spec's text, leaves out).
        self.detail = detail or message
        self._names_place = self.detail != message  # the message says line and column itself
        if hint:
            self.detail = f"{self.detail} (hint: {hint})"
        self.location = SourceLocation(file, line, column)
        super().__init__(str(self))

    @property
    def file(self) -> str | None:
        return self.location.file

    @property
    def line(self) -> int | None:
        return self.location.line

    @property
    def column(self) -> int | None:
        return self.location.column

    def __str__(self) -> str:
        if self._names_place:  # the message names its own place: the spec's form, as is
            return f"{self.prefix} {self.location.file or '<input>'}: {self.message}"
        return f"{self.prefix} {self.location.render()}: {self.message}"


class WfLexError(WfError):
    prefix = "Lexer error in"


class WfParseError(WfError):
    prefix = "Parse error in"


class WfValidationError(WfError):
    """Semantic validation failed; `problems` holds every finding, not just the first."""

    prefix = "Validation error in"

    def __init__(self, problems: list[Problem], *, file: str | None = None) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else Problem("invalid workflow")
        super().__init__(
            "; ".join(p.text() for p in self.problems) or first.text(),
            file=file or first.location.file,
            line=first.location.line,
            column=first.location.column,
        )

    def __str__(self) -> str:
        """Every problem at its own place: the first one's position would mislabel the others."""
        placed = (
            Problem(
                p.message,
                p.hint,
                SourceLocation(p.location.file or self.file, p.location.line, p.location.column),
            )
            for p in self.problems
        )
        return (
            f"{self.prefix} " + "; ".join(p.render() for p in placed) if self.problems else super().__str__()
        )


# --------------------------------------------------------------------------- engine errors


class EngineError(FlowError):
    """engine.md §13. `str()` is the canonical text written to the store."""

    def __str__(self) -> str:  # pragma: no cover - overridden by every variant
        return self.args[0] if self.args else type(self).__name__


class PersistenceError(EngineError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"persistence error: {self.message}"


class StoreUnavailable(PersistenceError):
    """The run database cannot record anything now: a server lost for longer than its outage
    window (at once when it has none), or a SQLite file that takes no writes (its disk full,
    read-only, an I/O error). Until it can, nothing more of a run can be recorded; what was
    stored stays, so the run is resumed then rather than failed now (docs/persistence.md)."""


#: How a run row that stopped for want of a run database begins its `error` (`stopped_for_store`).
STORE_STOPPED = "stopped: the run database could record nothing more"


def stopped_for_store(exc: StoreUnavailable) -> str:
    """What a run's row says (its `error`, its status left unfinished) when the run stopped because
    the run database could record nothing more and then took this one write after all."""
    return (
        f"{STORE_STOPPED} ({exc.message}); the run stays as it was stored — resume it when the "
        "database works again"
    )


class NoRunDatabase(PersistenceError):
    """A run database opened only to read or continue runs holds none: a PostgreSQL database
    without runkon's tables (a SQLite file that does not exist is found before opening). Nothing
    was created — a mistyped URL must not look like an empty history."""


class WorkflowError(EngineError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"workflow error: {self.message}"


class WorkflowNotFound(EngineError):
    """`workflow not found: <name>`, with `(did you mean `x`?)` when the resolver knew a close name."""

    def __init__(self, name: str, suggestion: str | None = None) -> None:
        self.name = name
        self.suggestion = suggestion
        super().__init__(name)

    def __str__(self) -> str:
        if self.suggestion:
            return f"workflow not found: {self.name} ({self.suggestion})"
        return f"workflow not found: {self.name}"


class AlreadyOwned(EngineError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(run_id)

    def __str__(self) -> str:
        return f"workflow run already owned by another engine: {self.run_id}"


class ValidationErrors(EngineError):
    """`FlowEngine.validate` found problems; all of them are in `errors`."""

    def __init__(self, errors: list[Problem]) -> None:
        self.errors = list(errors)
        super().__init__(self.errors)

    def __str__(self) -> str:
        return "\n".join(e.text() for e in self.errors)


class WorkflowInvalid(WorkflowError, ValidationErrors):
    """A run refused before it started because the engine cannot run its workflow (nothing is
    written, no events): `run_workflow`, `resume_workflow` and the child entry points. `str()` is
    the spec's `EngineError.Workflow` text (engine.md §13: `workflow '<name>' failed validation:`
    and each problem's text, one a line), which is also what a foreach item that fails this way
    records. Being a `ValidationErrors` too, `errors` holds the problems themselves, each at its
    place — `Problem.render()` is `file:line:col: message (hint: …)` — so a host catches one type
    from `FlowEngine.validate` and from a run, and can point at the line to fix."""

    def __init__(self, workflow: str, errors: list[Problem]) -> None:
        self.workflow = workflow
        self.errors = list(errors)
        lines = "\n".join(p.text() for p in self.errors)
        self.message = f"workflow '{workflow}' failed validation:\n{lines}"
        Exception.__init__(self, self.message)  # not the bases': each would take its own argument

    def __str__(self) -> str:
        return WorkflowError.__str__(self)

    def __reduce__(self) -> tuple[type[WorkflowInvalid], tuple[str, list[Problem]]]:
        return (type(self), (self.workflow, self.errors))
