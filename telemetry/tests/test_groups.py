"""`group=` on aggregated readings and stats: a device group means its member devices together."""

import datetime as dt

import pytest

from devices import services as device_services
from devices.tests.factories import DeviceFactory
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls
from telemetry.tests.test_queries import T0, insert

pytestmark = pytest.mark.django_db


@pytest.fixture
def berlin(org):
    a = DeviceFactory(organization=org, device_id="a", labels={"site": "berlin"})
    b = DeviceFactory(organization=org, device_id="b", labels={"site": "berlin"})
    c = DeviceFactory(organization=org, device_id="c", labels={"site": "paris"})
    insert(org, a, "t", [(0, 1.0), (10, 3.0)])
    insert(org, b, "t", [(20, 5.0)])
    insert(org, c, "t", [(30, 100.0)])
    with rls.bypass(reason="test setup"):
        return device_services.device_group_create(
            organization=org, actor=SYSTEM, name="Berlin", slug="berlin", selector={"match_labels": {"site": "berlin"}}
        )


def test_stats_and_aggregates_over_a_group(client_a, client_b, berlin):
    stats = client_a.get("/api/v1/readings/stats", {"group": "berlin", "metric": "t"}).json()
    assert stats["count"] == 3 and stats["min"] == 1.0 and stats["max"] == 5.0 and stats["avg"] == 3.0
    assert stats["last_value"] == 5.0
    window = {"from": T0.isoformat(), "to": (T0 + dt.timedelta(hours=1)).isoformat()}
    body = client_a.get(
        "/api/v1/readings/aggregated", {"group": str(berlin.id), "metric": "t", "bucket": "1h", "agg": "count,max", **window}
    ).json()
    assert body["group"] == str(berlin.id) and body["device"] is None
    assert body["buckets"] == [{"ts": "2026-03-01T00:00:00Z", "count": 3, "max": 5.0}]
    # the other organization cannot name it; both or neither of device and group is a 400
    assert client_b.get("/api/v1/readings/stats", {"group": "berlin"}).status_code == 404
    assert client_a.get("/api/v1/readings/stats", {"group": "berlin", "device": "a"}).status_code == 400
    assert client_a.get("/api/v1/readings/stats", {}).status_code == 400
