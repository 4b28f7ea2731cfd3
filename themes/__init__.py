"""The theme files shipped with runkon-tui, installed as the data package `runkon_tui.bundled_themes`.

The folder stays at the top of the repository; pyproject.toml maps it into the package
(`package-dir`) so a wheel carries it and `runkon_tui.themes` finds it with importlib.resources,
both from an installed wheel and from an editable install. No code lives here.
"""
