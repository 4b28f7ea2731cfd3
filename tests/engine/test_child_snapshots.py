"""A foreach's children share one stored definition snapshot: the first child row holds it, its
siblings refer to it (runkon_flow.persistence.snapshots), and every reader still gets the
definition each child ran."""

from __future__ import annotations

import json
from pathlib import Path

from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.persistence.models import NewRun
from runkon_flow.persistence.snapshots import (
    definition_snapshot,
    referenced_run,
    snapshot_reference,
    stored_definition,
)
from runkon_flow.workspace import Workspace

CHILD = """workflow item {
  meta {
    title = "One item"
  }
  inputs { name }
  script note { run = "echo {{name}}" }
  script again { run = "echo {{name}} again" }
}
"""

PARENT = """workflow fan {
  foreach all {
    over = static
    scope = { file = "items.json" }
    max_parallel = 3
    workflow = item
    inputs = { name = "{{item.id}}" }
  }
  call workflow item {
    inputs {
      name = "called"
    }
  }
}
"""


def test_a_fan_outs_children_store_their_definition_once_and_each_reads_it_back(
    store, tmp_path: Path
) -> None:
    home = tmp_path / "wf"
    home.mkdir()
    (home / "item.wf").write_text(CHILD)
    (home / "fan.wf").write_text(PARENT)
    (home / "items.json").write_text(json.dumps(list("abcdefghijkl")))
    ws = Workspace([home], store)
    run_id = ws.create_run("fan", {})
    assert ws.execute(run_id).status == "completed"
    children = store.list_runs(limit=100, parent_run_id=run_id)
    assert len(children) == 13  # 12 items and the called workflow
    whole = [c for c in children if referenced_run(c.definition_snapshot) is None]
    # Children that start at the same moment may each write it; the rest refer to one of them.
    assert 1 <= len(whole) <= 3
    holders = {referenced_run(c.definition_snapshot) for c in children} - {None}
    assert holders <= {c.id for c in whole}
    expected = json.dumps(WorkflowDef.from_json(json.loads(whole[0].definition_snapshot)).to_json())
    for child in children:
        assert child.workflow_title == "One item"
        stored = definition_snapshot(store, child)
        assert (
            stored is not None and json.dumps(WorkflowDef.from_json(json.loads(stored)).to_json()) == expected
        )
        # Resume and the dashboard read it as a definition.
        definition = stored_definition(store, child)
        assert definition is not None and definition.name == "item" and len(definition.body) == 2


def test_a_reference_whose_row_is_gone_reads_as_no_snapshot(store) -> None:
    orphan = store.create_run(NewRun(workflow_name="item", definition_snapshot=snapshot_reference("01NOPE")))
    run = store.get_run(orphan.id)
    assert definition_snapshot(store, run) is None
    assert stored_definition(store, run) is None  # its reader falls back to today's file


def test_stored_children_reads_a_nested_child_from_an_item_that_got_as_far_as_its_call(store) -> None:
    """The newest item child stopped before its `call workflow leaf`; an older one reached it:
    the leaf's stored definition is still found (and the newest definition of each name wins)."""
    from runkon_flow.dsl.parser import parse_workflow
    from runkon_flow.persistence.snapshots import stored_children

    def snap(text: str) -> str:
        return json.dumps(parse_workflow(text).to_json())

    item = 'workflow item {\n  call workflow leaf\n  script s { run = "true" }\n}\n'
    leaf = 'workflow leaf {\n  script hi { run = "echo v1" }\n}\n'
    top = store.create_run(NewRun(workflow_name="fan", definition_snapshot=None))
    older = store.create_run(
        NewRun(
            workflow_name="item",
            parent_run_id=top.id,
            parent_workflow_run_id=top.id,
            definition_snapshot=snap(item),
        )
    )
    store.create_run(
        NewRun(
            workflow_name="leaf",
            parent_run_id=older.id,
            parent_workflow_run_id=older.id,
            definition_snapshot=snap(leaf),
        )
    )
    store.create_run(  # newest: a sibling that never reached its call
        NewRun(
            workflow_name="item",
            parent_run_id=top.id,
            parent_workflow_run_id=top.id,
            definition_snapshot=snapshot_reference(older.id),
        )
    )
    found = stored_children(store, store.get_run(top.id))
    assert sorted(found) == ["item", "leaf"]
    assert found["leaf"].body[0].run == "echo v1"
