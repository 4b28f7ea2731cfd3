"""`runkon-flow retry`: run failed fan-out items of a finished run again, keeping the rest."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from runkon_flow.persistence import FanOutItemStatus, RunStatus, SqliteStore

from .run_helpers import cli, cli_env, events_of, run_id_of, spawn, stop, wait_for, write

FAN = """workflow fan {
  foreach each {
    over         = static
    scope        = { items = "a,b,c,d,e" }
    max_parallel = 2
    workflow     = one
    inputs       = { name = "{{item.id}}" }
  }
  script after { run = "echo after >> after.log" }
}
"""
# b and d fail on their first attempt and succeed on the second; every execution is counted.
ONE = """workflow one {
  inputs { name default = "" }
  script work { run = "sh work.sh {{name}}" }
}
"""
WORK = """echo "$1" >> runs.log
case "$1" in b|d) test -f "seen-$1" && exit 0; touch "seen-$1"; exit 3;; esac
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


def executions(home: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (home / "runs.log").read_text().split():
        counts[line] = counts.get(line, 0) + 1
    return counts


def failed_run(capsys: pytest.CaptureFixture[str], home: Path) -> str:
    code, out, _ = cli(capsys, "run", "fan", "--dir", str(home), "--progress", "plain")
    assert code == 1
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}
    assert not (home / "after.log").exists()  # the run stopped at the failed fan-out
    return run_id_of(out)


def items_of(home: Path, run_id: str) -> list[dict[str, tuple]]:
    """Per attempt of the fan-out (oldest first): item id -> (status, attempt, previous child run)."""
    store = SqliteStore(home / "runs.db")
    try:
        steps = sorted(
            (s for s in store.get_steps(run_id) if s.role == "foreach"), key=lambda s: (s.started_at, s.id)
        )
        return [
            {
                i.item_id: (
                    FanOutItemStatus(i.status).value,
                    i.attempt,
                    i.previous_child_run_id,
                    i.child_run_id,
                )
                for i in store.get_fan_out_items(s.id)
            }
            for s in steps
        ]
    finally:
        store.close()


def test_retry_failed_runs_only_the_failed_items_again_and_the_run_completes(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    first = items_of(home, run_id)[0]
    assert {k: v[0] for k, v in first.items()} == {
        "a": "completed", "b": "failed", "c": "completed", "d": "failed", "e": "completed",
    }  # fmt: skip

    code, out, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert "foreach 'each': retry 2 of 5 items (b, d); 3 completed kept" in err
    # Completed items did not run again; failed ones ran exactly once more; the step after ran.
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}
    assert (home / "after.log").read_text() == "after\n"

    store = SqliteStore(home / "runs.db")
    try:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
    finally:
        store.close()
    before, after = items_of(home, run_id)
    assert before == first  # the earlier attempt is kept as it was
    for retried in ("b", "d"):
        status, attempt, previous, child = after[retried]
        assert (status, attempt, previous) == ("completed", 2, first[retried][3])
        assert child != first[retried][3]  # a new child run; the failed one is kept
    for kept in ("a", "c", "e"):
        assert after[kept] == first[kept]  # same child run, same attempt: not touched

    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0
    lines = out.splitlines()
    heading = lines.index("items of foreach 'each' run again by a resume or retry")  # says what follows
    assert lines[heading - 1] == ""
    assert lines[heading + 1 : heading + 3] == [
        f"  {retried}: attempt 2 completed (earlier attempt: child run {first[retried][3]} failed)"
        for retried in ("b", "d")
    ]
    # The fan-out ran twice: its two rows read attempt 1 and 2 (both TRY cells were empty).
    rows = [line.split() for line in lines if "foreach:each" in line]
    assert [row[:4] for row in rows] == [
        ["0", "failed", "foreach:each", "1"],
        ["0", "completed", "foreach:each", "2"],
    ]
    [ran_once] = [line.split() for line in lines if line.split()[2:3] == ["after"]]
    assert ran_once[3].endswith("s")  # its duration: a step that ran once has no TRY number

    # `--json` says what the text says: the child runs' counts and the items run again.
    data = json.loads(cli(capsys, "show", run_id, "--json")[1])
    assert data["children"] == {"total": 7, "completed": 5, "failed": 2}
    assert [
        (r["item"], r["attempt"], r["status"], r["previous_child_run_id"], r["previous_status"])
        for r in data["retried_items"]
    ] == [(retried, 2, "completed", first[retried][3], "failed") for retried in ("b", "d")]
    assert {r["child_run_id"] for r in data["retried_items"]} == {after["b"][3], after["d"][3]}
    assert [(r["name"], r["try"]) for r in data["step_rows"]] == [
        ("foreach:each", 1),
        ("foreach:each", 2),
        ("after", 1),
    ]


