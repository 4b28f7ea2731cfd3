"""Failure clusters in the dashboard, on the real engine: a finished fan-out's failed items group
by what went wrong under the grid; enter filters the grid to a cluster; `e` retries it (after the
same confirmation as the grid's retry keys) and only its items run again."""

from __future__ import annotations

from pathlib import Path

from runkon_flow.persistence.models import FanOutItemStatus, RunStatus
from runkon_flow.persistence.sqlite import SqliteStore

from runkon_tui.screens.confirm import ConfirmScreen
from runkon_tui.status import short_id
from runkon_tui.widgets.cluster_list import ClusterList
from tests.tui.conftest import real_app, select, wait_for

ITEMS = [f"i{n:02d}" for n in range(30)]
FAN = (
    "workflow clusters {\n  foreach each {\n    over = static\n"
    f'    scope = {{ items = "{",".join(ITEMS)}" }}\n'
    '    max_parallel = 4\n    workflow = one\n    inputs = { name = "{{item.id}}" }\n  }\n}\n'
)
ONE = 'workflow one {\n  inputs { name default = "" }\n  script work { run = "sh work.sh {{name}}" }\n}\n'
# Items 0, 3, 6 … 24 fail, kind n/3 % 3, with messages that differ per item; `fixed-<kind>` fixes a kind.
WORK = r"""n=$(echo "$1" | sed 's/^i0*//'); n=${n:-0}
if [ $((n % 3)) -ne 0 ] || [ "$n" -gt 24 ]; then exit 0; fi
kind=$((n / 3 % 3))
test -f "$FIXED/fixed-$kind" && exit 0
case $kind in
  0) echo "rate limited: retry after $((n + 7))s" >&2 ;;
  1) echo "schema mismatch in /data/$1.json line $((n * 3))" >&2 ;;
  2) echo "connection reset by 10.0.$n.7:443" >&2 ;;
esac
exit 3
"""


