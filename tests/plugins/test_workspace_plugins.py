"""Workspace with the host's own plug-ins: an action executor, an item provider and a gate resolver
of the program that embeds it, beside the reference ones of its folders (docs/workspace.md)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from runkon_flow import ActionOutput, FanOutItem, GatePoll, RunNeedsThisProcess, WorkflowError, Workspace
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import RunStatus
from runkon_flow.runtime.types import WorkflowExecConfig, WorkflowResult


class Ticketer:
    """An ActionExecutor: `call ticketer` fixes the item it is given; items in `failing` fail."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing = failing or set()
        self.calls: list[str] = []

    def name(self) -> str:
        return "ticketer"

    def execute(self, ctx: object, info: object, params: object) -> ActionOutput:
        item = params.inputs.get("item.id", "-")  # type: ignore[attr-defined]
        self.calls.append(item)
        if item in self.failing:
            raise WorkflowError(f"ticket {item} is broken")
        return ActionOutput(markers=["done"], context=f"fixed {item}")

    def cancel(self, execution_id: str) -> None:
        pass


class Tickets:
    """An ItemProvider: `foreach … over = tickets` gets T-1, T-2, T-3."""

    def name(self) -> str:
        return "tickets"

    def parse_scope(self, raw_scope: dict[str, str] | None) -> object | None:
        return raw_scope

    def items(self, ctx: object, info: object, scope: object, filter: dict[str, str]) -> list[FanOutItem]:
        return [FanOutItem("ticket", f"T-{n}") for n in (1, 2, 3)]

    def dependencies(self, step_id: str) -> list[tuple[str, str]]:
        return []

    def supports_ordered(self) -> bool:
        return False


class SignOff:
    """A GateResolver: `gate sign_off` is signed off by this program (or waits, `state="pending"`)."""

    def __init__(self, state: str = "approved") -> None:
        self.state = state

    def gate_type(self) -> str:
        return "sign_off"

    def poll(self, run_id: str, params: object, ctx: object) -> GatePoll:
        return GatePoll(self.state, "signed by the program")  # type: ignore[arg-type]


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "wf"
    write(
        root,
        "sweep.wf",
        "workflow sweep {\n"
        "  foreach fix { over = tickets max_parallel = 1 workflow = fix-one }\n"
        '  gate sign_off { prompt = "ship it?" }\n'
        "  call ticketer\n"
        "}\n",
    )
    write(root, "fix-one.wf", "workflow fix-one {\n  call ticketer\n}\n")
    return root


FAST = WorkflowExecConfig(poll_interval=0.01)


def workspace(root: Path, store: InMemoryStore, ticketer: Ticketer, gate: SignOff | None = None) -> Workspace:
    return Workspace(
        [root],
        store,
        exec_config=FAST,
        actions=[ticketer],
        item_providers=[Tickets()],
        gate_resolvers=[gate or SignOff()],
    )


def fan_out_step(store: InMemoryStore, run_id: str) -> str:
    return next(s.id for s in store.get_steps(run_id) if s.role == "foreach")


def test_without_the_plugins_the_workflow_is_refused_with_each_missing_one(home: Path) -> None:
    problems = {p.message for p in Workspace([home], InMemoryStore()).validate("sweep")}
    assert "call 'ticketer': no registered ActionExecutor for 'ticketer'" in problems
    assert any(p.startswith("foreach 'fix': unknown provider 'tickets'") for p in problems), problems
    assert "gate 'sign_off': no registered GateResolver for type 'sign_off'" in problems


def test_a_workflow_on_the_programs_plugins_runs_fails_and_resumes_after_a_reload(home: Path) -> None:
    store, ticketer = InMemoryStore(), Ticketer({"T-2"})
    ws = workspace(home, store, ticketer)
    assert ws.validate("sweep") == []
    run_id = ws.create_run("sweep", {})
    first = ws.execute(run_id)
    assert first.status is RunStatus.FAILED
    assert ticketer.calls == ["T-1", "T-2", "T-3"]  # the run stopped at the fan-out
    ticketer.failing.clear()
    # A new snapshot (a file changed): its engine has the program's plug-ins too.
    engine = ws.engine
    write(home, "other.wf", "workflow other {\n  call ticketer\n}\n")
    os.utime(home / "other.wf", (time.time() + 5, time.time() + 5))
    ws.reload()
    assert ws.engine is not engine and ws.validate("sweep") == [] and ws.validate("other") == []
    assert ws.resume(run_id).status is RunStatus.COMPLETED
    assert ticketer.calls == ["T-1", "T-2", "T-3", "T-2", "-"]  # only the failed item again, then on
    gate = next(s for s in store.get_steps(run_id) if s.role == "gate")
    assert (gate.status, gate.gate_approved_by) == ("completed", "resolver:sign_off")


