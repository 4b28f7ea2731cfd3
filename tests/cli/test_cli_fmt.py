"""`runkon-flow fmt`: rewrite files in the canonical layout, never damage a file the user cares about."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from runkon_flow.cli import main
from runkon_flow.dsl.formatter import format_source, format_workflow
from runkon_flow.dsl.lexer import comments
from runkon_flow.dsl.parser import parse_workflow

from tests.corpus import CONFORMANCE_DIR, require_corpus


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MESSY = 'workflow tidy { meta { title = "Tidy" } call a { retries = 2 } if a.ok { call b } }'
CANONICAL = format_workflow(parse_workflow(MESSY))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_messy_file_is_rewritten_in_the_canonical_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "tidy.wf", MESSY)
    code, out, err = run(capsys, "fmt", str(path))
    assert (code, out, err) == (0, f"reformatted {path}\n", "")
    assert path.read_text() == CANONICAL
    assert parse_workflow(path.read_text()) == parse_workflow(MESSY)


def test_a_canonical_file_is_not_touched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "tidy.wf", CANONICAL)
    os.utime(path, (1_000_000, 1_000_000))
    assert run(capsys, "fmt", str(path)) == (0, "", "")
    assert path.stat().st_mtime == 1_000_000


def test_check_reports_files_that_would_change_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messy = write(tmp_path / "a.wf", MESSY)
    write(tmp_path / "b.wf", CANONICAL.replace("tidy", "b"))
    code, out, err = run(capsys, "fmt", "--check", str(tmp_path))
    assert (code, out, err) == (1, f"would reformat {messy}\n", "")
    assert messy.read_text() == MESSY
    assert run(capsys, "fmt", "--check", str(tmp_path / "b.wf")) == (0, "", "")


def test_diff_shows_what_would_change_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--check` said only `would reformat PATH`; `--diff` shows the change, as `black --diff`."""
    path = write(tmp_path / "w.wf", "workflow w {\n  call   x\n  call y\n}\n")
    write(tmp_path / "b.wf", CANONICAL.replace("tidy", "b"))
    code, out, err = run(capsys, "fmt", "--diff", str(tmp_path))
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"--- {path}\t(original)",
        f"+++ {path}\t(formatted)",
        "@@ -1,4 +1,4 @@",
        " workflow w {",
        "-  call   x",
        "+  call x",
        "   call y",
        " }",
    ]
    assert path.read_text() == "workflow w {\n  call   x\n  call y\n}\n"
    assert run(capsys, "fmt", "--diff", str(tmp_path / "b.wf")) == (0, "", "")


def test_diff_of_a_crlf_file_shows_its_lines_without_carriage_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file stays CRLF when formatted; its diff is read on a terminal, so no `^M` in it. A file
    whose only change would be its line endings says so."""
    path = tmp_path / "w.wf"
    path.write_bytes(b"workflow w {\r\n  call   x\r\n}\r\n")
    code, out, _ = run(capsys, "fmt", "--diff", str(path))
    assert code == 1 and "\r" not in out
    assert out.splitlines()[-3:] == ["-  call   x", "+  call x", " }"]
    mixed = tmp_path / "m.wf"
    mixed.write_bytes(b"workflow m {\r\n  call x\n}\r\n")
    code, out, _ = run(capsys, "fmt", "--diff", str(mixed))
    assert (code, out) == (1, f"{mixed}: only its line endings would change (to CRLF, as its first line's)\n")
    assert mixed.read_bytes() == b"workflow m {\r\n  call x\n}\r\n"


def test_diff_on_a_terminal_does_not_send_a_strings_escape_sequence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A string holding an escape sequence is shown, not acted on, on a terminal; piped, the diff is
    exact (it may be given to `patch`)."""
    path = write(tmp_path / "w.wf", 'workflow w {\n  script s { run = "echo \x1b[31mred" }\n}\n')
    code, piped, _ = run(capsys, "fmt", "--diff", str(path))
    assert code == 1 and '-  script s { run = "echo \x1b[31mred" }' in piped.splitlines()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, shown, _ = run(capsys, "fmt", "--diff", str(path))
    assert code == 1 and "\x1b" not in shown
    assert '+    run = "echo red"' in shown.splitlines()


