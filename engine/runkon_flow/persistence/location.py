"""Which run database a command or the dashboard uses: a SQLite file or a PostgreSQL server.

`--db` (or `$RUNKON_DB`) is either a path — a SQLite file — or a `postgresql://` URL — a server
that many processes and machines share. One place decides, so the CLI and the dashboard agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runkon_flow.persistence.paths import DB_ENV, default_db_path
from runkon_flow.persistence.pg_connect import display_dsn, is_postgres_url
from runkon_flow.persistence.protocol import WorkflowPersistence


@dataclass(frozen=True)
class DbLocation:
    """A run database: `target` is a file path or a server URL exactly as given (it may hold a
    password — show `label`, never `target`)."""

    target: str
    #: Named by the user (`--db`, `$RUNKON_DB`), not the default state-directory file: only a
    #: named location can be a typo worth a word when its folder is created.
    chosen: bool = True

    @property
    def is_server(self) -> bool:
        return is_postgres_url(self.target)

    @property
    def path(self) -> Path | None:
        """The SQLite file (None for a server)."""
        return None if self.is_server else Path(self.target).expanduser()

    @property
    def label(self) -> str:
        """How messages name it: the path, or the URL without its password."""
        return display_dsn(self.target) if self.is_server else str(self.path)

    def exists(self) -> bool:
        """A file exists once something ran with it; a server is asked when opened."""
        return self.is_server or self.path.exists()  # type: ignore[union-attr]

    def empty_file(self) -> bool:
        """A SQLite file of 0 bytes with no write-ahead log holding pages (`touch runs.db`, a path
        another tool created): SQLite would take it for a new database and `SqliteStore` would
        write runkon's tables into it, so whatever only reads runs leaves it as it is. Only sizes
        are asked (os.stat): the file is never opened here — closing a descriptor on it would drop
        this process's POSIX locks (docs/persistence.md)."""
        path = self.path
        if path is None:
            return False
        try:
            if os.stat(path).st_size != 0:
                return False
            wal = path.with_name(path.name + "-wal")
            return not wal.exists() or os.stat(wal).st_size == 0
        except OSError:
            return False

    def missing_folder(self) -> Path | None:
        """The outermost folder of a SQLite file's directory that does not exist yet — opening
        creates it (None: the directory exists, a server, or the default location, whose folder a
        first run is expected to create). Callers say so: a typo in --db must not silently start a
        new, empty history."""
        folder = self.path.parent if self.path is not None and self.chosen else None
        missing = None
        while folder is not None and not folder.exists() and folder != folder.parent:
            missing, folder = folder, folder.parent
        return missing

    def open(self, *, upgrade: bool = False, create: bool = True) -> WorkflowPersistence:
        """Open (creating a new SQLite file, or the schema in an empty PostgreSQL database).
        `create=False` — to read or continue runs — refuses a PostgreSQL database without runkon's
        tables (`NoRunDatabase`) instead of creating them; such callers check `exists()` first,
        which is where a SQLite file that does not exist is found."""
        if self.is_server:
            from runkon_flow.persistence.postgres import PostgresStore

            return PostgresStore(self.target, upgrade=upgrade, create=create)
        from runkon_flow.persistence.sqlite import SqliteStore

        return SqliteStore(self.path)

    def state_dir(self) -> Path:
        """Where files that belong beside the database go (detached runs' logs): the SQLite file's
        directory, or runkon's state directory for a server."""
        if not self.is_server:
            return self.path.parent  # type: ignore[union-attr]
        env = {k: v for k, v in os.environ.items() if k != DB_ENV}
        return default_db_path(env).parent


def db_location(given: str | None = None, env: Mapping[str, str] | None = None) -> DbLocation:
    """`given` (--db), else `$RUNKON_DB`, else the default SQLite path (paths.default_db_path)."""
    env = os.environ if env is None else env
    if given:
        return DbLocation(given.strip() if is_postgres_url(given) else str(Path(given).expanduser()))
    explicit = env.get(DB_ENV, "").strip()
    if is_postgres_url(explicit):
        return DbLocation(explicit)
    return DbLocation(str(default_db_path(env)), chosen=bool(explicit))
