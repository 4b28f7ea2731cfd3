"""Where the third-party `.wf` corpus lives: `../shared/conformance` beside the checkout.

CI clones the repository into a fresh folder with a copy of `shared/` beside it, so the path is
found relative to the repository, never hard-coded. `RUNKON_CONFORMANCE_DIR` overrides it.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE_DIR = Path(os.environ.get("RUNKON_CONFORMANCE_DIR", REPO_ROOT.parent / "shared" / "conformance"))
