"""The tree model (AST → labelled nodes with rolled-up statuses) and the workflow catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

from runkon_flow.dsl.parser import parse_file

from runkon_tui.catalog import Catalog
from runkon_tui.run_view import RunView
from runkon_tui.tree_model import build_tree, node_detail, node_status, run_for_scope
from tests.tui.scenarios import EVENTS, T0, WORKFLOWS

NOW = T0 + 200


def _defs():
    return {p.stem: parse_file(p) for p in WORKFLOWS.glob("*.wf") if p.stem != "broken"}


def test_tree_paths_match_the_engine_node_paths() -> None:
    defs = _defs()
    nodes = build_tree(defs["review-pr"], defs.get)
    flat = {n.path: n for top in nodes for n in top.walk()}
    assert flat["body.0"].label == "script resolve-base"
    assert flat["body.2"].kind == "parallel"
    assert [c.path for c in flat["body.2"].children] == ["body.2.calls.0", "body.2.calls.1", "body.2.calls.2"]
    assert flat["body.3"].label == "foreach review-items"
    assert flat["body.4"].label == "gate human_approval"
    assert flat["always"].kind == "always_group" and flat["always.0"].label == "script notify"


def test_child_workflows_expand_under_their_call_with_a_scope() -> None:
    defs = _defs()
    nodes = build_tree(defs["nightly"], defs.get)
    call = nodes[1].children[0]
    assert call.kind == "call_workflow" and call.path == "body.1.body.0"
    (child,) = call.children
    assert child.label == "review-file"
    assert child.scope == ("body.1.body.0",)
    assert child.uid == "body.1.body.0/body.0"
    assert build_tree(defs["nightly"], None)[1].children[0].children == []


def test_recursive_child_workflows_stop_with_a_note() -> None:
    from runkon_flow.dsl.parser import parse_workflow

    wf = parse_workflow("workflow loop { call workflow loop }")
    (call,) = build_tree(wf, {"loop": wf}.get)
    assert call.children == [] and call.note == "recursive reference"


def test_statuses_roll_up_and_details_show_live_counts() -> None:
    defs = _defs()
    view = RunView.from_jsonl(EVENTS / "foreach_mid_run.jsonl", clock=lambda: NOW)
    nodes = build_tree(defs["review-pr"], defs.get)
    flat = {n.path: n for top in nodes for n in top.walk()}
    run = view.root
    assert node_status(flat["body.2.calls.1"], run) == "failed"
    assert node_status(flat["body.2"], run) == "completed"  # the parallel step itself succeeded
    assert node_status(flat["body.3"], run) == "running"
    assert node_status(flat["body.4"], run) == "pending"
    assert node_status(flat["always"], run) == "pending"
    assert node_detail(flat["body.2"], view, run, NOW).startswith("(3/3 ✗1)")
    assert node_detail(flat["body.3"], view, run, NOW).startswith("33/120 ✗2")  # completed of total
    assert node_detail(flat["body.0"], view, run, NOW) == "0.4s"


def test_loop_and_child_run_statuses() -> None:
    defs = _defs()
    view = RunView.from_jsonl(EVENTS / "failed_run.jsonl", clock=lambda: NOW)
    nodes = build_tree(defs["nightly"], defs.get)
    loop, unless, if_node = nodes
    assert node_detail(loop, view, view.root, NOW) == "iter 2/3"
    assert node_status(loop, view.root) == "completed"
    assert node_status(unless, view.root) == "failed"
    assert node_status(if_node, view.root, run_finished=True) == "pending"
    child_node = unless.children[0].children[0]
    child_run = run_for_scope(view, child_node.scope)
    assert child_run is not None and node_status(child_node, child_run) == "failed"


def test_catalog_lists_broken_files_with_their_position(tmp_path: Path) -> None:
    shutil.copytree(WORKFLOWS, tmp_path / "wf")
    catalog = Catalog([tmp_path / "wf"])
    catalog.reload()
    names = [e.name for e in catalog]
    assert names == ["broken", "nightly", "review-one", "review-pr"]
    broken = catalog.by_name("broken")
    assert broken is not None and broken.broken
    assert broken.location() == "broken.wf:3:14"
    assert "missing required `run` field" in broken.error.message  # type: ignore[union-attr]


def test_a_broken_edit_keeps_the_last_good_definition(tmp_path: Path) -> None:
    shutil.copytree(WORKFLOWS, tmp_path / "wf")
    path = tmp_path / "wf" / "review-one.wf"
    catalog = Catalog([tmp_path / "wf"])
    catalog.reload()
    good = catalog.definition("review-one")
    assert good is not None

    path.write_text("workflow review-one {\n  call \n")
    diff = catalog.reload()
    entry = catalog.by_name("review-one")
    assert diff.broken == [str(path)]
    assert entry is not None and entry.broken and entry.definition == good
    assert entry.location().startswith("review-one.wf:")

    path.write_text("workflow review-one { call a call b }\n")
    diff = catalog.reload()
    assert diff.fixed == [str(path)]
    entry = catalog.by_name("review-one")
    assert entry is not None and not entry.broken and len(entry.definition.body) == 2  # type: ignore[union-attr]

    path.unlink()
    assert catalog.reload().removed == [str(path)]


def test_a_missing_directory_is_listed_not_raised(tmp_path: Path) -> None:
    catalog = Catalog([tmp_path / "nope"])
    catalog.reload()
    (entry,) = list(catalog)
    assert entry.broken and "no such directory" in entry.error.message  # type: ignore[union-attr]


def test_a_finished_parallel_reads_the_same_live_and_reopened() -> None:
    """min_success met with fail_fast off: ✓ with the ✗ count, whether the engine reported the
    parallel step (live) or only its branches are known (reopened from the store)."""
    from runkon_flow.dsl.parser import parse_workflow

    from runkon_tui.run_view import RunState, StepView

    wf = parse_workflow(
        "workflow swarm {\n  parallel {\n    fail_fast = false\n    min_success = 3\n"
        "    call a\n    call b\n    call c\n    call d\n  }\n}"
    )
    (par,) = build_tree(wf, None)
    reopened = RunState("r", "swarm", status="completed")
    for i, status in enumerate(["completed", "completed", "failed", "completed"]):
        path = f"body.0.calls.{i}"
        reopened.steps[path] = StepView(key=path, name="abcd"[i], status=status, node_path=path)
    assert node_status(par, reopened, True) == "completed"
    live = RunState("r", "swarm", status="completed", steps=dict(reopened.steps))
    live.steps["body.0"] = StepView(key="body.0", name="parallel", kind="parallel", status="completed")
    assert node_status(par, live, True) == node_status(par, reopened, True)
    view = RunView()
    assert node_detail(par, view, reopened, NOW) == node_detail(par, view, live, NOW) == "(4/4 ✗1)"

    reopened.steps["body.0.calls.1"].status = "failed"  # only 2 of the 3 required succeeded
    assert node_status(par, reopened, True) == "failed"


def test_a_gates_decision_in_the_tree_keeps_no_escape_sequence_from_its_note() -> None:
    """The tree shows who answered a gate and their note (`approved by bob · note: …`); a note
    given with `runkon-flow approve --note "$(printf '\\033[2J')"` reached the terminal."""
    import dataclasses

    defs = _defs()
    view = RunView.from_jsonl(EVENTS / "foreach_mid_run.jsonl", clock=lambda: NOW)
    nodes = build_tree(defs["review-pr"], defs.get)
    flat = {n.path: n for top in nodes for n in top.walk()}
    run = view.root
    run.steps["body.0"].decision = "approved by bob · note: ship\x1b]0;pwned\x07\x1b[2J it\x9b2J"
    detail = node_detail(dataclasses.replace(flat["body.0"], kind="gate"), view, run, NOW)
    assert detail.startswith("approved by bob · note: ship it")
    assert not any(c in detail for c in "\x1b\x07\x9b"), detail
