"""The inputs form and the gate dialog on a small terminal: their buttons stay on screen and
their fields scroll, however much the workflow or the gate asks."""

from __future__ import annotations

import pytest
from runkon_flow.dsl.parser import parse_workflow
from runkon_flow.observe.records import GateView
from textual.app import App
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.screen import Screen
from textual.widget import Widget

from runkon_tui.screens.gate import GateScreen
from runkon_tui.screens.inputs import InputsScreen
from tests.tui.conftest import wait_for

# Five inputs, each with a description: taller than 24 rows.
MANY_INPUTS = parse_workflow(
    "workflow release {\n"
    '  meta { title = "Release" description = "Cut a release and tell everyone" }\n'
    "  inputs {\n"
    + "".join(f'    field{n} required description = "What field {n} is for"\n' for n in range(5))
    + "  }\n"
    '  script s { run = "true" }\n'
    "}\n"
)

LONG_GATE = GateView(
    run_id="run",
    gate_name="ship",
    step_id="step",
    prompt="\n".join(f"line {n} of what to check before shipping" for n in range(12)),
    options={f"o{n}": f"option {n}" for n in range(8)},
)


class _Host(App[None]):
    def __init__(self, dialog: Screen[object]) -> None:
        super().__init__()
        self.dialog = dialog

    def on_mount(self) -> None:
        self.push_screen(self.dialog)


def _inside(widget: Widget, size: tuple[int, int]) -> bool:
    return Region(0, 0, *size).contains_region(widget.region) and widget.region.height > 0


@pytest.mark.parametrize("size", [(80, 24), (80, 16), (200, 50)])
async def test_the_inputs_forms_buttons_stay_on_screen_and_its_last_field_can_be_reached(
    size: tuple[int, int],
) -> None:
    app = _Host(InputsScreen(MANY_INPUTS, dict))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        screen = app.screen
        assert _inside(screen.query_one("#run"), size) and _inside(screen.query_one("#cancel"), size)
        last = screen.query_one("#input-4")
        last.focus()  # scrolled into view (smoothly: wait for it to settle)
        fields = screen.query_one(VerticalScroll)
        await wait_for(pilot, lambda: fields.region.contains_region(last.region), what="last field in view")


@pytest.mark.parametrize("size", [(80, 24), (80, 16)])
@pytest.mark.parametrize("intent", ["approve", "reject"])
async def test_the_gate_dialogs_buttons_stay_on_screen_with_a_long_prompt_and_many_options(
    size: tuple[int, int], intent: str
) -> None:
    app = _Host(GateScreen(LONG_GATE, intent))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        screen = app.screen
        assert _inside(screen.query_one(f"#{intent}"), size) and _inside(screen.query_one("#close"), size)
        note = screen.query_one("#note")
        note.focus()
        fields = screen.query_one(VerticalScroll)
        await wait_for(pilot, lambda: fields.region.contains_region(note.region), what="note in view")


async def test_a_long_heading_wraps_instead_of_being_cut_at_80_columns() -> None:
    heading = "Rerun import-records from foreach import-all (the steps before it are reused)"
    app = _Host(InputsScreen(MANY_INPUTS, dict, heading=heading))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = app.screen.query_one("#form-heading")
        assert shown.region.height == 2 and _inside(shown, (80, 24))
        text = " ".join(line.text.strip() for line in shown.render_lines(shown.region.reset_offset))
        assert text.endswith("are reused)")


@pytest.mark.parametrize("runs", [1, 3])
async def test_the_quit_questions_buttons_show_their_whole_labels_at_80_columns(runs: int) -> None:
    from textual.widgets import Button

    from runkon_tui.screens.quit import QuitScreen

    label = "Run …H80Z80FS of approve-deploy" if runs == 1 else "3 runs started here (a …1, b …2, c …3)"
    app = _Host(QuitScreen(label, runs=runs, can_keep=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        row = app.screen.query_one("Horizontal")  # what lies past its content area is clipped
        for button in app.screen.query(Button):
            text = str(button.label)
            assert row.content_region.contains_region(button.region), text
            assert button.region.width >= len(text) + 2, text  # the label is not cut
