"""YAML reading for plug-in configuration files (agents, schemas, identities, item lists).

One place that turns PyYAML's exceptions into `Problem`s naming file, line and column, and that
remembers where every mapping key and list entry was written, so a later semantic check ("`runtime`
must be one of …") can still point at the right line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from runkon_flow.errors import FlowError, Problem, SourceLocation

Path_ = tuple[str | int, ...]

# libyaml's loader when PyYAML was built with it (about 10x faster), else the pure one: the same data.
_FAST_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: How many values aliases (`*name`) may add to a document once expanded. An alias is the same
#: object again, cheap to load; but whatever walks the data (a list in an item's context becomes
#: JSON text, line numbers are recorded per entry) walks it expanded: nine levels of ten aliases
#: ("billion laughs") in a few hundred bytes took every byte of memory the machine had.
MAX_ALIAS_EXPANSION = 1_000_000


class ConfigFileError(FlowError):
    """A user's configuration file is wrong; `problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(problem.render())


@dataclass
class YamlDoc:
    """Parsed data plus the 1-based line of every key/entry path (`()` is the document itself)."""

    data: Any
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, *path: str | int) -> int | None:
        """The line of the deepest known prefix of `path` (falls back towards the document)."""
        p: Path_ = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get(())

    def problem(self, message: str, *path: str | int, hint: str | None = None) -> Problem:
        return Problem(message, hint, SourceLocation(self.file, self.line_of(*path), None))

    def error(self, message: str, *path: str | int, hint: str | None = None) -> ConfigFileError:
        return ConfigFileError(self.problem(message, *path, hint=hint))


def parse_yaml(text: str, *, file: str, line_offset: int = 0) -> YamlDoc:
    """Parse one YAML document; raise ConfigFileError with the position of a syntax error.

    `line_offset` is added to every line (front matter starts after the opening `---`)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()  # one pass: compose, then build the data from the nodes
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and exc.context_mark is not None and mark.line >= len(text.splitlines()):
            mark = exc.context_mark  # "unexpected end": point at what was left open, not past the end
        line = mark.line + 1 + line_offset if mark else None
        column = mark.column + 1 if mark else None
        reason = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        raise ConfigFileError(
            Problem(f"invalid YAML: {reason}", None, SourceLocation(file, line, column))
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(
            Problem(f"invalid YAML: {exc}", None, SourceLocation(file, None, None))
        ) from None
    finally:
        loader.dispose()
    _check_aliases(data, file)
    doc = YamlDoc(data, file)
    if node is not None:
        _record_lines(node, (), doc.lines, line_offset)
    else:
        doc.lines[()] = 1 + line_offset
    return doc


def load_data(text: str, *, file: str) -> Any:
    """The data of one YAML document, fast (libyaml when available), without line numbers; a
    syntax error is reported exactly as `parse_yaml` reports it (file:line:col)."""
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        return parse_yaml(text, file=file).data  # the pure loader locates the error and raises it
    _check_aliases(data, file)
    return data


def _check_aliases(data: Any, file: str) -> None:
    """Refuse a document whose aliases refer to themselves (a list inside itself) or, expanded,
    add more than `MAX_ALIAS_EXPANSION` values. Linear in the distinct values: each container's
    expanded size is computed once (by identity), whatever number of aliases point at it."""
    if not isinstance(data, (list, dict)):
        return
    sizes: dict[int, int] = {}
    distinct = 1  # values as written: the document, and each entry, key and value of a distinct container
    # (container, its children still to size, running total); a container on the stack is open
    stack: list[tuple[Any, list[Any], int]] = [(data, _children(data), 1)]
    open_ids = {id(data)}
    while stack:
        container, children, total = stack[-1]
        while children:
            child = children.pop()
            if not isinstance(child, (list, dict)):
                total += 1
                continue
            known = sizes.get(id(child))
            if known is not None:
                total += known
                continue
            if id(child) in open_ids:
                raise ConfigFileError(
                    Problem(
                        "invalid YAML: an alias refers to a list or map that contains it",
                        None,
                        SourceLocation(file, None, None),
                    )
                )
            stack[-1] = (container, children, total)
            stack.append((child, _children(child), 1))
            open_ids.add(id(child))
            break
        else:
            stack.pop()
            open_ids.discard(id(container))
            sizes[id(container)] = total
            distinct += 2 * len(container) if isinstance(container, dict) else len(container)
            if total - distinct > MAX_ALIAS_EXPANSION:
                raise ConfigFileError(
                    Problem(
                        f"invalid YAML: its aliases expand to more than {MAX_ALIAS_EXPANSION:,} values",
                        "write the values out, or use fewer nested aliases",
                        SourceLocation(file, None, None),
                    )
                )
            if stack:
                parent, rest, parent_total = stack[-1]
                stack[-1] = (parent, rest, parent_total + total)


def _children(container: Any) -> list[Any]:
    return [*container.keys(), *container.values()] if isinstance(container, dict) else list(container)


def _record_lines(node: yaml.Node, path: Path_, out: dict[Path_, int], offset: int) -> None:
    out.setdefault(path, node.start_mark.line + 1 + offset)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            child = (*path, str(key))
            out[child] = key_node.start_mark.line + 1 + offset
            _record_lines(value_node, child, out, offset)
            out[child] = key_node.start_mark.line + 1 + offset
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), out, offset)


def scalar_text(value: Any) -> str | None:
    """A YAML scalar as the string the engine uses (`true` → "true"); None for lists/maps/null."""
    if value is None or isinstance(value, (list, dict)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
