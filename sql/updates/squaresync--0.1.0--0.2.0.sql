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
