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
import logging
import threading
from collections import OrderedDict, deque

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.persistence.models import WorkflowRun
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = [
    "SharedSnapshots",
    "definition_snapshot",
    "referenced_run",
    "snapshot_reference",
    "stored_children",
    "stored_definition",
]

log = logging.getLogger(__name__)

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


def stored_definition(store: WorkflowPersistence, run: WorkflowRun) -> WorkflowDef | None:
    """The definition `run` was started with; None when it has no snapshot or one that does not
    read (logged: the caller falls back to today's file)."""
    snapshot = definition_snapshot(store, run)
    if not snapshot:
        return None
    try:
        return WorkflowDef.from_json(json.loads(snapshot))
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("run %s: unreadable definition snapshot (%s); using the current file", run.id, exc)
        return None


#: How many child runs `stored_children` reads the children of.
_CHILD_PARENTS = 200
#: Every child row of one parent: a foreach of 10,000 items has 10,000.
_ALL_CHILDREN = 1_000_000


def stored_children(store: WorkflowPersistence, run: WorkflowRun) -> dict[str, WorkflowDef]:
    """The definitions the workflows `run` started ran with, by workflow name: `call workflow`
    and `foreach` children at any depth, each as stored with its newest child run (a retry with
    today's file ran the newest). A workflow the run never started is not here: no definition of
    it was ever stored. Read for a retry with the stored definition, so the children run what
    they ran before (docs/when-things-go-wrong.md, "Which definition the children run").

    A child's own children are read only while a workflow it calls is still unfound: of a
    10,000-item fan-out, the newest item that got as far as its call, not every item."""
    found: dict[str, WorkflowDef] = {}
    todo: deque[tuple[str, WorkflowDef | None]] = deque([(run.id, None)])
    read = 0
    while todo and read < _CHILD_PARENTS:
        parent, calls = todo.popleft()
        if calls is not None and all(name in found for name in calls.workflow_refs()):
            continue
        read += 1
        for child in store.list_runs(limit=_ALL_CHILDREN, parent_run_id=parent):  # newest first
            definition = found.get(child.workflow_name)
            if definition is None:
                definition = stored_definition(store, child)
                if definition is None:
                    continue
                found[child.workflow_name] = definition
            if definition.workflow_refs():
                todo.append((child.id, definition))
    return found


class SharedSnapshots:
    """A child runner's memory of which child row holds the snapshot of each family (a parent run
    and the workflow its children run), for the most recent `kept` parents: a long-lived engine
    runs many. Children that start together may each store the snapshot once: harmless."""

    def __init__(self, kept: int = 256) -> None:
        # family → the reference its later children store (made once, not once per child)
        self._references: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()
        self._kept = kept

    def to_store(self, parent_run_id: str, workflow: str, snapshot: str) -> tuple[str, bool]:
        """What the next child's row stores, and whether it holds the snapshot itself (then say
        `held_by` once the row exists)."""
        reference = self._references.get((parent_run_id, workflow))  # one dict read: no lock per child
        return (snapshot, True) if reference is None else (reference, False)

    def held_by(self, parent_run_id: str, workflow: str, run_id: str) -> None:
        """`run_id`'s row holds the family's snapshot; siblings created from now on refer to it."""
        with self._lock:
            references = self._references
            references.setdefault((parent_run_id, workflow), snapshot_reference(run_id))
            while len(references) > self._kept:
                references.popitem(last=False)
