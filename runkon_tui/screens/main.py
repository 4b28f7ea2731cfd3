"""The main screen: workflows, dependency tree, fan-out grid, logs; the keys that drive a run.

The screen only *shows* state and turns keys into requests; the app owns the engine, the event
bridge and the RunView. `refresh_view` is called on every drain tick with what changed, and
repaints only those widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from runkon_flow.observe.estimates import Estimates, history_of
from runkon_flow.observe.records import reused_note
from textual.app import ComposeResult
from textual.binding import Binding
from textual.compose import compose
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Label, OptionList, Static, Tree
from textual.widgets._footer import FooterKey

from runkon_tui.catalog import WorkflowEntry
from runkon_tui.run_view import Changes, FanOutView, RunState, RunView, StepView
from runkon_tui.session import Refused
from runkon_tui.status import ITEM_CODE, glyph
from runkon_tui.tree_model import NodeSpec, build_tree, hit_target, run_for_scope
from runkon_tui.widgets.cluster_list import ClusterList
from runkon_tui.widgets.dep_tree import DependencyTree
from runkon_tui.widgets.fanout_grid import FanOutGrid
from runkon_tui.widgets.header import GateBanner, RunHeader
from runkon_tui.widgets.item_detail import ItemDetail
from runkon_tui.widgets.log_pane import BufferSource, ErrorsSource, LogPane, OutputSource, TextSource
from runkon_tui.widgets.markup import esc, set_text
from runkon_tui.widgets.workflow_list import WorkflowList
from runkon_tui.worker_failures import ShowsWorkerFailures

if TYPE_CHECKING:
    from collections.abc import Iterator

    from textual.widgets.tree import TreeNode

    from runkon_tui.app import RunkonApp
    from runkon_tui.screens.search import HitSource, SearchHit

#: The output view when no step is highlighted in the tree (a fresh tree, another workflow's run).
NO_STEP_HIGHLIGHTED = "pick a step in the tree, or an item in the grid, to see its output"  # fits 80 columns


class Pane(Vertical):
    """A bordered, titled, zoomable section of the screen."""

    ALLOW_MAXIMIZE = True


class RunList(WorkflowList):
    """The workflow list, where enter means "run this workflow".

    The action is the list's own, handed to its screen: a `screen.` action would be checked
    against the app's current screen, so with a dialog open the footer underneath lit Run
    even while a run was active."""

    BINDINGS = [Binding("enter", "run_workflow", "Run", id="run")]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_workflow":
            return self.screen.check_action(action, parameters)
        return super().check_action(action, parameters)

    def action_run_workflow(self) -> None:
        screen = self.screen
        if isinstance(screen, MainScreen):
            screen.action_run_workflow()


class RunFooter(Footer):
    """The key footer. At 80 columns every key cannot fit: the keys that only change the view
    (theme, zoom, log mode) and dimmed ones are left out, long names are shortened and the palette
    hint goes (ctrl+p still works); `?` lists every key."""

    NARROW_HIDDEN = frozenset({"screen.theme", "screen.zoom", "screen.log_mode", "theme", "zoom", "log_mode"})
    SHORT = {
        "Failed only": "Failed",
        "Next failure": "Next",
        "Rerun from here": "Rerun",
        "Show cluster": "Show",
        "Retry cluster": "Retry",
    }

    # Left out at 80 columns only when the line would not hold it otherwise: `E` beside the
    # failure clusters' own `e Retry` (`?` and the palette still list it).
    SPARE = frozenset({"screen.retry_failed", "retry_failed"})

    _recompose_queued = False

    def bindings_changed(self, screen: Screen[Any]) -> None:
        """Several binding changes before the next refresh rebuild the keys once, not once each
        (Textual queues a recompose per change; at start-up and when a run starts or ends there
        are several, and each one mounts every key again)."""
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._recompose_queued:
            self._recompose_queued = True
            self.call_after_refresh(self._recompose_once)

    async def _recompose_once(self) -> None:
        self._recompose_queued = False
        if not self._restyle_in_place():
            await self.recompose()

    def _restyle_in_place(self) -> bool:
        """When the same keys stay shown and only which are available changed (a run starts or
        ends), dim or light the keys on screen instead of mounting them all again, which costs a
        layout pass of the whole screen. False: the keys themselves changed, recompose."""
        if not self.is_attached:
            return False
        fresh, shown = compose(self), list(self.children)
        if len(fresh) != len(shown):
            return False
        pairs = list(zip(fresh, shown, strict=True))
        if not all(
            isinstance(new, FooterKey) and isinstance(old, FooterKey) and _same_key(new, old)
            for new, old in pairs
        ):
            return False
        for new, old in pairs:
            if old._disabled != new._disabled:
                old._disabled = new._disabled
                old.set_class(new._disabled, "-disabled")
            if old.tooltip != new.tooltip:
                old.tooltip = new.tooltip
        return True

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        keys = [item for item in items if isinstance(item, FooterKey)]
        width = self.screen.size.width
        # Below 100 columns, or when a focused pane's keys would not fit the line: short names
        # first; then, if still too wide, the 80-column footer.
        narrow = width < 100
        if narrow or _keys_width(keys) > width:
            for key in keys:
                key.description = self.SHORT.get(key.description, key.description)
            narrow = narrow or _keys_width(keys) > width
        if narrow:
            # `_disabled`, not `disabled`: a FooterKey keeps "dimmed" there, and its widget
            # `disabled` stays False (so dimmed keys used to stay in at 80 columns).
            items = [i for i in items if not (isinstance(i, FooterKey) and self._left_out_when_narrow(i))]
            shown = [i for i in items if isinstance(i, FooterKey)]
            if _keys_width(shown) - PALETTE_HINT_WIDTH > width:  # the hint is gone already
                items = [i for i in items if not (isinstance(i, FooterKey) and i.action in self.SPARE)]
        yield from items

    def _left_out_when_narrow(self, key: FooterKey) -> bool:
        return key.has_class("-command-palette") or key.action in self.NARROW_HIDDEN or key._disabled


PALETTE_HINT_WIDTH = 12  # `▏^p palette`, at the right


def _keys_width(keys: list[FooterKey]) -> int:
    """About how many columns the footer's keys take: `key description ` each, and the hint."""
    shown = [k for k in keys if not k.has_class("-command-palette")]
    return sum(cell_len(k.key_display) + cell_len(k.description) + 2 for k in shown) + PALETTE_HINT_WIDTH


