"""Failure clusters through the CLI: `show` groups a fan-out's failed items by what went wrong,
and `retry --cluster N` runs one group again (docs/when-things-go-wrong.md).

The issue's scenario, small: 60 items, 15 of them fail in three kinds whose messages differ from
item to item (numbers, hex ids, paths); `show` lists three clusters; retrying one ends with those
items completed on a second attempt, the earlier attempts still listed, the other two kinds
untouched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from runkon_flow.dsl.parser import parse_file
from runkon_flow.event_log import StoredEventWriter
from runkon_flow.persistence import FanOutItemStatus, NewRun, RunStatus, SqliteStore
from runkon_flow.plugins.item_providers import StaticProvider
from runkon_flow.plugins.resolvers import DirectoryWorkflowResolver
from runkon_flow.runtime import DefaultRunContext, FlowEngineBuilder, RunInput

from .run_helpers import cli, run_id_of, write

ITEMS = [f"i{n:03d}" for n in range(60)]
FAN = (
    "workflow fan {\n  foreach each {\n    over = static\n"
    f'    scope = {{ items = "{",".join(ITEMS)}" }}\n'
    '    max_parallel = 6\n    workflow = one\n    inputs = { name = "{{item.id}}" }\n  }\n}\n'
)
ONE = """workflow one {
  inputs { name default = "" }
  script work { run = "sh work.sh {{name}}" }
}
"""
# Items 0, 4, 8 … (every 4th up to 19): three kinds by n % 3; each message carries varying parts.
# A retried item succeeds when `fixed-<kind>` exists.
WORK = r"""n=$(echo "$1" | sed 's/^i0*//'); n=${n:-0}
if [ $((n % 4)) -ne 0 ] || [ "$n" -ge 60 ] || [ $((n / 4)) -ge 15 ]; then exit 0; fi
kind=$((n / 4 % 3))
test -f "fixed-$kind" && exit 0
case $kind in
  0) echo "rate limited: retry after $((n + 7))s (request 0x$(printf '%08x' $((n * 7919 + 48879))))" >&2 ;;
  1) echo "schema mismatch in /data/batch-$n/$1.json line $((n * 3)): expected int" >&2 ;;
  2) echo "connection reset by 10.0.$n.7:443 at 2026-12-03T13:$((10 + n % 50)):00Z" >&2 ;;
esac
exit 3
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "fan.wf", FAN)
    write(tmp_path / "one.wf", ONE)
    write(tmp_path / "work.sh", WORK)
    return tmp_path


def clusters_section(out: str) -> str:
    """`show`'s failure clusters, up to the blank line that ends them."""
    return out[out.index("failure clusters") :].split("\n\n")[0]


