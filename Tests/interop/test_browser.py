"""The pages in a real browser: headless Chromium driven over WebDriver (selenium + Debian's chromium-driver),
with a CDP virtual authenticator standing in for a FIDO2 security key.

Screenshots of every page visited go to $STAGEPASS_TEST_OUTPUT/browser (default: out/browser in the checkout).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from broker import Broker, claims, policy
from conftest import REPO, stagepass_bin_path

OUT = Path(os.environ.get("STAGEPASS_TEST_OUTPUT", REPO / "out")) / "browser"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    # Production approvals need a security key (phishing-resistant), as in the shipped example policy.
    pol = policy().replace("    approval: per_run\n    approvers: 1\n",
                           "    approval: per_run\n    approval_factors: [webauthn]\n    approvers: 1\n", 1)
    with Broker(str(stagepass_bin_path()), tmp_path_factory.mktemp("browser"), pol, host_name="localhost") as b:
        yield b


@pytest.fixture
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000",
              "--disable-gpu"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()


def shot(d, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    d.save_screenshot(str(path))
    assert path.stat().st_size > 1000, f"empty screenshot {path}"
    return path


def wait_for(d, by, what, timeout=20):
    return WebDriverWait(d, timeout).until(EC.presence_of_element_located((by, what)))


def password_step(d, b: Broker, user) -> None:
    d.get(b.url + "/signin")
    wait_for(d, By.ID, "user").send_keys(user.name)
    d.find_element(By.ID, "password").send_keys(user.password)
    shot(d, f"signin-{user.name}")
    d.find_element(By.ID, "signin-submit").click()
    # Wait for the next page's heading itself: the sign-in page has an h1 too, and it may still be there.
    WebDriverWait(d, 20).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Second factor"))


def sign_in_totp(d, b: Broker, user, wrong_first: bool = False) -> None:
    password_step(d, b, user)
    shot(d, f"factor-{user.name}")
    if wrong_first:
        d.find_element(By.ID, "totp-code").send_keys("000000" if user.code() != "000000" else "111111")
        d.find_element(By.ID, "totp-submit").click()
        err = wait_for(d, By.ID, "error")
        assert "wrong" in err.text.lower(), err.text
        shot(d, f"factor-wrong-code-{user.name}")
    d.find_element(By.ID, "totp-code").send_keys(user.code())
    d.find_element(By.ID, "totp-submit").click()
    wait_for(d, By.ID, "amr")
    WebDriverWait(d, 20).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), f"Signed in as {user.name}"))
    shot(d, f"home-{user.name}")


def sign_out(d) -> None:
    d.find_element(By.ID, "signout").click()
    wait_for(d, By.ID, "signin-form")


def add_virtual_authenticator(d) -> str:
    d.execute_cdp_cmd("WebAuthn.enable", {"enableUI": False})
    r = d.execute_cdp_cmd("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "usb", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return r["authenticatorId"]


def test_totp_sign_in_and_a_wrong_code(broker, driver):
    dev = broker.add_user("browsey", ["developers", "admins"])
    sign_in_totp(driver, broker, dev, wrong_first=True)
    assert "otp" in driver.find_element(By.ID, "amr").text
    # Every page, with its key parts.
    checks = {
        "/factors": ("factor-table", "authenticator app"),
        "/approvals": ("no-requests", "Nothing is waiting"),
        "/delegations": ("no-delegations", "no live delegation"),
        "/admin/keys": ("keys", "active"),
        "/admin/revocations": ("revoke", ""),
        "/admin/audit": ("audit", "signin"),
    }
    for path, (element, text) in checks.items():
        driver.get(broker.url + path)
        el = wait_for(driver, By.ID, element)
        if text:
            assert text in el.text or text in driver.page_source, (path, text)
        shot(driver, "page" + path.replace("/", "-"))
    # The audit page filters, and checks the chain.
    driver.get(broker.url + "/admin/audit?user=browsey&result=failure")
    rows = wait_for(driver, By.ID, "audit").text
    assert "invalid_factor" in rows or "signin.factor" in rows, rows
    driver.find_element(By.ID, "verify-chain").click()
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda d: "hash chain is intact" in d.page_source)
    shot(driver, "page-admin-audit-verified")
    sign_out(driver)


def test_security_key_register_sign_in_and_approve_a_production_run(broker, driver):
    rel = broker.add_user("keyholder", ["release-managers"])
    add_virtual_authenticator(driver)
    sign_in_totp(driver, broker, rel)

    # Register a security key.
    driver.get(broker.url + "/factors")
    name = wait_for(driver, By.ID, "key-name")
    name.clear()
    name.send_keys("YubiKey test")
    driver.find_element(By.ID, "webauthn-register").click()
    # The script reloads the page when the key is stored; read the page source (no element can go stale).
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: "YubiKey test" in d.page_source and "security key" in d.page_source)
    shot(driver, "factors-with-key")

    # Sign out, sign in with the key.
    sign_out(driver)
    password_step(driver, broker, rel)
    wait_for(driver, By.ID, "webauthn-signin").click()
    wait_for(driver, By.ID, "amr", timeout=30)
    amr = driver.find_element(By.ID, "amr").text
    assert "hwk" in amr, amr
    shot(driver, "home-after-key")

    # A pipeline asks for a production token. The approver follows its link while signed out: sign-in first (with
    # TOTP only), then the link's approval page. A TOTP-only session is not enough to approve production: the page
    # asks for the key right there, and the pipeline then receives its token.
    sign_out(driver)
    secret = broker.add_client("acme-web")
    r = broker.start_request("acme-web", secret, "deployer", "production", "run-browser-1", commit="c0ffee",
                             triggered_by="someone-else")
    assert r.status == 200, r.text
    d = r.json
    driver.get(d["verification_uri_complete"])
    wait_for(driver, By.ID, "user").send_keys(rel.name)
    assert "/signin?next=" in driver.current_url
    driver.find_element(By.ID, "password").send_keys(rel.password)
    driver.find_element(By.ID, "signin-submit").click()
    wait_for(driver, By.ID, "totp-code").send_keys(rel.code())
    driver.find_element(By.ID, "totp-submit").click()
    wait_for(driver, By.ID, "request")
    assert driver.find_element(By.ID, "r-run").text == "run-browser-1"
    assert driver.find_element(By.ID, "r-stage").text == "production"
    assert driver.find_element(By.ID, "r-client").text == "acme-web"
    assert driver.find_element(By.ID, "r-commit").text == "c0ffee"
    assert "security key" in driver.find_element(By.ID, "needs").text.lower() or "webauthn" in driver.find_element(By.ID, "needs").text
    shot(driver, "approve-needs-key")
    driver.find_element(By.ID, "webauthn-approve").click()
    notice = wait_for(driver, By.ID, "notice", timeout=30)
    assert "Approved" in notice.text, notice.text
    shot(driver, "approved")

    time.sleep(2.1)
    t = broker.poll("acme-web", secret, d["device_code"])
    assert t.status == 200, t.text
    c = claims(t.json["access_token"])
    assert c["sub"] == "keyholder" and c["act"]["sub"] == "acme-web" and c["act"]["run_id"] == "run-browser-1"
    assert "hwk" in c["amr"]
