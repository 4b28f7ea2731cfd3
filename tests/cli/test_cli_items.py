"""`show RUN --items [FOREACH]`: one row per fan-out item — status, attempt, time, tokens, cost,
child run — sorted by `--sort`, with a total, fitted to the terminal; and what `show --json` says
of a run's failed items and waiting gates (docs/cli.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runkon_flow.persistence import SqliteStore

from .gate_helpers import GateRun, gate_home
from .run_helpers import cli, run_id_of, write

LONG = "rec-02-with-a-rather-long-identifier"

SPEND = f"""workflow spend {{
  foreach each {{
    over = static
    scope = {{ items = "rec-01,{LONG},rec-03,bad" }}
    max_parallel = 2
    workflow = one
    inputs = {{ name = "{{{{item.id}}}}" }}
  }}
}}
"""
# Every item's child calls an echo agent (the same spend each) and a script whose spend depends on
# the item; `bad` fails before it reports any.
ONE = """workflow one {
  inputs { name default = "" }
  call plan
  script work { run = "sh item.sh {{name}}" }
}
"""
PLAN = """---
runtime: echo
output: { usage: { input_tokens: 10, output_tokens: 5, cost_usd: 0.001 } }
---
Plan the item.
"""
ITEM_SH = """case "$1" in
  bad) echo "rate limited after 3 requests" >&2; exit 1;;
  rec-01) n=100; c=0.05;;
  rec-03) n=5000; c=0.25;;
  *) n=20; c=0.002;;
esac
echo "<<<FLOW_OUTPUT>>>"
echo '{"markers": [], "context": "'$1'",'
echo ' "usage": {"input_tokens": '$n', "output_tokens": 5, "cost_usd": '$c'}}'
echo "<<<END_FLOW_OUTPUT>>>"
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    write(tmp_path / "spend.wf", SPEND)
    write(tmp_path / "one.wf", ONE)
    write(tmp_path / "agents" / "plan.md", PLAN)
    write(tmp_path / "item.sh", ITEM_SH)
    return tmp_path


@pytest.fixture
def run_id(capsys, home: Path) -> str:
    code, out, err = cli(capsys, "run", "spend", "--dir", str(home), "--progress", "quiet")
    assert code == 1, err  # `bad` failed
    return run_id_of(out)


