"""The dashboard's search mode (`s`): a pattern through every step's and item's stored output of
the run on screen, hits grouped by step or item, `enter` opening the hit in the log pane — the
same search as `runkon-flow grep` (runkon_flow.observe.search). Plus one 80×24 snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from runkon_flow.persistence.memory import InMemoryStore
from runkon_flow.persistence.models import (
    FanOutItemStatus,
    FanOutItemUpdate,
    NewEvent,
    NewRun,
    NewStep,
    RunStatus,
    StepUpdate,
)
from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.workspace import Workspace
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from runkon_tui.app import RunkonApp
from runkon_tui.screens.main import MainScreen
from runkon_tui.screens.search import SearchScreen
from runkon_tui.widgets.log_pane import LogPane
from tests.tui import scenarios
from tests.tui.conftest import make_app, pane_lines, wait_for

FAN = """workflow fan {
  script prep { run = "echo preparing" }
  foreach each {
    over         = static
    scope        = { items = "a,b,c" }
    max_parallel = 1
    workflow     = one
    inputs       = { name = "{{item.id}}" }
  }
}
"""
ONE = """workflow one {
  inputs { name default = "" }
  script say {
    run = "echo hello {{name}}; echo more {{name}}; test {{name}} != b || { echo boom {{name}} >&2; exit 3; }"
  }
}
"""


@pytest.fixture
def finished(tmp_path: Path) -> tuple[Path, SqliteStore, str]:
    """A finished fan-out run (item b failed) in a SQLite store, executed by a real engine."""
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "fan.wf").write_text(FAN)
    (folder / "one.wf").write_text(ONE)
    store = SqliteStore(tmp_path / "runs.db")
    ws = Workspace([folder], store)
    run_id = ws.create_run("fan", {})
    ws.execute(run_id)
    return folder, store, run_id


def app_over(finished: tuple[Path, SqliteStore, str]) -> tuple[RunkonApp, str]:
    """The dashboard over the `finished` run's folder and store, and the run's id."""
    folder, store, run_id = finished
    return make_app(host=Workspace([folder], store), store=store, dirs=[folder]), run_id


def results_text(screen: SearchScreen) -> list[str]:
    options = screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def open_run_and_search(pilot: Pilot, run_id: str, pattern: str) -> SearchScreen:
    app = pilot.app
    app.open_past_run(run_id)  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: app.view.root_run_id == run_id, what="the past run")  # type: ignore[attr-defined]
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen), what="the search screen")
    screen = app.screen
    assert isinstance(screen, SearchScreen)
    screen.query_one(Input).value = pattern
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.result is not None and not screen.searching, what="the results")
    return screen


async def open_hit(pilot: Pilot, title: str, *, title_ends: bool = False) -> LogPane:
    """`enter` on the highlighted hit: back on the main screen, its log pane showing the hit's
    step or item output at the hit — its title `title` (or ending so, `title_ends`)."""
    app = pilot.app
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="back on the main screen")
    pane = app.screen.query_one(LogPane)

    def shown() -> bool:
        return pane.output_title.endswith(title) if title_ends else pane.output_title == title

    await wait_for(pilot, shown, what="the hit in the log")
    return pane


async def test_search_lists_hits_grouped_by_item_and_enter_opens_the_hit_in_the_log(
    finished: tuple[Path, SqliteStore, str],
) -> None:
    app, run_id = app_over(finished)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run_and_search(pilot, run_id, "boom|more c")
        assert results_text(screen) == [
            "✗ each[b] › say  (failed, 1 line)",
            "       3  boom b",  # once: the error's `boom b` is this stderr line again
            "✓ each[c] › say  (completed, 1 line)",
            "       2  more c",
        ]
        status = str(screen.query_one("#search-status", Static).render())
        assert status.startswith("2 matching lines in 2 of 5 steps and items")
        pane = await open_hit(pilot, "each[b] › say · line 3")  # the first hit: line 3 of item b's step
        assert pane.mode == "output"
        assert pane_lines(pane) == [
            ("hello b", "info"),
            ("more b", "info"),
            ("boom b", "warning"),  # the hit, marked
            ("error: Script 'say' exited with code 3", "error"),
            ("error: boom b", "error"),
        ]
        assert not pane.view.following  # the view stays at the hit


async def test_a_big_run_is_searched_as_it_is_read_and_a_hit_still_opens_its_whole_step(
    finished: tuple[Path, SqliteStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `STREAM_ABOVE` the search holds no stored line (a 200 MB run was read whole into
    memory to list 2,000 hits); `enter` on a hit reads its step's lines again for the log pane."""
    from runkon_flow.observe import outputs

    monkeypatch.setattr(outputs, "STREAM_ABOVE", 10)  # the run's lines are past it
    app, run_id = app_over(finished)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run_and_search(pilot, run_id, "boom|more c")
        assert screen.result is not None
        assert all(not g.source.lines and g.source.stored is not None for g in screen.result.groups)
        assert results_text(screen)[:2] == ["✗ each[b] › say  (failed, 1 line)", "       3  boom b"]
        pane = await open_hit(pilot, "each[b] › say · line 3")
        assert pane_lines(pane) == [
            ("hello b", "info"),
            ("more b", "info"),
            ("boom b", "warning"),  # the hit, marked
            ("error: Script 'say' exited with code 3", "error"),
            ("error: boom b", "error"),
        ]


