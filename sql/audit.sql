-- audit: rollback, diff, validate and retention without Square: refusals, a rollback of a run
-- written by hand restoring rows exactly, and who may call what.
SET client_min_messages = warning;
\set VERBOSITY default
-- Unknown runs, missing reasons.
SELECT squaresync.rollback(424242, 'x');
SELECT * FROM squaresync.diff(424242);
SELECT squaresync.rollback(424242, '');
-- An empty extension validates clean.
SELECT check_name, table_name, status, detail FROM squaresync.validate() WHERE status <> 'ok';
SELECT count(*) > 30 AS checks FROM squaresync.validate();
-- Retention: 90 days by default, nothing to prune.
SELECT squaresync._audit_retention(), squaresync._prune_audit();

-- A run written by hand: vendor V1 updated, V2 inserted, V3 deleted; a category tombstoned.
INSERT INTO square.vendors (merchant_id, id, name, version, raw, synced_at) VALUES
    ('M', 'V1', 'old name', 1, '{"id": "V1"}'::jsonb, '2025-01-01 00:00:00+00'),
    ('M', 'V3', 'gone', 1, '{"id": "V3"}'::jsonb, '2025-01-01 00:00:00+00');
INSERT INTO square.catalog_categories (merchant_id, id, name, version, raw, synced_at) VALUES
    ('M', 'C1', 'Bagels', 5, '{"id": "C1"}'::jsonb, '2025-01-01 00:00:00+00');
CREATE TEMP TABLE before_run AS
    SELECT 'vendors' AS t, to_jsonb(v) AS r FROM square.vendors v
    UNION ALL SELECT 'catalog_categories', to_jsonb(c) FROM square.catalog_categories c;
SELECT setval('squaresync.sync_runs_id_seq', 7) AS run_id;
INSERT INTO squaresync.sync_runs (id, kind, status, merchant_id) VALUES (7, 'incremental', 'succeeded', 'M');
INSERT INTO squaresync.sync_run_streams (run_id, stream, status, watermark_before, watermark_after)
VALUES (7, 'vendors', 'succeeded', 'w-before', 'w-after');
INSERT INTO squaresync.stream_state (merchant_id, stream, watermark) VALUES ('M', 'vendors', 'w-after');
INSERT INTO squaresync.changes (run_id, table_name, pk, op, before, after)
SELECT 7, 'vendors', '{"id": "V1"}'::jsonb, 'update', to_jsonb(v), '{"name": "new name"}'::jsonb FROM square.vendors v WHERE id = 'V1'
UNION ALL SELECT 7, 'vendors', '{"id": "V2"}'::jsonb, 'insert', NULL, '{"id": "V2", "name": "new"}'::jsonb
UNION ALL SELECT 7, 'vendors', '{"id": "V3"}'::jsonb, 'delete', to_jsonb(v), NULL FROM square.vendors v WHERE id = 'V3'
UNION ALL SELECT 7, 'catalog_categories', '{"id": "C1"}'::jsonb, 'delete', to_jsonb(c), '{"is_deleted": true}'
          FROM square.catalog_categories c WHERE id = 'C1';
UPDATE square.vendors SET name = 'new name', synced_at = now() WHERE id = 'V1';
INSERT INTO square.vendors (merchant_id, id, name, raw) VALUES ('M', 'V2', 'new', '{"id": "V2"}');
DELETE FROM square.vendors WHERE id = 'V3';
UPDATE square.catalog_categories SET is_deleted = true, deleted_at = now() WHERE id = 'C1';

SELECT table_name, pk, op, column_name, before, after FROM squaresync.diff(7);
SELECT squaresync.rollback(7, 'hand-made run') > 7 AS rolled_back;
-- Every row exactly as before the run; the watermark back; the run marked; the rollback recorded.
SELECT t, r FROM before_run
EXCEPT SELECT 'vendors', to_jsonb(v) FROM square.vendors v
EXCEPT SELECT 'catalog_categories', to_jsonb(c) FROM square.catalog_categories c;
SELECT (SELECT count(*) FROM square.vendors) AS vendors, (SELECT count(*) FROM before_run WHERE t = 'vendors') AS expected;
SELECT watermark FROM squaresync.stream_state WHERE stream = 'vendors';
SELECT id, kind, status, reason, rollback_of, rolled_back_by IS NOT NULL AS rolled_back_by, rows_inserted,
       rows_updated, rows_deleted
FROM squaresync.sync_runs ORDER BY id;
SELECT table_name, pk, op, after FROM squaresync.changes WHERE run_id > 7 ORDER BY table_name, pk;
-- Refused: the rollback itself, and the run again.
SELECT squaresync.rollback((SELECT max(id) FROM squaresync.sync_runs), 'x');
SELECT squaresync.rollback(7, 'x');
-- Pruning: a run older than the retention loses its audit and can no longer be rolled back.
INSERT INTO squaresync.sync_runs (id, kind, status, merchant_id) VALUES (9, 'incremental', 'succeeded', 'M');
UPDATE squaresync.sync_runs SET finished_at = now() - interval '91 days';
SELECT squaresync._prune_audit() AS pruned;
SELECT count(*) AS left_over FROM squaresync.changes;
\set VERBOSITY terse
SELECT squaresync.rollback(9, 'x');
SELECT * FROM squaresync.diff(9);
\set VERBOSITY default
SELECT count(*) AS marked FROM squaresync.sync_runs WHERE audit_pruned_at IS NOT NULL;

-- PUBLIC may not call them.
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may
FROM pg_proc p WHERE p.pronamespace = 'squaresync'::regnamespace
  AND p.proname IN ('rollback', 'diff', 'validate', '_prune_audit', 'rebuild_derived', '_after_apply')
ORDER BY 1;
-- The seller's and the derived tables: kept by pg_dump, never synced.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) o JOIN pg_class c ON c.oid = o
WHERE e.extname = 'squaresync' AND c.relnamespace = 'square'::regnamespace
  AND c.relname NOT IN (SELECT table_name FROM squaresync.synced_tables) ORDER BY 1;
