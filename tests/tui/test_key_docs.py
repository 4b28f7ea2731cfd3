"""Every key binding has an id a user can remap (docs/dashboard.md, "Keys"); a binding the docs
do not name is a key nobody can find or remap."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from runkon_flow.persistence.memory import InMemoryStore
from textual.binding import Binding

import runkon_tui
from runkon_tui.config import TuiConfig
from runkon_tui.screens.gate import GateScreen
from tests.tui.conftest import make_app, select, wait_for
from tests.tui.test_dashboard import gate_script, start_review_run

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "dashboard.md").read_text(encoding="utf-8")


def _bindings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for module_info in pkgutil.walk_packages(runkon_tui.__path__, "runkon_tui."):
        module = importlib.import_module(module_info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for binding in cls.__dict__.get("BINDINGS", []):
                if isinstance(binding, Binding) and binding.id is not None:
                    found.setdefault(binding.id, []).append(f"{name}: {binding.key}")
    return found


def test_every_binding_id_is_in_the_dashboard_docs() -> None:
    bindings = _bindings()
    assert {"run", "approve", "gate_approve", "form_run", "retry_failed"} <= set(bindings)
    missing = {binding_id: where for binding_id, where in bindings.items() if f"`{binding_id}`" not in DOCS}
    assert not missing, f"binding ids docs/dashboard.md does not name: {missing}"


async def test_a_dialog_key_is_remapped_by_its_documented_id(tmp_path: Path) -> None:
    app = make_app(config=TuiConfig(tmp_path / "tui.yaml", keymap={"gate_approve": "ctrl+o"}))
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=(120, 40)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        await pilot.press("ctrl+y")  # the default key no longer answers
        await pilot.pause()
        assert isinstance(app.screen, GateScreen)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: not app.run_active, what="the approved run to finish")
        assert app.view.status == "completed"


async def test_help_lists_the_keys_of_the_panes_too_as_remapped(tmp_path: Path) -> None:
    """Retrying items and rerunning from a step live on the grid and the tree, not in the footer:
    `?` is where a user finds them."""
    from runkon_tui.screens.help import HelpScreen

    app = make_app(config=TuiConfig(tmp_path / "tui.yaml", keymap={"retry_failed": "ctrl+e"}))
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = str(app.screen.query_one("Static").render())
        lines = {" ".join(line.split()) for line in text.splitlines()}
        assert "ctrl+e Retry failed retry_failed" in lines  # the screen's key, whatever pane has the focus
        assert "e grid: Retry item retry_item" in lines
        assert "R tree: Rerun from here rerun_from" in lines
        assert "e clusters: Retry cluster retry_cluster" in lines


def _footer_keys(app, lit: bool = True) -> list[str]:  # type: ignore[no-untyped-def]
    from textual.widgets._footer import FooterKey

    keys = app.screen.query(FooterKey)
    return [f"{k.key_display} {k.description}" for k in keys if not (lit and k._disabled)]


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_the_footer_offers_retry_failed_on_the_grid_of_a_failed_fan_out(size: tuple[int, int]) -> None:
    """`E` was bound but in no footer: after a fan-out failed, focusing its grid says it is there
    — at 80 columns too, and with every key still fitting the line."""
    from tests.tui import scenarios
    from tests.tui.conftest import feed

    app = make_app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        grid = app.screen.query_one("#grid")
        feed(app, scenarios.foreach_mid_run().events)  # running: nothing to retry yet
        await pilot.pause()
        grid.focus()
        await pilot.pause()
        assert not any("Retry" in k for k in _footer_keys(app))  # at most dimmed, until the run ends

        feed(app, scenarios.foreach_failure_clusters().events)  # finished, 36 items failed
        await pilot.pause()
        grid.focus()
        await pilot.pause()
        await pilot.pause()
        keys = _footer_keys(app)
        assert "E Retry failed" in keys and "q Quit" in keys
        footer = app.screen.query_one("Footer")
        assert footer.virtual_size.width <= footer.size.width  # nothing cut off at the right


async def test_retry_failed_stays_dimmed_for_a_run_that_crashed() -> None:
    """A crashed run is not a finished one: retrying its items is refused, so `E` is not lit."""
    from runkon_flow.events import Panicked

    from tests.tui import scenarios
    from tests.tui.conftest import feed

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        grid = app.screen.query_one("#grid")
        script = scenarios.foreach_failure_clusters()
        events = [e for e in script.events if e.event.type not in ("RunCompleted", "RunCancelled")]
        feed(app, events)
        feed(app, [script.emit(Panicked(message="engine bug"))])
        await pilot.pause()
        assert app.view.status == "crashed"
        grid.focus()
        await pilot.pause()
        await pilot.pause()
        assert "E Retry failed" in _footer_keys(app, lit=False)
        assert "E Retry failed" not in _footer_keys(app)  # dimmed, as the refusal says


async def test_the_footer_offers_rerun_from_here_on_the_tree_of_a_finished_run() -> None:
    from tests.tui import scenarios
    from tests.tui.conftest import feed

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        tree = app.screen.query_one("#tree")
        tree.focus()
        await pilot.pause()
        assert not any(k.startswith("R ") for k in _footer_keys(app, lit=False))  # nothing ran yet
        feed(app, scenarios.failed_run().events)
        await pilot.pause()
        tree.focus()
        await pilot.press("down")  # a step under the cursor: what R reruns from
        await pilot.pause()
        await pilot.pause()
        assert "R Rerun" in _footer_keys(app)  # shortened at 80 columns
        footer = app.screen.query_one("Footer")
        assert footer.virtual_size.width <= footer.size.width


async def test_the_footer_offers_the_failure_clusters_keys_when_the_list_is_focused_at_80_columns() -> None:
    """The clusters' heading hint is cut to `failure clusters (3) …` in a narrow pane, and the
    footer had neither `enter` nor `e`: a focused list now says its keys there, and they work."""
    from runkon_tui.widgets.cluster_list import ClusterList
    from tests.tui import scenarios
    from tests.tui.conftest import feed

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_failure_clusters().events)  # finished, 36 items in 3 clusters
        await pilot.pause()
        clusters = app.screen.query_one("#clusters", ClusterList)
        clusters.focus()
        await pilot.pause()
        await pilot.pause()
        keys = _footer_keys(app)
        assert "⏎ Show" in keys and "e Retry" in keys, keys
        footer = app.screen.query_one("Footer")
        assert footer.virtual_size.width <= footer.size.width  # nothing cut off at the right
        await pilot.press("enter")
        await pilot.pause()
        assert app.main_screen.grid.cluster == clusters.clusters[0].signature  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [(200, 50), (80, 24)])
async def test_retry_failed_works_from_the_run_screen_whatever_pane_has_the_focus(
    size: tuple[int, int],
) -> None:
    """`E` was the grid's alone: looking at a failed run from the tree or the log, the footer did
    not offer it and pressing it did nothing. It is the screen's now, shown while the fan-out on
    screen has failed items; with none, pressing it says there is nothing to retry."""
    from tests.tui import scenarios
    from tests.tui.conftest import feed

    app = make_app()
    asked: list[tuple[str, int]] = []
    app.request_retry = lambda fan, ids: asked.append((fan.name, len(ids)))  # type: ignore[method-assign]
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        feed(app, scenarios.foreach_failure_clusters().events)  # finished, 36 items failed
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None
        for pane in (screen.tree, screen.log_pane.query_one("LogView"), screen.workflow_list):
            pane.focus()
            await pilot.pause()
            await pilot.pause()
            assert "E Retry failed" in _footer_keys(app), (pane, _footer_keys(app))
            await pilot.press("E")
            await pilot.pause()
            assert asked[-1] == ("review-items", 36), pane
        assert len(asked) == 3

    app = make_app()
    app.request_retry = lambda fan, ids: asked.append((fan.name, len(ids)))  # type: ignore[method-assign]
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        feed(app, scenarios.gate_approved_and_done().events)  # its fan-out: every item completed
        await pilot.pause()
        screen = app.main_screen
        assert screen is not None
        screen.tree.focus()
        await pilot.pause()
        await pilot.pause()
        assert not any(k.startswith("E ") for k in _footer_keys(app, lit=False))
        app.clear_notifications()
        await pilot.press("E")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert "nothing to retry: foreach review-items has no failed or cancelled items" in said, said
        assert len(asked) == 3


def test_a_session_outside_an_app_names_the_main_screens_own_keys() -> None:
    """`RunSession` names keys through the app's `key_for` (the keymap); without an app (tests, a
    session of its own) through `DEFAULT_KEYS`, which must be the main screen's keys — a binding
    moved to another key would otherwise leave such notes naming the old one."""
    from runkon_tui.screens.main import MainScreen
    from runkon_tui.session import DEFAULT_KEYS

    own = {b.id: b.key.split(",")[0] for b in MainScreen.BINDINGS if isinstance(b, Binding)}
    assert {binding_id: own.get(binding_id) for binding_id in DEFAULT_KEYS} == DEFAULT_KEYS


def _gate_held_by_an_engine() -> tuple[InMemoryStore, str, str]:
    """A store with one run of review-pr waiting at its gate, whose lease an engine holds: (the
    store, the run's id, the gate's step id)."""
    from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepStatus, StepUpdate
    from runkon_flow.runtime.lease import new_owner_token

    store = InMemoryStore()
    run = store.create_run(NewRun(workflow_name="review-pr"))
    step = store.insert_step(NewStep(run.id, "human_approval", role="gate", gate_type="human_approval"))
    store.update_step(step, StepUpdate(generation=run.generation, status=StepStatus.WAITING))
    store.update_run_status(run.id, RunStatus.RUNNING, None, None)
    store.set_waiting_blocked_on(run.id, {"type": "human_approval", "gate_name": step})
    assert store.acquire_lease(run.id, new_owner_token(), 600) is not None  # an engine holds it
    return store, run.id, step


async def test_the_runs_list_and_the_gate_inbox_name_their_own_keys_as_remapped(tmp_path: Path) -> None:
    """Their hint lines named `enter`, `space`, `a` and `x` whatever the keymap said — keys that
    then did nothing there (`App.key_for` knew the main screen's bindings only)."""
    from textual.widgets import Static

    from runkon_tui.screens.inbox import GateInboxScreen
    from runkon_tui.screens.runs import RunsScreen

    store, run_id, step = _gate_held_by_an_engine()
    keymap = {
        "open_run": "o",
        "gate_inbox_mark": "m",
        "gate_inbox_mark_all": "M",
        "gate_inbox_approve": "ctrl+o",
        "gate_inbox_reject": "ctrl+x",
    }
    app = make_app(store=store, config=TuiConfig(tmp_path / "tui.yaml", keymap=keymap))
    status = lambda: str(app.screen.query_one(app.screen.STATUS, Static).render())  # type: ignore[attr-defined]  # noqa: E731
    async with app.run_test(size=(200, 30)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rows, what="the runs")
        assert "· o follows a live run, opens a finished one read-only · r resumes" in status(), status()
        assert (
            app.screen.unavailable_reason("resume_run")
            == (  # type: ignore[attr-defined]
                f"run …{run_id[-8:]} of review-pr waits at a gate: o opens it to answer the gate"
            )
        )
        await pilot.press("escape")
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(app.screen, "gates", None), what="the inbox")
        assert isinstance(app.screen, GateInboxScreen)
        assert "· m marks · M marks all · ctrl+o approves · ctrl+x rejects (the marked" in status(), status()
        await pilot.press("m")  # the key it names marks the gate
        await pilot.pause()
        assert app.screen.marked == {step}


