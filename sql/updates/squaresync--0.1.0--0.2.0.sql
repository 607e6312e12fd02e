-- squaresync--0.1.0--0.2.0.sql: from release 0.1.0 to the development version 0.2.0.
-- Every change to sql/install/*.sql after 0.1.0 gets its migration here, so that an existing
-- installation reaches exactly what a fresh CREATE EXTENSION builds (test/e2e/test_upgrade.py
-- compares the two catalogs object by object).

\echo Use "ALTER EXTENSION squaresync UPDATE TO '0.2.0'" to load this file. \quit

-- 80_privileges.sql: squaresync.sync_role support.
ALTER FUNCTION squaresync._analyze_if_large(text, text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION squaresync.grant_sync_privileges(role_name name)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE f regprocedure;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA square, squaresync TO %I', role_name);
    EXECUTE format('GRANT SELECT ON squaresync.connection TO %I', role_name);
    -- Every table of both schemas but the seller's own operating_seasons (the token: read only).
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON %s TO %I',
                   (SELECT string_agg(c.oid::regclass::text, ', ') FROM pg_class c
                     WHERE c.relnamespace IN ('square'::regnamespace, 'squaresync'::regnamespace)
                       AND c.relkind = 'r' AND c.oid NOT IN ('squaresync.connection'::regclass,
                                                             'square.operating_seasons'::regclass)), role_name);
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'squaresync'::regnamespace AND p.proname LIKE '\_%' LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, role_name);
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION squaresync.grant_sync_privileges(name) IS
    'Grants a role exactly what a sync worker needs, for squaresync.sync_role.';
REVOKE ALL ON FUNCTION squaresync.grant_sync_privileges(name) FROM PUBLIC;

-- 60_audit.sql: a rollback rebuilds the export through _after_run, as a sync run does.
CREATE OR REPLACE FUNCTION squaresync._rollback_one(p_run bigint, p_reason text)
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
    PERFORM squaresync._after_run(new_id, r.merchant_id);

    -- The watermarks go back to where they stood before the run, or stay where they are when that
    -- is earlier still (an earlier run rolled back before this one): the next sync fetches the
    -- windows of both again.
    INSERT INTO squaresync.sync_run_streams (run_id, stream, status, watermark_before, watermark_after, applied_at)
    SELECT new_id, rs.stream, 'succeeded', s.watermark, squaresync._earliest_watermark(s.watermark, rs.watermark_before), now()
    FROM squaresync.sync_run_streams rs
    LEFT JOIN squaresync.stream_state s ON s.merchant_id = r.merchant_id AND s.stream = rs.stream
    WHERE rs.run_id = p_run AND rs.status = 'succeeded';
    UPDATE squaresync.stream_state s
       SET watermark = squaresync._earliest_watermark(s.watermark, rs.watermark_before), last_run_id = new_id,
           updated_at = now()
      FROM squaresync.sync_run_streams rs
     WHERE rs.run_id = p_run AND rs.status = 'succeeded' AND s.merchant_id = r.merchant_id AND s.stream = rs.stream;
    UPDATE squaresync.sync_run_streams SET status = 'rolled_back' WHERE run_id = p_run AND status = 'succeeded';
    -- A stream's last success is again the latest sync that applied it and still stands (none: NULL).
    UPDATE squaresync.stream_state s
       SET (last_success_run_id, last_success_at) = (
               SELECT x.run_id, x.applied_at
               FROM squaresync.sync_run_streams x JOIN squaresync.sync_runs xr ON xr.id = x.run_id
               WHERE x.stream = s.stream AND x.status = 'succeeded' AND xr.merchant_id = s.merchant_id
                 AND xr.kind <> 'rollback'
               ORDER BY x.run_id DESC LIMIT 1)
     WHERE s.merchant_id = r.merchant_id AND s.last_success_run_id = p_run;

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

-- 30_apply.sql: staging tables analyzed with a small statistics target.
CREATE FUNCTION squaresync._stage_statistics()
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE a record;
BEGIN
    FOR a IN SELECT t.table_name, at.attname,
                    at.attname::text = ANY (squaresync._key_columns(t.table_name) || t.parent_column || '_batch'::text) AS joined
             FROM squaresync.synced_tables t
             JOIN pg_attribute at ON at.attrelid = format('squaresync.%I', 'stage_' || t.table_name)::regclass
             WHERE at.attnum > 0 AND NOT at.attisdropped LOOP
        EXECUTE format('ALTER TABLE squaresync.%I ALTER COLUMN %I SET STATISTICS %s',
                       'stage_' || a.table_name, a.attname, CASE WHEN a.joined THEN 10 ELSE 0 END);
    END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION squaresync._stage_statistics() FROM PUBLIC;
SELECT squaresync._stage_statistics();

-- 10_data_tables.sql and 55_derived.sql: square_sales reads the touched (location, day) pairs'
-- orders through an index on closed_at (the orders CTE inlined into each branch).
CREATE INDEX ON square.orders (merchant_id, location_id, closed_at);
CREATE OR REPLACE FUNCTION squaresync._sales_rows(p_merchant text, p_locations text[], p_days date[],
                                       p_whole_locations text[])
RETURNS SETOF square.square_sales LANGUAGE sql STABLE AS $$
    WITH pairs AS (
        SELECT DISTINCT u.location_id, u.day FROM unnest(p_locations, p_days) AS u(location_id, day)
        WHERE NOT (u.location_id = ANY (coalesce(p_whole_locations, '{}')))
    ),
    o AS NOT MATERIALIZED (  -- read by both branches below: inlined into each, so the pairs use the index
        SELECT o.id, o.location_id, o.currency, o.closed_at,
               (o.closed_at AT TIME ZONE coalesce(l.timezone, 'UTC'))::date AS day
        FROM square.orders o
        LEFT JOIN square.locations l ON l.merchant_id = o.merchant_id AND l.id = o.location_id
        WHERE o.merchant_id = p_merchant AND o.state = 'COMPLETED' AND o.closed_at IS NOT NULL
          AND o.location_id IS NOT NULL
    ),
    -- Every order (no filter), or those of whole locations, or those of the pairs' days: each
    -- pair reads its location's orders closed within a day of it (time zones are within 14 hours
    -- of UTC) through the (merchant_id, location_id, closed_at) index.
    sel AS MATERIALIZED (
        SELECT o.id, o.location_id, o.currency, o.day FROM o
        WHERE (p_locations IS NULL AND p_whole_locations IS NULL) OR o.location_id = ANY (p_whole_locations)
        UNION ALL
        SELECT o.id, o.location_id, o.currency, o.day FROM pairs p
        JOIN o ON o.location_id = p.location_id
              AND o.closed_at >= (p.day - 1)::timestamp AT TIME ZONE 'UTC'
              AND o.closed_at < (p.day + 2)::timestamp AT TIME ZONE 'UTC'
              AND o.day = p.day
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

-- 55_derived.sql: the item library's category names and first vendor info computed once per item
-- and variation, not once per location; all of the library or the rows of some variations.
DROP FUNCTION squaresync._item_library_rows(text);
CREATE FUNCTION squaresync._item_library_rows(p_merchant text, p_variations text[] DEFAULT NULL)
RETURNS SETOF square.square_item_library_export LANGUAGE sql STABLE AS $$
    -- Per item and per variation once (not once per location): category names, first vendor info.
    WITH cats AS (
        SELECT i.id AS item_id, string_agg(c.name, ', ' ORDER BY u.ord) AS names
        FROM square.catalog_items i
        CROSS JOIN LATERAL unnest(i.category_ids) WITH ORDINALITY AS u(id, ord)
        JOIN square.catalog_categories c ON c.merchant_id = i.merchant_id AND c.id = u.id AND NOT c.is_deleted
        WHERE i.merchant_id = p_merchant
          AND (p_variations IS NULL OR i.id IN (SELECT item_id FROM square.catalog_variations
                                                WHERE merchant_id = p_merchant AND id = ANY (p_variations)))
        GROUP BY i.id
    ),
    vi AS (
        SELECT DISTINCT ON (x.variation_id) x.*
        FROM square.catalog_vendor_info x
        WHERE x.merchant_id = p_merchant AND NOT x.is_deleted
          AND (p_variations IS NULL OR x.variation_id = ANY (p_variations))
        ORDER BY x.variation_id, x.ordinal NULLS LAST, x.id
    ),
    -- The IN_STOCK counts hashed once (an index probe per variation and location costs 3x more).
    inv AS MATERIALIZED (
        SELECT catalog_object_id, location_id, quantity FROM square.catalog_inventory
        WHERE merchant_id = p_merchant AND state = 'IN_STOCK'
          AND (p_variations IS NULL OR catalog_object_id = ANY (p_variations))
    )
    SELECT a.merchant_id, a.variation_id, a.location_id, v.item_id,
           i.name, v.name, v.sku, i.description_plaintext,
           cats.names,
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
    LEFT JOIN cats ON cats.item_id = i.id
    LEFT JOIN vi ON vi.variation_id = v.id
    LEFT JOIN square.vendors vd ON vd.merchant_id = vi.merchant_id AND vd.id = vi.vendor_id
    LEFT JOIN inv ON inv.catalog_object_id = a.variation_id AND inv.location_id = a.location_id
    WHERE a.merchant_id = p_merchant AND NOT v.is_deleted AND NOT i.is_deleted
      AND (p_variations IS NULL OR a.variation_id = ANY (p_variations))
$$;
REVOKE ALL ON FUNCTION squaresync._item_library_rows(text, text[]) FROM PUBLIC;

-- 30_apply.sql: a synced table is analyzed after its first rows too.
CREATE OR REPLACE FUNCTION squaresync._analyze_if_large(p_schema text, p_table text, p_counts jsonb)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    changed bigint;
    est     double precision;
BEGIN
    SELECT reltuples INTO est FROM pg_class WHERE oid = format('%I.%I', p_schema, p_table)::regclass;
    IF p_counts IS NULL THEN
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %I.%I LIMIT 10001) x', p_schema, p_table) INTO changed;
        IF changed > 0 AND (est < 0 OR est < changed / 2) THEN
            EXECUTE format('ANALYZE %I.%I', p_schema, p_table);
        END IF;
        RETURN;
    END IF;
    changed := (p_counts ->> 'inserted')::bigint + (p_counts ->> 'updated')::bigint + (p_counts ->> 'deleted')::bigint;
    IF (changed > 0 AND est < 0) OR (changed > 1000 AND (est = 0 OR changed > est / 10)) THEN
        EXECUTE format('ANALYZE %I.%I', p_schema, p_table);
    END IF;
END
$fn$;
ALTER FUNCTION squaresync._analyze_if_large(text, text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- 20_control.sql, 30_apply.sql: each synced table's key and data columns read from the catalog once,
-- into synced_tables, not by every apply; empty staging tables not truncated.
ALTER TABLE squaresync.synced_tables ADD COLUMN key_columns text[], ADD COLUMN data_columns text[];
CREATE FUNCTION squaresync._set_column_lists()
RETURNS void LANGUAGE sql AS $$
    UPDATE squaresync.synced_tables t
       SET key_columns = (SELECT array_agg(a.attname::text ORDER BY k.ord)
                          FROM pg_constraint c
                          CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                          WHERE c.conrelid = format('square.%I', t.table_name)::regclass AND c.contype = 'p'
                            AND a.attname <> 'merchant_id'),
           data_columns = (SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}')
                           FROM pg_attribute a
                           WHERE a.attrelid = format('square.%I', t.table_name)::regclass
                             AND a.attnum > 0 AND NOT a.attisdropped
                             AND a.attname NOT IN ('merchant_id', 'synced_at')
                             AND a.attnum <> ALL ((SELECT c.conkey FROM pg_constraint c
                                                   WHERE c.conrelid = a.attrelid AND c.contype = 'p')::int2[]));
$$;
SELECT squaresync._set_column_lists();
REVOKE ALL ON FUNCTION squaresync._set_column_lists() FROM PUBLIC;
CREATE OR REPLACE FUNCTION squaresync._key_columns(p_table text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT key_columns FROM squaresync.synced_tables WHERE table_name = p_table
$$;
CREATE OR REPLACE FUNCTION squaresync._data_columns(p_table text, p_keys boolean)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_keys THEN key_columns ELSE data_columns END
    FROM squaresync.synced_tables WHERE table_name = p_table
$$;
CREATE FUNCTION squaresync._staged_tables(p_tables text[])
RETURNS text[] LANGUAGE plpgsql AS $fn$
DECLARE
    filled text[];
BEGIN
    IF cardinality(p_tables) > 0 THEN
        EXECUTE 'SELECT array_agg(t) FROM ('
                || (SELECT string_agg(format('SELECT %L::text WHERE EXISTS (SELECT FROM squaresync.%I)', t, 'stage_' || t),
                                      ' UNION ALL ') FROM unnest(p_tables) t)
                || ') x(t)' INTO filled;
    END IF;
    RETURN coalesce(filled, '{}');
END
$fn$;
REVOKE ALL ON FUNCTION squaresync._staged_tables(text[]) FROM PUBLIC;
CREATE OR REPLACE FUNCTION squaresync._clear_staging(p_stream text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    t  text;
    n  bigint;
BEGIN
    FOREACH t IN ARRAY squaresync._staged_tables(array(SELECT table_name FROM squaresync.synced_tables
                                                       WHERE p_stream IS NULL OR stream = p_stream)) LOOP
        EXECUTE format('SELECT count(*) FROM (SELECT FROM squaresync.%I LIMIT 5001) x', 'stage_' || t) INTO n;
        IF n > 5000 THEN
            EXECUTE format('TRUNCATE squaresync.%I', 'stage_' || t);
        ELSIF n > 0 THEN
            EXECUTE format('DELETE FROM squaresync.%I', 'stage_' || t);
        END IF;
    END LOOP;
END
$fn$;

-- 30_apply.sql: _apply_table takes a scope (an incremental catalog recomputes the availability of
-- the variations it changed only) and a child table's chosen parents (_chosen_parents_sql, read once
-- for all the children of a parent); an update's audit records the columns that changed, compared
-- as stored.
DROP FUNCTION squaresync._apply_table(bigint, text, text, boolean, boolean);
CREATE FUNCTION squaresync._chosen_parents_sql(p_parent text)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    g       text := (SELECT guard_column FROM squaresync.synced_tables WHERE table_name = p_parent);
    parents text;
BEGIN
    IF g IS NULL THEN
        parents := format('SELECT id, max(_batch) FROM squaresync.%I GROUP BY id', 'stage_' || p_parent);
    ELSE
        parents := format('SELECT sp.id, sp._batch FROM (SELECT DISTINCT ON (id) id, _batch, %1$I AS g'
                          ' FROM squaresync.%2$I ORDER BY id, %1$I DESC NULLS LAST, _batch DESC, _ord DESC) sp'
                          ' LEFT JOIN square.%3$I tp ON tp.merchant_id = $1 AND tp.id = sp.id'
                          ' WHERE NOT coalesce(sp.g < tp.%1$I, false)',
                          g, 'stage_' || p_parent, p_parent);
    END IF;
    RETURN format('SELECT coalesce(array_agg(x.id), ''{}''), coalesce(array_agg(x._batch), ''{}'') FROM (%s) x(id, _batch)',
                  parents);
END
$fn$;
REVOKE ALL ON FUNCTION squaresync._chosen_parents_sql(text) FROM PUBLIC;
CREATE FUNCTION squaresync._apply_table(p_run bigint, p_merchant text, p_table text, p_full boolean,
                                        p_keys_only_inserts boolean DEFAULT false,
                                        p_scope_column text DEFAULT NULL, p_scope_keys text[] DEFAULT NULL,
                                        p_parent_ids text[] DEFAULT NULL, p_parent_batches bigint[] DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    d        squaresync.synced_tables%ROWTYPE;
    keys     text[];
    cols     text[];
    allc     text[];
    key_join text;
    s_cols   text;
    order_by text;
    src      text;
    scope    text;
    del_sql  text;
    after_ins text;
    all_list text;
    pk_json  text;
    img      text;
    has_raw  boolean;
    q        text;
    result   jsonb;
    empty    boolean;
    j_from   text;
    t_row    text;
    is_gone  text;
    gone_sql text;
BEGIN
    SELECT * INTO STRICT d FROM squaresync.synced_tables WHERE table_name = p_table;
    keys := d.key_columns;
    cols := d.data_columns;
    has_raw := 'raw' = ANY (cols);
    allc := keys || cols;
    key_join := (SELECT string_agg(format('t.%1$I = s.%1$I', k), ' AND ') FROM unnest(keys) k);
    s_cols := (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c);
    pk_json := (SELECT 'jsonb_build_object(' || string_agg(format('%L, %s.%I', k, '%1$s', k), ', ') || ')' FROM unnest(keys) k);
    after_ins := (SELECT 'jsonb_build_object(' || string_agg(format('%L, j.%I', c, c), ', ') || ')'
                  FROM unnest(allc) c WHERE c <> 'raw');
    all_list := (SELECT string_agg(format('%I', c), ', ') FROM unnest(allc) c);
    -- A stored row's image for the audit: every column but raw, which goes to before_raw as stored
    -- (embedding it in the image would re-encode the whole object, token by token).
    img := (SELECT 'jsonb_build_object(' || string_agg(format('%L, (%s).%I', c, '%1$s', c), ', ') || ')'
            FROM unnest(ARRAY['merchant_id'] || allc || ARRAY['synced_at']) c WHERE c <> 'raw');

    -- The staged rows, one per key: the newest by the guard column, then the latest page.
    -- A child's rows come only from the staged copy of its parent that the parent's apply chose
    -- (the same order), and only when that copy was not older than the stored parent by the
    -- parent's guard: the children of a parent left alone are left alone too (the parent is applied
    -- first, in the same transaction, so the stored parent is the outcome).
    order_by := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k)
                || CASE WHEN d.guard_column IS NOT NULL THEN format(', %I DESC NULLS LAST', d.guard_column) ELSE '' END
                || ', _batch DESC, _ord DESC';
    src := format('SELECT DISTINCT ON (%s) * FROM squaresync.%I c', (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k), 'stage_' || p_table);
    IF d.parent_table IS NOT NULL THEN
        IF p_parent_ids IS NULL THEN
            EXECUTE squaresync._chosen_parents_sql(d.parent_table) INTO p_parent_ids, p_parent_batches USING p_merchant;
        END IF;
        src := src || format(' WHERE (c.%I, c._batch) IN (SELECT * FROM unnest($5::text[], $6::bigint[]))', d.parent_column);
    END IF;
    src := src || ' ORDER BY ' || order_by;

    -- Into a table that holds nothing of the merchant (a foundation's), every staged row is an
    -- insert: the same rows and audit without the join, the comparison and their materializations.
    EXECUTE format('SELECT NOT EXISTS (SELECT FROM square.%I WHERE merchant_id = $1)', p_table)
        INTO empty USING p_merchant;
    IF empty THEN
        q := format($q$
            WITH ins AS (
                INSERT INTO square.%2$I AS j (merchant_id, %3$s) SELECT $2, %3$s FROM (%1$s) s
                RETURNING %6$s
            ),
            audit AS (
                INSERT INTO squaresync.changes (run_id, table_name, pk, op, before, after)
                SELECT $1, %2$L, %4$s, 'insert', NULL, CASE WHEN $3 THEN NULL ELSE %5$s END FROM ins j
            )
            SELECT jsonb_build_object('inserted', (SELECT count(*) FROM ins), 'updated', 0, 'deleted', 0,
                                      'unchanged', 0)
            $q$,
            src, p_table, all_list, format(pk_json, 'j'),
            CASE WHEN p_full AND p_keys_only_inserts THEN 'NULL::jsonb' ELSE after_ins END,
            -- What the audit reads back: the keys, or every column but raw (an order's raw JSON
            -- is kilobytes, and RETURNING keeps every returned row until the audit reads it).
            (SELECT string_agg(format('j.%I', c), ', ') FROM unnest(allc) c
             WHERE c = ANY (keys) OR (c <> 'raw' AND NOT (p_full AND p_keys_only_inserts))));
        EXECUTE q INTO result USING p_run, p_merchant, p_full AND p_keys_only_inserts, p_scope_keys, p_parent_ids, p_parent_batches;
        RETURN result;
    END IF;

    -- Which stored rows may vanish: all of them on a full read, the children of re-read parents.
    IF p_full THEN
        scope := 'true';
    ELSIF d.parent_table IS NOT NULL THEN
        scope := format('t.%I = ANY ($5)', d.parent_column);
    ELSE
        scope := 'false';
    END IF;
    IF p_scope_column IS NOT NULL THEN
        scope := format('t.%I = ANY ($4)', p_scope_column);
    END IF;

    -- The stored rows the staged ones are compared with, and those that vanished. In an incremental
    -- run, children keyed by their parent (an order's parts): the stored children of the re-read
    -- parents, read once by parent (an index range scan each) and full-joined with the staged
    -- children on the key, which finds the changed, the new and the vanished ones in one pass (a
    -- probe per staged child and a second scan for the vanished cost twice that; most parts of a
    -- changed order are unchanged). Otherwise: each staged row's stored row by key, and the stored
    -- rows in scope that nothing staged matches.
    IF d.parent_column = ANY (keys) AND NOT p_full AND p_scope_column IS NULL THEN
        j_from := format('s FULL JOIN (SELECT t.*, t AS t_row FROM square.%I t WHERE t.merchant_id = $2 AND %s) t ON %s',
                         p_table, scope, key_join);
        t_row := 't.t_row';
        is_gone := 's._batch IS NULL';
        gone_sql := 'SELECT t_row FROM j WHERE is_gone'
                    || CASE WHEN d.tombstone THEN ' AND NOT (t_row).is_deleted' ELSE '' END;
    ELSE
        j_from := format('s LEFT JOIN square.%I t ON t.merchant_id = $2 AND %s', p_table, key_join);
        t_row := 't';
        is_gone := 'false';
        gone_sql := format('SELECT t AS t_row FROM square.%I t WHERE t.merchant_id = $2 AND %s%s'
                           ' AND NOT EXISTS (SELECT 1 FROM s WHERE %s)',
                           p_table, scope, CASE WHEN d.tombstone THEN ' AND NOT t.is_deleted' ELSE '' END, key_join);
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
            SELECT s.*, %24$s AS t_row, (t.merchant_id IS NULL) AS is_new, %18$s AS is_del, %25$s AS is_gone,
                   ROW(%4$s) IS DISTINCT FROM ROW(%5$s) %6$s AS is_changed
            FROM %3$s
        ),
        d AS MATERIALIZED (
            SELECT * FROM j WHERE NOT is_gone AND (is_new OR is_changed)
        ),
        gone AS MATERIALIZED (%7$s),
        ins AS (
            INSERT INTO square.%2$I (merchant_id, %8$s) SELECT $2, %8$s FROM d WHERE is_new
        ),
        upd AS (
            UPDATE square.%2$I t SET (%9$s, synced_at) = (%10$s, now())
            FROM d s WHERE NOT s.is_new AND t.merchant_id = $2 AND %26$s
        ),
        del AS (%11$s),
        audit AS (
            INSERT INTO squaresync.changes (run_id, table_name, pk, op, before, after, before_raw, after_raw)
            SELECT $1, %12$L, %13$s,
                   CASE WHEN j.is_new THEN 'insert' WHEN j.is_del THEN 'delete' ELSE 'update' END,
                   CASE WHEN j.is_new THEN NULL ELSE %19$s END,
                   CASE WHEN j.is_new THEN CASE WHEN $3 THEN NULL ELSE %14$s END
                        ELSE %15$s END,
                   %20$s, %21$s
            FROM d j
            UNION ALL
            SELECT $1, %12$L, %16$s, 'delete', %22$s, %17$s, %23$s, NULL::jsonb
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
        j_from,                                                                -- 3
        -- Changed: the staged row differs from the stored one (compared column by column, as
        -- stored), and is not older by the guard column.
        s_cols,                                                                -- 4
        (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c),      -- 5
        CASE WHEN d.guard_column IS NOT NULL
             THEN format('AND NOT coalesce(s.%1$I < t.%1$I, false)', d.guard_column) ELSE '' END,  -- 6
        gone_sql,                                                              -- 7
        all_list,                                                              -- 8
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),        -- 9
        s_cols,                                                                -- 10
        del_sql,                                                               -- 11
        p_table,                                                               -- 12
        format(pk_json, 'j'),                                                  -- 13
        after_ins,                                                             -- 14
        -- An update's after: the columns that changed, compared as stored (not as JSON): every
        -- column less those equal to the stored ones (jsonb - text[] skips the NULLs).
        (SELECT format('(jsonb_build_object(%s) - ARRAY[%s]::text[])',
                       string_agg(format('%1$L, j.%1$I', c), ', '),
                       string_agg(format('CASE WHEN j.%1$I IS NOT DISTINCT FROM (j.t_row).%1$I THEN %1$L END', c), ', '))
         FROM unnest(cols) c WHERE c <> 'raw'),                                -- 15
        (SELECT 'jsonb_build_object(' || string_agg(format('%L, (g.t_row).%I', k, k), ', ') || ')' FROM unnest(keys) k), -- 16
        CASE WHEN d.tombstone THEN $j$jsonb_build_object('is_deleted', true, 'deleted_at', now())$j$ ELSE 'NULL::jsonb' END, -- 17
        -- A tombstone Square sends for a live row is that row's deletion.
        CASE WHEN d.tombstone THEN '(t.merchant_id IS NOT NULL AND s.is_deleted AND NOT t.is_deleted)' ELSE 'false' END, -- 18
        format(img, 'j.t_row'),                                                -- 19
        -- raw as stored: the row's before an update or delete, the new one when it changed.
        CASE WHEN has_raw THEN '(CASE WHEN j.is_new THEN NULL ELSE (j.t_row).raw END)' ELSE 'NULL::jsonb' END, -- 20
        CASE WHEN has_raw THEN '(CASE WHEN NOT j.is_new AND j.raw IS DISTINCT FROM (j.t_row).raw THEN j.raw END)'
             ELSE 'NULL::jsonb' END,                                           -- 21
        format(img, 'g.t_row'),                                                -- 22
        CASE WHEN has_raw THEN '(g.t_row).raw' ELSE 'NULL::jsonb' END,         -- 23
        t_row,                                                                 -- 24
        is_gone,                                                               -- 25
        key_join                                                               -- 26
    );
    EXECUTE q INTO result USING p_run, p_merchant, p_full AND p_keys_only_inserts, p_scope_keys, p_parent_ids, p_parent_batches;
    RETURN result;
END
$fn$;
REVOKE ALL ON FUNCTION squaresync._apply_table(bigint, text, text, boolean, boolean, text, text[], text[], bigint[]) FROM PUBLIC;
DROP FUNCTION squaresync._stage_availability(text);
CREATE FUNCTION squaresync._stage_availability(p_merchant text, p_variations text[] DEFAULT NULL)
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
    WHERE v.merchant_id = p_merchant AND NOT v.is_deleted AND NOT i.is_deleted
      AND (p_variations IS NULL OR v.id = ANY (p_variations));
$$;
REVOKE ALL ON FUNCTION squaresync._stage_availability(text, text[]) FROM PUBLIC;
-- 30_apply.sql: a foundation into empty tables makes their secondary indexes and foreign keys
-- again after the rows are in.
-- Applies one fetched stream in the caller's transaction: every table of the stream in order,
-- then what derives from it, then the watermark and the run's counters. Returns the counts.
-- A foundation into tables that hold nothing at all (a first load) loads them as pg_restore does:
-- the secondary indexes of the stream's tables and the foreign keys among them are dropped, and made
-- again once the rows are in, each index from one sort of its rows and each foreign key checked by
-- one join, instead of both kept up row by row (a foundation's line items queued one deferred check
-- per row, each an index probe at commit). It holds an exclusive lock on the stream's tables until
-- the stream commits, so it is only done when that lock is free at once (NOWAIT) and no other
-- trigger would fire on them, and by their owner (not by a squaresync.sync_role that only writes
-- rows); otherwise the rows go in as in any run. Readers of those tables wait
-- for the commit instead of seeing them empty. Returns the statements that make them again (in
-- order: indexes, then foreign keys), or NULL when the rows go in as in any run.
CREATE FUNCTION squaresync._bulk_load_begin(p_stream text)
RETURNS text[] LANGUAGE plpgsql AS $fn$
DECLARE
    rels  regclass[];
    rel   regclass;
    full_ boolean;
    r     record;
    redo  text[] := '{}';
    fks   text[] := '{}';
BEGIN
    SELECT array_agg(format('square.%I', table_name)::regclass ORDER BY apply_order) INTO rels
    FROM squaresync.synced_tables WHERE stream = p_stream AND NOT derived;
    IF rels IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM pg_class c WHERE c.oid = ANY (rels) AND NOT pg_has_role(c.relowner, 'USAGE')) THEN
        RETURN NULL;
    END IF;
    -- Only the foreign keys' own triggers: a trigger of the seller's would fire between the rows.
    IF EXISTS (SELECT FROM pg_trigger g
               WHERE g.tgrelid = ANY (rels) AND g.tgenabled <> 'D'
                 AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.oid = g.tgconstraint AND c.contype = 'f')) THEN
        RETURN NULL;
    END IF;
    -- Nor a foreign key to a table outside the stream: its checks, queued by the rows, would keep
    -- the table from being altered or indexed before the commit ("pending trigger events").
    IF EXISTS (SELECT FROM pg_constraint c
               WHERE c.contype = 'f' AND c.conrelid = ANY (rels) AND NOT c.confrelid = ANY (rels)) THEN
        RETURN NULL;
    END IF;
    FOREACH rel IN ARRAY rels LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %s)', rel) INTO full_;
        IF full_ THEN
            RETURN NULL;
        END IF;
    END LOOP;
    BEGIN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT',
                       (SELECT string_agg(x::text, ', ') FROM unnest(rels) x));
    EXCEPTION WHEN lock_not_available THEN
        RETURN NULL;
    END;
    FOR r IN SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def, ts.spcname,
                    obj_description(i.indexrelid, 'pg_class') AS note
             FROM pg_index i
             JOIN pg_class ic ON ic.oid = i.indexrelid
             LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
             WHERE i.indrelid = ANY (rels) AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
               AND NOT i.indisreplident AND i.indisvalid
             ORDER BY i.indexrelid LOOP
        EXECUTE format('DROP INDEX %s', r.name);
        redo := redo || (r.def || coalesce(' TABLESPACE ' || quote_ident(r.spcname), ''));
        IF r.note IS NOT NULL THEN
            redo := redo || format('COMMENT ON INDEX %s IS %L', r.name, r.note);
        END IF;
    END LOOP;
    FOR r IN SELECT c.conrelid::regclass::text AS rel, c.conname, pg_get_constraintdef(c.oid) AS def,
                    obj_description(c.oid, 'pg_constraint') AS note
             FROM pg_constraint c
             WHERE c.contype = 'f' AND c.conrelid = ANY (rels) AND c.confrelid = ANY (rels)
             ORDER BY c.oid LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
        fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.conname, r.def);
        IF r.note IS NOT NULL THEN
            fks := fks || format('COMMENT ON CONSTRAINT %I ON %s IS %L', r.conname, r.rel, r.note);
        END IF;
    END LOOP;
    RETURN redo || fks;
END
$fn$;
REVOKE ALL ON FUNCTION squaresync._bulk_load_begin(text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION squaresync._apply_stream(p_run bigint, p_merchant text, p_stream text, p_full boolean,
                                         p_watermark text)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    t      record;
    counts jsonb := '{}';
    c      jsonb;
    old_wm text;
    vars   text[];
    redo   text[];
    q      text;
    staged text[];
    par_of  text;
    par_ids text[];
    par_bat bigint[];
BEGIN
    SELECT watermark INTO old_wm FROM squaresync.stream_state
    WHERE merchant_id = p_merchant AND stream = p_stream FOR UPDATE;

    IF p_full THEN
        redo := squaresync._bulk_load_begin(p_stream);
    END IF;

    staged := squaresync._staged_tables(array(SELECT table_name FROM squaresync.synced_tables
                                              WHERE stream = p_stream AND NOT derived));
    FOR t IN SELECT * FROM squaresync.synced_tables WHERE stream = p_stream ORDER BY apply_order LOOP
        IF t.derived THEN
            CONTINUE;
        END IF;
        -- Locations and vendors have no change filter: every read is a full read.
        IF NOT (p_full OR p_stream IN ('locations', 'vendors') OR t.table_name = ANY (staged)
                OR coalesce(t.parent_table = ANY (staged), false)) THEN
            -- An incremental read that staged nothing for the table nor its parent (whose re-read
            -- would replace its children) changes nothing: no statement to build, plan and run.
            counts := counts || jsonb_build_object(t.table_name,
                                                   jsonb_build_object('inserted', 0, 'updated', 0, 'deleted', 0, 'unchanged', 0));
            CONTINUE;
        END IF;
        IF t.table_name = ANY (staged) THEN
            PERFORM squaresync._analyze_if_large('squaresync', 'stage_' || t.table_name, NULL);
        END IF;
        -- The chosen parents are read once for all the children of a parent (applied before them).
        IF t.parent_table IS DISTINCT FROM par_of THEN
            par_of := t.parent_table;
            par_ids := NULL;
            par_bat := NULL;
            IF par_of IS NOT NULL THEN
                EXECUTE squaresync._chosen_parents_sql(par_of) INTO par_ids, par_bat USING p_merchant;
            END IF;
        END IF;
        c := squaresync._apply_table(p_run, p_merchant, t.table_name, p_full OR p_stream IN ('locations', 'vendors'),
                                     p_full, NULL, NULL, par_ids, par_bat);
        PERFORM squaresync._analyze_if_large('square', t.table_name, c);
        counts := counts || jsonb_build_object(t.table_name, c);
    END LOOP;
    -- (Freed before the first load's index builds: a foundation's chosen orders at scale 10 are
    -- 300,000 ids, ~12 MB, which would stand on top of the builds' sort memory.)
    par_ids := NULL;
    par_bat := NULL;
    FOREACH q IN ARRAY coalesce(redo, '{}') LOOP
        EXECUTE q;
    END LOOP;

    -- Availability follows the catalog and the locations: recomputed when either changed (always on
    -- a foundation's catalog). An incremental catalog recomputes only the variations it changed and
    -- those of the items it changed; a change of locations, every variation.
    IF (p_stream = 'catalog' AND p_full)
       OR (p_stream IN ('catalog', 'locations')
           AND (SELECT coalesce(sum((v ->> 'inserted')::bigint + (v ->> 'updated')::bigint + (v ->> 'deleted')::bigint), 0)
                FROM jsonb_each(counts) e(k, v)) > 0
           AND EXISTS (SELECT 1 FROM square.catalog_variations WHERE merchant_id = p_merchant)) THEN
        IF p_stream = 'catalog' AND NOT p_full THEN
            SELECT coalesce(array_agg(DISTINCT x.id), '{}') INTO vars FROM (
                SELECT ch.pk ->> 'id' AS id FROM squaresync.changes ch
                WHERE ch.run_id = p_run AND ch.table_name = 'catalog_variations'
                UNION
                SELECT v.id FROM squaresync.changes ch
                JOIN square.catalog_variations v ON v.merchant_id = p_merchant AND v.item_id = ch.pk ->> 'id'
                WHERE ch.run_id = p_run AND ch.table_name = 'catalog_items') x;
        END IF;
        IF vars IS NULL OR cardinality(vars) > 0 THEN
            PERFORM squaresync._stage_availability(p_merchant, vars);
            c := squaresync._apply_table(p_run, p_merchant, 'catalog_location_availability', true, p_full,
                                         CASE WHEN vars IS NOT NULL THEN 'variation_id' END, vars);
            PERFORM squaresync._analyze_if_large('square', 'catalog_location_availability', c);
            counts := counts || jsonb_build_object('catalog_location_availability', c);
        END IF;
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

-- 55_derived.sql: square_sales rows of the touched pairs read through the index; only the rows that
-- differ from the recomputed ones are written.
CREATE OR REPLACE FUNCTION squaresync._refresh_sales(p_run bigint, p_merchant text)
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
    -- The touched days' rows recomputed and compared with the stored ones: only those that differ
    -- are written (a run every few minutes recomputes today's rows, most of them as they were).
    WITH n AS MATERIALIZED (
        SELECT * FROM squaresync._sales_rows(p_merchant, locs, days, whole)
    ),
    o AS MATERIALIZED (
        SELECT s.* FROM square.square_sales s WHERE s.merchant_id = p_merchant AND s.location_id = ANY (whole)
        UNION ALL
        SELECT s.* FROM square.square_sales s  -- pair by pair, through the (merchant_id, location_id, sale_date) index
        JOIN (SELECT DISTINCT * FROM unnest(locs, days) AS u(location_id, day) WHERE NOT (u.location_id = ANY (whole))) p
          ON s.merchant_id = p_merchant AND s.location_id = p.location_id AND s.sale_date = p.day
    ),
    d AS MATERIALIZED (
        SELECT n, o.sale_date AS o_date, o.location_id AS o_loc, o.variation_id AS o_var
        FROM n FULL JOIN o ON o.sale_date = n.sale_date AND o.location_id = n.location_id
                          AND o.variation_id = n.variation_id
        WHERE ROW(n.*) IS DISTINCT FROM ROW(o.*)
    ),
    del AS (
        DELETE FROM square.square_sales s USING d
        WHERE (d.n).merchant_id IS NULL AND s.merchant_id = p_merchant AND s.sale_date = d.o_date
          AND s.location_id = d.o_loc AND s.variation_id = d.o_var
    ),
    upd AS (
        UPDATE square.square_sales s
           SET (currency, orders, quantity_sold, gross_sales_amount, discounts_amount, returned_quantity,
                returns_amount, net_sales_amount)
             = ((d.n).currency, (d.n).orders, (d.n).quantity_sold, (d.n).gross_sales_amount, (d.n).discounts_amount,
                (d.n).returned_quantity, (d.n).returns_amount, (d.n).net_sales_amount)
          FROM d
         WHERE (d.n).merchant_id IS NOT NULL AND d.o_date IS NOT NULL AND s.merchant_id = p_merchant
           AND s.sale_date = d.o_date AND s.location_id = d.o_loc AND s.variation_id = d.o_var
    )
    INSERT INTO square.square_sales SELECT (d.n).* FROM d WHERE (d.n).merchant_id IS NOT NULL AND d.o_date IS NULL;
END
$fn$;

-- 55_derived.sql: a foundation rebuilds the daily sales from all orders at once.
CREATE FUNCTION squaresync._rebuild_sales(p_merchant text)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM square.square_sales WHERE merchant_id = p_merchant;
    INSERT INTO square.square_sales SELECT * FROM squaresync._sales_rows(p_merchant, NULL, NULL, NULL);
    SELECT squaresync._analyze_if_large('square', 'square_sales', NULL);
$$;
REVOKE ALL ON FUNCTION squaresync._rebuild_sales(text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION squaresync._after_apply(p_run bigint, p_merchant text, p_stream text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_kind text;
BEGIN
    SELECT kind INTO v_kind FROM squaresync.sync_runs WHERE id = p_run;
    PERFORM squaresync._track_row_counts(p_run, p_merchant, squaresync._stream_tables(p_stream), v_kind = 'foundation');
    IF p_stream = 'inventory' AND v_kind IS DISTINCT FROM 'rollback' THEN
        PERFORM squaresync._record_inventory_history(p_run, p_merchant);
    END IF;
    IF p_stream = 'orders' AND v_kind = 'foundation' THEN
        -- A foundation reads every order: every day is touched, and one aggregation over all of
        -- them is cheaper than finding the touched days in its changes first.
        PERFORM squaresync._rebuild_sales(p_merchant);
    ELSIF p_stream IN ('orders', 'locations') THEN
        PERFORM squaresync._refresh_sales(p_run, p_merchant);
    END IF;
END
$fn$;
CREATE OR REPLACE FUNCTION squaresync.rebuild_derived()
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE m text;
BEGIN
    FOR m IN SELECT DISTINCT merchant_id FROM square.locations
             UNION SELECT DISTINCT merchant_id FROM square.square_sales
             UNION SELECT DISTINCT merchant_id FROM square.square_item_library_export LOOP
        PERFORM squaresync._rebuild_sales(m);
        PERFORM squaresync._rebuild_item_library_export(m);
    END LOOP;
END
$fn$;

-- How the rows of square.<p_table> (as t) meet their audit entries: a format() template, %1$s
-- standing for the changes row's alias ("t.id = (c.pk ->> 'id')::text AND ...").
CREATE FUNCTION squaresync._audit_key_join(p_table text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT string_agg(format('t.%1$I = (%%1$s.pk ->> %1$L)::%2$s', k, format_type(a.atttypid, a.atttypmod)), ' AND ')
    FROM unnest(squaresync._key_columns(p_table)) k
    JOIN pg_attribute a ON a.attrelid = format('square.%I', p_table)::regclass AND a.attname = k
$$;
REVOKE ALL ON FUNCTION squaresync._audit_key_join(text) FROM PUBLIC;

-- 60_audit.sql: a rollback's audit converts the current row once, and takes the columns from
-- _data_columns.
CREATE OR REPLACE FUNCTION squaresync._rollback_table(p_target bigint, p_new bigint, p_merchant text, p_table text)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    cols     text[] := squaresync._data_columns(p_table, false) || 'synced_at'::text;  -- restored as it was
    has_raw  boolean := 'raw' = ANY (cols);
    key_join text := squaresync._audit_key_join(p_table);
    result   jsonb;
BEGIN
    EXECUTE format($q$
        WITH f AS MATERIALIZED (
            SELECT DISTINCT ON (c.pk) c.pk, c.op, squaresync._with_raw(c.before, c.before_raw) AS before
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
                        -- Compared as rows of the table, both rendered here: the image's text was
                        -- written in the worker's TimeZone, which need not be this session's.
                        WHEN (to_jsonb(j.t_row) - 'synced_at') IS DISTINCT FROM (to_jsonb(j.b_row) - 'synced_at') THEN 'update'
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
            INSERT INTO squaresync.changes (run_id, table_name, pk, op, before, after, before_raw, after_raw)
            SELECT $3, %1$L, d.pk, d.action,
                   CASE WHEN d.action = 'insert' THEN NULL ELSE to_jsonb(d.t_row) - 'raw' END,
                   CASE d.action
                       WHEN 'delete' THEN NULL
                       WHEN 'insert' THEN d.before - 'raw' - 'merchant_id' - 'synced_at'
                       ELSE coalesce((SELECT jsonb_object_agg(a.key, a.value) FROM jsonb_each(to_jsonb(d.b_row)) a
                                      LEFT JOIN jsonb_each(to_jsonb(d.t_row)) b ON b.key = a.key
                                      WHERE a.key NOT IN ('merchant_id', 'synced_at', 'raw')
                                        AND a.value IS DISTINCT FROM b.value), '{}')
                   END,
                   %7$s, %8$s
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
        (SELECT string_agg(format('(d.b_row).%I', c), ', ') FROM unnest(cols) c),   -- 6
        -- raw apart from the images, as a sync run records it.
        CASE WHEN has_raw THEN $r$CASE WHEN d.action <> 'insert' THEN (d.t_row).raw END$r$ ELSE 'NULL::jsonb' END, -- 7
        CASE WHEN has_raw THEN $r$CASE WHEN d.action = 'update' AND (d.b_row).raw IS DISTINCT FROM (d.t_row).raw
                                       THEN (d.b_row).raw END$r$ ELSE 'NULL::jsonb' END                          -- 8
    ) INTO result USING p_target, p_merchant, p_new;
    RETURN result;
END
$fn$;

-- 20_control.sql, 30_apply.sql, 60_audit.sql: the audit keeps an object's raw JSON apart from the
-- before and after images (before_raw, after_raw), copied as stored instead of re-encoded; the four
-- compressed with lz4 where the server has it.
ALTER TABLE squaresync.changes ADD COLUMN before_raw jsonb, ADD COLUMN after_raw jsonb;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE squaresync.changes ALTER COLUMN before SET COMPRESSION lz4, ALTER COLUMN after SET COMPRESSION lz4,
            ALTER COLUMN before_raw SET COMPRESSION lz4, ALTER COLUMN after_raw SET COMPRESSION lz4;
    END IF;
END
$$;

-- 55_derived.sql: the item library export's build table is truncated, not deleted from; an
-- incremental run recomputes the rows of the variations it touched (_export_variations, _after_run).
COMMENT ON TABLE square.square_item_library_export IS
    'The item library in the shape of Square''s item library export, one row per live variation (of a live item) '
    'and location (Square''s per-location columns become rows). variation_id is the export''s Token; categories: '
    'the item''s category names, comma separated, in the item''s order; price_*: the location''s price (its '
    'override, else the variation''s); default_unit_cost_*, default_vendor_* : the variation''s first live vendor '
    'info by ordinal (vendor code = its SKU); enabled: the variation is present at the location; current_quantity: '
    'the IN_STOCK count at the location (NULL when Square has none); stock alert, track_inventory and sold_out: '
    'the location override, else the variation. Brought up to date in one transaction after each run that changed '
    'catalog, inventory, vendor or location data (the rows of the variations it touched recomputed, or all of them): '
    'readers see the previous or the new library, never a partial one.';
DROP FUNCTION squaresync._rebuild_item_library_export(text);
CREATE FUNCTION squaresync._rebuild_item_library_export(p_merchant text, p_variations text[] DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql
-- The full join reads a whole library on each side: hashed, not merge-joined (which the planner
-- picks on the fresh build table's estimates: it sorts both wide inputs first, 5x slower).
SET enable_mergejoin = off
AS $fn$
DECLARE
    del_vars text[];
    del_locs text[];
    n_del    bigint;
    n_ins    bigint;
BEGIN
    -- TRUNCATE, not DELETE: the build table stays as small as one rebuild's changes, without dead rows.
    LOCK TABLE squaresync.build_item_library_export IN ACCESS EXCLUSIVE MODE;
    TRUNCATE squaresync.build_item_library_export;
    WITH d AS MATERIALIZED (
        SELECT CASE WHEN n.merchant_id IS NOT NULL THEN n::square.square_item_library_export END AS n,
               e.variation_id AS e_var, e.location_id AS e_loc
        FROM (SELECT * FROM squaresync._item_library_rows(p_merchant, p_variations)) n
        FULL JOIN (SELECT * FROM square.square_item_library_export
                   WHERE merchant_id = p_merchant AND (p_variations IS NULL OR variation_id = ANY (p_variations))) e
               ON e.variation_id = n.variation_id AND e.location_id = n.location_id
        WHERE ROW(n.*) IS DISTINCT FROM ROW(e.*)
    ),
    ins AS (
        INSERT INTO squaresync.build_item_library_export SELECT (d.n).* FROM d WHERE d.n IS DISTINCT FROM NULL
    )
    SELECT array_agg(e_var), array_agg(e_loc) INTO del_vars, del_locs FROM d WHERE e_var IS NOT NULL;
    DELETE FROM square.square_item_library_export e
    USING unnest(coalesce(del_vars, '{}'), coalesce(del_locs, '{}')) AS k(variation_id, location_id)
    WHERE e.merchant_id = p_merchant AND e.variation_id = k.variation_id AND e.location_id = k.location_id;
    GET DIAGNOSTICS n_del = ROW_COUNT;
    INSERT INTO square.square_item_library_export SELECT * FROM squaresync.build_item_library_export;
    GET DIAGNOSTICS n_ins = ROW_COUNT;
    TRUNCATE squaresync.build_item_library_export;
    IF p_variations IS NULL THEN  -- analyzed after a first fill (the next runs join it by key)
        PERFORM squaresync._analyze_if_large('square', 'square_item_library_export', NULL);
    END IF;
    RETURN jsonb_build_object('deleted', n_del, 'inserted', n_ins);
END
$fn$;

-- The variations whose export rows a run's changes can have changed: those it changed, their
-- availability and counts; the variations of the items it changed, of the items in a category it
-- changed, of the vendor infos it changed (where they point now and pointed before) and of the vendor
-- infos of the vendors it changed. Every input of _item_library_rows but the locations, whose
-- changes touch every variation.
CREATE FUNCTION squaresync._export_variations(p_run bigint, p_merchant text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    WITH ch AS MATERIALIZED (
        SELECT c.table_name, c.pk ->> CASE c.table_name WHEN 'catalog_location_availability' THEN 'variation_id'
                                                        WHEN 'catalog_inventory' THEN 'catalog_object_id'
                                                        ELSE 'id' END AS id,
               c.before ->> 'variation_id' AS before_var, c.after ->> 'variation_id' AS after_var
        FROM squaresync.changes c
        WHERE c.run_id = p_run
          AND c.table_name IN ('catalog_categories', 'catalog_items', 'catalog_variations', 'catalog_vendor_info',
                               'catalog_location_availability', 'catalog_inventory', 'vendors')
    )
    SELECT coalesce(array_agg(DISTINCT v.id), '{}') FROM (
        SELECT id FROM ch WHERE table_name IN ('catalog_variations', 'catalog_location_availability', 'catalog_inventory')
        UNION ALL
        SELECT unnest(ARRAY[before_var, after_var]) FROM ch WHERE table_name = 'catalog_vendor_info'
        UNION ALL
        SELECT x.variation_id FROM ch JOIN square.catalog_vendor_info x ON x.merchant_id = p_merchant AND x.id = ch.id
        WHERE ch.table_name = 'catalog_vendor_info'
        UNION ALL
        SELECT x.variation_id FROM ch JOIN square.catalog_vendor_info x ON x.merchant_id = p_merchant AND x.vendor_id = ch.id
        WHERE ch.table_name = 'vendors'
        UNION ALL
        SELECT v.id FROM square.catalog_variations v
        WHERE v.merchant_id = p_merchant AND v.item_id IN (
            SELECT id FROM ch WHERE table_name = 'catalog_items'
            UNION ALL
            SELECT i.id FROM ch JOIN square.catalog_items i ON i.merchant_id = p_merchant
                AND (ch.id = ANY (i.category_ids) OR ch.id = i.reporting_category_id)
            WHERE ch.table_name = 'catalog_categories')
    ) v(id)
    WHERE v.id IS NOT NULL
$$;
REVOKE ALL ON FUNCTION squaresync._rebuild_item_library_export(text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION squaresync._export_variations(bigint, text) FROM PUBLIC;

-- 60_audit.sql: diff() reads raw from before_raw and after_raw too.
CREATE FUNCTION squaresync._with_raw(p_image jsonb, p_raw jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_raw IS NULL THEN p_image ELSE coalesce(p_image, '{}') || jsonb_build_object('raw', p_raw) END
$$;
CREATE OR REPLACE FUNCTION squaresync.diff(run_id bigint)
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
    SELECT c.table_name, c.pk, c.op, col.key, i.b -> col.key, i.a -> col.key
    FROM squaresync.changes c
    LEFT JOIN squaresync.synced_tables st ON st.table_name = c.table_name
    -- raw is kept apart from the images (before_raw, after_raw; entries written before 0.2.0 hold it inside).
    CROSS JOIN LATERAL (SELECT squaresync._with_raw(c.before, c.before_raw) AS b,
                               squaresync._with_raw(c.after, c.after_raw) AS a) i
    -- A foundation records its inserts by key only: one row with no column for each.
    CROSS JOIN LATERAL (SELECT k FROM jsonb_object_keys(coalesce(i.a, i.b - 'raw' - 'merchant_id' - 'synced_at')) k
                        UNION ALL SELECT NULL WHERE i.a IS NULL AND i.b IS NULL) AS col(key)
    WHERE c.run_id = diff.run_id
    ORDER BY st.apply_order, c.table_name, c.pk, col.key;
END
$fn$;
REVOKE ALL ON FUNCTION squaresync._with_raw(jsonb, jsonb) FROM PUBLIC;

-- 20_control.sql: what a stream's fetch reached, for the apply worker.
ALTER TABLE squaresync.sync_run_streams ADD COLUMN fetched_watermark text;

-- 20_control.sql: when a run brought the item library export up to date (set by _after_run).
ALTER TABLE squaresync.sync_runs ADD COLUMN derived_at timestamptz;

-- Called once the catalog side of a run is applied (by its apply worker, or by the sync worker),
-- in its own transaction, and by a rollback: the item library export is rebuilt once per run, when
-- it changed locations, catalog, inventory or vendors. Marks the run's derived_at.
CREATE OR REPLACE FUNCTION squaresync._after_run(p_run bigint, p_merchant text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_kind  text;
    current boolean;
    vars    text[];
BEGIN
    SELECT kind INTO v_kind FROM squaresync.sync_runs WHERE id = p_run;
    current := coalesce((SELECT derived_at IS NOT NULL FROM squaresync.sync_runs
                         WHERE id < p_run ORDER BY id DESC LIMIT 1), false);
    IF v_kind = 'incremental' AND current AND NOT squaresync._run_changed(p_run, '{locations}') THEN
        vars := squaresync._export_variations(p_run, p_merchant);
        IF cardinality(vars) * 4 > (SELECT count(*) FROM square.catalog_variations WHERE merchant_id = p_merchant) THEN
            vars := NULL;
        END IF;
        IF vars IS NULL OR cardinality(vars) > 0 THEN
            PERFORM squaresync._rebuild_item_library_export(p_merchant, vars);
            RAISE DEBUG 'squaresync: run %: item library export %', p_run,
                CASE WHEN vars IS NULL THEN 'recomputed in full' ELSE format('recomputed for %s variations', cardinality(vars)) END;
        END IF;
    ELSIF NOT current OR squaresync._run_changed(p_run, array(SELECT table_name FROM squaresync.synced_tables
                                                               WHERE stream IN ('locations', 'catalog', 'inventory', 'vendors'))) THEN
        PERFORM squaresync._rebuild_item_library_export(p_merchant);
        RAISE DEBUG 'squaresync: run %: item library export recomputed in full', p_run;
    END IF;
    UPDATE squaresync.sync_runs SET derived_at = clock_timestamp() WHERE id = p_run;
END
$fn$;

-- 30_apply.sql:
-- raw, the whole object as Square sent it (kilobytes for an order), is compressed with lz4 where the
-- server has it (PostgreSQL 14+ built with lz4, as Debian's and PGDG's packages are; pglz otherwise),
-- in the square tables and their staging tables alike: compressing the orders' raw with pglz was a
-- fifth of the sync worker's time in a foundation, and lz4 compresses and reads it several times
-- faster, for ~15% more space. A value keeps the compression it was written with: the apply copies
-- the staged raw into the square tables as it is, and rows written before keep pglz until rewritten.
DO $$
DECLARE r record;
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        FOR r IN SELECT c.oid::regclass AS rel
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 WHERE a.attname = 'raw' AND NOT a.attisdropped AND c.relkind = 'r'
                   AND (c.relnamespace = 'square'::regnamespace
                        OR (c.relnamespace = 'squaresync'::regnamespace AND c.relname LIKE 'stage\_%')) LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN raw SET COMPRESSION lz4', r.rel);
        END LOOP;
    END IF;
END
$$;

-- 60_audit.sql: a rollback's expected row counts also when it runs in a subtransaction, and its
-- watermarks never later than they stand.
-- Moves the expected row counts of p_tables by what p_run wrote in the current transaction (a run
-- applies availability in two streams: only this transaction's entries count), or with p_baseline
-- sets them to the tables' row counts.
CREATE OR REPLACE FUNCTION squaresync._track_row_counts(p_run bigint, p_merchant text, p_tables text[], p_baseline boolean)
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
    WHERE c.run_id = p_run AND c.table_name = ANY (p_tables)
      -- A rollback's entries are all of this call, which may run in a subtransaction (a savepoint,
      -- a PL/pgSQL EXCEPTION block) whose rows carry their own xid.
      AND (c.xmin = pg_current_xact_id()::xid
           OR EXISTS (SELECT FROM squaresync.sync_runs x WHERE x.id = p_run AND x.kind = 'rollback'))
    GROUP BY c.table_name
    ON CONFLICT (merchant_id, table_name) DO UPDATE
        SET expected_rows = r.expected_rows + excluded.expected_rows, last_run_id = p_run, updated_at = now();
END
$fn$;

-- Undoes one run (checked by rollback()) and records it as a new run of kind rollback; returns its id.
-- The earlier of two watermarks (Square's RFC 3339 times); NULL, "from the start", when either is;
-- b when they cannot be compared as times.
CREATE FUNCTION squaresync._earliest_watermark(a text, b text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL
                WHEN NOT (a ~ '^\d{4}-\d\d-\d\dT' AND b ~ '^\d{4}-\d\d-\d\dT') THEN b
                WHEN a::timestamptz < b::timestamptz THEN a
                ELSE b END
$$;
REVOKE ALL ON FUNCTION squaresync._earliest_watermark(text, text) FROM PUBLIC;

-- 60_audit.sql: validate()'s line item totals allow for inclusive taxes kept in gross sales (Europe,
-- Australia).
CREATE OR REPLACE FUNCTION squaresync.validate(deep boolean DEFAULT false)
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

    -- Square's money model. total_service_charge_money sums the charges' applied_money: it leaves
    -- out their additive taxes and counts the charges apportioned to line items (APPORTIONED_TREATMENT),
    -- which the line items' totals hold already. Where the short sum does not match, the order's
    -- raw decides: the total_money of its other charges, and a cash rounding_adjustment.
    SELECT count(*), (array_agg(o.id ORDER BY o.id))[1:5] INTO n, ex
    FROM square.orders o
    JOIN (SELECT li.merchant_id, li.order_id, sum(li.total_money_amount) AS lines
            FROM square.order_line_items li GROUP BY 1, 2) l ON l.merchant_id = o.merchant_id AND l.order_id = o.id
    WHERE o.total_money_amount IS DISTINCT FROM
          l.lines + coalesce(o.total_service_charge_money_amount, 0) + coalesce(o.total_tip_money_amount, 0)
      AND o.total_money_amount IS DISTINCT FROM
          l.lines + coalesce(o.total_tip_money_amount, 0)
          + (SELECT coalesce(sum((sc.value #>> '{total_money,amount}')::bigint), 0)
               FROM jsonb_array_elements(CASE WHEN jsonb_typeof(o.raw -> 'service_charges') = 'array'
                                               THEN o.raw -> 'service_charges' END) sc
              WHERE sc.value ->> 'treatment_type' IS DISTINCT FROM 'APPORTIONED_TREATMENT')
          + coalesce((o.raw #>> '{rounding_adjustment,amount_money,amount}')::bigint, 0);
    RETURN QUERY SELECT 'order totals'::text, 'orders'::text, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
        CASE WHEN n = 0 THEN 'every order''s total_money = its line items'' totals + service charges not apportioned to them + tip'
             ELSE format('%s orders whose total_money is not their line items'' totals + service charges not apportioned to them + tip, e.g. %s',
                         n, array_to_string(ex, ', ')) END;

    -- Inclusive taxes are deducted from gross sales in the US, Canada and Japan, and stay in them in
    -- Europe and Australia (OrderLineItem.gross_sales_money): there the total adds the additive
    -- taxes only, the line item's taxes less those its order lists as INCLUSIVE.
    SELECT count(*), (array_agg(li.order_id || '/' || li.uid ORDER BY li.order_id, li.uid))[1:5] INTO n, ex
    FROM square.order_line_items li
    CROSS JOIN LATERAL (SELECT coalesce(li.gross_sales_money_amount, 0) - coalesce(li.total_discount_money_amount, 0)
                               + coalesce(li.total_tax_money_amount, 0)
                               + coalesce(li.total_service_charge_money_amount, 0) AS amount) e
    WHERE li.total_money_amount IS DISTINCT FROM e.amount
      AND li.total_money_amount IS DISTINCT FROM e.amount
          - (SELECT coalesce(sum((at.value #>> '{applied_money,amount}')::bigint), 0)
               FROM square.orders o
               CROSS JOIN LATERAL jsonb_array_elements(o.raw -> 'line_items') l
               CROSS JOIN LATERAL jsonb_array_elements(l.value -> 'applied_taxes') at
               JOIN LATERAL jsonb_array_elements(o.raw -> 'taxes') tx ON tx.value ->> 'uid' = at.value ->> 'tax_uid'
              WHERE o.merchant_id = li.merchant_id AND o.id = li.order_id AND l.value ->> 'uid' = li.uid
                AND tx.value ->> 'type' = 'INCLUSIVE');
    RETURN QUERY SELECT 'line item totals'::text, 'order_line_items'::text, CASE WHEN n = 0 THEN 'ok' ELSE 'fail' END,
        CASE WHEN n = 0 THEN 'every line item''s total_money = gross sales - discounts + taxes (additive only where gross sales hold the inclusive ones) + service charges'
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


-- Rollback: later runs tied to the run by a foreign key are conflicts too.
-- The foreign keys among the square tables: child, parent, and their column pairs without
-- merchant_id (every key and foreign key starts with it).
CREATE FUNCTION squaresync._square_foreign_keys()
RETURNS TABLE (child text, parent text, child_cols text[], parent_cols text[])
LANGUAGE sql STABLE AS $$
    SELECT ch.relname::text, pa.relname::text,
           array_agg(ca.attname::text ORDER BY k.i), array_agg(pc.attname::text ORDER BY k.i)
    FROM pg_constraint c
    JOIN pg_class ch ON ch.oid = c.conrelid
    JOIN pg_class pa ON pa.oid = c.confrelid
    CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY k(ck, pk, i)
    JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.ck
    JOIN pg_attribute pc ON pc.attrelid = c.confrelid AND pc.attnum = k.pk
    WHERE c.contype = 'f' AND ch.relnamespace = 'square'::regnamespace AND pa.relnamespace = 'square'::regnamespace
      AND ca.attname <> 'merchant_id'
    GROUP BY c.oid, ch.relname, pa.relname
$$;
REVOKE ALL ON FUNCTION squaresync._square_foreign_keys() FROM PUBLIC;

-- Later runs (not rolled back, not rollbacks) that undoing p_run would break, directly: runs that
-- changed rows p_run changed, and runs that inserted or updated rows whose foreign key names a row
-- p_run inserted (undoing p_run deletes it: an availability row a later run derived at a new location).
CREATE FUNCTION squaresync._direct_conflicts(p_run bigint)
RETURNS bigint[] LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    merchant text := (SELECT merchant_id FROM squaresync.sync_runs WHERE id = p_run);
    fk       record;
    found    bigint[];
    more     bigint[];
BEGIN
    SELECT array_agg(DISTINCT c2.run_id) INTO found
    FROM squaresync.changes c1
    JOIN squaresync.changes c2 ON c2.table_name = c1.table_name AND c2.pk = c1.pk AND c2.run_id > c1.run_id
    JOIN squaresync.sync_runs r ON r.id = c2.run_id
    WHERE c1.run_id = p_run AND r.merchant_id = merchant AND r.kind <> 'rollback' AND r.status <> 'rolled_back';

    FOR fk IN SELECT * FROM squaresync._square_foreign_keys() LOOP
        -- A child row a later run inserted or updated, as stored, naming a parent p_run inserted.
        EXECUTE format($q$
            SELECT array_agg(DISTINCT c2.run_id)
            FROM squaresync.changes c2
            JOIN squaresync.sync_runs r ON r.id = c2.run_id AND r.merchant_id = $2
                 AND r.kind <> 'rollback' AND r.status <> 'rolled_back'
            JOIN square.%1$I t ON t.merchant_id = $2 AND %2$s
            JOIN squaresync.changes f ON f.run_id = $1 AND f.table_name = %3$L AND f.op = 'insert' AND f.pk = %4$s
            WHERE c2.run_id > $1 AND c2.table_name = %1$L AND c2.op IN ('insert', 'update')
            $q$,
            fk.child,
            format(squaresync._audit_key_join(fk.child), 'c2'),
            fk.parent,
            (SELECT 'jsonb_build_object(' || string_agg(format('%L, t.%I', pc, cc), ', ') || ')'
             FROM unnest(fk.parent_cols, fk.child_cols) x(pc, cc)))
        INTO more USING p_run, merchant;
        found := found || more;
    END LOOP;
    RETURN coalesce((SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(found) x WHERE x IS NOT NULL), '{}');
END
$fn$;
REVOKE ALL ON FUNCTION squaresync._direct_conflicts(bigint) FROM PUBLIC;

-- The later runs _direct_conflicts finds for p_run; with p_transitive also theirs, and so on.
CREATE OR REPLACE FUNCTION squaresync._later_conflicts(p_run bigint, p_transitive boolean)
RETURNS bigint[] LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    found    bigint[] := '{}';
    frontier bigint[] := ARRAY[p_run];
    more     bigint[];
    x        bigint;
BEGIN
    WHILE cardinality(frontier) > 0 LOOP
        more := '{}';
        FOREACH x IN ARRAY frontier LOOP
            more := more || squaresync._direct_conflicts(x);
        END LOOP;
        SELECT coalesce(array_agg(DISTINCT m), '{}') INTO frontier
        FROM unnest(more) m WHERE m <> p_run AND m <> ALL (found);
        found := found || frontier;
        EXIT WHEN NOT p_transitive;
    END LOOP;
    RETURN coalesce((SELECT array_agg(f ORDER BY f) FROM unnest(found) f), '{}');
END
$fn$;

-- Undoes run p_run in one transaction and returns the id of the run that records the rollback
-- (kind rollback, reason, rollback_of). Refuses: an unknown run, a rollback (run the sync again
-- instead), a run already rolled back, a run whose audit was pruned, and a run whose rows a later
-- run changed again, unless cascade, which rolls those back first, newest first (each recorded as
-- its own rollback run). Waits for no sync: fails at once if one is in progress.
CREATE OR REPLACE FUNCTION squaresync.rollback(run_id bigint, reason text, cascade boolean DEFAULT false)
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
        RAISE EXCEPTION 'run % cannot be rolled back: later runs changed the same rows, or rows a foreign key ties to them: %', r.id,
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


-- Whether the schedule's launcher runs. pg_stat_activity shows another role's backend_type only to
-- members of pg_read_all_stats: asked as the extension's owner, every reader of the health view gets
-- the same answer (and learns nothing else). Executable by PUBLIC (90_dump_and_grants.sql).
CREATE FUNCTION squaresync._launcher_running()
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE backend_type = 'squaresync launcher')
$$;
REVOKE ALL ON FUNCTION squaresync._launcher_running() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION squaresync._launcher_running() TO PUBLIC;

-- The health view asks it (its readers may not see the launcher's backend_type).
CREATE OR REPLACE VIEW squaresync.health AS
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
                 AND NOT squaresync._launcher_running()
                THEN 'schedule inactive: squaresync is not in shared_preload_libraries' END
       ], NULL) AS alerts
FROM h
ORDER BY stream, table_name;

-- 0.1.0's rollback left a stream's last success on the run it undid: the latest sync of the stream
-- that still stands, as _rollback_one now sets it.
UPDATE squaresync.stream_state s
   SET (last_success_run_id, last_success_at) = (
           SELECT x.run_id, x.applied_at
           FROM squaresync.sync_run_streams x JOIN squaresync.sync_runs xr ON xr.id = x.run_id
           WHERE x.stream = s.stream AND x.status = 'succeeded' AND xr.merchant_id = s.merchant_id
             AND xr.kind <> 'rollback'
           ORDER BY x.run_id DESC LIMIT 1)
 WHERE EXISTS (SELECT FROM squaresync.sync_runs r WHERE r.id = s.last_success_run_id AND r.status = 'rolled_back');
