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

--------------------------------------------------------------------------------------------------
-- diff: a run's changes, one row per column.
--------------------------------------------------------------------------------------------------

-- An audit image with its raw JSON put back in (image NULL and raw NULL: NULL).
CREATE FUNCTION squaresync._with_raw(p_image jsonb, p_raw jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_raw IS NULL THEN p_image ELSE coalesce(p_image, '{}') || jsonb_build_object('raw', p_raw) END
$$;

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
-- How the rows of square.<p_table> (as t) meet their audit entries: a format() template, %1$s
-- standing for the changes row's alias ("t.id = (c.pk ->> 'id')::text AND ...").
CREATE FUNCTION squaresync._audit_key_join(p_table text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT string_agg(format('t.%1$I = (%%1$s.pk ->> %1$L)::%2$s', k, format_type(a.atttypid, a.atttypmod)), ' AND ')
    FROM unnest(squaresync._key_columns(p_table)) k
    JOIN pg_attribute a ON a.attrelid = format('square.%I', p_table)::regclass AND a.attname = k
$$;

-- Rows the run inserted are deleted; rows it updated, tombstoned or deleted get their old row back.
-- The three writes touch disjoint keys, so one statement does them all.
CREATE FUNCTION squaresync._rollback_table(p_target bigint, p_new bigint, p_merchant text, p_table text)
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

-- The later runs _direct_conflicts finds for p_run; with p_transitive also theirs, and so on.
CREATE FUNCTION squaresync._later_conflicts(p_run bigint, p_transitive boolean)
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

-- The earlier of two watermarks (Square's RFC 3339 times); NULL, "from the start", when either is;
-- b when they cannot be compared as times.
CREATE FUNCTION squaresync._earliest_watermark(a text, b text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL
                WHEN NOT (a ~ '^\d{4}-\d\d-\d\dT' AND b ~ '^\d{4}-\d\d-\d\dT') THEN b
                WHEN a::timestamptz < b::timestamptz THEN a
                ELSE b END
$$;

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
