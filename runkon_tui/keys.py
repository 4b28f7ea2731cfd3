"""The key a binding has now — the settings' keymap (by binding id), else its own first key — as
every note, toast, hint and dialog button names it (`RunkonApp.key_for`). A label that spelled the
default key named one that did nothing once the keymap moved its binding elsewhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from textual.binding import Binding

if TYPE_CHECKING:
    from textual.screen import Screen


def pretty_key(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "enter": "enter", "escape": "esc"}.get(key, key)


def binding_key(binding: Binding, keymap: Mapping[str, str]) -> str:
    """The key that triggers `binding` now: the keymap's first key for its id, else its own."""
    if binding.id in keymap:
        return pretty_key(keymap[binding.id].split(",")[0])
    return binding.key_display or pretty_key(binding.key.split(",")[0])


def key_of(owners: Iterable[type], binding_id: str, keymap: Mapping[str, str]) -> str:
    """The key that triggers the binding `binding_id` of the first of `owners` (screens,
    widgets) that has one; "?" when none does."""
    for owner in owners:
        for binding in getattr(owner, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.id == binding_id:
                return binding_key(binding, keymap)
    return "?"


def dialog_key(dialog: Screen[Any], binding_id: str) -> str:
    """The key a dialog's button or hint names for its own binding `binding_id`: the dashboard's
    `key_for` (the dialog is on the screen stack from its compose on), else — a dialog shown by
    another app, as tests do — its own binding under that app's keymap."""
    app = dialog.app
    key_for = getattr(app, "key_for", None)
    if callable(key_for):
        return str(key_for(binding_id))
    return key_of([type(dialog)], binding_id, getattr(app, "_keymap", None) or {})
