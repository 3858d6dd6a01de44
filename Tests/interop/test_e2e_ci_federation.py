"""End-to-end: pipelines without secrets. A job proves who it is with its CI platform's OIDC token.

Three test CI issuers run on loopback (discovery + JWKS, keys rotating), shaped like GitHub Actions, GitLab CI and
Buildkite. A real broker trusts them through its policy; `stagepass request` finds each platform's token the way it
does in a real job, a human approves with a fresh TOTP, and the job's token names the CI run in `act`. Every refusal
the feature promises is exercised over HTTP: wrong issuer, wrong audience, expired, replayed (also after a
restart), name matching but id not, untrusted event, unprotected ref for production, unknown kid after one re-fetch,
and an unreachable issuer.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import pytest

import openapi_check
from broker import Broker, claims
from ci_issuer import CIIssuer, Key
from conftest import stagepass_bin_path

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
AUD = "https://stagepass.ci.test"


def ci_policy(gh: CIIssuer, gl: CIIssuer, bk: CIIssuer) -> str:
    return f"""
tokens: {{max_ttl: 1h, request_lifetime: 10m, poll_interval: 1s, admin_mfa_max_age: 5m, admin_groups: [admins]}}
mfa: {{factors: [totp, webauthn, backup]}}
audiences:
  deploy-api: {{description: The deploy API}}
stages:
  staging: {{max_ttl: 30m, mfa_max_age: 12h, approval: delegated, max_window: 8h}}
  production: {{max_ttl: 5m, mfa_max_age: 5m, factors: [totp, webauthn], approval: per_run, approvers: 1}}
  release:
    max_ttl: 5m
    mfa_max_age: 5m
    factors: [totp, webauthn]
    approval: per_run
    allow_self_approval: false
roles:
  deployer: {{groups: [release-managers], stages: [staging, production, release], audiences: [deploy-api]}}
ci_issuers:
  github: {{issuer: "{gh.url}", audience: "{AUD}", claims: github, fetch_timeout: 2s}}
  gitlab: {{issuer: "{gl.url}", audience: "{AUD}", claims: gitlab, fetch_timeout: 2s}}
  buildkite: {{issuer: "{bk.url}", audience: "{AUD}", claims: buildkite, fetch_timeout: 2s}}
ci_guardrails:
  protected_ref_stages: [production, release]
pipelines:
  octo-deploy:
    roles: [deployer]
    ci:
      issuer: github
      repository: octo-org/octo-repo
      repository_id: "1296269"
      owner_id: "65432"
      workflow_ref: "octo-org/octo-repo/.github/workflows/deploy.yml@*"
  gl-deploy:
    ci: {{issuer: gitlab, repository: mygroup/myproject, repository_id: "20", owner_id: "72", ref: main}}
  bk-deploy:
    ci:
      issuer: buildkite
      repository: deploy-web
      repository_id: 0184990a-bbbb-4fa8-9968-496074483cee
      owner_id: 0184990a-aaaa-4fa8-9968-496074483cee
      ref: main        # Buildkite does not say whether a ref is protected: the rule names it
identities:
  "github:octocat": olivia
