"""Interop both ways between Stagepass and an independent JOSE implementation (joserfc + cryptography).

(a) Tokens signed by joserfc / cryptography (ES256, EdDSA, RS256, PS256; fresh keys) verify with
    `stagepass verify`; tampered ones exit 1 with {"error":"bad_signature",...}; usage errors exit 2.
(b) Tokens signed by `stagepass dev-sign` (keys from `openssl genpkey`) verify in joserfc with the JWKS
    printed by `stagepass dev-jwks`.

STAGEPASS_BIN names the CLI binary. The contract is in Specs/token-profile.md ("The stagepass verify CLI").
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import cli_environment, stagepass_bin_path
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

ISS = "https://stagepass.test"
AUD = "deploy-api"
SL_URI = "https://stagepass.test/statuslists/1"
ALGS = ["ES256", "EdDSA", "RS256", "PS256"]
NOW = int(time.time())
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

# joserfc warns that the name "EdDSA" is deprecated by RFC 9864 ("Ed25519"); Stagepass uses "EdDSA" (RFC 8037).
pytestmark = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def segment_json(token: str, i: int) -> dict:
    return json.loads(b64u_decode(token.split(".")[i]))


def registry(alg: str) -> jws.JWSRegistry:
    # joserfc only enables "recommended" algorithms by default; name the one under test explicitly.
    return jws.JWSRegistry(algorithms=[alg])


def claims_for(jti: str, **changes) -> dict:
    c = {
        "iss": ISS,
        "sub": "alice@example.com",
        "aud": AUD,
        "exp": NOW + 300,
        "nbf": NOW - 5,
        "iat": NOW - 5,
        "jti": jti,
        "client_id": "acme/web-deploy",
        "scope": "deploy",
        "role": "deployer",
        "stage": "production",
        "amr": ["pwd", "hwk"],
        "auth_time": NOW - 60,
        "sid": "ses_interop",
        "act": {"sub": "acme/web-deploy", "run_id": "run-1"},
        "status": {"status_list": {"idx": 3, "uri": SL_URI}},
        "run_id": "run-1",
        "commit": "0123456789abcdef",
        "approvals": ["apr_1"],
    }
    c.update(changes)
    return c


def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """Runs a program (the CLI, openssl) outside the checkout, with nothing from the caller's environment it reads."""
    scratch = Path(tempfile.gettempdir())
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120, cwd=scratch,
                          env=cli_environment(scratch))


def assert_rejected(proc: subprocess.CompletedProcess, code: str) -> dict:
    assert proc.returncode == 1, f"exit {proc.returncode}; stdout={proc.stdout!r} stderr={proc.stderr!r}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr must be exactly one JSON line: {proc.stderr!r}"
    err = json.loads(lines[0])
    assert isinstance(err, dict) and err.get("error") == code, err
    assert isinstance(err.get("detail"), str), err
    assert proc.stdout.strip() == "", f"nothing on stdout on rejection: {proc.stdout!r}"
    return err


# --------------------------------------------------------------------------------------------------
# (a) joserfc / cryptography → stagepass verify
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> str:
    return str(stagepass_bin_path())


@pytest.fixture(scope="module")
def python_keys(tmp_path_factory) -> dict:
    keys = {
        "ES256": ECKey.generate_key("P-256"),
        "EdDSA": OKPKey.generate_key("Ed25519"),
        "RS256": RSAKey.generate_key(2048),
        "PS256": RSAKey.generate_key(2048),
    }
    jwks = {"keys": [{**k.as_dict(private=False), "kid": k.thumbprint(), "alg": alg, "use": "sig"}
                     for alg, k in keys.items()]}
    for j in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(j)
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return {"keys": keys, "jwks_path": str(path)}


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(token: str) -> str:
    """Stagepass accepts ES256 in low-S form only (token-profile.md §4.1). joserfc, like most generic signers, emits
    either twin at random, so a producer outside Stagepass normalises: s > n/2 becomes n - s (the same signature)."""
    h, p, sig = token.split(".")
    raw = b64u_decode(sig)
    s = int.from_bytes(raw[32:], "big")
    if len(raw) == 64 and s > P256_N // 2:
        raw = raw[:32] + (P256_N - s).to_bytes(32, "big")
    return f"{h}.{p}.{b64u(raw)}"


