"""Repeated parses keep memory flat and leave the process's garbage collector alone (issue 16, item 4).

The dashboard reparses a workflow on every save, for hours: a parse that leaves cyclic garbage, or
that pauses/freezes the process-wide collector (which resets its counters, so the garbage is never
reached), grows the process without bound — 20,000 parses of a 4 KB file once grew it by 400 MB.
"""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc

import pytest
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.dsl.validation import validate_workflow

# A realistic 4 KB file: commented steps with long prompts and commands (the dashboard's typical
# workflow), few enough nodes that 20,000 parses stay affordable on a shared machine.
BLOCK = """  // Stage {n}: review what changed since the last release, then let the fixer act on findings.
  // Findings are collected in the structured output and handed to the next stage as context.
  script collect-{n} {{
    run = "tools/collect.sh --since {{{{since}}}} --format json --include-tests --out build/stage-{n}.json"
    env = {{ MODE = "{{{{mode}}}}" }}
  }}
  if collect-{n}.has_findings {{ call fix-{n} }}
"""
SOURCE = (
    'workflow w {\n  meta { description = "Nightly review: collect, fix and report" trigger = manual }\n'
    '  inputs { mode default = "fast" since default = "7d" }\n'
    + "".join(BLOCK.format(n=n) for n in range(10))
    + "}\n"
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_a_parse_leaves_nothing_for_the_cyclic_collector() -> None:
    parse_workflow(SOURCE)
    enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        validate_workflow(parse_workflow(SOURCE))
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()


def test_memory_stays_flat_over_20000_parses_of_a_4kb_file() -> None:
    assert 3900 <= len(SOURCE) <= 4300
    for _ in range(200):  # warm up caches and allocator arenas
        parse_workflow(SOURCE)
    start = _rss_mb()
    for _ in range(20_000):
        parse_workflow(SOURCE)
    assert _rss_mb() - start < 5, f"RSS grew from {start:.1f} MB to {_rss_mb():.1f} MB"


def test_parsing_and_validating_never_touch_the_collector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object) -> None:
        raise AssertionError("the parser changed the process's garbage collector settings")

    for name in ("disable", "enable", "freeze", "unfreeze", "set_threshold"):
        monkeypatch.setattr(gc, name, forbidden)
    errors: list[BaseException] = []

    def parse_in_thread() -> None:
        try:
            validate_workflow(parse_workflow(SOURCE))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=parse_in_thread)
    thread.start()
    thread.join()
    validate_workflow(parse_workflow(SOURCE))
    assert errors == []


# Node-dense text: what a generated workflow looks like (many small steps, few comments).
DENSE = """  call review-{n} {{ retries = 2 timeout = "15m" }}
  if review-{n}.has_findings {{ call fix-{n} unless fix-{n}.clean {{ call escalate-{n} }} }}
  parallel {{ call a-{n} call b-{n} }}
  gate approve-{n} {{ type = human_approval prompt = "Ship {n}?" timeout = "2h" }}
"""


def test_a_parsed_workflow_keeps_little_memory_per_input_byte() -> None:
    """Nodes share their equal bookkeeping sets: a 1 MB node-dense file's AST kept ~47 bytes per
    input byte alive (traced by tracemalloc), now ~28."""
    text = "workflow big {\n" + "".join(DENSE.format(n=n) for n in range(4000)) + "}\n"
    parse_workflow(SOURCE)
    tracemalloc.start()
    try:
        wf = parse_workflow(text)
        kept, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert wf.total_nodes() > 30_000
    assert kept / len(text) < 35, f"{kept / len(text):.1f} bytes kept per input byte"
