"""Two brokers (replicas) on one PostgreSQL database (postgres.py): `stagepass serve --database postgres://…` on
each, with one master key, one key passphrase and one issuer. A user signs in on replica A and gets tokens from A and
from B; every token verifies against one JWKS fetched from either; a revocation made on A is in B's status list at
once; a CLI rotation (`keys rotate --database`) is served by both; a policy reload on A reloads B's policy file; and
when the schedule-lease holder is killed with SIGKILL during a rotation, the other replica takes the lease while a
verifier polling the JWKS never meets an unknown kid for a token either replica issued."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time

import pytest

from broker import Broker, claims, policy
from conftest import stagepass_bin_path, verify_lib_path
from postgres import PostgresCluster
from test_conformance_c import STAGEPASS_OK, VerifyLib

LEASE_TAKEN = "schedule lease taken"


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster() as pg:
        yield pg


class Replica(Broker):
    """A broker of a replica set: the shared secrets come from the environment, so its CLI calls share them too."""

    def __init__(self, *args, shared_env: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared_env = shared_env

    def environment(self, extra: dict | None = None) -> dict:
        return super().environment({**self.shared_env, **(extra or {})})


def start_replicas(cluster, tmp_path, n: int = 2) -> tuple[list[Replica], str, str]:
    url = cluster.create_database()
    env = {
        "STAGEPASS_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
        "STAGEPASS_KEY_PASSPHRASE": "a replica passphrase",
    }
    first = Replica(str(stagepass_bin_path()), tmp_path / "r0", policy(), database=url, shared_env=env)
    first.start()
    replicas = [first]
    for i in range(1, n):
        # One issuer for the set (the load balancer's URL in a deployment; here A's): the last --issuer wins.
        r = Replica(str(stagepass_bin_path()), tmp_path / f"r{i}", policy(), database=url, shared_env=env,
                    serve_args=["--issuer", first.url])
        r.admin = first.admin  # the first replica bootstrapped the database; the others print nothing
        r.start()
        replicas.append(r)
    return replicas, url, first.url


def jwks(b: Broker) -> dict:
    r = b.request("GET", "/.well-known/jwks.json")
    assert r.status == 200, r.text
    return r.json


def kid_of(token: str) -> str:
    import json
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def verdicts(lib: VerifyLib, issuer: str, keys: dict, status_jwt: str, tokens: dict[str, str]) -> dict[str, str]:
    h = lib.new({"issuer": issuer, "audiences": ["deploy-api"], "leeway": 30, "max_lifetime": 3600}, keys)
    try:
        assert lib.lib.stagepass_verifier_set_status_list(h, status_jwt.encode(), 0, 0) == STAGEPASS_OK
        out = {}
        for name, tok in tokens.items():
            rc, _, _ = lib.verify(h, tok, 0)
            out[name] = "ok" if rc == STAGEPASS_OK else lib.name(rc)
        return out
    finally:
        lib.free(h)


def status_list(b: Broker) -> str:
    r = b.request("GET", "/v1/statuslists/1", template="/v1/statuslists/{n}")
    assert r.status == 200, r.text
    return r.text


def mint(b: Broker, session: str) -> str:
    r = b.exchange(session, "builder", "build")
    assert r.status == 200, r.text
    return r.json["access_token"]


def wait_for(condition, timeout: float, step: float = 0.02) -> float | None:
    """Seconds until `condition()` held, or None after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(step)
    return None


def lease_holders(replicas: list[Replica]) -> list[Replica]:
    return [r for r in replicas if LEASE_TAKEN in r.log.read_text()]