def test_a_file_that_does_not_parse_is_reported_and_left_alone_while_others_are_formatted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write(tmp_path / "a.wf", "workflow a {\n  while ready { call x }\n}\n")
    messy = write(tmp_path / "b.wf", MESSY)
    code, out, err = run(capsys, "fmt", str(tmp_path))
    assert code == 1
    assert out == f"reformatted {messy}\n"
    lines = err.splitlines()
    assert lines[0].startswith(f"{broken}:2:") and "step.marker" in lines[0]
    assert lines[1] == " 2 |   while ready { call x }"
    assert lines[-1] == f"{broken}: left unchanged"
    assert broken.read_text() == "workflow a {\n  while ready { call x }\n}\n"


def test_a_file_with_comments_is_reformatted_and_keeps_every_comment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "workflow c {\n  // explain why\n  call a   { retries = 1 }   if a.ok { call b }  // tail\n}\n"
    path = write(tmp_path / "c.wf", text)
    assert run(capsys, "fmt", "--check", str(path)) == (1, f"would reformat {path}\n", "")
    assert path.read_text() == text
    code, out, _err = run(capsys, "fmt", str(path))
    assert (code, out) == (0, f"reformatted {path}\n")
    formatted = path.read_text()
    assert "// explain why" in formatted and "// tail" in formatted
    assert formatted.index("// explain why") < formatted.index("call a")
    assert parse_workflow(formatted) == parse_workflow(text)
    assert run(capsys, "fmt", "--check", str(path)) == (0, "", "")


def test_slashes_inside_strings_are_not_comments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "u.wf", 'workflow u { meta { description = "see https://x.y/z \\" // not a comment" } }'
    )
    code, _out, _err = run(capsys, "fmt", str(path))
    assert code == 0
    assert parse_workflow(path.read_text()).description == 'see https://x.y/z " // not a comment'


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and symlinks")
def test_permissions_are_kept_and_symlinks_are_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = write(tmp_path / "real" / "tidy.wf", MESSY)
    real.chmod(0o640)
    link = tmp_path / "link.wf"
    link.symlink_to(real)
    assert run(capsys, "fmt", str(link))[0] == 0
    assert link.is_symlink()
    assert real.read_text() == CANONICAL
    assert real.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in real.parent.iterdir()] == ["tidy.wf"]  # no temp file left behind


def test_a_crlf_file_keeps_its_line_endings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Windows checkout is CRLF: laid out already, it is left alone (`--check` passes); laid
    out anew, it stays CRLF — a string that spans lines included."""
    canonical = tmp_path / "tidy.wf"
    canonical.write_bytes(CANONICAL.replace("\n", "\r\n").encode())
    assert run(capsys, "fmt", "--check", str(canonical)) == (0, "", "")
    messy = tmp_path / "messy.wf"
    messy.write_bytes(b'workflow w {\r\n  script s { run = "echo a\r\necho b" }\r\n  call   x\r\n}\r\n')
    assert run(capsys, "fmt", str(messy))[0] == 0
    text = messy.read_bytes().decode()
    assert text.count("\n") == text.count("\r\n") > 3 and "\r\r" not in text
    same = 'workflow w { script s { run = "echo a\r\necho b" } call x }'
    assert parse_workflow(text) == parse_workflow(same)


def test_a_second_workflow_after_the_first_is_not_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Code after the workflow's closing `}` is ignored by the language (a warning); `fmt` deleted it —
    a second workflow pasted into the file was gone. It now leaves the file alone and says where."""
    text = "workflow a {\n  call x\n}\n\nworkflow b {\n  call y\n}\n"
    path = write(tmp_path / "two.wf", text)
    code, out, err = run(capsys, "fmt", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"{path}:5:1: cannot format text after the closing `}}` of workflow `a`")
    assert path.read_text() == text
    path.write_text("workflow a {\ncall x }\n// only a comment after it\n")
    assert run(capsys, "fmt", str(path))[0] == 0
    assert path.read_text() == "workflow a {\n  call x\n}\n// only a comment after it\n"


