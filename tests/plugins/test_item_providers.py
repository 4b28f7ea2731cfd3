"""The reference item providers: static, files, lines, command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from runkon_flow.plugins.context import LocalRunContext
from runkon_flow.plugins.item_providers import (
    CommandProvider,
    FilesProvider,
    ItemProviderError,
    LinesProvider,
    StaticProvider,
    default_providers,
    find_cycle,
)
from runkon_flow.plugins.protocols import MAX_ITEM_ID_CHARS, FanOutItem, ItemProvider, ProviderInfo


def serve(
    provider: ItemProvider, root: Path, scope: dict[str, str] | None, filter: dict[str, str] | None = None
):  # type: ignore[no-untyped-def]
    parsed = provider.parse_scope(scope)
    return provider.items(LocalRunContext(root), ProviderInfo("step-1"), parsed, filter or {})


def ids(items: list[FanOutItem]) -> list[str]:
    return [i.item_id for i in items]


def test_default_providers_are_all_four(tmp_path: Path) -> None:
    providers = default_providers(tmp_path)
    assert [p.name() for p in providers] == ["static", "files", "lines", "command"]
    assert all(isinstance(p, ItemProvider) for p in providers)
    assert [p.supports_ordered() for p in providers] == [True, False, False, True]


# --------------------------------------------------------------------------- static


def test_static_inline_items(tmp_path: Path) -> None:
    items = serve(StaticProvider(tmp_path), tmp_path, {"items": " a, b ,,c "})
    assert items == [FanOutItem("static", i, i, {}) for i in ("a", "b", "c")]


def test_static_yaml_file_with_context_and_dependencies(tmp_path: Path) -> None:
    (tmp_path / "repos.yaml").write_text(
        """
- id: core
  ref: git@x:core
  team: platform
  tags: [a, b]
- id: api
  depends_on: [core]
  team: web
- id: ui
  depends_on: [api, core]
  team: web