async def test_enter_on_a_hit_moves_the_tree_and_the_grid_to_where_it_is(
    finished: tuple[Path, SqliteStore, str],
) -> None:
    """A hit inside an item: the tree goes to the foreach, the grid to the item (its detail under
    the grid), the log to the hit. A hit in a top-level step: the tree goes to that step."""
    app, run_id = app_over(finished)
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        assert main is not None
        screen = await open_run_and_search(pilot, run_id, "more c")
        pane = await open_hit(pilot, "each[c] › say · line 2")
        assert main.tree.cursor_node is not None and main.tree.cursor_node.data.path == "body.1"
        grid = main.grid
        assert grid.fan is not None and grid.fan.ids[grid.cursor_item] == "c"  # type: ignore[index]
        assert "selected: c ✓ completed" in str(main.item_detail.render())
        assert pane.mode == "output" and pane.sources["output"].get(1) == ("more c", "warning")

        screen = await open_run_and_search(pilot, run_id, "preparing")
        pane = await open_hit(pilot, "prep · line 1")
        assert main.tree.cursor_node.data.path == "body.0"  # type: ignore[union-attr]
        assert pane.sources["output"].get(0) == ("preparing", "warning")
        assert screen is not app.screen


async def test_a_hit_on_an_item_the_cluster_filter_hides_takes_the_filter_off_everywhere(
    finished: tuple[Path, SqliteStore, str],
) -> None:
    """The grid filtered to item b's failure cluster, a hit in item c: the grid shows every item
    again with the cursor on c, and the cluster list and the pane title no longer name a cluster."""
    app, run_id = app_over(finished)
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        assert main is not None
        app.open_past_run(run_id)
        await wait_for(pilot, lambda: app.view.root_run_id == run_id, what="the past run")
        main.tree.select_uid("body.1")
        await wait_for(pilot, lambda: main.cluster_list.clusters, what="the failure clusters")
        main.cluster_list.action_pick()
        await wait_for(pilot, lambda: main.grid.cluster is not None, what="the cluster filter")
        assert "cluster 1" in str(main.grid_pane.border_title)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen), what="the search screen")
        search = app.screen
        assert isinstance(search, SearchScreen)
        search.query_one(Input).value = "more c"
        await pilot.press("enter")
        await wait_for(pilot, lambda: search.result is not None and not search.searching, what="the results")
        await pilot.press("enter")
        pane = main.query_one(LogPane)
        await wait_for(
            pilot, lambda: pane.output_title == "each[c] › say · line 2", what="the hit in the log"
        )
        grid = main.grid
        assert grid.cluster is None and grid.fan is not None and grid.visible_count == len(grid.fan.ids)
        assert grid.fan.ids[grid.cursor_item] == "c"  # type: ignore[index]
        assert main.cluster_list.picked is None
        await pilot.pause()
        assert "cluster" not in str(main.grid_pane.border_title)


