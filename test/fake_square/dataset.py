# Fake Square data: deterministic generator, in-memory state, the control API's "mutate" (a seller's
# day) and "snapshot" (the truth a synced database must equal).  Owns every object the fake serves.
# Standard library only.
import bisect
import datetime
import itertools
import json
import random
import threading
import time

DAY_MS = 86400000
YEAR_MS = 365 * DAY_MS
HISTORY_MS = 456 * DAY_MS          # ~15 months of generated history
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CUR = "USD"
TAX_PCT = 8.875

# Exact figures of the default ("seed") dataset at scale 1.
PROFILES = {
    "seed": dict(locations=9, categories=25, items=867, variations=1002, vendors=11, vendor_infos=989,
                 orders=30390, line_items=159131, tenders=2493, payments=49, returns=150,
                 fulfillments=900, order_refunds=60, payment_refunds=8),
    "demo": dict(locations=3, categories=6, items=40, variations=48, vendors=4, vendor_infos=40,
                 orders=300, line_items=1200, tenders=60, payments=12, returns=4,
                 fulfillments=12, order_refunds=4, payment_refunds=3),
}
NEVER_DELETED = ("orders", "payments", "refunds", "inventory_counts", "vendors")
KINDS = ("catalog_items", "catalog_variations", "catalog_categories", "inventory_counts", "vendors",
         "orders", "payments", "refunds")

TIMEZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
             "America/Phoenix", "Pacific/Honolulu", "America/Anchorage", "America/Detroit", "America/Boise"]
CITIES = ["Brooklyn", "Chicago", "Denver", "Oakland", "Phoenix", "Honolulu", "Anchorage", "Detroit", "Boise",
          "Austin", "Portland", "Seattle"]
WORDS = ["Oat", "Rye", "Maple", "Cedar", "Copper", "Lemon", "Basil", "Smoked", "Golden", "Wild", "Velvet",
         "Roasted", "Salted", "Honey", "Citrus", "Spiced", "Classic", "Midnight", "Harbor", "Summit"]
NOUNS = ["Latte", "Bagel", "Croissant", "Soap", "Candle", "Notebook", "Mug", "Tea", "Scarf", "Tote",
         "Granola", "Jam", "Cookie", "Sandwich", "Salad", "Poster", "Pen", "Brush", "Sauce", "Bread"]
VAR_NAMES = ["Regular", "Large", "Small", "Medium", "Family"]
CARD_BRANDS = ["VISA", "MASTERCARD", "AMERICAN_EXPRESS", "DISCOVER"]


def _ms(value):
    """Milliseconds since the epoch of an RFC 3339 string written by ts()."""
    t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(t.timestamp() * 1000 + 0.5)


def ts(ms):
    """RFC 3339 UTC with milliseconds, e.g. 2025-01-02T03:04:05.678Z."""
    s, m = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % m


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def money(amount):
    return {"amount": int(amount), "currency": CUR}


def fmt_qty(q):
    if q == int(q):
        return str(int(q))
    return ("%.3f" % q).rstrip("0")


class Clock:
    """Real current time in ms, strictly increasing, at least 1 ms apart between calls."""

    def __init__(self):
        self._last = 0
        self._lock = threading.Lock()

    def now_ms(self):
        with self._lock:
            t = max(int(time.time() * 1000), self._last + 1)
            self._last = t
            return t

    def peek_ms(self):
        return max(int(time.time() * 1000), self._last)


class OrderRec:
    """Compact order storage: the serialised order plus the fields queries filter and sort on."""
    __slots__ = ("id", "location_id", "state", "version", "created_ms", "updated_ms", "closed_ms", "raw",
                 "has_tenders", "is_return", "tx_ms", "log")

    def __init__(self, order, created_ms, updated_ms, closed_ms, log):
        self.log = log      # the dataset's list of orders added or changed (Dataset.orders_in_range)
        self.set(order, created_ms, updated_ms, closed_ms)

    def set(self, order, created_ms, updated_ms, closed_ms):
        self.log.append(self)
        self.id = order["id"]
        self.location_id = order["location_id"]
        self.state = order["state"]
        self.version = order.get("version")
        self.created_ms = created_ms
        self.updated_ms = updated_ms
        self.closed_ms = closed_ms
        self.has_tenders = bool(order.get("tenders"))
        self.is_return = bool(order.get("returns"))
        # The legacy Transaction is created with the order's first tender (when it was paid).
        self.tx_ms = min((_ms(t["created_at"]) for t in order.get("tenders", ()) if t.get("created_at")),
                         default=created_ms)
        self.raw = dumps(order)

    def obj(self):
        return json.loads(self.raw)


def _split_exact(rng, total, n, minimum, cap):
    """n non-negative ints, each in [minimum, cap], summing exactly to total."""
    counts = [minimum] * n
    rest = total - minimum * n
    if n == 0:
        return counts
    while rest > 0:
        picks = rng.choices(range(n), k=rest)
        rest = 0
        for i in picks:
            if counts[i] < cap:
                counts[i] += 1
            else:
                rest += 1
    return counts


