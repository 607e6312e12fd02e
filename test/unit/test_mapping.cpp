// Unit tests for mapping (TableMapper, pg_text_array) against the table descriptions of tables.cpp:
// every table in synced_tables() has a Square-shaped sample (exact Square field names) mapped in
// full (every column checked by name), minimal (optional fields absent), with explicit JSON nulls
// and with each nested path cut short; derived values (is_deleted, deleted_at, uid/line_index
// fallbacks, vendor info inheriting its variation's deletion and id, currency alternatives),
// array literals, raw JSON, and MappingError for every wrong shape, naming table and column.
#include "cpp_only.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mapping.hpp"
#include "tables.hpp"

using namespace squaresync;

namespace {

using Value = std::optional<std::string>;
using Row = std::map<std::string, Value>;

json J(const char* text) { return json::parse(text); }

// A sample as the mapper sees it: parsed by simdjson, as the sync parses Square's pages. Each call
// has its own parser, kept alive for the whole test program (an element lives as long as its parser).
JsonElement E(const json& j) {
    static std::deque<simdjson::dom::parser> parsers;
    parsers.emplace_back();
    return parsers.back().parse(j.dump()).value();
}

// The values of row i, by column name.
Row row_of(const RowBatch& b, std::size_t i) {
    Row r;
    for (std::size_t c = 0; c < b.table->columns.size(); ++c) r[b.table->columns[c].name] = b.columns[c].at(i);
    return r;
}

bool is_child(const TableDef& t) { return !t.array_path.empty(); }

// Maps one sample: a top-level object, or a parent object for a child table.
RowBatch map_sample(const TableDef& t, const json& sample) {
    RowBatch b(t);
    TableMapper m(t);
    if (is_child(t))
        m.map_children(E(sample), b);
    else
        m.map_object(E(sample), b);
    for (const auto& col : b.columns) EXPECT_EQ(col.size(), b.rows) << t.name;
    return b;
}

std::vector<std::string> split_dots(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == '.') {
            out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    out.push_back(cur);
    return out;
}

// The element a child table's rows are drawn from (the first of its array), or the object itself.
json& element_of(const TableDef& t, json& sample, std::size_t index = 0) {
    if (!is_child(t)) return sample;
    json* j = &sample;
    for (const auto& p : split_dots(t.array_path)) j = &(*j)[p];
    return (*j)[index];
}

// Compares one value, JSON columns as JSON (key order and spacing do not matter).
void expect_value(const TableDef& t, const std::string& col, const Value& got, const Value& want,
                  const std::string& what) {
    const ColumnDef* c = t.column(col);
    ASSERT_NE(c, nullptr) << t.name << " has no column " << col << " (" << what << ")";
    if (!want) {
        EXPECT_FALSE(got.has_value()) << t.name << "." << col << " should be NULL (" << what << "), got " << *got;
        return;
    }
    ASSERT_TRUE(got.has_value()) << t.name << "." << col << " is NULL, expected " << *want << " (" << what << ")";
    if (c->type == PgType::Jsonb)
        EXPECT_EQ(json::parse(*got), json::parse(*want)) << t.name << "." << col << " (" << what << ")";
    else
        EXPECT_EQ(*got, *want) << t.name << "." << col << " (" << what << ")";
}

// Every column must be listed in `want` (complete) or only the listed ones are checked.
void expect_row(const TableDef& t, const Row& got, const Row& want, bool complete, const std::string& what) {
    for (const auto& [name, _] : want) EXPECT_NE(t.column(name), nullptr) << t.name << ": expectation for unknown column " << name;
    for (const auto& c : t.columns) {
        auto w = want.find(c.name);
        if (w == want.end()) {
            if (complete) ADD_FAILURE() << t.name << "." << c.name << ": the full sample has no expectation for it";
            continue;
        }
        expect_value(t, c.name, got.at(c.name), w->second, what);
    }
}

// The "$" (raw) column, when the table has one.
const ColumnDef* raw_column(const TableDef& t) {
    for (const auto& c : t.columns)
        if (c.source == "$") return &c;
    return nullptr;
}

// One Square-shaped sample per table.
struct Sample {
    json full;                 // every field present (for a child table: the parent object)
    std::vector<Row> rows;     // expected rows of `full`: the first lists every column but raw, the rest some
    json minimal;              // only what the key needs
    Row minimal_row;           // the non-NULL columns of `minimal` (raw aside); every other column is NULL
};

const std::map<std::string, Sample>& samples() {
    static const std::map<std::string, Sample> s = [] {
        std::map<std::string, Sample> m;
        m["locations"] = {
            J(R"({
              "id": "L1", "name": "Main St", "business_name": "Bob's \"Bakery\"", "status": "ACTIVE",
              "type": "PHYSICAL", "timezone": "America/Los_Angeles", "currency": "USD", "country": "US",
              "language_code": "en-US", "mcc": "5812", "description": "Best bread in town",
              "phone_number": "+1 555-0100", "business_email": "bob@example.com",
              "website_url": "https://example.com", "merchant_id": "M1",
              "capabilities": ["CREDIT_CARD_PROCESSING", "AUTOMATIC_TRANSFERS"],
              "address": {"address_line_1": "1 Main St", "locality": "San Francisco",
                          "administrative_district_level_1": "CA", "postal_code": "94103", "country": "US"},
              "business_hours": {"periods": [{"day_of_week": "MON", "start_local_time": "09:00:00",
                                              "end_local_time": "17:00:00"}]},
              "coordinates": {"latitude": 37.7749, "longitude": -122.4194},
              "created_at": "2016-09-19T17:33:12Z"})"),
            {{{"id", "L1"}, {"name", "Main St"}, {"business_name", "Bob's \"Bakery\""}, {"status", "ACTIVE"},
              {"type", "PHYSICAL"}, {"timezone", "America/Los_Angeles"}, {"currency", "USD"}, {"country", "US"},
              {"language_code", "en-US"}, {"mcc", "5812"}, {"description", "Best bread in town"},
              {"phone_number", "+1 555-0100"}, {"business_email", "bob@example.com"},
              {"website_url", "https://example.com"},
              {"capabilities", R"({"CREDIT_CARD_PROCESSING","AUTOMATIC_TRANSFERS"})"},
              {"address", R"({"address_line_1":"1 Main St","locality":"San Francisco",
                  "administrative_district_level_1":"CA","postal_code":"94103","country":"US"})"},
              {"business_hours", R"({"periods":[{"day_of_week":"MON","start_local_time":"09:00:00",
                  "end_local_time":"17:00:00"}]})"},
              {"coordinates", R"({"latitude":37.7749,"longitude":-122.4194})"},
              {"created_at", "2016-09-19T17:33:12Z"}}},
            J(R"({"id": "L1"})"),
            {{"id", "L1"}}};
        m["catalog_categories"] = {
            J(R"({
              "type": "CATEGORY", "id": "C1", "version": 1700000000000, "updated_at": "2024-03-01T10:00:00.123Z",
              "created_at": "2023-01-01T00:00:00Z", "is_deleted": false, "present_at_all_locations": false,
              "present_at_location_ids": ["L1", "L2"], "absent_at_location_ids": ["L3"],
              "category_data": {"name": "Breads", "category_type": "REGULAR_CATEGORY",
                                "parent_category": {"id": "C0", "ordinal": -2251731094208512},
                                "is_top_level": false, "root_category": "C0", "online_visibility": true}})"),
            {{{"id", "C1"}, {"version", "1700000000000"}, {"updated_at", "2024-03-01T10:00:00.123Z"},
              {"is_deleted", "false"}, {"deleted_at", std::nullopt}, {"name", "Breads"},
              {"category_type", "REGULAR_CATEGORY"}, {"parent_category_id", "C0"}, {"is_top_level", "false"},
              {"root_category", "C0"}, {"online_visibility", "true"}, {"present_at_all_locations", "false"},
              {"present_at_location_ids", R"({"L1","L2"})"}, {"absent_at_location_ids", R"({"L3"})"}}},
            J(R"({"id": "C1"})"),
            {{"id", "C1"}, {"is_deleted", "false"}}};
        m["catalog_items"] = {
            J(R"({
              "type": "ITEM", "id": "I1", "version": 5, "updated_at": "2024-03-02T11:00:00Z", "is_deleted": true,
              "present_at_all_locations": true, "present_at_location_ids": ["L1"], "absent_at_location_ids": [],
              "item_data": {"name": "Sourdough", "description_plaintext": "Tangy, \"crusty\"", "abbreviation": "SD",
                            "product_type": "REGULAR", "is_taxable": true, "is_archived": false,
                            "categories": [{"id": "C1", "ordinal": 0}, {"id": "C\"2\\x", "ordinal": 1}],
                            "reporting_category": {"id": "C1", "ordinal": 0}, "category_id": "C9",
                            "tax_ids": ["T1", "T2"], "image_ids": ["IMG1"],
                            "variations": [{"type": "ITEM_VARIATION", "id": "V1"}]}})"),
            {{{"id", "I1"}, {"version", "5"}, {"updated_at", "2024-03-02T11:00:00Z"}, {"is_deleted", "true"},
              {"deleted_at", "2024-03-02T11:00:00Z"}, {"name", "Sourdough"},
              {"description_plaintext", "Tangy, \"crusty\""}, {"abbreviation", "SD"}, {"product_type", "REGULAR"},
              {"is_taxable", "true"}, {"is_archived", "false"}, {"category_ids", R"({"C1","C\"2\\x"})"},
              {"reporting_category_id", "C1"}, {"legacy_category_id", "C9"}, {"tax_ids", R"({"T1","T2"})"},
              {"image_ids", R"({"IMG1"})"}, {"present_at_all_locations", "true"},
              {"present_at_location_ids", R"({"L1"})"}, {"absent_at_location_ids", "{}"}}},
            J(R"({"id": "I1"})"),
            {{"id", "I1"}, {"is_deleted", "false"}}};
        m["catalog_variations"] = {
            J(R"({
              "type": "ITEM_VARIATION", "id": "V1", "version": 7, "updated_at": "2024-03-03T12:00:00Z",
              "is_deleted": false, "present_at_all_locations": true, "present_at_location_ids": ["L1"],
              "absent_at_location_ids": ["L2"],
              "item_variation_data": {"item_id": "I1", "name": "Large", "sku": "SD-L", "upc": "012345678905",
                                      "ordinal": 2, "pricing_type": "FIXED_PRICING",
                                      "price_money": {"amount": 650, "currency": "USD"}, "track_inventory": true,
                                      "inventory_alert_type": "LOW_QUANTITY", "inventory_alert_threshold": 5,
                                      "sellable": true, "stockable": false, "measurement_unit_id": "MU1",
                                      "item_variation_vendor_infos": []}})"),
            {{{"id", "V1"}, {"item_id", "I1"}, {"version", "7"}, {"updated_at", "2024-03-03T12:00:00Z"},
              {"is_deleted", "false"}, {"deleted_at", std::nullopt}, {"name", "Large"}, {"sku", "SD-L"},
              {"upc", "012345678905"}, {"ordinal", "2"}, {"pricing_type", "FIXED_PRICING"}, {"price_amount", "650"},
              {"price_currency", "USD"}, {"track_inventory", "true"}, {"inventory_alert_type", "LOW_QUANTITY"},
              {"inventory_alert_threshold", "5"}, {"sellable", "true"}, {"stockable", "false"},
              {"measurement_unit_id", "MU1"}, {"present_at_all_locations", "true"},
              {"present_at_location_ids", R"({"L1"})"}, {"absent_at_location_ids", R"({"L2"})"}}},
            J(R"({"id": "V1"})"),
            {{"id", "V1"}, {"is_deleted", "false"}}};
        m["catalog_vendor_info"] = {
            J(R"({
              "type": "ITEM_VARIATION", "id": "V1", "version": 7, "updated_at": "2024-03-03T12:00:00Z",
              "is_deleted": false,
              "item_variation_data": {"item_id": "I1", "item_variation_vendor_infos": [
                {"type": "ITEM_VARIATION_VENDOR_INFO", "id": "VI1", "version": 3,
                 "updated_at": "2024-03-03T12:00:01Z", "is_deleted": false,
                 "item_variation_vendor_info_data": {"item_variation_id": "V1", "vendor_id": "VEN1",
                   "sku": "FLOUR-25", "price_money": {"amount": 300, "currency": "USD"}, "ordinal": 1}},
                {"type": "ITEM_VARIATION_VENDOR_INFO", "id": "VI2", "version": 4,
                 "updated_at": "2024-03-03T12:00:02Z", "is_deleted": true,
                 "item_variation_vendor_info_data": {"vendor_id": "VEN2"}}]}})"),
            {{{"id", "VI1"}, {"variation_id", "V1"}, {"vendor_id", "VEN1"}, {"sku", "FLOUR-25"},
              {"price_amount", "300"}, {"price_currency", "USD"}, {"ordinal", "1"}, {"version", "3"},
              {"updated_at", "2024-03-03T12:00:01Z"}, {"is_deleted", "false"}, {"deleted_at", std::nullopt}},
             {{"id", "VI2"}, {"variation_id", "V1"}, {"vendor_id", "VEN2"}, {"is_deleted", "true"},
              {"deleted_at", "2024-03-03T12:00:02Z"}, {"sku", std::nullopt}}},
            J(R"({"id": "V1", "item_variation_data": {"item_variation_vendor_infos": [{"id": "VI1"}]}})"),
            {{"id", "VI1"}, {"variation_id", "V1"}, {"is_deleted", "false"}}};
        m["catalog_inventory"] = {
            J(R"({"catalog_object_id": "V1", "catalog_object_type": "ITEM_VARIATION", "state": "IN_STOCK",
                  "location_id": "L1", "quantity": "12.5", "calculated_at": "2024-03-04T08:00:00.5Z",
                  "is_estimated": false})"),
            {{{"catalog_object_id", "V1"}, {"location_id", "L1"}, {"state", "IN_STOCK"},
              {"catalog_object_type", "ITEM_VARIATION"}, {"quantity", "12.5"},
              {"calculated_at", "2024-03-04T08:00:00.5Z"}, {"is_estimated", "false"}}},
            J(R"({"catalog_object_id": "V1", "location_id": "L1", "state": "IN_STOCK"})"),
            {{"catalog_object_id", "V1"}, {"location_id", "L1"}, {"state", "IN_STOCK"}}};
        m["vendors"] = {
            J(R"({"id": "VEN1", "created_at": "2023-05-01T00:00:00Z", "updated_at": "2024-02-01T00:00:00Z",
                  "name": "Flour Co", "address": {"address_line_1": "2 Mill Rd", "country": "US"},
                  "contacts": [{"id": "CT1", "name": "Ann", "email_address": "ann@example.com",
                                "phone_number": "555-0101", "removed": false, "ordinal": 0}],
                  "account_number": "AC-1", "note": "net 30", "version": 4, "status": "ACTIVE"})"),
            {{{"id", "VEN1"}, {"name", "Flour Co"}, {"status", "ACTIVE"}, {"account_number", "AC-1"},
              {"note", "net 30"}, {"version", "4"}, {"created_at", "2023-05-01T00:00:00Z"},
              {"updated_at", "2024-02-01T00:00:00Z"},
              {"address", R"({"address_line_1":"2 Mill Rd","country":"US"})"},
              {"contacts", R"([{"id":"CT1","name":"Ann","email_address":"ann@example.com",
                  "phone_number":"555-0101","removed":false,"ordinal":0}])"}}},
            J(R"({"id": "VEN1"})"),
            {{"id", "VEN1"}}};

        // One order with every child array; the children's samples are the same order.
        const json order = J(R"({
          "id": "O1", "location_id": "L1", "reference_id": "R1", "source": {"name": "Point of Sale"},
          "customer_id": "CU1", "ticket_name": "T-12", "state": "COMPLETED", "version": 3,
          "created_at": "2024-03-05T09:00:00Z", "updated_at": "2024-03-05T09:05:00.250Z",
          "closed_at": "2024-03-05T09:05:00Z",
          "total_money": {"amount": 1300, "currency": "USD"}, "total_tax_money": {"amount": 100, "currency": "USD"},
          "total_discount_money": {"amount": 50, "currency": "USD"}, "total_tip_money": {"amount": 150, "currency": "USD"},
          "total_service_charge_money": {"amount": 0, "currency": "USD"},
          "net_amount_due_money": {"amount": 0, "currency": "USD"},
          "line_items": [
            {"uid": "LI1", "name": "Sourdough", "quantity": "2",
             "quantity_unit": {"measurement_unit": {"weight_unit": "IMPERIAL_POUND"}, "precision": 1},
             "item_type": "ITEM", "catalog_object_id": "V1", "catalog_version": 1700000000001,
             "variation_name": "Large", "note": "sliced",
             "base_price_money": {"amount": 650, "currency": "USD"},
             "variation_total_price_money": {"amount": 1300, "currency": "USD"},
             "gross_sales_money": {"amount": 1300, "currency": "USD"},
             "total_tax_money": {"amount": 100, "currency": "USD"},
             "total_discount_money": {"amount": 50, "currency": "USD"},
             "total_service_charge_money": {"amount": 0, "currency": "USD"},
             "total_money": {"amount": 1350, "currency": "USD"},
             "modifiers": [{"uid": "MOD1", "name": "Extra seeds", "base_price_money": {"amount": 50, "currency": "USD"}}],
             "applied_taxes": [{"uid": "AT1", "tax_uid": "TX1", "applied_money": {"amount": 100, "currency": "USD"}}],
             "applied_discounts": [{"uid": "AD1", "discount_uid": "D1", "applied_money": {"amount": 50, "currency": "USD"}}]},
            {"name": "Custom amount", "quantity": "0.333", "item_type": "CUSTOM_AMOUNT",
             "base_price_money": {"amount": 100, "currency": "EUR"}}],
          "fulfillments": [
            {"uid": "F1", "type": "PICKUP", "state": "PROPOSED", "line_item_application": "ALL",
             "entries": [{"uid": "FE1", "line_item_uid": "LI1", "quantity": "1"}],
             "pickup_details": {"recipient": {"display_name": "Ann"}, "pickup_at": "2024-03-05T10:00:00Z"},
             "shipment_details": {"carrier": "UPS", "tracking_number": "1Z"},
             "delivery_details": {"recipient": {"display_name": "Ann"}}},
            {"type": "SHIPMENT", "state": "RESERVED"}],
          "refunds": [
            {"id": "RF1", "location_id": "L1", "transaction_id": "O1", "tender_id": "TN1",
             "created_at": "2024-03-06T08:00:00Z", "reason": "Stale", "status": "COMPLETED",
             "amount_money": {"amount": 200, "currency": "USD"},
             "processing_fee_money": {"amount": -6, "currency": "USD"}}],
          "returns": [
            {"uid": "RT1", "source_order_id": "O0",
             "return_line_items": [{"uid": "RLI1", "quantity": "1", "name": "Sourdough"}],
             "return_service_charges": [], "return_taxes": [{"uid": "RTX1"}], "return_discounts": [{"uid": "RD1"}],
             "return_tips": [{"uid": "RTP1", "applied_money": {"amount": 10, "currency": "USD"}}],
             "return_amounts": {"total_money": {"amount": -650, "currency": "USD"},
                                "tax_money": {"amount": -50, "currency": "USD"},
                                "discount_money": {"amount": 0, "currency": "USD"}}}],
          "tenders": [
            {"id": "TN1", "location_id": "L1", "transaction_id": "O1", "created_at": "2024-03-05T09:04:00Z",
             "note": "thanks", "amount_money": {"amount": 1300, "currency": "USD"},
             "tip_money": {"amount": 150, "currency": "USD"},
             "processing_fee_money": {"amount": 40, "currency": "USD"}, "customer_id": "CU1", "type": "CARD",
             "card_details": {"status": "CAPTURED", "card": {"card_brand": "VISA", "last_4": "1111"},
                              "entry_method": "KEYED"},
             "payment_id": "P1"}]})");
        m["orders"] = {
            order,
            {{{"id", "O1"}, {"location_id", "L1"}, {"state", "COMPLETED"}, {"version", "3"},
              {"created_at", "2024-03-05T09:00:00Z"}, {"updated_at", "2024-03-05T09:05:00.250Z"},
              {"closed_at", "2024-03-05T09:05:00Z"}, {"reference_id", "R1"}, {"customer_id", "CU1"},
              {"source_name", "Point of Sale"}, {"ticket_name", "T-12"}, {"currency", "USD"},
              {"total_money_amount", "1300"}, {"total_tax_money_amount", "100"},
              {"total_discount_money_amount", "50"}, {"total_tip_money_amount", "150"},
              {"total_service_charge_money_amount", "0"}, {"net_amount_due_money_amount", "0"}}},
            J(R"({"id": "O1"})"),
            {{"id", "O1"}}};
        m["order_line_items"] = {
            order,
            {{{"order_id", "O1"}, {"uid", "LI1"}, {"line_index", "0"}, {"name", "Sourdough"}, {"quantity", "2"},
              {"quantity_unit", R"({"measurement_unit":{"weight_unit":"IMPERIAL_POUND"},"precision":1})"},
              {"item_type", "ITEM"}, {"catalog_object_id", "V1"}, {"catalog_version", "1700000000001"},
              {"variation_name", "Large"}, {"note", "sliced"}, {"currency", "USD"},
              {"base_price_money_amount", "650"}, {"variation_total_price_money_amount", "1300"},
              {"gross_sales_money_amount", "1300"}, {"total_tax_money_amount", "100"},
              {"total_discount_money_amount", "50"}, {"total_service_charge_money_amount", "0"},
              {"total_money_amount", "1350"},
              {"modifiers", R"([{"uid":"MOD1","name":"Extra seeds","base_price_money":{"amount":50,"currency":"USD"}}])"},
              {"applied_taxes", R"([{"uid":"AT1","tax_uid":"TX1","applied_money":{"amount":100,"currency":"USD"}}])"},
              {"applied_discounts", R"([{"uid":"AD1","discount_uid":"D1","applied_money":{"amount":50,"currency":"USD"}}])"}},
             // no uid: "#<index>"; no total_money: the base price's currency
             {{"order_id", "O1"}, {"uid", "#1"}, {"line_index", "1"}, {"quantity", "0.333"}, {"currency", "EUR"},
              {"base_price_money_amount", "100"}, {"total_money_amount", std::nullopt}}},
            J(R"({"id": "O1", "line_items": [{}]})"),
            {{"order_id", "O1"}, {"uid", "#0"}, {"line_index", "0"}}};
        m["order_fulfillments"] = {
            order,
            {{{"order_id", "O1"}, {"uid", "F1"}, {"line_index", "0"}, {"type", "PICKUP"}, {"state", "PROPOSED"},
              {"line_item_application", "ALL"},
              {"entries", R"([{"uid":"FE1","line_item_uid":"LI1","quantity":"1"}])"},
              {"pickup_details", R"({"recipient":{"display_name":"Ann"},"pickup_at":"2024-03-05T10:00:00Z"})"},
              {"shipment_details", R"({"carrier":"UPS","tracking_number":"1Z"})"},
              {"delivery_details", R"({"recipient":{"display_name":"Ann"}})"}},
             {{"order_id", "O1"}, {"uid", "#1"}, {"line_index", "1"}, {"type", "SHIPMENT"}, {"state", "RESERVED"},
              {"pickup_details", std::nullopt}}},
            J(R"({"id": "O1", "fulfillments": [{}]})"),
            {{"order_id", "O1"}, {"uid", "#0"}, {"line_index", "0"}}};
        m["order_refunds"] = {
            order,
            {{{"order_id", "O1"}, {"id", "RF1"}, {"location_id", "L1"}, {"transaction_id", "O1"},
              {"tender_id", "TN1"}, {"created_at", "2024-03-06T08:00:00Z"}, {"reason", "Stale"},
              {"status", "COMPLETED"}, {"currency", "USD"}, {"amount_money_amount", "200"},
              {"processing_fee_money_amount", "-6"}}},
            J(R"({"id": "O1", "refunds": [{"id": "RF1"}]})"),
            {{"order_id", "O1"}, {"id", "RF1"}}};
        m["order_returns"] = {
            order,
            {{{"order_id", "O1"}, {"uid", "RT1"}, {"line_index", "0"}, {"source_order_id", "O0"},
              {"currency", "USD"}, {"return_total_money_amount", "-650"}, {"return_tax_money_amount", "-50"},
              {"return_discount_money_amount", "0"},
              {"return_line_items", R"([{"uid":"RLI1","quantity":"1","name":"Sourdough"}])"},
              {"return_service_charges", "[]"}, {"return_taxes", R"([{"uid":"RTX1"}])"},
              {"return_discounts", R"([{"uid":"RD1"}])"},
              {"return_tips", R"([{"uid":"RTP1","applied_money":{"amount":10,"currency":"USD"}}])"}}},
            J(R"({"id": "O1", "returns": [{}]})"),
            {{"order_id", "O1"}, {"uid", "#0"}, {"line_index", "0"}}};
        m["tenders"] = {
            order,
            {{{"order_id", "O1"}, {"id", "TN1"}, {"location_id", "L1"}, {"transaction_id", "O1"},
              {"payment_id", "P1"}, {"type", "CARD"}, {"created_at", "2024-03-05T09:04:00Z"},
              {"customer_id", "CU1"}, {"note", "thanks"}, {"currency", "USD"}, {"amount_money_amount", "1300"},
              {"tip_money_amount", "150"}, {"processing_fee_money_amount", "40"}, {"card_status", "CAPTURED"},
              {"card_brand", "VISA"}, {"card_last_4", "1111"}, {"card_entry_method", "KEYED"}}},
            J(R"({"id": "O1", "tenders": [{"id": "TN1"}]})"),
            {{"order_id", "O1"}, {"id", "TN1"}}};
        m["payments"] = {
            J(R"({"id": "P1", "created_at": "2024-03-05T09:04:00.000Z", "updated_at": "2024-03-06T08:00:05.000Z",
                  "amount_money": {"amount": 1300, "currency": "USD"}, "tip_money": {"amount": 150, "currency": "USD"},
                  "total_money": {"amount": 1450, "currency": "USD"}, "app_fee_money": {"amount": 10, "currency": "USD"},
                  "approved_money": {"amount": 1450, "currency": "USD"},
                  "processing_fee": [{"effective_at": "2024-03-05T11:04:00.000Z", "type": "INITIAL",
                                      "amount_money": {"amount": 42, "currency": "USD"}}],
                  "refunded_money": {"amount": 200, "currency": "USD"}, "status": "COMPLETED", "source_type": "CARD",
                  "card_details": {"status": "CAPTURED", "card": {"card_brand": "MASTERCARD", "last_4": "4444"},
                                   "entry_method": "KEYED"},
                  "location_id": "L1", "order_id": "O1", "refund_ids": ["PR1", "PR2"], "customer_id": "CU1",
                  "team_member_id": "TM1", "receipt_number": "P1RN",
                  "receipt_url": "https://squareup.com/receipt/preview/P1", "is_offline_payment": false,
                  "version_token": "vt1"})"),
            {{{"id", "P1"}, {"location_id", "L1"}, {"order_id", "O1"}, {"customer_id", "CU1"},
              {"team_member_id", "TM1"}, {"status", "COMPLETED"}, {"source_type", "CARD"},
              {"created_at", "2024-03-05T09:04:00.000Z"}, {"updated_at", "2024-03-06T08:00:05.000Z"},
              {"currency", "USD"}, {"amount_money_amount", "1300"}, {"tip_money_amount", "150"},
              {"total_money_amount", "1450"}, {"app_fee_money_amount", "10"}, {"approved_money_amount", "1450"},
              {"refunded_money_amount", "200"},
              {"processing_fee", R"([{"effective_at":"2024-03-05T11:04:00.000Z","type":"INITIAL",
                  "amount_money":{"amount":42,"currency":"USD"}}])"},
              {"card_brand", "MASTERCARD"}, {"card_last_4", "4444"}, {"card_status", "CAPTURED"},
              {"receipt_number", "P1RN"}, {"receipt_url", "https://squareup.com/receipt/preview/P1"},
              {"is_offline_payment", "false"}, {"version_token", "vt1"}, {"refund_ids", R"({"PR1","PR2"})"}}},
            J(R"({"id": "P1"})"),
            {{"id", "P1"}}};
        m["payment_refunds"] = {
            J(R"({"id": "PR1", "status": "COMPLETED", "location_id": "L1", "unlinked": false,
                  "destination_type": "CARD", "amount_money": {"amount": 200, "currency": "USD"},
                  "app_fee_money": {"amount": 0, "currency": "USD"},
                  "processing_fee": [{"type": "INITIAL", "amount_money": {"amount": -6, "currency": "USD"}}],
                  "payment_id": "P1", "order_id": "O1", "reason": "Stale", "created_at": "2024-03-06T08:00:00Z",
                  "updated_at": "2024-03-06T08:00:05Z", "team_member_id": "TM1", "terminal_refund_id": "TR1"})"),
            {{{"id", "PR1"}, {"payment_id", "P1"}, {"order_id", "O1"}, {"location_id", "L1"},
              {"status", "COMPLETED"}, {"destination_type", "CARD"}, {"unlinked", "false"}, {"reason", "Stale"},
              {"currency", "USD"}, {"amount_money_amount", "200"}, {"app_fee_money_amount", "0"},
              {"processing_fee", R"([{"type":"INITIAL","amount_money":{"amount":-6,"currency":"USD"}}])"},
              {"created_at", "2024-03-06T08:00:00Z"}, {"updated_at", "2024-03-06T08:00:05Z"},
              {"team_member_id", "TM1"}, {"terminal_refund_id", "TR1"}}},
            J(R"({"id": "PR1"})"),
            {{"id", "PR1"}}};
        m["transactions"] = {
            J(R"({"id": "TX1", "location_id": "L1", "created_at": "2016-03-10T22:57:56Z",
                  "tenders": [{"id": "TN1", "type": "CARD"}, {"id": "TN2", "type": "CASH"}],
                  "refunds": [{"id": "RF1", "tender_id": "TN1"}], "reference_id": "ref-1",
                  "product": "REGISTER", "client_id": "cl-1", "order_id": "O1"})"),
            {{{"id", "TX1"}, {"location_id", "L1"}, {"created_at", "2016-03-10T22:57:56Z"}, {"order_id", "O1"},
              {"reference_id", "ref-1"}, {"product", "REGISTER"}, {"client_id", "cl-1"},
              {"tender_ids", R"({"TN1","TN2"})"}, {"refund_ids", R"({"RF1"})"}}},
            J(R"({"id": "TX1"})"),
            {{"id", "TX1"}}};
        return m;
    }();
    return s;
}