def test_an_option_key_the_language_ignores_is_not_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo (`retires`) is an unknown key, which the language ignores (validate warns); `fmt` deleted
    the line, and with it the only sign of the mistake. It now leaves the file alone and says why."""
    text = "workflow a {\n  call x { retires = 3 }\n  if x.ok { frob = 1 call y }\n}\n"
    path = write(tmp_path / "typo.wf", text)
    code, out, err = run(capsys, "fmt", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(
        f"{path}:2:12: cannot format: `retires` is not an option of `call x`; it is ignored (did you mean "
        "`retries`?), and formatting would delete it — correct or remove it first (1 more such key below)"
    )
    assert path.read_text() == text


def test_fmt_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "fmt", str(tmp_path / "missing.wf"))
    assert (code, out) == (2, "")
    assert "no such file or directory" in err
    assert run(capsys, "fmt")[0] == 2


def test_a_shell_glob_over_a_folder_with_a_readme_formats_every_workflow_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fmt flows/*` stopped at `flows/README.md` before rewriting anything: as `validate`, every
    `.wf` given is formatted, each argument that is not a workflow named last; exit 2 (a
    command-line mistake a script sees) unless the workflows gave 1."""
    flows = tmp_path / "flows"
    a = write(flows / "a.wf", MESSY)
    readme = write(flows / "README.md", "# flows\n")
    z = write(flows / "z.wf", MESSY.replace("tidy", "z"))
    given = [str(flows / name) for name in ("README.md", "a.wf", "z.wf")]  # as the shell sorts them
    not_a_workflow = (
        f"runkon-flow fmt: error: {readme} is not a workflow file "
        "(its name does not end in .wf); a directory formats every .wf file in it\n"
    )
    code, out, err = run(capsys, "fmt", "--check", *given)
    assert (code, out, err) == (1, f"would reformat {a}\nwould reformat {z}\n", not_a_workflow)
    code, out, err = run(capsys, "fmt", "--diff", *given)
    assert code == 1 and out.startswith(f"--- {a}\t(original)") and err == not_a_workflow
    assert a.read_text() == MESSY and readme.read_text() == "# flows\n"

    code, out, err = run(capsys, "fmt", *given)
    assert (code, out, err) == (2, f"reformatted {a}\nreformatted {z}\n", not_a_workflow)
    assert a.read_text() == CANONICAL and readme.read_text() == "# flows\n"
    assert run(capsys, "fmt", "--check", *given) == (2, "", not_a_workflow)  # all canonical: 2, not 0

    write(z, "workflow z {\n")
    code, out, err = run(capsys, "fmt", *given, str(tmp_path / "missing"))
    assert (code, out) == (1, "")  # a file left unchanged comes first
    assert err.index(f"{z}: left unchanged") < err.index(str(readme)) < err.index("no such file")


def test_the_sample_workflows_are_canonically_formatted(capsys: pytest.CaptureFixture[str]) -> None:
    samples = Path(__file__).resolve().parents[2] / "sample_workflows"
    assert run(capsys, "fmt", "--check", str(samples)) == (0, "", "")


def test_options_written_on_one_line_are_separated_by_one_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Short option blocks stay on one line, spaced like any other code: one space, not two."""
    text = (
        "workflow s {\n  call a {retries=2 on_fail=continue}\n"
        '  parallel {\n    call b { if = "a.ok" retries = 1 }\n  }\n}\n'
    )
    path = write(tmp_path / "s.wf", text)
    assert run(capsys, "fmt", str(path))[0] == 0
    formatted = path.read_text()
    assert "  call a { retries = 2 on_fail = continue }\n" in formatted
    assert '    call b { retries = 1 if = "a.ok" }\n' in formatted
    assert all("  " not in line.strip() for line in formatted.splitlines())


def readme_example() -> str:
    """The README's annotated `workflow release-notes` example: the first fenced block opening with `//`."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = readme.split("```")[1::2]
    return next(b.split("\n", 1)[1] for b in blocks if b.split("\n", 1)[1].startswith("//"))