def high_s(token: str) -> str:
    """The other spelling (r, n - s) of a low-S ES256 token."""
    h, p, sig = token.split(".")
    raw = b64u_decode(sig)
    return f"{h}.{p}.{b64u(raw[:32] + (P256_N - int.from_bytes(raw[32:], 'big')).to_bytes(32, 'big'))}"


def sign_joserfc(alg: str, key, claims: dict) -> str:
    header = {"alg": alg, "kid": key.thumbprint(), "typ": "at+jwt"}
    token = jws.serialize_compact(header, json.dumps(claims), key, algorithms=[alg], registry=registry(alg))
    return low_s(token) if alg == "ES256" else token


def verify_args(cli: str, jwks_path: str, *extra: str, audience: str = AUD) -> list[str]:
    return [cli, "verify", "--jwks", jwks_path, "--issuer", ISS, "--audience", audience, "--now", str(NOW), *extra]


@pytest.mark.parametrize("alg", ALGS)
def test_joserfc_token_verifies_in_stagepass(cli, python_keys, alg):
    claims = claims_for(f"joserfc-{alg}")
    token = sign_joserfc(alg, python_keys["keys"][alg], claims)
    proc = run(verify_args(cli, python_keys["jwks_path"], token))
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    assert json.loads(proc.stdout) == claims


