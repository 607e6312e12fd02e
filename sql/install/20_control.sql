-- 20_control.sql: the control plane: which tables sync how, the connection, runs, watermarks, audit.

--------------------------------------------------------------------------------------------------
-- Control plane.
--------------------------------------------------------------------------------------------------

-- How each synced table is applied. stream: the fetch unit it belongs to; parent_table and
-- parent_column: a child table whose rows are replaced with their parent's (the parent's key is
-- parent_column); guard_column: a staged row older than the stored one by this column is ignored;
-- tombstone: a vanished row is marked is_deleted instead of deleted; derived: computed in SQL.
CREATE TABLE squaresync.synced_tables (
    table_name    text PRIMARY KEY,
    stream        text NOT NULL,
    apply_order   integer NOT NULL,
    parent_table  text,
    parent_column text,
    guard_column  text,
    tombstone     boolean NOT NULL DEFAULT false,
    derived       boolean NOT NULL DEFAULT false,
    -- The primary key columns but merchant_id (in key order), and the columns an apply compares and
    -- copies (all others but merchant_id and synced_at, in column order): read from the catalog at
    -- install and update (squaresync._set_column_lists()), not by every apply.
    key_columns   text[],
    data_columns  text[]
);
INSERT INTO squaresync.synced_tables VALUES
    ('locations',                     'locations',    1,  NULL, NULL, NULL, false, false),
    ('catalog_categories',            'catalog',      10, NULL, NULL, 'version', true, false),
    ('catalog_items',                 'catalog',      11, NULL, NULL, 'version', true, false),
    ('catalog_variations',            'catalog',      12, NULL, NULL, 'version', true, false),
    ('catalog_vendor_info',           'catalog',      13, 'catalog_variations', 'variation_id', NULL, true, false),
    ('catalog_location_availability', 'catalog',      14, NULL, NULL, NULL, false, true),
    ('catalog_inventory',             'inventory',    20, NULL, NULL, 'calculated_at', false, false),
    ('vendors',                       'vendors',      30, NULL, NULL, 'version', false, false),
    ('orders',                        'orders',       40, NULL, NULL, 'updated_at', false, false),
    ('order_line_items',              'orders',       41, 'orders', 'order_id', NULL, false, false),
    ('order_fulfillments',            'orders',       42, 'orders', 'order_id', NULL, false, false),
    ('order_refunds',                 'orders',       43, 'orders', 'order_id', NULL, false, false),
    ('order_returns',                 'orders',       44, 'orders', 'order_id', NULL, false, false),
    ('tenders',                       'orders',       45, 'orders', 'order_id', NULL, false, false),
    ('payments',                      'payments',     50, NULL, NULL, 'updated_at', false, false),
    ('payment_refunds',               'refunds',      60, NULL, NULL, 'updated_at', false, false),
    ('transactions',                  'transactions', 70, NULL, NULL, NULL, false, false);

-- The one connection to Square. The token is readable by the extension's owner only.
CREATE TABLE squaresync.connection (
    id           integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    merchant_id  text NOT NULL,
    environment  text NOT NULL CHECK (environment IN ('production', 'sandbox', 'custom')),
    base_url     text NOT NULL,
    access_token text NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON squaresync.connection FROM PUBLIC;

CREATE SEQUENCE squaresync.sync_runs_id_seq;

CREATE TABLE squaresync.sync_runs (
    id             bigint PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('foundation', 'incremental', 'rollback')),
    status         text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'partial', 'rolled_back')),
    merchant_id    text,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz,
    duration       interval GENERATED ALWAYS AS (finished_at - started_at) STORED,
    rows_inserted  bigint NOT NULL DEFAULT 0,
    rows_updated   bigint NOT NULL DEFAULT 0,
    rows_deleted   bigint NOT NULL DEFAULT 0,
    rows_unchanged bigint NOT NULL DEFAULT 0,
    tables         jsonb NOT NULL DEFAULT '{}',
    api_requests   bigint NOT NULL DEFAULT 0,
    retries        bigint NOT NULL DEFAULT 0,
    rate_limited   bigint NOT NULL DEFAULT 0,
    bytes_received bigint NOT NULL DEFAULT 0,
    error          text,
    reason         text,
    rollback_of    bigint REFERENCES squaresync.sync_runs (id),
    rolled_back_by bigint REFERENCES squaresync.sync_runs (id),
    worker_pid     integer,
    triggered_by   text,
    -- When _prune_audit() deleted the run's audit entries: the run can no longer be rolled back.
    audit_pruned_at timestamptz,
    -- When the run brought what derives from several streams (the item library export) up to date
    -- (_after_run): the sync worker rebuilds it itself when its apply worker did not get that far.
    derived_at     timestamptz
);
ALTER SEQUENCE squaresync.sync_runs_id_seq OWNED BY squaresync.sync_runs.id;
CREATE INDEX ON squaresync.sync_runs (started_at);

-- One row per stream of a run: what it fetched and applied, and the watermark it found and left.
CREATE TABLE squaresync.sync_run_streams (
    run_id           bigint NOT NULL REFERENCES squaresync.sync_runs (id) ON DELETE CASCADE,
    stream           text NOT NULL,
    status           text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'rolled_back')),
    pages            integer NOT NULL DEFAULT 0,
    rows_staged      bigint NOT NULL DEFAULT 0,
    watermark_before text,
    watermark_after  text,
    error            text,
    error_code       text,
    applied_at       timestamptz,
    apply_seconds    double precision,
    -- What the fetch reached, committed as watermark_after when the stream applies (read by the
    -- apply worker, apply_worker.cpp).
    fetched_watermark text,
    PRIMARY KEY (run_id, stream)
);

-- Per stream: the committed watermark (Square's own data: catalog latest_time, updated_at,
-- calculated_at), advanced in the same transaction as the stream's rows.
CREATE TABLE squaresync.stream_state (
    merchant_id     text NOT NULL,
    stream          text NOT NULL,
    watermark       text,
    last_run_id     bigint,
    last_success_run_id bigint,
    last_status     text,
    last_error      text,
    last_success_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, stream)
);

-- Audit trail: every insert, update and delete a run made in a square table.
CREATE TABLE squaresync.changes (
    run_id     bigint NOT NULL,
    table_name text NOT NULL,
    pk         jsonb NOT NULL,
    op         text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    before     jsonb,
    after      jsonb,
    changed_at timestamptz NOT NULL DEFAULT now(),
    -- The object's raw JSON before and after, kept apart from the images and copied as stored:
    -- embedding it in an image would re-encode the whole object token by token.
    before_raw jsonb,
    after_raw  jsonb
);
CREATE INDEX ON squaresync.changes (run_id, table_name);
-- The images are compressed with lz4 where the server has it (30_apply.sql, with the raw columns).

