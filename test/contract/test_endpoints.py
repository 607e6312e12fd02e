# Every endpoint's responses, all pages, validate against Square's (trimmed) schemas; paging walks
# to the end without duplicates and agrees with the snapshot.
import collections

from conftest import assert_square_error

EARLY = "2000-01-01T00:00:00Z"


def ids(items, key="id"):
    return [x[key] for x in items]


def no_dupes(seq):
    dup = [k for k, n in collections.Counter(seq).items() if n > 1]
    assert not dup, dup[:5]


def test_merchants(fake, schemas):
    page = fake.ok("GET", "/v2/merchants")
    schemas.validate("ListMerchantsResponse", page)
    assert len(page["merchant"]) == 1
    m = page["merchant"][0]
    me = fake.ok("GET", "/v2/merchants/me")
    schemas.validate("RetrieveMerchantResponse", me)
    assert me["merchant"] == m
    assert fake.ok("GET", "/v2/merchants/" + m["id"])["merchant"] == m
    assert m["id"] == fake.snapshot()["merchant_id"]
    assert_square_error(fake.call("GET", "/v2/merchants/NOPE"), 404, "NOT_FOUND", schemas=schemas)


def test_locations(fake, schemas):
    page = fake.ok("GET", "/v2/locations")
    schemas.validate("ListLocationsResponse", page)
    locs = page["locations"]
    assert len(locs) == 9
    assert [l["name"] for l in locs] == sorted(l["name"] for l in locs)
    snap = {r[0]: r[1:] for r in fake.snapshot()["tables"]["locations"]["rows"]}
    assert {l["id"]: [l["name"], l["status"], l["timezone"], l["currency"]] for l in locs} == snap
    assert {l["status"] for l in locs} == {"ACTIVE", "INACTIVE"}


def test_catalog_search_all_pages(fake, schemas):
    body = {"object_types": ["ITEM", "ITEM_VARIATION", "CATEGORY"], "include_deleted_objects": True, "limit": 37}
    objs, pages = fake.walk("POST", "/v2/catalog/search", body, "objects",
                            lambda p: schemas.validate("SearchCatalogObjectsResponse", p))
    assert len(pages) > 3 and all(len(p["objects"]) <= 37 for p in pages)
    no_dupes(ids(objs))
    assert len({p["latest_time"] for p in pages}) == 1
    t = fake.snapshot()["tables"]
    assert sorted(o["id"] for o in objs if o["type"] == "ITEM") == sorted(r[0] for r in t["catalog_items"]["rows"])
    assert sorted(o["id"] for o in objs if o["type"] == "CATEGORY") == \
        sorted(r[0] for r in t["catalog_categories"]["rows"])
    assert sorted(o["id"] for o in objs if o["type"] == "ITEM_VARIATION") == \
        sorted(r[0] for r in t["catalog_variations"]["rows"])
    infos = [vi for o in objs if o["type"] == "ITEM_VARIATION"
             for vi in o["item_variation_data"].get("item_variation_vendor_infos", [])]
    assert len(infos) == len(t["catalog_vendor_info"]["rows"]) > 0
    for vi in infos[:50]:
        schemas.validate("ItemVariationVendorInfo", vi)
    # nested variations are full CatalogObjects that point back to their item
    for o in objs:
        if o["type"] == "ITEM":
            assert o["item_data"]["variations"]
            for v in o["item_data"]["variations"]:
                assert v["type"] == "ITEM_VARIATION" and v["item_variation_data"]["item_id"] == o["id"]


def test_catalog_search_default_types_and_limit(fake, schemas):
    page = fake.ok("POST", "/v2/catalog/search", {})
    assert {o["type"] for o in page["objects"]} <= {"ITEM", "CATEGORY"}
    assert len(page["objects"]) == 100          # default page
    big = fake.ok("POST", "/v2/catalog/search", {"object_types": ["ITEM_VARIATION"], "limit": 5000})
    assert len(big["objects"]) == 100           # out of range limit is ignored (advisory)
    rel = fake.ok("POST", "/v2/catalog/search", {"object_types": ["ITEM_VARIATION"], "limit": 3,
                                                  "include_related_objects": True})
    schemas.validate("SearchCatalogObjectsResponse", rel)
    parents = {o["item_variation_data"]["item_id"] for o in rel["objects"]}
    assert parents == {o["id"] for o in rel["related_objects"]}


def test_catalog_list(fake, schemas):
    objs, pages = fake.walk("GET", "/v2/catalog/list?types=item,category", None, "objects",
                            lambda p: schemas.validate("ListCatalogResponse", p))
    assert all(len(p["objects"]) == 100 for p in pages[:-1]) and len(pages) >= 2
    no_dupes(ids(objs))
    assert {o["type"] for o in objs} == {"ITEM", "CATEGORY"}
    assert not any(o["is_deleted"] for o in objs)
    assert_square_error(fake.call("GET", "/v2/catalog/list?types=ITEM,BOGUS"), 400, "INVALID_ENUM_VALUE",
                        schemas=schemas)


