"""Is this existing file a runkon run database? Answered before anything is written to it.

Opening a file as the store switches it to WAL, creates tables and indexes and sets
`user_version`: done to someone else's database, that silently changes it. So an existing,
non-empty file is first looked at read-only and refused, untouched byte for byte, unless it is an
SQLite file whose schema holds nothing but runkon's own tables (every runkon table is named
`workflow_run…`; SQLite's internal `sqlite_…` objects do not count) and whose `user_version` is
not newer than this runkon understands. An SQLite file with no schema at all is treated as new.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from runkon_flow.errors import PersistenceError
from runkon_flow.persistence.schema import SCHEMA_VERSION

__all__ = ["check_runkon_file"]

_OURS = "workflow_run"
_ADVICE = "it was left untouched — move it aside or choose another --db or RUNKON_DB"


def check_runkon_file(path: Path) -> None:
    """Raise `PersistenceError` unless `path` (an existing file) may be opened as the store.

    The file is read through SQLite only, never through a descriptor of our own: closing any
    descriptor of a file drops every POSIX lock this process holds on it, SQLite's included, and
    another process closing its last connection would then take the WAL from under this
    process's open stores (their later writes lost to a deleted file; tests/persistence/
    test_sqlite.py). SQLite keeps the locks of its connections to one file together."""
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=5.0, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot open run database {path}: {exc}; {_ADVICE}") from None
    try:
        # One snapshot for both reads: a process creating the schema meanwhile could otherwise
        # be seen half-way (no tables yet, then its schema version) and refused as foreign.
        conn.execute("BEGIN")
        objects = conn.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if str(exc) == "file is not a database":
            raise PersistenceError(
                f"cannot open run database {path}: file is not a database (not an SQLite file); {_ADVICE}"
            ) from None
        raise PersistenceError(
            f"cannot read run database {path}: {exc} (is it damaged, or not a runkon database?); {_ADVICE}"
        ) from None
    finally:
        conn.close()
    foreign = sorted(
        {
            f"{kind} {name}"
            for kind, name, table in objects
            if not name.startswith("sqlite_") and not (table or name).startswith(_OURS)
        }
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise PersistenceError(
            f"cannot open run database {path}: not a runkon database (it holds {shown}); {_ADVICE}"
        )
    if version > SCHEMA_VERSION:
        raise PersistenceError(
            f"{path} uses schema version {version}, newer than this runkon understands ({SCHEMA_VERSION}); "
            "upgrade runkon or use another database"
        )
    if not objects and version != 0:
        raise PersistenceError(
            f"cannot open run database {path}: not a runkon database (no tables, user_version {version}); "
            f"{_ADVICE}"
        )