"""
    )
    provider = StaticProvider(tmp_path)
    items = serve(provider, tmp_path, {"file": "repos.yaml"})
    assert items[0] == FanOutItem("static", "core", "git@x:core", {"team": "platform", "tags": '["a", "b"]'})
    assert items[1] == FanOutItem("static", "api", "api", {"team": "web"})
    assert sorted(provider.dependencies("step-1")) == [("api", "ui"), ("core", "api"), ("core", "ui")]
    assert provider.dependencies("other-step") == []


def test_static_json_file_under_an_items_key(tmp_path: Path) -> None:
    (tmp_path / "items.json").write_text(json.dumps({"items": [{"id": "x", "n": 1}, "y"]}))
    items = serve(StaticProvider(tmp_path), tmp_path, {"file": "items.json"})
    assert items == [FanOutItem("static", "x", "x", {"n": "1"}), FanOutItem("static", "y", "y", {})]


def test_filter_matches_values_and_globs_and_drops_edges_to_filtered_items(tmp_path: Path) -> None:
    (tmp_path / "items.yaml").write_text(
        "- {id: core, team: platform}\n- {id: api, team: web, depends_on: [core]}\n"
        "- {id: web-ui, team: web, depends_on: [api]}\n"
    )
    provider = StaticProvider(tmp_path)
    assert ids(serve(provider, tmp_path, {"file": "items.yaml"}, {"team": "web"})) == ["api", "web-ui"]
    assert provider.dependencies("step-1") == [("api", "web-ui")]
    assert ids(serve(provider, tmp_path, {"file": "items.yaml"}, {"id": "*-ui", "team": "w?b"})) == ["web-ui"]
    assert ids(serve(provider, tmp_path, {"file": "items.yaml"}, {"missing_key": "*"})) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- id: a\n- id: a\n", "items.yaml:2: duplicate item id 'a'"),
        (
            "- id: a\n- ref: r\n",
            "items.yaml:2: item 2 has no `id` (it has `ref`; every item needs an `id: …`)",
        ),
        (
            "- name: a\n  team: x\n",
            "items.yaml:1: item 1 has no `id` (it has `name`, `team`; every item needs an `id: …`)",
        ),
        ("- id: a\n- id: ''\n", "items.yaml:2: item 2 has no `id`"),
        ("- id: a\n  depends_on: [zz]\n", "items.yaml:2: item 'a' depends on unknown item 'zz'"),
        ("- id: a\n  depends_on: {x: 1}\n", "items.yaml:2: item 'a': `depends_on` must be a list of ids"),
        ("a: 1\n", "items.yaml:1: expected a list of items (or `items: [...]`)"),
        ("- [1\n", "items.yaml:1:3: invalid YAML"),
    ],
)
def test_static_file_mistakes_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "items.yaml").write_text(content)
    provider = StaticProvider(tmp_path)
    error = provider.validate_scope({"file": "items.yaml"})
    assert error is not None and error.startswith(message), error
    with pytest.raises(ItemProviderError):
        serve(provider, tmp_path, {"file": "items.yaml"})


def test_every_duplicated_id_is_named_with_the_lines_of_its_entries(tmp_path: Path) -> None:
    """It stopped at the first duplicate and named only the line of its second entry; inline items
    named one id, and finding it took 30 s for 50,000 items (`ids.count` for each)."""
    (tmp_path / "items.yaml").write_text("- id: a\n- id: b\n- c\n- id: a\n- b\n- id: a\n")
    provider = StaticProvider(tmp_path)
    assert provider.validate_scope({"file": "items.yaml"}) == (
        "items.yaml:4: duplicate item ids 'a' (items.yaml:1, items.yaml:4, items.yaml:6), "
        "'b' (items.yaml:2, items.yaml:5)"
    )
    (tmp_path / "items.json").write_text('[{"id": "a"}, {"id": "b"}, {"id": "a"}]')
    assert (
        provider.validate_scope({"file": "items.json"})
        == "items.json:1: duplicate item id 'a' (item 1, item 3)"
    )
    assert provider.validate_scope({"items": "x,y,x,z,y"}) == (
        "duplicate item ids in scope items: 'x' (item 1, item 3), 'y' (item 2, item 5)"
    )
    many = ",".join(f"i{n % 12}" for n in range(100))
    assert provider.validate_scope({"items": many}) == (
        "duplicate item ids in scope items: "
        + ", ".join(
            f"'i{n}' (item {n + 1}, item {n + 13}, item {n + 25}, item {n + 37}, item {n + 49}, "
            f"… ({9 if n < 4 else 8} in all))"
            for n in range(10)
        )
        + " and 2 more"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"id": "a"},\n {"id": "a"}]', "items.json:2: duplicate item id 'a'"),
        (
            '{"items": [\n "a",\n {"ref": "r"}]}',
            "items.json:3: item 2 has no `id` (it has `ref`; every item needs an `id: …`)",
        ),
        ('[{"id": "a",\n  "depends_on": ["zz"]}]', "items.json:2: item 'a' depends on unknown item 'zz'"),
        ('{"a": 1}', "items.json:1: expected a list of items"),
        ('[\n {"id": "a",}]', "items.json:2:13: invalid JSON"),
    ],
)
def test_json_file_mistakes_name_the_line_too(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "items.json").write_text(content)
    error = StaticProvider(tmp_path).validate_scope({"file": "items.json"})
    assert error is not None and error.startswith(message), error


def test_a_misspelt_dependency_names_the_item_it_is_close_to(tmp_path: Path) -> None:
    """`depends_on: apii` said only that 'apii' is unknown, among possibly thousands of ids."""
    (tmp_path / "items.yaml").write_text("- id: api\n- id: web\n  depends_on: apii\n")
    assert StaticProvider(tmp_path).validate_scope({"file": "items.yaml"}) == (
        "items.yaml:3: item 'web' depends on unknown item 'apii' (did you mean `api`?)"
    )
    (tmp_path / "items.yaml").write_text("- id: api\n- id: zz\n  depends_on: q\n")
    assert StaticProvider(tmp_path).validate_scope({"file": "items.yaml"}) == (
        "items.yaml:3: item 'zz' depends on unknown item 'q'"
    )


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        (
            "items.yaml",
            "api:\n  team: core\nweb:\n  team: front\n",
            "it is a map (`api`, `web`) — write a list with one entry per item, its id in `id`:"
            " `- id: api`, its fields under it",
        ),
        (
            "items.json",
            '{"api": {"team": "core"}}',
            'it is a map (`api`) — write a list with one entry per item, its id in `id`: `{"id": "api", …}`',
        ),
        (
            "items.yaml",
            "services:\n  - id: api\n",
            "it is a map whose only key is `services` — put the list under `items`, or at the top",
        ),
        ("items.yaml", "api web\n", "it is a single string — one `- id` a line"),
    ],
)
def test_an_items_file_that_is_no_list_says_what_it_is_and_how_to_write_it(
    tmp_path: Path, name: str, content: str, said: str
) -> None:
    """A newcomer keys items by id (`api: {team: core}`) or names the list (`services:`); the
    error said only `expected a list of items`, not what it found nor how to turn it into one."""
    (tmp_path / name).write_text(content)
    error = StaticProvider(tmp_path).validate_scope({"file": name})
    assert error == f"{name}:1: expected a list of items (or `items: [...]`): {said}"


@pytest.mark.parametrize("name", ["items.yaml", "items.json"])
def test_an_items_file_is_read_once_for_validation_and_the_run_and_again_once_edited(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / name
    path.write_text(json.dumps([{"id": "a", "n": 1}, "b"]))
    reads: list[Path] = []
    real_read_text = Path.read_text

    def counting_read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == path:
            reads.append(self)
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    provider = StaticProvider(tmp_path)
    scope = {"file": name}
    assert provider.validate_scope(scope) is None  # what `validate` and the engine's check do
    assert provider.scope_warnings(scope) == []
    assert ids(serve(provider, tmp_path, scope)) == ["a", "b"]  # the run: parse_scope, then items
    assert len(reads) == 1

    path.write_text(json.dumps(["c"]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert ids(serve(provider, tmp_path, scope)) == ["c"]
    assert len(reads) == 2


def test_a_lines_file_is_read_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "items.txt"
    path.write_text("a\nb\n")
    reads: list[Path] = []
    real_read_text = Path.read_text

    def counting_read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == path:
            reads.append(self)
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    provider = LinesProvider(tmp_path)
    assert provider.validate_scope({"file": "items.txt"}) is None
    assert ids(serve(provider, tmp_path, {"file": "items.txt"})) == ["a", "b"]
    assert len(reads) == 1


def test_static_scope_errors(tmp_path: Path) -> None:
    provider = StaticProvider(tmp_path)
    need = 'over = static needs exactly one of scope { items = "a,b,c" } or { file = "items.yaml" }'
    assert provider.validate_scope(None) == need
    assert provider.validate_scope({"items": "a", "file": "x.yaml"}) == need
    assert provider.validate_scope({"file": "nope.yaml"}) == "items file not found: nope.yaml"
    assert provider.validate_scope({"file": "x.txt"}) == "items file must end in .yaml, .yml or .json: x.txt"
    assert (
        provider.validate_scope({"items": "a,b,a"})
        == "duplicate item id in scope items: 'a' (item 1, item 3)"
    )
    (tmp_path / "bad.json").write_text('[{"id": "a",}]')
    assert provider.validate_scope({"file": "bad.json"}) == (
        "bad.json:1:13: invalid JSON: Expecting property name enclosed in double quotes"
    )
    assert provider.validate_scope({"items": "a,b"}) is None


def test_static_warnings_for_unknown_keys_and_cycles(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("- {id: a, depends_on: [b]}\n- {id: b, depends_on: [a]}\n- {id: c}\n")
    provider = StaticProvider(tmp_path)
    assert provider.scope_warnings({"file": "c.yaml", "colour": "red"}) == [
        "unknown scope key 'colour' for over = static (ignored)",
        "c.yaml: dependency cycle a -> b -> a",
    ]


def test_find_cycle() -> None:
    assert find_cycle([("a", "b"), ("b", "c")]) is None
    assert find_cycle([("a", "b"), ("b", "c"), ("c", "b")]) == ["b", "c", "b"]
    assert find_cycle([("x", "x")]) == ["x", "x"]


def test_items_file_is_reread_on_every_run(tmp_path: Path) -> None:
    path = tmp_path / "items.yaml"
    path.write_text("- a\n")
    provider = StaticProvider(tmp_path)
    scope = provider.parse_scope({"file": "items.yaml"})
    path.write_text("- a\n- b\n")
    assert ids(provider.items(LocalRunContext(tmp_path), ProviderInfo("s"), scope, {})) == ["a", "b"]


# --------------------------------------------------------------------------- files


def test_files_provider_lists_matching_files_relative_to_root(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    for name in ("a.py", "pkg/b.py", "pkg/c.txt"):
        (src / name).write_text("x")
    provider = FilesProvider(tmp_path)
    items = serve(provider, tmp_path, {"glob": "**/*.py", "root": "src"})
    assert ids(items) == ["a.py", "pkg/b.py"]
    assert items[1].item_ref == str(src / "pkg" / "b.py")
    assert items[1].context == {
        "path": str(src / "pkg" / "b.py"),
        "name": "b.py",
        "stem": "b",
        "suffix": ".py",
        "dir": "pkg",
    }
    assert ids(serve(provider, tmp_path, {"glob": "**/*", "root": "src"}, {"suffix": ".txt"})) == [
        "pkg/c.txt"
    ]


def test_files_provider_checks_its_scope_and_filter(tmp_path: Path) -> None:
    provider = FilesProvider(tmp_path)
    assert provider.validate_scope(None) == "over = files needs scope { glob = \"…\" } (missing 'glob')"
    assert provider.validate_scope({"glob": "*", "root": "nope"}) == "root directory not found: nope"
    assert (
        provider.validate_scope({"glob": "../*"}) == "glob must be relative to root and stay inside it: ../*"
    )
    assert provider.validate_filter({"colour": "x"}) == (
        "unknown filter key 'colour' for over = files (available: id, ref, path, name, stem, suffix, dir)"
    )
    assert provider.validate_filter({"suffix": ".py"}) is None
    assert provider.requires_filter() is False


# --------------------------------------------------------------------------- lines


def test_lines_provider_skips_blanks_comments_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "repos.txt").write_text("# repos to lint\nalpha\n\n  beta  \nalpha\n#gamma\n")
    items = serve(LinesProvider(tmp_path), tmp_path, {"file": "repos.txt"})
    assert items == [
        FanOutItem("lines", "alpha", "repos.txt:2", {"line": "2"}),
        FanOutItem("lines", "beta", "repos.txt:4", {"line": "4"}),
    ]


def test_lines_provider_reports_a_missing_file(tmp_path: Path) -> None:
    provider = LinesProvider(tmp_path)
    assert provider.validate_scope({"file": "x.txt"}) == "lines file not found: x.txt"
    assert provider.validate_scope({}) == "over = lines needs scope { file = \"…\" } (missing 'file')"


# --------------------------------------------------------------------------- command


def test_command_provider_reads_lines_and_json_objects(tmp_path: Path) -> None:
    provider = CommandProvider(tmp_path, env=dict(os.environ))
    script = (
        'printf \'one\\n\\ntwo\\n\'; echo \'{"id": "three", "depends_on": ["one"], "size": 3}\'; echo one'
    )
    items = serve(provider, tmp_path, {"run": script})
    assert ids(items) == ["one", "two", "three"]
    assert items[2].context == {"size": "3"}
    assert provider.dependencies("step-1") == [("one", "three")]


def test_command_provider_gets_every_line_of_a_long_output_or_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output past 1 MB had its middle left out (as a step's output has): 57,141 of 200,000 items
    were missing and one, `[… 400000 characters omitted …]`, was made up."""
    from runkon_flow.plugins import item_providers

    provider = CommandProvider(tmp_path)
    items = serve(provider, tmp_path, {"run": "seq -w 1 200000"})
    assert len(items) == 200_000 and all(i.item_id.isdigit() for i in items)
    monkeypatch.setattr(item_providers, "MAX_COMMAND_OUTPUT", 1000)
    with pytest.raises(ItemProviderError, match="printed more than 1,000 characters, the most it may"):
        serve(provider, tmp_path, {"run": "seq -w 1 2000"})


