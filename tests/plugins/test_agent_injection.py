"""Agent commands: no value in argv, env or stdin ever runs, whatever the author's quoting (issue 16).

Arguments go to the program as data; when the program is a shell (`sh -c <script>`), placeholders in
the script are referenced like a script step's `run`, so the quoting around them cannot be escaped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from runkon_flow.errors import WorkflowError

from tests.engine.test_injection import FORMS, HOSTILE
from tests.plugins.test_agents import agent, executor, run


def command_agent(root: Path, command: list[str], body: str = "Task.", env: str = "") -> None:
    agent(root, "cmd", f"runtime: command\ncommand: {json.dumps(command)}\n{env}", body=body)


@pytest.mark.parametrize("form", FORMS)
def test_shell_script_argument(tmp_path: Path, form: str) -> None:
    out = tmp_path / "out"
    shell, expected = FORMS[form]
    command_agent(tmp_path, ["sh", "-c", shell.replace("P", "{{v}}") + f" > {out}; echo done"])
    ex = executor(tmp_path, "cmd")
    for value in HOSTILE:
        run(ex, tmp_path, {"v": value})
        assert not (tmp_path / "PWNED").exists(), (form, value)
        assert out.read_text() == expected(value), (form, value)


def test_plain_arguments_and_env_and_stdin_are_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = f'printf "%s|%s|" "$1" "$LEVEL" > {out}; cat >> {out}'
    command_agent(
        tmp_path,
        ["sh", "-c", script, "sh", "'{{v}}'"],
        body="{{v}}",
        env='env: { LEVEL: "\\"{{v}}\\"" }\n',
    )
    ex = executor(tmp_path, "cmd")
    for value in HOSTILE:
        run(ex, tmp_path, {"v": value})
        assert not (tmp_path / "PWNED").exists(), value
        argument, level, stdin = out.read_text().split("|", 2)
        assert (argument, level) == (f"'{value}'", f'"{value}"')
        assert stdin.startswith(value + "\n\n"), value


def test_a_nul_byte_in_a_value_is_a_clear_error(tmp_path: Path) -> None:
    command_agent(tmp_path, ["sh", "-c", "echo {{v}}"])
    with pytest.raises(WorkflowError, match=r"agent 'cmd': the value of \{\{v\}\} contains a NUL byte"):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "a\0b"})


@pytest.mark.parametrize(
    "prefix",
    [
        ["bash", "-o", "pipefail", "-c"],
        ["bash", "--norc", "--noprofile", "-c"],
        ["env", "LC_ALL=C", "sh", "-c"],
        ["/usr/bin/env", "sh", "-euc"],
        ["timeout", "30", "sh", "-c"],
    ],
)
def test_a_shell_behind_options_or_a_wrapper_gets_references_too(tmp_path: Path, prefix: list[str]) -> None:
    out = tmp_path / "out"
    command_agent(tmp_path, [*prefix, f"printf %s {{{{v}}}} > {out}; echo done"])
    ex = executor(tmp_path, "cmd")
    for value in HOSTILE:
        run(ex, tmp_path, {"v": value})
        assert not (tmp_path / "PWNED").exists(), (prefix, value)
        assert out.read_text() == value, (prefix, value)


def test_a_nested_shell_in_the_script_is_refused(tmp_path: Path) -> None:
    command_agent(tmp_path, ["sh", "-c", "sh -c 'echo {{v}}'"])
    with pytest.raises(WorkflowError, match="would run as code"):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "x; touch PWNED"})
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("program", ["{{python}}", "python3"])
def test_a_placeholder_in_an_interpreters_program_is_refused_and_arguments_stay_data(
    tmp_path: Path, program: str
) -> None:
    """`["python3", "-c", "print('{{v}}')"]` spliced the value into Python code."""
    command_agent(tmp_path, [program, "-c", "open('out', 'w').write('{{v}}')"])
    with pytest.raises(
        WorkflowError, match=r"`\{\{v\}\}` is in the program `python\S* -c` runs in its `command`"
    ):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "'); open('PWNED', 'w'); ('"})
    assert not (tmp_path / "PWNED").exists()
    command_agent(tmp_path, [program, "-c", "import sys; open('out', 'w').write(sys.argv[1])", "{{v}}"])
    run(executor(tmp_path, "cmd"), tmp_path, {"v": "'); open('PWNED', 'w'); ('"})
    assert (tmp_path / "out").read_text() == "'); open('PWNED', 'w'); ('"
    assert not (tmp_path / "PWNED").exists()


def test_a_placeholder_in_an_awk_program_or_a_remote_command_is_refused(tmp_path: Path) -> None:
    """`["awk", "BEGIN{print \"{{v}}\"}"]` spliced the value into awk's program (awk has system())."""
    command_agent(tmp_path, ["awk", 'BEGIN{print "{{v}}" > "out"}'])
    with pytest.raises(WorkflowError, match=r"`\{\{v\}\}` is in the program `awk` runs in its `command`"):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": 'x"; system("touch PWNED"); print "'})
    assert not (tmp_path / "PWNED").exists()
    command_agent(tmp_path, ["ssh", "-p", "2222", "host", "git", "checkout", "{{v}}"])
    with pytest.raises(
        WorkflowError, match=r"`\{\{v\}\}` is in the command `ssh` has the remote shell run in its `command`"
    ):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "x; touch PWNED"})
    command_agent(tmp_path, ["awk", '{printf "%s", $0 > "out"}', "{{v}}"])  # a file operand: data
    (tmp_path / "in put").write_text("data")
    run(executor(tmp_path, "cmd"), tmp_path, {"v": "in put"})
    assert (tmp_path / "out").read_text() == "data"


