"""Checks on the conformance vectors themselves; needs no Stagepass build.

- Specs/vectors/generate.py reproduces conformance.json byte for byte;
- every case's verdict matches the independent Python reading of the profile (reference_verifier.py);
- joserfc, an independent JOSE implementation, accepts the signature of every "ok" case and rejects
  every "bad_signature" case;
- jansson (the JSON parser the Swift verifier uses) accepts and rejects the same header/payload bytes
  as the reference parser (the depth bound is applied separately by both);
- every error code is covered and every JWK's kid is its RFC 7638 thumbprint.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import json
import subprocess
import sys
import warnings

import pytest
from conftest import CODES, REPO, load_vectors, vector_cases

import reference_verifier as rv

CASES = vector_cases()
IDS = [c["id"] for c in CASES]


def test_generator_reproduces_committed_file():
    proc = subprocess.run(
        [sys.executable, str(REPO / "Specs" / "vectors" / "generate.py"), "--check"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_document_shape():
    doc = load_vectors()
    assert doc["version"] == 1 and isinstance(doc["description"], str)
    ids = [c["id"] for c in doc["cases"]]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(ids) >= 60
    allowed = {"id", "description", "token", "jwks", "config", "now", "requirements", "status_lists",
               "status_max_age", "status_list_results", "dpop", "dpop_earlier", "expected"}
    for c in doc["cases"]:
        assert set(c) <= allowed, c["id"]
        assert c["expected"] == "ok" or c["expected"] in CODES, c["id"]
        assert set(c["config"]) - {"dpop_replay_capacity"} == {"issuer", "audiences", "leeway", "max_lifetime"}, c["id"]
        for p in c.get("dpop_earlier", []) + ([c["dpop"]] if "dpop" in c else []):
            assert set(p) == {"proof", "method", "url"}, c["id"]
        assert set(c.get("requirements", {})) <= {"roles", "stage", "pipeline"}, c["id"]
        if "status_lists" in c:
            assert len(c["status_list_results"]) == len(c["status_lists"]), c["id"]
            assert set(c["status_list_results"]) <= {"ok", "bad_status_list", "stale_status_list"}, c["id"]


def test_status_list_install_cases_exist():
    """Installing: a newer list replaces an older one, an older one never replaces a newer, unusable ones are refused."""
    by_id = {c["id"]: c for c in CASES}
    assert by_id["status-list-newer-replaces-older"]["status_list_results"] == ["ok", "ok"]
    assert by_id["status-list-older-does-not-replace-newer"]["status_list_results"] == ["ok", "stale_status_list"]
    for cid in ("status-list-unusable-http-error-page", "status-list-unusable-a-b-c"):
        assert by_id[cid]["status_list_results"] == ["bad_status_list"] and by_id[cid]["expected"] == "status_unavailable"
    assert by_id["status-list-unusable-does-not-replace"]["status_list_results"] == ["ok", "bad_status_list"]


def test_every_code_is_covered():
    seen = {c["expected"] for c in CASES}
    assert set(CODES) | {"ok"} <= seen, sorted(set(CODES) - seen)


# Cases that deliberately put another key's kid on a JWK.
KID_REUSE = {"jwks-duplicate-kid", "duplicate-kid-one-unusable"}


def test_kids_are_rfc7638_thumbprints():
    from joserfc.jwk import JWKRegistry

    warnings.simplefilter("ignore")  # joserfc warns about the deliberately small RSA key
    for c in CASES:
        for j in c["jwks"]["keys"]:
            if "kid" not in j:
                continue
            members = {k: v for k, v in j.items() if k in ("kty", "crv", "x", "y", "n", "e")}
            matches = JWKRegistry.import_key(members).thumbprint() == j["kid"]
            assert matches or c["id"] in KID_REUSE, c["id"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_verifier(case):
    assert rv.run_case(case) == case["expected"]


def _joserfc_accepts(case) -> bool:
    from joserfc import jws
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    header = json.loads(base64.urlsafe_b64decode(case["token"].split(".")[0] + "==="))
    keys = KeySet.import_key_set(case["jwks"])
    registry = jws.JWSRegistry(algorithms=[header["alg"]], strict_check_header=False)
    try:
        jws.deserialize_compact(case["token"], keys, algorithms=[header["alg"]], registry=registry)
        return True
    except (JoseError, ValueError):
        return False


# The high-S twin of a valid ES256 signature: generic ECDSA (joserfc, via `cryptography`) accepts it; the Stagepass
# profile refuses it (token-profile.md §4.1, low-S only), so here joserfc must *accept* it (proving the twin is a
# valid ECDSA signature and the refusal comes from the low-S rule alone).
HIGH_S = {"es256-high-s"}


@pytest.mark.parametrize("case", [c for c in CASES if c["expected"] in ("ok", "bad_signature")],
                         ids=[c["id"] for c in CASES if c["expected"] in ("ok", "bad_signature")])
def test_joserfc_agrees_on_signatures(case):
    warnings.simplefilter("ignore")
    if case["id"] in HIGH_S:
        assert _joserfc_accepts(case) and case["expected"] == "bad_signature"
        return
    assert _joserfc_accepts(case) == (case["expected"] == "ok")


def test_every_ok_es256_signature_is_low_s():
    checked = 0
    for c in CASES:
        if c["expected"] != "ok":
            continue
        header = json.loads(rv.b64u_decode(c["token"].split(".")[0]))
        if header.get("alg") == "ES256":
            checked += 1
            sig = rv.b64u_decode(c["token"].split(".")[2])
            assert int.from_bytes(sig[32:], "big") <= rv.P256_N // 2, c["id"]
    assert checked > 20


def _jansson():
    name = ctypes.util.find_library("jansson") or "libjansson.so.4"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.fail("libjansson is not installed (Debian: libjansson-dev); the README's test command installs it",
                    pytrace=False)
    lib.json_loadb.restype = ctypes.c_void_p
    lib.json_loadb.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
    lib.json_delete.argtypes = [ctypes.c_void_p]
    return lib


JSON_REJECT_DUPLICATES, JSON_DECODE_ANY = 0x1, 0x4


def test_jansson_agrees_with_reference_parser():
    lib = _jansson()
    checked = 0
    for c in CASES:
        docs = []
        for tok in [c["token"], *c.get("status_lists", [])]:
            for seg in tok.split(".")[:2] if tok.count(".") == 2 else []:
                try:
                    docs.append(rv.b64u_decode(seg))
                except rv._Bad:
                    pass
        for b in docs:
            err = ctypes.create_string_buffer(1024)
            p = lib.json_loadb(b, len(b), JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, err)
            if p:
                lib.json_delete(p)
            try:
                rv.strict_json(b, max_depth=None, require_object=False)
                ours = True
            except rv._Bad:
                ours = False
            assert bool(p) == ours, (c["id"], b[:80])
            checked += 1
    assert checked > 2 * len(CASES) - 20
