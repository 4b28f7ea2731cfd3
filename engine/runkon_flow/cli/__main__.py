"""`python -m runkon_flow.cli`: the same as the `runkon-flow` console script."""

import sys

from runkon_flow.cli import main

sys.exit(main())
