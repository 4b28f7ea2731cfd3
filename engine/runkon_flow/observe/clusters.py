"""Failure clusters: a fan-out's failed items grouped by what went wrong.

Ten thousand items that failed for three reasons should read as three lines — "30 × rate
limited, 7 × schema mismatch" — not as ten thousand. Two errors belong together when they are
the same text once the parts that differ from item to item are masked: numbers, ids (UUIDs,
ULIDs, hex), paths, URLs, dates and times (not a file position: `a.wf:21:23` is `a.wf:<n>:<n>`),
and the item's own id. The masked text is the cluster's *signature*; it is also what a user
reads, so the masks are short words (`<n>`, `<id>`, `<path>`, `<time>`, `<url>`, `<item>`).

Clusters are computed from a `FanOutView` (its item statuses and the cause of each failure: the
error of the step that failed in the item's child run, else the child run's error), however it
was filled: live events, a stored event stream, or store rows (`loader.fill_item_errors` reads
failed items' child runs, and for an item that never got one the event that ended it).
`run_clusters` numbers the clusters of a stored run's latest fan-outs the one way `show` lists
them and `retry --cluster N` picks them (docs/when-things-go-wrong.md); `failure_summaries` says
them as data, for a hook (docs/notifications.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from runkon_flow.humanize import readable_error
from runkon_flow.observe.loader import fanout_from_rows, fill_item_errors
from runkon_flow.observe.records import FanOutView
from runkon_flow.observe.status import ITEM_CODE
from runkon_flow.persistence.models import FanOutItemRow, StepRole, WorkflowRun, WorkflowRunStep
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = [
    "NO_ERROR",
    "FailureCluster",
    "RunCluster",
    "by_fan_out",
    "clusters_of",
    "distinct_labels",
    "error_signature",
    "failure_summaries",
    "fill_item_errors",
    "latest_foreach_rows",
    "run_clusters",
]

#: The signature of failed items that recorded no error text at all.
NO_ERROR = "(no error recorded)"

#: Items that count as failures: the ones `retry --failed` runs again (as in the loader).
_CLUSTERED = frozenset({ITEM_CODE["failed"], ITEM_CODE["cancelled"]})
_SIGNATURE_CHARS = 300

# Order matters: the longer, more specific shapes are masked before the numbers inside them.
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b"), "<id>"),  # ULID (Crockford base 32)
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b"
        ),
        "<time>",
    ),
    # Not right after `:` or `.`: `lint-repo.wf:21:23` is a file position, not 21:23 o'clock (its
    # numbers become `<n>`: `<path>:<n>:<n>`), and `10.0.0.7:44` an address and port.
    (re.compile(r"(?<![:.])\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"(?<![\w.~/-])(?:~|\.{1,2})?(?:/[\w.@%+=,-]+)+/?|\b[A-Za-z]:\\[\w.\\ -]+"), "<path>"),
    (re.compile(r"\b[\w.-]+(?:/[\w.-]+)+\.\w+\b"), "<path>"),  # a relative path to a file: src/a.py
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<id>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", re.I), "<id>"),
    (re.compile(r"\d+(?:\.\d+)*"), "<n>"),
)
_ITEM_AT = 7  # the item's own id is masked after URLs, ids, times and paths (which may hold it)
_SPACES = re.compile(r"[ \t]+")


@lru_cache(maxsize=8192)
def error_signature(error: str | None, item_id: str = "") -> str:
    """`error` with what varies between items masked: the key two failures share when they
    failed the same way. Lines are kept (trimmed, blank ones dropped); the text is cut at 300
    characters so a long traceback tail does not split a cluster."""
    text = readable_error(error).strip()
    if not text:
        return NO_ERROR
    for n, (pattern, mask) in enumerate(_MASKS):
        # A one-letter id would mask letters in words. The item's pattern is built only for a
        # text that names it: compiled per item, it was most of `show`'s time with 5,000 failed.
        if n == _ITEM_AT and len(item_id) > 1 and item_id in text:
            text = re.sub(rf"(?<![\w-]){re.escape(item_id)}(?![\w-])", "<item>", text)
        text = pattern.sub(mask, text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)[:_SIGNATURE_CHARS]


@dataclass(frozen=True, slots=True)
class FailureCluster:
    """Failed (or cancelled) items of one fan-out that share an error signature."""

    signature: str
    indices: tuple[int, ...]  # into the fan-out's items, in item order
    item_ids: tuple[str, ...]
    example: str  # the first item's error as it was, unmasked

    @property
    def count(self) -> int:
        return len(self.indices)

    @property
    def label(self) -> str:
        """The signature on one line, for lists: lines joined by ` · `."""
        return " · ".join(self.signature.splitlines())

    def describe(self) -> str:
        """`30 × <label>`"""
        return f"{self.count} × {self.label}"

    def items_text(self, limit: int = 5) -> str:
        """`a, b, c, … (27 more)`"""
        shown = ", ".join(self.item_ids[:limit])
        more = self.count - limit
        return shown + (f", … ({more} more)" if more > 0 else "")


def distinct_labels(clusters: Sequence[FailureCluster]) -> tuple[str, list[str]]:
    """(what every cluster's signature starts with, each cluster's label without it): in a narrow
    list the part that tells clusters apart comes first. A script's clusters all start with
    `Script 'x' exited with code <n>`, the line that says least. Whole leading lines only, and
    only while every cluster keeps a line of its own; with one cluster nothing is shared."""
    lines = [c.signature.splitlines() for c in clusters]
    shared = 0
    if len(lines) > 1:
        while all(len(ls) > shared + 1 and ls[shared] == lines[0][shared] for ls in lines):
            shared += 1
    common = " · ".join(lines[0][:shared]) if shared else ""
    return common, [" · ".join(ls[shared:]) for ls in lines]


def clusters_of(fan: FanOutView) -> list[FailureCluster]:
    """The fan-out's failed and cancelled items grouped by error signature, the biggest group
    first (ties: the group whose first item comes first)."""
    groups: dict[str, list[int]] = {}
    codes = fan.codes
    causes = fan.causes
    errors = fan.errors
    ids = fan.ids
    failed: list[int] = []
    for code in _CLUSTERED:  # found in C: a dashboard regroups a 10,000-item fan-out every tick
        at = codes.find(code)
        while at != -1:
            failed.append(at)
            at = codes.find(code, at + 1)
    for idx in sorted(failed):
        text = causes.get(idx) or errors.get(idx)
        groups.setdefault(error_signature(text, ids[idx]), []).append(idx)
    clusters = [
        FailureCluster(
            signature=sig,
            indices=tuple(members),
            item_ids=tuple(ids[i] for i in members),
            example=readable_error(causes.get(members[0]) or errors.get(members[0])).strip(),
        )
        for sig, members in groups.items()
    ]
    clusters.sort(key=lambda c: (-c.count, c.indices[0]))
    return clusters


def latest_foreach_rows(steps: Iterable[WorkflowRunStep]) -> list[WorkflowRunStep]:
    """The latest attempt of each foreach step (per loop iteration) of a run, in run order: the
    fan-outs a retry can reopen."""
    latest: dict[tuple[str, int], WorkflowRunStep] = {}
    for step in steps:
        if step.role != StepRole.FOREACH.value:
            continue
        key = (step.step_name, step.iteration)
        seen = latest.get(key)
        if seen is None or (step.started_at or "", step.id) > (seen.started_at or "", seen.id):
            latest[key] = step
    return sorted(latest.values(), key=lambda s: (s.position, s.started_at or ""))


@dataclass(frozen=True, slots=True)
class RunCluster:
    """One cluster of a stored run, numbered 1.. across the run's latest fan-outs."""

    number: int
    step: WorkflowRunStep
    cluster: FailureCluster

    @property
    def foreach(self) -> str:
        return self.step.step_name.removeprefix("foreach:")