def block_of(lines: list[str], index: int) -> str:
    """The head of the block that holds line `index` (the nearest less-indented line above it)."""
    indent = len(lines[index]) - len(lines[index].lstrip())
    for line in reversed(lines[:index]):
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            return line.strip()
    return ""


README_COMMENTS = {  # formatted line → the head of the block it must stay in
    "// Comments start with two slashes. Newlines are insignificant.": "",
    "trigger     = manual  // manual | pr | scheduled": "meta {",
    'version required description = "Version to release"  // a bare name is required too': "inputs {",
    "dry     boolean  // booleans are never required": "inputs {",
    "script collect {  // sh -c; {{vars}} are inserted shell-quoted": "workflow release-notes {",
    'env     = { SINCE = "{{version}}" }  // env values are inserted raw': "script collect {  // sh -c;",
    "timeout = 60  // seconds, integer": "script collect {  // sh -c;",
    "do {  // a sequential group with shared options": "workflow release-notes {",
    'output = "notes"  // structured-output schema for inner calls': "do {  // a sequential group",
    'with   = ["house-style"]  // prompt snippets for inner calls': "do {  // a sequential group",
    'call "agents/review-notes.md"  // an agent by path; its step key is `review-notes`': "do {  // a seq",
    "parallel {  // agents side by side": "workflow release-notes {",
    "do {  // do-while: the body runs at least once": "workflow release-notes {",
    "on_max_iter    = continue  // fail | continue": "do {  // do-while",
    "foreach announce {  // fan a child workflow out over items": "workflow release-notes {",
    "ordered       = true  // respect declared dependencies": "foreach announce {",
    "on_child_fail = skip_dependents  // halt | continue | skip_dependents": "foreach announce {",
    "always {  // runs after the body, success or failure": "workflow release-notes {",
}


def test_the_readme_example_keeps_every_comment_on_its_line_in_its_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fmt reorders options and moves blocks; each comment must travel with the line it was written on."""
    source = readme_example()
    path = write(tmp_path / "release-notes.wf", source)
    assert run(capsys, "fmt", str(path))[0] == 0
    formatted = path.read_text()
    lines = formatted.splitlines()
    found = {line.strip(): block_of(lines, i) for i, line in enumerate(lines) if "//" in line}
    assert set(found) == set(README_COMMENTS)
    for line, block in README_COMMENTS.items():
        assert found[line].startswith(block), (line, found[line])
    assert parse_workflow(formatted) == parse_workflow(source)
    assert run(capsys, "fmt", "--check", str(path)) == (0, "", "")


def test_an_end_of_line_comment_in_a_step_does_not_move_into_the_inputs_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`inputs` are written above the steps: a comment that followed a script option stays on that option."""
    text = 'workflow w {\n  script a {run="echo hi" // trailing\n  }\n  inputs { x default = "y" }\n}\n'
    path = write(tmp_path / "w.wf", text)
    assert run(capsys, "fmt", str(path))[0] == 0
    assert path.read_text() == (
        "workflow w {\n"
        "  inputs {\n"
        '    x default = "y"\n'
        "  }\n"
        "\n"
        "  script a {\n"
        '    run = "echo hi"  // trailing\n'
        "  }\n"
        "}\n"
    )


