#!/usr/bin/env python3
"""Generates Specs/vectors/conformance.json, the Stagepass verifier conformance vectors.

Every port of the verifier (Swift library, C ABI, CLI, any future port) must give the
`expected` verdict for every case. The rules are in Specs/token-profile.md; this script
only builds tokens that exercise them.

Run from anywhere:  python3 Specs/vectors/generate.py            (rewrites conformance.json)
                    python3 Specs/vectors/generate.py --check    (exit 1 if the file is stale)

Needs Python 3.10+ and `cryptography` (>= 44, for RFC 6979 deterministic ECDSA); `joserfc`
is used to cross-check the RFC 7638 thumbprints. The keys below are fixed TEST keys,
published on purpose: never use them for anything else. ES256 signatures use RFC 6979
deterministic nonces and PS256 signatures use a salt derived from the message, so re-running
the script reproduces conformance.json byte for byte.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import zlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "conformance.json")

# ---------------------------------------------------------------------------------------------
# Fixed test keys (PKCS#8, unencrypted). Generated once with `cryptography`; do not regenerate.
# ---------------------------------------------------------------------------------------------

EC_MAIN_PEM = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgW5M/Ek+OqBQ7EQh5
tdEOTHHACkwEcOilbjnxe2kt/dChRANCAATQ4Ms6U/hh8U3CYVP46ztrKOE/SinD
NSbvJrnmwstQ0qNoiZLSfk9dlUyRSfpppukB9PjIUrp7+UTBU0+1gYK4
-----END PRIVATE KEY-----
"""

EC_OTHER_PEM = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTp5FukoMEcgKU6r6
AWgZWoYR/W3aq8CDzprcR6c/gZ6hRANCAATGwCQPKmV37p9q5fBXt/bONgEptNNQ
1wCwJSmI4frZ3rjHxoS2dMb1QJn/JZL8HvhGWwzE9wgpxtD+gQXd79IT
-----END PRIVATE KEY-----
"""

ED_MAIN_PEM = """\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJgVBpVq4mE3QvqoVWtzmqqlGq99DGhJ5k5SfPd9JnbB
-----END PRIVATE KEY-----
"""

RSA_RS_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDV2D6C46d0ledq
ki9KVqre7UPI8qGf9gFv8BuCe8Oo4xpKiTp4IIr8/VAG9K/gFzulojyCzXTa+7Rr
QrkKBftTSgmhwG35WTYqwXE5VSQODTGuITRPqPbStWkCHEmLCN1KTop88gHoeg0T
ALJtV9LfQTKBjaTHcALRbsf1BCWithkh5M2MPNA+q6dXA+dX6ISlh+iLOpuO4/L2
2ST9KbkHlc+h3vM7vcp8L19mNSxAvWokeFccioRb+k4/7E0r5Xy8zf8B1VhM6nk5
Td0vWAVUfF1QNgOhx1QbkIwH1AKqQVcWewIQaHNwTHwame4grh4nivx6Xwo8S5Ta
o/NEMmKJAgMBAAECgf9slamsbeikRFkCCH7/AGpLq31KVI7zC7ezPkte5/l0RnHj
taW2wRGgu61IPgN7uA5Rkuy/yNoXuw6RcLUl7CGXTG5qNhA2UTVwEPdKI2tKZLcu
FU8+2ZdzKQmrQGusPCi2b3m1b+uD/X3sPvzOtlP8T4P49nWi6Gj5iF3TBhyzHF3w
aLwsqigeYeL2Pfh0v1BMcS5P9ZAlOjshHvzVSvs0JF8e9+JUzESkwcgP1GYka6bw
ncM1BuOIYyjl5Rmakx9pUk3H01qpq3q24xoqpEZnQ5BdDdMqHiMO9Lw7sBRHOWik
GvER1/GXHOSLAu0QhAWaCqmurcOSEZ5w2OthtdUCgYEA/xLQ3bWWxv3og14i5OqE
ef0/23KwpeVleP/pNohXTgFQAUralA4i9hGB2E304f+6DLTGgTHAxXyc/FhfsUXk
ylLn/Y1KDZprnwz6w1SGdccc8bDYTEnTp9Zlck3F5J2KatAHwnGKCr9YOxY5+XWr
9fcJ2eOuP7/hklOU5YEnCTUCgYEA1p8XT2z6OZRRu8rCPIe08+dKE6Vz7DZ2EHEC
yoKws3PebPVTS3NZU+eSNysvjFynVl+ua10v3iM5VWiDexK3LacS/PNDy9b+EnLA
86oOrZdlnX6r2XC+z90ubdR5qGZr2KwZMbaC1uILdYRxxctAj7r6//g/Tz5wVr7/
alCtcoUCgYEA0jezo8WQqheAlSP0Ji2RWOh6xGVVaKQSaRKgJa1gJo22XhpO4k50
SdBL7vTwqYGU1/v0zW0vrpLw3pgG5Zbw5D5HrBPRwDxQDhkoYes7lb2wARD6coU1
xtFPclDek3ezKCyi+IGSfyELmkbLKOjt/BzJJaYbaba+NVZlFHDItzECgYBxSEfl
hIAPJFp/5OXhTUAV/V78P7iQVa67vuraOWFLVz1wBY2RpbDguLpUpFbUn5Mz5A0M
XoOFnNIGYsQDkj1du3IqUbzXOwOgeTGfa4OT3PWly9apTvlofjajgiM039rM4wnp
U4x8H5Qs01u6Ky5Ir0kNEttX2H0zTF1EoJDsgQKBgE5s3GttL5uo3C/PLDkHgwHA
ViBUGzYaDT18J0DzzBxW1qfghwxBqG2uoudv5If+jC2Cu1eiliSrne9T8y8R1xo4
EpvCPqNdY1aPlBRT4olFbbIbDDnRjzZ+8CRPXSE8X44NdkSvdrPG6fXrrstHsotd
x4LJQ60K01SE1pToQud5
-----END PRIVATE KEY-----
"""

RSA_PS_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDPM4ZaasQIoRNR
Dt3Cv44dr1eN2EY+UAcJqyuHD7ocTTDT2AbFnG6InX8GfSXsBWLhcDWKtKKx8uT5
o6s8yTZy5ZTx7HINtURcz68CFY7jWqCdF53dK34smTkDuA8VF4iydmCxMEe5iqjS
nSw4eajBcE+azORoruHoyR7pUPkWZHxUXrs9fkKdq51MnHuNBeo6C5nT8Nsv31kH
p5Hqa2Mf2yagcyBVKCkmlH+/JW844jWJBn/uQxLk4Tss6AUQkyKovI59x45GxJsD
X0Z0Eqm0zHk3sn2NW7LwWTCNDy8RUFalZFTFyIkqqthk0enf9HMzxLfl3Bm0xUSm
QtawPK0dAgMBAAECggEAMyB8ZDaokRWH4e44Z6vjKi2APfKyIIGYPvlC6BSIIKAm
bnuFbkDzoFe2hpgeYZ8Rn12UBJoedCjiebv6Tqk6u36tckWc/gduqzUe8rV1mOGd
tK2laTPociJLyIBkDlkMhLbDlK08YYrWrgOU7AmPC85GAkVRDgirG0j3TOyLTgwD
XT5QWw2IrMs6NjjR7fxGrQqmtZ4rK37wMg9Y0TKBvYOK1ZAd70U9od1aRTqGy7PK
WvAC/h+HfDmS8gUrcitHebwwpdpIeFmRaXo0fkQ3X1Diy31YKtWoNslNmBbvywu/
gsm19keSlrmBeT27aPUrhi/1rcPpnchI53YH4x02QQKBgQDnh318VOx1G89c9A0V
GkzR7u4OWoX0eXikj9xjc5xUm9owvWIV+D222I8+8LoE2pNeWC8Ls3juwfFERqqW
yZfKW8FwTjHR4fXZcnajwIBQ4lEgVZqtbsWMW8fpoSa5bUTvBWNMTVRi1ZtPD5GL
z0fdVyva3nZzHDh4RLHwiGj1XQKBgQDlGcoy5i5N1ygvv5bDUTflKN1hK7cW06+f
F765i/kdk/36lUGTt/dqz7BcD7I4pRnTu26xQh9uOTO9hR8gravOUTyaVyF4nPVC
g2AuNnOU/2OYfAPtYynRQy2nOnuJBYpWWW6MhnibrfWtlMKplvm2UhFtWDwBombx
zPk0f61awQKBgH2vvr5U97wnKa2jSsrO6S75zr96AsgRfR2Qfyp54z7HEG5vEKUu
iooNC842LjVeVqvboUZv2lF6dTgESKzsqPsQTnVh7Yera6PskF0ark26XiH4dqx5
usIUPPUmJ3h3yfkbaqlMPWgd317O68sC7ldI8CSzqYeZpUocuKAD3T59AoGBAMU0
nu2TX9ZXV1tKot774Y5bz7weIhr/GtRqXx1elJBWXLA/nFQobkw9/MQyKqpBy+qL
E6x3i5CYoqYHmhTKCfKt0OnWCJTHHwMjDT6aVoGyGKwgTE0iJ9Pe7MRfPgljgIH1
t4g1FEqFws2pGKtcrxS2rhOeeQC7J7wKQZVkNffBAoGBAOURPWoNmb9dNwg9uFrK
zOIoMGBJtK0mMXsrQwmj7/XU++9/KhITxdCFJD4eWJAvqvLIZ+NmABhVFVbiENCL
11iGbBrTE4MfMOUnjxGWJfKe+ZvWeTDci17asQL9l5LrLaVS4R9bn53VfykUbaIl
9KBhCA/iU6BpNzUtyIz2Y/xz
-----END PRIVATE KEY-----
"""

RSA_1024_PEM = """\
-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAK6BI6psRPKPd4xr
1T3KSYVGA3wFbe45r3z9WlKJQEHkl9WZevb43u7Y0vEJWGz7P6aTwizF51o434e3
Z+t71G1C731m4MiHl9vZXNp6CAVYxKDhwvqIv9PkfuweMukeOQkA1jtgr4oJh021
R+9ni1eCxI0olHy7gbkuAUYNTcW5AgMBAAECgYBZQt9uhlFCTdaV8nayU64FyQlx
QAm6SLGWWrX/8Ar5aaes8AQxHp5SSICmIOSlYmNtnrk9U8ICqYLVliBHGSFQJUEk
j/487qpAwAa4bIin/o2HZFtLhz897PmzUklAl9N7tXbBMj9rqatuqhshTcOvMPxf
DhnyaD5KMq+5lOYxLQJBAOedgxb171TcOtuNP3VUFW8BZUiKyrFHUZK4bvBmyEcp
MKgUfO7NaSDggcgkFX/rYJx6yOqgNHIKVH8UCjw8xNMCQQDA4GC9ev8ZXtte5/R+
bcim7G6yDlEKj52t9X9PQaAIqSMX+PGIiUcqzmWtLYnxe9YWfFnK5POyCyg5lYae
mSPDAkEAwZhj6T46BQlr3PXsU+qrW7Sj7wWrtJBzO5sTh7exseFY/TTa1FQ3ijZ9
5Edc/SZGA6WR6KNuEuBVjj6263Cz5wJAbyYeubLSpUUzt/qFvAH6Gq+vju6PJz3i
CSirZ/oShksqDRuJ3Tv3BiURFP5kOwQ5OJYKjNDp2tVxJdYUUPtBTwJBAJ7GNI9c
vY0qHLqYXHOx2Pva2Oi/gCbobFSwqFGmChpoI/oXOZxf2lYjnfPbnax4/Xm3tQeI
BHQcTBFK/XVeR8w=
-----END PRIVATE KEY-----
"""

ED_DPOP_PEM = """\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDWS3/cALBUmvc2fUig6NgrgWWqI7gone8w95M3OMnD4
-----END PRIVATE KEY-----
"""

# ---------------------------------------------------------------------------------------------
# Profile constants (Specs/token-profile.md)
# ---------------------------------------------------------------------------------------------

NOW = 1_900_000_000  # 2030-03-17T17:46:40Z: the verifier's clock in every case unless a case says otherwise
ISS = "https://stagepass.test"
AUD = "deploy-api"
SL1 = "https://stagepass.test/statuslists/1"
SL2 = "https://stagepass.test/statuslists/2"
DEFAULT_CONFIG = {"issuer": ISS, "audiences": [AUD], "leeway": 30, "max_lifetime": 3600}
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # order of P-256 (SEC 2 §2.4.2)
ED25519_L = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point (RFC 8032 §5.1)


def b64u(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_uint(n: int, length: int | None = None) -> str:
    if length is None:
        length = max(1, (n.bit_length() + 7) // 8)
    return b64u(n.to_bytes(length, "big"))


def jdump(obj) -> bytes:
    """Compact JSON, member order as written (the exact bytes that get signed)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Keys, JWKs (RFC 7517), thumbprints (RFC 7638), signatures (RFC 7518 §3.3-3.5, RFC 8037 §3.1)
