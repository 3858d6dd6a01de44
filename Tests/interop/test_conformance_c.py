"""Runs every case of Specs/vectors/conformance.json through the C ABI (stagepass_verify.h) with ctypes.

Set STAGEPASS_VERIFY_LIB to the path of libStagepassVerifyC.so. Per case:
  stagepass_verifier_new(issuer, audiences joined by ',', jwks JSON, leeway, max_lifetime)
  stagepass_verifier_set_status_list(list, fetched_at = case now, max_age = status_max_age or 0)  for each list
  stagepass_verify(token, roles joined by ',' or NULL, stage or NULL, pipeline or NULL, now = case now)
and stagepass_result_name(result) must equal the case's `expected`.
"""

from __future__ import annotations

import base64
import ctypes
import json
import threading

import pytest
from conftest import CODES, vector_cases, verify_lib_path

CASES = vector_cases()
IDS = [c["id"] for c in CASES]

STAGEPASS_OK = 0
STAGEPASS_ERR_BUFFER_TOO_SMALL = 101
STAGEPASS_ERR_BAD_STATUS_LIST = 103
STAGEPASS_ERR_STALE_STATUS_LIST = 104


class VerifyLib:
    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        lib.stagepass_result_name.restype = ctypes.c_char_p
        lib.stagepass_result_name.argtypes = [ctypes.c_int]
        lib.stagepass_verifier_new.restype = ctypes.c_void_p
        lib.stagepass_verifier_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64,
                                               ctypes.c_int64, ctypes.POINTER(ctypes.c_int)]
        lib.stagepass_verifier_set_jwks.restype = ctypes.c_int
        lib.stagepass_verifier_set_jwks.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.stagepass_verifier_set_status_list.restype = ctypes.c_int
        lib.stagepass_verifier_set_status_list.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
                                                           ctypes.c_int64]
        lib.stagepass_verify.restype = ctypes.c_int
        lib.stagepass_verify.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,  # verifier, token, token_len
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64,  # role, stage, pipeline, now
            ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),  # claims_out, cap, len
            ctypes.c_char_p, ctypes.c_size_t,  # detail_out, cap
        ]
        lib.stagepass_verifier_new_with_dpop.restype = ctypes.c_void_p
        lib.stagepass_verifier_new_with_dpop.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64,  # as _new
            ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(ctypes.c_int)]  # proof max age, replay capacity, result
        lib.stagepass_verify_dpop.restype = ctypes.c_int
        lib.stagepass_verify_dpop.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,  # verifier, token, token_len
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,  # role, stage, pipeline
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64,  # dpop_proof, method, url, now
            ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),  # claims_out, cap, len
            ctypes.c_char_p, ctypes.c_size_t,  # detail_out, cap
        ]
        lib.stagepass_verifier_free.restype = None
        lib.stagepass_verifier_free.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def name(self, result: int) -> str:
        return self.lib.stagepass_result_name(result).decode()

    def new(self, config: dict, jwks: dict) -> int:
        rc = ctypes.c_int(-1)
        if "dpop_replay_capacity" in config:
            h = self.lib.stagepass_verifier_new_with_dpop(
                config["issuer"].encode(), ",".join(config["audiences"]).encode(),
                json.dumps(jwks, separators=(",", ":")).encode(), config["leeway"], config["max_lifetime"],
                0, config["dpop_replay_capacity"], ctypes.byref(rc))
        else:
            h = self.lib.stagepass_verifier_new(
                config["issuer"].encode(), ",".join(config["audiences"]).encode(),
                json.dumps(jwks, separators=(",", ":")).encode(), config["leeway"], config["max_lifetime"],
                ctypes.byref(rc))
        assert h, f"stagepass_verifier_new failed: {rc.value} ({self.name(rc.value)})"
        return h

    def verify(self, handle: int, token: str, now: int, requirements: dict | None = None, dpop: dict | None = None):
        """Returns (result, claims JSON text or None, detail). With `dpop` ({proof, method, url}) the token is
        presented with the DPoP scheme through stagepass_verify_dpop."""
        req = requirements or {}
        tok = token.encode("utf-8")
        roles = ",".join(req["roles"]).encode() if req.get("roles") else None
        stage = req["stage"].encode() if "stage" in req else None
        pipeline = req["pipeline"].encode() if "pipeline" in req else None
        cap = 1024
        while True:
            claims = ctypes.create_string_buffer(cap)
            detail = ctypes.create_string_buffer(512)
            n = ctypes.c_size_t(0)
            if dpop is None:
                rc = self.lib.stagepass_verify(handle, tok, len(tok), roles, stage, pipeline, now,
                                               claims, cap, ctypes.byref(n), detail, len(detail))
            else:
                rc = self.lib.stagepass_verify_dpop(handle, tok, len(tok), roles, stage, pipeline,
                                                    dpop["proof"].encode(), dpop["method"].encode(),
                                                    dpop["url"].encode(), now, claims, cap, ctypes.byref(n),
                                                    detail, len(detail))
            if rc == STAGEPASS_ERR_BUFFER_TOO_SMALL:
                assert n.value >= cap, "BUFFER_TOO_SMALL must report the length needed"
                cap = n.value + 1
                continue
            text = claims.raw[: n.value].decode("utf-8") if rc == STAGEPASS_OK else None
            if rc == STAGEPASS_OK:
                assert claims.raw[n.value] == 0, "claims must be NUL-terminated"
            return rc, text, detail.value.decode("utf-8", "replace")

    def free(self, handle: int) -> None:
        self.lib.stagepass_verifier_free(handle)