class Dataset:
    def __init__(self, dataset="seed", scale=1.0, seed=1, locations=None, start_ms=None):
        self.kind = dataset
        self.scale = scale
        self.seed = seed
        self.clock = Clock()
        self.lock = threading.RLock()
        self.generation = 0
        start_ms = int(time.time() * 1000) if start_ms is None else start_ms
        self.anchor_ms = (start_ms // DAY_MS) * DAY_MS
        prof = dict(PROFILES[dataset])
        n_loc = locations if locations else prof["locations"]
        sized = {}
        for k, v in prof.items():
            if k == "locations":
                continue
            sized[k] = int(round(v * scale)) if scale != 1 else v
        # Keep the graph well formed at tiny scales.
        sized["categories"] = max(2, sized["categories"])
        sized["items"] = max(2, sized["items"])
        sized["variations"] = max(sized["items"], min(sized["variations"], sized["items"] * 3))
        sized["vendors"] = max(2, sized["vendors"])
        sized["orders"] = max(10, sized["orders"])
        sized["returns"] = max(1, min(sized["returns"], sized["orders"] // 10))
        sized["line_items"] = max(sized["orders"] - sized["returns"], sized["line_items"])
        sized["tenders"] = max(3, min(sized["tenders"], (sized["orders"] - sized["returns"]) // 2))
        sized["payments"] = max(3, min(sized["payments"], sized["tenders"]))
        sized["payment_refunds"] = max(1, min(sized["payment_refunds"], sized["payments"] // 2))
        sized["order_refunds"] = max(sized["payment_refunds"], min(sized["order_refunds"], sized["tenders"]))
        sized["fulfillments"] = max(1, min(sized["fulfillments"], sized["orders"] // 4))
        sized["vendor_infos"] = min(sized["vendor_infos"], sized["variations"] * 2)
        sized["locations"] = n_loc
        self.sizes = sized
        self._ids = set()
        self._bytes = {}
        self._query_cache = {}
        self._orders_by_loc = None
        self._order_log = []
        self._ranges = {}
        self._generate()

    def orders_in(self, location_ids):
        """The orders of these locations, through an index by location (a search reads one
        location's orders, not all of them), extended as orders are added: an order is never
        removed and never changes location, and self.orders keeps the order of insertion."""
        idx = self._orders_by_loc
        if idx is None:
            idx = self._orders_by_loc = [0, {}]
        if idx[0] != len(self.orders):
            by = idx[1]
            for rec in itertools.islice(self.orders.values(), idx[0], None):
                by.setdefault(rec.location_id, []).append(rec)
            idx[0] = len(self.orders)
        return [rec for lid in location_ids for rec in idx[1].get(lid, ())]

    def orders_in_range(self, location_ids, attr, lo_ms, hi_ms):
        """The orders of these locations whose attr (a time: created_ms, updated_ms, closed_ms or
        tx_ms) is within [lo_ms, hi_ms] (None: unbounded), through per-location lists sorted by it.
        The lists follow every order added or changed (OrderRec.set logs it), so a search reads the
        orders of its time window, not all of a location's; the caller still applies its own filter
        to what this returns."""
        log = self._order_log
        idx = self._ranges.get(attr)
        if idx is None:  # built from every order as it is now; the log from here on
            at = {rec.id: getattr(rec, attr) for rec in self.orders.values()}
            by = {}
            for rec in self.orders.values():
                if at[rec.id] is not None:
                    by.setdefault(rec.location_id, []).append((at[rec.id], rec.id))
            for lst in by.values():
                lst.sort()
            idx = self._ranges[attr] = {"pos": len(log), "at": at, "by": by}
        at, by = idx["at"], idx["by"]
        for rec in itertools.islice(log, idx["pos"], None):
            new = getattr(rec, attr)
            old = at.get(rec.id)
            if rec.id in at:
                if old == new:
                    continue
                if old is not None:
                    lst = by[rec.location_id]
                    del lst[bisect.bisect_left(lst, (old, rec.id))]
            if new is not None:
                bisect.insort(by.setdefault(rec.location_id, []), (new, rec.id))
            at[rec.id] = new
        idx["pos"] = len(log)
        if all(other["pos"] == len(log) for other in self._ranges.values()):  # read by every index
            del log[:]
            for other in self._ranges.values():
                other["pos"] = 0
        out = []
        for lid in location_ids:
            lst = by.get(lid, ())
            i = 0 if lo_ms is None else bisect.bisect_left(lst, (lo_ms,))
            j = len(lst) if hi_ms is None else bisect.bisect_right(lst, (hi_ms, "\U0010ffff"))
            out.extend(self.orders[oid] for _, oid in lst[i:j])
        return out

    # ------------------------------------------------------------------ ids & time
    def _id(self, rng, alphabet, n, prefix=""):
        while True:
            s = prefix + "".join(rng.choices(alphabet, k=n))
            if s not in self._ids:
                self._ids.add(s)
                return s

    def _past(self, rng, lo_ms=1000, hi_ms=HISTORY_MS):
        return self.anchor_ms - rng.randint(lo_ms, hi_ms)

    # ------------------------------------------------------------------ generation
    def _add_location(self, rng, status, created_ms):
        """A location, appended to self.locations; created_ms() gives its creation time (drawn after
        the rest, so the seed's locations are what they were before new_locations existed)."""
        i = len(self.locations)
        lid = self._id(rng, UPPER, 12, "L")
        city = CITIES[i % len(CITIES)]
        self.locations.append({
            "id": lid, "name": "%s %s #%02d" % (rng.choice(WORDS), city, i + 1),
            "address": {"address_line_1": "%d Main St" % rng.randint(1, 999), "locality": city,
                        "administrative_district_level_1": "NY", "postal_code": "%05d" % rng.randint(10000, 99999),
                        "country": "US"},
            "timezone": TIMEZONES[i % len(TIMEZONES)], "capabilities": ["CREDIT_CARD_PROCESSING"],
            "status": status, "created_at": ts(created_ms()),
            "merchant_id": self.merchant_id, "country": "US", "language_code": "en-US", "currency": CUR,
            "business_name": "Fake Square Goods", "type": "PHYSICAL", "mcc": "5812",
        })
        return lid

    def _generate(self):
        rng = random.Random(self.seed)
        self.rng = random.Random(self.seed * 7919 + 17)   # for mutations
        S = self.sizes
        self.merchant_id = self._id(rng, UPPER, 13, "M")
        # locations
        self.locations = []
        for i in range(S["locations"]):
            self._add_location(rng, "INACTIVE" if (i == S["locations"] - 1 and S["locations"] >= 3) else "ACTIVE",
                               lambda: self._past(rng, HISTORY_MS, HISTORY_MS + 400 * DAY_MS))
        self.main_location_id = self.locations[0]["id"]
        self.loc_ids = [l["id"] for l in self.locations]
        self.merchant = {"id": self.merchant_id, "business_name": "Fake Square Goods", "country": "US",
                         "language_code": "en-US", "currency": CUR, "status": "ACTIVE",
                         "main_location_id": self.main_location_id,
                         "created_at": ts(self._past(rng, HISTORY_MS + 400 * DAY_MS, HISTORY_MS + 401 * DAY_MS))}
        # catalog
        self.catalog = {}       # id -> CatalogObject (CATEGORY / ITEM / ITEM_VARIATION)
        self.cat_ms = {}        # id -> updated_at ms
        self.vinfo = {}         # vendor info id -> (variation id, object)
        self.vinfo_ms = {}
        cats = []
        for i in range(S["categories"]):
            cid = self._id(rng, B32, 24)
            ms = self._past(rng)
            data = {"name": "%s %s" % (rng.choice(WORDS), rng.choice(NOUNS) + "s"), "category_type": "REGULAR_CATEGORY",
                    "is_top_level": True, "online_visibility": True}
            if i >= 3 and rng.random() < 0.2:
                parent = rng.choice(cats[:3])
                data["is_top_level"] = False
                data["parent_category"] = {"id": parent, "ordinal": 0}
                data["root_category"] = parent
            obj = {"type": "CATEGORY", "id": cid, "updated_at": ts(ms), "version": ms, "is_deleted": False,
                   "present_at_all_locations": True, "category_data": data}
            self.catalog[cid] = obj
            self.cat_ms[cid] = ms
            cats.append(cid)
        # vendors
        self.vendors = {}
        self.vendor_ms = {}
        for i in range(S["vendors"]):
            self._new_vendor(rng, self._past(rng), status="INACTIVE" if i % 5 == 4 else "ACTIVE")
        vendor_ids = list(self.vendors)
        # items and variations
        n_items = S["items"]
        var_counts = _split_exact(rng, S["variations"], n_items, 1, 3)
        vi_counts = None
        self.items = []
        self.variations = []
        for i in range(n_items):
            ms = self._past(rng, 3 * DAY_MS)
            self._new_item(rng, ms, var_counts[i], cats, gen=True)
        vi_counts = _split_exact(rng, S["vendor_infos"], len(self.variations), 0, 2) \
            if S["vendor_infos"] >= len(self.variations) else \
            [1 if j < S["vendor_infos"] else 0 for j in rng.sample(range(len(self.variations)), len(self.variations))]
        for vid, n in zip(self.variations, vi_counts):
            for _ in range(n):
                self._new_vendor_info(rng, vid, rng.choice(vendor_ids), self.cat_ms[vid])
        # inventory: one IN_STOCK count per variation per location
        self.counts = {}        # (var, loc, state) -> InventoryCount
        self.count_ms = {}
        for vid in self.variations:
            for lid in self.loc_ids:
                self._new_count(vid, lid, "IN_STOCK", self._past(rng, 1000, 200 * DAY_MS),
                                rng.randint(0, 200) if rng.random() < 0.95 else rng.randint(0, 40) + 0.5)
        # orders, tenders, payments, refunds, returns, transactions
        self.orders = {}
        self.payments = {}
        self.pay_ms = {}
        self.refunds = {}
        self.refund_ms = {}
        self._generate_orders(rng)

    def _new_vendor(self, rng, ms, status="ACTIVE"):
        vid = self._id(rng, UPPER, 15, "V")
        name = "%s %s Supply Co" % (rng.choice(WORDS), rng.choice(NOUNS))
        v = {"id": vid, "created_at": ts(ms), "updated_at": ts(ms), "name": name,
             "address": {"address_line_1": "%d Dock Rd" % rng.randint(1, 999), "locality": rng.choice(CITIES),
                         "country": "US"},
             "contacts": [{"id": self._id(rng, UPPER, 10, "C"), "name": "Pat %s" % rng.choice(WORDS),
                           "email_address": "orders%d@example.com" % rng.randint(1, 9999),
                           "phone_number": "+1555%07d" % rng.randint(0, 9999999), "removed": False, "ordinal": 0}],
             "account_number": "%08d" % rng.randint(0, 99999999), "version": 1, "status": status}
        self.vendors[vid] = v
        self.vendor_ms[vid] = ms
        return vid

    def _presence(self, rng, obj, p_absent=0.05, p_only=0.06):
        r = rng.random()
        if r < p_absent and len(self.loc_ids) > 1:
            obj["present_at_all_locations"] = True
            obj["absent_at_location_ids"] = rng.sample(self.loc_ids, rng.randint(1, max(1, len(self.loc_ids) // 3)))
        elif r < p_absent + p_only and len(self.loc_ids) > 1:
            obj["present_at_all_locations"] = False
            obj["present_at_location_ids"] = rng.sample(self.loc_ids, rng.randint(1, len(self.loc_ids) - 1))
        else:
            obj["present_at_all_locations"] = True

    def _new_item(self, rng, ms, n_vars, cats, gen=False):
        iid = self._id(rng, B32, 24)
        name = "%s %s %d" % (rng.choice(WORDS), rng.choice(NOUNS), len(self.items) + 1)
        cat = rng.choice(cats)
        item = {"type": "ITEM", "id": iid, "updated_at": ts(ms), "version": ms, "is_deleted": False}
        self._presence(rng, item)
        item["item_data"] = {"name": name, "description": "The %s." % name.lower(),
                             "description_plaintext": "The %s." % name.lower(), "is_taxable": True,
                             "categories": [{"id": cat, "ordinal": -2251731094208512}],
                             "reporting_category": {"id": cat, "ordinal": -2251731094208512},
                             "variations": [], "product_type": "REGULAR", "is_archived": False}
        self.catalog[iid] = item
        self.cat_ms[iid] = ms
        self.items.append(iid)
        created = []
        for j in range(n_vars):
            created.append(self._new_variation(rng, item, ms, gen))
        return iid, created

    def _new_variation(self, rng, item, ms, gen=False):
        vid = self._id(rng, B32, 24)
        idata = item["item_data"]
        ordinal = len(idata["variations"]) + 1
        var = {"type": "ITEM_VARIATION", "id": vid, "updated_at": ts(ms), "version": ms, "is_deleted": False}
        self._presence(rng, var, 0.04, 0.0)
        data = {"item_id": item["id"], "name": VAR_NAMES[(ordinal - 1) % len(VAR_NAMES)],
                "sku": "SKU-%s" % "".join(rng.choices(UPPER, k=8)), "ordinal": ordinal,
                "pricing_type": "FIXED_PRICING", "price_money": money(rng.randint(2, 400) * 25),
                "track_inventory": True, "sellable": True, "stockable": True}
        if rng.random() < 0.1:
            ovs = []
            for lid in rng.sample(self.loc_ids, rng.randint(1, min(3, len(self.loc_ids)))):
                ov = {"location_id": lid}
                if rng.random() < 0.8:
                    ov["price_money"] = money(rng.randint(2, 400) * 25)
                ov["track_inventory"] = rng.random() < 0.7
                if rng.random() < 0.2:
                    ov["sold_out"] = True
                ovs.append(ov)
            data["location_overrides"] = ovs
        data["item_variation_vendor_infos"] = []
        var["item_variation_data"] = data
        idata["variations"].append(var)
        self.catalog[vid] = var
        self.cat_ms[vid] = ms
        self.variations.append(vid)
        return vid

    def _new_vendor_info(self, rng, var_id, vendor_id, ms):
        var = self.catalog[var_id]
        infos = var["item_variation_data"]["item_variation_vendor_infos"]
        iid = self._id(rng, B32, 24)
        obj = {"type": "ITEM_VARIATION_VENDOR_INFO", "id": iid, "updated_at": ts(ms), "version": ms,
               "is_deleted": False, "present_at_all_locations": True,
               "item_variation_vendor_info_data": {
                   "item_variation_id": var_id, "vendor_id": vendor_id,
                   "sku": "VND-%s" % "".join(rng.choices(UPPER, k=6)),
                   "price_money": money(max(1, var["item_variation_data"]["price_money"]["amount"] * 6 // 10)),
                   "ordinal": len(infos) + 1}}
        infos.append(obj)
        self.vinfo[iid] = (var_id, obj)
        self.vinfo_ms[iid] = ms
        return iid

    def _new_count(self, var_id, loc_id, state, ms, qty):
        key = (var_id, loc_id, state)
        self.counts[key] = {"catalog_object_id": var_id, "catalog_object_type": "ITEM_VARIATION", "state": state,
                            "location_id": loc_id, "quantity": fmt_qty(qty), "calculated_at": ts(ms),
                            "is_estimated": False}
        self.count_ms[key] = ms
        self._bytes.pop(("count", key), None)
        return "%s:%s:%s" % key

    # -------------------------------------------------------------- availability
    @staticmethod
    def _present(obj, lid):
        if obj.get("present_at_all_locations", True) is not False:
            return lid not in (obj.get("absent_at_location_ids") or ())
        return lid in (obj.get("present_at_location_ids") or ())

    def sellable_by_location(self):
        out = {lid: [] for lid in self.loc_ids}
        for vid in self.variations:
            var = self.catalog[vid]
            if var["is_deleted"]:
                continue
            item = self.catalog[var["item_variation_data"]["item_id"]]
            if item["is_deleted"]:
                continue
            d = var["item_variation_data"]
            ovs = {o["location_id"]: o for o in d.get("location_overrides", ())}
            for lid in self.loc_ids:
                if self._present(item, lid) and self._present(var, lid):
                    price = ovs.get(lid, {}).get("price_money", d["price_money"])["amount"]
                    out[lid].append((vid, item["item_data"]["name"], d["name"], price, var["version"]))
        for lid in self.loc_ids:
            if not out[lid]:   # a location with nothing present still sells something
                vid = next(v for v in self.variations if not self.catalog[v]["is_deleted"]
                           and not self.catalog[self.catalog[v]["item_variation_data"]["item_id"]]["is_deleted"])
                var = self.catalog[vid]
                d = var["item_variation_data"]
                out[lid].append((vid, self.catalog[d["item_id"]]["item_data"]["name"], d["name"],
                                 d["price_money"]["amount"], var["version"]))
        return out

    # -------------------------------------------------------------- orders
    def _line_item(self, rng, choice, n_li_idx=0):
        vid, iname, vname, price, version = choice
        r = rng.random()
        qty = rng.randint(1, 4) if r < 0.93 else (rng.randint(1, 6) + 0.5)
        gross = int(round(price * qty))
        li = {"uid": self._id(rng, ALNUM, 22), "name": iname, "quantity": fmt_qty(qty),
              "catalog_object_id": vid, "catalog_version": version, "variation_name": vname,
              "item_type": "ITEM", "base_price_money": money(price),
              "variation_total_price_money": money(gross), "gross_sales_money": money(gross)}
        return li, gross

    def _price_order(self, rng, order, lines, tip=0, service_charge=0, discount_flags=None):
        """Fill money on line items (list of (li, gross)) and the order's totals."""
        tax_uid = order["taxes"][0]["uid"]
        disc_uid = order["discounts"][0]["uid"] if order.get("discounts") else None
        t_tax = t_disc = t_total = 0
        for idx, (li, gross) in enumerate(lines):
            disc = 0
            if disc_uid and (discount_flags is None or discount_flags[idx]):
                disc = gross // 10
                li["applied_discounts"] = [{"uid": li["uid"][:10] + "d", "discount_uid": disc_uid,
                                            "applied_money": money(disc)}]
            else:
                li.pop("applied_discounts", None)
            tax = int(round((gross - disc) * TAX_PCT / 100.0))
            li["applied_taxes"] = [{"uid": li["uid"][:10] + "t", "tax_uid": tax_uid, "applied_money": money(tax)}]
            li["total_tax_money"] = money(tax)
            li["total_discount_money"] = money(disc)
            li["total_service_charge_money"] = money(0)
            li["total_money"] = money(gross - disc + tax)
            t_tax += tax
            t_disc += disc
            t_total += gross - disc + tax
        order["line_items"] = [li for li, _ in lines]
        if order.get("discounts"):
            order["discounts"][0]["applied_money"] = money(t_disc)
        order["taxes"][0]["applied_money"] = money(t_tax)
        if service_charge:
            order["service_charges"] = [{"uid": self._id(rng, ALNUM, 22), "name": "Service charge",
                                         "amount_money": money(service_charge), "applied_money": money(service_charge),
                                         "calculation_phase": "SUBTOTAL_PHASE", "taxable": False,
                                         "total_money": money(service_charge), "total_tax_money": money(0),
                                         "type": "CUSTOM", "treatment_type": "LINE_ITEM_TREATMENT",
                                         "scope": "ORDER"}]
        total = t_total + service_charge + tip
        order["total_money"] = money(total)
        order["total_tax_money"] = money(t_tax)
        order["total_discount_money"] = money(t_disc)
        order["total_tip_money"] = money(tip)
        order["total_service_charge_money"] = money(service_charge)
        order["net_amounts"] = {"total_money": money(total), "tax_money": money(t_tax),
                                "discount_money": money(t_disc), "tip_money": money(tip),
                                "service_charge_money": money(service_charge)}
        return total

    def _base_order(self, rng, lid, created_ms):
        oid = self._id(rng, ALNUM, 27)
        order = {"id": oid, "location_id": lid, "source": {"name": "Square Point of Sale"},
                 "taxes": [{"uid": self._id(rng, ALNUM, 22), "name": "Sales Tax", "percentage": "%g" % TAX_PCT,
                            "type": "ADDITIVE", "scope": "LINE_ITEM"}]}
        if rng.random() < 0.1:
            order["discounts"] = [{"uid": self._id(rng, ALNUM, 22), "name": "10% off", "percentage": "10",
                                   "type": "FIXED_PERCENTAGE", "scope": "LINE_ITEM"}]
        return order

    def _fulfillment(self, rng, state):
        ftype = rng.choice(["PICKUP", "PICKUP", "SHIPMENT", "DELIVERY"])
        f = {"uid": self._id(rng, ALNUM, 22), "type": ftype, "state": state, "line_item_application": "ALL"}
        recipient = {"display_name": "%s %s" % (rng.choice(WORDS), rng.choice(NOUNS))}
        if ftype == "PICKUP":
            f["pickup_details"] = {"recipient": recipient, "schedule_type": "ASAP"}
        elif ftype == "SHIPMENT":
            f["shipment_details"] = {"recipient": recipient}
        else:
            f["delivery_details"] = {"recipient": recipient, "schedule_type": "ASAP"}
        return f

    def _make_payment(self, rng, order, total, tip, created_ms, updated_ms):
        pid = self._id(rng, ALNUM, 29)
        brand = rng.choice(CARD_BRANDS)
        p = {"id": pid, "created_at": ts(created_ms), "updated_at": ts(updated_ms),
             "amount_money": money(total - tip), "tip_money": money(tip), "total_money": money(total),
             "approved_money": money(total),
             "processing_fee": [{"effective_at": ts(created_ms), "type": "INITIAL",
                                 "amount_money": money(int(total * 0.026) + 10)}],
             "status": "COMPLETED", "source_type": "CARD",
             "card_details": {"status": "CAPTURED",
                              "card": {"card_brand": brand, "last_4": "%04d" % rng.randint(0, 9999),
                                       "exp_month": rng.randint(1, 12), "exp_year": 2027 + rng.randint(0, 4),
                                       "fingerprint": "sq-1-" + "".join(rng.choices(ALNUM, k=30)),
                                       "card_type": "CREDIT", "bin": "%06d" % rng.randint(400000, 559999)},
                              "entry_method": rng.choice(["EMV", "CONTACTLESS", "KEYED"]),
                              "cvv_status": "CVV_ACCEPTED", "avs_status": "AVS_ACCEPTED",
                              "statement_description": "SQ *FAKE SQUARE GOODS"},
             "location_id": order["location_id"], "order_id": order["id"],
             "receipt_number": pid[:4], "receipt_url": "https://squareup.com/receipt/preview/" + pid,
             "delay_action": "CANCEL", "application_details": {"square_product": "SQUARE_POS"},
             "version_token": "".join(rng.choices(ALNUM, k=44))}
        self.payments[pid] = p
        self.pay_ms[pid] = (created_ms, updated_ms)
        return p

    def _add_tender(self, rng, order, total, tip, created_ms, payment=None, ttype="CASH"):
        tid = payment["id"] if payment else self._id(rng, ALNUM, 27)
        tender = {"id": tid, "location_id": order["location_id"], "transaction_id": order["id"],
                  "created_at": ts(created_ms), "amount_money": money(total), "type": "CARD" if payment else ttype}
        if tip:
            tender["tip_money"] = money(tip)
        if payment:
            tender["processing_fee_money"] = payment["processing_fee"][0]["amount_money"]
            tender["card_details"] = {"status": "CAPTURED", "card": {
                "card_brand": payment["card_details"]["card"]["card_brand"],
                "last_4": payment["card_details"]["card"]["last_4"]},
                "entry_method": payment["card_details"]["entry_method"]}
            tender["payment_id"] = payment["id"]
        elif tender["type"] == "CASH":
            tender["cash_details"] = {"buyer_tendered_money": money(total), "change_back_money": money(0)}
        order["tenders"] = [tender]
        order["net_amount_due_money"] = money(0)
        return tender

    def _generate_orders(self, rng):
        S = self.sizes
        sellable = self.sellable_by_location()
        n_orders, n_returns = S["orders"], S["returns"]
        n_sales = n_orders - n_returns
        li_counts = _split_exact(rng, S["line_items"], n_sales, 1, 60)
        # which sale orders get tenders / payments / fulfillments
        sale_idx = list(range(n_sales))
        tendered = set(rng.sample(sale_idx, S["tenders"]))
        tendered_list = sorted(tendered)
        paid = set(rng.sample(tendered_list, S["payments"]))
        paid_list = sorted(paid)
        # make sure some payments are older than a year and some away from the main location
        old_paid = set(paid_list[: max(1, len(paid_list) // 6)])
        off_main = set(paid_list[len(paid_list) // 6: len(paid_list) // 6 + max(1, len(paid_list) // 3)])
        fulfilled = set(rng.sample(sale_idx, S["fulfillments"]))
        refunded_paid = set(rng.sample(paid_list, S["payment_refunds"]))
        cash_refunds = set(rng.sample([i for i in tendered_list if i not in paid],
                                      min(len(tendered_list) - len(paid_list),
                                          S["order_refunds"] - S["payment_refunds"])))
        locs = self.loc_ids
        completed_sales = []
        for i in range(n_sales):
            if i in old_paid:
                created = self._past(rng, YEAR_MS + 3 * DAY_MS, HISTORY_MS)
            else:
                created = self._past(rng, 3 * 3600 * 1000, HISTORY_MS)
            if i in paid:
                lid = rng.choice(locs[1:]) if (i in off_main and len(locs) > 1) else self.main_location_id
            else:
                lid = rng.choice(locs)
            if i in tendered:
                state = "COMPLETED"
            else:
                r = rng.random()
                state = "OPEN" if r < 0.45 else ("COMPLETED" if r < 0.9 else "CANCELED")
            order = self._base_order(rng, lid, created)
            choices = sellable[lid]
            lines = [self._line_item(rng, rng.choice(choices)) for _ in range(li_counts[i])]
            tip = rng.randint(0, 5) * 50 if i in tendered and rng.random() < 0.3 else 0
            sc = rng.randint(1, 10) * 100 if rng.random() < 0.02 else 0
            total = self._price_order(rng, order, lines, tip=tip, service_charge=sc)
            updated = created + rng.randint(1000, 90 * 60 * 1000)
            updated = min(updated, self.anchor_ms - 1000)
            closed = updated if state in ("COMPLETED", "CANCELED") else None
            if i in fulfilled:
                fstate = {"OPEN": rng.choice(["PROPOSED", "RESERVED", "PREPARED"]),
                          "COMPLETED": "COMPLETED", "CANCELED": "CANCELED"}[state]
                order["fulfillments"] = [self._fulfillment(rng, fstate)]
            if i in tendered:
                payment = None
                if i in paid:
                    payment = self._make_payment(rng, order, total, tip, created + 500, updated)
                ttype = "CASH" if rng.random() < 0.8 else rng.choice(["THIRD_PARTY_CARD", "OTHER", "SQUARE_GIFT_CARD"])
                self._add_tender(rng, order, total, tip, created + 500, payment, ttype)
                if i in refunded_paid or i in cash_refunds:
                    r_ms = min(updated + rng.randint(DAY_MS // 2, 9 * DAY_MS), self.anchor_ms - 2000)
                    amt = max(1, total // rng.choice([1, 2, 4]))
                    self._refund(rng, order, payment, amt, r_ms,
                                 "COMPLETED" if rng.random() < 0.85 else "PENDING")
                    updated = max(updated, r_ms)
                    closed = closed
            else:
                order["net_amount_due_money"] = money(total if state == "OPEN" else 0)
            order["created_at"] = ts(created)
            order["updated_at"] = ts(updated)
            if closed is not None:
                order["closed_at"] = ts(closed)
            order["state"] = state
            order["version"] = rng.randint(1, 5) + (1 if closed else 0)
            self.orders[order["id"]] = OrderRec(order, created, updated, closed, self._order_log)
            if state == "COMPLETED" and not order.get("refunds"):
                completed_sales.append(order["id"])
        # return orders point at completed sale orders
        for _ in range(n_returns):
            src = self.orders[rng.choice(completed_sales)]
            created = min(src.created_ms + rng.randint(3600 * 1000, 14 * DAY_MS), self.anchor_ms - 5000)
            self._return_order(rng, src, created, min(created + rng.randint(1000, 60000), self.anchor_ms - 1000))

    def _refund(self, rng, order, payment, amount, ms, status):
        """A refund of amount on order (and its payment when paid by card)."""
        tender = order["tenders"][0]
        if payment is not None:
            rid = "%s_%s" % (payment["id"], "".join(rng.choices(ALNUM, k=20)))
            pr = {"id": rid, "status": status, "location_id": order["location_id"], "unlinked": False,
                  "destination_type": "CARD", "amount_money": money(amount),
                  "processing_fee": [{"effective_at": ts(ms), "type": "INITIAL", "amount_money": money(-(amount * 26 // 1000))}],
                  "payment_id": payment["id"], "order_id": order["id"], "reason": "Returned goods",
                  "created_at": ts(ms), "updated_at": ts(ms)}
            self.refunds[rid] = pr
            self.refund_ms[rid] = (ms, ms)
            payment.setdefault("refund_ids", []).append(rid)
            payment["refunded_money"] = money(payment.get("refunded_money", {}).get("amount", 0) + amount)
            payment["updated_at"] = ts(ms)
            self.pay_ms[payment["id"]] = (self.pay_ms[payment["id"]][0], ms)
            self._bytes.pop(("payment", payment["id"]), None)
        else:
            rid = self._id(rng, ALNUM, 27)
        order.setdefault("refunds", []).append({
            "id": rid, "location_id": order["location_id"], "transaction_id": order["id"],
            "tender_id": tender["id"], "created_at": ts(ms), "reason": "Returned goods",
            "amount_money": money(amount), "status": "APPROVED" if status == "COMPLETED" else "PENDING"})
        return rid

    def _return_order(self, rng, src_rec, created, updated):
        src = src_rec.obj()
        order = {"id": self._id(rng, ALNUM, 27), "location_id": src["location_id"],
                 "source": {"name": "Square Point of Sale"}}
        rlis = []
        t_total = t_tax = t_disc = 0
        for li in rng.sample(src["line_items"], rng.randint(1, min(2, len(src["line_items"])))):
            rli = {"uid": self._id(rng, ALNUM, 22), "source_line_item_uid": li["uid"], "name": li["name"],
                   "quantity": li["quantity"], "catalog_object_id": li["catalog_object_id"],
                   "catalog_version": li["catalog_version"], "variation_name": li["variation_name"],
                   "item_type": "ITEM", "base_price_money": li["base_price_money"],
                   "variation_total_price_money": li["variation_total_price_money"],
                   "gross_return_money": li["gross_sales_money"], "total_tax_money": li["total_tax_money"],
                   "total_discount_money": li["total_discount_money"], "total_money": li["total_money"]}
            rlis.append(rli)
            t_total += li["total_money"]["amount"]
            t_tax += li["total_tax_money"]["amount"]
            t_disc += li["total_discount_money"]["amount"]
        amounts = {"total_money": money(t_total), "tax_money": money(t_tax), "discount_money": money(t_disc),
                   "tip_money": money(0), "service_charge_money": money(0)}
        order["returns"] = [{"uid": self._id(rng, ALNUM, 22), "source_order_id": src["id"],
                             "return_line_items": rlis, "return_amounts": amounts}]
        order["return_amounts"] = amounts
        order["net_amounts"] = {"total_money": money(-t_total), "tax_money": money(-t_tax),
                                "discount_money": money(-t_disc), "tip_money": money(0),
                                "service_charge_money": money(0)}
        for k in ("total_money", "total_tax_money", "total_discount_money", "total_tip_money",
                  "total_service_charge_money", "net_amount_due_money"):
            order[k] = money(0)
        order["created_at"] = ts(created)
        order["updated_at"] = ts(updated)
        order["closed_at"] = ts(updated)
        order["state"] = "COMPLETED"
        order["version"] = 1
        self.orders[order["id"]] = OrderRec(order, created, updated, updated, self._order_log)
        return order["id"]

    # -------------------------------------------------------------- serialisation cache
    def obj_bytes(self, kind, key, obj):
        b = self._bytes.get((kind, key))
        if b is None:
            b = dumps(obj)
            self._bytes[(kind, key)] = b
        return b

    def catalog_bytes(self, oid):
        return self.obj_bytes("cat", oid, self.catalog[oid] if oid in self.catalog else self.vinfo[oid][1])

    def _dirty_cat(self, oid):
        self._bytes.pop(("cat", oid), None)

    def transaction_for(self, rec):
        """Legacy Transaction view of an order with tenders (id = order id). It is created with the
        order's first tender (a payment taken later, when an open order is completed, creates it then)."""
        o = rec.obj()
        t = {"id": o["id"], "location_id": o["location_id"], "created_at": ts(rec.tx_ms),
             "tenders": o.get("tenders", []), "product": "REGISTER", "order_id": o["id"]}
        if o.get("refunds"):
            t["refunds"] = o["refunds"]
        return t

    # -------------------------------------------------------------- catalog helpers
    def latest_catalog_ms(self):
        m = max(self.cat_ms.values()) if self.cat_ms else 0
        if self.vinfo_ms:
            m = max(m, max(self.vinfo_ms.values()))
        return m

    def live_items(self):
        return [i for i in self.items if not self.catalog[i]["is_deleted"]]

    def live_variations(self):
        out = []
        for v in self.variations:
            var = self.catalog[v]
            if not var["is_deleted"] and not self.catalog[var["item_variation_data"]["item_id"]]["is_deleted"]:
                out.append(v)
        return out

    def _touch_cat(self, obj, ms):
        obj["version"] = ms
        obj["updated_at"] = ts(ms)
        self.cat_ms[obj["id"]] = ms
        self._dirty_cat(obj["id"])

    def _touch_item_of(self, var, ms):
        item = self.catalog[var["item_variation_data"]["item_id"]]
        self._touch_cat(item, ms)
        return item["id"]

    # -------------------------------------------------------------- mutate
    def mutate(self, spec):
        """Apply a seller's day. Returns ({kind: {updated, created, deleted}}, error)."""
        if not isinstance(spec, dict):
            return None, "body must be a JSON object"
        for kind, ops in spec.items():
            if kind in ("late_orders", "purge_items", "drop_line_items", "new_locations"):
                if not isinstance(ops, (int, float)) or isinstance(ops, bool) or ops < 0:
                    return None, "%s must be a non-negative number" % kind
                continue
            if kind not in KINDS:
                return None, "unknown kind %r (known: %s, late_orders, purge_items, drop_line_items, new_locations)" % (kind, ", ".join(KINDS))
            if not isinstance(ops, dict):
                return None, "%s must be an object {update, create, delete}" % kind
            for op, n in ops.items():
                if op not in ("update", "create", "delete"):
                    return None, "unknown operation %r for %s" % (op, kind)
                if not isinstance(n, (int, float)) or isinstance(n, bool) or n < 0:
                    return None, "%s.%s must be a non-negative number" % (kind, op)
                if op == "delete" and n and kind in NEVER_DELETED:
                    return None, "Square has no delete for %s: it never deletes them" % kind
        with self.lock:
            res = {k: {"updated": [], "created": [], "deleted": []} for k in KINDS}
            rng = self.rng
            for _ in range(int(round(spec.get("new_locations", 0)))):   # a store opens: first, so the day sells there
                lid = self._add_location(rng, "ACTIVE", self.clock.now_ms)
                self.loc_ids.append(lid)
                res.setdefault("locations", {"updated": [], "created": [], "deleted": []})["created"].append(lid)
            order = ["catalog_categories", "catalog_items", "catalog_variations", "inventory_counts",
                     "vendors", "orders", "payments", "refunds"]
            for kind in order:
                ops = spec.get(kind)
                if not ops:
                    continue
                for op in ("delete", "update", "create"):
                    n = ops.get(op, 0)
                    if not n:
                        continue
                    getattr(self, "_m_%s_%s" % (kind, op))(rng, self._howmany(kind, n), res)
            late = spec.get("late_orders", 0)
            if late:
                n = int(round(late)) if late >= 1 else max(1, int(round(late * len(self.orders))))
                for _ in range(n):
                    now = self.clock.now_ms()
                    created = now - rng.randint(3600 * 1000, 48 * 3600 * 1000)
                    upd = min(created + rng.randint(1000, 20 * 60 * 1000), now - 3600 * 1000)
                    oid = self._create_order(rng, created, upd, with_payment=False)
                    res["orders"]["created"].append(oid)
            drop = spec.get("drop_line_items", 0)
            if drop:
                self._drop_line_items(rng, int(round(drop)) if drop >= 1 else 1, res)
            purge = spec.get("purge_items", 0)
            if purge:
                live = self.live_items()
                n = int(round(purge)) if purge >= 1 else max(1, int(round(purge * len(live))))
                for iid in rng.sample(live, min(n, max(0, len(live) - 1))):
                    self._purge_item(iid, res)
            # dedupe, drop "updated" for objects created or deleted in the same call
            for k, r in res.items():
                gone = set(r["created"]) | set(r["deleted"])
                r["updated"] = list(dict.fromkeys(x for x in r["updated"] if x not in gone))
                r["created"] = list(dict.fromkeys(r["created"]))
                r["deleted"] = list(dict.fromkeys(r["deleted"]))
            self.generation += 1
            self._query_cache.clear()
            return res, None

    def _drop_line_items(self, rng, n, res):
        """n OPEN orders with two line items or more each lose their last one, as Square's UpdateOrder
        with fields_to_clear ["line_items[<uid>]"] does: repriced, version and updated_at advanced.
        The uids dropped are listed under orders.line_items_dropped as [order_id, uid]."""
        fresh = set(res["orders"]["created"])
        pool = [r.id for r in self.orders.values()
                if r.state == "OPEN" and r.id not in fresh and len(r.obj()["line_items"]) >= 2]
        for oid in rng.sample(pool, min(n, len(pool))):
            rec = self.orders[oid]
            o = rec.obj()
            now = self.clock.now_ms()
            dropped = o["line_items"][-1]
            lines = [(x, x["gross_sales_money"]["amount"]) for x in o["line_items"][:-1]]
            flags = [bool(x.get("applied_discounts")) for x, _ in lines]
            total = self._price_order(rng, o, lines, tip=o["total_tip_money"]["amount"],
                                      service_charge=o["total_service_charge_money"]["amount"],
                                      discount_flags=flags)
            o["net_amount_due_money"] = money(total)
            o["version"] = o.get("version", 1) + 1
            o["updated_at"] = ts(now)
            rec.set(o, rec.created_ms, now, rec.closed_ms)
            res["orders"]["updated"].append(oid)
            res["orders"].setdefault("line_items_dropped", []).append([oid, dropped["uid"]])

    def _purge_item(self, iid, res):
        """Removes an item, its variations and their vendor infos entirely, without tombstones, as if
        Square had lost them (for testing deep validation). Inventory counts stay: they are never deleted."""
        vids = [v for v in self.variations if self.catalog[v]["item_variation_data"]["item_id"] == iid]
        for vid in vids:
            for viid in [k for k, (var_id, _) in self.vinfo.items() if var_id == vid]:
                del self.vinfo[viid]
                self.vinfo_ms.pop(viid, None)
                self._dirty_cat(viid)
            del self.catalog[vid]
            self.cat_ms.pop(vid, None)
            self._dirty_cat(vid)
            res["catalog_variations"].setdefault("purged", []).append(vid)
        self.variations = [v for v in self.variations if v not in set(vids)]
        del self.catalog[iid]
        self.cat_ms.pop(iid, None)
        self._dirty_cat(iid)
        self.items.remove(iid)
        res["catalog_items"].setdefault("purged", []).append(iid)

    def _howmany(self, kind, n):
        if n >= 1:
            return int(round(n))
        current = {
            "catalog_items": lambda: len(self.live_items()),
            "catalog_variations": lambda: len(self.live_variations()),
            "catalog_categories": lambda: sum(1 for o in self.catalog.values() if o["type"] == "CATEGORY" and not o["is_deleted"]),
            "inventory_counts": lambda: len(self.counts),
            "vendors": lambda: len(self.vendors),
            "orders": lambda: len(self.orders),
            "payments": lambda: len(self.payments),
            "refunds": lambda: len(self.refunds),
        }[kind]()
        return max(1, int(round(n * current)))

    # categories
    def _live_categories(self):
        return [o["id"] for o in self.catalog.values() if o["type"] == "CATEGORY" and not o["is_deleted"]]

    def _m_catalog_categories_update(self, rng, n, res):
        for cid in rng.sample(self._live_categories(), min(n, len(self._live_categories()))):
            obj = self.catalog[cid]
            obj["category_data"]["name"] = "%s %s" % (rng.choice(WORDS), rng.choice(NOUNS) + "s")
            self._touch_cat(obj, self.clock.now_ms())
            res["catalog_categories"]["updated"].append(cid)

    def _m_catalog_categories_create(self, rng, n, res):
        for _ in range(n):
            ms = self.clock.now_ms()
            cid = self._id(rng, B32, 24)
            self.catalog[cid] = {"type": "CATEGORY", "id": cid, "updated_at": ts(ms), "version": ms,
                                 "is_deleted": False, "present_at_all_locations": True,
                                 "category_data": {"name": "%s %s" % (rng.choice(WORDS), rng.choice(NOUNS) + "s"),
                                                   "category_type": "REGULAR_CATEGORY", "is_top_level": True,
                                                   "online_visibility": True}}
            self.cat_ms[cid] = ms
            res["catalog_categories"]["created"].append(cid)

    def _m_catalog_categories_delete(self, rng, n, res):
        live = self._live_categories()
        for cid in rng.sample(live, min(n, max(0, len(live) - 1))):
            obj = self.catalog[cid]
            obj["is_deleted"] = True
            self._touch_cat(obj, self.clock.now_ms())
            res["catalog_categories"]["deleted"].append(cid)

    # items
    def _m_catalog_items_update(self, rng, n, res):
        live = self.live_items()
        for iid in rng.sample(live, min(n, len(live))):
            item = self.catalog[iid]
            base = item["item_data"]["name"].split(" (rev")[0]
            item["item_data"]["name"] = "%s (rev %d)" % (base, rng.randint(2, 999))
            if rng.random() < 0.5 and len(self.loc_ids) > 1:
                # Every other edit also changes where the item is sold: its variations' availability follows.
                if item.get("absent_at_location_ids") or item.get("present_at_all_locations") is False:
                    item["present_at_all_locations"] = True
                    item.pop("absent_at_location_ids", None)
                    item.pop("present_at_location_ids", None)
                else:
                    item["absent_at_location_ids"] = [rng.choice(self.loc_ids)]
            self._touch_cat(item, self.clock.now_ms())
            res["catalog_items"]["updated"].append(iid)

    def _add_counts_for(self, vid, ms_fn, rng, res):
        for lid in self.loc_ids:
            res["inventory_counts"]["created"].append(
                self._new_count(vid, lid, "IN_STOCK", ms_fn(), rng.randint(0, 100)))

    def _m_catalog_items_create(self, rng, n, res):
        cats = self._live_categories()
        vendors = [v for v, o in self.vendors.items() if o["status"] == "ACTIVE"] or list(self.vendors)
        for _ in range(n):
            ms = self.clock.now_ms()
            iid, vids = self._new_item(rng, ms, rng.randint(1, 2), cats)
            res["catalog_items"]["created"].append(iid)
            for vid in vids:
                res["catalog_variations"]["created"].append(vid)
                if rng.random() < 0.5:
                    self._new_vendor_info(rng, vid, rng.choice(vendors), ms)
                self._add_counts_for(vid, self.clock.now_ms, rng, res)

    def _m_catalog_items_delete(self, rng, n, res):
        live = self.live_items()
        for iid in rng.sample(live, min(n, max(0, len(live) - 1))):
            item = self.catalog[iid]
            item["is_deleted"] = True
            self._touch_cat(item, self.clock.now_ms())
            res["catalog_items"]["deleted"].append(iid)
            for var in item["item_data"]["variations"]:
                if not var["is_deleted"]:
                    var["is_deleted"] = True
                    self._touch_cat(var, self.clock.now_ms())
                    res["catalog_variations"]["deleted"].append(var["id"])
            self._dirty_cat(iid)

    # variations
    def _m_catalog_variations_update(self, rng, n, res):
        fresh = set(res["catalog_variations"]["created"])
        live = [v for v in self.live_variations() if v not in fresh]
        for vid in rng.sample(live, min(n, len(live))):
            var = self.catalog[vid]
            d = var["item_variation_data"]
            d["price_money"] = money(max(25, d["price_money"]["amount"] + rng.choice([-50, -25, 25, 50, 100])))
            if rng.random() < 0.3:
                d["sku"] = "SKU-%s" % "".join(rng.choices(UPPER, k=8))
            self._touch_cat(var, self.clock.now_ms())
            res["catalog_variations"]["updated"].append(vid)
            res["catalog_items"]["updated"].append(self._touch_item_of(var, self.clock.now_ms()))

    def _m_catalog_variations_create(self, rng, n, res):
        live = [i for i in self.live_items() if len(self.catalog[i]["item_data"]["variations"]) < 250]
        for iid in [rng.choice(live) for _ in range(n)]:
            item = self.catalog[iid]
            vid = self._new_variation(rng, item, self.clock.now_ms())
            res["catalog_variations"]["created"].append(vid)
            self._touch_cat(item, self.clock.now_ms())
            res["catalog_items"]["updated"].append(iid)
            self._add_counts_for(vid, self.clock.now_ms, rng, res)

    def _m_catalog_variations_delete(self, rng, n, res):
        done = 0
        live = self.live_variations()
        rng.shuffle(live)
        for vid in live:
            if done >= n:
                break
            var = self.catalog[vid]
            item = self.catalog[var["item_variation_data"]["item_id"]]
            siblings = [v for v in item["item_data"]["variations"] if not v["is_deleted"]]
            if len(siblings) < 2:
                continue    # an item must keep at least one variation
            var["is_deleted"] = True
            self._touch_cat(var, self.clock.now_ms())
            item["item_data"]["variations"] = [v for v in item["item_data"]["variations"] if v["id"] != vid]
            self._touch_cat(item, self.clock.now_ms())
            res["catalog_variations"]["deleted"].append(vid)
            res["catalog_items"]["updated"].append(item["id"])
            done += 1

    # inventory
    def _m_inventory_counts_update(self, rng, n, res):
        live = set(self.live_variations())
        fresh = set(res["inventory_counts"]["created"])
        keys = [k for k in self.counts if k[0] in live and "%s:%s:%s" % k not in fresh]
        for key in rng.sample(keys, min(n, len(keys))):
            c = self.counts[key]
            q = float(c["quantity"]) + rng.choice([-3, -2, -1, 1, 2, 5, 12])
            res["inventory_counts"]["updated"].append(
                self._new_count(key[0], key[1], key[2], self.clock.now_ms(), max(0, q)))

    def _m_inventory_counts_create(self, rng, n, res):
        live = self.live_variations()
        made = 0
        tries = 0
        while made < n and tries < n * 50:
            tries += 1
            key = (rng.choice(live), rng.choice(self.loc_ids), rng.choice(["RESERVED_FOR_SALE", "WASTE", "IN_TRANSIT"]))
            if key in self.counts:
                continue
            res["inventory_counts"]["created"].append(
                self._new_count(key[0], key[1], key[2], self.clock.now_ms(), rng.randint(1, 12)))
            made += 1

    # vendors
    def _m_vendors_update(self, rng, n, res):
        for vid in rng.sample(list(self.vendors), min(n, len(self.vendors))):
            v = self.vendors[vid]
            if rng.random() < 0.3:
                v["status"] = "INACTIVE" if v["status"] == "ACTIVE" else "ACTIVE"
            else:
                v["name"] = "%s %s Supply Co" % (rng.choice(WORDS), rng.choice(NOUNS))
            v["version"] += 1
            ms = self.clock.now_ms()
            v["updated_at"] = ts(ms)
            self.vendor_ms[vid] = ms
            self._bytes.pop(("vendor", vid), None)
            res["vendors"]["updated"].append(vid)

    def _m_vendors_create(self, rng, n, res):
        for _ in range(n):
            res["vendors"]["created"].append(self._new_vendor(rng, self.clock.now_ms()))

    # orders
    def _create_order(self, rng, created, updated, with_payment=True, res=None):
        sellable = self.sellable_by_location()
        lid = rng.choice([l for l in self.loc_ids if self.locations[self.loc_ids.index(l)]["status"] == "ACTIVE"]
                         or self.loc_ids)
        order = self._base_order(rng, lid, created)
        lines = [self._line_item(rng, rng.choice(sellable[lid])) for _ in range(rng.randint(1, 8))]
        tip = rng.randint(0, 4) * 50 if with_payment else 0
        total = self._price_order(rng, order, lines, tip=tip)
        payment = None
        if with_payment:
            payment = self._make_payment(rng, order, total, tip, created, updated)
            if res is not None:
                res["payments"]["created"].append(payment["id"])
        self._add_tender(rng, order, total, tip, created, payment)
        order["created_at"] = ts(created)
        order["updated_at"] = ts(updated)
        order["closed_at"] = ts(updated)
        order["state"] = "COMPLETED"
        order["version"] = 2
        self.orders[order["id"]] = OrderRec(order, created, updated, updated, self._order_log)
        return order["id"]

    def _m_orders_create(self, rng, n, res):
        for _ in range(n):
            c = self.clock.now_ms()
            u = self.clock.now_ms()
            res["orders"]["created"].append(self._create_order(rng, c, u, True, res))

    def _m_orders_update(self, rng, n, res):
        fresh = set(res["orders"]["created"])
        ids = [r.id for r in self.orders.values() if not r.is_return and r.id not in fresh]
        open_ids = [r.id for r in self.orders.values() if r.state == "OPEN" and r.id not in fresh]
        pool = open_ids if len(open_ids) >= n else ids
        for oid in rng.sample(pool, min(n, len(pool))):
            rec = self.orders[oid]
            o = rec.obj()
            closed = rec.closed_ms
            now = self.clock.now_ms()
            if o["state"] == "OPEN":
                r = rng.random()
                if r < 0.4:
                    o["state"] = "COMPLETED"
                    closed = now
                    self._add_tender(rng, o, o["total_money"]["amount"], 0, now)
                    for f in o.get("fulfillments", ()):
                        f["state"] = "COMPLETED"
                elif r < 0.55:
                    o["state"] = "CANCELED"
                    closed = now
                    o["net_amount_due_money"] = money(0)
                    for f in o.get("fulfillments", ()):
                        f["state"] = "CANCELED"
                else:
                    sellable = self.sellable_by_location()[o["location_id"]]
                    li, gross = self._line_item(rng, rng.choice(sellable))
                    lines = [(x, x["gross_sales_money"]["amount"]) for x in o["line_items"]] + [(li, gross)]
                    flags = [bool(x.get("applied_discounts")) for x, _ in lines[:-1]] + [True]
                    total = self._price_order(rng, o, lines, tip=o["total_tip_money"]["amount"],
                                              service_charge=o["total_service_charge_money"]["amount"],
                                              discount_flags=flags)
                    o["net_amount_due_money"] = money(total)
                    for f in o.get("fulfillments", ()):
                        nxt = {"PROPOSED": "RESERVED", "RESERVED": "PREPARED"}.get(f["state"])
                        if nxt:
                            f["state"] = nxt
            else:
                o["ticket_name"] = "Ticket %d" % rng.randint(1, 9999)
            o["version"] = o.get("version", 1) + 1
            o["updated_at"] = ts(now)
            if closed is not None:
                o["closed_at"] = ts(closed)
            rec.set(o, rec.created_ms, now, closed)
            res["orders"]["updated"].append(oid)

    # payments
    def _m_payments_update(self, rng, n, res):
        fresh = set(res["payments"]["created"])
        pool = [p for p in self.payments if p not in fresh]
        for pid in rng.sample(pool, min(n, len(pool))):
            p = self.payments[pid]
            ms = self.clock.now_ms()
            if p["status"] == "APPROVED":
                p["status"] = "COMPLETED"
            p["processing_fee"] = p.get("processing_fee", []) + [
                {"effective_at": ts(ms), "type": "ADJUSTMENT", "amount_money": money(-rng.randint(1, 9))}]
            p["updated_at"] = ts(ms)
            p["version_token"] = "".join(rng.choices(ALNUM, k=44))
            self.pay_ms[pid] = (self.pay_ms[pid][0], ms)
            self._bytes.pop(("payment", pid), None)
            res["payments"]["updated"].append(pid)

    def _m_payments_create(self, rng, n, res):
        for _ in range(n):
            c = self.clock.now_ms()
            u = self.clock.now_ms()
            res["orders"]["created"].append(self._create_order(rng, c, u, True, res))

    # refunds
    def _m_refunds_update(self, rng, n, res):
        for rid in rng.sample(list(self.refunds), min(n, len(self.refunds))):
            r = self.refunds[rid]
            ms = self.clock.now_ms()
            if r["status"] == "PENDING":
                r["status"] = "COMPLETED"
                rec = self.orders.get(r["order_id"])
                if rec is not None:
                    o = rec.obj()
                    for x in o.get("refunds", ()):
                        if x["id"] == rid:
                            x["status"] = "APPROVED"
                    o["version"] = o.get("version", 1) + 1
                    om = self.clock.now_ms()
                    o["updated_at"] = ts(om)
                    rec.set(o, rec.created_ms, om, rec.closed_ms)
                    res["orders"]["updated"].append(rec.id)
            else:
                r["reason"] = rng.choice(["Returned goods", "Damaged", "Customer request"])
            r["updated_at"] = ts(ms)
            self.refund_ms[rid] = (self.refund_ms[rid][0], ms)
            self._bytes.pop(("refund", rid), None)
            res["refunds"]["updated"].append(rid)

    def _m_refunds_create(self, rng, n, res):
        cands = [p for p in self.payments.values() if p["status"] == "COMPLETED"
                 and p["total_money"]["amount"] - p.get("refunded_money", {}).get("amount", 0) > 1
                 and p["order_id"] in self.orders]
        for p in rng.sample(cands, min(n, len(cands))):
            rec = self.orders[p["order_id"]]
            o = rec.obj()
            left = p["total_money"]["amount"] - p.get("refunded_money", {}).get("amount", 0)
            ms = self.clock.now_ms()
            rid = self._refund(rng, o, p, max(1, left // 2), ms, "PENDING")
            res["refunds"]["created"].append(rid)
            res["payments"]["updated"].append(p["id"])
            om = self.clock.now_ms()
            o["version"] = o.get("version", 1) + 1
            o["updated_at"] = ts(om)
            rec.set(o, rec.created_ms, om, rec.closed_ms)
            res["orders"]["updated"].append(rec.id)

    # -------------------------------------------------------------- snapshot
    def snapshot(self):
        with self.lock:
            T = {}

            def table(name, key, cols):
                T[name] = {"key": key, "columns": cols, "rows": []}
                return T[name]["rows"]

            rows = table("locations", ["id"], ["name", "status", "timezone", "currency"])
            for l in self.locations:
                rows.append([l["id"], l["name"], l["status"], l["timezone"], l["currency"]])
            cats = table("catalog_categories", ["id"], ["version", "is_deleted", "name"])
            items = table("catalog_items", ["id"], ["version", "is_deleted", "name"])
            vars_ = table("catalog_variations", ["id"], ["item_id", "version", "is_deleted", "sku", "price_amount"])
            avail = table("catalog_location_availability", ["variation_id", "location_id"],
                          ["item_id", "is_present", "price_amount"])
            vinfo = table("catalog_vendor_info", ["id"], ["variation_id", "vendor_id", "sku", "price_amount", "is_deleted"])
            for o in self.catalog.values():
                if o["type"] == "CATEGORY":
                    cats.append([o["id"], o["version"], o["is_deleted"], o["category_data"].get("name")])
                elif o["type"] == "ITEM":
                    items.append([o["id"], o["version"], o["is_deleted"], o["item_data"].get("name")])
                elif o["type"] == "ITEM_VARIATION":
                    d = o["item_variation_data"]
                    item = self.catalog[d["item_id"]]
                    vars_.append([o["id"], d["item_id"], o["version"], o["is_deleted"], d.get("sku"),
                                  d.get("price_money", {}).get("amount")])
                    for vi in d.get("item_variation_vendor_infos", ()):
                        vd = vi["item_variation_vendor_info_data"]
                        vinfo.append([vi["id"], vd["item_variation_id"], vd["vendor_id"], vd.get("sku"),
                                      vd.get("price_money", {}).get("amount"), bool(vi["is_deleted"] or o["is_deleted"])])
                    if o["is_deleted"] or item["is_deleted"]:
                        continue
                    ovs = {x["location_id"]: x for x in d.get("location_overrides", ())}
                    for lid in self.loc_ids:
                        avail.append([o["id"], lid, d["item_id"], self._present(item, lid) and self._present(o, lid),
                                      ovs.get(lid, {}).get("price_money", {}).get("amount")])
            rows = table("catalog_inventory", ["catalog_object_id", "location_id", "state"], ["quantity", "calculated_at"])
            for k, c in self.counts.items():
                rows.append([k[0], k[1], k[2], c["quantity"], c["calculated_at"]])
            rows = table("vendors", ["id"], ["version", "status", "name"])
            for v in self.vendors.values():
                rows.append([v["id"], v["version"], v["status"], v["name"]])
            orows = table("orders", ["id"], ["location_id", "version", "state", "updated_at", "total_money_amount"])
            lrows = table("order_line_items", ["order_id", "uid"], ["quantity", "total_money_amount", "catalog_object_id"])
            frows = table("order_fulfillments", ["order_id", "uid"], ["type", "state"])
            rrows = table("order_refunds", ["order_id", "id"], ["amount_money_amount", "status"])
            retrows = table("order_returns", ["order_id", "uid"], ["source_order_id", "return_total_money_amount"])
            trows = table("tenders", ["order_id", "id"], ["amount_money_amount", "type"])
            xrows = table("transactions", ["id"], ["location_id", "order_id", "created_at"])
            for rec in self.orders.values():
                o = rec.obj()
                oid = o["id"]
                orows.append([oid, o["location_id"], o.get("version"), o["state"], o["updated_at"],
                              o["total_money"]["amount"]])
                for li in o.get("line_items", ()):
                    lrows.append([oid, li["uid"], li["quantity"], li["total_money"]["amount"], li.get("catalog_object_id")])
                for f in o.get("fulfillments", ()):
                    frows.append([oid, f["uid"], f["type"], f["state"]])
                for r in o.get("refunds", ()):
                    rrows.append([oid, r["id"], r["amount_money"]["amount"], r["status"]])
                for r in o.get("returns", ()):
                    retrows.append([oid, r["uid"], r.get("source_order_id"),
                                    (r.get("return_amounts") or {}).get("total_money", {}).get("amount")])
                for t in o.get("tenders", ()):
                    trows.append([oid, t["id"], t["amount_money"]["amount"], t["type"]])
                if o.get("tenders"):
                    xrows.append([oid, o["location_id"], oid, ts(rec.tx_ms)])
            rows = table("payments", ["id"], ["status", "updated_at", "amount_money_amount"])
            for p in self.payments.values():
                rows.append([p["id"], p["status"], p["updated_at"], p["amount_money"]["amount"]])
            rows = table("payment_refunds", ["id"], ["status", "updated_at", "amount_money_amount"])
            for r in self.refunds.values():
                rows.append([r["id"], r["status"], r["updated_at"], r["amount_money"]["amount"]])
            for t in T.values():
                nk = len(t["key"])
                t["rows"].sort(key=lambda r: tuple(r[:nk]))
            return {"merchant_id": self.merchant_id, "tables": T}

    def counts_summary(self):
        """Sizes of everything, for tests and logs."""
        n_li = n_tend = n_ful = n_ret = n_oref = n_tx = 0
        for rec in self.orders.values():
            o = rec.obj()
            n_li += len(o.get("line_items", ()))
            n_tend += len(o.get("tenders", ()))
            n_ful += len(o.get("fulfillments", ()))
            n_ret += len(o.get("returns", ()))
            n_oref += len(o.get("refunds", ()))
            n_tx += 1 if o.get("tenders") else 0
        types = [o["type"] for o in self.catalog.values()]
        return {"locations": len(self.locations), "categories": types.count("CATEGORY"),
                "items": types.count("ITEM"), "variations": types.count("ITEM_VARIATION"),
                "inventory_counts": len(self.counts), "vendors": len(self.vendors),
                "vendor_infos": len(self.vinfo), "orders": len(self.orders), "line_items": n_li,
                "tenders": n_tend, "payments": len(self.payments), "fulfillments": n_ful, "returns": n_ret,
                "order_refunds": n_oref, "payment_refunds": len(self.refunds), "transactions": n_tx}
