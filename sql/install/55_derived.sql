-- 55_derived.sql: the internal, historical and export tables (issue 6), maintained from the
-- changes a stream's apply made, in the same transaction.
--
--   square.operating_seasons            the seller's own data: squaresync never writes to it
--   square.inventory_counts             history of inventory counts, appended by each run
--   square.square_sales                 daily sales per location and variation, kept incrementally
--   square.square_item_library_export   the item library in the shape of Square's export, rebuilt
--
-- None of them is a synced table (squaresync.synced_tables): _apply_table never touches them and
-- their writes are not recorded in squaresync.changes. inventory_counts rows carry the run that
-- appended them (a rollback deletes them); square_sales and the export are derived data, recomputed
-- from the synced tables (also by a rollback).

--------------------------------------------------------------------------------------------------
-- Seller-owned data.
--------------------------------------------------------------------------------------------------

CREATE SEQUENCE square.operating_seasons_id_seq;

CREATE TABLE square.operating_seasons (
    merchant_id text NOT NULL,
    id          bigint NOT NULL DEFAULT nextval('square.operating_seasons_id_seq'),
    location_id text,
    name        text NOT NULL,
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    notes       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id),
    CHECK (ends_on >= starts_on)
);
ALTER SEQUENCE square.operating_seasons_id_seq OWNED BY square.operating_seasons.id;
CREATE INDEX ON square.operating_seasons (merchant_id, location_id, starts_on);
COMMENT ON TABLE square.operating_seasons IS
    'The seller''s own operating seasons, per location. Written by the seller, never by squaresync: it survives '
    'every sync, rollback, foundation run and ALTER EXTENSION UPDATE, and pg_dump keeps its rows. Columns: '
    'merchant_id (the Square merchant), id (generated), location_id (a square.locations id; NULL = every '
    'location; not a foreign key, so a foundation or rollback never blocks on it), name (e.g. ''Summer 2025''), '
    'starts_on and ends_on (dates in the location''s time zone, both inclusive), notes, created_at, updated_at.';

--------------------------------------------------------------------------------------------------
-- Inventory history: one row each time a run sees a count change (a new count, or a new quantity
-- or calculated_at for a variation, location and state). Append only; a rollback deletes the rows
-- of the run it undoes.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.inventory_counts (
    merchant_id            text NOT NULL,
    catalog_object_id      text NOT NULL,
    location_id            text NOT NULL,
    state                  text NOT NULL,
    run_id                 bigint NOT NULL,
    quantity               numeric,
    calculated_at          timestamptz,
    previous_quantity      numeric,
    previous_calculated_at timestamptz,
    recorded_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, catalog_object_id, location_id, state, run_id)
);
CREATE INDEX ON square.inventory_counts (run_id);
CREATE INDEX ON square.inventory_counts (merchant_id, location_id, calculated_at);
COMMENT ON TABLE square.inventory_counts IS
    'History of inventory: one row per run that saw a count change for a variation, location and state '
    '(first seen, or a new quantity or calculated_at). quantity and calculated_at are Square''s (calculated_at: '
    'when Square calculated the count); previous_* are the values the run replaced (NULL when first seen); '
    'run_id is the sync run. Append only; a rollback of the run deletes its rows.';

