"""Which run a person means by the id they typed or pasted: the full id in any case, or the
short form the dashboard shows (`…C0DVAD3M`: ULIDs of one session share their time prefix, so
the end tells runs apart) — one rule for the CLI's RUN_ID arguments and `runkon-tui --attach`."""

from __future__ import annotations

from runkon_flow.persistence.models import WorkflowRun
from runkon_flow.persistence.protocol import WorkflowPersistence

__all__ = ["SHORT_ID_MIN", "AmbiguousRunId", "find_run", "why_not_found"]

#: The fewest characters matched as a prefix or suffix: fewer would make most short ids ambiguous.
SHORT_ID_MIN = 6
_LISTED_MATCHES = 5


class AmbiguousRunId(LookupError):
    """More than one run matches: nothing is ever done to a guessed run. `str()` lists them."""


def _part(given: str) -> str:
    return given.strip().removeprefix("…").removeprefix("...").upper()


def why_not_found(given: str) -> str:
    """What a "no such run" message adds when `find_run` found nothing for `given` because it is
    too short a part of an id to be matched (`2NVCN` looked like a mistyped id): `: a part of a run
    id needs at least 6 characters`; else ''."""
    if len(_part(given)) >= SHORT_ID_MIN:
        return ""
    return f": a part of a run id needs at least {SHORT_ID_MIN} characters"


def find_run(store: WorkflowPersistence, given: str) -> WorkflowRun | None:
    """The run `given` names: its id, that id in another case, or a unique prefix or suffix of at
    least SHORT_ID_MIN characters (with or without a leading `…`); None when no run matches.
    Full ids are looked up directly; a shorter part is matched by the store, reading ids only."""
    run = store.get_run(given)
    if run is not None:
        return run
    part = _part(given)
    if len(part) < SHORT_ID_MIN:
        return None
    if part != given and (run := store.get_run(part)) is not None:
        return run
    # An id the lookups above missed is not there, or hidden by a damaged index: not matched here.
    matches = [run_id for run_id in store.find_run_ids(part) if run_id not in (given, part)]
    if len(matches) > 1:
        listed = ", ".join(matches[:_LISTED_MATCHES])
        more = len(matches) - _LISTED_MATCHES
        raise AmbiguousRunId(
            f"run id '{given}' matches {len(matches)} runs: {listed}"
            + (f" and {more} more" if more > 0 else "")
            + "; give more of the id"
        )
    return store.get_run(matches[0]) if matches else None
