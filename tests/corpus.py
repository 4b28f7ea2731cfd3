"""Where the third-party `.wf` corpus lives: `../shared/conformance` beside the checkout.

CI clones the repository into a fresh folder with a copy of `shared/` beside it, so the path is
found relative to the repository, never hard-coded. `RUNKON_CONFORMANCE_DIR` overrides it.

A developer checkout without the corpus skips the conformance tests (with the reason shown), but
under CI (the `CI` environment variable set, as every CI system does) a missing corpus fails them:
a green CI must never mean "the conformance tests did not run".
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE_DIR = Path(os.environ.get("RUNKON_CONFORMANCE_DIR", REPO_ROOT.parent / "shared" / "conformance"))

# Marks a test that reads the corpus; the `conformance_corpus` fixture (tests/dsl/conftest.py)
# calls `require_corpus`.
needs_corpus = pytest.mark.usefixtures("conformance_corpus")


def under_ci() -> bool:
    """True when the `CI` environment variable is set to anything but an explicit no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_corpus() -> Path:
    """The corpus folder; skips the calling test when it is absent, or fails it under CI."""
    if CONFORMANCE_DIR.is_dir():
        return CONFORMANCE_DIR
    if under_ci():
        pytest.fail(
            f"conformance corpus not found at {CONFORMANCE_DIR} (CI is set, so this is a failure, "
            "not a skip: lay shared/ beside the checkout or set RUNKON_CONFORMANCE_DIR)",
            pytrace=False,
        )
    pytest.skip(f"conformance corpus not found at {CONFORMANCE_DIR}")