def _labels(screen: object) -> list[str]:
    from textual.widgets import Button

    return [str(button.label) for button in screen.query(Button)]  # type: ignore[attr-defined]


async def test_every_dialogs_buttons_name_the_keys_the_keymap_gives(tmp_path: Path) -> None:
    """The dialogs' buttons said `Run (ctrl+s)`, `Approve (ctrl+y)`, `Back (esc)`, `Yes (y)`,
    `Stay (s)` whatever the keymap said: with those ids remapped, the key a label named did
    nothing. Each names the key its binding has now, and that key does what the button does."""
    from runkon_tui.screens.confirm import ConfirmScreen
    from runkon_tui.screens.inputs import InputsScreen
    from runkon_tui.screens.main import MainScreen
    from runkon_tui.screens.quit import QuitScreen

    keymap = {
        "form_run": "f5",
        "form_cancel": "f6",
        "gate_approve": "f7",
        "gate_reject": "f8",
        "gate_close": "f9",
        "confirm_yes": "j",
        "confirm_no": "k",
        "quit_stay": "w",
        "quit_cancel": "z",
        "quit_keep": "o",
    }
    app = make_app(config=TuiConfig(tmp_path / "tui.yaml", keymap=keymap))
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "review-one")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InputsScreen), what="inputs form")
        assert _labels(app.screen) == ["Cancel (f6)", "Run (f5)"]
        from textual.widgets import Input

        app.screen.query_one("#input-0", Input).value = "x.py"
        await pilot.press("f5")  # the key the button names starts the run
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")

        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="gate dialog")
        assert _labels(app.screen) == ["Approve (f7)", "Back (f9)"]
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog closed")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, GateScreen), what="reject dialog")
        assert _labels(app.screen) == ["Reject (f8)", "Back (f9)"]
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog closed")

        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert [label.split(" (")[1] for label in _labels(app.screen)] == ["k)", "j)"]
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the question closed")

        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit question")
        assert _labels(app.screen) == ["Stay (w)", "Cancel run (z)", "Keep running in background (o)"]
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="stayed")
        assert app.run_active
        app.host.finish()  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not app.run_active)


