"""End-to-end: every kind of revocation (jti, session, user, key) reaches the live Token Status List, and both
StagepassVerify (through its C ABI) and `stagepass verify --status-list URL` reject the revoked tokens."""

from __future__ import annotations

import json
import time

import pytest

import openapi_check
from broker import Broker, claims, policy
from conftest import stagepass_bin_path, verify_lib_path
from test_conformance_c import STAGEPASS_OK, VerifyLib


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(str(stagepass_bin_path()), tmp_path_factory.mktemp("e2e-revocation"), policy(),
                recorder=openapi_check.check) as b:
        yield b


@pytest.fixture(scope="module")
def lib():
    return VerifyLib(str(verify_lib_path()))


def live_verdicts(broker: Broker, lib: VerifyLib, tokens: dict[str, str], jwks: dict | None = None) -> dict[str, str]:
    """Verifies each token with the C ABI against `jwks` (default: the live JWKS) and the live status list."""
    keys = jwks or broker.request("GET", "/.well-known/jwks.json").json
    h = lib.new({"issuer": broker.url, "audiences": ["deploy-api"], "leeway": 30, "max_lifetime": 3600}, keys)
    try:
        status = broker.request("GET", "/v1/statuslists/1", template="/v1/statuslists/{n}")
        assert status.content_type == "application/statuslist+jwt"
        assert lib.lib.stagepass_verifier_set_status_list(h, status.text.encode(), 0, 0) == STAGEPASS_OK
        out = {}
        for name, tok in tokens.items():
            rc, _, _ = lib.verify(h, tok, 0)
            out[name] = "ok" if rc == STAGEPASS_OK else lib.name(rc)
        return out
    finally:
        lib.free(h)


def cli_verdict(broker: Broker, token: str, jwks: str | None = None) -> tuple[int, str]:
    p = broker.cli("verify", "--jwks", jwks or broker.url + "/.well-known/jwks.json", "--issuer", broker.url,
                   "--audience", "deploy-api", "--status-list", broker.url + "/v1/statuslists/1",
                   stdin=token, check=False)
    return p.returncode, p.stdout + p.stderr


