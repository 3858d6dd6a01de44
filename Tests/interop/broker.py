"""A real `stagepass serve` on a free loopback port, for the end-to-end tests.

The broker is started as a child process with its own data directory, key store and policy file, and stopped by
its PID (SIGTERM, then SIGKILL). Users are added with the CLI on the same data directory (SQLite WAL allows it
while the broker runs). TOTP codes are computed here (RFC 6238, SHA-1, 30 s, 6 digits).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import REPO, cli_environment

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
SESSION_TYPE = "urn:stagepass:params:oauth:token-type:session"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def totp(secret_b32: str, at: float | None = None) -> str:
    """RFC 6238 §4 with the RFC 4226 §5.3 truncation."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[off:off + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


class Response:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    @property
    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


class User:
    def __init__(self, name: str, password: str, secret: str, groups: list[str]):
        self.name, self.password, self.secret, self.groups = name, password, secret, groups
        self.last_step = -1
        self.backup_codes: list[str] = []

    def code(self) -> str:
        """A TOTP code for a time step this user has not used yet (a code is accepted once, RFC 6238 §5.2). The
        broker accepts the current step and its neighbours (§5.2 drift window), so two codes are available at once:
        the current step's and the next one's; only a third waits for the clock."""
        while True:
            now = int(time.time() // 30)
            step = max(self.last_step + 1, now)
            if step <= now + 1:
                break
            time.sleep(0.2)
        self.last_step = step
        return totp(self.secret, at=step * 30)


class Broker:
    """One running broker. Use as a context manager, or call stop()."""

    def __init__(self, bin_path: str, workdir: Path, policy: str, recorder=None, host_name: str = "127.0.0.1",
                 serve_args: list[str] | None = None, open_files: tuple[int, int] | None = None,
                 database: str | None = None):
        self.bin = bin_path
        # A PostgreSQL URL (`--database`) for the broker and every CLI call that opens its data; None: SQLite.
        self.database = database
        # Extra `stagepass serve` flags, and the (soft, hard) open-file limit the broker starts with (fault tests).
        self.serve_args = list(serve_args or [])
        self.open_files = open_files
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.keys = self.dir / "keys"
        self.policy_file = self.dir / "policy.yaml"
        self.policy_file.write_text(policy)
        self.port = free_port()
        # Browsers need a host name for WebAuthn (an IP address is not a valid RP ID): the browser tests use
        # http://localhost:PORT, which is also a secure context.
        self.url = f"http://{host_name}:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.admin: User | None = None
        self.recorder = recorder  # called with every (method, path template, Response) for the OpenAPI check
        self.log = self.dir / "broker.log"

    # process

    def start(self) -> "Broker":
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--data", str(self.data), "--keys", str(self.keys), "--port", str(self.port),
             "--policy", str(self.policy_file), "--issuer", self.url, *self.data_args()[2:], *self.serve_args],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.dir, env=self.environment(), start_new_session=True,
            preexec_fn=self._limits if self.open_files else None)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.request("GET", "/readyz").status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"broker did not become ready:\n{self.log.read_text()}")
        if self.admin is None:
            text = self.log.read_text()
            pw = re.search(r"password:\s+(\S+)", text)
            secret = re.search(r"TOTP secret:\s+(\S+)", text)
            assert pw and secret, f"first start did not print the admin secrets:\n{text}"
            self.admin = User("admin", pw.group(1), secret.group(1), ["admins"])
        return self

    def _limits(self) -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # CLI on the same data directory

    def data_args(self) -> list[str]:
        """`--data DIR`, and `--database URL` when the broker runs on PostgreSQL."""
        return ["--data", str(self.data), *(["--database", self.database] if self.database else [])]

    def environment(self, extra: dict | None = None) -> dict:
        """The environment of every `stagepass` process of this broker: nothing from the caller's that the CLI reads;
        HOME is the broker's directory."""
        return cli_environment(self.dir, extra)

    def cli(self, *args: str, stdin: str | None = None, check: bool = True, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.bin, *args], input=stdin, capture_output=True, text=True, cwd=self.dir,
                              env=self.environment(env), timeout=timeout)
        if check:
            assert proc.returncode == 0, f"stagepass {' '.join(args)} → {proc.returncode}\n{proc.stderr}"
        return proc

    def add_user(self, name: str, groups: list[str], backup_codes: bool = False) -> User:
        password = f"pw-{name}-{os.urandom(6).hex()}"
        self.cli("users", "add", name, "--groups", ",".join(groups), "--password-stdin", *self.data_args(),
                 stdin=password + "\n")
        secret = json.loads(self.cli("factors", "totp-enrol", name, "--json", *self.data_args()).stdout)["secret"]
        user = User(name, password, secret, groups)
        if backup_codes:
            user.backup_codes = self.cli("factors", "backup-codes", name, *self.data_args()).stdout.split()
        return user

    def add_client(self, name: str) -> str:
        return self.cli("clients", "add", name, *self.data_args()).stdout.strip()

    # HTTP

    def request(self, method: str, path: str, *, json_body=None, form=None, token: str | None = None,
                basic: tuple[str, str] | None = None, template: str | None = None,
                headers: dict | None = None) -> Response:
        headers = dict(headers or {})
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if basic:
            cred = f"{urllib.parse.quote(basic[0], safe='')}:{urllib.parse.quote(basic[1], safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                resp = Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            resp = Response(e.code, dict(e.headers), e.read())
        if self.recorder:
            self.recorder(method, template or path.split("?")[0], resp)
        return resp

    def sign_in(self, user: User, backup: bool = False) -> str:
        r = self.request("POST", "/v1/auth/password", json_body={"user": user.name, "password": user.password})
        assert r.status == 200, r.text
        pending = r.json["session_token"]
        proof = {"method": "backup", "code": user.backup_codes.pop()} if backup else {"method": "totp", "code": user.code()}
        r = self.request("POST", "/v1/auth/factor", json_body=proof, token=pending)
        assert r.status == 200, r.text
        return r.json["session_token"]

    def step_up(self, session: str, user: User) -> None:
        r = self.request("POST", "/v1/auth/step-up", json_body={"method": "totp", "code": user.code()}, token=session)
        assert r.status == 200, r.text

    def exchange(self, session: str, role: str, stage: str, audience: str = "deploy-api", **extra) -> Response:
        form = {"grant_type": TOKEN_EXCHANGE, "subject_token": session, "subject_token_type": SESSION_TYPE,
                "audience": audience, "role": role, "stage": stage, **extra}
        return self.request("POST", "/v1/token", form=form)

    def start_request(self, client: str, secret: str, role: str, stage: str, run_id: str,
                      audience: str = "deploy-api", **extra) -> Response:
        return self.request("POST", "/v1/device_authorization", basic=(client, secret),
                            form={"audience": audience, "role": role, "stage": stage, "run_id": run_id, **extra})

    def poll(self, client: str, secret: str, device_code: str, dpop: str | None = None) -> Response:
        return self.request("POST", "/v1/token", basic=(client, secret),
                            form={"grant_type": DEVICE_CODE, "device_code": device_code},
                            headers={"DPoP": dpop} if dpop else None)

    def session_file(self, user: User, path: Path) -> Path:
        """`stagepass login` with a TOTP code, saving the session to `path`."""
        self.cli("login", "--broker", self.url, "--user", user.name, "--password-stdin", "--code", user.code(),
                 "--session-file", str(path), stdin=user.password + "\n")
        return path


