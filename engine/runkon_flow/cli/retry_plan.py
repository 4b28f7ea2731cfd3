"""What `runkon-flow retry` would do to a run: which fan-out items it runs again, and how the
run's stored definition differs from today's file (docs/when-things-go-wrong.md).

Pure reading of the store; nothing here writes. The command (cli/run.py) shows this, asks, and
then hands the choice to `Workspace.retry`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from runkon_flow.cli.common import CommandFailed
from runkon_flow.cli.hints import Hints
from runkon_flow.dsl.ast import WorkflowDef
from runkon_flow.dsl.formatter import format_workflow
from runkon_flow.humanize import did_you_mean, display_line
from runkon_flow.observe.clusters import RunCluster, by_fan_out, latest_foreach_rows, run_clusters
from runkon_flow.persistence import FanOutItemRow, FanOutItemStatus, WorkflowRun, WorkflowRunStep
from runkon_flow.persistence.protocol import WorkflowPersistence
from runkon_flow.persistence.snapshots import stored_definition

__all__ = [
    "FanOut",
    "RetryChoice",
    "children_diffs",
    "choose_items",
    "cluster_items",
    "definition_diff",
    "fanout_clusters",
    "latest_fanouts",
    "retry_hint",
]

#: What `--failed` retries: every item that ran and did not succeed. Items skipped because an
#: item they depend on failed run again with it (the engine reopens them).
_RETRIED_BY_FAILED = (FanOutItemStatus.FAILED, FanOutItemStatus.CANCELLED)
#: A cluster's label in `retry --cluster`'s list of the clusters there are is cut to this length.
_LABEL_CHARS = 60


@dataclass
class FanOut:
    """The latest attempt of one foreach step (per iteration) of a run, with its item rows."""

    step: WorkflowRunStep
    items: list[FanOutItemRow]

    @property
    def name(self) -> str:
        return self.step.step_name.removeprefix("foreach:")


@dataclass
class RetryChoice:
    """The items to run again, per fan-out row, and what stays as it is."""

    items: dict[str, list[str]] = field(default_factory=dict)  # step row id -> item ids
    lines: list[str] = field(default_factory=list)  # what will happen, said per fan-out

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.items.values())


def latest_fanouts(
    store: WorkflowPersistence, run: WorkflowRun, steps: Sequence[WorkflowRunStep] | None = None
) -> list[FanOut]:
    """The run's foreach steps, the latest attempt of each (name, iteration), in run order.
    `steps`: the run's step rows, when the caller has read them."""
    latest = latest_foreach_rows(store.get_steps(run.id) if steps is None else steps)
    return [FanOut(step, store.get_fan_out_items(step.id)) for step in latest]


def retry_hint(
    store: WorkflowPersistence,
    run: WorkflowRun,
    hints: Hints,
    *,
    fanouts: Sequence[FanOut] | None = None,
) -> str | None:
    """What to type to run a failed run's failed items again — printed when a run fails, where a
    user decides what to do next, under its failure clusters (numbered: `--cluster N` takes the
    numbers); None when it has none (a child run is retried by its parent). `fanouts`: the run's
    `latest_fanouts`, when the caller has read them."""
    if run.parent_workflow_run_id:
        return None
    count = sum(  # what `--failed` would pick; none is no hint, not an error
        1
        for fan in (latest_fanouts(store, run) if fanouts is None else fanouts)
        for item in fan.items
        if FanOutItemStatus(item.status) in _RETRIED_BY_FAILED
    )
    if not count:
        return None
    items = f"{count} failed item{'' if count == 1 else 's'}"
    retry = hints.command("retry", run.id, "--failed", definitions=True)
    return f"retry the {items}: {retry} (or --cluster N from the list above)"


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def fanout_clusters(
    store: WorkflowPersistence, run: WorkflowRun, fanouts: Sequence[FanOut]
) -> list[RunCluster]:
    """The run's failure clusters, numbered as `show` numbers them (`run_clusters`), from its
    `latest_fanouts`: their rows are not read again."""
    return run_clusters(
        store, run.id, [fan.step for fan in fanouts], {fan.step.id: fan.items for fan in fanouts}
    )


def cluster_items(
    store: WorkflowPersistence, run: WorkflowRun, numbers: Sequence[int], fanouts: Sequence[FanOut]
) -> dict[str, set[str]]:
    """The items of the failure clusters `numbers` (as `show` numbers them), per step row id, from
    `fanouts` (`latest_fanouts`: their rows are not read again). An unknown number is an error
    that lists the clusters there are: exit 1, as every name a run does not have (docs/cli.md,
    "Exit status")."""
    every = fanout_clusters(store, run, fanouts)
    clusters = {rc.number: rc for rc in every}
    unknown = [n for n in numbers if n not in clusters]
    if unknown:
        # Each cluster by what tells it apart, as `show` lists it (not the start they all share).
        listed = (
            "; ".join(
                f"{rc.number}: {rc.cluster.count} × {_short(label)}"
                for group in by_fan_out(every)
                for rc, label in zip(group.clusters, group.labels, strict=True)
            )
            or "none: no failed or cancelled items"
        )
        wanted = ", ".join(map(str, unknown))
        raise CommandFailed(f"no failure cluster {wanted} in run {run.id} (clusters: {listed})")
    chosen: dict[str, set[str]] = {}
    for n in numbers:
        rc = clusters[n]
        chosen.setdefault(rc.step.id, set()).update(rc.cluster.item_ids)
    return chosen


