"""Embedding the engine in one's own program, with only what docs/engine.md ("Using it") says: the
names come from `runkon_flow` itself, the example there runs as written, and a run the engine
refuses says where in the file the mistake is."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import runkon_flow
from runkon_flow import (
    AlreadyOwned,
    ApprovalStoreResolver,
    FanOutItem,
    FlowEngineBuilder,
    GateApprovals,
    InMemoryStore,
    RunInput,
    ValidationErrors,
    WorkflowError,
    WorkflowInvalid,
    WorkflowResult,
    parse_file,
    parse_workflow,
)

ROOT = Path(__file__).resolve().parents[2]
ENGINE_DOC = (ROOT / "docs" / "engine.md").read_text(encoding="utf-8")


def test_every_public_name_is_importable_from_the_package() -> None:
    assert set(runkon_flow.__all__) == set(runkon_flow._EXPORTS)
    wanted = {"FlowEngineBuilder", "RunInput", "SqliteStore", "parse_file", "ActionOutput", "FanOutItem"}
    assert wanted <= set(runkon_flow.__all__)
    for name in runkon_flow.__all__:
        assert getattr(runkon_flow, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        runkon_flow.Nope  # noqa: B018


def test_importing_the_package_loads_none_of_the_engine() -> None:
    """`import runkon_flow` runs before every submodule import (the dashboard's first frame too):
    the public names are imported when asked for, not then."""
    code = (
        "import sys, runkon_flow\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('runkon_flow.') or m == 'sqlite3')\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _doc_example() -> tuple[list[str], str]:
    section = ENGINE_DOC.split("## Using it", 1)[1].split("\n## ", 1)[0]
    workflows = re.findall(r"^```wf\n(.*?)^```", section, flags=re.S | re.M)
    (program,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    return workflows, program


def test_the_embedding_example_runs_as_written(tmp_path: Path) -> None:
    workflows, program = _doc_example()
    (tmp_path / "flows").mkdir()
    for text in workflows:
        name = re.match(r"workflow ([\w-]+)", text)
        assert name is not None
        (tmp_path / "flows" / f"{name.group(1)}.wf").write_text(text, encoding="utf-8")
    (tmp_path / "app.py").write_text(program, encoding="utf-8")
    env = {"PYTHONPATH": f"{ROOT / 'engine'}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "completed None" in out  # the run's status and error
    assert re.search(r"StepOutput", out) and out.count("RunCompleted") == 4  # the run and 3 items
    assert "triage completed triage did it" in out  # a step row read back from the store


def test_a_run_the_engine_refuses_names_each_problem_at_its_place_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sweep.wf"
    path.write_text('workflow sweep {\n  script s { run = "true" }\n  call triage\n}\n', encoding="utf-8")
    store = InMemoryStore()
    with pytest.raises(ValidationErrors) as refused:
        FlowEngineBuilder().build().run_workflow(parse_file(path), RunInput(persistence=store))
    exc = refused.value
    assert isinstance(exc, WorkflowError) and isinstance(exc, WorkflowInvalid)
    assert str(exc) == (  # the spec's text, unchanged
        "workflow error: workflow 'sweep' failed validation:\n"
        "call 'triage': no registered ActionExecutor for 'triage' (hint: register an executor named "
        "'triage' or add a fallback executor)"
    )
    assert [p.render() for p in exc.errors] == [
        f"{path}:3:3: call 'triage': no registered ActionExecutor for 'triage' (hint: register an "
        "executor named 'triage' or add a fallback executor)"
    ]
    assert store.list_runs() == []
    copy = pickle.loads(pickle.dumps(exc))  # an error crosses processes (background runners, Ray)
    assert str(copy) == str(exc) and copy.errors == exc.errors


def test_validate_places_the_problems_in_the_definitions_file(tmp_path: Path) -> None:
    path = tmp_path / "fan.wf"
    path.write_text("workflow fan {\n  foreach f { over = tickets max_parallel = 1 workflow = c }\n}\n")
    with pytest.raises(ValidationErrors) as refused:
        FlowEngineBuilder().build().validate(parse_file(path))
    assert [p.render() for p in refused.value.errors] == [
        f"{path}:2:3: foreach 'f': no registered ItemProvider for 'tickets' (hint: register a provider "
        "with name 'tickets' via FlowEngineBuilder.item_provider())"
    ]


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_id_the_store_does_not_hold_is_said_so(resume: bool) -> None:
    """Not `workflow run already owned by another engine: …` — no engine holds a run that is not
    there; a mistyped id is the host's to fix."""
    engine = FlowEngineBuilder().build()
    wf = parse_workflow('workflow w { script s { run = "true" } }', "w.wf")
    start = engine.resume_workflow if resume else engine.run_workflow
    with pytest.raises(WorkflowError, match="no workflow run 'nope'") as refused:
        start(wf, RunInput(persistence=InMemoryStore(), workflow_run_id="nope"))
    assert not isinstance(refused.value, AlreadyOwned)


def test_the_workspace_example_runs_as_written(tmp_path: Path) -> None:
    """docs/workspace.md's minimal host: a run checked, executed, failed and resumed."""
    doc = (ROOT / "docs" / "workspace.md").read_text(encoding="utf-8")
    (program,) = re.findall(r"^```python\n(.*?)^```", doc, flags=re.S | re.M)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "nightly.wf").write_text(
        "workflow nightly {\n  inputs { ticket required }\n"
        '  script s { run = "echo {{ticket}}; test -f ok" }\n}\n'
    )
    sink = "from runkon_flow import CollectingSink\nmy_sink = CollectingSink()\n"
    check = "\nprint(result.status, len(my_sink.events) > 0)\n"
    (tmp_path / "app.py").write_text(sink + program + check, encoding="utf-8")
    env = {"PYTHONPATH": f"{ROOT / 'engine'}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "failed True"  # resumed, and failed again: no `ok`
    (tmp_path / "flows" / "nightly.wf").write_text("workflow nightly {\n  call nobody\n}\n")
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert f"{tmp_path}/flows/nightly.wf:2:3: call 'nobody': no registered ActionExecutor" in done.stdout


def test_a_gate_nobody_resolves_says_how_and_doing_so_lets_a_person_approve_it() -> None:
    wf = parse_workflow('workflow w {\n  gate human_approval { prompt = "ship?" }\n}', "w.wf")
    with pytest.raises(ValidationErrors) as refused:
        FlowEngineBuilder().build().validate(wf)
    (problem,) = refused.value.errors
    assert problem.hint == (
        "register a resolver for it via FlowEngineBuilder.gate_resolver(): "
        "ApprovalStoreResolver('human_approval') waits for a decision made through GateApprovals"
    )
    store = InMemoryStore()
    engine = FlowEngineBuilder().gate_resolver(ApprovalStoreResolver("human_approval")).build()
    done: list[WorkflowResult] = []
    runner = threading.Thread(
        target=lambda: done.append(engine.run_workflow(wf, RunInput(persistence=store)))
    )
    runner.start()
    gates = GateApprovals(store)
    waiting: list[object] = []
    while not waiting and runner.is_alive():
        runs = store.list_runs()
        waiting = gates.waiting_gates(runs[0].id) if runs else []
        threading.Event().wait(0.02)
    gates.approve(runs[0].id, "human_approval", by="me")
    runner.join()
    assert done[0].status == "completed"


def test_a_resume_given_no_inputs_goes_on_with_those_the_run_was_started_with(tmp_path: Path) -> None:
    """As engine.md's example resumes: `RunInput(persistence=…, workflow_run_id=…)`. The steps
    after the failure ran with every input empty (`echo T=`), a warning on the log the only sign."""
    flag = tmp_path / "fixed"
    wf = parse_workflow(
        "workflow w {\n  inputs { ticket required }\n"
        f'  script check {{ run = "test -f {flag}" }}\n'
        '  script use { run = "echo T={{ticket}}" }\n}',
        "w.wf",
    )
    store, engine = InMemoryStore(), FlowEngineBuilder().build()
    first = engine.run_workflow(wf, RunInput(persistence=store, inputs={"ticket": "T-9"}))
    assert first.status == "failed"
    flag.touch()
    again = engine.resume_workflow(wf, RunInput(persistence=store, workflow_run_id=first.workflow_run_id))
    assert again.status == "completed"
    (use,) = [s for s in store.get_steps(first.workflow_run_id) if s.step_name == "use"]
    assert use.context_out == "T=T-9\n"


@pytest.mark.parametrize(
    ("step", "said"),
    [
        ("call workflow child", "call_workflow 'child': no ChildWorkflowRunner configured"),
        ("foreach f { over = t max_parallel = 1 workflow = child }", "foreach 'f': no ChildWorkflowRunner"),
    ],
)
def test_a_sub_workflow_in_an_engine_given_no_workflows_says_how_to_give_them(step: str, said: str) -> None:
    class Items:
        def name(self) -> str:
            return "t"

        def parse_scope(self, raw: object) -> object:
            return raw

        def items(self, *args: object) -> list[FanOutItem]:
            return [FanOutItem("t", "a")]

        def dependencies(self, step_id: str) -> list[tuple[str, str]]:
            return []

        def supports_ordered(self) -> bool:
            return False

    engine = FlowEngineBuilder().item_provider(Items()).build()
    result = engine.run_workflow(
        parse_workflow(f"workflow w {{ {step} }}"), RunInput(persistence=InMemoryStore())
    )
    assert result.status == "failed"
    assert said in (result.error or "")
    assert "FlowEngineBuilder.workflow_dir() or .workflow_resolver(), or a RunInput.child_runner" in (
        result.error or ""
    )