def test_the_plan_says_the_skipped_dependents_of_a_retried_item_run_again(capsys, home: Path) -> None:
    """An ordered fan-out: `c` waits on `b`, which fails first, so `c` is skipped. The plan said
    only `retry 1 of 3 items (b); 1 completed kept`, and then `c` ran too."""
    write(home / "items.yaml", "- a\n- b\n- id: c\n  depends_on: [b]\n")
    ordered = FAN.replace(
        'scope        = { items = "a,b,c,d,e" }', 'scope        = { file = "items.yaml" }'
    ).replace("max_parallel = 2", "max_parallel = 2\n    ordered = true\n    on_child_fail = skip_dependents")
    write(home / "fan.wf", ordered)
    code, out, _ = cli(capsys, "run", "fan", "--dir", str(home), "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert (
        "foreach 'each': retry 1 of 3 items (b); 1 completed kept; the skipped items that wait on these run "
        "again too (1 skipped: c)"
    ) in err
    assert executions(home) == {"a": 1, "b": 2, "c": 1}


def test_show_after_a_resume_to_completion_lists_no_failed_items(capsys, home: Path) -> None:
    """The replaced attempt's failures are history: they appear only under the heading of items
    run again, not as failed items of a completed run."""
    run_id = failed_run(capsys, home)
    first = items_of(home, run_id)[0]
    code, _, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "plain")
    assert code == 0, err

    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0
    assert "status    completed" in out
    assert " failed (child run " not in out
    lines = out.splitlines()
    heading = lines.index("items of foreach 'each' run again by a resume or retry")
    assert lines[heading + 1 : heading + 3] == [
        f"  {retried}: attempt 2 completed (earlier attempt: child run {first[retried][3]} failed)"
        for retried in ("b", "d")
    ]


@pytest.mark.parametrize("command", ["resume", "retry"])
def test_a_broken_child_file_refuses_resume_and_retry_up_front_and_the_run_stays_resumable(
    capsys, home: Path, command: str
) -> None:
    """As `run` refuses it: at the child file's line and column, before anything is written; once
    the file is fixed, the same command runs."""
    run_id = failed_run(capsys, home)
    store = SqliteStore(home / "runs.db")
    try:
        before = (store.get_run(run_id), store.get_steps(run_id), store.last_event_seq(run_id))
    finally:
        store.close()
    (home / "one.wf").write_text(ONE.replace("script work {", "script work {{"))
    argv = (command, run_id, "--dir", str(home), "--progress", "plain")
    # (A retry of the stored definition runs the child as it ran: today's file does not matter.)
    argv += ("--failed", "--yes", "--definition", "current") if command == "retry" else ()

    code, out, err = cli(capsys, *argv)
    assert code == 1 and out == ""
    assert f"{home / 'one.wf'}:3:16: workflow 'one' does not load: expected `key = value`" in err
    assert err.endswith(
        f"runkon-flow {command}: error: a workflow this {command} would run does not load; "
        "nothing was changed: fix the file and run the same command again\n"
    )
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}
    store = SqliteStore(home / "runs.db")
    try:
        assert (store.get_run(run_id), store.get_steps(run_id), store.last_event_seq(run_id)) == before
    finally:
        store.close()

    (home / "one.wf").write_text(ONE)
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}


def test_a_child_file_that_is_gone_is_named_at_the_step_that_would_start_it(capsys, home: Path) -> None:
    """Not `<input>:`: the foreach that would start it, with its line and caret."""
    run_id = failed_run(capsys, home)
    (home / "one.wf").unlink()
    code, _, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "plain")
    assert code == 1
    assert f"{home / 'fan.wf'}:2:3: workflow 'one' is not in {home}\n 2 |   foreach each {{\n" in err
    assert "<input>" not in err


def test_retry_one_item_keeps_the_other_failures(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    code, _out, err = cli(
        capsys, "retry", run_id, "--item", "b", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 1, err  # d is still failed, so the run still fails
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 1, "e": 1}
    # d's failure is still its latest attempt (the retry kept it): `logs --failed` lists it, as
    # `show` does — it had listed only the fan-out's own line, its items under the earlier row.
    code, out, _ = cli(capsys, "logs", run_id, "--failed")
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("==>")] == [
        "==> each[d] › work (failed) <==",
        "==> each (failed) <==",
    ]
    after = items_of(home, run_id)[-1]
    assert {k: v[0] for k, v in after.items()} == {
        "a": "completed", "b": "completed", "c": "completed", "d": "failed", "e": "completed",
    }  # fmt: skip
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}


def test_in_plain_mode_stdout_is_the_run_id_line_and_events_and_the_plan_goes_to_stderr(
    capsys, home: Path
) -> None:
    """`retry … | awk 'NR==1'` gets the run id, as for `run`: the plan is a note for the person
    deciding, shown on stderr, never between the header and the events."""
    run_id = failed_run(capsys, home)
    code, out, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert run_id_of(out) == run_id  # the first line
    assert events_of(out)  # every other line is an event line
    assert (
        f"the definition of 'fan' and the workflows it started (one) are unchanged since the run\n"
        f"run {run_id} (fan, failed):\n"
    ) in err
    assert "  with the stored definition; the steps after the retried fan-out run again\n" in err


