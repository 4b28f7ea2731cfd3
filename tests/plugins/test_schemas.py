"""Output schema files (`<dir>/schemas/<name>.yaml`) and the resolver the engine calls."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runkon_flow.errors import WorkflowError
from runkon_flow.plugins.protocols import FieldDef, OutputSchema
from runkon_flow.plugins.schemas import ArrayType, EnumType, ObjectType, SchemaResolver, schema_instruction


def write(root: Path, name: str, text: str) -> Path:
    path = root / "schemas" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_resolves_every_field_type(tmp_path: Path) -> None:
    write(
        tmp_path,
        "review",
        """
fields:
  summary: string
  confidence: { type: number, desc: "0-100", examples: [85] }
  severity: { type: enum, values: [low, high], required: false }
  tags: { type: array, items: string }
  findings:
    type: array
    items:
      file: string
      line: number
  meta: { type: object, fields: { ok: boolean } }
markers:
  has_findings: findings is not empty
""",
    )
    schema = SchemaResolver([tmp_path])("review")
    assert schema == OutputSchema(
        name="review",
        fields=[
            FieldDef("summary", True, "string"),
            FieldDef("confidence", True, "number", "0-100", ["85"]),
            FieldDef("severity", False, EnumType(("low", "high"))),
            FieldDef("tags", True, ArrayType("string")),
            FieldDef(
                "findings",
                True,
                ArrayType(ObjectType((FieldDef("file", True, "string"), FieldDef("line", True, "number")))),
            ),
            FieldDef("meta", True, ObjectType((FieldDef("ok", True, "boolean"),))),
        ],
        markers={"has_findings": "findings is not empty"},
    )
    text = schema_instruction(schema)
    assert '- severity: one of "low", "high" (optional)' in text
    assert "- findings: array of object {file: string, line: number}" in text
    assert "- has_findings: findings is not empty" in text


def test_list_form_of_fields(tmp_path: Path) -> None:
    write(tmp_path, "s", "fields:\n  - name: a\n    type: number\n")
    assert SchemaResolver([tmp_path])("s").fields == [FieldDef("a", True, "number")]


def test_unknown_schema_names_where_it_looked(tmp_path: Path) -> None:
    resolver = SchemaResolver([tmp_path])
    with pytest.raises(WorkflowError) as info:
        resolver("nope")
    assert (
        str(info.value)
        == f"workflow error: schema 'nope' not found (looked for {tmp_path}/schemas/nope.yaml)"
    )
    assert resolver.check("nope") is not None
    assert resolver.check("../../etc/passwd") is not None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("fields:\n  a: { type: wat }\n", 2, "field 'a': unknown type 'wat'"),
        ("fields:\n  a: string\n  b: { type: enum }\n", 3, "field 'b': enum needs a non-empty `values` list"),
        ("description: x\n", 1, "missing required key `fields`"),
        ("fields: {}\n", 1, "a schema needs at least one field"),
        ("fields:\n  a: [1\n", 2, "invalid YAML"),
    ],
)
def test_broken_schema_fails_the_step_with_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, "bad", text)
    resolver = SchemaResolver([tmp_path])
    problem = resolver.check("bad")
    assert problem is not None and problem.location.file == str(path) and problem.location.line == line
    assert message in problem.message
    with pytest.raises(WorkflowError, match=r"bad\.yaml"):
        resolver("bad")


def test_edits_are_picked_up(tmp_path: Path) -> None:
    path = write(tmp_path, "s", "fields:\n  a: string\n")
    resolver = SchemaResolver([tmp_path])
    assert [f.name for f in resolver("s").fields] == ["a"]
    path.write_text("fields:\n  b: string\n")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert [f.name for f in resolver("s").fields] == ["b"]


def test_later_directory_wins(tmp_path: Path) -> None:
    write(tmp_path / "a", "s", "fields:\n  first: string\n")
    write(tmp_path / "b", "s", "fields:\n  second: string\n")
    assert SchemaResolver([tmp_path / "a", tmp_path / "b"])("s").fields[0].name == "second"
