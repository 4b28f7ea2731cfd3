"""The stored event stream: every run a Workspace executes keeps its events in the store, so
another process can watch it live and a past run still has its logs (runkon_flow.event_log)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from runkon_flow.event_log import (
    PACK_CHARS,
    PACK_EVENTS,
    PACKED,
    READ_ROWS,
    ZIP_EVENTS,
    ZIPPED,
    StoredEventWriter,
    each_envelope,
    pack,
    read_envelopes,
    stored_output_lines,
    unpack,
)
from runkon_flow.events import CollectingSink, EngineEventData, StepOutput
from runkon_flow.persistence.models import NewEvent, NewRun, StoredEvent

from tests.persistence.conftest import STORE_KINDS, close_store, make_store

SAMPLES = Path(__file__).resolve().parents[2] / "sample_workflows"


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNKON_SAMPLE_SPEED", "0")


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    s = make_store(request.param, tmp_path)
    yield s
    close_store(s)


def workspace(root: Path, store, **kwargs):
    from runkon_flow.workspace import Workspace

    return Workspace([root], store, **kwargs)


def stored(store, run_id: str) -> list[EngineEventData]:
    return read_envelopes(store, run_id)[0]


def _dumped(envelope: EngineEventData) -> str:
    return envelope.model_dump_json()


def _streams(envelopes: list[EngineEventData]) -> dict[tuple[str, str | None], list[str]]:
    """Events by (run, fan-out item): each such stream comes from one thread, in order."""
    streams: dict[tuple[str, str | None], list[str]] = {}
    for e in envelopes:
        streams.setdefault((e.run_id, getattr(e.event, "item_id", None)), []).append(_dumped(e))
    return streams


def test_a_fan_out_runs_stored_events_are_exactly_the_events_shown_live(store, tmp_path: Path) -> None:
    home = tmp_path / "wf"
    shutil.copytree(SAMPLES, home)
    live = CollectingSink()
    ws = workspace(home, store)
    run_id = ws.create_run("fan-out-lint", {})
    result = ws.execute(run_id, sinks=[live])
    assert result.status == "completed"
    kept = stored(store, run_id)
    # Every event shown live is stored, once. Events that worker threads emit at the same time
    # may reach the two sinks interleaved differently, so order is compared where it is defined:
    # within each run, and within each fan-out item's events of the parent run.
    assert sorted(map(_dumped, kept)) == sorted(map(_dumped, live.events))
    assert _streams(kept) == _streams(live.events)
    children = {e.run_id for e in kept} - {run_id}
    assert len(children) == 60  # every child run's events are in the top-level run's stream
    rows = store.read_events(run_id)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    # Batches are stored packed: a fan-out of 60 items writes a handful of rows, not 1,000.
    assert sum(len(unpack(r)) for r in rows) == len(kept) and len(rows) < len(kept) / 20


def test_a_resumed_run_appends_to_the_same_stream(store, tmp_path: Path) -> None:
    home = tmp_path / "wf"
    home.mkdir()
    (home / "flaky.wf").write_text(
        'workflow flaky {\n  script first { run = "echo one" }\n'
        '  script second { run = "test -f ok || exit 4" }\n}\n'
    )
    ws = workspace(home, store, working_dir=home)
    run_id = ws.create_run("flaky", {})
    assert ws.execute(run_id).status == "failed"
    first = stored(store, run_id)
    (home / "ok").write_text("")
    assert ws.resume(run_id).status == "completed"
    both = stored(store, run_id)
    assert both[: len(first)] == first
    types = [e.event.type for e in both if e.run_id == run_id]
    assert types.count("RunCompleted") == 2 and "RunResumed" in types


def test_step_output_is_stored_up_to_the_limit_and_what_was_cut_is_said(store, tmp_path: Path) -> None:
    home = tmp_path / "wf"
    home.mkdir()
    (home / "chatty.wf").write_text(
        'workflow chatty {\n  script talk { run = "for i in $(seq 1 25); do echo line $i; done; '
        "printf '%0.sx' $(seq 1 5000); echo\" }\n}\n"
    )
    ws = workspace(home, store, stored_output_lines=10)
    run_id = ws.create_run("chatty", {})
    ws.execute(run_id)
    events = [e.event for e in stored(store, run_id)]
    lines = [e.line for e in events if isinstance(e, StepOutput)]
    assert lines == [f"line {i}" for i in range(1, 11)]
    notes = [e.message for e in events if e.type == "EngineLog"]
    assert "output of step 'talk': 16 more lines not stored" in notes[-1]
    assert "at most 10 lines are kept per step; RUNKON_STORED_OUTPUT_LINES" in notes[-1]
    kinds = [e.type for e in events]
    assert kinds.index("EngineLog") == kinds.index("StepCompleted") - 1  # said where the step ends


def test_an_overlong_line_is_stored_cut_with_a_note_of_how_much(store) -> None:
    run_id = store.create_run(NewRun(workflow_name="w")).id
    writer = StoredEventWriter(store, run_id, max_line_chars=10)
    writer.emit(EngineEventData.now(run_id, StepOutput(step_id="s", step_name="s", line="x" * 25)))
    writer.close()
    [event] = stored(store, run_id)
    assert event.event.line == "x" * 10 + " … [15 more characters not stored]"


def test_storage_off_stores_nothing(store, tmp_path: Path) -> None:
    home = tmp_path / "wf"
    home.mkdir()
    (home / "one.wf").write_text('workflow one {\n  script hi { run = "echo hi" }\n}\n')
    ws = workspace(home, store, store_events=False)
    run_id = ws.create_run("one", {})
    ws.execute(run_id)
    assert store.read_events(run_id) == []


def test_a_store_failure_never_breaks_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store("memory", tmp_path)
    writer = StoredEventWriter(store, "no-such-run")
    writer.emit(EngineEventData.now("no-such-run", StepOutput(step_id="s", step_name="s", line="x")))
    writer.close()
    assert "1 events could not be stored" in caplog.text


def test_the_stored_output_limit_comes_from_the_environment() -> None:
    assert stored_output_lines({}) == 2000
    assert stored_output_lines({"RUNKON_STORED_OUTPUT_LINES": "50"}) == 50
    with pytest.raises(ValueError, match="RUNKON_STORED_OUTPUT_LINES='lots' is not a whole number"):
        stored_output_lines({"RUNKON_STORED_OUTPUT_LINES": "lots"})


def test_a_batch_is_stored_packed_and_reads_back_event_for_event(store) -> None:
    run_id = store.create_run(NewRun(workflow_name="w")).id
    lines = ["plain", "a\ttab and a\nnewline", "ünïcødé ✓", '{"json": "inside"}', "\\ backslash", ""]
    sent = [
        EngineEventData.now(run_id if n % 2 else "child-1", StepOutput(step_id="s", step_name="s", line=line))
        for n, line in enumerate(lines * 200)
    ]
    writer = StoredEventWriter(store, run_id, interval=60)
    for data in sent:
        writer.emit(data)
    writer.close()
    rows = store.read_events(run_id)
    assert {r.kind for r in rows} == {ZIPPED} and 1 < len(rows) <= 6  # 1,200 events, ≤ 512 a row
    assert [_dumped(e) for e in stored(store, run_id)] == [_dumped(e) for e in sent]


def test_each_envelope_reads_the_whole_stream_page_by_page_as_read_envelopes_does(store) -> None:
    run_id = store.create_run(NewRun(workflow_name="w")).id
    writer = StoredEventWriter(store, run_id, interval=60)
    for n in range(3 * READ_ROWS + 1):
        writer.emit(EngineEventData.now(run_id, StepOutput(step_id="s", step_name="s", line=f"line {n}")))
        writer.flush()  # a row each: more rows than one page holds
    writer.close()
    assert len(store.read_events(run_id)) > 3 * READ_ROWS
    assert [_dumped(e) for e in each_envelope(store, run_id)] == [_dumped(e) for e in stored(store, run_id)]
    assert [e.event.line for e in each_envelope(store, run_id)] == [f"line {n}" for n in range(31)]  # type: ignore[union-attr]


def test_a_packed_row_holds_at_most_its_share_of_events_and_characters() -> None:
    many = [NewEvent(1.0 + n, "r", "EngineLog", "{}") for n in range(PACK_EVENTS * 2 + 1)]
    assert [len(unpack(_stored(row))) for row in pack(many)] == [PACK_EVENTS, PACK_EVENTS, 1]
    big = [NewEvent(1.0, "r", "StepOutput", "x" * (PACK_CHARS // 3)) for _ in range(7)]
    rows = pack(big)
    assert len(rows) == 4 and all(len(r.payload) <= PACK_CHARS for r in rows)
    assert [e.payload for row in rows for e in unpack(_stored(row))] == [e.payload for e in big]
    assert pack(many[:1]) == many[:1]  # a lone event keeps its own row


def test_an_events_time_reads_back_as_the_very_same_float() -> None:
    import math

    times = [1_796_315_374.7108505, 1_796_315_374.0, 0.1 + 0.2, 1e-5, 1e16, 5e-324, math.inf, -math.inf]
    events = [NewEvent(ts, "r", "EngineLog", "{}") for ts in [*times, math.nan]]
    zipped = [e.ts for row in pack(events) for e in unpack(_stored(row))]
    assert zipped[:-1] == times and math.isnan(zipped[-1])
    assert [e.ts for row in pack(events[:2]) for e in unpack(_stored(row))] == times[:2]  # plain text


def test_an_unreadable_packed_line_is_skipped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    row = StoredEvent("r", 7, 1.0, "", PACKED, "1.0\tc\tRunStarted\t{}\ngarbage\n2.0\tc\tRunCompleted\t{}")
    assert [e.kind for e in unpack(row)] == ["RunStarted", "RunCompleted"]
    assert "stored row 7 holds an unreadable event: garbage" in caplog.text


def test_a_large_packed_row_is_stored_compressed_and_a_small_one_as_text() -> None:
    events = [
        NewEvent(1.0 + n / 7, f"child-{n // 7:05d}", "StepStarted", f'{{"step_name":"a","step_id":"s{n}"}}')
        for n in range(PACK_EVENTS)
    ]
    (zipped,) = pack(events)
    text_size = sum(len("\t".join(map(str, e))) + 1 for e in events)
    assert zipped.kind == ZIPPED and zipped.event_run_id == str(PACK_EVENTS)
    assert len(zipped.payload) < text_size / 4  # ids, kinds and field names repeat line after line
    back = [tuple(e[2:]) for e in unpack(_stored(zipped))]
    assert back == [(e.ts, e.event_run_id, e.kind, e.payload) for e in events]
    (small,) = pack(events[: ZIP_EVENTS - 1])
    assert small.kind == PACKED and small.payload.count("\n") == ZIP_EVENTS - 2  # readable as is


def test_a_zipped_row_that_does_not_inflate_is_skipped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    (good,) = pack([NewEvent(1.0, "c", "EngineLog", "{}")] * ZIP_EVENTS)
    damaged = _stored(good._replace(payload=good.payload[:-12] + "AAAAAAAAAAAA"), seq=4)
    assert unpack(damaged) == []
    assert unpack(_stored(good._replace(payload="not base64!"), seq=5)) == []
    assert "stored row 4 cannot be read" in caplog.text and "stored row 5 cannot be read" in caplog.text


def _stored(row: NewEvent, seq: int = 1) -> StoredEvent:
    return StoredEvent("r", seq, *row)


def test_a_stored_success_is_told_from_its_text_whatever_its_error_says() -> None:
    # A follower keeps a fan-out child's successful ends undecoded (`quiet_stored`): a failure
    # whose message quotes a success must still read as a failure.
    from runkon_flow.event_log import _payload
    from runkon_flow.events import StepCompleted
    from runkon_flow.observe.compact import quiet_stored

    failed = StepCompleted(step_name="x", succeeded=False, error='the log said "succeeded":true')
    assert not quiet_stored("StepCompleted", _payload(failed))
    assert quiet_stored("StepCompleted", _payload(StepCompleted(step_name="x", succeeded=True)))
    assert quiet_stored("StepStarted", "{}") and not quiet_stored("FanOutItemCompleted", '{"succeeded":true}')


def test_a_stored_note_is_told_from_a_warning_whatever_its_message_says() -> None:
    # A child's info/debug note stays undecoded with its quiet events; a warning or error unfolds it.
    from runkon_flow.event_log import _payload
    from runkon_flow.events import EngineLog
    from runkon_flow.observe.compact import quiet_stored

    for level in ("debug", "info"):
        note = EngineLog(level=level, message='the tool said "level":"warning"')  # type: ignore[arg-type]
        assert quiet_stored("EngineLog", _payload(note))
    for level in ("warning", "error"):
        assert not quiet_stored("EngineLog", _payload(EngineLog(level=level, message="x")))  # type: ignore[arg-type]


def test_an_envelope_read_back_is_the_envelope_the_engine_emitted_in_every_way() -> None:
    import copy
    import pickle

    from runkon_flow.event_log import _payload, envelope_of
    from runkon_flow.events import StepCompleted

    emitted = EngineEventData(
        timestamp=1_796_315_374,
        ts=1_796_315_374.71,
        run_id="child-1",
        event=StepCompleted(step_name="work", succeeded=True, duration_ms=3, usage={"tokens": 12.0}),
    )
    row = StoredEvent("root", 7, emitted.ts, emitted.run_id, "StepCompleted", _payload(emitted.event))
    read = envelope_of(row)
    assert read == emitted
    assert read.model_dump() == emitted.model_dump() and read.to_json_line() == emitted.to_json_line()
    assert read.model_fields_set == emitted.model_fields_set
    assert pickle.loads(pickle.dumps(read)) == emitted and copy.deepcopy(read) == emitted
    assert read.model_copy(update={"run_id": "other"}).run_id == "other"


def test_once_a_batch_is_refused_later_batches_are_dropped_without_asking_the_store(store) -> None:
    # A run's generation only moves on: after one refused append every later one would be refused
    # too, each a store round trip and a store warning (the writer's own warning is said once).
    run_id = store.create_run(NewRun(workflow_name="w")).id
    assert store.acquire_lease(run_id, "other", 60) == 1
    calls: list[int | None] = []
    refused: list[bool] = []

    class Counting:
        def append_events(self, run: str, events, *, durable: bool = True, generation: int | None = None):
            calls.append(generation)
            return store.append_events(run, events, durable=durable, generation=generation)

    writer = StoredEventWriter(Counting(), run_id, interval=60)  # type: ignore[arg-type]
    writer.lease_taken(run_id, 0, lambda: refused.append(True))  # taken at 0: another holds 1 now
    for line in ("a", "b"):
        writer.emit(EngineEventData.now(run_id, StepOutput(step_id="s", step_name="s", line=line)))
        writer.flush()
    writer.close()
    assert calls == [0] and refused == [True]
    assert store.read_events(run_id) == []
