"""The canonical SQLite schema (engine.md §6.3) and its versioning.

Deliberate deviations: the step-status CHECK also allows `cancelled` (design.md §5 — a step
stopped by a cancel is recorded `cancelled`), and from version 8 three of the indexes are partial
(`PARTIAL_INDEXES`). Everything else — tables, columns, defaults, CHECKs,
the UNIQUE fan-out key and the six indexes — is the canonical DDL, created "if not exists" so an
existing file is reused as is. `PRAGMA user_version` records the schema version.

Version 1 is the canonical DDL below; every later version is one entry of `MIGRATIONS`, applied in
order to files at an older version (and to fresh files, right after the version-1 DDL). A migration
is idempotent, so a file whose `user_version` was reset by another tool is still opened.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from runkon_flow.errors import PersistenceError
from runkon_flow.persistence.models import FAILED_STEP_STATUSES

RUN_STATUSES = (
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled",
    "waiting",
    "needs_resume",
    "cancelling",
)
STEP_STATUSES = ("pending", "running", "completed", "failed", "skipped", "waiting", "timed_out", "cancelled")
STEP_ROLES = ("agent", "gate", "foreach", "workflow")


def _in_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


RUN_COLUMNS = (
    'id, workflow_name, parent_run_id, status, dry_run, "trigger", started_at, ended_at, result_summary, '
    "definition_snapshot, inputs, parent_workflow_run_id, iteration, blocked_on, total_duration_ms, error, "
    "dismissed, workflow_title, owner_token, lease_until, generation, retry_request, rerun_of, rerun_from, "
    "rerun_definition"
)

STEP_COLUMNS = (
    "id, workflow_run_id, step_name, role, can_commit, condition_expr, status, child_run_id, position, "
    "started_at, ended_at, result_text, condition_met, iteration, parallel_group_id, context_out, "
    "markers_out, retry_count, gate_type, gate_prompt, gate_timeout, gate_approved_by, gate_approved_at, "
    "gate_feedback, "
    "structured_output, output_file, gate_options, gate_selections, fan_out_total, fan_out_completed, "
    "fan_out_failed, fan_out_skipped, step_error, node_path, usage"
)

#: Every step column but the two a copy replaces (its id and its run), for `copy_steps`.
STEP_COPY_COLUMNS = STEP_COLUMNS.removeprefix("id, workflow_run_id, ")

ITEM_COLUMNS = (
    "id, step_run_id, item_type, item_id, item_ref, child_run_id, status, dispatched_at, completed_at, "
    "context, attempt, previous_child_run_id"
)

TABLES: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS workflow_runs (
    id TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    parent_run_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_in_list(RUN_STATUSES)})),
    dry_run INTEGER NOT NULL DEFAULT 0,
    "trigger" TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ended_at TEXT,
    result_summary TEXT,
    definition_snapshot TEXT,
    inputs TEXT,
    parent_workflow_run_id TEXT,
    iteration INTEGER NOT NULL DEFAULT 0,
    blocked_on TEXT,
    total_duration_ms INTEGER,
    error TEXT,
    dismissed INTEGER NOT NULL DEFAULT 0,
    workflow_title TEXT,
    owner_token TEXT,
    lease_until TEXT,
    generation INTEGER NOT NULL DEFAULT 0
)""",
    f"""CREATE TABLE IF NOT EXISTS workflow_run_steps (
    id TEXT PRIMARY KEY,
    workflow_run_id TEXT NOT NULL REFERENCES workflow_runs(id),
    step_name TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL DEFAULT 'agent' CHECK (role IN ({_in_list(STEP_ROLES)})),
    can_commit INTEGER NOT NULL DEFAULT 0,
    condition_expr TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_in_list(STEP_STATUSES)})),
    child_run_id TEXT,
    position INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    ended_at TEXT,
    result_text TEXT,
    condition_met INTEGER,
    iteration INTEGER NOT NULL DEFAULT 0,
    parallel_group_id TEXT,
    context_out TEXT,
    markers_out TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    gate_type TEXT,
    gate_prompt TEXT,
    gate_timeout TEXT,
    gate_approved_by TEXT,
    gate_approved_at TEXT,
    gate_feedback TEXT,
    structured_output TEXT,
    output_file TEXT,
    gate_options TEXT,
    gate_selections TEXT,
    fan_out_total INTEGER,
    fan_out_completed INTEGER,
    fan_out_failed INTEGER,
    fan_out_skipped INTEGER,
    step_error TEXT
)""",
    """CREATE TABLE IF NOT EXISTS workflow_run_step_fan_out_items (
    id TEXT PRIMARY KEY,
    step_run_id TEXT NOT NULL REFERENCES workflow_run_steps(id),
    item_type TEXT NOT NULL,
    item_id TEXT NOT NULL,
    item_ref TEXT NOT NULL DEFAULT '',
    child_run_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    dispatched_at TEXT,
    completed_at TEXT,
    context TEXT,
    UNIQUE (step_run_id, item_type, item_id)
)""",
)

INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS idx_workflow_runs_status ON workflow_runs(status)",
    "CREATE INDEX IF NOT EXISTS idx_workflow_runs_parent_workflow_run_id "
    "ON workflow_runs(parent_workflow_run_id)",
    "CREATE INDEX IF NOT EXISTS idx_workflow_run_steps_run ON workflow_run_steps(workflow_run_id)",
    "CREATE INDEX IF NOT EXISTS idx_steps_status_gate ON workflow_run_steps(status, gate_type)",
    "CREATE INDEX IF NOT EXISTS idx_workflow_run_steps_child_run_id ON workflow_run_steps(child_run_id)",
    "CREATE INDEX IF NOT EXISTS idx_fan_out_items_step "
    "ON workflow_run_step_fan_out_items(step_run_id, status)",
)

DDL = TABLES + INDEXES


def _add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """`ALTER TABLE … ADD COLUMN`, skipped when the column is already there."""
    if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _v2_step_node_path(conn: sqlite3.Connection) -> None:
    """Each step row records its place in the workflow tree (`body.2`, `body.1.then.0`), so a past
    run is drawn on the right nodes; rows written before this version keep NULL."""
    _add_column(conn, "workflow_run_steps", "node_path", "TEXT")


EVENT_COLUMNS = "run_id, seq, ts, event_run_id, kind, payload"

#: The stored event stream (ours, docs/persistence.md "Event log"): one row per engine event,
#: numbered per top-level run. WITHOUT ROWID on (run_id, seq): one b-tree, appended at its end.
EVENTS_TABLE = """CREATE TABLE IF NOT EXISTS workflow_run_events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    event_run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID"""


def _v3_event_log(conn: sqlite3.Connection) -> None:
    """The append-only event log a run is watched through from any process."""
    conn.execute(EVENTS_TABLE)


def _v4_retry_lineage(conn: sqlite3.Connection) -> None:
    """Retrying items (docs/when-things-go-wrong.md): a run records the retry asked of it (JSON:
    which fan-out rows, which items, when, with which definition), and each fan-out item row its
    attempt number and the child run of the attempt before it, so earlier attempts stay visible."""
    _add_column(conn, "workflow_runs", "retry_request", "TEXT")
    _add_column(conn, "workflow_run_step_fan_out_items", "attempt", "INTEGER NOT NULL DEFAULT 1")
    _add_column(conn, "workflow_run_step_fan_out_items", "previous_child_run_id", "TEXT")


def _v6_step_usage(conn: sqlite3.Connection) -> None:
    """Usage (issue 14 item 8): the tokens, turns and cost a step spent, as JSON
    (`runkon_flow.usage.Usage`); `call workflow` and `foreach` rows hold their children's sum."""
    _add_column(conn, "workflow_run_steps", "usage", "TEXT")


def _v7_rerun_link(conn: sqlite3.Connection) -> None:
    """Rerun from a step (docs/when-things-go-wrong.md): a run says which run it reruns and from
    which step; the steps before that step were copied from the earlier run and reused."""
    _add_column(conn, "workflow_runs", "rerun_of", "TEXT")
    _add_column(conn, "workflow_runs", "rerun_from", "TEXT")


#: The finished run statuses as an SQL list, for `status IN …` (both stores' SQL).
RUN_FINISHED_IN = "('completed', 'failed', 'cancelled')"

#: The runs `idx_workflow_runs_status` holds from version 8 on: those not finished. A query that
#: should use the index carries this very term (SQLite uses a partial index only then).
RUN_UNFINISHED = f"status NOT IN {RUN_FINISHED_IN}"