"""


@pytest.fixture(scope="module")
def issuers():
    with CIIssuer(AUD) as gh, CIIssuer(AUD) as gl, CIIssuer(AUD) as bk:
        yield gh, gl, bk


@pytest.fixture(scope="module")
def broker(tmp_path_factory, issuers):
    gh, gl, bk = issuers
    with Broker(str(stagepass_bin_path()), tmp_path_factory.mktemp("e2e-ci"), ci_policy(gh, gl, bk),
                recorder=openapi_check.check) as b:
        b.rita = b.add_user("rita", ["release-managers"])
        b.olivia = b.add_user("olivia", ["release-managers"])
        yield b


def start(broker: Broker, token: str, stage: str = "production", **extra):
    return broker.request("POST", "/v1/device_authorization",
                          form={"audience": "deploy-api", "role": "deployer", "stage": stage,
                                "client_assertion_type": ASSERTION_TYPE, "client_assertion": token, **extra})


def approve(broker: Broker, user, code: str):
    s = broker.sign_in(user)  # password + TOTP: a fresh second factor
    r = broker.request("POST", f"/v1/approvals/{code}/approve", json_body={}, token=s,
                       template="/v1/approvals/{code}/approve")
    return r


def poll(broker: Broker, client: str, device_code: str):
    return broker.request("POST", "/v1/token", form={
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": device_code, "client_id": client})


def read_code(proc: subprocess.Popen) -> str:
    for line in proc.stderr:
        if "code:" in line:
            return line.split("code:")[1].strip()
    raise AssertionError("stagepass request printed no code")


def run_request(broker: Broker, env: dict, stage: str = "production", *extra: str) -> str:
    """`stagepass request` as a CI job runs it (no secret), approved by rita with TOTP; returns the JWT."""
    proc = subprocess.Popen(
        [broker.bin, "request", "--broker", broker.url, "--audience", "deploy-api", "--role", "deployer",
         "--stage", stage, "--ci-audience", AUD, *extra],
        env=broker.environment(env), cwd=broker.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        code = read_code(proc)
        r = approve(broker, broker.rita, code)
        assert r.status == 200 and r.json["state"] == "approved", r.text
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    token = stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    return token


def verify_cli(broker: Broker, token: str, *extra: str) -> subprocess.CompletedProcess:
    return broker.cli("verify", "--jwks", broker.url + "/.well-known/jwks.json", "--issuer", broker.url,
                      "--audience", "deploy-api", *extra, stdin=token, check=False)


def audit_events(broker: Broker) -> list[dict]:
    out = broker.cli("audit", "export", "--data", str(broker.data)).stdout
    return [json.loads(x)["event"] for x in out.splitlines()]


# --- each platform gets a production token with no stored secret ---------------------------------------------------

def test_github_actions_job_gets_a_production_token_approved_per_run(broker, issuers):
    gh, _, _ = issuers
    env = {"GITHUB_ACTIONS": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": gh.url + "/github-token?api-version=2.0",
           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": CIIssuer.GITHUB_REQUEST_BEARER}
    token = run_request(broker, env)
    c = claims(token)
    assert c["sub"] == "rita" and c["client_id"] == "octo-deploy" and c["stage"] == "production"
    act = c["act"]
    assert act["sub"] == "octo-deploy" and act["ci_iss"] == gh.url
    assert act["repository"] == "octo-org/octo-repo" and act["repository_id"] == "1296269"
    assert act["run_id"] == "5067897711" and act["commit"] == "ed3b3f1a1ea2c03f2b5d8a3e7c1f7c4a5c7d8e9f"
    assert verify_cli(broker, token, "--role", "deployer", "--stage", "production", "--pipeline", "octo-*").returncode == 0
    # The audit record names the issuer, the matched rule and the claims used, never the CI token.
    starts = [e for e in audit_events(broker) if e["action"] == "request.start" and e["details"].get("ci_issuer") == gh.url]
    assert starts and starts[-1]["details"]["client"] == "octo-deploy"
    assert json.loads(starts[-1]["details"]["ci_claims"])["repository_id"] == "1296269"


def test_github_without_id_token_permission_is_told_what_to_add(broker):
    proc = broker.cli("request", "--broker", broker.url, "--audience", "deploy-api", "--role", "deployer",
                      "--stage", "production", env={"GITHUB_ACTIONS": "true"}, check=False)
    assert proc.returncode != 0 and "id-token: write" in proc.stderr


def test_gitlab_job_with_an_id_tokens_variable(broker, issuers):
    _, gl, _ = issuers
    env = {"GITLAB_CI": "true", "STAGEPASS_ID_TOKEN": gl.sign(gl.gitlab_claims())}
    c = claims(run_request(broker, env))
    assert c["client_id"] == "gl-deploy" and c["act"]["repository"] == "mygroup/myproject"
    assert c["act"]["run_id"] == "574" and c["act"]["ci_iss"] == gl.url


def test_buildkite_job_through_buildkite_agent(broker, issuers, tmp_path):
    _, _, bk = issuers
    token = bk.sign(bk.buildkite_claims())
    agent = tmp_path / "buildkite-agent"
    # A stand-in for the agent: answers only `oidc request-token` with our audience and the immutable-id claims.
    agent.write_text(f"""#!/bin/sh
