"""Fixtures shared by the DSL tests."""

from pathlib import Path

import pytest

from tests.corpus import require_corpus


@pytest.fixture
def conformance_corpus() -> Path:
    """The third-party corpus: skipped without it on a developer machine, failed without it under CI."""
    return require_corpus()