#: `end_abandoned_descendants`, with `{p}` for the driver's placeholder (parameters: the error,
#: ended_at, the run id). The descendants come from one recursive walk down
#: `parent_workflow_run_id` (indexed); a run some step row names as its child (`call workflow`)
#: is left to the engine that resumes it in place; its own descendants are still walked.
#: (The walk is a subquery, not a leading WITH: Python's sqlite3 counts no rows for the latter.)
#: Every unfinished run below run {p} (third parameter), by `parent_workflow_run_id`, recorded
#: `cancelled` with error {p} and end {p}, unowned (`finish_run(…, abandoned=…)`).
UNFINISHED_DESCENDANTS = (
    "UPDATE workflow_runs SET status = 'cancelled', error = {p}, ended_at = {p}, blocked_on = NULL, "
    "owner_token = NULL, lease_until = NULL WHERE id IN ("
    "WITH RECURSIVE tree(id) AS (SELECT id FROM workflow_runs WHERE parent_workflow_run_id = {p} "
    "UNION SELECT r.id FROM workflow_runs r JOIN tree ON r.parent_workflow_run_id = tree.id) "
    f"SELECT id FROM tree) AND {RUN_UNFINISHED}"
)
#: … except a run a step row names as its child (`call workflow`: resumed in place);
#: `end_abandoned_descendants`.
_NOT_CALLED = " AND NOT EXISTS (SELECT 1 FROM workflow_run_steps s WHERE s.child_run_id = workflow_runs.id)"
ABANDONED_DESCENDANTS = UNFINISHED_DESCENDANTS + _NOT_CALLED
#: The ids of the runs UNFINISHED_DESCENDANTS ends (one parameter: the run id), read first in its
#: transaction by a store that cannot have them back from the UPDATE (SQLite before 3.35 has no
#: RETURNING): the engine sends each one's end event (`finish_run(…, abandoned=…, ended=…)`).
UNFINISHED_DESCENDANT_IDS = (
    "SELECT id FROM workflow_runs WHERE id IN ("
    "WITH RECURSIVE tree(id) AS (SELECT id FROM workflow_runs WHERE parent_workflow_run_id = {p} "
    "UNION SELECT r.id FROM workflow_runs r JOIN tree ON r.parent_workflow_run_id = tree.id) "
    f"SELECT id FROM tree) AND {RUN_UNFINISHED}"
)
#: … and those ABANDONED_DESCENDANTS ends: the resuming engine sends each one's end event.
ABANDONED_DESCENDANT_IDS = UNFINISHED_DESCENDANT_IDS + _NOT_CALLED
#: The runs an UNFINISHED_DESCENDANTS of (run id, error, ended_at) already ended: read by a finish
#: run again after its commit answer was lost (PostgreSQL), which finds its work done.
ENDED_DESCENDANT_IDS = (
    "SELECT id FROM workflow_runs WHERE id IN ("
    "WITH RECURSIVE tree(id) AS (SELECT id FROM workflow_runs WHERE parent_workflow_run_id = {p} "
    "UNION SELECT r.id FROM workflow_runs r JOIN tree ON r.parent_workflow_run_id = tree.id) "
    "SELECT id FROM tree) AND status = 'cancelled' AND error = {p} AND ended_at = {p}"
)

#: The child runs a foreach step row's items ran as (one parameter, `{p}`: the step row's id), as
#: a sub-select: `item_child_usage` and `item_child_failed_steps` read a whole fan-out's child
#: rows in one query through it.
ITEM_CHILD_RUNS = (
    "SELECT child_run_id FROM workflow_run_step_fan_out_items "
    "WHERE step_run_id = {p} AND child_run_id IS NOT NULL"
)
#: `models.FAILED_STEP_STATUSES` as an SQL list.
FAILED_STEP_STATUSES_IN = "(" + ", ".join(f"'{s}'" for s in FAILED_STEP_STATUSES) + ")"
#: (child run id, usage JSON) of every step row that reported usage in a fan-out's child runs
#: (`item_child_usage`; `{p}`: the foreach step row's id).
ITEM_CHILD_USAGE = (
    "SELECT workflow_run_id, usage FROM workflow_run_steps WHERE usage IS NOT NULL "
    f"AND workflow_run_id IN ({ITEM_CHILD_RUNS})"
)
#: The step rows that failed with an error in a fan-out's child runs (`item_child_failed_steps`;
#: `{p}`: the foreach step row's id).
ITEM_CHILD_FAILED_STEPS = (
    f"SELECT {STEP_COLUMNS} FROM workflow_run_steps WHERE status IN {FAILED_STEP_STATUSES_IN} "
    f"AND step_error IS NOT NULL AND step_error <> '' AND workflow_run_id IN ({ITEM_CHILD_RUNS})"
)

