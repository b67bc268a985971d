import pytest


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    settings.RATE_LIMITS = {kind: "1000000/60" for kind in ("api_key", "user", "device", "anonymous")}
