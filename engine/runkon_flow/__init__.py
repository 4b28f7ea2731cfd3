"""runkon_flow — a workflow engine for scripted, branching and parallel agentic work.

Pure Python, synchronous and thread-safe; no UI. The dashboard (`runkon_tui`) and the headless
CLI (`runkon_flow.cli`) are two clients of the same public API.
"""

__version__ = "0.1.0"
