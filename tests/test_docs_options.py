"""Every command-line option the documentation names exists: a user who copies one never gets
"unrecognized arguments" for a flag the docs promised."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from runkon_flow.cli import build_parser as flow_parser

from runkon_tui.cli import build_parser as tui_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# Flags of other programs the docs quote: an example agent command, pytest, `ray start`, `gh run view`,
# `node --eval`, `jq --arg`, `sed --expression`, `gawk --source`, `docker run --entrypoint`.
OTHER_PROGRAMS = {
    "--strict",
    "--print",
    "--snapshot-update",
    "--log",
    "--log-failed",
    "--eval",
    "--arg",
    "--expression",
    "--source",
    "--entrypoint",
}
RAY_START = {
    "--address",
    "--head",
    "--port",
    "--node-ip-address",
    "--num-cpus",
    "--temp-dir",
    "--ray-client-server-port",
    "--min-worker-port",
    "--max-worker-port",
}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:  # argparse has no public walk of its options
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= parser_options(sub)
    return found


def bench_options() -> set[str]:
    return {
        match
        for path in (ROOT / "bench").glob("*.py")
        for match in re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", path.read_text(encoding="utf-8"))
    }


def test_every_documented_option_is_accepted_by_a_command() -> None:
    known = parser_options(flow_parser()) | parser_options(tui_parser()) | bench_options()
    known |= OTHER_PROGRAMS | RAY_START
    missing = sorted(
        f"{path.relative_to(ROOT)}: {option}"
        for path in DOCS
        for option in set(OPTION.findall(path.read_text(encoding="utf-8")))
        if option not in known
    )
    assert not missing, "documented options that no command accepts:\n" + "\n".join(missing)