@dataclass(frozen=True)
class FanOutClusters:
    """One fan-out's clusters of a run, as `show` lists them: what every cluster's signature
    starts with (`common`, said once) and each cluster's label without it (`labels`, in order)."""

    clusters: list[RunCluster]
    common: str
    labels: list[str]


def by_fan_out(clusters: Sequence[RunCluster]) -> list[FanOutClusters]:
    """`run_clusters` grouped by fan-out step row, in order, each group's labels without their
    shared start (`distinct_labels`): `show` lists them so, and `retry --cluster` names them so."""
    groups: list[list[RunCluster]] = []
    for rc in clusters:
        if groups and groups[-1][0].step.id == rc.step.id:
            groups[-1].append(rc)
        else:
            groups.append([rc])
    return [FanOutClusters(g, *distinct_labels([rc.cluster for rc in g])) for g in groups]


def run_clusters(
    store: WorkflowPersistence,
    run_id: str,
    steps: Sequence[WorkflowRunStep] | None = None,
    items_of: Mapping[str, list[FanOutItemRow]] | None = None,
    fans: dict[str, FanOutView] | None = None,
    runs: Mapping[str, WorkflowRun] | None = None,
) -> list[RunCluster]:
    """Every failure cluster of the run's latest fan-outs, numbered in the order `show` lists
    them (fan-outs in run order, biggest cluster first). `steps`: the run's step rows, and
    `items_of`: the item rows of its latest fan-outs by step row id, when the caller has read
    them already (10,000 items are not read a second time). `fans`, when given, gets each
    clustered fan-out's view by step row id, its failed items' errors filled (`show --json`
    lists each failed item with its error). `runs`: the run's child runs, by id, when the caller
    has read them already (`loader.fill_item_errors`)."""
    out: list[RunCluster] = []
    for step in latest_foreach_rows(store.get_steps(run_id) if steps is None else steps):
        known = items_of.get(step.id) if items_of is not None else None
        items = known if known is not None else store.get_fan_out_items(step.id)
        if not items:
            continue
        fan = fanout_from_rows(step.node_path or step.id, run_id, step, items)
        fill_item_errors(store, fan, runs)
        if fans is not None:
            fans[step.id] = fan
        for cluster in clusters_of(fan):
            out.append(RunCluster(len(out) + 1, step, cluster))
    return out


#: A hook's `failures` lists at most this many clusters (the biggest: numbers 1..), with at most
#: this many item ids each; `show --json`'s `failure_clusters` has them all.
SUMMARY_CLUSTERS = 10
SUMMARY_ITEMS = 5


def failure_summaries(store: WorkflowPersistence, run_id: str) -> list[dict[str, object]]:
    """The run's failure clusters as a hook event's `failures` says them: `{cluster, foreach,
    count, what, items}` — `cluster` the number `show` gives it and `retry --cluster N` takes,
    `what` its signature on one line, `items` its first item ids. [] when no fan-out item failed.
    Read from the store (once, when a run has failed), as `run_clusters` reads it."""
    return [
        {
            "cluster": rc.number,
            "foreach": rc.foreach,
            "count": rc.cluster.count,
            "what": rc.cluster.label,
            "items": list(rc.cluster.item_ids[:SUMMARY_ITEMS]),
        }
        for rc in run_clusters(store, run_id)[:SUMMARY_CLUSTERS]
    ]
