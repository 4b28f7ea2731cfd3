"""Failure clusters (`observe.clusters`): what is masked, how items group, in which order."""

from __future__ import annotations

import pytest
from runkon_flow.observe.clusters import NO_ERROR, clusters_of, error_signature
from runkon_flow.observe.records import FanOutView


@pytest.mark.parametrize(
    ("error", "signature"),
    [
        ("rate limited: retry after 12s (request 0x1f3a)", "rate limited: retry after <n>s (request <id>)"),
        ("bad row in /srv/data/batch-7/x.json", "bad row in <path>"),
        ("cannot open src/app/main.py", "cannot open <path>"),
        ("timeout at 2026-12-03T13:40:00Z after 30.5 s", "timeout at <time> after <n> s"),
        ("lock held since 09:41:07", "lock held since <time>"),
        ("run 01J9ZB1X8K6Y4W2V3T5S7R9Q0P failed", "run <id> failed"),
        ("job 550e8400-e29b-41d4-a716-446655440000 lost", "job <id> lost"),
        ("commit 3f9a2c1b7 missing", "commit <id> missing"),
        ("GET https://api.example.test/v1/items?page=3 → 503", "GET <url> → <n>"),
        ("repo-42: not found", "<item>: not found"),
        ("  two\n\n   lines  here ", "two\nlines here"),
        ("", NO_ERROR),
        (None, NO_ERROR),
    ],
)
def test_what_varies_between_items_is_masked(error: str | None, signature: str) -> None:
    assert error_signature(error, "repo-42") == signature


@pytest.mark.parametrize(
    ("error", "signature"),
    [
        ("/tmp/x/wf/lint-repo.wf:21:23: expected a step", "<path>:<n>:<n>: expected a step"),
        ("lint-repo.wf:21:23: expected a step", "lint-repo.wf:<n>:<n>: expected a step"),
        ("src/app/main.py:12: invalid syntax", "<path>:<n>: invalid syntax"),
        ("file:12:34: bad token", "file:<n>:<n>: bad token"),
        ("connection reset by 10.0.15.7:44", "connection reset by <n>:<n>"),
        ("retry at 09:41 (lock held since 9:05:30)", "retry at <time> (lock held since <time>)"),
    ],
)
def test_a_file_position_is_not_read_as_a_time(error: str, signature: str) -> None:
    """`file:21:23` is line and column: masked as numbers, it still reads as a position."""
    assert error_signature(error) == signature


def test_parse_errors_at_different_positions_of_the_child_file_form_one_cluster() -> None:
    """The report: a fan-out item whose child workflow failed to load was labelled
    `1 × <path>:<time>: expected a step (call, …`."""
    fan = fan_with(
        [
            ("lib-core", "failed", "/tmp/a/wf/lint-repo.wf:21:23: expected a step (call, if, unless)", None),
            ("lib-io", "failed", "/tmp/b/wf/lint-repo.wf:9:5: expected a step (call, if, unless)", None),
        ]
    )
    [cluster] = clusters_of(fan)
    assert cluster.describe() == "2 × <path>:<n>:<n>: expected a step (call, if, unless)"
    assert "<time>" not in cluster.label


def test_words_are_kept_so_different_failures_stay_apart() -> None:
    expected_int, expected_str = "schema mismatch: expected int", "schema mismatch: expected str"
    assert error_signature(expected_int) != error_signature(expected_str)
    assert error_signature("deadbeef facade") == "deadbeef facade"  # hex-looking words without digits


def fan_with(results: list[tuple[str, str, str | None, str | None]]) -> FanOutView:
    """(item id, status, run error, cause) per item."""
    fan = FanOutView("body.0", "run", "each", "body.0", "step")
    for item_id, status, error, cause in results:
        idx = fan.finish(item_id, status, 1.0, error)
        if cause:
            fan.causes[idx] = cause
    return fan


