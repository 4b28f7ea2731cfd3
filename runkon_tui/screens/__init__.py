"""Screens of the dashboard: main, runs history, help, and the modal dialogs."""