def _rows(out: str) -> dict[str, list[str]]:
    """The item rows of `show --items`, by (possibly cut) item id: their cells."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["ITEM", "STATUS"])
    rows = {}
    for line in lines[start + 1 :]:
        if line.strip().startswith("total:"):
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


def _children(home: Path, run_id: str) -> dict[str, str]:
    store = SqliteStore(home / "runs.db")
    try:
        step = next(s for s in store.get_steps(run_id) if s.step_name == "foreach:each")
        return {i.item_id: i.child_run_id for i in store.get_fan_out_items(step.id)}
    finally:
        store.close()


def test_items_lists_each_items_status_tokens_cost_and_child_run_with_a_total(
    capsys, home: Path, run_id: str
) -> None:
    code, out, _ = cli(capsys, "show", run_id, "--items")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "foreach 'each'"
    rows = _rows(out)
    assert list(rows) == ["rec-01", LONG, "rec-03", "bad"]  # piped: ids whole, the items' order
    children = _children(home, run_id)
    # the agent's 15 tokens and $0.001 plus the script's
    assert rows["rec-01"][:3] == ["rec-01", "completed", "1"]
    assert rows["rec-01"][4:] == ["120", "$0.051", children["rec-01"]]
    assert rows["rec-03"][4:] == ["5.0k", "$0.25", children["rec-03"]]
    assert rows[LONG][4:] == ["40", "$0.003", children[LONG]]
    # `bad` spent its agent's share before its script failed
    assert rows["bad"][:3] == ["bad", "failed", "1"] and rows["bad"][4:] == ["15", "$0.001", children["bad"]]
    assert lines[-1] == "  total: 4 items (3 completed, 1 failed) · 5.2k tok · $0.31"


def test_items_sort_by_cost_status_and_item(capsys, run_id: str) -> None:
    by_cost = list(_rows(cli(capsys, "show", run_id, "--items", "--sort", "cost")[1]))
    assert by_cost == ["rec-03", "rec-01", LONG, "bad"]
    by_status = list(_rows(cli(capsys, "show", run_id, "--items", "--sort", "status")[1]))
    assert by_status == ["bad", "rec-01", LONG, "rec-03"]  # failures first, then the items' order
    by_item = list(_rows(cli(capsys, "show", run_id, "--items", "each", "--sort", "item")[1]))
    assert by_item == ["bad", "rec-01", LONG, "rec-03"]

    data = json.loads(cli(capsys, "show", run_id, "--items", "--sort", "duration", "--json")[1])
    took = [r["duration_s"] for r in data["fan_outs"][0]["items"]]
    assert took == sorted(took, reverse=True)  # longest first


def test_items_fit_80_columns_by_cutting_long_item_ids_never_run_ids(
    capsys, home: Path, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runkon_flow.cli.history as history

    children = _children(home, run_id)
    monkeypatch.setattr(history, "terminal_width", lambda: 80)
    out = cli(capsys, "show", run_id, "--items")[1]
    assert max(len(line) for line in out.splitlines()) <= 80
    rows = _rows(out)
    cut = next(item for item in rows if item.endswith("…"))
    assert LONG.startswith(cut[:-1]) and LONG not in out
    assert {cells[-1] for cells in rows.values()} == set(children.values())  # run ids whole

    monkeypatch.setattr(history, "terminal_width", lambda: 200)
    assert LONG in _rows(cli(capsys, "show", run_id, "--items")[1])


def test_items_json_gives_the_same_rows(capsys, home: Path, run_id: str) -> None:
    data = json.loads(cli(capsys, "show", run_id, "--items", "--json", "--sort", "cost")[1])
    assert data["run"] == run_id
    (fan,) = data["fan_outs"]
    assert fan["foreach"] == "each"
    children = _children(home, run_id)
    first = fan["items"][0]
    assert {k: first[k] for k in ("item", "status", "attempt", "child_run_id")} == {
        "item": "rec-03", "status": "completed", "attempt": 1, "child_run_id": children["rec-03"],
    }  # fmt: skip
    assert first["usage"] == {"input_tokens": 5010, "output_tokens": 10, "cost_usd": 0.251}
    assert [r["item"] for r in fan["items"]] == ["rec-03", "rec-01", LONG, "bad"]
    assert fan["total"] == {
        "items": 4,
        "statuses": {"completed": 3, "failed": 1},
        "usage": {"input_tokens": 5160, "output_tokens": 35, "cost_usd": 0.306},
    }


def test_items_read_the_fan_out_in_bulk_not_item_by_item(
    capsys, home: Path, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No store read names a child run: the items and their children's usage are read once for
    the whole fan-out, whatever its size."""
    children = set(_children(home, run_id).values())
    asked: list[tuple[str, tuple]] = []
    for name in ("get_run", "get_steps", "get_step", "get_fan_out_items", "list_runs", "item_child_usage"):
        real = getattr(SqliteStore, name, None)
        if real is None:
            continue

        def counted(self, *args, _real=real, _name=name, **kwargs):
            asked.append((_name, args))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SqliteStore, name, counted)
    assert cli(capsys, "show", run_id, "--items")[0] == 0
    assert not [call for call in asked if children & set(call[1])]
    assert [n for n, _ in asked].count("get_fan_out_items") == 1
    assert [n for n, _ in asked].count("item_child_usage") == 1


