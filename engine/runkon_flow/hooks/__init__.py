"""Telling people what happened: hooks (shell commands and HTTP posts on run and gate events,
configured in a YAML file) and the terminal's bell and desktop notification. No UI imports; the CLI
and the dashboard both use it (docs/notifications.md)."""

from runkon_flow.hooks.config import (
    HOOK_EVENTS,
    HOOKS_ENV,
    ConfigFileError,
    HooksConfig,
    HookSpec,
    find_hooks_file,
    load_hooks,
)
from runkon_flow.hooks.events import HookEvent, HookEvents
from runkon_flow.hooks.runner import HookOutcome, HookRunner, hooks_from, open_hooks
from runkon_flow.hooks.terminal import TerminalAlerts, alert_sequence, notify_setting_problem

__all__ = [
    "HOOKS_ENV",
    "HOOK_EVENTS",
    "ConfigFileError",
    "HookEvent",
    "HookEvents",
    "HookOutcome",
    "HookRunner",
    "HookSpec",
    "HooksConfig",
    "TerminalAlerts",
    "alert_sequence",
    "find_hooks_file",
    "hooks_from",
    "load_hooks",
    "notify_setting_problem",
    "open_hooks",
]