def test_a_restarted_program_retries_failed_items_with_its_plugins(home: Path) -> None:
    store = InMemoryStore()
    ws = workspace(home, store, Ticketer({"T-2", "T-3"}))
    run_id = ws.create_run("sweep", {})
    assert ws.execute(run_id).status is RunStatus.FAILED
    step = fan_out_step(store, run_id)
    # Another process of the program (a new Workspace with its plug-ins) retries one item, then the other.
    again = Ticketer({"T-2"})
    assert workspace(home, store, again).retry(run_id, {step: ["T-3"]}).status is RunStatus.FAILED
    assert again.calls == ["T-3"]
    last = Ticketer()
    assert workspace(home, store, last).retry(run_id, {step: ["T-2"]}).status is RunStatus.COMPLETED
    assert last.calls == ["T-2", "-"]


def test_the_programs_plugins_win_over_reference_ones_of_the_same_name(home: Path) -> None:
    write(home, "agents/ticketer.md", "---\nruntime: echo\n---\nthe agent file\n")
    write(home, "one.wf", "workflow one {\n  call ticketer\n}\n")
    ticketer = Ticketer()
    store = InMemoryStore()
    ws = workspace(home, store, ticketer)
    result = ws.execute(ws.create_run("one", {}))
    assert result.status is RunStatus.COMPLETED and ticketer.calls == ["-"]
    assert store.get_steps(result.workflow_run_id)[0].context_out == "fixed -"


def test_a_missing_plugin_is_still_reported_with_the_programs_own_names(home: Path) -> None:
    write(
        home,
        "typo.wf",
        "workflow typo {\n"
        "  foreach fix { over = tikets max_parallel = 1 workflow = fix-one }\n"
        '  gate sign_of { prompt = "ship it?" }\n'
        "  call tickter\n"
        "  call ticketer { on_fail = ticketer }\n"
        "}\n",
    )
    problems = {p.message: p.hint for p in workspace(home, InMemoryStore(), Ticketer()).validate("typo")}
    assert problems["call 'tickter': no registered ActionExecutor for 'tickter'"] == (
        f"no agent file {home / 'agents' / 'tickter.md'}; no agents are defined yet: write the agent's "
        "prompt in that file (front matter `runtime: echo` runs it without a model; see docs/agents.md); "
        "did you mean `ticketer`? this program's actions: ticketer"
    )
    assert "tickets" in str(next(h for m, h in problems.items() if "'tikets'" in m))
    assert "sign_off" in str(problems["gate 'sign_of': no registered GateResolver for type 'sign_of'"])
    assert len(problems) == 3  # `on_fail = ticketer` is the program's action: found


def test_two_plugins_of_one_name_are_refused(home: Path) -> None:
    with pytest.raises(ValueError, match="two actions named 'ticketer'"):
        Workspace([home], InMemoryStore(), actions=[Ticketer(), Ticketer()])


def test_a_run_on_the_programs_plugins_is_not_handed_to_a_runner(home: Path, tmp_path: Path) -> None:
    store = InMemoryStore()
    ws = workspace(home, store, Ticketer(), SignOff("pending"))
    run_id = ws.create_run("sweep", {})
    with pytest.raises(RunNeedsThisProcess, match=r"plug-ins of this process \(actions: ticketer; item"):
        ws.launch(run_id, tmp_path / "runs.db")
    assert store.get_run(run_id).status is RunStatus.PENDING  # type: ignore[union-attr]
    results: list[WorkflowResult] = []
    worker = threading.Thread(target=lambda: results.append(ws.execute(run_id)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while store.get_run(run_id).status is not RunStatus.WAITING:  # type: ignore[union-attr]
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.01)
    with pytest.raises(RunNeedsThisProcess, match=f"run '{run_id}' cannot go to a background runner"):
        ws.hand_over(run_id, tmp_path / "runs.db")
    assert ws.active_runs() == [run_id]  # still running here: the gate waits on
    ws.cancel(run_id)
    worker.join(10)
    assert results[0].status is RunStatus.CANCELLED
