"""Moving an embedded broker to PostgreSQL: `stagepass db copy --from DATA --to postgres://…` (postgres.py).

An SQLite broker gets a user, issues tokens and revokes one; it stops; the copy runs; the same broker (same data
directory for the master key, same key store, same port and issuer) starts on the PostgreSQL database. The user signs
in with the same password and TOTP, the old tokens still verify and the revoked one is still revoked in the status
list, new tokens continue the ledger (no status index reused), and the audit chain verifies and continues from the
copied head. A non-empty target is refused with exit 2 and nothing written; a tampered source is refused."""

from __future__ import annotations

import json
import sqlite3

import pytest

from broker import Broker, claims, policy
from conftest import stagepass_bin_path, verify_lib_path
from postgres import PostgresCluster
from test_conformance_c import VerifyLib
from test_e2e_revocation import cli_verdict, live_verdicts


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster() as pg:
        yield pg


def mint(b: Broker, session: str) -> str:
    r = b.exchange(session, "builder", "build")
    assert r.status == 200, r.text
    return r.json["access_token"]


def idx(token: str) -> int:
    return claims(token)["status"]["status_list"]["idx"]


def audit_rows(b: Broker) -> list[dict]:
    return [json.loads(line) for line in b.cli("audit", "export", *b.data_args()).stdout.splitlines()]


def test_copy_sqlite_broker_to_postgres_and_carry_on(cluster, tmp_path):
    lib = VerifyLib(str(verify_lib_path()))
    b = Broker(str(stagepass_bin_path()), tmp_path / "move", policy())
    b.start()
    try:
        dev = b.add_user("dana", ["developers"])
        session = b.sign_in(dev)
        tokens = {name: mint(b, session) for name in ("kept", "revoked", "also-kept")}
        r = b.request("POST", "/v1/revocations", json_body={"jti": claims(tokens["revoked"])["jti"]}, token=session)
        assert r.status == 200 and r.json["revoked"] == 1, r.text
        assert live_verdicts(b, lib, tokens) == {"kept": "ok", "revoked": "revoked", "also-kept": "ok"}
    finally:
        b.stop()
    before = audit_rows(b)
    assert before and "intact" in b.cli("audit", "verify", *b.data_args()).stdout

    url = cluster.create_database()
    jwks_before = {k["kid"] for k in json.loads((b.keys / "keyring.json").read_text())["keys"]}
    p = b.cli("db", "copy", "--from", str(b.data), "--keys", str(b.keys), "--to", url)
    print(p.stdout)
    summary = dict(line.split() for line in p.stdout.splitlines() if line.startswith("  "))
    assert summary["users"] == "2" and summary["tokens"] == "3" and summary["audit_log"] == str(len(before))
    assert summary["factors"] == "2" and summary["counters"] == "1"
    assert f"audit chain intact on the target: {len(before)} records, head {before[-1]['hash']}" in p.stdout

    db = url.rsplit("/", 1)[1]
    # The keyring moved into the database, PEMs exactly as stored (encrypted PKCS#8).
    copied = set(cluster.psql("SELECT kid FROM keyring", database=db).split())
    assert copied == jwks_before and "signing keyring copied" in p.stdout
    pems = cluster.psql("SELECT count(*) FROM keyring WHERE private_key_pem LIKE '%BEGIN ENCRYPTED PRIVATE KEY%'",
                        database=db).strip()
    assert int(pems) >= 1

    # The same broker on PostgreSQL: same --data (master key, key passphrase), same issuer; it signs from the
    # database keyring (an empty --keys directory proves the key store directory is no longer read).
    b.database = url
    b.keys = tmp_path / "empty-keys"
    b.keys.mkdir()
    b.start()
    try:
        assert live_verdicts(b, lib, tokens) == {"kept": "ok", "revoked": "revoked", "also-kept": "ok"}
        assert cli_verdict(b, tokens["kept"])[0] == 0
        code, out = cli_verdict(b, tokens["revoked"])
        assert code != 0 and "revoked" in out

        # Same password, same TOTP secret (sealed box copied as is, opened with the same master key).
        session2 = b.sign_in(dev)
        fresh = mint(b, session2)
        assert idx(fresh) > max(idx(t) for t in tokens.values())
        assert live_verdicts(b, lib, {**tokens, "fresh": fresh}) == {"kept": "ok", "revoked": "revoked",
                                                                     "also-kept": "ok", "fresh": "ok"}
        assert "intact" in b.cli("audit", "verify", *b.data_args()).stdout
        after = audit_rows(b)
        assert after[:len(before)] == before
        assert len(after) > len(before) and after[len(before)]["prev_hash"] == before[-1]["hash"]
    finally:
        b.stop()
    assert cluster.psql("SELECT count(*) FROM tokens", database=db).strip() == "4"


def test_copy_refuses_a_non_empty_target_and_a_tampered_source(cluster, tmp_path):
    b = Broker(str(stagepass_bin_path()), tmp_path / "refuse", policy())
    with b:
        b.add_user("erin", ["developers"])
    url = cluster.create_database()
    b.cli("db", "copy", "--from", str(b.data), "--keys", str(b.keys), "--to", url)
    db = url.rsplit("/", 1)[1]
    users = cluster.psql("SELECT count(*) FROM users", database=db).strip()
    audit = cluster.psql("SELECT count(*) FROM audit_log", database=db).strip()

    # A second copy into the same database: exit 2, a clear message, nothing written.
    p = b.cli("db", "copy", "--from", str(b.data), "--to", url, check=False)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "not empty" in p.stderr and "users has 2 rows" in p.stderr
    assert cluster.psql("SELECT count(*) FROM users", database=db).strip() == users
    assert cluster.psql("SELECT count(*) FROM audit_log", database=db).strip() == audit

    # A source whose chain does not verify is refused before anything is written.
    con = sqlite3.connect(b.data / "broker.sqlite")
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("UPDATE audit_log SET time = time + 1 WHERE seq = 2")
    con.commit()
    con.close()
    fresh = cluster.create_database()
    p = b.cli("db", "copy", "--from", str(b.data), "--to", fresh, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "BROKEN at seq 2" in p.stderr and "nothing copied" in p.stderr
    assert cluster.psql("SELECT count(*) FROM users", database=fresh.rsplit("/", 1)[1]).strip() == "0"

    # Usage errors exit 2 as well.
    p = b.cli("db", "copy", "--from", str(tmp_path / "nowhere"), "--to", fresh, check=False)
    assert p.returncode == 2 and "no broker database" in p.stderr
