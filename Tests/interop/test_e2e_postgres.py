"""End-to-end on PostgreSQL: `stagepass serve --database postgres://…` against a real server (postgres.py). Users
are added with the CLI on the same database; a user signs in (password + TOTP), gets tokens that verify offline
(C ABI and `stagepass verify`), revokes one (the status list says revoked); SIGKILL in a burst loses no returned
token; nothing is written to the data directory's SQLite file."""

from __future__ import annotations

import pytest

from broker import Broker, claims, policy
from conftest import stagepass_bin_path, verify_lib_path
from postgres import PostgresCluster
from test_conformance_c import VerifyLib
from test_e2e_durability import burst_kill_and_check
from test_e2e_revocation import cli_verdict, live_verdicts


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster() as pg:
        yield pg


def test_sign_in_issue_verify_revoke_on_postgres(cluster, tmp_path):
    # Trust authentication ignores the password: it is there to show that it never reaches the log.
    url = cluster.create_database().replace("postgres://stagepass@", "postgres://stagepass:s3cret-pw@")
    lib = VerifyLib(str(verify_lib_path()))
    with Broker(str(stagepass_bin_path()), tmp_path / "pg", policy(), database=url) as b:
        dev = b.add_user("dana", ["developers"])
        session = b.sign_in(dev)
        tokens = {}
        for name in ("kept", "revoked"):
            r = b.exchange(session, "builder", "build")
            assert r.status == 200, r.text
            tokens[name] = r.json["access_token"]
        assert live_verdicts(b, lib, tokens) == {"kept": "ok", "revoked": "ok"}
        assert cli_verdict(b, tokens["kept"])[0] == 0

        r = b.request("POST", "/v1/revocations", json_body={"jti": claims(tokens["revoked"])["jti"]}, token=session)
        assert r.status == 200 and r.json["revoked"] == 1, r.text
        assert live_verdicts(b, lib, tokens) == {"kept": "ok", "revoked": "revoked"}
        code, out = cli_verdict(b, tokens["revoked"])
        assert code != 0 and "revoked" in out

        # The data lives in PostgreSQL: the ledger and the audit chain are there, no SQLite file was made.
        assert cluster.psql("SELECT count(*) FROM tokens", database=url.rsplit("/", 1)[1]).strip() == "2"
        assert not (b.data / "broker.sqlite").exists()
        assert "intact" in b.cli("audit", "verify", *b.data_args()).stdout
        # The password of a database URL never reaches the log.
        log = b.log.read_text()
        assert "postgres://stagepass:***@127.0.0.1" in log and "s3cret-pw" not in log


def test_sigkill_during_a_burst_loses_no_returned_token_on_postgres(cluster, tmp_path):
    b = Broker(str(stagepass_bin_path()), tmp_path / "pg-burst", policy(), database=cluster.create_database())
    b.start()
    try:
        burst_kill_and_check(b)
    finally:
        b.stop()


def test_a_bad_database_url_is_a_clear_error(tmp_path):
    b = Broker(str(stagepass_bin_path()), tmp_path / "pg-bad", policy())
    p = b.cli("users", "list", "--data", str(b.data), "--database", "mysql://x@h/db", check=False)
    assert p.returncode != 0 and "postgres://" in p.stderr
    p = b.cli("audit", "verify", "--data", str(b.data), "--database", "postgres://sp:hunter2@h/db?sslmode=maybe",
              check=False)
    assert p.returncode != 0 and "sslmode" in p.stderr and "hunter2" not in p.stdout + p.stderr