@pytest.fixture(autouse=True)
def _no_hang(hang_guard):
    """A deadlocked call fails the run with the case's name instead of blocking CI."""


@pytest.fixture(scope="module")
def lib() -> VerifyLib:
    return VerifyLib(str(verify_lib_path()))


def payload_of(token: str) -> dict:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def run_case(lib: VerifyLib, case: dict):
    h = lib.new(case["config"], case["jwks"])
    try:
        for i, sl in enumerate(case.get("status_lists", [])):
            rc = lib.lib.stagepass_verifier_set_status_list(h, sl.encode(), case["now"], case.get("status_max_age", 0))
            # Each install's result is part of the vector: ok, bad_status_list (unusable) or stale_status_list.
            assert lib.name(rc) == case["status_list_results"][i], f"{case['id']}: list {i}: {lib.name(rc)}"
        for earlier in case.get("dpop_earlier", []):
            rc, _, detail = lib.verify(h, case["token"], case["now"], case.get("requirements"), earlier)
            assert rc == STAGEPASS_OK, f"{case['id']}: earlier presentation refused: {lib.name(rc)} ({detail})"
        return lib.verify(h, case["token"], case["now"], case.get("requirements"), case.get("dpop"))
    finally:
        lib.free(h)


def test_result_names(lib):
    assert lib.name(0) == "ok"
    assert [lib.name(i) for i in range(1, 25)] == list(CODES)
    assert lib.name(25) == "unknown"
    assert [lib.name(i) for i in range(100, 105)] == [
        "invalid_argument", "buffer_too_small", "bad_jwks", "bad_status_list", "stale_status_list"]
    assert lib.name(-1) == "unknown"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vector(lib, case):
    rc, claims, detail = run_case(lib, case)
    got = lib.name(rc)
    assert got == case["expected"], f"{case['id']}: {case['description']}; got {got} ({detail})"
    if rc == STAGEPASS_OK:
        assert json.loads(claims) == payload_of(case["token"]), "the claims out must be the token's claims"