const Sample& sample_for(const TableDef& t) {
    auto it = samples().find(t.name);
    if (it == samples().end()) throw std::runtime_error("no sample for table " + t.name);
    return it->second;
}

// `full` with every field that `keep` lacks set to JSON null (recursively where keep has the field).
json nullify(const json& full, const json& keep) {
    if (full.is_object() && keep.is_object()) {
        json out = json::object();
        for (auto it = full.begin(); it != full.end(); ++it)
            out[it.key()] = keep.contains(it.key()) ? nullify(*it, keep[it.key()]) : json(nullptr);
        for (auto it = keep.begin(); it != keep.end(); ++it)
            if (!out.contains(it.key())) out[it.key()] = *it;
        return out;
    }
    if (full.is_array() && keep.is_array()) {
        json out = json::array();
        for (std::size_t i = 0; i < keep.size(); ++i) out.push_back(i < full.size() ? nullify(full[i], keep[i]) : keep[i]);
        return out;
    }
    return keep;
}

// The rows a minimal-like sample must map to: the listed columns, raw = the element, all else NULL.
void expect_minimal(const TableDef& t, const json& input, const Sample& s, const std::string& what) {
    RowBatch b = map_sample(t, input);
    ASSERT_EQ(b.rows, 1u) << t.name << " (" << what << ")";
    Row want;
    for (const auto& c : t.columns) want[c.name] = std::nullopt;
    for (const auto& [k, v] : s.minimal_row) want[k] = v;
    json copy = input;
    if (const ColumnDef* raw = raw_column(t)) want[raw->name] = element_of(t, copy).dump();
    expect_row(t, row_of(b, 0), want, true, what);
}

