-- schema: the tables, their keys and the C++ descriptions agree; the control plane is private.
-- The C++ table descriptions and the DDL list the same columns with the same types.
SELECT * FROM squaresync._schema_mismatches();
-- Every Square table has merchant_id leading its primary key.
SELECT c.relname, a.attname AS first_key_column
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
WHERE k.contype = 'p' AND c.relnamespace = 'square'::regnamespace AND a.attname <> 'merchant_id';
SELECT count(*) AS square_tables FROM pg_tables WHERE schemaname = 'square';
-- Data and control tables are dumped by pg_dump (pg_extension_config_dump).
SELECT count(*) AS dumped_tables FROM pg_extension e, unnest(e.extconfig) t WHERE e.extname = 'squaresync';
-- Staging tables are unlogged.
SELECT count(*) AS logged_staging FROM pg_class WHERE relname LIKE 'stage\_%' AND relnamespace = 'squaresync'::regnamespace
  AND relpersistence <> 'u';
-- The audit's before and after images are compressed with lz4 where the server has it (else pglz).
SELECT bool_and(a.attcompression = CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'l' ELSE '' END) AS audit_lz4_where_available
FROM pg_attribute a, pg_settings s
WHERE a.attrelid = 'squaresync.changes'::regclass AND a.attname IN ('before', 'after') AND s.name = 'default_toast_compression';
-- raw, the whole object, is compressed with lz4 where the server has it (else pglz), in the square
-- tables and their staging tables.
SELECT count(*) AS raw_columns,
       bool_and(a.attcompression = CASE WHEN 'lz4' = ANY (s.enumvals) THEN 'l' ELSE '' END) AS raw_lz4_where_available
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid, pg_settings s
WHERE a.attname = 'raw' AND c.relkind = 'r' AND s.name = 'default_toast_compression'
  AND (c.relnamespace = 'square'::regnamespace OR c.relname LIKE 'stage\_%');
-- A plain role cannot read the token, start a sync or connect.
-- (with USAGE on the schema, so the refusals below are the table's and the functions' own).
CREATE ROLE squaresync_reader;
GRANT USAGE ON SCHEMA squaresync TO squaresync_reader;
SET ROLE squaresync_reader;
SELECT access_token FROM squaresync.connection;
SELECT squaresync.incremental();
SELECT squaresync.connect('token');
SELECT squaresync.foundation();
RESET ROLE;
REVOKE USAGE ON SCHEMA squaresync FROM squaresync_reader;
DROP ROLE squaresync_reader;
