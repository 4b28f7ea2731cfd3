"""Parsing and validating pause the process-wide cyclic GC; what a host set up must survive that."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.dsl.validation import validate_workflow

SOURCE = "workflow w {\n  call a\n  if a.ok { call b }\n  parallel { call c call d }\n}\n"


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the interpreter's collector as the test found it."""
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    gc.unfreeze()
    if frozen:
        gc.freeze()
    (gc.enable if enabled else gc.disable)()


def test_the_collector_runs_again_after_a_parse_and_a_validation(collector: None) -> None:
    gc.enable()
    validate_workflow(parse_workflow(SOURCE))
    assert gc.isenabled()


def test_a_collector_the_host_turned_off_stays_off(collector: None) -> None:
    gc.disable()
    validate_workflow(parse_workflow(SOURCE))
    assert not gc.isenabled()


def test_objects_the_host_froze_stay_frozen(collector: None) -> None:
    """The dashboard freezes its start-up heap; a parse (hot reload) must not undo that."""
    gc.enable()
    startup_heap = [[] for _ in range(10)]
    gc.freeze()
    validate_workflow(parse_workflow(SOURCE))
    collected = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
    assert not any(id(o) in collected for o in startup_heap)  # still in the permanent generation
    assert gc.get_freeze_count() > 0


def test_a_parsed_workflow_starts_old_and_nothing_stays_frozen(collector: None) -> None:
    """The AST is handed over in the oldest generation (no young collection has to walk it), and
    the parse leaves nothing in the permanent generation."""
    gc.unfreeze()
    gc.enable()
    gc.collect()
    wf = parse_workflow(SOURCE)
    assert gc.get_freeze_count() == 0
    young = {id(o) for o in gc.get_objects(generation=0)} | {id(o) for o in gc.get_objects(generation=1)}
    assert id(wf) not in young
    assert id(wf) in {id(o) for o in gc.get_objects(generation=2)}