// Sets a value at a dotted path, creating objects on the way.
void set_path(json& root, const std::vector<std::string>& path, const json& v) {
    json* j = &root;
    for (std::size_t i = 0; i + 1 < path.size(); ++i) {
        if (!j->contains(path[i]) || !(*j)[path[i]].is_object()) (*j)[path[i]] = json::object();
        j = &(*j)[path[i]];
    }
    (*j)[path.back()] = v;
}

void erase_path(json& root, const std::vector<std::string>& path) {
    json* j = &root;
    for (std::size_t i = 0; i + 1 < path.size(); ++i) {
        if (!j->is_object() || !j->contains(path[i])) return;
        j = &(*j)[path[i]];
    }
    if (j->is_object()) j->erase(path.back());
}

// A column source that is a plain path ("a.b", "^a.b", "a[].b"), split; nullopt for anything else.
struct PlainPath {
    bool parent = false;
    std::vector<std::string> path;  // up to the array for an array path
    bool array = false;
};
std::optional<PlainPath> plain_path(const std::string& source) {
    for (char c : std::string("()|$@#,")) if (source.find(c) != std::string::npos) return std::nullopt;
    PlainPath p;
    std::string s = source;
    if (!s.empty() && s[0] == '^') {
        p.parent = true;
        s = s.substr(1);
    }
    const auto arr = s.find("[]");
    if (arr != std::string::npos) {
        p.array = true;
        s = s.substr(0, arr);
    }
    p.path = split_dots(s);
    return p;
}