async def test_a_capital_letter_makes_the_search_case_sensitive_and_a_miss_is_said(
    finished: tuple[Path, SqliteStore, str],
) -> None:
    app, run_id = app_over(finished)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run_and_search(pilot, run_id, "HELLO")
        assert results_text(screen) == []
        status = str(screen.query_one("#search-status", Static).render())
        assert status == "no match for HELLO in 5 steps and items"
        screen.query_one(Input).value = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.hits, what="the lower-case search")
        assert [h.source.label for h in screen.hits] == ["each[a] › say", "each[b] › say", "each[c] › say"]


async def test_a_bad_pattern_is_explained_and_esc_goes_back(finished: tuple[Path, SqliteStore, str]) -> None:
    app, run_id = app_over(finished)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_past_run(run_id)
        await wait_for(pilot, lambda: app.view.root_run_id == run_id, what="the past run")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen), what="the search screen")
        screen = app.screen
        screen.query_one(Input).value = "("
        await pilot.press("enter")
        await pilot.pause()
        status = str(screen.query_one("#search-status", Static).render())
        assert status == "bad pattern '(': missing ), unterminated subpattern at position 0"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen again")


async def test_search_is_dimmed_before_any_run() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.screen.check_action("search", ()) is None
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


# --------------------------------------------------------------------------- snapshot

RUN = "01HZZSEARCH000000000000001"
LONG = "warning: the import of os in b.py is unused, and so is the import of sys two lines below it"


def _stored_fan_out() -> InMemoryStore:
    """A finished fan-out with stored output, written by hand so the picture never changes."""
    store = InMemoryStore(clock=lambda: datetime.fromtimestamp(scenarios.T0, UTC))
    store.create_run(NewRun(workflow_name="review", run_id=RUN))
    events: list[NewEvent] = []

    def step(run_id: str, name: str, position: int, lines: list[str], error: str | None = None) -> None:
        step_id = store.insert_step(NewStep(run_id, name, retry_count=0, position=position))
        if error:
            store.update_step(step_id, StepUpdate.failed(0, error))
        else:
            store.update_step(step_id, StepUpdate.completed(0, result_text="done"))
        for line in lines:
            payload = {"step_id": step_id, "step_name": name, "line": line}
            events.append(NewEvent(scenarios.T0, run_id, "StepOutput", json.dumps(payload)))

    step(RUN, "lint", 0, ["checking 12 files", "warning: unused import os in a.py", LONG])
    fan = store.insert_step(NewStep(RUN, "foreach:files", role="foreach", retry_count=0, position=1))
    files = [f"file-{i}" for i in range(4)]
    item_rows = store.insert_fan_out_items(fan, [("file", f, "", {}) for f in files])
    for n, (item, row) in enumerate(zip(files, item_rows, strict=True)):
        child = store.create_run(
            NewRun(
                workflow_name="review-file",
                run_id=f"01HZZSEARCHCHILD0000000000{n}",
                parent_workflow_run_id=RUN,
            )
        ).id
        if n % 2:
            step(
                child,
                "review",
                0,
                [f"reviewing {item}", "warning: line too long (131)"],
                f"timeout in {item}",
            )
            status = FanOutItemStatus.FAILED
        else:
            step(child, "review", 0, [f"reviewing {item}", "ok"])
            status = FanOutItemStatus.COMPLETED
        store.update_run_status(child, RunStatus.FAILED if n % 2 else RunStatus.COMPLETED, None, None)
        store.batch_update_fan_out_items([(row, FanOutItemUpdate.terminal(status, child))])
    store.update_step(fan, StepUpdate.failed(0, "foreach 'files': 2 of 4 items failed"))
    store.update_run_status(RUN, RunStatus.FAILED, None, "step 'files' failed")
    store.append_events(RUN, events)
    return store


