#!/usr/bin/env python3
"""Records WebAuthn Level 2 registration and assertion data for the broker's tests.

An implementation independent of the Swift code under test: keys and signatures from pyca/cryptography (OpenSSL
underneath, but driven through a different API), and a minimal CBOR encoder written here (RFC 8949, shortest
arguments, definite lengths). Run once and check in the output:

    python3 make_vectors.py > webauthn-vectors.json

The keys are fixed (a P-256 scalar and an Ed25519 seed below) so that re-running changes only the ECDSA signatures
(ECDSA signing is randomised). Each case names what the broker must answer: "ok" or a WebAuthnError code.
"""
import base64
import hashlib
import json
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

RP_ID = "localhost"
ORIGIN = "http://localhost:8080"
USER_ID = "u_recordedVector01"
NOW = 1_700_000_000


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# --- CBOR (RFC 8949 §3, preferred serialization §4.2.1) ---
def head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(n)


def cbor(v) -> bytes:
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        e = v.encode()
        return head(3, len(e)) + e
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


# --- the challenge layout of WebAuthnService: random(16) || SHA-256(len:field...)[0:16] ---
def challenge(seed: int, purpose: str, binding: str = "") -> bytes:
    fields = ["stagepass-webauthn-challenge-v1", USER_ID, purpose, binding]
    joined = "".join(f"{len(f.encode())}:{f}" for f in fields)
    rnd = hashlib.sha256(f"vector-random-{seed}".encode()).digest()[:16]
    return rnd + hashlib.sha256(joined.encode()).digest()[:16]


class Key:
    def __init__(self, alg: str):
        self.alg = alg
        if alg == "ES256":
            self.priv = ec.derive_private_key(0x1F2E3D4C5B6A79880102030405060708090A0B0C0D0E0F101112131415161718, ec.SECP256R1())
            n = self.priv.public_key().public_numbers()
            self.cose = {1: 2, 3: -7, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")}
            self.cred_id = hashlib.sha256(b"es256 credential").digest()
        else:
            self.priv = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ed25519 seed").digest())
            raw = self.priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.cose = {1: 1, 3: -8, -1: 6, -2: raw}
            self.cred_id = hashlib.sha256(b"ed25519 credential").digest()[:20]
        self.cose_alg = self.cose[3]

    def sign(self, data: bytes) -> bytes:
        if self.alg == "ES256":
            return self.priv.sign(data, ec.ECDSA(hashes.SHA256()))  # DER (WebAuthn Level 2 §6.5.5)
        return self.priv.sign(data)


def auth_data(key, count, flags=0x05, rp_id=RP_ID, attested=False):
    if attested:
        flags |= 0x40
    out = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", count)
    if attested:
        out += bytes(16) + struct.pack(">H", len(key.cred_id)) + key.cred_id + cbor(key.cose)
    return out


def client_data(typ, chal, origin=ORIGIN):
    return json.dumps({"type": typ, "challenge": b64(chal), "origin": origin, "crossOrigin": False},
                      separators=(",", ":")).encode()


def registration(key, seed, fmt, origin=ORIGIN, mangle=None):
    chal = challenge(seed, "registration")
    cdj = client_data("webauthn.create", chal, origin)
    ad = auth_data(key, 0, attested=True)
    stmt = {} if fmt == "none" else {"alg": key.cose_alg, "sig": key.sign(ad + hashlib.sha256(cdj).digest())}
    obj = cbor({"fmt": fmt, "attStmt": stmt, "authData": ad})
    if mangle:
        obj = mangle(obj)
    cred = {"id": b64(key.cred_id), "rawId": b64(key.cred_id), "type": "public-key",
            "response": {"clientDataJSON": b64(cdj), "attestationObject": b64(obj)}}
    return {"ceremony": "registration", "purpose": "registration", "challenge": b64(chal), "credential": cred}


def assertion(key, seed, count, purpose="signin", binding="", origin=ORIGIN, rp_id=RP_ID, flags=0x05,
              corrupt=False):
    chal = challenge(seed, purpose, binding)
    cdj = client_data("webauthn.get", chal, origin)
    ad = auth_data(key, count, flags=flags, rp_id=rp_id)
    sig = bytearray(key.sign(ad + hashlib.sha256(cdj).digest()))
    if corrupt:
        sig[len(sig) // 2] ^= 1
    cred = {"id": b64(key.cred_id), "rawId": b64(key.cred_id), "type": "public-key",
            "response": {"clientDataJSON": b64(cdj), "authenticatorData": b64(ad), "signature": b64(bytes(sig)),
                         "userHandle": b64(USER_ID.encode())}}
    case = {"ceremony": "assertion", "purpose": purpose, "challenge": b64(chal), "credential": cred}
    if binding:
        case["binding"] = binding
    return case


def main():
    es, ed = Key("ES256"), Key("EdDSA")
    cases = []

    def add(name, case, expect, **extra):
        case.update({"name": name, "expect": expect}, **extra)
        cases.append(case)

    # Refused registrations first (each uses its own challenge), then the good ones.
    add("registration with a wrong origin", registration(es, 1, "packed", origin="https://evil.example"),
        "origin_mismatch")
    add("registration with an indefinite-length attestation object",
        registration(es, 2, "none", mangle=lambda o: b"\xbf" + o[1:] + b"\xff"), "malformed_cbor")
    add("registration with a truncated attestation object",
        registration(es, 3, "none", mangle=lambda o: o[:-5]), "malformed_cbor")
    add("registration with a duplicate map key",
        registration(es, 4, "none", mangle=lambda o: head(5, 4) + cbor("fmt") + cbor("none") + o[1:]),
        "malformed_cbor")
    add("ES256 packed self-attestation", registration(es, 5, "packed"), "ok", alg="ES256", attestation="self")
    add("EdDSA none attestation", registration(ed, 6, "none"), "ok", alg="EdDSA", attestation="none")

    add("ES256 assertion", assertion(es, 10, 5), "ok", sign_count=5, user_verified=True)
    add("EdDSA assertion without UV", assertion(ed, 11, 1, flags=0x01), "ok", sign_count=1, user_verified=False)
    add("ES256 assertion with a bad signature", assertion(es, 12, 6, corrupt=True), "invalid_signature")
    add("EdDSA assertion with a bad signature", assertion(ed, 13, 2, corrupt=True), "invalid_signature")
    add("assertion from a wrong origin", assertion(es, 14, 7, origin="https://localhost.evil.example"),
        "origin_mismatch")
    add("assertion with a wrong RP ID hash", assertion(es, 15, 8, rp_id="evil.example"), "rp_id_mismatch")
    add("assertion without user presence", assertion(es, 16, 9, flags=0x04), "user_not_present")
    add("ES256 assertion whose counter goes backwards", assertion(es, 17, 3), "possible_clone")
    add("EdDSA assertion whose counter stays", assertion(ed, 18, 1), "possible_clone")
    add("assertion for approval A presented for approval B",
        assertion(es, 19, 20, purpose="approval", binding="A" * 64), "challenge_mismatch", finish_binding="B" * 64)
    add("assertion for approval A presented for approval A",
        assertion(es, 20, 21, purpose="approval", binding="A" * 64), "ok", sign_count=21, user_verified=True)

    print(json.dumps({"rp_id": RP_ID, "origin": ORIGIN, "user_id": USER_ID, "time": NOW, "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