# ---------------------------------------------------------------------------------------------


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def pss_sign_deterministic(key: rsa.RSAPrivateKey, message: bytes, salt_length: int = 32) -> bytes:
    """RSASSA-PSS (RFC 8017 §8.1.1, EMSA-PSS §9.1.1), SHA-256, MGF1-SHA-256, 32-byte salt (RFC 7518 §3.5).

    The salt is derived from the message instead of drawn at random, so the vectors are reproducible.
    The result is an ordinary PSS signature; `cryptography` checks it below.
    """
    priv = key.private_numbers()
    n, d = priv.public_numbers.n, priv.d
    mod_bits = n.bit_length()
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    h_len, s_len = 32, salt_length
    m_hash = hashlib.sha256(message).digest()
    salt = (hashlib.sha256(b"stagepass conformance vector salt" + message).digest() * 4)[:s_len]
    h = hashlib.sha256(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - s_len - h_len - 2) + b"\x01" + salt
    masked = bytes(a ^ b for a, b in zip(db, _mgf1(h, em_len - h_len - 1)))
    masked = bytes([masked[0] & (0xFF >> (8 * em_len - em_bits))]) + masked[1:]
    em = masked + h + b"\xbc"
    sig = pow(int.from_bytes(em, "big"), d, n).to_bytes((mod_bits + 7) // 8, "big")
    key.public_key().verify(sig, message, padding.PSS(padding.MGF1(hashes.SHA256()), s_len), hashes.SHA256())
    return sig


class Key:
    def __init__(self, name: str, pem: str, alg: str):
        self.name = name
        self.alg = alg
        self.private = serialization.load_pem_private_key(pem.encode(), password=None)
        self.public = self.private.public_key()

    def members(self) -> dict:
        """The public key members of the JWK (RFC 7518 §6.2.1, §6.3.1; RFC 8037 §2)."""
        pub = self.public
        if isinstance(pub, ec.EllipticCurvePublicKey):
            nums = pub.public_numbers()
            return {"kty": "EC", "crv": "P-256", "x": b64u_uint(nums.x, 32), "y": b64u_uint(nums.y, 32)}
        if isinstance(pub, ed25519.Ed25519PublicKey):
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
        nums = pub.public_numbers()
        return {"kty": "RSA", "n": b64u_uint(nums.n), "e": b64u_uint(nums.e)}

    @property
    def kid(self) -> str:
        """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
        m = self.members()
        required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}[m["kty"]]
        canonical = json.dumps({k: m[k] for k in required}, separators=(",", ":"), sort_keys=True)
        return b64u(hashlib.sha256(canonical.encode()).digest())

    def jwk(self, use: str | None = "sig", alg: str | None = "", kid: str | None = "") -> dict:
        out = {"kty": None}
        out.update(self.members())
        out["kid"] = self.kid if kid == "" else kid
        if kid is None:
            del out["kid"]
        a = self.alg if alg == "" else alg
        if a is not None:
            out["alg"] = a
        if use is not None:
            out["use"] = use
        return out

    def spki_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes, alg: str | None = None) -> bytes:
        alg = alg or self.alg
        k = self.private
        if alg == "ES256":
            der = k.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))  # RFC 6979
            r, s = decode_dss_signature(der)
            if s > P256_N // 2:  # low-S (token-profile.md §4.1): (r, n - s) is the same signature's other spelling
                s = P256_N - s
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 §3.4: R || S, 32 octets each
        if alg == "EdDSA":
            return k.sign(data)
        if alg == "RS256":
            return k.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if alg == "PS256":
            return pss_sign_deterministic(k, data)
        raise ValueError(alg)


K_ES = Key("es256", EC_MAIN_PEM, "ES256")
K_ES_OTHER = Key("es256-other", EC_OTHER_PEM, "ES256")  # never published in any JWKS below except where noted
K_ED = Key("eddsa", ED_MAIN_PEM, "EdDSA")
K_RS = Key("rs256", RSA_RS_PEM, "RS256")
K_PS = Key("ps256", RSA_PS_PEM, "PS256")
K_RS1024 = Key("rs256-1024", RSA_1024_PEM, "RS256")  # below the 2048-bit floor
K_DPOP = K_ES_OTHER  # the client's DPoP proof key (RFC 9449): never an issuer key
K_DPOP_ED = Key("eddsa-dpop", ED_DPOP_PEM, "EdDSA")  # an Ed25519 DPoP proof key

JWKS_MAIN = {"keys": [K_ES.jwk(), K_ED.jwk(), K_RS.jwk(), K_PS.jwk()]}


def jwks(*jwk_list: dict) -> dict:
    return {"keys": list(jwk_list)}


# ---------------------------------------------------------------------------------------------
# Token construction
# ---------------------------------------------------------------------------------------------

DELETE = object()


def header_for(key: Key, **changes) -> dict:
    h = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    for k, v in changes.items():
        if v is DELETE:
            h.pop(k, None)
        else:
            h[k] = v
    return h


def claims(jti_value: str, /, **changes) -> dict:
    """A complete Stagepass access token claim set for an approved pipeline run (Specs/token-profile.md)."""
    c = {
        "iss": ISS,
        "sub": "alice@example.com",
        "aud": AUD,
        "exp": NOW + 600,
        "nbf": NOW - 60,
        "iat": NOW - 60,
        "jti": jti_value,
        "client_id": "acme/web-deploy",
        "scope": "deploy",
        "role": "deployer",
        "stage": "production",
        "amr": ["pwd", "hwk"],
        "auth_time": NOW - 300,
        "sid": "ses_2F9kQ7mXw4",
        "act": {"sub": "acme/web-deploy", "run_id": "run-4711"},
        "status": {"status_list": {"idx": 7, "uri": SL1}},
        "run_id": "run-4711",
        "commit": "5d41402abc4b2a76b9719d911017c592",
        "approvals": ["apr_7Hc2", "apr_9Lm4"],
    }
    for k, v in changes.items():
        if v is DELETE:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def compact(header, payload, key: Key | None = K_ES, *, sign_alg: str | None = None, signature: bytes | None = None) -> str:
    """header/payload: dict (serialized compactly) or bytes (used as is)."""
    hb = header if isinstance(header, bytes) else jdump(header)
    pb = payload if isinstance(payload, bytes) else jdump(payload)
    signing_input = (b64u(hb) + "." + b64u(pb)).encode("ascii")
    if signature is None:
        signature = key.sign(signing_input, sign_alg) if key is not None else b""
    return signing_input.decode("ascii") + "." + b64u(signature)


def token(jti_value: str, key: Key = K_ES, /, *, header: dict | None = None, **claim_changes) -> str:
    return compact(header if header is not None else header_for(key), claims(jti_value, **claim_changes), key)


def raw_payload(jti: str, placeholder_value: bytes, **claim_changes) -> bytes:
    """Claims serialized with the member `x` replaced by raw JSON bytes (for inputs json.dumps cannot write)."""
    body = jdump(claims(jti, x="@@RAW@@", **claim_changes))
    assert body.count(b'"@@RAW@@"') == 1
    return body.replace(b'"@@RAW@@"', placeholder_value)


def sized_token(jti: str, length: int) -> str:
    """An ES256 token of exactly `length` bytes, padded with a claim `x` (and, if needed, a header member)."""
    for hpad in range(4):
        hdr = header_for(K_ES, **({"x": "p" * hpad} if hpad else {}))
        base = len(token(jti, header=hdr, x=""))
        n = max(0, (length - base) * 3 // 4 - 4)
        while True:
            t = token(jti, header=hdr, x="a" * n)
            if len(t) >= length:
                break
            n += 1
        if len(t) == length:
            return t
    raise AssertionError(f"cannot build a token of {length} bytes")


def split(tok: str) -> tuple[str, str, str]:
    h, p, s = tok.split(".")
    return h, p, s


def with_sig(tok: str, sig: bytes) -> str:
    h, p, _ = split(tok)
    return f"{h}.{p}.{b64u(sig)}"


def sig_of(tok: str) -> bytes:
    s = split(tok)[2]
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def flip_bit(data: bytes, index: int = 10, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[index] ^= 1 << bit
    return bytes(b)


def nested(levels: int, kind: str = "object"):
    """A value whose own nesting depth is `levels` (an empty container counts as 1)."""
    v = {} if kind == "object" else []
    for _ in range(levels - 1):
        v = {"d": v} if kind == "object" else [v]
    return v


# ---------------------------------------------------------------------------------------------
# Token Status List (draft-ietf-oauth-status-list-20 §4.1, §4.2, §5.1)
# ---------------------------------------------------------------------------------------------

LIST_ENTRIES = 128  # 16 bytes at bits = 1
REVOKED_1 = {0, 5, 9, 42, 100, 127}
REVOKED_2 = {3}


def status_bytes(revoked: set[int], entries: int = LIST_ENTRIES) -> bytes:
    b = bytearray(entries // 8)
    for i in revoked:
        b[i // 8] |= 1 << (i % 8)  # LSB first: index i is bit (i % 8) of byte i / 8
    return bytes(b)


def status_bytes_bits(values: dict[int, int], bits: int, size: int = 16) -> bytes:
    """draft §4.1: entry i occupies `bits` bits starting at bit i*bits, least significant bit first."""
    b = bytearray(size)
    for i, v in values.items():
        b[(i * bits) // 8] |= v << ((i * bits) % 8)
    return bytes(b)


def status_list(
    uri: str = SL1,
    revoked: set[int] = REVOKED_1,
    *,
    key: Key = K_ES,
    iat: int | None = NOW - 60,
    exp: int | None = NOW + 3600,
    ttl: int | None = 300,
    bits: int = 1,
    lst: str | None = None,
    typ: str = "statuslist+jwt",
    iss: str | None = ISS,
    header: dict | None = None,
    tamper: bool = False,
    raw: bytes | None = None,
) -> str:
    h = header if header is not None else {"alg": key.alg, "kid": key.kid, "typ": typ}
    c: dict = {"sub": uri}
    if iat is not None:
        c["iat"] = iat
    if iss is not None:
        c["iss"] = iss
    if exp is not None:
        c["exp"] = exp
    if ttl is not None:
        c["ttl"] = ttl
    if lst is None:
        lst = b64u(zlib.compress(raw if raw is not None else status_bytes(revoked), 9))  # DEFLATE in the ZLIB format (RFC 1950/1951)
    c["status_list"] = {"bits": bits, "lst": lst}
    tok = compact(h, c, key)
    if tamper:
        tok = with_sig(tok, flip_bit(sig_of(tok)))
    return tok


def status_list_raw_claims(**changes) -> str:
    """A list signed by the main key whose claims carry `changes` as given (e.g. a non-integer exp)."""
    c = {"sub": SL1, "iat": NOW - 60, "iss": ISS, "exp": NOW + 3600, "ttl": 300,
         "status_list": {"bits": 1, "lst": b64u(zlib.compress(status_bytes(REVOKED_1), 9))}}
    c.update(changes)
    return compact({"alg": K_ES.alg, "kid": K_ES.kid, "typ": "statuslist+jwt"}, c, K_ES)


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

CASES: list[dict] = []


def case(cid: str, description: str, tok: str, expected: str, *, jwks: dict | None = None, config: dict | None = None,
         requirements: dict | None = None, status_lists: list[str] | None = None, status_max_age: int | None = None,
         status_list_results: list[str] | None = None, now: int = NOW, dpop: dict | None = None,
         dpop_earlier: list[dict] | None = None) -> None:
    assert all(c["id"] != cid for c in CASES), cid
    c = {
        "id": cid,
        "description": description,
        "token": tok,
        "jwks": jwks if jwks is not None else JWKS_MAIN,
        "config": config if config is not None else DEFAULT_CONFIG,
        "now": now,
    }
    if requirements is not None:
        c["requirements"] = requirements
    if status_lists is not None:
        c["status_lists"] = status_lists
    if status_max_age is not None:
        c["status_max_age"] = status_max_age
    if status_lists is not None and status_list_results is None:
        status_list_results = REFUSED_LISTS.get(cid, ["ok"] * len(status_lists))
    if status_list_results is not None:
        assert status_lists is not None and len(status_list_results) == len(status_lists), cid
        assert set(status_list_results) <= {"ok", "bad_status_list", "stale_status_list"}, cid
        c["status_list_results"] = status_list_results
    if dpop_earlier is not None:
        c["dpop_earlier"] = dpop_earlier
    if dpop is not None:
        c["dpop"] = dpop
    c["expected"] = expected
    CASES.append(c)


# Existing single-list cases whose list is unusable: installing it returns bad_status_list (token-profile.md §6.4).
REFUSED_LISTS = {cid: ["bad_status_list"] for cid in (
    "status-list-expired", "status-list-expired-at-leeway-boundary", "status-list-without-iat",
    "status-list-unknown-key", "status-list-bad-signature", "status-list-wrong-typ", "status-list-bits-3",
    "status-list-bad-zlib")}

REQ_ALL = {"roles": ["deployer"], "stage": "production", "pipeline": "acme/*"}


def build_cases() -> None:
    # --- accepted tokens --------------------------------------------------------------------
    case("es256-valid", "ES256 token with the full claim set", token("es256-valid", K_ES), "ok")
    case("eddsa-valid", "EdDSA (Ed25519, RFC 8037) token", token("eddsa-valid", K_ED), "ok")
    case("rs256-valid", "RS256 (RSASSA-PKCS1-v1_5, RSA-2048) token", token("rs256-valid", K_RS), "ok")
    case("ps256-valid", "PS256 (RSASSA-PSS, SHA-256, 32-byte salt) token", token("ps256-valid", K_PS), "ok")
    case("aud-array-valid", "aud as an array whose second member is accepted",
         token("aud-array-valid", aud=["billing-api", AUD]), "ok")
    case("aud-array-single", "aud as a one-element array", token("aud-array-single", aud=[AUD]), "ok")
    case("aud-second-configured", "token aud matches the second configured audience",
         token("aud-second-configured", aud="release-api"),
         "ok", config={**DEFAULT_CONFIG, "audiences": [AUD, "release-api"]})
    case("minimal-claims", "only the required claims (exp, iat, iss, aud, sub, jti) and no requirements",
         compact(header_for(K_ES), {"iss": ISS, "sub": "alice@example.com", "aud": AUD, "exp": NOW + 300,
                                    "iat": NOW - 10, "jti": "minimal-claims"}), "ok")
    case("extra-header-member", "unknown header members other than the forbidden ones are ignored",
         token("extra-header-member", header=header_for(K_ES, cty="ignored", x_note="hello")), "ok")
    case("jwk-without-use", "a JWKS key without `use` is usable (RFC 7517 §4.2: use is optional)",
         token("jwk-without-use"), "ok", jwks=jwks(K_ES.jwk(use=None)))
    case("jwk-ec-without-alg", "an EC P-256 JWKS key without alg is an ES256 key", token("jwk-ec-without-alg"), "ok",
         jwks=jwks(K_ES.jwk(alg=None)))
    case("jwk-okp-without-alg", "an OKP Ed25519 JWKS key without alg is an EdDSA key",
         token("jwk-okp-without-alg", K_ED), "ok", jwks=jwks(K_ED.jwk(alg=None)))
    case("duplicate-kid-one-unusable", "the same kid on an enc key and a sig key: the sig key is used",
         token("duplicate-kid-one-unusable"), "ok", jwks=jwks({**K_ES_OTHER.jwk(use="enc"), "kid": K_ES.kid}, K_ES.jwk()))
    case("kid-among-many", "the kid selects the only matching key among several (EdDSA key listed last)",
         token("kid-among-many", K_ED), "ok", jwks=jwks(K_RS.jwk(), K_PS.jwk(), K_ES.jwk(), K_ED.jwk()))
    case("exp-within-leeway", "exp 20 s in the past, leeway 30 s", token("exp-within-leeway", exp=NOW - 20, iat=NOW - 600,
                                                                         nbf=NOW - 600), "ok")
    case("exp-one-second-in-leeway", "now == exp + leeway - 1 is accepted (expired once now >= exp + leeway)",
         token("exp-one-second-in-leeway", exp=NOW - 29, iat=NOW - 600, nbf=NOW - 600), "ok")
    case("nbf-within-leeway", "nbf 20 s in the future, leeway 30 s", token("nbf-within-leeway", nbf=NOW + 20), "ok")
    case("nbf-at-leeway-boundary", "now + leeway == nbf is accepted (rejected only when now + leeway < nbf)",
         token("nbf-at-leeway-boundary", nbf=NOW + 30), "ok")
    case("iat-within-leeway", "iat 20 s in the future, leeway 30 s",
         token("iat-within-leeway", iat=NOW + 20, nbf=DELETE), "ok")
    case("leeway-zero-last-second", "leeway 0: one second before exp is accepted",
         token("leeway-zero-last-second", exp=NOW + 1, iat=NOW - 300, nbf=NOW - 300), "ok",
         config={**DEFAULT_CONFIG, "leeway": 0})
    case("lifetime-at-max", "exp - iat == max_lifetime (3600) is accepted",
         token("lifetime-at-max", iat=NOW - 100, nbf=NOW - 100, exp=NOW + 3500), "ok")
    case("lifetime-custom-max", "a verifier configured with max_lifetime 7200 accepts a 2 h token",
         token("lifetime-custom-max", iat=NOW - 100, nbf=NOW - 100, exp=NOW + 7100), "ok",
         config={**DEFAULT_CONFIG, "max_lifetime": 7200})
    case("requirements-match", "role, stage and pipeline glob all match", token("requirements-match"), "ok",
         requirements=REQ_ALL)
    case("role-one-of-several", "the token's role is one of the accepted roles", token("role-one-of-several"), "ok",
         requirements={"roles": ["admin", "deployer"]})
    case("pipeline-exact", "a pattern without '*' must equal client_id", token("pipeline-exact"), "ok",
         requirements={"pipeline": "acme/web-deploy"})
    case("pipeline-glob-middle", "'*' in the middle of the pattern", token("pipeline-glob-middle"), "ok",
         requirements={"pipeline": "acme/*-deploy"})
    case("pipeline-glob-any", "'*' alone matches any client_id", token("pipeline-glob-any"), "ok",
         requirements={"pipeline": "*"})
    case("pipeline-glob-empty-run", "'*' also matches an empty run of characters",
         token("pipeline-glob-empty-run"), "ok", requirements={"pipeline": "acme/web-deploy*"})
    case("status-claim-without-list", "no status list configured: the status claim is not checked",
         token("status-claim-without-list", status={"status_list": {"idx": 5, "uri": SL1}}), "ok")
    case("status-claim-malformed-without-list", "no status list configured: even a malformed status claim is ignored",
         token("status-claim-malformed-without-list", status={"status_list": {"idx": "five"}}), "ok")
    case("nesting-depth-16", "payload nested exactly 16 deep (the root object is depth 1)",
         token("nesting-depth-16", x=nested(15)), "ok")

    # A token of exactly 16384 bytes is accepted.
    tok16k = sized_token("size-16384", 16384)
    case("size-16384", "a token of exactly 16384 bytes (16 KiB) is accepted", tok16k, "ok")

    # --- malformed ----------------------------------------------------------------------------
    good = token("malformed-base")
    h, p, s = split(good)
    case("two-segments", "only two dot-separated segments", f"{h}.{p}", "malformed")
    case("four-segments", "four segments (a JWE has five; anything but three is refused)", f"{h}.{p}.{s}.{s}", "malformed")
    case("one-segment", "no dots at all", h, "malformed")
    case("empty-segments", "three empty segments", "..", "malformed")
    case("empty-payload-segment", "the payload segment is empty", f"{h}..{s}", "malformed")
    case("b64-padding", "signature segment carries '=' padding (RFC 7515 §2 forbids it)", f"{h}.{p}.{s}==", "malformed")
    case("b64-plus", "a '+' (standard alphabet) in the signature segment", f"{h}.{p}.{s[:10]}+{s[11:]}", "malformed")
    case("b64-slash", "a '/' (standard alphabet) in the payload segment", f"{h}.{p[:10]}/{p[11:]}.{s}", "malformed")
    case("b64-impossible-length", "signature segment of length 1 mod 4 (85 characters)", f"{h}.{p}.{s[:85]}", "malformed")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(s[-1])
    noncanon = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
    assert len(s) % 4 == 2 and last & 0x0F == 0
    case("b64-noncanonical-bits", "the last signature character has non-zero unused bits (non-canonical encoding)",
         f"{h}.{p}.{s[:-1]}{noncanon}", "malformed")
    case("trailing-newline", "the token followed by a newline (callers must trim; the verifier does not)",
         good + "\n", "malformed")
    case("inner-space", "a space inside the payload segment", f"{h}.{p[:20]} {p[20:]}.{s}", "malformed")
    case("non-ascii-character", "a non-ASCII character in the payload segment", f"{h}.{p[:20]}\u00e9{p[20:]}.{s}",
         "malformed")
    case("header-not-json", "header segment decodes to bytes that are not JSON",
         compact(b"alg=ES256", claims("header-not-json")), "malformed")
    case("header-json-array", "header is a JSON array", compact(jdump(["ES256", K_ES.kid, "at+jwt"]),
                                                                claims("header-json-array")), "malformed")
    case("header-json-string", "header is a JSON string", compact(jdump("ES256"), claims("header-json-string")),
         "malformed")
    case("payload-json-array", "payload is a JSON array", compact(header_for(K_ES), jdump([ISS, AUD])), "malformed")
    case("payload-json-number", "payload is a bare JSON number", compact(header_for(K_ES), b"1900000000"), "malformed")
    case("header-trailing-data", "header JSON followed by extra bytes",
         compact(jdump(header_for(K_ES)) + b"x", claims("header-trailing-data")), "malformed")
    case("payload-invalid-utf8", "payload string contains the bytes FF FE (not UTF-8)",
         compact(header_for(K_ES), raw_payload("payload-invalid-utf8", b'"\xff\xfe"')), "malformed")
    case("payload-overlong-utf8", "payload string contains an overlong UTF-8 encoding (C0 AF for '/')",
         compact(header_for(K_ES), raw_payload("payload-overlong-utf8", b'"\xc0\xaf"')), "malformed")
    case("payload-lone-surrogate", "payload string escape \\ud800 is a lone surrogate (RFC 7493 §2.1)",
         compact(header_for(K_ES), raw_payload("payload-lone-surrogate", b'"\\ud800"')), "malformed")
    case("payload-nul-escape", "payload string contains \\u0000",
         compact(header_for(K_ES), raw_payload("payload-nul-escape", b'"a\\u0000b"')), "malformed")
    hk = K_ES.kid
    case("header-duplicate-alg", "header {\"alg\":\"ES256\",…,\"alg\":\"none\"}: duplicate member names (RFC 7515 §4)",
         compact(f'{{"alg":"ES256","kid":"{hk}","typ":"at+jwt","alg":"none"}}'.encode(), claims("header-duplicate-alg")),
         "malformed")
    case("payload-duplicate-exp", "payload has exp twice (RFC 7519 §4)",
         compact(header_for(K_ES), raw_payload("payload-duplicate-exp", b"1", exp=NOW + 600).replace(
             b'"x":1', f'"exp":{NOW + 99999}'.encode())), "malformed")
    case("payload-duplicate-nested", "a duplicate member inside the act object",
         compact(header_for(K_ES), raw_payload("payload-duplicate-nested",
                                               b'{"sub":"acme/web-deploy","sub":"evil/pipeline"}')), "malformed")
    case("nesting-depth-17", "payload nested 17 deep", token("nesting-depth-17", x=nested(16)), "malformed")
    case("nesting-depth-20", "payload nested 20 deep (objects)", token("nesting-depth-20", x=nested(19)), "malformed")
    case("header-nesting-depth-20", "header nested 20 deep (arrays)",
         token("header-nesting-depth-20", header=header_for(K_ES, x=nested(19, "array"))), "malformed")
    case("number-1e999", "payload number 1e999 (overflows to infinity)",
         compact(header_for(K_ES), raw_payload("number-1e999", b"1e999")), "malformed")
    case("number-negative-1e999", "payload number -1e999",
         compact(header_for(K_ES), raw_payload("number-negative-1e999", b"-1e999")), "malformed")
    case("number-nan-literal", "payload uses the non-JSON literal NaN",
         compact(header_for(K_ES), raw_payload("number-nan-literal", b"NaN")), "malformed")
    case("exp-beyond-int64", "exp = 2^64, an integer that does not fit in 64 bits",
         compact(header_for(K_ES), raw_payload("exp-beyond-int64", b"18446744073709551616")), "malformed")
    big = sized_token("size-over-16k", 16385)
    case("size-over-16k", f"a correctly signed token of {len(big)} bytes (over 16384)", big, "malformed")
    case("order-malformed-before-type", "typ JWT and an unparsable payload: malformed is checked first",
         compact(header_for(K_ES, typ="JWT"), b"{not json"), "malformed")

    # --- wrong_type (RFC 9068 §2.1, §4; RFC 8725 §3.11) ----------------------------------------
    case("typ-missing", "no typ header", token("typ-missing", header=header_for(K_ES, typ=DELETE)), "wrong_type")
    case("typ-jwt", "typ JWT (an ID token or a generic JWT)", token("typ-jwt", header=header_for(K_ES, typ="JWT")),
         "wrong_type")
    case("typ-uppercase", "typ AT+JWT: Stagepass compares exactly, not case-insensitively",
         token("typ-uppercase", header=header_for(K_ES, typ="AT+JWT")), "wrong_type")
    case("typ-media-type", "typ application/at+jwt: only the short form is accepted",
         token("typ-media-type", header=header_for(K_ES, typ="application/at+jwt")), "wrong_type")
    case("typ-statuslist", "a status list token presented as an access token",
         token("typ-statuslist", header=header_for(K_ES, typ="statuslist+jwt")), "wrong_type")
    case("typ-not-string", "typ is a number", token("typ-not-string", header=header_for(K_ES, typ=1)), "wrong_type")

    # --- unsupported_critical_header (RFC 7515 §4.1.11) --------------------------------------
    case("crit-present", "crit [\"exp\"] with exp in the header",
         token("crit-present", header=header_for(K_ES, crit=["exp"], exp=NOW + 600)), "unsupported_critical_header")
    case("crit-empty", "crit present as an empty array", token("crit-empty", header=header_for(K_ES, crit=[])),
         "unsupported_critical_header")
    case("order-crit-before-jku", "crit and jku both present: crit is reported",
         token("order-crit-before-jku", header=header_for(K_ES, crit=["b64"], b64=True,
                                                          jku="https://attacker.example/jwks.json")),
         "unsupported_critical_header")

    # --- forbidden_header (RFC 8725 §3.10; RFC 7515 §4.1.2-4.1.6) ----------------------------
    attacker = K_ES_OTHER
    case("jwk-header-attacker-key", "header embeds the attacker's own public key (jwk) and is signed with it",
         compact(header_for(attacker, jwk=attacker.jwk()), claims("jwk-header-attacker-key"), attacker),
         "forbidden_header")
    case("jwk-header-trusted-key", "header embeds the trusted key itself: still rejected, never consulted",
         token("jwk-header-trusted-key", header=header_for(K_ES, jwk=K_ES.jwk())), "forbidden_header")
    case("jku-header", "jku points at an attacker-controlled JWKS",
         compact(header_for(attacker, jku="https://attacker.example/jwks.json"), claims("jku-header"), attacker),
         "forbidden_header")
    case("jku-header-trusted-kid", "jku present with a known kid and a valid signature: still rejected",
         token("jku-header-trusted-kid", header=header_for(K_ES, jku=ISS + "/.well-known/jwks.json")),
         "forbidden_header")
    case("x5u-header", "x5u header", token("x5u-header", header=header_for(K_ES, x5u="https://attacker.example/c.pem")),
         "forbidden_header")
    cert_b64 = base64.b64encode(b"0\x82\x01\x00not-a-real-certificate").decode()
    case("x5c-header", "x5c header", token("x5c-header", header=header_for(K_ES, x5c=[cert_b64])), "forbidden_header")

    # --- unknown_key (RFC 7515 §4.1.4; RFC 7517 §4.2, §5) -------------------------------------
    case("kid-missing", "no kid header (no fallback to a default key)",
         token("kid-missing", header=header_for(K_ES, kid=DELETE)), "unknown_key")
    case("kid-unknown", "kid of a key that is not in the JWKS",
         compact(header_for(K_ES_OTHER), claims("kid-unknown"), K_ES_OTHER), "unknown_key")
    case("kid-empty", "kid is the empty string", token("kid-empty", header=header_for(K_ES, kid="")), "unknown_key")
    case("kid-not-string", "kid is a number", token("kid-not-string", header=header_for(K_ES, kid=7)), "unknown_key")
    case("key-use-enc", "the only key with this kid has use \"enc\"", token("key-use-enc"),
         "unknown_key", jwks=jwks(K_ES.jwk(use="enc"), K_ED.jwk()))
    case("jwk-rsa-without-alg", "an RSA JWKS key without alg is not used (RS256 or PS256 would be a guess)",
         token("jwk-rsa-without-alg", K_RS), "unknown_key", jwks=jwks(K_RS.jwk(alg=None), K_ES.jwk()))
    dup = {**K_ES_OTHER.jwk(), "kid": K_ES.kid}
    case("jwks-duplicate-kid", "two usable keys share the token's kid: ambiguous, neither is used",
         token("jwks-duplicate-kid"), "unknown_key", jwks=jwks(K_ES.jwk(), dup))
    case("jwk-alg-kty-mismatch", "the JWKS key is EC P-256 but claims alg RS256: unusable key, skipped",
         token("jwk-alg-kty-mismatch"), "unknown_key", jwks=jwks(K_ES.jwk(alg="RS256")))
    case("jwk-rsa-1024", "RSA key below 2048 bits: refused, so its kid is unknown",
         compact(header_for(K_RS1024), claims("jwk-rsa-1024"), K_RS1024), "unknown_key",
         jwks=jwks(K_RS1024.jwk(), K_ES.jwk()))
    case("jwks-empty", "an empty JWKS", token("jwks-empty"), "unknown_key", jwks={"keys": []})

    # --- unsupported_algorithm (RFC 8725 §3.1; RFC 7518 §3.1) ---------------------------------
    case("alg-none", "alg none with an empty signature (kid of a real key)",
         compact(header_for(K_ES, alg="none"), claims("alg-none"), None), "unsupported_algorithm")
    case("alg-missing", "no alg header", token("alg-missing", header=header_for(K_ES, alg=DELETE)),
         "unsupported_algorithm")
    case("alg-not-string", "alg is a number", token("alg-not-string", header=header_for(K_ES, alg=256)),
         "unsupported_algorithm")
    hs_hdr = header_for(K_ES, alg="HS256")
    hs_in = (b64u(jdump(hs_hdr)) + "." + b64u(jdump(claims("hs256-ec-public-pem")))).encode()
    case("hs256-ec-public-pem", "alg confusion: HS256 keyed with the EC key's SPKI PEM, kid of the EC key",
         compact(hs_hdr, claims("hs256-ec-public-pem"), signature=hmac.new(K_ES.spki_pem(), hs_in, "sha256").digest()),
         "unsupported_algorithm")
    hs_hdr = header_for(K_RS, alg="HS256")
    hs_in = (b64u(jdump(hs_hdr)) + "." + b64u(jdump(claims("hs256-rsa-public-pem")))).encode()
    case("hs256-rsa-public-pem", "alg confusion: HS256 keyed with the RSA key's SPKI PEM, kid of the RSA key",
         compact(hs_hdr, claims("hs256-rsa-public-pem"), signature=hmac.new(K_RS.spki_pem(), hs_in, "sha256").digest()),
         "unsupported_algorithm")
    case("rs256-on-es256-key", "header alg RS256 naming the ES256 key",
         token("rs256-on-es256-key", header=header_for(K_ES, alg="RS256")), "unsupported_algorithm")
    case("ps256-on-rs256-key", "header alg PS256 naming the RS256 key, really signed with PSS",
         compact(header_for(K_RS, alg="PS256"), claims("ps256-on-rs256-key"), K_RS, sign_alg="PS256"),
         "unsupported_algorithm")
    case("rs256-on-ps256-key", "header alg RS256 naming the PS256 key, really signed with PKCS#1 v1.5",
         compact(header_for(K_PS, alg="RS256"), claims("rs256-on-ps256-key"), K_PS, sign_alg="RS256"),
         "unsupported_algorithm")
    case("ed25519-alg-name", "header alg Ed25519 (RFC 9864 name) naming a key whose alg is EdDSA",
         compact(header_for(K_ED, alg="Ed25519"), claims("ed25519-alg-name"), K_ED, sign_alg="EdDSA"),
         "unsupported_algorithm")
    case("es384-on-es256-key", "header alg ES384 naming the ES256 key",
         token("es384-on-es256-key", header=header_for(K_ES, alg="ES384")), "unsupported_algorithm")

    # --- bad_signature (RFC 7515 §5.2; RFC 7518 §3.4, §3.5; RFC 8037 §3.1) ----------------------
    base = token("es256-sig-base")
    raw = sig_of(base)
    r, s_ = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    case("es256-der-signature", "ES256 signature in ASN.1 DER instead of raw R||S (RFC 7518 §3.4)",
         with_sig(base, encode_dss_signature(r, s_)), "bad_signature")
    case("es256-r-s-zero", "ES256 signature with r = s = 0 (64 zero bytes)", with_sig(base, bytes(64)), "bad_signature")
    case("es256-r-equals-n", "ES256 r = n (the P-256 order), s from a valid signature",
         with_sig(base, P256_N.to_bytes(32, "big") + raw[32:]), "bad_signature")
    case("es256-s-equals-n", "ES256 s = n, r from a valid signature",
         with_sig(base, raw[:32] + P256_N.to_bytes(32, "big")), "bad_signature")
    case("es256-truncated", "ES256 signature truncated to 63 bytes", with_sig(base, raw[:63]), "bad_signature")
    case("es256-extended", "ES256 signature with a 65th byte appended", with_sig(base, raw + b"\x00"), "bad_signature")
    case("es256-flipped-bit", "ES256 signature with one bit flipped", with_sig(base, flip_bit(raw)), "bad_signature")
    assert s_ <= P256_N // 2
    case("es256-high-s", "the high-S twin (r, n - s) of a valid ES256 signature: valid for generic ECDSA, refused by "
         "the low-S rule (one spelling per token)", with_sig(base, raw[:32] + (P256_N - s_).to_bytes(32, "big")),
         "bad_signature")
    case("es256-low-s-base", "the low-S original of es256-high-s", base, "ok")
    case("es256-empty-signature", "ES256 header with an empty signature segment", with_sig(base, b""), "bad_signature")
    case("es256-wrong-key-same-kid", "signed by another P-256 key but carrying the trusted kid",
         compact(header_for(K_ES), claims("es256-wrong-key-same-kid"), K_ES_OTHER), "bad_signature")
    h0, _, s0 = split(token("es256-payload-swap"))
    forged = b64u(jdump(claims("es256-payload-swap", role="admin")))
    case("es256-payload-swap", "payload changed (role admin) after signing", f"{h0}.{forged}.{s0}", "bad_signature")
    ed = token("eddsa-sig-base", K_ED)
    eraw = sig_of(ed)
    case("eddsa-flipped-bit", "EdDSA signature with one bit flipped", with_sig(ed, flip_bit(eraw)), "bad_signature")
    s_big = (int.from_bytes(eraw[32:], "little") + ED25519_L).to_bytes(32, "little")
    case("eddsa-s-not-reduced", "Ed25519 signature with S + L in place of S (RFC 8032 §5.1.7 requires S < L)",
         with_sig(ed, eraw[:32] + s_big), "bad_signature")
    rs = token("rs256-sig-base", K_RS)
    case("rs256-flipped-bit", "RS256 signature with one bit flipped", with_sig(rs, flip_bit(sig_of(rs), 100)),
         "bad_signature")
    case("rs256-truncated", "RS256 signature of 255 bytes", with_sig(rs, sig_of(rs)[:255]), "bad_signature")
    ps = token("ps256-sig-base", K_PS)
    case("ps256-flipped-bit", "PS256 signature with one bit flipped", with_sig(ps, flip_bit(sig_of(ps), 200)),
         "bad_signature")
    ps_in = (b64u(jdump(header_for(K_PS))) + "." + b64u(jdump(claims("ps256-salt-64")))).encode()
    case("ps256-salt-64", "PS256 signed with a 64-byte salt: RFC 7518 §3.5 fixes the salt at 32 bytes",
         compact(header_for(K_PS), claims("ps256-salt-64"), signature=pss_sign_deterministic(K_PS.private, ps_in, 64)),
         "bad_signature")
    ps_in = (b64u(jdump(header_for(K_PS))) + "." + b64u(jdump(claims("ps256-salt-0")))).encode()
    case("ps256-salt-0", "PS256 signed with an empty salt", compact(header_for(K_PS), claims("ps256-salt-0"),
                                                                     signature=pss_sign_deterministic(K_PS.private, ps_in, 0)),
         "bad_signature")
    case("order-bad-signature-before-claims", "bad signature on an expired token from another issuer",
         with_sig(token("order-bad-signature-before-claims", iss="https://evil.example", exp=NOW - 9999,
                        iat=NOW - 10000, nbf=NOW - 10000), bytes(64)), "bad_signature")

    # --- wrong_issuer (RFC 7519 §4.1.1) -------------------------------------------------------
    case("iss-other", "iss of another issuer", token("iss-other", iss="https://evil.example"), "wrong_issuer")
    case("iss-trailing-slash", "iss with a trailing slash (simple string comparison)",
         token("iss-trailing-slash", iss=ISS + "/"), "wrong_issuer")
    case("iss-not-string", "iss is a number", token("iss-not-string", iss=42), "wrong_issuer")
    case("order-issuer-before-audience", "wrong iss and wrong aud: iss is reported",
         token("order-issuer-before-audience", iss="https://evil.example", aud="other-api"), "wrong_issuer")

    # --- wrong_audience (RFC 7519 §4.1.3; RFC 9068 §4) -----------------------------------------
    case("aud-other", "aud string not accepted", token("aud-other", aud="billing-api"), "wrong_audience")
    case("aud-array-none-accepted", "aud array without an accepted value",
         token("aud-array-none-accepted", aud=["billing-api", "metrics-api"]), "wrong_audience")
    case("aud-empty-array", "aud is an empty array", token("aud-empty-array", aud=[]), "wrong_audience")
    case("aud-not-string", "aud is a number", token("aud-not-string", aud=7), "wrong_audience")
    case("aud-array-non-string-member", "aud array with a non-string member beside the accepted value",
         token("aud-array-non-string-member", aud=[7, AUD]), "wrong_audience")
    case("aud-case-differs", "aud differs in case", token("aud-case-differs", aud="Deploy-API"), "wrong_audience")

    # --- missing_claim (RFC 7519 §4.1; RFC 9068 §2.2) ------------------------------------------
    for name in ("exp", "iat", "iss", "aud", "sub", "jti"):
        case(f"missing-{name}", f"no {name} claim",
             compact(header_for(K_ES), claims(f"missing-{name}", **{name: DELETE})), "missing_claim")
    case("exp-string", "exp is a string", token("exp-string", exp=str(NOW + 600)), "missing_claim")
    case("exp-real", "exp written with a fraction (1900000600.0): NumericDate must be an integer here",
         compact(header_for(K_ES), raw_payload("exp-real", f"{NOW + 600}.0".encode(), exp=DELETE).replace(
             b'"x":', b'"exp":')), "missing_claim")
    case("exp-bool", "exp is true", token("exp-bool", exp=True), "missing_claim")
    case("iat-string", "iat is a string", token("iat-string", iat=str(NOW - 60)), "missing_claim")
    case("nbf-string", "nbf is present but a string", token("nbf-string", nbf=str(NOW - 60)), "missing_claim")
    case("auth-time-string", "auth_time is present but a string", token("auth-time-string", auth_time="yesterday"),
         "missing_claim")
    case("sub-not-string", "sub is a number", token("sub-not-string", sub=1001), "missing_claim")
    case("jti-not-string", "jti is null", compact(header_for(K_ES), claims("jti-not-string", jti=None)),
         "missing_claim")
    case("exp-null", "exp is null", token("exp-null", exp=None), "missing_claim")

    # --- expired / not_yet_valid / issued_in_future / lifetime_exceeded (RFC 7519 §4.1.4-4.1.6) --
    case("expired", "exp an hour ago", token("expired", exp=NOW - 3600, iat=NOW - 4000, nbf=NOW - 4000), "expired")
    case("expired-beyond-leeway", "exp 31 s ago, leeway 30 s",
         token("expired-beyond-leeway", exp=NOW - 31, iat=NOW - 600, nbf=NOW - 600), "expired")
    case("expired-at-leeway-boundary", "now == exp + leeway is rejected (RFC 7519 §4.1.4: on or after exp)",
         token("expired-at-leeway-boundary", exp=NOW - 30, iat=NOW - 600, nbf=NOW - 600), "expired")
    case("expired-leeway-zero-exact", "leeway 0: now == exp is rejected",
         token("expired-leeway-zero-exact", exp=NOW, iat=NOW - 300, nbf=NOW - 300), "expired",
         config={**DEFAULT_CONFIG, "leeway": 0})
    case("expired-leeway-zero", "leeway 0: exp one second ago",
         token("expired-leeway-zero", exp=NOW - 1, iat=NOW - 300, nbf=NOW - 300), "expired",
         config={**DEFAULT_CONFIG, "leeway": 0})
    case("order-expired-before-lifetime", "expired and too long-lived: expired is reported",
         token("order-expired-before-lifetime", exp=NOW - 100, iat=NOW - 90000, nbf=NOW - 90000), "expired")
    case("nbf-future", "nbf ten minutes ahead", token("nbf-future", nbf=NOW + 600, exp=NOW + 1200), "not_yet_valid")
    case("nbf-beyond-leeway", "nbf 31 s ahead, leeway 30 s", token("nbf-beyond-leeway", nbf=NOW + 31),
         "not_yet_valid")
    case("iat-future", "iat ten minutes ahead", token("iat-future", iat=NOW + 600, nbf=DELETE, exp=NOW + 1200),
         "issued_in_future")
    case("iat-beyond-leeway", "iat 31 s ahead, no nbf", token("iat-beyond-leeway", iat=NOW + 31, nbf=DELETE),
         "issued_in_future")
    case("order-nbf-before-iat", "nbf and iat both in the future: not_yet_valid is reported",
         token("order-nbf-before-iat", iat=NOW + 600, nbf=NOW + 600, exp=NOW + 1200), "not_yet_valid")
    case("lifetime-exceeded", "exp - iat = 3601 > 3600",
         token("lifetime-exceeded", iat=NOW - 100, nbf=NOW - 100, exp=NOW + 3501), "lifetime_exceeded")
    case("lifetime-day", "a 24 h token", token("lifetime-day", iat=NOW - 100, nbf=NOW - 100, exp=NOW + 86300),
         "lifetime_exceeded")
    case("exp-int64-max", "exp = 2^63-1: no overflow in exp + leeway or exp - iat",
         token("exp-int64-max", exp=INT64_MAX), "lifetime_exceeded")
    case("iat-int64-min", "iat = -2^63: no overflow in exp - iat",
         token("iat-int64-min", iat=INT64_MIN, nbf=DELETE), "lifetime_exceeded")

    # --- requirements -------------------------------------------------------------------------
    case("role-mismatch", "token role deployer, caller requires admin", token("role-mismatch"), "role_mismatch",
         requirements={"roles": ["admin"]})
    case("role-missing", "no role claim while the caller requires one", token("role-missing", role=DELETE),
         "role_mismatch", requirements={"roles": ["deployer"]})
    case("role-not-string", "role is an array", token("role-not-string", role=["deployer"]), "role_mismatch",
         requirements={"roles": ["deployer"]})
    case("role-case-differs", "role Deployer vs deployer", token("role-case-differs", role="Deployer"),
         "role_mismatch", requirements={"roles": ["deployer"]})
    case("stage-mismatch", "token stage staging, caller requires production", token("stage-mismatch", stage="staging"),
         "stage_mismatch", requirements=REQ_ALL)
    case("stage-missing", "no stage claim", token("stage-missing", stage=DELETE), "stage_mismatch",
         requirements={"stage": "production"})
    case("pipeline-mismatch", "client_id evil/web-deploy vs pattern acme/*",
         token("pipeline-mismatch", client_id="evil/web-deploy"), "pipeline_mismatch", requirements=REQ_ALL)
    case("pipeline-missing-client-id", "no client_id while a pattern is required",
         token("pipeline-missing-client-id", client_id=DELETE), "pipeline_mismatch", requirements={"pipeline": "*"})
    case("pipeline-no-prefix-match", "pattern without '*' is not a prefix match",
         token("pipeline-no-prefix-match"), "pipeline_mismatch", requirements={"pipeline": "acme/web"})
    case("pipeline-anchored-start", "pattern *-deploy/x must match the whole client_id",
         token("pipeline-anchored-start"), "pipeline_mismatch", requirements={"pipeline": "acme/*-deploy/x"})
    case("pipeline-question-mark-literal", "'?' is a literal character, not a wildcard",
         token("pipeline-question-mark-literal"), "pipeline_mismatch", requirements={"pipeline": "acme/web?deploy"})
    case("order-role-before-stage", "role and stage both wrong: role is reported",
         token("order-role-before-stage", role="viewer", stage="staging"), "role_mismatch", requirements=REQ_ALL)

    # --- status list (draft-ietf-oauth-status-list-20) ------------------------------------------
    sl1 = status_list()
    sl2 = status_list(SL2, REVOKED_2)

    def st(idx, uri=SL1):
        return {"status_list": {"idx": idx, "uri": uri}}

    case("status-valid", "idx 7 is 0 in the installed list", token("status-valid", status=st(7)), "ok",
         status_lists=[sl1], status_max_age=300)
    case("status-valid-eddsa", "EdDSA token, idx 8 is 0", token("status-valid-eddsa", K_ED, status=st(8)), "ok",
         status_lists=[sl1])
    case("status-lsb-first", "idx 14 is 0: bit 6 of byte 1 (reading MSB first would hit idx 9's bit)",
         token("status-lsb-first", status=st(14)), "ok", status_lists=[sl1])
    case("status-second-list", "two lists installed; the token references list 2, idx 0 is 0 there",
         token("status-second-list", status=st(0, SL2)), "ok", status_lists=[sl1, sl2])
    case("status-revoked", "idx 5 is 1 (bit 5 of byte 0)", token("status-revoked", status=st(5)), "revoked",
         status_lists=[sl1], status_max_age=300)
    case("status-revoked-idx0", "idx 0 is 1", token("status-revoked-idx0", status=st(0)), "revoked",
         status_lists=[sl1])
    case("status-revoked-lsb-first", "idx 9 is 1 (bit 1 of byte 1)", token("status-revoked-lsb-first", status=st(9)),
         "revoked", status_lists=[sl1])
    case("status-revoked-last", "idx 127, the last entry, is 1", token("status-revoked-last", status=st(127)),
         "revoked", status_lists=[sl1])
    case("status-revoked-second-list", "idx 3 is 1 in list 2", token("status-revoked-second-list", status=st(3, SL2)),
         "revoked", status_lists=[sl1, sl2])
    case("order-pipeline-before-status", "revoked token whose client_id also mismatches: pipeline reported",
         token("order-pipeline-before-status", status=st(5), client_id="evil/x"), "pipeline_mismatch",
         status_lists=[sl1], requirements={"pipeline": "acme/*"})
    case("status-idx-out-of-range", "idx 128 in a 128-entry list", token("status-idx-out-of-range", status=st(128)),
         "status_unavailable", status_lists=[sl1])
    case("status-list-expired", "the list's exp passed 100 s ago", token("status-list-expired"), "status_unavailable",
         status_lists=[status_list(iat=NOW - 4000, exp=NOW - 100)])
    case("status-list-expired-at-leeway-boundary", "now == list exp + leeway: expired (same rule as tokens)",
         token("status-list-expired-at-leeway-boundary"), "status_unavailable",
         status_lists=[status_list(iat=NOW - 4000, exp=NOW - 30)])
    case("status-list-exp-within-leeway", "list exp 10 s ago, leeway 30 s", token("status-list-exp-within-leeway"),
         "ok", status_lists=[status_list(iat=NOW - 4000, exp=NOW - 10)])
    case("status-list-without-exp", "exp is optional in a status list (draft §5.1)", token("status-list-without-exp"),
         "ok", status_lists=[status_list(exp=None)])
    case("status-list-without-iat", "iat is required in a status list (draft §5.1)", token("status-list-without-iat"),
         "status_unavailable", status_lists=[status_list(iat=None)])
    case("status-list-too-old", "list iat 1000 s ago, verifier max age 300 s", token("status-list-too-old"),
         "status_unavailable", status_lists=[status_list(iat=NOW - 1000)], status_max_age=300)
    case("status-list-age-ok", "list iat 200 s ago, verifier max age 300 s", token("status-list-age-ok"), "ok",
         status_lists=[status_list(iat=NOW - 200)], status_max_age=300)
    case("status-list-unknown-key", "the list is signed by a key that is not in the JWKS",
         token("status-list-unknown-key"), "status_unavailable", status_lists=[status_list(key=K_ES_OTHER)])
    case("status-list-bad-signature", "the list's signature has a flipped bit", token("status-list-bad-signature"),
         "status_unavailable", status_lists=[status_list(tamper=True)])
    case("status-list-wrong-typ", "the list's typ is JWT, not statuslist+jwt", token("status-list-wrong-typ"),
         "status_unavailable", status_lists=[status_list(typ="JWT")])
    two_bit = {1: 2, 3: 3, 5: 1}  # idx -> status: SUSPENDED, application-specific, INVALID
    sl2bit = status_list(raw=status_bytes_bits(two_bit, 2), bits=2)
    case("status-list-2bit-valid", "2-bit list: idx 2 is 0x00 VALID", token("status-list-2bit-valid", status=st(2)),
         "ok", status_lists=[sl2bit])
    case("status-list-2bit-suspended", "2-bit list: idx 1 is 0x02 SUSPENDED, not accepted",
         token("status-list-2bit-suspended", status=st(1)), "revoked", status_lists=[sl2bit])
    case("status-list-2bit-invalid", "2-bit list: idx 5 is 0x01 INVALID", token("status-list-2bit-invalid", status=st(5)),
         "revoked", status_lists=[sl2bit])
    case("status-list-2bit-out-of-range", "2-bit list of 16 bytes has 64 entries: idx 64 is out of range",
         token("status-list-2bit-out-of-range", status=st(64)), "status_unavailable", status_lists=[sl2bit])
    case("status-list-bits-3", "bits must be 1, 2, 4 or 8", token("status-list-bits-3"), "status_unavailable",
         status_lists=[status_list(bits=3)])
    case("status-list-bad-zlib", "lst is not zlib data", token("status-list-bad-zlib"), "status_unavailable",
         status_lists=[status_list(lst=b64u(status_bytes(REVOKED_1)))])
    # Installing: one list per sub, replaced only by a list that is not older; unusable documents change nothing.
    sl_old = status_list(iat=NOW - 600, revoked=REVOKED_1 - {5})
    sl_new = status_list(iat=NOW - 60)
    case("status-list-newer-replaces-older", "list with iat now-600 (idx 5 valid), then one with iat now-60 (idx 5 "
         "revoked): the newer list is used", token("status-list-newer-replaces-older", status=st(5)), "revoked",
         status_lists=[sl_old, sl_new], status_list_results=["ok", "ok"])
    case("status-list-older-does-not-replace-newer", "list with iat now-60 (idx 5 revoked), then an older copy (iat "
         "now-600, idx 5 valid): refused as stale, the newer list stays",
         token("status-list-older-does-not-replace-newer", status=st(5)), "revoked",
         status_lists=[sl_new, sl_old], status_list_results=["ok", "stale_status_list"])
    case("status-list-older-then-valid-index", "after a stale install the newer list still answers: idx 7 is 0",
         token("status-list-older-then-valid-index", status=st(7)), "ok",
         status_lists=[sl_new, sl_old], status_list_results=["ok", "stale_status_list"])
    case("status-list-unusable-http-error-page", "an HTTP error page installed as the list: refused, status checking "
         "on, no list", token("status-list-unusable-http-error-page"), "status_unavailable",
         status_lists=["<html><body><h1>502 Bad Gateway</h1></body></html>"], status_list_results=["bad_status_list"])
    case("status-list-unusable-a-b-c", "\"a.b.c\" installed as the list: refused", token("status-list-unusable-a-b-c"),
         "status_unavailable", status_lists=["a.b.c"], status_list_results=["bad_status_list"])
    case("status-list-unusable-does-not-replace", "a usable list (idx 5 revoked), then a newer list with a bad "
         "signature that would clear it: refused, the usable list stays",
         token("status-list-unusable-does-not-replace", status=st(5)), "revoked",
         status_lists=[sl_new, status_list(iat=NOW - 10, revoked=set(), tamper=True)],
         status_list_results=["ok", "bad_status_list"])
    case("status-list-unusable-expired-does-not-replace", "a usable list, then a newer but expired one: refused",
         token("status-list-unusable-expired-does-not-replace", status=st(5)), "revoked",
         status_lists=[sl_new, status_list(iat=NOW - 50, exp=NOW - 40, revoked=set())],
         status_list_results=["ok", "bad_status_list"])
    sl_high = status_list(iat=NOW - 30)
    hs_raw = sig_of(sl_high)
    sl_high = with_sig(sl_high, hs_raw[:32] + (P256_N - int.from_bytes(hs_raw[32:], "big")).to_bytes(32, "big"))
    case("status-list-high-s", "a list whose ES256 signature is the high-S twin of a valid one: refused",
         token("status-list-high-s"), "status_unavailable", status_lists=[sl_high],
         status_list_results=["bad_status_list"])
    case("status-list-future-iat", "a list issued 10 minutes in the future: refused",
         token("status-list-future-iat"), "status_unavailable", status_lists=[status_list(iat=NOW + 600)],
         status_list_results=["bad_status_list"])
    case("status-list-exp-string", "a list whose exp is a string: refused (a malformed exp is not \"no expiry\")",
         token("status-list-exp-string"), "status_unavailable",
         status_lists=[status_list_raw_claims(exp="never")], status_list_results=["bad_status_list"])
    case("status-claim-missing", "a list is installed but the token has no status claim",
         token("status-claim-missing", status=DELETE), "status_unavailable", status_lists=[sl1])
    case("status-other-uri", "the token references a list that is not installed",
         token("status-other-uri", status=st(7, SL2)), "status_unavailable", status_lists=[sl1])
    case("status-idx-not-integer", "status idx is a string", token("status-idx-not-integer", status=st("7")),
         "status_unavailable", status_lists=[sl1])
    case("status-idx-negative", "status idx is -1", token("status-idx-negative", status=st(-1)),
         "status_unavailable", status_lists=[sl1])


# --- DPoP (RFC 9449; token-profile.md §8) ---------------------------------------------------------

DPOP_URL = "https://deploy.test/api/deploy"
PROOF_SERIAL = [0]  # proof jti values in the order proofs are made (reset per render: reproducible)


def jwk_public(key: Key) -> dict:
    return key.members()


def dpop_proof(tok: str | None, key: Key = K_DPOP, /, *, header: dict | None = None, sign_alg: str | None = None,
               signature: bytes | None = None, **changes) -> str:
    """A DPoP proof JWT for POST DPOP_URL with `ath` of `tok` (RFC 9449 §4.2); changes edit or DELETE claims."""
    h = {"typ": "dpop+jwt", "alg": key.alg, "jwk": jwk_public(key)} if header is None else header
    PROOF_SERIAL[0] += 1
    c = {"jti": f"proof-{PROOF_SERIAL[0]:03d}", "htm": "POST", "htu": DPOP_URL, "iat": NOW}
    if tok is not None:
        c["ath"] = b64u(hashlib.sha256(tok.encode()).digest())
    for k, v in changes.items():
        if v is DELETE:
            c.pop(k, None)
        else:
            c[k] = v
    return compact(h, c, key, sign_alg=sign_alg, signature=signature)


def present(proof: str, method: str = "POST", url: str = DPOP_URL) -> dict:
    return {"proof": proof, "method": method, "url": url}


def bound(jti_value: str, key: Key = K_DPOP, **claim_changes) -> str:
    """An access token bound to `key` (cnf.jkt, RFC 7800 §3.1)."""
    return token(jti_value, cnf={"jkt": key.kid}, **claim_changes)


def build_dpop_cases() -> None:
    t = bound("dpop-valid-es256")
    case("dpop-valid-es256", "bound token (cnf.jkt) with a valid ES256 proof for this method and URL", t, "ok",
         dpop=present(dpop_proof(t)))
    t = bound("dpop-valid-eddsa", K_DPOP_ED)
    case("dpop-valid-eddsa", "bound token with a valid EdDSA (Ed25519) proof", t, "ok",
         dpop=present(dpop_proof(t, K_DPOP_ED)))
    t = bound("dpop-htu-normalised")
    case("dpop-htu-normalised", "htu and the request URL differ only in case of scheme and host, the default port, "
         "query and fragment (RFC 9449 §4.3 step 9)", t, "ok",
         dpop=present(dpop_proof(t, htu="HTTPS://Deploy.TEST:443/api/deploy"), url=DPOP_URL + "?run=7#top"))
    t = bound("dpop-high-s")
    p = dpop_proof(t)
    sig = sig_of(p)
    high = sig[:32] + (P256_N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    case("dpop-high-s", "a proof whose ES256 signature is the high-S twin: accepted (a proof is identified by its jti)",
         t, "ok", dpop=present(with_sig(p, high)))
    t = bound("dpop-iat-oldest")
    case("dpop-iat-oldest", "proof iat = now - 90 (max age 60 s + leeway 30 s)", t, "ok",
         dpop=present(dpop_proof(t, iat=NOW - 90)))
    t = bound("dpop-iat-future-leeway")
    case("dpop-iat-future-leeway", "proof iat = now + 30 (leeway)", t, "ok", dpop=present(dpop_proof(t, iat=NOW + 30)))
    t = token("dpop-unbound-bearer")
    case("dpop-unbound-bearer", "an unbound token presented as a bearer token", t, "ok")

    t = bound("dpop-bound-as-bearer")
    case("dpop-bound-as-bearer", "a bound token presented as a bearer token (no proof)", t, "dpop_required")
    t = bound("dpop-order-expired", exp=NOW - 100, iat=NOW - 600)
    case("dpop-order-expired", "an expired bound token without a proof: expired is reported first", t, "expired")
    t = token("dpop-cnf-without-jkt", cnf={"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"})
    case("dpop-cnf-without-jkt", "cnf with a confirmation method other than jkt", t, "missing_claim")
    t = token("dpop-cnf-not-object", cnf="jkt")
    case("dpop-cnf-not-object", "cnf is a string", t, "missing_claim")

    def bad(cid, description, proof_of, **kw):
        tk = bound(cid)
        case(cid, description, tk, "bad_dpop_proof", dpop=present(proof_of(tk), **kw))

    bad("dpop-typ-jwt", "proof typ is JWT, not dpop+jwt",
        lambda tk: dpop_proof(tk, header={"typ": "JWT", "alg": "ES256", "jwk": jwk_public(K_DPOP)}))
    bad("dpop-typ-missing", "proof without typ", lambda tk: dpop_proof(tk, header={"alg": "ES256", "jwk": jwk_public(K_DPOP)}))
    bad("dpop-alg-none", "proof alg none, empty signature",
        lambda tk: dpop_proof(tk, header={"typ": "dpop+jwt", "alg": "none", "jwk": jwk_public(K_DPOP)}, signature=b""))
    bad("dpop-alg-rs256", "proof alg RS256 (not ES256 or EdDSA)",
        lambda tk: dpop_proof(tk, K_RS, header={"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk_public(K_RS)}))
    bad("dpop-no-jwk", "proof header without jwk", lambda tk: dpop_proof(tk, header={"typ": "dpop+jwt", "alg": "ES256"}))
    priv = dict(jwk_public(K_DPOP), d=b64u_uint(K_DPOP.private.private_numbers().private_value, 32))
    bad("dpop-private-jwk", "proof jwk carries the private key (d)",
        lambda tk: dpop_proof(tk, header={"typ": "dpop+jwt", "alg": "ES256", "jwk": priv}))
    bad("dpop-jwk-alg-mismatch", "proof alg EdDSA with an EC jwk",
        lambda tk: dpop_proof(tk, header={"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk_public(K_DPOP)},
                              sign_alg="ES256"))
    bad("dpop-crit", "proof header with crit",
        lambda tk: dpop_proof(tk, header={"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_public(K_DPOP), "crit": ["x"]}))
    bad("dpop-bad-signature", "proof signature with a flipped bit",
        lambda tk: with_sig(dpop_proof(tk), flip_bit(sig_of(dpop_proof(tk)))))
    bad("dpop-signed-by-other-key", "proof jwk is the token's key but another key signed it",
        lambda tk: compact({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_public(K_DPOP)},
                           json.loads(base64.urlsafe_b64decode(dpop_proof(tk).split(".")[1] + "==")), K_ES))
    bad("dpop-htm-mismatch", "proof htm GET for a POST request", lambda tk: dpop_proof(tk, htm="GET"))
    bad("dpop-htm-case", "proof htm post (methods are case-sensitive)", lambda tk: dpop_proof(tk, htm="post"))
    bad("dpop-htu-other-path", "proof htu names another path", lambda tk: dpop_proof(tk, htu="https://deploy.test/api/other"))
    bad("dpop-htu-other-host", "proof htu names another host", lambda tk: dpop_proof(tk, htu="https://evil.test/api/deploy"))
    bad("dpop-htu-other-port", "proof htu names another port",
        lambda tk: dpop_proof(tk, htu="https://deploy.test:8443/api/deploy"))
    bad("dpop-htu-missing", "proof without htu", lambda tk: dpop_proof(tk, htu=DELETE))
    bad("dpop-htm-missing", "proof without htm", lambda tk: dpop_proof(tk, htm=DELETE))
    bad("dpop-jti-missing", "proof without jti", lambda tk: dpop_proof(tk, jti=DELETE))
    bad("dpop-jti-empty", "proof jti is empty", lambda tk: dpop_proof(tk, jti=""))
    bad("dpop-jti-too-long", "proof jti of 129 bytes", lambda tk: dpop_proof(tk, jti="j" * 129))
    bad("dpop-iat-too-old", "proof iat = now - 91", lambda tk: dpop_proof(tk, iat=NOW - 91))
    bad("dpop-iat-future", "proof iat = now + 31", lambda tk: dpop_proof(tk, iat=NOW + 31))
    bad("dpop-iat-missing", "proof without iat", lambda tk: dpop_proof(tk, iat=DELETE))
    bad("dpop-iat-string", "proof iat is a string", lambda tk: dpop_proof(tk, iat=str(NOW)))
    bad("dpop-ath-missing", "proof without ath (a resource request needs it)", lambda tk: dpop_proof(None))
    bad("dpop-ath-other-token", "proof ath is the hash of another token", lambda tk: dpop_proof(tk + "x"))
    bad("dpop-not-a-jws", "proof is not a compact JWS", lambda tk: "a.b")
    bad("dpop-request-url-relative", "the request URL is not absolute", lambda tk: dpop_proof(tk), url="/api/deploy")
    bad("dpop-method-differs", "the request method is GET, the proof says POST", lambda tk: dpop_proof(tk),
        method="GET")

    t = bound("dpop-other-key")
    case("dpop-other-key", "a valid proof by another key than cnf.jkt", t, "dpop_key_mismatch",
         dpop=present(dpop_proof(t, K_DPOP_ED)))
    t = token("dpop-unbound-with-proof")
    case("dpop-unbound-with-proof", "an unbound token presented with the DPoP scheme", t, "dpop_key_mismatch",
         dpop=present(dpop_proof(t)))
    t = bound("dpop-replayed")
    p = present(dpop_proof(t))
    case("dpop-replayed", "the same proof presented a second time", t, "dpop_replayed", dpop=p, dpop_earlier=[p])
    t = bound("dpop-replayed-same-jti")
    case("dpop-replayed-same-jti", "a new proof reusing an accepted proof's jti", t, "dpop_replayed",
         dpop=present(dpop_proof(t, iat=NOW - 5, jti="proof-reused")),
         dpop_earlier=[present(dpop_proof(t, jti="proof-reused"))])
    t = bound("dpop-replay-cache-full")
    case("dpop-replay-cache-full", "replay cache capacity 1 holding one unexpired proof: a new proof is refused "
         "(fail closed, nothing evicted)", t, "dpop_replay_cache_full",
         config=dict(DEFAULT_CONFIG, dpop_replay_capacity=1), dpop=present(dpop_proof(t, jti="second")),
         dpop_earlier=[present(dpop_proof(t, jti="first"))])


def document() -> dict:
    CASES.clear()
    PROOF_SERIAL[0] = 0
    build_cases()
    build_dpop_cases()
    return {
        "description": "Stagepass access token verifier conformance vectors. Each case: a compact JWS, the JWKS and "
        "verifier configuration it is checked with, the caller's requirements, optional status lists (installed "
        "with fetched_at = now), the verifier clock `now` (unix seconds) and the expected verdict: \"ok\" or the "
        "first failing check's error code (Specs/token-profile.md). A case with `dpop` presents the token with the "
        "DPoP scheme (RFC 9449: proof, method, url), after each of `dpop_earlier` (each accepted); without it the "
        "token is a bearer presentation. Generated by Specs/vectors/generate.py.",
        "version": 1,
        "cases": CASES,
    }


def render() -> str:
    return json.dumps(document(), indent=1, ensure_ascii=True) + "\n"


def self_check() -> None:
    """Cross-checks the thumbprints with joserfc (an independent RFC 7638 implementation)."""
    import warnings

    from joserfc.jwk import JWKRegistry

    warnings.simplefilter("ignore")  # joserfc warns about the deliberately small RSA key

    for k in (K_ES, K_ES_OTHER, K_ED, K_RS, K_PS, K_RS1024, K_DPOP_ED):
        jk = JWKRegistry.import_key(k.members())
        assert jk.thumbprint() == k.kid, k.name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if conformance.json differs from a fresh render")
    ap.add_argument("--output", default=OUT)
    args = ap.parse_args()
    self_check()
    text = render()
    if args.check:
        with open(args.output, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{args.output} is stale: run {sys.argv[0]}", file=sys.stderr)
                return 1
        print(f"{args.output} is up to date ({len(CASES)} cases)")
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    counts: dict[str, int] = {}
    for c in CASES:
        counts[c["expected"]] = counts.get(c["expected"], 0) + 1
    print(f"wrote {args.output}: {len(CASES)} cases")
    for k in sorted(counts):
        print(f"  {k:30} {counts[k]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
