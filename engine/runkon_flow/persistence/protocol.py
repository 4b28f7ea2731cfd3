"""The persistence protocol (engine.md §6.2). Every store — in-memory, SQLite, and later
PostgreSQL — implements exactly this; the engine talks to nothing else."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from runkon_flow.persistence.models import (
    FanOutItemRow,
    FanOutItemStatus,
    FanOutItemUpdate,
    GateApprovalState,
    NewRun,
    NewStep,
    RunStatus,
    StepUpdate,
    WorkflowRun,
    WorkflowRunStep,
)


@runtime_checkable
class GateApprovalStore(Protocol):
    def get_gate_approval(self, step_id: str) -> GateApprovalState: ...

    def approve_gate(
        self, step_id: str, approved_by: str, feedback: str | None, selections: list[str] | None
    ) -> None: ...

    def reject_gate(self, step_id: str, rejected_by: str, feedback: str | None) -> None: ...


@runtime_checkable
class WorkflowPersistence(GateApprovalStore, Protocol):
    def create_run(self, new_run: NewRun) -> WorkflowRun: ...

    def get_run(self, run_id: str) -> WorkflowRun | None: ...

    def list_runs(self, limit: int = 500, parent_run_id: str | None = "") -> list[WorkflowRun]:
        """Newest first. `parent_run_id=""` → top-level runs only; None → all runs."""
        ...

    def list_active_runs(self, statuses: list[RunStatus]) -> list[WorkflowRun]: ...

    def update_run_status(
        self, run_id: str, status: RunStatus, result_summary: str | None, error: str | None
    ) -> None: ...

    def set_waiting_blocked_on(self, run_id: str, blocked_on: dict) -> None: ...

    def insert_step(self, new_step: NewStep) -> str: ...

    def update_step(self, step_id: str, update: StepUpdate) -> None: ...

    def get_steps(self, run_id: str) -> list[WorkflowRunStep]: ...

    def get_step(self, step_id: str) -> WorkflowRunStep | None: ...

    def insert_fan_out_item(
        self, step_run_id: str, item_type: str, item_id: str, item_ref: str, context: dict[str, str]
    ) -> str: ...

    def insert_fan_out_items(
        self, step_run_id: str, items: list[tuple[str, str, str, dict[str, str]]]
    ) -> list[str]:
        """Batch form of `insert_fan_out_item` (one transaction); tuples are (type, id, ref, context)."""
        ...

    def update_fan_out_item(self, item_id: str, update: FanOutItemUpdate) -> None: ...

    def batch_update_fan_out_items(self, updates: list[tuple[str, FanOutItemUpdate]]) -> None: ...

    def get_fan_out_items(
        self, step_run_id: str, status_filter: FanOutItemStatus | None = None
    ) -> list[FanOutItemRow]: ...

    def acquire_lease(self, run_id: str, token: str, ttl_seconds: int) -> int | None: ...

    def release_lease(self, run_id: str, token: str) -> None: ...

    def is_run_cancelled(self, run_id: str) -> bool: ...
