"""A test CI platform on loopback: an OpenID Connect issuer that signs GitHub-, GitLab- and Buildkite-shaped tokens.

It serves `/.well-known/openid-configuration` and `/jwks` (RS256 keys, rotatable), counts JWKS fetches, and answers
GitHub Actions' token request (`/github-token?audience=…` with the request bearer) as the runner does. The claim
sets are the ones the platforms' documentation publishes (GitHub: "About security hardening with OpenID Connect";
GitLab: "OpenID Connect (OIDC) Authentication Using ID Tokens"; Buildkite: "OIDC with Buildkite").
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from broker import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class Key:
    def __init__(self):
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k-" + uuid.uuid4().hex[:12]

    @property
    def jwk(self) -> dict:
        pub = self.private.public_key().public_numbers()
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                "n": b64url(int_bytes(pub.n)), "e": b64url(int_bytes(pub.e))}

    def sign(self, header: dict, claims: dict) -> str:
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)


class CIIssuer:
    """One issuer on 127.0.0.1:PORT. `keys[0]` signs; `rotate()` adds a new signing key and keeps the old published."""

    GITHUB_REQUEST_BEARER = "runtime-request-token"

    def __init__(self, audience: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.audience = audience
        self.keys = [Key()]
        self.jwks_fetches = 0
        self.reachable = True
        self.lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=300")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if not issuer.reachable:
                    self.reply(503, {"error": "down"})
                    return
                u = urlparse(self.path)
                if u.path == "/.well-known/openid-configuration":
                    self.reply(200, {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                                     "id_token_signing_alg_values_supported": ["RS256"],
                                     "response_types_supported": ["id_token"], "subject_types_supported": ["public"]})
                elif u.path == "/jwks":
                    with issuer.lock:
                        issuer.jwks_fetches += 1
                        keys = [k.jwk for k in issuer.published]
                    self.reply(200, {"keys": keys})
                elif u.path == "/github-token":
                    if self.headers.get("Authorization", "").lower() != "bearer " + issuer.GITHUB_REQUEST_BEARER:
                        self.reply(401, {"message": "bad request token"})
                        return
                    aud = parse_qs(u.query).get("audience", [issuer.url])[0]
                    self.reply(200, {"count": 1, "value": issuer.sign(issuer.github_claims(aud=aud))})
                else:
                    self.reply(404, {"error": "not found"})

        self.published = list(self.keys)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def rotate(self) -> None:
        with self.lock:
            new = Key()
            self.keys.insert(0, new)
            self.published = [new] + self.published

    def sign(self, claims: dict, key: Key | None = None, typ: str = "JWT") -> str:
        k = key or self.keys[0]
        return k.sign({"alg": "RS256", "typ": typ, "kid": k.kid}, claims)

    def _times(self, lifetime: int, now: int | None) -> dict:
        now = int(time.time()) if now is None else now
        return {"iat": now, "nbf": now, "exp": now + lifetime}

    def github_claims(self, *, aud: str | None = None, repository_id: str = "1296269", ref: str = "refs/heads/main",
                      ref_protected: str = "true", event: str = "push", run_id: str = "5067897711",
                      sha: str = "ed3b3f1a1ea2c03f2b5d8a3e7c1f7c4a5c7d8e9f", actor: str = "octocat",
                      now: int | None = None, **extra) -> dict:
        c = {"jti": str(uuid.uuid4()), "sub": "repo:octo-org/octo-repo:environment:prod",
             "environment": "prod", "aud": aud or self.audience, "ref": ref, "sha": sha,
             "repository": "octo-org/octo-repo", "repository_owner": "octo-org", "actor_id": "583231",
             "repository_visibility": "private", "repository_id": repository_id, "repository_owner_id": "65432",
             "run_id": run_id, "run_number": "42", "run_attempt": "1", "runner_environment": "github-hosted",
             "actor": actor, "workflow": "deploy", "head_ref": "", "base_ref": "", "event_name": event,
             "ref_type": "branch", "ref_protected": ref_protected,
             "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
             "workflow_sha": sha, "job_workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
             "job_workflow_sha": sha, "iss": self.url, **self._times(300, now)}
        c.update(extra)
        return c

    def gitlab_claims(self, *, now: int | None = None, **extra) -> dict:
        c = {"namespace_id": "72", "namespace_path": "mygroup", "project_id": "20", "project_path": "mygroup/myproject",
             "user_id": "1", "user_login": "sample-user", "user_email": "sample-user@example.com",
             "user_identities": [], "pipeline_id": "574", "pipeline_source": "push", "job_id": "302",
             "ref": "main", "ref_type": "branch", "ref_path": "refs/heads/main", "ref_protected": "true",
             "environment": "production", "environment_protected": "true", "deployment_tier": "production",
             "environment_action": "start", "runner_id": 27, "runner_environment": "gitlab-hosted",
             "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc", "project_visibility": "private",
             "ci_config_ref_uri": "gitlab.example.com/mygroup/myproject//.gitlab-ci.yml@refs/heads/main",
             "ci_config_sha": "714a629c0b401fdce83e847fc9589983fc6f46bc", "jti": str(uuid.uuid4()),
             "iss": self.url, "sub": "project_path:mygroup/myproject:ref_type:branch:ref:main", "aud": self.audience,
             **self._times(3600, now)}
        c.update(extra)
        return c

    def buildkite_claims(self, *, now: int | None = None, **extra) -> dict:
        c = {"iss": self.url, "aud": self.audience,
             "sub": "organization:acme-inc:pipeline:deploy-web:ref:refs/heads/main:commit:"
                    "9f3182061f1e2cca4702c368cbc039b7dc9d4485:step:deploy",
             "organization_slug": "acme-inc", "pipeline_slug": "deploy-web", "build_number": 1,
             "build_branch": "main", "build_tag": None, "build_commit": "9f3182061f1e2cca4702c368cbc039b7dc9d4485",
             "step_key": "deploy", "job_id": "0184990a-477b-4fa8-9968-496074483cee",
             "agent_id": "0184990a-4782-42b5-afc1-16715b10b8ff",
             "organization_id": "0184990a-aaaa-4fa8-9968-496074483cee",
             "pipeline_id": "0184990a-bbbb-4fa8-9968-496074483cee", **self._times(300, now)}
        c.update(extra)
        return c
