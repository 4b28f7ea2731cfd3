"""Scripted engine event feeds for the dashboard tests.

They stand in for the engine wherever a real run would race the assertions (snapshots, unit tests
of the reducer). Time is explicit: every event advances a fake clock by a fixed step, so the same
script always produces the same timestamps. The shapes follow what the engine emits (design.md
§3): node paths address the fixture workflows in tests/tui/fixtures/workflows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runkon_flow.cancellation import CancellationReason
from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    EngineLog,
    FanOutItemCompleted,
    FanOutItemInfo,
    FanOutItemsCollected,
    FanOutItemSkipped,
    FanOutItemStarted,
    GateResolved,
    GateWaiting,
    LoopIteration,
    RunCancelled,
    RunCompleted,
    RunStarted,
    StepCompleted,
    StepOutput,
    StepStarted,
)

FIXTURES = Path(__file__).parent / "fixtures"
WORKFLOWS = FIXTURES / "workflows"
EVENTS = FIXTURES / "events"

T0 = 1_700_000_000.0
ROOT = "01HZZROOTRUN0000000000REVW"


class Script:
    """Builds an event list with a deterministic clock."""

    def __init__(self, run_id: str = ROOT, t0: float = T0, step: float = 0.5) -> None:
        self.run_id = run_id
        self.t = t0
        self.step = step
        self.events: list[EngineEventData] = []

    def now(self) -> float:
        return self.t

    def emit(self, event: object, run_id: str | None = None, dt: float | None = None) -> EngineEventData:
        self.t += self.step if dt is None else dt
        data = EngineEventData(timestamp=int(self.t), ts=self.t, run_id=run_id or self.run_id, event=event)
        self.events.append(data)
        return data

    # ---- step helpers

    def step_run(
        self,
        path: str,
        name: str,
        kind: str = "call",
        *,
        ok: bool = True,
        error: str | None = None,
        output: Iterable[str] = (),
        run_id: str | None = None,
        secs: float = 1.0,
        iteration: int = 0,
    ) -> None:
        sid = f"step-{run_id or self.run_id}-{path}-{iteration}"
        self.start(path, name, kind, run_id=run_id, iteration=iteration)
        for line in output:
            self.emit(StepOutput(step_id=sid, step_name=name, line=line), run_id, dt=0.0)
        self.finish(path, name, kind, ok=ok, error=error, run_id=run_id, secs=secs, iteration=iteration)

    def start(
        self, path: str, name: str, kind: str = "call", *, run_id: str | None = None, iteration: int = 0
    ):
        sid = f"step-{run_id or self.run_id}-{path}-{iteration}"
        self.emit(
            StepStarted(
                step_name=name, step_key=name, kind=kind, step_id=sid, node_path=path, iteration=iteration
            ),
            run_id,
        )
        return sid

    def finish(
        self,
        path: str,
        name: str,
        kind: str = "call",
        *,
        ok: bool = True,
        error: str | None = None,
        run_id: str | None = None,
        secs: float = 1.0,
        iteration: int = 0,
        status: str | None = None,
    ) -> None:
        sid = f"step-{run_id or self.run_id}-{path}-{iteration}"
        self.emit(
            StepCompleted(
                step_name=name,
                step_key=name,
                kind=kind,
                step_id=sid,
                node_path=path,
                succeeded=ok,
                status=status or ("completed" if ok else "failed"),
                error=error,
                duration_ms=int(secs * 1000),
                iteration=iteration,
            ),
            run_id,
            dt=secs,
        )

    # ---- fan-out item helpers (review-pr's foreach runs review-one once per item)

    def item_started(self, step_id: str, item: str, child: str, dt: float) -> None:
        """Item `item` starts `dt` seconds on; its child run `child` of review-one starts with it."""
        self.emit(FanOutItemStarted(item_id=item, step_id=step_id), dt=dt)
        self.emit(
            ChildRunStarted(
                child_run_id=child,
                workflow_name="review-one",
                parent_run_id=self.run_id,
                parent_step_id=step_id,
                item_id=item,
            ),
            dt=0.0,
        )
        self.emit(
            RunStarted(workflow_name="review-one", parent_run_id=self.run_id, inputs={"file": item}),
            child,
            dt=0.0,
        )

    def item_reviewed(self, step_id: str, item: str, child: str, secs: float) -> None:
        """The child run of item `item` reviews its file in `secs` seconds; the item completes."""
        self.step_run("body.0", "review-file", run_id=child, secs=secs, output=[f"reviewed {item}: ok"])
        self.emit(RunCompleted(succeeded=True), child, dt=0.0)
        self.emit(
            FanOutItemCompleted(item_id=item, step_id=step_id, succeeded=True, child_run_id=child), dt=0.0
        )

    def save(self, name: str) -> Path:
        EVENTS.mkdir(parents=True, exist_ok=True)
        path = EVENTS / name
        path.write_text("".join(e.to_json_line() + "\n" for e in self.events), encoding="utf-8")
        return path


def item_ids(n: int) -> list[str]:
    return [f"file-{i:03d}" for i in range(n)]


def review_pr_until_foreach(s: Script) -> str:
    """review-pr: the first three body nodes done, the foreach collected. Returns its step id."""
    s.emit(RunStarted(workflow_name="review-pr", inputs={"pr": "42"}))
    s.step_run("body.0", "resolve-base", "script", output=["fetching origin", "base is main"], secs=0.4)
    s.step_run("body.1", "detect-file-types", output=["python: 12 files"], secs=1.2)
    s.start("body.2", "parallel", "parallel")
    s.step_run("body.2.calls.0", "review-security", "parallel_branch", secs=12)
    s.step_run(
        "body.2.calls.1",
        "review-style",
        "parallel_branch",
        ok=False,
        error="agent exited with code 2",
        output=["checking style", "E501 line too long", "style review failed"],
        secs=3,
    )
    s.step_run("body.2.calls.2", "review-tests", "parallel_branch", secs=2)
    s.finish("body.2", "parallel", "parallel", ok=True)
    sid = s.start("body.3", "foreach:review-items", "foreach")
    return sid


def foreach_mid_run(n: int = 120) -> Script:
    """A 120-item foreach with completed, failed, skipped, running and pending items."""
    s = Script()
    sid = review_pr_until_foreach(s)
    ids = item_ids(n)
    infos = [FanOutItemInfo(item_id=i, item_ref=f"src/{i}.py") for i in ids]
    s.emit(
        FanOutItemsCollected(
            count=n, step_id=sid, foreach_name="review-items", node_path="body.3", max_parallel=4, items=infos
        )
    )
    for k, item in enumerate(ids[:41]):
        child = f"child-{item}"
        s.item_started(sid, item, child, dt=0.1)
        if k in (10, 27):
            s.step_run(
                "body.0",
                "review-file",
                run_id=child,
                ok=False,
                error="review-file: timeout",
                secs=0.3,
                output=[f"reviewing {item}", "agent gave up"],
            )
            s.emit(RunCompleted(succeeded=False, error="review-file failed"), child, dt=0.0)
            s.emit(
                FanOutItemCompleted(
                    item_id=item, step_id=sid, succeeded=False, child_run_id=child, error="review-file failed"
                ),
                dt=0.0,
            )
        elif k in (15, 16):
            s.emit(FanOutItemSkipped(item_id=item, step_id=sid, reason="filtered"), dt=0.0)
        elif k >= 37:
            s.start("body.0", "review-file", run_id=child)
            s.emit(
                StepOutput(
                    step_id=f"step-{child}-body.0-0", step_name="review-file", line=f"reviewing {item}"
                ),
                child,
                dt=0.0,
            )
        else:
            s.item_reviewed(sid, item, child, secs=0.3)
    s.emit(EngineLog(level="warning", message="env key PATH skipped (protected)", step_name="resolve-base"))
    return s


def gate_waiting() -> Script:
    """review-pr with its foreach finished and the approval gate waiting."""
    s = Script()
    sid = review_pr_until_foreach(s)
    ids = item_ids(6)
    s.emit(
        FanOutItemsCollected(
            count=6,
            step_id=sid,
            foreach_name="review-items",
            node_path="body.3",
            max_parallel=4,
            items=[FanOutItemInfo(item_id=i) for i in ids],
        )
    )
    for item in ids:
        s.emit(FanOutItemStarted(item_id=item, step_id=sid), dt=0.1)
        s.emit(FanOutItemCompleted(item_id=item, step_id=sid, succeeded=True), dt=0.2)
    s.finish("body.3", "foreach:review-items", "foreach", secs=2)
    s.start("body.4", "human_approval", "gate")
    s.emit(
        GateWaiting(
            gate_name="human_approval",
            step_id=f"step-{ROOT}-body.4-0",
            gate_type="human_approval",
            prompt="Merge PR 42?",
            options={"merge": "Merge now", "hold": "Hold for a day"},
            timeout_secs=28800,
            node_path="body.4",
        )
    )
    return s


def gate_approved_and_done() -> Script:
    s = gate_waiting()
    s.emit(
        GateResolved(
            gate_name="human_approval",
            approved=True,
            step_id=f"step-{ROOT}-body.4-0",
            resolved_by="ana",
            feedback="ship it",
        )
    )
    s.finish("body.4", "human_approval", "gate")
    s.step_run("always.0", "notify", "script", output=["notified"])
    s.emit(RunCompleted(succeeded=True))
    return s


def failed_run() -> Script:
    """nightly: the loop runs twice, the child workflow fails, the run fails."""
    s = Script(run_id="01HZZNIGHTLY00000000000000")
    s.emit(RunStarted(workflow_name="nightly"))
    for it in range(2):
        s.emit(LoopIteration(node_path="body.0", step="test", marker="failing", iteration=it))
        s.step_run("body.0.body.0", "build", iteration=it, output=[f"build #{it + 1}"])
        s.step_run(
            "body.0.body.1", "test", "script", iteration=it, output=["1 failed"] if it == 0 else ["ok"]
        )
    sid = s.start("body.1.body.0", "workflow:review-one", "call_workflow")
    child = "01HZZCHILD0000000000000000"
    s.emit(
        ChildRunStarted(
            child_run_id=child, workflow_name="review-one", parent_run_id=s.run_id, parent_step_id=sid
        )
    )
    s.emit(
        RunStarted(workflow_name="review-one", parent_run_id=s.run_id, inputs={"file": "README.md"}), child
    )
    s.step_run(
        "body.0",
        "review-file",
        run_id=child,
        ok=False,
        error="agent 'review-file' exited with code 1",
        output=["reading README.md", "Traceback: boom", "exit 1"],
    )
    s.emit(RunCompleted(succeeded=False, error="review-file failed"), child)
    s.finish("body.1.body.0", "workflow:review-one", "call_workflow", ok=False, error="child workflow failed")
    s.emit(RunCompleted(succeeded=False, error="step 'workflow:review-one' failed"))
    return s


def cancelled_foreach(n: int = 20) -> Script:
    s = Script()
    sid = review_pr_until_foreach(s)
    ids = item_ids(n)
    s.emit(
        FanOutItemsCollected(
            count=n,
            step_id=sid,
            node_path="body.3",
            foreach_name="review-items",
            items=[FanOutItemInfo(item_id=i) for i in ids],
        )
    )
    for item in ids[:5]:
        s.emit(FanOutItemStarted(item_id=item, step_id=sid))
        s.emit(FanOutItemCompleted(item_id=item, step_id=sid, succeeded=True))
    for item in ids[5:8]:
        s.emit(FanOutItemStarted(item_id=item, step_id=sid))
    s.emit(RunCancelled(reason=CancellationReason.user("stop")))
    return s


ALL = {
    "foreach_mid_run.jsonl": foreach_mid_run,
    "gate_waiting.jsonl": gate_waiting,
    "gate_approved.jsonl": gate_approved_and_done,
    "failed_run.jsonl": failed_run,
    "cancelled_foreach.jsonl": cancelled_foreach,
}


if __name__ == "__main__":  # regenerate the recorded fixtures: python -m tests.tui.scenarios
    for file_name, build in ALL.items():
        print(build().save(file_name))


#: Three ways an item of `foreach_failure_clusters` fails: the step error of its child run, with
#: parts that differ from item to item (docs/when-things-go-wrong.md, failure clusters).
CLUSTER_ERRORS = (
    lambda n, item: f"agent 'review-file' exited with code 1\nrate limited: retry after {n % 40 + 5}s",
    lambda n, item: f"schema mismatch in /work/out/{item}.json line {n * 3}: expected object",
    lambda n, item: f"connection reset by 10.0.{n}.7:443 at 2023-11-14T22:{n % 60:02d}:00Z",
)


def foreach_failure_clusters(n: int = 240) -> Script:
    """review-pr's fan-out finished: 36 of 240 items failed in three kinds (18, 12, 6), the run
    failed. The failure clusters list groups them."""
    s = Script()
    sid = review_pr_until_foreach(s)
    ids = item_ids(n)
    infos = [FanOutItemInfo(item_id=i, item_ref=f"src/{i}.py") for i in ids]
    s.emit(
        FanOutItemsCollected(
            count=n, step_id=sid, foreach_name="review-items", node_path="body.3", max_parallel=8, items=infos
        )
    )
    for k, item in enumerate(ids):
        child = f"child-{item}"
        s.item_started(sid, item, child, dt=0.05)
        # every 6th item (from the 4th) up to 216 fails: 36 items, kinds 0, 1, 0, 2, 0, 1 in turn
        kind = (0, 1, 0, 2, 0, 1)[k // 6 % 6] if k % 6 == 3 and k < 216 else None
        if kind is None:
            s.item_reviewed(sid, item, child, secs=0.3)
            continue
        error = CLUSTER_ERRORS[kind](k, item)
        s.step_run("body.0", "review-file", run_id=child, ok=False, error=error, secs=0.3)
        failed = "workflow error: Step 'review-file' failed after 1 attempts"
        s.emit(RunCompleted(succeeded=False, error=failed), child, dt=0.0)
        s.emit(
            FanOutItemCompleted(item_id=item, step_id=sid, succeeded=False, child_run_id=child, error=failed),
            dt=0.0,
        )
    error = "foreach 'review-items': 36 of 240 items failed"
    s.finish("body.3", "foreach:review-items", "foreach", ok=False, error=error)
    s.emit(RunCompleted(succeeded=False, error="workflow error: Step 'review-items' failed after 1 attempts"))
    return s


def foreach_cluster_retried(n: int = 240) -> Script:
    """`foreach_failure_clusters`, then its second cluster (12 schema mismatches) retried after a
    fix: a second attempt of the run whose foreach runs those items again, each in a new child
    run (the failed first attempt kept). 24 items in two clusters still fail, so the run does."""
    s = foreach_failure_clusters(n)
    ids = item_ids(n)
    retried = [item for k, item in enumerate(ids) if k % 6 == 3 and k < 216 and (k // 6 % 6) in (1, 5)]
    s.emit(RunStarted(workflow_name="review-pr", inputs={"pr": "42"}), dt=600)
    sid = f"step-{s.run_id}-body.3-retry"
    s.emit(
        StepStarted(
            step_name="foreach:review-items",
            step_key="foreach:review-items",
            kind="foreach",
            step_id=sid,
            node_path="body.3",
        )
    )
    infos = [
        FanOutItemInfo(item_id=i, item_ref=f"src/{i}.py", status="pending" if i in retried else status)
        for k, i in enumerate(ids)
        for status in ["failed" if k % 6 == 3 and k < 216 else "completed"]
    ]
    s.emit(
        FanOutItemsCollected(
            count=n, step_id=sid, foreach_name="review-items", node_path="body.3", max_parallel=8, items=infos
        )
    )
    for item in retried:
        child = f"child-{item}-2"
        s.item_started(sid, item, child, dt=0.05)
        s.item_reviewed(sid, item, child, secs=0.4)
    error = "foreach 'review-items': 24 of 240 items failed"
    s.emit(
        StepCompleted(
            step_name="foreach:review-items",
            step_key="foreach:review-items",
            kind="foreach",
            step_id=sid,
            node_path="body.3",
            succeeded=False,
            status="failed",
            error=error,
            duration_ms=6000,
        )
    )
    s.emit(RunCompleted(succeeded=False, error="workflow error: Step 'review-items' failed after 1 attempts"))
    return s