def kind(k: int) -> set[str]:
    return {f"i{n:02d}" for n in range(0, 25, 3) if n // 3 % 3 == k}


async def test_a_cluster_is_filtered_to_and_retried_from_the_dashboard(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "clusters.wf").write_text(FAN)
    (folder / "one.wf").write_text(ONE)
    (folder / "work.sh").write_text(WORK)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("FIXED", str(folder))
    store = SqliteStore(tmp_path / "runs.db")
    app = real_app(folder, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, app, "clusters")
        await pilot.press("enter")
        ended = lambda: app.view.root is not None and not app.run_active  # noqa: E731
        await wait_for(pilot, ended, what="run end", timeout=60)
        assert app.view.status == "failed"
        screen = app.main_screen
        assert screen is not None
        clusters = screen.query_one("#clusters", ClusterList)
        await wait_for(pilot, lambda: len(clusters.clusters) == 3, what="three clusters")
        assert [(c.count, set(c.item_ids)) for c in clusters.clusters] == [(3, kind(k)) for k in range(3)]
        label = "Script 'work' exited with code <n> · schema mismatch in <path> line <n>"
        assert clusters.clusters[1].label == label
        assert clusters.display
        # The list leads with what tells the clusters apart; the start they share is said once.
        shown = [str(clusters.get_option_at_index(i).prompt) for i in range(clusters.option_count)]
        assert shown[0].endswith("· all: Script 'work' exited with code <n>[/]")
        assert [line.split("×[/] ")[1] for line in shown[1:]] == [
            "rate limited: retry after <n>s",
            "schema mismatch in <path> line <n>",
            "connection reset by <n>:<n>",
        ]

        clusters.focus()
        await pilot.press("down", "enter")  # the second cluster: the grid shows its items only
        grid = screen.grid
        assert grid.visible_count == 3
        assert {grid.fan.ids[grid.item_at(p)] for p in range(3)} == kind(1)  # type: ignore[union-attr,index]
        assert "[$warning]cluster 2[/$warning] · 3 shown" in str(screen.grid_pane.border_title)

        run_id = app.view.root_run_id
        first_step = next(s for s in store.get_steps(run_id) if s.role == "foreach")  # type: ignore[arg-type]
        first = {i.item_id: i for i in store.get_fan_out_items(first_step.id)}
        (folder / "fixed-1").touch()
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="retry confirmation")
        assert "Retry 3 items of foreach 'each' (i03, i12, i21)?" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        attempts = lambda: sum(1 for s in store.get_steps(run_id) if s.role == "foreach")  # type: ignore[arg-type]  # noqa: E731
        await wait_for(pilot, lambda: attempts() == 2 and not app.run_active, what="retry to end", timeout=60)
        assert app.view.status == "failed"  # the other two kinds still fail
        await wait_for(pilot, lambda: len(clusters.clusters) == 2, what="two clusters left")
        assert [set(c.item_ids) for c in clusters.clusters] == [kind(0), kind(2)]
        # A retried item says which attempt it is on and keeps its earlier, failed one.
        grid.focus()
        # The retried cluster is gone, and so is the grid's filter to it: every item shows again.
        assert grid.cluster is None and grid.visible_count == len(ITEMS)
        assert "cluster" not in str(screen.grid_pane.border_title)
        grid.move_to_item(grid.fan.index["i12"])  # type: ignore[union-attr]
        await pilot.pause()
        detail = str(screen.item_detail.render())
        earlier = first["i12"].child_run_id or ""
        assert "selected: i12 ✓ completed" in detail
        assert f"attempt 2 · earlier: run {short_id(earlier)} ✗ failed" in detail

        # Fix the other two kinds and retry what is left: the run ends completed.
        (folder / "fixed-0").touch()
        (folder / "fixed-2").touch()
        await pilot.press("E")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="second confirmation")
        assert "Retry 6 items of foreach 'each'" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        await wait_for(pilot, lambda: attempts() == 3 and not app.run_active, what="last retry", timeout=60)
        assert app.view.status == "completed"
        await wait_for(pilot, lambda: not clusters.clusters, what="no cluster left")
        assert not clusters.display
        assert grid.fan is not None and grid.fan.count("completed") == len(ITEMS)
        grid.move_to_item(grid.fan.index["i00"])
        await pilot.pause()
        earlier = first["i00"].child_run_id or ""
        assert f"attempt 2 · earlier: run {short_id(earlier)} ✗ failed" in str(screen.item_detail.render())

        # The same run opened from the history (read back from rows) says the same.
        live = app.view
        app.open_past_run(run_id)  # type: ignore[arg-type]
        reopened = lambda: app.view is not live and app.view.root_run_id == run_id and app.view.fanouts()  # noqa: E731
        await wait_for(pilot, reopened, what="the past run")
        await pilot.pause()
        fan = screen.grid.fan
        assert fan is not None and fan.count("completed") == len(ITEMS)
        screen.grid.move_to_item(fan.index["i21"])
        await pilot.pause()
        earlier = first["i21"].child_run_id or ""
        assert f"attempt 2 · earlier: run {short_id(earlier)}" in str(screen.item_detail.render())

    assert store.get_run(run_id).status is RunStatus.COMPLETED  # type: ignore[union-attr]
    latest = max(
        (s for s in store.get_steps(run_id) if s.role == "foreach"), key=lambda s: (s.started_at, s.id)
    )  # type: ignore[arg-type]
    rows = {i.item_id: i for i in store.get_fan_out_items(latest.id)}
    assert all(row.status is FanOutItemStatus.COMPLETED for row in rows.values())
    for item in kind(0) | kind(1) | kind(2):
        assert (rows[item].attempt, rows[item].previous_child_run_id) == (2, first[item].child_run_id)
        assert first[item].status is FanOutItemStatus.FAILED  # the earlier attempt is kept
        assert store.get_run(first[item].child_run_id).status is RunStatus.FAILED  # type: ignore[arg-type,union-attr]
    store.close()