def test_cache_rechecks_time_and_requirements(lib):
    """A token presented again may hit the cache, but exp, requirements and status are checked per call."""
    case = next(c for c in CASES if c["id"] == "es256-valid")
    h = lib.new(case["config"], case["jwks"])
    try:
        now = case["now"]
        for _ in range(3):
            assert lib.name(lib.verify(h, case["token"], now)[0]) == "ok"
        assert lib.name(lib.verify(h, case["token"], now + 100_000)[0]) == "expired"
        assert lib.name(lib.verify(h, case["token"], now, {"roles": ["admin"]})[0]) == "role_mismatch"
        assert lib.name(lib.verify(h, case["token"], now, {"stage": "staging"})[0]) == "stage_mismatch"
        assert lib.name(lib.verify(h, case["token"], now, {"pipeline": "other/*"})[0]) == "pipeline_mismatch"
        assert lib.name(lib.verify(h, case["token"], now, {"roles": ["admin", "deployer"]})[0]) == "ok"
        assert lib.name(lib.verify(h, case["token"], now)[0]) == "ok"
    finally:
        lib.free(h)


def test_status_list_installed_later_applies_to_cached_token(lib):
    revoked = next(c for c in CASES if c["id"] == "status-revoked")
    h = lib.new(revoked["config"], revoked["jwks"])
    try:
        now = revoked["now"]
        assert lib.name(lib.verify(h, revoked["token"], now)[0]) == "ok"  # no list yet: status not checked
        rc = lib.lib.stagepass_verifier_set_status_list(h, revoked["status_lists"][0].encode(), now, 0)
        assert rc == STAGEPASS_OK
        assert lib.name(lib.verify(h, revoked["token"], now)[0]) == "revoked"
    finally:
        lib.free(h)


def test_set_jwks_replaces_keys(lib):
    case = next(c for c in CASES if c["id"] == "es256-valid")
    h = lib.new(case["config"], {"keys": []})
    try:
        assert lib.name(lib.verify(h, case["token"], case["now"])[0]) == "unknown_key"
        assert lib.lib.stagepass_verifier_set_jwks(h, json.dumps(case["jwks"]).encode()) == STAGEPASS_OK
        assert lib.name(lib.verify(h, case["token"], case["now"])[0]) == "ok"
    finally:
        lib.free(h)


def test_concurrent_calls_on_one_handle(lib):
    """One verifier, many threads (ctypes releases the GIL during the call)."""
    first = CASES[0]
    shared = [c for c in CASES if c["jwks"] == first["jwks"] and c["config"] == first["config"]
              and c["now"] == first["now"] and "status_lists" not in c
              and "dpop" not in c and "dpop_earlier" not in c]  # a DPoP proof is good once
    assert len(shared) > 50
    h = lib.new(first["config"], first["jwks"])
    failures: list[str] = []

    def worker(offset: int) -> None:
        for i in range(len(shared) * 4):
            c = shared[(i + offset) % len(shared)]
            got = lib.name(lib.verify(h, c["token"], c["now"], c.get("requirements"))[0])
            if got != c["expected"]:
                failures.append(f"{c['id']}: {got}")

    threads = [threading.Thread(target=worker, args=(k * 7,)) for k in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        lib.free(h)
    assert not failures, failures[:10]


def test_status_list_install_rules(lib):
    """A NULL document still turns status checking on; whitespace around a list is ignored; the same list twice is ok."""
    revoked = next(c for c in CASES if c["id"] == "status-revoked")
    now, sl = revoked["now"], revoked["status_lists"][0]
    h = lib.new(revoked["config"], revoked["jwks"])
    try:
        assert lib.name(lib.verify(h, revoked["token"], now)[0]) == "ok"  # no list offered yet: status not checked
        assert lib.lib.stagepass_verifier_set_status_list(h, None, now, 0) == 100  # invalid_argument
        assert lib.name(lib.verify(h, revoked["token"], now)[0]) == "status_unavailable"  # but checking is on
        assert lib.lib.stagepass_verifier_set_status_list(h, (sl + "\r\n").encode(), now, 0) == STAGEPASS_OK
        assert lib.lib.stagepass_verifier_set_status_list(h, sl.encode(), now, 0) == STAGEPASS_OK
        assert lib.name(lib.verify(h, revoked["token"], now)[0]) == "revoked"
    finally:
        lib.free(h)