def test_several_items_in_one_option(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    code, _, err = cli(
        capsys, "retry", run_id, "--item", "b", "d", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert "retry 2 of 5 items (b, d)" in err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}


def test_items_and_clusters_may_be_spelt_in_the_plural(capsys, home: Path) -> None:
    """`retry RUN --items b d` (as people write it, and the docs did) was `unrecognized arguments:
    --items b d`; `--items` and `--clusters` are `--item` and `--cluster`."""
    run_id = failed_run(capsys, home)
    code, _, err = cli(
        capsys, "retry", run_id, "--items", "b", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 1, err  # d is still failed
    assert "retry 1 of 5 items (b)" in err
    code, _, err = cli(
        capsys, "retry", run_id, "--clusters", "1", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert "retry 1 of 5 items (d)" in err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}
    # Nothing left to retry names the run, as `resume` of a completed run does (`in this run`).
    code, _, err = cli(capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home))
    assert code == 1
    assert (
        err == f"runkon-flow retry: error: nothing to retry: run {run_id} has no failed or cancelled items\n"
    )


def test_the_run_id_may_follow_the_items_or_clusters(capsys, home: Path) -> None:
    """`--item`/`--cluster` take several values, so argparse read a RUN_ID after them as one more
    item (`the following arguments are required: RUN_ID`, or `--cluster: expected a whole number,
    got '01J…'`): options first is how many people type commands."""
    run_id = failed_run(capsys, home)
    code, _, err = cli(
        capsys, "retry", "--item", "b", run_id, "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 1, err  # d is still failed
    assert "retry 1 of 5 items (b)" in err
    code, _, err = cli(
        capsys, "retry", "--cluster", "1", run_id, "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert "retry 1 of 5 items (d)" in err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}
    for forgot in (["--failed"], ["--cluster", "2"], ["--cluster", "1", "2"], ["--item", "b"]):
        code, _, err = cli(capsys, "retry", *forgot, "--dir", str(home))
        assert code == 2 and "the following arguments are required: RUN_ID" in err, forgot
    code, _, err = cli(capsys, "retry", run_id, "--cluster", "x", "--dir", str(home))
    assert code == 2 and "argument --cluster: expected a whole number, got 'x'" in err


def test_the_log_of_a_retry_says_the_completed_items_are_kept_not_that_it_starts_over(
    capsys, home: Path
) -> None:
    """No step of the run had completed (the fan-out failed), so the run model's log said the new
    attempt "starts over" — read as every item running again, where 3 of 5 items are kept. And a
    retry says it is one: its start event counts the items it retries, and the live view said
    `▶ run … started` of it, the dashboard's log `run resumed`."""
    import io

    from runkon_flow.cli.live import LiveView
    from runkon_flow.events import parse_event_line
    from runkon_flow.observe.reducer import RunModel

    events = home / "events.jsonl"
    code, out, _ = cli(
        capsys, "run", "fan", "--dir", str(home), "--progress", "plain", "--events", str(events)
    )
    assert code == 1
    run_id = run_id_of(out)
    code, out, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home), "--events", str(events)
    )
    assert code == 0, err
    assert (run_id, "RunStarted", "workflow=fan retried=2") in events_of(out)
    log = [line.text for line in RunModel.from_jsonl(events).engine_log]
    expected = (
        "retrying 2 failed items: fan — attempt 2 (no completed step to skip; 3 completed fan-out items kept)"
    )
    assert expected in log
    assert not any("starts over" in line for line in log)

    stream = io.StringIO()
    view = LiveView(stream, top_run_id=run_id, color=False, unicode=True, width=120, height=30)
    for line in events.read_text().splitlines():
        record = parse_event_line(line)
        assert record is not None
        view.feed(record)
    view.close()
    said = stream.getvalue()
    assert f"▶ run {run_id} fan started" in said  # the run itself
    assert f"▶ retrying 2 failed items of run {run_id} fan" in said  # its retry
    assert said.count("started") == 1


def test_the_live_views_last_line_after_a_retry_says_the_whole_runs_time_and_the_retrys(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said `completed in 0.1s` — the retry's time alone — where the dashboard said the whole
    run's (`run completed in 19s`): now both say `completed in 19s (this attempt took 0.1s)`."""
    import re
    import sqlite3
    from contextlib import closing

    monkeypatch.setenv("COLUMNS", "200")  # the live view fits its lines to the terminal
    run_id = failed_run(capsys, home)
    with closing(sqlite3.connect(home / "runs.db")) as conn, conn:  # the run first started years ago
        conn.execute(
            "UPDATE workflow_runs SET started_at = ? WHERE id = ?", ("2020-01-01T10:00:00.000Z", run_id)
        )
    code, out, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home), "--progress", "live"
    )
    assert code == 0, err
    out = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)
    [last] = [line for line in out.splitlines() if f"run {run_id} completed in" in line]
    assert re.search(rf"✓ run {run_id} completed in \d+h\d\dm \(this attempt took [0-9hms.]+\)$", last), last


STEPS = """workflow steps {
  script one   { run = "echo one" }
  script two   { run = "echo two" }
  script three { run = "test -f fixed" }
}
"""


