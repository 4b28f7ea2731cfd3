"""`runkon-tui`: open the dashboard on workflow directories (or files).

    runkon-tui                      # ./ when it has .wf files, else ./sample_workflows
    runkon-tui DIR_OR_FILE...       # files: their folder is watched and the file is selected
    runkon-tui --db runs.db         # run store (default: $RUNKON_DB or the XDG state path)
    runkon-tui --db postgresql://user@host/runkon   # a run store shared on a PostgreSQL server
    runkon-tui --theme runkon-light
    runkon-tui --replay events.jsonl  # show a recorded event log read-only

On exit it prints a plain-text summary of the last run and exits 1 if that run failed (or was
cancelled), 0 otherwise; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runkon_flow.persistence.paths import DEFAULT_DB_HELP

from runkon_tui.config import EXECUTORS, RUN_IN

EXIT_USAGE = 2


def default_dirs(cwd: Path) -> list[Path] | None:
    """The folder to open when no path is given: the cwd if it holds .wf files, else ./sample_workflows."""
    if any(p.suffix == ".wf" for p in cwd.glob("*.wf")):
        return [cwd]
    samples = cwd / "sample_workflows"
    if samples.is_dir():
        return [samples]
    return None


def resolve_paths(paths: Sequence[str], cwd: Path) -> tuple[list[Path], str | None, str | None]:
    """(directories to watch, file to select, error text)."""
    if not paths:
        dirs = default_dirs(cwd)
        if dirs is None:
            return (
                [],
                None,
                (
                    f"no workflows in {cwd} (no .wf files and no sample_workflows/ folder); "
                    "pass a directory or a .wf file"
                ),
            )
        return dirs, None, None
    dirs: list[Path] = []
    select: str | None = None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            target = path
        elif path.is_file():
            if path.suffix != ".wf":
                return [], None, f"{raw}: not a .wf file"
            target = path.parent
            select = select or str(path)
        else:
            return [], None, f"{raw}: no such file or directory"
        if target not in dirs:
            dirs.append(target)
    return dirs, select, None


def available_theme_names() -> list[str]:
    from textual.theme import BUILTIN_THEMES

    from runkon_tui.themes import load_themes

    ours, _ = load_themes()
    return sorted({*BUILTIN_THEMES, *(t.name for t in ours)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runkon-tui",
        description="Run and watch runkon workflows in a terminal dashboard.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="workflow directories or .wf files")
    parser.add_argument(
        "--db",
        default=None,
        metavar="PATH|URL",
        help=f"run store: a SQLite file or a postgresql:// URL (default: {DEFAULT_DB_HELP})",
    )
    parser.add_argument("--theme", default=None, help="theme name (see the theme picker, key t)")
    parser.add_argument("--replay", type=Path, default=None, help="show a recorded JSON-lines event log")
    parser.add_argument(
        "--attach",
        metavar="RUN_ID",
        default=None,
        help="open on a run held by any process (e.g. runkon-flow run --detach) and follow it live",
    )
    parser.add_argument("--no-watch", action="store_true", help="do not reload .wf files when they change")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=None,
        help="where foreach children run: local (this process) or ray (a Ray cluster) "
        "(default: $RUNKON_EXECUTOR, else the settings file's `executor`, else local)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        default=None,
        help="the Ray cluster for --executor ray (default: settings `ray_address`, else $RAY_ADDRESS)",
    )
    parser.add_argument(
        "--run-in",
        choices=RUN_IN,
        default=None,
        help="where runs started here execute: runner (a background process each, so quitting or "
        "a crash of the dashboard never stops them) or dashboard (this process) (default: the "
        "settings file's `run_in`, else runner; runs kept in memory always run here)",
    )
    parser.add_argument(
        "--hooks",
        metavar="FILE",
        default=None,
        help="hooks file (default: $RUNKON_HOOKS, else .runkon/hooks.yaml here; docs/notifications.md)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up allocates a few hundred thousand long-lived objects (Textual, the models, the
    # catalog) and almost no garbage, yet the collector would scan them ~180 times before the first
    # frame (~20 % of start-up). It is off until the app has drawn that frame; the app then
    # collects once, freezes what start-up built and turns it back on (_settle_after_first_frame).
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    dirs, select, error = resolve_paths(args.paths, Path.cwd())
    if error:
        print(f"runkon-tui: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.theme is not None:
        names = available_theme_names()
        if args.theme not in names:
            print(f"runkon-tui: unknown theme '{args.theme}'; available: {', '.join(names)}", file=sys.stderr)
            return EXIT_USAGE
    if args.replay is not None and args.attach is not None:
        print("runkon-tui: --replay and --attach cannot be used together", file=sys.stderr)
        return EXIT_USAGE
    if args.replay is not None and not args.replay.is_file():
        print(f"runkon-tui: {args.replay}: no such event log", file=sys.stderr)
        return EXIT_USAGE

    from runkon_tui.app import RunkonApp
    from runkon_tui.config import load_config
    from runkon_tui.host import DeferredHost, open_workspace

    settings = load_config()
    runs_in_runner = (args.run_in or settings.run_in or "runner") == "runner"
    # A dashboard whose runs go to background runners only reads runs, on its interface thread
    # too, and waits out a database outage its own way (follow.py): its store must not hold a
    # read for the outage window (docs/persistence.md).
    from runkon_flow.persistence.pg_connect import leave_outages_to_the_reader

    with leave_outages_to_the_reader() if runs_in_runner else contextlib.nullcontext():
        given = args.executor or os.environ.get("RUNKON_EXECUTOR", "").strip()
        executor = given or settings.executor or "local"
        if executor not in EXECUTORS:
            expected = ", ".join(EXECUTORS)
            print(f"runkon-tui: RUNKON_EXECUTOR={executor!r}: expected one of {expected}", file=sys.stderr)
            return EXIT_USAGE
        opened = open_workspace(
            dirs,
            args.db,
            executor=executor,
            ray_address=args.ray_address or settings.ray_address,
            hooks=args.hooks,
            deferred=True,  # the engine is built right after the first frame
        )
        app = RunkonApp(
            dirs,
            host=opened.host,
            store=opened.store,
            problems=opened.problems,
            theme=args.theme,
            watch=not args.no_watch,
            select=select,
            replay=args.replay,
            attach=args.attach,
            store_note=opened.store_note,
            runs_in_runner=runs_in_runner,
            config=settings,  # read once: the app's theme and keys come from the same read
        )
        deferred = opened.host
        assert isinstance(deferred, DeferredHost)
        deferred.on_hook_problem = lambda text: _tell(app, text)  # said on screen too (it is also logged)
        try:
            code = app.run()
        finally:
            deferred.close()  # hooks already due finish (each within its timeout)
        summary = app.summary()
        if summary:
            print(summary)
        return code if isinstance(code, int) else app.exit_code()


def _tell(app: Any, text: str) -> None:
    with contextlib.suppress(Exception):  # the app is not running (any more): the log has it
        app.call_from_thread(app.notify, text, severity="warning", timeout=8)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