def test_a_value_too_big_for_a_process_is_named(tmp_path: Path) -> None:
    """It said `failed to start 'sh': [Errno 7] Argument list too long: 'sh'`."""
    if sys.platform != "linux":
        pytest.skip("Linux's per-string limit (MAX_ARG_STRLEN)")
    command_agent(tmp_path, ["sh", "-c", "printf %s {{v}} | wc -c"])
    with pytest.raises(WorkflowError) as raised:
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "a" * 300_000})
    assert (
        str(raised.value)
        .removeprefix("workflow error: ")
        .startswith(
            "agent 'cmd' could not start: the value of {{v}} in its shell command is "
            "300,000 bytes, more than a command can receive"
        )
    ), raised.value
    command_agent(tmp_path, ["printf", "%s", "x{{v}}"])
    with pytest.raises(
        WorkflowError, match=r"the value of \{\{v\}\} in its command's argument 2 is 300,001 bytes"
    ):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "a" * 300_000})
    command_agent(tmp_path, ["true"], env='env:\n  BIG: "<{{v}}>"\n')
    with pytest.raises(
        WorkflowError,
        match=r"agent 'cmd' could not start: the value of \{\{v\}\} in its `env` 'BIG' is 300,002 bytes, "
        r"more than a command can receive",
    ):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "a" * 300_000})


def test_a_value_the_program_would_read_as_an_option_is_refused_unless_after_dashdash(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command_agent(tmp_path, ["cp", "{{v}}", str(out)])
    with pytest.raises(
        WorkflowError, match=r"the value of \{\{v\}\} in its command's argument 1 begins with '-'"
    ):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "--help"})
    (tmp_path / "--help").write_text("copied")
    command_agent(tmp_path, ["cp", "--", "{{v}}", str(out)])
    run(executor(tmp_path, "cmd"), tmp_path, {"v": "--help"})
    assert out.read_text() == "copied"
    command_agent(tmp_path, ["sh", "-c", "rm {{v}}"])
    with pytest.raises(WorkflowError, match=r"in its shell command, the value of \{\{v\}\} begins with '-'"):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "-rf"})


def test_an_argument_opening_with_an_unterminated_placeholder_is_plain_text(tmp_path: Path) -> None:
    # `{{v` has no `}}`: no placeholder, so no option check (it raised IndexError) and passed as is.
    out = tmp_path / "out"
    command_agent(tmp_path, ["sh", "-c", 'printf %s "$1" > "$0"', str(out), "{{v"])
    run(executor(tmp_path, "cmd"), tmp_path, {"v": "-rf"})
    assert out.read_text() == "{{v"


