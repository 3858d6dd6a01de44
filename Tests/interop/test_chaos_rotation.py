"""Fault suite: a key rotation killed between its keyring write and its audit records (or at any other step) leaves
a key store the restarted broker reconciles with the audit log: every key in the keyring appears in the audit log in
its current state (`key.recovered` fills a gap, `key.abandoned` closes an intent that never took effect), no temp file
survives, the audit chain verifies, and tokens signed before and after verify against the JWKS (no unknown kid).

The rotation runs in `stagepass keys rotate`, which dies at a named step (`STAGEPASS_CRASH_AT=<step>` makes it
`_exit(137)` there, as SIGKILL would). Each test prints what it measured."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from broker import Broker, policy
from conftest import stagepass_bin_path

# In the order a rotation reaches them (Sources/StagepassBroker/Keys/DurableFiles.swift, CrashPoint).
ROTATION_STEPS = [
    "audit-intent-recorded",
    "key-temp-written", "key-renamed", "key-committed",
    "keyring-temp-written", "keyring-renamed", "keyring-committed",
    "audit-completion-started",
]
# Steps after which the keyring shows the rotation.
COMMITTED = {"keyring-renamed", "keyring-committed", "audit-completion-started"}


def audit_events(b: Broker) -> list[dict]:
    return [json.loads(x)["event"] for x in b.cli("audit", "export", "--data", str(b.data)).stdout.splitlines()]


def audited_states(events: list[dict]) -> dict[str, str]:
    """Each kid's state as the audit log tells it (Sources/StagepassBroker/Keys/KeyChange.swift), record by record."""
    state: dict[str, str] = {}
    for e in events:
        a, d = e["action"], e.get("details", {})
        kid = d.get("kid", e.get("subject"))
        if a in ("key.generate", "key.import", "key.recovered"):
            state[kid] = d["state"]
        elif a == "key.rotate":
            for role in ("retiring", "active", "next"):
                if role in d:
                    state[d[role]] = role
        elif a == "key.retire":
            state[kid] = "retired"
        elif a == "key.compromise":
            state[kid] = "compromised"
            if "active" in d:
                state[d["active"]] = "active"
    return state


def keyring(b: Broker) -> dict[str, str]:
    return {k["kid"]: k["state"] for k in json.loads((b.keys / "keyring.json").read_text())["keys"]}


def verifies(b: Broker, token: str) -> subprocess.CompletedProcess:
    return b.cli("verify", "--jwks", f"{b.url}/.well-known/jwks.json", "--issuer", b.url, "--audience", "deploy-api",
                 token, check=False)


def kill_rotation_and_restart(b: Broker, session: str, step: str) -> dict:
    """One kill at `step` and a restart; asserts the invariants; returns the figures."""
    before_token = b.exchange(session, "builder", "build")
    assert before_token.status == 200, before_token.text
    before_ring = keyring(b)
    seen = len(audit_events(b))
    crashed = b.cli("keys", "rotate", "--force", "--keys", str(b.keys), "--data", str(b.data), check=False,
                    env={"STAGEPASS_CRASH_AT": step})
    assert crashed.returncode == 137, f"{step}: {crashed.returncode}\n{crashed.stderr}"
    ring_after_kill = keyring(b)
    assert (ring_after_kill != before_ring) == (step in COMMITTED), step
    temp_after_kill = sorted(p.name for p in b.keys.iterdir() if p.name.endswith(".tmp"))

    b.stop()
    t0 = time.monotonic()
    b.start()  # same data directory and key store: reconciles at start
    restart = time.monotonic() - t0

    events = audit_events(b)
    ring = keyring(b)
    audited = audited_states(events)
    wrong = {kid: (state, audited.get(kid)) for kid, state in ring.items() if audited.get(kid) != state}
    assert not wrong, f"{step}: keyring states without a matching audit record: {wrong}"
    leftovers = [p.name for p in b.keys.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"{step}: temp files survived the restart: {leftovers}"
    check = b.cli("audit", "verify", "--data", str(b.data))
    assert "intact" in check.stdout, check.stdout
    after_token = b.exchange(session, "builder", "build")
    assert after_token.status == 200, after_token.text
    for t in (before_token.json["access_token"], after_token.json["access_token"]):
        v = verifies(b, t)
        assert v.returncode == 0, f"{step}: {v.stderr}"
    new = events[seen:]  # what this kill and restart added
    recovered = [e for e in new if e["action"] == "key.recovered"]
    abandoned = [e for e in new if e["action"] == "key.abandoned"]
    intents = [e for e in new if e["action"].endswith(".intent")]
    if step in COMMITTED and step != "audit-completion-started":
        assert recovered, f"{step}: the missing completion was not recorded as key.recovered"
    if step not in COMMITTED:
        assert abandoned, f"{step}: the intent without effect was not recorded as key.abandoned"
    log = b.log.read_text()
    if recovered:
        assert "AUDIT GAP" in log, "the repair is logged loudly"
    return {
        "step": step, "temp_files_after_kill": len(temp_after_kill), "restart_s": restart,
        "recovered": len(recovered), "abandoned": len(abandoned), "intents": len(intents), "new_records": len(new),
    }


def start_broker(tmp_path, name: str) -> tuple[Broker, str]:
    b = Broker(str(stagepass_bin_path()), tmp_path / name, policy())
    b.start()
    dev = b.add_user("rotator", ["developers"])
    return b, b.sign_in(dev)


def report(rows: list[dict]) -> None:
    for r in rows:
        print(f"rotation killed at {r['step']:<26} temp files left by the kill {r['temp_files_after_kill']}, "
              f"restart to ready {r['restart_s']:.2f} s, key.recovered {r['recovered']}, "
              f"key.abandoned {r['abandoned']}, intent records {r['intents']}, new audit records {r['new_records']}")


@pytest.mark.chaos
def test_rotation_killed_between_keyring_and_audit_is_reconciled_at_restart(tmp_path):
    b, session = start_broker(tmp_path, "rot-smoke")
    try:
        report([kill_rotation_and_restart(b, session, "keyring-committed")])
    finally:
        b.stop()


@pytest.mark.chaos
@pytest.mark.slow
def test_rotation_killed_at_every_step_is_reconciled_at_restart(tmp_path):
    b, session = start_broker(tmp_path, "rot-all")
    try:
        rows = [kill_rotation_and_restart(b, session, step) for step in ROTATION_STEPS]
        report(rows)
        # Each kill adds its own repair; nothing is reported twice across restarts.
        events = audit_events(b)
        changes = [e["details"]["change"] for e in events if e["action"] == "key.abandoned"]
        assert len(changes) == len(set(changes))
    finally:
        b.stop()
