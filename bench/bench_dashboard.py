"""Dashboard overhead benchmark (prints figures; not a test).

    .venv/bin/python bench/bench_dashboard.py [--items 10000] [--repeat 2]

Measures, in one run:

* a foreach over N no-op child workflows (each child: one `echo` agent call, max_parallel 8,
  in-memory store) executed through `Workspace` three ways, each in its own subprocess so peak
  RSS is per variant:
    - (the two headless variants settle the garbage collector as `runkon-flow run` does, and the
      dashboard as it does after its first frame: `runkon_flow.heap.settle_for_runs`)
    - `engine`:    no event sink at all (the engine skips building events),
    - `null-sink`: an EventSink that drops every event (what any consumer costs the engine),
    - `dashboard`: the real app, headless (`App.run_test`), running the workflow from its engine
      thread worker with its event bridge attached;
  and the ratio dashboard / null-sink (target ≤ 1.10) and dashboard / engine;
* the p99 duration of one UI drain tick during the dashboard run (target ≤ 50 ms);
* peak RSS of the dashboard process (target ≤ 300 MB);
* time from starting `runkon-tui` (a real process on a pseudo-terminal) to its first frame: the
  workflow list and the first workflow's steps (target ≤ 0.5 s), beside a one-widget Textual app's;
* (unless `--no-attached`) the same fan-out run by a runner process (SQLite, its stored event
  stream) alone (`runkon-flow run --detach`), with a headless dashboard attached to it
  (`attach_run`, as `runkon-tui --attach` does), and started from a headless dashboard — which,
  on a database, runs it in a background runner and follows it (docs/dashboard.md, "Where a run
  runs") — interleaved: target 7 as the dashboard runs by default. Run time is the run's own
  start and end as its runner stored them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from _report import loadavg, mmm, peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def make_workspace_dir(base: Path, items: int) -> Path:
    folder = base / "wf"
    (folder / "agents").mkdir(parents=True)
    (folder / "items.json").write_text(json.dumps([f"item-{i:05d}" for i in range(items)]))
    (folder / "fanout.wf").write_text(
        'workflow fanout {\n  foreach items {\n    over = static\n    scope = { file = "items.json" }\n'
        '    max_parallel = 8\n    workflow = noop-child\n    inputs = { name = "{{item.id}}" }\n  }\n}\n'
    )
    (folder / "noop-child.wf").write_text("workflow noop-child {\n  inputs { name }\n  call noop\n}\n")
    (folder / "agents" / "noop.md").write_text("---\nruntime: echo\n---\n{{name}}\n")
    return folder


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


# --------------------------------------------------------------------------- one variant (subprocess)


def run_variant(mode: str, folder: Path) -> dict:
    from runkon_flow.persistence.memory import InMemoryStore
    from runkon_flow.workspace import Workspace

    store = InMemoryStore()
    ws = Workspace([folder], store)
    if mode in ("engine", "null-sink"):

        class NullSink:
            def emit(self, data: object) -> None:
                pass

        sinks = [NullSink()] if mode == "null-sink" else []
        # As `runkon-flow run` does before a run (the dashboard does the same after its first
        # frame): both sides of the ratio get the same garbage-collector settings.
        from runkon_flow.heap import settle_for_runs

        settle_for_runs()
        started, cpu = time.perf_counter(), time.process_time()
        run_id = ws.create_run("fanout", {})
        result = ws.execute(run_id, sinks=sinks)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {
            "mode": mode,
            "seconds": elapsed,
            "cpu_seconds": cpu,
            "ok": result.all_succeeded,
            "rss_mb": peak_rss_mb(),
        }

    os.environ.setdefault("RUNKON_TUI_CONFIG", str(folder.parent / "tui.yaml"))
    from runkon_tui.app import RunkonApp

    marks: dict[str, float] = {}

    class TimedHost:
        """The workspace, with create_run → execute timed on the engine thread itself (so the
        figure compares with the engine-only variants and no polling loop adds to it)."""

        def __getattr__(self, name: str) -> object:
            return getattr(ws, name)

        def create_run(self, name: str, inputs: dict) -> str:
            marks["start"], marks["cpu_start"] = time.perf_counter(), time.process_time()
            return ws.create_run(name, inputs)

        def execute(self, run_id: str, **kwargs: object) -> object:
            try:
                return ws.execute(run_id, **kwargs)
            finally:
                marks["end"], marks["cpu_end"] = time.perf_counter(), time.process_time()

    class TickTimedApp(RunkonApp):
        """The real app, with each UI drain tick timed here (the app itself carries no probes)."""

        tick_durations: list[float] = []

        def drain(self) -> None:
            started = time.perf_counter()
            try:
                super().drain()
            finally:
                self.tick_durations.append(time.perf_counter() - started)

    app = TickTimedApp([folder], host=TimedHost(), store=store, watch=False)  # type: ignore[arg-type]
    outcome: dict = {}

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            entry = app.catalog.by_name("fanout")
            assert entry is not None
            app.tick_durations.clear()
            ui_cpu = time.thread_time()
            app.request_run(entry)
            while app.run_active or app.view.root is None:
                await asyncio.sleep(0.05)
            outcome["seconds"] = marks["end"] - marks["start"]
            outcome["cpu_seconds"] = marks["cpu_end"] - marks["cpu_start"]  # all threads: UI too
            outcome["ui_cpu_seconds"] = time.thread_time() - ui_cpu  # this (the UI) thread only
            outcome["tick_ms"] = [round(1000 * t, 2) for t in app.tick_durations]
            outcome["ok"] = app.view.status == "completed"
            fan = app.view.active_fanout()
            outcome["items_shown_done"] = fan.done if fan else 0
            outcome["events_folded"] = app.view.events_applied

    asyncio.run(drive())
    outcome.update(mode="dashboard", rss_mb=peak_rss_mb())
    return outcome


def variant_in_subprocess(mode: str, folder: Path) -> dict:
    proc = subprocess.run(
        [PYTHON, __file__, "--variant", mode, "--folder", str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "RUNKON_SAMPLE_SPEED": "0"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} variant failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- first frame


FLOOR_APP = """
from textual.app import App
from textual.widgets import Static


