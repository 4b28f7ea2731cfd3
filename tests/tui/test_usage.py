"""Usage in the dashboard, on the real engine: the tokens and cost agents report show beside
each step in the tree, summed for a foreach, and for the run in the header — live, in the exit
summary, and again when the run is opened from the store."""

from __future__ import annotations

from pathlib import Path

from runkon_flow.persistence.sqlite import SqliteStore

from tests.cli.test_cli_usage import ITEM_SH, ONE, PLAN, REVIEW, REVIEW_SH, SPEND
from tests.tui.conftest import make_app, real_app, select, wait_for


def label(app, path: str) -> str:  # type: ignore[no-untyped-def]
    return app.main_screen.tree.nodes_by_uid[path].label.plain


async def test_usage_shows_in_the_tree_the_header_and_the_summary(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "wf"
    for name, text in {
        "spend.wf": SPEND,
        "one.wf": ONE,
        "agents/plan.md": PLAN,
        "agents/review.md": REVIEW,
        "review.sh": REVIEW_SH,
        "item.sh": ITEM_SH,
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    monkeypatch.chdir(folder)
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store)
    async with app.run_test(size=(160, 40)) as pilot:
        await select(pilot, app, "spend")
        await pilot.press("enter")
        ended = lambda: app.view.root is not None and not app.run_active  # noqa: E731
        await wait_for(pilot, ended, what="run end", timeout=60)
        assert app.view.status == "completed", app.view.summary_text()
        await pilot.pause()
        assert label(app, "body.0").endswith("1.2k tok · $0.01")
        assert label(app, "body.1").endswith("600 tok · $0.005")
        assert label(app, "body.2").endswith("45 tok · $0.003")  # the items' sum
        header = str(app.main_screen.header.render())
        assert header.endswith("3 items: 3 completed · 1.8k tok · $0.018")
        assert "usage: 1,845 tokens (1,530 in, 315 out) · 2 turns · $0.0180" in app.summary()
        run_id = app.view.root_run_id

        app.open_past_run(run_id)  # type: ignore[arg-type]
        await wait_for(pilot, lambda: app.view.read_only, what="past run")
        await pilot.pause()
        assert app.view.usage() is not None and app.view.usage().tokens == 1845  # type: ignore[union-attr]
        assert label(app, "body.2").endswith("45 tok · $0.003")
    store.close()


async def test_the_runs_screen_shows_what_each_run_spent_and_drops_it_first_when_narrow(
    tmp_path: Path,
) -> None:
    from runkon_flow.persistence.models import NewRun, NewStep, RunStatus, StepUpdate
    from runkon_flow.usage import Usage
    from textual.widgets import DataTable

    from runkon_tui.screens.runs import RunsScreen

    store = SqliteStore(tmp_path / "runs.db")
    for name, usage in (("quiet", None), ("spend", Usage(1530, 315, num_turns=2, cost_usd=0.018))):
        run = store.create_run(NewRun(workflow_name=name))
        step = store.insert_step(NewStep(run.id, "plan", retry_count=0, position=0))
        store.update_step(
            step,
            StepUpdate(
                generation=run.generation, status="completed", usage=usage.to_json() if usage else None
            ),
        )
        store.update_run_status(run.id, RunStatus.COMPLETED, None, None)
    app = make_app(store=store)

    def columns() -> list[str]:
        table = app.screen.query_one(DataTable)
        return [str(c.label) for c in table.columns.values()]

    def cell(workflow: str, column: str) -> str:
        table = app.screen.query_one(DataTable)
        row = next(
            table.get_row_at(i) for i in range(table.row_count) if str(table.get_row_at(i)[1]) == workflow
        )
        return str(row[columns().index(column)])

    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rows, what="the runs")
        await pilot.pause()
        assert columns() == ["", "workflow", "run id", "started", "duration", "steps", "usage"]
        assert cell("spend", "usage") == "1.8k tok · $0.018"
        assert cell("quiet", "usage") == ""
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: "usage" not in columns(), what="the usage column to go at 80 columns")
        assert columns() == ["", "workflow", "run id", "started", "duration", "steps"]
        assert cell("spend", "steps").strip() == "✓1"
    store.close()
