-- 55_derived.sql: the internal, historical and export tables (issue 6), maintained from the
-- changes a stream's apply made, in the same transaction.

-- Called by _apply_stream after a stream's tables are applied, before its watermark advances.
CREATE FUNCTION squaresync._after_apply(p_run bigint, p_merchant text, p_stream text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    NULL;
END
$fn$;