def test_catalog_batch_retrieve(fake, schemas):
    objs = fake.ok("POST", "/v2/catalog/search", {"object_types": ["ITEM"], "limit": 3})["objects"]
    want = [o["id"] for o in objs] + ["DOESNOTEXIST"]
    page = fake.ok("POST", "/v2/catalog/batch-retrieve", {"object_ids": want, "include_related_objects": True})
    schemas.validate("BatchRetrieveCatalogObjectsResponse", page)
    assert sorted(ids(page["objects"])) == sorted(want[:3])
    assert page["related_objects"]
    assert_square_error(fake.call("POST", "/v2/catalog/batch-retrieve", {}), 400, "MISSING_REQUIRED_PARAMETER",
                        schemas=schemas)


def test_inventory_counts_all_pages(fake, schemas):
    counts, pages = fake.walk("POST", "/v2/inventory/counts/batch-retrieve", {"limit": 250}, "counts",
                              lambda p: schemas.validate("BatchRetrieveInventoryCountsResponse", p))
    assert len(pages) > 2
    keys = [(c["catalog_object_id"], c["location_id"], c["state"]) for c in counts]
    no_dupes(keys)
    snap = fake.snapshot()["tables"]["catalog_inventory"]["rows"]
    assert sorted(keys) == sorted(tuple(r[:3]) for r in snap)
    ts_ = [c["calculated_at"] for c in counts]
    assert ts_ == sorted(ts_, reverse=True)     # newest calculated_at first
    # default page is 1000
    assert len(fake.ok("POST", "/v2/inventory/counts/batch-retrieve", {})["counts"]) == 1000


def test_vendors(fake, schemas):
    allv, pages = fake.walk("POST", "/v2/vendors/search", {"filter": {"status": ["ACTIVE", "INACTIVE"]}},
                            "vendors", lambda p: schemas.validate("SearchVendorsResponse", p))
    snap = fake.snapshot()["tables"]["vendors"]["rows"]
    assert sorted(ids(allv)) == sorted(r[0] for r in snap)
    default, _ = fake.walk("POST", "/v2/vendors/search", {}, "vendors")
    assert {v["status"] for v in default} == {"ACTIVE"}    # documented: no filter -> ACTIVE only
    assert len(default) == sum(1 for r in snap if r[2] == "ACTIVE")
    by_name, _ = fake.walk("POST", "/v2/vendors/search", {"filter": {"status": ["ACTIVE", "INACTIVE"]},
                                                           "sort": {"field": "NAME", "order": "DESC"}}, "vendors")
    names = [v["name"] for v in by_name]
    assert names == sorted(names, reverse=True)
    bulk = fake.ok("POST", "/v2/vendors/bulk-retrieve", {"vendor_ids": [allv[0]["id"], "NOPE"]})
    schemas.validate("BulkRetrieveVendorsResponse", bulk)
    assert bulk["responses"][allv[0]["id"]]["vendor"] == allv[0]
    assert bulk["responses"]["NOPE"]["errors"][0]["code"] == "NOT_FOUND"
    assert_square_error(fake.call("POST", "/v2/vendors/search", {"filter": {"status": ["GONE"]}}), 400,
                        "INVALID_ENUM_VALUE", schemas=schemas)


def _all_locations(fake):
    return [l["id"] for l in fake.ok("GET", "/v2/locations")["locations"]]


