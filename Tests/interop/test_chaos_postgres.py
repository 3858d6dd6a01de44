"""PostgreSQL goes away under a live broker and comes back (README "Storage faults"): while the server is stopped,
token requests answer 503 `storage_unavailable` (the OAuth endpoint: `temporarily_unavailable`) with `Retry-After`,
nothing is issued, `/readyz` says `unreachable` and `/healthz` stays 200; once the server is back the broker serves
again without a restart, and the audit chain holds every token it returned."""

from __future__ import annotations

import time

import pytest

from broker import Broker, claims, policy
from conftest import stagepass_bin_path
from postgres import PostgresCluster


@pytest.mark.chaos
def test_postgres_stopped_then_started_under_a_live_broker(tmp_path):
    with PostgresCluster() as pg:
        url = pg.create_database()
        b = Broker(str(stagepass_bin_path()), tmp_path / "pg", policy(), database=url)
        with b:
            user = b.add_user("dora", ["developers"])
            session = b.sign_in(user)
            r = b.exchange(session, "builder", "build")
            assert r.status == 200, r.text
            issued = [claims(r.json["access_token"])["jti"]]

            pg.pause()
            t0 = time.monotonic()
            r = b.exchange(session, "builder", "build")
            waited = time.monotonic() - t0
            print(f"token request with the database stopped: {r.status} after {waited:.2f} s")
            assert r.status == 503, r.text
            assert r.json["error"] == "temporarily_unavailable", r.json
            assert "database unreachable" in r.json.get("error_description", ""), r.json
            assert r.headers.get("retry-after") == "5"
            ready = b.request("GET", "/readyz")
            assert ready.status == 503 and ready.json["cause"] == "unreachable", ready.text
            assert b.request("GET", "/healthz").status == 200
            # The JSON API says the same with its own problem type.
            me = b.request("GET", "/v1/me", token=session)
            assert me.status == 503 and me.json.get("code") == "storage_unavailable", me.text

            pg.resume()
            deadline = time.monotonic() + 60
            while True:
                r = b.exchange(session, "builder", "build")
                if r.status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            print(f"serving again {time.monotonic() - t0:.1f} s after the stop")
            assert r.status == 200, r.text
            issued.append(claims(r.json["access_token"])["jti"])
            assert b.request("GET", "/readyz").status == 200
        verify = b.cli("audit", "verify", *b.data_args())
        assert "intact" in verify.stdout
        exported = b.cli("audit", "export", *b.data_args()).stdout
        for jti in issued:
            assert jti in exported