def test_two_replicas_share_keys_revocations_rotations_and_policy(cluster, tmp_path):
    lib = VerifyLib(str(verify_lib_path()))
    (a, b), url, issuer = start_replicas(cluster, tmp_path)
    try:
        dev = a.add_user("dana", ["developers"])
        session = a.sign_in(dev)  # signed in on A, used on both
        tokens = {"from_a": mint(a, session), "from_b": mint(b, session)}
        assert kid_of(tokens["from_a"]) == kid_of(tokens["from_b"])
        assert claims(tokens["from_b"])["iss"] == issuer
        assert jwks(a) == jwks(b)
        for keys_from in (a, b):
            assert verdicts(lib, issuer, jwks(keys_from), status_list(b), tokens) == {"from_a": "ok", "from_b": "ok"}

        # A revocation on A is in B's status list at once (B compares the revocation epoch on each request).
        r = a.request("POST", "/v1/revocations", json_body={"jti": claims(tokens["from_b"])["jti"]}, token=session)
        assert r.status == 200 and r.json["revoked"] == 1, r.text
        took = wait_for(lambda: verdicts(lib, issuer, jwks(b), status_list(b), tokens)["from_b"] == "revoked", 1.0)
        assert took is not None, "B's status list did not show A's revocation within a second"
        print(f"revocation on A seen in B's status list after {took * 1000:.0f} ms")
        assert verdicts(lib, issuer, jwks(a), status_list(a), tokens) == {"from_a": "ok", "from_b": "revoked"}

        # A CLI rotation on the database: both replicas publish the new keys and sign with the new active key.
        out = a.cli("keys", "rotate", "--force", "--database", url, "--data", str(a.data)).stdout
        fields = dict(line.split(None, 1) for line in out.splitlines() if line.split(None, 1)[0] in ("active:", "next:"))
        active, nxt = fields["active:"].split()[0], fields["next:"].split()[0]
        took = wait_for(lambda: all({active, nxt} <= {k["kid"] for k in jwks(x)["keys"]} for x in (a, b)), 1.0)
        assert took is not None, "a replica did not publish the CLI rotation"
        print(f"CLI rotation published by both replicas after {took * 1000:.0f} ms")
        assert jwks(a) == jwks(b)
        assert kid_of(mint(b, session)) == active and kid_of(mint(a, session)) == active
        listed = a.cli("keys", "list", "--database", url, "--data", str(a.data)).stdout
        assert active in listed and nxt in listed and "retiring" in listed
        # The key change is in the one audit chain of the set.
        assert "intact" in b.cli("audit", "verify", *b.data_args()).stdout
        assert cluster.psql("SELECT count(*) FROM keyring WHERE private_key_pem LIKE '%BEGIN ENCRYPTED%'",
                            database=url.rsplit("/", 1)[1]).strip() == "3"

        # Exactly one replica holds the schedule lease.
        assert wait_for(lambda: len(lease_holders([a, b])) == 1, 10) is not None

        # A policy reload on A reloads B's own policy file.
        b.policy_file.write_text(policy(poll_interval="3s"))
        admin = a.sign_in(a.admin)
        r = a.request("POST", "/v1/admin/policy/reload", json_body={}, token=admin)
        assert r.status == 200, r.text
        took = wait_for(lambda: "another broker reloaded its policy" in b.log.read_text(), 5)
        assert took is not None, b.log.read_text()
        print(f"policy reload on A applied by B after {took * 1000:.0f} ms")
    finally:
        a.stop()
        b.stop()


def test_killing_the_lease_holder_during_a_rotation_moves_the_lease_and_no_kid_is_unknown(cluster, tmp_path):
    (a, b), url, issuer = start_replicas(cluster, tmp_path)
    alive = [a, b]
    problems: list[str] = []
    checked = [0]
    stop = threading.Event()
    try:
        session = a.sign_in(a.add_user("kim", ["developers"]))
        assert wait_for(lambda: len(lease_holders(alive)) == 1, 10) is not None
        holder = lease_holders(alive)[0]
        other = b if holder is a else a

        def verifier():
            # Mints on each live replica, then fetches the JWKS from each live replica: the kid must be there.
            while not stop.is_set():
                for issuing in list(alive):
                    try:
                        tok = mint(issuing, session)
                    except (OSError, AssertionError):
                        continue  # the replica was just killed
                    for serving in list(alive):
                        try:
                            kids = {k["kid"] for k in jwks(serving)["keys"]}
                        except (OSError, AssertionError):
                            continue
                        checked[0] += 1
                        if kid_of(tok) not in kids:
                            problems.append(f"kid {kid_of(tok)} from {issuing.url} unknown to {serving.url}")

        t = threading.Thread(target=verifier, daemon=True)
        t.start()
        time.sleep(0.5)
        rotation = subprocess.Popen(
            [a.bin, "keys", "rotate", "--force", "--database", url, "--data", str(a.data)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=a.environment(), cwd=a.dir)
        holder.kill()
        killed_at = time.monotonic()
        alive.remove(holder)
        out, err = rotation.communicate(timeout=60)
        assert rotation.returncode == 0, out + err
        took = wait_for(lambda: LEASE_TAKEN in other.log.read_text(), 15)
        assert took is not None, f"the surviving replica did not take the lease:\n{other.log.read_text()}"
        print(f"lease taken by the survivor {time.monotonic() - killed_at:.2f} s after SIGKILL of the holder")
        # The schedule goes on on the survivor, and a further rotation is served at once.
        out = other.cli("keys", "rotate", "--force", "--database", url, "--data", str(other.data)).stdout
        nxt = next(line.split()[1] for line in out.splitlines() if line.startswith("next:"))
        assert nxt in {k["kid"] for k in jwks(other)["keys"]}
        time.sleep(1.0)
    finally:
        stop.set()
        a.stop()
        b.stop()
    print(f"verifier: {checked[0]} token/JWKS checks, {len(problems)} unknown kids")
    assert checked[0] > 0
    assert not problems, problems[:5]
