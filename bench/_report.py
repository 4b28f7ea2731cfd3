"""Shared reporting for the bench scripts: every figure as min / median / max, next to its floor
measured interleaved in the same run, with the machine's load average before and after (the
figures mean little on a loaded machine, so the output says how loaded it was)."""

from __future__ import annotations

import os
import resource
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path


def loadavg() -> str:
    """`/proc/loadavg` (1, 5, 15 minutes) and the CPU count, or what the OS offers instead."""
    path = Path("/proc/loadavg")
    text = path.read_text().split() if path.exists() else [f"{x:.2f}" for x in os.getloadavg()]
    return f"load average {' '.join(text[:3])} on {os.cpu_count()} CPUs"


def mmm(values: Sequence[float], width: int = 8, digits: int = 1) -> str:
    """`min  median  max`, each right-aligned in `width`."""
    return " ".join(f"{v:>{width}.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def peak_rss_mb() -> float:
    """This process's own peak RSS in MB: `VmHWM` where /proc has it — Linux carries `ru_maxrss`
    over fork and exec, so a round run in a fresh process reported at least the RSS of the bench
    that started it — else `ru_maxrss` (kilobytes; bytes on macOS)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / (1024 * 1024)