#: Version 8's partial indexes (name, definition): the canonical ones, less the rows no query
#: looks for through them.
PARTIAL_INDEXES: tuple[tuple[str, str], ...] = (
    (
        "idx_workflow_runs_status",
        f"CREATE INDEX idx_workflow_runs_status ON workflow_runs(status) WHERE {RUN_UNFINISHED}",
    ),
    (
        "idx_steps_status_gate",
        "CREATE INDEX idx_steps_status_gate ON workflow_run_steps(status, gate_type) "
        "WHERE gate_type IS NOT NULL",
    ),
    (
        "idx_workflow_run_steps_child_run_id",
        "CREATE INDEX idx_workflow_run_steps_child_run_id ON workflow_run_steps(child_run_id) "
        "WHERE child_run_id IS NOT NULL",
    ),
)


def _v8_partial_indexes(conn: sqlite3.Connection) -> None:
    """Issue 15 (docs/persistence.md "What it costs on SQLite"): three canonical indexes become
    partial, so a finished foreach child's run and step rows go into 6 b-trees instead of 9 — the
    status index keeps the runs a query asks for by status (unfinished ones: waiting gates, active
    runs), the gate index the gate steps, the child-run index the steps that have a child run."""
    for name, create in PARTIAL_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.execute(create)


def _v9_packed_events(conn: sqlite3.Connection) -> None:
    """Issue 11 (docs/persistence.md "Event log"): a `workflow_run_events` row may pack many
    events (`kind = 'events'`, one per line). No table changes; the version says it, so a runkon
    from before refuses the file instead of showing a run's history as empty."""


def _v10_zipped_events(conn: sqlite3.Connection) -> None:
    """Issue 11: a packed row may be compressed (`kind = 'events.z'`). No table changes; the version
    says it, so a runkon from before refuses the file instead of skipping those rows' events."""


def _v11_rerun_definition(conn: sqlite3.Connection) -> None:
    """A rerun records the definition it chose (`stored` or `current`), so a resume or retry of
    it keeps running the workflows it starts as the old run ran them when it chose `stored`."""
    _add_column(conn, "workflow_runs", "rerun_definition", "TEXT")


#: (version, step) in ascending order: the step brings a file from version-1 to version.
MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (2, _v2_step_node_path),
    (3, _v3_event_log),
    (4, _v4_retry_lineage),
    # 5 was reserved for the rerun link, which landed after 6: files at 6 exist without it, so it is 7.
    (6, _v6_step_usage),
    (7, _v7_rerun_link),
    (8, _v8_partial_indexes),
    (9, _v9_packed_events),
    (10, _v10_zipped_events),
    (11, _v11_rerun_definition),
)

SCHEMA_VERSION = MIGRATIONS[-1][0] if MIGRATIONS else 1

_STEP_STATUS_CHECK = re.compile(r"CHECK\s*\(\s*status\s+IN\s*\(([^)]*)\)", re.IGNORECASE)


def ensure_schema(conn: sqlite3.Connection, where: str) -> None:
    """Create or check the schema on an autocommit connection; `where` names the file in errors.

    Runs inside BEGIN IMMEDIATE so two processes opening a new file at once do not race.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise PersistenceError(
            f"{where} uses schema version {version}, newer than this runkon understands ({SCHEMA_VERSION}); "
            "upgrade runkon or use another database"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 1:
            for statement in TABLES:
                conn.execute(statement)
            _check_step_statuses(conn, where)  # before the indexes, which would fail on a foreign table
            for statement in INDEXES:
                conn.execute(statement)
        for target, migrate in MIGRATIONS:
            if version < target:
                migrate(conn)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _check_step_statuses(conn: sqlite3.Connection, where: str) -> None:
    """A steps table made by another tool may lack `cancelled`; say so now, not mid-run."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'workflow_run_steps'"
    ).fetchone()
    checks = _STEP_STATUS_CHECK.findall(row[0] if row else "")
    if any("'cancelled'" not in allowed for allowed in checks):
        raise PersistenceError(
            f"{where} has a workflow_run_steps table made by another tool whose status CHECK does not allow "
            "'cancelled'; point runkon at its own database (RUNKON_DB)"
        )