std::vector<std::string> table_names(bool children_only) {
    std::vector<std::string> n;
    for (const auto& t : synced_tables())
        if (!children_only || is_child(t)) n.push_back(t.name);
    return n;
}

void expect_mapping_error(const TableDef& t, const json& input, const std::vector<std::string>& needles,
                          const std::string& what) {
    try {
        map_sample(t, input);
        ADD_FAILURE() << t.name << ": no MappingError for " << what << ": " << input.dump();
    } catch (const MappingError& e) {
        const std::string msg = e.what();
        for (const auto& n : needles)
            EXPECT_NE(msg.find(n), std::string::npos) << "message \"" << msg << "\" lacks \"" << n << "\" (" << what << ")";
    }
}

}  // namespace

// ---- the descriptions themselves ------------------------------------------------------------------

TEST(Tables, EveryTableHasASampleAndEverySampleATable) {
    std::set<std::string> names;
    for (const auto& t : synced_tables()) {
        EXPECT_TRUE(names.insert(t.name).second) << "duplicate table " << t.name;
        EXPECT_TRUE(samples().count(t.name)) << "no sample in test_mapping.cpp for table " << t.name;
    }
    for (const auto& [n, _] : samples()) EXPECT_TRUE(names.count(n)) << "sample for unknown table " << n;
}

