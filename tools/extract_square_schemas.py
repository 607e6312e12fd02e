#!/usr/bin/env python3
"""Extract a trimmed, structure-only copy of the Square OpenAPI schemas that squaresync uses.

Owns: test/fake_square/schemas.json (generated; commit the output).
Usage: /usr/bin/python3 tools/extract_square_schemas.py PATH/TO/api.json [OUT]

Only the request/response schemas of the operations the project calls are kept, with the
schemas they reference (transitively).  Descriptions, examples and vendor extensions are dropped;
$refs that dangle or point outside the document are replaced by plain types.
"""
import json
import os
import sys

OPERATIONS = [
    ("get", "/v2/merchants"),
    ("get", "/v2/merchants/{merchant_id}"),
    ("get", "/v2/locations"),
    ("post", "/v2/catalog/search"),
    ("get", "/v2/catalog/list"),
    ("post", "/v2/catalog/batch-retrieve"),
    ("post", "/v2/inventory/counts/batch-retrieve"),
    ("post", "/v2/vendors/search"),
    ("post", "/v2/vendors/bulk-retrieve"),
    ("post", "/v2/orders/search"),
    ("post", "/v2/orders/batch-retrieve"),
    ("get", "/v2/payments"),
    ("get", "/v2/refunds"),
    ("get", "/v2/locations/{location_id}/transactions"),
]
KEEP = {"type", "properties", "required", "enum", "items", "$ref", "nullable", "maxItems", "minItems",
        "maximum", "minimum", "maxLength", "minLength", "format", "additionalProperties",
        "allOf", "oneOf", "anyOf", "readOnly", "default"}
PREFIX = "#/components/schemas/"


def plain_type_for(ref):
    tail = ref.rsplit(".", 1)[-1].rsplit("/", 1)[-1].lower()
    for word, t in (("string", "string"), ("bool", "boolean"), ("int", "integer"),
                    ("number", "number"), ("double", "number"), ("float", "number")):
        if word in tail:
            return {"type": t}
    return {"type": "string"}


def trim(node, schemas, todo):
    if isinstance(node, list):
        return [trim(x, schemas, todo) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref.startswith(PREFIX) and ref[len(PREFIX):] in schemas:
            todo.append(ref[len(PREFIX):])
            out = {"$ref": ref}
            if node.get("nullable"):
                out["nullable"] = True
            return out
        return plain_type_for(ref)
    out = {}
    for k, v in node.items():
        if k not in KEEP:
            continue
        if k == "properties":
            out[k] = {p: trim(s, schemas, todo) for p, s in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = trim(v, schemas, todo)
        elif k in ("allOf", "oneOf", "anyOf"):
            out[k] = [trim(s, schemas, todo) for s in v]
        else:
            out[k] = v
    return out


# Not in the 2025-08-20 spec but sent by real Square inside item_variation_data
# (item_variation_vendor_infos[]); described here so tests can check the fake's shape.
EXTRAS = {
    "ItemVariationVendorInfo": {
        "type": "object",
        "required": ["type", "id", "item_variation_vendor_info_data"],
        "properties": {
            "type": {"type": "string", "enum": ["ITEM_VARIATION_VENDOR_INFO"]},
            "id": {"type": "string"},
            "updated_at": {"type": "string"},
            "version": {"type": "integer"},
            "is_deleted": {"type": "boolean"},
            "present_at_all_locations": {"type": "boolean"},
            "present_at_location_ids": {"type": "array", "items": {"type": "string"}},
            "absent_at_location_ids": {"type": "array", "items": {"type": "string"}},
            "item_variation_vendor_info_data": {
                "type": "object",
                "required": ["item_variation_id", "vendor_id"],
                "properties": {
                    "item_variation_id": {"type": "string"},
                    "vendor_id": {"type": "string"},
                    "sku": {"type": "string"},
                    "price_money": {"$ref": "#/components/schemas/Money"},
                    "ordinal": {"type": "integer"},
                },
            },
        },
    },
}


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: extract_square_schemas.py api.json [out.json]")
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "test", "fake_square", "schemas.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    schemas = spec["components"]["schemas"]
    todo = ["Error", "ErrorCode", "ErrorCategory"]
    operations = {}
    for method, path in OPERATIONS:
        op = spec["paths"][path][method]
        entry = {"method": method.upper(), "path": path}
        rb = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if rb:
            entry["request"] = trim(rb, schemas, todo)
        entry["response"] = trim(op["responses"]["200"]["content"]["application/json"]["schema"], schemas, todo)
        params = {}
        for p in op.get("parameters", []):
            params[p["name"]] = {"in": p["in"], "required": bool(p.get("required")),
                                 "schema": trim(p.get("schema", {}), schemas, todo)}
        if params:
            entry["parameters"] = params
        operations[op["operationId"]] = entry
    done = {}
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done[name] = None
        done[name] = trim(schemas[name], schemas, todo)
    for name, s in EXTRAS.items():
        done[name] = trim(s, schemas, todo)
    while todo:
        name = todo.pop()
        if name not in done:
            done[name] = trim(schemas[name], schemas, todo)
    out = {
        "source": "square/connect-api-specification api.json, trimmed by tools/extract_square_schemas.py",
        "square_version": "2025-08-20",
        "operations": operations,
        "components": {"schemas": {k: done[k] for k in sorted(done)}},
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=False)
        f.write("\n")
    print("wrote %s: %d operations, %d schemas" % (out_path, len(operations), len(done)))


if __name__ == "__main__":
    main()
