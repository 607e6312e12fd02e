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
