"""What clients print for a cancel (the engine keeps upstream's error text, people read plain words)
and for a duration."""

from __future__ import annotations

import pytest
from runkon_flow.cancellation import CancellationReason, EngineCancelled
from runkon_flow.humanize import (
    cause_first,
    did_you_mean,
    fit_cause,
    fit_headline,
    format_duration,
    readable_error,
)


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        (CancellationReason.user("interrupted (Ctrl-C)"), "cancelled: interrupted (Ctrl-C)"),
        (CancellationReason.user(), "cancelled: by the user"),
        (CancellationReason.user('say "hi" \\ there'), 'cancelled: say "hi" \\ there'),
        (CancellationReason.of("Timeout"), "cancelled: timed out"),
        (CancellationReason.of("LeaseLost"), "cancelled: another engine took the run over (lease lost)"),
    ],
)
def test_an_engine_cancel_text_reads_as_plain_words(reason: CancellationReason, shown: str) -> None:
    text = str(EngineCancelled(reason))
    assert text.startswith("workflow cancelled: ")  # the engine's own text stays as specified
    assert readable_error(text) == shown
    assert shown == f"cancelled: {reason.describe()}"


def test_a_cancel_inside_a_longer_error_is_rewritten_in_place() -> None:
    text = "Sub-workflow 'x' failed: workflow cancelled: ParentCancelled"
    assert readable_error(text) == "Sub-workflow 'x' failed: cancelled: its parent run was cancelled"


def test_other_errors_are_left_alone() -> None:
    assert readable_error("Script 'a' exited with code 3") == "Script 'a' exited with code 3"
    assert readable_error(None) == ""


def test_durations_are_short() -> None:
    assert [format_duration(s) for s in (0.04, 9.94, 42, 245, 7380)] == [
        "0.0s",
        "9.9s",
        "42s",
        "4m05s",
        "2h03m",
    ]


def test_a_workflow_error_is_shown_without_the_engine_s_prefix() -> None:
    # humanize and errors are sibling layers: the prefix is spelled in both, and this keeps them equal.
    from runkon_flow.errors import WorkflowError

    assert (
        readable_error(str(WorkflowError("Step 'x' failed after 1 attempts")))
        == "Step 'x' failed after 1 attempts"
    )


_SCRIPT_ERROR = "Script 'import' exited with code 3\nstderr:\nrate limited: retry after 30s (request 7f3a)"


def test_a_headline_that_fits_is_the_first_and_last_line() -> None:
    whole = "Script 'import' exited with code 3 · rate limited: retry after 30s (request 7f3a)"
    assert fit_headline(_SCRIPT_ERROR, len(whole)) == whole


def test_a_headline_too_long_cuts_the_first_line_and_keeps_why() -> None:
    fitted = fit_headline(_SCRIPT_ERROR, 70)
    assert fitted == "Script 'import' exited… · rate limited: retry after 30s (request 7f3a)"
    assert len(fitted) == 70


def test_a_one_line_why_too_long_cuts_before_its_last_part_which_says_why() -> None:
    """A failure chain (`import-repos: Script 'import' exited with code 3 · rate limited …`) cut at
    its end kept which script exited and lost why (the runs list, the dashboard's runs screen)."""
    why = "import-repos: Script 'import' exited with code 3 · rate limited: retry after 30s"
    assert fit_cause(why, len(why)) == why
    assert fit_cause(why, 60) == "import-repos: Script 'impor… · rate limited: retry after 30s"
    assert fit_cause(why, 40) == "rate limited: retry after 30s"  # no room beside it: the cause alone
    assert fit_cause(why, 20) == "rate limited: retry…"
    assert fit_cause("one line only that is long", 10) == "one line …"
    assert fit_cause(None, 10) == ""


def test_with_no_room_beside_it_the_last_line_is_shown_alone() -> None:
    assert fit_headline(_SCRIPT_ERROR, 32) == "rate limited: retry after 30s (…"
    assert fit_headline("one line only that is long", 10) == "one line …"
    assert fit_headline(None, 10) == ""


def test_cause_first_puts_the_last_line_before_the_first() -> None:
    assert (
        cause_first(_SCRIPT_ERROR)
        == "rate limited: retry after 30s (request 7f3a) · Script 'import' exited with code 3"
    )
    assert cause_first("one line") == "one line"
    assert cause_first(None) == ""


def test_did_you_mean_prefers_the_choice_a_number_without_leading_zeros_means() -> None:
    """`rec-5` scores the same against `rec-05`, `rec-15`, `rec-25` and `rec-35`; the last the
    scorer saw (`rec-35`) was named. Leading zeros aside, `rec-5` is `rec-05`."""
    recs = ["rec-05", "rec-15", "rec-25", "rec-35"]
    assert did_you_mean("rec-5", recs) == "did you mean `rec-05`?"
    assert did_you_mean("step-007", ["step-70", "step-7", "step-17"]) == "did you mean `step-7`?"
    assert did_you_mean("rec-05", recs) == "did you mean `rec-05`?"  # itself, as before


def test_did_you_mean_never_picks_among_equally_close_choices() -> None:
    """Equally close choices are named together (up to three, in the order given), never one of
    them at random; more than three is no hint. A single closest one is named as before."""
    assert did_you_mean("rec-9", ["rec-19", "rec-29"]) == "did you mean `rec-19` or `rec-29`?"
    assert did_you_mean("rec-9", ["rec-19", "rec-29", "rec-39"]) == (
        "did you mean `rec-19`, `rec-29` or `rec-39`?"
    )
    assert did_you_mean("rec-9", ["rec-19", "rec-29", "rec-39", "rec-49"]) is None
    assert did_you_mean("reveiw", ["review", "deploy"]) == "did you mean `review`?"
    assert did_you_mean("zzz", ["review", "deploy"]) is None
