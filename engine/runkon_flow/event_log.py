"""The stored event stream: a run's engine events kept in the store, so any process can watch it.

`StoredEventWriter` is an `EventSink` a host adds to a top-level run (the `Workspace` does, for the
CLI and the dashboard alike). The engine's threads only append each event to a list; the writer's
own thread turns them into rows and appends them to the store in batches (`append_events`, one
write per batch, every `interval` seconds and at once when the run ends), so a slow disk never
slows a run. Every event of the run's tree — child runs included, each under its own
`event_run_id` — goes into the top-level run's stream, numbered 1, 2, 3 … by the store.

Output lines are bounded per step: at most `max_output_lines` `StepOutput` events per step are
stored, each line at most `max_line_chars` characters; when a step ends, one stored `EngineLog`
says how many lines (and characters) of it were not stored, so a reader knows what was cut.

A batch is stored packed: one row holds up to `PACK_EVENTS` events, one per line (`ts`,
`event_run_id`, `kind`, payload, tab-separated), so a 10,000-item fan-out writes a few hundred
rows, not 70,000 (docs/persistence.md "Event log"). A row of `ZIP_EVENTS` events or more is stored
compressed (kind `events.z`, about a seventh of the bytes), a smaller one as text (kind `events`).
`unpack` gives a row's events.

`read_envelopes` turns stored rows back into the `EngineEventData` envelopes the engine emitted
(same run id, time and event), so whatever consumes live events — the CLI's printers, a run
model's reducer — consumes stored ones unchanged.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json as _json_of

from runkon_flow.events import (
    EVENT_CLASSES,
    OUTPUT_CUT_NOTE,
    EngineEvent,
    EngineEventData,
    EngineLog,
    RunCancelled,
    RunCompleted,
    StepCompleted,
    StepOutput,
)
from runkon_flow.persistence.models import PACKED_EVENTS, ZIPPED_EVENTS, NewEvent, StoredEvent
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = [
    "CHILD_LEASE_LOST_NOTE",
    "CUT_NOTE",
    "DEFAULT_MAX_LINE_CHARS",
    "DEFAULT_MAX_OUTPUT_LINES",
    "OUTPUT_LINES_ENV",
    "PACKED",
    "PACK_CHARS",
    "PACK_EVENTS",
    "READ_ROWS",
    "ZIPPED",
    "ZIP_EVENTS",
    "StoredEventWriter",
    "each_envelope",
    "envelope_of",
    "is_cut_note",
    "line_of",
    "pack",
    "pack_lines",
    "read_envelopes",
    "read_stored",
    "stored_output_lines",
    "top_level_run",
    "unpack",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_LINES = 2000  # the engine's own live cap (WorkflowExecConfig.max_output_lines)
DEFAULT_MAX_LINE_CHARS = 4000
# The writer writes as soon as this many events wait (not only every `interval`): a short write
# holds the store's connection briefly, so the engine's own commits (item ends) are not kept
# waiting behind a long one, and it shares their group commit.
BATCH_EVENTS = 512
OUTPUT_LINES_ENV = "RUNKON_STORED_OUTPUT_LINES"
_TERMINAL = frozenset({RunCompleted, RunCancelled})
PACKED = PACKED_EVENTS  # the `kind` of a row that packs many events
ZIPPED = ZIPPED_EVENTS  # … and of one whose text is compressed
#: A packed row of at least this many events is compressed, to about a third of its text for a
#: slow run's batches of 8–30 events and a seventh for a fan-out's full ones (ids, kinds and field
#: names repeat line after line); smaller rows stay readable text, where compressing saves little.
ZIP_EVENTS = 8
#: At most this many events, and about this many characters, go into one packed row: a reader
#: reads rows, so a row stays a bounded piece of memory.
PACK_EVENTS = 512
PACK_CHARS = 256 * 1024
#: Rows per read for a reader that handles a long stream piece by piece (`watch`, the dashboard's
#: follower): up to about 5,000 events of packed rows, 10 events of older one-event rows.
READ_ROWS = 10
#: The words of the stored note that says how much of a step's output was not stored.
CUT_NOTE = OUTPUT_CUT_NOTE
#: What the stream stores, under a child run's id, in place of its `RunCancelled(LeaseLost)`.
CHILD_LEASE_LOST_NOTE = (
    "stopped here without an end: the engine running it lost the run's lease (the run was handed "
    "over or taken over by another engine, or this run was ended from outside); its status is "
    "what the run database says"
)
_CHILD_LEASE_LOST = EngineLog(level="info", message=CHILD_LEASE_LOST_NOTE)


def is_cut_note(event: EngineLog) -> bool:
    """The stored note saying how many of a step's output lines were not stored (a reader shows
    it with that step's output: `runkon-flow logs`)."""
    return bool(event.step_name) and CUT_NOTE in event.message