def test_the_live_view_of_a_resume_counts_and_times_the_whole_run(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its frame counted and timed only the attempt it followed: `completed · 0.1s · steps ✓1`
    for a run whose two first steps completed before — under `completed in 19s (this attempt
    took 0.1s)`. The frame now says what the dashboard's does: the whole run."""
    import re
    import sqlite3
    from contextlib import closing

    monkeypatch.setenv("COLUMNS", "200")  # the live view fits its lines to the terminal
    write(home / "steps.wf", STEPS)
    code, out, _ = cli(capsys, "run", "steps", "--dir", str(home), "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    with closing(sqlite3.connect(home / "runs.db")) as conn, conn:  # the run first started years ago
        conn.execute(
            "UPDATE workflow_runs SET started_at = ? WHERE id = ?", ("2020-01-01T10:00:00.000Z", run_id)
        )
    (home / "fixed").touch()
    code, out, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "live")
    assert code == 0, err
    last = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.rsplit("\x1b[J", 1)[-1])
    [header] = [line for line in last.splitlines() if f"run {run_id}" in line]
    assert re.search(r" · completed · \d+h\d\dm · steps ✓3 ✗0$", header), header


def test_the_live_view_says_a_resume_that_starts_over_resumed_the_run(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose first step failed has nothing to skip: the engine starts it over with
    `RunStarted` (engine.md §10.1), and the live view said `run … started`, as for a new run."""
    import re

    monkeypatch.setenv("COLUMNS", "200")
    write(home / "first.wf", 'workflow first {\n  script gate { run = "test -f fixed" }\n}\n')
    code, out, _ = cli(capsys, "run", "first", "--dir", str(home), "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    (home / "fixed").touch()
    code, out, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "live")
    assert code == 0, err
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)
    assert f"run {run_id} first resumed (no completed step to skip: it starts over)" in plain
    assert f"run {run_id} first started" not in plain


def test_retry_refuses_completed_items_unknown_items_and_a_missing_choice(capsys, home: Path) -> None:
    """An item the run does not have (or has completed) is exit 1, as an unknown step, item or
    gate is for every other command (docs/cli.md, "Exit status"); it said 2, a command-line
    mistake, so a script could not tell it from a mistyped option. A misspelt id is told the
    closest failed one."""
    run_id = failed_run(capsys, home)
    code, _, err = cli(capsys, "retry", run_id, "--item", "a", "--yes", "--dir", str(home))
    assert code == 1 and "item 'a' of foreach 'each' completed; completed items are never retried" in err
    code, _, err = cli(capsys, "retry", run_id, "--item", "zz", "--yes", "--dir", str(home))
    assert code == 1 and f"no item 'zz' in run {run_id} (failed or cancelled items: b, d)" in err
    code, _, err = cli(capsys, "retry", run_id, "--item", "dd", "--yes", "--dir", str(home))
    assert code == 1
    assert f"no item 'dd' in run {run_id} (did you mean `d`? failed or cancelled items: b, d)" in err
    code, _, err = cli(capsys, "retry", run_id, "--item", "zz", "--item", "yy", "--yes", "--dir", str(home))
    assert code == 1 and f"no items 'zz', 'yy' in run {run_id}" in err
    code, _, err = cli(capsys, "retry", run_id, "--dir", str(home))
    assert code == 2 and "--failed, or --item ID" in err
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}  # nothing ran


def _fan_run(capsys: pytest.CaptureFixture[str], home: Path, name: str, items: str, script: str) -> str:
    """The id of a run of workflow `name`: FAN over `items`, each child running `script` (with
    `{{name}}` the item's id), that failed."""
    write(
        home / f"{name}.wf",
        FAN.replace("workflow fan", f"workflow {name}")
        .replace("a,b,c,d,e", items)
        .replace("workflow     = one", f"workflow     = {name}_child"),
    )
    write(
        home / f"{name}_child.wf",
        f'workflow {name}_child {{\n  inputs {{ name default = "" }}\n'
        f'  script work {{ run = "{script}" }}\n}}\n',
    )
    code, out, _ = cli(capsys, "run", name, "--dir", str(home), "--progress", "plain")
    assert code == 1
    return run_id_of(out)


def test_a_misspelt_item_is_told_the_item_its_number_means_not_any_as_close(capsys, home: Path) -> None:
    """`--item rec-5` of items `rec-05` … `rec-35` was told `did you mean `rec-35`?`: all four
    are as close by spelling, and the scorer's last pick won. `rec-5` is `rec-05` with its
    number's leading zero dropped — that is the one named (humanize.did_you_mean)."""
    run_id = _fan_run(capsys, home, "recs", "rec-05,rec-15,rec-25,rec-35", "exit 3")
    code, _, err = cli(capsys, "retry", run_id, "--item", "rec-5", "--yes", "--dir", str(home))
    assert code == 1
    assert (
        f"no item 'rec-5' in run {run_id} (did you mean `rec-05`? failed or cancelled items: rec-05," in err
    )


def test_a_misspelt_item_is_never_told_an_item_that_cannot_be_retried(capsys, home: Path) -> None:
    """Four failed items equally close to `x-9` are no hint (humanize.did_you_mean names at most
    three); the completed `x-99`, closer still, was named instead — an item `retry` then refuses,
    in a message whose list says "failed or cancelled items". The hint comes from that list."""
    run_id = _fan_run(capsys, home, "xs", "x-1,x-2,x-3,x-4,x-99", "test {{name}} = x-99")
    code, _, err = cli(capsys, "retry", run_id, "--item", "x-9", "--yes", "--dir", str(home))
    assert code == 1
    assert f"no item 'x-9' in run {run_id} (failed or cancelled items: x-1, x-2, x-3, x-4)" in err


def test_a_broken_hooks_file_is_said_before_retry_asks(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`retry` asked `Retry 2 items? [y/N]` and only after a yes said the hooks file was wrong:
    mistakes are found before anything is asked or run (docs/notifications.md)."""
    run_id = failed_run(capsys, home)
    write(home / "hooks.yaml", "hooks:\n  - events: gate.wating\n    run: echo hi\n")
    asked: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda question: asked.append(question) or "y")
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--hooks", str(home / "hooks.yaml"), "--dir", str(home)
    )
    assert code == 2 and "hooks.yaml:2: hooks.0.events: 'gate.wating' matches no event" in err
    assert asked == []
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}  # nothing ran


def test_a_failed_run_without_a_fan_out_is_pointed_to_resume_and_rerun(capsys, home: Path) -> None:
    """`nothing to retry: no failed or cancelled items` for a run whose script failed read as
    "nothing failed": retry is for fan-out items, and the message says what runs a step again."""
    write(home / "plain.wf", 'workflow plain {\n  script boom { run = "exit 3" }\n}\n')
    code, out, _ = cli(capsys, "run", "plain", "--dir", str(home), "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    code, _, err = cli(capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home))
    assert code == 1
    assert f"nothing to retry: run {run_id} (plain) has no fan-out; retry runs failed foreach items" in err
    assert f"To run its failed steps again: runkon-flow resume {run_id} --dir {home}" in err
    assert f"(or runkon-flow rerun {run_id} --from STEP --dir {home})" in err
    # A fan-out inside a called workflow is there, but retry does not reach it (yet): said so.
    write(home / "outer.wf", "workflow outer {\n  call workflow fan\n}\n")
    code, out, _ = cli(capsys, "run", "outer", "--dir", str(home), "--progress", "plain")
    assert code == 1
    outer = run_id_of(out)
    code, _, err = cli(capsys, "retry", outer, "--failed", "--yes", "--dir", str(home))
    assert code == 1
    assert f"run {outer} (outer) has no fan-out of its own; a fan-out in a workflow it calls is not" in err
    assert f"To run its failed steps again: runkon-flow resume {outer} --dir {home}" in err


def test_without_a_terminal_retry_needs_yes(capsys, home: Path, monkeypatch) -> None:
    run_id = failed_run(capsys, home)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, out, err = cli(capsys, "retry", run_id, "--failed", "--dir", str(home))
    assert code == 2
    assert "retry 2 of 5 items" in err and not out  # what it would do is shown first
    assert "pass --yes to go ahead" in err
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}


def test_a_changed_file_is_shown_as_a_diff_and_the_definition_must_be_chosen(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    write(home / "fan.wf", FAN.replace("echo after >> after.log", "echo after-v2 >> after.log"))
    code, out, err = cli(capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home))
    assert code == 2 and "--definition stored or --definition current" in err
    assert "the workflow file changed since run" in err and not out
    assert any(
        line.strip().startswith("-") and "echo after >> after.log" in line for line in err.splitlines()
    )
    assert any(
        line.strip().startswith("+") and "echo after-v2 >> after.log" in line for line in err.splitlines()
    )
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}

    code, _, err = cli(
        capsys,
        "retry",
        run_id,
        "--failed",
        "--yes",
        "--definition",
        "current",
        "--dir",
        str(home),
        "--progress",
        "plain",
    )
    assert code == 0, err
    assert (home / "after.log").read_text() == "after-v2\n"  # today's file ran


def test_a_run_another_engine_holds_is_refused(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    store = SqliteStore(home / "runs.db")
    try:
        assert store.acquire_lease(run_id, "someone-else:1:x", 60) is not None
    finally:
        store.close()
    code, _, err = cli(capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home))
    assert code == 1 and "owned by another engine" in err
    # What to do about it, in words that fit retry: it has no --wait (resume has).
    assert "if that process is gone, retry again then)" in err
    assert "--wait" not in err
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}


def killed_at(capsys: pytest.CaptureFixture[str], home: Path, args: list[str], reached: Path) -> None:
    """`runkon-flow ARGS` in a process of its own (1 s lease), SIGKILLed once `reached` exists;
    returns when its run shows `interrupted`, with `go` written so held items may finish."""
    out, err = home / "out.txt", home / "err.txt"
    proc = spawn([*args, "--lease-ttl", "1"], home, stdout=out, stderr=err, env=cli_env())
    try:
        wait_for(reached.exists, f"the command to reach {reached.name}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    (home / "go").touch()

    def interrupted() -> bool:
        return json.loads(cli(capsys, "runs", "--json")[1])[0]["display_status"] == "interrupted"

    wait_for(interrupted, "the killed command's lease to lapse", interval=0.1)


# b's second attempt stops until `go` exists, so the retry can be killed while it runs.
HOLD_ON_RETRY = """echo "$1" >> runs.log
case "$1" in b|d)
  test -f "seen-$1" && { touch "retrying-$1"; while [ ! -f go ]; do sleep 0.05; done; exit 0; }
  touch "seen-$1"; exit 3;; esac
"""


def test_resuming_an_interrupted_retry_keeps_the_definition_the_retry_chose(capsys, home: Path) -> None:
    """A retry with the stored definition whose engine dies is continued by `resume` with that
    definition, not with the file as edited since (which a resume of a finished run would use)."""
    write(home / "work.sh", HOLD_ON_RETRY)
    run_id = failed_run(capsys, home)
    write(home / "fan.wf", FAN.replace("echo after >> after.log", "echo after-v2 >> after.log"))
    args = ["retry", run_id, "--failed", "--yes", "--definition", "stored", "--dir", str(home)]
    killed_at(capsys, home, args, home / "retrying-b")
    code, _, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert (home / "after.log").read_text() == "after\n"  # the stored definition, as the retry chose
    store = SqliteStore(home / "runs.db")
    try:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
    finally:
        store.close()


# b fails on its first two attempts and stops on its third until `go` exists.
FAIL_TWICE_THEN_HOLD = """echo "$1" >> runs.log
case "$1" in b)
  test -f seen2-b && { touch resuming-b; while [ ! -f go ]; do sleep 0.05; done; exit 0; }
  test -f seen-b && { touch seen2-b; exit 3; }
  touch seen-b; exit 3;; esac
"""


def test_a_resume_cut_short_after_a_finished_retry_runs_the_file_as_it_is_now(capsys, home: Path) -> None:
    """The stored-definition retry ended (failed again); a plain resume then runs today's file,
    and when that resume is cut short, resuming it again still runs today's file."""
    write(home / "work.sh", FAIL_TWICE_THEN_HOLD)
    run_id = failed_run(capsys, home)
    write(home / "fan.wf", FAN.replace("echo after >> after.log", "echo after-v2 >> after.log"))
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--definition", "stored", "--dir", str(home)
    )
    assert code == 1, err  # b failed again: the retry is over, the run failed
    killed_at(capsys, home, ["resume", run_id, "--dir", str(home)], home / "resuming-b")
    code, _, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert (home / "after.log").read_text() == "after-v2\n"  # today's file, as the plain resume ran


