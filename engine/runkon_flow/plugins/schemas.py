"""Output schemas: `output = review` on a call names `<workflow dir>/schemas/review.yaml`.

The engine never validates agent output against a schema (engine.md §3.9); it hands the resolved
`OutputSchema` to the executor, which tells the agent what to produce. A schema file:

    description: What a reviewer reports        # optional
    fields:
      summary:    { type: string, desc: "One paragraph" }
      confidence: { type: number, desc: "0-100", examples: ["85"] }
      severity:   { type: enum, values: [low, medium, high], required: false }
      findings:   { type: array, items: string }
    markers:                                    # optional: marker → when to emit it
      has_findings: findings is not empty

Field shorthand `summary: string` is accepted. Types: string, number, boolean, enum (with
`values`), array (with `items`: a type name or a mapping of fields), object (with `fields`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runkon_flow.errors import Problem, WorkflowError
from runkon_flow.plugins._yaml import ConfigFileError, YamlDoc, parse_yaml, scalar_text
from runkon_flow.plugins.protocols import FieldDef, OutputSchema

SCHEMAS_DIR = "schemas"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SCALARS = ("string", "number", "boolean")


@dataclass(frozen=True)
class EnumType:
    values: tuple[str, ...]


@dataclass(frozen=True)
class ArrayType:
    """`items` is a scalar type name, an ObjectType, or None (untyped)."""

    items: Any = None


@dataclass(frozen=True)
class ObjectType:
    fields: tuple[FieldDef, ...] = ()


def describe_type(field_type: Any) -> str:
    """Human text for a field type, as used in the instruction given to agents."""
    if isinstance(field_type, EnumType):
        return "one of " + ", ".join(json.dumps(v) for v in field_type.values)
    if isinstance(field_type, ArrayType):
        if field_type.items is None:
            return "array"
        return f"array of {describe_type(field_type.items)}"
    if isinstance(field_type, ObjectType):
        inner = ", ".join(f"{f.name}: {describe_type(f.field_type)}" for f in field_type.fields)
        return f"object {{{inner}}}"
    return str(field_type)


def schema_instruction(schema: OutputSchema) -> str:
    """What an agent is told to produce when its call names a schema."""
    lines = [
        f"When you are done, end your answer with a block like this (schema '{schema.name}'):",
        "<<<FLOW_OUTPUT>>>",
        '{"markers": [], "context": "<one-line summary>", ...the fields below...}',
        "<<<END_FLOW_OUTPUT>>>",
        "Fields:",
    ]
    for f in schema.fields:
        extra = "" if f.required else " (optional)"
        line = f"- {f.name}: {describe_type(f.field_type)}{extra}"
        if f.desc:
            line += f" — {f.desc}"
        if f.examples:
            line += f" (e.g. {', '.join(f.examples)})"
        lines.append(line)
    if schema.markers:
        lines.append("Markers (put in `markers` when they apply):")
        lines.extend(f"- {name}: {when}" for name, when in schema.markers.items())
    return "\n".join(lines)


# --------------------------------------------------------------------------- loading


def load_schema(path: Path, name: str | None = None) -> OutputSchema:
    """Read one schema file; raise ConfigFileError naming file and line of the first mistake."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(Problem(f"cannot read {file}: {exc.strerror or exc}")) from None
    doc = parse_yaml(text, file=file)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error("a schema must be a mapping with a `fields` key")
    schema_name = name or path.stem
    if "fields" not in data:
        raise doc.error("missing required key `fields`")
    fields = _fields(doc, data["fields"], ("fields",))
    markers_raw = data.get("markers")
    markers: dict[str, str] | None = None
    if markers_raw is not None:
        if isinstance(markers_raw, list):
            markers = {str(m): "" for m in markers_raw}
        elif isinstance(markers_raw, dict):
            markers = {str(k): scalar_text(v) or "" for k, v in markers_raw.items()}
        else:
            raise doc.error("`markers` must be a list or a mapping of marker → description", "markers")
    return OutputSchema(name=schema_name, fields=list(fields), markers=markers)