TEST(Tables, KeysAreColumnsAndColumnsAreUnique) {
    for (const auto& t : synced_tables()) {
        std::set<std::string> cols;
        for (const auto& c : t.columns) {
            EXPECT_TRUE(cols.insert(c.name).second) << t.name << "." << c.name << " twice";
            EXPECT_NE(c.name, "merchant_id") << t.name;
            EXPECT_NE(c.name, "synced_at") << t.name;
        }
        EXPECT_FALSE(t.key.empty()) << t.name;
        for (const auto& k : t.key) EXPECT_NE(t.column(k), nullptr) << t.name << " key " << k;
        EXPECT_EQ(t.column("no_such_column"), nullptr);
        EXPECT_EQ(&table_def(t.name), &t);
    }
    EXPECT_THROW(table_def("no_such_table"), std::out_of_range);
}

TEST(Tables, TypeNames) {
    EXPECT_STREQ(pg_type_name(PgType::Text), "text");
    EXPECT_STREQ(pg_type_name(PgType::Integer), "integer");
    EXPECT_STREQ(pg_type_name(PgType::Bigint), "bigint");
    EXPECT_STREQ(pg_type_name(PgType::Numeric), "numeric");
    EXPECT_STREQ(pg_type_name(PgType::Boolean), "boolean");
    EXPECT_STREQ(pg_type_name(PgType::Timestamptz), "timestamp with time zone");
    EXPECT_STREQ(pg_type_name(PgType::Jsonb), "jsonb");
    EXPECT_STREQ(pg_type_name(PgType::TextArray), "text[]");
}

// ---- every table, table-driven ------------------------------------------------------------------

class EveryTable : public ::testing::TestWithParam<std::string> {
protected:
    const TableDef& t() const { return table_def(GetParam()); }
    const Sample& s() const { return sample_for(t()); }
};

TEST_P(EveryTable, FullSampleMapsEveryColumn) {
    const TableDef& table = t();
    RowBatch b = map_sample(table, s().full);
    ASSERT_EQ(b.rows, s().rows.size());
    for (std::size_t i = 0; i < b.rows; ++i) {
        Row want = s().rows[i];
        json copy = s().full;
        if (const ColumnDef* raw = raw_column(table)) want[raw->name] = element_of(table, copy, i).dump();
        expect_row(table, row_of(b, i), want, i == 0, "full sample row " + std::to_string(i));
    }
    // The full sample should exercise every column at least once with a value.
    for (const auto& c : table.columns) {
        bool any = false;
        for (std::size_t i = 0; i < b.rows; ++i) any = any || b.columns[&c - &table.columns[0]][i].has_value();
        if (c.source.rfind("if(", 0) == 0) continue;  // deleted_at: covered by the deletion tests
        EXPECT_TRUE(any) << table.name << "." << c.name << " is NULL in every row of the full sample";
    }
}

TEST_P(EveryTable, RawIsTheObjectsJsonWhereThereIsOne) {
    const TableDef& table = t();
    const ColumnDef* raw = raw_column(table);
    if (!raw) {  // child tables: their rows are in the parent's raw
        EXPECT_TRUE(is_child(table)) << table.name << " is a top-level table without a raw column";
        return;
    }
    EXPECT_EQ(raw->type, PgType::Jsonb);
    RowBatch b = map_sample(table, s().full);
    const std::size_t col = static_cast<std::size_t>(raw - &table.columns[0]);
    EXPECT_EQ(json::parse(*b.columns[col][0]), s().full);
}

TEST_P(EveryTable, MinimalSampleLeavesOptionalColumnsNull) {
    expect_minimal(t(), s().minimal, s(), "minimal sample");
}

TEST_P(EveryTable, ExplicitNullsAreNull) {
    const json nulls = nullify(s().full, s().minimal);
    ASSERT_NE(nulls, s().minimal);
    expect_minimal(t(), nulls, s(), "explicit nulls: " + nulls.dump());
}

// Each nested path cut short at every level ({a: null}, {a: {}}, {a: {b: null}}, ...) is NULL.
TEST_P(EveryTable, EveryPathCutShortIsNull) {
    const TableDef& table = t();
    for (const auto& c : table.columns) {
        if (s().minimal_row.count(c.name)) continue;  // keys and fallbacks
        // Each alternative of "x|y" on its own (the others are absent in the minimal sample).
        std::vector<std::string> alts;
        std::string cur;
        for (char ch : c.source) {
            if (ch == '|') {
                alts.push_back(cur);
                cur.clear();
            } else {
                cur += ch;
            }
        }
        alts.push_back(cur);
        for (const auto& alt : alts) {
            auto p = plain_path(alt);
            if (!p) continue;
            for (std::size_t depth = 0; depth < p->path.size(); ++depth) {
                const std::vector<std::string> prefix(p->path.begin(), p->path.begin() + static_cast<long>(depth) + 1);
                for (const json& v : {json(nullptr), json::object()}) {
                    if (v.is_object() && depth + 1 == p->path.size()) continue;  // {} at the leaf is a value
                    json in = s().minimal;
                    set_path(p->parent ? in : element_of(table, in), prefix, v);
                    RowBatch b = map_sample(table, in);
                    ASSERT_EQ(b.rows, 1u);
                    expect_value(table, c.name, row_of(b, 0).at(c.name), std::nullopt, "cut short: " + in.dump());
                }
            }
        }
    }
}

// A string where an integer belongs, an object where a boolean belongs, and so on: MappingError
// naming "table.column".
TEST_P(EveryTable, WrongTypesThrowNamingTableAndColumn) {
    const TableDef& table = t();
    int checked = 0;
    for (const auto& c : table.columns) {
        std::vector<json> wrong;
        switch (c.type) {
            case PgType::Integer:
            case PgType::Bigint: wrong = {json("twelve"), json(1.5), json(true), json::object(), json("1.0")}; break;
            case PgType::Numeric: wrong = {json("a dozen"), json(true), json::array(), json("1e3")}; break;
            case PgType::Boolean: wrong = {json::object(), json("true"), json(1), json::array()}; break;
            case PgType::Timestamptz: wrong = {json(1700000000), json("yesterday"), json::object(), json(true)}; break;
            case PgType::TextArray: wrong = {json("x"), json::object(), json(3)}; break;
            case PgType::Text:
            case PgType::Jsonb: continue;  // anything renders as text or JSON
        }
        std::string source = c.source;
        if (source.rfind("any(", 0) == 0) source = source.substr(4, source.find_first_of(",)") - 4);
        auto p = plain_path(source);
        if (!p) continue;  // if(...) and alternatives: covered by the columns they read
        for (const auto& v : wrong) {
            json in = s().minimal;
            json& target = p->parent ? in : element_of(table, in);
            set_path(target, p->path, v);
            expect_mapping_error(table, in, {table.name + "." + c.name}, c.name + " = " + v.dump());
            ++checked;
        }
    }
    RecordProperty("checked", checked);
}

