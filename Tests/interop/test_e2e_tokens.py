"""End-to-end: scoped tokens from a real broker.

Each module starts `stagepass serve` on a free loopback port with a policy written here, and stops it by PID.
Every response is checked against Specs/openapi.yaml as it arrives.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

import openapi_check
from broker import Broker, claims, policy
from conftest import stagepass_bin_path

pytestmark = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(str(stagepass_bin_path()), tmp_path_factory.mktemp("e2e-tokens"), policy(approvers=2),
                recorder=openapi_check.check) as b:
        yield b


@pytest.fixture(scope="module")
def client(broker):
    return "acme-web", broker.add_client("acme-web")


def verify_cli(broker: Broker, token: str, *extra: str) -> subprocess.CompletedProcess:
    return broker.cli("verify", "--jwks", broker.url + "/.well-known/jwks.json", "--issuer", broker.url,
                      "--audience", "deploy-api", *extra, stdin=token, check=False)


def test_discovery_and_jwks(broker):
    d = broker.request("GET", "/.well-known/openid-configuration").json
    assert d["issuer"] == broker.url
    assert d["jwks_uri"] == broker.url + "/.well-known/jwks.json"
    assert d["token_endpoint"] == broker.url + "/v1/token"
    assert d["device_authorization_endpoint"] == broker.url + "/v1/device_authorization"
    assert set(d["grant_types_supported"]) == {"urn:ietf:params:oauth:grant-type:token-exchange",
                                               "urn:ietf:params:oauth:grant-type:device_code"}
    assert d["status_list_uri"] == broker.url + "/v1/statuslists/1"
    r = broker.request("GET", "/.well-known/jwks.json")
    assert r.content_type == "application/jwk-set+json"
    max_age = int(r.headers["cache-control"].split("max-age=")[1])
    assert 0 < max_age < 86400
    assert all("d" not in k for k in r.json["keys"]) and len(r.json["keys"]) >= 2  # active + next, public only


def test_production_needs_a_fresh_totp_then_lives_five_minutes(broker):
    rita = broker.add_user("rita", ["release-managers"], backup_codes=True)
    session = broker.sign_in(rita, backup=True)  # a backup code does not count for production
    r = broker.exchange(session, "deployer", "production")
    assert r.status == 400 and r.json["error"] == "insufficient_user_authentication", r.text
    assert r.json["max_age"] == 300
    assert "urn:stagepass:acr:totp" in r.json["acr_values"].split()
    # The administrator-started TOTP enrolment is still pending (she signed in with a backup code): a pending
    # factor proves nothing until confirmed, which the fresh backup-code proof authorises.
    r = broker.request("POST", "/v1/auth/step-up", json_body={"method": "totp", "code": rita.code()}, token=session)
    assert r.status == 409 and r.json["code"] == "no_factor", r.text
    r = broker.request("POST", "/v1/factors/totp/confirm", json_body={"code": rita.code()}, token=session)
    assert r.status == 200 and r.json["state"] == "active", r.text
    broker.step_up(session, rita)
    r = broker.exchange(session, "deployer", "production")
    assert r.status == 200, r.text
    assert r.json["token_type"] == "Bearer"
    assert r.json["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    token = r.json["access_token"]
    c = claims(token)
    assert c["exp"] - c["iat"] <= 300 and r.json["expires_in"] <= 300
    assert c["sub"] == "rita" and c["role"] == "deployer" and c["stage"] == "production"
    assert set(c["amr"]) >= {"pwd", "otp"} and isinstance(c["auth_time"], int) and c["sid"]
    v = verify_cli(broker, token, "--role", "deployer", "--stage", "production")
    assert v.returncode == 0, v.stderr
    # The audit names both factors, role, stage, audience and jti.
    events = [json.loads(line) for line in broker.cli("audit", "export", "--data", str(broker.data)).stdout.splitlines()]
    issue = next(e["event"] for e in events if e["event"]["action"] == "token.issue"
                 and e["event"]["details"].get("jti") == c["jti"])
    assert issue["actor"] == "rita" and "pwd" in issue["factors"] and "otp" in issue["factors"]
    assert issue["details"]["stage"] == "production" and issue["details"]["audience"] == "deploy-api"


def test_roles_groups_stages_and_audiences_are_enforced(broker):
    dev = broker.add_user("devon", ["developers"])
    s = broker.sign_in(dev)
    r = broker.exchange(s, "deployer", "staging")  # not in release-managers
    assert r.status == 400 and r.json["error"] == "invalid_scope", r.text
    r = broker.exchange(s, "builder", "production")  # the role does not list production
    assert r.status == 400 and r.json["error"] == "invalid_scope", r.text
    r = broker.exchange(s, "builder", "build", audience="other-api")
    assert r.status == 400 and r.json["error"] == "invalid_target", r.text
    r = broker.exchange("sps_not-a-session", "builder", "build")
    assert r.status == 400 and r.json["error"] == "invalid_grant"
    r = broker.exchange(s, "builder", "build")
    assert r.status == 200
    assert claims(r.json["access_token"])["exp"] - claims(r.json["access_token"])["iat"] == 3600
    # Refusals and issuances are counted by grant and outcome.
    metrics = broker.request("GET", "/metrics").text
    assert 'stagepass_token_requests_total{grant="token-exchange",result="invalid_scope"}' in metrics
    assert 'stagepass_token_requests_total{grant="token-exchange",result="issued"}' in metrics
    # A repeated parameter is refused (RFC 6749 §3.2).
    r = broker.request("POST", "/v1/token", form=[("grant_type", "x"), ("grant_type", "y")])
    assert r.status == 400 and r.json["error"] == "invalid_request"


def test_two_approvers_and_the_trigger_cannot_approve(broker, client):
    name, secret = client
    trig = broker.add_user("trig", ["release-managers"])
    a1 = broker.add_user("appr1", ["release-managers"])
    a2 = broker.add_user("appr2", ["release-managers"])
    d = broker.start_request(name, secret, "deployer", "release", "run-77", commit="abc123", triggered_by="trig")
    assert d.status == 200, d.text
    code = d.json["user_code"]
    tmpl = "/v1/approvals/{code}/approve"
    st = broker.sign_in(trig)
    r = broker.request("POST", f"/v1/approvals/{code}/approve", json_body={}, token=st, template=tmpl)
    assert r.status == 403 and r.json["code"] == "forbidden", r.text
    s1 = broker.sign_in(a1)
    view = broker.request("GET", f"/v1/approvals/{code}", token=s1, template="/v1/approvals/{code}")
    assert view.json["run_id"] == "run-77" and view.json["commit"] == "abc123" and view.json["approvers_needed"] == 2
    r = broker.request("POST", f"/v1/approvals/{code}/approve", json_body={}, token=s1, template=tmpl)
    assert r.status == 200 and r.json["state"] == "pending" and r.json["approvals"] == 1, r.text
    assert broker.poll(name, secret, d.json["device_code"]).json["error"] == "authorization_pending"
    r = broker.request("POST", f"/v1/approvals/{code}/approve", json_body={}, token=s1, template=tmpl)
    assert r.status == 409, r.text  # the same human twice does not count
    s2 = broker.sign_in(a2)
    r = broker.request("POST", f"/v1/approvals/{code}/approve", json_body={}, token=s2, template=tmpl)
    assert r.status == 200 and r.json["state"] == "approved", r.text
    time.sleep(2.1)  # the poll interval
    t = broker.poll(name, secret, d.json["device_code"])
    assert t.status == 200, t.text
    c = claims(t.json["access_token"])
    assert len(c["approvals"]) == 2 and c["sub"] == "appr2"
    assert c["act"] == {"sub": name, "run_id": "run-77"} and c["client_id"] == name
    events = [json.loads(x)["event"] for x in broker.cli("audit", "export", "--data", str(broker.data)).stdout.splitlines()]
    released = [e for e in events if e["action"] == "request.approved" and e["details"].get("request") == d.json["request_id"]]
    assert released and released[0]["details"]["approvers"] == "appr1,appr2"


def read_code(proc: subprocess.Popen) -> str:
    for line in proc.stderr:
        if "code:" in line:
            return line.split("code:")[1].strip()
    raise AssertionError("stagepass request printed no code")


def test_pipeline_request_approved_with_the_cli(broker, client, tmp_path):
    name, secret = client
    approver = broker.add_user("approver", ["release-managers"])
    proc = subprocess.Popen(
        [broker.bin, "request", "--broker", broker.url, "--client", name, "--client-secret-env", "SP_SECRET",
         "--audience", "deploy-api", "--role", "deployer", "--stage", "production", "--run-id", "gh-1001",
         "--commit", "deadbeef", "--triggered-by", "someone-else"],
        env=broker.environment({"SP_SECRET": secret}), cwd=broker.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        code = read_code(proc)
        sf = broker.session_file(approver, tmp_path / "session.json")
        out = broker.cli("approve", code, "--session-file", str(sf))
        assert "approved" in out.stdout
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    token = stdout.strip()
    assert token.count(".") == 2 and "\n" not in token  # only the JWT on stdout
    c = claims(token)
    assert c["sub"] == "approver" and c["act"] == {"sub": name, "run_id": "gh-1001"} and c["commit"] == "deadbeef"
    v = verify_cli(broker, token, "--role", "deployer", "--stage", "production", "--pipeline", "acme-*")
    assert v.returncode == 0, v.stderr


def test_denied_request_ends_in_access_denied(broker, client, tmp_path):
    name, secret = client
    boss = broker.add_user("boss", ["release-managers"])
    proc = subprocess.Popen(
        [broker.bin, "request", "--broker", broker.url, "--client", name, "--client-secret-env", "SP_SECRET",
         "--audience", "deploy-api", "--role", "deployer", "--stage", "production", "--run-id", "gh-1002",
         "--triggered-by", "ci-bot"],
        env=broker.environment({"SP_SECRET": secret}), cwd=broker.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        code = read_code(proc)
        sf = broker.session_file(boss, tmp_path / "boss.json")
        broker.cli("deny", code, "--session-file", str(sf), "--reason", "freeze")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1 and stdout == ""
    assert "access_denied" in stderr and "freeze" in stderr


def test_polling_too_fast_gets_slow_down(broker, client):
    name, secret = client
    d = broker.start_request(name, secret, "deployer", "production", "run-fast", triggered_by="ci-bot").json
    assert broker.poll(name, secret, d["device_code"]).json["error"] == "authorization_pending"
    r = broker.poll(name, secret, d["device_code"])
    assert r.status == 400 and r.json["error"] == "slow_down"
    assert broker.poll(name, secret, d["device_code"]).json["error"] == "slow_down"  # interval grew by 5 s
    assert broker.start_request(name, "wrong", "deployer", "production", "x").status == 401


def test_unanswered_request_expires(tmp_path):
    with Broker(str(stagepass_bin_path()), tmp_path / "short", policy(request_lifetime="2s"),
                recorder=openapi_check.check) as b:
        secret = b.add_client("acme-web")
        d = b.start_request("acme-web", secret, "deployer", "production", "run-late", triggered_by="ci-bot")
        assert d.json["expires_in"] == 2
        time.sleep(3)
        r = b.poll("acme-web", secret, d.json["device_code"])
        assert r.status == 400 and r.json["error"] == "expired_token", r.text


def test_tokens_verify_with_joserfc_against_the_discovered_jwks(broker):
    u = broker.add_user("jose", ["developers"])
    token = broker.exchange(broker.sign_in(u), "builder", "build").json["access_token"]
    jwks_uri = broker.request("GET", "/.well-known/openid-configuration").json["jwks_uri"]
    assert jwks_uri.startswith(broker.url)
    keys = KeySet.import_key_set(broker.request("GET", "/.well-known/jwks.json").json)
    tok = jose_jwt.decode(token, keys, algorithms=["ES256", "EdDSA", "RS256", "PS256"])
    assert tok.header["typ"] == "at+jwt"
    assert tok.claims["sub"] == "jose" and tok.claims["iss"] == broker.url and tok.claims["aud"] == "deploy-api"
    jose_jwt.JWTClaimsRegistry(iss={"essential": True, "value": broker.url},
                               aud={"essential": True, "value": "deploy-api"}).validate(tok.claims)
