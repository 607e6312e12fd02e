-- 10_data_tables.sql: the Square-sourced tables in schema square (see docs/schema.md).

CREATE SCHEMA square;
COMMENT ON SCHEMA square IS 'Square seller data synced by squaresync';

--------------------------------------------------------------------------------------------------
-- Square-sourced tables. merchant_id leads every primary key; raw holds the whole object as Square
-- returned it, on objects Square returns at top level only; synced_at is when squaresync last wrote
-- the row.
--------------------------------------------------------------------------------------------------

CREATE TABLE square.locations (
    merchant_id     text NOT NULL,
    id              text NOT NULL,
    name            text,
    business_name   text,
    status          text,
    type            text,
    timezone        text,
    currency        text,
    country         text,
    language_code   text,
    mcc             text,
    description     text,
    phone_number    text,
    business_email  text,
    website_url     text,
    capabilities    text[],
    address         jsonb,
    business_hours  jsonb,
    coordinates     jsonb,
    created_at      timestamptz,
    raw             jsonb NOT NULL,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.catalog_categories (
    merchant_id              text NOT NULL,
    id                       text NOT NULL,
    version                  bigint,
    updated_at               timestamptz,
    is_deleted               boolean NOT NULL DEFAULT false,
    deleted_at               timestamptz,
    name                     text,
    category_type            text,
    parent_category_id       text,
    is_top_level             boolean,
    root_category            text,
    online_visibility        boolean,
    present_at_all_locations boolean,
    present_at_location_ids  text[],
    absent_at_location_ids   text[],
    raw                      jsonb NOT NULL,
    synced_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.catalog_items (
    merchant_id              text NOT NULL,
    id                       text NOT NULL,
    version                  bigint,
    updated_at               timestamptz,
    is_deleted               boolean NOT NULL DEFAULT false,
    deleted_at               timestamptz,
    name                     text,
    description_plaintext    text,
    abbreviation             text,
    product_type             text,
    is_taxable               boolean,
    is_archived              boolean,
    category_ids             text[],
    reporting_category_id    text,
    legacy_category_id       text,
    tax_ids                  text[],
    image_ids                text[],
    present_at_all_locations boolean,
    present_at_location_ids  text[],
    absent_at_location_ids   text[],
    raw                      jsonb NOT NULL,
    synced_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.catalog_variations (
    merchant_id               text NOT NULL,
    id                        text NOT NULL,
    item_id                   text,
    version                   bigint,
    updated_at                timestamptz,
    is_deleted                boolean NOT NULL DEFAULT false,
    deleted_at                timestamptz,
    name                      text,
    sku                       text,
    upc                       text,
    ordinal                   integer,
    pricing_type              text,
    price_amount              bigint,
    price_currency            text,
    track_inventory           boolean,
    inventory_alert_type      text,
    inventory_alert_threshold bigint,
    sellable                  boolean,
    stockable                 boolean,
    measurement_unit_id       text,
    present_at_all_locations  boolean,
    present_at_location_ids   text[],
    absent_at_location_ids    text[],
    raw                       jsonb NOT NULL,
    synced_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id),
    FOREIGN KEY (merchant_id, item_id) REFERENCES square.catalog_items (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.catalog_variations (merchant_id, item_id);

-- Derived from variations, their items and the locations: one row per live variation and location.
CREATE TABLE square.catalog_location_availability (
    merchant_id               text NOT NULL,
    variation_id              text NOT NULL,
    location_id               text NOT NULL,
    item_id                   text,
    is_present                boolean NOT NULL,
    has_override              boolean NOT NULL,
    price_amount              bigint,
    price_currency            text,
    pricing_type              text,
    track_inventory           boolean,
    inventory_alert_type      text,
    inventory_alert_threshold bigint,
    sold_out                  boolean,
    sold_out_valid_until      timestamptz,
    variation_version         bigint,
    synced_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, variation_id, location_id),
    FOREIGN KEY (merchant_id, variation_id) REFERENCES square.catalog_variations (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (merchant_id, location_id) REFERENCES square.locations (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.catalog_location_availability (merchant_id, location_id);

-- From item_variation_data.item_variation_vendor_infos (sent by Square, absent from its spec).
CREATE TABLE square.catalog_vendor_info (
    merchant_id    text NOT NULL,
    id             text NOT NULL,
    variation_id   text NOT NULL,
    vendor_id      text,
    sku            text,
    price_amount   bigint,
    price_currency text,
    ordinal        integer,
    version        bigint,
    updated_at     timestamptz,
    is_deleted     boolean NOT NULL DEFAULT false,
    deleted_at     timestamptz,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id),
    FOREIGN KEY (merchant_id, variation_id) REFERENCES square.catalog_variations (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.catalog_vendor_info (merchant_id, variation_id);
CREATE INDEX ON square.catalog_vendor_info (merchant_id, vendor_id);

CREATE TABLE square.catalog_inventory (
    merchant_id         text NOT NULL,
    catalog_object_id   text NOT NULL,
    location_id         text NOT NULL,
    state               text NOT NULL,
    catalog_object_type text,
    quantity            numeric,
    calculated_at       timestamptz,
    is_estimated        boolean,
    raw                 jsonb NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, catalog_object_id, location_id, state)
);
CREATE INDEX ON square.catalog_inventory (merchant_id, location_id);

CREATE TABLE square.vendors (
    merchant_id    text NOT NULL,
    id             text NOT NULL,
    name           text,
    status         text,
    account_number text,
    note           text,
    version        integer,
    created_at     timestamptz,
    updated_at     timestamptz,
    address        jsonb,
    contacts       jsonb,
    raw            jsonb NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

CREATE TABLE square.orders (
    merchant_id                       text NOT NULL,
    id                                text NOT NULL,
    location_id                       text,
    state                             text,
    version                           integer,
    created_at                        timestamptz,
    updated_at                        timestamptz,
    closed_at                         timestamptz,
    reference_id                      text,
    customer_id                       text,
    source_name                       text,
    ticket_name                       text,
    currency                          text,
    total_money_amount                bigint,
    total_tax_money_amount            bigint,
    total_discount_money_amount       bigint,
    total_tip_money_amount            bigint,
    total_service_charge_money_amount bigint,
    net_amount_due_money_amount       bigint,
    raw                               jsonb NOT NULL,
    synced_at                         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);
CREATE INDEX ON square.orders (merchant_id, location_id, created_at);
CREATE INDEX ON square.orders (merchant_id, updated_at);
-- square_sales recomputes the (location, day) pairs a run touched: their orders by closed_at.
CREATE INDEX ON square.orders (merchant_id, location_id, closed_at);

CREATE TABLE square.order_line_items (
    merchant_id                        text NOT NULL,
    order_id                           text NOT NULL,
    uid                                text NOT NULL,
    line_index                         integer NOT NULL,
    name                               text,
    quantity                           numeric,
    quantity_unit                      jsonb,
    item_type                          text,
    catalog_object_id                  text,
    catalog_version                    bigint,
    variation_name                     text,
    note                               text,
    currency                           text,
    base_price_money_amount            bigint,
    variation_total_price_money_amount bigint,
    gross_sales_money_amount           bigint,
    total_tax_money_amount             bigint,
    total_discount_money_amount        bigint,
    total_service_charge_money_amount  bigint,
    total_money_amount                 bigint,
    modifiers                          jsonb,
    applied_taxes                      jsonb,
    applied_discounts                  jsonb,
    synced_at                          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, uid),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.order_line_items (merchant_id, catalog_object_id);

CREATE TABLE square.order_fulfillments (
    merchant_id           text NOT NULL,
    order_id              text NOT NULL,
    uid                   text NOT NULL,
    line_index            integer NOT NULL,
    type                  text,
    state                 text,
    line_item_application text,
    entries               jsonb,
    pickup_details        jsonb,
    shipment_details      jsonb,
    delivery_details      jsonb,
    synced_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, uid),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE square.order_refunds (
    merchant_id                 text NOT NULL,
    order_id                    text NOT NULL,
    id                          text NOT NULL,
    location_id                 text,
    transaction_id              text,
    tender_id                   text,
    created_at                  timestamptz,
    reason                      text,
    status                      text,
    currency                    text,
    amount_money_amount         bigint,
    processing_fee_money_amount bigint,
    synced_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, id),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE square.order_returns (
    merchant_id                  text NOT NULL,
    order_id                     text NOT NULL,
    uid                          text NOT NULL,
    line_index                   integer NOT NULL,
    source_order_id              text,
    currency                     text,
    return_total_money_amount    bigint,
    return_tax_money_amount      bigint,
    return_discount_money_amount bigint,
    return_line_items            jsonb,
    return_service_charges       jsonb,
    return_taxes                 jsonb,
    return_discounts             jsonb,
    return_tips                  jsonb,
    synced_at                    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, uid),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.order_returns (merchant_id, source_order_id);

CREATE TABLE square.tenders (
    merchant_id                 text NOT NULL,
    order_id                    text NOT NULL,
    id                          text NOT NULL,
    location_id                 text,
    transaction_id              text,
    payment_id                  text,
    type                        text,
    created_at                  timestamptz,
    customer_id                 text,
    note                        text,
    currency                    text,
    amount_money_amount         bigint,
    tip_money_amount            bigint,
    processing_fee_money_amount bigint,
    card_status                 text,
    card_brand                  text,
    card_last_4                 text,
    card_entry_method           text,
    synced_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, order_id, id),
    FOREIGN KEY (merchant_id, order_id) REFERENCES square.orders (merchant_id, id)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON square.tenders (merchant_id, payment_id);

CREATE TABLE square.payments (
    merchant_id           text NOT NULL,
    id                    text NOT NULL,
    location_id           text,
    order_id              text,
    customer_id           text,
    team_member_id        text,
    status                text,
    source_type           text,
    created_at            timestamptz,
    updated_at            timestamptz,
    currency              text,
    amount_money_amount   bigint,
    tip_money_amount      bigint,
    total_money_amount    bigint,
    app_fee_money_amount  bigint,
    approved_money_amount bigint,
    refunded_money_amount bigint,
    processing_fee        jsonb,
    card_brand            text,
    card_last_4           text,
    card_status           text,
    receipt_number        text,
    receipt_url           text,
    is_offline_payment    boolean,
    version_token         text,
    refund_ids            text[],
    raw                   jsonb NOT NULL,
    synced_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);
CREATE INDEX ON square.payments (merchant_id, order_id);

-- From GET /v2/refunds (ListPaymentRefunds).
CREATE TABLE square.payment_refunds (
    merchant_id          text NOT NULL,
    id                   text NOT NULL,
    payment_id           text,
    order_id             text,
    location_id          text,
    status               text,
    destination_type     text,
    unlinked             boolean,
    reason               text,
    currency             text,
    amount_money_amount  bigint,
    app_fee_money_amount bigint,
    processing_fee       jsonb,
    created_at           timestamptz,
    updated_at           timestamptz,
    team_member_id       text,
    terminal_refund_id   text,
    raw                  jsonb NOT NULL,
    synced_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

-- From the deprecated Transactions API (GET /v2/locations/{location_id}/transactions).
CREATE TABLE square.transactions (
    merchant_id  text NOT NULL,
    id           text NOT NULL,
    location_id  text,
    created_at   timestamptz,
    order_id     text,
    reference_id text,
    product      text,
    client_id    text,
    tender_ids   text[],
    refund_ids   text[],
    raw          jsonb NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

