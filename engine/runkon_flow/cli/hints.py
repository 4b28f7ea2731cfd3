"""The commands the CLI tells a user to type next (`resume with: …`, `approve: …`, `retry the 2
failed items: …`), spelled so they work when pasted into the same shell.

A hint that drops the `--db` the user gave points at another database (the default one), where the
run does not exist; one that drops the `--dir` a run was started with resumes or retries it without
the workflow's folder. So every hint is rendered here, from the command line the user typed: `--db`
when it was given (not for `$RUNKON_DB` or the default file: the same shell finds those again —
nor when the `--db` given names one of those: a long path only pushed the hint past the terminal),
and, for commands that load workflow definitions (`resume`, `retry`, `rerun`), the workflow
directories the user named. Paths are quoted with `shlex.quote`.
"""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from runkon_flow.cli.common import PROG
from runkon_flow.persistence.location import db_location

__all__ = ["Hints"]


@dataclass(frozen=True)
class Hints:
    """How to spell a follow-up command: the store option and workflow folders the user gave."""

    #: `--db` as messages name it (a path, or a server URL without its password), or None when
    #: the user gave none: then the hint needs none either.
    db: str | None = None
    #: Workflow directories to pass as `--dir` to a command that loads definitions.
    dirs: tuple[str, ...] = ()

    @classmethod
    def of(cls, args: argparse.Namespace, *, workflow_file: Path | None = None) -> Hints:
        """The hints for a command run with `args`. `workflow_file`: `run`'s WORKFLOW given as a
        path, whose folder was a workflow directory of the run (a resume finds it there again)."""
        given = getattr(args, "db", None)
        db = _needed(given) if given and not getattr(args, "memory", False) else None
        dirs: list[str] = [str(workflow_file.parent)] if workflow_file is not None else []
        dirs.extend(getattr(args, "dirs", None) or ())
        return cls(db, tuple(dict.fromkeys(dirs)))

    def command(self, *words: str, fill: str = "", optional: str = "", definitions: bool = False) -> str:
        """`runkon-flow WORDS… FILL [--dir D …] [--db PATH] OPTIONAL`. `words` are real values
        (quoted as needed); `fill` and `optional` are placeholders a user edits (`STEP_ID…`,
        `[--note TEXT]`), kept as written. `definitions`: the command loads workflow definitions,
        so the workflow directories go with it."""
        parts = [PROG, *(shlex.quote(w) for w in words)]
        if fill:
            parts.append(fill)
        if definitions:
            for directory in self.dirs:
                parts += ["--dir", shlex.quote(directory)]
        if self.db is not None:
            parts += ["--db", shlex.quote(self.db)]
        if optional:
            parts.append(optional)
        return " ".join(parts)

    def resume(self, run_id: str) -> str:
        return self.command("resume", run_id, definitions=True)


def _needed(given: str) -> str | None:
    """`--db GIVEN` as a hint carries it (its label), or None when the same shell finds that
    database without it: it is `$RUNKON_DB`'s, or the default file."""
    named, found = db_location(given), db_location()
    if named.is_server or found.is_server:
        same = named.target == found.target
    else:
        # The same spelling once made absolute (a symlinked folder is left as the user named it).
        same = os.path.abspath(named.target) == os.path.abspath(found.target)
    return None if same else named.label
