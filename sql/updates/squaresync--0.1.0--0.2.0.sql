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
