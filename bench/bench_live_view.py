"""What drawing `runkon-flow run`'s live view costs on top of the run model it renders: a
synthetic N-item fan-out (7 events per item, child runs included) fed to a bare `RunModel` (the
floor: the one reducer, nothing drawn) and to a `LiveView` (the same fold, the event lines and a
frame rendered every 500 events), interleaved in one process.

    .venv/bin/python bench/bench_live_view.py [--n 10000] [--repeat 5]

Prints events per second, min/median/max per configuration, and the load average (the machine
may be shared: compare the two columns of one run, not runs of different days).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

from runkon_flow.cli.live import LiveView
from runkon_flow.events import (
    ChildRunStarted,
    EngineEventData,
    FanOutItemCompleted,
    FanOutItemsCollected,
    FanOutItemStarted,
    RunCompleted,
    RunStarted,
    StepCompleted,
    StepStarted,
)
from runkon_flow.observe import RunModel


def fan_out_events(n: int) -> list[EngineEventData]:
    t = 1000.0
    out: list[EngineEventData] = []

    def emit(event: object, run: str = "TOP") -> None:
        out.append(EngineEventData(timestamp=int(t), ts=t, run_id=run, event=event))

    emit(RunStarted(workflow_name="big"))
    emit(StepStarted(step_name="foreach:fan", kind="foreach", step_id="F", node_path="body.0"))
    emit(FanOutItemsCollected(count=n, step_id="F", foreach_name="fan", node_path="body.0"))
    for i in range(n):
        kid = f"K{i}"
        emit(FanOutItemStarted(item_id=f"i{i}", step_id="F"))
        emit(
            ChildRunStarted(
                child_run_id=kid, workflow_name="c", parent_run_id="TOP", parent_step_id="F", item_id=f"i{i}"
            )
        )
        emit(RunStarted(workflow_name="c", parent_run_id="TOP"), kid)
        emit(StepStarted(step_name="work", step_id=f"S{i}", node_path="body.0"), kid)
        emit(
            StepCompleted(
                step_name="work", succeeded=True, step_id=f"S{i}", node_path="body.0", status="completed"
            ),
            kid,
        )
        emit(RunCompleted(succeeded=True), kid)
        emit(
            FanOutItemCompleted(
                item_id=f"i{i}", succeeded=True, step_id="F", child_run_id=kid, status="completed"
            )
        )
    emit(
        StepCompleted(
            step_name="foreach:fan", kind="foreach", succeeded=True, step_id="F", node_path="body.0"
        )
    )
    emit(RunCompleted(succeeded=True))
    return out


def floor(events: list[EngineEventData]) -> None:
    model = RunModel(lambda: 0.0)
    for data in events:
        model.apply(data)


def live_view(events: list[EngineEventData]) -> None:
    view = LiveView(
        io.StringIO(), top_run_id="TOP", color=False, unicode=True, now=lambda: 0.0, width=100, height=30
    )
    for i, data in enumerate(events):
        view.feed(data)
        if i % 500 == 0:
            view.render()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = fan_out_events(args.n)
    rates: dict[str, list[float]] = {"model only (floor)": [], "live view": []}
    for _ in range(args.repeat):
        for name, fn in (("model only (floor)", floor), ("live view", live_view)):
            t0 = time.perf_counter()
            fn(events)
            rates[name].append(len(events) / (time.perf_counter() - t0))
    print(f"{len(events)} events ({args.n} items), {args.repeat} runs each, interleaved")
    for name, xs in rates.items():
        print(
            f"  {name:20} events/s  min {min(xs):>9,.0f}"
            f"  median {statistics.median(xs):>9,.0f}  max {max(xs):>9,.0f}"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
