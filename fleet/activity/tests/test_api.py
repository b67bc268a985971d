from datetime import datetime, timedelta, timezone

import pytest

from fleet.activity import services
from fleet.activity.tests.factories import ActivityEventFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_feed_is_newest_first_with_actor_and_subject(client_a, org):
    ActivityEventFactory(organization=org, verb="a.old", created_at=T0)
    ActivityEventFactory(organization=org, verb="a.new", created_at=T0 + timedelta(hours=1))
    body = client_a.get("/api/v1/activity").json()
    verbs = [e["verb"] for e in body["events"]]
    assert verbs == ["a.new", "a.old"]
    event = body["events"][0]
    assert set(event) == {"id", "verb", "actor", "subject", "app_id", "device_id", "data", "created_at"}
    assert set(event["actor"]) == {"type", "id", "label"}


def test_filters(client_a, org):
    target = ActivityEventFactory(organization=org, verb="device.revoked", subject_type="device", created_at=T0)
    ActivityEventFactory(organization=org, verb="device.renamed", subject_type="device", created_at=T0 + timedelta(days=2))
    ActivityEventFactory(organization=org, verb="api_key.created", subject_type="api_key", created_at=T0 + timedelta(days=3))

    def ids(**params):
        return [e["id"] for e in client_a.get("/api/v1/activity", params).json()["events"]]

    assert ids(verb="device.revoked") == [str(target.id)]
    assert len(ids(subject_type="device")) == 2
    assert ids(subject_id=target.subject_id) == [str(target.id)]
    assert ids(since=(T0 + timedelta(days=1)).isoformat(), subject_type="device") != ids(subject_type="device")
    assert ids(until=(T0 + timedelta(hours=1)).isoformat(), subject_type="device") == [str(target.id)]


def test_bad_filter_values_are_400(client_a):
    response = client_a.get("/api/v1/activity", {"since": "last tuesday"})
    assert response.status_code == 400 and "since" in response.json()["fields"]


def test_list_queries_do_not_grow_with_page_size(client_a, org, django_assert_max_num_queries):
    for i in range(40):
        ActivityEventFactory(organization=org, created_at=T0 + timedelta(minutes=i))
    with django_assert_max_num_queries(8):
        assert len(client_a.get("/api/v1/activity", {"limit": 5}).json()["events"]) == 5
    with django_assert_max_num_queries(8):
        assert len(client_a.get("/api/v1/activity", {"limit": 1000}).json()["events"]) >= 40


def test_record_service_writes_one_row(org, org_context):
    org_context(org)
    event = services.record(
        organization=org, actor=services.SYSTEM, verb="x.y", subject_type="x", subject_id="1", data={"k": 1}
    )
    assert event.pk and event.actor_type == "system" and event.data == {"k": 1}
