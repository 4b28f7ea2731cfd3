"""One recorded run, four renderers, one set of numbers: the dashboard's view, `runkon-flow run`'s
live view, `show`/`runs` (from the rows the run wrote) and `replay` (from the events file) all
read the run model, so they count steps and fan-out items the same way.

The run has what made the copies disagree before: a retry-until-green step (two failed attempts),
a step inside a loop (two iterations), and a fan-out with completed and failed items.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from runkon_flow.cancellation import EngineCancelled
from runkon_flow.cli import main
from runkon_flow.cli.live import LiveView
from runkon_flow.cli.report import run_json, runs_table, show_lines
from runkon_flow.errors import WorkflowError
from runkon_flow.observe import ItemCounts
from runkon_flow.plugins.protocols import ActionOutput

from runkon_tui.run_view import RunView, compact
from tests.engine.conftest import Harness, ListProvider, wait_until

WORKFLOW = """workflow nightly {
  call flaky { retries = 2 }
  call fix
  while fix.again { max_iterations = 5 call fix }
  foreach fan { over = tickets max_parallel = 2 workflow = child }
  call after
}"""


def record(h: Harness) -> str:
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["t1", "t2", "t3", "t4", "t5"]))
    h.agents.fail("flaky", times=2)
    state = {"fix": 0}

    def fix(info, params):
        state["fix"] += 1
        return ActionOutput(markers=["again"] if state["fix"] < 3 else [], context="fixed")

    def work(info, params):
        if params.inputs["item.id"] in ("t2", "t4"):
            raise WorkflowError(f"item {params.inputs['item.id']} broke")
        return ActionOutput(context="worked")

    h.agents.do("fix", fix)
    h.agents.do("work", work)
    return h.run(WORKFLOW).workflow_run_id


def live_view_frames(h: Harness) -> tuple[list[str], list[str]]:
    """The live view's block just before the fan-out step ended (its item line is still up), and
    its final frame."""
    view = LiveView(io.StringIO(), color=False, unicode=True, now=lambda: 0.0, width=200, height=50)
    before_end: list[str] = []
    for data in h.sink.events:
        ev = data.event
        if ev.type == "StepCompleted" and ev.kind == "foreach" and not before_end:
            before_end = view.render()
        view.feed(data)
    return before_end, view.render()


def header_steps(line: str) -> dict[str, int]:
    """`steps ✓4 ✗1 ■2` → counts (absent glyphs are zero)."""
    part = line.split("steps ", 1)[1]
    found = {glyph: int(n) for glyph, n in re.findall(r"([✓✗■⊘])(\d+)", part)}
    return {
        "completed": found.get("✓", 0),
        "failed": found.get("✗", 0),
        "cancelled": found.get("■", 0),
        "skipped": found.get("⊘", 0),
    }


def fan_line_items(line: str) -> dict[str, int]:
    """`foreach fan ███ 5/5 ✓3 ✗2 ⊘0 ▶0` → counts."""
    finished, total = map(int, re.search(r" (\d+)/(\d+) ", line).groups())
    found = {glyph: int(n) for glyph, n in re.findall(r"([✓✗⊘■▶])(\d+)", line)}
    return {
        "total": total,
        "finished": finished,
        "completed": found.get("✓", 0),
        "failed": found.get("✗", 0),
        "skipped": found.get("⊘", 0),
        "cancelled": found.get("■", 0),
        "running": found.get("▶", 0),
    }


def show_items(lines: list[str]) -> dict[str, int]:
    """`items 5/5: 3 completed, 2 failed` → counts."""
    # (the `error` line above the table may speak of items too: `foreach 'x': 2 of 5 items failed`)
    line = next(line for line in lines if re.search(r"items \d+/\d+:", line))
    finished, total = map(int, re.search(r"items (\d+)/(\d+):", line).groups())
    found = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line.split(":", 1)[1])}
    keys = ("completed", "failed", "skipped", "cancelled", "running")
    return {"total": total, "finished": finished, **{k: found.get(k, 0) for k in keys}}


def test_the_dashboard_the_live_view_show_runs_and_replay_agree(
    h: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = record(h)
    # flaky once (3 attempts), fix before the loop and in 2 iterations; the foreach fails with
    # its 2 failed items, so the run fails there and `after` never runs.
    expected_steps = {"completed": 4, "failed": 1, "cancelled": 0, "skipped": 0}
    expected_items = {
        "total": 5, "finished": 5, "completed": 3, "failed": 2, "skipped": 0, "cancelled": 0, "running": 0
    }  # fmt: skip

    # The dashboard: fed as its bridge feeds it (compact events), read as its header reads it.
    dashboard = RunView(clock=lambda: 0.0)
    dashboard.apply_all(compact(d) for d in h.sink.events)
    dash_counts = dashboard.step_counts()
    assert {k: dash_counts.get(k, 0) for k in expected_steps} == expected_steps
    items = ItemCounts.of(dashboard.fanouts()[0])
    assert {k: getattr(items, k) for k in expected_items} == expected_items

    # `runkon-flow run`'s live view.
    before_end, final = live_view_frames(h)
    assert header_steps(final[0]) == expected_steps
    fan_line = next(line for line in before_end if "foreach fan" in line)
    assert fan_line_items(fan_line) == expected_items

    # `show` and `runs`, from the rows the same run wrote.
    run = h.store.get_run(run_id)
    assert show_items(show_lines(h.store, run)) == expected_items
    rows = h.store.get_steps(run_id)
    assert runs_table([(run, rows)])[1].split()[-1] == "4/1/0/0"  # OK/FAILED/SKIPPED/CANCELLED
    as_json = run_json(run, rows)["steps"]
    assert {k: as_json[k if k != "completed" else "ok"] for k in expected_steps} == expected_steps

    # `replay` of the events file, drawn live.
    events = tmp_path / "events.jsonl"
    events.write_text("".join(d.to_json_line() + "\n" for d in h.sink.events))
    code = main(["replay", str(events), "--progress", "live"])
    out = capsys.readouterr().out
    frame_header = [line for line in out.splitlines() if " run " in line and "steps " in line][-1]
    assert header_steps(frame_header) == expected_steps
    assert (run.status, code) == ("failed", 1)


def test_a_run_cancelled_mid_fan_out_counts_the_same_everywhere(
    h: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case that read `steps ✓34 ✗0 ■8` live and `items 31/60: 23 completed, 8 cancelled` in
    `show`: items are not steps, and completed, cancelled and pending items are told apart."""
    h.add_workflow("workflow child { call work }")
    h.providers.append(ListProvider("tickets", ["t1", "t2", "t3", "t4", "t5", "t6"]))

    def work(info, params):
        if params.inputs["item.id"] in ("t1", "t2"):
            return ActionOutput(context="worked")
        info.cancellation.wait(10)
        raise EngineCancelled(info.cancellation.reason())

    h.agents.do("work", work)
    run = h.start(
        "workflow nightly { call prep foreach fan { over = tickets max_parallel = 2 workflow = child } }"
    )
    assert wait_until(lambda: len(h.agents.calls) == 5)  # prep, t1, t2, then t3 and t4 hold
    h.engine.cancel_run(run.run_id)
    assert run.join(5).status == "cancelled"
    expected_steps = {"completed": 1, "failed": 0, "cancelled": 1, "skipped": 0}
    expected_items = {
        "total": 6, "finished": 4, "completed": 2, "failed": 0, "skipped": 0, "cancelled": 2, "running": 0
    }  # fmt: skip

    dashboard = RunView(clock=lambda: 0.0)
    dashboard.apply_all(compact(d) for d in h.sink.events)
    assert {k: dashboard.step_counts().get(k, 0) for k in expected_steps} == expected_steps
    items = ItemCounts.of(dashboard.fanouts()[0])
    assert {k: getattr(items, k) for k in expected_items} == expected_items
    assert items.pending == 2

    before_end, final = live_view_frames(h)
    assert header_steps(final[0]) == expected_steps
    assert fan_line_items(next(line for line in before_end if "foreach fan" in line)) == expected_items

    stored = h.store.get_run(run.run_id)
    shown = show_lines(h.store, stored)
    assert show_items(shown) == expected_items
    assert "2 pending" in next(line for line in shown if "items " in line)
    assert runs_table([(stored, h.store.get_steps(run.run_id))])[1].split()[-1] == "1/0/0/1"

    events = tmp_path / "events.jsonl"
    events.write_text("".join(d.to_json_line() + "\n" for d in h.sink.events))
    code = main(["replay", str(events), "--progress", "live"])
    out = capsys.readouterr().out
    frame_header = [line for line in out.splitlines() if " run " in line and "steps " in line][-1]
    assert header_steps(frame_header) == expected_steps
    assert code == 130
