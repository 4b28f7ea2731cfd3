"""The `.wf` language: lexer, parser, AST, validation, loading and formatting."""

from runkon_flow.dsl.formatter import format_workflow
from runkon_flow.dsl.parser import parse_file, parse_workflow

__all__ = ["format_workflow", "parse_file", "parse_workflow"]
