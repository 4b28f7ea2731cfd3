"""A dashboard that runs runs in its own process (`--run-in dashboard`) lets its store's calls
wait out a PostgreSQL outage (RUNKON_PG_OUTAGE_S), on the engine's and the workers' threads,
never the UI thread. While they wait, the screen says so — a toast and the engine log — and says
so again when the server is back; before, nothing showed until the run failed. On a throwaway
server of the test's own, stopped and started again."""

from __future__ import annotations

import threading

import pytest
from runkon_flow.persistence.models import NewRun

from tests import pg, pgserver
from tests.tui.conftest import make_app, wait_for


@pytest.mark.slow
async def test_the_screen_shows_a_database_outage_while_a_store_call_waits_it_out() -> None:
    from runkon_flow.persistence.postgres import PostgresStore

    with pg.own_server() as (directory, dsn):
        store = PostgresStore(dsn, outage_s=60)
        try:
            run_id = store.create_run(NewRun(workflow_name="review-pr")).id
            app = make_app(store=store)
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.pause()

                def logged(words: str) -> list[str]:
                    return [line.text for line in app.view.engine_log if words in line.text]

                pgserver.halt(directory)
                try:
                    read: list[object] = []
                    reader = threading.Thread(target=lambda: read.append(store.get_run(run_id)), daemon=True)
                    reader.start()  # a store call on a thread of its own, as the engine's are
                    await wait_for(
                        pilot, lambda: logged("unreachable"), what="the outage on screen", timeout=30
                    )
                    assert reader.is_alive() and not read  # still waiting for the server
                    (said,) = logged("unreachable")
                    assert "its calls wait and retry for up to 60 s (RUNKON_PG_OUTAGE_S)" in said
                    assert not [line for line in app.view.error_log if "unreachable" in line.text]
                finally:
                    pgserver.start_again(directory)
                await wait_for(pilot, lambda: logged("is back after"), what="the server back", timeout=30)
                reader.join(30)
                assert [getattr(run, "id", None) for run in read] == [run_id]
        finally:
            store.close()
