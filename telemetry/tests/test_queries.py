import datetime as dt

import pytest

from devices.tests.factories import DeviceFactory
from telemetry import services
from telemetry.tests.factories import ReadingFactory
from telemetry.validation import Checked

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def insert(org, device, metric, points):
    """points: [(seconds after T0, value)] through the service's set-based insert."""
    from fleet.tenancy import rls

    rows = [Checked(index=i, device=device, metric=metric, ts=T0 + dt.timedelta(seconds=s), value=v) for i, (s, v) in enumerate(points)]
    with rls.bypass(reason="test setup"):
        return services.readings_insert(organization=org, rows=rows)


def iso(t):
    return t.isoformat().replace("+00:00", "Z")


def test_raw_readings_newest_first_with_a_stable_cursor_under_concurrent_inserts(client_a, org):
    device = DeviceFactory(organization=org, device_id="d")
    # 25 readings; several share a timestamp across metrics so (ts, id) breaks ties
    insert(org, device, "a", [(i, float(i)) for i in range(15)])
    insert(org, device, "b", [(i, 100.0 + i) for i in range(10)])
    seen = []
    page = client_a.get("/api/v1/readings", {"device": "d", "limit": 10}).json()
    seen += page["readings"]
    assert page["limit"] == 10 and page["next_cursor"]
    assert [r["ts"] for r in page["readings"]] == sorted((r["ts"] for r in page["readings"]), reverse=True)
    # meanwhile: newer rows (would shift offset pages) and rows older than everything
    insert(org, device, "a", [(1000 + i, 1.0) for i in range(5)])
    insert(org, device, "c", [(-100 - i, 1.0) for i in range(3)])
    while page["next_cursor"]:
        page = client_a.get("/api/v1/readings", {"device": "d", "limit": 10, "cursor": page["next_cursor"]}).json()
        seen += page["readings"]
    keys = [(r["metric"], r["ts"]) for r in seen]
    assert len(keys) == len(set(keys)), "no reading repeats across pages"
    original = {("a", iso(T0 + dt.timedelta(seconds=i))) for i in range(15)} | {
        ("b", iso(T0 + dt.timedelta(seconds=i))) for i in range(10)
    }
    assert original <= set(keys), "no reading is skipped"
    assert {k for k in keys if k[0] == "c"} == {("c", iso(T0 - dt.timedelta(seconds=100 + i))) for i in range(3)}
    assert all(k[1] < iso(T0 + dt.timedelta(seconds=1000)) for k in keys if k not in original)  # newer rows are not pulled in
    assert seen[0]["device"] == str(device.id) and seen[0]["device_id"] == "d"


def test_raw_readings_filters_and_validation(client_a, org):
    device = DeviceFactory(organization=org, device_id="d")
    insert(org, device, "a", [(i, float(i)) for i in range(10)])
    insert(org, device, "b", [(i, float(i)) for i in range(10)])
    body = client_a.get(
        "/api/v1/readings", {"device": str(device.id), "metric": "a", "from": iso(T0 + dt.timedelta(seconds=2)), "to": iso(T0 + dt.timedelta(seconds=5))}
    ).json()
    assert [r["value"] for r in body["readings"]] == [4.0, 3.0, 2.0]
    assert body["next_cursor"] is None
    assert client_a.get("/api/v1/readings", {"limit": 1001}).json()["fields"] == {"limit": ["Ensure this value is less than or equal to 1000."]}
    assert client_a.get("/api/v1/readings", {"cursor": "garbage!"}).status_code == 400
    assert client_a.get("/api/v1/readings", {"from": "nope"}).json()["fields"].keys() == {"from"}
    assert client_a.get("/api/v1/readings", {"device": "unknown"}).status_code == 404


def test_raw_readings_query_count_does_not_grow_with_page_size(client_a, org, django_assert_max_num_queries):
    device = DeviceFactory(organization=org, device_id="d")
    insert(org, device, "a", [(i, float(i)) for i in range(300)])
    with django_assert_max_num_queries(8) as small:
        client_a.get("/api/v1/readings", {"device": "d", "limit": 2})
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(client_a.get("/api/v1/readings", {"device": "d", "limit": 300}).json()["readings"]) == 300


def test_other_organizations_readings_are_invisible(client_a, client_b, org):
    device = DeviceFactory(organization=org, device_id="d")
    insert(org, device, "a", [(0, 1.0)])
    assert client_b.get("/api/v1/readings").json()["readings"] == []
    assert client_b.get("/api/v1/readings", {"device": str(device.id)}).status_code == 404
    assert client_b.get("/api/v1/readings/stats", {"device": str(device.id)}).status_code == 404
    assert client_b.get("/api/v1/readings/aggregated", {"device": str(device.id), "metric": "a", "bucket": "1h"}).status_code == 404