// Without its key the row cannot be stored: MappingError naming the table and the key column.
TEST_P(EveryTable, MissingKeyThrows) {
    const TableDef& table = t();
    for (const auto& k : table.key) {
        const ColumnDef* c = table.column(k);
        auto p = plain_path(c->source);
        if (!p) continue;  // "uid|#" always has a value
        for (bool as_null : {false, true}) {
            json in = s().minimal;
            json& target = p->parent ? in : element_of(table, in);
            if (as_null)
                set_path(target, p->path, nullptr);
            else
                erase_path(target, p->path);
            expect_mapping_error(table, in, {table.name, k}, std::string("key ") + k + (as_null ? " null" : " absent"));
        }
    }
}

// The child tables (rows drawn from an array inside a parent object).
class EveryChildTable : public EveryTable {};

TEST_P(EveryTable, NonObjectElementThrows) {
    const TableDef& table = t();
    for (const json& v : {json("x"), json(1), json::array(), json(nullptr), json(true)}) {
        json in = s().minimal;
        element_of(table, in) = v;
        expect_mapping_error(table, in, {table.name, "expected an object"}, "element " + v.dump());
    }
}

TEST_P(EveryChildTable, ChildArrayThatIsNotAnArrayThrows) {
    const TableDef& table = t();
    for (const json& v : {json("x"), json::object(), json(5), json(false)}) {
        json in = s().minimal;
        set_path(in, split_dots(table.array_path), v);
        expect_mapping_error(table, in, {table.name, table.array_path, "not an array"}, "array " + v.dump());
    }
}

TEST_P(EveryChildTable, ChildArrayAbsentNullOrEmptyGivesNoRows) {
    const TableDef& table = t();
    json absent = s().minimal;
    erase_path(absent, split_dots(table.array_path));
    json null = s().minimal;
    set_path(null, split_dots(table.array_path), nullptr);
    json empty = s().minimal;
    set_path(empty, split_dots(table.array_path), json::array());
    for (const json* in : {&absent, &null, &empty}) EXPECT_EQ(map_sample(table, *in).rows, 0u) << in->dump();
}

TEST_P(EveryTable, RowsAccumulateAndClear) {
    const TableDef& table = t();
    RowBatch b(table);
    TableMapper m(table);
    for (int i = 0; i < 3; ++i) {
        if (is_child(table))
            m.map_children(E(s().full), b);
        else
            m.map_object(E(s().full), b);
    }
    EXPECT_EQ(b.rows, 3 * s().rows.size());
    for (const auto& col : b.columns) EXPECT_EQ(col.size(), b.rows);
    EXPECT_EQ(&m.table(), &table);
    b.clear();
    EXPECT_EQ(b.rows, 0u);
    EXPECT_EQ(b.columns.size(), table.columns.size());
    for (const auto& col : b.columns) EXPECT_TRUE(col.empty());
}

