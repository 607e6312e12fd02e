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
-- Readers of squaresync.health call it (a view's functions are checked against its reader).
GRANT EXECUTE ON FUNCTION squaresync._launcher_running() TO PUBLIC;
