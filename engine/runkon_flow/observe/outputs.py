"""A run's stored output, step by step and item by item: what `runkon-flow logs` prints, what
`runkon-flow grep` and the dashboard's search look through (`observe.search`).

Read from the store, never by running anything again, so it works for a finished run, a live one,
one another process executes and one on PostgreSQL alike:

* the *structure* comes from the rows: the run's step rows in order, a `call workflow` step's
  child run in its place, a foreach's items (each item's child run, its earlier attempt's child
  run first when the item was retried) in their order;
* the *lines* come from the stored event stream of the top-level run (`StepOutput` events, by
  the step row they name), with the note the stream keeps when a step printed more lines than
  are stored. A run from before runkon stored events (or run with storage off) has none: its
  rows' result texts stand in, and `OutputTree.has_events` says so.

Each `OutputSource` is one step row (one attempt of one execution) or one failed fan-out item that
has no step of its own to show; `label` is its place as people read it: `prep`,
`each[b] › say`, `check · attempt 2`, `build › compile`.

`read_outputs(…, stream=True)` keeps no output line in memory once they add up to more than
`STREAM_ABOVE` characters: the walk notes, per step row, which stored rows hold its lines and how
many there are, and `OutputSource.each_line()` reads those rows again as it is iterated, a few at
a time (`_RowLines`). `logs` and `grep` print a run of any size so, in flat memory; the lines, and
their order, are the same as a tree read whole.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from runkon_flow.event_log import READ_ROWS, envelope_of, is_cut_note, top_level_run, unpack
from runkon_flow.humanize import readable_error
from runkon_flow.observe.counts import row_key
from runkon_flow.observe.loader import reused_row_ids
from runkon_flow.persistence.models import (
    FanOutItemRow,
    FanOutItemStatus,
    StepRole,
    StoredEvent,
    WorkflowRun,
    WorkflowRunStep,
)
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = [
    "FAILED_STATUSES",
    "STREAM_ABOVE",
    "OutputLine",
    "OutputSource",
    "OutputTree",
    "plan_reads",
    "read_outputs",
    "short_step_name",
    "walk_outputs",
]

FAILED_STATUSES = frozenset({"failed", "timed_out"})
_CONTAINERS = frozenset({StepRole.FOREACH.value, StepRole.WORKFLOW.value})
_MAX_DEPTH = 8
_NO_CHILD = (None, "", "dispatching")
#: The stored events the walk reads: output, `lines not stored` notes, and items' ends.
_READ = frozenset({"StepOutput", "EngineLog", "FanOutItemCompleted"})


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One stored line: `stdout`, `stderr` or `agent` output, or a `note` (lines not stored)."""

    stream: str
    text: str


@dataclass(slots=True)
class OutputSource:
    """One step row's (or one failed item's) stored output and error."""

    label: str
    run_id: str
    step_id: str | None
    step_name: str
    node_path: str | None
    status: str
    error: str | None = None
    lines: list[OutputLine] = field(default_factory=list)
    #: The fan-out items this source sits inside, outermost first: (foreach step id, item id).
    items: tuple[tuple[str, str], ...] = ()
    #: Names this source answers to when a user narrows (`logs RUN each`, `logs RUN b`).
    names: frozenset[str] = frozenset()
    #: False for an earlier attempt of a step (or item) that a later attempt replaced.
    latest: bool = True
    #: In a streamed tree (`read_outputs(…, stream=True)`), the stored output lines, read again
    #: when `each_line()` is iterated; `lines` then holds only what follows them (the notes).
    stored: _StepLines | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def each_line(self) -> Iterator[OutputLine]:
        """Every line of this source's output, notes last — for a streamed tree read from the
        store as it goes, so only a few stored rows are in memory at a time."""
        if self.stored is not None:
            yield from self.stored
        yield from self.lines

    @property
    def has_lines(self) -> bool:
        return bool(self.lines) or (self.stored is not None and self.stored.count > 0)

    @property
    def output_line_count(self) -> int:
        """How many output lines (not notes) the source has."""
        own = sum(1 for line in self.lines if line.stream != "note")
        return own + (self.stored.count if self.stored is not None else 0)

    @property
    def item_id(self) -> str | None:
        """The innermost fan-out item this source belongs to."""
        return self.items[-1][1] if self.items else None