def _same_key(a: FooterKey, b: FooterKey) -> bool:
    return (a.key, a.key_display, a.description, a.action) == (b.key, b.key_display, b.description, b.action)


class MainScreen(ShowsWorkerFailures, Screen[None]):
    ALLOW_IN_MAXIMIZED_VIEW = "Footer, #top"

    # Structure only; the look (borders, widths) is in themes/runkon.tcss.
    DEFAULT_CSS = """
    MainScreen { layout: vertical; }
    MainScreen #top { dock: top; height: auto; }
    MainScreen #panes { height: 1fr; }
    MainScreen Pane { height: 1fr; }
    MainScreen #log-pane { height: 10; }
    MainScreen #filter-bar { height: 1; display: none; background: $panel; }
    MainScreen #filter-bar.-shown { display: block; }
    MainScreen #filter-label { width: auto; height: 1; padding: 0 0 0 1; color: $warning; text-style: bold; }
    MainScreen #filter { width: 1fr; height: 1; border: none; padding: 0 1; }
    MainScreen #tree-note { height: auto; display: none; }
    MainScreen #tree-note.-shown { display: block; }
    """

    BINDINGS = [
        Binding("enter", "run_workflow", "Run", id="run"),
        Binding("c", "cancel_run", "Cancel", id="cancel"),
        Binding("r", "resume_run", "Resume", id="resume"),
        # The fan-out's failed items, whichever pane has the focus (the grid's `e` retries one).
        Binding("E", "retry_failed", "Retry failed", id="retry_failed"),
        Binding("a", "approve_gate", "Approve", id="approve"),
        Binding("x", "reject_gate", "Reject", id="reject"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("f", "failed_only", "Failed only", id="failed_only"),
        Binding("n", "next_failure", "Next failure", id="next_failure"),
        Binding("h", "runs", "Runs", id="runs"),
        Binding("i", "gate_inbox", "Gate inbox", id="gate_inbox", show=False),
        Binding("s", "search", "Search", id="search", show=False),
        Binding("l", "log_mode", "Log", id="log_mode"),
        Binding("z", "zoom", "Zoom", id="zoom"),
        Binding("t", "theme", "Theme", id="theme"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tree_workflow: str | None = None
        self.grid_item: int | None = None
        self.filter_target: Widget | None = None
        self._child_source: tuple[str, TextSource] | None = None
        # What the output log shows: the tree step (and its StepView) or, with neither, an item
        # or a search hit; and the run it belongs to (the output follows the run on screen).
        self._output_spec: NodeSpec | None = None
        self._output_step: StepView | None = None
        # No step highlighted: the output view follows the run's latest step (`_followed_step`).
        self._following = False
        self._output_root: str | None = None
        self._output_stale = False
        # A search hit waiting for the tree to reach its node: (node uid, item id, hit).
        self._pending_hit: tuple[str, str | None, SearchHit] | None = None
        self._hit_reading: SearchHit | None = None  # the hit whose output a worker reads
        self._binding_signature: tuple[bool | None, ...] = ()
        self._estimates_key: tuple[str | None, str | None] = (None, None)
        # A run's workflow that the list does not hold (started outside the watched folders): the
        # tree shows it until the user highlights another workflow.
        self.pinned: WorkflowEntry | None = None
        self._pinned_over: str | None = None
        # A listed workflow the list's filter hides (its path): the tree, and with it the header
        # and the grid, stays on it until the user moves the list's highlight.
        self._kept: str | None = None
        self._kept_over: str | None = None

    @property
    def rapp(self) -> RunkonApp:
        return self.app  # type: ignore[return-value]

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Widgets are kept as attributes: the drain tick touches them 15 times a second.
        self.header = RunHeader(id="header")
        self.gate_banner = GateBanner(id="gate-banner")
        self.workflow_list: WorkflowList = RunList(id="workflows")
        self.tree_note = Static(id="tree-note")
        self._tree = DependencyTree(id="tree")
        self.grid = FanOutGrid(id="grid")
        self.cluster_list = ClusterList(id="clusters")
        self.item_detail = ItemDetail(id="item-detail")
        self.log_pane = LogPane(id="log-pane")
        self.workflows_pane = Pane(id="workflows-pane")
        self.tree_pane = Pane(id="tree-pane")
        self.grid_pane = Pane(id="grid-pane")
        with Vertical(id="top"):  # docked: stays on top when a pane is zoomed
            yield self.header
            yield self.gate_banner
        with Horizontal(id="panes"):
            with self.workflows_pane:
                yield self.workflow_list
            with self.tree_pane:
                yield self.tree_note
                yield self._tree
            with self.grid_pane:
                yield self.grid
                yield self.cluster_list
                yield self.item_detail
        yield self.log_pane
        # The filter prompt sits in the flow above the footer (a second bottom-docked widget
        # would be drawn under the footer, invisible).
        with Horizontal(id="filter-bar"):
            yield Label("filter:", id="filter-label")
            box = Input(placeholder="enter keeps it, esc clears", id="filter")
            box.cursor_blink = self.rapp.blink
            yield box
        self.footer = RunFooter(compact=True)
        yield self.footer

    def on_resize(self, event) -> None:  # type: ignore[no-untyped-def]
        narrow = event.size.width < 100
        if narrow != self.has_class("-narrow"):
            self.set_class(narrow, "-narrow")
            self.footer.refresh(recompose=True)  # fewer, shorter keys at 80 columns
        self.set_class(event.size.height < 30, "-short")

    def refresh_header(self) -> None:
        """The header's item counts are the grid's fan-out's (the tree's cursor picks it), so the
        two never count different fan-outs (docs/dashboard.md "Header")."""
        app = self.rapp
        self.header.show(
            app.view,
            app.clock(),
            app.idle_parts(),
            app.store_note,
            app.ours_going_text(beside_a_run=True),
            fan=self.current_fanout(),
        )

    def on_mount(self) -> None:
        self.workflows_pane.border_title = "Workflows"
        self.tree_pane.border_title = "Steps"
        self.grid_pane.border_title = "Fan-out"
        app = self.rapp
        self.grid.reachable = self.cluster_list.reachable = self._retry_reaches
        if app.store_note:  # also in the engine log, whole, where a narrow header shortens it
            app.view.note(f"⚠ {app.store_note}", "warning")
        self.bind_view()
        self.workflow_list.load(app.catalog, select_path=app.initial_selection())
        self.show_workflow(self.selected_entry())
        self.workflow_list.focus()
        self.refresh_view(Changes(header=True, structure=True), app.clock())

    def _retry_reaches(self, fan: FanOutView) -> bool:
        """Retry reaches this fan-out of the run on screen (`RunModel.retry_refusal`, the rule of
        `runkon-flow retry`): the grid's `E` and the clusters' `e` are offered only then."""
        return self.rapp.view.retry_refusal(fan) is None

    def bind_view(self) -> None:
        """Point the log panes at the app's current RunView (after a past run was opened)."""
        view = self.rapp.view
        self._child_source = None
        self._output_spec = self._output_step = None
        self._following = False
        self._output_stale = True  # the next refresh shows the highlighted step of this view
        self.grid_item = None
        self.grid.show(None)
        self.log_pane.output_title = ""  # the step it named belongs to the previous view
        self.log_pane.set_sources(
            engine=BufferSource(view.engine_log, self._run_start),
            errors=ErrorsSource(self.rapp.problems, BufferSource(view.error_log, self._run_start)),
            output=None,
        )

    def _run_start(self) -> float | None:
        root = self.rapp.view.root
        return root.started_at if root is not None else None

    # ------------------------------------------------------------------ widget access

    @property
    def tree(self) -> DependencyTree:  # type: ignore[override]
        """The dependency tree (shadows DOMNode.tree, a debugging view we do not use)."""
        return self._tree

    def selected_entry(self) -> WorkflowEntry | None:
        path = self.workflow_list.highlighted_path
        return self.rapp.catalog.entries.get(path) if path else None

    def shown_entry(self) -> WorkflowEntry | None:
        """The workflow the tree is about: a pinned run's workflow, else one the list's filter
        hides but the screen kept, else the highlighted one."""
        kept = self.rapp.catalog.entries.get(self._kept) if self._kept else None
        return self.pinned or kept or self.selected_entry()

    def pin_entry(self, entry: WorkflowEntry | None) -> None:
        """Show `entry` (not in the list) in the tree until the list's highlight moves."""
        self.pinned = entry
        self._pinned_over = self.workflow_list.highlighted_path if entry is not None else None

    # ------------------------------------------------------------------ what is shown

    def view_for(self, name: str | None) -> RunView | None:
        """The RunView when it is about `name` (statuses are only drawn on their own workflow)."""
        view = self.rapp.view
        if view.root is not None and name and view.workflow_name == name:
            return view
        return None

    def show_workflow(self, entry: WorkflowEntry | None, force: bool = False) -> None:
        """Load the tree for the highlighted workflow (its last good definition if broken)."""
        app = self.rapp
        note = self.tree_note
        tree_pane = self.tree_pane
        if entry is None:
            self.tree_workflow = None
            self.tree.load([], None, placeholder="no workflow selected")
            note.set_class(False, "-shown")
            return
        definition = app.definition_for_tree(entry)
        notes = []
        if entry.error is not None:
            notes.append(f"{glyph('failed')} {esc(entry.location())}: {esc(entry.error.message)}")
            if definition is not None and definition is entry.definition:  # not a run's own
                notes.append("showing the last good definition")
        for problem in entry.problems:  # what the host's checks say would stop a run
            notes.append(f"{glyph('failed')} {esc(problem.render())}")
        clash = app.catalog.clash(entry)
        if clash:
            notes.append(f"[$warning]⚠[/] {esc(clash)}")
        if entry is self.pinned:
            notes.append(
                self._outside_the_folders()
                if definition is not None
                else "not in the watched folders, and no definition is stored with this run: its "
                "steps cannot be drawn as a tree (the header, the logs and its fan-out show the run)"
            )
        elif app.definition_changed_under_run(entry):
            notes.append(self._changed_on_disk())
        set_text(note, "\n".join(notes), wraps=True)  # what r resumes with comes a moment later
        if note.has_class("-shown") != bool(notes):
            note.set_class(bool(notes), "-shown")
        tree_pane.border_title = f"Steps · {esc(entry.name)}"
        key = (entry.path, id(definition), app.catalog_version)
        if not force and key == self.tree.definition_key:
            return
        self.tree_workflow = entry.name
        if definition is None:
            # A file that parses but lost its name to another file is not loaded: not a parse error.
            why = "another file's definition of the name is used" if clash else "this file does not parse yet"
            if entry is self.pinned:
                why = f"no definition of {entry.name} to draw"
            self.tree.load([], key, placeholder=why, workflow=entry.path)
        else:
            self.tree.load(build_tree(definition, app.catalog.definition), key, workflow=entry.path)
        self.tree.update_statuses(self.view_for(entry.name), app.clock())
        self.update_bindings()  # the tree's R: only on the tree of the run on screen
        if self._output_spec is not None or self._following:
            # The output view showed a step of the tree that was replaced: show the new tree's
            # (an item's or a search hit's output stays).
            self._show_cursor_output()
        self.fit_grid_pane()

    def _outside_the_folders(self) -> str:
        """The tree's note for a run of a workflow the watched folders do not hold: its tree is
        the definition stored with it, and so is what `r` resumes it with (there is no file to
        take instead: `Workspace.resume_plan`), said as `_changed_on_disk` says it."""
        shown = "not in the watched folders: the definition stored with this run"
        if not self.rapp.can_resume():
            return shown
        return f"{shown}; {self.rapp.key_for('resume')} resumes it with its own definition"

    def _changed_on_disk(self) -> str:
        """The tree's note when the file changed under the run on screen: the tree keeps the
        run's definition, but a run that can be resumed is not kept to it (`resumes_with`: what
        the engine says; said once it has answered)."""
        app = self.rapp
        if not app.can_resume():
            return "changed on disk: this run keeps its own definition; the next run uses the file"
        shown = "changed on disk: the tree shows this run's own definition"
        what = app.session.resumes_with()
        return shown if what is None else f"{shown}; {app.key_for('resume')} resumes it with {esc(what)}"

    def fit_grid_pane(self) -> None:
        """The Fan-out pane takes room only when the workflow has a foreach (anywhere in its tree,
        called workflows included) or a fan-out is on screen; otherwise the tree gets the width."""
        wanted = self.grid.fan is not None or self.tree.has_foreach
        if self.grid_pane.display != wanted:
            self.grid_pane.display = wanted

    def current_fanout(self) -> FanOutView | None:
        view = self.view_for(self.tree_workflow)
        if view is None:
            return None
        node = self.tree.cursor_node
        spec = node.data if node is not None else None
        if spec is not None and spec.kind == "foreach":
            run = run_for_scope(view, spec.scope)
            if run is not None and spec.path in run.fanouts:
                return run.fanouts[spec.path]
        return view.active_fanout()

    # ------------------------------------------------------------------ refresh on tick

    def refresh_view(self, changes: Changes, now: float, *, second: bool = False) -> None:
        """Repaint what `changes` touched; `second` marks the once-a-second live-time refresh."""
        app = self.rapp
        view = app.view
        # A called workflow's fan-out is counted in the header too (its item events do not mark
        # the header as changed: they are not the root run's).
        if changes.header or second or changes.gates or changes.fanouts:
            self.header.show(
                view,
                now,
                app.idle_parts(),
                app.store_note,
                app.ours_going_text(beside_a_run=True),
                fan=self.current_fanout(),
            )
        if changes.gates or changes.structure:
            self.gate_banner.show(view, app.key_for("approve"), app.key_for("reject"))
        self._load_estimates(view)
        tree_view = self.view_for(self.tree_workflow)
        touched = changes.steps or changes.runs or changes.fanouts or changes.gates or second
        if (touched and tree_view is not None) or changes.structure:
            self.tree.update_statuses(tree_view, now)
        fan = self.current_fanout()
        if fan is not self.grid.fan:
            self.grid_item = None
            self.grid.show(fan)
            self.fit_grid_pane()
        elif changes.fanouts:
            self.grid.update()
        if changes.fanouts or changes.runs or second or changes.structure:
            self.item_detail.show(tree_view, fan, self.grid_item, now, self.tree.has_foreach)
            self.cluster_list.show(fan)
            self._drop_vanished_cluster()
        self.refresh_titles()
        self._refresh_output(changes)
        if changes.engine_log or changes.error_log or changes.output or changes.structure:
            self.log_pane.sync()
        if changes.header or changes.gates or changes.finished or changes.structure:
            self.update_bindings()
            # The list's glyph follows the live run (◷ at a gate, ▶ again after a resume); `load`
            # rebuilds the options only when a status or the catalog actually changed.
            self.workflow_list.statuses = app.workflow_statuses()
            self.workflow_list.load(app.catalog)
        elif changes.fanouts:
            self.update_bindings()  # f / n: an item failed, or a retried one no longer is

    class EstimatesRead(Message):
        """Past runs of a workflow, read off the UI thread for the run `key` names."""

        def __init__(self, key: tuple[str, str], estimates: Estimates | None, error: str = "") -> None:
            super().__init__()
            self.key = key
            self.estimates = estimates
            self.error = error

    def _load_estimates(self, view: RunView) -> None:
        """Past runs of the workflow on screen, read once per run shown (docs/run-model.md
        "Estimates"): the tree's and the fan-out's ETA bands and `over p95` marks. The store is
        read on a worker (up to 20 past runs' rows: never on the UI thread); until it answers,
        and for a past run opened read-only, there are none."""
        key = (view.workflow_name, view.root_run_id)
        if key == self._estimates_key:
            return
        self._estimates_key = key
        self.tree.estimates = self.item_detail.estimates = None
        workflow, run_id = key
        if not workflow or not run_id or view.read_only:
            return
        store = self.rapp.store

        def read() -> None:
            estimates, error = None, ""
            try:
                estimates = history_of(store, workflow, exclude=run_id)
            except Exception as exc:  # a store that cannot answer must not take the screen down
                error = str(exc)
            self.post_message(self.EstimatesRead((workflow, run_id), estimates, error))

        self.run_worker(
            read,
            thread=True,
            group="estimates",
            name="read the estimates",
            exclusive=True,
            exit_on_error=False,
        )

    def on_main_screen_estimates_read(self, message: EstimatesRead) -> None:
        if message.key != self._estimates_key:
            return  # another run is on screen by now
        if message.error:
            self.rapp.log.warning(f"estimates unavailable: {message.error}")
        estimates = message.estimates
        if estimates is None or not estimates.runs:
            return
        self.tree.estimates = self.item_detail.estimates = estimates
        tree_view = self.view_for(self.tree_workflow)
        if tree_view is not None:  # shown at once, not at the next tick that touches them
            now = self.rapp.clock()
            self.tree.update_statuses(tree_view, now)
            self.item_detail.show(tree_view, self.grid.fan, self.grid_item, now, self.tree.has_foreach)

    def _refresh_output(self, changes: Changes) -> None:
        """The output log follows the run on screen: another run there (started here, resumed
        under a new id, attached) takes the previous run's step or item output away, and the
        highlighted step's output is shown again as soon as this run has it."""
        view = self.rapp.view
        if view.root_run_id != self._output_root or self._output_stale:
            self._output_root = view.root_run_id
            self._output_stale = False
            self._show_cursor_output()
            return
        spec = self._output_spec
        touched = changes.steps or changes.runs or changes.structure
        if touched and spec is not None and self._step_view_of(spec) is not self._output_step:
            self._show_cursor_output()  # the step ran (again) in this run: a new StepView
        elif touched and self._following and self.tree.cursor_node is None:
            followed = self._followed_step()
            if followed is not None and followed[1] is not spec:
                self._show_cursor_output()  # another step started: follow it
        if self._child_source is not None:
            run_id, source = self._child_source
            if run_id in changes.runs or any(r == run_id for r, _ in changes.output):
                run = self.rapp.view.runs.get(run_id)
                if run is not None:
                    source.lines = child_output_lines(run)
                    self.log_pane.view.sync(force=True)

    # ------------------------------------------------------------------ selection → output log

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list is self.workflow_list:
            here = self.workflow_list.highlighted_path
            if self.pinned is not None and here == self._pinned_over:
                return  # the list was rebuilt, the user did not move: keep the run's tree
            if self._kept is not None and here == self._kept_over:
                return  # the filter moved the highlight, not the user: keep the tree
            self.pinned = None
            self._kept = None
            self.show_workflow(self.selected_entry())
            self.refresh_view(Changes(structure=True), self.rapp.clock())

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeSpec]) -> None:
        spec = event.node.data
        if spec is None:
            return
        view = self.view_for(self.tree_workflow)
        run = run_for_scope(view, spec.scope) if view is not None else None
        self.show_step_output(run, spec)
        fan = self.current_fanout()
        if fan is not self.grid.fan:
            self.grid_item = None
            self.grid.show(fan)
            self.cluster_list.show(fan)
            self.item_detail.show(self.rapp.view, fan, None, self.rapp.clock(), self.tree.has_foreach)
            self.refresh_titles()
            self.refresh_header()  # its item counts are the grid's fan-out's
        self.update_bindings()  # the tree's R: lit once a step is under the cursor; f / n follow the fan-out
        pending, self._pending_hit = self._pending_hit, None
        if pending is not None and pending[0] == spec.uid:
            self._show_hit(pending[1], pending[2])

    def _step_view_of(self, spec: NodeSpec) -> StepView | None:
        """The shown run's record of `spec`'s step (None: not run, or the tree shows another
        workflow than the run on screen)."""
        view = self.view_for(self.tree_workflow)
        run = run_for_scope(view, spec.scope) if view is not None else None
        return run.steps.get(spec.path) if run is not None else None

    def _show_cursor_output(self) -> None:
        """Output of the tree's highlighted step in the run on screen; nothing highlighted: of the
        step that run started last (followed as the run goes on), else a word on how to see some."""
        node = self.tree.cursor_node
        spec = node.data if node is not None else None
        if spec is None:
            followed = self._followed_step()
            if followed is not None:
                self.show_step_output(*followed, following=True)
                return
            self._child_source = None
            self._output_spec = self._output_step = None
            self._following = True  # a step that starts later is shown
            self.log_pane.set_output(TextSource([NO_STEP_HIGHLIGHTED]), "")
            return
        view = self.view_for(self.tree_workflow)
        self.show_step_output(run_for_scope(view, spec.scope) if view is not None else None, spec)

    def follow_the_new_run(self) -> None:
        """A run started from the list is followed from its first step: a step highlighted in the
        tree while reading an earlier run does not hold the output view through this one."""
        self.tree.forget_cursor()

    def _followed_step(self) -> tuple[RunState, NodeSpec] | None:
        """The step of the run on screen the output view follows when none is highlighted: the one
        it started last — in a called workflow too — of those with output of their own (not a
        block, a `call workflow` or a foreach, whose items' output is in the grid). Running or
        ended: at a run's end it is its last step, what a person who was watching reads on."""
        view = self.view_for(self.tree_workflow)
        if view is None or view.root is None:
            return None
        runs: dict[tuple[str, ...], RunState | None] = {}
        latest: tuple[RunState, NodeSpec] | None = None
        latest_at = float("-inf")
        for node in self.tree.nodes_by_uid.values():
            spec = node.data
            if spec is None or spec.children or spec.kind in ("foreach", "call_workflow"):
                continue
            if spec.scope not in runs:
                runs[spec.scope] = run_for_scope(view, spec.scope)
            run = runs[spec.scope]
            sv = run.steps.get(spec.path) if run is not None else None
            if sv is not None and sv.started_at is not None and sv.started_at >= latest_at:
                latest, latest_at = (run, spec), sv.started_at  # type: ignore[assignment]
        return latest

    def show_step_output(self, run: RunState | None, spec: NodeSpec, *, following: bool = False) -> None:
        self._following = following
        self._child_source = None
        sv = run.steps.get(spec.path) if run is not None else None
        self._output_spec, self._output_step = spec, sv
        if sv is None:
            self.log_pane.set_output(TextSource([f"{spec.label}: no output yet"]), spec.label)
            return
        assert run is not None
        if sv.reused_from:  # a rerun's reused step did not run here: its output is the old run's
            where = f"runkon-flow logs {sv.reused_from} {sv.step_key or sv.name}"
            runs = self.rapp.key_for("runs")
            note = [f"{reused_note(sv)}: its output is that run's", f"{runs} opens it; or: {where}"]
            self.log_pane.set_output(TextSource([*note, *(sv.output or ())]), spec.label)
            return
        fallback = [sv.error] if sv.error and not sv.output else []
        self.log_pane.set_output(OutputSource(sv, fallback), spec.label)

    def on_fan_out_grid_item_highlighted(self, event: FanOutGrid.ItemHighlighted) -> None:
        self.grid_item = event.index
        self.item_detail.show(self.rapp.view, event.fan, event.index, self.rapp.clock())

    def on_fan_out_grid_retry_requested(self, event: FanOutGrid.RetryRequested) -> None:
        self.rapp.request_retry(event.fan, event.item_ids)

    def _drop_vanished_cluster(self) -> None:
        """A cluster whose items were retried is gone: the grid shows every item again rather
        than an empty filter."""
        cluster = self.grid.cluster
        if cluster is not None and all(c.signature != cluster for c in self.cluster_list.clusters):
            self.grid.set_cluster(None)
            self.cluster_list.unpick()

    def on_cluster_list_picked(self, event: ClusterList.Picked) -> None:
        """Filter the grid to a failure cluster's items (or show every item again)."""
        if event.fan is not self.grid.fan:
            return
        self.grid.set_cluster(event.cluster.signature if event.cluster is not None else None)
        self.refresh_titles()

    def on_fan_out_grid_item_selected(self, event: FanOutGrid.ItemSelected) -> None:
        self.grid_item = event.index
        item_id = event.fan.ids[event.index]
        child_id = event.fan.child_runs.get(event.index)
        run = self.rapp.view.run(child_id) if child_id else None
        self.item_detail.show(self.rapp.view, event.fan, event.index, self.rapp.clock())
        if run is None and child_id:
            # An older child that ended well is not kept live: the store has it, read on a worker.
            reading = self._show_item_output(item_id, None, child_id)

            def opened(found: RunState | None) -> None:
                if self._child_source is not None and self._child_source[1] is reading:  # still shown
                    self._show_item_output(item_id, found)

            self.rapp.open_child_run(child_id, opened)
            return
        self._show_item_output(item_id, run)

    def _show_item_output(self, item_id: str, run: RunState | None, reading: str | None = None) -> TextSource:
        """A fan-out item's child run in the output log; `reading`: its run id, while it is read
        from the store."""
        if run is not None:
            lines = child_output_lines(run)
        elif reading:
            lines = [f"{item_id}: reading run {reading} from the store…"]
        else:
            lines = [f"{item_id}: not started"]
        source = TextSource(lines, "info")
        shown_run = run.run_id if run is not None else reading
        self._child_source = (shown_run, source) if shown_run is not None else None
        self._output_spec = self._output_step = None
        self._following = False
        self.log_pane.set_output(source, f"item {item_id}")
        self.log_pane.mode = "output"
        return source

    # ------------------------------------------------------------------ actions

    def update_bindings(self) -> None:
        """Refresh the footer only when some key's availability changed (a refresh recomposes it);
        the grid's `E` counts too."""
        app = self.rapp
        finished = app.host is not None and app.session.finished_on_screen()
        self.grid.retry_allowed = self.cluster_list.retry_allowed = finished
        self.tree.rerun_allowed = finished and self.tree_workflow == app.view.workflow_name
        signature = (
            *(self.check_action(b.action, ()) for b in self.BINDINGS if isinstance(b, Binding)),
            self.grid.check_action("retry", (True,)),
            self.cluster_list.check_action("retry_cluster", ()),
            self.tree.check_action("rerun_from", ()),
        )
        if signature != self._binding_signature:
            self._binding_signature = signature
            self.refresh_bindings()

    def pane_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """The panes' own actions that apply now, for the command palette, as (title, binding id,
        what it does): each about what its pane's cursor is on, as its key would be — rerun from
        the tree's step, retry the fan-out's failed items (the grid's item, when the grid has the
        focus), retry the highlighted failure cluster."""
        out: list[tuple[str, str, Callable[[], object]]] = []
        tree, grid, clusters = self.tree, self.grid, self.cluster_list
        node = tree.cursor_node
        if tree.check_action("rerun_from", ()) is True and node is not None and node.data is not None:
            out.append((f"Rerun from {node.data.label}", "rerun_from", tree.action_rerun_from))
        fan = grid.fan
        if fan is not None and grid.check_action("retry", (True,)) is True:
            which = f"cluster {clusters.number_of(grid.cluster)}" if grid.cluster is not None else "items"
            out.append(
                (
                    f"Retry failed {which} of foreach {fan.name}",
                    "retry_failed",
                    partial(grid.action_retry, True),
                )
            )
            idx = grid.cursor_item
            if self.focused is grid and idx is not None and fan.status_of(idx) in ("failed", "cancelled"):
                out.append((f"Retry item {fan.ids[idx]}", "retry_item", partial(grid.action_retry, False)))
        cluster = clusters.current
        retryable = clusters.check_action("retry_cluster", ()) is True
        if cluster is not None and clusters.has_class("-shown") and retryable:
            number = clusters.number_of(cluster.signature)
            out.append((f"Retry failure cluster {number}", "retry_cluster", clusters.action_retry_cluster))
        return out

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """True shows a key, None dims it, False hides it. The keys that act on the run — cancel,
        resume, approve, reject — are shown only while their action applies to the run's current
        state (a completed run offers no Resume, a cancelling one no second Cancel)."""
        app = self.rapp
        view = app.view
        if action == "run_workflow":
            if app.host is None:
                return False
            return True if self.unavailable_reason(action) is None else None
        if action == "cancel_run":
            return app.run_in_view is not None and not view.cancelling
        if action == "resume_run":
            if not (app.host is not None and not view.active and app.can_resume()):
                return False
            return True if self.unavailable_reason(action) is None else None
        if action in ("approve_gate", "reject_gate"):
            return app.host is not None and bool(view.waiting_gates())
        if action == "retry_failed":  # shown while the fan-out on screen has failed items
            return False if app.host is None else self.grid.check_action("retry", (True,))
        if action in ("failed_only", "next_failure") and view.root is None:
            return False  # nothing ran: hide rather than dim (the footer is short at 80 columns)
        if action in ("failed_only", "next_failure"):
            return True if self.unavailable_reason(action) is None else None
        if action == "search":
            return True if view.root_run_id else None
        return True

    def unavailable_reason(self, action: str) -> str | None:
        """Why `run_workflow`, `resume_run`, `failed_only` or `next_failure` would do nothing now — they are
        dimmed then, and the app says this when one is pressed anyway — else None. What counts is
        what is on screen now: failures later retried successfully are not failures to show."""
        if action == "run_workflow":
            entry = self.selected_entry()
            if entry is None:
                return "no workflow highlighted"
            try:
                self.rapp.session.check_runnable(entry)
            except Refused as refused:
                return refused.notice.text
            return None
        if action == "resume_run":  # a resumable run with nothing to resume it with: dimmed
            return self.rapp.session.why_not_resumable() if self.rapp.can_resume() else None
        fan = self.grid.fan
        if action == "retry_failed":
            return self._why_no_retry(fan)
        failed_item = fan is not None and fan.first_failed() is not None
        if action == "failed_only":
            if fan is None:
                return "no fan-out on screen: nothing to show failed items of"
            if not failed_item and not self.grid.failed_only:  # on: it can always be turned off
                return "no failed items to show in this fan-out"
        if action == "next_failure" and not failed_item and not any(self._failed_nodes()):
            return "no failure to jump to: no step or item on screen has failed"
        return None

    def _why_no_retry(self, fan: FanOutView | None) -> str | None:
        """Why `E` retries nothing now (it is hidden or dimmed then; the app says this when it is
        pressed anyway), else None."""
        if self.rapp.host is None:
            return "nothing to retry: this dashboard runs nothing (read-only)"
        if fan is None:
            return "nothing to retry: no fan-out on screen"
        refusal = self.rapp.view.retry_refusal(fan)
        if refusal is not None:
            return f"nothing to retry here: {refusal}"
        if self.grid.check_action("retry", (True,)) is False:
            return f"nothing to retry: foreach {fan.name} has no failed or cancelled items"
        if not self.grid.retry_allowed:
            return f"only a finished run's items can be retried (this one is {self.rapp.view.status})"
        return None

    def action_retry_failed(self) -> None:
        """Every failed or cancelled item of the fan-out on screen (of the failure cluster the
        grid is filtered to), whichever pane has the focus: the grid asks the app."""
        self.grid.action_retry(True)

    def action_run_workflow(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self.rapp.request_run(entry)

    def action_cancel_run(self) -> None:
        self.rapp.request_cancel()

    def action_resume_run(self) -> None:
        self.rapp.request_resume()

    def action_approve_gate(self) -> None:
        self.rapp.request_gate("approve")

    def action_reject_gate(self) -> None:
        self.rapp.request_gate("reject")

    def action_failed_only(self) -> None:
        grid = self.grid
        grid.set_filter(failed_only=not grid.failed_only)
        self.refresh_titles()
        self.notify("showing failed items only" if grid.failed_only else "showing all items", timeout=2)

    def action_next_failure(self) -> None:
        """Walk the failures in tree order: each failed step, and after a failed foreach its
        failed items (one per press), then the next failed step; wraps to the first."""
        grid = self.grid
        fan = grid.fan
        cursor = self.tree.cursor_node
        on_foreach = cursor is not None and cursor.data is not None and cursor.data.kind == "foreach"
        if fan is not None and (self.focused is grid or on_foreach):
            after = grid.cursor_item if self.focused is grid and grid.cursor_item is not None else -1
            idx = _next_failed_item(fan, after)
            tree_view = self.view_for(self.tree_workflow)
            failed_here = on_foreach and tree_view is not None and _failed(tree_view, cursor.data)  # type: ignore[union-attr,arg-type]
            if idx is not None and (self.focused is grid or failed_here):
                grid.focus()
                grid.move_to_item(idx)
                return
        failed = list(self._failed_nodes())
        if failed:
            after_nodes = [n for n in failed if cursor is None or n.line > cursor.line]
            target = after_nodes[0] if after_nodes else failed[0]
            assert target.data is not None
            self.tree.select_uid(target.data.uid)
            self.tree.focus()
            self.log_pane.mode = "output"
            return
        if fan is not None:
            idx = fan.first_failed()
            if idx is not None:
                grid.focus()
                grid.move_to_item(idx)

    def _failed_nodes(self) -> Iterator[TreeNode[NodeSpec]]:
        """The tree's failed steps (leaves: a block fails through one of them), in tree order."""
        tree_view = self.view_for(self.tree_workflow)
        if tree_view is None or not tree_view.failures:  # none failed yet: no step to look at
            return
        for node in self.tree.nodes_by_uid.values():
            if node.data is not None and not node.data.children and _failed(tree_view, node.data):
                yield node

    def action_zoom(self) -> None:
        """Zoom the pane holding the focus (its border and title come along) to the full screen."""
        if self.maximized is not None:
            self.minimize()
            return
        target = self.focused or self.workflow_list
        if target is self.query_one("#filter", Input):
            target = self.filter_target or self.workflow_list
        self.maximize(target)

    def action_log_mode(self) -> None:
        self.log_pane.cycle()

    def action_runs(self) -> None:
        self.rapp.show_runs()

    def action_search(self) -> None:
        """Search every step's and item's stored output of the run on screen (screens/search.py)."""
        from runkon_tui.screens.search import SearchScreen

        def opened(found: SearchHit | None) -> None:
            if found is not None:
                self.open_search_hit(found)

        self.app.push_screen(SearchScreen(self.rapp.view.root_run_id), opened)

    def open_search_hit(self, found: SearchHit) -> None:
        """Go to the hit: the tree on its step (for a hit inside a fan-out item: the foreach, and
        the grid on the item), then its output in the log pane, scrolled to the hit, marked."""
        self._pending_hit = None
        view = self.view_for(self.tree_workflow)
        uid, item_id = (None, None)
        if view is not None:
            source = found.source
            uid, item_id = hit_target(view, source.run_id, source.node_path, source.items)
        node = self.tree.nodes_by_uid.get(uid) if uid is not None else None
        if node is not None and node is not self.tree.cursor_node:
            # The tree's highlight shows that step's output: the hit is shown after it, there.
            self._pending_hit = (uid, item_id, found)
            self.tree.select_uid(uid)  # type: ignore[arg-type]
            return
        self._show_hit(item_id, found)

    def _show_hit(self, item_id: str | None, found: SearchHit) -> None:
        from runkon_tui.screens.search import HitSource

        fan = self.grid.fan
        if item_id is not None and fan is not None and item_id in fan.index:
            idx = fan.index[item_id]
            if not self.grid.shows_item(idx):
                self._clear_item_filters()
                self.refresh_titles()
            self.grid.highlight_item(idx)
        self._hit_reading = found

        def read() -> None:  # a big run's step is read from the store again: not on the UI thread
            source = HitSource(found)
            self.app.call_from_thread(self._open_hit, found, source)

        self.run_worker(
            read, thread=True, group="hit", name="read the hit's output", exclusive=True, exit_on_error=False
        )

    def _open_hit(self, found: SearchHit, source: HitSource) -> None:
        if self._hit_reading is not found:
            return  # another hit was opened meanwhile
        self._hit_reading = None
        self._child_source = None
        self._output_spec = self._output_step = None
        self._following = False
        self.log_pane.set_output(source, f"{found.source.label} · line {found.hit.number}")
        self.log_pane.mode = "output"
        view = self.log_pane.view
        view.focus()
        self.call_after_refresh(view.scroll_to_line, source.index)

    def action_gate_inbox(self) -> None:
        """Every gate waiting in the store, of any run in any process (screens/inbox.py)."""
        from runkon_tui.screens.inbox import GateInboxScreen

        self.app.push_screen(GateInboxScreen())

    def action_theme(self) -> None:
        self.app.action_change_theme()

    def action_help(self) -> None:
        self.rapp.show_help()

    async def action_quit(self) -> None:
        await self.rapp.action_quit()

    # ------------------------------------------------------------------ filter

    def action_filter(self) -> None:
        focused = self.focused
        target: Widget = self.log_pane.view
        if isinstance(focused, (WorkflowList, FanOutGrid)):
            target = focused
        self.filter_target = target
        box = self.query_one("#filter", Input)
        box.value = self._filter_of(target)
        self.query_one("#filter-label", Label).update(f"/ filter {self._target_name(target)}:")
        self.query_one("#filter-bar").add_class("-shown")
        box.focus()

    @staticmethod
    def _target_name(target: Widget) -> str:
        if isinstance(target, WorkflowList):
            return "workflows"
        if isinstance(target, FanOutGrid):
            return "items"
        return "log lines"

    def _filter_of(self, target: Widget) -> str:
        if isinstance(target, WorkflowList):
            return target.text_filter
        if isinstance(target, FanOutGrid):
            return target.text_filter
        return self.log_pane.view.text_filter

    def _apply_filter(self, text: str) -> None:
        target = self.filter_target
        if isinstance(target, WorkflowList):
            self._filter_workflows(text)
        elif isinstance(target, FanOutGrid):
            target.set_filter(text=text)
        else:
            self.log_pane.set_filter(text)
        self.refresh_titles()

    def _filter_workflows(self, text: str) -> None:
        """Filter the list without moving the screen: the workflow the tree shows stays
        highlighted while it matches; hidden by the filter, it stays in the tree (the header and
        the grid describe its run, as before) until the user moves the list's highlight to a
        match. (The tree followed the highlight to the first match while the header still named
        the run on screen.)"""
        app = self.rapp
        shown = self.shown_entry()
        listed = shown is not None and app.catalog.entries.get(shown.path) is shown
        lst = self.workflow_list
        lst.set_filter(text, app.catalog, keep=shown.path if listed and shown is not None else None)
        here = lst.highlighted_path
        if self.pinned is not None:
            self._pinned_over = here  # a run's workflow outside the folders: kept as well
        elif listed and shown is not None and here != shown.path:
            self._kept, self._kept_over = shown.path, here
        else:
            self._kept = None

    def clear_run_filters(self) -> None:
        """A run of another workflow starts unfiltered: the item and log filters were about the
        previous run's items and lines (the workflow list's filter is about files: it stays)."""
        self._clear_item_filters()
        if self.log_pane.view.text_filter:
            self.log_pane.set_filter("")
        self.refresh_titles()

    def _clear_item_filters(self) -> None:
        """The grid shows every item again: failed only, its text filter and the picked failure
        cluster (the cluster list's mark too) are taken off."""
        if self.grid.failed_only or self.grid.text_filter:
            self.grid.set_filter(failed_only=False, text="")
        if self.grid.cluster is not None:
            self.grid.set_cluster(None)
            self.cluster_list.unpick()

    def refresh_titles(self) -> None:
        """Pane titles name every active filter, so a filtered pane never looks like a full one."""
        listed = "Workflows"
        if self.workflow_list.text_filter:
            listed += f" · /{esc(self.workflow_list.text_filter)}"
        if self.workflows_pane.border_title != listed:
            self.workflows_pane.border_title = listed
        fan = self.grid.fan
        filters = []
        if self.grid.text_filter:
            filters.append(f"/{esc(self.grid.text_filter)}")
        if self.grid.failed_only:
            filters.append("failed only")
        if self.grid.cluster is not None:
            filters.append(f"cluster {self.cluster_list.number_of(self.grid.cluster)}")
        title = "Fan-out"
        if filters:  # first, so a narrow pane cuts the foreach name rather than the filter
            title += f" · [$warning]{' · '.join(filters)}[/] · {self.grid.visible_count} shown"
        if fan is not None:
            title += f" · foreach {esc(fan.name)}"
        if self.grid_pane.border_title != title:
            self.grid_pane.border_title = title

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def on_key(self, event) -> None:  # type: ignore[no-untyped-def]
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.has_focus:
            box.value = ""
            self._apply_filter("")
            self._close_filter()
            event.stop()

    def _close_filter(self) -> None:
        self.query_one("#filter-bar").remove_class("-shown")
        if self.filter_target is not None:
            self.filter_target.focus()


def _failed(tree_view: RunView, spec: NodeSpec) -> bool:
    """`spec`'s step failed (or timed out) in the run drawn on the tree."""
    run = run_for_scope(tree_view, spec.scope)
    sv = run.steps.get(spec.path) if run is not None else None
    return sv is not None and sv.status in ("failed", "timed_out")


def _next_failed_item(fan: FanOutView, after: int) -> int | None:
    """The first failed item after index `after` (-1: from the start)."""
    code = bytes([ITEM_CODE["failed"]])
    idx = fan.codes.find(code, after + 1)
    return None if idx < 0 else idx


def child_output_lines(run: RunState) -> list[str]:
    """A child run's steps with their status, error and output lines, for the output log."""
    lines = [f"run {run.run_id} · {run.workflow_name} · {run.status}"]
    if run.error:
        lines.append(f"error: {run.error}")
    for sv in run.steps.values():
        head = f"── {glyph(sv.status)} {sv.step_key or sv.name} ({sv.status})"
        if sv.error:
            head += f": {sv.error}"
        lines.append(head)
        lines.extend(sv.last_output(200))
    return lines