def test_items_before_the_run_id_is_the_same_table(capsys, run_id: str) -> None:
    """`show --items RUN_ID`, as people write an option first: --items took the run id as its
    FOREACH and argparse said `the following arguments are required: RUN_ID`."""
    after = cli(capsys, "show", run_id, "--items")
    before = cli(capsys, "show", "--items", run_id)
    assert before[0] == 0 and before[1] == after[1]
    assert (
        cli(capsys, "show", "--items", run_id, "--sort", "cost")[1]
        == cli(capsys, "show", run_id, "--items", "--sort", "cost")[1]
    )
    code, _, err = cli(capsys, "show", "--items")
    assert code == 2 and "RUN_ID" in err
    code, _, err = cli(capsys, "show")
    assert code == 2 and "RUN_ID" in err


def test_items_of_an_unknown_foreach_names_the_run_s_foreach_steps(capsys, run_id: str) -> None:
    code, _, err = cli(capsys, "show", run_id, "--items", "nosuch")
    assert code == 1
    assert f"run {run_id} has no foreach 'nosuch' (its foreach steps: each)" in err
    assert cli(capsys, "show", run_id, "--items", "foreach:each")[0] == 0  # as the step row names it
    code, _, err = cli(capsys, "show", run_id, "--sort", "cost")
    assert code == 2 and "--items" in err


def test_show_json_lists_failed_items_with_child_run_error_and_cluster(
    capsys, home: Path, run_id: str
) -> None:
    data = json.loads(cli(capsys, "show", run_id, "--json")[1])
    # what scripts read stays as it was
    for key in ("id", "status", "steps", "usage", "step_rows", "failure_clusters"):
        assert key in data
    assert data["failed_items"] == [
        {
            "foreach": "each",
            "step_id": data["failure_clusters"][0]["step_id"],
            "item": "bad",
            "status": "failed",
            "child_run_id": _children(home, run_id)["bad"],
            "error": "Script 'work' exited with code 1 · rate limited after 3 requests",
            "cluster": 1,
        }
    ]
    assert data["waiting_gates"] == []


def test_show_json_lists_waiting_gates(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = gate_home(tmp_path, monkeypatch)
    gate = GateRun(home)
    try:
        data = json.loads(cli(capsys, "show", gate.run_id, "--json")[1])
        (waiting,) = data["waiting_gates"]
        assert waiting["run_id"] == gate.run_id and waiting["gate"] == "human_approval"
        assert waiting["prompt"] == "Ship the build?" and waiting["item"] is None
        assert list(waiting["options"].items()) == [("fast", "Fast lane"), ("careful", "Careful rollout")]
        assert data["failed_items"] == []
    finally:
        gate.close()


def _wide_fan_out(db: Path, items: int) -> tuple[str, dict[str, str]]:
    """A finished run whose foreach ran `items` items, every second one failed (its child's step
    failed with `Script 'lint' exited with code N`): the run's id and each item's child run."""
    from runkon_flow.persistence.models import (
        FanOutItemStatus,
        FanOutItemUpdate,
        NewRun,
        NewStep,
        RunStatus,
        StepUpdate,
    )

    store = SqliteStore(db)
    run = store.create_leased_run(NewRun(workflow_name="wide"), "t", 600)
    step = store.insert_step(NewStep(run.id, "foreach:each", "foreach", retry_count=0, node_path="body.0"))
    rows = store.insert_fan_out_items(step, [("t", f"rec-{i:02d}", "", {}) for i in range(items)])
    children, updates = {}, []
    for i, item in enumerate(rows):
        below = NewRun(workflow_name="one", parent_run_id=run.id, parent_workflow_run_id=run.id)
        child = store.create_leased_run(below, "c", 600)
        work = store.insert_step(NewStep(child.id, "work", retry_count=0, node_path="body.0"))
        if i % 2:
            store.update_step(work, StepUpdate.failed(1, f"Script 'lint' exited with code {i}"))
            store.finish_run(child.id, RunStatus.FAILED, None, "step work failed", "c")
            updates.append((item, FanOutItemUpdate.terminal(FanOutItemStatus.FAILED, child.id)))
        else:
            store.update_step(work, StepUpdate.completed(1, result_text="ok"))
            store.finish_run(child.id, RunStatus.COMPLETED, "ok", None, "c")
            updates.append((item, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, child.id)))
        children[f"rec-{i:02d}"] = child.id
    store.batch_update_fan_out_items(updates)
    store.update_step(step, StepUpdate.failed(1, f"{items // 2} items failed"))
    store.finish_run(run.id, RunStatus.FAILED, None, "foreach each failed", "t")
    store.close()
    return run.id, children


