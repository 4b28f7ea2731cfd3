"""`runkon-flow db upgrade`: create the run database's schema, or bring an older one up to this
runkon's version.

A SQLite file is migrated whenever it is opened, so this only matters there to do it ahead of time.
A PostgreSQL database is shared by many machines, some of which may still run an older runkon, so
an older schema there is upgraded only on purpose — with this command — and every other command
refuses it with a message that names this one.
"""

from __future__ import annotations

import argparse
from typing import Any

from runkon_flow.cli.common import EXIT_OK
from runkon_flow.cli.store import add_db_args, close_store, location_of


def cmd_upgrade(args: argparse.Namespace) -> int:
    location = location_of(args)
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
            print(f"run database {location.label} is up to date (schema version {version})")
        else:
            was = "had no runkon schema" if before is None else f"was at schema version {before}"
            print(f"run database {location.label} upgraded to schema version {version} ({was})")
    else:
        from runkon_flow.persistence.schema import SCHEMA_VERSION

        print(f"run database {location.label} is at schema version {SCHEMA_VERSION}")
    return EXIT_OK


def add_db_parser(sub: Any) -> None:
    p = sub.add_parser("db", help="manage the run database (db upgrade)")
    commands = p.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    up = commands.add_parser(
        "upgrade",
        help="create the schema or upgrade an older one to this runkon's version",
        description="Create the run database's schema, or upgrade an older one (required once for a "
        "PostgreSQL database after upgrading runkon; SQLite files are upgraded when opened).",
    )
    add_db_args(up)
    up.set_defaults(handler=cmd_upgrade)
