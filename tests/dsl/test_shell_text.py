"""Placeholders in a script's `run` text: values are referenced, never spliced (dsl.shell_text).

Each case runs the rendered command in a real `sh` (and `bash` when present): whatever the value
holds and however the author quoted the placeholder, nothing it contains runs, and inside quotes it
arrives byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from runkon_flow.dsl.shell_text import ShellTemplateError, render_shell_command, scan_placeholders

SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]

HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "x\ntouch PWNED",
    "a; touch PWNED",
    "'\"$(touch PWNED)\"'",
    "\\'$(touch PWNED)",
    "$HOME && touch PWNED",
    "a b  *  c",
    "{{v}}",
    "",
]

# (author's form, what the form prints for a value V) — the author's quoting in each of its forms.
FORMS = [
    ("printf %s {{v}}", lambda v: v),
    ('printf %s "{{v}}"', lambda v: v),
    ("printf %s '{{v}}'", lambda v: v),
    ('printf %s "<{{v}}>"', lambda v: f"<{v}>"),
    ("printf %s '<{{v}}>'", lambda v: f"<{v}>"),
    ('printf %s "$(printf %s {{v}})"', lambda v: v.rstrip("\n")),
    ('printf %s "$(printf %s "{{v}}")"', lambda v: v.rstrip("\n")),
    ("printf %s \"$(printf %s '{{v}}')\"", lambda v: v.rstrip("\n")),
    ('printf %s "`printf %s {{v}}`"', lambda v: v.rstrip("\n")),
    ("printf %s \"`printf %s '{{v}}'`\"", lambda v: v.rstrip("\n")),
    ('x=`printf %s {{v}}`; printf %s "$x"', lambda v: v.rstrip("\n")),
    ("cat <<EOF\n{{v}}\nEOF", lambda v: v + "\n"),
    ('printf "%s|%s|%s" {{v}} "{{v}}" \'{{v}}\'', lambda v: f"{v}|{v}|{v}"),
]


def _run(shell: str, command: str, env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run([shell, "-c", command], cwd=cwd, env={**os.environ, **env}, capture_output=True)
    return out.stdout.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("form", "expected"), FORMS, ids=[f for f, _ in FORMS])
def test_no_value_runs_and_each_arrives_byte_for_byte(
    shell: str, form: str, expected, tmp_path: Path
) -> None:
    for value in HOSTILE:
        command, env = render_shell_command(form, {"v": value})
        assert value == "" or value not in command  # the value is never part of the shell text
        assert _run(shell, command, env, tmp_path) == expected(value), (form, value)
        assert not (tmp_path / "PWNED").exists(), (form, value)


@settings(max_examples=80, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(FORMS[:5] + FORMS[-1:]),
)
def test_any_value_in_any_quoting_arrives_unchanged(value: str, case) -> None:
    form, expected = case
    command, env = render_shell_command(form, {"v": value})
    out = subprocess.run(["sh", "-c", command], env={**os.environ, **env}, capture_output=True)
    assert out.stdout == expected(value).encode("utf-8")


def test_a_value_is_inserted_once_and_unknown_placeholders_are_removed() -> None:
    command, env = render_shell_command("printf %s {{a}}{{zz}}{{a}}", {"a": "{{zz}}", "zz": "no"})
    assert env == {"RUNKON_V1": "{{zz}}", "RUNKON_V2": "no"}
    assert subprocess.run(["sh", "-c", command], env={**os.environ, **env}, capture_output=True).stdout == (
        b"{{zz}}no{{zz}}"
    )
    assert render_shell_command("echo {{gone}} x", {}) == ("echo  x", {})


@pytest.mark.parametrize(
    ("form", "says", "hint"),
    [
        ("echo ${X:-{{v}}}", "inside a `${…}` expansion", "pass it through `env`"),
        ("echo $(( {{v}} + 1 ))", "arithmetic expansion", "pass it through `env`"),
        ("echo $'{{v}}'", "inside `$'…'` quotes", "remove the quotes"),
        ("cat <<'EOF'\n{{v}}\nEOF", "quoted delimiter", "unquoted"),
        ("echo \\{{v}}", "follows a backslash", "remove the backslash"),
        ('echo "\\{{v}}"', "follows a backslash", "remove the backslash"),
    ],
)
def test_places_without_a_safe_insertion_are_refused(form: str, says: str, hint: str) -> None:
    (use,) = scan_placeholders(form)
    assert says in (use.problem or "") and hint in (use.hint or "")
    with pytest.raises(ShellTemplateError):
        render_shell_command(form, {"v": "$(touch PWNED)"})


def test_quoted_placeholders_are_flagged_only_where_the_quotes_hold_nothing_else() -> None:
    uses = scan_placeholders("echo '{{a}}' \"{{b}}\" \"x {{c}}\" {{d}} 'y{{e}}'\necho {{f}}")
    assert [(u.key, u.context, u.redundant_quotes, u.line) for u in uses] == [
        ("a", "single", True, 1),
        ("b", "double", True, 1),
        ("c", "double", False, 1),
        ("d", "plain", False, 1),
        ("e", "single", False, 1),
        ("f", "plain", False, 2),
    ]


def _spec_placeholders(text: str) -> list[tuple[int, int]]:
    """dsl.md §8: left to right, a key is all text up to the next `}}`."""
    found, pos = [], 0
    while (start := text.find("{{", pos)) >= 0 and (close := text.find("}}", start + 2)) >= 0:
        found.append((start, close + 2))
        pos = close + 2
    return found


PIECES = [*"ab $(){}`'\"\\<-#\n;|&", "{{v}}", "{{", "}}", "$((", "${", "<<EOF\n", "\nEOF\n", "$'", "<<'E'\n"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
@example("<<{{v}}<<EOF\n{{v}}")  # the line ending a body whose delimiter holds a placeholder
def test_the_scanner_finds_exactly_the_placeholders_the_language_defines(text: str) -> None:
    """Whatever shell syntax surrounds them (even broken), every placeholder is found once — so a
    known one is never left in the command unreplaced — and rendering either works or refuses."""
    assert [(u.start, u.end) for u in scan_placeholders(text)] == _spec_placeholders(text)
    try:
        command, _ = render_shell_command(text, {"v": "$(touch PWNED)"})
    except ShellTemplateError:
        return
    assert "$(touch PWNED)" not in command


NESTED = [
    "sh -c 'echo {{v}}'",
    'bash -c "echo {{v}}"',
    "sh -c {{v}}",
    "eval echo {{v}}",
    "bash -o pipefail -c 'echo {{v}}'",
    "bash --norc -c 'echo {{v}}'",
    "env A=1 sh -c 'echo {{v}}'",
    "/usr/bin/env bash -euc 'echo {{v}}'",
    "timeout 30 sh -c 'echo {{v}}'",
    "xargs -n1 sh -c 'echo {{v}}'",
    "find . -maxdepth 0 -exec sh -c 'echo {{v}}' \\;",
    "echo $(sh -c 'echo {{v}}')",
    'echo "`bash -c "echo {{v}}"`"',
    "python3 -c 'print(\"{{v}}\")'",
    "python3 -W ignore -Ic \"print('{{v}}')\"",
    "node -e 'console.log(\"{{v}}\")'",
    "node --eval='x(\"{{v}}\")'",
    "perl -ne 'print if /{{v}}/' f",
    "ruby -e 'puts \"{{v}}\"'",
    "php -r 'echo \"{{v}}\";'",
    # programs awk, sed and jq run (awk has system(), GNU sed `e` and `s///e`)
    "awk '{print \"{{v}}\"}' f",
    "gawk -F: -v n=1 '{print \"{{v}}\"}' f",
    "awk -f lib.awk -e 'BEGIN{x=\"{{v}}\"}' f",
    'sed "s/x/{{v}}/" f',
    "sed -n -e 's/a/b/p' -e \"s/x/{{v}}/p\" f",
    'sed -ne "s/x/{{v}}/p" f',
    'sed --expression="s/x/{{v}}/" f',
    'busybox sed "s/x/{{v}}/" f',
    'jq ".a = {{v}}" f.json',
    'jq -r --arg a b ".{{v}}"',
    # a remote command (ssh joins its words and the remote shell parses them), `watch`'s command
    "ssh -p 22 deploy@host git checkout {{v}}",
    "watch -n 5 ls {{v}}",
    # programs a shell or an interpreter reads from a here-document or here-string
    "sh <<EOF\necho {{v}}\nEOF",
    "bash -s -- a <<-EOF\n\techo {{v}}\n\tEOF",
    'bash <<< "echo {{v}}"',
    "python3 - <<EOF\nprint('{{v}}')\nEOF",
    "python3 <<EOF\nprint('{{v}}')\nEOF",
    "cat f | env A=1 sh <<< 'echo {{v}}'",
    # commands that hand a command line to a shell: su/runuser/script/sg, in a container or a pod
    "su -c 'echo {{v}}'",
    "su - deploy -c 'echo {{v}}'",
    "runuser -l deploy -c 'echo {{v}}'",
    "runuser -u deploy -- sh -c 'echo {{v}}'",
    "script -qc 'echo {{v}}' /dev/null",
    "script --command='echo {{v}}' /dev/null",
    "sg staff -c 'echo {{v}}'",
    "su root -- -c 'echo {{v}}'",  # after `--`, su's words go to the user's shell: its `-c`
    "su -- deploy -c 'echo {{v}}'",
    "su - deploy -s /bin/bash -- -lc 'echo {{v}}'",
    "runuser deploy -- -c 'echo {{v}}'",
    "docker exec web sh -c 'echo {{v}}'",
    "docker exec -it -u root -e A=1 web bash -c 'echo {{v}}'",
    "docker compose exec web sh -c 'echo {{v}}'",
    "podman exec web python3 -c 'print(\"{{v}}\")'",
    "kubectl exec -n prod web-0 -c app -- sh -c 'echo {{v}}'",
    "kubectl -n prod exec web-0 -- bash -c 'echo {{v}}'",
    "sudo -- sh -c 'echo {{v}}'",
    "sudo -u deploy bash -c 'echo {{v}}'",
    "env VAR=1 sh -c 'echo {{v}}'",
    "nice -n 5 timeout 30 sh -c 'echo {{v}}'",
    # a shell after a reserved word or in a group; a program attached to its option
    "if sh -c 'test {{v}}'; then :; fi",
    "while sh -c 'echo {{v}}'; do :; done",
    "{ sh -c 'echo {{v}}'; }",
    "! bash -c 'echo {{v}}'",
    "python3 -c'print(\"{{v}}\")'",
    # a value piped into a shell or an interpreter that reads its program from the pipe
    "echo {{v}} | sh",
    "printf '%s\\n' {{v}} | bash",
    "echo {{v}} | python3 -",
    "echo {{v}} | sudo sh",
    "echo {{v}} | tr a b | bash -s",
    "(echo {{v}}) | sh",
    "{ echo set -e; echo {{v}}; } | sh",
    "echo {{v}} |\n  sh",
    "echo {{v}} | sh /dev/stdin",
    "cat <<EOF | sh\necho {{v}}\nEOF",
    "echo {{v}} | xargs sh -c",
    "echo {{v}} | xargs -I{} sh -c 'echo {}'",
    "echo {{v}} | docker exec -i web sh",
    "echo {{v}} | ssh deploy@host",
    "echo {{v}} | ssh -T host 'cd /srv && bash -s'",
    # a container started for the command; a program read from a process substitution
    "docker run --rm -it -e A=1 -v a:b --name x img sh -c 'echo {{v}}'",
    "docker compose run --rm web sh -c 'echo {{v}}'",
    "docker run --entrypoint sh img -c 'echo {{v}}'",  # the entrypoint's arguments follow the image
    "docker run --rm --entrypoint=/bin/bash img -c 'echo {{v}}'",
    "podman run -it --entrypoint python3 img -c 'print(\"{{v}}\")'",
    "echo {{v}} | docker run -i --entrypoint sh img",
    "kubectl run tmp --image=busybox --rm -it -- sh -c 'echo {{v}}'",
    "bash <(echo {{v}})",
    "source <(printf '%s\\n' {{v}})",
    "python3 <(echo {{v}})",
]

# Forms of NESTED this machine can run: the value, inserted the way it would be without the
# refusal (as a reference to its environment variable), runs as code.
RUNNABLE = {
    "script -qc 'echo {{v}}' /dev/null": "script -qc 'echo '\"$V\"'' /dev/null",
    "su root -- -c 'echo {{v}}'": "su root -- -c 'echo '\"$V\"''",
    "if sh -c 'test {{v}}'; then :; fi": "if sh -c 'test '\"$V\"''; then :; fi",
    "{ sh -c 'echo {{v}}'; }": "{ sh -c 'echo '\"$V\"''; }",
    "python3 -c'print(\"{{v}}\")'": "python3 -c'print(\"'\"$V\"'\")'",
    "echo {{v}} | sh": 'echo "$V" | sh',
    "(echo {{v}}) | sh": '(echo "$V") | sh',
    "echo {{v}} | sh /dev/stdin": 'echo "$V" | sh /dev/stdin',
    "echo {{v}} | xargs sh -c": 'echo "$V" | xargs sh -c',
    "echo {{v}} | xargs -I{} sh -c 'echo {}'": "echo \"$V\" | xargs -I{} sh -c 'echo {}'",
    "bash <(echo {{v}})": "bash -c 'bash <(echo \"$V\")'",
}


@pytest.mark.parametrize("form", NESTED)
def test_a_placeholder_in_text_a_nested_shell_runs_is_refused(form: str, tmp_path: Path) -> None:
    """The outer shell would insert the value faithfully, and the inner one run it as code."""
    (use,) = scan_placeholders(form)
    assert "would run as code" in (use.problem or "")
    assert any(how in (use.hint or "") for how in ("pass it through `env`", "--arg value", "standard input"))
    with pytest.raises(ShellTemplateError):
        render_shell_command(form, {"v": "x; touch PWNED"})


@pytest.mark.parametrize("form", sorted(RUNNABLE))
def test_the_newly_refused_forms_run_a_value_as_code(form: str, tmp_path: Path) -> None:
    """Why each of them is refused: the value, handed over as data the way other placeholders
    are, reaches a shell or an interpreter that parses it."""
    value = {"python3": '"); import os; os.system("touch PWNED"); ("'}.get(form[:7], "x; touch PWNED")
    if form.startswith("script") and not shutil.which("script"):
        pytest.skip("no script(1)")
    if form.startswith("su ") and (os.geteuid() != 0 or not shutil.which("su")):
        pytest.skip("su to root without a password: as root only")
    if form.startswith("if"):
        value = "x; touch PWNED; :"
    if form.endswith("xargs sh -c"):  # xargs splits lines at blanks, unless quoted
        value = "'touch PWNED'"
    subprocess.run(
        ["sh", "-c", RUNNABLE[form]], cwd=tmp_path, env={**os.environ, "V": value}, capture_output=True
    )
    assert (tmp_path / "PWNED").exists(), form
    (use,) = scan_placeholders(form)
    assert "would run as code" in (use.problem or "")


@pytest.mark.parametrize(
    ("form", "says", "hint"),
    [
        (
            "docker exec web sh -c 'rm {{v}}'",
            "`docker exec … sh -c` runs as shell code",
            'docker exec -e VALUE="$VALUE"',
        ),
        (
            "kubectl exec web-0 -- sh -c 'rm {{v}}'",
            "`kubectl exec … sh -c`",
            "| kubectl exec -i POD -- sh -c",
        ),
        ("su - deploy -c 'rm {{v}}'", "`su -c` runs as shell code", "keeps it with `-w VALUE`"),
        ("echo {{v}} | sh", "what `sh` reads from a pipe as its program", "in the text piped to `sh`"),
        ("echo {{v}} | python3 -", "what `python3` reads from a pipe", "read the environment variable VALUE"),
        ("echo {{v}} | ssh host", "what `ssh` reads from a pipe", "send it on ssh's standard input"),
        ("docker run img sh -c 'rm {{v}}'", "`docker run … sh -c`", 'docker run -e VALUE="$VALUE"'),
        (
            "docker run --entrypoint sh img -c 'rm {{v}}'",
            "`docker run … sh -c`",
            'docker run -e VALUE="$VALUE"',
        ),
        ("su deploy -- -c 'rm {{v}}'", "`su -- -c` runs as shell code", "keeps it with `-w VALUE`"),
    ],
)
def test_refusals_of_commands_run_elsewhere_or_read_from_a_pipe_say_how_to_pass_the_value(
    form: str, says: str, hint: str
) -> None:
    (use,) = scan_placeholders(form)
    assert says in (use.problem or ""), use.problem
    assert hint in (use.hint or ""), use.hint


@pytest.mark.parametrize(
    "form",
    [
        "docker exec web ls {{v}}",
        "docker exec -e V={{v}} web sh -c 'ls \"$V\"'",
        "kubectl exec web-0 -- ls {{v}}",
        "su deploy -c 'ls \"$1\"' -- {{v}}",
        "su deploy -- -c 'ls \"$1\"' sh {{v}}",
        "runuser -u deploy -- ls {{v}}",
        "docker run --entrypoint sh img -c 'ls \"$1\"' sh {{v}}",
        "docker run --entrypoint ls img {{v}}",
        "docker run --entrypoint=cat img {{v}}",
        "script -q {{v}}",
        "echo {{v}} | grep x | sh -c 'cat'",
        "echo {{v}} | sh script.sh",
        "echo {{v}} | python3 tool.py",
        "echo {{v}} | xargs sh -c 'echo \"$1\"' sh",
        "echo {{v}} || sh",
        "echo {{v}}; cat f | sh",
        "echo {{v}} && cat f | sh",
        "docker run --rm -e V=1 img ls {{v}}",
        "printf '%s\\n' {{v}} | ssh host 'IFS= read -r VALUE; ls \"$VALUE\"'",
        "echo {{v}} | ssh host cat",
        "diff <(echo {{v}}) f",
        "cat <(printf %s {{v}})",
    ],
)
def test_values_given_as_data_to_those_commands_are_accepted(form: str) -> None:
    assert [use.problem for use in scan_placeholders(form)] == [None]


@pytest.mark.parametrize(
    "form",
    [
        "sh -c 'printf %s \"$1\"' sh {{v}}",  # an argument of the script: data
        "printf %s {{v}} | sh -c 'cat'",
        "printf %s {{v}} 2>/dev/null | bash -c cat",
        "cat <<EOF\nsh -c {{v}}\nEOF",
        "printf '%s ' sh -c {{v}}",
        "# sh -c {{v}}\nprintf %s {{v}}",
        "python3 -c 'import sys; print(sys.argv[1])' {{v}}",
        "python3 -m json.tool --help >/dev/null; printf %s {{v}}",
        # awk's and sed's operands and `-v` are data; so is what a here-string gives a filter
        "awk -v x=1 '{print x}' /dev/null {{v}}; printf %s {{v}}",
        "printf %s {{v}} | awk '{printf \"%s\", $0}'",
        "echo b > {{v}}; sed -i.bak 's/a/b/' {{v}}; printf %s {{v}}",
        "printf x | sed -e 's/x/y/' - {{v}} 2>/dev/null; printf %s {{v}}",
        "cat <<< {{v}}",
        "sh -c 'cat' <<< \"{{v}}\"",
        "sh /dev/null <<EOF\n{{v}}\nEOF\nprintf %s {{v}}",
    ],
)
def test_values_handed_to_a_nested_shell_as_data_are_accepted(form: str, tmp_path: Path) -> None:
    value = "x; touch PWNED"
    command, env = render_shell_command(form, {"v": value})
    shell = "sh"
    if "<<<" in form:  # here-strings are bash's (dash, Debian's sh, has none)
        if not shutil.which("bash"):
            pytest.skip("no bash")
        shell = "bash"
    assert value in _run(shell, command, env, tmp_path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("form", "hint"),
    [
        ("awk '{print \"{{v}}\"}'", 'read ENVIRON["VALUE"] in the awk program'),
        ("sed 's/x/{{v}}/'", "sed cannot take a value as data"),
        ("jq '.[{{v}}]'", "pass it as `--arg value {{v}}` and write $value in the filter"),
        ("ssh host rm {{v}}", "send it on ssh's standard input"),
        ("sh <<EOF\nrm {{v}}\nEOF", "quote the here-document's delimiter (<<'EOF')"),
        ("bash <<< 'rm {{v}}'", 'write "$VALUE" inside single quotes in the here-string'),
        ("python3 - <<EOF\nprint('{{v}}')\nEOF", "read the environment variable VALUE in that program"),
    ],
)
def test_each_refusal_says_how_to_pass_the_value_as_data(form: str, hint: str) -> None:
    (use,) = scan_placeholders(form)
    assert hint in (use.hint or ""), use.hint


def test_a_value_in_an_awk_or_sed_program_would_run() -> None:
    """Why awk's and sed's programs are refused: spliced into the program (as a bare `sh` would
    insert it), a value runs a command."""
    if not (shutil.which("awk") and shutil.which("sed")):
        pytest.skip("no awk or sed")
    awk = subprocess.run(
        ["awk", 'BEGIN{print "x"; system("echo RAN"); print "y"}'], capture_output=True, text=True
    )
    assert "RAN" in awk.stdout
    sed = subprocess.run(["sed", "s/x/y/\ne echo RAN\ns/a/b/"], input="x\n", capture_output=True, text=True)
    assert "RAN" in sed.stdout or sed.returncode != 0  # GNU sed runs it; others refuse `e`


def test_finding_nested_shells_splits_each_substitution_once_and_deep_nesting_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Looking for the end of `$(…)` split the commands inside a `"…"` in it again: each level
    doubled the work (18 levels of `echo "$(…)"` took 2.5 s, 30 would take hours). Hundreds of
    levels are refused (the word splitter recurses) instead of crashing."""
    from runkon_flow.dsl import shell_text

    calls = 0
    split = shell_text._Words.split

    def counted(self, i: int, stop: int) -> None:  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        split(self, i, stop)

    monkeypatch.setattr(shell_text._Words, "split", counted)
    text = "sh -c {{v}}"
    for _ in range(20):
        text = f'echo "$({text})"'
    (use,) = scan_placeholders(text)
    assert "runs as shell code" in (use.problem or "")
    assert calls <= 2 * 21, calls
    for _ in range(400):
        text = f'echo "$({text})"'
    (use,) = scan_placeholders(text)
    assert "nested too deeply to be checked" in (use.problem or "")


