"""A small, slow, independent reading of Specs/token-profile.md in Python.

It exists to keep the conformance vectors honest: `test_reference_verifier.py` runs every case of
Specs/vectors/conformance.json through it, so a vector whose `expected` verdict contradicts the written
rules (or another vector) fails here before any Swift code is involved. It is not a product: it has no
caching, no sources, no threads, and it is not hardened or fast.

Uses only the standard library and `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import zlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_TOKEN_BYTES = 16384
MAX_DEPTH = 16
MAX_STATUS_LIST_BYTES = 2 * 1024 * 1024  # 2^24 one-bit entries (token-profile.md §6.3)
DEFAULT_LEEWAY = 30
DEFAULT_MAX_LIFETIME = 3600
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
CODES = (
    "malformed", "wrong_type", "unsupported_critical_header", "forbidden_header", "unknown_key",
    "unsupported_algorithm", "bad_signature", "wrong_issuer", "wrong_audience", "missing_claim", "expired",
    "not_yet_valid", "issued_in_future", "lifetime_exceeded", "role_mismatch", "stage_mismatch",
    "pipeline_mismatch", "revoked", "status_unavailable",
    "dpop_required", "bad_dpop_proof", "dpop_key_mismatch", "dpop_replayed", "dpop_replay_cache_full",
)
DPOP_MAX_PROOF_BYTES = 4096
DPOP_MAX_JTI_BYTES = 128
DEFAULT_DPOP_MAX_AGE = 60
DEFAULT_DPOP_REPLAY_CAPACITY = 65536
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class Reject(Exception):
    def __init__(self, code: str, detail: str = ""):
        assert code in CODES, code
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class _Bad(Exception):
    """Internal: an input that is not acceptable (mapped to a code by the caller)."""


# --- strict base64url (RFC 7515 §2) --------------------------------------------------------------

_B64U = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64u_decode(s: str) -> bytes:
    if not _B64U.fullmatch(s) or len(s) % 4 == 1:
        raise _Bad("not strict base64url")
    rest = len(s) % 4
    if rest == 2 and _ALPHABET.index(s[-1]) & 0x0F:
        raise _Bad("non-canonical trailing bits")
    if rest == 3 and _ALPHABET.index(s[-1]) & 0x03:
        raise _Bad("non-canonical trailing bits")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# --- strict JSON (RFC 8259 + RFC 7493 I-JSON restrictions + depth bound) -------------------------


class Real(float):
    """A JSON number written with a fraction or exponent (never an integer claim)."""


def _depth_ok(text: str, max_depth: int) -> bool:
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "}]":
            depth -= 1
    return True


def _pairs(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise _Bad(f"duplicate member {k!r}")
        obj[k] = v
    return obj


def _int(s: str) -> int:
    v = int(s)
    if not INT64_MIN <= v <= INT64_MAX:
        raise _Bad("integer does not fit in 64 bits")
    return v


def _float(s: str) -> Real:
    v = float(s)
    if not math.isfinite(v):
        raise _Bad("number is not finite")
    return Real(v)


def _const(s: str):
    raise _Bad(f"{s} is not JSON")


def _check_strings(v) -> None:
    if isinstance(v, str):
        if "\x00" in v:
            raise _Bad("NUL in string")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad("lone surrogate") from None
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_strings(k)
            _check_strings(x)
    elif isinstance(v, list):
        for x in v:
            _check_strings(x)


def strict_json(data: bytes, max_depth: int | None = MAX_DEPTH, require_object: bool = True):
    try:
        text = data.decode("utf-8")  # strict: overlong forms and encoded surrogates are errors
    except UnicodeDecodeError:
        raise _Bad("not UTF-8") from None
    if max_depth is not None and not _depth_ok(text, max_depth):
        raise _Bad("nesting too deep")
    try:
        v = json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_const)
    except (ValueError, RecursionError) as e:
        if isinstance(e, _Bad):
            raise
        raise _Bad(f"not JSON: {e}") from None
    _check_strings(v)
    if require_object and not isinstance(v, dict):
        raise _Bad("not a JSON object")
    return v


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- keys ----------------------------------------------------------------------------------------


@dataclass
class Key:
    kid: str
    alg: str
    public: object


def _uint(s) -> int:
    if not isinstance(s, str):
        raise _Bad("member not a string")
    return int.from_bytes(b64u_decode(s), "big")


def import_jwk(j) -> Key | None:
    """A usable verification key, or None when RFC 7517 §5 says to ignore it."""
    try:
        if not isinstance(j, dict):
            return None
        kid, alg, use = j.get("kid"), j.get("alg"), j.get("use", "sig")
        if not isinstance(kid, str) or use != "sig":
            return None
        kty = j.get("kty")
        if alg is None:  # fixed by the key type where that is unambiguous; RSA keys must say RS256 or PS256
            alg = {"EC": "ES256", "OKP": "EdDSA"}.get(kty)
        if not isinstance(alg, str):
            return None
        if kty == "EC" and alg == "ES256" and j.get("crv") == "P-256":
            x, y = b64u_decode(j["x"]), b64u_decode(j["y"])
            if len(x) != 32 or len(y) != 32:
                return None
            pub = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                ec.SECP256R1()).public_key()
        elif kty == "OKP" and alg == "EdDSA" and j.get("crv") == "Ed25519":
            x = b64u_decode(j["x"])
            if len(x) != 32:
                return None
            pub = ed25519.Ed25519PublicKey.from_public_bytes(x)
        elif kty == "RSA" and alg in ("RS256", "PS256"):
            n, e = _uint(j["n"]), _uint(j["e"])
            if n.bit_length() < 2048:
                return None
            pub = rsa.RSAPublicNumbers(e, n).public_key()
        else:
            return None
        return Key(kid, alg, pub)
    except (_Bad, KeyError, ValueError, TypeError):
        return None


def import_jwks(doc) -> dict[str, Key]:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS")
    out: dict[str, Key] = {}
    ambiguous: set[str] = set()
    for j in doc["keys"]:
        k = import_jwk(j)
        if k is None:
            continue
        if k.kid in out or k.kid in ambiguous:
            ambiguous.add(k.kid)
            out.pop(k.kid, None)
        else:
            out[k.kid] = k
    return out


def signature_ok(key: Key, signing_input: bytes, sig: bytes) -> bool:
    try:
        if key.alg == "ES256":
            if len(sig) != 64:
                return False
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            if not (1 <= r < P256_N and 1 <= s < P256_N):
                return False
            if s > P256_N // 2:  # token-profile.md §4.1: low-S only, (r, n - s) is refused
                return False
            key.public.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
        elif key.alg == "EdDSA":
            key.public.verify(sig, signing_input)
        elif key.alg == "RS256":
            key.public.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif key.alg == "PS256":
            key.public.verify(sig, signing_input, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        else:
            return False
        return True
    except (InvalidSignature, ValueError):
        return False


# --- JWS structure shared by access tokens and status list tokens ---------------------------------


@dataclass
class Parsed:
    header: dict
    payload: dict
    signing_input: bytes
    signature: bytes


def parse_compact(token: str, max_bytes: int | None) -> Parsed:
    raw = token.encode("utf-8", "surrogatepass")
    if max_bytes is not None and len(raw) > max_bytes:
        raise _Bad("token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise _Bad("not three segments")
    hb, pb, sb = (b64u_decode(p) for p in parts)
    return Parsed(strict_json(hb), strict_json(pb), f"{parts[0]}.{parts[1]}".encode("ascii"), sb)


def check_header_and_signature(p: Parsed, keys: dict[str, Key], typ: str) -> None:
    h = p.header
    if h.get("typ") != typ:
        raise Reject("wrong_type", f"typ must be {typ}")
    if "crit" in h:
        raise Reject("unsupported_critical_header")
    for name in FORBIDDEN_HEADERS:
        if name in h:
            raise Reject("forbidden_header", name)
    kid = h.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise Reject("unknown_key")
    if h.get("alg") != key.alg:
        raise Reject("unsupported_algorithm")
    if not signature_ok(key, p.signing_input, p.signature):
        raise Reject("bad_signature")


# --- status lists ----------------------------------------------------------------------------------


@dataclass
class StatusList:
    uri: str
    iat: int
    exp: int | None
    ttl: int | None
    bits: int
    data: bytes
    fetched_at: int
    max_age: int

    def value(self, idx: int) -> int | None:
        """draft §4.1: entry idx occupies `bits` bits from bit idx*bits, least significant bit first."""
        if idx >= len(self.data) * 8 // self.bits:
            return None
        off = idx * self.bits
        return (self.data[off // 8] >> (off % 8)) & ((1 << self.bits) - 1)


def parse_status_list(jwt: str, keys: dict[str, Key], fetched_at: int, max_age: int, now: int,
                      leeway: int) -> StatusList:
    """Raises _Bad or Reject when the list is unusable (token-profile.md §6.4), judged as of `now`."""
    if jwt.count(".") != 2:
        raise _Bad("not a compact JWS")
    p = parse_compact(jwt, None)
    check_header_and_signature(p, keys, "statuslist+jwt")
    c = p.payload
    sub, iat, exp, ttl, sl = c.get("sub"), c.get("iat"), c.get("exp"), c.get("ttl"), c.get("status_list")
    if not isinstance(sub, str) or not is_int(iat):
        raise _Bad("sub and iat are required")
    if "exp" in c and not is_int(exp):
        raise _Bad("exp must be an integer")
    if "ttl" in c and (not is_int(ttl) or ttl <= 0):
        raise _Bad("ttl must be a positive integer")
    bits = sl.get("bits") if isinstance(sl, dict) else None
    if not is_int(bits) or bits not in (1, 2, 4, 8):
        raise _Bad("status_list.bits must be 1, 2, 4 or 8")
    lst = sl.get("lst")
    if not isinstance(lst, str):
        raise _Bad("lst missing")
    d = zlib.decompressobj()
    try:
        data = d.decompress(b64u_decode(lst), MAX_STATUS_LIST_BYTES + 1)
    except zlib.error:
        raise _Bad("lst is not zlib") from None
    if not d.eof or d.unused_data or len(data) > MAX_STATUS_LIST_BYTES:
        raise _Bad("lst truncated, trailing data or too large")
    if exp is not None and now >= exp + leeway:
        raise _Bad("expired")
    if now + leeway < iat:
        raise _Bad("issued in the future")
    return StatusList(sub, iat, exp, ttl, bits, data, fetched_at, max_age)


# --- the verifier ---------------------------------------------------------------------------------


# --- DPoP proofs (RFC 9449 §4.3; token-profile.md §8) -------------------------------------------


def thumbprint(j: dict) -> str:
    """RFC 7638 §3 over the required members (EC crv,kty,x,y; OKP crv,kty,x)."""
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[j["kty"]]
    canonical = json.dumps({k: j[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def normalized_uri(uri: str) -> str | None:
    """htu comparison form: no query/fragment, lower-case scheme and host, no default port, "/" for an empty path,
    upper-case percent-encoding hex digits (RFC 3986 §6.2.2-6.2.3)."""
    for cut in ("?", "#"):
        uri = uri.split(cut, 1)[0]
    if "://" not in uri:
        return None
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        return None
    authority, slash, path = rest.partition("/")
    authority = authority.lower()
    if not authority or "@" in authority:
        return None
    if scheme == "https" and authority.endswith(":443"):
        authority = authority[:-4]
    if scheme == "http" and authority.endswith(":80"):
        authority = authority[:-3]
    path = slash + path if slash else "/"
    path = re.sub(r"%[0-9a-fA-F]{2}", lambda m: m.group(0).upper(), path)
    return f"{scheme}://{authority}{path}"


def check_dpop_proof(proof: str, method: str, url: str, token: str, now: int, max_age: int, leeway: int):
    """(thumbprint, jti, iat) of a valid proof, or Reject("bad_dpop_proof")."""
    def bad(why):
        return Reject("bad_dpop_proof", why)
    if len(proof.encode("utf-8", "surrogatepass")) > DPOP_MAX_PROOF_BYTES:
        raise bad("too large")
    parts = proof.split(".")
    if len(parts) != 3 or not all(parts):
        raise bad("not three segments")
    try:
        hb, pb, sig = (b64u_decode(x) for x in parts)
        h, c = strict_json(hb, 4), strict_json(pb, 4)
    except _Bad as e:
        raise bad(str(e)) from None
    if h.get("typ") != "dpop+jwt":
        raise bad("typ")
    if "crit" in h:
        raise bad("crit")
    alg = h.get("alg")
    if alg not in ("ES256", "EdDSA"):
        raise bad("alg")
    j = h.get("jwk")
    if not isinstance(j, dict):
        raise bad("jwk")
    if any(m in j for m in PRIVATE_JWK_MEMBERS):
        raise bad("private jwk")
    try:
        if j.get("kty") == "EC" and j.get("crv") == "P-256" and alg == "ES256":
            x, y = b64u_decode(j["x"]), b64u_decode(j["y"])
            if len(x) != 32 or len(y) != 32:
                raise bad("jwk")
            pub = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                ec.SECP256R1()).public_key()
            if len(sig) != 64:
                raise bad("signature")
            r, s_ = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            if not (1 <= r < P256_N and 1 <= s_ < P256_N):
                raise bad("signature")
            # Either s form: a proof is identified by its jti, not by its signature bytes.
            pub.verify(encode_dss_signature(r, s_), f"{parts[0]}.{parts[1]}".encode("ascii"),
                       ec.ECDSA(hashes.SHA256()))
        elif j.get("kty") == "OKP" and j.get("crv") == "Ed25519" and alg == "EdDSA":
            x = b64u_decode(j["x"])
            if len(x) != 32:
                raise bad("jwk")
            ed25519.Ed25519PublicKey.from_public_bytes(x).verify(sig, f"{parts[0]}.{parts[1]}".encode("ascii"))
        else:
            raise bad("jwk does not fit alg")
        jkt = thumbprint(j)
    except (InvalidSignature, ValueError, KeyError, TypeError, _Bad):
        raise bad("signature or jwk") from None
    jti = c.get("jti")
    if not isinstance(jti, str) or not jti or len(jti.encode()) > DPOP_MAX_JTI_BYTES:
        raise bad("jti")
    if not isinstance(c.get("htm"), str) or c["htm"] != method:
        raise bad("htm")
    want = normalized_uri(url)
    if want is None or not isinstance(c.get("htu"), str) or normalized_uri(c["htu"]) != want:
        raise bad("htu")
    iat = c.get("iat")
    if not is_int(iat):
        raise bad("iat")
    if now + leeway < iat or iat + max_age + leeway < now:
        raise bad("iat window")
    ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    if not isinstance(c.get("ath"), str) or not hmac.compare_digest(c["ath"], ath):
        raise bad("ath")
    return jkt, jti, iat


@dataclass
class Verifier:
    issuer: str
    audiences: list[str]
    jwks: dict
    leeway: int = DEFAULT_LEEWAY
    max_lifetime: int = DEFAULT_MAX_LIFETIME
    status_checking: bool = False
    lists: dict[str, StatusList] = field(default_factory=dict)
    dpop_max_age: int = DEFAULT_DPOP_MAX_AGE
    dpop_replay_capacity: int = DEFAULT_DPOP_REPLAY_CAPACITY
    seen_proofs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.keys = import_jwks(self.jwks)
        if self.leeway is None or self.leeway < 0:
            self.leeway = DEFAULT_LEEWAY
        if self.max_lifetime is None or self.max_lifetime <= 0:
            self.max_lifetime = DEFAULT_MAX_LIFETIME

    def set_status_list(self, jwt: str, fetched_at: int, max_age: int) -> str:
        """Installs a list (token-profile.md §6.4) judged as of fetched_at; returns "ok", "bad_status_list" (unusable:
        nothing changes) or "stale_status_list" (older iat than the installed list with the same sub, which stays).
        Either way the verifier now checks status."""
        self.status_checking = True
        try:
            sl = parse_status_list(jwt.strip(" \t\r\n"), self.keys, fetched_at, max_age, fetched_at, self.leeway)
        except (_Bad, Reject):
            return "bad_status_list"
        old = self.lists.get(sl.uri)
        if old is not None and sl.iat < old.iat:
            return "stale_status_list"
        self.lists[sl.uri] = sl
        return "ok"

    def verify(self, token: str, now: int, roles: list[str] | None = None, stage: str | None = None,
               pipeline: str | None = None, dpop: dict | None = None) -> dict:
        try:
            p = parse_compact(token, MAX_TOKEN_BYTES)
        except _Bad as e:
            raise Reject("malformed", str(e)) from None
        check_header_and_signature(p, self.keys, "at+jwt")
        c = p.payload
        if "iss" in c and c["iss"] != self.issuer:
            raise Reject("wrong_issuer")
        if "aud" in c:
            aud = c["aud"]
            values = [aud] if isinstance(aud, str) else aud
            if (not isinstance(values, list) or not values or not all(isinstance(a, str) for a in values)
                    or not any(a in self.audiences for a in values)):
                raise Reject("wrong_audience")
        for name in ("exp", "iat"):
            if not is_int(c.get(name)):
                raise Reject("missing_claim", name)
        for name in ("iss", "aud", "sub", "jti"):
            if name not in c or (name in ("sub", "jti") and not isinstance(c[name], str)):
                raise Reject("missing_claim", name)
        for name in ("nbf", "auth_time"):
            if name in c and not is_int(c[name]):
                raise Reject("missing_claim", name)
        # RFC 7800 §3.1 / RFC 9449 §6.1: a cnf must carry a jkt string (the only binding Stagepass checks).
        jkt = None
        if "cnf" in c:
            cnf = c["cnf"]
            if not isinstance(cnf, dict) or not isinstance(cnf.get("jkt"), str) or not cnf["jkt"]:
                raise Reject("missing_claim", "cnf.jkt")
            jkt = cnf["jkt"]
        exp, iat, lw = c["exp"], c["iat"], self.leeway
        if now >= exp + lw:  # RFC 7519 §4.1.4: reject on or after exp
            raise Reject("expired")
        if "nbf" in c and now + lw < c["nbf"]:
            raise Reject("not_yet_valid")
        if now + lw < iat:
            raise Reject("issued_in_future")
        if exp - iat > self.max_lifetime:
            raise Reject("lifetime_exceeded")
        if roles:
            if c.get("role") not in roles or not isinstance(c.get("role"), str):
                raise Reject("role_mismatch")
        if stage is not None:
            if c.get("stage") != stage:
                raise Reject("stage_mismatch")
        if pipeline is not None:
            cid = c.get("client_id")
            if not isinstance(cid, str) or not glob_match(pipeline, cid):
                raise Reject("pipeline_mismatch")
        if self.status_checking:
            self._check_status(c, now)
        self._check_binding(token, jkt, dpop, now)
        return c

    def _check_binding(self, token: str, jkt: str | None, dpop: dict | None, now: int) -> None:
        if dpop is None:
            if jkt is not None:
                raise Reject("dpop_required")
            return
        if jkt is None:
            raise Reject("dpop_key_mismatch", "token not bound")
        proof_jkt, jti, iat = check_dpop_proof(dpop["proof"], dpop["method"], dpop["url"], token, now,
                                               self.dpop_max_age, self.leeway)
        if proof_jkt != jkt:
            raise Reject("dpop_key_mismatch")
        key = proof_jkt + " " + jti
        if self.seen_proofs.get(key, now) > now:
            raise Reject("dpop_replayed")
        self.seen_proofs = {k: e for k, e in self.seen_proofs.items() if e > now}
        if len(self.seen_proofs) >= self.dpop_replay_capacity:
            raise Reject("dpop_replay_cache_full")
        self.seen_proofs[key] = iat + self.dpop_max_age + self.leeway + 1

    def _check_status(self, c: dict, now: int) -> None:
        st = c.get("status")
        ref = st.get("status_list") if isinstance(st, dict) else None
        if not isinstance(ref, dict):
            raise Reject("status_unavailable", "no status claim")
        idx, uri = ref.get("idx"), ref.get("uri")
        if not is_int(idx) or idx < 0 or not isinstance(uri, str):
            raise Reject("status_unavailable", "bad status claim")
        sl = self.lists.get(uri)
        if sl is None:
            raise Reject("status_unavailable", "no usable list for uri")
        if sl.exp is not None and now >= sl.exp + self.leeway:
            raise Reject("status_unavailable", "list expired")
        if sl.max_age > 0 and now - min(sl.iat, sl.fetched_at) > sl.max_age:
            raise Reject("status_unavailable", "list older than max age")
        value = sl.value(idx)
        if value is None:
            raise Reject("status_unavailable", "idx out of range")
        if value != 0:
            raise Reject("revoked", f"status {value}")


def glob_match(pattern: str, value: str) -> bool:
    """'*' matches any run of characters (also none); every other character matches itself."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    if not value.startswith(parts[0]) or not value.endswith(parts[-1]):
        return False
    pos, end = len(parts[0]), len(value) - len(parts[-1])
    if pos > end:
        return False
    for mid in parts[1:-1]:
        i = value.find(mid, pos, end)
        if i < 0:
            return False
        pos = i + len(mid)
    return True


def run_case(case: dict) -> str:
    """The verdict for one conformance case: "ok" or an error code."""
    cfg = case["config"]
    v = Verifier(cfg["issuer"], list(cfg["audiences"]), case["jwks"], cfg.get("leeway", DEFAULT_LEEWAY),
                 cfg.get("max_lifetime", DEFAULT_MAX_LIFETIME),
                 dpop_replay_capacity=cfg.get("dpop_replay_capacity", DEFAULT_DPOP_REPLAY_CAPACITY))
    results = [v.set_status_list(sl, case["now"], case.get("status_max_age", 0)) for sl in case.get("status_lists", [])]
    if "status_list_results" in case:
        assert results == case["status_list_results"], (case["id"], results)
    req = case.get("requirements", {})
    # Earlier presentations of the same token (replay cases): each must be accepted.
    for earlier in case.get("dpop_earlier", []):
        v.verify(case["token"], case["now"], req.get("roles"), req.get("stage"), req.get("pipeline"), earlier)
    try:
        v.verify(case["token"], case["now"], req.get("roles"), req.get("stage"), req.get("pipeline"),
                 case.get("dpop"))
    except Reject as r:
        return r.code
    return "ok"
