"""Every key binding has an id a user can remap (docs/dashboard.md, "Keys"); a binding the docs
do not name is a key nobody can find or remap."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from textual.binding import Binding

import runkon_tui

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "dashboard.md").read_text(encoding="utf-8")


def _bindings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for module_info in pkgutil.walk_packages(runkon_tui.__path__, "runkon_tui."):
        module = importlib.import_module(module_info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for binding in cls.__dict__.get("BINDINGS", []):
                if isinstance(binding, Binding) and binding.id is not None:
                    found.setdefault(binding.id, []).append(f"{name}: {binding.key}")
    return found


def test_every_binding_id_is_in_the_dashboard_docs() -> None:
    bindings = _bindings()
    assert {"run", "approve", "gate_approve", "form_run", "retry_failed"} <= set(bindings)
    missing = {binding_id: where for binding_id, where in bindings.items() if f"`{binding_id}`" not in DOCS}
    assert not missing, f"binding ids docs/dashboard.md does not name: {missing}"