INSTANTIATE_TEST_SUITE_P(Mapping, EveryTable, ::testing::ValuesIn(table_names(false)),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });
INSTANTIATE_TEST_SUITE_P(Mapping, EveryChildTable, ::testing::ValuesIn(table_names(true)),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---- derived values ------------------------------------------------------------------------------

TEST(Mapping, IsDeletedAndDeletedAt) {
    for (const char* name : {"catalog_categories", "catalog_items", "catalog_variations"}) {
        const TableDef& t = table_def(name);
        json o = {{"id", "X"}, {"updated_at", "2024-05-01T00:00:00Z"}};
        RowBatch absent = map_sample(t, o);
        o["is_deleted"] = false;
        RowBatch no = map_sample(t, o);
        o["is_deleted"] = true;
        RowBatch yes = map_sample(t, o);
        o["is_deleted"] = nullptr;
        RowBatch null = map_sample(t, o);
        expect_row(t, row_of(absent, 0), {{"is_deleted", "false"}, {"deleted_at", std::nullopt}}, false, "absent");
        expect_row(t, row_of(no, 0), {{"is_deleted", "false"}, {"deleted_at", std::nullopt}}, false, "false");
        expect_row(t, row_of(yes, 0), {{"is_deleted", "true"}, {"deleted_at", "2024-05-01T00:00:00Z"}}, false, "true");
        expect_row(t, row_of(null, 0), {{"is_deleted", "false"}, {"deleted_at", std::nullopt}}, false, "null");
        // Deleted without an updated_at: deleted, no time.
        RowBatch bare = map_sample(t, json{{"id", "X"}, {"is_deleted", true}});
        expect_row(t, row_of(bare, 0), {{"is_deleted", "true"}, {"deleted_at", std::nullopt}}, false, "bare");
        expect_mapping_error(t, json{{"id", "X"}, {"is_deleted", "yes"}}, {std::string(name) + ".is_deleted", "boolean"},
                             "is_deleted string");
    }
}

TEST(Mapping, VendorInfoInheritsItsVariation) {
    const TableDef& t = table_def("catalog_vendor_info");
    auto parent = [](json deleted, json info) {
        json p = {{"type", "ITEM_VARIATION"}, {"id", "V9"}, {"updated_at", "2024-06-01T00:00:00Z"},
                  {"item_variation_data", {{"item_variation_vendor_infos", json::array({info})}}}};
        if (!deleted.is_discarded()) p["is_deleted"] = deleted;
        return p;
    };
    const json live = {{"id", "VI"}, {"updated_at", "2024-05-01T00:00:00Z"}};
    json dead = live;
    dead["is_deleted"] = true;
    const json none(json::value_t::discarded);

    // The variation is deleted, the vendor info says nothing: deleted at the variation's time.
    expect_row(t, row_of(map_sample(t, parent(true, live)), 0),
               {{"is_deleted", "true"}, {"deleted_at", "2024-06-01T00:00:00Z"}, {"variation_id", "V9"}}, false,
               "parent deleted");
    // The vendor info itself is deleted: its own time wins.
    expect_row(t, row_of(map_sample(t, parent(false, dead)), 0),
               {{"is_deleted", "true"}, {"deleted_at", "2024-05-01T00:00:00Z"}}, false, "own deleted");
    expect_row(t, row_of(map_sample(t, parent(true, dead)), 0),
               {{"is_deleted", "true"}, {"deleted_at", "2024-05-01T00:00:00Z"}}, false, "both deleted");
    // Neither deleted (absent, false, null).
    for (const json& d : {none, json(false), json(nullptr)})
        expect_row(t, row_of(map_sample(t, parent(d, live)), 0), {{"is_deleted", "false"}, {"deleted_at", std::nullopt}},
                   false, "parent is_deleted " + d.dump());
    // variation_id: the vendor info's own item_variation_id first, else the parent's id.
    json own = live;
    own["item_variation_vendor_info_data"] = {{"item_variation_id", "V-OWN"}};
    expect_row(t, row_of(map_sample(t, parent(false, own)), 0), {{"variation_id", "V-OWN"}}, false, "own variation id");
    own["item_variation_vendor_info_data"]["item_variation_id"] = nullptr;
    expect_row(t, row_of(map_sample(t, parent(false, own)), 0), {{"variation_id", "V9"}}, false, "null variation id");
    // A parent is_deleted of the wrong type is the is_deleted column's error.
    expect_mapping_error(t, parent(json("true"), live), {"catalog_vendor_info.is_deleted"}, "parent is_deleted string");
}

TEST(Mapping, UidFallsBackToIndexAndLineIndexCounts) {
    const TableDef& t = table_def("order_line_items");
    json order = J(R"({"id": "O7", "line_items": [{"uid": "A"}, {}, {"uid": null}, {"uid": ""}, {"uid": "E"}]})");
    RowBatch b = map_sample(t, order);
    ASSERT_EQ(b.rows, 5u);
    const char* uids[] = {"A", "#1", "#2", "", "E"};
    for (std::size_t i = 0; i < 5; ++i) {
        expect_row(t, row_of(b, i), {{"order_id", "O7"}, {"uid", uids[i]}, {"line_index", std::to_string(i)}}, false,
                   "line " + std::to_string(i));
    }
    for (const char* name : {"order_fulfillments", "order_returns"}) {
        const TableDef& c = table_def(name);
        json o = {{"id", "O8"}, {c.array_path, json::array({json::object(), {{"uid", "U"}}})}};
        RowBatch r = map_sample(c, o);
        ASSERT_EQ(r.rows, 2u);
        expect_row(c, row_of(r, 0), {{"uid", "#0"}, {"line_index", "0"}}, false, name);
        expect_row(c, row_of(r, 1), {{"uid", "U"}, {"line_index", "1"}}, false, name);
    }
    // The parent's id is the order_id of every row; without it no row can be keyed.
    expect_mapping_error(t, J(R"({"line_items": [{"uid": "A"}]})"), {"order_line_items", "order_id"}, "no order id");
}

TEST(Mapping, CurrencyAlternatives) {
    const TableDef& orders = table_def("orders");
    expect_row(orders, row_of(map_sample(orders, J(R"({"id": "O", "net_amount_due_money": {"amount": 5, "currency": "CAD"}})")), 0),
               {{"currency", "CAD"}, {"total_money_amount", std::nullopt}, {"net_amount_due_money_amount", "5"}}, false,
               "net amount's currency");
    expect_row(orders,
               row_of(map_sample(orders, J(R"({"id": "O", "total_money": {"amount": 5, "currency": null},
                                                 "net_amount_due_money": {"currency": "JPY"}})")), 0),
               {{"currency", "JPY"}}, false, "null first alternative");
    const TableDef& payments = table_def("payments");
    expect_row(payments, row_of(map_sample(payments, J(R"({"id": "P", "total_money": {"amount": 1, "currency": "GBP"}})")), 0),
               {{"currency", "GBP"}, {"amount_money_amount", std::nullopt}, {"total_money_amount", "1"}}, false,
               "payment total's currency");
}

// ---- values as PostgreSQL text input -------------------------------------------------------------

TEST(Mapping, MoneyAmountsAreIntegers) {
    const TableDef& t = table_def("payments");
    auto amount = [&](const json& a) {
        return row_of(map_sample(t, json{{"id", "P"}, {"amount_money", {{"amount", a}, {"currency", "USD"}}}}), 0)
            .at("amount_money_amount");
    };
    EXPECT_EQ(amount(0), "0");
    EXPECT_EQ(amount(-250), "-250");
    EXPECT_EQ(amount(9007199254740993LL), "9007199254740993");  // beyond a double's precision
    EXPECT_EQ(amount(std::int64_t{9223372036854775807LL}), "9223372036854775807");
    EXPECT_EQ(amount("1300"), "1300");  // an integer written as a string
    EXPECT_EQ(amount("-7"), "-7");
    for (const json& bad : {json("13.00"), json(13.5), json(""), json("-"), json("+5"), json("1,300"), json(" 5"),
                            json("123456789012345678901")}) {
        expect_mapping_error(t, json{{"id", "P"}, {"amount_money", {{"amount", bad}}}},
                             {"payments.amount_money_amount", "integer"}, "amount " + bad.dump());
    }
}

TEST(Mapping, QuantitiesAreDecimalStrings) {
    const TableDef& t = table_def("catalog_inventory");
    auto qty = [&](const json& q) {
        return row_of(map_sample(t, json{{"catalog_object_id", "V"}, {"location_id", "L"}, {"state", "IN_STOCK"},
                                         {"quantity", q}}), 0)
            .at("quantity");
    };
    EXPECT_EQ(qty("12.5"), "12.5");
    EXPECT_EQ(qty("-3"), "-3");
    EXPECT_EQ(qty("0.00001"), "0.00001");
    EXPECT_EQ(qty("100000000000000000000.5"), "100000000000000000000.5");  // passed through, never rounded
    EXPECT_EQ(qty(".5"), ".5");
    EXPECT_EQ(qty(7), "7");
    EXPECT_EQ(qty(2.5), "2.5");
    for (const json& bad : {json("abc"), json(""), json("."), json("1.2.3"), json("1e3"), json("NaN"), json(" 1"),
                            json(true), json::object()}) {
        expect_mapping_error(t, json{{"catalog_object_id", "V"}, {"location_id", "L"}, {"state", "S"}, {"quantity", bad}},
                             {"catalog_inventory.quantity", "decimal"}, "quantity " + bad.dump());
    }
    const TableDef& li = table_def("order_line_items");
    expect_row(li, row_of(map_sample(li, J(R"({"id": "O", "line_items": [{"quantity": "1.5"}]})")), 0),
               {{"quantity", "1.5"}}, false, "line item quantity");
}

TEST(Mapping, TimestampsPassThrough) {
    const TableDef& t = table_def("orders");
    for (const char* ts : {"2024-03-05T09:05:00Z", "2024-03-05T09:05:00.123456Z", "2024-03-05T11:05:00+02:00",
                           "2024-03-05T09:05:00.1-07:00"}) {
        expect_row(t, row_of(map_sample(t, json{{"id", "O"}, {"created_at", ts}}), 0), {{"created_at", ts}}, false, ts);
    }
    for (const json& bad : {json("yesterday"), json(""), json("2024/03/05"), json(1709629500), json(true)})
        expect_mapping_error(t, json{{"id", "O"}, {"created_at", bad}}, {"orders.created_at", "timestamp"},
                             "created_at " + bad.dump());
}

TEST(Mapping, BooleansRenderAsTrueFalse) {
    const TableDef& t = table_def("payments");
    EXPECT_EQ(row_of(map_sample(t, json{{"id", "P"}, {"is_offline_payment", true}}), 0).at("is_offline_payment"), "true");
    EXPECT_EQ(row_of(map_sample(t, json{{"id", "P"}, {"is_offline_payment", false}}), 0).at("is_offline_payment"), "false");
    expect_mapping_error(t, json{{"id", "P"}, {"is_offline_payment", {{"value", true}}}},
                         {"payments.is_offline_payment", "expected a boolean, got an object"}, "object as boolean");
}

TEST(Mapping, TextColumnsRenderOtherScalars) {
    const TableDef& t = table_def("locations");
    const Row r = row_of(map_sample(t, J(R"({"id": 42, "mcc": 5812, "name": true, "description": {"a": 1},
                                              "status": "", "country": "Ünïcödé ☕"})")), 0);
    EXPECT_EQ(r.at("id"), "42");
    EXPECT_EQ(r.at("mcc"), "5812");
    EXPECT_EQ(r.at("name"), "true");
    EXPECT_EQ(json::parse(*r.at("description")), J(R"({"a": 1})"));
    EXPECT_EQ(r.at("status"), "");  // an empty string is a value, not NULL
    EXPECT_EQ(r.at("country"), "Ünïcödé ☕");
}

TEST(Mapping, JsonbColumnsKeepAnyJson) {
    const TableDef& t = table_def("locations");
    for (const char* v : {R"({"k": [1, 2, {"x": null}]})", "[]", "{}", "\"text\"", "12.5", "false"}) {
        const Row r = row_of(map_sample(t, json{{"id", "L"}, {"address", json::parse(v)}}), 0);
        ASSERT_TRUE(r.at("address")) << v;
        EXPECT_EQ(json::parse(*r.at("address")), json::parse(v)) << v;
    }
}

TEST(Mapping, RawKeepsEverythingIncludingUnknownFieldsAndUnicode) {
    const TableDef& t = table_def("payments");
    const json p = J(R"({"id": "P\"1\\", "new_field_from_the_future": {"deep": [1, null, "ü"]}, "note": "☕\n\t"})");
    const Row r = row_of(map_sample(t, p), 0);
    EXPECT_EQ(json::parse(*r.at("raw")), p);
    EXPECT_EQ(r.at("id"), "P\"1\\");
}

// ---- arrays ------------------------------------------------------------------------------------

// PostgreSQL's text and jsonb cannot hold U+0000: stored as U+FFFD in text, array items and JSON
// (raw and jsonb columns); an escaped backslash followed by "u0000" is text, and stays.
TEST(Mapping, NulCharactersBecomeReplacementCharacters) {
    const TableDef& t = table_def("locations");
    const auto b = map_sample(t, J(R"({"id": "L1", "name": "a\u0000b", "capabilities": ["x\u0000y"],
                                     "address": {"address_line_1": "1\u0000 Main"},
                                     "description": "not a NUL: \\u0000"})"));
    const Row r = row_of(b, 0);
    EXPECT_EQ(r.at("name"), Value("a\xEF\xBF\xBD" "b"));
    EXPECT_EQ(r.at("capabilities"), Value("{\"x\xEF\xBF\xBD" "y\"}"));
    EXPECT_EQ(r.at("description"), Value("not a NUL: \\u0000"));
    EXPECT_EQ(r.at("address"), Value(R"({"address_line_1":"1\ufffd Main"})"));
    EXPECT_EQ(r.at("raw"), Value(R"({"address":{"address_line_1":"1\ufffd Main"},"capabilities":["x\ufffdy"],)"
                                 R"("description":"not a NUL: \\u0000","id":"L1","name":"a\ufffdb"})"));
    for (const auto& [name, v] : r) {
        if (v) {
            EXPECT_EQ(v->find('\0'), std::string::npos) << name;
        }
    }
}

// What _square_request() gives jsonb_in (validate(deep)): a body from Square, rewritten alike.
TEST(Mapping, JsonWithoutNulRewritesOnlyTheEscape) {
    EXPECT_EQ(json_without_nul(R"({"a":"x\u0000y","b":"\\u0000","c":["\u0000"],"d":"\u00001"})"),
              R"({"a":"x\ufffdy","b":"\\u0000","c":["\ufffd"],"d":"\ufffd1"})");
    EXPECT_EQ(json_without_nul(R"({"a":"\u0001\\"})"), R"({"a":"\u0001\\"})");
}

TEST(Mapping, ArrayColumnsAreArrayLiterals) {
    const TableDef& items = table_def("catalog_items");
    auto cats = [&](const json& categories) {
        return row_of(map_sample(items, json{{"id", "I"}, {"item_data", {{"categories", categories}}}}), 0)
            .at("category_ids");
    };
    EXPECT_EQ(cats(J(R"([{"id": "A"}, {"id": "B"}])")), R"({"A","B"})");
    EXPECT_EQ(cats(json::array()), "{}");
    EXPECT_EQ(cats(J(R"([{"id": "q\"uote"}, {"id": "back\\slash"}, {"id": "com,ma"}, {"id": "{brace}"}])")),
              R"({"q\"uote","back\\slash","com,ma","{brace}"})");
    // Elements without the field (absent, null, not an object) are left out.
    EXPECT_EQ(cats(J(R"([{"id": "A"}, {"ordinal": 1}, {"id": null}, "stray", 5, {"id": "B"}])")), R"({"A","B"})");
    EXPECT_EQ(cats(J(R"([{"id": 12}])")), R"({"12"})");

    const TableDef& loc = table_def("locations");
    auto caps = [&](const json& c) { return row_of(map_sample(loc, json{{"id", "L"}, {"capabilities", c}}), 0).at("capabilities"); };
    EXPECT_EQ(caps(J(R"(["CREDIT_CARD_PROCESSING"])")), R"({"CREDIT_CARD_PROCESSING"})");
    EXPECT_EQ(caps(J(R"(["a b", "", "NULL", "ü☕"])")), R"({"a b","","NULL","ü☕"})");
    EXPECT_EQ(caps(json(nullptr)), std::nullopt);
    expect_mapping_error(loc, json{{"id", "L"}, {"capabilities", "CREDIT_CARD_PROCESSING"}},
                         {"locations.capabilities", "expected an array, got a string"}, "capabilities string");
    expect_mapping_error(items, json{{"id", "I"}, {"item_data", {{"categories", {{"id", "A"}}}}}},
                         {"catalog_items.category_ids", "expected an array, got an object"}, "categories object");

    const TableDef& tx = table_def("transactions");
    const Row r = row_of(map_sample(tx, J(R"({"id": "T", "tenders": [], "refunds": null})")), 0);
    EXPECT_EQ(r.at("tender_ids"), "{}");
    EXPECT_EQ(r.at("refund_ids"), std::nullopt);
}

