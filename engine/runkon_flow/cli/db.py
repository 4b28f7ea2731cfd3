"""`runkon-flow db upgrade`: bring an existing run database's schema up to this runkon's version
(or give an empty PostgreSQL database runkon's tables).

A SQLite path with no file is refused, as the read commands refuse it, so a typo in --db does not
create a folder and an empty database. A SQLite file is migrated whenever it is opened, so this only
matters there to do it ahead of time. A PostgreSQL database is shared by many machines, some of
which may still run an older runkon, so an older schema there is upgraded only on purpose — with
this command — and every other command refuses it with a message that names this one.
"""

from __future__ import annotations

import argparse
from typing import Any

from runkon_flow.cli.common import EXIT_OK, CommandFailed, StdoutGuard
from runkon_flow.cli.store import add_db_args, close_store, location_of


def cmd_upgrade(args: argparse.Namespace) -> int:
    out = StdoutGuard()
    location = location_of(args)
    # A SQLite path: a typo must not silently create a folder and a database, nor runkon's tables
    # in a file of 0 bytes (`touch runs.db`, a path another tool created).
    missing = not location.exists()
    if missing or location.empty_file():
        where = (
            f"no run database at {location.label}" if missing else f"run database {location.label} is empty"
        )
        raise CommandFailed(
            f"{where}: db upgrade upgrades an existing one (a new one is "
            "created by the first `runkon-flow run` with it; check --db / $RUNKON_DB)"
        )
    before = None
    if location.is_server:
        from runkon_flow.persistence.postgres import schema_version

        before, _ = schema_version(location.target)
    store = location.open(upgrade=True)
    try:
        version = getattr(store, "schema_version", None)
    finally:
        close_store(store)
    if location.is_server:
        if before == version:
            out.print(f"run database {location.label} is up to date (schema version {version})")
        else:
            was = "had no runkon schema" if before is None else f"was at schema version {before}"
            out.print(f"run database {location.label} upgraded to schema version {version} ({was})")
    else:
        from runkon_flow.persistence.schema import SCHEMA_VERSION

        out.print(f"run database {location.label} is at schema version {SCHEMA_VERSION}")
    return EXIT_OK


def add_db_parser(sub: Any) -> None:
    p = sub.add_parser(
        "db",
        help="manage the run database (db upgrade)",
        description="Manage the run database. `db upgrade` brings an existing database's schema up "
        "to this runkon's version (needed once per PostgreSQL database after upgrading runkon).",
    )
    commands = p.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    up = commands.add_parser(
        "upgrade",
        help="upgrade an existing database's schema to this runkon's version",
        description="Upgrade an existing run database's schema to this runkon's version, or create "
        "runkon's tables in an empty PostgreSQL database (required once for a PostgreSQL database "
        "after upgrading runkon; SQLite files are upgraded when opened). A SQLite file that does "
        "not exist is refused: the first `runkon-flow run` creates it.",
    )
    add_db_args(up)
    up.set_defaults(handler=cmd_upgrade)