class Floor(App):
    def compose(self):
        yield Static("Workflows fanout")


Floor().run()
"""


# The first frame is the whole start screen: the workflow list and the first workflow's steps.
FIRST_FRAME = (b"Workflows", "Steps · fanout".encode(), b"foreach items")
FLOOR_FRAME = (b"Workflows", b"fanout")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (Linux /proc; 0 elsewhere): steadier than
    wall time on a loaded machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_frame_seconds(folder: Path, db: Path, floor: bool = False) -> tuple[float, float]:
    """Start `runkon-tui` on a pseudo-terminal; (wall, CPU) seconds until the screen shows the
    workflow list and the first workflow's steps.
    `floor`: the same for a one-widget Textual app (what any Textual dashboard costs to start)."""
    exe = Path(PYTHON).with_name("runkon-tui")
    command = [PYTHON, "-c", FLOOR_APP] if floor else [str(exe), str(folder), "--db", str(db), "--no-watch"]
    wanted = FLOOR_FRAME if floor else FIRST_FRAME
    master, slave = pty.openpty()
    termios_size = struct.pack("HHHH", 40, 120, 0, 0)
    import fcntl

    fcntl.ioctl(slave, termios.TIOCSWINSZ, termios_size)
    env = {**os.environ, "TERM": "xterm-256color", "RUNKON_TUI_CONFIG": str(db.parent / "tui.yaml")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    frame_at = None
    deadline = started + 20
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen += chunk
            if all(text in seen for text in wanted):
                frame_at = time.perf_counter() - started
                cpu = process_cpu_seconds(proc.pid)
                break
    os.write(master, b"\x11")  # ctrl+q
    # Keep reading while it quits: a full pseudo-terminal would block its next paint, and it
    # would never see the key (each sample then waited the whole 10 s before the kill).
    quit_by = time.perf_counter() + 10
    while proc.poll() is None and time.perf_counter() < quit_by:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                os.read(master, 65536)
            except OSError:
                break
    try:
        proc.wait(timeout=max(0.0, quit_by - time.perf_counter()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    os.close(master)
    if frame_at is None:
        raise SystemExit("runkon-tui never drew its first frame")
    return frame_at, cpu


def ensure_bytecode() -> None:
    """Start-up is measured as a user meets it: with the packages' bytecode cached (pip writes it
    at install, Python on the first import). With `PYTHONDONTWRITEBYTECODE` set and no `.pyc`
    files (a fresh worktree), every start would also compile each module (~0.15 s of CPU)."""
    import compileall
    import importlib

    for package in ("runkon_flow", "runkon_tui"):
        compileall.compile_dir(Path(importlib.import_module(package).__file__).parent, quiet=1)


def report_frames(folder: Path, base: Path, repeat: int) -> None:
    """Target 6: `runkon-tui` start → first frame ≤ 0.5 s, next to a bare Textual app's."""
    ensure_bytecode()
    frames: list[float] = []
    floors: list[float] = []
    frame_cpu: list[float] = []
    floor_cpu: list[float] = []
    for i in range(repeat):
        wall, cpu = first_frame_seconds(folder, base / f"floor-{i}.db", floor=True)
        floors.append(wall)
        floor_cpu.append(cpu)
        wall, cpu = first_frame_seconds(folder, base / f"runs-{i}.db")
        frames.append(wall)
        frame_cpu.append(cpu)
    print(f"  {'first frame (s)':<34} {'min':>8} {'median':>8} {'max':>8}")
    print(f"  {'runkon-tui, wall':<34} {mmm(frames, digits=2)}")
    print(f"  {'floor: one-widget Textual app, wall':<34} {mmm(floors, digits=2)}")
    print(f"  {'runkon-tui, CPU':<34} {mmm(frame_cpu, digits=2)}")
    print(f"  {'floor: one-widget Textual app, CPU':<34} {mmm(floor_cpu, digits=2)}")
    median = statistics.median(frames)
    print(
        f"  target 6: first frame ≤ 0.5 s on a quiet machine: median {median:.2f} s"
        f" — {verdict(median <= 0.5)}"
    )


