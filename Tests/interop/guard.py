"""`stagepass guard`, a real nginx (Debian's `nginx` package) and a tiny upstream, for the guard's end-to-end tests.

Every process is a child of the test, on free loopback ports, with its own files under the test's directory, and
is stopped by its PID. nginx runs with its own prefix and configuration (`nginx -p DIR -c DIR/nginx.conf`) and keeps
all its temporary files there, so it needs nothing under /etc, /var or /usr/share/nginx and runs as any user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from broker import Response, free_port
from conftest import cli_environment

IDENTITY_HEADERS = ("Subject", "Role", "Stage", "Run", "Client", "Actor", "Commit", "Token-Id", "Expires")


def http(method: str, url: str, headers: dict | None = None, data: bytes | None = None,
         timeout: float = 30) -> Response:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read())


def wait_ready(url: str, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if http("GET", url, timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not become ready:\n{log.read_text()}")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc and proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


class Guard:
    """`stagepass guard` on a free loopback port."""

    def __init__(self, bin_path: str, workdir: Path, args: list[str]):
        self.bin, self.dir, self.args = bin_path, workdir, args
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "guard.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: str = "/readyz") -> "Guard":
        self.proc = subprocess.Popen([self.bin, "guard", "--listen", f"127.0.0.1:{self.port}", *self.args],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=cli_environment(self.dir), start_new_session=True)
        wait_ready(self.url + wait, "stagepass guard", self.proc, self.log)
        return self

    def stop(self) -> None:
        stop(self.proc)

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.stop()


class Upstream:
    """The protected application: answers every request with JSON naming the method, path and the X-Stagepass-*
    headers it received (what nginx forwarded after the guard said yes)."""

    def __init__(self):
        self.port = free_port()
        self.requests: list[dict] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = {"method": self.command, "path": self.path, "body": body.decode("utf-8", "replace"),
                          "stagepass": {k: v for k, v in self.headers.items() if k.lower().startswith("x-stagepass-")}}
                seen.append(record)
                out = json.dumps(record).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def nginx_config(prefix: Path, port: int, guard_port: int, upstream_port: int) -> str:
    """nginx in front of the upstream, `auth_request` to the guard for everything under /deploy (the README's
    snippet, with the test's ports and a private prefix)."""
    user = "user root;" if os.geteuid() == 0 else ""  # as root, workers would otherwise become `nobody`
    tmp = prefix / "tmp"
    return f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream stagepass_guard {{ server 127.0.0.1:{guard_port}; keepalive 16; }}

    server {{
        listen 127.0.0.1:{port};

        # The guard's subrequest: no body, the original method and URI in the headers the guard trusts.
        location = /_stagepass_auth {{
            internal;
            proxy_pass http://stagepass_guard/auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}

        location /deploy {{
            auth_request /_stagepass_auth;
            auth_request_set $stagepass_subject $upstream_http_x_stagepass_subject;
            auth_request_set $stagepass_role $upstream_http_x_stagepass_role;
            auth_request_set $stagepass_stage $upstream_http_x_stagepass_stage;
            auth_request_set $stagepass_run $upstream_http_x_stagepass_run;
            # Set (or blank) by nginx: a client cannot send its own X-Stagepass-* to the upstream.
            proxy_set_header X-Stagepass-Subject $stagepass_subject;
            proxy_set_header X-Stagepass-Role $stagepass_role;
            proxy_set_header X-Stagepass-Stage $stagepass_stage;
            proxy_set_header X-Stagepass-Run $stagepass_run;
            proxy_set_header Authorization "";
            proxy_set_header DPoP "";
            proxy_pass http://127.0.0.1:{upstream_port};
        }}
    }}
}}
"""


class Nginx:
    """A real nginx master (and one worker) with its own prefix; stopped by the master's PID."""

    def __init__(self, workdir: Path, guard_port: int, upstream_port: int):
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.dir = workdir
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(nginx_config(self.dir, self.port, guard_port, upstream_port))
        self.log = self.dir / "nginx.out"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        assert Path(self.binary).exists(), "nginx is not installed: `make deps` installs Debian's nginx package"
        self.proc = subprocess.Popen([self.binary, "-p", str(self.dir), "-c", str(self.conf), "-e", "stderr"],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                http("GET", self.url + "/nothing-here", timeout=2)
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"nginx did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        stop(self.proc, signal.SIGQUIT)  # graceful: the master waits for its worker

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DPoPKey:
    """A client's DPoP key (P-256) and the proofs it makes (RFC 9449 §4.2), written here from the RFC with
    `cryptography`, independently of the Swift code under test."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        n = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))}

    def thumbprint(self) -> str:
        """RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace."""
        canonical = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
        return b64u(hashlib.sha256(canonical.encode()).digest())

    def proof(self, method: str, url: str, access_token: str | None, iat: int | None = None) -> str:
        """A proof for one request; `access_token` None for the token endpoint (no `ath`)."""
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        claims = {"jti": b64u(os.urandom(16)), "htm": method, "htu": url.split("?")[0],
                  "iat": int(time.time()) if iat is None else iat}
        if access_token is not None:
            claims["ath"] = b64u(hashlib.sha256(access_token.encode()).digest())
        signing_input = (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
        r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return signing_input.decode() + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