def test_small_search_results(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        screen = SearchScreen(RUN)
        await pilot.app.push_screen(screen)
        screen.query_one(Input).value = "warning"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.result is not None and not screen.searching, what="the results")
        await pilot.pause()

    assert snap_compare(make_app(store=_stored_fan_out()), terminal_size=(80, 24), run_before=run_before)


async def test_enter_on_a_hit_in_a_called_workflow_moves_the_tree_into_the_call(tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "outer.wf").write_text(
        'workflow outer {\n  script prep { run = "echo prep" }\n  call workflow inner\n}\n'
    )
    (folder / "inner.wf").write_text('workflow inner {\n  script compile { run = "echo compiled it" }\n}\n')
    store = SqliteStore(tmp_path / "runs.db")
    ws = Workspace([folder], store)
    run_id = ws.create_run("outer", {})
    ws.execute(run_id)
    app = make_app(host=ws, store=store, dirs=[folder])
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main_screen
        assert main is not None
        await open_run_and_search(pilot, run_id, "compiled")
        await open_hit(pilot, "compile · line 1", title_ends=True)
        node = main.tree.cursor_node
        assert node is not None and node.data is not None and node.data.uid == "body.1/body.0"
    store.close()


async def _searched_for_sys(app: RunkonApp, pilot: Pilot[int]) -> SearchScreen:
    """The search screen of the stored fan-out, showing the hits for `sys`."""
    await pilot.pause()
    screen = SearchScreen(RUN)
    await app.push_screen(screen)
    screen.query_one(Input).value = "sys"
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.result is not None and not screen.searching, what="the results")
    return screen


async def test_a_long_hit_wraps_under_itself_and_again_when_the_terminal_is_resized() -> None:
    app = make_app(store=_stored_fan_out())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _searched_for_sys(app, pilot)
        hit = results_text(screen)[1].split("\n")
        assert len(hit) == 2 and hit[0].startswith("       3  warning: the import")
        assert hit[1].startswith(" " * 10) and not hit[1][10].isspace()  # under the text, not the number
        assert (hit[0][10:] + " " + hit[1][10:]).split() == LONG.split()
        await pilot.resize_terminal(140, 24)
        await wait_for(pilot, lambda: "\n" not in results_text(screen)[1], what="one line at 140 columns")
        results = screen.query_one(OptionList)
        assert screen.focused is results and results.highlighted == 1  # the same hit, still in focus


