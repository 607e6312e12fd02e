-- 30_apply.sql: staging tables and the set-based apply of a fetched stream.

--------------------------------------------------------------------------------------------------
-- Staging: one UNLOGGED table per synced table, same columns plus the batch (page) and the row's
-- place in it. Filled by the sync worker page by page in short transactions; emptied after apply.
-- Small statistics targets: the apply's plans need the row counts and rough distinct counts of the
-- join columns, and ANALYZE of a foundation's staged line items takes 25 ms instead of 250.
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

-- Fills synced_tables.key_columns and data_columns from the catalog. Run by the install script and
-- by every update script that changes a synced table's columns.
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

-- Columns of a synced table that are compared and copied (everything but merchant_id, synced_at and
-- the key), or with p_keys its key columns.
CREATE FUNCTION squaresync._data_columns(p_table text, p_keys boolean)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_keys THEN key_columns ELSE data_columns END
    FROM squaresync.synced_tables WHERE table_name = p_table
$$;

-- Primary key columns of a synced table, merchant_id excluded.
CREATE FUNCTION squaresync._key_columns(p_table text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT key_columns FROM squaresync.synced_tables WHERE table_name = p_table
$$;

-- Sets the statistics targets of the staging tables (see above): 10 for what the apply joins on (the
-- key columns, the parent column, the page), none for the rest: ANALYZE then costs little more than
-- counting the rows, which is what the plans need most.
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

SELECT squaresync._stage_statistics();

-- The large jsonb columns are compressed with lz4 where the server has it (PostgreSQL 14+ built with
-- lz4, as Debian's and PGDG's packages are; pglz otherwise): raw, the whole object as Square sent it
-- (kilobytes for an order), in the square tables and their staging tables alike, and the audit's
-- images. Compressing the orders' raw with pglz was a fifth of the sync worker's time in a
-- foundation; lz4 compresses and reads it several times faster, for ~15% more space. A value keeps
-- the compression it was written with: the apply copies the staged raw into the square tables (and
-- the audit copies a row's raw) as it is, and values written before keep pglz until rewritten.
DO $$
DECLARE r record;
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        FOR r IN SELECT a.attrelid::regclass AS rel, a.attname
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 WHERE NOT a.attisdropped AND c.relkind = 'r'
                   AND ((a.attname = 'raw' AND (c.relnamespace = 'square'::regnamespace
                                                OR (c.relnamespace = 'squaresync'::regnamespace AND c.relname LIKE 'stage\_%')))
                        OR (a.attrelid = 'squaresync.changes'::regclass
                            AND a.attname IN ('before', 'after', 'before_raw', 'after_raw'))) LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET COMPRESSION lz4', r.rel, r.attname);
        END LOOP;
    END IF;
END
$$;

-- The statement that reads the staged copies of a parent table's objects that its apply chose (the
-- newest of each, as the apply orders them) and did not leave alone as older than the stored object
-- by the parent's guard: the only copies whose children are applied. Run (EXECUTE ... INTO ids,
-- batches USING merchant) after the parent is applied, in the same transaction (the stored parent is
-- then the outcome), by the caller that keeps the arrays: at scale 10 a foundation's are 300,000 ids,
-- and a function returning them would hold two more copies. Given to the children's statements as
-- arrays, the planner sees a list of keys and probes the children's index by parent as it does for
-- any key list.
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

-- p_keys_only_inserts: a foundation records its inserts by key only (the row it loaded is the row in
-- the table; a rollback of it deletes by key), not a second copy of every column.
-- p_scope_column, p_scope_keys: a full read of part of the table only (the stored rows whose
-- p_scope_column is one of p_scope_keys may vanish; the others are not looked at).
-- p_parent_ids, p_parent_batches: a child table's chosen parents (_chosen_parents_sql), when the
-- caller read them already (once for all the children of a parent); read here otherwise.
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

-- Availability is derived, not fetched: one row per live variation and location, by Square's rule
-- (present_at_all_locations, default true, less absent_at_location_ids; else present_at_location_ids)
-- applied to the item AND to the variation, with the variation's location_overrides. Of every
-- variation, or of p_variations only.
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

-- Keeps the planner's statistics in step with bulk changes inside the apply transaction (autovacuum
-- would see them only later, and a first incremental after a foundation would plan on empty-table
-- statistics): a staging table with rows before it is read (TRUNCATE forgets its statistics, and a
-- few staged rows planned as a page full of them hash the whole target table); a synced table
-- after a change of more than a tenth of its rows, or after its first rows (a never-analyzed table
-- of a few hundred rows is planned as if it had a handful, and the export's joins go nested-loop).
CREATE FUNCTION squaresync._analyze_if_large(p_schema text, p_table text, p_counts jsonb)
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

CREATE FUNCTION squaresync._apply_stream(p_run bigint, p_merchant text, p_stream text, p_full boolean,
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

-- The staging tables of these synced tables that hold rows, found by one statement (not one per
-- table).
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

-- Empties the staging tables of one stream (or all when p_stream is NULL). An empty one is left
-- alone; a few thousand rows (an incremental run's) are deleted, more are truncated: TRUNCATE
-- swaps the table's files and rebuilds its TOAST index, 1-2 ms a table, where deleting a few
-- hundred rows takes a tenth of that (autovacuum clears the dead rows of these unlogged tables).
CREATE FUNCTION squaresync._clear_staging(p_stream text)
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