[ "$1 $2" = "oidc request-token" ] || exit 9
case "$*" in *"--audience {AUD}"*"--claim organization_id,pipeline_id"*) ;; *) exit 8;; esac
echo '{token}'
""")
    agent.chmod(agent.stat().st_mode | stat.S_IEXEC)
    env = {"BUILDKITE": "true", "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    c = claims(run_request(broker, env))
    assert c["client_id"] == "bk-deploy" and c["act"]["run_id"] == "1"
    assert c["act"]["commit"] == "9f3182061f1e2cca4702c368cbc039b7dc9d4485"


def test_ci_token_file_and_named_pipeline(broker, issuers, tmp_path):
    gh, _, _ = issuers
    f = tmp_path / "ci.jwt"
    f.write_text(gh.sign(gh.github_claims()))
    c = claims(run_request(broker, {}, "production", "--ci-token-file", str(f), "--client", "octo-deploy"))
    assert c["client_id"] == "octo-deploy"


def test_the_job_cannot_state_its_own_run_or_commit(broker, issuers):
    gh, _, _ = issuers
    r = start(broker, gh.sign(gh.github_claims()), run_id="999", commit="evil")
    assert r.status == 400 and r.json["error"] == "invalid_request" and "comes from the CI token" in r.text


def test_the_ci_actor_cannot_approve_their_own_run(broker, issuers):
    gh, _, _ = issuers
    d = start(broker, gh.sign(gh.github_claims()), stage="release")
    assert d.status == 200, d.text
    # The approver sees what the CI platform signed (the binding covers it).
    code = d.json["user_code"]
    view = broker.request("GET", f"/v1/approvals/{code}", token=broker.sign_in(broker.rita),
                          template="/v1/approvals/{code}")
    assert view.json["ci_issuer"] == gh.url and view.json["triggered_by"] == "octocat"
    assert view.json["ci_claims"]["repository_id"] == "1296269" and view.json["run_id"] == "5067897711"
    r = approve(broker, broker.olivia, d.json["user_code"])  # identities: github:octocat → olivia
    assert r.status == 403 and r.json["code"] == "forbidden", r.text
    assert approve(broker, broker.rita, d.json["user_code"]).status == 200


def test_the_approval_page_shows_what_the_ci_platform_signed(broker, issuers):
    from test_pages import Browserish, sign_in
    gh, _, _ = issuers
    d = start(broker, gh.sign(gh.github_claims()))
    assert d.status == 200, d.text
    c = Browserish(broker.url)
    sign_in(broker, c, broker.rita)
    status, _, html = c.get("/approve?code=" + d.json["user_code"])
    assert status == 200
    assert 'id="r-ci"' in html and gh.url in html and "repository_id=1296269" in html, html


def test_a_ci_request_is_polled_only_by_its_pipeline(broker, issuers):
    gh, _, _ = issuers
    d = start(broker, gh.sign(gh.github_claims()))
    assert d.status == 200
    assert poll(broker, "octo-deploy", d.json["device_code"]).json["error"] == "authorization_pending"
    assert poll(broker, "gl-deploy", d.json["device_code"]).json["error"] == "invalid_grant"


# --- refusals ------------------------------------------------------------------------------------------------------

def refused(r, code: str, *words: str):
    assert r.status in (400, 401, 503), r.text
    assert r.json["error"] == code, r.text
    for w in words:
        assert w in r.json["error_description"], r.text


def test_refused_wrong_issuer(broker):
    with CIIssuer(AUD) as other:
        refused(start(broker, other.sign(other.github_claims())), "invalid_client", "wrong_issuer",
                "not a trusted CI issuer")


def test_refused_wrong_audience(broker, issuers):
    gh, _, _ = issuers
    refused(start(broker, gh.sign(gh.github_claims(aud="https://elsewhere.example"))), "invalid_client",
            "wrong_audience")


def test_refused_expired(broker, issuers):
    gh, _, _ = issuers
    old = int(time.time()) - 3600
    refused(start(broker, gh.sign(gh.github_claims(now=old))), "invalid_client", "expired")


def test_refused_replayed_jti_also_after_a_restart(broker, issuers):
    gh, _, _ = issuers
    token = gh.sign(gh.github_claims())
    assert start(broker, token).status == 200
    refused(start(broker, token), "invalid_client", "replayed")
    broker.stop()
    broker.start()
    refused(start(broker, token), "invalid_client", "replayed")


def test_refused_name_matching_but_id_not(broker, issuers):
    gh, _, _ = issuers
    r = start(broker, gh.sign(gh.github_claims(repository_id="424242")), client_id="octo-deploy")
    refused(r, "invalid_client", "repository_id '424242' does not match")
    assert "1296269" not in r.text  # the rule's expected id is not disclosed to the job
    deny = [e for e in audit_events(broker) if e["action"] == "request.deny" and "ci_explanation" in e["details"]]
    assert "the rule needs '1296269'" in deny[-1]["details"]["ci_explanation"]


def test_refused_untrusted_event(broker, issuers):
    gh, _, _ = issuers
    refused(start(broker, gh.sign(gh.github_claims(event="pull_request_target")), stage="staging"),
            "invalid_client", "pull_request_target", "never trusted")


def test_refused_unprotected_ref_for_production(broker, issuers):
    gh, _, _ = issuers
    refused(start(broker, gh.sign(gh.github_claims(ref="refs/heads/feature", ref_protected="false"))),
            "invalid_client", "protected ref")


def test_rotated_key_is_fetched_and_an_unknown_kid_refused_after_one_refetch(broker, issuers):
    gh, _, _ = issuers
    assert start(broker, gh.sign(gh.github_claims()), stage="staging").status == 200
    gh.rotate()
    before = gh.jwks_fetches
    # The first token under the new key makes the broker re-fetch once, and is accepted.
    assert start(broker, gh.sign(gh.github_claims()), stage="staging").status == 200
    assert gh.jwks_fetches == before + 1
    # A kid the issuer never published, within 30 s of that re-fetch: refused without another fetch.
    stray = Key()
    r = start(broker, gh.sign(gh.github_claims(), key=stray), stage="staging")
    refused(r, "invalid_client", "unknown_key")
    assert gh.jwks_fetches == before + 1


def test_unknown_kid_makes_exactly_one_refetch_then_is_refused(broker, issuers):
    _, gl, _ = issuers
    assert start(broker, gl.sign(gl.gitlab_claims())).status == 200
    before = gl.jwks_fetches
    stray = Key()
    refused(start(broker, gl.sign(gl.gitlab_claims(), key=stray)), "invalid_client", "unknown_key",
            "even after a re-fetch")
    assert gl.jwks_fetches == before + 1
    refused(start(broker, gl.sign(gl.gitlab_claims(), key=stray)), "invalid_client", "unknown_key", "30 s")
    assert gl.jwks_fetches == before + 1


def test_unreachable_issuer_fails_closed(tmp_path):
    with CIIssuer(AUD) as gh, CIIssuer(AUD) as gl, CIIssuer(AUD) as bk:
        gh.reachable = False
        with Broker(str(stagepass_bin_path()), tmp_path / "b", ci_policy(gh, gl, bk),
                    recorder=openapi_check.check) as b:
            r = start(b, gh.sign(gh.github_claims()))
            refused(r, "temporarily_unavailable", "cannot be had")
            assert "Retry-After" in r.headers or "retry-after" in {k.lower() for k in r.headers}


def test_token_exchange_of_a_ci_token_needs_a_delegation(broker, issuers):
    gh, _, _ = issuers
    form = {"grant_type": TOKEN_EXCHANGE, "subject_token": gh.sign(gh.github_claims()),
            "subject_token_type": ID_TOKEN_TYPE, "audience": "deploy-api", "role": "deployer", "stage": "production"}
    r = broker.request("POST", "/v1/token", form=form)
    refused(r, "unauthorized_client", "needs a human's approval")


# --- policy explain ------------------------------------------------------------------------------------------------

def test_policy_explain_names_the_rule_or_each_first_mismatch(broker, issuers, tmp_path):
    gh, _, _ = issuers
    tok = tmp_path / "t.jwt"
    tok.write_text(gh.sign(gh.github_claims()))
    ok = broker.cli("policy", "explain", str(broker.policy_file), "--ci-token", str(tok), "--role", "deployer",
                    "--stage", "production", "--audience", "deploy-api", check=False)
    assert ok.returncode == 0 and "matched: pipeline 'octo-deploy'" in ok.stdout, ok.stdout + ok.stderr
    bad = tmp_path / "claims.json"
    bad.write_text(json.dumps(gh.github_claims(repository_id="7")))
    no = broker.cli("policy", "explain", str(broker.policy_file), "--claims", str(bad), "--role", "deployer",
                    "--stage", "production", "--audience", "deploy-api", check=False)
    assert no.returncode == 1
    assert "pipeline 'octo-deploy': no: immutable id repository_id is '7', the rule needs '1296269'" in no.stdout
    assert "pipeline 'gl-deploy': no: issued by 'github', the rule trusts 'gitlab'" in no.stdout
