"""A worker's unexpected failure is shown, never fatal.

Textual's default for a failed worker is to close the whole app — with a hosted run inside it —
and to print the traceback only after the terminal is restored. Every worker of the dashboard is
started with `exit_on_error=False`, so the failure must be reported here instead: a toast and a
line in the errors log (`l` switches the log pane to it), naming what failed; the screen that
started the job also says it on its own status line. Textual's log (`textual console`) still
receives the traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from textual.worker import Worker, WorkerState


class _ReportsProblems(Protocol):
    def report_problem(self, text: str) -> None: ...


def failure_text(what: str, error: BaseException | None) -> str:
    """`could not list the runs: ValueError: …` — what the job was for, then the error."""
    detail = f"{type(error).__name__}: {error}" if error is not None else "it failed"
    return f"could not {what}: {detail}"


class ShowsWorkerFailures:
    """Mixin for the app and the screens that start workers: reports a failed one — once while it
    keeps failing the same way (the inbox reloads every second: one toast, not one a second)."""

    _reported_failure: str | None = None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            worker = event.worker
            self.worker_failed(failure_text(worker.name or worker.group, worker.error))
        elif event.state is WorkerState.SUCCESS:
            self._reported_failure = None

    def run_guarded(self, what: str, job: Callable[[], object]) -> None:
        """Run `job` on the UI thread (a re-fill after a resize, say) and report its failure as a
        worker's: the same code fails the same way wherever it is called from."""
        try:
            job()
        except Exception as exc:
            self.worker_failed(failure_text(what, exc))

    def worker_failed(self, text: str) -> None:
        """Screens extend this to show `text` where the missing result would have been."""
        if text == self._reported_failure:
            return
        self._reported_failure = text
        app: _ReportsProblems = self.app  # type: ignore[attr-defined]
        app.report_problem(text)