@pytest.mark.parametrize("json_out", [False, True])
def test_show_reads_a_fan_out_s_failed_items_in_bulk_not_item_by_item(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_out: bool
) -> None:
    """`show` names a fan-out's failed items and clusters them by their child runs' errors: with
    thousands failed, reading each child run and its steps was two queries per item. Now no store
    read names a child run — a whole fan-out's are read in one or two — and what it says is the
    same. Each is read once (h59): the run's children (the `children` line, the failed items'
    errors), the fan-out's item rows and its children's failed steps (the failed items listed and
    the failure clusters) were read twice by the text, and `--json` read the item rows twice."""
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    run_id, children = _wide_fan_out(tmp_path / "runs.db", 60)
    asked: list[tuple[str, tuple]] = []
    spied = ("get_run", "get_steps", "get_step", "list_runs", "item_child_failed_steps", "get_fan_out_items")
    for name in spied:
        real = getattr(SqliteStore, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            asked.append((_name, args + tuple(kwargs.values())))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SqliteStore, name, counted)
    code, out, _ = cli(capsys, "show", run_id, *(["--json"] if json_out else []))
    assert code == 0
    assert not [call for call in asked if set(children.values()) & set(call[1])]
    names = [n for n, _ in asked]
    assert names.count("item_child_failed_steps") == names.count("get_fan_out_items") == 1
    assert [call for call in asked if call[0] == "list_runs" and run_id in call[1]] == [
        ("list_runs", (1_000_000, run_id))
    ]
    if json_out:
        failed = json.loads(out)["failed_items"]
        assert len(failed) == 30
        assert failed[0] == {
            "foreach": "each",
            "step_id": failed[0]["step_id"],
            "item": "rec-01",
            "status": "failed",
            "child_run_id": children["rec-01"],
            "error": "Script 'lint' exited with code 1",
            "cluster": 1,
        }
    else:
        assert f"item rec-01 failed (child run {children['rec-01']}): Script 'lint' exited with code 1" in out
        assert "1. 30 × Script 'lint' exited with code <n>" in out
        assert "… and 20 more failed items" in out


def test_a_store_without_the_bulk_read_gives_the_same_item_errors(tmp_path: Path) -> None:
    """A store from elsewhere may lack `item_child_failed_steps` (optional): its children are read
    one by one, to the same errors and causes."""
    from runkon_flow.observe.loader import fanout_from_rows, fill_item_errors

    run_id, _ = _wide_fan_out(tmp_path / "runs.db", 50)
    store = SqliteStore(tmp_path / "runs.db")

    class Plain:  # the protocol's reads only
        def __getattr__(self, name: str):
            if name == "item_child_failed_steps":
                raise AttributeError(name)
            return getattr(store, name)

    try:
        (step,) = store.get_steps(run_id)
        views = []
        for reader in (store, Plain()):
            fan = fanout_from_rows("body.0", run_id, step, store.get_fan_out_items(step.id))
            fill_item_errors(reader, fan)  # type: ignore[arg-type]
            views.append((fan.errors, fan.causes))
        assert views[0] == views[1]
        assert len(views[0][1]) == 25 and views[0][1][1] == "Script 'lint' exited with code 1"
    finally:
        store.close()
