"""Usage through the CLI: tokens and cost agents report (FLOW_OUTPUT `usage`, the echo runtime's
`output.usage`, a script's block) are kept per step, summed for a foreach's items and for the
run, and shown by `show` (docs/agents.md "Usage")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runkon_flow.persistence import SqliteStore
from runkon_flow.usage import Usage

from .run_helpers import cli, run_id_of, write

SPEND = """workflow spend {
  call plan
  call review
  foreach each {
    over = static
    scope = { items = "a,b,c" }
    max_parallel = 3
    workflow = one
    inputs = { name = "{{item.id}}" }
  }
}
"""
ONE = """workflow one {
  inputs { name default = "" }
  script work { run = "sh item.sh {{name}}" }
}
"""
PLAN = """---
runtime: echo
output: { usage: { input_tokens: 1000, output_tokens: 200, cost_usd: 0.01 } }
---
Plan the work.
"""
REVIEW = """---
command: ["sh", "{{workflow_dir}}/review.sh"]
---
Review it.
"""
REVIEW_SH = """cat > /dev/null
echo "looked at it"
echo "<<<FLOW_OUTPUT>>>"
echo '{"markers": [], "context": "fine",'
echo ' "usage": {"input_tokens": 500, "output_tokens": 100, "num_turns": 2, "cost_usd": 0.005}}'
echo "<<<END_FLOW_OUTPUT>>>"
"""
ITEM_SH = """echo "<<<FLOW_OUTPUT>>>"
echo '{"markers": [], "context": "'$1'",'
echo ' "usage": {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.001}}'
echo "<<<END_FLOW_OUTPUT>>>"
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    write(tmp_path / "spend.wf", SPEND)
    write(tmp_path / "one.wf", ONE)
    write(tmp_path / "agents" / "plan.md", PLAN)
    write(tmp_path / "agents" / "review.md", REVIEW)
    write(tmp_path / "review.sh", REVIEW_SH)
    write(tmp_path / "item.sh", ITEM_SH)
    return tmp_path


def test_usage_is_kept_per_step_summed_for_items_and_the_run_and_shown(capsys, home: Path) -> None:
    code, out, err = cli(capsys, "run", "spend", "--dir", str(home), "--progress", "quiet")
    assert code == 0, err
    run_id = run_id_of(out)

    store = SqliteStore(home / "runs.db")
    try:
        rows = {s.step_name: Usage.from_json(s.usage) for s in store.get_steps(run_id)}
        children = store.list_runs(parent_run_id=run_id)
        child_rows = [s for c in children for s in store.get_steps(c.id)]
    finally:
        store.close()
    assert rows["plan"] == Usage(input_tokens=1000, output_tokens=200, cost_usd=0.01)
    assert rows["review"] == Usage(input_tokens=500, output_tokens=100, num_turns=2, cost_usd=0.005)
    assert rows["foreach:each"] == Usage(input_tokens=30, output_tokens=15, cost_usd=0.003)  # a + b + c
    assert [Usage.from_json(s.usage) for s in child_rows] == [Usage(10, 5, cost_usd=0.001)] * 3

    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0
    assert "usage     1,845 tokens (1,530 in, 315 out) · 2 turns · $0.0180" in out
    lines = out.splitlines()
    assert any(" plan " in ln and ln.endswith("1.2k tok · $0.01") for ln in lines)
    items = "items 3/3: 3 completed · 45 tok · $0.003"
    assert any("foreach:each" in ln and ln.endswith(items) for ln in lines)

    data = json.loads(cli(capsys, "show", run_id, "--json")[1])
    assert data["usage"] == {"input_tokens": 1530, "output_tokens": 315, "num_turns": 2, "cost_usd": 0.018}
    assert {r["name"]: r["usage"] for r in data["step_rows"]}["review"] == {
        "input_tokens": 500, "output_tokens": 100, "num_turns": 2, "cost_usd": 0.005,
    }  # fmt: skip


def test_a_run_that_reports_nothing_shows_no_usage(capsys, home: Path) -> None:
    write(home / "quiet.wf", 'workflow quiet {\n  script s { run = "echo hi" }\n}\n')
    code, out, _ = cli(capsys, "run", "quiet", "--dir", str(home), "--progress", "quiet")
    assert code == 0
    run_id = run_id_of(out)
    out = cli(capsys, "show", run_id)[1]
    assert "usage" not in out and " tok" not in out
    assert json.loads(cli(capsys, "show", run_id, "--json")[1])["usage"] is None


