"""`DefaultScriptEnvProvider`: extra environment for scripts and agent commands, per identity.

A step written `as = "docs-bot"` runs with the variables configured for `docs-bot`; everything
else runs with the provider's base variables only. Identities live in an optional
`<workflow dir>/identities.yaml` so secrets never have to be written into `.wf` files:

    docs-bot:
      GH_TOKEN: ${DOCS_BOT_TOKEN}     # ${NAME} is read from the host environment at run time
      GIT_AUTHOR_NAME: Docs Bot

An identity nobody configured gets the base variables (and a log line), because `as` is also used
by gates and hosts that need no environment at all.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runkon_flow.errors import Problem
from runkon_flow.plugins._yaml import ConfigFileError, parse_yaml, scalar_text
from runkon_flow.plugins.protocols import RunContext

log = logging.getLogger(__name__)

IDENTITIES_FILE = "identities.yaml"
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class DefaultScriptEnvProvider:
    """ScriptEnvProvider (engine.md §3.5) backed by plain mappings; thread-safe (read-only)."""

    def __init__(
        self,
        identities: Mapping[str, Mapping[str, str]] | None = None,
        base: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._identities = {name: dict(values) for name, values in (identities or {}).items()}
        self._base = dict(base or {})
        self._environ = environ  # None → os.environ at call time

    @property
    def identities(self) -> list[str]:
        return sorted(self._identities)

    def env(self, ctx: RunContext, as_identity: str | None) -> dict[str, str]:
        result = dict(self._base)
        if as_identity:
            values = self._identities.get(as_identity)
            if values is None:
                if self._identities:
                    log.info(
                        "identity %r has no entry in %s; using base environment", as_identity, IDENTITIES_FILE
                    )
            else:
                result.update(values)
        environ = os.environ if self._environ is None else self._environ
        return {
            key: _REFERENCE.sub(lambda m: environ.get(m.group(1), ""), value) for key, value in result.items()
        }

    @classmethod
    def from_dirs(
        cls, dirs: Sequence[Path], **kwargs: object
    ) -> tuple[DefaultScriptEnvProvider, list[Problem]]:
        """Read `identities.yaml` from each dir (later dirs add to / override earlier ones).

        Returns the provider and one Problem per mistake; a broken file contributes nothing."""
        identities: dict[str, dict[str, str]] = {}
        problems: list[Problem] = []
        for directory in dirs:
            path = Path(directory) / IDENTITIES_FILE
            if not path.is_file():
                continue
            try:
                for name, values in load_identities(path).items():
                    identities.setdefault(name, {}).update(values)
            except ConfigFileError as exc:
                problems.append(exc.problem)
        return cls(identities, **kwargs), problems  # type: ignore[arg-type]


def load_identities(path: Path) -> dict[str, dict[str, str]]:
    """Parse one identities file; raise ConfigFileError naming the line of the first mistake."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(Problem(f"cannot read {file}: {exc.strerror or exc}")) from None
    doc = parse_yaml(text, file=file)
    if doc.data is None:
        return {}
    if not isinstance(doc.data, dict):
        raise doc.error("expected a mapping of identity name → { VARIABLE: value }")
    result: dict[str, dict[str, str]] = {}
    for name, values in doc.data.items():
        name = str(name)
        if values is None:
            result[name] = {}
            continue
        if not isinstance(values, dict):
            raise doc.error(f"identity '{name}': expected a mapping of VARIABLE: value", name)
        env: dict[str, str] = {}
        for key, value in values.items():
            key = str(key)
            if not _VAR_NAME.match(key):
                raise doc.error(
                    f"identity '{name}': '{key}' is not a valid environment variable name", name, key
                )
            text_value = scalar_text(value)
            if text_value is None:
                raise doc.error(f"identity '{name}': value of '{key}' must be a string", name, key)
            env[key] = text_value
        result[name] = env
    return result
