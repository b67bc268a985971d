"""Issue 11, check 8: security headers, secure cookies and CSRF with DEBUG=0; admin login throttling."""

import json
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings

# Runs in a fresh interpreter with DEBUG=0, so the production branch of fleet/settings.py is what is
# tested (override_settings(DEBUG=False) would not re-evaluate it). No database is touched: the admin
# login page, a CSRF-less admin POST and the browsable API's anonymous answer need none.
PROBE = r"""
import json, django
django.setup()
from django.conf import settings
from django.test import Client
client = Client(enforce_csrf_checks=True)
out = {"settings": {name: getattr(settings, name) for name in (
    "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SECURE_HSTS_SECONDS",
    "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY", "X_FRAME_OPTIONS")}}
def dump(response):
    return {"status": response.status_code, "headers": dict(response.headers),
            "cookies": {name: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"]),
                               "samesite": m["samesite"]} for name, m in response.cookies.items()}}
out["admin_login"] = dump(client.get("/admin/login/", secure=True))
out["admin_post_without_csrf"] = dump(client.post("/admin/login/", {"username": "x", "password": "y"}, secure=True))
out["api"] = dump(client.get("/api/v1/organization", secure=True, HTTP_ACCEPT="text/html"))
out["health"] = dump(client.get("/healthz", secure=True))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    env = {
        "DEBUG": "0", "SECRET_KEY": "s" * 50, "VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "fleet.settings", "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=settings.BASE_DIR, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_settings(production):
    s = production["settings"]
    assert s["DEBUG"] is False
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"] and s["SESSION_COOKIE_HTTPONLY"]
    assert s["SECURE_HSTS_SECONDS"] >= 31536000
    print(f"\nDEBUG=0 settings: {s}")


@pytest.mark.parametrize("page", ["admin_login", "api", "health"])
def test_security_headers_on_every_kind_of_page(production, page):
    headers = production[page]["headers"]
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers.get("Cross-Origin-Opener-Policy") == "same-origin"
    print(f"\n{page}: HSTS, nosniff, Referrer-Policy, X-Frame-Options DENY, COOP present")


def test_admin_login_sets_a_secure_csrf_cookie_and_refuses_posts_without_it(production):
    cookies = production["admin_login"]["cookies"]
    assert cookies["csrftoken"]["secure"] is True
    assert production["admin_post_without_csrf"]["status"] == 403


def test_browsable_api_is_behind_authentication(production):
    assert production["api"]["status"] == 401


# --- failed admin logins are throttled -----------------------------------------------------------
@pytest.fixture
def staff(db):
    from fleet.tenancy.tests.factories import UserFactory

    cache.clear()
    user = UserFactory(is_staff=True, is_superuser=True)
    yield user
    cache.clear()


def _login(client, username, password, ip="10.0.0.1"):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password},
                       REMOTE_ADDR=ip)


@override_settings(ADMIN_LOGIN_MAX_FAILURES=5, ADMIN_LOGIN_WINDOW_S=900)
def test_failed_admin_logins_are_throttled_per_username_and_address(staff):
    left = 900 - time.time() % 900
    if left < 30:  # fixed windows: do not straddle a boundary (the count would restart mid-test)
        time.sleep(left + 1)
    client = Client()
    statuses = [_login(client, staff.username, "wrong").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2  # 200: the form again, with an error
    blocked = _login(client, staff.username, "correct horse battery")
    assert blocked.status_code == 429 and 1 <= int(blocked["Retry-After"]) <= 900
    # Another address, or another username from the same address, is not blocked.
    assert _login(Client(), staff.username, "correct horse battery", ip="10.0.0.2").status_code == 302
    assert _login(Client(), "someone-else", "wrong").status_code == 200
    print(f"\nadmin login: 5 failures per username+address per 15 min, then {statuses[5:]} (429 with Retry-After)")


@override_settings(ADMIN_LOGIN_MAX_FAILURES=5, ADMIN_LOGIN_WINDOW_S=900)
def test_successful_login_is_not_counted(staff):
    for _ in range(8):
        client = Client()
        assert _login(client, staff.username, "correct horse battery").status_code == 302


def test_the_cache_never_holds_the_typed_username(staff):
    from django.test import RequestFactory

    from fleet.tenancy.admin_site import login_failure_key

    request = RequestFactory().post("/admin/login/", {"username": "Alice@Example.com", "password": "x"})
    key = login_failure_key(request)
    assert "alice" not in key.lower() and key.startswith("adminlogin:")
