// tables.cpp: the descriptions of the synced tables (see tables.hpp for the path language). Field
// names are Square's, from its API reference (Square-Version 2025-08-20).
#include "cpp_only.hpp"

#include "tables.hpp"

#include <stdexcept>

namespace squaresync {

const char* pg_type_name(PgType t) {
    switch (t) {
        case PgType::Text: return "text";
        case PgType::Integer: return "integer";
        case PgType::Bigint: return "bigint";
        case PgType::Numeric: return "numeric";
        case PgType::Boolean: return "boolean";
        case PgType::Timestamptz: return "timestamp with time zone";
        case PgType::Jsonb: return "jsonb";
        case PgType::TextArray: return "text[]";
    }
    return "text";
}

const ColumnDef* TableDef::column(const std::string& n) const {
    for (const auto& c : columns)
        if (c.name == n) return &c;
    return nullptr;
}

namespace {

using T = PgType;

// Columns every catalog object shares (CatalogObject's wrapper fields).
std::vector<ColumnDef> catalog_common() {
    return {
        {"id", T::Text, "id"},
        {"version", T::Bigint, "version"},
        {"updated_at", T::Timestamptz, "updated_at"},
        {"is_deleted", T::Boolean, "any(is_deleted)"},
        {"deleted_at", T::Timestamptz, "if(is_deleted,updated_at)"},
    };
}

std::vector<ColumnDef> presence() {
    return {
        {"present_at_all_locations", T::Boolean, "present_at_all_locations"},
        {"present_at_location_ids", T::TextArray, "present_at_location_ids[]"},
        {"absent_at_location_ids", T::TextArray, "absent_at_location_ids[]"},
    };
}

std::vector<ColumnDef> concat(std::vector<ColumnDef> a, const std::vector<ColumnDef>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::vector<TableDef> build() {
    std::vector<TableDef> t;
    t.push_back({"locations", {"id"},
                 {{"id", T::Text, "id"},
                  {"name", T::Text, "name"},
                  {"business_name", T::Text, "business_name"},
                  {"status", T::Text, "status"},
                  {"type", T::Text, "type"},
                  {"timezone", T::Text, "timezone"},
                  {"currency", T::Text, "currency"},
                  {"country", T::Text, "country"},
                  {"language_code", T::Text, "language_code"},
                  {"mcc", T::Text, "mcc"},
                  {"description", T::Text, "description"},
                  {"phone_number", T::Text, "phone_number"},
                  {"business_email", T::Text, "business_email"},
                  {"website_url", T::Text, "website_url"},
                  {"capabilities", T::TextArray, "capabilities[]"},
                  {"address", T::Jsonb, "address"},
                  {"business_hours", T::Jsonb, "business_hours"},
                  {"coordinates", T::Jsonb, "coordinates"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"raw", T::Jsonb, "$"}},
                 ""});
    t.push_back({"catalog_categories", {"id"},
                 concat(concat(catalog_common(),
                               {{"name", T::Text, "category_data.name"},
                                {"category_type", T::Text, "category_data.category_type"},
                                {"parent_category_id", T::Text, "category_data.parent_category.id"},
                                {"is_top_level", T::Boolean, "category_data.is_top_level"},
                                {"root_category", T::Text, "category_data.root_category"},
                                {"online_visibility", T::Boolean, "category_data.online_visibility"}}),
                        concat(presence(), {{"raw", T::Jsonb, "$"}})),
                 ""});
    t.push_back({"catalog_items", {"id"},
                 concat(concat(catalog_common(),
                               {{"name", T::Text, "item_data.name"},
                                {"description_plaintext", T::Text, "item_data.description_plaintext"},
                                {"abbreviation", T::Text, "item_data.abbreviation"},
                                {"product_type", T::Text, "item_data.product_type"},
                                {"is_taxable", T::Boolean, "item_data.is_taxable"},
                                {"is_archived", T::Boolean, "item_data.is_archived"},
                                {"category_ids", T::TextArray, "item_data.categories[].id"},
                                {"reporting_category_id", T::Text, "item_data.reporting_category.id"},
                                {"legacy_category_id", T::Text, "item_data.category_id"},
                                {"tax_ids", T::TextArray, "item_data.tax_ids[]"},
                                {"image_ids", T::TextArray, "item_data.image_ids[]"}}),
                        concat(presence(), {{"raw", T::Jsonb, "$"}})),
                 ""});
    {
        auto cols = catalog_common();
        cols.insert(cols.begin() + 1, {"item_id", T::Text, "item_variation_data.item_id"});
        cols = concat(cols, {{"name", T::Text, "item_variation_data.name"},
                             {"sku", T::Text, "item_variation_data.sku"},
                             {"upc", T::Text, "item_variation_data.upc"},
                             {"ordinal", T::Integer, "item_variation_data.ordinal"},
                             {"pricing_type", T::Text, "item_variation_data.pricing_type"},
                             {"price_amount", T::Bigint, "item_variation_data.price_money.amount"},
                             {"price_currency", T::Text, "item_variation_data.price_money.currency"},
                             {"track_inventory", T::Boolean, "item_variation_data.track_inventory"},
                             {"inventory_alert_type", T::Text, "item_variation_data.inventory_alert_type"},
                             {"inventory_alert_threshold", T::Bigint, "item_variation_data.inventory_alert_threshold"},
                             {"sellable", T::Boolean, "item_variation_data.sellable"},
                             {"stockable", T::Boolean, "item_variation_data.stockable"},
                             {"measurement_unit_id", T::Text, "item_variation_data.measurement_unit_id"}});
        t.push_back({"catalog_variations", {"id"}, concat(concat(cols, presence()), {{"raw", T::Jsonb, "$"}}), ""});
    }
    t.push_back({"catalog_vendor_info", {"id"},
                 {{"id", T::Text, "id"},
                  {"variation_id", T::Text, "item_variation_vendor_info_data.item_variation_id|^id"},
                  {"vendor_id", T::Text, "item_variation_vendor_info_data.vendor_id"},
                  {"sku", T::Text, "item_variation_vendor_info_data.sku"},
                  {"price_amount", T::Bigint, "item_variation_vendor_info_data.price_money.amount"},
                  {"price_currency", T::Text, "item_variation_vendor_info_data.price_money.currency"},
                  {"ordinal", T::Integer, "item_variation_vendor_info_data.ordinal"},
                  {"version", T::Bigint, "version"},
                  {"updated_at", T::Timestamptz, "updated_at"},
                  {"is_deleted", T::Boolean, "any(is_deleted,^is_deleted)"},
                  {"deleted_at", T::Timestamptz, "if(is_deleted,updated_at)|if(^is_deleted,^updated_at)"}},
                 "item_variation_data.item_variation_vendor_infos"});
    t.push_back({"catalog_inventory", {"catalog_object_id", "location_id", "state"},
                 {{"catalog_object_id", T::Text, "catalog_object_id"},
                  {"location_id", T::Text, "location_id"},
                  {"state", T::Text, "state"},
                  {"catalog_object_type", T::Text, "catalog_object_type"},
                  {"quantity", T::Numeric, "quantity"},
                  {"calculated_at", T::Timestamptz, "calculated_at"},
                  {"is_estimated", T::Boolean, "is_estimated"},
                  {"raw", T::Jsonb, "$"}},
                 ""});
    t.push_back({"vendors", {"id"},
                 {{"id", T::Text, "id"},
                  {"name", T::Text, "name"},
                  {"status", T::Text, "status"},
                  {"account_number", T::Text, "account_number"},
                  {"note", T::Text, "note"},
                  {"version", T::Integer, "version"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"updated_at", T::Timestamptz, "updated_at"},
                  {"address", T::Jsonb, "address"},
                  {"contacts", T::Jsonb, "contacts"},
                  {"raw", T::Jsonb, "$"}},
                 ""});
    t.push_back({"orders", {"id"},
                 {{"id", T::Text, "id"},
                  {"location_id", T::Text, "location_id"},
                  {"state", T::Text, "state"},
                  {"version", T::Integer, "version"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"updated_at", T::Timestamptz, "updated_at"},
                  {"closed_at", T::Timestamptz, "closed_at"},
                  {"reference_id", T::Text, "reference_id"},
                  {"customer_id", T::Text, "customer_id"},
                  {"source_name", T::Text, "source.name"},
                  {"ticket_name", T::Text, "ticket_name"},
                  {"currency", T::Text, "total_money.currency|net_amount_due_money.currency"},
                  {"total_money_amount", T::Bigint, "total_money.amount"},
                  {"total_tax_money_amount", T::Bigint, "total_tax_money.amount"},
                  {"total_discount_money_amount", T::Bigint, "total_discount_money.amount"},
                  {"total_tip_money_amount", T::Bigint, "total_tip_money.amount"},
                  {"total_service_charge_money_amount", T::Bigint, "total_service_charge_money.amount"},
                  {"net_amount_due_money_amount", T::Bigint, "net_amount_due_money.amount"},
                  {"raw", T::Jsonb, "$"}},
                 ""});
    t.push_back({"order_line_items", {"order_id", "uid"},
                 {{"order_id", T::Text, "^id"},
                  {"uid", T::Text, "uid|#"},
                  {"line_index", T::Integer, "@index"},
                  {"name", T::Text, "name"},
                  {"quantity", T::Numeric, "quantity"},
                  {"quantity_unit", T::Jsonb, "quantity_unit"},
                  {"item_type", T::Text, "item_type"},
                  {"catalog_object_id", T::Text, "catalog_object_id"},
                  {"catalog_version", T::Bigint, "catalog_version"},
                  {"variation_name", T::Text, "variation_name"},
                  {"note", T::Text, "note"},
                  {"currency", T::Text, "total_money.currency|base_price_money.currency"},
                  {"base_price_money_amount", T::Bigint, "base_price_money.amount"},
                  {"variation_total_price_money_amount", T::Bigint, "variation_total_price_money.amount"},
                  {"gross_sales_money_amount", T::Bigint, "gross_sales_money.amount"},
                  {"total_tax_money_amount", T::Bigint, "total_tax_money.amount"},
                  {"total_discount_money_amount", T::Bigint, "total_discount_money.amount"},
                  {"total_service_charge_money_amount", T::Bigint, "total_service_charge_money.amount"},
                  {"total_money_amount", T::Bigint, "total_money.amount"},
                  {"modifiers", T::Jsonb, "modifiers"},
                  {"applied_taxes", T::Jsonb, "applied_taxes"},
                  {"applied_discounts", T::Jsonb, "applied_discounts"}},
                 "line_items"});
    t.push_back({"order_fulfillments", {"order_id", "uid"},
                 {{"order_id", T::Text, "^id"},
                  {"uid", T::Text, "uid|#"},
                  {"line_index", T::Integer, "@index"},
                  {"type", T::Text, "type"},
                  {"state", T::Text, "state"},
                  {"line_item_application", T::Text, "line_item_application"},
                  {"entries", T::Jsonb, "entries"},
                  {"pickup_details", T::Jsonb, "pickup_details"},
                  {"shipment_details", T::Jsonb, "shipment_details"},
                  {"delivery_details", T::Jsonb, "delivery_details"}},
                 "fulfillments"});
    t.push_back({"order_refunds", {"order_id", "id"},
                 {{"order_id", T::Text, "^id"},
                  {"id", T::Text, "id"},
                  {"location_id", T::Text, "location_id"},
                  {"transaction_id", T::Text, "transaction_id"},
                  {"tender_id", T::Text, "tender_id"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"reason", T::Text, "reason"},
                  {"status", T::Text, "status"},
                  {"currency", T::Text, "amount_money.currency"},
                  {"amount_money_amount", T::Bigint, "amount_money.amount"},
                  {"processing_fee_money_amount", T::Bigint, "processing_fee_money.amount"}},
                 "refunds"});
    t.push_back({"order_returns", {"order_id", "uid"},
                 {{"order_id", T::Text, "^id"},
                  {"uid", T::Text, "uid|#"},
                  {"line_index", T::Integer, "@index"},
                  {"source_order_id", T::Text, "source_order_id"},
                  {"currency", T::Text, "return_amounts.total_money.currency"},
                  {"return_total_money_amount", T::Bigint, "return_amounts.total_money.amount"},
                  {"return_tax_money_amount", T::Bigint, "return_amounts.tax_money.amount"},
                  {"return_discount_money_amount", T::Bigint, "return_amounts.discount_money.amount"},
                  {"return_line_items", T::Jsonb, "return_line_items"},
                  {"return_service_charges", T::Jsonb, "return_service_charges"},
                  {"return_taxes", T::Jsonb, "return_taxes"},
                  {"return_discounts", T::Jsonb, "return_discounts"},
                  {"return_tips", T::Jsonb, "return_tips"}},
                 "returns"});
    t.push_back({"tenders", {"order_id", "id"},
                 {{"order_id", T::Text, "^id"},
                  {"id", T::Text, "id"},
                  {"location_id", T::Text, "location_id"},
                  {"transaction_id", T::Text, "transaction_id"},
                  {"payment_id", T::Text, "payment_id"},
                  {"type", T::Text, "type"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"customer_id", T::Text, "customer_id"},
                  {"note", T::Text, "note"},
                  {"currency", T::Text, "amount_money.currency"},
                  {"amount_money_amount", T::Bigint, "amount_money.amount"},
                  {"tip_money_amount", T::Bigint, "tip_money.amount"},
                  {"processing_fee_money_amount", T::Bigint, "processing_fee_money.amount"},
                  {"card_status", T::Text, "card_details.status"},
                  {"card_brand", T::Text, "card_details.card.card_brand"},
                  {"card_last_4", T::Text, "card_details.card.last_4"},
                  {"card_entry_method", T::Text, "card_details.entry_method"}},
                 "tenders"});
    t.push_back({"payments", {"id"},
                 {{"id", T::Text, "id"},
                  {"location_id", T::Text, "location_id"},
                  {"order_id", T::Text, "order_id"},
                  {"customer_id", T::Text, "customer_id"},
                  {"team_member_id", T::Text, "team_member_id"},
                  {"status", T::Text, "status"},
                  {"source_type", T::Text, "source_type"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"updated_at", T::Timestamptz, "updated_at"},
                  {"currency", T::Text, "amount_money.currency|total_money.currency"},
                  {"amount_money_amount", T::Bigint, "amount_money.amount"},
                  {"tip_money_amount", T::Bigint, "tip_money.amount"},
                  {"total_money_amount", T::Bigint, "total_money.amount"},
                  {"app_fee_money_amount", T::Bigint, "app_fee_money.amount"},
                  {"approved_money_amount", T::Bigint, "approved_money.amount"},
                  {"refunded_money_amount", T::Bigint, "refunded_money.amount"},
                  {"processing_fee", T::Jsonb, "processing_fee"},
                  {"card_brand", T::Text, "card_details.card.card_brand"},
                  {"card_last_4", T::Text, "card_details.card.last_4"},
                  {"card_status", T::Text, "card_details.status"},
                  {"receipt_number", T::Text, "receipt_number"},
                  {"receipt_url", T::Text, "receipt_url"},
                  {"is_offline_payment", T::Boolean, "is_offline_payment"},
                  {"version_token", T::Text, "version_token"},
                  {"refund_ids", T::TextArray, "refund_ids[]"},
                  {"raw", T::Jsonb, "$"}},
                 ""});
    t.push_back({"payment_refunds", {"id"},
                 {{"id", T::Text, "id"},
                  {"payment_id", T::Text, "payment_id"},
                  {"order_id", T::Text, "order_id"},
                  {"location_id", T::Text, "location_id"},
                  {"status", T::Text, "status"},
                  {"destination_type", T::Text, "destination_type"},
                  {"unlinked", T::Boolean, "unlinked"},
                  {"reason", T::Text, "reason"},
                  {"currency", T::Text, "amount_money.currency"},
                  {"amount_money_amount", T::Bigint, "amount_money.amount"},
                  {"app_fee_money_amount", T::Bigint, "app_fee_money.amount"},
                  {"processing_fee", T::Jsonb, "processing_fee"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"updated_at", T::Timestamptz, "updated_at"},
                  {"team_member_id", T::Text, "team_member_id"},
                  {"terminal_refund_id", T::Text, "terminal_refund_id"},
                  {"raw", T::Jsonb, "$"}},
                 ""});
    t.push_back({"transactions", {"id"},
                 {{"id", T::Text, "id"},
                  {"location_id", T::Text, "location_id"},
                  {"created_at", T::Timestamptz, "created_at"},
                  {"order_id", T::Text, "order_id"},
                  {"reference_id", T::Text, "reference_id"},
                  {"product", T::Text, "product"},
                  {"client_id", T::Text, "client_id"},
                  {"tender_ids", T::TextArray, "tenders[].id"},
                  {"refund_ids", T::TextArray, "refunds[].id"},
                  {"raw", T::Jsonb, "$"}},
                 ""});
    return t;
}

}  // namespace

const std::vector<TableDef>& synced_tables() {
    static const std::vector<TableDef> tables = build();
    return tables;
}

const TableDef& table_def(const std::string& name) {
    for (const auto& t : synced_tables())
        if (t.name == name) return t;
    throw std::out_of_range("no synced table named " + name);
}

}  // namespace squaresync