--------------------------------------------------------------------------------------------------
-- Daily sales.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.square_sales (
    merchant_id        text NOT NULL,
    sale_date          date NOT NULL,
    location_id        text NOT NULL,
    variation_id       text NOT NULL,
    currency           text,
    orders             integer NOT NULL,
    quantity_sold      numeric NOT NULL,
    gross_sales_amount bigint NOT NULL,
    discounts_amount   bigint NOT NULL,
    returned_quantity  numeric NOT NULL,
    returns_amount     bigint NOT NULL,
    net_sales_amount   bigint NOT NULL,
    PRIMARY KEY (merchant_id, sale_date, location_id, variation_id)
);
CREATE INDEX ON square.square_sales (merchant_id, location_id, sale_date);
COMMENT ON TABLE square.square_sales IS
    'Processed sales: one row per day, location and variation, from COMPLETED orders. The day is the order''s '
    'closed_at in the location''s time zone (square.locations.timezone, UTC when unknown); a return counts on the '
    'day its return order closed, at the return order''s location. variation_id is the line item''s '
    'catalog_object_id ('''' for custom amounts). orders: sale orders with the variation that day; quantity_sold and '
    'gross_sales_amount: sum of sale line items'' quantity and gross_sales_money; returned_quantity and '
    'returns_amount: sum of return line items'' quantity and gross_return_money; discounts_amount: sale line '
    'items'' total_discount_money less the returned line items'' total_discount_money; net_sales_amount = gross '
    'sales - returns - discounts (tax, tips and service charges excluded). Amounts in the smallest currency unit. '
    'Kept incrementally: a run recomputes the (day, location) pairs its changed orders touch, old and new values.';

-- The sales rows of the given (location, day) pairs and whole locations; all of them when both
-- p_locations and p_whole_locations are NULL. p_locations and p_days are parallel arrays.
CREATE FUNCTION squaresync._sales_rows(p_merchant text, p_locations text[], p_days date[],
                                       p_whole_locations text[])
RETURNS SETOF square.square_sales LANGUAGE sql STABLE AS $$
    WITH pairs AS (
        SELECT DISTINCT u.location_id, u.day FROM unnest(p_locations, p_days) AS u(location_id, day)
        WHERE NOT (u.location_id = ANY (coalesce(p_whole_locations, '{}')))
    ),
    o AS NOT MATERIALIZED (  -- read by both branches below: inlined into each, so the pairs use the index
        SELECT o.id, o.location_id, o.currency, o.closed_at,
               (o.closed_at AT TIME ZONE coalesce(l.timezone, 'UTC'))::date AS day
        FROM square.orders o
        LEFT JOIN square.locations l ON l.merchant_id = o.merchant_id AND l.id = o.location_id
        WHERE o.merchant_id = p_merchant AND o.state = 'COMPLETED' AND o.closed_at IS NOT NULL
          AND o.location_id IS NOT NULL
    ),
    -- Every order (no filter), or those of whole locations, or those of the pairs' days: each
    -- pair reads its location's orders closed within a day of it (time zones are within 14 hours
    -- of UTC) through the (merchant_id, location_id, closed_at) index.
    sel AS MATERIALIZED (
        SELECT o.id, o.location_id, o.currency, o.day FROM o
        WHERE (p_locations IS NULL AND p_whole_locations IS NULL) OR o.location_id = ANY (p_whole_locations)
        UNION ALL
        SELECT o.id, o.location_id, o.currency, o.day FROM pairs p
        JOIN o ON o.location_id = p.location_id
              AND o.closed_at >= (p.day - 1)::timestamp AT TIME ZONE 'UTC'
              AND o.closed_at < (p.day + 2)::timestamp AT TIME ZONE 'UTC'
              AND o.day = p.day
    ),
    parts AS (
        SELECT s.day, s.location_id, coalesce(li.catalog_object_id, '') AS variation_id,
               coalesce(li.currency, s.currency) AS currency, s.id AS order_id,
               coalesce(li.quantity, 0) AS qty, coalesce(li.gross_sales_money_amount, 0) AS gross,
               coalesce(li.total_discount_money_amount, 0) AS disc,
               0::numeric AS rqty, 0::bigint AS rgross, 0::bigint AS rdisc
        FROM sel s
        JOIN square.order_line_items li ON li.merchant_id = p_merchant AND li.order_id = s.id
        UNION ALL
        SELECT s.day, s.location_id, coalesce(r ->> 'catalog_object_id', ''),
               coalesce(r -> 'gross_return_money' ->> 'currency', ret.currency, s.currency), NULL,
               0, 0, 0,
               coalesce((r ->> 'quantity')::numeric, 0),
               coalesce((r -> 'gross_return_money' ->> 'amount')::bigint, 0),
               coalesce((r -> 'total_discount_money' ->> 'amount')::bigint, 0)
        FROM sel s
        JOIN square.order_returns ret ON ret.merchant_id = p_merchant AND ret.order_id = s.id
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(ret.return_line_items) = 'array' THEN ret.return_line_items ELSE '[]' END) r
    )
    SELECT p_merchant, day, location_id, variation_id, min(currency),
           count(DISTINCT order_id)::integer,
           sum(qty), sum(gross), sum(disc) - sum(rdisc), sum(rqty), sum(rgross),
           sum(gross) - sum(rgross) - (sum(disc) - sum(rdisc))
    FROM parts
    GROUP BY day, location_id, variation_id
$$;

-- Recomputes a merchant's daily sales from all its orders, in the caller's transaction.
-- Analyzed after a first fill: the next runs' refreshes join the stored rows by their key, and a
-- table planned as empty is hashed whole instead (the update of a day's few changed rows read all
-- 79,000 rows of the seed dataset's sales).
CREATE FUNCTION squaresync._rebuild_sales(p_merchant text)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM square.square_sales WHERE merchant_id = p_merchant;
    INSERT INTO square.square_sales SELECT * FROM squaresync._sales_rows(p_merchant, NULL, NULL, NULL);
    SELECT squaresync._analyze_if_large('square', 'square_sales', NULL);
$$;

-- Recomputes the sales a run's changes touch: the (day, location) pairs of the orders it changed
-- (their values before the run, from changes.before, and now) and, when a location changed its
-- time zone, was removed, or came back while sales of it are stored, every day of that location.
-- The order tables are not read at all when the run changed none of this (a stream must not wait
-- for locks on another stream's tables).
CREATE FUNCTION squaresync._refresh_sales(p_run bigint, p_merchant text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    locs  text[];
    days  date[];
    whole text[];
BEGIN
    SELECT array_agg(DISTINCT c.pk ->> 'id') INTO whole
    FROM squaresync.changes c
    WHERE c.run_id = p_run AND c.table_name = 'locations'
      AND CASE c.op WHEN 'update' THEN c.after ? 'timezone'
                    WHEN 'delete' THEN true
                    ELSE EXISTS (SELECT 1 FROM square.square_sales s
                                 WHERE s.merchant_id = p_merchant AND s.location_id = c.pk ->> 'id') END;

    IF EXISTS (SELECT 1 FROM squaresync.changes c WHERE c.run_id = p_run
               AND c.table_name IN ('orders', 'order_line_items', 'order_returns')) THEN
        WITH ch AS (
            SELECT c.table_name, c.pk, c.before FROM squaresync.changes c
            WHERE c.run_id = p_run AND c.table_name IN ('orders', 'order_line_items', 'order_returns')
        ),
        ids AS (
            SELECT DISTINCT CASE WHEN table_name = 'orders' THEN pk ->> 'id' ELSE pk ->> 'order_id' END AS order_id
            FROM ch
        ),
        touched AS (
            SELECT ch.before ->> 'location_id' AS location_id, (ch.before ->> 'closed_at')::timestamptz AS closed_at
            FROM ch WHERE ch.table_name = 'orders' AND ch.before IS NOT NULL
            UNION
            SELECT o.location_id, o.closed_at
            FROM ids JOIN square.orders o ON o.merchant_id = p_merchant AND o.id = ids.order_id
        ),
        pairs AS (
            SELECT DISTINCT t.location_id, (t.closed_at AT TIME ZONE coalesce(l.timezone, 'UTC'))::date AS day
            FROM touched t
            LEFT JOIN square.locations l ON l.merchant_id = p_merchant AND l.id = t.location_id
            WHERE t.closed_at IS NOT NULL AND t.location_id IS NOT NULL
        )
        SELECT array_agg(location_id), array_agg(day) INTO locs, days FROM pairs;
    END IF;

    IF locs IS NULL AND whole IS NULL THEN
        RETURN;
    END IF;
    locs := coalesce(locs, '{}');
    days := coalesce(days, '{}');
    whole := coalesce(whole, '{}');
    -- The touched days' rows recomputed and compared with the stored ones: only those that differ
    -- are written (a run every few minutes recomputes today's rows, most of them as they were).
    WITH n AS MATERIALIZED (
        SELECT * FROM squaresync._sales_rows(p_merchant, locs, days, whole)
    ),
    o AS MATERIALIZED (
        SELECT s.* FROM square.square_sales s WHERE s.merchant_id = p_merchant AND s.location_id = ANY (whole)
        UNION ALL
        SELECT s.* FROM square.square_sales s  -- pair by pair, through the (merchant_id, location_id, sale_date) index
        JOIN (SELECT DISTINCT * FROM unnest(locs, days) AS u(location_id, day) WHERE NOT (u.location_id = ANY (whole))) p
          ON s.merchant_id = p_merchant AND s.location_id = p.location_id AND s.sale_date = p.day
    ),
    d AS MATERIALIZED (
        SELECT n, o.sale_date AS o_date, o.location_id AS o_loc, o.variation_id AS o_var
        FROM n FULL JOIN o ON o.sale_date = n.sale_date AND o.location_id = n.location_id
                          AND o.variation_id = n.variation_id
        WHERE ROW(n.*) IS DISTINCT FROM ROW(o.*)
    ),
    del AS (
        DELETE FROM square.square_sales s USING d
        WHERE (d.n).merchant_id IS NULL AND s.merchant_id = p_merchant AND s.sale_date = d.o_date
          AND s.location_id = d.o_loc AND s.variation_id = d.o_var
    ),
    upd AS (
        UPDATE square.square_sales s
           SET (currency, orders, quantity_sold, gross_sales_amount, discounts_amount, returned_quantity,
                returns_amount, net_sales_amount)
             = ((d.n).currency, (d.n).orders, (d.n).quantity_sold, (d.n).gross_sales_amount, (d.n).discounts_amount,
                (d.n).returned_quantity, (d.n).returns_amount, (d.n).net_sales_amount)
          FROM d
         WHERE (d.n).merchant_id IS NOT NULL AND d.o_date IS NOT NULL AND s.merchant_id = p_merchant
           AND s.sale_date = d.o_date AND s.location_id = d.o_loc AND s.variation_id = d.o_var
    )
    INSERT INTO square.square_sales SELECT (d.n).* FROM d WHERE (d.n).merchant_id IS NOT NULL AND d.o_date IS NULL;
END
$fn$;

--------------------------------------------------------------------------------------------------
-- The item library export.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.square_item_library_export (
    merchant_id                text NOT NULL,
    variation_id               text NOT NULL,
    location_id                text NOT NULL,
    item_id                    text NOT NULL,
    item_name                  text,
    variation_name             text,
    sku                        text,
    description                text,
    categories                 text,
    reporting_category         text,
    item_type                  text,
    price_amount               bigint,
    price_currency             text,
    pricing_type               text,
    archived                   boolean,
    sellable                   boolean,
    stockable                  boolean,
    taxable                    boolean,
    default_unit_cost_amount   bigint,
    default_unit_cost_currency text,
    default_vendor_id          text,
    default_vendor_name        text,
    default_vendor_code        text,
    location_name              text,
    enabled                    boolean NOT NULL,
    current_quantity           numeric,
    track_inventory            boolean,
    stock_alert_enabled        boolean,
    stock_alert_count          bigint,
    sold_out                   boolean,
    PRIMARY KEY (merchant_id, variation_id, location_id)
);
COMMENT ON TABLE square.square_item_library_export IS
    'The item library in the shape of Square''s item library export, one row per live variation (of a live item) '
    'and location (Square''s per-location columns become rows). variation_id is the export''s Token; categories: '
    'the item''s category names, comma separated, in the item''s order; price_*: the location''s price (its '
    'override, else the variation''s); default_unit_cost_*, default_vendor_* : the variation''s first live vendor '
    'info by ordinal (vendor code = its SKU); enabled: the variation is present at the location; current_quantity: '
    'the IN_STOCK count at the location (NULL when Square has none); stock alert, track_inventory and sold_out: '
    'the location override, else the variation. Brought up to date in one transaction after each run that changed '
    'catalog, inventory, vendor or location data (the rows of the variations it touched recomputed, or all of them): '
    'readers see the previous or the new library, never a partial one.';

-- Where a rebuild computes the library before replacing what changed (one writer at a time).
CREATE UNLOGGED TABLE squaresync.build_item_library_export (LIKE square.square_item_library_export);

-- The item library computed from the synced tables: all of it, or the rows of p_variations only.
CREATE FUNCTION squaresync._item_library_rows(p_merchant text, p_variations text[] DEFAULT NULL)
RETURNS SETOF square.square_item_library_export LANGUAGE sql STABLE AS $$
    -- Per item and per variation once (not once per location): category names, first vendor info.
    WITH cats AS (
        SELECT i.id AS item_id, string_agg(c.name, ', ' ORDER BY u.ord) AS names
        FROM square.catalog_items i
        CROSS JOIN LATERAL unnest(i.category_ids) WITH ORDINALITY AS u(id, ord)
        JOIN square.catalog_categories c ON c.merchant_id = i.merchant_id AND c.id = u.id AND NOT c.is_deleted
        WHERE i.merchant_id = p_merchant
          AND (p_variations IS NULL OR i.id IN (SELECT item_id FROM square.catalog_variations
                                                WHERE merchant_id = p_merchant AND id = ANY (p_variations)))
        GROUP BY i.id
    ),
    vi AS (
        SELECT DISTINCT ON (x.variation_id) x.*
        FROM square.catalog_vendor_info x
        WHERE x.merchant_id = p_merchant AND NOT x.is_deleted
          AND (p_variations IS NULL OR x.variation_id = ANY (p_variations))
        ORDER BY x.variation_id, x.ordinal NULLS LAST, x.id
    ),
    -- The IN_STOCK counts hashed once (an index probe per variation and location costs 3x more).
    inv AS MATERIALIZED (
        SELECT catalog_object_id, location_id, quantity FROM square.catalog_inventory
        WHERE merchant_id = p_merchant AND state = 'IN_STOCK'
          AND (p_variations IS NULL OR catalog_object_id = ANY (p_variations))
    )
    SELECT a.merchant_id, a.variation_id, a.location_id, v.item_id,
           i.name, v.name, v.sku, i.description_plaintext,
           cats.names,
           rc.name,
           i.product_type,
           coalesce(a.price_amount, v.price_amount),
           coalesce(a.price_currency, v.price_currency),
           coalesce(a.pricing_type, v.pricing_type),
           i.is_archived, v.sellable, v.stockable, i.is_taxable,
           vi.price_amount, vi.price_currency, vi.vendor_id, vd.name, vi.sku,
           l.name,
           a.is_present,
           inv.quantity,
           coalesce(a.track_inventory, v.track_inventory),
           coalesce(a.inventory_alert_type, v.inventory_alert_type) = 'LOW_QUANTITY',
           coalesce(a.inventory_alert_threshold, v.inventory_alert_threshold),
           coalesce(a.sold_out, false)
    FROM square.catalog_location_availability a
    JOIN square.catalog_variations v ON v.merchant_id = a.merchant_id AND v.id = a.variation_id
    JOIN square.catalog_items i ON i.merchant_id = v.merchant_id AND i.id = v.item_id
    JOIN square.locations l ON l.merchant_id = a.merchant_id AND l.id = a.location_id
    LEFT JOIN square.catalog_categories rc
           ON rc.merchant_id = i.merchant_id AND rc.id = i.reporting_category_id AND NOT rc.is_deleted
    LEFT JOIN cats ON cats.item_id = i.id
    LEFT JOIN vi ON vi.variation_id = v.id
    LEFT JOIN square.vendors vd ON vd.merchant_id = vi.merchant_id AND vd.id = vi.vendor_id
    LEFT JOIN inv ON inv.catalog_object_id = a.variation_id AND inv.location_id = a.location_id
    WHERE a.merchant_id = p_merchant AND NOT v.is_deleted AND NOT i.is_deleted
      AND (p_variations IS NULL OR a.variation_id = ANY (p_variations))
$$;

-- Brings the export up to date in the caller's transaction: computes the library (all of it, or the
-- rows of p_variations only) and compares it with the stored rows in one pass (a full join on the
-- key), then deletes the stored rows that vanished or differ and inserts the new and changed ones
-- (the export is never truncated: readers keep seeing the previous library until the transaction
-- commits). Only the differences are written, the changed rows through the build table. Returns the
-- rows written.
CREATE FUNCTION squaresync._rebuild_item_library_export(p_merchant text, p_variations text[] DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql
-- The full join reads a whole library on each side: hashed, not merge-joined (which the planner
-- picks on the fresh build table's estimates: it sorts both wide inputs first, 5x slower).
SET enable_mergejoin = off
AS $fn$
DECLARE
    del_vars text[];
    del_locs text[];
    n_del    bigint;
    n_ins    bigint;
BEGIN
    -- TRUNCATE, not DELETE: the build table stays as small as one rebuild's changes, without dead rows.
    LOCK TABLE squaresync.build_item_library_export IN ACCESS EXCLUSIVE MODE;
    TRUNCATE squaresync.build_item_library_export;
    WITH d AS MATERIALIZED (
        SELECT CASE WHEN n.merchant_id IS NOT NULL THEN n::square.square_item_library_export END AS n,
               e.variation_id AS e_var, e.location_id AS e_loc
        FROM (SELECT * FROM squaresync._item_library_rows(p_merchant, p_variations)) n
        FULL JOIN (SELECT * FROM square.square_item_library_export
                   WHERE merchant_id = p_merchant AND (p_variations IS NULL OR variation_id = ANY (p_variations))) e
               ON e.variation_id = n.variation_id AND e.location_id = n.location_id
        WHERE ROW(n.*) IS DISTINCT FROM ROW(e.*)
    ),
    ins AS (
        INSERT INTO squaresync.build_item_library_export SELECT (d.n).* FROM d WHERE d.n IS DISTINCT FROM NULL
    )
    SELECT array_agg(e_var), array_agg(e_loc) INTO del_vars, del_locs FROM d WHERE e_var IS NOT NULL;
    DELETE FROM square.square_item_library_export e
    USING unnest(coalesce(del_vars, '{}'), coalesce(del_locs, '{}')) AS k(variation_id, location_id)
    WHERE e.merchant_id = p_merchant AND e.variation_id = k.variation_id AND e.location_id = k.location_id;
    GET DIAGNOSTICS n_del = ROW_COUNT;
    INSERT INTO square.square_item_library_export SELECT * FROM squaresync.build_item_library_export;
    GET DIAGNOSTICS n_ins = ROW_COUNT;
    TRUNCATE squaresync.build_item_library_export;
    IF p_variations IS NULL THEN  -- analyzed after a first fill (the next runs join it by key)
        PERFORM squaresync._analyze_if_large('square', 'square_item_library_export', NULL);
    END IF;
    RETURN jsonb_build_object('deleted', n_del, 'inserted', n_ins);
END
$fn$;

-- The variations whose export rows a run's changes can have changed: those it changed, their
-- availability and counts; the variations of the items it changed, of the items in a category it
-- changed, of the vendor infos it changed (where they point now and pointed before) and of the vendor
-- infos of the vendors it changed. Every input of _item_library_rows but the locations, whose
-- changes touch every variation.
CREATE FUNCTION squaresync._export_variations(p_run bigint, p_merchant text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    WITH ch AS MATERIALIZED (
        SELECT c.table_name, c.pk ->> CASE c.table_name WHEN 'catalog_location_availability' THEN 'variation_id'
                                                        WHEN 'catalog_inventory' THEN 'catalog_object_id'
                                                        ELSE 'id' END AS id,
               c.before ->> 'variation_id' AS before_var, c.after ->> 'variation_id' AS after_var
        FROM squaresync.changes c
        WHERE c.run_id = p_run
          AND c.table_name IN ('catalog_categories', 'catalog_items', 'catalog_variations', 'catalog_vendor_info',
                               'catalog_location_availability', 'catalog_inventory', 'vendors')
    )
    SELECT coalesce(array_agg(DISTINCT v.id), '{}') FROM (
        SELECT id FROM ch WHERE table_name IN ('catalog_variations', 'catalog_location_availability', 'catalog_inventory')
        UNION ALL
        SELECT unnest(ARRAY[before_var, after_var]) FROM ch WHERE table_name = 'catalog_vendor_info'
        UNION ALL
        SELECT x.variation_id FROM ch JOIN square.catalog_vendor_info x ON x.merchant_id = p_merchant AND x.id = ch.id
        WHERE ch.table_name = 'catalog_vendor_info'
        UNION ALL
        SELECT x.variation_id FROM ch JOIN square.catalog_vendor_info x ON x.merchant_id = p_merchant AND x.vendor_id = ch.id
        WHERE ch.table_name = 'vendors'
        UNION ALL
        SELECT v.id FROM square.catalog_variations v
        WHERE v.merchant_id = p_merchant AND v.item_id IN (
            SELECT id FROM ch WHERE table_name = 'catalog_items'
            UNION ALL
            SELECT i.id FROM ch JOIN square.catalog_items i ON i.merchant_id = p_merchant
                AND (ch.id = ANY (i.category_ids) OR ch.id = i.reporting_category_id)
            WHERE ch.table_name = 'catalog_categories')
    ) v(id)
    WHERE v.id IS NOT NULL
$$;

-- Appends the inventory history of a run: its inserted counts and the updates that changed a
-- count's quantity or calculated_at.
CREATE FUNCTION squaresync._record_inventory_history(p_run bigint, p_merchant text)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE n bigint;
BEGIN
    INSERT INTO square.inventory_counts (merchant_id, catalog_object_id, location_id, state, run_id, quantity,
                                         calculated_at, previous_quantity, previous_calculated_at)
    SELECT p_merchant, i.catalog_object_id, i.location_id, i.state, p_run, i.quantity, i.calculated_at,
           (c.before ->> 'quantity')::numeric, (c.before ->> 'calculated_at')::timestamptz
    FROM squaresync.changes c
    JOIN square.catalog_inventory i
      ON i.merchant_id = p_merchant AND i.catalog_object_id = c.pk ->> 'catalog_object_id'
     AND i.location_id = c.pk ->> 'location_id' AND i.state = c.pk ->> 'state'
    WHERE c.run_id = p_run AND c.table_name = 'catalog_inventory'
      AND (c.op = 'insert' OR (c.op = 'update' AND (c.after ? 'quantity' OR c.after ? 'calculated_at')))
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

-- Did the run change any of these synced tables?
CREATE FUNCTION squaresync._run_changed(p_run bigint, p_tables text[])
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM squaresync.changes WHERE run_id = p_run AND table_name = ANY (p_tables))
$$;

-- The synced tables a stream's apply writes (availability follows the locations too).
CREATE FUNCTION squaresync._stream_tables(p_stream text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(table_name ORDER BY apply_order), '{}') FROM squaresync.synced_tables
    WHERE stream = p_stream OR (p_stream = 'locations' AND table_name = 'catalog_location_availability')
$$;

-- Called by _apply_stream after a stream's tables are applied, before its watermark advances, in
-- the same transaction: the expected row counts (validate), the inventory history and the daily
-- sales (the item library export follows once per run: _after_run).
CREATE FUNCTION squaresync._after_apply(p_run bigint, p_merchant text, p_stream text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_kind text;
BEGIN
    SELECT kind INTO v_kind FROM squaresync.sync_runs WHERE id = p_run;
    PERFORM squaresync._track_row_counts(p_run, p_merchant, squaresync._stream_tables(p_stream), v_kind = 'foundation');
    IF p_stream = 'inventory' AND v_kind IS DISTINCT FROM 'rollback' THEN
        PERFORM squaresync._record_inventory_history(p_run, p_merchant);
    END IF;
    IF p_stream = 'orders' AND v_kind = 'foundation' THEN
        -- A foundation reads every order: every day is touched, and one aggregation over all of
        -- them is cheaper than finding the touched days in its changes first.
        PERFORM squaresync._rebuild_sales(p_merchant);
    ELSIF p_stream IN ('orders', 'locations') THEN
        PERFORM squaresync._refresh_sales(p_run, p_merchant);
    END IF;
END
$fn$;

-- Called once the catalog side of a run is applied (by its apply worker, or by the sync worker),
-- in its own transaction, and by a rollback: brings the item library export up to date, once per
-- run, and marks the run's derived_at. An incremental run that follows a run which did so (its
-- derived_at is set) recomputes the rows of the variations its changes touch
-- (_export_variations), which gives the export a from-scratch build would; the whole library is
-- recomputed after a foundation, a rollback, a change of locations, more than a quarter of the
-- variations touched, or a previous run that did not bring the export up to date (it failed,
-- was killed, or the rebuild failed).
CREATE FUNCTION squaresync._after_run(p_run bigint, p_merchant text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_kind  text;
    current boolean;
    vars    text[];
BEGIN
    SELECT kind INTO v_kind FROM squaresync.sync_runs WHERE id = p_run;
    current := coalesce((SELECT derived_at IS NOT NULL FROM squaresync.sync_runs
                         WHERE id < p_run ORDER BY id DESC LIMIT 1), false);
    IF v_kind = 'incremental' AND current AND NOT squaresync._run_changed(p_run, '{locations}') THEN
        vars := squaresync._export_variations(p_run, p_merchant);
        IF cardinality(vars) * 4 > (SELECT count(*) FROM square.catalog_variations WHERE merchant_id = p_merchant) THEN
            vars := NULL;
        END IF;
        IF vars IS NULL OR cardinality(vars) > 0 THEN
            PERFORM squaresync._rebuild_item_library_export(p_merchant, vars);
            RAISE DEBUG 'squaresync: run %: item library export %', p_run,
                CASE WHEN vars IS NULL THEN 'recomputed in full' ELSE format('recomputed for %s variations', cardinality(vars)) END;
        END IF;
    ELSIF NOT current OR squaresync._run_changed(p_run, array(SELECT table_name FROM squaresync.synced_tables
                                                               WHERE stream IN ('locations', 'catalog', 'inventory', 'vendors'))) THEN
        PERFORM squaresync._rebuild_item_library_export(p_merchant);
        RAISE DEBUG 'squaresync: run %: item library export recomputed in full', p_run;
    END IF;
    UPDATE squaresync.sync_runs SET derived_at = clock_timestamp() WHERE id = p_run;
END
$fn$;

-- Recomputes the daily sales and the item library export from scratch (e.g. after restoring a
-- backup or editing square tables by hand). The inventory history cannot be recomputed.
CREATE FUNCTION squaresync.rebuild_derived()
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE m text;
BEGIN
    FOR m IN SELECT DISTINCT merchant_id FROM square.locations
             UNION SELECT DISTINCT merchant_id FROM square.square_sales
             UNION SELECT DISTINCT merchant_id FROM square.square_item_library_export LOOP
        PERFORM squaresync._rebuild_sales(m);
        PERFORM squaresync._rebuild_item_library_export(m);
    END LOOP;
END
$fn$;

SELECT pg_catalog.pg_extension_config_dump('square.operating_seasons', '');
SELECT pg_catalog.pg_extension_config_dump('square.operating_seasons_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('square.inventory_counts', '');
SELECT pg_catalog.pg_extension_config_dump('square.square_sales', '');
SELECT pg_catalog.pg_extension_config_dump('square.square_item_library_export', '');
