"""Where the run database lives when nobody says otherwise.

`$RUNKON_DB` wins; else `$XDG_STATE_HOME/runkon/runs.db`; else `~/.local/state/runkon/runs.db`.
Run history is state (not config, not cache), which is what XDG_STATE_HOME is for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DB_ENV = "RUNKON_DB"
#: The default, as `--db` help texts spell it (every step of `default_db_path`, so a user without
#: XDG_STATE_HOME knows where to look).
DEFAULT_DB_HELP = f"${DB_ENV}, else $XDG_STATE_HOME/runkon/runs.db, else ~/.local/state/runkon/runs.db"


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """The database path from `env` (default: the process environment); empty variables are unset."""
    env = os.environ if env is None else env
    explicit = env.get(DB_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    state_home = env.get("XDG_STATE_HOME", "").strip()
    # XDG: a relative XDG_STATE_HOME is invalid and must be ignored.
    base = (
        Path(state_home)
        if state_home and Path(state_home).is_absolute()
        else Path.home() / ".local" / "state"
    )
    return base / "runkon" / "runs.db"