def _fields(doc: YamlDoc, raw: Any, path: tuple[str | int, ...]) -> tuple[FieldDef, ...]:
    result: list[FieldDef] = []
    if isinstance(raw, dict):
        entries = [(str(k), v, (*path, str(k))) for k, v in raw.items()]
    elif isinstance(raw, list):
        entries = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or "name" not in item:
                raise doc.error("each field in a list needs a `name`", *path, index)
            entries.append((str(item["name"]), item, (*path, index)))
    else:
        raise doc.error("`fields` must be a mapping of field name → type", *path)
    if not entries:
        raise doc.error("a schema needs at least one field", *path)
    for field_name, spec, where in entries:
        result.append(_field(doc, field_name, spec, where))
    return tuple(result)


def _field(doc: YamlDoc, name: str, spec: Any, where: tuple[str | int, ...]) -> FieldDef:
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise doc.error(f"field '{name}': expected a type name or a mapping with `type`", *where)
    field_type = _type(doc, name, spec, where)
    required = spec.get("required", True)
    if not isinstance(required, bool):
        raise doc.error(f"field '{name}': `required` must be true or false", *where, "required")
    examples_raw = spec.get("examples", [])
    if not isinstance(examples_raw, list):
        examples_raw = [examples_raw]
    desc = spec.get("desc", spec.get("description"))
    return FieldDef(
        name=name,
        required=required,
        field_type=field_type,
        desc=scalar_text(desc),
        examples=[scalar_text(e) or "" for e in examples_raw],
    )


def _type(doc: YamlDoc, name: str, spec: dict[str, Any], where: tuple[str | int, ...]) -> Any:
    kind = spec.get("type", "string")
    if kind in _SCALARS:
        return kind
    if kind == "enum":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise doc.error(f"field '{name}': enum needs a non-empty `values` list", *where)
        return EnumType(tuple(scalar_text(v) or "" for v in values))
    if kind == "array":
        items = spec.get("items")
        if items is None:
            return ArrayType(None)
        if isinstance(items, str):
            if items not in _SCALARS:
                raise doc.error(f"field '{name}': unknown item type '{items}'", *where, "items")
            return ArrayType(items)
        return ArrayType(ObjectType(_fields(doc, items, (*where, "items"))))
    if kind == "object":
        return ObjectType(_fields(doc, spec.get("fields"), (*where, "fields")))
    raise doc.error(
        f"field '{name}': unknown type '{kind}' "
        "(expected one of: string, number, boolean, enum, array, object)",
        *where,
    )


class SchemaResolver:
    """`Callable[[str], OutputSchema]` over `<dir>/schemas/<name>.yaml` (later dirs win).

    Files are cached by modification time, so editing a schema takes effect on the next call."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self._dirs = [Path(d) for d in dirs]
        self._cache: dict[Path, tuple[float, OutputSchema]] = {}
        self._lock = threading.Lock()

    def find(self, name: str) -> Path | None:
        if not _NAME.match(name):
            return None
        for directory in reversed(self._dirs):
            for suffix in (".yaml", ".yml"):
                path = directory / SCHEMAS_DIR / f"{name}{suffix}"
                if path.is_file():
                    return path
        return None

    def searched(self, name: str) -> list[str]:
        return [str(d / SCHEMAS_DIR / f"{name}.yaml") for d in self._dirs]

    def check(self, name: str) -> Problem | None:
        """Why `name` cannot be resolved, or None if it can (for pre-run validation)."""
        try:
            self._load(name)
        except ConfigFileError as exc:
            return exc.problem
        return None

    def __call__(self, name: str) -> OutputSchema:
        try:
            return self._load(name)
        except ConfigFileError as exc:
            problem = exc.problem
            raise WorkflowError(problem.render() if problem.location.file else problem.text()) from None

    def _load(self, name: str) -> OutputSchema:
        path = self.find(name)
        if path is None:
            raise ConfigFileError(
                Problem(f"schema '{name}' not found (looked for {', '.join(self.searched(name))})")
            )
        mtime = path.stat().st_mtime
        with self._lock:
            cached = self._cache.get(path)
            if cached and cached[0] == mtime:
                return cached[1]
        schema = load_schema(path, name)
        with self._lock:
            self._cache[path] = (mtime, schema)
        return schema
