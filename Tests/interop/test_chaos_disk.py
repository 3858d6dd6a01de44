"""Fault suite: the broker's data directory on a small tmpfs that fills up.

While the disk is full, issuance answers 503 with the OAuth body `temporarily_unavailable`, sign-in answers 503
`storage_unavailable`, `/readyz` answers 503 naming `disk_full`, `/healthz` stays 200 and the log names the cause.
Freeing space brings issuance back at once (the write-ahead log is checkpointed and truncated after a failed write)
and `/readyz` back by itself. Every token that was returned has its ledger row and audit record, and the audit chain
verifies. Figures (tokens before full, WAL size, recovery time) are printed.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from broker import Broker, claims, policy
from conftest import stagepass_bin_path

pytestmark = pytest.mark.chaos

KB = 1024
MB = 1024 * KB


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> int:
    """Appends to `path` until the file system is full (down to the last byte); returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (MB, 64 * KB, 4 * KB, 512, 1):
            chunk = b"\0" * size
            while True:
                try:
                    n = os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < size:
                    break
    finally:
        os.close(fd)
    return written


def wal_bytes(b: Broker) -> int:
    p = b.data / "broker.sqlite-wal"
    return p.stat().st_size if p.exists() else 0


def issue(b: Broker, session: str, returned: list[str]):
    r = b.exchange(session, "builder", "build")
    if r.status == 200:
        returned.append(claims(r.json["access_token"])["jti"])
    return r


def assert_storage_503(r):
    assert r.status == 503, r.text
    assert r.content_type == "application/json"
    assert r.json["error"] == "temporarily_unavailable", r.json
    assert r.json["error_description"].startswith("storage unavailable: disk full"), r.json
    assert int(r.headers["retry-after"]) > 0
    assert "sqlite" not in r.text.lower() and "/" not in r.json["error_description"]


def test_full_disk_answers_503_recovers_and_loses_nothing(tmp_path, small_disk):
    b = Broker(str(stagepass_bin_path()), tmp_path / "full", policy())
    b.data = small_disk / "data"  # the keys stay on the big disk
    b.start()
    returned: list[str] = []
    try:
        dev = b.add_user("filler", ["developers"])
        session = b.sign_in(dev)
        assert issue(b, session, returned).status == 200
        # WAL growth per token while no checkpoint runs (below the 1 MiB truncation threshold).
        w0 = wal_bytes(b)
        for _ in range(10):
            assert issue(b, session, returned).status == 200
        per_token = (wal_bytes(b) - w0) / 10
        print(f"\n[disk] WAL growth per token: {per_token / KB:.1f} KiB (WAL now {wal_bytes(b) / KB:.0f} KiB)")

        # Fill the disk, keeping 512 KiB in a separate file to free later.
        spare = small_disk / "spare.bin"
        spare.write_bytes(b"\0" * (512 * KB))
        filled = fill(small_disk / "filler.bin")
        print(f"[disk] filled {filled / MB:.1f} MiB; WAL {wal_bytes(b) / KB:.0f} KiB")

        # /readyz goes unready at once (free space below the reserve), /healthz stays live.
        r = b.request("GET", "/readyz")
        assert r.status == 503 and r.json["cause"] == "disk_full", r.text
        assert b.request("GET", "/healthz").status == 200

        # Issuance continues while the log has room, then answers 503.
        before_full = 0
        for _ in range(2000):
            r = issue(b, session, returned)
            if r.status != 200:
                break
            before_full += 1
        assert_storage_503(r)
        print(f"[disk] tokens issued after the fill before the first 503: {before_full}")
        fill(small_disk / "filler.bin")  # whatever the truncating checkpoint gave back is taken again
        assert_storage_503(issue(b, session, returned))
        r = b.request("POST", "/v1/auth/password", json_body={"user": dev.name, "password": dev.password})
        assert r.status == 503 and r.json["code"] == "storage_unavailable", r.text
        assert r.content_type == "application/problem+json" and "retry-after" in r.headers
        r = b.request("GET", "/readyz")
        assert r.status == 503 and r.json["cause"] == "disk_full", r.text
        log = b.log.read_text()
        assert "storage unavailable: disk full" in log and "disk_full" in log, log[-2000:]
        print(f"[disk] WAL while full: {wal_bytes(b) / KB:.0f} KiB")

        # Free 512 KiB: issuance resumes within a few attempts (the failed write truncated the log).
        spare.unlink()
        attempts, resumed = 0, False
        while attempts < 5 and not resumed:
            attempts += 1
            resumed = issue(b, session, returned).status == 200
        assert resumed, "issuance did not resume after 512 KiB were freed"
        per_spare = 1
        for _ in range(2000):
            if issue(b, session, returned).status != 200:
                break
            per_spare += 1
        print(f"[disk] freeing 512 KiB: issuance resumed on attempt {attempts}; {per_spare} tokens fit")

        # Free everything: /readyz recovers by itself.
        (small_disk / "filler.bin").unlink()
        t0 = time.monotonic()
        while b.request("GET", "/readyz").status != 200:
            assert time.monotonic() - t0 < 30, "/readyz did not recover"
            time.sleep(0.1)
        print(f"[disk] /readyz ready again {time.monotonic() - t0:.2f} s after the space was freed")
        assert issue(b, session, returned).status == 200
        print(f"[disk] WAL after recovery: {wal_bytes(b) / KB:.0f} KiB; tokens returned in all: {len(returned)}")
    finally:
        b.stop()

    # No token without its record: every returned jti has its ledger row and its audit record; the chain holds.
    check = b.cli("audit", "verify", "--data", str(b.data))
    assert "intact" in check.stdout, check.stdout
    events = [json.loads(x)["event"] for x in b.cli("audit", "export", "--data", str(b.data)).stdout.splitlines()]
    audited = {e["details"].get("jti") for e in events if e["action"] == "token.issue"}
    with sqlite3.connect(b.data / "broker.sqlite") as db:
        ledger = {row[0] for row in db.execute("SELECT jti FROM tokens")}
    assert len(set(returned)) == len(returned)
    assert not [j for j in returned if j not in audited], "a returned token has no audit record"
    assert not [j for j in returned if j not in ledger], "a returned token has no ledger row"