# The child as edited after the run: it writes a marker instead of running work.sh.
ONE_V2 = ONE.replace('run = "sh work.sh {{name}}"', 'run = "echo {{name}} >> edited.log"')


def test_an_edited_child_file_is_a_change_and_stored_runs_the_child_as_it_ran(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    write(home / "one.wf", ONE_V2)
    code, out, err = cli(capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home))
    assert code == 2 and "--definition stored or --definition current" in err, err
    assert "unchanged" not in err and not out
    assert f"the workflow 'one' that run {run_id} started changed since the run:" in err
    lines = [line.strip() for line in err.splitlines()]
    assert any(line.startswith("-") and "sh work.sh {{name}}" in line for line in lines)
    assert any(line.startswith("+") and "edited.log" in line for line in lines)
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}

    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--definition", "stored", "--dir", str(home),
        "--progress", "plain",
    )  # fmt: skip
    assert code == 0, err
    assert "the workflows it starts (one) run the definitions they ran with" in err
    # The retried items ran the child as the run ran it, not today's edited file.
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}
    assert not (home / "edited.log").exists()


def test_an_edited_child_file_with_definition_current_runs_todays_child(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    write(home / "one.wf", ONE_V2)
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--definition", "current", "--dir", str(home),
        "--progress", "plain",
    )  # fmt: skip
    assert code == 0, err
    assert "the workflows it starts (one) run today's files" in err
    assert executions(home) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}  # work.sh not run again
    assert sorted((home / "edited.log").read_text().split()) == ["b", "d"]