def test_cryptography_es256_token_verifies_in_stagepass(cli, python_keys):
    """Built by hand with `cryptography` only: DER signature converted to raw R||S (RFC 7518 §3.4)."""
    key = python_keys["keys"]["ES256"]
    priv = serialization.load_pem_private_key(key.as_pem(private=True), password=None)
    claims = claims_for("cryptography-es256")
    header = {"alg": "ES256", "kid": key.thumbprint(), "typ": "at+jwt"}
    signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(priv.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    s = min(s, P256_N - s)  # low-S (token-profile.md §4.1)
    token = f"{signing_input}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    proc = run(verify_args(cli, python_keys["jwks_path"], token))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == claims
    # The other spelling of the same signature is refused: one token, one spelling.
    assert_rejected(run(verify_args(cli, python_keys["jwks_path"], high_s(token))), "bad_signature")


def test_high_s_twin_of_a_joserfc_token_is_bad_signature(cli, python_keys):
    key = python_keys["keys"]["ES256"]
    token = sign_joserfc("ES256", key, claims_for("high-s"))
    twin = high_s(token)
    # joserfc (generic ECDSA) accepts both spellings; Stagepass accepts exactly one.
    keyset = KeySet.import_key_set({"keys": [{**key.as_dict(private=False), "kid": key.thumbprint()}]})
    jws.deserialize_compact(twin, keyset, algorithms=["ES256"], registry=registry("ES256"))
    assert run(verify_args(cli, python_keys["jwks_path"], token)).returncode == 0
    assert_rejected(run(verify_args(cli, python_keys["jwks_path"], twin)), "bad_signature")


def test_token_from_stdin(cli, python_keys):
    claims = claims_for("stdin")
    token = sign_joserfc("ES256", python_keys["keys"]["ES256"], claims)
    proc = run(verify_args(cli, python_keys["jwks_path"]), stdin=token + "\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == claims


@pytest.mark.parametrize("alg", ALGS)
def test_tampered_token_is_bad_signature(cli, python_keys, alg):
    token = sign_joserfc(alg, python_keys["keys"][alg], claims_for(f"tampered-{alg}"))
    h, p, s = token.split(".")
    sig = bytearray(b64u_decode(s))
    sig[len(sig) // 2] ^= 0x01
    proc = run(verify_args(cli, python_keys["jwks_path"], f"{h}.{p}.{b64u(bytes(sig))}"))
    assert_rejected(proc, "bad_signature")


def test_tampered_payload_is_bad_signature(cli, python_keys):
    token = sign_joserfc("EdDSA", python_keys["keys"]["EdDSA"], claims_for("payload-swap"))
    h, _, s = token.split(".")
    forged = b64u(json.dumps(claims_for("payload-swap", role="admin")).encode())
    assert_rejected(run(verify_args(cli, python_keys["jwks_path"], f"{h}.{forged}.{s}")), "bad_signature")


def test_requirements(cli, python_keys):
    token = sign_joserfc("ES256", python_keys["keys"]["ES256"], claims_for("requirements"))
    ok = run(verify_args(cli, python_keys["jwks_path"], "--role", "deployer", "--stage", "production",
                         "--pipeline", "acme/*", token))
    assert ok.returncode == 0, ok.stderr
    assert_rejected(run(verify_args(cli, python_keys["jwks_path"], "--role", "admin", token)), "role_mismatch")
    assert_rejected(run(verify_args(cli, python_keys["jwks_path"], "--stage", "staging", token)), "stage_mismatch")
    assert_rejected(run(verify_args(cli, python_keys["jwks_path"], "--pipeline", "other/*", token)),
                    "pipeline_mismatch")


def test_claim_checks(cli, python_keys):
    key = python_keys["keys"]["ES256"]
    jwks_path = python_keys["jwks_path"]
    token = sign_joserfc("ES256", key, claims_for("claim-checks"))
    assert_rejected(run(verify_args(cli, jwks_path, token, audience="billing-api")), "wrong_audience")
    later = verify_args(cli, jwks_path, token)
    later[later.index("--now") + 1] = str(NOW + 10_000)
    assert_rejected(run(later), "expired")
    long_lived = sign_joserfc("ES256", key, claims_for("long-lived", exp=NOW + 7200))
    assert_rejected(run(verify_args(cli, jwks_path, long_lived)), "lifetime_exceeded")
    ok = run(verify_args(cli, jwks_path, "--max-lifetime", "8000", long_lived))
    assert ok.returncode == 0, ok.stderr
    in_leeway = sign_joserfc("ES256", key, claims_for("leeway", exp=NOW - 20, iat=NOW - 200, nbf=NOW - 200))
    assert run(verify_args(cli, jwks_path, in_leeway)).returncode == 0
    assert_rejected(run(verify_args(cli, jwks_path, "--leeway", "0", in_leeway)), "expired")


def test_joserfc_default_typ_is_rejected(cli, python_keys):
    key = python_keys["keys"]["ES256"]
    header = {"alg": "ES256", "kid": key.thumbprint(), "typ": "JWT"}
    token = jws.serialize_compact(header, json.dumps(claims_for("typ-jwt")), key, algorithms=["ES256"])
    assert_rejected(run(verify_args(cli, python_keys["jwks_path"], token)), "wrong_type")


def test_status_list_file(cli, python_keys, tmp_path):
    """A status list built and signed in Python (draft-ietf-oauth-status-list-20 §5.1), given as a file."""
    import zlib

    key = python_keys["keys"]["ES256"]
    bits = bytearray(16)
    bits[0] |= 1 << 5  # idx 5 revoked
    status_claims = {"sub": SL_URI, "iss": ISS, "iat": NOW - 10, "exp": NOW + 600, "ttl": 300,
                     "status_list": {"bits": 1, "lst": b64u(zlib.compress(bytes(bits), 9))}}
    header = {"alg": "ES256", "kid": key.thumbprint(), "typ": "statuslist+jwt"}
    path = tmp_path / "statuslist.jwt"
    path.write_text(low_s(jws.serialize_compact(header, json.dumps(status_claims), key, algorithms=["ES256"])) + "\n")
    jwks_path = python_keys["jwks_path"]

    good = sign_joserfc("ES256", key, claims_for("status-good", status={"status_list": {"idx": 4, "uri": SL_URI}}))
    proc = run(verify_args(cli, jwks_path, "--status-list", str(path), good))
    assert proc.returncode == 0, proc.stderr
    revoked = sign_joserfc("ES256", key, claims_for("status-bad", status={"status_list": {"idx": 5, "uri": SL_URI}}))
    assert_rejected(run(verify_args(cli, jwks_path, "--status-list", str(path), revoked)), "revoked")
    assert run(verify_args(cli, jwks_path, revoked)).returncode == 0, "without --status-list, status is not checked"
    other = sign_joserfc("ES256", key, claims_for("status-other", status={"status_list": {"idx": 1, "uri": SL_URI + "x"}}))
    assert_rejected(run(verify_args(cli, jwks_path, "--status-list", str(path), other)), "status_unavailable")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--no-such-flag"], id="unknown-flag"),
        pytest.param(["--leeway", "soon"], id="non-integer-leeway"),
        pytest.param(["--now", "yesterday"], id="non-integer-now"),
    ],
)
def test_bad_flag_exits_2(cli, python_keys, args):
    token = sign_joserfc("ES256", python_keys["keys"]["ES256"], claims_for("flags"))
    proc = run(verify_args(cli, python_keys["jwks_path"], *args, token))
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr}"
    assert proc.stdout.strip() == ""