def test_every_revocation_kind(broker, lib, tmp_path):
    d1 = broker.add_user("d1", ["developers"])
    d2 = broker.add_user("d2", ["developers"])
    d3 = broker.add_user("d3", ["developers"])

    def mint(session: str) -> str:
        r = broker.exchange(session, "builder", "build")
        assert r.status == 200, r.text
        return r.json["access_token"]

    f1 = broker.session_file(d1, tmp_path / "d1.json")  # CLI session of d1
    s1 = json.loads(f1.read_text())["token"]
    s1b = broker.sign_in(d1)
    tokens = {"jti": mint(s1), "session": mint(s1b), "user": mint(broker.sign_in(d2)), "key": mint(broker.sign_in(d3))}
    assert live_verdicts(broker, lib, tokens) == {k: "ok" for k in tokens}
    for tok in tokens.values():
        assert cli_verdict(broker, tok)[0] == 0

    # Someone else's token needs an administrator.
    r = broker.request("POST", "/v1/revocations", json_body={"jti": claims(tokens["user"])["jti"]}, token=s1)
    assert r.status == 403 and r.json["code"] == "forbidden"

    # jti: the owner, with the CLI.
    out = broker.cli("revoke", f"--jti={claims(tokens['jti'])['jti']}", "--session-file", str(f1))
    assert "revoked 1" in out.stdout
    # session: the owner ends one of their sessions.
    r = broker.request("POST", "/v1/revocations", json_body={"session": claims(tokens["session"])["sid"]}, token=s1)
    assert r.status == 200 and r.json["revoked"] == 1
    assert broker.request("GET", "/v1/me", token=s1b).status == 401  # that session ended
    # user: an administrator with a fresh factor, with the CLI.
    admin_file = broker.session_file(broker.admin, tmp_path / "admin.json")
    broker.cli("revoke", "--user", "d2", "--reason", "left the team", "--session-file", str(admin_file))

    verdicts = live_verdicts(broker, lib, tokens)
    assert verdicts == {"jti": "revoked", "session": "revoked", "user": "revoked", "key": "ok"}
    for kind in ("jti", "session", "user"):
        code, text = cli_verdict(broker, tokens[kind])
        assert code == 1 and "revoked" in text, text

    # key: compromise the signing key. A verifier still holding the old JWKS sees the signature check out and the
    # live status list say revoked; one that refreshed the JWKS no longer knows the kid at all.
    old_jwks = broker.request("GET", "/.well-known/jwks.json").json
    old_jwks_file = tmp_path / "old-jwks.json"
    old_jwks_file.write_text(json.dumps(old_jwks))
    kid = json.loads(__import__("base64").urlsafe_b64decode(tokens["key"].split(".")[0] + "=="))["kid"]
    out = broker.cli("revoke", f"--kid={kid}", "--session-file", str(admin_file))
    assert "revoked 1" in out.stdout
    assert live_verdicts(broker, lib, tokens, jwks=old_jwks)["key"] == "revoked"
    code, text = cli_verdict(broker, tokens["key"], jwks=str(old_jwks_file))
    assert code == 1 and "revoked" in text, text
    assert live_verdicts(broker, lib, tokens)["key"] == "unknown_key"
    new = broker.request("GET", "/.well-known/jwks.json").json
    assert kid not in {k["kid"] for k in new["keys"]}

    # The list as `stagepass status-list` prints it (signature checked against the JWKS).
    listed = broker.cli("status-list", "--broker", broker.url).stdout.split()
    idx = {kind: str(claims(t)["status"]["status_list"]["idx"]) for kind, t in tokens.items()}
    assert set(idx.values()) <= set(listed)

    # Tokens minted after the compromise are signed by the new key and are valid.
    fresh = mint(broker.sign_in(d3))
    assert live_verdicts(broker, lib, {"fresh": fresh}) == {"fresh": "ok"}

    events = [json.loads(x)["event"] for x in broker.cli("audit", "export", "--data", str(broker.data)).stdout.splitlines()]
    revokes = [e for e in events if e["action"] == "revoke" and e["result"] == "success"]
    assert {e["subject"].split(":")[0] for e in revokes} == {"jti", "session", "user", "kid"}
    assert all(e["factors"] for e in revokes)


def test_stale_admin_must_step_up(tmp_path):
    pol = policy().replace("admin_mfa_max_age: 5m", "admin_mfa_max_age: 5s")
    with Broker(str(stagepass_bin_path()), tmp_path / "stale", pol, recorder=openapi_check.check) as b:
        s = b.sign_in(b.admin)
        time.sleep(6)
        r = b.request("POST", "/v1/revocations", json_body={"user": "nobody"}, token=s)
        assert r.status == 401 and r.json["code"] == "insufficient_user_authentication"
        assert r.json["max_age"] == 5
        assert "insufficient_user_authentication" in r.headers["www-authenticate"]
        r = b.request("POST", "/v1/admin/keys/rotate", json_body={}, token=s)
        assert r.status == 401
        new_user = {"name": "newbie", "password": "a long enough password", "groups": ["developers"]}
        assert b.request("POST", "/v1/admin/users", json_body=new_user, token=s).status == 401
        b.step_up(s, b.admin)
        # The next key was published at first start: only a forced rotation passes the pre-publication guard.
        r = b.request("POST", "/v1/admin/keys/rotate", json_body={"force": True}, token=s)
        assert r.status == 200, r.text
        r = b.request("POST", "/v1/admin/users", json_body=new_user, token=s)
        assert r.status == 201 and r.json["groups"] == ["developers"], r.text
        r = b.request("POST", "/v1/admin/users/newbie/disable", json_body={}, token=s,
                      template="/v1/admin/users/{name}/{action}")
        assert r.status == 200 and r.json["disabled"] is True, r.text
        # Not an administrator: refused whatever the freshness.
        dev = b.add_user("plain", ["developers"])
        r = b.request("POST", "/v1/admin/users/newbie/enable", json_body={}, token=b.sign_in(dev),
                      template="/v1/admin/users/{name}/{action}")
        assert r.status == 403, r.text
