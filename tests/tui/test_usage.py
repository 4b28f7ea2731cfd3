"""Usage in the dashboard, on the real engine: the tokens and cost agents report show beside
each step in the tree, summed for a foreach, and for the run in the header — live, in the exit
summary, and again when the run is opened from the store."""

from __future__ import annotations

import time
from pathlib import Path

from runkon_flow.persistence.sqlite import SqliteStore
from runkon_flow.workspace import Workspace

from tests.cli.test_cli_usage import ITEM_SH, ONE, PLAN, REVIEW, REVIEW_SH, SPEND
from tests.tui.conftest import make_app, select, wait_for


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
    app = make_app(host=Workspace([folder], store), store=store, dirs=[folder], clock=time.time)
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