// Regression test (was a bug): in a "p[]" array path (no element field), a JSON null element is rendered as the
// four-letter string "null" ({"A","null"}) instead of being left out like a null element field in
// "p[].id" is (or becoming an SQL NULL element). The path language says "every element's value".
TEST(Mapping, NullElementOfAPlainArrayIsNotTheStringNull) {
    const TableDef& loc = table_def("locations");
    const Row r = row_of(map_sample(loc, J(R"({"id": "L", "capabilities": ["A", null]})")), 0);
    EXPECT_EQ(r.at("capabilities"), R"({"A"})");
}

TEST(Mapping, PgTextArrayEdgeCases) {
    EXPECT_EQ(pg_text_array({}), "{}");
    EXPECT_EQ(pg_text_array({""}), R"({""})");
    EXPECT_EQ(pg_text_array({"a"}), R"({"a"})");
    EXPECT_EQ(pg_text_array({"a", "b", "c"}), R"({"a","b","c"})");
    EXPECT_EQ(pg_text_array({"say \"hi\""}), R"({"say \"hi\""})");
    EXPECT_EQ(pg_text_array({"C:\\dir\\"}), R"({"C:\\dir\\"})");
    EXPECT_EQ(pg_text_array({"\\\""}), R"({"\\\""})");
    EXPECT_EQ(pg_text_array({"a,b", "{c}", " d ", "NULL", "null"}), R"({"a,b","{c}"," d ","NULL","null"})");
    EXPECT_EQ(pg_text_array({"café", "☕", "日本"}), "{\"café\",\"☕\",\"日本\"}");
    EXPECT_EQ(pg_text_array({"line\nbreak", "tab\t"}), "{\"line\nbreak\",\"tab\t\"}");
    EXPECT_EQ(pg_text_array({"'single'"}), R"({"'single'"})");
}

// ---- shapes ------------------------------------------------------------------------------------

TEST(Mapping, WrongShapesNameTheTableAndColumn) {
    const TableDef& v = table_def("catalog_variations");
    expect_mapping_error(v, J(R"({"id": "V", "item_variation_data": {"price_money": {"amount": "six fifty"}}})"),
                         {"catalog_variations.price_amount", "expected an integer, got a string"}, "amount string");
    expect_mapping_error(v, J(R"({"id": "V", "item_variation_data": {"track_inventory": {"on": true}}})"),
                         {"catalog_variations.track_inventory", "expected a boolean, got an object"}, "bool object");
    expect_mapping_error(v, J(R"({"item_variation_data": {"name": "no id"}})"),
                         {"catalog_variations", "no id"}, "no id");
    expect_mapping_error(v, J(R"({"id": null})"), {"catalog_variations", "id"}, "null id");
    const TableDef& li = table_def("order_line_items");
    expect_mapping_error(li, J(R"({"id": "O", "line_items": {"uid": "A"}})"),
                         {"order_line_items", "line_items", "an object, not an array"}, "line_items object");
    expect_mapping_error(li, J(R"({"id": "O", "line_items": [{"uid": "A"}, "B"]})"),
                         {"order_line_items", "expected an object, got a string"}, "element string");
    const TableDef& loc = table_def("locations");
    expect_mapping_error(loc, J("[1, 2]"), {"locations", "expected an object, got an array"}, "top-level array");
    // A path through a non-object is simply absent (Square never nests scalars where objects go).
    const Row r = row_of(map_sample(v, J(R"({"id": "V", "item_variation_data": "oops"})")), 0);
    EXPECT_EQ(r.at("name"), std::nullopt);
    // Nothing is added to the batch by a row that fails.
    RowBatch b(v);
    TableMapper m(v);
    m.map_object(E(J(R"({"id": "V1"})")), b);
    EXPECT_THROW(m.map_object(E(J(R"({"id": "V2", "version": "v2"})")), b), MappingError);
    EXPECT_EQ(b.rows, 1u);
    for (const auto& col : b.columns) EXPECT_EQ(col.size(), 1u);
}

TEST(Mapping, MapperIsMovable) {
    TableMapper a(table_def("vendors"));
    TableMapper b(std::move(a));
    RowBatch out(table_def("vendors"));
    b.map_object(E(J(R"({"id": "VEN"})")), out);
    EXPECT_EQ(out.rows, 1u);
    EXPECT_EQ(&b.table(), &table_def("vendors"));
}
