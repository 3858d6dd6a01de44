"""The pages over plain HTTP: security headers on every page, CSRF tokens required on every form post, cookie
attributes, no open redirect, and a sign-in that ends on the home page."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from broker import Broker, policy
from conftest import stagepass_bin_path

PAGES = ["/", "/factors", "/approvals", "/delegations", "/stepup", "/admin/keys", "/admin/revocations", "/admin/audit"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browserish:
    """A cookie-keeping client that does not follow redirects."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def get(self, path: str):
        try:
            r = self.opener.open(self.base + path, timeout=30)
            return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def post(self, path: str, fields: dict):
        data = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(self.base + path, data=data, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            r = self.opener.open(req, timeout=30)
            return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    @staticmethod
    def csrf(html: str) -> str:
        m = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
        assert m, "page without a CSRF token"
        return m.group(1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(str(stagepass_bin_path()), tmp_path_factory.mktemp("pages"), policy()) as b:
        yield b


def sign_in(b: Broker, c: Browserish, user) -> None:
    status, headers, html = c.get("/signin")
    assert status == 200
    status, headers, _ = c.post("/signin", {"csrf": c.csrf(html), "user": user.name, "password": user.password,
                                            "next": "/"})
    assert status == 303 and headers["Location"].startswith("/signin/factor"), status
    status, _, html = c.get("/signin/factor?next=/")
    assert status == 200 and 'id="totp-form"' in html
    status, headers, _ = c.post("/signin/factor", {"csrf": c.csrf(html), "method": "totp", "code": user.code(), "next": "/"})
    assert status == 303 and headers["Location"] == "/", status


def assert_security_headers(headers: dict, path: str) -> None:
    h = {k.lower(): v for k, v in headers.items()}
    csp = h.get("content-security-policy", "")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
    assert "unsafe-inline" not in csp, path
    assert h.get("x-frame-options") == "DENY", path
    assert h.get("x-content-type-options") == "nosniff", path
    assert h.get("cache-control") == "no-store", path


def test_every_page_has_the_security_headers_and_needs_a_session(broker):
    c = Browserish(broker.url)
    for path in PAGES:
        status, headers, _ = c.get(path)
        assert status == 303 and headers["Location"].startswith("/signin?next="), path
        assert_security_headers(headers, path)
    status, headers, html = c.get("/signin")
    assert_security_headers(headers, "/signin")
    assert "<script>" not in html and "style=" not in html  # nothing inline for the CSP to refuse
    cookie = next(v for k, v in headers.items() if k.lower() == "set-cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie

    sign_in(broker, c, broker.admin)
    for path in PAGES:
        status, headers, html = c.get(path)
        assert status == 200, (path, status)
        assert_security_headers(headers, path)
        assert 'name="csrf"' in html or path == "/", path


def test_forms_without_the_csrf_token_are_refused(broker):
    c = Browserish(broker.url)
    status, _, html = c.get("/signin")
    status, _, body = c.post("/signin", {"user": "admin", "password": broker.admin.password, "next": "/"})
    assert status == 403 and "did not come from this site" in body
    status, _, body = c.post("/signin", {"csrf": "forged", "user": "admin", "password": broker.admin.password})
    assert status == 403
    sign_in(broker, c, broker.add_user("admin2", ["admins"]))
    for path, fields in [("/factors/backup-codes", {}), ("/admin/keys/rotate", {}), ("/signout", {}),
                         ("/delegations", {"client": "x", "role": "x", "stage": "x", "audience": "x", "hours": "1"}),
                         ("/admin/revocations", {"kind": "user", "value": "admin"})]:
        status, headers, body = c.post(path, fields)
        assert status == 403, (path, status)
        assert_security_headers(headers, path)
    # Still signed in: none of the forged posts did anything.
    assert c.get("/")[0] == 200


def test_no_open_redirect_after_sign_in(broker):
    c = Browserish(broker.url)
    status, _, html = c.get("/signin?next=//evil.example/")
    assert 'value="/"' in html and "evil.example" not in html