@dataclass
class OutputTree:
    """Every source of one run, in the order the run went."""

    run: WorkflowRun
    sources: list[OutputSource]
    has_events: bool

    def narrowed(self, target: str) -> list[OutputSource]:
        """The sources a step name, step path, node path, step id or item id names."""
        return [s for s in self.sources if target in s.names]

    def failed(self) -> list[OutputSource]:
        """Failed steps and items, latest attempts only (a step that failed and then succeeded on
        a retry is not a failure)."""
        return [s for s in self.sources if s.failed and s.latest]

    def names(self) -> list[str]:
        """Step names and item ids a user can narrow to, in order, for an error message."""
        seen: dict[str, None] = {}
        for source in self.sources:
            seen.setdefault(short_step_name(source.step_name), None)
            for _, item in source.items:
                seen.setdefault(item, None)
        return list(seen)


def short_step_name(step_name: str) -> str:
    """`foreach:each` → `each`: the row's name carries its kind, people use the step's name."""
    return step_name.split(":", 1)[1] if step_name.startswith(("foreach:", "parallel:")) else step_name


@dataclass
class _Stored:
    """What the walk takes from the top-level run's stored events."""

    #: Output lines by step row id (a tree read whole).
    lines: dict[str, list[OutputLine]] = field(default_factory=dict)
    #: A streamed tree's instead: by step row id, the `seq` of each stored row holding some of
    #: its lines, and how many lines it has.
    rows: dict[str, list[int]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: Whether the lines are not kept (`_stored_lines`' `keep_chars`): they are read again.
    streamed: bool = False
    #: `lines not stored` notes by step row id (by (run, step name) in streams stored before notes
    #: named their execution).
    notes: dict[str | tuple[str, str], list[str]] = field(default_factory=dict)
    #: The error a failed item's `FanOutItemCompleted` said, by (foreach step row id, item id): an
    #: item whose child workflow did not load has no child run, and no row keeps its error.
    item_errors: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Whether the stream has any event.
    seen: bool = False


def _stored_lines(store: WorkflowPersistence, stream_id: str, keep_chars: int | None = None) -> _Stored:
    """The output lines, notes and failed items' errors of the top-level run's stored events.
    With `keep_chars`, the lines are kept only while they add up to at most that many characters;
    past it only where they are (`rows`, `counts`: noted all along), and `streamed` is set."""
    stored = _Stored()
    lines, notes, after = stored.lines, stored.notes, 0
    where, counts = stored.rows, stored.counts
    kept = 0
    while True:
        rows = store.read_events(stream_id, after, READ_ROWS)
        if not rows:
            return stored
        stored.seen = True
        after = rows[-1].seq
        for row in (event for packed in rows for event in unpack(packed)):
            kind = row.kind
            if kind not in _READ or (kind == "FanOutItemCompleted" and '"error"' not in row.payload):
                continue  # only a failed or cancelled item's end says an error
            data = envelope_of(row)
            if data is None:
                continue
            event = data.event
            if kind == "StepOutput":
                step_id: str = event.step_id  # type: ignore[union-attr]
                if keep_chars is not None:
                    seqs = where.setdefault(step_id, [])
                    if not seqs or seqs[-1] != row.seq:
                        seqs.append(row.seq)
                    counts[step_id] = counts.get(step_id, 0) + 1
                    kept += len(event.line)  # type: ignore[union-attr]
                    if kept > keep_chars and not stored.streamed:
                        stored.streamed = True
                        lines.clear()
                if not stored.streamed:
                    lines.setdefault(step_id, []).append(OutputLine(event.stream, event.line))  # type: ignore[union-attr]
            elif kind == "FanOutItemCompleted":
                if event.step_id is not None and event.error is not None:  # type: ignore[union-attr]
                    # An item's last end wins.
                    stored.item_errors[(event.step_id, event.item_id)] = event.error  # type: ignore[union-attr]
            elif is_cut_note(event):  # type: ignore[arg-type]
                key = event.step_id or (row.event_run_id, event.step_name)  # type: ignore[union-attr]
                notes.setdefault(key, []).append(event.message)  # type: ignore[union-attr]


#: A streamed tree (`read_outputs(…, stream=True)`) keeps its run's stored lines while they add
#: up to at most this many characters (read once: the quickest), and past it none of them.
STREAM_ABOVE = 8 * 1024 * 1024
#: Stored rows a streamed tree keeps unpacked: each holds at most `PACK_CHARS` of text.
_KEEP_ROWS = 2 * READ_ROWS


class _RowLines:
    """A streamed tree's reader of stored rows: the output lines of one step row that one stored
    row holds. At most `_KEEP_ROWS` rows are kept unpacked (not decoded), and of a kept row only
    the events naming the step are decoded.

    Told the order its rows will be read in (`plan_reads`: `logs` and `grep` print their sources
    in an order known before the first line), a reader that misses a row reads it and the next
    rows the plan needs — up to `_KEEP_ROWS` in all, those kept already not again — in one store
    call (`read_events_at`), and keeps exactly those. A fan-out's items ran side by side, so their
    lines share rows in an order other than the items': reading on from the missed row (all a
    reader without a plan can do) read rows no item named next and dropped rows it did (2,000
    items: 193 reads of 1,911 rows for a stream of 589)."""

    def __init__(self, store: WorkflowPersistence, stream_id: str) -> None:
        self._store = store
        self._stream_id = stream_id
        self._keep = _KEEP_ROWS
        self._rows: OrderedDict[int, list[StoredEvent]] = OrderedDict()
        self._plan: list[int] = []  # the rows' seqs in the order they will be read
        self._at = 0  # where in the plan the reading is

    def plan(self, seqs: Iterable[int]) -> None:
        self._plan = [seq for seq, _ in itertools.groupby(seqs)]
        self._at = 0

    def lines(self, seq: int, step_id: str) -> Iterator[OutputLine]:
        planned = self._follow(seq)
        events = self._rows.get(seq)
        if events is None:
            events = self._read_planned(seq) if planned else self._read_on(seq)
        else:
            self._rows.move_to_end(seq)
        named = f'"{step_id}"'  # in the payload of each of its events: no need to decode the others
        for row in events:
            if named not in row.payload:
                continue
            data = envelope_of(row)
            if data is not None and data.event.step_id == step_id:  # type: ignore[union-attr]
                yield OutputLine(data.event.stream, data.event.line)  # type: ignore[union-attr]

    def _follow(self, seq: int) -> bool:
        """Move the plan's place on to `seq`; whether the plan has it there (or further on)."""
        plan, at = self._plan, self._at
        if at < len(plan) and plan[at] == seq:
            return True
        try:
            self._at = plan.index(seq, at + 1 if at < len(plan) else at)
        except ValueError:
            return False
        return True

    def _read_planned(self, seq: int) -> list[StoredEvent]:
        wanted: dict[int, None] = {}
        for next_seq in itertools.islice(self._plan, self._at, None):
            wanted.setdefault(next_seq, None)
            if len(wanted) == self._keep:
                break
        kept = self._rows
        missing = [s for s in wanted if s not in kept]
        read = self._unpacked(self._store.read_events_at(self._stream_id, missing))
        self._rows = OrderedDict((s, kept[s] if s in kept else read.get(s, [])) for s in wanted)
        return self._rows[seq]

    def _read_on(self, seq: int) -> list[StoredEvent]:
        """Without a plan: `seq`'s row and the rows after it (a step's lines are in consecutive
        rows); the oldest kept rows make room."""
        read = self._unpacked(self._store.read_events(self._stream_id, seq - 1, READ_ROWS))
        self._rows.update(read)
        while len(self._rows) > self._keep:
            self._rows.popitem(last=False)
        return read.get(seq, [])

    @staticmethod
    def _unpacked(rows: list[StoredEvent]) -> dict[int, list[StoredEvent]]:
        return {row.seq: [e for e in unpack(row) if e.kind == "StepOutput"] for row in rows}


@dataclass(frozen=True, slots=True)
class _StepLines:
    """One step row's stored lines in a streamed tree: iterating reads them (`_RowLines`)."""

    reader: _RowLines
    step_id: str
    seqs: tuple[int, ...]
    count: int

    def __iter__(self) -> Iterator[OutputLine]:
        for seq in self.seqs:
            yield from self.reader.lines(seq, self.step_id)


def _error_text(row: WorkflowRunStep) -> str | None:
    status = str(row.status)
    if status not in (*FAILED_STATUSES, "cancelled"):
        return None
    rejected = f"rejected by {row.gate_approved_by}" if row.gate_approved_by else ""
    if rejected and row.gate_feedback:
        rejected += f": {row.gate_feedback}"
    text = readable_error(row.step_error or rejected or (row.result_text if status != "cancelled" else ""))
    return text.strip() or None


class _Walker:
    def __init__(self, store: WorkflowPersistence, stored: _Stored, reader: _RowLines | None = None) -> None:
        self.store = store
        self.lines = stored.lines
        self.rows = stored.rows
        self.counts = stored.counts
        self.reader = reader
        self.has_events = stored.seen
        self.notes = stored.notes
        self.item_errors = stored.item_errors
        self._children: dict[str, dict[str, WorkflowRun]] = {}
        #: Item child runs already listed: a resumed foreach's new row names the items it kept
        #: from the earlier attempt (and earlier attempts of retried ones) again.
        self._walked: set[str] = set()
        #: An item's child run that a later attempt replaced → the attempt it was.
        self._attempt_of: dict[str, int] = {}
        self._items_read: dict[str, list[FanOutItemRow]] = {}  # step row id → its items, once
        #: The child runs the newest foreach rows name: an item a resume or retry did not run
        #: again is listed under the older row that ran it, and is still its item's latest attempt.
        self._current: set[str] = set()
        #: A rerun's rows copied from the run it reruns: their output is that run's.
        self._reused: set[str] = set()

    def child(self, parent_id: str, child_id: str | None) -> WorkflowRun | None:
        """A child run of `parent_id`, from one read of all its children (a 10,000-item fan-out
        would otherwise cost 10,000 lookups)."""
        if child_id in _NO_CHILD:
            return None
        children = self._children.get(parent_id)
        if children is None:
            children = {r.id: r for r in self.store.list_runs(limit=1 << 62, parent_run_id=parent_id)}
            self._children[parent_id] = children
        found = children.get(child_id)  # type: ignore[arg-type]
        return found if found is not None else self.store.get_run(child_id)  # type: ignore[arg-type]

    def run(
        self,
        run: WorkflowRun,
        prefix: str,
        items: tuple[tuple[str, str], ...],
        names: frozenset[str],
        latest: bool,
        depth: int = 0,
    ) -> Iterator[OutputSource]:
        rows = self.store.get_steps(run.id)
        self._reused.update(reused_row_ids(run, rows))
        newest = {row_key(r): r for r in rows}
        for row in sorted(rows, key=lambda r: (r.started_at or "~", r.position)):
            replaced_by = newest[row_key(row)]
            newest_row = latest and replaced_by.id == row.id
            if replaced_by.id != row.id and row.role == StepRole.FOREACH.value:
                self._note_later_attempts(replaced_by)
            yield from self.step(run, row, prefix, items, names, newest_row, depth)

    def _note_later_attempts(self, newer: WorkflowRunStep) -> None:
        """A resumed foreach's new row runs some items again: their earlier attempt, listed under
        the row that ran it, is labelled `· attempt N` as the later one is, so a failure that a
        later attempt replaced never reads as the item's current state. Several older rows share
        one newer row: its items are read (and noted) once."""
        if newer.id in self._items_read:
            return
        items = self._items_read[newer.id] = self.store.get_fan_out_items(newer.id)
        self._current.update(item.child_run_id for item in items if item.child_run_id)
        for item in items:
            if item.previous_child_run_id and item.attempt > 1:
                self._attempt_of[item.previous_child_run_id] = item.attempt - 1

    def step(
        self,
        run: WorkflowRun,
        row: WorkflowRunStep,
        prefix: str,
        items: tuple[tuple[str, str], ...],
        names: frozenset[str],
        latest: bool,
        depth: int,
    ) -> Iterator[OutputSource]:
        short = short_step_name(row.step_name)
        label = prefix + short
        if row.iteration:
            label += f" · iteration {row.iteration}"
        if row.retry_count:
            label += f" · attempt {row.retry_count + 1}"
        own = names | {row.step_name, short, row.id, prefix + short}
        if row.node_path:
            own |= {row.node_path}
        lines = list(self.lines.get(row.id, ()))
        stored = None
        if self.reader is not None and row.id in self.rows:
            stored = _StepLines(self.reader, row.id, tuple(self.rows[row.id]), self.counts[row.id])
        error = _error_text(row)
        result = readable_error(row.result_text or "").strip()
        if not self.has_events and result and result != error and row.role not in _CONTAINERS:
            lines = [OutputLine("result", text) for text in result.splitlines()]
        for key in (row.id, (run.id, row.step_name)):
            lines.extend(OutputLine("note", n) for n in self.notes.get(key, ()))
        if row.id in self._reused:  # did not run here (docs/run-model.md, "Reused steps")
            where = f"runkon-flow logs {run.rerun_of} {short}"
            lines.append(OutputLine("note", f"reused from run {run.rerun_of}: its output is there ({where})"))
        if lines or stored is not None or error or row.role not in _CONTAINERS:
            yield OutputSource(
                label=label,
                run_id=run.id,
                step_id=row.id,
                step_name=row.step_name,
                node_path=row.node_path,
                status=str(row.status),
                error=error,
                lines=lines,
                items=items,
                names=frozenset(own),
                latest=latest,
                stored=stored,
            )
        if depth >= _MAX_DEPTH:
            return
        if row.role == StepRole.FOREACH.value:
            yield from self.fan_out(row, short, prefix, items, names | {row.step_name, short}, latest, depth)
        elif row.child_run_id not in _NO_CHILD:
            child = self.store.get_run(row.child_run_id)  # type: ignore[arg-type]
            if child is not None:
                inside = names | {row.step_name, short}
                yield from self.run(child, f"{label} › ", items, inside, latest, depth + 1)

    def fan_out(
        self,
        row: WorkflowRunStep,
        short: str,
        prefix: str,
        items: tuple[tuple[str, str], ...],
        names: frozenset[str],
        latest: bool,
        depth: int,
    ) -> Iterator[OutputSource]:
        read = self._items_read.pop(row.id, None)  # the newer row's, read once for its labels
        for item in read if read is not None else self.store.get_fan_out_items(row.id):
            path = (*items, (row.id, item.item_id))
            item_names = names | {item.item_id}
            label = f"{prefix}{short}[{item.item_id}]"
            if item.previous_child_run_id and item.previous_child_run_id not in self._walked:
                self._walked.add(item.previous_child_run_id)
                earlier = self.child(row.workflow_run_id, item.previous_child_run_id)
                if earlier is not None:
                    before = f"{label} · attempt {item.attempt - 1} › "
                    yield from self.run(earlier, before, path, item_names, False, depth + 1)
            if item.child_run_id and item.child_run_id in self._walked:
                continue  # listed under the foreach execution that ran it
            if item.child_run_id:
                self._walked.add(item.child_run_id)
            child = self.child(row.workflow_run_id, item.child_run_id)
            current = latest or item.child_run_id in self._current  # kept by a later attempt: still latest
            shown = False
            if child is not None:
                number = self._attempt_of.get(child.id, item.attempt)
                attempt = f" · attempt {number}" if number > 1 or child.id in self._attempt_of else ""
                for source in self.run(child, f"{label}{attempt} › ", path, item_names, current, depth + 1):
                    shown = True
                    yield source
            if not shown and _item_failed(item):
                error = child.error if child is not None else None
                error = readable_error(error or self.item_errors.get((row.id, item.item_id))).strip()
                yield OutputSource(
                    label=label,
                    run_id=child.id if child is not None else row.workflow_run_id,
                    step_id=None,
                    step_name=row.step_name,
                    node_path=row.node_path,
                    status="failed",
                    error=error or "failed before any step ran",
                    items=path,
                    names=frozenset(item_names),
                    latest=current,
                )


def _item_failed(item: FanOutItemRow) -> bool:
    return FanOutItemStatus(item.status) is FanOutItemStatus.FAILED


def plan_reads(sources: Iterable[OutputSource]) -> None:
    """Tell a streamed tree's reader that `sources`' lines will be read in this order (each
    source's `each_line()` in turn), so it reads the rows they need a set at a time, each once or
    nearly (`_RowLines`). Sources read in another order still read right, only with more reads."""
    readers: dict[int, tuple[_RowLines, list[int]]] = {}
    for source in sources:
        if source.stored is not None:
            reader = source.stored.reader
            readers.setdefault(id(reader), (reader, []))[1].extend(source.stored.seqs)
    for reader, seqs in readers.values():
        reader.plan(seqs)


def walk_outputs(
    store: WorkflowPersistence, run: WorkflowRun, *, stream: bool = False
) -> tuple[Iterator[OutputSource], bool]:
    """`read_outputs`' sources as they are walked, none kept (the dashboard's search keeps only
    those with a hit it lists), and whether the run has stored events (`OutputTree.has_events`)."""
    stream_id = top_level_run(store, run.id)
    stored = _stored_lines(store, stream_id, STREAM_ABOVE if stream else None)
    walker = _Walker(store, stored, _RowLines(store, stream_id) if stored.streamed else None)
    return walker.run(run, "", (), frozenset(), True), stored.seen


def read_outputs(store: WorkflowPersistence, run: WorkflowRun, *, stream: bool = False) -> OutputTree:
    """Every step's and item's stored output and error of `run` (a top-level or a child run), in
    the order the run went. With `stream`, a run whose stored lines add up to more than
    `STREAM_ABOVE` characters keeps none of them: each source's `each_line()` reads its lines
    from `store` again (which must stay open while they are read)."""
    sources, has_events = walk_outputs(store, run, stream=stream)
    return OutputTree(run, list(sources), has_events)
