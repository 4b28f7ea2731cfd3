"""The dependency tree: the workflow's nodes with a status glyph and live details per step.

Built once per definition from `tree_model.build_tree`; afterwards only labels change, and only
when their text actually changes (Textual caches lines per node, so an unchanged label costs
nothing). Expansion state survives a rebuild (hot reload) by node uid.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from runkon_flow.observe.estimates import Estimates
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from runkon_tui.run_view import RunView
from runkon_tui.status import TONES, glyph, tone
from runkon_tui.tree_model import NodeSpec, node_detail, node_status, run_for_scope


class DependencyTree(Tree[NodeSpec]):
    # Not ▶/▼: ▶ is the "running" glyph right next to it.
    ICON_NODE = "▸ "
    ICON_NODE_EXPANDED = "▾ "
    # In the footer while it applies: a finished run of the workflow this tree shows is on screen.
    BINDINGS = [Binding("R", "rerun_from", "Rerun from here", id="rerun_from")]
    COMPONENT_CLASSES = Tree.COMPONENT_CLASSES | {f"dep-tree--{t}" for t in TONES} | {"dep-tree--detail"}

    DEFAULT_CSS = """
    DependencyTree { background: $surface; overflow-x: hidden; }
    DependencyTree > .dep-tree--muted { color: $text-muted; }
    DependencyTree > .dep-tree--active { color: $primary; text-style: bold; }
    DependencyTree > .dep-tree--attention { color: $warning; text-style: bold; }
    DependencyTree > .dep-tree--ok { color: $success; }
    DependencyTree > .dep-tree--bad { color: $error; text-style: bold; }
    DependencyTree > .dep-tree--detail { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("workflow", id=id)
        self.show_root = False
        self.guide_depth = 2
        self.auto_expand = False
        self.specs: list[NodeSpec] = []
        #: the tree has a foreach, its workflow's own or a called workflow's (found once, at `load`)
        self.has_foreach = False
        self.nodes_by_uid: dict[str, TreeNode[NodeSpec]] = {}
        self.rerun_allowed = False  # a finished run of this tree's workflow is on screen (the screen's call)
        self.definition_key: object = None
        self.workflow = ""
        self._expanded: dict[str, set[str]] = {}
        self._labels: dict[str, str] = {}
        self.estimates: Estimates | None = None  # past runs (the screen sets it): ETA bands
        self._tone_styles: dict[str, Style] | None = None

    # ------------------------------------------------------------------ building

    def load(
        self, specs: list[NodeSpec], key: object, placeholder: str | None = None, workflow: str = ""
    ) -> None:
        """Show a new tree; `key` identifies the definition, `workflow` the file it came from.

        Which nodes are expanded is remembered per workflow, so switching back and forth (or a hot
        reload of the same file) keeps what the user opened or closed.
        """
        if self.workflow:
            nodes = self.nodes_by_uid.items()
            self._expanded[self.workflow] = {uid for uid, node in nodes if node.is_expanded}
        remembered = self._expanded.get(workflow)
        first_load = remembered is None
        expanded = remembered or set()
        cursor_uid = None
        if workflow == self.workflow and self.cursor_node is not None and self.cursor_node.data is not None:
            cursor_uid = self.cursor_node.data.uid
        self.workflow = workflow
        self.clear()
        self.nodes_by_uid = {}
        self._labels = {}
        self.specs = specs
        self.has_foreach = any(spec.kind == "foreach" for top in specs for spec in top.walk())
        self.definition_key = key
        if placeholder:
            self.root.add_leaf(Text(placeholder, style="italic"))
        for spec in specs:
            self._add(self.root, spec, expanded, first_load)
        # A rebuilt tree knows its nodes' lines only once laid out: lay it out now, or the cursor
        # would land on the first line (a reload at the end of a run lost the step whose output
        # the user was reading), and `cursor_node` would still be a node of the old tree.
        _ = self._tree_lines
        if cursor_uid and cursor_uid in self.nodes_by_uid:
            self.move_cursor(self.nodes_by_uid[cursor_uid])

    def _add(self, parent: TreeNode[NodeSpec], spec: NodeSpec, expanded: set[str], first_load: bool) -> None:
        label = Text(spec.label)
        if spec.children:
            # Blocks open by default; child workflows start folded (they can be deep).
            expand = spec.uid in expanded or (first_load and spec.kind != "call_workflow")
            node = parent.add(label, data=spec, expand=expand)
            for child in spec.children:
                self._add(node, child, expanded, first_load)
        else:
            node = parent.add_leaf(label, data=spec)
        self.nodes_by_uid[spec.uid] = node

    # ------------------------------------------------------------------ live statuses

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._tone_styles = None
        self._labels = {}

    def _styles(self) -> dict[str, Style]:
        if self._tone_styles is None:
            # Full styles resolve `auto` colours (e.g. $text-muted) against the background; keep only
            # colour and weight so the cursor line's background still shows through.
            def fg(name: str) -> Style:
                full = self.get_component_rich_style(name)
                return Style(color=full.color, bold=full.bold, italic=full.italic)

            styles = {t: fg(f"dep-tree--{t}") for t in TONES}
            styles["detail"] = fg("dep-tree--detail")
            self._tone_styles = styles
        return self._tone_styles

    def update_statuses(self, view: RunView | None, now: float) -> None:
        """Relabel every node whose glyph or detail text changed (cheap: strings compared first)."""
        styles = self._styles()
        runs: dict[tuple[str, ...], object] = {}
        finished = view is not None and view.root is not None and view.root.finished
        completed = view is not None and view.root is not None and view.root.status == "completed"
        for uid, node in self.nodes_by_uid.items():
            spec = node.data
            if spec is None:
                continue
            if view is None:
                run = None
            else:
                if spec.scope not in runs:
                    runs[spec.scope] = run_for_scope(view, spec.scope)
                run = runs[spec.scope]
            status = node_status(spec, run, finished, root_completed=completed)  # type: ignore[arg-type]
            detail = (
                node_detail(spec, view, run, now, self.estimates)  # type: ignore[arg-type]
                if view is not None
                else (spec.note or "")
            )
            key = f"{status}|{detail}"
            if self._labels.get(uid) == key:
                continue
            self._labels[uid] = key
            text = Text.assemble(
                (glyph(status), styles[tone(status)]),
                " ",
                (spec.label, styles[tone(status)] if status in ("failed", "timed_out") else ""),
            )
            if detail:
                text.append("  " + detail, styles["detail"])
            node.set_label(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "rerun_from":  # dimmed with no step under the cursor: nothing to rerun from
            if not self.rerun_allowed:
                return False
            return True if self.cursor_node is not None and self.cursor_node.data is not None else None
        return True

    def unavailable_reason(self, action: str) -> str | None:
        """Why a dimmed `R` does nothing (the app says it when it is pressed anyway)."""
        if action == "rerun_from" and self.rerun_allowed:
            return "move the tree's cursor to the step to rerun from (↑/↓), then R"
        return None

    def action_rerun_from(self) -> None:
        """Rerun the finished run on screen from the step under the cursor (a new run that reuses
        the steps before it; the app asks for the inputs first)."""
        node = self.cursor_node
        spec = node.data if node is not None else None
        if spec is None:
            return
        if spec.scope:  # a called workflow's step: its `call workflow` node reruns it
            call = self.nodes_by_uid.get(spec.scope[0])
            name = call.data.label if call is not None and call.data is not None else spec.scope[0]
            self.notify(
                f"only the top-level workflow's steps can be rerun from: rerun from {name} (the call)",
                severity="warning",
            )
            return
        self.app.request_rerun(spec.path, spec.label)  # type: ignore[attr-defined]

    def first_failed(self) -> TreeNode[NodeSpec] | None:
        """The first node in tree order whose label shows a failure."""
        for uid, node in self.nodes_by_uid.items():
            state = self._labels.get(uid, "")
            spec = node.data
            if spec is not None and not spec.children and state.split("|", 1)[0] in ("failed", "timed_out"):
                return node
        return None

    def forget_cursor(self) -> None:
        """No node highlighted, as in a tree just built. `move_cursor(None)` lands on the first
        line (`Tree` clamps a cursor line to the lines there are), and `unselect` leaves
        `cursor_node` set: the line is set past the clamp, then what its watcher does for -1."""
        previous = self.cursor_line
        self.set_reactive(Tree.cursor_line, -1)
        self.watch_cursor_line(previous, -1)

    def select_uid(self, uid: str) -> None:
        node = self.nodes_by_uid.get(uid)
        if node is None:
            return
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        # Line numbers of newly expanded nodes are known only after the tree re-lays out.
        self.call_after_refresh(self._move_to, node)

    def _move_to(self, node: TreeNode[NodeSpec]) -> None:
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)
