"""Widgets of the dashboard; each reads the RunView and never talks to the engine."""
