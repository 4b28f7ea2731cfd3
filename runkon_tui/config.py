"""The dashboard's small settings file: the chosen theme and key remappings.

Lives at `$RUNKON_TUI_CONFIG` when set (tests point it into a temp dir), else
`$XDG_CONFIG_HOME/runkon/tui.yaml` (default `~/.config/runkon/tui.yaml`):

    theme: runkon-light
    keymap:            # binding id → keys, as shown by `?` help
      cancel: ctrl+x
      approve: a,y
    executor: ray      # where foreach children run: local (default) or ray (docs/scale-out.md)
    ray_address: 10.0.0.1:6379   # else $RAY_ADDRESS
    run_in: dashboard  # where runs started here execute: runner (default) or dashboard

A missing file means defaults; a broken one is reported in the dashboard and otherwise ignored.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_ENV = "RUNKON_TUI_CONFIG"
EXECUTORS = ("local", "ray")
RUN_IN = ("runner", "dashboard")  # a background runner process per run, or this process
#: Binding ids a release renamed or split → the ids that do their work now: a keymap that still
#: names an old id is warned about (its mapping would otherwise be dropped without a word).
RENAMED_KEY_IDS: dict[str, tuple[str, ...]] = {
    "inbox_note_answer": ("inbox_note_approve", "inbox_note_reject"),
}


def config_path() -> Path:
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "runkon" / "tui.yaml"


@dataclass
class TuiConfig:
    path: Path
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)
    executor: str | None = None  # "local" | "ray"; None: $RUNKON_EXECUTOR, else local
    ray_address: str | None = None
    run_in: str | None = None  # "runner" | "dashboard"; None: runner
    error: str | None = None

    def save(self, key: str) -> str | None:
        """Write this one setting (a top-level scalar: theme, executor, ray_address, run_in) into
        the file, keeping every other line as the user wrote it — comments, and values that did
        not parse, which a whole-file rewrite would drop. Returns an error text instead of
        raising (settings are best effort)."""
        value = getattr(self, key)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            return f"cannot save settings to {self.path}: {exc.strerror or exc}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(_with_setting(text, key, value), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:
            return f"cannot save settings to {self.path}: {exc.strerror or exc}"
        return None


def _with_setting(text: str, key: str, value: str | None) -> str:
    """`text` with the top-level `key:` line (and any indented continuation of its value) set to
    `value`, appended when absent, removed for None; every other line untouched."""
    lines = text.splitlines(keepends=True)
    entry = yaml.safe_dump({key: value}, default_flow_style=False) if value is not None else ""
    out: list[str] = []
    placed = False
    skipping = False
    for line in lines:
        if skipping and line[:1] in (" ", "\t") and line.strip() and not line.lstrip().startswith("#"):
            continue  # the old value's continuation lines
        skipping = False
        if line.startswith(f"{key}:") or line.startswith(f"{key} :"):
            if not placed:
                out.append(entry)
                placed = True
            skipping = True
            continue
        out.append(line)
    if not placed and entry:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(entry)
    return "".join(out)


def load_config(path: Path | None = None) -> TuiConfig:
    path = path or config_path()
    cfg = TuiConfig(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return cfg
    except OSError as exc:
        cfg.error = f"{path}: cannot read settings: {exc.strerror or exc}"
        return cfg
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        cfg.error = f"{path}{where}: invalid YAML in settings: {getattr(exc, 'problem', exc)}"
        return cfg
    if not isinstance(data, dict):
        cfg.error = f"{path}: settings must be a mapping (theme, keymap)"
        return cfg
    theme = data.get("theme")
    if theme is not None:
        cfg.theme = str(theme)
    cfg.executor = _choice(cfg, data, "executor", EXECUTORS)
    if data.get("ray_address") is not None:
        cfg.ray_address = str(data["ray_address"])
    cfg.run_in = _choice(cfg, data, "run_in", RUN_IN)
    keymap = data.get("keymap") or {}
    if not isinstance(keymap, dict):
        _add_error(cfg, f"{path}: `keymap` must map binding ids to keys")
    else:
        for key, keys in keymap.items():
            if keys is None or keys == [] or keys == "":
                _add_error(cfg, f"{path}: keymap `{key}` names no key (write e.g. `{key}: ctrl+x`)")
            elif isinstance(keys, list):  # `cancel: [ctrl+x, x]` is the YAML way to write `ctrl+x,x`
                cfg.keymap[str(key)] = ",".join(str(k).strip() for k in keys)
            else:
                cfg.keymap[str(key)] = str(keys)
        for old, new in RENAMED_KEY_IDS.items():
            if old in cfg.keymap:
                _add_error(
                    cfg,
                    f"{path}: keymap id `{old}` is no longer used (its keys {cfg.keymap[old]!r} do "
                    f"nothing): map {' and '.join(f'`{n}`' for n in new)} instead",
                )
    return cfg


def unknown_keymap_ids(cfg: TuiConfig, known: set[str]) -> list[str]:
    """One problem line per keymap id that no binding has (`run_workflw`): such an entry did
    nothing, without a word. The ids a release renamed are reported by `load_config` already."""
    problems = []
    for key in cfg.keymap:
        if key in known or key in RENAMED_KEY_IDS:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        guess = f"did you mean `{close[0]}`? " if close else ""
        problems.append(
            f"{cfg.path}: keymap id `{key}` is not a binding id, so it does nothing ({guess}`?` in the "
            "dashboard lists every binding id)"
        )
    return problems


def _add_error(cfg: TuiConfig, text: str) -> None:
    """One more problem with the settings file (each on its own line; none hides another)."""
    cfg.error = f"{cfg.error}\n{text}" if cfg.error else text


def _choice(cfg: TuiConfig, data: dict, key: str, choices: tuple[str, ...]) -> str | None:
    """`data[key]` when it is one of `choices`; otherwise None, and a wrong value is `cfg.error`."""
    value = data.get(key)
    if value is None:
        return None
    if str(value) not in choices:
        _add_error(cfg, f"{cfg.path}: `{key}` must be one of {', '.join(choices)}, not {value!r}")
        return None
    return str(value)
