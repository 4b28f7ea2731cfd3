"""`LocalRunContext`: the RunContext a local host (CLI, dashboard, tests) hands the engine.

It carries what a run needs from its host and nothing else: where scripts and agent commands run
(`working_dir`), the run's identity, and host-injected variables (which override workflow inputs
in the variable map, engine.md §12.2). Immutable, so one instance can be shared by every thread of
a run and by its child runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class LocalRunContext:
    """A plain-value RunContext. `variables` are injected into every step's variable map."""

    __slots__ = ("_parent_run_id", "_run_id", "_variables", "_workflow_name", "_working_dir")

    def __init__(
        self,
        working_dir: Path | str,
        run_id: str = "",
        workflow_name: str = "",
        variables: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        self._working_dir = Path(working_dir)
        self._run_id = run_id
        self._workflow_name = workflow_name
        self._variables: dict[str, str] = dict(variables or {})
        self._parent_run_id = parent_run_id

    # ---- RunContext protocol (engine.md §3.4)

    def injected_variables(self) -> dict[str, str]:
        return dict(self._variables)

    def working_dir(self) -> Path:
        return self._working_dir

    def working_dir_str(self) -> str:
        return str(self._working_dir)

    def get(self, key: str) -> str | None:
        return self._variables.get(key)

    def run_id(self) -> str:
        return self._run_id

    def workflow_name(self) -> str:
        return self._workflow_name

    def parent_run_id(self) -> str | None:
        return self._parent_run_id

    # ---- conveniences for hosts

    def for_run(self, run_id: str, workflow_name: str, parent_run_id: str | None = None) -> LocalRunContext:
        """The same host context (directory, variables) bound to a particular run."""
        return LocalRunContext(self._working_dir, run_id, workflow_name, self._variables, parent_run_id)

    def with_variables(self, extra: Mapping[str, str]) -> LocalRunContext:
        """A copy whose injected variables also contain `extra` (later wins)."""
        return LocalRunContext(
            self._working_dir,
            self._run_id,
            self._workflow_name,
            {**self._variables, **extra},
            self._parent_run_id,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalRunContext):
            return NotImplemented
        return (
            self._working_dir,
            self._run_id,
            self._workflow_name,
            self._variables,
            self._parent_run_id,
        ) == (other._working_dir, other._run_id, other._workflow_name, other._variables, other._parent_run_id)

    def __hash__(self) -> int:
        return hash((self._working_dir, self._run_id, self._workflow_name))

    def __repr__(self) -> str:
        return (
            f"LocalRunContext(working_dir={str(self._working_dir)!r}, run_id={self._run_id!r}, "
            f"workflow_name={self._workflow_name!r}, variables={self._variables!r}, "
            f"parent_run_id={self._parent_run_id!r})"
        )
