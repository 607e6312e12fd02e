-- 70_ops.sql: operations: the built-in schedule's decision, and the health view with its alerts.

-- What the launcher's maintenance worker should start now: 'foundation', 'incremental' or NULL.
-- A daily foundation at squaresync.foundation_at (UTC "HH:MM") if none started since today's slot;
-- else an incremental when the last run started squaresync.sync_interval ago or more, that interval
-- doubling after each consecutive failed run (at most 64x), so a rejected token or a Square outage
-- is not hammered. Missed slots are not replayed: one run, then the schedule goes on from it.
-- The arguments default to the settings (tests pass their own).
CREATE FUNCTION squaresync._scheduled_run_due(p_interval interval DEFAULT NULL, p_foundation_at text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    fa     text := coalesce(p_foundation_at, current_setting('squaresync.foundation_at', true), '');
    iv     interval := coalesce(p_interval,
                                coalesce(nullif(current_setting('squaresync.sync_interval', true), ''), '0')::interval);
    slot   timestamptz;
    last   timestamptz;
    fails  integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM squaresync.connection) THEN
        RETURN NULL;
    END IF;
    IF fa <> '' THEN
        slot := (date_trunc('day', now() AT TIME ZONE 'UTC') + fa::time) AT TIME ZONE 'UTC';
        IF now() >= slot AND NOT EXISTS (SELECT 1 FROM squaresync.sync_runs
                                         WHERE kind = 'foundation' AND started_at >= slot) THEN
            RETURN 'foundation';
        END IF;
    END IF;
    IF iv > interval '0' THEN
        SELECT max(started_at) INTO last FROM squaresync.sync_runs WHERE kind IN ('incremental', 'foundation');
        SELECT count(*) INTO fails FROM (
            SELECT status, sum(CASE WHEN status <> 'failed' THEN 1 ELSE 0 END) OVER (ORDER BY id DESC) AS ok_seen
            FROM squaresync.sync_runs WHERE kind IN ('incremental', 'foundation')) r
        WHERE r.ok_seen = 0;
        IF last IS NULL OR now() >= last + iv * power(2, least(fails, 6)) THEN
            RETURN 'incremental';
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

-- Whether the schedule's launcher runs. pg_stat_activity shows another role's backend_type only to
-- members of pg_read_all_stats: asked as the extension's owner, every reader of the health view gets
-- the same answer (and learns nothing else). Executable by PUBLIC (90_dump_and_grants.sql).
CREATE FUNCTION squaresync._launcher_running()
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE backend_type = 'squaresync launcher')
$$;

