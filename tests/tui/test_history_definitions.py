"""Which definition the dashboard draws a past run's tree from: the one the run was started
with (its own snapshot or the one its foreach sibling holds), and today's file only when no
stored one reads."""

from __future__ import annotations

import json

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.persistence import InMemoryStore
from runkon_flow.persistence.models import NewRun
from runkon_flow.persistence.snapshots import snapshot_reference

from runkon_tui.history import definition_of

THEN = parse_workflow('workflow item {\n  script a { run = "echo a" }\n  script b { run = "echo b" }\n}\n')
TODAY = parse_workflow('workflow item {\n  script c { run = "echo c" }\n}\n')


def _today(name: str) -> WorkflowDef | None:
    return TODAY if name == "item" else None


def test_an_item_that_refers_to_its_siblings_snapshot_is_drawn_as_it_ran_not_as_the_file_is_today() -> None:
    store = InMemoryStore()
    holder = store.create_run(NewRun(workflow_name="item", definition_snapshot=json.dumps(THEN.to_json())))
    reference = snapshot_reference(holder.id)
    sibling = store.create_run(NewRun(workflow_name="item", definition_snapshot=reference))
    drawn = definition_of(store, store.get_run(sibling.id), _today)
    assert drawn is not None and [node.name for node in drawn.body] == ["a", "b"]


def test_an_item_whose_snapshot_is_gone_is_drawn_from_todays_file() -> None:
    store = InMemoryStore()
    orphan = store.create_run(NewRun(workflow_name="item", definition_snapshot=snapshot_reference("01NOPE")))
    drawn = definition_of(store, store.get_run(orphan.id), _today)
    assert drawn is TODAY
    assert definition_of(store, store.get_run(orphan.id), None) is None
