"""The fan-out the durability tests crash, restart and resume: a foreach over the lines of
`items.txt` whose children each append their item to a file (`ran`), so a test can count what
ran, and how many times, whatever happened to the engine or the store meanwhile."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli.run_helpers import spawn, write

PARENT = """workflow {name}-fan {{
  foreach all {{
    over         = lines
    scope        = {{ file = "items.txt" }}
    max_parallel = 8
    workflow     = {name}-item
  }}
}}
"""
CHILD = """workflow {name}-item {{
  script record {{
    run = "./record.sh"
    env = {{ ITEM = "{{{{item.id}}}}" OUT = "{ran}" }}
  }}
}}
"""
RECORD = """#!/bin/sh
sleep 0.03
echo "$ITEM" >> "$OUT"
"""


def write_recording_fan(wf: Path, name: str, items: list[str], ran: Path) -> None:
    """`NAME-fan.wf` over `items`, each child appending its item to `ran`, in folder `wf`."""
    write(wf / f"{name}-fan.wf", PARENT.format(name=name))
    write(wf / f"{name}-item.wf", CHILD.format(name=name, ran=ran))
    write(wf / "record.sh", RECORD, executable=True)
    write(wf / "items.txt", "\n".join(items) + "\n")


def start_recording_fan(
    tmp_path: Path, name: str, items: list[str], db: str, env: dict[str, str]
) -> tuple[subprocess.Popen, Path, Path, Path]:
    """`NAME-fan` over `items` written to `tmp_path/wf` and run on `db` (from `tmp_path`): (the
    process, its stdout, its stderr, the items' record `tmp_path/ran.txt`)."""
    wf, ran = tmp_path / "wf", tmp_path / "ran.txt"
    write_recording_fan(wf, name, items, ran)
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    proc = spawn(
        ["run", f"{name}-fan", "--dir", str(wf), "--db", db, "--progress", "quiet"],
        tmp_path,
        stdout=out,
        stderr=err,
        env=env,
    )
    return proc, out, err, ran


def lines_in(path: Path) -> int:
    """How many items have appended to `path` so far (0 before the first)."""
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0