# --------------------------------------------------------------------------- attached from elsewhere


def stored_run_seconds(db: Path, run_id: str, timeout: float = 600) -> float:
    """Wait for the run to end (a look at its row every 0.2 s); its stored start-to-end seconds."""
    from runkon_flow.observe.liveness import run_seconds
    from runkon_flow.persistence.sqlite import SqliteStore

    store = SqliteStore(db)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = store.get_run(run_id)
            if run is not None and run.status.is_terminal:
                seconds = run_seconds(run)
                if run.status.value != "completed" or seconds is None:
                    raise SystemExit(f"the detached run ended {run.status.value}: {run.error}")
                return seconds
            time.sleep(0.2)
    finally:
        store.close()
    raise SystemExit(f"the detached run did not end within {timeout:.0f} s")


async def start_in_runner(folder: Path, db: Path, timeout: float = 600) -> str:
    """The dashboard as `runkon-tui --db` runs a workflow (runs in a background runner, the
    default): headless, started as Enter on `fanout` starts it, followed to its end."""
    from runkon_flow.persistence.sqlite import SqliteStore
    from runkon_flow.workspace import Workspace

    from runkon_tui.app import RunkonApp

    store = SqliteStore(db)
    host = Workspace([folder], store)
    app = RunkonApp([folder], host=host, store=store, watch=False, user="bench", runs_in_runner=True)
    async with app.run_test(size=(120, 40)) as pilot:
        entry = app.catalog.by_name("fanout")
        assert entry is not None and entry.definition is not None
        app.session.start("fanout", entry.definition, {})
        deadline = time.monotonic() + timeout
        while app.attached_run_id is None and time.monotonic() < deadline:
            await pilot.pause(0.05)
        run_id = app.attached_run_id
        while app.attached_run_id is not None and time.monotonic() < deadline:
            await pilot.pause(0.05)
        status = app.view.status
    store.close()
    if run_id is None or status != "completed":
        raise SystemExit(f"the dashboard's run ended {status}")
    return run_id


