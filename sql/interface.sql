-- interface: the SQL functions refuse bad input with a clear error and a hint.
-- Not connected yet.
SELECT squaresync.incremental();
SELECT squaresync.foundation(wait => false);
-- Bad tokens and URLs are refused before anything is sent.
SELECT squaresync.connect('');
SELECT squaresync.connect(NULL);
SELECT squaresync.connect('has a space');
SELECT squaresync.connect('tok', environment => 'staging');
SELECT squaresync.connect('tok', base_url => 'not a url');
SELECT squaresync.connect('tok', base_url => 'http://example.com');
SELECT squaresync.connect('tok', base_url => 'ftp://127.0.0.1');
-- Nothing was stored.
SELECT count(*) FROM squaresync.connection;
-- A GUC set to nonsense is refused.
SET squaresync.max_concurrency = 0;
SET squaresync.orders_overlap = 'soon';
SET squaresync.unknown_setting = 1;
-- The tables to sync, in the order they are applied.
SELECT table_name, stream FROM squaresync.sync_state;
