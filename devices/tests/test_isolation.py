"""The foundation's route walk (fleet/api/tests/test_isolation.py), restricted to this app's routes
and factories so it also runs while other apps are being built."""

import pytest

from devices.tests import factories as device_factories
from fleet.api.tests import test_isolation as walk

pytestmark = pytest.mark.django_db

EXPECTED = {
    "/api/v1/devices",
    "/api/v1/devices/register",
    "/api/v1/devices/summary",
    "/api/v1/devices/<device>",
    "/api/v1/devices/<device>/revoke",
    "/api/v1/devices/<device>/heartbeat",
    "/api/v1/devices/<device>/health",
    "/api/v1/devices/<device>/activity",
    "/api/v1/devices/<device>/users",
    "/api/v1/devices/<device>/frames",
    "/api/v1/devices/<device>/frames/latest",
    "/api/v1/users",
    "/api/v1/users/<user>",
}


def routes():
    return [(path, callback) for path, callback in walk.api_routes() if path in EXPECTED]


@pytest.fixture
def world(org, other_org, make_client):
    factories = {
        cls._meta.model: cls
        for cls in (device_factories.DeviceFactory, device_factories.DeviceTokenFactory,
                    device_factories.EndUserFactory, device_factories.DeviceUserFactory)
    }
    a_ids = {str(factory(organization=org).pk) for factory in factories.values()}
    return {
        "a": org,
        "client_a": make_client(org, role="owner"),
        "client_b": make_client(other_org, role="owner"),
        "factories": factories,
        "path_params": device_factories.ISOLATION_PATH_PARAMS,
        "path_values": {},
        "a_ids": a_ids,
    }


def test_the_walker_sees_every_devices_route():
    assert {path for path, _ in walk.api_routes()} >= EXPECTED


def test_other_organization_gets_404_on_every_devices_route(world):
    checked = 0
    for path, callback in routes():
        if "<" not in path:
            continue
        url = walk.fill(path, callback, world)
        # walk.methods() keeps "head" for viewsets once DRF has added it to their actions (a HEAD 404 has
        # no body to parse): skip it like the walker does for plain views.
        for method in [m for m in walk.methods(callback) if m not in walk.SKIPPED_METHODS]:
            response = getattr(world["client_b"], method)(url, {}, format="json")
            assert response.status_code == 404, f"{method.upper()} {path}: {response.status_code}"
            assert response.json()["error"] == "not_found"
            own = getattr(world["client_a"], method)(url, {}, format="json")
            assert own.status_code != 404 or path.endswith("frames/latest"), f"{method.upper()} {path} (own)"
            checked += 1
    assert checked == 11


def test_lists_never_show_other_organizations_rows(world):
    own = world["client_a"].get("/api/v1/devices").content.decode()
    assert any(a_id in own for a_id in world["a_ids"])
    for path, callback in routes():
        if "<" in path or "get" not in walk.methods(callback):
            continue
        body = world["client_b"].get(path).content.decode()
        assert not [a_id for a_id in world["a_ids"] if a_id in body], path
