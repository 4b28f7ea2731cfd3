"""The `.wf` language: lexer, parser, AST, validation, loading and formatting."""

from runkon_flow.dsl.formatter import format_source, format_workflow
from runkon_flow.dsl.loading import FileError, LoadResult, load_workflow_dir
from runkon_flow.dsl.parser import parse_file, parse_workflow
from runkon_flow.dsl.references import detect_workflow_cycles, find_workflow_cycle
from runkon_flow.dsl.validation import ValidationReport, check_workflow, validate_workflow

__all__ = [
    "FileError",
    "LoadResult",
    "ValidationReport",
    "check_workflow",
    "detect_workflow_cycles",
    "find_workflow_cycle",
    "format_source",
    "format_workflow",
    "load_workflow_dir",
    "parse_file",
    "parse_workflow",
    "validate_workflow",
]
