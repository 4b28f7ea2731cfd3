"""runkon-tui: the Textual dashboard for runkon_flow."""
