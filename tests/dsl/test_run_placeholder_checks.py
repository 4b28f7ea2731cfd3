"""`validate` on placeholders in `run` (issue 16): refuse where no safe insertion exists, warn about
quotes the author need not write, and reject a NUL byte in the file's own text."""

from __future__ import annotations

import pytest
from runkon_flow.dsl import parse_workflow
from runkon_flow.dsl.validation import validate_workflow
from runkon_flow.errors import WfLexError


def report(run: str):  # type: ignore[no-untyped-def]
    text = 'workflow w {\n  call a\n  script s { run = "' + run.replace('"', '\\"') + '" }\n}\n'
    return validate_workflow(parse_workflow(text, "w.wf"))


def test_a_placeholder_with_no_safe_insertion_is_an_error_with_position_and_fix() -> None:
    found = report("echo ${X:-{{v}}}")
    assert not found.ok
    (problem,) = found.errors
    assert (problem.location.file, problem.location.line, problem.location.column) == ("w.wf", 3, 3)
    assert "`{{v}}` is inside a `${…}` expansion" in problem.message
    assert "pass it through `env`" in (problem.hint or "")


def test_a_backslash_before_a_placeholder_is_refused_with_a_fix() -> None:
    (problem,) = report("echo \\\\{{v}}").errors
    assert "follows a backslash" in problem.message and "remove the backslash" in (problem.hint or "")


@pytest.mark.parametrize("run", ["echo '{{v}}'", 'echo "{{v}}"'])
def test_quoted_placeholders_are_a_warning_not_an_error(run: str) -> None:
    found = report(run)
    assert found.ok
    (warning,) = found.warning_problems
    assert "`{{v}}` is quoted in `run`" in warning.message and "quotes are not needed" in warning.message
    assert warning.location.line == 3


def test_unquoted_placeholders_and_quoted_text_around_them_say_nothing() -> None:
    found = report('echo {{v}} "built {{v}} today"')
    assert found.ok and found.warning_problems == []


def test_a_nul_byte_in_the_file_is_rejected_at_its_position() -> None:
    with pytest.raises(WfLexError) as info:
        parse_workflow('workflow w {\n  script s { run = "echo a\0b" }\n}\n', "w.wf")
    assert (info.value.line, info.value.column) == (2, 27)
    assert "NUL byte" in info.value.message


@pytest.mark.parametrize(
    ("run", "says"),
    [
        ("printf '%s\\\\n' {{v}} | sh", "is in what `sh` reads from a pipe as its program"),
        ("docker exec web sh -c 'rm {{v}}'", "is in text that `docker exec … sh -c` runs as shell code"),
        ("su - deploy -c 'rm {{v}}'", "is in text that `su -c` runs as shell code"),
    ],
)
def test_a_value_a_shell_elsewhere_would_parse_is_an_error_at_its_step_and_position(
    run: str, says: str
) -> None:
    (problem,) = report(run).errors
    assert (problem.location.file, problem.location.line, problem.location.column) == ("w.wf", 3, 3)
    assert problem.message.startswith(f"Script step 's': `{{{{v}}}}` {says}"), problem.message
    assert "where its value would run as code" in problem.message
