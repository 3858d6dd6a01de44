"""End-to-end: `stagepass guard` answering a real nginx's `auth_request` in front of a small upstream, with tokens
from a real broker: allowed, refused (no token, wrong audience, wrong stage), revoked through the broker (picked up
by the guard's background status-list refresh), and failing closed when the status list cannot be had."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from broker import Broker, claims, policy
from conftest import stagepass_bin_path
from guard import DPoPKey, Guard, Nginx, Upstream, http


def guard_policy() -> str:
    # Status lists cached for 1 s, so the guard re-fetches every second; builders may also ask for other-api tokens
    # (the wrong audience for this endpoint).
    text = (policy()
            .replace("status_list_ttl: 60s", "status_list_ttl: 1s")
            .replace("builder: {groups: [developers], stages: [build, staging], audiences: [deploy-api]}",
                     "builder: {groups: [developers], stages: [build, staging], audiences: [deploy-api, other-api]}"))
    assert "status_list_ttl: 1s" in text and "audiences: [deploy-api, other-api]" in text
    return text


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """broker → (JWKS, status list) → guard ← nginx auth_request; nginx → upstream."""
    bin_path = str(stagepass_bin_path())
    work = tmp_path_factory.mktemp("e2e-guard")
    with Broker(bin_path, work / "broker", guard_policy()) as broker:
        args = ["--trust-forwarded", "nginx", "--jwks", broker.url + "/.well-known/jwks.json",
                "--issuer", broker.url, "--audience", "deploy-api", "--role", "builder", "--stage", "build",
                "--status-list", broker.url + "/v1/statuslists/1", "--status-max-age", "60",
                "--no-token-cache"]
        with Guard(bin_path, work / "guard", args) as guard, Upstream() as upstream, \
                Nginx(work / "nginx", guard.port, upstream.port) as nginx:
            yield broker, guard, upstream, nginx


def deploy(nginx: Nginx, token: str | None, extra: dict | None = None, method: str = "POST"):
    headers = dict(extra or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http(method, nginx.url + "/deploy/web?run=1", headers=headers,
                data=b"release.tar.gz" if method == "POST" else None)


def test_allowed_request_reaches_the_upstream_with_the_verified_identity(stack):
    broker, guard, upstream, nginx = stack
    dev = broker.add_user("guard-dev", ["developers"])
    session = broker.sign_in(dev)
    r = broker.exchange(session, "builder", "build")
    assert r.status == 200, r.text
    token = r.json["access_token"]

    before = len(upstream.requests)
    # A client-supplied identity header is replaced by nginx with the guard's.
    resp = deploy(nginx, token, {"X-Stagepass-Subject": "mallory"})
    assert resp.status == 200, resp.text
    seen = resp.json
    assert seen["method"] == "POST" and seen["path"] == "/deploy/web?run=1" and seen["body"] == "release.tar.gz"
    headers = {k.lower(): v for k, v in seen["stagepass"].items()}
    assert headers["x-stagepass-subject"] == "guard-dev"
    assert headers["x-stagepass-role"] == "builder"
    assert headers["x-stagepass-stage"] == "build"
    assert len(upstream.requests) == before + 1

    # The guard answers the same verdict to the subrequest directly, with every identity header.
    direct = http("GET", guard.url + "/auth", headers={
        "Authorization": f"Bearer {token}", "X-Original-Method": "POST", "X-Original-URI": "/deploy/web",
        "X-Forwarded-Proto": "http", "X-Forwarded-Host": "deploy.example"})
    assert direct.status == 200
    assert direct.headers["x-stagepass-subject"] == "guard-dev"
    assert direct.headers["x-stagepass-token-id"] == claims(token)["jti"]
    assert int(direct.headers["x-stagepass-expires"]) == claims(token)["exp"]


def test_refused_requests_never_reach_the_upstream(stack):
    broker, guard, upstream, nginx = stack
    dev = broker.add_user("guard-refused", ["developers"])
    session = broker.sign_in(dev)
    wrong_audience = broker.exchange(session, "builder", "build", audience="other-api")
    assert wrong_audience.status == 200, wrong_audience.text
    wrong_stage = broker.exchange(session, "builder", "staging")
    assert wrong_stage.status == 200, wrong_stage.text

    before = len(upstream.requests)
    none = deploy(nginx, None)
    assert none.status == 401
    # nginx passes the guard's challenge on (RFC 6750 §3: no error code without credentials).
    assert none.headers["www-authenticate"].startswith('Bearer realm="stagepass"')
    assert 'DPoP realm="stagepass", algs=' in none.headers["www-authenticate"]

    aud = deploy(nginx, wrong_audience.json["access_token"])
    assert aud.status == 401
    assert 'error="invalid_token"' in aud.headers["www-authenticate"]
    assert "wrong_audience" in aud.headers["www-authenticate"]

    stage = deploy(nginx, wrong_stage.json["access_token"])
    assert stage.status == 403

    garbage = deploy(nginx, "not-a-token")
    assert garbage.status == 401 and 'error="invalid_token"' in garbage.headers["www-authenticate"]
    assert len(upstream.requests) == before, "no refused request reached the upstream"

    # The reasons, as the guard states them (nginx shows its own error page, not the problem body).
    direct = http("GET", guard.url + "/auth", headers={
        "Authorization": f"Bearer {wrong_stage.json['access_token']}", "X-Original-Method": "POST",
        "X-Original-URI": "/deploy/web", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "deploy.example"})
    assert direct.status == 403 and direct.content_type == "application/problem+json"
    assert direct.json["code"] == "insufficient_scope" and direct.json["reason"] == "stage_mismatch"
    assert 'error="insufficient_scope"' in direct.headers["www-authenticate"]


def test_revocation_through_the_broker_reaches_the_guard(stack):
    broker, guard, upstream, nginx = stack
    dev = broker.add_user("guard-revoked", ["developers"])
    session = broker.sign_in(dev)
    token = broker.exchange(session, "builder", "build").json["access_token"]
    other = broker.exchange(session, "builder", "build").json["access_token"]
    assert deploy(nginx, token).status == 200

    r = broker.request("POST", "/v1/revocations", json_body={"jti": claims(token)["jti"]}, token=session)
    assert r.status == 200 and r.json["revoked"] == 1, r.text

    # The guard re-fetches the list in the background (ttl 1 s); no restart, no request waits for it.
    deadline = time.time() + 30
    while time.time() < deadline and deploy(nginx, token).status != 401:
        time.sleep(0.2)
    refused = deploy(nginx, token)
    assert refused.status == 401, "the revocation did not reach the guard within 30 s"
    assert "revoked" in refused.headers["www-authenticate"]
    assert deploy(nginx, other).status == 200, "only the revoked token is refused"


def test_guard_fails_closed_without_its_status_list(stack, tmp_path):
    """A guard whose status list cannot be fetched refuses every token (503; nginx answers 500): never 200."""
    broker, _, upstream, _ = stack
    dev = broker.add_user("guard-closed", ["developers"])
    token = broker.exchange(broker.sign_in(dev), "builder", "build").json["access_token"]
    args = ["--trust-forwarded", "nginx", "--jwks", broker.url + "/.well-known/jwks.json", "--issuer", broker.url,
            "--audience", "deploy-api", "--status-list", broker.url + "/v1/statuslists/999"]
    with Guard(str(stagepass_bin_path()), tmp_path / "guard", args).start(wait="/healthz") as closed, \
            Nginx(tmp_path / "nginx", closed.port, upstream.port) as nginx:
        assert http("GET", closed.url + "/readyz").status == 503
        before = len(upstream.requests)
        r = deploy(nginx, token)
        assert r.status == 500, r.status  # nginx: any auth_request answer but 2xx/401/403 is an error
        assert len(upstream.requests) == before
        direct = http("GET", closed.url + "/auth", headers={
            "Authorization": f"Bearer {token}", "X-Original-Method": "GET", "X-Original-URI": "/deploy",
            "X-Forwarded-Proto": "http", "X-Forwarded-Host": "deploy.example"})
        assert direct.status == 503 and direct.json["code"] == "status_unavailable"


def test_guard_refuses_a_non_loopback_listener_and_unknown_header_sets(stack, tmp_path):
    broker = stack[0]
    base = [str(stagepass_bin_path()), "guard", "--jwks", broker.url + "/.well-known/jwks.json", "--issuer",
            broker.url, "--audience", "deploy-api"]
    r = subprocess.run(base + ["--trust-forwarded", "nginx", "--listen", "0.0.0.0:9"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "not a loopback address" in r.stderr
    r = subprocess.run(base + ["--trust-forwarded", "cloudflare"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--trust-forwarded must be nginx or forwarded" in r.stderr
    r = subprocess.run(base + ["--trust-forwarded", "nginx", "--leeway", "9999"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2


def test_dpop_replayed_requests_are_refused(stack, tmp_path):
    """A DPoP-bound token (cnf.jkt, RFC 9449 §6.1) through nginx: a request with a fresh proof for its method and URL
    passes; the same proof again is refused (the guard's replay cache), as are a proof for another URL and the bound
    token presented as Bearer. The proofs are made here with `cryptography`, not by Stagepass code."""
    _, _, upstream, _ = stack
    bin_path = str(stagepass_bin_path())
    key = tmp_path / "issuer.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
                   check=True, capture_output=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(subprocess.run([bin_path, "dev-jwks", "--key", str(key)], check=True, capture_output=True,
                                   text=True).stdout)
    holder = DPoPKey()
    now = int(time.time())
    token_claims = {"iss": "https://dpop.test", "sub": "rita", "aud": "deploy-api", "iat": now, "exp": now + 300,
                    "jti": "dpop-e2e-1", "role": "deployer", "stage": "production", "cnf": {"jkt": holder.thumbprint()}}
    token = subprocess.run([bin_path, "dev-sign", "--key", str(key), "--alg", "ES256", "--claims",
                            json.dumps(token_claims)], check=True, capture_output=True, text=True).stdout.strip()
    args = ["--trust-forwarded", "nginx", "--jwks", str(jwks), "--issuer", "https://dpop.test",
            "--audience", "deploy-api", "--stage", "production"]
    with Guard(bin_path, tmp_path / "guard", args) as g, Nginx(tmp_path / "nginx", g.port, upstream.port) as nginx:
        url = nginx.url + "/deploy/web"

        def send(proof: str | None, scheme: str = "DPoP"):
            headers = {"Authorization": f"{scheme} {token}"}
            if proof:
                headers["DPoP"] = proof
            return http("POST", url + "?run=1", headers=headers, data=b"release")

        before = len(upstream.requests)
        proof = holder.proof("POST", url, token)
        ok = send(proof)
        assert ok.status == 200, (ok.status, ok.headers)
        assert ok.json["stagepass"]["X-Stagepass-Subject"] == "rita"

        replayed = send(proof)
        assert replayed.status == 401
        challenge = replayed.headers["www-authenticate"]
        assert 'DPoP realm="stagepass", algs="ES256 EdDSA", error="invalid_dpop_proof"' in challenge, challenge
        assert "dpop_replayed" in challenge

        elsewhere = send(holder.proof("POST", nginx.url + "/deploy/other", token))
        assert elsewhere.status == 401 and "bad_dpop_proof" in elsewhere.headers["www-authenticate"]
        as_bearer = send(None, scheme="Bearer")
        assert as_bearer.status == 401 and "dpop_required" in as_bearer.headers["www-authenticate"]
        assert len(upstream.requests) == before + 1, "only the first request reached the upstream"


def test_broker_issued_dpop_token_through_nginx(stack):
    """The broker binds a token to the client's key at the token endpoint (a DPoP proof there, RFC 9449 §5); through
    nginx and the guard that token passes once per proof and never as a Bearer token."""
    broker, _, upstream, nginx = stack
    dev = broker.add_user("guard-dpop", ["developers"])
    session = broker.sign_in(dev)
    holder = DPoPKey()
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": session,
            "subject_token_type": "urn:stagepass:params:oauth:token-type:session", "audience": "deploy-api",
            "role": "builder", "stage": "build"}
    r = broker.request("POST", "/v1/token", form=form,
                       headers={"DPoP": holder.proof("POST", broker.url + "/v1/token", None)})
    assert r.status == 200, r.text
    assert r.json["token_type"] == "DPoP"
    token = r.json["access_token"]
    assert claims(token)["cnf"]["jkt"] == holder.thumbprint()

    url = nginx.url + "/deploy/web"
    before = len(upstream.requests)
    proof = holder.proof("POST", url, token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    ok = http("POST", url, headers=headers, data=b"release")
    assert ok.status == 200, (ok.status, ok.headers)
    assert ok.json["stagepass"]["X-Stagepass-Subject"] == "guard-dpop"
    replayed = http("POST", url, headers=headers, data=b"release")
    assert replayed.status == 401 and "dpop_replayed" in replayed.headers["www-authenticate"]
    bearer = http("POST", url, headers={"Authorization": f"Bearer {token}"}, data=b"release")
    assert bearer.status == 401 and "dpop_required" in bearer.headers["www-authenticate"]
    assert len(upstream.requests) == before + 1