async def test_a_resize_while_a_new_search_runs_keeps_saying_it_searches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The re-wrap on resize redraws the results on screen; during a new search those are the
    last search's, and showing them again would end the new search's "searching…" early."""
    app = make_app(store=_stored_fan_out())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _searched_for_sys(app, pilot)
        monkeypatch.setattr(screen, "_search", lambda *args: None)  # the new search never ends here
        box = screen.query_one(Input)
        box.focus()
        box.value = "warning"
        await pilot.press("enter")
        assert screen.searching
        await pilot.resize_terminal(140, 24)
        await pilot.pause()
        await pilot.pause()
        status = str(screen.query_one("#search-status", Static).render())
        assert screen.searching and status.startswith("searching for warning")


async def test_a_run_of_one_step_is_counted_in_words_that_read_right(
    finished: tuple[Path, SqliteStore, str],
) -> None:
    folder, store, _ = finished
    ws = Workspace([folder], store)
    run_id = ws.create_run("one", {"name": "x"})
    ws.execute(run_id)
    app = make_app(host=ws, store=store, dirs=[folder])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run_and_search(pilot, run_id, "nothing like it")
        status = str(screen.query_one("#search-status", Static).render())
        assert status == "no match for nothing like it in 1 step or item"
        screen.query_one(Input).value = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.hits, what="the hit")
        status = str(screen.query_one("#search-status", Static).render())
        assert status.startswith("1 matching line in 1 of 1 step or item ·"), status


async def test_a_very_long_hit_shows_a_few_rows_around_its_match() -> None:
    """A 4,000-character line (a minified file, a blob) took ~60 rows: one hit filled the screen,
    the match somewhere out of sight, and the scrollbar it brought made every row wrap again (a
    two-cell stub under each). It is cut to a few rows around the first match now."""
    max_rows = 4  # screens.search.MAX_HIT_ROWS
    store = InMemoryStore(clock=lambda: datetime.fromtimestamp(scenarios.T0, UTC))
    store.create_run(NewRun(workflow_name="blob", run_id=RUN))
    step_id = store.insert_step(NewStep(RUN, "dump", retry_count=0, position=0))
    store.update_step(step_id, StepUpdate.completed(0, result_text="done"))
    lines = ["a" * 2000 + f" needle{n} " + "b" * 2000 for n in range(5)]
    events = [
        NewEvent(
            scenarios.T0,
            RUN,
            "StepOutput",
            json.dumps({"step_id": step_id, "step_name": "dump", "line": line}),
        )
        for line in lines
    ]
    store.append_events(RUN, events)
    store.update_run_status(RUN, RunStatus.COMPLETED, None, None)
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = SearchScreen(RUN)
        await app.push_screen(screen)
        screen.query_one(Input).value = "needle"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.result is not None and not screen.searching, what="the results")
        hits = results_text(screen)[1:]
        assert len(hits) == 5
        width = screen.query_one(OptionList).content_region.width - 2  # the scrollbar it shows
        for n, hit in enumerate(hits):
            rows = hit.split("\n")
            assert len(rows) <= max_rows, len(rows)
            assert f"needle{n}" in hit.replace("\n", "")
            assert all(len(row) <= width for row in rows), [len(row) for row in rows]
            assert rows[0].startswith(f"{n + 1:>8}  …") and rows[-1].endswith("…")


async def test_a_pattern_matching_more_lines_than_are_listed_lists_the_first_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pattern matching most lines of a big run (`.`, `e`) listed every one: millions of rows,
    seconds to show and hundreds of MB. The first SEARCH_LIMIT are listed, the rest counted."""
    import runkon_tui.screens.search

    monkeypatch.setattr(runkon_tui.screens.search, "SEARCH_LIMIT", 6, raising=False)
    app = make_app(store=_stored_fan_out())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = SearchScreen(RUN)
        await app.push_screen(screen)
        screen.query_one(Input).value = "i"  # 12 lines, in every step and item
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.result is not None and not screen.searching, what="the results")
        assert len(screen.hits) == 6
        heads = [text for text in results_text(screen) if not text.startswith(" ")]
        assert heads == [
            "✓ lint  (completed, 3 lines)",
            "✗ files  (failed, 1 line)",  # the foreach's error
            "✓ files[file-0] › review  (completed, 1 line)",
            "✗ files[file-1] › review  (failed, 3 lines)",  # all its lines counted, one listed
        ]
        status = str(screen.query_one("#search-status", Static).render())
        assert status.startswith(
            "first 6 of 12 matching lines in 6 of 6 steps and items — narrow the pattern to see the rest"
        ), status


async def test_q_is_a_letter_in_the_pattern_and_quits_from_the_results(
    finished: tuple[Path, SqliteStore, str],
) -> None:
    app, run_id = app_over(finished)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run_and_search(pilot, run_id, "boom")
        screen.query_one(Input).focus()
        await pilot.press("q")
        assert screen.query_one(Input).value.endswith("q") and app.is_running  # typed, not quit
        screen.query_one(OptionList).focus()
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
