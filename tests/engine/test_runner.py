"""Background runners (`runkon_flow.runner`): what their log says about how they stopped."""

from __future__ import annotations

from pathlib import Path

from runkon_flow.runner import runner_error


def test_runner_error_reads_only_what_this_runner_wrote(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("runkon-flow (detached): error: from before\n")
    start = log.stat().st_size
    assert runner_error(log, start) is None
    with log.open("a") as handle:
        handle.write("detached runner pid 7 for run R\nrunkon-flow (detached): error: run 'R' is completed\n")
    assert runner_error(log, start) == "run 'R' is completed"
    assert runner_error(tmp_path / "missing.log") is None
