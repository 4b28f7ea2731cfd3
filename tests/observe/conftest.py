"""The engine harness (tests/engine/conftest.py) for run-model tests, on every store kind."""

from __future__ import annotations

from tests.engine.conftest import h, memory_store, store  # noqa: F401 - fixtures