@pytest.mark.parametrize(
    "command",
    [
        ["script", "-qc", "echo {{v}}", "/dev/null"],
        ["su", "-", "deploy", "-c", "echo {{v}}"],
        ["su", "root", "--", "-c", "echo {{v}}"],  # (as root, su runs it: the value ran, before)
        ["docker", "run", "--entrypoint", "sh", "img", "-c", "echo {{v}}"],
        ["docker", "exec", "web", "sh", "-c", "echo {{v}}"],
        ["kubectl", "exec", "web-0", "--", "sh", "-c", "echo {{v}}"],
        ["sh", "-c", "printf '%s\\n' {{v}} | sh"],
    ],
)
def test_a_command_line_handed_to_a_shell_elsewhere_is_refused(tmp_path: Path, command: list[str]) -> None:
    """`script -c`, `su -c`, a shell in a container: the value would be parsed as shell code there
    (a container does not see the agent's environment, so no reference can stand in for it)."""
    command_agent(tmp_path, command)
    with pytest.raises(WorkflowError, match="would run as code"):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "x; touch PWNED"})
    assert not (tmp_path / "PWNED").exists()


def test_a_value_as_a_plain_argument_of_docker_exec_is_data(tmp_path: Path) -> None:
    docker = tmp_path / "docker"  # stands in for docker: writes the argument it would run `ls` on
    docker.write_text('#!/bin/sh\nprintf %s "$4" > out\n')
    docker.chmod(0o755)
    command_agent(tmp_path, [str(docker), "exec", "web", "ls", "{{v}}"])
    run(executor(tmp_path, "cmd"), tmp_path, {"v": "x; touch PWNED"})
    assert (tmp_path / "out").read_text() == "x; touch PWNED"
    assert not (tmp_path / "PWNED").exists()


AGENT_ENV = 'declare it in the agent\'s `env` (env: { VALUE: "{{v}}" })'


@pytest.mark.parametrize(
    ("command", "said"),
    [
        # the container, the pod, the remote host do not see the agent's environment
        (["docker", "exec", "web", "sh", "-c", "echo {{v}}"], [AGENT_ENV, "(docker exec -e VALUE …)"]),
        (
            ["kubectl", "exec", "web-0", "--", "sh", "-c", "echo {{v}}"],
            ['make its command a shell script (command: [sh, -c, "…"])', "| kubectl exec -i POD -- sh -c"],
        ),
        (["ssh", "host", "git", "checkout", "{{v}}"], ["| ssh HOST 'IFS= read -r VALUE"]),
        (["su", "-", "deploy", "-c", "echo {{v}}"], [AGENT_ENV, "keeps it with `-w VALUE`"]),
        (["python3", "-c", "print('{{v}}')"], [AGENT_ENV, "read the environment variable VALUE"]),
        # in an agent's shell script: the same hints, worded for the agent file
        (
            ["sh", "-c", "docker exec web sh -c 'echo {{v}}'"],
            ["in its shell script", AGENT_ENV, '(docker exec -e VALUE="$VALUE" …)'],
        ),
        (
            ["sh", "-c", "kubectl exec web-0 -- sh -c 'echo {{v}}'"],
            ["in its shell script", "| kubectl exec -i POD"],
        ),
        (
            ["sh", "-c", "echo ${x:-{{v}}}"],
            ["in its shell script", f'{AGENT_ENV} and write "$VALUE" in the script'],
        ),
    ],
)
def test_a_refused_placeholder_gets_a_hint_worded_for_the_agent_file(
    tmp_path: Path, command: list[str], said: list[str]
) -> None:
    """An agent declares `env` in its front matter (a YAML mapping), not as a step's `env = {…}`, and
    has no `run`; a container or a remote host does not see the agent's environment."""
    command_agent(tmp_path, command)
    with pytest.raises(WorkflowError) as refused:
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "x; touch PWNED"})
    message = str(refused.value)
    for words in said:
        assert words in message, (words, message)
    assert "`run`" not in message and "env = {" not in message and "agent's `env` and read" not in message
    assert not (tmp_path / "PWNED").exists()


def test_an_option_value_in_an_agents_shell_script_is_worded_for_the_agent_file(tmp_path: Path) -> None:
    command_agent(tmp_path, ["sh", "-c", "ls {{v}}"])
    with pytest.raises(
        WorkflowError, match=r"declare it in the agent's `env` \(env: \{ OPTS: \"\{\{v\}\}\" \}\)"
    ):
        run(executor(tmp_path, "cmd"), tmp_path, {"v": "-la"})