def report_attached(folder: Path, base: Path, repeat: int) -> None:
    """A run executed by a runner process alone, with a dashboard attached, and started from the
    dashboard (which runs it in a runner and follows it), interleaved."""
    from bench_attach import follow, start_detached

    times: dict[str, list[float]] = {"alone": [], "attached": [], "started": []}
    # The dashboard's own CPU while it follows (this process: the headless dashboard; the runner
    # is another process): what it takes from a 2-core machine beside the run.
    cpu: dict[str, list[float]] = {"attached": [], "started": []}
    env = {**os.environ, "RUNKON_SAMPLE_SPEED": "0"}
    for i in range(repeat):
        order = list(times)[i % 3 :] + list(times)[: i % 3]
        for mode in order:
            db = base / f"attached-{mode}-{i}.db"
            began = time.process_time()
            if mode == "started":
                run_id = asyncio.run(start_in_runner(folder, db))
                cpu[mode].append(time.process_time() - began)
            else:
                run_id = start_detached(folder, db, "fanout", env=env)
                if mode == "attached":
                    began = time.process_time()
                    asyncio.run(follow(folder, db, run_id, timeout=600))
                    cpu[mode].append(time.process_time() - began)
            times[mode].append(stored_run_seconds(db, run_id))
    alone = times["alone"]
    print("  the same fan-out run by a runner process (SQLite, events stored):")
    print(f"  {'':<34} {'min':>8} {'median':>8} {'max':>8}")
    print(f"  {'alone (run --detach), s':<34} {mmm(alone, digits=2)}")
    print(f"  {'with a dashboard attached, s':<34} {mmm(times['attached'], digits=2)}")
    print(f"  {'started from the dashboard, s':<34} {mmm(times['started'], digits=2)}")
    print(f"  {'dashboard CPU, attached, s':<34} {mmm(cpu['attached'], digits=2)}")
    print(f"  {'dashboard CPU, started from it, s':<34} {mmm(cpu['started'], digits=2)}")
    attached = [a / b for a, b in zip(times["attached"], alone, strict=True)]
    started = [a / b for a, b in zip(times["started"], alone, strict=True)]
    print(f"  {'ratio attached / alone, per round':<34} {mmm(attached, digits=3)}")
    print(f"  {'ratio started / alone, per round':<34} {mmm(started, digits=3)}")
    median = statistics.median(started)
    print(
        "  target 7 as the dashboard runs on a database (in a runner): ≤ 1.10× the engine alone"
        f" with the same sink: median {median:.2f} — {verdict(median <= 1.10)}"
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variant", choices=["engine", "null-sink", "dashboard"])
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--frames-only", action="store_true", help="only the first-frame figure")
    parser.add_argument(
        "--frames", type=int, default=5, help="first-frame repeats (interleaved with the floor)"
    )
    parser.add_argument("--no-attached", action="store_true", help="skip the run-by-another-process figure")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.folder)))
        return
    print(f"before: {loadavg()}")
    if args.frames_only:
        base = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
        try:
            report_frames(make_workspace_dir(base, 10), base, args.frames)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"after: {loadavg()}")
        return

    base = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        folder = make_workspace_dir(base, args.items)
        runs: dict[str, list[dict]] = {"engine": [], "null-sink": [], "dashboard": []}
        for _ in range(args.repeat):
            for mode in ("engine", "null-sink", "dashboard"):  # interleaved to share machine noise
                result = variant_in_subprocess(mode, folder)
                if not result["ok"]:
                    raise SystemExit(f"{mode} run did not complete: {result}")
                runs[mode].append(result)
        secs = {m: statistics.median(r["seconds"] for r in rs) for m, rs in runs.items()}
        dash = runs["dashboard"]
        ticks = sorted(t for r in dash for t in r["tick_ms"])  # every tick of every run, pooled
        p99 = ticks[min(len(ticks) - 1, int(len(ticks) * 0.99))]
        rss = max(r["rss_mb"] for r in dash)

        print(
            f"foreach over {args.items:,} no-op child workflows, max_parallel 8, in-memory store "
            f"(median of {args.repeat}); the dashboard hosts the run in its process (runs kept in "
            "memory, or run_in: dashboard)"
        )
        for mode in ("engine", "null-sink", "dashboard"):
            per_item = 1e6 * secs[mode] / args.items
            rss_m = max(r["rss_mb"] for r in runs[mode])
            each = ", ".join(f"{r['seconds']:.2f}" for r in runs[mode])
            print(
                f"  {mode:<10} {secs[mode]:7.2f} s   {per_item:6.0f} µs/item   peak RSS {rss_m:6.1f} MB"
                f"   (runs: {each})"
            )
        ratio = secs["dashboard"] / secs["null-sink"]
        hosted = verdict(ratio <= 1.10)
        print(f"  ratio dashboard / null-sink  {ratio:5.2f}   (target 7 when hosting: ≤ 1.10)  {hosted}")
        rounds = zip(runs["dashboard"], runs["null-sink"], strict=True)
        pairs = [d["seconds"] / n["seconds"] for d, n in rounds]
        print(
            f"  ratio per round (run next to each other)  min/median/max {mmm(pairs, digits=2)}"
            f"   {verdict(statistics.median(pairs) <= 1.10)}"
        )
        for mode in ("engine", "null-sink", "dashboard"):
            print(f"  {mode:<10} seconds min/median/max {mmm([r['seconds'] for r in runs[mode]], digits=2)}")
        cpu = {m: statistics.median(r["cpu_seconds"] for r in rs) for m, rs in runs.items()}
        for mode in ("engine", "null-sink", "dashboard"):
            each_cpu = [r["cpu_seconds"] for r in runs[mode]]
            print(f"  {mode:<10} CPU s   min/median/max {mmm(each_cpu, digits=2)}")
        print(
            f"  CPU ratio dashboard / null-sink  {cpu['dashboard'] / cpu['null-sink']:5.2f}"
            "   (steadier than wall time on a loaded machine; the process's CPU, UI thread included)"
        )
        print(
            f"  ratio dashboard / engine     {secs['dashboard'] / secs['engine']:5.2f}"
            "   (no sink: the engine builds no events at all)"
        )
        ui = [r["ui_cpu_seconds"] for r in dash]
        print(f"  UI thread CPU per run   min/median/max {mmm(ui, digits=3)} s (fold, repaint, Textual)")
        p50 = statistics.median(ticks)
        print(
            f"  UI drain tick: p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
            f" max {ticks[-1]:.1f} ms over {len(ticks)} ticks of {len(dash)} runs"
            f"   (target p99 ≤ 50 ms)  {verdict(p99 <= 50)}"
        )
        print(f"  events folded per run: {dash[0]['events_folded']:,}")
        print(f"  dashboard peak RSS {rss:.1f} MB   (target ≤ 300 MB)  {verdict(rss <= 300)}")
        report_frames(folder, base, args.frames)
        if not args.no_attached:
            report_attached(folder, base, args.repeat)
        print(f"after: {loadavg()}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
