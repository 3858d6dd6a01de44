"""Checks live broker responses against Specs/openapi.yaml: path + method + status documented, the content type
documented for that status, and every required member of the (resolved) schema present with the documented JSON
type. A mismatch raises AssertionError at the request that produced it."""

from __future__ import annotations

import yaml

from conftest import REPO

SPEC = yaml.safe_load((REPO / "Specs" / "openapi.yaml").read_text(encoding="utf-8"))

JSON_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


def resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        cur = SPEC
        for part in node["$ref"][2:].split("/"):
            cur = cur[part]
        node = cur
    return node


def required_members(schema) -> dict:
    """{name: property schema} for every required member, following allOf."""
    schema = resolve(schema) or {}
    out = {}
    for sub in schema.get("allOf", []):
        out.update(required_members(sub))
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        out[name] = resolve(props.get(name, {}))
    return out


def check(method: str, template: str, resp) -> None:
    op = (SPEC["paths"].get(template) or {}).get(method.lower())
    assert op is not None, f"{method} {template} is not documented in Specs/openapi.yaml"
    doc = resolve(op.get("responses", {}).get(str(resp.status)))
    assert doc is not None, f"{method} {template} does not document status {resp.status}: {resp.body[:300]!r}"
    content = doc.get("content")
    if not content:
        assert not resp.body, f"{method} {template} {resp.status}: documents no body but got one"
        return
    assert resp.content_type in content, (
        f"{method} {template} {resp.status}: content type {resp.content_type!r} not in {sorted(content)}")
    schema = resolve(content[resp.content_type].get("schema"))
    if not resp.content_type.endswith("json") or schema is None:
        return
    body = resp.json
    if schema.get("type") == "object" or "required" in schema or "allOf" in schema:
        assert isinstance(body, dict), f"{method} {template} {resp.status}: body is not an object"
        for name, prop in required_members(schema).items():
            assert name in body, f"{method} {template} {resp.status}: required member {name!r} missing"
            t = prop.get("type")
            types = t if isinstance(t, list) else [t] if t else []
            if types and body[name] is not None:
                ok = any(isinstance(body[name], JSON_TYPES[x]) and not (x == "integer" and isinstance(body[name], bool))
                         for x in types if x in JSON_TYPES)
                assert ok, f"{method} {template} {resp.status}: member {name!r} is not {types}"