def test_command_provider_runs_in_the_run_working_directory(tmp_path: Path) -> None:
    (tmp_path / "marker-file").write_text("")
    assert ids(serve(CommandProvider(tmp_path), tmp_path, {"run": "ls"})) == ["marker-file"]


def test_command_provider_failures_are_clear(tmp_path: Path) -> None:
    provider = CommandProvider(tmp_path)
    with pytest.raises(ItemProviderError) as info:
        serve(provider, tmp_path, {"run": "echo nope >&2; exit 3"})
    assert str(info.value) == "item command exited with code 3: echo nope >&2; exit 3\nnope"
    with pytest.raises(ItemProviderError, match=r"timed out after 0\.2s"):
        serve(provider, tmp_path, {"run": "sleep 30", "timeout": "0.2"})
    assert provider.validate_scope({"run": "x", "timeout": "soon"}) == (
        "timeout must be a positive number of seconds, got 'soon'"
    )
    with pytest.raises(ItemProviderError, match="line 1: invalid JSON"):
        serve(provider, tmp_path, {"run": "echo '{oops'"})


def test_yaml_aliases_that_expand_without_bound_or_contain_themselves_are_refused(tmp_path: Path) -> None:
    """Nine levels of ten aliases ("billion laughs") load as a few objects, but an item's list
    becomes JSON text expanded: validating the file took all the memory there was. An alias that
    contains itself loads as a list inside itself. Both are refused; a few aliases still work."""
    levels = ['x0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"x{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    (tmp_path / "laughs.yaml").write_text("\n".join(levels) + "\nitems:\n  - id: one\n    boom: *a8\n")
    (tmp_path / "self.yaml").write_text("- id: a\n  r: &x [1, *x]\n")
    (tmp_path / "fine.yaml").write_text("- id: a\n  team: &t [web, api]\n- id: b\n  team: *t\n")
    provider = StaticProvider(tmp_path)
    assert "aliases expand to more than 1,000,000 values" in (
        provider.validate_scope({"file": "laughs.yaml"}) or ""
    )
    assert "an alias refers to a list or map that contains it" in (
        provider.validate_scope({"file": "self.yaml"}) or ""
    )
    with pytest.raises(ItemProviderError, match="aliases expand"):
        serve(provider, tmp_path, {"file": "laughs.yaml"})
    items = serve(provider, tmp_path, {"file": "fine.yaml"})
    assert [i.context["team"] for i in items] == ['["web", "api"]', '["web", "api"]']


def test_an_over_long_item_id_is_refused_where_it_was_written_without_repeating_it(tmp_path: Path) -> None:
    """An id is a store key shown in the grid and in logs: a multi-megabyte line of an items file
    or of a command's output was taken as an id, whole."""
    long_id = "z" * 2_000_000
    fine = "y" * MAX_ITEM_ID_CHARS
    start = f"{'z' * 40!r}…"
    too_long = f"the id is 2,000,000 characters long, more than the {MAX_ITEM_ID_CHARS} an item id may have"
    (tmp_path / "repos.txt").write_text(f"{fine}\n\n{long_id}\n")
    error = LinesProvider(tmp_path).validate_scope({"file": "repos.txt"})
    assert error == f"repos.txt:3: {too_long} (it starts {start})"
    (tmp_path / "items.yaml").write_text(f"- id: {fine}\n- id: {long_id}\n")
    error = StaticProvider(tmp_path).validate_scope({"file": "items.yaml"})
    assert error == f"items.yaml:2: item 2: {too_long} (it starts {start})"
    error = StaticProvider(tmp_path).validate_scope({"items": f"a, {long_id}"})
    assert error == f"scope items: item 2: {too_long} (it starts {start})"
    (tmp_path / "ids.txt").write_text(f"{fine}\n{long_id}\n")
    with pytest.raises(ItemProviderError) as info:
        serve(CommandProvider(tmp_path), tmp_path, {"run": "cat ids.txt"})
    assert str(info.value) == f"item command output line 2: {too_long} (it starts {start})"
    (tmp_path / "ids.txt").write_text(json.dumps({"id": long_id}) + "\n")
    with pytest.raises(ItemProviderError) as info:
        serve(CommandProvider(tmp_path), tmp_path, {"run": "cat ids.txt"})
    assert str(info.value) == f"item command output: item 1: {too_long} (it starts {start})"


def test_an_item_ref_too_big_for_a_command_is_refused_at_its_line_a_big_field_not(tmp_path: Path) -> None:
    """The same cap and words as the engine's check (`oversized_ref`), with the file's line."""
    from runkon_flow.process import TOO_BIG

    big = "é" * 70_000  # 140,000 bytes of UTF-8: the cap counts bytes, as the kernel does
    (tmp_path / "items.yaml").write_text(f"- id: a\n- id: b\n  team: web\n  ref: {big}\n")
    error = StaticProvider(tmp_path).validate_scope({"file": "items.yaml"})
    assert error == f"items.yaml:4: item 2 ('b'): its ref is 140,000 bytes, {TOO_BIG}"
    (tmp_path / "items.json").write_text(json.dumps([{"id": "a", "ref": "x" * 200_000}]))
    error = StaticProvider(tmp_path).validate_scope({"file": "items.json"})
    assert error == f"items.json:1: item 1 ('a'): its ref is 200,000 bytes, {TOO_BIG}"
    (tmp_path / "items.yaml").write_text(f"- id: a\n  ref: {'é' * 60_000}\n")  # 120,000 bytes: fits
    assert StaticProvider(tmp_path).validate_scope({"file": "items.yaml"}) is None
    (tmp_path / "items.yaml").write_text(f"- id: a\n  body: {big}\n")  # a field: a prompt's document
    assert StaticProvider(tmp_path).validate_scope({"file": "items.yaml"}) is None
