"""Fault suite: a password-guessing storm with fresh unknown names from many source addresses.

Attackers bind their sockets to 127.0.0.2, 127.0.0.3, … (Linux routes all of 127/8 to the loopback interface), so
the broker, which takes the client address from the TCP connection and ignores X-Forwarded-For, sees each attacker
as a different address. Every attempt names a fresh account: no per-account or per-address throttle key ever trips.

While the storm runs, `/healthz` must stay fast and a legitimate sign-in (password, then TOTP) must either complete
quickly or be refused at once with 503 and Retry-After: admission control bounds the Argon2id work (a worker per
core, a short queue, a maximum wait) and a global budget counts the guesses. Never a multi-second wait.

The figures are printed (`make chaos` runs pytest with -s) and recorded in Specs/benchmarks.md.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import re
import sqlite3
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from broker import Broker, policy
from conftest import stagepass_bin_path

# Coarse bounds only (the machine is shared and noisy): the real figures are printed.
LEGIT_BOUND_SECONDS = 3.0
HEALTHZ_BOUND_SECONDS = 3.0


def attacker_address(i: int) -> str:
    """127.0.0.2 … 127.0.0.201 for the first 200 attackers, then 127.0.1.x, 127.0.2.x, …"""
    return f"127.0.{i // 200}.{2 + i % 200}"


def post_json(port: int, path: str, body: dict, source: str | None = None, headers: dict | None = None,
              token: str | None = None, timeout: float = 30):
    """One request on a fresh connection (optionally bound to `source`); returns (status, headers, body, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    start = time.monotonic()
    try:
        conn.connect()
        connected = time.monotonic()
        conn.request("POST", path, body=json.dumps(body).encode(), headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        headers = {k.lower(): v for k, v in r.getheaders()}
        headers["x-test-connect-seconds"] = str(connected - start)
        return r.status, headers, data, time.monotonic() - start
    finally:
        conn.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def page_sign_in(base: str, name: str, password: str):
    """The sign-in form as a browser posts it; returns (status, headers, html, seconds of the POST)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect)
    with opener.open(base + "/signin", timeout=30) as r:
        html = r.read().decode()
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert csrf, "sign-in page without a CSRF token"
    data = urllib.parse.urlencode({"csrf": csrf.group(1), "user": name, "password": password, "next": "/"}).encode()
    req = urllib.request.Request(base + "/signin", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    start = time.monotonic()
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode(), time.monotonic() - start
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode(), time.monotonic() - start


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Storm:
    def __init__(self, port: int, attackers: int):
        self.port = port
        self.attackers = attackers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.refused_without_retry_after = 0
        self.errors = 0
        self.threads = [threading.Thread(target=self.attack, args=(i,), daemon=True) for i in range(attackers)]

    def attack(self, i: int) -> None:
        source = attacker_address(i)
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"ghost-{i}-{n}-{os.urandom(3).hex()}"
            try:
                # The forged header must change nothing: the broker counts the connection's address.
                status, headers, _, _ = post_json(self.port, "/v1/auth/password",
                                                  {"user": name, "password": "guess-" + os.urandom(4).hex()},
                                                  source=source, headers={"X-Forwarded-For": "10.9.9.9"}, timeout=30)
            except OSError:
                with self.lock:
                    self.errors += 1
                time.sleep(0.05)
                continue
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 503 and "retry-after" not in headers:
                    self.refused_without_retry_after += 1
            if status in (429, 503):
                time.sleep(0.01)  # an attacker ignores Retry-After; a short pause keeps this client's CPU sane

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def probe_healthz(port: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start = time.monotonic()
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            out.append(time.monotonic() - start)
        except OSError:
            out.append(float("inf"))
        finally:
            conn.close()
        time.sleep(0.05)


def run_storm(tmp_path, attackers: int, seconds: float, healthz_quantile: float = 100,
              bound_connect: bool = True) -> None:
    """`healthz_quantile`: the share of `/healthz` probes (percent) that must answer within the bound. At 800
    attackers the client connections themselves contend for the listen queue (a connection-handling matter, measured
    and printed here), so the long run bounds the 90th percentile instead of every probe, and bounds a legitimate
    attempt from its established connection to the answer (`bound_connect=False`): the part admission control
    decides."""
    b = Broker(str(stagepass_bin_path()), tmp_path / "storm", policy())
    with b:
        alice = b.add_user("alice", ["developers"])
        # Warm-up: one sign-in before the storm, for a baseline figure.
        status, _, body, quiet = post_json(b.port, "/v1/auth/password",
                                           {"user": alice.name, "password": alice.password})
        assert status == 200, body
        storm = Storm(b.port, attackers)
        healthz: list[float] = []
        stop_probe = threading.Event()
        probe = threading.Thread(target=probe_healthz, args=(b.port, stop_probe, healthz), daemon=True)
        legit: list[tuple[int, float, bool]] = []  # (status, seconds, Retry-After present)
        pages: list[tuple[int, float, bool]] = []
        legit_answer: list[float] = []  # seconds from the established connection to the answer
        completed = 0
        used_steps: set[int] = set()
        started = time.monotonic()
        storm.start()
        probe.start()
        try:
            time.sleep(min(3.0, seconds / 4))  # let the storm build up
            # `stagepass login` under the storm: signed in, or a clear "busy, retry later" with exit 75 (EX_TEMPFAIL).
            cli_start = time.monotonic()
            login = b.cli("login", "--broker", b.url, "--user", alice.name, "--password-stdin", "--code", alice.code(),
                          "--session-file", str(tmp_path / "session"), stdin=alice.password + "\n", check=False)
            cli_took = time.monotonic() - cli_start
            assert login.returncode in (0, 75), (login.returncode, login.stderr)
            if login.returncode == 0:
                used_steps.add(int(time.time() // 30))
            else:
                assert "overloaded" in login.stderr and "busy" in login.stderr, login.stderr
            while time.monotonic() - started < seconds:
                status, headers, body, took = post_json(b.port, "/v1/auth/password",
                                                        {"user": alice.name, "password": alice.password})
                connect = float(headers["x-test-connect-seconds"])
                legit.append((status, took, "retry-after" in headers))
                legit_answer.append(took - connect)
                if status == 200:
                    step = int(time.time() // 30)
                    if step not in used_steps:  # one TOTP code per time step (replays are refused)
                        used_steps.add(step)
                        pending = json.loads(body)["session_token"]
                        s2, _, b2, t2 = post_json(b.port, "/v1/auth/factor", {"method": "totp", "code": alice.code()},
                                                  token=pending)
                        assert s2 == 200, b2
                        assert t2 < LEGIT_BOUND_SECONDS, f"the factor step took {t2:.2f} s"
                        completed += 1
                else:
                    assert status == 503, (status, body)
                # The same through the sign-in page: a redirect to the factor step, or a 503 page saying so.
                ps, ph, html, pt = page_sign_in(b.url, alice.name, alice.password)
                pages.append((ps, pt, "retry-after" in ph))
                if ps == 503:
                    assert "busy" in html and "Retry in" in html, html[-400:]
                else:
                    assert ps == 303, (ps, html[-400:])
                time.sleep(0.5)
        finally:
            elapsed = time.monotonic() - started
            storm.finish()
            stop_probe.set()
            probe.join(timeout=30)

        # The broker counted the attackers' own addresses (throttle keys `addr:IP`), never the forged header.
        db = sqlite3.connect(str(b.data / "broker.sqlite"))
        addresses = {row[0][len("addr:"):] for row in db.execute("SELECT key FROM throttles WHERE key LIKE 'addr:%'")}
        db.close()

        refused = storm.statuses.get(503, 0)
        latencies = [t for _, t, _ in legit]
        legit_refused = sum(1 for s, _, _ in legit if s == 503)
        print(f"\n[hashing storm] {attackers} attackers for {elapsed:.1f} s from {attacker_address(0)}…"
              f"{attacker_address(attackers - 1)}: {storm.total} attempts ({storm.total / elapsed:.0f}/s), "
              f"statuses {dict(sorted(storm.statuses.items()))}, refused (503) {refused}, client errors {storm.errors}")
        print(f"[hashing storm] healthz: {len(healthz)} probes, p50 {percentile(healthz, 50) * 1000:.1f} ms, "
              f"p99 {percentile(healthz, 99) * 1000:.1f} ms, max {max(healthz) * 1000:.1f} ms")
        print(f"[hashing storm] legit sign-in: quiet {quiet * 1000:.0f} ms; under the storm {len(legit)} attempts, "
              f"{len(legit) - legit_refused} answered 200 ({completed} completed with TOTP), {legit_refused} refused 503; "
              f"latency p50 {percentile(latencies, 50) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
              f"({', '.join(f'{s}:{t * 1000:.0f}ms' for s, t, _ in legit)})")
        page_latencies = [t for _, t, _ in pages]
        print(f"[hashing storm] stagepass login: exit {login.returncode} in {cli_took * 1000:.0f} ms "
              f"{login.stderr.strip()!r}")
        print(f"[hashing storm] sign-in page: {len(pages)} posts, {sum(1 for s, _, _ in pages if s == 503)} answered "
              f"503, latency p50 {percentile(page_latencies, 50) * 1000:.0f} ms, max {max(page_latencies) * 1000:.0f} ms")
        print(f"[hashing storm] distinct client addresses counted by the throttle: {len(addresses)}")

        assert legit, "no legitimate attempt was made"
        assert refused > 0, "the storm was never refused with 503"
        assert storm.refused_without_retry_after == 0, "a 503 came without Retry-After"
        assert all(ra for s, _, ra in legit if s == 503), "a legitimate attempt got 503 without Retry-After"
        print(f"[hashing storm] legit sign-in from connection to answer: max {max(legit_answer) * 1000:.0f} ms")
        assert max(legit_answer) < LEGIT_BOUND_SECONDS, f"a legitimate attempt waited {max(legit_answer):.2f} s"
        if bound_connect:
            assert max(latencies) < LEGIT_BOUND_SECONDS, f"a legitimate attempt took {max(latencies):.2f} s"
        assert all(ra for s, _, ra in pages if s == 503), "a 503 sign-in page came without Retry-After"
        if bound_connect:
            assert max(page_latencies) < LEGIT_BOUND_SECONDS, f"a sign-in page post took {max(page_latencies):.2f} s"
        failed_probes = sum(1 for t in healthz if t == float("inf"))
        print(f"[hashing storm] healthz probes that failed to connect or answer: {failed_probes}")
        assert percentile(healthz, healthz_quantile) < HEALTHZ_BOUND_SECONDS, \
            f"/healthz p{healthz_quantile:g} took {percentile(healthz, healthz_quantile):.2f} s"
        assert "10.9.9.9" not in addresses, "X-Forwarded-For was trusted"
        assert len(addresses) > 1 and all(a.startswith("127.0.") for a in addresses), sorted(addresses)[:5]


@pytest.mark.chaos
def test_hashing_storm_from_200_addresses_is_shed_with_503(tmp_path):
    run_storm(tmp_path, attackers=200, seconds=12)


@pytest.mark.chaos
@pytest.mark.slow
def test_hashing_storm_from_800_addresses_is_shed_with_503(tmp_path):
    run_storm(tmp_path, attackers=800, seconds=30, healthz_quantile=90, bound_connect=False)