@pytest.mark.parametrize(
    ("form", "option_of"),
    [
        ("rm {{v}}", "rm"),
        ('rm -f "{{v}}"', "rm"),
        ("git checkout '{{v}}'", "git"),
        ('cp "{{v}}.txt" dst', "cp"),
        ("A=1 sudo rm {{v}}", "rm"),
        ("timeout {{v}} make", "timeout"),
        ("env printf '%s' {{v}}", None),
        ('x="$(cat {{v}})"', "cat"),
        ("printf {{v}}", "printf"),
        ("rm -- {{v}}", None),
        ("git commit -m{{v}}", None),
        ("git commit --message={{v}}", None),
        ("printf '%s' {{v}}", None),
        ("{{v}} --help", None),
        ("cat > {{v}}", None),
        ('[ "{{v}}" = x ]', None),
        ("for f in {{v}}; do :; done", None),
        ("cat <<EOF\n{{v}}\nEOF", None),
        ("echo x{{v}}", None),
    ],
)
def test_a_placeholder_starting_an_argument_is_where_a_value_could_be_an_option(
    form: str, option_of: str | None
) -> None:
    (use,) = scan_placeholders(form)
    assert use.option_of == option_of


def test_only_a_value_its_command_reads_as_an_option_counts() -> None:
    from runkon_flow.dsl.shell_text import reads_as_option

    assert reads_as_option("rm", "-rf") and reads_as_option("git", "--orphan=x")
    assert not reads_as_option("rm", "-") and not reads_as_option("rm", "a-b")
    assert reads_as_option("echo", "-n") and not reads_as_option("echo", "- fix the bug")


def test_a_negative_number_is_data_except_to_the_commands_that_take_numbers_as_whom_to_act_on() -> None:
    """`./shift.sh {{n}}` with -3, `seq {{from}} 3` with -2: an offset, a delta — failing the step
    over it stopped workflows that handle numbers; `kill {{pid}}` with -1 signals every process."""
    from runkon_flow.dsl.shell_text import reads_as_option

    for number in ("-3", "-0.25", "-.5", "-1e6", "-12.", "-2E-3"):
        assert not reads_as_option("seq", number) and not reads_as_option("shift.sh", number), number
        assert reads_as_option("kill", number) and reads_as_option("pkill", number), number
    for not_a_number in ("-1x", "-e", "--1", "-1-2", "-1e", "-."):
        assert reads_as_option("seq", not_a_number), not_a_number