def test_unchanged_children_are_said_unchanged(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home), "--progress", "plain"
    )
    assert code == 0, err
    assert "the definition of 'fan' and the workflows it started (one) are unchanged since the run" in err


def test_a_broken_child_file_does_not_stop_a_retry_of_the_stored_definition(capsys, home: Path) -> None:
    run_id = failed_run(capsys, home)
    (home / "one.wf").write_text(ONE.replace("script work {", "script work {{"))
    code, _, err = cli(capsys, "retry", run_id, "--failed", "--yes", "--dir", str(home))
    assert code == 2 and f"the workflow 'one' that run {run_id} started does not load now" in err
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--definition", "stored", "--dir", str(home),
        "--progress", "plain",
    )  # fmt: skip
    assert code == 0, err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}


def test_resuming_an_interrupted_retry_runs_the_children_as_the_run_ran_them(capsys, home: Path) -> None:
    """The retry chose the stored definition with the child file edited: its resume keeps to it,
    for the children too."""
    write(home / "work.sh", HOLD_ON_RETRY)
    run_id = failed_run(capsys, home)
    write(home / "one.wf", ONE_V2)
    args = ["retry", run_id, "--failed", "--yes", "--definition", "stored", "--dir", str(home)]
    killed_at(capsys, home, args, home / "retrying-b")
    code, _, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert not (home / "edited.log").exists()  # no child ran today's edited file
    store = SqliteStore(home / "runs.db")
    try:
        assert store.get_run(run_id).status is RunStatus.COMPLETED
    finally:
        store.close()


