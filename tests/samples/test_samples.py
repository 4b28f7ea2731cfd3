"""Every sample workflow runs offline, through `Workspace`, to the result its comments promise.

RUNKON_SAMPLE_SPEED=0 removes the demo pauses, so each sample takes well under a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from runkon_flow.cli import main as cli_main
from runkon_flow.dsl.ast import (
    AlwaysNode,
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
    walk,
)
from runkon_flow.events import CollectingSink
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import RunStatus, WorkflowRunStep
from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.runtime.types import WorkflowResult
from runkon_flow.workspace import Workspace

SAMPLES = Path(__file__).resolve().parents[2] / "sample_workflows"


@pytest.fixture(autouse=True)
def fast_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNKON_SAMPLE_SPEED", "0")


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def ws(store: InMemoryStore) -> Workspace:
    return Workspace([SAMPLES], store)


def run(ws: Workspace, name: str, inputs: dict[str, str] | None = None, sink: CollectingSink | None = None):  # type: ignore[no-untyped-def]
    run_id = ws.create_run(name, inputs or {})
    return ws.execute(run_id, sinks=[sink] if sink else [])


def steps(ws: Workspace, run_id: str) -> list[WorkflowRunStep]:
    return ws.store.get_steps(run_id)


def statuses(ws: Workspace, run_id: str) -> list[tuple[str, str]]:
    return [(s.step_name, str(s.status)) for s in steps(ws, run_id)]


def children(ws: Workspace, run_id: str, workflow: str | None = None) -> list:  # type: ignore[type-arg]
    found = [
        r for r in ws.store.list_runs(limit=500, parent_run_id=None) if r.parent_workflow_run_id == run_id
    ]
    return [r for r in found if workflow is None or r.workflow_name == workflow]


# --------------------------------------------------------------------------- the set as a whole


def test_samples_load_and_validate_cleanly(ws: Workspace) -> None:
    assert ws.load_errors == []
    assert ws.config_errors == []
    assert len(ws.workflows) >= 6
    for name in ws.workflows:
        assert ws.validate(name) == [], name


def test_cli_validates_the_samples_including_script_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["validate", "--scripts", str(SAMPLES)]) == 0
    assert "error" not in capsys.readouterr().err


def test_samples_together_use_every_node_kind(ws: Workspace) -> None:
    kinds: Counter[str] = Counter()
    for wf in ws.workflows.values():
        for node in walk(list(wf.body) + list(wf.always)):
            kinds[type(node).__name__] += 1
            if isinstance(node, GateNode):
                kinds["quality_gate" if node.is_quality_gate else "human_gate"] += 1
            if isinstance(node, ForEachNode) and node.ordered:
                kinds["ordered_foreach"] += 1
        if wf.always:
            kinds["top_level_always"] += 1
    for kind in (
        CallNode,
        CallWorkflowNode,
        IfNode,
        UnlessNode,
        WhileNode,
        DoWhileNode,
        DoNode,
        ParallelNode,
        GateNode,
        AlwaysNode,
        ScriptNode,
        ForEachNode,
    ):
        assert kinds[kind.__name__] > 0, kind.__name__
    for extra in ("quality_gate", "human_gate", "ordered_foreach", "top_level_always"):
        assert kinds[extra] > 0, extra


def test_sample_scripts_are_committed_executable() -> None:
    scripts = [
        p for p in (SAMPLES / "scripts").iterdir() if p.suffix in (".sh", ".py") and p.name != "_lib.sh"
    ]
    assert scripts
    assert all(p.stat().st_mode & 0o111 for p in scripts)


# --------------------------------------------------------------------------- one test per sample


def test_release_notes_publishes_after_a_retry_and_the_quality_gate(ws: Workspace) -> None:
    result = run(ws, "release-notes", {"version": "2.4.0", "publish": "true"})
    assert result.status is RunStatus.COMPLETED, result.error
    assert statuses(ws, result.workflow_run_id) == [
        ("collect-changes", "completed"),
        ("draft-notes", "completed"),
        ("polish-notes", "failed"),
        ("polish-notes", "completed"),
        ("score-notes", "completed"),
        ("quality_gate", "completed"),
        ("publish-notes", "completed"),
        ("announce", "completed"),
    ]
    by_name = {s.step_name: s for s in steps(ws, result.workflow_run_id)}
    assert "model=local-writer" in (by_name["draft-notes"].result_text or "")
    assert by_name["quality_gate"].result_text == "quality_gate: confidence=86, threshold=70, result=pass"
    assert by_name["announce"].context_out == "release 2.4.0: notes workflow completed\n"


def test_release_notes_without_changes_or_publishing_skips_those_steps(ws: Workspace) -> None:
    result = run(ws, "release-notes", {"version": "2.4.0", "since": "2.4.0"})
    assert result.status is RunStatus.COMPLETED, result.error
    names = [name for name, _ in statuses(ws, result.workflow_run_id)]
    assert names == ["collect-changes", "score-notes", "quality_gate", "announce"]


def test_fan_out_lint_runs_sixty_repos_in_dependency_order(ws: Workspace) -> None:
    sink = CollectingSink()
    result = run(ws, "fan-out-lint", sink=sink)
    assert result.status is RunStatus.COMPLETED, result.error
    foreach = next(s for s in steps(ws, result.workflow_run_id) if s.step_name == "foreach:lint-all")
    items = ws.store.get_fan_out_items(foreach.id)
    assert len(items) == 60
    assert {str(i.status) for i in items} == {"completed"}
    assert foreach.result_text == "foreach lint-all: 60 completed, 0 failed, 0 skipped of 60 static"

    order = [
        (d.event.type, d.event.item_id)
        for d in sink.events
        if d.run_id == result.workflow_run_id and d.event.type in ("FanOutItemStarted", "FanOutItemCompleted")
    ]
    started = {item: i for i, (kind, item) in enumerate(order) if kind == "FanOutItemStarted"}
    completed = {item: i for i, (kind, item) in enumerate(order) if kind == "FanOutItemCompleted"}
    repos = yaml.safe_load((SAMPLES / "data" / "repos.yaml").read_text())
    edges = [(blocker, repo["id"]) for repo in repos for blocker in repo.get("depends_on", [])]
    assert len(edges) > 60
    for blocker, dependent in edges:
        assert completed[blocker] < started[dependent], f"{dependent} started before {blocker} finished"

    lint_runs = children(ws, result.workflow_run_id, "lint-repo")
    assert len(lint_runs) == 60
    fixed = [r for r in lint_runs if any(s.step_name == "fix-lint" for s in steps(ws, r.id))]
    assert 0 < len(fixed) < 60  # only the repositories with issues get fixed
    sample = fixed[0]
    assert sample.inputs["repo"] == sample.inputs["item.id"]  # {{item.id}} reached the child as its value
    assert [name for name, _ in statuses(ws, sample.id)] == ["lint", "fix-lint", "relint"]


def test_review_swarm_tolerates_a_crashed_reviewer(ws: Workspace) -> None:
    result = run(ws, "review-swarm")
    assert result.status is RunStatus.COMPLETED, result.error
    rows = statuses(ws, result.workflow_run_id)
    assert ("review-style", "failed") in rows
    assert [s for n, s in rows if n == "review-performance"] == ["completed"]
    performance = [s for s in steps(ws, result.workflow_run_id) if s.step_name == "review-performance"]
    assert performance[-1].retry_count == 1
    assert ("approve-change", "completed") in rows
    assert "request-changes" not in [n for n, _ in rows]
    lead = next(s for s in steps(ws, result.workflow_run_id) if s.step_name == "lead-review")
    assert lead.markers_out == '["approved"]'


def _run_until_gate(ws: Workspace, run_id: str) -> tuple[threading.Thread, list[WorkflowResult]]:
    results: list[WorkflowResult] = []
    worker = threading.Thread(target=lambda: results.append(ws.execute(run_id)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 20
    while not ws.gates.waiting_gates(run_id):
        assert worker.is_alive(), "the run ended without waiting at the gate"
        assert time.monotonic() < deadline, "the gate never started waiting"
        time.sleep(0.01)
    return worker, results


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_approve_deploy_waits_for_the_approval(tmp_path: Path, backend: str) -> None:
    store = InMemoryStore() if backend == "memory" else SqliteStore(tmp_path / "runs.db")
    ws = Workspace([SAMPLES], store)
    run_id = ws.create_run("approve-deploy", {"environment": "production"})
    worker, results = _run_until_gate(ws, run_id)
    [gate] = ws.gates.waiting_gates(run_id)
    assert gate.gate_name == "human_approval"
    assert [n for n, _ in statuses(ws, run_id)] == ["plan-deploy", "human_approval"]  # nothing deployed yet
    ws.gates.approve(run_id, "human_approval", by="tester", note="go")
    worker.join(20)
    assert not worker.is_alive()
    result = results[0]
    assert result.status is RunStatus.COMPLETED, result.error
    assert statuses(ws, run_id) == [
        ("plan-deploy", "completed"),
        ("human_approval", "completed"),
        ("deploy", "completed"),
        ("smoke-test", "failed"),
        ("smoke-test", "completed"),
        ("post-deploy-report", "completed"),
    ]
    deploy = next(s for s in steps(ws, run_id) if s.step_name == "deploy")
    assert deploy.context_out == "2.4.0 is live on production"
    if isinstance(store, SqliteStore):
        store.close()


def test_approve_deploy_rejected_never_deploys_but_still_reports(ws: Workspace) -> None:
    run_id = ws.create_run("approve-deploy", {})
    worker, results = _run_until_gate(ws, run_id)
    ws.gates.reject(run_id, "human_approval", by="tester", note="not on a Friday")
    worker.join(20)
    result = results[0]
    assert result.status is RunStatus.FAILED
    assert result.error == "workflow error: Gate 'human_approval' rejected by tester: not on a Friday"
    names = [n for n, _ in statuses(ws, run_id)]
    assert "deploy" not in names
    report = next(s for s in steps(ws, run_id) if s.step_name == "post-deploy-report")
    assert report.context_out == "deployment of 2.4.0 finished with status failed"


def test_retry_until_green_retries_and_loops_until_green(ws: Workspace) -> None:
    result = run(ws, "retry-until-green")
    assert result.status is RunStatus.COMPLETED, result.error
    rows = statuses(ws, result.workflow_run_id)
    assert [s for n, s in rows if n == "flaky-build"] == ["failed", "failed", "completed"]
    assert [s for n, s in rows if n == "run-tests"] == ["completed"] * 3
    assert [n for n, _ in rows if n in ("check-ci", "wait-for-ci")] == [
        "check-ci",
        "wait-for-ci",
        "check-ci",
        "wait-for-ci",
        "check-ci",
    ]
    assert rows[-1] == ("report-green", "completed")


def test_docs_check_fixes_only_the_documents_with_typos(ws: Workspace) -> None:
    result = run(ws, "docs-check")
    assert result.status is RunStatus.COMPLETED, result.error
    docs = children(ws, result.workflow_run_id, "check-doc")
    assert sorted(Path(r.inputs["doc"]).name for r in docs) == [
        "agents.md",
        "fan-out.md",
        "gates.md",
        "getting-started.md",
        "resume.md",
    ]
    fixed = sorted(
        Path(r.inputs["doc"]).name for r in docs if any(s.step_name == "fix-typos" for s in steps(ws, r.id))
    )
    assert fixed == ["agents.md", "gates.md"]
    cleanup = next(s for s in steps(ws, result.workflow_run_id) if s.step_name == "docs-cleanup")
    assert "(as Docs Bot)" in (cleanup.context_out or "")


def test_import_records_fails_in_three_clusters_and_retrying_them_completes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sample a newcomer tries failure clusters and retries on: eight records fail on their
    first attempt for three reasons; retrying the failed items completes the same run."""
    import json

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the script remembers first attempts
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    base = ["--dir", str(SAMPLES), "--progress", "quiet"]
    assert cli_main(["run", "import-records", *base]) == 1
    out, err = capsys.readouterr()
    run_id = next(w.split("=", 1)[1] for w in out.split() if w.startswith("run_id="))
    assert f"retry the 8 failed items: runkon-flow retry {run_id} --failed" in err

    assert cli_main(["show", run_id, "--json"]) == 0
    clusters = json.loads(capsys.readouterr().out)["failure_clusters"]
    assert [(c["count"], sorted(c["items"])) for c in clusters] == [
        (3, ["rec-05", "rec-20", "rec-35"]),  # rate limited: retry after <n>s (request <id>)
        (3, ["rec-10", "rec-25", "rec-40"]),  # schema mismatch in <path> line <n>: expected int
        (2, ["rec-15", "rec-30"]),  # connection reset by <n>:<n>
    ]
    assert "rate limited" in clusters[0]["signature"] and "schema mismatch" in clusters[1]["signature"]

    notes = tmp_path / "runkon-sample-import" / run_id
    assert len(list(notes.iterdir())) == 8  # the records that had their first attempt
    assert cli_main(["retry", run_id, "--failed", "--yes", *base]) == 0
    capsys.readouterr()
    assert not (tmp_path / "runkon-sample-import").exists()  # tidied once the fan-out succeeded
    store = SqliteStore(tmp_path / "runs.db")
    try:
        assert store.get_run(run_id).status == RunStatus.COMPLETED  # type: ignore[union-attr]
        fan_outs = [s for s in store.get_steps(run_id) if s.role == "foreach"]
        latest = max(fan_outs, key=lambda s: (s.started_at or "", s.id))
        items = store.get_fan_out_items(latest.id)
        assert Counter(str(i.status) for i in items) == {"completed": 40}
        assert sorted(i.item_id for i in items if i.attempt == 2) == [f"rec-{n:02d}" for n in range(5, 41, 5)]
    finally:
        store.close()


