"""The real third-party workflows parse into exactly the shapes EXPECTED.md describes.

The corpus lives outside the repository (../shared/conformance beside the checkout); when it is absent
these tests are skipped with a visible reason, or fail under CI
(tests/corpus.py). Validation-level conformance is covered by test_conformance.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from runkon_flow.dsl import format_workflow, parse_file, parse_workflow
from runkon_flow.dsl.ast import (
    AlwaysNode,
    BoolInputCondition,
    CallNode,
    CallWorkflowNode,
    DoNode,
    DoWhileNode,
    ForEachNode,
    GateNode,
    IfNode,
    ParallelNode,
    ScriptNode,
    UnlessNode,
    WhileNode,
)

from tests.corpus import CONFORMANCE_DIR, needs_corpus

CORPUS = CONFORMANCE_DIR


def outline(nodes: list[Any], depth: int = 0) -> list[str]:
    """One line per node with the facts EXPECTED.md lists (non-default options only)."""
    lines: list[str] = []
    for node in nodes:
        pad = "  " * depth
        if isinstance(node, CallNode):
            text = f"call {node.agent.value}"
            if node.agent.kind != "name":
                text += f" ({node.agent.kind})"
            if node.output is not None:
                text += f" output={node.output}"
            if node.retries:
                text += f" retries={node.retries}"
            if node.as_identity is not None:
                text += f" as={node.as_identity}"
        elif isinstance(node, CallWorkflowNode):
            text = f"call_workflow {node.workflow}"
            if node.inputs:
                text += f" inputs={node.inputs}"
        elif isinstance(node, (IfNode, UnlessNode)):
            cond = node.condition
            what = cond.input if isinstance(cond, BoolInputCondition) else f"{cond.step}.{cond.marker}"
            text = f"{node.type} {what}"
        elif isinstance(node, (WhileNode, DoWhileNode)):
            text = f"{node.type} {node.step}.{node.marker} max={node.max_iterations}"
            text += f" on_max_iter={node.on_max_iter}"
            if node.stuck_after is not None:
                text += f" stuck_after={node.stuck_after}"
        elif isinstance(node, ScriptNode):
            text = f"script {node.name} run={node.run}"
            if node.retries:
                text += f" retries={node.retries}"
            if node.as_identity is not None:
                text += f" as={node.as_identity}"
            if node.env:
                text += f" env={node.env}"
        elif isinstance(node, GateNode):
            text = f"gate {node.gate_type} timeout={node.timeout_secs} on_timeout={node.on_timeout}"
            if node.as_identity is not None:
                text += f" as={node.as_identity}"
            if node.prompt is not None:
                text += " prompt"
        elif isinstance(node, ParallelNode):
            text = f"parallel {len(node.calls)} calls"
        elif isinstance(node, (DoNode, AlwaysNode, ForEachNode)):  # not used by the corpus
            text = node.type
        else:  # pragma: no cover
            raise AssertionError(node)
        lines.append(pad + text)
        if isinstance(node, (IfNode, UnlessNode, WhileNode, DoWhileNode, DoNode, AlwaysNode)):
            lines.extend(outline(node.body, depth + 1))
    return lines


S = ".conductor/scripts/"
FBB = "{'FEATURE_BASE_BRANCH': '{{feature_base_branch}}'}"

EXPECTED: dict[str, dict[str, Any]] = {
    "iterate-pr.wf": {
        "name": "iterate-pr",
        "title": "Iterate on PR Feedback",
        "targets": ["worktree"],
        "group": "Development",
        "inputs": [],
        "total_nodes": 16,
        "body": [
            "do_while push.pushed_new_commits max=10 on_max_iter=fail",
            "  call_workflow rebase-worktree",
            "  if rebase-worktree.pulled_new_commits",
            "    call_workflow lint-fix",
            "  call_workflow review-pr inputs={'scope': 'incremental'}",
            "  if review-aggregator.has_blocking_findings",
            "    call triage-reviews as=developer",
            "    if triage-reviews.has_to_address",
            "      call address-reviews as=developer",
            "      call verify",
            "      if verify.has_failures",
            "        call address-reviews retries=1 as=developer",
            "        call verify",
            f"      script fmt-fix run={S}fmt-fix.sh",
            "      call_workflow lint-fix",
            f"  script push run={S}push.sh as=developer",
        ],
        "refs": ["lint-fix", "rebase-worktree", "review-pr"],
    },
    "lint-fix.wf": {
        "name": "lint-fix",
        "title": "Lint & Fix",
        "targets": ["worktree"],
        "group": "Development",
        "inputs": [],
        "total_nodes": 4,
        "body": [
            "do_while analyze-lint.has_lint_errors max=3 on_max_iter=fail",
            f"  script analyze-lint run={S}analyze-lint.sh env={FBB}",
            "  if analyze-lint.has_lint_errors",
            "    call lint-fix-impl",
        ],
        "refs": [],
    },
    "qualify-ticket-comment.wf": {
        "name": "qualify-ticket-comment",
        "title": "Qualify Ticket (Comment)",
        "targets": ["ticket"],
        "group": "Analysis",
        "inputs": [("ticket_id", "string", True, None)],
        "total_nodes": 3,
        "body": [
            "call fetch-ticket-context",
            "call assess-ticket-readiness",
            f"script comment-ticket-assessment run={S}comment-ticket-assessment.sh env="
            "{'PRIOR_CONTEXTS': '{{prior_contexts}}', 'PRIOR_CONTENT': '{{prior_context}}', "
            "'TICKET_URL': '{{ticket_url}}', 'TICKET_SOURCE_ID': '{{ticket_source_id}}'}",
        ],
        "refs": [],
    },
    "qualify-ticket.wf": {
        "name": "qualify-ticket",
        "title": "Qualify Ticket",
        "targets": ["worktree"],
        "group": "Analysis",
        "inputs": [("ticket_id", "string", True, None)],
        "total_nodes": 6,
        "body": [
            "call fetch-ticket-context",
            "do_while assess-ticket-readiness.has_open_questions max=3 on_max_iter=fail",
            "  call assess-ticket-readiness",
            f"  script apply-qualification-label run={S}apply-qualification-label.sh env="
            "{'TICKET_URL': '{{ticket_url}}', 'PRIOR_OUTPUT': '{{prior_context}}'}",
            "  if assess-ticket-readiness.has_open_questions",
            "    gate human_review timeout=259200 on_timeout=fail prompt",
        ],
        "refs": [],
    },
    "rebase-worktree.wf": {
        "name": "rebase-worktree",
        "title": "Rebase Worktree",
        "targets": ["worktree"],
        "group": "Development",
        "inputs": [],
        "total_nodes": 7,
        "body": [
            f"script check-mergeability run={S}check-mergeability.sh",
            "if check-mergeability.has_conflicts",
            f"  script sync-with-base run={S}sync-with-base.sh env={FBB}",
            "  if sync-with-base.has_conflicts",
            "    call resolve-conflicts",
            "  unless sync-with-base.is_up_to_date",
            f"    script push run={S}push-rebased.sh as=developer",
        ],
        "refs": [],
    },
    "review-pr.wf": {
        "name": "review-pr",
        "title": "Review Pull Request",
        "targets": ["pr", "worktree"],
        "group": "Review",
        "inputs": [("scope", "string", False, "full")],
        "total_nodes": 11,
        "body": [
            f"script resolve-pr-base run={S}resolve-pr-base.sh retries=1",
            f"script detect-file-types run={S}detect-file-types.sh env="
            + "{'BASE_BRANCH': '{{base_branch}}'}",
            "parallel 6 calls",
            "call review-aggregator output=review-aggregator retries=1",
            f"script submit-review run={S}submit-review.sh as=reviewer env="
            "{'PRIOR_OUTPUT': '{{prior_output}}', 'PR_NUMBER': '{{pr_number}}', 'DRY_RUN': '{{dry_run}}', "
            "'TICKET_SOURCE_ID': '{{ticket_source_id}}', 'CONDUCTOR_REPO': '{{repo_name}}'}",
        ],
        "refs": [],
    },
    "ticket-to-pr.wf": {
        "name": "ticket-to-pr",
        "title": "Ticket to Pull Request",
        "targets": ["worktree"],
        "group": "Development",
        "inputs": [
            ("ticket_id", "string", True, None),
            ("qualify", "boolean", False, None),
            ("auto_merge", "boolean", False, None),
        ],
        "total_nodes": 21,
        "body": [
            "if qualify",
            "  call_workflow qualify-ticket inputs={'ticket_id': '{{ticket_id}}'}",
            "call plan output=task-plan",
            "call implement retries=2 as=developer",
            "call verify",
            "if verify.has_failures",
            "  call implement retries=1 as=developer",
            "  call verify",
            "call_workflow lint-fix",
            f"script fmt-fix run={S}fmt-fix.sh",
            f"script push-and-pr run={S}push-and-pr.sh as=developer env="
            "{'FEATURE_BASE_BRANCH': '{{feature_base_branch}}', 'WORKTREE_BRANCH': '{{worktree_branch}}'}",
            "unless push-and-pr.no_changes",
            "  call_workflow iterate-pr",
            "  if auto_merge",
            "    gate pr_checks timeout=7200 on_timeout=fail",
            "    gate pr_approval timeout=259200 on_timeout=fail as=reviewer",
            "    call_workflow rebase-worktree",
            "    if rebase-worktree.has_conflicts",
            "      call_workflow iterate-pr",
            "    gate pr_checks timeout=7200 on_timeout=fail",
            f"    script merge-and-close run={S}merge-and-close.sh as=merger env="
            "{'TICKET_NUMBER': '{{ticket_source_id}}'}",
        ],
        "refs": ["iterate-pr", "lint-fix", "qualify-ticket", "rebase-worktree"],
    },
}


@needs_corpus
def test_the_corpus_holds_exactly_the_files_expected_md_describes() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.wf")) == sorted(EXPECTED)


@needs_corpus
@pytest.mark.parametrize("file_name", sorted(EXPECTED))
def test_each_corpus_file_parses_into_the_expected_shape(file_name: str) -> None:
    expected = EXPECTED[file_name]
    wf = parse_file(CORPUS / file_name)
    assert wf.warnings == []
    assert wf.name == expected["name"]
    assert (wf.title, wf.trigger, wf.targets, wf.group) == (
        expected["title"],
        "manual",
        expected["targets"],
        expected["group"],
    )
    assert [(i.name, i.input_type, i.required, i.default) for i in wf.inputs] == expected["inputs"]
    assert outline(wf.body) == expected["body"]
    assert wf.always == []
    assert len(wf.body) == len([line for line in expected["body"] if not line.startswith(" ")])
    assert wf.total_nodes() == expected["total_nodes"]
    assert wf.workflow_refs() == expected["refs"]


@needs_corpus
def test_review_pr_parallel_block_in_detail() -> None:
    node = parse_file(CORPUS / "review-pr.wf").body[2]
    assert isinstance(node, ParallelNode)
    assert [c.value for c in node.calls] == [
        "review-architecture",
        "review-dry-abstraction",
        "review-security",
        "review-performance",
        "review-error-handling",
        "review-test-coverage",
    ]
    assert {c.kind for c in node.calls} == {"name"}
    assert (node.fail_fast, node.min_success, node.output) == (False, None, "review-findings")
    assert node.with_ == ["review-diff-scope", "off-diff-findings"]
    assert node.call_retries == {str(i): 1 for i in range(6)}
    assert node.call_if == {str(i): ("detect-file-types", "has_code_changes") for i in range(2, 6)}
    assert (node.call_outputs, node.call_with) == ({}, {})


@needs_corpus
def test_descriptions_keep_non_ascii_text() -> None:
    assert "—" in parse_file(CORPUS / "qualify-ticket.wf").description
    assert parse_file(CORPUS / "ticket-to-pr.wf").description.startswith("Full development cycle — plan")


@needs_corpus
@pytest.mark.parametrize("file_name", sorted(EXPECTED))
def test_each_corpus_file_survives_formatting(file_name: str) -> None:
    wf = parse_file(CORPUS / file_name)
    text = format_workflow(wf)
    again = parse_workflow(text, str(CORPUS / file_name))
    assert again == wf
    assert format_workflow(again) == text
