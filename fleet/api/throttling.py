"""Fixed-window rate limits per credential, counted in Redis when REDIS_URL is set (INCR is atomic,
so several web processes share one exact count per window), else in the local cache."""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from fleet.api.authentication import Principal


_redis = None


def _redis_client():
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(settings.REDIS_URL)
    return _redis


def hit(key, window):
    """Count one request in the window; returns the count so far.

    With Redis: INCR and EXPIRE NX pipelined, one round trip and exact across processes.
    Without: the local cache (per process; the embedded single-machine default)."""
    if settings.REDIS_URL:
        pipe = _redis_client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1, nx=True)
        return pipe.execute()[0]
    cache.add(key, 0, timeout=window + 1)
    try:
        return cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=window + 1)
        return 1


def parse_rate(rate):
    count, _, seconds = rate.partition("/")
    return int(count), int(seconds or 60)


class CredentialRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        principal = request.auth if isinstance(request.auth, Principal) else None
        if principal is not None:
            scope, ident = principal.kind, principal.credential_id
        else:
            scope, ident = "anonymous", self.get_ident(request)
        # A credential kind without its own limit gets the anonymous one: nothing goes unthrottled.
        rate = (
            getattr(view, "rate_limits", {}).get(scope)
            or settings.RATE_LIMITS.get(scope)
            or settings.RATE_LIMITS["anonymous"]
        )
        limit, window = parse_rate(rate)
        now = time.time()
        count = hit(f"ratelimit:{scope}:{ident}:{int(now // window)}", window)
        self._wait = window - (now % window)
        return count <= limit

    def wait(self):
        return self._wait
