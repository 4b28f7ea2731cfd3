"""Connecting to a PostgreSQL run database, and naming it in messages without its password.

Kept apart from the store so the CLI can recognise and print a database URL without importing
psycopg (an optional extra).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from runkon_flow.errors import PersistenceError

URL_SCHEMES = ("postgresql://", "postgres://")

_readers_wait = [0]
log = logging.getLogger(__name__)

#: `listener(text, back)`: told when a store of this process starts waiting out an outage, and
#: when the server is back (`tell_outages`).
OutageListener = Callable[[str, bool], object]
_outage_listeners: list[OutageListener] = []


@contextmanager
def leave_outages_to_the_reader() -> Iterator[None]:
    """While it lasts, this process only reads runs and waits out a server outage its own way
    (`watch`, a dashboard whose runs go to background runners: observe/outage.py): the PostgreSQL
    stores it opens do not wait for the server (their outage window is 0 whatever
    `RUNKON_PG_OUTAGE_S` says) — a read on an interface thread fails at once, as before."""
    _readers_wait[0] += 1
    try:
        yield
    finally:
        _readers_wait[0] -= 1


def outages_left_to_the_reader() -> bool:
    """Inside `leave_outages_to_the_reader()`."""
    return _readers_wait[0] > 0


@contextmanager
def tell_outages(listener: OutageListener) -> Iterator[None]:
    """While it lasts, `listener(text, False)` is told when a PostgreSQL store of this process
    begins to wait out an outage (`RUNKON_PG_OUTAGE_S`), and `listener(text, True)` when the
    server is back — the words the store's log has. An interface whose own runs' calls wait (the
    dashboard running runs in its process) shows the outage so, instead of nothing until the run
    fails. Called on the thread whose store call waits, with the store's connection held: the
    listener must not use the store, only hand the news on (and not block)."""
    _outage_listeners.append(listener)
    try:
        yield
    finally:
        _outage_listeners.remove(listener)


def tell_outage(text: str, back: bool) -> None:
    """The store's news of an outage to every `tell_outages` listener (one that raises is logged)."""
    for listener in list(_outage_listeners):
        try:
            listener(text, back)
        except Exception:
            log.exception("an outage listener raised")


def is_postgres_url(value: str | None) -> bool:
    """True for a `postgresql://` (or `postgres://`) URL: the run database is a PostgreSQL server."""
    return bool(value) and value.strip().lower().startswith(URL_SCHEMES)  # type: ignore[union-attr]


_KV_PASSWORD = re.compile(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def display_dsn(dsn: str) -> str:
    """The DSN as it may appear in a message or a log: the password (in the URL's user part, a
    `password=` query parameter or a `password=` keyword) is left out."""
    if not is_postgres_url(dsn):
        return _KV_PASSWORD.sub("password=***", dsn).strip()
    parts = urlsplit(dsn.strip())
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    # The other parameters as given, not decoded and encoded again: `options=-csearch_path%3Dx`
    # decoded is a URL libpq refuses (`extra key/value separator "="`), and the label is pasted
    # into commands (`db upgrade --db …`).
    query = "&".join(
        part
        for part in parts.query.split("&")
        if part and unquote(part.partition("=")[0]).lower() != "password"
    )
    # Not urlunsplit: it drops the `//` of a URL with an empty host (`postgresql:///db?host=/tmp/…`).
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return f"{shown}?{query}" if query else shown


def error_line(exc: BaseException) -> str:
    """psycopg's message on one line (libpq's are often several: 'connection failed: …\\n\\tIs …')."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:  # the server's message, without the statement and caret psycopg adds
        return primary
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # libpq's lines are sentences without a full stop ('… failed: No such file or directory',
    # 'Is the server running …?'): joined bare they read as one garbled sentence.
    text = lines[0] if lines else ""
    for before, line in itertools.pairwise(lines):
        text += (" " if before[-1] in ".?!:;," else ". ") + line
    return text or type(exc).__name__


_DB_MISSING = re.compile(r'database "([^"]+)" does not exist')


def connect_hint(line: str) -> str:
    """What to do about a refused connection libpq words as it sees it (`; …`), or ''."""
    if "no password supplied" in line:
        return "; give the password in the URL, in PGPASSWORD or in ~/.pgpass"
    if "password authentication failed" in line:
        return "; check the user name and the password (the URL, PGPASSWORD or ~/.pgpass)"
    missing = _DB_MISSING.search(line)
    if missing:
        return (
            f"; create it (createdb {missing[1]}, or CREATE DATABASE as a user who may) — runkon "
            "adds its tables on first use — or fix the URL's database name"
        )
    return ""


def connect(dsn: str, where: str) -> Any:
    """An autocommit connection, or a PersistenceError that says why not in one line."""
    try:
        import psycopg
    except ImportError:
        raise PersistenceError(
            f"run database {where} is a PostgreSQL server, which needs psycopg: "
            "pip install 'runkon-tui[postgres]'"
        ) from None
    try:
        return open_connection(dsn)
    except psycopg.Error as exc:
        raise connect_failure(where, exc) from None
    except (ValueError, TypeError) as exc:  # a malformed URL or option
        raise PersistenceError(f"cannot connect to run database {where}: {exc}") from None


def open_connection(dsn: str) -> Any:
    """psycopg's autocommit connection as the store uses it (psycopg's errors as they are)."""
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="runkon")


def connect_failure(where: str, exc: BaseException) -> PersistenceError:
    """A refused or failed connection to `where`, said in one line with what to do about it."""
    line = error_line(exc)
    return PersistenceError(f"cannot connect to run database {where}: {line}{connect_hint(line)}")
