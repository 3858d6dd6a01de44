#!/usr/bin/env python3
"""Writes the seed corpus under Fuzz/corpus/<target>/ from the project's own vectors (run once; the output is
committed). Seeds are small and name their origin; libFuzzer grows its working corpus elsewhere (make fuzz)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Fuzz", "corpus")


def b64u_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def write(target: str, data: bytes) -> None:
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def main() -> int:
    with open(os.path.join(ROOT, "Specs", "vectors", "conformance.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    jwks_seen, lists_seen = set(), set()
    for i, c in enumerate(cases):
        tok = c["token"]
        if i % 3 == 0:
            write("token", tok.encode("utf-8"))
        parts = tok.split(".")
        if len(parts) == 3:
            for seg in parts[:2]:
                if i % 4 == 0:
                    write("base64url", seg.encode("ascii", "replace"))
                try:
                    if i % 4 == 0:
                        write("token", b64u_decode(seg))
                except ValueError:
                    pass
        for p in c.get("dpop_earlier", []) + ([c["dpop"]] if "dpop" in c else []):
            write("dpop", p["proof"].encode("utf-8"))
            write("dpop", p["url"].encode("utf-8"))
        j = json.dumps(c["jwks"], separators=(",", ":")).encode()
        if j not in jwks_seen:
            jwks_seen.add(j)
            write("jwks", j)
        for sl in c.get("status_lists", []):
            if sl in lists_seen:
                continue
            lists_seen.add(sl)
            write("statuslist", sl.encode())
            try:
                write("statuslist", b64u_decode(sl.split(".")[1]))
            except (ValueError, IndexError):
                pass
    for s in ("", "AA", "AAA", "AAAA", "_-_-", "eNrbuRgAAhcBXQ"):
        write("base64url", s.encode())
    write("statuslist", b64u_decode("eNrbuRgAAhcBXQ"))  # draft-ietf-oauth-status-list-20 §4.1 example
    with open(os.path.join(ROOT, "Tests", "StagepassBrokerTests", "WebAuthn", "vectors", "webauthn-vectors.json")) as f:
        wa = json.load(f)
    for c in wa["cases"]:
        ao = c.get("credential", {}).get("response", {}).get("attestationObject")
        if ao:
            write("cbor", b64u_decode(ao))
    # COSE_Key EC2 P-256 / ES256 (RFC 8152 §13.1.1) with the x, y of the vectors' main key; and an OKP Ed25519 key.
    x = b64u_decode("0ODLOlP4YfFNwmFT-Os7ayjhP0opwzUm7ya55sLLUNI")
    y = b64u_decode("o2iJktJ-T12VTJFJ-mmm6QH0-MhSunv5RMFTT7WBgrg")
    write("cbor", bytes([0xA5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20]) + x + bytes([0x22, 0x58, 0x20]) + y)
    write("cbor", bytes([0xA4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20]) + bytes(range(32)))
    # Policies: the shipped example and every ```yaml block of Specs/policy.md.
    with open(os.path.join(ROOT, "Sources", "StagepassBroker", "Policy", "PolicyLoader.swift"), encoding="utf-8") as f:
        src = f.read()
    m = re.search(r'exampleYAML = """\n(.*?)\n\s*"""', src, re.S)
    if m:
        write("policy", "\n".join(line[4:] for line in m.group(1).split("\n")).encode())
    with open(os.path.join(ROOT, "Specs", "policy.md"), encoding="utf-8") as f:
        for block in re.findall(r"```yaml\n(.*?)```", f.read(), re.S):
            write("policy", block.encode())
    for t in sorted(os.listdir(OUT)):
        print(f"{t}: {len(os.listdir(os.path.join(OUT, t)))} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
