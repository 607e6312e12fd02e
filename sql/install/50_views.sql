-- 50_views.sql: status views.

--------------------------------------------------------------------------------------------------
-- Status views.
--------------------------------------------------------------------------------------------------

-- One row per synced table, for the connected merchant.
CREATE VIEW squaresync.sync_state AS
SELECT t.table_name,
       t.stream,
       s.last_success_at                                    AS last_sync_timestamp,
       s.last_success_run_id                                AS last_sync_version,
       coalesce((lr.tables -> t.table_name ->> 'inserted')::bigint, 0)
         + coalesce((lr.tables -> t.table_name ->> 'updated')::bigint, 0)
         + coalesce((lr.tables -> t.table_name ->> 'deleted')::bigint, 0) AS records_synced,
       extract(epoch FROM lr.duration)::double precision    AS sync_duration_seconds,
       s.created_at,
       s.updated_at,
       s.watermark,
       s.last_run_id,
       s.last_status,
       s.last_error,
       s.merchant_id
FROM squaresync.synced_tables t
LEFT JOIN squaresync.stream_state s
       ON s.stream = t.stream AND s.merchant_id = (SELECT c.merchant_id FROM squaresync.connection c)
LEFT JOIN squaresync.sync_runs lr ON lr.id = s.last_run_id
ORDER BY t.apply_order;

