"""The hooks file: what it accepts, and every mistake named with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from runkon_flow.hooks import HOOKS_ENV, ConfigFileError, find_hooks_file, load_hooks


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hooks.yaml"
    path.write_text(text)
    return path


def test_a_full_file_is_read_with_durations_and_globs(tmp_path: Path) -> None:
    config = load_hooks(
        write(
            tmp_path,
            "pending_too_long: 5m\nstale_after: 90\nhooks:\n"
            "  - events: workflow_run.failed\n    run: echo failed\n"
            "  - events: ['gate.*']\n    post: http://127.0.0.1:9/x\n    headers: {X-Token: abc}\n"
            "    workflows: [release-*]\n    timeout: 2s\n",
        )
    )
    assert (config.pending_too_long, config.stale_after) == (300.0, 90.0)
    shell, post = config.hooks
    assert (shell.events, shell.run, shell.timeout, shell.workflows) == (
        ["workflow_run.failed"],
        "echo failed",
        10.0,
        ["*"],
    )
    assert (post.events, post.headers, post.timeout) == (["gate.*"], {"X-Token": "abc"}, 2.0)
    assert config.wants("gate.waiting", "release-7") == [post]
    assert config.wants("gate.waiting", "nightly") == []
    assert config.wants("workflow_run.failed", "nightly") == [shell]


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (  # a misspelt event is told the closest one
            "hooks:\n  - events: gate.wating\n    run: x\n",
            ":2:",
            "'gate.wating' matches no event (did you mean `gate.waiting`? events: workflow_run.completed",
        ),
        (
            "hooks:\n  - events: gate.waiting\n    run: x\n    post: http://127.0.0.1/\n",
            ":2:",
            "exactly one of 'run'",
        ),
        (
            "hooks:\n  - events: gate.waiting\n    run: x\n    timeout: soon\n",
            ":4:",
            "Invalid duration 'soon'",
        ),
        ("hooks:\n  - events: gate.waiting\n    command: x\n", ":3:", "unknown key 'command'"),
        ("hooks:\n  - run: x\n", ":2:", "'events' is required"),
        ("stale_after: 0s\n", ":1:", "must be more than 0 seconds"),
        (
            "hooks:\n  - events: gate.waiting\n    post: ftp://127.0.0.1/\n",
            ":3:",
            "is not an http:// or https:// URL",
        ),
        ("hooks: [\n", ":", "invalid YAML"),
        ("- just a list\n", ":1:", "a hooks file is a mapping"),
        # YAML 1.1 reads a bare `on` as true: "Keys should be strings" / "'events' is required".
        (
            "hooks:\n  - events: gate.*\n    run: x\n  - on: gate.*\n    run: x\n",
            ":4:",
            "a bare on or yes is read by YAML as true, not as a key: name a hook's events with 'events:'",
        ),
        ("off: 1\nhooks: []\n", ":1:", "a bare off or no is read by YAML as false, not as a key"),
    ],
)
def test_mistakes_name_file_and_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        load_hooks(path)
    rendered = str(caught.value)
    assert rendered.startswith(f"{path}{where}"), rendered
    assert message in rendered


def test_where_the_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOOKS_ENV, raising=False)
    assert find_hooks_file(None, tmp_path) is None
    default = tmp_path / ".runkon" / "hooks.yaml"
    default.parent.mkdir()
    default.write_text("hooks: []\n")
    assert find_hooks_file(None, tmp_path) == default
    other = write(tmp_path, "hooks: []\n")
    monkeypatch.setenv(HOOKS_ENV, str(other))
    assert find_hooks_file(None, tmp_path) == other
    explicit = tmp_path / "mine.yaml"
    explicit.write_text("hooks: []\n")
    assert find_hooks_file(str(explicit), tmp_path) == explicit
    with pytest.raises(ConfigFileError, match="hooks file not found"):
        find_hooks_file(str(tmp_path / "missing.yaml"), tmp_path)