def test_failed_and_cancelled_items_group_by_cause_biggest_group_first() -> None:
    step_failed = "workflow error: Step 'work' failed after 1 attempts"
    fan = fan_with(
        [
            ("a", "completed", None, None),
            ("b", "failed", step_failed, "schema mismatch at line 4"),
            ("c", "failed", step_failed, "rate limited after 10 requests"),
            ("d", "failed", step_failed, "rate limited after 11 requests"),
            ("e", "cancelled", "cancelled: by user", None),
            ("f", "failed", step_failed, "rate limited after 9 requests"),
            ("g", "skipped", None, None),
            ("h", "failed", None, None),
        ]
    )
    clusters = clusters_of(fan)
    assert [(c.describe(), c.item_ids) for c in clusters] == [
        ("3 × rate limited after <n> requests", ("c", "d", "f")),
        ("1 × schema mismatch at line <n>", ("b",)),
        ("1 × cancelled: by user", ("e",)),
        (f"1 × {NO_ERROR}", ("h",)),
    ]
    assert clusters[0].example == "rate limited after 10 requests"  # the first item's own words
    assert clusters[0].indices == (2, 3, 5)


def test_the_run_error_is_used_when_no_step_cause_is_known() -> None:
    fan = fan_with([("a", "failed", "boom 1", None), ("b", "failed", "boom 2", None)])
    [cluster] = clusters_of(fan)
    assert (cluster.signature, cluster.count) == ("boom <n>", 2)


def test_items_text_shortens_long_lists() -> None:
    fan = fan_with([(f"i{n}", "failed", "x", None) for n in range(8)])
    assert clusters_of(fan)[0].items_text() == "i0, i1, i2, i3, i4, … (3 more)"


def test_the_start_every_cluster_shares_is_set_apart_so_a_narrow_list_shows_what_differs() -> None:
    from runkon_flow.observe.clusters import distinct_labels

    exited = "Script 'import' exited with code 3"
    fan = fan_with(
        [
            ("r05", "failed", None, f"{exited}\nrate limited: retry after 12s"),
            ("r10", "failed", None, f"{exited}\nschema mismatch in a/b.json: expected int"),
            ("r15", "failed", None, f"{exited}\nconnection reset by 10.0.15.7:443"),
            ("r20", "failed", None, f"{exited}\nrate limited: retry after 27s"),
        ]
    )
    common, labels = distinct_labels(clusters_of(fan))
    assert common == "Script 'import' exited with code <n>"
    assert labels == [
        "rate limited: retry after <n>s",
        "schema mismatch in <path>: expected int",
        "connection reset by <n>:<n>",
    ]


@pytest.mark.parametrize(
    "causes",
    [
        ["Script 'a' exited with code 3\nboom"],  # one cluster: nothing is shared, all of it shows
        ["Script 'a' exited with code 3\nboom", "Script 'a' exited with code 3"],  # one would be empty
        ["disk full", "rate limited"],  # nothing in common
    ],
)
def test_nothing_is_set_apart_when_it_would_leave_a_cluster_without_words(causes: list[str]) -> None:
    from runkon_flow.observe.clusters import distinct_labels

    clusters = clusters_of(fan_with([(f"i{n}", "failed", None, c) for n, c in enumerate(causes)]))
    common, labels = distinct_labels(clusters)
    assert common == "" and labels == [c.label for c in clusters]


def test_an_error_that_does_not_name_its_item_builds_no_pattern_for_the_item(monkeypatch) -> None:
    """Masking an item's id takes a pattern built for that id: built for each of 5,000 failed
    items whose errors never named them, it was most of `show`'s time. Only a text that names its
    item is searched for it (the signature is the same)."""
    import runkon_flow.observe.clusters as clusters

    built: list[str] = []
    real = clusters.re.sub

    def sub(pattern, *args, **kwargs):
        built.append(pattern)
        return real(pattern, *args, **kwargs)

    monkeypatch.setattr(clusters.re, "sub", sub)
    error_signature.cache_clear()
    signature = error_signature("Script 'lint' exited with code 3", "rec-04217")
    assert signature == "Script 'lint' exited with code <n>"
    assert built == []
    assert error_signature("rec-04218: not found", "rec-04218") == "<item>: not found"
    assert len(built) == 1
