"""A missing conformance corpus is a skip on a developer machine and a failure under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.corpus import REPO_ROOT

CORPUS_TESTS = ["tests/dsl/test_conformance.py", "tests/dsl/test_parse_conformance.py"]


def run_corpus_tests(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["RUNKON_CONFORMANCE_DIR"] = str(tmp_path / "no-corpus-here")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *CORPUS_TESTS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_ci_a_missing_corpus_skips_with_the_reason_shown(tmp_path: Path) -> None:
    proc = run_corpus_tests(tmp_path, ci=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed" not in proc.stdout
    assert "skipped" in proc.stdout and "conformance corpus not found" in proc.stdout


def test_under_ci_a_missing_corpus_fails_every_corpus_test(tmp_path: Path) -> None:
    proc = run_corpus_tests(tmp_path, ci="true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "skipped" not in proc.stdout
    assert "CI is set, so this is a failure" in proc.stdout


def test_ci_set_to_false_counts_as_a_developer_machine(tmp_path: Path) -> None:
    proc = run_corpus_tests(tmp_path, ci="false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
