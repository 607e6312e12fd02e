-- 80_privileges.sql: least privilege for the sync worker. By default a sync worker runs as the
-- extension's owner; with squaresync.sync_role it runs as that role, which needs LOGIN (background
-- workers do not pass pg_hba, so no password is needed) and exactly the grants below: the token,
-- the extension's own tables and its internal functions. Nothing outside schemas square and
-- squaresync, no superuser.

-- ANALYZE needs the table's owner: run as the extension's owner, on the extension's tables only.
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
