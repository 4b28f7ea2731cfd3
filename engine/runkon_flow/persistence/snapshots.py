"""Definition snapshots shared by sibling child runs.

Every run row keeps the definition it was started with (`definition_snapshot`, JSON), so a past
run is drawn as it ran and a resume runs what was started. A foreach's children all run one
definition: the first child row of a definition under a parent run holds the snapshot, and its
siblings hold a reference to that row (`{"same_as_run": "<run id>"}`). With a child workflow of
2 KB, 10,000 items wrote 20 MB of identical text (docs/persistence.md, "Shared definition
snapshots"). Siblings live and die with their parent's tree (`gc` deletes trees whole), so the
row a reference names is there as long as the reference is.
"""

from __future__ import annotations

import json

from runkon_flow.persistence.models import WorkflowRun
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = ["definition_snapshot", "referenced_run", "snapshot_reference"]

_KEY = "same_as_run"
_PREFIX = '{"' + _KEY + '":'


def snapshot_reference(run_id: str) -> str:
    """What a sibling's row stores instead of the snapshot `run_id`'s row holds."""
    return json.dumps({_KEY: run_id})


def referenced_run(snapshot: str | None) -> str | None:
    """The run whose row holds the snapshot, when `snapshot` is a reference."""
    if not snapshot or not snapshot.startswith(_PREFIX):
        return None
    try:
        value = json.loads(snapshot)
    except ValueError:
        return None
    target = value.get(_KEY) if isinstance(value, dict) else None
    return target if isinstance(target, str) else None


def definition_snapshot(store: WorkflowPersistence, run: WorkflowRun) -> str | None:
    """The definition snapshot `run` was started with, read from the sibling it refers to if it
    shares one; None when there is none (or the sibling is gone)."""
    target = referenced_run(run.definition_snapshot)
    if target is None:
        return run.definition_snapshot
    holder = store.get_run(target)
    if holder is None or referenced_run(holder.definition_snapshot) is not None:
        return None  # a reference names a row that holds the snapshot itself, never another one
    return holder.definition_snapshot
