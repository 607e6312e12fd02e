-- squaresync--0.1.0.sql: the extension's objects. Schema "square" holds the synced data; schema
-- "squaresync" holds the control plane (connection, runs, watermarks, audit, staging, functions).
-- The C++ table descriptions (src/core/tables.cpp) must list the same columns as the DDL below:
-- squaresync._schema_mismatches() compares them and the regression suite asserts it returns nothing.

\echo Use "CREATE EXTENSION squaresync" to load this file. \quit

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
    triggered_by   text
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

CREATE FUNCTION squaresync._apply_table(p_run bigint, p_merchant text, p_table text, p_full boolean)
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
                   CASE WHEN j.is_new THEN %14$s
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
    EXECUTE q INTO result USING p_run, p_merchant;
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
        c := squaresync._apply_table(p_run, p_merchant, t.table_name, p_full OR p_stream IN ('locations', 'vendors'));
        counts := counts || jsonb_build_object(t.table_name, c);
    END LOOP;

    -- Availability follows the catalog and the locations.
    IF p_stream = 'catalog' OR (p_stream = 'locations' AND EXISTS
           (SELECT 1 FROM square.catalog_variations WHERE merchant_id = p_merchant)) THEN
        PERFORM squaresync._stage_availability(p_merchant);
        c := squaresync._apply_table(p_run, p_merchant, 'catalog_location_availability', true);
        counts := counts || jsonb_build_object('catalog_location_availability', c);
    END IF;

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
       SET tables = r.tables || counts,
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

--------------------------------------------------------------------------------------------------
-- Status views.
--------------------------------------------------------------------------------------------------

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
LEFT JOIN squaresync.stream_state s ON s.stream = t.stream
LEFT JOIN squaresync.sync_runs lr ON lr.id = s.last_run_id
ORDER BY t.apply_order;

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