def test_nightly_runs_every_maintenance_workflow(ws: Workspace) -> None:
    result = run(ws, "nightly")
    assert result.status is RunStatus.COMPLETED, result.error
    names = [n for n, _ in statuses(ws, result.workflow_run_id)]
    assert names == [
        "nightly-start",
        "workflow:fan-out-lint",
        "workflow:release-notes",
        "workflow:docs-check",
        "foreach:housekeeping",
        "nightly-report",
    ]
    kinds = Counter(r.workflow_name for r in children(ws, result.workflow_run_id))
    assert kinds == {"fan-out-lint": 1, "release-notes": 1, "docs-check": 1, "housekeeping-task": 5}
    tasks = sorted(r.inputs["task"] for r in children(ws, result.workflow_run_id, "housekeeping-task"))
    assert tasks == [
        "prune-old-runs",
        "refresh-caches",
        "report-disk-usage",
        "rotate-logs",
        "vacuum-database",
    ]


def test_nightly_can_skip_the_lint(ws: Workspace) -> None:
    result = run(ws, "nightly", {"skip_lint": "yes"})
    assert result.status is RunStatus.COMPLETED, result.error
    assert "workflow:fan-out-lint" not in [n for n, _ in statuses(ws, result.workflow_run_id)]


def test_child_samples_also_run_on_their_own(ws: Workspace) -> None:
    """On their own too, without a warning: lint-repo read its parent's `{{item.lang}}` and
    warned four times that it had no value (its language and team are inputs now)."""
    for name in ("lint-repo", "check-doc", "housekeeping-task", "import-record"):
        sink = CollectingSink()
        result = run(ws, name, sink=sink)
        assert result.status is RunStatus.COMPLETED, (name, result.error)
        warned = [e.event.message for e in sink.events if getattr(e.event, "level", "") == "warning"]
        assert warned == [], (name, warned)