def test_orders_all_pages(fake, schemas):
    locs = _all_locations(fake)
    body = {"location_ids": locs, "limit": 1000,
            "query": {"sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}}
    seen = []
    orders, pages = fake.walk("POST", "/v2/orders/search", body, "orders")
    for p in pages[:2]:
        schemas.validate("SearchOrdersResponse", p)
    for o in orders[::7]:
        schemas.validate("Order", o)
    seen = ids(orders)
    no_dupes(seen)
    t = fake.snapshot()["tables"]
    assert sorted(seen) == sorted(r[0] for r in t["orders"]["rows"])
    upd = [o["updated_at"] for o in orders]
    assert upd == sorted(upd)
    # entries
    ent = fake.ok("POST", "/v2/orders/search", dict(body, return_entries=True, limit=50))
    schemas.validate("SearchOrdersResponse", ent)
    assert "orders" not in ent and len(ent["order_entries"]) == 50
    assert [e["order_id"] for e in ent["order_entries"]] == seen[:50]


def test_orders_default_limit_and_sort(fake):
    locs = _all_locations(fake)
    page = fake.ok("POST", "/v2/orders/search", {"location_ids": locs})
    assert len(page["orders"]) == 500 and page.get("cursor")
    created = [o["created_at"] for o in page["orders"]]
    assert created == sorted(created, reverse=True)      # default CREATED_AT DESC


def test_orders_batch_retrieve(fake, schemas):
    locs = _all_locations(fake)
    some = fake.ok("POST", "/v2/orders/search", {"location_ids": locs, "limit": 5})["orders"]
    page = fake.ok("POST", "/v2/orders/batch-retrieve", {"order_ids": ids(some) + ["UNKNOWN"]})
    schemas.validate("BatchRetrieveOrdersResponse", page)
    assert sorted(ids(page["orders"])) == sorted(ids(some))
    r = fake.call("POST", "/v2/orders/batch-retrieve", {"order_ids": ["x%d" % i for i in range(101)]})
    assert_square_error(r, 400, category="INVALID_REQUEST_ERROR", schemas=schemas)
    assert fake.call("POST", "/v2/orders/batch-retrieve", {"order_ids": ["x%d" % i for i in range(100)]}).status == 200


def test_payments_refunds_transactions_all_pages(fake, schemas):
    locs = _all_locations(fake)
    t = fake.snapshot()["tables"]
    pays = []
    for lid in locs:
        items, pages = fake.walk("GET", "/v2/payments?limit=2&begin_time=%s&location_id=%s" % (EARLY, lid), None,
                                 "payments", lambda p: schemas.validate("ListPaymentsResponse", p))
        assert all(p["location_id"] == lid for p in items)
        pays += items
    no_dupes(ids(pays))
    assert sorted(ids(pays)) == sorted(r[0] for r in t["payments"]["rows"])
    refunds, _ = fake.walk("GET", "/v2/refunds?limit=1&begin_time=" + EARLY, None, "refunds",
                           lambda p: schemas.validate("ListPaymentRefundsResponse", p))
    no_dupes(ids(refunds))
    assert sorted(ids(refunds)) == sorted(r[0] for r in t["payment_refunds"]["rows"])
    txs = []
    for lid in locs:
        items, pages = fake.walk("GET", "/v2/locations/%s/transactions?begin_time=%s" % (lid, EARLY), None,
                                 "transactions", lambda p: schemas.validate("ListTransactionsResponse", p))
        assert all(len(p.get("transactions", [])) <= 50 for p in pages)
        created = [x["created_at"] for x in items]
        assert created == sorted(created, reverse=True)
        txs += items
    no_dupes(ids(txs))
    assert sorted(ids(txs)) == sorted(r[0] for r in t["transactions"]["rows"])
    assert_square_error(fake.call("GET", "/v2/locations/NOPE/transactions"), 404, "NOT_FOUND", schemas=schemas)


def test_relations_and_money(fake):
    locs = _all_locations(fake)
    orders, _ = fake.walk("POST", "/v2/orders/search", {"location_ids": locs, "limit": 1000}, "orders")
    cat, _ = fake.walk("POST", "/v2/catalog/search", {"object_types": ["ITEM_VARIATION"], "limit": 1000,
                                                      "include_deleted_objects": True}, "objects")
    variations = {o["id"]: o for o in cat}
    pays = {}
    for lid in locs:
        for p in fake.walk("GET", "/v2/payments?begin_time=%s&location_id=%s" % (EARLY, lid), None, "payments")[0]:
            pays[p["id"]] = p
    by_id = {o["id"]: o for o in orders}
    n_ret = 0
    for o in orders:
        cur = {m["currency"] for k, m in o.items() if k.endswith("_money")}
        assert cur == {"USD"}
        lis = o.get("line_items", [])
        tot = sum(li["total_money"]["amount"] for li in lis)
        assert o["total_tax_money"]["amount"] == sum(li["total_tax_money"]["amount"] for li in lis)
        assert o["total_discount_money"]["amount"] == sum(li["total_discount_money"]["amount"] for li in lis)
        assert o["total_money"]["amount"] == tot + o["total_service_charge_money"]["amount"] + \
            o["total_tip_money"]["amount"]
        for li in lis:
            assert isinstance(li["quantity"], str) and float(li["quantity"]) > 0
            assert li["catalog_object_id"] in variations
            assert li["catalog_version"] <= variations[li["catalog_object_id"]]["version"]
            assert li["gross_sales_money"]["amount"] == round(li["base_price_money"]["amount"] * float(li["quantity"]))
            assert li["total_money"]["amount"] == li["gross_sales_money"]["amount"] - \
                li["total_discount_money"]["amount"] + li["total_tax_money"]["amount"]
        assert o["state"] in ("OPEN", "COMPLETED", "CANCELED")
        assert ("closed_at" in o) == (o["state"] != "OPEN")
        assert o["created_at"] <= o["updated_at"]
        for t in o.get("tenders", []):
            assert t["transaction_id"] == o["id"]
            assert t["amount_money"]["amount"] == o["total_money"]["amount"]
            if "payment_id" in t:
                p = pays[t["payment_id"]]
                assert p["order_id"] == o["id"] and p["total_money"] == t["amount_money"]
        for r in o.get("returns", []):
            n_ret += 1
            assert r["source_order_id"] in by_id and by_id[r["source_order_id"]]["state"] == "COMPLETED"
    assert n_ret > 0
    for p in pays.values():
        assert p["order_id"] in by_id