-- One row per synced table: how fresh it is, how its runs have gone, and what needs attention.
--   expected_interval: squaresync.sync_interval when set, else the median gap between recent runs.
--   stale: no successful sync for more than twice the expected interval (and at least a minute).
--   alerts: 'stale', 'failing repeatedly' (the stream's last 3 runs failed), 'duration trending up'
--   (last run over twice the median of the last 20, with at least 5 runs), 'rows diverge from the
--   last sync' (the table's row count differs from what the syncs left: squaresync.table_row_counts),
--   'endpoint retired (410)' (Square answered 410 GONE), 'rate limited' (429s in the last 24 hours),
--   'schedule inactive: ...' (squaresync.sync_interval is set but the launcher is not running).
CREATE VIEW squaresync.health AS
WITH cfg AS (
    SELECT nullif(coalesce(nullif(current_setting('squaresync.sync_interval', true), ''), '0')::interval,
                  interval '0') AS sync_interval
),
stream_runs AS (
    SELECT rs.stream, r.id, r.started_at, rs.status AS stream_status, rs.error_code,
           extract(epoch FROM r.duration)::double precision AS seconds, r.api_requests, r.rate_limited,
           row_number() OVER (PARTITION BY rs.stream ORDER BY r.id DESC) AS n
    FROM squaresync.sync_run_streams rs
    JOIN squaresync.sync_runs r ON r.id = rs.run_id
    WHERE r.kind <> 'rollback' AND r.status <> 'running'
),
per_stream AS (
    SELECT stream,
           max(seconds) FILTER (WHERE n = 1) AS last_duration,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE n <= 20) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE n <= 20) AS p95,
           count(*) FILTER (WHERE n <= 20) AS runs_20,
           max(api_requests) FILTER (WHERE n = 1) AS last_api_requests,
           bool_and(stream_status = 'failed') FILTER (WHERE n <= 3) AND count(*) FILTER (WHERE n <= 3) = 3 AS failing,
           max(error_code) FILTER (WHERE n = 1) AS last_error_code,
           count(*) FILTER (WHERE started_at > now() - interval '24 hours') AS runs_24h,
           count(*) FILTER (WHERE started_at > now() - interval '24 hours' AND stream_status = 'failed') AS failed_24h,
           coalesce(sum(rate_limited) FILTER (WHERE started_at > now() - interval '24 hours'), 0) AS rate_limited_24h,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE gap IS NOT NULL AND n <= 20) AS median_gap
    FROM (SELECT *, extract(epoch FROM started_at - lead(started_at) OVER (PARTITION BY stream ORDER BY id DESC)) AS gap
          FROM stream_runs) x
    GROUP BY stream
),
counts AS (
    SELECT t.table_name,
           (SELECT r.expected_rows FROM squaresync.table_row_counts r
             WHERE r.table_name = t.table_name
               AND r.merchant_id = (SELECT c.merchant_id FROM squaresync.connection c)) AS expected_rows,
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM square.%I WHERE merchant_id = %L',
                                                       t.table_name, (SELECT c.merchant_id FROM squaresync.connection c)),
                                                false, true, '')))[1]::text::bigint AS actual_rows
    FROM squaresync.synced_tables t
),
h AS (
    SELECT t.table_name, t.stream, s.merchant_id,
           now() - s.last_success_at AS freshness,
           coalesce(cfg.sync_interval, make_interval(secs => ps.median_gap)) AS expected_interval,
           s.last_status, s.last_error, ps.last_duration, ps.p50, ps.p95,
           (SELECT (lr.tables -> t.table_name ->> 'inserted')::bigint + (lr.tables -> t.table_name ->> 'updated')::bigint
                   + (lr.tables -> t.table_name ->> 'deleted')::bigint
              FROM squaresync.sync_runs lr WHERE lr.id = s.last_run_id) AS rows_changed,
           ps.last_api_requests,
           CASE WHEN ps.runs_24h > 0 THEN ps.failed_24h::double precision / ps.runs_24h END AS error_rate_24h,
           coalesce(ps.rate_limited_24h, 0) AS rate_limited_24h,
           coalesce(ps.failing, false) AS failing,
           ps.last_error_code, ps.runs_20,
           c.expected_rows, c.actual_rows
    FROM squaresync.synced_tables t
    CROSS JOIN cfg
    LEFT JOIN squaresync.stream_state s
           ON s.stream = t.stream AND s.merchant_id = (SELECT c.merchant_id FROM squaresync.connection c)
    LEFT JOIN per_stream ps ON ps.stream = t.stream
    LEFT JOIN counts c ON c.table_name = t.table_name
)
SELECT table_name, stream, merchant_id, freshness, expected_interval,
       coalesce(freshness > greatest(2 * expected_interval, interval '1 minute'), freshness IS NULL) AS stale,
       last_status, last_error,
       last_duration AS last_duration_seconds, p50 AS median_duration_seconds, p95 AS p95_duration_seconds,
       rows_changed, last_api_requests AS api_requests, error_rate_24h, rate_limited_24h,
       expected_rows, actual_rows,
       array_remove(ARRAY[
           CASE WHEN coalesce(freshness > greatest(2 * expected_interval, interval '1 minute'), freshness IS NULL)
                THEN 'stale' END,
           CASE WHEN failing THEN 'failing repeatedly' END,
           CASE WHEN runs_20 >= 5 AND last_duration > 2 * p50 AND last_duration > 1 THEN 'duration trending up' END,
           CASE WHEN expected_rows IS DISTINCT FROM actual_rows AND expected_rows IS NOT NULL
                THEN 'rows diverge from the last sync' END,
           CASE WHEN last_error_code = 'GONE' THEN 'endpoint retired (410)' END,
           CASE WHEN rate_limited_24h > 0 THEN 'rate limited' END,
           CASE WHEN (SELECT sync_interval FROM cfg) IS NOT NULL
                 AND NOT squaresync._launcher_running()
                THEN 'schedule inactive: squaresync is not in shared_preload_libraries' END
       ], NULL) AS alerts
FROM h
ORDER BY stream, table_name;
