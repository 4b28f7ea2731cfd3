"""The PostgreSQL schema: the canonical tables of engine.md §6.3 in PostgreSQL's dialect, its
version, and the ordered migrations `runkon-flow db upgrade` applies.

Same tables, columns, CHECKs, UNIQUE fan-out key, foreign keys and indexes as SQLite (schema.py),
with four differences: `lease_until` is a `timestamptz` compared with the *server's* clock (many
machines share one database; their clocks may disagree), runs get a hidden `seq` identity for
"newest first" among runs started in the same millisecond (SQLite's rowid), and the version lives
in a one-row table `runkon_schema` (there is no `PRAGMA user_version`). Ids and `started_at` use
the "C" collation: ULIDs and RFC 3339 stamps must sort bytewise ("insertion order", "newest
first") whatever the database's locale. Everything is created in
the connection's current schema (`search_path`), so one database can hold several runkon schemas.

Version numbers are SQLite's: version N means the same columns in both stores.
"""

from __future__ import annotations

from runkon_flow.persistence.schema import PARTIAL_INDEXES, RUN_STATUSES, STEP_ROLES, STEP_STATUSES, _in_list

_V1: tuple[str, ...] = (
    f"""CREATE TABLE workflow_runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    parent_run_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_in_list(RUN_STATUSES)})),
    dry_run INTEGER NOT NULL DEFAULT 0,
    "trigger" TEXT NOT NULL DEFAULT '',
    started_at TEXT COLLATE "C" NOT NULL
        DEFAULT (to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    ended_at TEXT,
    result_summary TEXT,
    definition_snapshot TEXT,
    inputs TEXT,
    parent_workflow_run_id TEXT,
    iteration INTEGER NOT NULL DEFAULT 0,
    blocked_on TEXT,
    total_duration_ms BIGINT,
    error TEXT,
    dismissed INTEGER NOT NULL DEFAULT 0,
    workflow_title TEXT,
    owner_token TEXT,
    lease_until TIMESTAMPTZ,
    generation BIGINT NOT NULL DEFAULT 0,
    seq BIGINT GENERATED ALWAYS AS IDENTITY
)""",
    f"""CREATE TABLE workflow_run_steps (
    id TEXT COLLATE "C" PRIMARY KEY,
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
    """CREATE TABLE workflow_run_step_fan_out_items (
    id TEXT COLLATE "C" PRIMARY KEY,
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
    "CREATE INDEX idx_workflow_runs_status ON workflow_runs(status)",
    "CREATE INDEX idx_workflow_runs_parent_workflow_run_id ON workflow_runs(parent_workflow_run_id)",
    "CREATE INDEX idx_workflow_run_steps_run ON workflow_run_steps(workflow_run_id)",
    "CREATE INDEX idx_steps_status_gate ON workflow_run_steps(status, gate_type)",
    "CREATE INDEX idx_workflow_run_steps_child_run_id ON workflow_run_steps(child_run_id)",
    "CREATE INDEX idx_fan_out_items_step ON workflow_run_step_fan_out_items(step_run_id, status)",
    "CREATE INDEX idx_workflow_runs_started ON workflow_runs(started_at DESC, seq DESC)",
)

_V2 = (
    # Each step row records its place in the workflow tree (`body.2`); older rows keep NULL.
    "ALTER TABLE workflow_run_steps ADD COLUMN IF NOT EXISTS node_path TEXT",
)

_V3 = (
    # The stored event stream (docs/persistence.md "Event log"), numbered per top-level run.
    """CREATE TABLE IF NOT EXISTS workflow_run_events (
    run_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    event_run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)""",
)

_V4 = (
    # Retrying items (docs/when-things-go-wrong.md): the retry asked of a run, and each fan-out
    # item row's attempt number and the child run of the attempt before it.
    "ALTER TABLE workflow_runs ADD COLUMN IF NOT EXISTS retry_request TEXT",
    "ALTER TABLE workflow_run_step_fan_out_items ADD COLUMN IF NOT EXISTS attempt INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE workflow_run_step_fan_out_items ADD COLUMN IF NOT EXISTS previous_child_run_id TEXT",
)

_V6 = (
    # Usage (issue 14 item 8): the tokens, turns and cost a step spent, JSON (runkon_flow.usage).
    "ALTER TABLE workflow_run_steps ADD COLUMN IF NOT EXISTS usage TEXT",
)

_V7 = (
    # Rerun from a step (docs/when-things-go-wrong.md): which run a run reruns, from which step.
    "ALTER TABLE workflow_runs ADD COLUMN IF NOT EXISTS rerun_of TEXT",
    "ALTER TABLE workflow_runs ADD COLUMN IF NOT EXISTS rerun_from TEXT",
)

# Issue 15: three canonical indexes become partial — the very definitions of schema.py version 8:
# a finished foreach child's rows no longer go into the status, gate and child-run indexes, which
# only unfinished runs, gate steps and steps with a child run are looked up through.
_V8 = tuple(sql for name, create in PARTIAL_INDEXES for sql in (f"DROP INDEX IF EXISTS {name}", create))

# Issue 11: an event row may pack many events (`kind = 'events'`, one per line). No DDL: the
# version says it, so a runkon from before refuses the database instead of showing no history.
_V9: tuple[str, ...] = ()

# Issue 11: a packed row may be compressed (`kind = 'events.z'`). No DDL, as for 9.
_V10: tuple[str, ...] = ()

_V11 = (
    # A rerun's definition choice (`stored` | `current`), kept for its resume and retry.
    "ALTER TABLE workflow_runs ADD COLUMN IF NOT EXISTS rerun_definition TEXT",
)

# 5 was reserved for the rerun link, which landed after 6 (databases at 6 exist without it): it is 7.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (6, _V6),
    (7, _V7),
    (8, _V8),
    (9, _V9),
    (10, _V10),
    (11, _V11),
)
"""(version, statements) in order: applying every step above the database's version brings it to
SCHEMA_VERSION. A new schema version appends one step (and the same version in schema.py)."""

SCHEMA_VERSION = MIGRATIONS[-1][0]

VERSION_TABLE = "CREATE TABLE runkon_schema (version INTEGER NOT NULL, upgraded_at TIMESTAMPTZ NOT NULL)"

RUNKON_TABLES = (
    "workflow_runs",
    "workflow_run_steps",
    "workflow_run_step_fan_out_items",
    "workflow_run_events",
)