def test_runs_lists_what_each_run_spent_and_drops_the_column_first_on_a_narrow_terminal(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(home / "quiet.wf", 'workflow quiet {\n  script s { run = "echo hi" }\n}\n')
    assert cli(capsys, "run", "spend", "--dir", str(home), "--progress", "quiet")[0] == 0
    assert cli(capsys, "run", "quiet", "--dir", str(home), "--progress", "quiet")[0] == 0

    code, out, _ = cli(capsys, "runs")  # piped: every column
    assert code == 0
    header, quiet, spend = out.splitlines()
    assert header.split()[-1] == "USAGE"
    assert spend.endswith("1.8k tok · $0.018")  # plan + review + three items
    assert quiet.split()[-1] == "1/0/0/0"  # reported nothing: an empty cell
    assert json.loads(cli(capsys, "runs", "--json")[1])[1]["usage"]["cost_usd"] == 0.018

    # On a terminal narrower than the table, USAGE goes first; the other columns stay.
    import runkon_flow.cli.history as history

    width = max(len(line) for line in out.splitlines()) - 1
    monkeypatch.setattr(history, "terminal_width", lambda: width)
    header = cli(capsys, "runs")[1].splitlines()[0]
    assert "USAGE" not in header and header.split()[-1] == "OK/FAILED/SKIPPED/CANCELLED"
    monkeypatch.setattr(history, "terminal_width", lambda: width + 1)
    assert cli(capsys, "runs")[1].splitlines()[0].split()[-1] == "USAGE"


def test_runs_has_no_usage_column_when_no_run_reported_any(capsys, home: Path) -> None:
    write(home / "quiet.wf", 'workflow quiet {\n  script s { run = "echo hi" }\n}\n')
    assert cli(capsys, "run", "quiet", "--dir", str(home), "--progress", "quiet")[0] == 0
    assert "USAGE" not in cli(capsys, "runs")[1]


FAILS_ONCE_SH = """cat > /dev/null
echo "<<<FLOW_OUTPUT>>>"
echo '{"markers": [], "context": "half done", "usage": {"input_tokens": 700, "cost_usd": 0.007}}'
echo "<<<END_FLOW_OUTPUT>>>"
if [ ! -e tried ]; then touch tried; echo "ran out of turns" >&2; exit 1; fi
"""
COSTLY = """workflow costly {
  call flaky { retries = 1 }
  call workflow broken { on_fail = continue }
  call bill { on_fail = continue }
}
"""
BROKEN = """workflow broken {
  script wrapped { run = "sh item.sh x; exit 3" }
}
"""
BILL = """---
runtime: echo
fail: true
output: { usage: { output_tokens: 40, cost_usd: 0.002 } }
---
Bill it.
"""


def test_a_failed_attempt_keeps_what_it_spent(capsys, home: Path) -> None:
    """An agent that reported usage and then failed still spent it: the failed attempt's row, the
    run's total and `show` count it — a command agent that exits non-zero after its block, an echo
    agent failing on purpose, and a sub-workflow whose wrapped agent failed (its child's total)."""
    write(home / "costly.wf", COSTLY)
    write(home / "broken.wf", BROKEN)
    write(home / "agents" / "flaky.md", '---\ncommand: ["sh", "{{workflow_dir}}/flaky.sh"]\n---\nGo.\n')
    write(home / "flaky.sh", FAILS_ONCE_SH)
    write(home / "agents" / "bill.md", BILL)
    code, out, err = cli(capsys, "run", "costly", "--dir", str(home), "--progress", "quiet")
    assert code == 0, err
    run_id = run_id_of(out)

    store = SqliteStore(home / "runs.db")
    try:
        rows = [(s.step_name, s.status, Usage.from_json(s.usage)) for s in store.get_steps(run_id)]
    finally:
        store.close()
    assert rows == [
        ("flaky", "failed", Usage(input_tokens=700, cost_usd=0.007)),
        ("flaky", "completed", Usage(input_tokens=700, cost_usd=0.007)),
        ("workflow:broken", "failed", Usage(input_tokens=10, output_tokens=5, cost_usd=0.001)),
        ("bill", "failed", Usage(output_tokens=40, cost_usd=0.002)),
    ]
    data = json.loads(cli(capsys, "show", run_id, "--json")[1])
    assert data["usage"] == {"input_tokens": 1410, "output_tokens": 45, "cost_usd": 0.017}


def test_a_rerun_bills_only_what_it_ran_and_every_view_says_the_same(capsys, home: Path) -> None:
    """A rerun copies the steps before the one it reruns from; what they spent was spent by the
    run it reruns. `show`, `runs`, `--json` and the run model (folded from the stored stream, as
    the dashboard's header and `watch` read it, or loaded from the rows, as the history does)
    all leave it out — before, `show` billed the copied `plan` again while the header did not."""
    from runkon_flow.event_log import each_envelope
    from runkon_flow.observe import RunModel
    from runkon_flow.observe.loader import load_run

    code, out, _ = cli(capsys, "run", "spend", "--dir", str(home), "--progress", "quiet")
    assert code == 0
    old = run_id_of(out)
    code, out, err = cli(capsys, "rerun", old, "--from", "review", "--dir", str(home), "--progress", "quiet")
    assert code == 0, err
    new = run_id_of(out)
    ran = Usage(input_tokens=530, output_tokens=115, num_turns=2, cost_usd=0.008)  # review + 3 items

    out = cli(capsys, "show", new)[1]
    assert f"usage     {ran.long()}" in out
    assert f"not counted: 1.2k tok · $0.01 spent on reused steps in run {old}" in out
    assert Usage.from_metadata(json.loads(cli(capsys, "show", new, "--json")[1])["usage"]) == ran
    listed = {r["id"]: r["usage"] for r in json.loads(cli(capsys, "runs", "--json")[1])}
    assert Usage.from_metadata(listed[new]) == ran
    plan = Usage(input_tokens=1000, output_tokens=200, cost_usd=0.01)
    assert Usage.from_metadata(listed[old]) == ran + plan

    store = SqliteStore(home / "runs.db")
    try:
        folded = RunModel()
        folded.root_run_id = new
        folded.apply_all(each_envelope(store, new))
        loaded = load_run(store, new)
    finally:
        store.close()
    assert folded.usage() == ran == loaded.usage()