def test_missing_required_flag_exits_2(cli, python_keys):
    token = sign_joserfc("ES256", python_keys["keys"]["ES256"], claims_for("flags"))
    proc = run([cli, "verify", "--jwks", python_keys["jwks_path"], "--audience", AUD, token])
    assert proc.returncode == 2, f"missing --issuer must be a usage error, got {proc.returncode}: {proc.stderr}"


def test_unreadable_jwks_exits_2(cli, python_keys, tmp_path):
    token = sign_joserfc("ES256", python_keys["keys"]["ES256"], claims_for("flags"))
    proc = run(verify_args(cli, str(tmp_path / "missing.json"), token))
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr}"
    bad = tmp_path / "bad.json"
    bad.write_text("this is not a JWKS")
    proc = run(verify_args(cli, str(bad), token))
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr}"


# --------------------------------------------------------------------------------------------------
# (b) stagepass dev-sign → joserfc
# --------------------------------------------------------------------------------------------------

GENPKEY = {
    "ES256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "EdDSA": ["-algorithm", "ED25519"],
    "RS256": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "PS256": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
}
KTY = {"ES256": "EC", "EdDSA": "OKP", "RS256": "RSA", "PS256": "RSA"}
JOSERFC_KEY = {"EC": ECKey, "OKP": OKPKey, "RSA": RSAKey}


@pytest.fixture(scope="module")
def openssl_keys(tmp_path_factory) -> dict[str, Path]:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("openssl is not installed (Debian: openssl)", pytrace=False)
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for alg, opts in GENPKEY.items():
        path = d / f"{alg}.pem"
        proc = run([openssl, "genpkey", *opts, "-out", str(path)])
        assert proc.returncode == 0, proc.stderr
        assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----"), "expected unencrypted PKCS#8"
        out[alg] = path
    return out


def dev_jwks(cli: str, pem: Path) -> dict:
    proc = run([cli, "dev-jwks", "--key", str(pem)])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def dev_sign(cli: str, pem: Path, alg: str, claims: dict) -> str:
    proc = run([cli, "dev-sign", "--key", str(pem), "--alg", alg, "--claims", json.dumps(claims)])
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    return token


@pytest.mark.parametrize("alg", ALGS)
def test_stagepass_token_verifies_in_joserfc(cli, openssl_keys, alg):
    pem = openssl_keys[alg]
    independent = JOSERFC_KEY[KTY[alg]].import_key(pem.read_bytes())
    thumbprint = independent.thumbprint()

    jwks = dev_jwks(cli, pem)
    assert isinstance(jwks.get("keys"), list) and len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert not PRIVATE_MEMBERS & set(jwk), "dev-jwks must print public members only"
    assert jwk["kty"] == KTY[alg]
    assert jwk["kid"] == thumbprint, "kid must be the RFC 7638 thumbprint"
    assert jwk.get("use") == "sig"
    # An RSA key alone does not say RS256 or PS256; accept either from dev-jwks, then verify under `alg`.
    assert jwk.get("alg") in ({"RS256", "PS256"} if KTY[alg] == "RSA" else {alg})

    claims = claims_for(f"dev-sign-{alg}")
    token = dev_sign(cli, pem, alg, claims)
    header = segment_json(token, 0)
    assert header["alg"] == alg and header["kid"] == thumbprint and header["typ"] == "at+jwt", header
    assert not {"jku", "jwk", "x5u", "x5c", "crit"} & set(header)
    if alg == "ES256":
        assert len(b64u_decode(token.split(".")[2])) == 64, "ES256 signatures are raw R||S (RFC 7518 §3.4)"

    verification_jwk = {**jwk, "alg": alg}
    keyset = KeySet.import_key_set({"keys": [verification_jwk]})
    result = jws.deserialize_compact(token, keyset, algorithms=[alg], registry=registry(alg))
    assert json.loads(result.payload) == claims
    # And with the key joserfc read from the PEM itself (not the CLI's JWKS).
    result = jws.deserialize_compact(token, independent, algorithms=[alg], registry=registry(alg))
    assert json.loads(result.payload) == claims


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_stagepass_roundtrip(cli, openssl_keys, tmp_path, alg):
    """dev-sign → dev-jwks → verify, all through the CLI."""
    pem = openssl_keys[alg]
    jwks_path = tmp_path / "jwks.json"
    jwks_path.write_text(json.dumps(dev_jwks(cli, pem)))
    claims = claims_for(f"roundtrip-{alg}")
    proc = run(verify_args(cli, str(jwks_path), dev_sign(cli, pem, alg, claims)))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == claims