def claims(token: str) -> dict:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def policy(*, approvers: int = 1, request_lifetime: str = "10m", poll_interval: str = "2s") -> str:
    """The shipped example's shape with knobs for the tests (two-approver stage, short request lifetime)."""
    return f"""
tokens:
  max_ttl: 1h
  status_list_ttl: 60s
  request_lifetime: {request_lifetime}
  poll_interval: {poll_interval}
  admin_mfa_max_age: 5m
  admin_groups: [admins]
mfa:
  factors: [totp, webauthn, backup]
audiences:
  deploy-api: {{description: The deploy API}}
  other-api: {{description: Another endpoint}}
stages:
  build: {{max_ttl: 1h, approval: session}}
  staging: {{max_ttl: 30m, mfa_max_age: 12h, approval: delegated, max_window: 8h}}
  production:
    max_ttl: 5m
    mfa_max_age: 5m
    factors: [totp, webauthn]
    approval: per_run
    approvers: 1
    allow_self_approval: false
  release:
    max_ttl: 5m
    mfa_max_age: 5m
    factors: [totp, webauthn]
    approval: per_run
    approvers: {approvers}
    allow_self_approval: false
roles:
  builder: {{groups: [developers], stages: [build, staging], audiences: [deploy-api]}}
  deployer: {{groups: [release-managers], stages: [staging, production, release], audiences: [deploy-api]}}
pipelines:
  acme-web: {{}}
# CI identities (triggered_by) mapped to users: a stage that forbids self-approval refuses unknown triggers.
identities:
  someone-else: someone
  ci-bot: ci
  trig: trig-user
"""
