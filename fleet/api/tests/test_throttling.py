import subprocess
import sys

import pytest
from django.conf import settings
from django.test import override_settings

pytestmark = pytest.mark.django_db
LIMITS = {"api_key": "5/60", "user": "5/60", "device": "5/60", "anonymous": "5/60"}


@pytest.mark.redis
@override_settings(RATE_LIMITS=LIMITS)
def test_counters_live_in_redis_so_every_process_shares_them(client_a, rate_window):
    import redis

    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    for _ in range(3):
        assert client_a.get("/api/v1/organization").status_code == 200
    server = redis.Redis.from_url(settings.REDIS_URL)
    keys = [k for k in server.scan_iter(f"*ratelimit:api_key:{client_a.api_key.id}:*")]
    assert len(keys) == 1 and int(server.get(keys[0])) == 3
    # Another process using the same key would add to the same counter: simulate its two requests.
    server.incrby(keys[0], 2)
    response = client_a.get("/api/v1/organization")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


@override_settings(RATE_LIMITS=LIMITS)
def test_limits_are_per_credential(make_client, org, rate_window):
    first, second = make_client(org), make_client(org)
    assert [first.get("/api/v1/organization").status_code for _ in range(6)][-1] == 429
    assert second.get("/api/v1/organization").status_code == 200


def test_debug_off_refuses_to_start_without_a_secret_key(tmp_path):
    env = {"DEBUG": "0", "VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "fleet.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**env, "SECRET_KEY": "x" * 50},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
