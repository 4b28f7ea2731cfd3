"""The script check `runkon-flow` applies: will the shell find the command a `run` line starts with?

The engine runs `run` with `/bin/sh -c` in the run's working directory, so `run` is a command line,
not a file path. (dsl.md §9.2's reference check, `validation.validate_script_steps`, treats it as a
path and so calls `run = "make lint"` not found; it stays available for hosts that execute `run`
as a file.) This check predicts what the shell will do with the first word of the first command:

* `{{` in the first word, unbalanced quotes, or a first word that is shell syntax (an assignment
  `A=b`, a keyword such as `if`, a `(` or `{` group, a `~`/`$` expansion) → not checked: only the
  run knows.
* A first word with a `/` (`./tools/lint.sh fix`, `bin/x`, `/usr/bin/env`) is a file, relative
  to the working directory: it must exist, be a file and (on POSIX) be executable. Errors.
* A bare word (`make`, `echo`) is looked up on PATH or is a shell builtin: fine when found. Not
  found, but a file of that name is in the working directory → error (the shell does not look
  there: `./lint.sh` is meant). Not found anywhere → warning only, since the run's environment
  (an identity's `PATH`) may differ from the validating process's.

docs/validation.md, "Script checks", is the user-facing statement of this policy.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from runkon_flow.dsl.ast import ScriptNode, WorkflowDef, node_paths, walk
from runkon_flow.errors import Problem, SourceLocation

__all__ = ["ScriptCheck", "check_script_commands", "first_command_word", "program_problem"]

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# POSIX sh reserved words and special built-ins, plus the common regular built-ins a `run` starts with.
_SHELL_WORDS = frozenset({
    "!", "{", "}", "[[", "]]", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in",
    "then", "until", "while", "function", "select", "time", ".", ":", "break", "continue", "eval",
    "exec", "exit", "export", "readonly", "return", "set", "shift", "times", "trap", "unset", "alias",
    "bg", "cd", "command", "false", "fg", "getopts", "hash", "jobs", "kill", "pwd", "read", "true",
    "type", "ulimit", "umask", "unalias", "wait", "echo", "printf", "test", "[", "local", "source",
})  # fmt: skip


@dataclass
class ScriptCheck:
    """Errors (the run would fail) and warnings (it may fail) of one workflow's scripts."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def first_command_word(run: str) -> str | None:
    """The program the shell starts first, or None when that cannot be known before the run.

    A placeholder decides the program only when it is in the first word (`{{tool}} run`): values
    are inserted shell-quoted, one word each, so `scripts/handle.sh {{item.id}}` starts
    `scripts/handle.sh` whatever the item is, and that file is checked."""
    try:
        words = shlex.split(run, comments=True, posix=True)
    except ValueError:  # unbalanced quotes: the shell reports it, with its own words
        return None
    if not words:
        return None
    word = words[0]
    if "{{" in word or _ASSIGNMENT.match(word) or word[0] in "(~$`" or word in _SHELL_WORDS:
        return None
    if any(ch in word for ch in ";&|<>()"):  # `make;ls`, `a&&b`: the shell splits it further
        return None
    return word


def check_script_commands(wf: WorkflowDef, working_dir: str | os.PathLike[str]) -> ScriptCheck:
    """Every `script` step of `wf` (at any depth, `always` too), checked as described above. Paths
    in the messages are absolute, whether `working_dir` was given relative (`validate --scripts`
    in the workflow's folder) or absolute (a run): the same words for the same file."""
    result = ScriptCheck()
    paths = node_paths(wf)
    wd = Path(working_dir).absolute()
    for node in walk([*wf.body, *wf.always]):
        if not isinstance(node, ScriptNode):
            continue
        word = first_command_word(node.run)
        if word is None:
            continue
        finding = program_problem(word, wd)
        if finding is None:
            continue
        message, hint, is_error = finding
        where = SourceLocation(wf.source_path or None, node.line, node.column)
        problem = Problem(f"Script step '{node.name}': {message}", hint, where, paths.get(id(node)))
        (result.errors if is_error else result.warnings).append(problem)
    return result


def program_problem(
    word: str, wd: Path, not_here: str = "the shell does not look in the working directory"
) -> tuple[str, str | None, bool] | None:
    """(message, hint, is it an error) for a first word the shell would not run, else None. Also
    the check of an agent's `command` program (plugins/agents.py), which is started the same way:
    a word with `/` relative to the working directory, a bare word looked up on PATH. `not_here`
    says why a file of that name in the working directory is not found."""
    if "/" in word:
        path = Path(word) if os.path.isabs(word) else wd / word
        if not path.exists():
            return f"'{word}' not found (looked for {path})", None, True
        if not path.is_file():
            return f"'{word}' is not a file ({path})", None, True
        if os.name == "posix":
            mode = path.stat().st_mode
            if not mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
                return (
                    f"'{path}' is not executable (mode {stat.S_IMODE(mode):04o})",
                    f"Run: chmod +x {path}",
                    True,
                )
        return None
    if shutil.which(word) is not None:
        return None
    if (wd / word).is_file():
        return (
            f"'{word}' is not a command on PATH; {not_here}",
            f"write `./{word}` to run {wd / word}",
            True,
        )
    return f"'{word}' is not a command on PATH here (the run's PATH may differ)", None, False
