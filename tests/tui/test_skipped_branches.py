"""A step that never ran in a run that completed — a branch not taken — shows `⊘` skipped, and
so does its block; it used to keep `·` (pending), which on a finished run read as "still to
come" (review-swarm's `if lead-review.needs_changes` after an approving review). In a failed run
such steps stay pending: a resume may still run them."""

from __future__ import annotations

from runkon_flow.events import LoopIteration, RunCompleted, RunStarted

from runkon_tui.tree_model import build_tree, node_status
from runkon_tui.widgets.dep_tree import DependencyTree
from tests.tui import scenarios
from tests.tui.conftest import feed, make_app


def completed_dry_nightly() -> scenarios.Script:
    """nightly with `dry` set: the loop runs once, `unless dry` and `if build.has_docs` are not
    taken, the run completes."""
    s = scenarios.Script(run_id="01HZZNIGHTLYDRY00000000000")
    s.emit(RunStarted(workflow_name="nightly", inputs={"dry": "true"}))
    s.emit(LoopIteration(node_path="body.0", step="test", marker="failing", iteration=0))
    s.step_run("body.0.body.0", "build", output=["built"])
    s.step_run("body.0.body.1", "test", "script", output=["ok"])
    s.emit(RunCompleted(succeeded=True))
    return s


async def test_branches_not_taken_in_a_completed_run_show_skipped() -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        feed(app, completed_dry_nightly().events)
        await pilot.pause()
        tree = app.screen.query_one(DependencyTree)
        rows = {
            str(node.label).split(" ", 1)[1].split("  ")[0]: str(node.label).split(" ", 1)[0]
            for node in tree.nodes_by_uid.values()
        }
        assert rows["build"] == "✓" and rows["script test"] == "✓"
        assert rows["do … while test.failing"] == "✓"
        assert rows["unless dry"] == "⊘" and rows["workflow review-one"] == "⊘"
        assert rows["review-file"] == "⊘"  # in the workflow the call did not start
        assert rows["if build.has_docs"] == "⊘" and rows["publish-docs"] == "⊘"


def test_steps_not_reached_in_a_failed_run_stay_pending() -> None:
    app = make_app()
    defs = app.catalog
    view = app.view
    feed(app, scenarios.failed_run().events)
    nightly = defs.definition("nightly")
    assert nightly is not None
    if_node = build_tree(nightly, defs.definition)[2]
    assert node_status(if_node, view.root, run_finished=True) == "pending"
    assert node_status(if_node.children[0], view.root, run_finished=True) == "pending"