def failing(kind: int) -> set[str]:
    return {f"i{n:03d}" for n in range(0, 60, 4) if n // 4 < 15 and n // 4 % 3 == kind}


def test_show_groups_failed_items_into_clusters_and_retry_cluster_runs_one_group(capsys, home: Path) -> None:
    code, out, err = cli(capsys, "run", "fan", "--dir", str(home), "--progress", "quiet")
    assert code == 1
    run_id = run_id_of(out)
    # Where the user decides what to do next, the command that runs the failed items again.
    # … with the workflow folder the run was started with, so it can be pasted as it is.
    assert (
        f"retry the 15 failed items: runkon-flow retry {run_id} --failed --dir {home} (or --cluster N" in err
    )
    code, _, err = cli(capsys, "watch", run_id, "--progress", "plain")
    assert code == 1 and f"runkon-flow retry {run_id} --failed" in err  # watched from elsewhere too

    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0
    section = clusters_section(out)
    assert f"failure clusters (retry one: runkon-flow retry {run_id} --cluster N)" in section
    assert "  foreach 'each'" in section
    # Three kinds, five items each, told apart despite every message being different; what they
    # all start with is said once, so each line starts with what sets it apart.
    assert "    all: Script 'work' exited with code <n>\n" in section
    assert "1. 5 × rate limited: retry after <n>s (request <id>)" in section
    assert "2. 5 × schema mismatch in <path> line <n>: expected int" in section
    assert "3. 5 × connection reset by <n>:<n> at <time>" in section
    assert "    4. " not in section
    # Each failed item with its cause: the script's stderr, not only "exited with code 3".
    assert (
        "item i004 failed (child run " in out
        and "): Script 'work' exited with code 3 · schema mismatch in /data/batch-4/i004.json"
        " line 12: expected int\n"
        in out
    )
    assert "items i000, i012, i024, i036, i048" in section

    code, out, _ = cli(capsys, "show", run_id, "--json")
    clusters = json.loads(out)["failure_clusters"]
    assert [(c["number"], c["count"], set(c["items"])) for c in clusters] == [
        (1, 5, failing(0)),
        (2, 5, failing(1)),
        (3, 5, failing(2)),
    ]
    assert clusters[1]["example"].endswith("schema mismatch in /data/batch-4/i004.json line 12: expected int")

    # Retry the schema-mismatch cluster after fixing its cause.
    (home / "fixed-1").touch()
    code, out, err = cli(
        capsys, "retry", run_id, "--cluster", "2", "--yes", "--dir", str(home), "--progress", "quiet"
    )
    assert code == 1, err  # the other two kinds still fail: the run stays failed
    assert "foreach 'each': retry 5 of 60 items (i004, i016, i028, i040, i052); 45 completed kept" in err

    store = SqliteStore(home / "runs.db")
    try:
        first, second = sorted(
            (s for s in store.get_steps(run_id) if s.role == "foreach"), key=lambda s: (s.started_at, s.id)
        )
        before = {i.item_id: i for i in store.get_fan_out_items(first.id)}
        after = {i.item_id: i for i in store.get_fan_out_items(second.id)}
    finally:
        store.close()
    for item in failing(1):
        assert after[item].status is FanOutItemStatus.COMPLETED
        assert (after[item].attempt, after[item].previous_child_run_id) == (2, before[item].child_run_id)
        assert before[item].status is FanOutItemStatus.FAILED  # the earlier attempt is kept
    for item in failing(0) | failing(2):
        assert after[item].status is FanOutItemStatus.FAILED and after[item].attempt == 1

    code, out, _ = cli(capsys, "show", run_id)
    section = clusters_section(out)
    assert "1. 5 × rate limited" in section
    assert "2. 5 × connection reset" in section
    assert "schema mismatch" not in section
    for item in failing(1):
        earlier = before[item].child_run_id
        assert f"{item}: attempt 2 completed (earlier attempt: child run {earlier} failed)" in out

    # Fix the other two kinds and retry cluster by cluster: the run ends completed.
    (home / "fixed-0").touch()
    (home / "fixed-2").touch()
    code, out, err = cli(
        capsys, "retry", run_id, "--cluster", "1", "--yes", "--dir", str(home), "--progress", "quiet"
    )
    assert code == 1, err  # connection resets are still failed items
    code, out, _ = cli(capsys, "show", run_id)
    # One cluster left: nothing is shared with another, so its line says all of it.
    assert (
        "1. 5 × Script 'work' exited with code <n> · connection reset" in out[out.index("failure clusters") :]
    )
    code, out, err = cli(
        capsys, "retry", run_id, "--cluster", "1", "--yes", "--dir", str(home), "--progress", "quiet"
    )
    assert code == 0, err
    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0
    assert "\nstatus    completed\n" in out
    assert "failure clusters" not in out
    assert "attempt 2 completed (earlier attempt: child run " in out  # show lists the retried items
    store = SqliteStore(home / "runs.db")
    try:
        assert store.get_run(run_id).status is RunStatus.COMPLETED  # type: ignore[union-attr]
        last = max(
            (s for s in store.get_steps(run_id) if s.role == "foreach"), key=lambda s: (s.started_at, s.id)
        )
        rows = {i.item_id: i for i in store.get_fan_out_items(last.id)}
        assert all(row.status is FanOutItemStatus.COMPLETED for row in rows.values())
        for item in failing(0) | failing(1) | failing(2):  # every retried item keeps its first attempt
            assert (rows[item].attempt, rows[item].previous_child_run_id) == (2, before[item].child_run_id)
            assert store.get_run(before[item].child_run_id).status is RunStatus.FAILED  # type: ignore[arg-type,union-attr]
    finally:
        store.close()


def test_a_failed_run_ends_on_its_clusters_under_the_live_view(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the user decides what to do next, the numbers `--cluster N` takes are on screen —
    three lines per cluster instead of one per failed item (which `show` lists)."""
    monkeypatch.setenv("COLUMNS", "120")  # the live view cuts its lines to the terminal's width
    code, out, err = cli(capsys, "run", "fan", "--dir", str(home), "--progress", "live")
    assert code == 1
    run_id = run_id_of(out)
    assert re.search(rf"run {run_id} failed after \S+: foreach 'each': 15 of 60 items failed\n", out)
    tail = out[out.rindex("failure clusters") :]
    assert tail.startswith(
        "failure clusters\n  foreach 'each'\n    all: Script 'work' exited with code <n>\n"
    )
    assert "    1. 5 × rate limited: retry after <n>s (request <id>)\n       items i000, " in tail
    assert "    3. 5 × connection reset by <n>:<n> at <time>\n" in tail
    assert "\nfailed steps\n  foreach:each: foreach 'each': 15 of 60 items failed\n" in tail
    assert "item i004 failed" not in tail  # the clusters stand for the item list
    assert f"runkon-flow retry {run_id} --failed --dir {home} (or --cluster N from the list above)" in err

    code, _, err = cli(capsys, "watch", run_id, "--progress", "plain")  # no live view: brief list
    assert "    1. 5 × rate limited: retry after <n>s (request <id>)\n" in err
    assert "--failed (or --cluster N from the list above)" in err


def test_a_plain_run_ends_on_its_clusters_above_the_retry_hint_numbered_as_show_numbers_them(
    capsys, home: Path
) -> None:
    """In CI (`--progress plain`) the closing lines say what went wrong, not only `foreach
    'each': 15 of 60 items failed`: each cluster by what tells it apart, three item ids each, and
    the numbers `--cluster N` takes — `show`'s numbers."""
    code, out, err = cli(capsys, "run", "fan", "--dir", str(home), "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    assert err.splitlines()[-11:] == [
        f"resume with: runkon-flow resume {run_id} --dir {home}",
        "failure clusters",
        "  foreach 'each'",
        "    all: Script 'work' exited with code <n>",
        "    1. 5 × rate limited: retry after <n>s (request <id>)",
        "       items i000, i012, i024, … (2 more)",
        "    2. 5 × schema mismatch in <path> line <n>: expected int",
        "       items i004, i016, i028, … (2 more)",
        "    3. 5 × connection reset by <n>:<n> at <time>",
        "       items i008, i020, i032, … (2 more)",
        f"retry the 15 failed items: runkon-flow retry {run_id} --failed --dir {home} "
        "(or --cluster N from the list above)",
    ]
    _, shown, _ = cli(capsys, "show", run_id)
    for number, first in ((1, "i000"), (2, "i004"), (3, "i008")):
        assert re.search(rf"    {number}\. 5 × .*\n       items {first}, ", clusters_section(shown))


KINDS = """workflow kinds {
  foreach each {
    over = static
    scope = { items = "a,b,c,d,e,f,g" }
    max_parallel = 2
    workflow = kind
    inputs = { name = "{{item.id}}" }
  }
}
"""
KIND = """workflow kind {
  inputs { name default = "" }
  script work { run = "sh kind.sh {{name}}" }
}
"""
KIND_SH = r"""case $1 in
  a|f) echo "alpha broke" >&2 ;;
  b) echo "beta broke" >&2 ;;
  c) echo "gamma broke because the upstream service answered with a page nobody could read at all" >&2 ;;
  d) echo "delta broke" >&2 ;;
  e) echo "epsilon broke" >&2 ;;
  *) exit 0 ;;
esac
exit 3
"""


def test_a_plain_run_with_many_kinds_of_failure_lists_the_first_three_within_80_columns(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNKON_LEASE_TTL", raising=False)
    write(tmp_path / "kinds.wf", KINDS)
    write(tmp_path / "kind.wf", KIND)
    write(tmp_path / "kind.sh", KIND_SH)
    code, out, err = cli(capsys, "run", "kinds", "--db", "r.db", "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    lines = err.splitlines()
    listed = lines[lines.index("failure clusters") : -1]
    assert listed == [
        "failure clusters",
        "  foreach 'each'",
        "    all: Script 'work' exited with code <n>",
        "    1. 2 × alpha broke",
        "       items a, f",
        "    2. 1 × beta broke",
        "       items b",
        "    3. 1 × gamma broke because the upstream service answered with a page nobody…",
        "       items c",
        f"  … and 2 more kinds (runkon-flow show {run_id} --db r.db lists them all)",
    ]
    assert all(len(line) <= 80 for line in listed[:-1])
    assert lines[-1].startswith("retry the 6 failed items: ")


def test_retry_an_unknown_cluster_says_which_clusters_there_are(capsys, home: Path) -> None:
    code, out, _ = cli(capsys, "run", "fan", "--dir", str(home), "--progress", "quiet")
    run_id = run_id_of(out)
    code, out, err = cli(capsys, "retry", run_id, "--cluster", "7", "--yes", "--dir", str(home))
    assert code == 1  # a cluster the run does not have, as an unknown item: exit 1, not 2
    # Each cluster by what tells it apart, as `show` lists it: not the `Script 'work' exited with
    # code <n>` they all start with, which left no room for the rest.
    assert err == (
        f"runkon-flow retry: error: no failure cluster 7 in run {run_id} (clusters: "
        "1: 5 × rate limited: retry after <n>s (request <id>); "
        "2: 5 × schema mismatch in <path> line <n>: expected int; "
        "3: 5 × connection reset by <n>:<n> at <time>)\n"
    )


def test_items_whose_child_workflow_no_longer_loads_say_why_in_show_logs_and_its_clusters(
    capsys, home: Path
) -> None:
    """The report: `1. 1 × (no error recorded)   items lib-core` for an item whose child workflow
    failed to load. Such an item gets no child run, so its error is only in the event that ended
    it; `show`, its clusters, `logs`, `grep` and the run model a dashboard reopens the run into
    read it there (`logs` said `error: failed before any step ran`).
    (`run`, `resume` and `retry` refuse a broken child file up front; a program embedding the
    engine with a resolver that reads the files as children start meets it at run time.)"""
    (home / "one.wf").write_text(ONE.replace("script work {", "script work {{"))  # one typo
    with SqliteStore(home / "runs.db") as store:
        engine = (
            FlowEngineBuilder()
            .workflow_resolver(DirectoryWorkflowResolver(home))
            .item_provider(StaticProvider(home))
            .build()
        )
        fan = parse_file(home / "fan.wf")
        run_id = store.create_run(NewRun(workflow_name=fan.name)).id
        events = StoredEventWriter(store, run_id)  # the run's events, kept as `run` keeps them
        run_input = RunInput(
            persistence=store, workflow_run_id=run_id, run_ctx=DefaultRunContext(home), event_sinks=[events]
        )
        assert not engine.run_workflow(fan, run_input).all_succeeded
        events.close()
        [step] = [s for s in store.get_steps(run_id) if s.step_name == "foreach:each"]
        unrun = store.get_fan_out_items(step.id)
        assert len(unrun) == 60 and {i.child_run_id for i in unrun} == {None}  # nothing dispatched

    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0
    section = clusters_section(out)
    assert "(no error recorded)" not in section
    position = re.search(r"    1\. 60 × .*<path>.*: expected .*", section)
    assert position, section
    [item] = [line for line in out.splitlines() if line.startswith("    item i000 failed: ")]
    assert f"{home / 'one.wf'}:3:16: expected" in item  # the file and the place, unmasked

    code, out, _ = cli(capsys, "logs", run_id, "i007", "--failed")
    assert code == 0
    assert out.splitlines()[:2] == [
        "==> each[i007] (failed) <==",
        f"error: Parse error in {home / 'one.wf'}:3:16: "
        "expected `key = value` or `}` in `script work`, found `{`",
    ]
    code, out, _ = cli(capsys, "grep", "one.wf:3:16", run_id)
    assert code == 0 and out.count("==> each[") == 60, out

    code, out, _ = cli(capsys, "show", run_id, "--json")
    [cluster] = json.loads(out)["failure_clusters"]
    assert cluster["count"] == 60 and f"{home / 'one.wf'}:3:16: expected" in cluster["example"]

    from runkon_flow.observe.loader import load_run

    with SqliteStore(home / "runs.db") as store:
        [fan] = load_run(store, run_id).runs[run_id].fanouts.values()
    assert f"{home / 'one.wf'}:3:16: expected" in fan.errors[fan.index["i000"]]
    assert fan.index["i000"] not in fan.child_runs  # no child run, not a `dispatching` one
