"""The hooks file: which shell commands and HTTP posts run on which run and gate events.

```yaml
pending_too_long: 30m          # gate.pending_too_long after a gate waited this long
stale_after: 10m               # workflow_run.stale after a run showed no sign of life this long
hooks:
  - events: workflow_run.failed   # a glob, or a list of globs, over the event names
    run: notify-send runkon "$RUNKON_WORKFLOW failed"
  - events: ["gate.*"]
    post: http://127.0.0.1:8080/runkon
    headers: {Authorization: Bearer abc}
    workflows: ["release-*"]   # only runs of these workflows (globs); default: all
    timeout: 5s                # default 10s
```

Where it is found (first that applies): `--hooks FILE`, `$RUNKON_HOOKS`, `.runkon/hooks.yaml` in
the current directory. Every mistake is reported as `file:line: message` before any run starts.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runkon_flow.dsl.durations import DurationError, parse_gate_timeout
from runkon_flow.errors import Problem, SourceLocation
from runkon_flow.humanize import did_you_mean
from runkon_flow.plugins._yaml import ConfigFileError, YamlDoc, parse_yaml

__all__ = [
    "DEFAULT_HOOKS_FILE",
    "HOOKS_ENV",
    "HOOK_EVENTS",
    "ConfigFileError",
    "HookSpec",
    "HooksConfig",
    "find_hooks_file",
    "load_hooks",
]

HOOKS_ENV = "RUNKON_HOOKS"
DEFAULT_HOOKS_FILE = Path(".runkon") / "hooks.yaml"

#: Event names, upstream's (`workflow_run.completed`, `…failed`, `…stale`, `gate.waiting`,
#: `gate.pending_too_long`) and ours beside them (a cancel, a gate's answer or timeout).
HOOK_EVENTS = (
    "workflow_run.completed",
    "workflow_run.failed",
    "workflow_run.cancelled",
    "workflow_run.stale",
    "gate.waiting",
    "gate.pending_too_long",
    "gate.resolved",
    "gate.timed_out",
)


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m or 1h")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return float(value)
    try:
        seconds = parse_gate_timeout(str(value))
    except DurationError as exc:
        raise ValueError(f"{exc} (expected a duration like 30s, 10m or 1h)") from None
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return float(seconds)


def _globs(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class HookSpec(BaseModel):
    """One hook: a shell command (`run`) or an HTTP POST (`post`), on events matching `events`
    (not `on:` — YAML 1.1 reads a bare `on` as the boolean true)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[str]
    run: str | None = None
    post: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    workflows: list[str] = Field(default_factory=lambda: ["*"])
    timeout: float = 10.0
    name: str | None = None

    _as_lists = field_validator("events", "workflows", mode="before")(_globs)
    _timeout = field_validator("timeout", mode="before")(_seconds)

    @field_validator("events")
    @classmethod
    def _known_events(cls, patterns: list[str]) -> list[str]:
        if not patterns:
            raise ValueError("name at least one event (a glob such as 'gate.*')")
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(event, pattern) for event in HOOK_EVENTS):
                close = did_you_mean(pattern, HOOK_EVENTS)  # a misspelt name, as everywhere
                hint = f"{close} " if close else ""
                raise ValueError(f"'{pattern}' matches no event ({hint}events: {', '.join(HOOK_EVENTS)})")
        return patterns

    @field_validator("post")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is not an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _one_action(self) -> HookSpec:
        if (self.run is None) == (self.post is None):
            raise ValueError("give exactly one of 'run' (a shell command) or 'post' (a URL)")
        if self.headers and self.post is None:
            raise ValueError("'headers' go with 'post'")
        return self

    @property
    def label(self) -> str:
        return self.name or self.run or self.post or "hook"

    def wants(self, event: str, workflow: str) -> bool:
        return any(fnmatch.fnmatchcase(event, p) for p in self.events) and any(
            fnmatch.fnmatchcase(workflow, w) for w in self.workflows
        )


class HooksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hooks: list[HookSpec] = Field(default_factory=list)
    pending_too_long: float = 1800.0
    stale_after: float = 600.0
    file: str = Field(default="", exclude=True)

    _durations = field_validator("pending_too_long", "stale_after", mode="before")(_seconds)

    def wants(self, event: str, workflow: str) -> list[HookSpec]:
        return [h for h in self.hooks if h.wants(event, workflow)]


def find_hooks_file(explicit: str | None = None, cwd: Path | None = None) -> Path | None:
    """`explicit` (must exist), else `$RUNKON_HOOKS` (must exist), else `.runkon/hooks.yaml` under
    `cwd` when there is one; None when no hooks are configured."""
    for given in (explicit, os.environ.get(HOOKS_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigFileError(_problem(str(path), None, "hooks file not found"))
            return path
    default = (cwd or Path.cwd()) / DEFAULT_HOOKS_FILE
    return default if default.is_file() else None


def load_hooks(path: Path) -> HooksConfig:
    """Read and check a hooks file; `ConfigFileError` (file:line: why) when it is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(_problem(str(path), None, f"cannot read the hooks file: {exc}")) from None
    doc = parse_yaml(text, file=str(path))
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise doc.error("a hooks file is a mapping with a 'hooks' list")
    _no_boolean_keys(doc, data)
    try:
        return HooksConfig.model_validate({**data, "file": str(path)})
    except ValidationError as exc:
        raise _located(doc, exc) from None


def _no_boolean_keys(doc: YamlDoc, data: dict[Any, Any]) -> None:
    """YAML 1.1 reads a bare `on` (also `yes`, `off`, `no`) as a boolean: `on: gate.*`, the way CI
    files name events, reached the check as key `True` ("Keys should be strings", or "'events' is
    required"). Say what happened and what to write instead."""
    hooks = data.get("hooks")
    entries = [((), data)] + [
        (("hooks", i), entry) for i, entry in enumerate(hooks if isinstance(hooks, list) else [])
    ]
    for path, mapping in entries:
        if not isinstance(mapping, dict):
            continue
        for key in mapping:
            if isinstance(key, bool):
                words = "on or yes" if key else "off or no"
                raise doc.error(
                    f"a bare {words} is read by YAML as {str(key).lower()}, not as a key: "
                    "name a hook's events with 'events:'",
                    *path,
                    key,
                )


def _located(doc: YamlDoc, exc: ValidationError) -> ConfigFileError:
    """The first pydantic error at the line of the key or entry it is about."""
    error = exc.errors()[0]
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and "[" in part))
    where = ".".join(str(p) for p in loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'"
    elif error["type"] == "missing":
        message = f"'{loc[-1]}' is required"
    elif where:
        message = f"{where}: {message}"
    return doc.error(message, *loc)


def _problem(file: str, line: int | None, message: str) -> Problem:
    return Problem(message, None, SourceLocation(file, line, None))
