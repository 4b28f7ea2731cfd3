"""A throwaway PostgreSQL server for the tests and CI (standard library only: .ci/run uses it before
the virtualenv exists).

    python3 tests/pgserver.py start     # prints `RUNKON_TEST_PG_DSN=… PGSERVER_DIR=…` (shell-sourceable)
    python3 tests/pgserver.py stop DIR  # stops the server in DIR and removes DIR

The server lives in a fresh temporary directory: `initdb -A trust --no-sync`, a Unix socket in that
directory, `listen_addresses=''` (no TCP at all), `fsync=off`, one database `runkon_test`.
PostgreSQL refuses to run as root, so as root every server command runs as the `postgres` user
(`runuser -u postgres --`) in a directory that user owns. Started in ~2–3 s, stopped in ~0.3 s.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DATABASE = "runkon_test"


def server_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (PATH first, then Debian's versioned directories)."""
    found = shutil.which("pg_ctl")
    candidates = [str(Path(found).parent)] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if all(Path(candidate, tool).exists() for tool in ("initdb", "pg_ctl", "createdb")):
            return Path(candidate)
    return None


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")


def dsn_for(directory: Path) -> str:
    return f"postgresql:///{DATABASE}?host={directory}&user=postgres"


def start() -> tuple[Path, str]:
    """Start a server in a new temporary directory; returns (directory, DSN)."""
    bindir = server_binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    directory = Path(tempfile.mkdtemp(prefix="runkon-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        data = directory / "data"
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-U",
                "postgres",
            ],
            "initdb",
        )
        _start_server(bindir, directory)
        _run([str(bindir / "createdb"), "-h", str(directory), "-U", "postgres", DATABASE], "createdb")
    except BaseException:
        stop(directory)
        raise
    return directory, dsn_for(directory)


def _start_server(bindir: Path, directory: Path) -> None:
    options = (
        f"-c listen_addresses='' -k {directory} -c fsync=off -c full_page_writes=off "
        "-c max_connections=200 -c shared_buffers=32MB"
    )
    data = directory / "data"
    argv = [str(bindir / "pg_ctl"), "start", "-w", "-t", "30", "-D", str(data), "-l", str(directory / "log")]
    _run([*argv, "-o", options], "pg_ctl start")


def halt(directory: Path) -> None:
    """Shut the server in `directory` down (fast: every client connection is cut), keeping its
    data: `start_again` brings it back — an outage as long as the caller likes."""
    bindir = server_binaries()
    assert bindir is not None
    _run(
        [str(bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(Path(directory) / "data")],
        "pg_ctl stop",
    )


def start_again(directory: Path) -> None:
    """Start the server `halt` shut down."""
    bindir = server_binaries()
    assert bindir is not None
    _start_server(bindir, Path(directory))


def stop(directory: Path) -> None:
    """Stop the server in `directory` (if it runs) and remove the directory."""
    bindir = server_binaries()
    data = Path(directory) / "data"
    if bindir is not None and (data / "postmaster.pid").exists():
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"]),
            capture_output=True,
            check=False,
        )
    shutil.rmtree(directory, ignore_errors=True)


def restart(directory: Path) -> None:
    """Restart the server in `directory` (fast shutdown: every client connection is cut)."""
    bindir = server_binaries()
    assert bindir is not None
    # -l as at start: without it the server would write to (and hold open) our captured stdout.
    _run(
        [
            str(bindir / "pg_ctl"),
            "restart",
            "-w",
            "-D",
            str(Path(directory) / "data"),
            "-m",
            "fast",
            "-l",
            str(Path(directory) / "log"),
        ],
        "pg_ctl restart",
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        directory, dsn = start()
        print(f"RUNKON_TEST_PG_DSN='{dsn}' PGSERVER_DIR='{directory}'")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        stop(Path(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
