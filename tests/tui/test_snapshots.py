"""Screenshots of the dashboard, compared with approved SVGs (pytest-textual-snapshot).

Deterministic by construction: a frozen clock, no blinking cursor, no animation, no file watcher,
a fixed terminal size, the fixture folder tests/tui/fixtures/workflows (not the samples), and a
scripted event feed instead of a live engine. Update with `pytest --snapshot-update` after
checking the new pictures.
"""

from __future__ import annotations

from datetime import UTC, datetime

from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import (
    NewRun,
    NewStep,
    RunStatus,
    StepStatus,
    StepUpdate,
)
from textual.pilot import Pilot

from tests.tui import scenarios
from tests.tui.conftest import feed, make_app, wait_for
from tests.tui.history import history_store

WIDE = (120, 40)


def _fed(build):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        feed(pilot.app, build().events)  # type: ignore[arg-type]
        await pilot.pause()

    return run_before


def test_idle_main_screen(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE)


def test_foreach_mid_run_with_mixed_item_states(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _fed(scenarios.foreach_mid_run)(pilot)
        app = pilot.app
        grid = app.screen.query_one("#grid")
        grid.focus()
        grid.move_to_item(38)  # a running item: selected, its child run in the output log
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)


def test_waiting_gate(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE, run_before=_fed(scenarios.gate_waiting))


def test_gate_dialog(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _fed(scenarios.gate_waiting)(pilot)
        await pilot.press("a")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)


def test_broken_workflow_in_the_list(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press("home")  # the broken file sorts first
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)


def test_failed_run_jump_to_first_failure(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await _fed(scenarios.failed_run)(pilot)
        await pilot.press("n")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)


def test_runs_screen(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press("h")
        await pilot.pause(0.2)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    app = make_app(store=history_store())
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before)


def test_help_screen(snap_compare, monkeypatch) -> None:
    monkeypatch.setenv("RUNKON_TUI_CONFIG", "/home/you/.config/runkon/tui.yaml")  # shown, never written
    assert snap_compare(make_app(), terminal_size=WIDE, press=["question_mark"])


def test_light_theme(snap_compare) -> None:
    app = make_app(theme="runkon-light")
    assert snap_compare(app, terminal_size=WIDE, run_before=_fed(scenarios.foreach_mid_run))


def test_small_80x24_terminal(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_fed(scenarios.gate_waiting))


# ---- 80×24 must stay usable (issue 10): names, the item count, the whole footer, form buttons.

SMALL = (80, 24)


def test_small_foreach_mid_run(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SMALL, run_before=_fed(scenarios.foreach_mid_run))


def test_small_runs_screen(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press("h")
        await pilot.pause(0.2)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(make_app(store=history_store()), terminal_size=SMALL, run_before=run_before)


def _inputs_form(pilot: Pilot):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        app = pilot.app
        screen = app.main_screen  # type: ignore[attr-defined]
        names = [e.name for e in app.catalog]  # type: ignore[attr-defined]
        screen.workflow_list.highlighted = names.index("review-pr")
        screen.workflow_list.focus()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()

    return run_before


def test_inputs_form(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE, run_before=_inputs_form(None))


def test_small_inputs_form(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SMALL, run_before=_inputs_form(None))


def _gate_dialog(key: str):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await _fed(scenarios.gate_waiting)(pilot)
        await pilot.press(key)
        await pilot.pause()

    return run_before


def test_small_gate_dialog(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SMALL, run_before=_gate_dialog("a"))


def test_reject_dialog(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=WIDE, run_before=_gate_dialog("x"))


def test_small_reject_dialog(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SMALL, run_before=_gate_dialog("x"))


def test_fan_out_with_failure_clusters(snap_compare) -> None:
    """A finished fan-out whose 36 failed items group into three clusters under the grid."""

    async def run_before(pilot: Pilot) -> None:
        await _fed(scenarios.foreach_failure_clusters)(pilot)
        pilot.app.clear_notifications()  # the "run finished" toast would cover the Workflows pane
        pilot.app.screen.query_one("#grid").focus()
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)


def test_fan_out_filtered_to_one_failure_cluster(snap_compare) -> None:
    """Enter on the second cluster: the grid shows only its 12 items, the title says so."""

    async def run_before(pilot: Pilot) -> None:
        await _fed(scenarios.foreach_failure_clusters)(pilot)
        pilot.app.clear_notifications()
        clusters = pilot.app.screen.query_one("#clusters")
        clusters.focus()
        await pilot.press("down", "enter")  # the first cluster is highlighted: down goes to the second
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)


# ---- docs/when-things-go-wrong.md shows these two: the gate inbox and a retried cluster.


def _inbox_store() -> InMemoryStore:
    """Four gates waiting in four runs, started at fixed times before the app's frozen clock: one
    overdue, one due in a minute (in a run a resume marked `running`), one a fan-out's child."""
    at = [scenarios.T0]
    store = InMemoryStore(clock=lambda: datetime.fromtimestamp(at[0], UTC))
    now = scenarios.T0 + 60  # the app's clock (conftest.NOW)
    gates = [
        ("release", "01JEXR4M7Q2W9T3KX5B8N6PDA1", "human_approval", 7800, "2h", "Release 4.2 to production?"),
        ("ship", "01JEXRB2C4D6F8G0H2J4K6M8NP", "human_approval", 2820, "1h", "Ship the build?"),
        ("review-one", "01JEXRQ7W3E5R7T9Y1U3I5O7PQ", "sign-off", 720, "24h", "Sign off src/app/models.py?"),
        ("nightly", "01JEXS0A2S4D6F8G1H3J5K7L9Z", "go-live", 180, "4m", "Switch traffic to the new cluster?"),
    ]
    for workflow, run_id, gate, waited, timeout, prompt in gates:
        at[0] = now - waited - 5
        run = store.create_run(NewRun(workflow_name=workflow, run_id=run_id))
        at[0] = now - waited
        step = store.insert_step(
            NewStep(
                run.id,
                gate,
                role="gate",
                position=1,
                node_path="body.1",
                gate_type="human_approval",
                gate_prompt=prompt,
                gate_timeout=str({"2h": 7200, "1h": 3600, "24h": 86400, "4m": 240}[timeout]),
            )
        )
        store.update_step(step, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
        if workflow == "nightly":
            store.update_run_status(run.id, RunStatus.RUNNING, None, None)  # a resumed run
        else:
            store.set_waiting_blocked_on(run.id, {"type": "human_approval", "gate_name": gate})
    return store


def test_gate_inbox(snap_compare) -> None:
    """`i`: every waiting gate, oldest first, with its wait and countdown; two marked."""

    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press("i")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: getattr(screen, "loaded", False), what="the inbox to load")
        await pilot.press("space", "space")  # marks the first two
        await pilot.pause()

    assert snap_compare(make_app(store=_inbox_store()), terminal_size=WIDE, run_before=run_before)


def test_fan_out_after_retrying_one_failure_cluster(snap_compare) -> None:
    """The second cluster retried after a fix: its 12 items completed on attempt 2, two clusters
    left; the selected retried item names the child run of its failed first attempt."""

    async def run_before(pilot: Pilot) -> None:
        await _fed(scenarios.foreach_cluster_retried)(pilot)
        pilot.app.clear_notifications()
        screen = pilot.app.screen
        grid = screen.query_one("#grid")
        grid.focus()
        grid.move_to_item(9)  # file-009: a schema mismatch, retried
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(160, 45), run_before=run_before)
