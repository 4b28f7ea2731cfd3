"""Item files: what a run pays to read a `foreach … over = static` items file (issue 15 target 5).

    .venv/bin/python bench/bench_item_files.py [--items 10000] [--repeat 5]

One "run" is everything the engine and `validate` ask of the provider for one run: validate_scope,
scope_warnings, then parse_scope + items (a fresh provider each time, so nothing is cached across
runs). The floor, timed interleaved in the same loop, is one bare parse of the same file: `json.loads`
for `.json`, PyYAML's C loader (CSafeLoader) for `.yaml`. Target: the run costs about one parse (the
file is read once per run), with file:line:col kept in every error (tests/plugins/test_item_providers.py).
Prints min/median/max of each and the load average, before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from runkon_flow.plugins.context import LocalRunContext
from runkon_flow.plugins.item_providers import StaticProvider
from runkon_flow.plugins.protocols import ProviderInfo

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def one_run(root: Path, name: str) -> float:
    provider = StaticProvider(root)
    scope = {"file": name}
    start = time.perf_counter()
    assert provider.validate_scope(scope) is None
    provider.scope_warnings(scope)
    parsed = provider.parse_scope(scope)
    provider.items(LocalRunContext(root), ProviderInfo("step"), parsed, {})
    return time.perf_counter() - start


def floor(path: Path) -> float:
    start = time.perf_counter()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        json.loads(text)
    else:
        yaml.load(text, Loader=LOADER)
    return time.perf_counter() - start


def stats(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{min(ms):8.1f} {statistics.median(ms):8.1f} {max(ms):8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    items = [{"id": f"item-{i:05d}", "team": "web", "n": i} for i in range(args.items)]
    load_before = Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else "?"
    print(f"items file with {args.items} entries; {args.repeat} interleaved repeats; {os.cpu_count()} CPUs")
    print(f"load before: {load_before}; libyaml: {LOADER is not yaml.SafeLoader}")
    print(f"{'file':<11} {'what':<24} {'min ms':>8} {'median':>8} {'max ms':>8}")
    with tempfile.TemporaryDirectory(prefix="runkon-items-") as tmp:
        root = Path(tmp)
        (root / "items.json").write_text(json.dumps(items))
        (root / "items.yaml").write_text(yaml.safe_dump(items))
        for name in ("items.json", "items.yaml"):
            runs: list[float] = []
            floors: list[float] = []
            for _ in range(args.repeat):
                runs.append(one_run(root, name))
                floors.append(floor(root / name))
            print(f"{name:<11} {'one run (provider)':<24} {stats(runs)}")
            print(f"{name:<11} {'floor: one bare parse':<24} {stats(floors)}")
            ratio = statistics.median(runs) / statistics.median(floors)
            print(f"{name:<11} {'ratio (medians)':<24} {ratio:8.2f}")
    load_after = Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else "?"
    print(f"load after: {load_after}")


if __name__ == "__main__":
    main()
