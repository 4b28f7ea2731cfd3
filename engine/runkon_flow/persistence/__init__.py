"""Stores for runs, steps, fan-out items and gate approvals."""

from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import (
    DeletedRuns,
    FanOutItemRow,
    FanOutItemStatus,
    FanOutItemUpdate,
    GateApprovalState,
    ItemLineage,
    NewEvent,
    NewRun,
    NewStep,
    RetryRequest,
    RunStatus,
    StepRole,
    StepStatus,
    StepUpdate,
    StoredEvent,
    WorkflowRun,
    WorkflowRunStep,
    new_id,
    now_rfc3339,
)
from runkon_flow.persistence.paths import default_db_path
from runkon_flow.persistence.protocol import GateApprovalStore, WorkflowPersistence
from runkon_flow.persistence.sqlite import SqliteStore

__all__ = [
    "DeletedRuns",
    "FanOutItemRow",
    "FanOutItemStatus",
    "FanOutItemUpdate",
    "GateApprovalState",
    "GateApprovalStore",
    "InMemoryStore",
    "ItemLineage",
    "NewEvent",
    "NewRun",
    "NewStep",
    "RetryRequest",
    "RunStatus",
    "SqliteStore",
    "StepRole",
    "StepStatus",
    "StepUpdate",
    "StoredEvent",
    "WorkflowPersistence",
    "WorkflowRun",
    "WorkflowRunStep",
    "default_db_path",
    "new_id",
    "now_rfc3339",
]
