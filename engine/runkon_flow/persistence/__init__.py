"""Stores for runs, steps, fan-out items and gate approvals.

The two stores are imported on first use (`InMemoryStore`, `SqliteStore` by module `__getattr__`):
importing the row models, the protocol or the paths — as the dashboard does before its first
frame — does not load the store code, its schema and `sqlite3`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runkon_flow.persistence.models import (
    DeletedRuns,
    FanOutItemRow,
    FanOutItemStatus,
    FanOutItemUpdate,
    Fence,
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

if TYPE_CHECKING:
    from runkon_flow.persistence.memory import InMemoryStore
    from runkon_flow.persistence.sqlite import SqliteStore

_STORES = {"InMemoryStore": "runkon_flow.persistence.memory", "SqliteStore": "runkon_flow.persistence.sqlite"}


def __getattr__(name: str) -> Any:
    module = _STORES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DeletedRuns",
    "FanOutItemRow",
    "FanOutItemStatus",
    "FanOutItemUpdate",
    "Fence",
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
