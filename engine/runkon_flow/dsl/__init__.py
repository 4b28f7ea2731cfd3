"""The `.wf` language: lexer, parser, AST, validation, loading and formatting."""