def test_a_rerun_of_the_stored_definition_runs_the_children_as_they_ran(capsys, home: Path) -> None:
    """`rerun --definition stored` starts the workflows the old run started as they ran, as a
    stored retry does, and names each one edited since. Before, it started them from today's
    files (the new run stored no definitions of the old run's children)."""
    run_id = failed_run(capsys, home)
    write(home / "one.wf", ONE_V2)
    code, out, err = cli(
        capsys, "rerun", run_id, "--from", "each", "--definition", "stored", "--dir", str(home),
        "--progress", "plain",
    )  # fmt: skip
    assert code == 0, err
    assert (
        f"note: the workflow 'one' changed since run {run_id} started it; "
        f"this rerun starts it as it ran, not from today's file ({home / 'one.wf'})"
    ) in err
    assert "stored definition, and the workflows it starts (one) as they ran" in err
    assert not (home / "edited.log").exists()
    assert executions(home) == {"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}
    shown = json.loads(cli(capsys, "show", run_id_of(out), "--json")[1])
    assert shown["rerun_definition"] == "stored"


def test_resuming_an_interrupted_stored_rerun_runs_the_children_as_the_old_run_ran_them(
    capsys, home: Path
) -> None:
    """The rerun's choice is kept with it (`rerun_definition`): its resume starts the children as
    the old run ran them too, not from the file edited since."""
    write(home / "work.sh", HOLD_ON_RETRY)
    run_id = failed_run(capsys, home)
    write(home / "one.wf", ONE_V2)
    args = ["rerun", run_id, "--from", "each", "--definition", "stored", "--dir", str(home)]
    killed_at(capsys, home, args, home / "retrying-b")
    rerun = json.loads(cli(capsys, "runs", "--json")[1])[0]
    assert rerun["rerun_of"] == run_id
    code, _, err = cli(capsys, "resume", rerun["id"], "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert not (home / "edited.log").exists()  # no child ran today's edited file
    store = SqliteStore(home / "runs.db")
    try:
        assert store.get_run(rerun["id"]).status is RunStatus.COMPLETED
    finally:
        store.close()


def test_resuming_an_interrupted_stored_retry_of_a_rerun_keeps_the_children_as_they_ran(
    capsys, home: Path
) -> None:
    """A rerun (of today's file) retried with the stored definition, its engine killed: the
    resume keeps to the retry's choice, children included, as for any run — the rerun's own
    choice does not override it."""
    write(home / "work.sh", FAIL_TWICE_THEN_HOLD)
    run_id = failed_run(capsys, home)
    code, out, err = cli(
        capsys, "rerun", run_id, "--from", "each", "--definition", "current", "--dir", str(home),
        "--progress", "plain",
    )  # fmt: skip
    assert code == 1, err  # b failed a second time
    rerun = run_id_of(out)
    write(home / "one.wf", ONE_V2)
    args = ["retry", rerun, "--failed", "--yes", "--definition", "stored", "--dir", str(home)]
    killed_at(capsys, home, args, home / "resuming-b")
    code, _, err = cli(capsys, "resume", rerun, "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert not (home / "edited.log").exists()  # no child ran today's edited file


def test_a_stored_rerun_that_failed_before_its_call_resumes_it_as_the_old_run_ran_it(
    capsys, home: Path
) -> None:
    """The rerun never started `two` (it failed before): its resume still starts `two` as the
    old run ran it — from the definitions the old run stored — not today's edited file."""
    write(home / "top.wf", 'workflow top {\n  script prep { run = "sh prep.sh" }\n  call workflow two\n}\n')
    write(home / "two.wf", 'workflow two {\n  script say { run = "echo two-v1 >> two.log" }\n}\n')
    write(home / "prep.sh", "test ! -f broken\n")
    code, out, err = cli(capsys, "run", "top", "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    old = run_id_of(out)
    write(home / "two.wf", 'workflow two {\n  script say { run = "echo two-v2 >> two.log" }\n}\n')
    (home / "broken").touch()
    code, out, err = cli(
        capsys, "rerun", old, "--from", "prep", "--definition", "stored", "--dir", str(home),
        "--progress", "plain",
    )  # fmt: skip
    assert code == 1, err  # prep failed: `two` not started by the rerun
    rerun = run_id_of(out)
    (home / "broken").unlink()
    code, _, err = cli(capsys, "resume", rerun, "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert (home / "two.log").read_text() == "two-v1\ntwo-v1\n"


def test_a_resume_of_a_run_whose_file_is_gone_runs_the_children_as_they_ran(capsys, home: Path) -> None:
    """`resuming with the definition stored with the run` covers the workflows it started too: an
    edited child file is not mixed into the stored run."""
    run_id = failed_run(capsys, home)
    (home / "fan.wf").unlink()
    write(home / "one.wf", ONE_V2)
    code, _, err = cli(capsys, "resume", run_id, "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert not (home / "edited.log").exists()
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}
    assert "resuming with the definition stored with the run, and the workflows it started as they ran" in err


def test_a_call_workflow_after_the_retried_fan_out_runs_as_it_ran_too(capsys, home: Path) -> None:
    """The steps after the reopened fan-out run again: a `call workflow` among them starts the
    called workflow as the run ran it, like the retried items."""
    write(
        home / "fan.wf",
        FAN.replace("  script after {", '  call workflow one { inputs { name = "z" } }\n  script after {'),
    )
    code, out, _ = cli(capsys, "run", "fan", "--dir", str(home), "--progress", "plain")
    assert code == 1
    run_id = run_id_of(out)
    write(home / "one.wf", ONE_V2)
    code, _, err = cli(
        capsys, "retry", run_id, "--failed", "--yes", "--definition", "stored", "--dir", str(home),
        "--progress", "plain",
    )  # fmt: skip
    assert code == 0, err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1, "z": 1}
    assert not (home / "edited.log").exists()


@pytest.mark.parametrize("choose", [["--failed"], ["--cluster", "1"]], ids=["failed", "cluster"])
def test_a_retry_reads_the_run_s_child_rows_once(
    capsys, home: Path, monkeypatch: pytest.MonkeyPatch, choose: list[str]
) -> None:
    """The run's child runs (a fan-out of 10,000 items has 10,000) and its fan-out's item rows
    are read once by `retry` and passed along — the plan, the clusters, the definition check, the
    retry's plan and the engine that continues the fan-out. Before: the child runs twice (the
    change check, then the retry's plan) and the items twice (the plan, the engine), with
    --cluster three times."""
    run_id = failed_run(capsys, home)
    reads: list[str] = []
    list_runs, get_items = SqliteStore.list_runs, SqliteStore.get_fan_out_items

    def counted_runs(self, *args, **kwargs):
        if kwargs.get("parent_run_id") == run_id:
            reads.append("children")
        return list_runs(self, *args, **kwargs)

    def counted_items(self, step_id):
        reads.append("items")
        return get_items(self, step_id)

    monkeypatch.setattr(SqliteStore, "list_runs", counted_runs)
    monkeypatch.setattr(SqliteStore, "get_fan_out_items", counted_items)
    code, _, err = cli(capsys, "retry", run_id, *choose, "--yes", "--dir", str(home), "--progress", "plain")
    assert code == 0, err
    assert executions(home) == {"a": 1, "b": 2, "c": 1, "d": 2, "e": 1}
    assert sorted(reads) == ["children", "items"], reads


def test_a_run_waiting_at_a_gate_is_refused_naming_the_gate_and_its_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`retry` of a run whose engine waits at a gate said `owned by another engine … retry again
    then`: no other engine was in the way, and retrying again later changed nothing while the gate
    waited. It says the run waits at its gate, with the commands that answer it (exit 1)."""
    from .gate_helpers import GateRun, gate_home

    run = GateRun(gate_home(tmp_path, monkeypatch))
    try:
        code, out, err = cli(capsys, "retry", run.run_id, "--failed")
        assert (code, out) == (1, "")
        assert err.splitlines() == [
            f"runkon-flow retry: error: run {run.run_id} is not finished: it is waiting at gate "
            f"'human_approval' ({err.split('(')[1].split(')')[0]}); retry it once it has ended",
            f"  approve: runkon-flow approve {run.run_id} human_approval",
            f"  reject:  runkon-flow reject {run.run_id} human_approval",
        ]
        assert "owned by another engine" not in err and " runs it" in err
        assert run.gate_row().status == "waiting"
    finally:
        run.close()


def test_resume_of_a_run_waiting_at_a_gate_names_the_gate_not_another_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resume` of a run whose engine waits at a gate said `owned by another engine … resume
    again then, or pass --wait` — and `--wait` waited for the gate's answer, then found the run
    finished with nothing to resume. The gate is named with the commands that answer it (exit 1)."""
    from .gate_helpers import GateRun, gate_home

    run = GateRun(gate_home(tmp_path, monkeypatch))
    try:
        code, out, err = cli(capsys, "resume", run.run_id)
        assert (code, out) == (1, "")
        lines = err.splitlines()
        assert lines[0].startswith(
            f"runkon-flow resume: error: run {run.run_id} is not finished: it is waiting at gate "
            "'human_approval' ("
        )
        assert lines[0].endswith("; its engine goes on once the gate is answered; there is nothing to resume")
        assert lines[1:] == [
            f"  approve: runkon-flow approve {run.run_id} human_approval",
            f"  reject:  runkon-flow reject {run.run_id} human_approval",
        ]
        assert run.gate_row().status == "waiting"
    finally:
        run.close()