def stored_output_lines(env: dict[str, str] | None = None) -> int:
    """The per-step stored output limit: `$RUNKON_STORED_OUTPUT_LINES` (a whole number ≥ 0), else
    the default. A bad value is an error naming the variable, not silently ignored."""
    raw = (os.environ if env is None else env).get(OUTPUT_LINES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_OUTPUT_LINES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{OUTPUT_LINES_ENV}={raw!r} is not a whole number of lines (0 or more)")
    return value


class _StepCut:
    """What one step execution's stored output has lost so far."""

    __slots__ = ("kept", "lines", "name", "step_id")

    def __init__(self, name: str, step_id: str) -> None:
        self.name = name
        self.step_id = step_id
        self.kept = 0
        self.lines = 0  # lines not stored


class StoredEventWriter:
    """Appends a top-level run's events (its children's too) to the store's stream of `run_id`.

    `emit` is called on engine threads: it turns the event into its stored line (one serializer
    call, about a microsecond) and queues the line. `close()` writes what is left and stops the
    writer thread (call it when the run has returned). A store failure is logged, never raised
    into the run: the run matters more than its history.

    Why the engine's threads serialise: a queued event object lives until the next write (up to
    `interval`), long enough to survive the garbage collector's young generation, and thousands of
    such survivors made full collections far more frequent — that, not the serializing, was most
    of what storing the stream cost a fan-out. A queued line is a `str`, which the collector never
    looks at. Only `StepOutput` (bounded per step, in order) and the `StepCompleted` of a step that
    had output (its cut note goes first) are queued as events, for the writer to handle."""

    def __init__(
        self,
        store: WorkflowPersistence,
        run_id: str,
        *,
        interval: float = 0.2,
        max_output_lines: int = DEFAULT_MAX_OUTPUT_LINES,
        max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.interval = interval
        self.max_output_lines = max_output_lines
        self.max_line_chars = max_line_chars
        self._queue: deque[str | EngineEventData] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._write_lock = threading.Lock()  # one batch at a time, in order
        self._cuts: dict[str, _StepCut] = {}  # the writer thread's: output counted per step
        self._had_output: set[str] = set()  # steps with queued output (engine threads add)
        # The lease generation of the run when this writer's engine took it (`lease_taken`):
        # appends are fenced by it, so an engine woken after another took the run over (SIGSTOP, Ctrl-Z)
        # stores nothing more in the new owner's stream. None: not told (appends unfenced).
        self._generation: int | None = None
        self._on_refused: Callable[[], object] | None = None
        self._refused = 0  # event lines not stored because the run was taken over
        self._lost_at: int | None = None  # the generation a batch was refused at (never comes back)
        self._thread = threading.Thread(target=self._loop, name=f"events-{run_id[-6:]}", daemon=True)
        self._thread.start()

    def emit(self, data: EngineEventData) -> None:
        event = data.event
        cls = event.__class__
        if cls is RunCancelled and event.reason.kind == "LeaseLost":  # type: ignore[attr-defined]
            # Not the run's end: this engine stopped running it, and wrote no status (its row
            # stays as it was). The root: another engine holds the run (it took it over, or was
            # handed it) and goes on with this stream, ending it itself; only this engine's own
            # log says so. A child: its new holder continues it (`call workflow`) or ends it (a
            # resume ends a foreach's unfinished children) — a reader is told it stopped here,
            # not that anyone cancelled it. (A child a `cancel` ended from outside comes as that
            # cancel: the engine reads its row, `report_gate.stopped_child_end`.)
            if data.run_id == self.run_id:
                return
            self._queue.append(line_of(data.ts, data.run_id, "EngineLog", _CHILD_LEASE_LOST_PAYLOAD))
            return
        spec = _PLAIN.get(cls)
        if spec is None or (cls is StepCompleted and event.step_id in self._had_output):  # type: ignore[attr-defined]
            if cls is StepOutput:
                # Before its StepCompleted is emitted: both come from the step's own thread.
                self._had_output.add(event.step_id)  # type: ignore[attr-defined]
            item: str | EngineEventData = data
        else:
            kind, dump = spec
            ts = _json_of(data.ts).decode()  # `line_of`'s time text, without a call more
            item = f"{ts}\t{data.run_id}\t{kind}\t{dump(event, exclude_defaults=True).decode()}"
        queue = self._queue
        queue.append(item)  # atomic; the writer pops from the other end
        # The run id first: most events are a child's, and then the event is not looked at.
        if len(queue) == BATCH_EVENTS or (data.run_id == self.run_id and cls in _TERMINAL):
            self._wake.set()

    def lease_taken(
        self, run_id: str, generation: int, on_refused: Callable[[], object] | None = None
    ) -> None:
        """The engine took `run_id`'s lease at `generation` (called for every run it starts that
        has this sink; only this writer's own run counts): from now on a batch is appended only
        while the run is still at that generation, else dropped, logged and `on_refused()`
        called (the engine confirms its lease and stops with LeaseLost)."""
        if run_id == self.run_id:
            self._generation, self._on_refused = generation, on_refused

    def flush(self) -> None:
        """Write every queued event now (on the calling thread)."""
        with self._write_lock:
            self._write_batch()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()

    # ------------------------------------------------------------------ writer thread

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def _write_batch(self) -> None:
        if not self._queue:
            return
        queue = self._queue
        lines = self._lines([queue.popleft() for _ in range(len(queue))])
        if not lines:
            return
        generation = self._generation
        if generation is not None and generation == self._lost_at:
            # Refused before: a run's generation only moves on, so every later batch would be
            # refused too — dropped here without a store call (nor the store's warning) each.
            self._refused += len(lines)
            return
        try:
            if generation is None:
                self.store.append_events(self.run_id, pack_lines(lines))
                return
            if self.store.append_events(self.run_id, pack_lines(lines), generation=generation):
                return
        except Exception as exc:  # the store is gone or full: the run carries on without history
            log.warning("run %s: %d events could not be stored: %s", self.run_id, len(lines), exc)
            return
        # Refused: another engine took the run over and goes on with this stream.
        self._lost_at = generation
        if not self._refused:
            log.warning(
                "run %s: lease lost; %d events of this engine not stored (another engine took the run over)",
                self.run_id,
                len(lines),
            )
        self._refused += len(lines)
        on_refused = self._on_refused
        if on_refused is not None:
            try:
                on_refused()
            except Exception:
                log.exception("run %s: on_refused of a fenced event append raised", self.run_id)

    def _lines(self, batch: list[str | EngineEventData]) -> list[str]:
        """The batch's stored lines, in order: queued lines as they are, queued events bounded."""
        lines: list[str] = []
        add = lines.append
        for item in batch:
            if item.__class__ is str:
                add(item)  # type: ignore[arg-type]
            else:
                self._special(item, add)  # type: ignore[arg-type]
        return lines

    def _special(self, data: EngineEventData, add: Callable[[str], None]) -> None:
        event = data.event
        kind = event.type
        if kind == "StepOutput":
            event = self._bounded(event)
            if event is None:
                return
        elif kind == "StepCompleted":
            self._had_output.discard(event.step_id)
            cut = self._cuts.pop(event.step_id, None)
            cut_note = self._cut_note(cut) if cut is not None else None
            if cut_note is not None:
                add(line_of(data.ts, data.run_id, "EngineLog", _payload(cut_note)))
        add(line_of(data.ts, data.run_id, kind, _payload(event)))

    def _bounded(self, event: StepOutput) -> StepOutput | None:
        cut = self._cuts.get(event.step_id)
        if cut is None:
            cut = self._cuts[event.step_id] = _StepCut(event.step_name, event.step_id)
        if cut.kept >= self.max_output_lines:
            cut.lines += 1
            return None
        cut.kept += 1
        line = event.line
        if len(line) <= self.max_line_chars:
            return event
        over = len(line) - self.max_line_chars
        return event.model_copy(
            update={"line": line[: self.max_line_chars] + f" … [{over} more characters not stored]"}
        )

    def _cut_note(self, cut: _StepCut) -> EngineLog | None:
        if not cut.lines:
            return None
        return EngineLog(
            level="info",
            message=(
                f"output of step '{cut.name}': {cut.lines} {CUT_NOTE} "
                f"(at most {self.max_output_lines} lines are kept per step; {OUTPUT_LINES_ENV})"
            ),
            step_name=cut.name,
            step_id=cut.step_id,
        )


def line_of(ts: float, event_run_id: str, kind: str, payload: str) -> str:
    """An event's line in a packed row (the payload's JSON never holds a raw tab or newline).

    The time is written as JSON writes a float: the shortest text that reads back as the same
    float, which for any time of day is `repr`'s text, made in a third of `repr`'s time (a run
    writes one per event; `float()` reads it back, `Infinity` and `NaN` included)."""
    return f"{_json_of(ts).decode()}\t{event_run_id}\t{kind}\t{payload}"


def pack(events: list[NewEvent]) -> list[NewEvent]:
    """The rows that store `events` (see `pack_lines`)."""
    return pack_lines([line_of(*e) for e in events])


def pack_lines(lines: list[str]) -> list[NewEvent]:
    """The rows that store these event lines: a lone event as its own row, more as packed rows
    (`PACKED`). One row per batch instead of one per event: the rows' SQL, their b-tree entries
    and the key repeated in each were most of what writing the stream cost."""
    if len(lines) == 1:
        ts, event_run_id, kind, payload = lines[0].split("\t", 3)
        return [NewEvent(float(ts), event_run_id, kind, payload)]
    rows: list[NewEvent] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and (len(chunk) == PACK_EVENTS or size + len(line) > PACK_CHARS):
            rows.append(_packed_row(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        rows.append(_packed_row(chunk))
    return rows


def _packed_row(lines: list[str]) -> NewEvent:
    ts = float(lines[0].split("\t", 1)[0])
    text = "\n".join(lines)
    if len(lines) < ZIP_EVENTS:
        return NewEvent(ts, "", PACKED, text)
    # zlib releases the interpreter while it works, so the engine's threads run meanwhile.
    body = base64.b64encode(zlib.compress(text.encode(), 1)).decode("ascii")
    return NewEvent(ts, str(len(lines)), ZIPPED, body)


def unpack(row: StoredEvent) -> list[StoredEvent]:
    """The events a stored row holds, each as its own `StoredEvent` (with the row's `seq`): the
    row itself unless it is packed. A line (or a zipped row) that does not read is logged and left
    out."""
    kind = row.kind
    if kind == ZIPPED:
        try:
            text = zlib.decompress(base64.b64decode(row.payload, validate=True)).decode()
        except (binascii.Error, zlib.error, UnicodeDecodeError) as exc:
            what = "run %s: stored row %d cannot be read (%s): its events are left out"
            log.warning(what, row.run_id, row.seq, exc)
            return []
    elif kind == PACKED:
        text = row.payload
    else:
        return [row]
    out: list[StoredEvent] = []
    for line in text.split("\n"):
        parts = line.split("\t", 3)
        try:
            ts = float(parts[0])
            _, event_run_id, kind, payload = parts
        except ValueError:
            log.warning("run %s: stored row %d holds an unreadable event: %.80s", row.run_id, row.seq, line)
            continue
        out.append(_new_tuple(StoredEvent, (row.run_id, row.seq, ts, event_run_id, kind, payload)))
    return out


def _payload(event: object) -> str:
    """The event's JSON without its `type` (the row's `kind` holds it) and without fields at their
    defaults: a third of the bytes, and `envelope_of` restores both."""
    cls = event.__class__
    dump = _DUMPS.get(cls) or cls.__pydantic_serializer__.to_json  # type: ignore[attr-defined]
    return dump(event, exclude_defaults=True).decode()


# Each event class's serializer, called directly: a third of model_dump_json's cost per call.
_DUMPS: dict[type, Any] = {cls: cls.__pydantic_serializer__.to_json for cls in EVENT_CLASSES}
_new_tuple = tuple.__new__  # a NewEvent without NamedTuple's Python-level __new__

# (kind, serializer) of every event class `emit` turns into its line at once: all but StepOutput
# (and a StepCompleted whose step had output, `emit` checks).
_PLAIN: dict[type, tuple[str, Any]] = {
    cls: (cls.model_fields["type"].default, _DUMPS[cls]) for cls in EVENT_CLASSES if cls is not StepOutput
}
#: The stored payload of the note a child's `RunCancelled(LeaseLost)` is stored as (`emit`).
_CHILD_LEASE_LOST_PAYLOAD = _payload(_CHILD_LEASE_LOST)


def envelope_of(row: StoredEvent) -> EngineEventData | None:
    """The envelope the engine emitted for this row; None for an event type this runkon does not
    know (written by a newer one), as for JSON-lines files.

    A reader decodes every event of a stream (a dashboard following a 10,000-item fan-out: some
    70,000), so this is its hot path: the row's kind picks the event class, whose own validator
    reads the payload (its `type` is the default; no union to dispatch, no text to rebuild), and
    the envelope is assembled from the validated parts without validating them again."""
    validate = _VALIDATORS.get(row.kind)
    if validate is None:
        return None
    try:
        event = validate(row.payload)
    except ValidationError as exc:
        log.warning("run %s: stored event %d (%s) is unreadable: %s", row.run_id, row.seq, row.kind, exc)
        return None
    return _envelope(row.ts, row.event_run_id, event)


# Each event class's JSON validator by kind (`envelope_of`).
_VALIDATORS: dict[str, Any] = {
    cls.model_fields["type"].default: cls.__pydantic_validator__.validate_json for cls in EVENT_CLASSES
}
_new_object = object.__new__
_set = object.__setattr__


def _envelope(ts: float, run_id: str, event: EngineEvent) -> EngineEventData:
    """`EngineEventData(timestamp=int(ts), ts=ts, run_id=run_id, event=event)` from parts that are
    already valid, at a third of the cost (pydantic's `model_construct` is slower than validating
    again); tests/plugins/test_stored_events.py checks it behaves as the validated envelope."""
    data = _new_object(EngineEventData)
    _set(data, "__dict__", {"timestamp": int(ts), "ts": ts, "run_id": run_id, "event": event})
    _set(data, "__pydantic_fields_set__", {"timestamp", "ts", "run_id", "event"})
    _set(data, "__pydantic_extra__", None)
    _set(data, "__pydantic_private__", None)
    return data


def read_envelopes(
    store: WorkflowPersistence, run_id: str, after_seq: int = 0, limit: int | None = None
) -> tuple[list[EngineEventData], int]:
    """The stream's events after `after_seq` as envelopes, and the last `seq` read (to continue
    from); unreadable rows are skipped but still counted as read. `limit` counts rows (a packed
    row holds up to `PACK_EVENTS` events)."""
    stored, last_seq = read_stored(store, run_id, after_seq, limit)
    return [e for e in map(envelope_of, stored) if e is not None], last_seq


def each_envelope(store: WorkflowPersistence, run_id: str, after_seq: int = 0) -> Iterator[EngineEventData]:
    """`read_envelopes`, `READ_ROWS` rows at a time: a run's whole stream in flat memory (the
    store stays open while it is iterated)."""
    while True:
        envelopes, last_seq = read_envelopes(store, run_id, after_seq, READ_ROWS)
        if last_seq == after_seq:
            return
        yield from envelopes
        after_seq = last_seq


def read_stored(
    store: WorkflowPersistence, run_id: str, after_seq: int = 0, limit: int | None = None
) -> tuple[list[StoredEvent], int]:
    """`read_envelopes` without decoding: each stored event as its own row (packed rows
    unpacked), for a reader that decodes only what it draws (the dashboard's follower)."""
    rows = store.read_events(run_id, after_seq, limit)
    return [e for row in rows for e in unpack(row)], rows[-1].seq if rows else after_seq


def top_level_run(store: WorkflowPersistence, run_id: str) -> str:
    """The id of the top-level run whose stream holds `run_id`'s events (itself for a top-level
    run; an unknown id is returned as it is)."""
    seen = {run_id}
    current = run_id
    while True:
        run = store.get_run(current)
        parent = (run.parent_workflow_run_id or run.parent_run_id) if run is not None else None
        if not parent or parent in seen or store.get_run(parent) is None:
            return current
        seen.add(parent)
        current = parent
