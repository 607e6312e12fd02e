-- setup: the extension installs into a fresh database and its launcher runs (preloaded).
CREATE EXTENSION squaresync;
SELECT extname, extversion FROM pg_extension WHERE extname = 'squaresync';
SELECT nspname FROM pg_namespace WHERE nspname IN ('square', 'squaresync') ORDER BY 1;
SELECT count(*) AS launchers FROM pg_stat_activity WHERE backend_type = 'squaresync launcher';