def test_comments_on_their_own_lines_stay_before_the_option_or_step_below_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Canonical option order moves `env` after `timeout`; its comment moves with it, and a comment
    closing a block stays inside that block."""
    text = (
        "workflow w {\n"
        "  script s {\n"
        "    // what the script sees\n"
        '    env = { A = "1" }\n'
        "    // whole seconds\n"
        "    timeout = 5\n"
        '    run = "true"\n'
        "    // nothing else\n"
        "  }\n"
        "  // then the agent\n"
        "  call a { retries = 1 }\n"
        "}\n"
    )
    path = write(tmp_path / "w.wf", text)
    assert run(capsys, "fmt", str(path))[0] == 0
    assert path.read_text() == (
        "workflow w {\n"
        "  script s {\n"
        '    run     = "true"\n'
        "    // whole seconds\n"
        "    timeout = 5\n"
        "    // what the script sees\n"
        '    env     = { A = "1" }\n'
        "    // nothing else\n"
        "  }\n"
        "\n"
        "  // then the agent\n"
        "  call a { retries = 1 }\n"
        "}\n"
    )


def end_of_line_comments(text: str) -> list[str]:
    return sorted(c.text for c in comments(text) if text.splitlines()[c.line - 1][: c.column - 1].strip())


@pytest.mark.parametrize(
    "folder",
    [Path(__file__).resolve().parents[2] / "sample_workflows", CONFORMANCE_DIR],
    ids=["sample_workflows", "conformance"],
)
def test_formatting_twice_changes_nothing_more_and_keeps_comments_where_they_were(folder: Path) -> None:
    """Idempotence with comments on every file we have plus the README example: the meaning is kept,
    no comment is lost, and an end-of-line comment is still at the end of a line of code."""
    if not folder.is_dir():
        require_corpus()
    sources = [readme_example(), *(p.read_text() for p in sorted(folder.glob("*.wf")))]
    for source in sources:
        once = format_source(source)
        assert format_source(once) == once
        assert parse_workflow(once) == parse_workflow(source)
        assert sorted(c.text for c in comments(once)) == sorted(c.text for c in comments(source))
        assert end_of_line_comments(once) == end_of_line_comments(source)


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8"))


def test_fmt_dash_formats_stdin_to_stdout_for_an_editor(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor pipes its buffer through `fmt -` (as `black -`, `ruff format -`): the whole text
    comes back on stdout, changed or not. Before, only `fmt /dev/stdin` could read it, and that
    failed trying to rewrite the pipe (`cannot write: No such file or directory`)."""
    _stdin(monkeypatch, MESSY)
    assert run(capsys, "fmt", "-") == (0, CANONICAL, "")
    _stdin(monkeypatch, CANONICAL)
    assert run(capsys, "fmt", "-") == (0, CANONICAL, "")  # already canonical: echoed whole

    _stdin(monkeypatch, MESSY)
    assert run(capsys, "fmt", "--check", "-") == (1, "would reformat <stdin>\n", "")
    _stdin(monkeypatch, MESSY)
    code, out, _ = run(capsys, "fmt", "--diff", "-", "--stdin-filename", "flows/tidy.wf")
    assert code == 1 and out.startswith("--- flows/tidy.wf\t(original)\n+++ flows/tidy.wf\t(formatted)\n")
    _stdin(monkeypatch, CANONICAL)
    assert run(capsys, "fmt", "--check", "-") == (0, "", "")


def test_fmt_dash_on_a_broken_text_prints_nothing_to_replace_the_buffer_with(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, 'workflow x {\n  script a { run = "echo"\n}\n')
    code, out, err = run(capsys, "fmt", "-", "--stdin-filename", "flows/x.wf")
    assert (code, out) == (1, "")
    assert err.startswith("flows/x.wf:4:1: expected ")


def test_fmt_dash_goes_alone_and_stdin_filename_goes_with_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "tidy.wf", MESSY)
    code, _, err = run(capsys, "fmt", "-", str(path))
    assert code == 2 and "`-` (stdin) cannot be given with other paths" in err
    code, _, err = run(capsys, "fmt", "--stdin-filename", "a.wf", str(path))
    assert code == 2 and "--stdin-filename goes with `-`" in err
    assert path.read_text() == MESSY


def test_fmt_of_a_pipe_path_says_it_cannot_rewrite_it_and_names_fmt_dash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`fmt /dev/stdin` (or `<(…)`): a pipe can be read, not rewritten in place."""
    fifo = tmp_path / "flow"
    os.mkfifo(fifo)
    import threading

    def feed() -> None:
        with open(fifo, "w") as handle:
            handle.write(MESSY)

    writer = threading.Thread(target=feed)
    writer.start()
    code, out, err = run(capsys, "fmt", str(fifo))
    writer.join()
    assert (code, out) == (1, "")
    assert f"{fifo}: not a regular file" in err and "`runkon-flow fmt -` formats stdin to stdout" in err
