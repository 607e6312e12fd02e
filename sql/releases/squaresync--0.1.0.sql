-- Frozen install script of release 0.1.0: never edit it (changes go to sql/install and sql/updates).
-- squaresync--0.1.0.sql is built by the Makefile from sql/install/*.sql in name order, one file per
-- concern. Schema "square" holds the synced data; schema "squaresync" holds the control plane
-- (connection, runs, watermarks, audit, staging, functions). The C++ table descriptions
-- (src/core/tables.cpp) must list the same columns as the DDL: squaresync._schema_mismatches()
-- compares them and the regression suite asserts it returns nothing.

\echo Use "CREATE EXTENSION squaresync" to load this file. \quit

-- 10_data_tables.sql: the Square-sourced tables in schema square (see docs/schema.md).

CREATE SCHEMA square;
COMMENT ON SCHEMA square IS 'Square seller data synced by squaresync';

--------------------------------------------------------------------------------------------------
-- Square-sourced tables. merchant_id leads every primary key; raw holds the whole object as Square
-- returned it, on objects Square returns at top level only; synced_at is when squaresync last wrote
-- the row.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.locations (
    merchant_id     text NOT NULL,
    id              text NOT NULL,
    name            text,
    business_name   text,
    status          text,
    type            text,
    timezone        text,
    currency        text,
    country         text,
    language_code   text,
    mcc             text,
    description     text,
    phone_number    text,
    business_email  text,
    website_url     text,
    capabilities    text[],
    address         jsonb,
    business_hours  jsonb,
    coordinates     jsonb,
    created_at      timestamptz,
    raw             jsonb NOT NULL,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.catalog_categories (
    merchant_id              text NOT NULL,
    id                       text NOT NULL,
    version                  bigint,
    updated_at               timestamptz,
    is_deleted               boolean NOT NULL DEFAULT false,
    deleted_at               timestamptz,
    name                     text,
    category_type            text,
    parent_category_id       text,
    is_top_level             boolean,
    root_category            text,
    online_visibility        boolean,
    present_at_all_locations boolean,
    present_at_location_ids  text[],
    absent_at_location_ids   text[],
    raw                      jsonb NOT NULL,
    synced_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.catalog_items (
    merchant_id              text NOT NULL,
    id                       text NOT NULL,
    version                  bigint,
    updated_at               timestamptz,
    is_deleted               boolean NOT NULL DEFAULT false,
    deleted_at               timestamptz,
    name                     text,
    description_plaintext    text,
    abbreviation             text,
    product_type             text,
    is_taxable               boolean,
    is_archived              boolean,
    category_ids             text[],
    reporting_category_id    text,
    legacy_category_id       text,
    tax_ids                  text[],
    image_ids                text[],
    present_at_all_locations boolean,
    present_at_location_ids  text[],
    absent_at_location_ids   text[],
    raw                      jsonb NOT NULL,
    synced_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.catalog_variations (
    merchant_id               text NOT NULL,
    id                        text NOT NULL,
    item_id                   text,
    version                   bigint,
    updated_at                timestamptz,
    is_deleted                boolean NOT NULL DEFAULT false,
    deleted_at                timestamptz,
    name                      text,
    sku                       text,
    upc                       text,
    ordinal                   integer,
    pricing_type              text,
    price_amount              bigint,
    price_currency            text,
    track_inventory           boolean,
    inventory_alert_type      text,
    inventory_alert_threshold bigint,
    sellable                  boolean,
    stockable                 boolean,
    measurement_unit_id       text,
    present_at_all_locations  boolean,
    present_at_location_ids   text[],
    absent_at_location_ids    text[],
    raw                       jsonb NOT NULL,
    synced_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id),
    FOREIGN KEY (merchant_id, item_id) REFERENCES square.catalog_items (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.catalog_variations (merchant_id, item_id);

-- Derived from variations, their items and the locations: one row per live variation and location.
CREATE TABLE square.catalog_location_availability (
    merchant_id               text NOT NULL,
    variation_id              text NOT NULL,
    location_id               text NOT NULL,
    item_id                   text,
    is_present                boolean NOT NULL,
    has_override              boolean NOT NULL,
    price_amount              bigint,
    price_currency            text,
    pricing_type              text,
    track_inventory           boolean,
    inventory_alert_type      text,
    inventory_alert_threshold bigint,
    sold_out                  boolean,
    sold_out_valid_until      timestamptz,
    variation_version         bigint,
    synced_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, variation_id, location_id),
    FOREIGN KEY (merchant_id, variation_id) REFERENCES square.catalog_variations (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (merchant_id, location_id) REFERENCES square.locations (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.catalog_location_availability (merchant_id, location_id);

-- From item_variation_data.item_variation_vendor_infos (sent by Square, absent from its spec).
CREATE TABLE square.catalog_vendor_info (
    merchant_id    text NOT NULL,
    id             text NOT NULL,
    variation_id   text NOT NULL,
    vendor_id      text,
    sku            text,
    price_amount   bigint,
    price_currency text,
    ordinal        integer,
    version        bigint,
    updated_at     timestamptz,
    is_deleted     boolean NOT NULL DEFAULT false,
    deleted_at     timestamptz,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id),
    FOREIGN KEY (merchant_id, variation_id) REFERENCES square.catalog_variations (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.catalog_vendor_info (merchant_id, variation_id);
CREATE INDEX ON square.catalog_vendor_info (merchant_id, vendor_id);

CREATE TABLE square.catalog_inventory (
    merchant_id         text NOT NULL,
    catalog_object_id   text NOT NULL,
    location_id         text NOT NULL,
    state               text NOT NULL,
    catalog_object_type text,
    quantity            numeric,
    calculated_at       timestamptz,
    is_estimated        boolean,
    raw                 jsonb NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, catalog_object_id, location_id, state)
);
CREATE INDEX ON square.catalog_inventory (merchant_id, location_id);

CREATE TABLE square.vendors (
    merchant_id    text NOT NULL,
    id             text NOT NULL,
    name           text,
    status         text,
    account_number text,
    note           text,
    version        integer,
    created_at     timestamptz,
    updated_at     timestamptz,
    address        jsonb,
    contacts       jsonb,
    raw            jsonb NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.orders (
    merchant_id                       text NOT NULL,
    id                                text NOT NULL,
    location_id                       text,
    state                             text,
    version                           integer,
    created_at                        timestamptz,
    updated_at                        timestamptz,
    closed_at                         timestamptz,
    reference_id                      text,
    customer_id                       text,
    source_name                       text,
    ticket_name                       text,
    currency                          text,
    total_money_amount                bigint,
    total_tax_money_amount            bigint,
    total_discount_money_amount       bigint,
    total_tip_money_amount            bigint,
    total_service_charge_money_amount bigint,
    net_amount_due_money_amount       bigint,
    raw                               jsonb NOT NULL,
    synced_at                         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);
CREATE INDEX ON square.orders (merchant_id, location_id, created_at);
CREATE INDEX ON square.orders (merchant_id, updated_at);

CREATE TABLE square.order_line_items (
    merchant_id                        text NOT NULL,
    order_id                           text NOT NULL,
    uid                                text NOT NULL,
    line_index                         integer NOT NULL,
    name                               text,
    quantity                           numeric,
    quantity_unit                      jsonb,
    item_type                          text,
    catalog_object_id                  text,
    catalog_version                    bigint,
    variation_name                     text,
    note                               text,
    currency                           text,
    base_price_money_amount            bigint,
    variation_total_price_money_amount bigint,
    gross_sales_money_amount           bigint,
    total_tax_money_amount             bigint,
    total_discount_money_amount        bigint,
    total_service_charge_money_amount  bigint,
    total_money_amount                 bigint,
    modifiers                          jsonb,
    applied_taxes                      jsonb,
    applied_discounts                  jsonb,
    synced_at                          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, uid),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.order_line_items (merchant_id, catalog_object_id);

CREATE TABLE square.order_fulfillments (
    merchant_id           text NOT NULL,
    order_id              text NOT NULL,
    uid                   text NOT NULL,
    line_index            integer NOT NULL,
    type                  text,
    state                 text,
    line_item_application text,
    entries               jsonb,
    pickup_details        jsonb,
    shipment_details      jsonb,
    delivery_details      jsonb,
    synced_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, uid),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE square.order_refunds (
    merchant_id                 text NOT NULL,
    order_id                    text NOT NULL,
    id                          text NOT NULL,
    location_id                 text,
    transaction_id              text,
    tender_id                   text,
    created_at                  timestamptz,
    reason                      text,
    status                      text,
    currency                    text,
    amount_money_amount         bigint,
    processing_fee_money_amount bigint,
    synced_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, id),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE square.order_returns (
    merchant_id                  text NOT NULL,
    order_id                     text NOT NULL,
    uid                          text NOT NULL,
    line_index                   integer NOT NULL,
    source_order_id              text,
    currency                     text,
    return_total_money_amount    bigint,
    return_tax_money_amount      bigint,
    return_discount_money_amount bigint,
    return_line_items            jsonb,
    return_service_charges       jsonb,
    return_taxes                 jsonb,
    return_discounts             jsonb,
    return_tips                  jsonb,
    synced_at                    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, uid),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.order_returns (merchant_id, source_order_id);

CREATE TABLE square.tenders (
    merchant_id                 text NOT NULL,
    order_id                    text NOT NULL,
    id                          text NOT NULL,
    location_id                 text,
    transaction_id              text,
    payment_id                  text,
    type                        text,
    created_at                  timestamptz,
    customer_id                 text,
    note                        text,
    currency                    text,
    amount_money_amount         bigint,
    tip_money_amount            bigint,
    processing_fee_money_amount bigint,
    card_status                 text,
    card_brand                  text,
    card_last_4                 text,
    card_entry_method           text,
    synced_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, id),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.tenders (merchant_id, payment_id);

CREATE TABLE square.payments (
    merchant_id           text NOT NULL,
    id                    text NOT NULL,
    location_id           text,
    order_id              text,
    customer_id           text,
    team_member_id        text,
    status                text,
    source_type           text,
    created_at            timestamptz,
    updated_at            timestamptz,
    currency              text,
    amount_money_amount   bigint,
    tip_money_amount      bigint,
    total_money_amount    bigint,
    app_fee_money_amount  bigint,
    approved_money_amount bigint,
    refunded_money_amount bigint,
    processing_fee        jsonb,
    card_brand            text,
    card_last_4           text,
    card_status           text,
    receipt_number        text,
    receipt_url           text,
    is_offline_payment    boolean,
    version_token         text,
    refund_ids            text[],
    raw                   jsonb NOT NULL,
    synced_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);
CREATE INDEX ON square.payments (merchant_id, order_id);

-- From GET /v2/refunds (ListPaymentRefunds).
CREATE TABLE square.payment_refunds (
    merchant_id          text NOT NULL,
    id                   text NOT NULL,
    payment_id           text,
    order_id             text,
    location_id          text,
    status               text,
    destination_type     text,
    unlinked             boolean,
    reason               text,
    currency             text,
    amount_money_amount  bigint,
    app_fee_money_amount bigint,
    processing_fee       jsonb,
    created_at           timestamptz,
    updated_at           timestamptz,
    team_member_id       text,
    terminal_refund_id   text,
    raw                  jsonb NOT NULL,
    synced_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

-- From the deprecated Transactions API (GET /v2/locations/{location_id}/transactions).
CREATE TABLE square.transactions (
    merchant_id  text NOT NULL,
    id           text NOT NULL,
    location_id  text,
    created_at   timestamptz,
    order_id     text,
    reference_id text,
    product      text,
    client_id    text,
    tender_ids   text[],
    refund_ids   text[],
    raw          jsonb NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

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
    derived       boolean NOT NULL DEFAULT false
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
    audit_pruned_at timestamptz
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
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON squaresync.changes (run_id, table_name);

-- 30_apply.sql: staging tables and the set-based apply of a fetched stream.

--------------------------------------------------------------------------------------------------
-- Staging: one UNLOGGED table per synced table, same columns plus the batch (page) and the row's
-- place in it. Filled by the sync worker page by page in short transactions; emptied after apply.
--------------------------------------------------------------------------------------------------
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT table_name FROM squaresync.synced_tables LOOP
        EXECUTE format('CREATE UNLOGGED TABLE squaresync.%I (LIKE square.%I INCLUDING DEFAULTS, _batch bigint NOT NULL, _ord bigint NOT NULL)',
                       'stage_' || t, t);
    END LOOP;
END $$;

--------------------------------------------------------------------------------------------------
-- Apply: one set-based statement per table turns the staged rows into inserts, updates and
-- deletes (or tombstones) with their audit entries. Unchanged rows are never written.
--------------------------------------------------------------------------------------------------

-- Columns of a synced table that are compared and copied (everything but merchant_id, synced_at).
CREATE FUNCTION squaresync._data_columns(p_table text, p_keys boolean)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}')
    FROM pg_attribute a
    WHERE a.attrelid = format('square.%I', p_table)::regclass
      AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname NOT IN ('merchant_id', 'synced_at')
      AND (a.attname = ANY (squaresync._key_columns(p_table))) = p_keys
$$;

-- Primary key columns of a synced table, merchant_id excluded.
CREATE FUNCTION squaresync._key_columns(p_table text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT array_agg(a.attname::text ORDER BY k.ord)
    FROM pg_constraint c
    CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
    WHERE c.conrelid = format('square.%I', p_table)::regclass AND c.contype = 'p'
      AND a.attname <> 'merchant_id'
$$;

-- p_keys_only_inserts: a foundation records its inserts by key only (the row it loaded is the row in
-- the table; a rollback of it deletes by key), not a second copy of every column.
CREATE FUNCTION squaresync._apply_table(p_run bigint, p_merchant text, p_table text, p_full boolean,
                                        p_keys_only_inserts boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    d        squaresync.synced_tables%ROWTYPE;
    keys     text[] := squaresync._key_columns(p_table);
    cols     text[] := squaresync._data_columns(p_table, false);
    allc     text[];
    key_join text;
    s_cols   text;
    t_cols   text;
    order_by text;
    src      text;
    scope    text;
    del_sql  text;
    after_ins text;
    after_upd text;
    pk_json  text;
    q        text;
    result   jsonb;
BEGIN
    SELECT * INTO STRICT d FROM squaresync.synced_tables WHERE table_name = p_table;
    allc := keys || cols;
    key_join := (SELECT string_agg(format('t.%1$I = s.%1$I', k), ' AND ') FROM unnest(keys) k);
    s_cols := (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c);
    t_cols := (SELECT string_agg(format('(j.t_row).%I', c), ', ') FROM unnest(cols) c);
    pk_json := (SELECT 'jsonb_build_object(' || string_agg(format('%L, %s.%I', k, '%1$s', k), ', ') || ')' FROM unnest(keys) k);
    after_ins := (SELECT 'jsonb_build_object(' || string_agg(format('%L, j.%I', c, c), ', ') || ')'
                  FROM unnest(allc) c WHERE c <> 'raw');

    -- The staged rows, one per key: the newest by the guard column, then the latest page.
    -- A child's rows come only from its parent's latest staged copy.
    order_by := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k)
                || CASE WHEN d.guard_column IS NOT NULL THEN format(', %I DESC NULLS LAST', d.guard_column) ELSE '' END
                || ', _batch DESC, _ord DESC';
    src := format('SELECT DISTINCT ON (%s) * FROM squaresync.%I c', (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k), 'stage_' || p_table);
    IF d.parent_table IS NOT NULL THEN
        src := src || format(' WHERE (c.%I, c._batch) IN (SELECT id, max(_batch) FROM squaresync.%I GROUP BY id)',
                             d.parent_column, 'stage_' || d.parent_table);
    END IF;
    src := src || ' ORDER BY ' || order_by;

    -- Which stored rows may vanish: all of them on a full read, the children of re-read parents.
    IF p_full THEN
        scope := 'true';
    ELSIF d.parent_table IS NOT NULL THEN
        scope := format('t.%I IN (SELECT id FROM squaresync.%I)', d.parent_column, 'stage_' || d.parent_table);
    ELSE
        scope := 'false';
    END IF;
    IF d.tombstone THEN
        scope := scope || ' AND NOT t.is_deleted';
    END IF;

    IF d.tombstone THEN
        del_sql := format($q$UPDATE square.%I t SET is_deleted = true, deleted_at = now(), synced_at = now()
                             FROM gone g WHERE t.merchant_id = $2 AND %s$q$,
                          p_table, (SELECT string_agg(format('t.%1$I = (g.t_row).%1$I', k), ' AND ') FROM unnest(keys) k));
    ELSE
        del_sql := format($q$DELETE FROM square.%I t USING gone g WHERE t.merchant_id = $2 AND %s$q$,
                          p_table, (SELECT string_agg(format('t.%1$I = (g.t_row).%1$I', k), ' AND ') FROM unnest(keys) k));
    END IF;

    q := format($q$
        WITH s AS MATERIALIZED (%1$s),
        j AS MATERIALIZED (
            SELECT s.*, t AS t_row, (t.merchant_id IS NULL) AS is_new, %18$s AS is_del
            FROM s LEFT JOIN square.%2$I t ON t.merchant_id = $2 AND %3$s
        ),
        d AS MATERIALIZED (
            SELECT * FROM j
            WHERE is_new OR (ROW(%4$s) IS DISTINCT FROM ROW(%5$s) %6$s)
        ),
        gone AS MATERIALIZED (
            SELECT t AS t_row FROM square.%2$I t
            WHERE t.merchant_id = $2 AND %7$s AND NOT EXISTS (SELECT 1 FROM s WHERE %3$s)
        ),
        ins AS (
            INSERT INTO square.%2$I (merchant_id, %8$s) SELECT $2, %8$s FROM d WHERE is_new
        ),
        upd AS (
            UPDATE square.%2$I t SET (%9$s, synced_at) = (%10$s, now())
            FROM d s WHERE NOT s.is_new AND t.merchant_id = $2 AND %3$s
        ),
        del AS (%11$s),
        audit AS (
            INSERT INTO squaresync.changes (run_id, table_name, pk, op, before, after)
            SELECT $1, %12$L, %13$s,
                   CASE WHEN j.is_new THEN 'insert' WHEN j.is_del THEN 'delete' ELSE 'update' END,
                   CASE WHEN j.is_new THEN NULL ELSE to_jsonb(j.t_row) END,
                   CASE WHEN j.is_new THEN CASE WHEN $3 THEN NULL ELSE %14$s END
                        ELSE (SELECT jsonb_object_agg(a.key, a.value) FROM jsonb_each(%15$s) a
                              WHERE a.value IS DISTINCT FROM to_jsonb(j.t_row) -> a.key) END
            FROM d j
            UNION ALL
            SELECT $1, %12$L, %16$s, 'delete', to_jsonb(g.t_row), %17$s
            FROM gone g
        )
        SELECT jsonb_build_object(
            'inserted', (SELECT count(*) FROM d WHERE is_new),
            'updated', (SELECT count(*) FROM d WHERE NOT is_new AND NOT is_del),
            'deleted', (SELECT count(*) FROM gone) + (SELECT count(*) FROM d WHERE is_del),
            'unchanged', (SELECT count(*) FROM s) - (SELECT count(*) FROM d))
        $q$,
        src,                                                                   -- 1
        p_table,                                                               -- 2
        key_join,                                                              -- 3
        (SELECT string_agg(format('j.%I', c), ', ') FROM unnest(cols) c),      -- 4
        t_cols,                                                                -- 5
        CASE WHEN d.guard_column IS NOT NULL
             THEN format('AND NOT (j.%1$I < (j.t_row).%1$I)', d.guard_column) ELSE '' END,  -- 6
        scope,                                                                 -- 7
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(allc) c),        -- 8
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),        -- 9
        s_cols,                                                                -- 10
        del_sql,                                                               -- 11
        p_table,                                                               -- 12
        format(pk_json, 'j'),                                                  -- 13
        after_ins,                                                             -- 14
        (SELECT 'jsonb_build_object(' || string_agg(format('%L, j.%I', c, c), ', ') || ')' FROM unnest(cols) c), -- 15
        (SELECT 'jsonb_build_object(' || string_agg(format('%L, (g.t_row).%I', k, k), ', ') || ')' FROM unnest(keys) k), -- 16
        CASE WHEN d.tombstone THEN $j$jsonb_build_object('is_deleted', true, 'deleted_at', now())$j$ ELSE 'NULL::jsonb' END, -- 17
        -- A tombstone Square sends for a live row is that row's deletion.
        CASE WHEN d.tombstone THEN '(t.merchant_id IS NOT NULL AND s.is_deleted AND NOT t.is_deleted)' ELSE 'false' END -- 18
    );
    EXECUTE q INTO result USING p_run, p_merchant, p_full AND p_keys_only_inserts;
    RETURN result;
END
$fn$;

-- Availability is derived, not fetched: one row per live variation and location, by Square's rule
-- (present_at_all_locations, default true, less absent_at_location_ids; else present_at_location_ids)
-- applied to the item AND to the variation, with the variation's location_overrides.
CREATE FUNCTION squaresync._stage_availability(p_merchant text)
RETURNS void LANGUAGE sql AS $$
    TRUNCATE squaresync.stage_catalog_location_availability;
    INSERT INTO squaresync.stage_catalog_location_availability
        (merchant_id, variation_id, location_id, item_id, is_present, has_override, price_amount,
         price_currency, pricing_type, track_inventory, inventory_alert_type, inventory_alert_threshold,
         sold_out, sold_out_valid_until, variation_version, _batch, _ord)
    SELECT p_merchant, v.id, l.id, v.item_id,
           (CASE WHEN coalesce(i.present_at_all_locations, true)
                 THEN NOT (l.id = ANY (coalesce(i.absent_at_location_ids, '{}')))
                 ELSE l.id = ANY (coalesce(i.present_at_location_ids, '{}')) END)
           AND (CASE WHEN coalesce(v.present_at_all_locations, true)
                 THEN NOT (l.id = ANY (coalesce(v.absent_at_location_ids, '{}')))
                 ELSE l.id = ANY (coalesce(v.present_at_location_ids, '{}')) END),
           o.ov IS NOT NULL,
           (o.ov -> 'price_money' ->> 'amount')::bigint,
           o.ov -> 'price_money' ->> 'currency',
           o.ov ->> 'pricing_type',
           (o.ov ->> 'track_inventory')::boolean,
           o.ov ->> 'inventory_alert_type',
           (o.ov ->> 'inventory_alert_threshold')::bigint,
           (o.ov ->> 'sold_out')::boolean,
           (o.ov ->> 'sold_out_valid_until')::timestamptz,
           v.version, 0, 0
    FROM square.catalog_variations v
    JOIN square.catalog_items i ON i.merchant_id = v.merchant_id AND i.id = v.item_id
    JOIN square.locations l ON l.merchant_id = v.merchant_id
    LEFT JOIN LATERAL (
        SELECT e AS ov FROM jsonb_array_elements(v.raw -> 'item_variation_data' -> 'location_overrides') e
        WHERE e ->> 'location_id' = l.id LIMIT 1
    ) o ON true
    WHERE v.merchant_id = p_merchant AND NOT v.is_deleted AND NOT i.is_deleted;
$$;

-- Keeps the planner's statistics in step with bulk changes inside the apply transaction (autovacuum
-- would see them only later, and a first incremental after a foundation would plan on empty-table
-- statistics): a staging table with many rows before it is read, a synced table after a change of
-- more than a tenth of its rows.
CREATE FUNCTION squaresync._analyze_if_large(p_schema text, p_table text, p_counts jsonb)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    changed bigint;
    est     double precision;
BEGIN
    SELECT reltuples INTO est FROM pg_class WHERE oid = format('%I.%I', p_schema, p_table)::regclass;
    IF p_counts IS NULL THEN
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %I.%I LIMIT 10001) x', p_schema, p_table) INTO changed;
        IF changed > 10000 AND (est < 0 OR est < changed / 2) THEN
            EXECUTE format('ANALYZE %I.%I', p_schema, p_table);
        END IF;
        RETURN;
    END IF;
    changed := (p_counts ->> 'inserted')::bigint + (p_counts ->> 'updated')::bigint + (p_counts ->> 'deleted')::bigint;
    IF changed > 1000 AND (est <= 0 OR changed > est / 10) THEN
        EXECUTE format('ANALYZE %I.%I', p_schema, p_table);
    END IF;
END
$fn$;

-- Per-table counts added key by key ({"t": {"inserted": 1, ...}}): a table applied twice in one run
-- (availability follows both the locations and the catalog) reports both applies.
CREATE FUNCTION squaresync._add_counts(a jsonb, b jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(t, CASE WHEN a ? t AND b ? t THEN
               (SELECT jsonb_object_agg(k, coalesce((a -> t ->> k)::bigint, 0) + coalesce((b -> t ->> k)::bigint, 0))
                  FROM (SELECT jsonb_object_keys(a -> t) UNION SELECT jsonb_object_keys(b -> t)) ks(k))
               ELSE coalesce(b -> t, a -> t) END), '{}')
    FROM (SELECT jsonb_object_keys(a) UNION SELECT jsonb_object_keys(b)) ts(t)
$$;

-- Applies one fetched stream in the caller's transaction: every table of the stream in order,
-- then what derives from it, then the watermark and the run's counters. Returns the counts.
CREATE FUNCTION squaresync._apply_stream(p_run bigint, p_merchant text, p_stream text, p_full boolean,
                                         p_watermark text)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    t      record;
    counts jsonb := '{}';
    c      jsonb;
    old_wm text;
BEGIN
    SELECT watermark INTO old_wm FROM squaresync.stream_state
    WHERE merchant_id = p_merchant AND stream = p_stream FOR UPDATE;

    FOR t IN SELECT * FROM squaresync.synced_tables WHERE stream = p_stream ORDER BY apply_order LOOP
        IF t.derived THEN
            CONTINUE;
        END IF;
        -- Locations and vendors have no change filter: every read is a full read.
        PERFORM squaresync._analyze_if_large('squaresync', 'stage_' || t.table_name, NULL);
        c := squaresync._apply_table(p_run, p_merchant, t.table_name, p_full OR p_stream IN ('locations', 'vendors'),
                                     p_full);
        PERFORM squaresync._analyze_if_large('square', t.table_name, c);
        counts := counts || jsonb_build_object(t.table_name, c);
    END LOOP;

    -- Availability follows the catalog and the locations: recomputed when either changed (always on
    -- a foundation's catalog).
    IF (p_stream = 'catalog' AND p_full)
       OR (p_stream IN ('catalog', 'locations')
           AND (SELECT coalesce(sum((v ->> 'inserted')::bigint + (v ->> 'updated')::bigint + (v ->> 'deleted')::bigint), 0)
                FROM jsonb_each(counts) e(k, v)) > 0
           AND EXISTS (SELECT 1 FROM square.catalog_variations WHERE merchant_id = p_merchant)) THEN
        PERFORM squaresync._stage_availability(p_merchant);
        c := squaresync._apply_table(p_run, p_merchant, 'catalog_location_availability', true, p_full);
        PERFORM squaresync._analyze_if_large('square', 'catalog_location_availability', c);
        counts := counts || jsonb_build_object('catalog_location_availability', c);
    END IF;

    -- What derives from the stream (inventory history, daily sales, the item library export), in
    -- the same transaction.
    PERFORM squaresync._after_apply(p_run, p_merchant, p_stream);

    INSERT INTO squaresync.stream_state AS s (merchant_id, stream, watermark, last_run_id, last_success_run_id,
                                              last_status, last_error, last_success_at, updated_at)
    VALUES (p_merchant, p_stream, coalesce(p_watermark, old_wm), p_run, p_run, 'succeeded', NULL, now(), now())
    ON CONFLICT (merchant_id, stream) DO UPDATE
        SET watermark = coalesce(p_watermark, s.watermark), last_run_id = p_run, last_success_run_id = p_run,
            last_status = 'succeeded',
            last_error = NULL, last_success_at = now(), updated_at = now();

    UPDATE squaresync.sync_run_streams
       SET status = 'succeeded', watermark_before = old_wm, watermark_after = coalesce(p_watermark, old_wm),
           applied_at = now()
     WHERE run_id = p_run AND stream = p_stream;

    UPDATE squaresync.sync_runs r
       SET tables = squaresync._add_counts(r.tables, counts),
           rows_inserted = r.rows_inserted + x.ins, rows_updated = r.rows_updated + x.upd,
           rows_deleted = r.rows_deleted + x.del, rows_unchanged = r.rows_unchanged + x.unch
      FROM (SELECT coalesce(sum((v ->> 'inserted')::bigint), 0) AS ins,
                   coalesce(sum((v ->> 'updated')::bigint), 0) AS upd,
                   coalesce(sum((v ->> 'deleted')::bigint), 0) AS del,
                   coalesce(sum((v ->> 'unchanged')::bigint), 0) AS unch
              FROM jsonb_each(counts) e(k, v)) x
     WHERE r.id = p_run;
    RETURN counts;
END
$fn$;

-- Empties the staging tables of one stream (or all when p_stream is NULL).
CREATE FUNCTION squaresync._clear_staging(p_stream text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE t text;
BEGIN
    FOR t IN SELECT table_name FROM squaresync.synced_tables
             WHERE p_stream IS NULL OR stream = p_stream LOOP
        EXECUTE format('TRUNCATE squaresync.%I', 'stage_' || t);
    END LOOP;
END
$fn$;

-- 40_interface.sql: the SQL interface implemented in C++ (src/pg).

--------------------------------------------------------------------------------------------------
-- SQL interface (C++). The functions that reach Square run as the extension's owner (SECURITY
-- DEFINER, so they can read the token) and are not executable by PUBLIC: GRANT EXECUTE to the roles
-- that may sync.
--------------------------------------------------------------------------------------------------

CREATE FUNCTION squaresync.connect(access_token text, environment text DEFAULT 'production',
                                   base_url text DEFAULT NULL)
RETURNS text LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'squaresync_connect';

CREATE FUNCTION squaresync.foundation(wait boolean DEFAULT true)
RETURNS bigint LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'squaresync_foundation';

CREATE FUNCTION squaresync.incremental(wait boolean DEFAULT true)
RETURNS bigint LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'squaresync_incremental';

-- The C++ description of every synced table, for squaresync._schema_mismatches().
CREATE FUNCTION squaresync._mapped_columns(OUT table_name text, OUT column_name text, OUT type_name text)
RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'squaresync_mapped_columns';

-- Test hook for the C++/PostgreSQL boundary (see test/regress): 'cpp_throw' throws a C++ exception
-- inside a SQL function; 'pg_error_unwinds' raises a PostgreSQL error under the guard and reports
-- how many C++ destructors ran before it reached the caller.
CREATE FUNCTION squaresync._boundary_selftest(kind text)
RETURNS text LANGUAGE c AS 'MODULE_PATHNAME', 'squaresync_boundary_selftest';

CREATE FUNCTION squaresync._schema_mismatches()
RETURNS TABLE (table_name text, column_name text, problem text) LANGUAGE sql STABLE AS $$
    WITH ddl AS (
        SELECT c.relname::text AS table_name, a.attname::text AS column_name,
               format_type(a.atttypid, NULL) AS type_name
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'square'::regnamespace
          AND c.relname IN (SELECT s.table_name FROM squaresync.synced_tables s WHERE NOT s.derived)
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attname NOT IN ('merchant_id', 'synced_at')
    ), cpp AS (SELECT * FROM squaresync._mapped_columns())
    SELECT coalesce(d.table_name, c.table_name), coalesce(d.column_name, c.column_name),
           CASE WHEN c.column_name IS NULL THEN 'in the DDL, not mapped in C++'
                WHEN d.column_name IS NULL THEN 'mapped in C++, not in the DDL'
                ELSE format('type %s in the DDL, %s in C++', d.type_name, c.type_name) END
    FROM ddl d FULL JOIN cpp c USING (table_name, column_name)
    WHERE d.column_name IS NULL OR c.column_name IS NULL OR d.type_name <> c.type_name
$$;


-- One authenticated request to Square with the stored connection (for deep validation): returns
-- the response body as jsonb, or raises an ERROR with Square's error code. Owner only.
CREATE FUNCTION squaresync._square_request(method text, target text, body text DEFAULT NULL)
RETURNS jsonb LANGUAGE c AS 'MODULE_PATHNAME', 'squaresync_square_request';
-- 50_views.sql: status views.

--------------------------------------------------------------------------------------------------
-- Status views.
--------------------------------------------------------------------------------------------------

-- One row per synced table, for the connected merchant.
CREATE VIEW squaresync.sync_state AS
SELECT t.table_name,
       t.stream,
       s.last_success_at                                    AS last_sync_timestamp,
       s.last_success_run_id                                AS last_sync_version,
       coalesce((lr.tables -> t.table_name ->> 'inserted')::bigint, 0)
         + coalesce((lr.tables -> t.table_name ->> 'updated')::bigint, 0)
         + coalesce((lr.tables -> t.table_name ->> 'deleted')::bigint, 0) AS records_synced,
       extract(epoch FROM lr.duration)::double precision    AS sync_duration_seconds,
       s.created_at,
       s.updated_at,
       s.watermark,
       s.last_run_id,
       s.last_status,
       s.last_error,
       s.merchant_id
FROM squaresync.synced_tables t
LEFT JOIN squaresync.stream_state s
       ON s.stream = t.stream AND s.merchant_id = (SELECT c.merchant_id FROM squaresync.connection c)
LEFT JOIN squaresync.sync_runs lr ON lr.id = s.last_run_id
ORDER BY t.apply_order;

-- 55_derived.sql: the internal, historical and export tables (issue 6), maintained from the
-- changes a stream's apply made, in the same transaction.
--
--   square.operating_seasons            the seller's own data: squaresync never writes to it
--   square.inventory_counts             history of inventory counts, appended by each run
--   square.square_sales                 daily sales per location and variation, kept incrementally
--   square.square_item_library_export   the item library in the shape of Square's export, rebuilt
--
-- None of them is a synced table (squaresync.synced_tables): _apply_table never touches them and
-- their writes are not recorded in squaresync.changes. inventory_counts rows carry the run that
-- appended them (a rollback deletes them); square_sales and the export are derived data, recomputed
-- from the synced tables (also by a rollback).

--------------------------------------------------------------------------------------------------
-- Seller-owned data.
--------------------------------------------------------------------------------------------------

CREATE SEQUENCE square.operating_seasons_id_seq;

CREATE TABLE square.operating_seasons (
    merchant_id text NOT NULL,
    id          bigint NOT NULL DEFAULT nextval('square.operating_seasons_id_seq'),
    location_id text,
    name        text NOT NULL,
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    notes       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id),
    CHECK (ends_on >= starts_on)
);
ALTER SEQUENCE square.operating_seasons_id_seq OWNED BY square.operating_seasons.id;
CREATE INDEX ON square.operating_seasons (merchant_id, location_id, starts_on);
COMMENT ON TABLE square.operating_seasons IS
    'The seller''s own operating seasons, per location. Written by the seller, never by squaresync: it survives '
    'every sync, rollback, foundation run and ALTER EXTENSION UPDATE, and pg_dump keeps its rows. Columns: '
    'merchant_id (the Square merchant), id (generated), location_id (a square.locations id; NULL = every '
    'location; not a foreign key, so a foundation or rollback never blocks on it), name (e.g. ''Summer 2025''), '
    'starts_on and ends_on (dates in the location''s time zone, both inclusive), notes, created_at, updated_at.';

--------------------------------------------------------------------------------------------------
-- Inventory history: one row each time a run sees a count change (a new count, or a new quantity
-- or calculated_at for a variation, location and state). Append only; a rollback deletes the rows
-- of the run it undoes.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.inventory_counts (
    merchant_id            text NOT NULL,
    catalog_object_id      text NOT NULL,
    location_id            text NOT NULL,
    state                  text NOT NULL,
    run_id                 bigint NOT NULL,
    quantity               numeric,
    calculated_at          timestamptz,
    previous_quantity      numeric,
    previous_calculated_at timestamptz,
    recorded_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, catalog_object_id, location_id, state, run_id)
);
CREATE INDEX ON square.inventory_counts (run_id);
CREATE INDEX ON square.inventory_counts (merchant_id, location_id, calculated_at);
COMMENT ON TABLE square.inventory_counts IS
    'History of inventory: one row per run that saw a count change for a variation, location and state '
    '(first seen, or a new quantity or calculated_at). quantity and calculated_at are Square''s (calculated_at: '
    'when Square calculated the count); previous_* are the values the run replaced (NULL when first seen); '
    'run_id is the sync run. Append only; a rollback of the run deletes its rows.';

--------------------------------------------------------------------------------------------------
-- Daily sales.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.square_sales (
    merchant_id        text NOT NULL,
    sale_date          date NOT NULL,
    location_id        text NOT NULL,
    variation_id       text NOT NULL,
    currency           text,
    orders             integer NOT NULL,
    quantity_sold      numeric NOT NULL,
    gross_sales_amount bigint NOT NULL,
    discounts_amount   bigint NOT NULL,
    returned_quantity  numeric NOT NULL,
    returns_amount     bigint NOT NULL,
    net_sales_amount   bigint NOT NULL,
    PRIMARY KEY (merchant_id, sale_date, location_id, variation_id)
);
CREATE INDEX ON square.square_sales (merchant_id, location_id, sale_date);
COMMENT ON TABLE square.square_sales IS
    'Processed sales: one row per day, location and variation, from COMPLETED orders. The day is the order''s '
    'closed_at in the location''s time zone (square.locations.timezone, UTC when unknown); a return counts on the '
    'day its return order closed, at the return order''s location. variation_id is the line item''s '
    'catalog_object_id ('''' for custom amounts). orders: sale orders with the variation that day; quantity_sold and '
    'gross_sales_amount: sum of sale line items'' quantity and gross_sales_money; returned_quantity and '
    'returns_amount: sum of return line items'' quantity and gross_return_money; discounts_amount: sale line '
    'items'' total_discount_money less the returned line items'' total_discount_money; net_sales_amount = gross '
    'sales - returns - discounts (tax, tips and service charges excluded). Amounts in the smallest currency unit. '
    'Kept incrementally: a run recomputes the (day, location) pairs its changed orders touch, old and new values.';

-- The sales rows of the given (location, day) pairs and whole locations; all of them when both
-- p_locations and p_whole_locations are NULL. p_locations and p_days are parallel arrays.
CREATE FUNCTION squaresync._sales_rows(p_merchant text, p_locations text[], p_days date[],
                                       p_whole_locations text[])
RETURNS SETOF square.square_sales LANGUAGE sql STABLE AS $$
    WITH pairs AS (
        SELECT DISTINCT u.location_id, u.day FROM unnest(p_locations, p_days) AS u(location_id, day)
    ),
    o AS (
        SELECT o.id, o.location_id, o.currency,
               (o.closed_at AT TIME ZONE coalesce(l.timezone, 'UTC'))::date AS day
        FROM square.orders o
        LEFT JOIN square.locations l ON l.merchant_id = o.merchant_id AND l.id = o.location_id
        WHERE o.merchant_id = p_merchant AND o.state = 'COMPLETED' AND o.closed_at IS NOT NULL
          AND o.location_id IS NOT NULL
    ),
    sel AS MATERIALIZED (
        SELECT o.* FROM o
        WHERE (p_locations IS NULL AND p_whole_locations IS NULL)
           OR o.location_id = ANY (p_whole_locations)
           OR (o.location_id, o.day) IN (SELECT location_id, day FROM pairs)
    ),
    parts AS (
        SELECT s.day, s.location_id, coalesce(li.catalog_object_id, '') AS variation_id,
               coalesce(li.currency, s.currency) AS currency, s.id AS order_id,
               coalesce(li.quantity, 0) AS qty, coalesce(li.gross_sales_money_amount, 0) AS gross,
               coalesce(li.total_discount_money_amount, 0) AS disc,
               0::numeric AS rqty, 0::bigint AS rgross, 0::bigint AS rdisc
        FROM sel s
        JOIN square.order_line_items li ON li.merchant_id = p_merchant AND li.order_id = s.id
        UNION ALL
        SELECT s.day, s.location_id, coalesce(r ->> 'catalog_object_id', ''),
               coalesce(r -> 'gross_return_money' ->> 'currency', ret.currency, s.currency), NULL,
               0, 0, 0,
               coalesce((r ->> 'quantity')::numeric, 0),
               coalesce((r -> 'gross_return_money' ->> 'amount')::bigint, 0),
               coalesce((r -> 'total_discount_money' ->> 'amount')::bigint, 0)
        FROM sel s
        JOIN square.order_returns ret ON ret.merchant_id = p_merchant AND ret.order_id = s.id
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(ret.return_line_items) = 'array' THEN ret.return_line_items ELSE '[]' END) r
    )
    SELECT p_merchant, day, location_id, variation_id, min(currency),
           count(DISTINCT order_id)::integer,
           sum(qty), sum(gross), sum(disc) - sum(rdisc), sum(rqty), sum(rgross),
           sum(gross) - sum(rgross) - (sum(disc) - sum(rdisc))
    FROM parts
    GROUP BY day, location_id, variation_id
$$;

-- Recomputes the sales a run's changes touch: the (day, location) pairs of the orders it changed
-- (their values before the run, from changes.before, and now) and, when a location changed its
-- time zone, was removed, or came back while sales of it are stored, every day of that location.
-- The order tables are not read at all when the run changed none of this (a stream must not wait
-- for locks on another stream's tables).
CREATE FUNCTION squaresync._refresh_sales(p_run bigint, p_merchant text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    locs  text[];
    days  date[];
    whole text[];
BEGIN
    SELECT array_agg(DISTINCT c.pk ->> 'id') INTO whole
    FROM squaresync.changes c
    WHERE c.run_id = p_run AND c.table_name = 'locations'
      AND CASE c.op WHEN 'update' THEN c.after ? 'timezone'
                    WHEN 'delete' THEN true
                    ELSE EXISTS (SELECT 1 FROM square.square_sales s
                                 WHERE s.merchant_id = p_merchant AND s.location_id = c.pk ->> 'id') END;

    IF EXISTS (SELECT 1 FROM squaresync.changes c WHERE c.run_id = p_run
               AND c.table_name IN ('orders', 'order_line_items', 'order_returns')) THEN
        WITH ch AS (
            SELECT c.table_name, c.pk, c.before FROM squaresync.changes c
            WHERE c.run_id = p_run AND c.table_name IN ('orders', 'order_line_items', 'order_returns')
        ),
        ids AS (
            SELECT DISTINCT CASE WHEN table_name = 'orders' THEN pk ->> 'id' ELSE pk ->> 'order_id' END AS order_id
            FROM ch
        ),
        touched AS (
            SELECT ch.before ->> 'location_id' AS location_id, (ch.before ->> 'closed_at')::timestamptz AS closed_at
            FROM ch WHERE ch.table_name = 'orders' AND ch.before IS NOT NULL
            UNION
            SELECT o.location_id, o.closed_at
            FROM ids JOIN square.orders o ON o.merchant_id = p_merchant AND o.id = ids.order_id
        ),
        pairs AS (
            SELECT DISTINCT t.location_id, (t.closed_at AT TIME ZONE coalesce(l.timezone, 'UTC'))::date AS day
            FROM touched t
            LEFT JOIN square.locations l ON l.merchant_id = p_merchant AND l.id = t.location_id
            WHERE t.closed_at IS NOT NULL AND t.location_id IS NOT NULL
        )
        SELECT array_agg(location_id), array_agg(day) INTO locs, days FROM pairs;
    END IF;

    IF locs IS NULL AND whole IS NULL THEN
        RETURN;
    END IF;
    locs := coalesce(locs, '{}');
    days := coalesce(days, '{}');
    whole := coalesce(whole, '{}');
    DELETE FROM square.square_sales s
    WHERE s.merchant_id = p_merchant
      AND (s.location_id = ANY (whole)
           OR (s.location_id, s.sale_date) IN (SELECT * FROM unnest(locs, days)));
    INSERT INTO square.square_sales SELECT * FROM squaresync._sales_rows(p_merchant, locs, days, whole);
END
$fn$;

--------------------------------------------------------------------------------------------------
-- The item library export.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.square_item_library_export (
    merchant_id                text NOT NULL,
    variation_id               text NOT NULL,
    location_id                text NOT NULL,
    item_id                    text NOT NULL,
    item_name                  text,
    variation_name             text,
    sku                        text,
    description                text,
    categories                 text,
    reporting_category         text,
    item_type                  text,
    price_amount               bigint,
    price_currency             text,
    pricing_type               text,
    archived                   boolean,
    sellable                   boolean,
    stockable                  boolean,
    taxable                    boolean,
    default_unit_cost_amount   bigint,
    default_unit_cost_currency text,
    default_vendor_id          text,
    default_vendor_name        text,
    default_vendor_code        text,
    location_name              text,
    enabled                    boolean NOT NULL,
    current_quantity           numeric,
    track_inventory            boolean,
    stock_alert_enabled        boolean,
    stock_alert_count          bigint,
    sold_out                   boolean,
    PRIMARY KEY (merchant_id, variation_id, location_id)
);
COMMENT ON TABLE square.square_item_library_export IS
    'The item library in the shape of Square''s item library export, one row per live variation (of a live item) '
    'and location (Square''s per-location columns become rows). variation_id is the export''s Token; categories: '
    'the item''s category names, comma separated, in the item''s order; price_*: the location''s price (its '
    'override, else the variation''s); default_unit_cost_*, default_vendor_* : the variation''s first live vendor '
    'info by ordinal (vendor code = its SKU); enabled: the variation is present at the location; current_quantity: '
    'the IN_STOCK count at the location (NULL when Square has none); stock alert, track_inventory and sold_out: '
    'the location override, else the variation. Rebuilt in full in the transaction of each run step that changed '
    'catalog, inventory, vendor or location data: readers see the previous or the new library, never a partial one.';

-- Where a rebuild computes the library before replacing what changed (one writer at a time).
CREATE UNLOGGED TABLE squaresync.build_item_library_export (LIKE square.square_item_library_export);

-- The item library computed from scratch from the synced tables.
CREATE FUNCTION squaresync._item_library_rows(p_merchant text)
RETURNS SETOF square.square_item_library_export LANGUAGE sql STABLE AS $$
    SELECT a.merchant_id, a.variation_id, a.location_id, v.item_id,
           i.name, v.name, v.sku, i.description_plaintext,
           (SELECT string_agg(c.name, ', ' ORDER BY u.ord)
              FROM unnest(i.category_ids) WITH ORDINALITY AS u(id, ord)
              JOIN square.catalog_categories c ON c.merchant_id = i.merchant_id AND c.id = u.id AND NOT c.is_deleted),
           rc.name,
           i.product_type,
           coalesce(a.price_amount, v.price_amount),
           coalesce(a.price_currency, v.price_currency),
           coalesce(a.pricing_type, v.pricing_type),
           i.is_archived, v.sellable, v.stockable, i.is_taxable,
           vi.price_amount, vi.price_currency, vi.vendor_id, vd.name, vi.sku,
           l.name,
           a.is_present,
           inv.quantity,
           coalesce(a.track_inventory, v.track_inventory),
           coalesce(a.inventory_alert_type, v.inventory_alert_type) = 'LOW_QUANTITY',
           coalesce(a.inventory_alert_threshold, v.inventory_alert_threshold),
           coalesce(a.sold_out, false)
    FROM square.catalog_location_availability a
    JOIN square.catalog_variations v ON v.merchant_id = a.merchant_id AND v.id = a.variation_id
    JOIN square.catalog_items i ON i.merchant_id = v.merchant_id AND i.id = v.item_id
    JOIN square.locations l ON l.merchant_id = a.merchant_id AND l.id = a.location_id
    LEFT JOIN square.catalog_categories rc
           ON rc.merchant_id = i.merchant_id AND rc.id = i.reporting_category_id AND NOT rc.is_deleted
    LEFT JOIN LATERAL (
        SELECT x.* FROM square.catalog_vendor_info x
        WHERE x.merchant_id = v.merchant_id AND x.variation_id = v.id AND NOT x.is_deleted
        ORDER BY x.ordinal NULLS LAST, x.id LIMIT 1
    ) vi ON true
    LEFT JOIN square.vendors vd ON vd.merchant_id = vi.merchant_id AND vd.id = vi.vendor_id
    LEFT JOIN square.catalog_inventory inv
           ON inv.merchant_id = a.merchant_id AND inv.catalog_object_id = a.variation_id
          AND inv.location_id = a.location_id AND inv.state = 'IN_STOCK'
    WHERE a.merchant_id = p_merchant AND NOT v.is_deleted AND NOT i.is_deleted
$$;

-- Rebuilds the export in the caller's transaction: computes the whole library, then deletes the
-- rows that vanished or differ and inserts the new and changed ones (never TRUNCATE: readers keep
-- seeing the previous library until the transaction commits). Returns the rows written.
CREATE FUNCTION squaresync._rebuild_item_library_export(p_merchant text)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    n_del bigint;
    n_ins bigint;
BEGIN
    LOCK TABLE squaresync.build_item_library_export IN EXCLUSIVE MODE;
    DELETE FROM squaresync.build_item_library_export;
    INSERT INTO squaresync.build_item_library_export SELECT * FROM squaresync._item_library_rows(p_merchant);
    DELETE FROM square.square_item_library_export e
    WHERE e.merchant_id = p_merchant
      AND NOT EXISTS (SELECT 1 FROM squaresync.build_item_library_export b
                      WHERE b.merchant_id = e.merchant_id AND b.variation_id = e.variation_id
                        AND b.location_id = e.location_id AND ROW(b.*) IS NOT DISTINCT FROM ROW(e.*));
    GET DIAGNOSTICS n_del = ROW_COUNT;
    INSERT INTO square.square_item_library_export
    SELECT b.* FROM squaresync.build_item_library_export b
    WHERE NOT EXISTS (SELECT 1 FROM square.square_item_library_export e
                      WHERE e.merchant_id = b.merchant_id AND e.variation_id = b.variation_id
                        AND e.location_id = b.location_id);
    GET DIAGNOSTICS n_ins = ROW_COUNT;
    DELETE FROM squaresync.build_item_library_export;
    RETURN jsonb_build_object('deleted', n_del, 'inserted', n_ins);
END
$fn$;

-- Appends the inventory history of a run: its inserted counts and the updates that changed a
-- count's quantity or calculated_at.
CREATE FUNCTION squaresync._record_inventory_history(p_run bigint, p_merchant text)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE n bigint;
BEGIN
    INSERT INTO square.inventory_counts (merchant_id, catalog_object_id, location_id, state, run_id, quantity,
                                         calculated_at, previous_quantity, previous_calculated_at)
    SELECT p_merchant, i.catalog_object_id, i.location_id, i.state, p_run, i.quantity, i.calculated_at,
           (c.before ->> 'quantity')::numeric, (c.before ->> 'calculated_at')::timestamptz
    FROM squaresync.changes c
    JOIN square.catalog_inventory i
      ON i.merchant_id = p_merchant AND i.catalog_object_id = c.pk ->> 'catalog_object_id'
     AND i.location_id = c.pk ->> 'location_id' AND i.state = c.pk ->> 'state'
    WHERE c.run_id = p_run AND c.table_name = 'catalog_inventory'
      AND (c.op = 'insert' OR (c.op = 'update' AND (c.after ? 'quantity' OR c.after ? 'calculated_at')))
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

-- Did the run change any of these synced tables?
CREATE FUNCTION squaresync._run_changed(p_run bigint, p_tables text[])
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM squaresync.changes WHERE run_id = p_run AND table_name = ANY (p_tables))
$$;

-- The synced tables a stream's apply writes (availability follows the locations too).
CREATE FUNCTION squaresync._stream_tables(p_stream text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(table_name ORDER BY apply_order), '{}') FROM squaresync.synced_tables
    WHERE stream = p_stream OR (p_stream = 'locations' AND table_name = 'catalog_location_availability')
$$;

-- Called by _apply_stream after a stream's tables are applied, before its watermark advances, in
-- the same transaction: the expected row counts (validate), the inventory history and the daily
-- sales (the item library export follows once per run: _after_run). A rollback calls it too for the run that records the rollback
-- (the history of the undone run is deleted by the rollback, not appended to).
CREATE FUNCTION squaresync._after_apply(p_run bigint, p_merchant text, p_stream text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_kind text;
BEGIN
    SELECT kind INTO v_kind FROM squaresync.sync_runs WHERE id = p_run;
    PERFORM squaresync._track_row_counts(p_run, p_merchant, squaresync._stream_tables(p_stream), v_kind = 'foundation');
    IF p_stream = 'inventory' AND v_kind IS DISTINCT FROM 'rollback' THEN
        PERFORM squaresync._record_inventory_history(p_run, p_merchant);
    END IF;
    IF p_stream IN ('orders', 'locations') THEN
        PERFORM squaresync._refresh_sales(p_run, p_merchant);
    END IF;
END
$fn$;

-- Called by the sync worker once its streams are applied, in its own transaction: the item library
-- export is rebuilt once per run, when the run changed locations, catalog, inventory or vendors.
CREATE FUNCTION squaresync._after_run(p_run bigint, p_merchant text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF squaresync._run_changed(p_run, array(SELECT table_name FROM squaresync.synced_tables
                                            WHERE stream IN ('locations', 'catalog', 'inventory', 'vendors'))) THEN
        PERFORM squaresync._rebuild_item_library_export(p_merchant);
    END IF;
END
$fn$;

-- Recomputes the daily sales and the item library export from scratch (e.g. after restoring a
-- backup or editing square tables by hand). The inventory history cannot be recomputed.
CREATE FUNCTION squaresync.rebuild_derived()
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE m text;
BEGIN
    FOR m IN SELECT DISTINCT merchant_id FROM square.locations
             UNION SELECT DISTINCT merchant_id FROM square.square_sales
             UNION SELECT DISTINCT merchant_id FROM square.square_item_library_export LOOP
        DELETE FROM square.square_sales WHERE merchant_id = m;
        INSERT INTO square.square_sales SELECT * FROM squaresync._sales_rows(m, NULL, NULL, NULL);
        PERFORM squaresync._rebuild_item_library_export(m);
    END LOOP;
END
$fn$;

SELECT pg_catalog.pg_extension_config_dump('square.operating_seasons', '');
SELECT pg_catalog.pg_extension_config_dump('square.operating_seasons_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('square.inventory_counts', '');
SELECT pg_catalog.pg_extension_config_dump('square.square_sales', '');
SELECT pg_catalog.pg_extension_config_dump('square.square_item_library_export', '');
-- 60_audit.sql: the audit trail read back (diff), its retention (_prune_audit), undoing a run
-- (rollback) and integrity checks (validate). Issue 5.

--------------------------------------------------------------------------------------------------
-- Additions to the control tables of 20_control.sql.
--------------------------------------------------------------------------------------------------



-- What validate() expects each synced table to hold: set to the table's row count by a successful
-- foundation apply of its stream, then moved by every audited insert and hard delete since (sync
-- runs and rollbacks alike). Tombstones do not change it.
CREATE TABLE squaresync.table_row_counts (
    merchant_id   text NOT NULL,
    table_name    text NOT NULL,
    expected_rows bigint NOT NULL,
    baseline_run  bigint,
    last_run_id   bigint,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, table_name)
);
SELECT pg_catalog.pg_extension_config_dump('squaresync.table_row_counts', '');

-- Moves the expected row counts of p_tables by what p_run wrote in the current transaction (a run
-- applies availability in two streams: only this transaction's entries count), or with p_baseline
-- sets them to the tables' row counts.
CREATE FUNCTION squaresync._track_row_counts(p_run bigint, p_merchant text, p_tables text[], p_baseline boolean)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    t text;
    n bigint;
BEGIN
    IF p_baseline THEN
        FOREACH t IN ARRAY p_tables LOOP
            EXECUTE format('SELECT count(*) FROM square.%I WHERE merchant_id = $1', t) INTO n USING p_merchant;
            INSERT INTO squaresync.table_row_counts AS r (merchant_id, table_name, expected_rows, baseline_run, last_run_id)
            VALUES (p_merchant, t, n, p_run, p_run)
            ON CONFLICT (merchant_id, table_name) DO UPDATE
                SET expected_rows = excluded.expected_rows, baseline_run = p_run, last_run_id = p_run, updated_at = now();
        END LOOP;
        RETURN;
    END IF;
    INSERT INTO squaresync.table_row_counts AS r (merchant_id, table_name, expected_rows, last_run_id)
    SELECT p_merchant, c.table_name,
           count(*) FILTER (WHERE c.op = 'insert') - count(*) FILTER (WHERE c.op = 'delete' AND c.after IS NULL),
           p_run
    FROM squaresync.changes c
    WHERE c.run_id = p_run AND c.table_name = ANY (p_tables) AND c.xmin = pg_current_xact_id()::xid
    GROUP BY c.table_name
    ON CONFLICT (merchant_id, table_name) DO UPDATE
        SET expected_rows = r.expected_rows + excluded.expected_rows, last_run_id = p_run, updated_at = now();
END
$fn$;

--------------------------------------------------------------------------------------------------
-- diff: a run's changes, one row per column.
--------------------------------------------------------------------------------------------------

-- One row per changed column: updates (and tombstones) give the columns the run changed, before and
-- after; inserts give every column stored (raw excepted) with before NULL; hard deletes give every
-- column of the deleted row (merchant_id, synced_at and raw excepted) with after NULL. Values are
-- jsonb. Ordered by the tables' apply order, then primary key and column.
CREATE FUNCTION squaresync.diff(run_id bigint)
RETURNS TABLE (table_name text, pk jsonb, op text, column_name text, before jsonb, after jsonb)
LANGUAGE plpgsql STABLE AS $fn$
#variable_conflict use_column
DECLARE
    r squaresync.sync_runs%ROWTYPE;
BEGIN
    SELECT * INTO r FROM squaresync.sync_runs s WHERE s.id = diff.run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'squaresync run % does not exist', diff.run_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT id, kind, status, started_at FROM squaresync.sync_runs ORDER BY id DESC lists the runs.';
    END IF;
    IF r.audit_pruned_at IS NOT NULL THEN
        RAISE EXCEPTION 'the audit trail of squaresync run % was pruned', r.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('_prune_audit() deleted its audit entries at %s.', r.audit_pruned_at),
                  HINT = 'squaresync.audit_retention sets how long the audit trail is kept.';
    END IF;
    RETURN QUERY
    SELECT c.table_name, c.pk, c.op, col.key, c.before -> col.key, c.after -> col.key
    FROM squaresync.changes c
    LEFT JOIN squaresync.synced_tables st ON st.table_name = c.table_name
    -- A foundation records its inserts by key only: one row with no column for each.
    CROSS JOIN LATERAL (SELECT k FROM jsonb_object_keys(coalesce(c.after, c.before - 'raw' - 'merchant_id' - 'synced_at')) k
                        UNION ALL SELECT NULL WHERE c.after IS NULL AND c.before IS NULL) AS col(key)
    WHERE c.run_id = diff.run_id
    ORDER BY st.apply_order, c.table_name, c.pk, col.key;
END
$fn$;

--------------------------------------------------------------------------------------------------
-- Retention.
--------------------------------------------------------------------------------------------------

-- squaresync.audit_retention as an interval: '90d', '12h', '30min', '45s' (how SHOW prints an
-- integer GUC in seconds) or a plain number of seconds. 0 or less keeps the audit trail forever
-- (NULL). Unset or unreadable: 90 days.
CREATE FUNCTION squaresync._audit_retention()
RETURNS interval LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v text := nullif(btrim(current_setting('squaresync.audit_retention', true)), '');
    i interval;
BEGIN
    IF v IS NULL THEN
        RETURN interval '90 days';
    END IF;
    IF v ~ '^-?[0-9]+$' THEN
        i := make_interval(secs => v::bigint);
    ELSE
        BEGIN
            i := v::interval;
        EXCEPTION WHEN others THEN
            RAISE WARNING 'squaresync.audit_retention = % is not an interval; using 90 days', v;
            RETURN interval '90 days';
        END;
    END IF;
    RETURN CASE WHEN i <= interval '0' THEN NULL ELSE i END;
END
$fn$;

-- Deletes the audit entries of the runs that finished longer ago than squaresync.audit_retention,
-- a whole run at a time, and marks each such run audit_pruned_at: it can no longer be rolled back
-- (rollback refuses it and says why) nor shown by diff. Running runs are never pruned. Returns the
-- number of entries deleted. Called by the maintenance worker.
CREATE FUNCTION squaresync._prune_audit()
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    keep interval := squaresync._audit_retention();
    n    bigint;
BEGIN
    IF keep IS NULL THEN
        RETURN 0;
    END IF;
    WITH runs AS (
        UPDATE squaresync.sync_runs r SET audit_pruned_at = now()
        WHERE r.audit_pruned_at IS NULL AND r.status <> 'running'
          AND coalesce(r.finished_at, r.started_at) < now() - keep
        RETURNING r.id
    )
    DELETE FROM squaresync.changes c USING runs WHERE c.run_id = runs.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

--------------------------------------------------------------------------------------------------
-- Rollback.
--------------------------------------------------------------------------------------------------

-- Restores one table to where it stood before p_target, from p_target's audit entries (for a row
-- the run changed twice, the first entry's before), and records what it does as p_new's changes.
-- Rows the run inserted are deleted; rows it updated, tombstoned or deleted get their old row back.
-- The three writes touch disjoint keys, so one statement does them all.
CREATE FUNCTION squaresync._rollback_table(p_target bigint, p_new bigint, p_merchant text, p_table text)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    keys     text[] := squaresync._key_columns(p_table);
    cols     text[];
    key_join text;
    result   jsonb;
BEGIN
    SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO cols
    FROM pg_attribute a
    WHERE a.attrelid = format('square.%I', p_table)::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname <> 'merchant_id' AND NOT (a.attname = ANY (keys));
    SELECT string_agg(format('t.%1$I = (%%1$s.pk ->> %1$L)::%2$s', k, format_type(a.atttypid, a.atttypmod)), ' AND ')
    INTO key_join
    FROM unnest(keys) k
    JOIN pg_attribute a ON a.attrelid = format('square.%I', p_table)::regclass AND a.attname = k;

    EXECUTE format($q$
        WITH f AS MATERIALIZED (
            SELECT DISTINCT ON (c.pk) c.pk, c.op, c.before
            FROM squaresync.changes c
            WHERE c.run_id = $1 AND c.table_name = %1$L
            ORDER BY c.pk, c.changed_at
        ),
        j AS MATERIALIZED (
            SELECT f.pk, f.op, f.before, t AS t_row, (t.merchant_id IS NOT NULL) AS present,
                   CASE WHEN f.op <> 'insert' THEN jsonb_populate_record(NULL::square.%2$I, f.before) END AS b_row
            FROM f LEFT JOIN square.%2$I t ON t.merchant_id = $2 AND %3$s
        ),
        d AS MATERIALIZED (
            SELECT j.*,
                   CASE WHEN j.op = 'insert' THEN CASE WHEN j.present THEN 'delete' END
                        WHEN NOT j.present THEN 'insert'
                        WHEN (to_jsonb(j.t_row) - 'synced_at') IS DISTINCT FROM (j.before - 'synced_at') THEN 'update'
                   END AS action
            FROM j
        ),
        del AS (
            DELETE FROM square.%2$I t USING d
            WHERE d.action = 'delete' AND t.merchant_id = $2 AND %4$s
        ),
        ins AS (
            INSERT INTO square.%2$I SELECT (d.b_row).* FROM d WHERE d.action = 'insert'
        ),
        upd AS (
            UPDATE square.%2$I t SET (%5$s) = (%6$s)
            FROM d WHERE d.action = 'update' AND t.merchant_id = $2 AND %4$s
        ),
        audit AS (
            INSERT INTO squaresync.changes (run_id, table_name, pk, op, before, after)
            SELECT $3, %1$L, d.pk, d.action,
                   CASE WHEN d.action = 'insert' THEN NULL ELSE to_jsonb(d.t_row) END,
                   CASE d.action
                       WHEN 'delete' THEN NULL
                       WHEN 'insert' THEN d.before - 'raw' - 'merchant_id' - 'synced_at'
                       ELSE (SELECT jsonb_object_agg(a.key, a.value) FROM jsonb_each(d.before) a
                             WHERE a.key NOT IN ('merchant_id', 'synced_at')
                               AND a.value IS DISTINCT FROM to_jsonb(d.t_row) -> a.key)
                   END
            FROM d WHERE d.action IS NOT NULL
        )
        SELECT jsonb_build_object(
            'inserted', count(*) FILTER (WHERE action = 'insert'),
            'updated', count(*) FILTER (WHERE action = 'update'),
            'deleted', count(*) FILTER (WHERE action = 'delete'),
            'unchanged', count(*) FILTER (WHERE action IS NULL))
        FROM d
        $q$,
        p_table,                                                                    -- 1
        p_table,                                                                    -- 2
        format(key_join, 'f'),                                                      -- 3
        format(key_join, 'd'),                                                      -- 4
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),             -- 5
        (SELECT string_agg(format('(d.b_row).%I', c), ', ') FROM unnest(cols) c)    -- 6
    ) INTO result USING p_target, p_merchant, p_new;
    RETURN result;
END
$fn$;

-- Later runs (not rolled back, not rollbacks) that changed rows p_run changed; with p_transitive
-- also the runs that changed rows those runs changed, and so on.
CREATE FUNCTION squaresync._later_conflicts(p_run bigint, p_transitive boolean)
RETURNS bigint[] LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    found bigint[];
BEGIN
    IF NOT p_transitive THEN
        SELECT array_agg(DISTINCT c2.run_id ORDER BY c2.run_id) INTO found
        FROM squaresync.changes c1
        JOIN squaresync.changes c2 ON c2.table_name = c1.table_name AND c2.pk = c1.pk AND c2.run_id > c1.run_id
        JOIN squaresync.sync_runs r ON r.id = c2.run_id
        WHERE c1.run_id = p_run AND r.kind <> 'rollback' AND r.status <> 'rolled_back';
    ELSE
        WITH RECURSIVE dep(run_id) AS (
            SELECT p_run
            UNION
            SELECT c2.run_id
            FROM dep
            JOIN squaresync.changes c1 ON c1.run_id = dep.run_id
            JOIN squaresync.changes c2 ON c2.table_name = c1.table_name AND c2.pk = c1.pk AND c2.run_id > c1.run_id
            JOIN squaresync.sync_runs r ON r.id = c2.run_id
            WHERE r.kind <> 'rollback' AND r.status <> 'rolled_back'
        )
        SELECT array_agg(run_id ORDER BY run_id) INTO found FROM dep WHERE run_id <> p_run;
    END IF;
    RETURN coalesce(found, '{}');
END
$fn$;

-- Undoes one run (checked by rollback()) and records it as a new run of kind rollback; returns its id.
CREATE FUNCTION squaresync._rollback_one(p_run bigint, p_reason text)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    r       squaresync.sync_runs%ROWTYPE;
    new_id  bigint := nextval('squaresync.sync_runs_id_seq');
    t       record;
    cnt     jsonb;
    counts  jsonb := '{}';
    summary jsonb;
BEGIN
    SELECT * INTO STRICT r FROM squaresync.sync_runs WHERE id = p_run FOR UPDATE;
    INSERT INTO squaresync.sync_runs (id, kind, status, merchant_id, reason, rollback_of, worker_pid, triggered_by)
    VALUES (new_id, 'rollback', 'running', r.merchant_id, p_reason, p_run, pg_backend_pid(), 'rollback()');

    -- The data, table by table (the foreign keys are deferred: order does not matter).
    FOR t IN SELECT DISTINCT c.table_name, coalesce(st.apply_order, 1000) AS apply_order
             FROM squaresync.changes c LEFT JOIN squaresync.synced_tables st ON st.table_name = c.table_name
             WHERE c.run_id = p_run ORDER BY 2, 1 LOOP
        cnt := squaresync._rollback_table(p_run, new_id, r.merchant_id, t.table_name);
        counts := counts || jsonb_build_object(t.table_name, cnt);
    END LOOP;

    -- What derives from it: the run's inventory history goes, sales and the export are recomputed
    -- from the restored rows, the expected row counts follow the rollback's own changes.
    DELETE FROM square.inventory_counts WHERE run_id = p_run;
    PERFORM squaresync._track_row_counts(new_id, r.merchant_id, array(SELECT jsonb_object_keys(counts)), false);
    PERFORM squaresync._refresh_sales(new_id, r.merchant_id);
    IF squaresync._run_changed(new_id, array(SELECT table_name FROM squaresync.synced_tables
                                             WHERE stream IN ('locations', 'catalog', 'inventory', 'vendors'))) THEN
        PERFORM squaresync._rebuild_item_library_export(r.merchant_id);
    END IF;

    -- The watermarks go back to where they stood before the run: the next sync fetches that window again.
    INSERT INTO squaresync.sync_run_streams (run_id, stream, status, watermark_before, watermark_after, applied_at)
    SELECT new_id, rs.stream, 'succeeded', s.watermark, rs.watermark_before, now()
    FROM squaresync.sync_run_streams rs
    LEFT JOIN squaresync.stream_state s ON s.merchant_id = r.merchant_id AND s.stream = rs.stream
    WHERE rs.run_id = p_run AND rs.status = 'succeeded';
    UPDATE squaresync.stream_state s
       SET watermark = rs.watermark_before, last_run_id = new_id, updated_at = now()
      FROM squaresync.sync_run_streams rs
     WHERE rs.run_id = p_run AND rs.status = 'succeeded' AND s.merchant_id = r.merchant_id AND s.stream = rs.stream;
    UPDATE squaresync.sync_run_streams SET status = 'rolled_back' WHERE run_id = p_run AND status = 'succeeded';

    UPDATE squaresync.sync_runs SET status = 'rolled_back', rolled_back_by = new_id WHERE id = p_run;
    UPDATE squaresync.sync_runs x
       SET status = 'succeeded', finished_at = clock_timestamp(), tables = counts,
           rows_inserted = s.ins, rows_updated = s.upd, rows_deleted = s.del, rows_unchanged = s.unch
      FROM (SELECT coalesce(sum((v ->> 'inserted')::bigint), 0) AS ins,
                   coalesce(sum((v ->> 'updated')::bigint), 0) AS upd,
                   coalesce(sum((v ->> 'deleted')::bigint), 0) AS del,
                   coalesce(sum((v ->> 'unchanged')::bigint), 0) AS unch
              FROM jsonb_each(counts) e(k, v)) s
     WHERE x.id = new_id
    RETURNING jsonb_build_object('id', x.id, 'kind', x.kind, 'status', x.status, 'rollback_of', x.rollback_of,
                                 'inserted', x.rows_inserted, 'updated', x.rows_updated, 'deleted', x.rows_deleted)
    INTO summary;
    PERFORM pg_notify('squaresync', summary::text);
    RETURN new_id;
END
$fn$;

-- Undoes run p_run in one transaction and returns the id of the run that records the rollback
-- (kind rollback, reason, rollback_of). Refuses: an unknown run, a rollback (run the sync again
-- instead), a run already rolled back, a run whose audit was pruned, and a run whose rows a later
-- run changed again, unless cascade, which rolls those back first, newest first (each recorded as
-- its own rollback run). Waits for no sync: fails at once if one is in progress.
CREATE FUNCTION squaresync.rollback(run_id bigint, reason text, cascade boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    r      squaresync.sync_runs%ROWTYPE;
    later  bigint[];
    pruned bigint[];
    x      bigint;
    i      integer;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a rollback needs a reason' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'SELECT squaresync.rollback(<run id>, ''why'')';
    END IF;
    -- The lock the sync worker holds for a whole run. A worker takes it shortly before recording its
    -- run and keeps it a moment after finishing: wait up to a second when no run is recorded running.
    FOR i IN 1..20 LOOP
        EXIT WHEN pg_try_advisory_xact_lock(1397838681, 1);
        IF i = 20 OR EXISTS (SELECT 1 FROM squaresync.sync_runs WHERE status = 'running') THEN
            RAISE EXCEPTION 'a sync run is in progress' USING ERRCODE = 'lock_not_available',
                HINT = 'Wait for it to finish (squaresync.sync_runs shows it), then roll back.';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;

    SELECT * INTO r FROM squaresync.sync_runs s WHERE s.id = rollback.run_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'squaresync run % does not exist', rollback.run_id USING ERRCODE = 'undefined_object',
            HINT = 'SELECT id, kind, status, started_at FROM squaresync.sync_runs ORDER BY id DESC lists the runs.';
    END IF;
    IF r.kind = 'rollback' THEN
        RAISE EXCEPTION 'run % is a rollback (of run %) and cannot be rolled back', r.id, r.rollback_of
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run the sync again instead: SELECT squaresync.incremental() fetches the undone window again.';
    END IF;
    IF r.status = 'rolled_back' THEN
        RAISE EXCEPTION 'run % was already rolled back by run %', r.id, r.rolled_back_by
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF r.status = 'running' THEN
        RAISE EXCEPTION 'a sync run is in progress' USING ERRCODE = 'lock_not_available',
            HINT = format('Run %s is still running.', r.id);
    END IF;
    IF r.audit_pruned_at IS NOT NULL THEN
        RAISE EXCEPTION 'run % can no longer be rolled back: its audit trail was pruned', r.id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('_prune_audit() deleted its audit entries at %s.', r.audit_pruned_at),
                  HINT = 'squaresync.audit_retention sets how long runs stay roll-back-able.';
    END IF;

    later := squaresync._later_conflicts(r.id, cascade);
    IF cardinality(later) > 0 AND NOT cascade THEN
        RAISE EXCEPTION 'run % cannot be rolled back: later runs changed the same rows: %', r.id,
                        array_to_string(later, ', ')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Roll them back first, newest first, or call squaresync.rollback(%s, reason, cascade => true).', r.id);
    END IF;
    SELECT array_agg(id ORDER BY id) INTO pruned FROM squaresync.sync_runs
    WHERE id = ANY (later) AND audit_pruned_at IS NOT NULL;
    IF pruned IS NOT NULL THEN
        RAISE EXCEPTION 'run % cannot be rolled back: later runs % must be rolled back first and their audit trail was pruned',
                        r.id, array_to_string(pruned, ', ') USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    FOR x IN SELECT unnest(later) ORDER BY 1 DESC LOOP
        PERFORM squaresync._rollback_one(x, format('%s (cascade: rolling back run %s)', reason, r.id));
    END LOOP;
    RETURN squaresync._rollback_one(r.id, reason);
END
$fn$;

--------------------------------------------------------------------------------------------------
-- validate.
--------------------------------------------------------------------------------------------------

-- Columns checked against the object they came from: %1$s stands for the object (the stored raw,
-- or the object fetched from Square). Rows only: of tombstone tables, live rows only.
CREATE FUNCTION squaresync._raw_columns()
RETURNS TABLE (table_name text, column_name text, expr text) LANGUAGE sql IMMUTABLE AS $$
    VALUES
        ('locations', 'name', '%1$s ->> ''name'''),
        ('locations', 'status', '%1$s ->> ''status'''),
        ('locations', 'timezone', '%1$s ->> ''timezone'''),
        ('catalog_categories', 'version', '(%1$s ->> ''version'')::bigint'),
        ('catalog_categories', 'name', '%1$s -> ''category_data'' ->> ''name'''),
        ('catalog_items', 'version', '(%1$s ->> ''version'')::bigint'),
        ('catalog_items', 'name', '%1$s -> ''item_data'' ->> ''name'''),
        ('catalog_variations', 'version', '(%1$s ->> ''version'')::bigint'),
        ('catalog_variations', 'item_id', '%1$s -> ''item_variation_data'' ->> ''item_id'''),
        ('catalog_variations', 'name', '%1$s -> ''item_variation_data'' ->> ''name'''),
        ('catalog_variations', 'sku', '%1$s -> ''item_variation_data'' ->> ''sku'''),
        ('catalog_variations', 'price_amount', '(%1$s -> ''item_variation_data'' -> ''price_money'' ->> ''amount'')::bigint'),
        ('catalog_inventory', 'quantity', '(%1$s ->> ''quantity'')::numeric'),
        ('catalog_inventory', 'calculated_at', '(%1$s ->> ''calculated_at'')::timestamptz'),
        ('vendors', 'version', '(%1$s ->> ''version'')::integer'),
        ('vendors', 'name', '%1$s ->> ''name'''),
        ('vendors', 'status', '%1$s ->> ''status'''),
        ('orders', 'location_id', '%1$s ->> ''location_id'''),
        ('orders', 'state', '%1$s ->> ''state'''),
        ('orders', 'version', '(%1$s ->> ''version'')::integer'),
        ('orders', 'updated_at', '(%1$s ->> ''updated_at'')::timestamptz'),
        ('orders', 'total_money_amount', '(%1$s -> ''total_money'' ->> ''amount'')::bigint'),
        ('payments', 'status', '%1$s ->> ''status'''),
        ('payments', 'updated_at', '(%1$s ->> ''updated_at'')::timestamptz'),
        ('payments', 'amount_money_amount', '(%1$s -> ''amount_money'' ->> ''amount'')::bigint'),
        ('payment_refunds', 'status', '%1$s ->> ''status'''),
        ('payment_refunds', 'amount_money_amount', '(%1$s -> ''amount_money'' ->> ''amount'')::bigint'),
        ('transactions', 'location_id', '%1$s ->> ''location_id'''),
        ('transactions', 'order_id', '%1$s ->> ''order_id''')
$$;

-- The SQL of an array of the checked columns of table alias t that differ from the object o (an
-- expression). NULL when the table has no checked columns.
CREATE FUNCTION squaresync._raw_mismatch_sql(p_table text, p_object text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'array_remove(ARRAY[' || string_agg(format('CASE WHEN t.%I IS DISTINCT FROM %s THEN %L END',
                                                      x.column_name, format(x.expr, p_object), x.column_name), ', ')
           || ']::text[], NULL)'
    FROM squaresync._raw_columns() x WHERE x.table_name = p_table
$$;

-- Compares sampled rows of a table with the objects fetched from Square (p_fetched: a jsonb array;
-- p_key: the SQL of the object's key matching t's key, p_tkey: t's key). One result row.
CREATE FUNCTION squaresync._deep_compare(p_table text, p_sample jsonb, p_fetched jsonb, p_tkey text, p_okey text)
RETURNS TABLE (status text, detail text) LANGUAGE plpgsql AS $fn$
DECLARE
    mism text := coalesce(squaresync._raw_mismatch_sql(p_table, 'f.o'), 'ARRAY[]::text[]');
    n    bigint;
    miss text[];
    diff text[];
BEGIN
    EXECUTE format($q$
        WITH s AS (SELECT k #>> '{}' AS key FROM jsonb_array_elements($1) k),
        t AS (SELECT t.*, %1$s AS key FROM square.%2$I t WHERE %1$s IN (SELECT key FROM s)),
        f AS (SELECT o, %3$s AS key FROM jsonb_array_elements($2) o),
        cmp AS (
            SELECT t.key, f.o IS NULL AS missing,
                   CASE WHEN f.o IS NULL THEN '{}'::text[]
                        ELSE %4$s || CASE WHEN %5$s AND t.raw IS DISTINCT FROM f.o THEN ARRAY['raw'] ELSE '{}' END END AS bad
            FROM t LEFT JOIN f ON f.key = t.key
        )
        SELECT (SELECT count(*) FROM cmp),
               (SELECT array_agg(key ORDER BY key) FROM (SELECT key FROM cmp WHERE missing ORDER BY key LIMIT 5) x),
               (SELECT array_agg(key || ' (' || array_to_string(bad, ', ') || ')' ORDER BY key)
                  FROM (SELECT key, bad FROM cmp WHERE cardinality(bad) > 0 ORDER BY key LIMIT 5) x)
        $q$, p_tkey, p_table, p_okey, mism,
        CASE WHEN EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = format('square.%I', p_table)::regclass
                                                      AND attname = 'raw' AND NOT attisdropped)
             THEN 'true' ELSE 'false' END)
    INTO n, miss, diff USING p_sample, p_fetched;
    IF miss IS NULL AND diff IS NULL THEN
        RETURN QUERY SELECT 'ok'::text, format('%s sampled rows equal Square''s objects', n);
    ELSE
        RETURN QUERY SELECT 'fail'::text,
            concat_ws('; ', format('%s sampled rows', n),
                      CASE WHEN miss IS NOT NULL THEN 'not found in Square: ' || array_to_string(miss, ', ') END,
                      CASE WHEN diff IS NOT NULL THEN 'differ from Square: ' || array_to_string(diff, ', ') END);
    END IF;
END
$fn$;

-- Integrity checks, one row each: status ok, warn or fail.
--   references  rows whose parent is missing (tombstoned parents count as present)
--   row count   each synced table's rows against squaresync.table_row_counts: the rows the last
--               successful foundation apply left, plus the inserts less the hard deletes audited since
--   order totals, line item totals, quantities, money, one currency per order: Square's money model
--   columns match raw   the mapped columns against the stored object they came from
-- With deep: for a random sample per table (squaresync.validate_sample_size, default 50) the stored
-- object and columns against the object fetched from Square now (locations: all of them), and the
-- ids of every live catalog item, variation and category against GetCatalog's list (missed deletes
-- and missed inserts). Deep checks cover the tables Square can fetch by id: locations, catalog
-- items, variations, categories and vendor infos, inventory counts, vendors and orders.
CREATE FUNCTION squaresync.validate(deep boolean DEFAULT false)
RETURNS TABLE (check_name text, table_name text, status text, detail text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    x        record;
    n        bigint;
    e        bigint;
    ex       text[];
    m        text;
    sample_n integer;
    ids      jsonb;
    fetched  jsonb;
    resp     jsonb;
    cursor_  text;
    list_ids text[];
    list_tps text[];
    miss     text[];
    q        text;
    st       text;
    dt       text;
BEGIN
    -- References.
    FOR x IN SELECT * FROM (VALUES
            ('order_line_items', 'order_id', 'orders', 'id', 'true'),
            ('order_fulfillments', 'order_id', 'orders', 'id', 'true'),
            ('order_returns', 'order_id', 'orders', 'id', 'true'),
            ('order_refunds', 'order_id', 'orders', 'id', 'true'),
            ('tenders', 'order_id', 'orders', 'id', 'true'),
            ('catalog_variations', 'item_id', 'catalog_items', 'id', 'true'),
            ('catalog_inventory', 'catalog_object_id', 'catalog_variations', 'id',
             $c$coalesce(c.catalog_object_type, 'ITEM_VARIATION') = 'ITEM_VARIATION'$c$),
            ('catalog_inventory', 'location_id', 'locations', 'id', 'true'),
            ('catalog_location_availability', 'variation_id', 'catalog_variations', 'id', 'true'),
            ('catalog_location_availability', 'location_id', 'locations', 'id', 'true'),
            ('catalog_vendor_info', 'variation_id', 'catalog_variations', 'id', 'true'),
            ('catalog_vendor_info', 'vendor_id', 'vendors', 'id', 'true')
        ) v(tbl, col, parent, pcol, cond) LOOP
        EXECUTE format($q$SELECT count(*), (array_agg(DISTINCT c.%2$I))[1:5] FROM square.%1$I c
                          WHERE c.%2$I IS NOT NULL AND %5$s
                            AND NOT EXISTS (SELECT 1 FROM square.%3$I p WHERE p.merchant_id = c.merchant_id AND p.%4$I = c.%2$I)$q$,
                       x.tbl, x.col, x.parent, x.pcol, x.cond) INTO n, ex;
        RETURN QUERY SELECT 'references ' || x.parent, x.tbl,
            CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
            CASE WHEN n = 0 THEN format('every %s is in %s', x.col, x.parent)
                 ELSE format('%s rows whose %s is not in %s, e.g. %s', n, x.col, x.parent, array_to_string(ex, ', ')) END;
    END LOOP;

    -- Row counts.
    FOR x IN SELECT s.table_name AS tbl FROM squaresync.synced_tables s ORDER BY s.apply_order LOOP
        EXECUTE format('SELECT count(*) FROM square.%I', x.tbl) INTO n;
        SELECT sum(c.expected_rows) INTO e FROM squaresync.table_row_counts c WHERE c.table_name = x.tbl;
        RETURN QUERY SELECT 'row count'::text, x.tbl,
            CASE WHEN e IS NULL THEN CASE WHEN n = 0 THEN 'ok' ELSE 'warn' END
                 WHEN e = n THEN 'ok' ELSE 'fail' END,
            CASE WHEN e IS NULL THEN format('%s rows; no sync has applied this table yet', n)
                 WHEN e = n THEN format('%s rows, as expected', n)
                 ELSE format('%s rows, expected %s (the last foundation''s rows plus the inserts less the deletes audited since)', n, e) END;
    END LOOP;

    -- Square's money model.
    SELECT count(*), (array_agg(o.id ORDER BY o.id))[1:5] INTO n, ex
    FROM square.orders o
    JOIN (SELECT li.merchant_id, li.order_id, sum(li.total_money_amount) AS lines
            FROM square.order_line_items li GROUP BY 1, 2) l ON l.merchant_id = o.merchant_id AND l.order_id = o.id
    WHERE o.total_money_amount IS DISTINCT FROM
          l.lines + coalesce(o.total_service_charge_money_amount, 0) + coalesce(o.total_tip_money_amount, 0);
    RETURN QUERY SELECT 'order totals'::text, 'orders'::text, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
        CASE WHEN n = 0 THEN 'every order''s total_money = its line items'' totals + service charges + tip'
             ELSE format('%s orders whose total_money is not their line items'' totals + service charges + tip, e.g. %s',
                         n, array_to_string(ex, ', ')) END;

    SELECT count(*), (array_agg(li.order_id || '/' || li.uid ORDER BY li.order_id, li.uid))[1:5] INTO n, ex
    FROM square.order_line_items li
    WHERE li.total_money_amount IS DISTINCT FROM
          coalesce(li.gross_sales_money_amount, 0) - coalesce(li.total_discount_money_amount, 0)
          + coalesce(li.total_tax_money_amount, 0) + coalesce(li.total_service_charge_money_amount, 0);
    RETURN QUERY SELECT 'line item totals'::text, 'order_line_items'::text, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
        CASE WHEN n = 0 THEN 'every line item''s total_money = gross sales - discounts + taxes + service charges'
             ELSE format('%s line items whose total_money is not gross sales - discounts + taxes + service charges, e.g. %s',
                         n, array_to_string(ex, ', ')) END;

    SELECT count(*), (array_agg(li.order_id || '/' || li.uid ORDER BY li.order_id, li.uid))[1:5] INTO n, ex
    FROM square.order_line_items li WHERE li.quantity IS NULL OR li.quantity <= 0;
    RETURN QUERY SELECT 'quantities'::text, 'order_line_items'::text, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
        CASE WHEN n = 0 THEN 'every quantity is positive'
             ELSE format('%s line items without a positive quantity, e.g. %s', n, array_to_string(ex, ', ')) END;
    SELECT count(*), (array_agg(i.catalog_object_id || '@' || i.location_id ORDER BY 1))[1:5] INTO n, ex
    FROM square.catalog_inventory i WHERE i.quantity IS NULL OR i.quantity <> round(i.quantity, 5);
    RETURN QUERY SELECT 'quantities'::text, 'catalog_inventory'::text, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
        CASE WHEN n = 0 THEN 'every count has a quantity of at most 5 decimals'
             ELSE format('%s counts without a quantity of at most 5 decimals, e.g. %s', n, array_to_string(ex, ', ')) END;

    FOR x IN SELECT * FROM (VALUES
            ('orders', 'id', ARRAY['total_money_amount', 'total_tax_money_amount', 'total_discount_money_amount',
                                   'total_tip_money_amount', 'total_service_charge_money_amount']),
            ('order_line_items', 'uid', ARRAY['base_price_money_amount', 'gross_sales_money_amount', 'total_tax_money_amount',
                                              'total_discount_money_amount', 'total_money_amount']),
            ('tenders', 'id', ARRAY['amount_money_amount', 'tip_money_amount']),
            ('payments', 'id', ARRAY['amount_money_amount', 'tip_money_amount', 'total_money_amount']),
            ('payment_refunds', 'id', ARRAY['amount_money_amount'])
        ) v(tbl, idcol, cols) LOOP
        EXECUTE format('SELECT count(*), (array_agg(t.%I ORDER BY t.%I))[1:5] FROM square.%I t WHERE %s',
                       x.idcol, x.idcol, x.tbl,
                       (SELECT string_agg(format('t.%I < 0', c), ' OR ') FROM unnest(x.cols) c)) INTO n, ex;
        RETURN QUERY SELECT 'money'::text, x.tbl, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
            CASE WHEN n = 0 THEN format('no negative amount in %s', array_to_string(x.cols, ', '))
                 ELSE format('%s rows with a negative amount, e.g. %s', n, array_to_string(ex, ', ')) END;
    END LOOP;

    SELECT count(*), (array_agg(o.id ORDER BY o.id))[1:5] INTO n, ex
    FROM square.orders o
    WHERE EXISTS (
        SELECT 1 FROM (
            SELECT li.currency FROM square.order_line_items li WHERE li.merchant_id = o.merchant_id AND li.order_id = o.id
            UNION SELECT t.currency FROM square.tenders t WHERE t.merchant_id = o.merchant_id AND t.order_id = o.id
            UNION SELECT r.currency FROM square.order_returns r WHERE r.merchant_id = o.merchant_id AND r.order_id = o.id
            UNION SELECT r.currency FROM square.order_refunds r WHERE r.merchant_id = o.merchant_id AND r.order_id = o.id
            UNION SELECT o.currency
        ) c WHERE c.currency IS NOT NULL
        HAVING count(DISTINCT c.currency) > 1);
    RETURN QUERY SELECT 'one currency per order'::text, 'orders'::text, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
        CASE WHEN n = 0 THEN 'every order and its parts use one currency'
             ELSE format('%s orders mixing currencies, e.g. %s', n, array_to_string(ex, ', ')) END;

    -- The mapped columns against the stored object.
    FOR x IN SELECT DISTINCT r.table_name AS tbl, s.tombstone FROM squaresync._raw_columns() r
             JOIN squaresync.synced_tables s ON s.table_name = r.table_name ORDER BY 1 LOOP
        EXECUTE format($q$SELECT count(*), (array_agg(t.%1$I || ' (' || array_to_string(b.bad, ', ') || ')' ORDER BY t.%1$I))[1:5]
                          FROM square.%2$I t CROSS JOIN LATERAL (SELECT %3$s AS bad) b
                          WHERE cardinality(b.bad) > 0 %4$s$q$,
                       (squaresync._key_columns(x.tbl))[1], x.tbl, squaresync._raw_mismatch_sql(x.tbl, 't.raw'),
                       CASE WHEN x.tombstone THEN 'AND NOT t.is_deleted' ELSE '' END) INTO n, ex;
        RETURN QUERY SELECT 'columns match raw'::text, x.tbl, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
            CASE WHEN n = 0 THEN 'the mapped columns equal the stored objects'
                 ELSE format('%s rows whose columns differ from their raw object, e.g. %s', n, array_to_string(ex, ', ')) END;
    END LOOP;

    IF NOT deep THEN
        RETURN;
    END IF;

    -- Deep: against Square.
    sample_n := coalesce(nullif(btrim(current_setting('squaresync.validate_sample_size', true)), '')::integer, 50);
    SELECT c.merchant_id INTO m FROM squaresync.connection c;
    IF m IS NULL THEN
        RETURN QUERY SELECT 'deep'::text, NULL::text, 'fail'::text, 'squaresync is not connected to Square'::text;
        RETURN;
    END IF;

    -- Locations: all of them.
    resp := squaresync._square_request('GET', '/v2/locations', NULL);
    SELECT jsonb_agg(l.id) INTO ids FROM square.locations l WHERE l.merchant_id = m;
    SELECT st_.status, st_.detail INTO st, dt
    FROM squaresync._deep_compare('locations', coalesce(ids, '[]'), coalesce(resp -> 'locations', '[]'), 't.id', $k$o ->> 'id'$k$) st_;
    RETURN QUERY SELECT 'deep: matches Square'::text, 'locations'::text, st, dt;

    -- Catalog objects, by id (live rows: a tombstone's object may be gone).
    FOR x IN SELECT * FROM (VALUES ('catalog_categories'), ('catalog_items'), ('catalog_variations'),
                                   ('catalog_vendor_info')) v(tbl) LOOP
        EXECUTE format('SELECT jsonb_agg(id) FROM (SELECT id FROM square.%I WHERE merchant_id = $1 AND NOT is_deleted
                        ORDER BY random() LIMIT $2) s', x.tbl) INTO ids USING m, sample_n;
        fetched := '[]';
        FOR q IN SELECT jsonb_build_object('object_ids', jsonb_agg(v), 'include_deleted_objects', true)::text
                 FROM (SELECT v, (row_number() OVER () - 1) / 1000 AS chunk FROM jsonb_array_elements(ids) v) c
                 GROUP BY chunk LOOP
            resp := squaresync._square_request('POST', '/v2/catalog/batch-retrieve', q);
            fetched := fetched || coalesce(resp -> 'objects', '[]');
        END LOOP;
        IF x.tbl = 'catalog_vendor_info' THEN
            -- No raw: vendor, SKU and cost against item_variation_vendor_info_data.
            EXECUTE format($q$
                SELECT count(*), (array_agg(t.id ORDER BY t.id) FILTER (WHERE f.o IS NULL OR
                        t.vendor_id IS DISTINCT FROM f.o -> 'item_variation_vendor_info_data' ->> 'vendor_id' OR
                        t.sku IS DISTINCT FROM f.o -> 'item_variation_vendor_info_data' ->> 'sku' OR
                        t.price_amount IS DISTINCT FROM (f.o -> 'item_variation_vendor_info_data' -> 'price_money' ->> 'amount')::bigint))[1:5]
                FROM square.catalog_vendor_info t
                LEFT JOIN jsonb_array_elements($2) f(o) ON f.o ->> 'id' = t.id
                WHERE t.merchant_id = $3 AND t.id IN (SELECT v #>> '{}' FROM jsonb_array_elements($1) v)$q$)
            INTO n, ex USING coalesce(ids, '[]'), fetched, m;
            RETURN QUERY SELECT 'deep: matches Square'::text, x.tbl, CASE WHEN ex IS NULL THEN 'ok' ELSE 'fail' END,
                CASE WHEN ex IS NULL THEN format('%s sampled rows equal Square''s objects', n)
                     ELSE format('%s sampled rows; missing or different in Square: %s', n, array_to_string(ex, ', ')) END;
        ELSE
            SELECT st_.status, st_.detail INTO st, dt
            FROM squaresync._deep_compare(x.tbl, coalesce(ids, '[]'), fetched, 't.id', $k$o ->> 'id'$k$) st_;
            RETURN QUERY SELECT 'deep: matches Square'::text, x.tbl, st, dt;
        END IF;
    END LOOP;

    -- Inventory counts: the sampled counts' variations and locations, every page.
    SELECT jsonb_agg(jsonb_build_array(catalog_object_id, location_id, state)) INTO ids
    FROM (SELECT catalog_object_id, location_id, state FROM square.catalog_inventory WHERE merchant_id = m
          ORDER BY random() LIMIT sample_n) s;
    fetched := '[]';
    IF ids IS NOT NULL THEN
        cursor_ := NULL;
        LOOP
            resp := squaresync._square_request('POST', '/v2/inventory/counts/batch-retrieve',
                jsonb_strip_nulls(jsonb_build_object(
                    'catalog_object_ids', (SELECT jsonb_agg(DISTINCT k -> 0) FROM jsonb_array_elements(ids) k),
                    'location_ids', (SELECT jsonb_agg(DISTINCT k -> 1) FROM jsonb_array_elements(ids) k),
                    'cursor', cursor_))::text);
            fetched := fetched || coalesce(resp -> 'counts', '[]');
            cursor_ := resp ->> 'cursor';
            EXIT WHEN cursor_ IS NULL;
        END LOOP;
    END IF;
    SELECT st_.status, st_.detail INTO st, dt
    FROM squaresync._deep_compare('catalog_inventory',
            coalesce((SELECT jsonb_agg(concat_ws('|', k ->> 0, k ->> 1, k ->> 2)) FROM jsonb_array_elements(ids) k), '[]'),
            fetched, $k$concat_ws('|', t.catalog_object_id, t.location_id, t.state)$k$,
            $k$concat_ws('|', o ->> 'catalog_object_id', o ->> 'location_id', o ->> 'state')$k$) st_;
    RETURN QUERY SELECT 'deep: matches Square'::text, 'catalog_inventory'::text, st, dt;

    -- Vendors.
    SELECT jsonb_agg(id) INTO ids FROM (SELECT id FROM square.vendors WHERE merchant_id = m ORDER BY random() LIMIT sample_n) s;
    fetched := '[]';
    IF ids IS NOT NULL THEN
        resp := squaresync._square_request('POST', '/v2/vendors/bulk-retrieve', jsonb_build_object('vendor_ids', ids)::text);
        SELECT coalesce(jsonb_agg(v.value -> 'vendor') FILTER (WHERE v.value ? 'vendor'), '[]') INTO fetched
        FROM jsonb_each(coalesce(resp -> 'responses', '{}')) v;
    END IF;
    SELECT st_.status, st_.detail INTO st, dt
    FROM squaresync._deep_compare('vendors', coalesce(ids, '[]'), fetched, 't.id', $k$o ->> 'id'$k$) st_;
    RETURN QUERY SELECT 'deep: matches Square'::text, 'vendors'::text, st, dt;

    -- Orders, 100 ids a request.
    SELECT jsonb_agg(id) INTO ids FROM (SELECT id FROM square.orders WHERE merchant_id = m ORDER BY random() LIMIT sample_n) s;
    fetched := '[]';
    FOR q IN SELECT jsonb_build_object('order_ids', jsonb_agg(v))::text
             FROM (SELECT v, (row_number() OVER () - 1) / 100 AS chunk FROM jsonb_array_elements(ids) v) c
             GROUP BY chunk LOOP
        resp := squaresync._square_request('POST', '/v2/orders/batch-retrieve', q);
        fetched := fetched || coalesce(resp -> 'orders', '[]');
    END LOOP;
    SELECT st_.status, st_.detail INTO st, dt
    FROM squaresync._deep_compare('orders', coalesce(ids, '[]'), fetched, 't.id', $k$o ->> 'id'$k$) st_;
    RETURN QUERY SELECT 'deep: matches Square'::text, 'orders'::text, st, dt;

    -- Every live catalog object against Square's list: deletes and inserts the sync missed.
    list_ids := '{}';
    list_tps := '{}';
    cursor_ := NULL;
    LOOP
        resp := squaresync._square_request('GET', '/v2/catalog/list?types=ITEM,ITEM_VARIATION,CATEGORY'
            || CASE WHEN cursor_ IS NULL THEN '' ELSE '&cursor=' || replace(replace(replace(cursor_, '+', '%2B'), '/', '%2F'), '=', '%3D') END,
            NULL);
        SELECT list_ids || coalesce(array_agg(o ->> 'id'), '{}'), list_tps || coalesce(array_agg(o ->> 'type'), '{}')
        INTO list_ids, list_tps
        FROM jsonb_array_elements(coalesce(resp -> 'objects', '[]')) o;
        cursor_ := resp ->> 'cursor';
        EXIT WHEN cursor_ IS NULL;
    END LOOP;
    FOR x IN SELECT * FROM (VALUES ('catalog_categories', 'CATEGORY'), ('catalog_items', 'ITEM'),
                                   ('catalog_variations', 'ITEM_VARIATION')) v(tbl, typ) LOOP
        EXECUTE format($q$
            WITH sq AS (SELECT u.id FROM unnest($1, $2) u(id, typ) WHERE u.typ = $3),
            db AS (SELECT id FROM square.%I WHERE merchant_id = $4 AND NOT is_deleted)
            SELECT (SELECT array_agg(id ORDER BY id) FROM db WHERE id NOT IN (SELECT id FROM sq)),
                   (SELECT array_agg(id ORDER BY id) FROM sq WHERE id NOT IN (SELECT id FROM db))$q$, x.tbl)
        INTO ex, miss USING list_ids, list_tps, x.typ, m;
        RETURN QUERY SELECT 'deep: deletes missed'::text, x.tbl,
            CASE WHEN ex IS NULL THEN 'ok' ELSE 'fail' END,
            CASE WHEN ex IS NULL THEN format('every live %s is in Square''s catalog', x.typ)
                 ELSE format('%s live rows Square''s catalog no longer has, e.g. %s', cardinality(ex),
                             array_to_string(ex[1:5], ', ')) END;
        RETURN QUERY SELECT 'deep: inserts missed'::text, x.tbl,
            CASE WHEN miss IS NULL THEN 'ok' ELSE 'fail' END,
            CASE WHEN miss IS NULL THEN format('every %s in Square''s catalog is here and live', x.typ)
                 ELSE format('%s objects of Square''s catalog missing or deleted here, e.g. %s', cardinality(miss),
                             array_to_string(miss[1:5], ', ')) END;
    END LOOP;
END
$fn$;
-- 70_ops.sql: operations: the built-in schedule's decision, and the health view with its alerts.

-- What the launcher's maintenance worker should start now: 'foundation', 'incremental' or NULL.
-- A daily foundation at squaresync.foundation_at (UTC "HH:MM") if none started since today's slot;
-- else an incremental when the last run started squaresync.sync_interval ago or more, that interval
-- doubling after each consecutive failed run (at most 64x), so a rejected token or a Square outage
-- is not hammered. Missed slots are not replayed: one run, then the schedule goes on from it.
-- The arguments default to the settings (tests pass their own).
CREATE FUNCTION squaresync._scheduled_run_due(p_interval interval DEFAULT NULL, p_foundation_at text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    fa     text := coalesce(p_foundation_at, current_setting('squaresync.foundation_at', true), '');
    iv     interval := coalesce(p_interval,
                                coalesce(nullif(current_setting('squaresync.sync_interval', true), ''), '0')::interval);
    slot   timestamptz;
    last   timestamptz;
    fails  integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM squaresync.connection) THEN
        RETURN NULL;
    END IF;
    IF fa <> '' THEN
        slot := (date_trunc('day', now() AT TIME ZONE 'UTC') + fa::time) AT TIME ZONE 'UTC';
        IF now() >= slot AND NOT EXISTS (SELECT 1 FROM squaresync.sync_runs
                                         WHERE kind = 'foundation' AND started_at >= slot) THEN
            RETURN 'foundation';
        END IF;
    END IF;
    IF iv > interval '0' THEN
        SELECT max(started_at) INTO last FROM squaresync.sync_runs WHERE kind IN ('incremental', 'foundation');
        SELECT count(*) INTO fails FROM (
            SELECT status, sum(CASE WHEN status <> 'failed' THEN 1 ELSE 0 END) OVER (ORDER BY id DESC) AS ok_seen
            FROM squaresync.sync_runs WHERE kind IN ('incremental', 'foundation')) r
        WHERE r.ok_seen = 0;
        IF last IS NULL OR now() >= last + iv * power(2, least(fails, 6)) THEN
            RETURN 'incremental';
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

-- One row per synced table: how fresh it is, how its runs have gone, and what needs attention.
--   expected_interval: squaresync.sync_interval when set, else the median gap between recent runs.
--   stale: no successful sync for more than twice the expected interval (and at least a minute).
--   alerts: 'stale', 'failing repeatedly' (the stream's last 3 runs failed), 'duration trending up'
--   (last run over twice the median of the last 20, with at least 5 runs), 'rows diverge from the
--   last sync' (the table's row count differs from what the syncs left: squaresync.table_row_counts),
--   'endpoint retired (410)' (Square answered 410 GONE), 'rate limited' (429s in the last 24 hours),
--   'schedule inactive: ...' (squaresync.sync_interval is set but the launcher is not running).
CREATE VIEW squaresync.health AS
WITH cfg AS (
    SELECT nullif(coalesce(nullif(current_setting('squaresync.sync_interval', true), ''), '0')::interval,
                  interval '0') AS sync_interval
),
stream_runs AS (
    SELECT rs.stream, r.id, r.started_at, rs.status AS stream_status, rs.error_code,
           extract(epoch FROM r.duration)::double precision AS seconds, r.api_requests, r.rate_limited,
           row_number() OVER (PARTITION BY rs.stream ORDER BY r.id DESC) AS n
    FROM squaresync.sync_run_streams rs
    JOIN squaresync.sync_runs r ON r.id = rs.run_id
    WHERE r.kind <> 'rollback' AND r.status <> 'running'
),
per_stream AS (
    SELECT stream,
           max(seconds) FILTER (WHERE n = 1) AS last_duration,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE n <= 20) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE n <= 20) AS p95,
           count(*) FILTER (WHERE n <= 20) AS runs_20,
           max(api_requests) FILTER (WHERE n = 1) AS last_api_requests,
           bool_and(stream_status = 'failed') FILTER (WHERE n <= 3) AND count(*) FILTER (WHERE n <= 3) = 3 AS failing,
           max(error_code) FILTER (WHERE n = 1) AS last_error_code,
           count(*) FILTER (WHERE started_at > now() - interval '24 hours') AS runs_24h,
           count(*) FILTER (WHERE started_at > now() - interval '24 hours' AND stream_status = 'failed') AS failed_24h,
           coalesce(sum(rate_limited) FILTER (WHERE started_at > now() - interval '24 hours'), 0) AS rate_limited_24h,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE gap IS NOT NULL AND n <= 20) AS median_gap
    FROM (SELECT *, extract(epoch FROM started_at - lead(started_at) OVER (PARTITION BY stream ORDER BY id DESC)) AS gap
          FROM stream_runs) x
    GROUP BY stream
),
counts AS (
    SELECT t.table_name,
           (SELECT r.expected_rows FROM squaresync.table_row_counts r
             WHERE r.table_name = t.table_name
               AND r.merchant_id = (SELECT c.merchant_id FROM squaresync.connection c)) AS expected_rows,
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM square.%I WHERE merchant_id = %L',
                                                       t.table_name, (SELECT c.merchant_id FROM squaresync.connection c)),
                                                false, true, '')))[1]::text::bigint AS actual_rows
    FROM squaresync.synced_tables t
),
h AS (
    SELECT t.table_name, t.stream, s.merchant_id,
           now() - s.last_success_at AS freshness,
           coalesce(cfg.sync_interval, make_interval(secs => ps.median_gap)) AS expected_interval,
           s.last_status, s.last_error, ps.last_duration, ps.p50, ps.p95,
           (SELECT (lr.tables -> t.table_name ->> 'inserted')::bigint + (lr.tables -> t.table_name ->> 'updated')::bigint
                   + (lr.tables -> t.table_name ->> 'deleted')::bigint
              FROM squaresync.sync_runs lr WHERE lr.id = s.last_run_id) AS rows_changed,
           ps.last_api_requests,
           CASE WHEN ps.runs_24h > 0 THEN ps.failed_24h::double precision / ps.runs_24h END AS error_rate_24h,
           coalesce(ps.rate_limited_24h, 0) AS rate_limited_24h,
           coalesce(ps.failing, false) AS failing,
           ps.last_error_code, ps.runs_20,
           c.expected_rows, c.actual_rows
    FROM squaresync.synced_tables t
    CROSS JOIN cfg
    LEFT JOIN squaresync.stream_state s
           ON s.stream = t.stream AND s.merchant_id = (SELECT c.merchant_id FROM squaresync.connection c)
    LEFT JOIN per_stream ps ON ps.stream = t.stream
    LEFT JOIN counts c ON c.table_name = t.table_name
)
SELECT table_name, stream, merchant_id, freshness, expected_interval,
       coalesce(freshness > greatest(2 * expected_interval, interval '1 minute'), freshness IS NULL) AS stale,
       last_status, last_error,
       last_duration AS last_duration_seconds, p50 AS median_duration_seconds, p95 AS p95_duration_seconds,
       rows_changed, last_api_requests AS api_requests, error_rate_24h, rate_limited_24h,
       expected_rows, actual_rows,
       array_remove(ARRAY[
           CASE WHEN coalesce(freshness > greatest(2 * expected_interval, interval '1 minute'), freshness IS NULL)
                THEN 'stale' END,
           CASE WHEN failing THEN 'failing repeatedly' END,
           CASE WHEN runs_20 >= 5 AND last_duration > 2 * p50 AND last_duration > 1 THEN 'duration trending up' END,
           CASE WHEN expected_rows IS DISTINCT FROM actual_rows AND expected_rows IS NOT NULL
                THEN 'rows diverge from the last sync' END,
           CASE WHEN last_error_code = 'GONE' THEN 'endpoint retired (410)' END,
           CASE WHEN rate_limited_24h > 0 THEN 'rate limited' END,
           CASE WHEN (SELECT sync_interval FROM cfg) IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'squaresync launcher')
                THEN 'schedule inactive: squaresync is not in shared_preload_libraries' END
       ], NULL) AS alerts
FROM h
ORDER BY stream, table_name;
-- 90_dump_and_grants.sql: what pg_dump keeps, and what PUBLIC may not do. Keep this part last.

SELECT pg_catalog.pg_extension_config_dump('squaresync.connection', '');
SELECT pg_catalog.pg_extension_config_dump('squaresync.sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('squaresync.sync_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('squaresync.sync_run_streams', '');
SELECT pg_catalog.pg_extension_config_dump('squaresync.stream_state', '');
SELECT pg_catalog.pg_extension_config_dump('squaresync.changes', '');
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT table_name FROM squaresync.synced_tables LOOP
        PERFORM pg_catalog.pg_extension_config_dump(format('square.%I', t)::regclass, '');
    END LOOP;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA squaresync FROM PUBLIC;
