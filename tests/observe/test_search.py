"""Run-wide search (runkon_flow.observe.search): a search with a `limit` keeps the first hits and
counts the rest — the dashboard's search of a pattern that matches most lines of a big run held
every hit (millions, with a list row each); `grep` streams `source_hits` and keeps none."""

from __future__ import annotations

import json

from runkon_flow.observe.outputs import read_outputs
from runkon_flow.observe.search import compile_pattern, search_run, source_hits
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import NewEvent, NewRun, NewStep, RunStatus, StepUpdate


def _run(store: InMemoryStore) -> str:
    run_id = store.create_run(NewRun(workflow_name="two")).id
    events = []
    for position, (name, lines, error) in enumerate(
        [("a", ["x 1", "y", "x 2", "x 3"], None), ("b", ["x 4", "x 5"], "code 3\nboom x")]
    ):
        step = store.insert_step(NewStep(run_id, name, retry_count=0, position=position))
        if error:
            store.update_step(step, StepUpdate.failed(0, error))
        else:
            store.update_step(step, StepUpdate.completed(0, result_text="done"))
        for line in lines:
            payload = json.dumps({"step_id": step, "step_name": name, "line": line})
            events.append(NewEvent(0.0, run_id, "StepOutput", payload))
    store.append_events(run_id, events)
    store.update_run_status(run_id, RunStatus.FAILED, None, None)
    return run_id


def test_a_search_with_a_limit_keeps_the_first_hits_and_counts_all() -> None:
    store = InMemoryStore()
    run = store.get_run(_run(store))
    assert run is not None
    regex = compile_pattern("x")
    whole = search_run(store, run, regex)
    assert (whole.hit_count, whole.kept, whole.sources_matched, whole.cut) == (6, 6, 2, False)
    # Unlimited, it is what grep prints: each source's hits in order.
    tree = read_outputs(store, run)
    assert [g.hits for g in whole.groups] == [tuple(source_hits(regex, s)) for s in tree.sources]

    cut = search_run(store, run, regex, limit=2)
    assert (cut.hit_count, cut.kept, cut.sources_matched, cut.cut) == (6, 2, 2, True)
    (group,) = cut.groups  # step b's hits are counted, not kept
    assert [(h.number, h.text, h.spans) for h in group.hits] == [(1, "x 1", ((0, 1),)), (3, "x 2", ((0, 1),))]
    assert group.matching == 3  # all of step a's matching lines, though two are listed

    edge = search_run(store, run, regex, limit=4)  # the limit reached inside step b
    assert [(g.source.label, len(g.hits), g.matching) for g in edge.groups] == [("a", 3, 3), ("b", 1, 3)]
    assert edge.hit_count == 6 and edge.cut


def test_a_search_reads_a_big_run_as_it_goes_and_holds_only_the_sources_it_lists(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The dashboard's search read the whole run's output before searching it: a 200 MB run was
    held whole for a list of 2,000 hits. Past `STREAM_ABOVE` no stored line is held; the hits,
    counts and narrowing are the same as a search of the run read whole."""
    from runkon_flow.observe import outputs

    store = InMemoryStore()
    run = store.get_run(_run(store))
    assert run is not None
    regex = compile_pattern("x")
    whole = read_outputs(store, run)
    monkeypatch.setattr(outputs, "STREAM_ABOVE", 4)  # the run's 6 lines are past it
    for within, limit in ((None, None), (None, 2), ("b", None), ("b", 1)):
        streamed = search_run(store, run, regex, within=within, limit=limit)
        read = search_run(store, run, regex, within=within, limit=limit, tree=whole)
        assert streamed.groups  # a hit in every case
        assert all(not g.source.lines and g.source.stored is not None for g in streamed.groups)
        assert [(g.source.label, g.hits, g.matching) for g in streamed.groups] == [
            (g.source.label, g.hits, g.matching) for g in read.groups
        ]
        assert (streamed.searched, streamed.hit_count, streamed.sources_matched, streamed.has_events) == (
            read.searched,
            read.hit_count,
            read.sources_matched,
            read.has_events,
        )
        # A listed hit's step still reads all its lines (the dashboard opens it in the log pane).
        assert [list(g.source.each_line()) for g in streamed.groups] == [
            [line for s in whole.sources if s.label == g.source.label for line in s.lines]
            for g in streamed.groups
        ]


def test_matches_that_touch_are_one_span() -> None:
    """`.` marked each character of a hit as a match of its own: 2,000 hits of 4,000-character
    lines held 8 million spans (a GB) for the dashboard's list, which draws them as one run."""
    store = InMemoryStore()
    run = store.get_run(_run(store))
    assert run is not None
    dot = search_run(store, run, compile_pattern("."), limit=1)
    assert [h.spans for g in dot.groups for h in g.hits] == [((0, 3),)]  # `x 1`
    apart = search_run(store, run, compile_pattern("x|b|o"), within="b")
    assert [(h.text, h.spans) for g in apart.groups for h in g.hits] == [
        ("x 4", ((0, 1),)),
        ("x 5", ((0, 1),)),
        ("code 3", ((1, 2),)),  # the error's lines
        ("boom x", ((0, 3), (5, 6))),  # `b`, `o`, `o`: one span; `x` apart
    ]


def test_a_kept_hit_marks_its_first_matches_only_and_grep_marks_them_all() -> None:
    """`e` over a stored line of 4,000 characters is 2,000 matches apart: 2,000 such hits kept
    for the dashboard's list held about 800 MB of spans (38 MB marking the first 100 of each)."""
    from runkon_flow.observe.search import MARKED_PER_HIT

    store = InMemoryStore()
    run_id = store.create_run(NewRun(workflow_name="long")).id
    step = store.insert_step(NewStep(run_id, "a", retry_count=0, position=0))
    store.update_step(step, StepUpdate.completed(0, result_text="done"))
    line = "e " * 300
    payload = json.dumps({"step_id": step, "step_name": "a", "line": line})
    store.append_events(run_id, [NewEvent(0.0, run_id, "StepOutput", payload)])
    run = store.get_run(run_id)
    assert run is not None
    regex = compile_pattern("e")
    (hit,) = search_run(store, run, regex, limit=10).groups[0].hits
    assert hit.spans == tuple((2 * i, 2 * i + 1) for i in range(MARKED_PER_HIT))
    (source,) = read_outputs(store, run).sources
    (streamed,) = source_hits(regex, source)
    assert len(streamed.spans) == 300  # grep keeps no hit: it marks every match it prints