async def test_the_inbox_note_dialogs_buttons_name_the_keys_the_keymap_gives(tmp_path: Path) -> None:
    """`Approve 1 gate (ctrl+y)` / `Back (esc)` named the default keys with `inbox_note_approve`
    and `inbox_note_close` remapped."""

    from runkon_tui.screens.inbox import BatchNoteScreen, GateInboxScreen

    store = _gate_held_by_an_engine()[0]
    keymap = {"inbox_note_approve": "f7", "inbox_note_reject": "f8", "inbox_note_close": "f9"}
    app = make_app(store=store, config=TuiConfig(tmp_path / "tui.yaml", keymap=keymap))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(app.screen, "gates", None), what="the inbox")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="note dialog")
        assert _labels(app.screen) == ["Approve 1 gate (f7)", "Back (f9)"]
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, GateInboxScreen), what="the note closed")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchNoteScreen), what="note dialog")
        assert _labels(app.screen) == ["Reject 1 gate (f8)", "Back (f9)"]


async def test_the_quit_question_with_long_remapped_keys_still_fits_80_columns(tmp_path: Path) -> None:
    """`Keep running in background (ctrl+b)` beside `Stay (ctrl+g)` and `Cancel run (ctrl+k)` ran
    past the dialog's edge at 80 columns, cut to `(c`: with keys that long it says `Keep running`."""
    from textual.containers import Vertical

    from runkon_tui.screens.quit import QuitScreen

    keymap = {"quit_keep": "ctrl+b", "quit_cancel": "ctrl+k", "quit_stay": "ctrl+g"}
    app = make_app(config=TuiConfig(tmp_path / "tui.yaml", keymap=keymap))
    app.host.script = gate_script  # type: ignore[union-attr]
    async with app.run_test(size=(80, 24)) as pilot:
        await start_review_run(pilot, app)
        await wait_for(pilot, lambda: app.view.waiting_gates(), what="gate waiting")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit question")
        await pilot.pause()
        assert _labels(app.screen) == ["Stay (ctrl+g)", "Cancel run (ctrl+k)", "Keep running (ctrl+b)"]
        from textual.widgets import Button

        inside = app.screen.query_one(Vertical).content_region
        for button in app.screen.query(Button):
            assert inside.contains_region(button.region), (str(button.label), button.region, inside)
        app.host.finish()  # type: ignore[union-attr]
