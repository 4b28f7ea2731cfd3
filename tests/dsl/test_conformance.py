"""Validation-level conformance on real third-party workflows (../shared/conformance, EXPECTED.md).

Every corpus file must parse, pass semantic validation with the corpus folder as its workflow
directory and the reference host's targets, pass cycle/depth detection, and show the facts that
EXPECTED.md lists. (Per-file body shapes are checked by the parser's own conformance test.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runkon_flow.dsl.ast import WorkflowDef, walk
from runkon_flow.dsl.parser import parse_file
from runkon_flow.dsl.references import find_workflow_cycle
from runkon_flow.dsl.validation import top_level_step_keys, validate_workflow
from runkon_flow.plugins.resolvers import DirectoryWorkflowResolver

from tests.corpus import CONFORMANCE_DIR, needs_corpus

CONFORMANCE = CONFORMANCE_DIR
HOST_TARGETS = ["worktree", "ticket", "repo", "pr", "workflow_run"]

pytestmark = needs_corpus

# (name, body, always, total_nodes, kinds used anywhere, inputs, workflow refs, targets, group, longest chain)
# inputs: (name, type, required, default)
EXPECTED: dict[str, dict[str, Any]] = {
    "iterate-pr.wf": dict(
        name="iterate-pr", body=1, always=0, total=16,
        kinds={"do_while", "call_workflow", "if", "call", "script"},
        inputs=[], refs=["lint-fix", "rebase-worktree", "review-pr"],
        targets=["worktree"], group="Development", chain=2,
    ),
    "lint-fix.wf": dict(
        name="lint-fix", body=1, always=0, total=4,
        kinds={"do_while", "script", "if", "call"},
        inputs=[], refs=[], targets=["worktree"], group="Development", chain=1,
    ),
    "qualify-ticket-comment.wf": dict(
        name="qualify-ticket-comment", body=3, always=0, total=3,
        kinds={"call", "script"},
        inputs=[("ticket_id", "string", True, None)], refs=[],
        targets=["ticket"], group="Analysis", chain=1,
    ),
    "qualify-ticket.wf": dict(
        name="qualify-ticket", body=2, always=0, total=6,
        kinds={"call", "do_while", "script", "if", "gate"},
        inputs=[("ticket_id", "string", True, None)], refs=[],
        targets=["worktree"], group="Analysis", chain=1,
    ),
    "rebase-worktree.wf": dict(
        name="rebase-worktree", body=2, always=0, total=7,
        kinds={"script", "if", "call", "unless"},
        inputs=[], refs=[], targets=["worktree"], group="Development", chain=1,
    ),
    "review-pr.wf": dict(
        name="review-pr", body=5, always=0, total=11,
        kinds={"script", "parallel", "call"},
        inputs=[("scope", "string", False, "full")], refs=[],
        targets=["pr", "worktree"], group="Review", chain=1,
    ),
    "ticket-to-pr.wf": dict(
        name="ticket-to-pr", body=9, always=0, total=21,
        kinds={"if", "call_workflow", "call", "script", "unless", "gate"},
        inputs=[
            ("ticket_id", "string", True, None),
            ("qualify", "boolean", False, None),
            ("auto_merge", "boolean", False, None),
        ],
        refs=["iterate-pr", "lint-fix", "qualify-ticket", "rebase-worktree"],
        targets=["worktree"], group="Development", chain=3,
    ),
}  # fmt: skip


def load(file_name: str) -> WorkflowDef:
    return parse_file(CONFORMANCE / file_name)


def longest_chain(name: str, resolver: DirectoryWorkflowResolver) -> int:
    """Workflows in the longest reference chain starting at `name` (the corpus has no cycles)."""
    refs = resolver.resolve(name).workflow_refs()
    return 1 + max((longest_chain(ref, resolver) for ref in refs), default=0)


def test_the_corpus_holds_exactly_the_files_expected_md_describes() -> None:
    assert sorted(p.name for p in CONFORMANCE.glob("*.wf")) == sorted(EXPECTED)


@pytest.mark.parametrize("file_name", sorted(EXPECTED))
def test_corpus_file_parses_without_warnings(file_name: str) -> None:
    wf = load(file_name)
    assert wf.warnings == []
    assert wf.trigger == "manual"


@pytest.mark.parametrize("file_name", sorted(EXPECTED))
def test_corpus_file_validates_with_no_errors_and_no_warnings(file_name: str) -> None:
    report = validate_workflow(
        load(file_name),
        loader=DirectoryWorkflowResolver(CONFORMANCE),
        providers={},
        valid_targets=HOST_TARGETS,
    )
    assert [p.render() for p in report.errors] == []
    assert report.warnings == []


@pytest.mark.parametrize("file_name", sorted(EXPECTED))
def test_corpus_file_passes_cycle_and_depth_detection(file_name: str) -> None:
    wf = load(file_name)
    resolver = DirectoryWorkflowResolver(CONFORMANCE)
    assert find_workflow_cycle(wf.name, resolver, root=wf) is None
    assert longest_chain(wf.name, resolver) == EXPECTED[file_name]["chain"]


@pytest.mark.parametrize("file_name", sorted(EXPECTED))
def test_corpus_file_matches_the_expected_facts(file_name: str) -> None:
    facts = EXPECTED[file_name]
    wf = load(file_name)
    assert wf.name == facts["name"] == Path(file_name).stem
    assert (len(wf.body), len(wf.always)) == (facts["body"], facts["always"])
    assert wf.top_level_steps() == facts["body"] + facts["always"]
    assert wf.total_nodes() == facts["total"]
    assert {node.type for node in walk(list(wf.body) + list(wf.always))} == facts["kinds"]
    assert [(i.name, i.input_type, i.required, i.default) for i in wf.inputs] == facts["inputs"]
    assert wf.workflow_refs() == facts["refs"]
    assert (wf.targets, wf.group) == (facts["targets"], facts["group"])


def test_iterate_pr_depends_on_the_step_keys_its_sub_workflows_export() -> None:
    """`review-aggregator` only exists through review-pr's top-level body: without a loader it is an E3."""
    wf = load("iterate-pr.wf")
    report = validate_workflow(wf, valid_targets=HOST_TARGETS)
    assert [p.message for p in report.errors] == [
        "Condition references step 'review-aggregator' which has not been produced "
        "at this point in the workflow"
    ]
    assert report.errors[0].location.line is not None


def test_sub_workflows_export_exactly_their_top_level_step_keys() -> None:
    assert top_level_step_keys(load("rebase-worktree.wf")) == ["check-mergeability"]
    assert top_level_step_keys(load("review-pr.wf")) == [
        "resolve-pr-base",
        "detect-file-types",
        "review-architecture",
        "review-dry-abstraction",
        "review-security",
        "review-performance",
        "review-error-handling",
        "review-test-coverage",
        "review-aggregator",
        "submit-review",
    ]


def test_ticket_to_pr_needs_its_boolean_inputs_declared_as_booleans() -> None:
    wf = load("ticket-to-pr.wf")
    wf.inputs = [i for i in wf.inputs if i.name != "auto_merge"]
    report = validate_workflow(wf, loader=DirectoryWorkflowResolver(CONFORMANCE))
    assert [p.message for p in report.errors] == [
        "Condition references 'auto_merge' which is not a declared boolean input"
    ]
