"""Fixed-window rate limits per credential, counted in Redis when REDIS_URL is set (INCR is atomic,
so several web processes share one exact count per window), else in the local cache."""

import functools
import time

import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from fleet.api.authentication import Principal

# The window's counter is created with its expiry by the first hit: one command, one round trip.
COUNT_IN_WINDOW = (
    "local count = redis.call('INCR', KEYS[1]) "
    "if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "return count"
)


@functools.cache
def _window_counter(location):
    """One client and script per process and Redis URL. redis-py clients are thread-safe and their
    pool reconnects after a fork; the cache's get_client() builds a new client on every call, which
    cost more than the round trip itself."""
    return redis.Redis.from_url(location).register_script(COUNT_IN_WINDOW)


def hit(key, window):
    """Count one request in the window and return the count so far (atomic in Redis)."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        count = _window_counter(settings.CACHES["default"]["LOCATION"])
        return count(keys=[redis_key(key)], args=[window + 1])
    cache.add(key, 0, timeout=window + 1)
    try:
        return cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=window + 1)
        return 1


def parse_rate(rate):
    count, _, seconds = rate.partition("/")
    return int(count), int(seconds or 60)


def admit(request, *, view, scope, ident):
    """Count `request` against the limit of credential `ident` of kind `scope`, once per request.

    Returns (allowed, seconds until the window ends). A request counted by a steady path
    (devices.api.views.SteadyPathMixin) that then takes the full path keeps its verdict instead of
    counting twice.
    """
    verdict = getattr(request, "rate_verdict", None)
    if verdict is None:
        key, limit, window, left = window_of(view=view, scope=scope, ident=ident)
        verdict = record(request, count=hit(key, window), limit=limit, left=left)
    return verdict


def window_of(*, view, scope, ident):
    """(counter key, limit, window seconds, seconds left in it) for credential `ident` of kind `scope`."""
    # A credential kind without its own limit gets the anonymous one: nothing goes unthrottled.
    rate = (
        getattr(view, "rate_limits", {}).get(scope)
        or settings.RATE_LIMITS.get(scope)
        or settings.RATE_LIMITS["anonymous"]
    )
    limit, window = parse_rate(rate)
    now = time.time()
    return f"ratelimit:{scope}:{ident}:{int(now // window)}", limit, window, window - (now % window)


def redis_key(key):
    """The Redis key `hit` counts `key` under (for a script that counts in the same round trip)."""
    return caches["default"].make_and_validate_key(key)


def record(request, *, count, limit, left):
    """Keep the verdict of a request counted `count` in its window, so that nothing counts it again."""
    request.rate_verdict = (count <= limit, left)
    return request.rate_verdict


class CredentialRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        principal = request.auth if isinstance(request.auth, Principal) else None
        if principal is not None:
            scope, ident = principal.kind, principal.rate_key or principal.credential_id
        else:
            scope, ident = "anonymous", self.get_ident(request)
        allowed, self._wait = admit(request, view=view, scope=scope, ident=ident)
        return allowed

    def wait(self):
        return self._wait
