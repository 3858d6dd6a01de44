"""End-to-end, against a live `stagepass serve`: key changes made by the CLI reach the running broker before the
command returns; the admin rotation API honours the pre-publication guard unless forced; every secret file the broker
and the CLI create is mode 0600 (directories 0700); `login` with a bare session file name."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

import openapi_check
from broker import Broker, policy
from conftest import stagepass_bin_path
from test_pages import Browserish, sign_in as page_sign_in


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(str(stagepass_bin_path()), tmp_path_factory.mktemp("e2e-keys"), policy(),
                recorder=openapi_check.check) as b:
        yield b


def kid_of(token: str) -> str:
    seg = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))["kid"]


def published(b: Broker) -> set[str]:
    r = b.request("GET", "/.well-known/jwks.json")
    assert r.status == 200, r.text
    return {k["kid"] for k in r.json["keys"]}


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def audit_events(b: Broker) -> list[dict]:
    return [json.loads(x)["event"] for x in b.cli("audit", "export", "--data", str(b.data)).stdout.splitlines()]


def test_cli_compromise_reaches_the_running_broker_before_it_returns(broker):
    dev = broker.add_user("kdev", ["developers"])
    session = broker.sign_in(dev)
    r = broker.exchange(session, "builder", "build")
    assert r.status == 200, r.text
    old = kid_of(r.json["access_token"])
    assert old in published(broker)

    # A kid is base64url and may begin with "-": after `--` it is never read as an option.
    out = broker.cli("keys", "compromise", "--keys", str(broker.keys), "--data", str(broker.data), "--", old)
    assert f"pid {broker.proc.pid}" in out.stdout and "confirmed" in out.stdout, out.stdout + out.stderr

    # No waiting: the broker no longer publishes the key, and signs with the new active one.
    assert old not in published(broker)
    r = broker.exchange(session, "builder", "build")
    assert r.status == 200, r.text
    assert kid_of(r.json["access_token"]) != old
    assert kid_of(r.json["access_token"]) in published(broker)


def test_cli_rotation_is_confirmed_by_the_running_broker(broker):
    out = broker.cli("keys", "rotate", "--force", "--keys", str(broker.keys), "--data", str(broker.data))
    nxt = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("next:"))
    assert "confirmed" in out.stdout, out.stdout
    assert nxt in published(broker)


def test_cli_says_when_the_running_broker_cannot_be_reached(broker, tmp_path):
    # A store announcing a broker whose process lives (this test) but does not answer: the command says so, exits 1,
    # and the change is committed on disk all the same.
    keys = tmp_path / "keys"
    env = {"STAGEPASS_KEY_PASSPHRASE": "an e2e passphrase"}
    out = broker.cli("keys", "rotate", "--keys", str(keys), "--data", str(tmp_path / "data"), env=env)
    assert "no running broker uses" in out.stdout, out.stdout
    note = keys / f".broker-{os.getpid()}.json"
    note.write_text(json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:9"}))
    note.chmod(0o600)
    p = broker.cli("keys", "rotate", "--force", "--broker-timeout", "1", "--keys", str(keys),
                   "--data", str(tmp_path / "data"), env=env, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"pid {os.getpid()}" in p.stderr and "did not confirm" in p.stderr and "committed on disk" in p.stderr
    listed = broker.cli("keys", "list", "--keys", str(keys), "--data", str(tmp_path / "data"), env=env).stdout
    assert listed.count("retiring") == 1


def test_admin_rotation_honours_the_pre_publication_guard_unless_forced(broker):
    s = broker.sign_in(broker.admin)
    # The next key was just published (the compromise and forced rotation above): rotating now is refused.
    r = broker.request("POST", "/v1/admin/keys/rotate", json_body={}, token=s)
    assert r.status == 409, r.text
    assert r.json["code"] == "next_not_pre_published"
    assert isinstance(r.json["safe_after"], int) and int(r.headers["retry-after"]) > 0
    assert "force" in r.json["detail"]
    r = broker.request("POST", "/v1/admin/keys/rotate", json_body={"force": "yes"}, token=s)
    assert r.status == 400, r.text
    before = published(broker)
    r = broker.request("POST", "/v1/admin/keys/rotate", json_body={"force": True}, token=s)
    assert r.status == 200, r.text
    assert r.json["next"] in published(broker) and r.json["next"] not in before
    events = audit_events(broker)
    admin = [e for e in events if e["action"] == "admin.key.rotate"]
    assert admin[-2]["result"] == "denied" and admin[-2]["details"]["safe_after"]
    assert admin[-1]["result"] == "success" and admin[-1]["details"]["forced"] == "true"
    store = [e for e in events if e["action"] == "key.rotate"]
    assert store[-1]["details"]["forced"] == "true"


def test_keys_page_rotation_honours_the_guard_unless_forced(broker):
    c = Browserish(broker.url)
    page_sign_in(broker, c, broker.add_user("pageadmin", ["admins"]))
    status, _, html = c.get("/admin/keys")
    assert status == 200 and 'name="force"' in html
    before = published(broker)
    status, _, html = c.post("/admin/keys/rotate", {"csrf": c.csrf(html)})
    assert status == 200 and "pre-publication window" in html and "Rotated" not in html, html
    assert published(broker) == before
    status, _, html = c.post("/admin/keys/rotate", {"csrf": c.csrf(html), "force": "1"})
    assert status == 200 and "Rotated" in html, html
    assert published(broker) != before
    forced = [e for e in audit_events(broker) if e["action"] == "admin.key.rotate" and e["actor"] == "pageadmin"]
    assert [e["result"] for e in forced] == ["denied", "success"] and forced[-1]["details"]["forced"] == "true"


def test_every_secret_file_is_private(broker):
    assert mode(broker.data) == 0o700
    for name in ("master.key", "key-passphrase", "broker.sqlite", "broker.sqlite-wal", "broker.sqlite-shm"):
        assert mode(broker.data / name) == 0o600, name
    files = [p for p in broker.keys.iterdir() if p.name != ".lock"]
    assert any(p.suffix == ".pem" for p in files) and (broker.keys / "keyring.json").exists()
    for p in files:
        assert mode(p) == 0o600, p.name


def test_login_with_a_bare_session_file_name(broker):
    user = broker.add_user("bare", ["developers"])
    p = broker.cli("login", "--broker", broker.url, "--user", user.name, "--password-stdin", "--code", user.code(),
                   "--session-file", "s.json", stdin=user.password + "\n")
    saved = broker.dir / "s.json"  # the CLI runs in broker.dir
    assert f"session saved to {saved}" in p.stdout
    assert mode(saved) == 0o600
    assert json.loads(saved.read_text())["broker"] == broker.url
    broker.cli("logout", "--session-file", "s.json")
    assert not saved.exists()


def test_login_that_cannot_save_does_not_sign_in(broker):
    user = broker.add_user("nosave", ["developers"])
    blocker = broker.dir / "not-a-dir"
    blocker.write_text("x")
    p = broker.cli("login", "--broker", broker.url, "--user", user.name, "--password-stdin", "--code", user.code(),
                   "--session-file", str(blocker / "s.json"), stdin=user.password + "\n", check=False)
    assert p.returncode != 0 and "not a directory" in p.stderr, p.stdout + p.stderr
    # Refused before signing in: the broker saw no sign-in attempt of this user at all.
    assert not [e for e in audit_events(broker) if e["action"].startswith("signin") and e["subject"] == user.name]


def test_a_world_readable_session_file_is_refused(broker):
    user = broker.add_user("leaky", ["developers"])
    path = broker.session_file(user, broker.dir / "leaky.json")
    path.chmod(0o644)
    p = broker.cli("logout", "--session-file", str(path), check=False)
    assert p.returncode != 0 and "chmod 600" in p.stderr, p.stdout + p.stderr
