"""End-to-end: sender-constrained (DPoP, RFC 9449) production tokens.

A real broker whose policy requires DPoP for production. A pipeline run asks with `stagepass request`: without a key
it is refused at once with invalid_dpop_proof; with `--dpop-key-file` it gets a token bound to that key (cnf.jkt,
token_type DPoP). The token then verifies only with a fresh proof by that key, through `stagepass verify` (the Swift
library) and the C library (ctypes); as a bearer token, with a replayed proof or with a proof by another key it is
refused. `stagepass verify` runs once per token, so it keeps its record of accepted proofs in a shared replay file:
a proof replayed to a later or a concurrent invocation is refused. The broker records the proofs it accepted: a
replayed token-request proof is refused too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import openapi_check
from broker import Broker, claims, policy
from conftest import stagepass_bin_path, verify_lib_path
from test_conformance_c import STAGEPASS_OK, VerifyLib

DEPLOY_URL = "https://deploy.test/api/deploy"


def dpop_policy() -> str:
    # production (approvers: 1) gets require_dpop; the first per_run/approvers block in policy() is production's.
    text = policy(approvers=2)
    marker = "    approval: per_run\n    approvers: 1\n"
    assert marker in text
    return text.replace(marker, marker + "    require_dpop: true\n", 1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(str(stagepass_bin_path()), tmp_path_factory.mktemp("e2e-dpop"), dpop_policy(),
                recorder=openapi_check.check) as b:
        yield b


@pytest.fixture(scope="module")
def client(broker):
    return "acme-web", broker.add_client("acme-web")


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def python_proof(key: ec.EllipticCurvePrivateKey, method: str, url: str, token: str | None) -> str:
    """An ES256 DPoP proof made with `cryptography`, independently of Stagepass (RFC 9449 §4.2)."""
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
    body = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
    if token is not None:
        body["ath"] = b64u(hashlib.sha256(token.encode()).digest())
    signing_input = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(body).encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def run_request(broker: Broker, name: str, secret: str, run_id: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [broker.bin, "request", "--broker", broker.url, "--client", name, "--client-secret-env", "SP_SECRET",
         "--audience", "deploy-api", "--role", "deployer", "--stage", "production", "--run-id", run_id,
         "--triggered-by", "someone-else", *extra],
        env=broker.environment({"SP_SECRET": secret}), cwd=broker.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def read_code(proc: subprocess.Popen) -> str:
    for line in proc.stderr:
        if "code:" in line:
            return line.split("code:")[1].strip()
    raise AssertionError("stagepass request printed no code")


def verify_cli(broker: Broker, token: str, *extra: str) -> subprocess.CompletedProcess:
    return broker.cli("verify", "--jwks", broker.url + "/.well-known/jwks.json", "--issuer", broker.url,
                      "--audience", "deploy-api", "--stage", "production", *extra, stdin=token, check=False)


def cli_proof(broker: Broker, key_file, token_file, method: str = "POST", url: str = DEPLOY_URL) -> str:
    out = broker.cli("dpop-proof", "--method", method, "--url", url, "--token-file", str(token_file),
                     "--dpop-key-file", str(key_file))
    return out.stdout.strip()


@pytest.fixture(scope="module")
def bound(broker, client, tmp_path_factory):
    """A DPoP-bound production token from `stagepass request --dpop-key-file`: (token, key file, token file)."""
    name, secret = client
    d = tmp_path_factory.mktemp("dpop-run")
    key_file = d / "dpop.pem"
    approver = broker.add_user("approver", ["release-managers"])
    proc = run_request(broker, name, secret, "gh-2001", "--dpop-key-file", str(key_file))
    try:
        code = read_code(proc)
        sf = broker.session_file(approver, d / "session.json")
        assert "approved" in broker.cli("approve", code, "--session-file", str(sf)).stdout
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    token = stdout.strip()
    token_file = d / "token.jwt"
    token_file.write_text(token + "\n")
    return token, key_file, token_file


def test_production_request_without_a_proof_is_refused_clearly(broker, client):
    name, secret = client
    proc = run_request(broker, name, secret, "gh-2000")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and stdout == ""
    assert "invalid_dpop_proof" in stderr and "requires a DPoP-bound token" in stderr and "production" in stderr


def test_bound_token_carries_cnf_jkt_and_the_key_file_is_private(bound):
    token, key_file, _ = bound
    c = claims(token)
    pem = key_file.read_bytes()
    assert b"BEGIN PRIVATE KEY" in pem
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    nums = load_pem_private_key(pem, None).public_key().public_numbers()
    jwk = {"crv": "P-256", "kty": "EC", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}
    thumb = b64u(hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()).digest())
    assert c["cnf"] == {"jkt": thumb}
    assert c["stage"] == "production" and c["act"]["sub"] == "acme-web"


def test_cli_verifies_with_a_proof_and_refuses_bearer_and_other_keys(broker, bound, tmp_path):
    token, key_file, token_file = bound
    replay = ("--dpop-replay-file", str(tmp_path / "replay"))
    proof = cli_proof(broker, key_file, token_file)
    ok = verify_cli(broker, token, "--dpop-proof", proof, "--method", "POST", "--url", DEPLOY_URL + "?run=1", *replay)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["cnf"]["jkt"] == claims(token)["cnf"]["jkt"]
    bearer = verify_cli(broker, token)
    assert bearer.returncode == 1 and json.loads(bearer.stderr)["error"] == "dpop_required"
    other = python_proof(ec.generate_private_key(ec.SECP256R1()), "POST", DEPLOY_URL, token)
    r = verify_cli(broker, token, "--dpop-proof", other, "--method", "POST", "--url", DEPLOY_URL, *replay)
    assert r.returncode == 1 and json.loads(r.stderr)["error"] == "dpop_key_mismatch"
    wrong_url = verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), "--method", "POST",
                           "--url", "https://deploy.test/api/other", *replay)
    assert wrong_url.returncode == 1 and json.loads(wrong_url.stderr)["error"] == "bad_dpop_proof"


def test_cli_refuses_a_proof_replayed_to_a_later_invocation(broker, bound, tmp_path):
    token, key_file, token_file = bound
    replay_file = tmp_path / "replay"
    args = ("--method", "POST", "--url", DEPLOY_URL, "--dpop-replay-file", str(replay_file))
    proof = cli_proof(broker, key_file, token_file)
    first = verify_cli(broker, token, "--dpop-proof", proof, *args)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(replay_file).st_mode) == 0o600
    # The record holds the proof's key and jti, not the proof or the token.
    record = replay_file.read_text()
    assert len(record.splitlines()) == 1 and token not in record and proof not in record
    again = verify_cli(broker, token, "--dpop-proof", proof, *args)
    assert again.returncode == 1 and json.loads(again.stderr)["error"] == "dpop_replayed"
    # A fresh proof by the same key still passes; a refused proof is not recorded.
    assert verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), *args).returncode == 0
    assert len(replay_file.read_text().splitlines()) == 2
    # Another replay file is another record: the deploy host keeps one path for every invocation.
    other = verify_cli(broker, token, "--dpop-proof", proof, "--method", "POST", "--url", DEPLOY_URL,
                       "--dpop-replay-file", str(tmp_path / "elsewhere"))
    assert other.returncode == 0, other.stderr


def test_cli_concurrent_invocations_accept_a_proof_once(broker, bound, tmp_path):
    token, key_file, token_file = bound
    args = ("--method", "POST", "--url", DEPLOY_URL, "--dpop-replay-file", str(tmp_path / "replay"))
    proof = cli_proof(broker, key_file, token_file)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: verify_cli(broker, token, "--dpop-proof", proof, *args), range(8)))
    codes = sorted(r.returncode for r in results)
    assert codes == [0] + [1] * 7, [r.stderr for r in results]
    assert all(json.loads(r.stderr)["error"] == "dpop_replayed" for r in results if r.returncode == 1)


def test_cli_replay_file_fails_closed(broker, bound, tmp_path):
    token, key_file, token_file = bound
    path = tmp_path / "replay"
    args = ("--method", "POST", "--url", DEPLOY_URL, "--dpop-replay-file", str(path))
    # A file others can write could have its record erased: refused, exit 2, nothing verified.
    path.write_text("")
    os.chmod(path, 0o666)
    r = verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), *args)
    assert r.returncode == 2 and "chmod 600" in r.stderr and r.stdout == ""
    # A malformed line is not skipped: the record cannot be trusted, so nothing is accepted.
    os.chmod(path, 0o600)
    path.write_text("1 not base64!\n")
    r = verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), *args)
    assert r.returncode == 2 and "line 1 is malformed" in r.stderr and r.stdout == ""
    # A last line a crash cut short (no newline) was never acknowledged: ignored, and the next record appends.
    path.write_text(f"{int(time.time()) + 999} YWJj\n{int(time.time()) + 999} ZGVm")
    r = verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), *args)
    assert r.returncode == 0, r.stderr
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 2
    r = verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), *args)
    assert r.returncode == 0, r.stderr
    # A symbolic link is not followed (O_NOFOLLOW): the record cannot be redirected.
    link = tmp_path / "link"
    link.symlink_to(path)
    r = verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), "--method", "POST",
                   "--url", DEPLOY_URL, "--dpop-replay-file", str(link))
    assert r.returncode == 2 and r.stdout == ""


def test_c_library_verifies_with_a_proof_and_refuses_replays(broker, bound):
    token, key_file, token_file = bound
    lib = VerifyLib(str(verify_lib_path()))
    jwks = broker.request("GET", "/.well-known/jwks.json").json
    h = lib.new({"issuer": broker.url, "audiences": ["deploy-api"], "leeway": 30, "max_lifetime": 3600}, jwks)
    try:
        now = int(time.time())
        presentation = {"proof": cli_proof(broker, key_file, token_file), "method": "POST", "url": DEPLOY_URL}
        rc, text, detail = lib.verify(h, token, now, {"stage": "production"}, presentation)
        assert rc == STAGEPASS_OK, detail
        assert json.loads(text)["cnf"] == claims(token)["cnf"]
        rc, _, _ = lib.verify(h, token, now, {"stage": "production"}, presentation)
        assert lib.name(rc) == "dpop_replayed"
        rc, _, _ = lib.verify(h, token, now, {"stage": "production"})
        assert lib.name(rc) == "dpop_required"
        other = python_proof(ec.generate_private_key(ec.SECP256R1()), "POST", DEPLOY_URL, token)
        rc, _, _ = lib.verify(h, token, now, None, {"proof": other, "method": "POST", "url": DEPLOY_URL})
        assert lib.name(rc) == "dpop_key_mismatch"
        # A fresh proof by the right key still works after the refusals.
        fresh = {"proof": cli_proof(broker, key_file, token_file), "method": "POST", "url": DEPLOY_URL}
        assert lib.verify(h, token, now, None, fresh)[0] == STAGEPASS_OK
    finally:
        lib.free(h)


def test_broker_refuses_a_replayed_token_request_proof(broker, client):
    """The token endpoint records each proof it accepted (RFC 9449 §11.1) in its store."""
    name, secret = client
    approver = broker.add_user("approver2", ["release-managers"])
    d = broker.start_request(name, secret, "deployer", "production", "gh-2002", triggered_by="someone-else").json
    session = broker.sign_in(approver)
    r = broker.request("POST", f"/v1/approvals/{d['user_code']}/approve", json_body={}, token=session,
                       template="/v1/approvals/{code}/approve")
    assert r.status == 200, r.text
    key = ec.generate_private_key(ec.SECP256R1())
    proof = python_proof(key, "POST", broker.url + "/v1/token", None)
    time.sleep(2)  # the poll interval
    r = broker.poll(name, secret, d["device_code"], dpop=proof)
    assert r.status == 200, r.text
    assert r.json["token_type"] == "DPoP"
    thumb_jwk = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))["jwk"]
    canonical = json.dumps({k: thumb_jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    assert claims(r.json["access_token"])["cnf"]["jkt"] == b64u(hashlib.sha256(canonical.encode()).digest())
    # The same proof on another run's poll: refused, whatever the request.
    d2 = broker.start_request(name, secret, "deployer", "production", "gh-2003", triggered_by="someone-else").json
    r = broker.poll(name, secret, d2["device_code"], dpop=proof)
    assert r.status == 400 and r.json["error"] == "invalid_dpop_proof"
    # A proof for another URL: refused.
    wrong = python_proof(key, "POST", "https://elsewhere.test/v1/token", None)
    time.sleep(2)
    r = broker.poll(name, secret, d2["device_code"], dpop=wrong)
    assert r.status == 400 and r.json["error"] == "invalid_dpop_proof"


def test_discovery_names_the_dpop_algorithms(broker):
    d = broker.request("GET", "/.well-known/openid-configuration").json
    assert d["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]


def test_cli_replay_file_drops_expired_proofs(broker, bound, tmp_path):
    token, key_file, token_file = bound
    path = tmp_path / "replay"
    now = int(time.time())
    live = f"{now + 999} {b64u(b'live proof')}\n"
    path.write_text("".join(f"{now - 10} {b64u(f'old {i}'.encode())}\n" for i in range(300)) + live)
    os.chmod(path, 0o600)
    r = verify_cli(broker, token, "--dpop-proof", cli_proof(broker, key_file, token_file), "--method", "POST",
                   "--url", DEPLOY_URL, "--dpop-replay-file", str(path))
    assert r.returncode == 0, r.stderr
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and live.strip() in lines
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