def choose_items(
    fanouts: Sequence[FanOut],
    *,
    failed: bool,
    item_ids: Sequence[str],
    per_step: Mapping[str, Collection[str]] | None = None,
    run_id: str = "",
) -> RetryChoice:
    """The items `--failed` / `--item ID …` / `--cluster N` (`per_step`: step row id → item ids)
    select. A completed item or an unknown id is an error naming it (exit 1, as every name a run
    does not have, docs/cli.md "Exit status"; a misspelt id is told the closest one): completed
    work is never run again, and a typo must not retry nothing. `run_id` names the run in the
    message."""
    per_step = per_step or {}
    choice = RetryChoice()
    wanted = set(item_ids)
    found: set[str] = set()
    for fan in fanouts:
        chosen: list[str] = []
        for item in fan.items:
            status = FanOutItemStatus(item.status)
            if item.item_id in wanted:
                found.add(item.item_id)
                if status is FanOutItemStatus.COMPLETED:
                    raise CommandFailed(
                        f"item '{display_line(item.item_id, None)}' of foreach '{fan.name}' completed; "
                        "completed items are never retried (rerun the run from a step to redo finished work)"
                    )
                chosen.append(item.item_id)
            elif status in _RETRIED_BY_FAILED and (failed or item.item_id in per_step.get(fan.step.id, ())):
                chosen.append(item.item_id)
        if chosen:
            choice.items[fan.step.id] = chosen
            kept = sum(1 for i in fan.items if FanOutItemStatus(i.status) is FanOutItemStatus.COMPLETED)
            shown = ", ".join(chosen[:10]) + (f", … ({len(chosen) - 10} more)" if len(chosen) > 10 else "")
            skipped = [i.item_id for i in fan.items if FanOutItemStatus(i.status) is FanOutItemStatus.SKIPPED]
            reopened = (  # the engine reopens those that wait on a retried item (foreach.py)
                f"; the skipped items that wait on these run again too ({len(skipped)} skipped: "
                f"{', '.join(skipped[:10])}{', …' if len(skipped) > 10 else ''})"
                if skipped
                else ""
            )
            choice.lines.append(
                f"foreach '{fan.name}': retry {len(chosen)} of {len(fan.items)} items ({shown}); "
                f"{kept} completed kept{reopened}"
            )
    missing = [i for i in item_ids if i not in found]
    if missing:
        # The items one can retry are what a mistyped id was meant to be; of 10,000 items, the
        # first 20 of every one would name completed items, which are refused anyway.
        retryable = sorted(
            {
                i.item_id
                for fan in fanouts
                for i in fan.items
                if FanOutItemStatus(i.status) in _RETRIED_BY_FAILED
            }
        )
        every = sorted({i.item_id for fan in fanouts for i in fan.items})
        known = retryable or every
        what = "failed or cancelled items" if retryable else "items"
        listed = ", ".join(known[:20]) + (" …" if len(known) > 20 else "") if known else "none"
        # The closest id of the list the message gives (the retryable ones when there are any):
        # falling back to every item when retryable ones tie named a completed item, refused.
        close = did_you_mean(missing[0], known) if len(missing) == 1 else None
        hint = f"{close} " if close else ""
        where = f"run {run_id}" if run_id else "this run"
        named = ", ".join(f"'{m}'" for m in missing)
        raise CommandFailed(
            display_line(
                f"no item{'s' if len(missing) > 1 else ''} {named} in {where} ({hint}{what}: {listed})", None
            )
        )
    if not choice.items:
        where = f"run {run_id}" if run_id else "this run"
        raise CommandFailed(f"nothing to retry: {where} has no failed or cancelled items")
    return choice


def _text(wf: WorkflowDef) -> str:
    """The definition as .wf text, through JSON so both sides lose the same details (comments,
    which defaults were written): only real differences show."""
    return format_workflow(WorkflowDef.from_json(json.loads(json.dumps(wf.to_json()))))


def definition_diff(
    store: WorkflowPersistence, run: WorkflowRun, current: WorkflowDef | None, current_path: str
) -> list[str] | None:
    """A unified diff from the run's stored definition to today's file; [] when they are the
    same; None when the run has no readable stored definition (read as a resume or a retry with
    `--definition stored` reads it)."""
    stored = stored_definition(store, run)
    if stored is None:
        return None
    if current is None:
        return []
    return list(
        difflib.unified_diff(
            _text(stored).splitlines(),
            _text(current).splitlines(),
            f"stored with run {run.id}",
            current_path,
            lineterm="",
        )
    )


def children_diffs(
    stored: Mapping[str, WorkflowDef], current: Mapping[str, WorkflowDef], named: Callable[[WorkflowDef], str]
) -> dict[str, list[str] | None]:
    """Per workflow the run started (`stored`: as `Workspace.stored_children` reads them) whose
    file differs today, a unified diff from what it ran to today's file (`named` says the file);
    None when today it has no file. Unchanged children are not listed."""
    changed: dict[str, list[str] | None] = {}
    for name, ran in sorted(stored.items()):
        now = current.get(name)
        if now is None:
            changed[name] = None
            continue
        diff = list(
            difflib.unified_diff(
                _text(ran).splitlines(),
                _text(now).splitlines(),
                f"{name} as the run ran it",
                named(now),
                lineterm="",
            )
        )
        if diff:
            changed[name] = diff
    return changed
