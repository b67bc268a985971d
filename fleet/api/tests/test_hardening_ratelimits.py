"""Issue 11, check 3: rate limits hold across processes.

Two gunicorn servers (separate processes, one worker each) share one Redis and the test database.
A burst of 100 concurrent requests with one API key, split across both, against a limit of 20 per
window: at most 20 succeed, every other answer is 429 with Retry-After.

Tolerance: the counter is a fixed window (`INCR` on ratelimit:<kind>:<id>:<window number>), exact
within a window; a burst that straddles a window boundary could get up to 2x the limit. The window
here is 600 s and the burst is started at least 30 s before a boundary, so the bound is exact: 20.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import connection

from fleet.api.throttling import parse_rate

LIMIT, WINDOW = 20, 600
SERVER_REDIS_URL = "redis://127.0.0.1:6379/11"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(port, method, path, secret=None, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    all_headers = dict(headers or {})
    if secret:
        all_headers["Authorization"] = f"Bearer {secret}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    result = (response.status, dict(response.getheaders()), data)
    conn.close()
    return result


@pytest.fixture
def servers(tmp_path):
    db = connection.settings_dict
    database_url = f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "DJANGO_SETTINGS_MODULE": "fleet.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": SERVER_REDIS_URL,
        "VAR_DIR": str(tmp_path),
        "SECRET_KEY": settings.SECRET_KEY,
        "PKI_KEY_PASSPHRASE": settings.PKI_KEY_PASSPHRASE,
        "DB_POOL": "0",
        "RATE_LIMIT_API_KEY": f"{LIMIT}/{WINDOW}",
        "RATE_LIMIT_DEVICE": f"{LIMIT}/{WINDOW}",
        "RATE_LIMIT_PUBLISHABLE_KEY": f"{LIMIT}/{WINDOW}",
        "LOG_LEVEL": "WARNING",
    }
    ports, procs = [_free_port(), _free_port()], []
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    for port in ports:
        procs.append(subprocess.Popen(
            [gunicorn, "fleet.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--worker-class", "gthread", "--threads", "8", "--log-level", "warning"],
            env=env, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{port}.log", "w"),
        ))
    deadline = time.time() + 60
    for port in ports:
        while True:
            try:
                if _request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, (tmp_path / f"{port}.log").read_text()[-2000:]
            time.sleep(0.2)
    yield ports
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=20)


def _wait_for_window_room():
    """Start a burst at least 30 s before the next window boundary (see the module docstring)."""
    left = WINDOW - time.time() % WINDOW
    if left < 30:
        time.sleep(left + 1)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_burst_across_two_processes_is_capped_by_one_shared_counter(servers, org):
    from apps_catalog.tests.factories import AppFactory, AppKeyFactory
    from devices.tests.factories import registered_device
    from fleet.tenancy.tests.factories import ApiKeyFactory

    api_key = ApiKeyFactory(organization=org)
    device = registered_device(org)
    app = AppFactory(organization=org)
    publishable = AppKeyFactory(organization=org, app=app, kind="publishable")
    _wait_for_window_room()

    def call(index):
        return _request(servers[index % 2], "GET", "/api/v1/organization", api_key.secret)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(call, range(100)))
    elapsed = time.perf_counter() - started
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    per_server = [sum(1 for i, r in enumerate(results) if r[0] == 200 and i % 2 == p) for p in (0, 1)]
    print(f"\nburst: 100 concurrent requests, one API key, 2 gunicorn processes, limit {LIMIT}/{WINDOW}s: "
          f"{len(ok)} x 200 ({per_server[0]} + {per_server[1]}), {len(limited)} x 429, "
          f"other {len(results) - len(ok) - len(limited)}, {elapsed:.2f} s")
    assert len(ok) == LIMIT  # exact: one window, one atomic counter
    assert len(ok) + len(limited) == 100
    # Each process answered its 50: alone, each would have let 20 through (40 in all); the total of 20
    # is the shared counter. (Which process gets the 20 is a race: 9 + 11, 3 + 17, 0 + 20 all occur.)
    assert all(sum(1 for i, r in enumerate(results) if i % 2 == p) == 50 for p in (0, 1))
    for status, headers, body in limited:
        assert 1 <= int(headers["Retry-After"]) <= WINDOW
        assert json.loads(body)["error"] == "rate_limited"

    # Other credential kinds have their own counters: unaffected by the exhausted API key.
    status, _, _ = _request(servers[0], "PUT", f"/api/v1/devices/{device.device_id}/heartbeat", device.secret, {})
    assert status == 200
    status, _, body = _request(servers[1], "POST", "/api/v1/devices/register", publishable.secret,
                               {"device_id": "pk-device", "app": app.slug})
    assert status in (200, 201), body
    assert _request(servers[1], "GET", "/api/v1/organization", api_key.secret)[0] == 429


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_chunked_body_on_a_real_server_is_411(servers, org):
    """Under gunicorn a chunked body reaches Django without Content-Length: refused, never read as empty."""
    from fleet.tenancy import rls
    from fleet.tenancy.models import ApiKey
    from fleet.tenancy.tests.factories import ApiKeyFactory

    api_key = ApiKeyFactory(organization=org)
    conn = http.client.HTTPConnection("127.0.0.1", servers[0], timeout=30)
    body = json.dumps({"name": "sent in chunks"}).encode()
    conn.request("POST", "/api/v1/api-keys", body=iter([body[:10], body[10:]]), encode_chunked=True,
                 headers={"Authorization": f"Bearer {api_key.secret}", "Content-Type": "application/json",
                          "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    print(f"\nchunked POST on gunicorn: {response.status} {payload['error']}")
    assert response.status == 411 and payload["error"] == "length_required"
    with rls.bypass(reason="test"):
        assert not ApiKey.objects.filter(name="sent in chunks").exists()


def test_default_device_limit_admits_heartbeats_at_the_advertised_interval():
    """A device heartbeating every next_heartbeat_in_s (default 60 s) uses at most
    ceil(window / interval) + 1 requests of a window (+1: a window boundary between two beats)."""
    from devices.models import DEFAULT_HEARTBEAT_INTERVAL_S

    limit, window = parse_rate(settings.RATE_LIMITS["device"])
    beats = -(-window // DEFAULT_HEARTBEAT_INTERVAL_S) + 1
    print(f"\ndevice limit {limit}/{window}s vs heartbeat every {DEFAULT_HEARTBEAT_INTERVAL_S}s: "
          f"at most {beats} heartbeats per window ({limit - beats} requests left for sync, state, readings)")
    assert beats * 10 <= limit  # room for ~10 device requests per heartbeat


@pytest.mark.django_db
def test_heartbeats_following_next_heartbeat_in_s_never_hit_the_limit(org, monkeypatch):
    """Run a simulated hour of heartbeats (the clock jumps by next_heartbeat_in_s each time, with up to
    -10 % jitter) under the default device limit: none is throttled."""
    from django.core.cache import cache
    from rest_framework.test import APIClient

    from devices.tests.factories import registered_device

    cache.clear()
    device = registered_device(org)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {device.secret}")
    clock = [1_800_000_000.0 - 1]  # one second before a window boundary: the worst case
    monkeypatch.setattr("fleet.api.throttling.time.time", lambda: clock[0])
    statuses = []
    for index in range(60):
        response = client.put(f"/api/v1/devices/{device.device_id}/heartbeat", {}, format="json")
        statuses.append(response.status_code)
        interval = response.json()["next_heartbeat_in_s"]
        clock[0] += interval * (0.9 if index % 2 else 1.0)
    cache.clear()
    print(f"\nsimulated heartbeats: {len(statuses)} at next_heartbeat_in_s, {statuses.count(429)} throttled")
    assert statuses.count(429) == 0 and set(statuses) == {200}
