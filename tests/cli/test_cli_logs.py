"""`runkon-flow logs` and `runkon-flow grep`: a run's stored output from the shell — every step's
and fan-out item's lines and errors, narrowed to a step or item, only the failures, or searched —
read from the store for finished, live and other processes' runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
from runkon_flow.persistence import SqliteStore
from runkon_flow.workspace import Workspace

from tests import pg
from tests.cli.run_helpers import cli, cli_env, run_id_of, spawn, stop, wait_for, write

FAN = """workflow fan {
  script prep { run = "echo preparing; echo careful >&2" }
  foreach each {
    over         = static
    scope        = { items = "a,b,c" }
    max_parallel = 1
    workflow     = one
    inputs       = { name = "{{item.id}}" }
  }
}
"""
ONE = """workflow one {
  inputs { name default = "" }
  script say {
    run = "echo hello {{name}}; echo Also {{name}}; test {{name}} != b || { echo boom {{name}} >&2; exit 3; }"
  }
}
"""
FLAKY = """workflow flaky {
  script prepare { run = "echo prepared" }
  script check { run = "test -f fixed.flag || { echo 'not fixed yet' >&2; exit 4; }; echo fixed" }
}
"""
WAITER = """workflow waiter {
  script hold { run = "echo holding on; touch started; while [ ! -f go ]; do sleep 0.05; done" }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNKON_DB", str(tmp_path / "runs.db"))
    for name, text in (("fan", FAN), ("one", ONE), ("flaky", FLAKY), ("waiter", WAITER)):
        write(tmp_path / "wf" / f"{name}.wf", text)
    return tmp_path


def start(capsys: pytest.CaptureFixture[str], workflow: str, *db: str) -> str:
    _, out, _ = cli(capsys, "run", workflow, "--dir", "wf", "--progress", "quiet", *db)
    return run_id_of(out)


FAN_LOG = """\
==> prep (completed) <==
preparing
careful

==> each (failed) <==
error: foreach 'each': 1 of 3 items failed

==> each[a] › say (completed) <==
hello a
Also a

==> each[b] › say (failed) <==
hello b
Also b
boom b
error: Script 'say' exited with code 3
       boom b

==> each[c] › say (completed) <==
hello c
Also c

"""


def test_logs_prints_every_step_and_item_in_order_with_its_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start(capsys, "fan")
    assert cli(capsys, "logs", run_id) == (0, FAN_LOG, "")


def test_logs_narrows_to_a_step_or_an_item(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = start(capsys, "fan")
    code, out, _ = cli(capsys, "logs", run_id, "prep")
    assert (code, out) == (0, "==> prep (completed) <==\npreparing\ncareful\n\n")
    code, out, _ = cli(capsys, "logs", run_id, "c")
    assert (code, out) == (0, "==> each[c] › say (completed) <==\nhello c\nAlso c\n\n")
    code, out, _ = cli(capsys, "logs", run_id, "each")  # a foreach: the step and all its items
    assert [line for line in out.splitlines() if line.startswith("==>")] == [
        "==> each (failed) <==",
        "==> each[a] › say (completed) <==",
        "==> each[b] › say (failed) <==",
        "==> each[c] › say (completed) <==",
    ]


def test_logs_failed_shows_only_failures_with_their_errors(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start(capsys, "fan")
    code, out, _ = cli(capsys, "logs", run_id, "--failed")
    assert code == 0
    assert out == (
        "==> each (failed) <==\nerror: foreach 'each': 1 of 3 items failed\n\n"
        "==> each[b] › say (failed) <==\nhello b\nAlso b\nboom b\n"
        "error: Script 'say' exited with code 3\n       boom b\n\n"
    )
    assert cli(capsys, "logs", run_id, "a", "--failed") == (
        0,
        "",
        f"no failed steps or items 'a' in run {run_id} (failed)\n",
    )


def test_a_step_that_failed_and_then_succeeded_is_not_a_failure(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start(capsys, "flaky")
    (home / "wf" / "fixed.flag").touch()
    assert cli(capsys, "resume", run_id, "--dir", "wf", "--progress", "quiet")[0] == 0
    code, out, err = cli(capsys, "logs", run_id, "check")
    assert code == 0, err
    assert "not fixed yet" in out and "fixed\n" in out  # both attempts' output, in order
    assert out.index("not fixed yet") < out.index("==> check (completed)")
    assert cli(capsys, "logs", run_id, "--failed") == (
        0,
        "",
        f"no failed steps or items in run {run_id} (completed)\n",
    )


def test_unknown_run_or_step_is_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = start(capsys, "fan")
    code, out, err = cli(capsys, "logs", "NOPE")
    assert (code, out) == (
        1,
        "",
    ) and err == (
        f"runkon-flow logs: error: no workflow run 'NOPE' in {home / 'runs.db'}: "
        "a part of a run id needs at least 6 characters (`runkon-flow runs` lists the ids)\n"
    )
    code, out, err = cli(capsys, "logs", run_id, "zz")
    assert (code, out) == (1, "")  # an unknown step, as an unknown run
    assert err == (
        f"runkon-flow logs: error: no step or item 'zz' in run {run_id} (it has: prep, each, say, a, b, c)\n"
    )


def test_a_run_whose_steps_printed_nothing_says_which_steps_it_has(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A completed run whose only step is a foreach with no items: `logs` said `has no steps yet
    (completed)` and `logs RUN each` `no step or item 'each'`, though `show` lists the step. They
    name the steps and say they printed nothing; grep says it too (still exit 1: no match)."""
    write(home / "wf" / "items.yaml", "items: []\n")
    write(
        home / "wf" / "none.wf",
        'workflow none {\n  foreach each {\n    over = static\n    scope = { file = "items.yaml" }\n'
        "    max_parallel = 2\n    workflow = one\n  }\n}\n",
    )
    run_id = start(capsys, "none")
    code, out, _ = cli(capsys, "show", run_id)  # the step, and why it printed nothing
    last = out.splitlines()[-1].split()
    assert code == 0 and last[:3] == ["0", "completed", "foreach:each"] and last[-2:] == ["no", "items"]
    code, out, err = cli(capsys, "logs", run_id)
    assert (code, out) == (0, "")
    assert err == f"run {run_id} (completed) printed nothing: foreach:each (completed, no items)\n"
    code, out, err = cli(capsys, "logs", run_id, "each")
    assert (code, out) == (0, "")
    assert err == f"step 'each' of run {run_id} printed nothing: foreach:each (completed, no items)\n"
    code, out, err = cli(capsys, "grep", "x", run_id)
    assert (code, out) == (1, "")
    assert (
        err
        == f"no match for 'x': run {run_id} (completed) printed nothing: foreach:each (completed, no items)\n"
    )
    code, out, err = cli(capsys, "logs", run_id, "eahc")  # a typo is still unknown, told the step
    assert (code, out) == (1, "")
    assert (
        err == f"runkon-flow logs: error: no step or item 'eahc' in run {run_id} "
        "(did you mean `each`? it has: each)\n"
    )


def test_logs_of_a_run_another_process_is_running(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file, err_file = home / "out.txt", home / "err.txt"
    proc = spawn(["run", "waiter", "--dir", "wf"], home, stdout=out_file, stderr=err_file, env=cli_env())
    try:
        wait_for((home / "wf" / "started").exists, "the run to reach its long step")
        run_id = run_id_of(out_file.read_text())
        wait_for(
            lambda: "holding on" in cli(capsys, "logs", run_id)[1], "the line to be stored", interval=0.1
        )
        code, out, err = cli(capsys, "logs", run_id)
        assert (code, out) == (0, "==> hold (running) <==\nholding on\n\n")
        assert err == f"run {run_id} is running: this is its output so far\n"
    finally:
        (home / "wf" / "go").touch()
        proc.wait(timeout=60)
        stop(proc)


def test_a_run_without_stored_events_shows_its_rows_results(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start(capsys, "flaky")
    with sqlite3.connect(home / "runs.db") as conn:  # as a run from before runkon stored events
        conn.execute("DELETE FROM workflow_run_events")
    code, out, err = cli(capsys, "logs", run_id)
    assert code == 0
    assert "has no stored output lines" in err
    assert out == (
        "==> prepare (completed) <==\nScript 'prepare' completed\n\n"
        "==> check (failed) <==\nerror: Script 'check' exited with code 4\n       not fixed yet\n\n"
    )


# --------------------------------------------------------------------------- grep


def test_grep_groups_hits_by_step_and_item_with_line_numbers(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start(capsys, "fan")
    code, out, err = cli(capsys, "grep", "also|boom", run_id)
    assert code == 0, err
    # Once: the error's `boom b` is the stderr line the output holds (it was found twice).
    assert out == "==> each[b] › say (failed) <==\n3:boom b\n\n"
    assert err == "1 matching line in 1 of 5 steps and items\n"
    code, out, err = cli(capsys, "grep", "-i", "also|boom", run_id)
    assert out == (
        "==> each[a] › say (completed) <==\n2:Also a\n\n"
        "==> each[b] › say (failed) <==\n2:Also b\n3:boom b\n\n"
        "==> each[c] › say (completed) <==\n2:Also c\n\n"
    )
    assert err == "4 matching lines in 3 of 5 steps and items\n"


def test_grep_fixed_strings_narrowing_and_exit_statuses(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start(capsys, "fan")
    assert cli(capsys, "grep", "-F", "a|b", run_id)[0] == 1  # no line holds the text `a|b`
    code, out, _ = cli(capsys, "grep", "hello", run_id, "c")
    assert (code, out) == (0, "==> each[c] › say (completed) <==\n1:hello c\n\n")
    code, out, err = cli(capsys, "grep", "nowhere", run_id)
    assert (code, out) == (1, "")
    assert err == f"no match for 'nowhere' in 5 steps and items of run {run_id}\n"
    # One step searched reads as such, not "1 of 1 step and items".
    code, _, err = cli(capsys, "grep", "preparing", run_id, "prep")
    assert (code, err) == (0, "1 matching line in 1 of 1 step or item\n")
    code, _, err = cli(capsys, "grep", "nowhere", run_id, "prep")
    assert (code, err) == (1, f"no match for 'nowhere' in 1 step or item of run {run_id}\n")
    code, out, err = cli(capsys, "grep", "(", run_id)
    assert (code, out) == (2, "")
    assert (
        err == "runkon-flow grep: error: bad pattern '(': missing ), unterminated subpattern at position 0\n"
    )
    assert cli(capsys, "grep", "x", "NOPE")[0] == 1


def test_logs_and_grep_on_postgresql(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = pg.fresh_dsn()
    run_id = start(capsys, "fan", "--db", dsn)
    assert cli(capsys, "logs", run_id, "--db", dsn) == (0, FAN_LOG, "")
    code, out, _ = cli(capsys, "grep", "boom", run_id, "--db", dsn)
    assert (code, out) == (0, "==> each[b] › say (failed) <==\n3:boom b\n\n")


def test_a_step_whose_output_was_cut_says_how_much_was_not_stored(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "wf" / "chatty.wf", 'workflow chatty {\n  script talk { run = "seq 1 5" }\n}\n')
    with SqliteStore(home / "runs.db") as store:
        ws = Workspace([home / "wf"], store, stored_output_lines=2)
        run_id = ws.create_run("chatty", {})
        ws.execute(run_id)
    code, out, _ = cli(capsys, "logs", run_id)
    assert code == 0
    assert out.startswith("==> talk (completed) <==\n1\n2\n… output of step 'talk': 3 more lines not stored")


def test_output_longer_than_the_engines_cap_ends_with_how_many_lines_were_not_stored(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`seq 1 20000` with the default limits: the engine passes on 2,000 lines per step. `logs`
    must not stop there silently — it ends with the documented `… N more lines not stored` — and
    `grep` says the rest was not searched, so "no match" does not read as "not in the output"."""
    write(home / "wf" / "big.wf", 'workflow big {\n  script numbers { run = "seq 1 20000" }\n}\n')
    run_id = start(capsys, "big")
    code, out, _ = cli(capsys, "logs", run_id, "numbers")
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == ["==> numbers (completed) <==", "1"]
    assert lines[2000] == "2000"
    assert lines[2001].startswith("… output of step 'numbers': 18000 more lines not stored")
    assert lines[2002:] == [""]  # the blank line between steps

    code, out, err = cli(capsys, "grep", "^19999$", run_id)
    assert (code, out) == (1, "")
    assert (
        "note: numbers: lines after line 2000 were not stored, so not searched (18000 more lines not stored)"
        in err
    )


def test_the_stored_output_limit_comes_from_the_environment(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`$RUNKON_STORED_OUTPUT_LINES` (docs/persistence.md) limits what a CLI run keeps per step."""
    write(home / "wf" / "chatty.wf", 'workflow chatty {\n  script talk { run = "seq 1 5" }\n}\n')
    monkeypatch.setenv("RUNKON_STORED_OUTPUT_LINES", "2")
    run_id = start(capsys, "chatty")
    code, out, _ = cli(capsys, "logs", run_id)
    assert code == 0
    assert out.startswith("==> talk (completed) <==\n1\n2\n… output of step 'talk': 3 more lines not stored")


LOOPY = """workflow loopy {
  script prep { run = "echo 0 > n" }
  do {
    max_iterations = 5
    script spam { run = "sh spam.sh" }
  } while spam.again
}
"""
SPAM = """n=$(($(cat n) + 1)); echo $n > n
seq 1 $((BASE + n * 10))
[ $n -lt 3 ] && printf '<<<FLOW_OUTPUT>>>\\n{"markers": ["again"]}\\n<<<END_FLOW_OUTPUT>>>\\n'
true
"""


def test_each_iteration_of_a_step_in_a_loop_says_only_its_own_lines_not_stored(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three passes print 10, 20 and 30 lines (the first two also their 3-line marker block):
    each iteration's output ends with how many of *its* lines were cut, and grep says the same."""
    write(home / "wf" / "loopy.wf", LOOPY)
    write(home / "wf" / "spam.sh", "BASE=0\n" + SPAM)
    monkeypatch.setenv("RUNKON_STORED_OUTPUT_LINES", "5")
    run_id = start(capsys, "loopy")
    code, out, _ = cli(capsys, "logs", run_id, "spam")
    assert code == 0
    notes = [
        (n, line.split(": ")[1]) for n, line in enumerate(out.splitlines()) if line.startswith("… output")
    ]
    heads = [n for n, line in enumerate(out.splitlines()) if line.startswith("==> spam")]
    assert [cut for _, cut in notes] == [
        "8 more lines not stored (at most 5 lines are kept per step; RUNKON_STORED_OUTPUT_LINES)",
        "18 more lines not stored (at most 5 lines are kept per step; RUNKON_STORED_OUTPUT_LINES)",
        "25 more lines not stored (at most 5 lines are kept per step; RUNKON_STORED_OUTPUT_LINES)",
    ]
    assert [head + 6 for head in heads] == [n for n, _ in notes]  # each under its own iteration
    err = cli(capsys, "grep", "^1$", run_id)[2]
    assert "note: spam: lines after line 5 were not stored, so not searched (8 more lines not stored)" in err
    assert "note: spam · iteration 2: lines after line 5 were not stored, so not searched (25 more" in err
    assert err.count("note: ") == 3


def test_each_iteration_past_the_engines_own_cap_says_only_its_own_lines_not_passed_on(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(home / "wf" / "loopy.wf", LOOPY)
    write(home / "wf" / "spam.sh", "BASE=2000\n" + SPAM)
    run_id = start(capsys, "loopy")
    out = cli(capsys, "logs", run_id, "spam")[1]
    assert [line.split(" (")[0] for line in out.splitlines() if line.startswith("… output")] == [
        "… output of step 'spam': 13 more lines not stored",
        "… output of step 'spam': 23 more lines not stored",
        "… output of step 'spam': 30 more lines not stored",
    ]


def test_a_stored_output_limit_above_the_engines_cap_keeps_that_many_lines(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`RUNKON_STORED_OUTPUT_LINES=2500` keeps 2,500 lines: the engine's own 2,000-line cap follows
    the setting, it does not silently cut the output first."""
    write(home / "wf" / "big.wf", 'workflow big {\n  script numbers { run = "seq 1 3000" }\n}\n')
    monkeypatch.setenv("RUNKON_STORED_OUTPUT_LINES", "2500")
    run_id = start(capsys, "big")
    code, out, _ = cli(capsys, "logs", run_id, "numbers")
    assert code == 0
    lines = out.splitlines()
    assert lines[2500] == "2500"
    assert lines[2501].startswith("… output of step 'numbers': 500 more lines not stored")


def test_a_bad_stored_output_limit_is_one_line_naming_the_variable(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNKON_STORED_OUTPUT_LINES", "lots")
    code, out, err = cli(capsys, "run", "one", "--dir", "wf", "--progress", "quiet")
    assert code == 2
    assert out == ""
    assert "RUNKON_STORED_OUTPUT_LINES='lots' is not a whole number of lines" in err
    assert len(err.strip().splitlines()) == 1


def test_a_resumed_fan_out_lists_each_item_run_once(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The resumed foreach keeps a and c from the first attempt: their output is listed once,
    under the attempt that ran them; b's two attempts are listed as such (its first attempt's
    failure unlabelled read as b's current state, in `grep` and the dashboard's search too)."""
    run_id = start(capsys, "fan")
    assert cli(capsys, "resume", run_id, "--dir", "wf", "--progress", "quiet")[0] == 1
    code, out, _ = cli(capsys, "logs", run_id)
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("==> each")]
    assert headings == [
        "==> each (failed) <==",
        "==> each[a] › say (completed) <==",
        "==> each[b] · attempt 1 › say (failed) <==",
        "==> each[c] › say (completed) <==",
        "==> each (failed) <==",
        "==> each[b] · attempt 2 › say (failed) <==",
    ]
    code, out, _ = cli(capsys, "grep", "hello a", run_id)
    assert (code, out.count("==> each[a]")) == (0, 1)


# A step's output is untrusted: these bytes would recolour the terminal, retitle its window, hide
# what came before a carriage return and ring its bell if printed as they are.
SHOUT = (
    r"printf '\\033[31mred\\033[0m\\n\\033]0;owned\\007title\\nhidden\\rshown\\n"
    r"bell\\007 nul\\001 tab\\tkept\\n'; printf 'bad\\033[2J\\n' >&2; exit 5"
)
NOISY = f'workflow noisy {{\n  script shout {{ run = "{SHOUT}" }}\n}}\n'


def test_logs_and_grep_never_send_a_steps_escape_sequences_to_the_terminal(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(home / "wf" / "noisy.wf", NOISY)
    run_id = start(capsys, "noisy")
    code, out, _ = cli(capsys, "logs", run_id)
    assert code == 0
    assert out == (
        "==> shout (failed) <==\nred\ntitle\nshown\nbell␇ nul␁ tab\tkept\nbad\n"
        "error: Script 'shout' exited with code 5\n       bad\n\n"
    )
    code, out, _ = cli(capsys, "grep", "red|title|shown|bell|bad", run_id)
    assert code == 0
    assert out == ("==> shout (failed) <==\n1:red\n2:title\n3:shown\n4:bell␇ nul␁ tab\tkept\n5:bad\n\n")
    # --raw keeps the stored bytes for a pipe or a file, and refuses a terminal
    code, out, _ = cli(capsys, "logs", run_id, "--raw")
    assert code == 0 and "\x1b[31mred\x1b[0m\n\x1b]0;owned\x07title\nhidden\rshown\n" in out
    code, out, _ = cli(capsys, "grep", "red", run_id, "--raw")
    assert out == "==> shout (failed) <==\n1:\x1b[31mred\x1b[0m\n\n"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    for argv in (("logs", run_id, "--raw"), ("grep", "red", run_id, "--raw")):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (2, "")
        assert "--raw prints stored output with its escape sequences" in err and "not a terminal" in err


def test_logs_and_grep_read_each_steps_lines_from_the_store_as_they_print_them(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read the run's whole stored output into memory before printing a line (a 200 MB run
    took 490 MB; `grep .` 1.4 GB): now a source's lines are read from the store as they are
    printed, once they add up to more than `STREAM_ABOVE` characters (8 MiB; here 1,000), and the
    output is the same. Three items print side by side, their lines interleaved in the stored
    rows; one stored row is kept at a time and a piece is 100 characters, so every row is read
    again and every step printed in many pieces."""
    from runkon_flow.cli import logs
    from runkon_flow.observe import outputs

    write(
        home / "wf" / "side.wf",
        """workflow side {
  foreach each {
    over         = static
    scope        = { items = "a,b,c" }
    max_parallel = 3
    workflow     = count
    inputs       = { name = "{{item.id}}" }
  }
}
""",
    )
    write(
        home / "wf" / "count.wf",
        'workflow count {\n  inputs { name default = "" }\n'
        '  script say { run = "seq 1 1500 | awk -v n={{name}} \'{print n \\" line \\" $0}\'" }\n}\n',
    )
    run_id = start(capsys, "side")
    monkeypatch.setattr(outputs, "STREAM_ABOVE", 1000)  # 3 × 1,500 lines are past it
    monkeypatch.setattr(outputs, "_KEEP_ROWS", 1)
    monkeypatch.setattr(logs, "_PIECE", 100)
    with SqliteStore(home / "runs.db") as store:
        run = store.get_run(run_id)
        assert run is not None
        whole = outputs.read_outputs(store, run)
        streamed = outputs.read_outputs(store, run, stream=True)
        assert len(store.read_events(run_id)) > 3  # the lines span several stored rows
        assert [s.label for s in streamed.sources] == [s.label for s in whole.sources]
        assert not any(s.lines for s in streamed.sources)  # no stored line is held
        assert [list(s.each_line()) for s in streamed.sources] == [s.lines for s in whole.sources]
        monkeypatch.setattr(outputs, "STREAM_ABOVE", 100_000)  # under it: read once, lines kept
        kept = outputs.read_outputs(store, run, stream=True)
        assert [s.lines for s in kept.sources] == [s.lines for s in whole.sources]
        monkeypatch.setattr(outputs, "STREAM_ABOVE", 1000)
    items = "".join(
        f"==> each[{name}] › say (completed) <==\n"
        + "".join(f"{name} line {n}\n" for n in range(1, 1501))
        + "\n"
        for name in "abc"
    )
    assert cli(capsys, "logs", run_id) == (0, items, "")
    code, out, err = cli(capsys, "grep", "line 1[05]00$", run_id)
    assert code == 0
    assert out == "".join(
        f"==> each[{name}] › say (completed) <==\n1000:{name} line 1000\n1500:{name} line 1500\n\n"
        for name in "abc"
    )
    assert err == "6 matching lines in 3 of 3 steps and items\n"


def _side_by_side_run(path: Path, items: int, per_row: int) -> tuple[str, int]:
    """A finished fan-out of `items` items, built through the store API, whose output lines sit in
    the stored rows in the opposite order to the items' (`per_row` items' lines a row, the last
    items' first): items that ran side by side finish, and store their lines, in any order."""
    import json

    from runkon_flow.event_log import line_of, pack_lines
    from runkon_flow.persistence.models import (
        FanOutItemStatus,
        FanOutItemUpdate,
        NewRun,
        NewStep,
        RunStatus,
        StepUpdate,
    )

    with SqliteStore(path) as store:
        run = store.create_run(NewRun(workflow_name="fan")).id
        fan = store.insert_step(NewStep(run, "foreach:each", role="foreach", retry_count=0, position=0))
        rows = store.insert_fan_out_items(fan, [("item", f"i{n:03}", "", {}) for n in range(items)])
        lines: dict[int, list[str]] = {}
        updates = []
        for n, row in enumerate(rows):
            child = store.create_run(NewRun(workflow_name="one", parent_workflow_run_id=run)).id
            step = store.insert_step(NewStep(child, "say", retry_count=0, position=0))
            store.update_step(step, StepUpdate.completed(0, result_text="done"))
            store.update_run_status(child, RunStatus.COMPLETED, None, None)
            said = (
                {"step_id": step, "step_name": "say", "line": f"{word} i{n:03}"} for word in ("hello", "bye")
            )
            lines[n] = [line_of(1.0, child, "StepOutput", json.dumps(payload)) for payload in said]
            updates.append((row, FanOutItemUpdate.terminal(FanOutItemStatus.COMPLETED, child)))
        store.batch_update_fan_out_items(updates)
        for first in reversed(range(0, items, per_row)):
            batch = [line for n in range(first, min(first + per_row, items)) for line in lines[n]]
            store.append_events(run, pack_lines(batch))
        store.update_run_status(run, RunStatus.COMPLETED, None, None)
        return run, len(store.read_events(run))


def test_logs_of_a_big_fan_out_reads_each_stored_row_once_as_it_prints(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamed `logs` (output past `STREAM_ABOVE`) reads a source's rows again as it prints
    it. Items that ran side by side store their lines in an order other than the items', and the
    reader read on from each row it missed: a row per item or so, most of them not the ones
    needed next (a 2,000-item run: 193 reads of 1,911 rows for a stream of 589). Told the order
    it prints in, it reads the rows the next items need a set at a time, each once — and prints
    the same bytes."""
    from runkon_flow.observe import outputs

    run_id, stored_rows = _side_by_side_run(home / "runs.db", items=120, per_row=3)
    assert stored_rows == 40
    code, whole, _ = cli(capsys, "logs", run_id)  # under STREAM_ABOVE: the lines read once, kept
    assert code == 0 and whole.count("==> each[") == 120
    assert whole.index("hello i000") < whole.index("hello i001") < whole.index("hello i119")

    reads: list[int] = []
    for name in ("read_events", "read_events_at"):
        read = getattr(SqliteStore, name)

        def counted(self: SqliteStore, *args: object, _read=read, **kwargs: object) -> list:
            rows = _read(self, *args, **kwargs)
            reads.append(len(rows))
            return rows

        monkeypatch.setattr(SqliteStore, name, counted)
    monkeypatch.setattr(outputs, "STREAM_ABOVE", 100)
    assert cli(capsys, "logs", run_id) == (0, whole, "")
    walk = -(-stored_rows // 10) + 1  # the structure: the stream in reads of READ_ROWS, and the empty end
    printing = reads[walk:]
    assert sum(reads[:walk]) == stored_rows
    assert sum(printing) == stored_rows  # every row read once more, to print its lines
    assert len(printing) == stored_rows // outputs._KEEP_ROWS  # a set of _KEEP_ROWS rows a read