def test_aggregated_buckets_match_hand_computed_values(client_a, org):
    device = DeviceFactory(organization=org, device_id="d")
    # 5-minute buckets from T0: [0,300) -> 1,2,3 ; [300,600) -> 10 ; [900,1200) -> 4,8
    insert(org, device, "t", [(0, 1.0), (60, 2.0), (299, 3.0), (300, 10.0), (900, 4.0), (1199, 8.0)])
    insert(org, device, "other", [(0, 1000.0)])
    response = client_a.get(
        "/api/v1/readings/aggregated",
        {"device": "d", "metric": "t", "from": iso(T0), "to": iso(T0 + dt.timedelta(hours=1)), "bucket": "5m", "agg": "avg,min,max,count,sum"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["bucket"] == "5m" and body["device"] == str(device.id)
    assert body["buckets"] == [
        {"ts": iso(T0), "avg": 2.0, "min": 1.0, "max": 3.0, "count": 3, "sum": 6.0},
        {"ts": iso(T0 + dt.timedelta(minutes=5)), "avg": 10.0, "min": 10.0, "max": 10.0, "count": 1, "sum": 10.0},
        {"ts": iso(T0 + dt.timedelta(minutes=15)), "avg": 6.0, "min": 4.0, "max": 8.0, "count": 2, "sum": 12.0},
    ]
    hourly = client_a.get(
        "/api/v1/readings/aggregated",
        {"device": "d", "metric": "t", "from": iso(T0 + dt.timedelta(seconds=30)), "to": iso(T0 + dt.timedelta(days=1)), "bucket": "1h", "agg": "count"},
    ).json()
    assert hourly["buckets"] == [{"ts": iso(T0), "count": 5}]  # the reading at T0 is before `from`


def test_aggregated_validation(client_a, org):
    DeviceFactory(organization=org, device_id="d")
    base = {"device": "d", "metric": "t", "bucket": "5m"}
    assert client_a.get("/api/v1/readings/aggregated", {**base, "bucket": "2m"}).json()["fields"].keys() == {"bucket"}
    assert client_a.get("/api/v1/readings/aggregated", {**base, "agg": "avg,median"}).json()["fields"].keys() == {"agg"}
    assert client_a.get("/api/v1/readings/aggregated", {"device": "d", "bucket": "1m"}).json()["fields"].keys() == {"metric"}
    too_wide = {**base, "bucket": "1m", "from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    assert client_a.get("/api/v1/readings/aggregated", too_wide).json()["fields"].keys() == {"bucket"}
    backwards = {**base, "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    assert client_a.get("/api/v1/readings/aggregated", backwards).json()["fields"].keys() == {"to"}
    assert client_a.get("/api/v1/readings/aggregated", base).json()["buckets"] == []  # default: the last day


def test_stats_in_one_query(client_a, org, django_assert_max_num_queries):
    device = DeviceFactory(organization=org, device_id="d")
    insert(org, device, "t", [(0, 5.0), (10, -1.0), (20, 4.0), (30, 2.0)])
    insert(org, device, "u", [(40, 99.0)])
    with django_assert_max_num_queries(10) as captured:
        body = client_a.get("/api/v1/readings/stats", {"device": "d", "metric": "t"}).json()
    assert [q for q in captured.captured_queries if "telemetry_reading" in q["sql"]].__len__() == 1
    assert body == {
        "count": 4,
        "min": -1.0,
        "max": 5.0,
        "avg": 2.5,
        "first_ts": iso(T0),
        "last_ts": iso(T0 + dt.timedelta(seconds=30)),
        "last_value": 2.0,
    }
    ranged = client_a.get("/api/v1/readings/stats", {"device": "d", "from": iso(T0 + dt.timedelta(seconds=15))}).json()
    assert ranged["count"] == 3 and ranged["last_value"] == 99.0 and ranged["min"] == 2.0
    empty = client_a.get("/api/v1/readings/stats", {"device": "d", "metric": "none"}).json()
    assert empty == {"count": 0, "min": None, "max": None, "avg": None, "first_ts": None, "last_ts": None, "last_value": None}


def test_reading_factory_works(org):
    reading = ReadingFactory(organization=org)
    assert reading.device.organization_id == org.id
