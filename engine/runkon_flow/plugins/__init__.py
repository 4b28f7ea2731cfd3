"""Extension-point protocols and their reference implementations."""
