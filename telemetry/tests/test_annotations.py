import pytest

from devices.tests.factories import DeviceFactory
from telemetry.tests.factories import AnnotationClassFactory, AnnotationFactory

pytestmark = pytest.mark.django_db


def test_annotation_class_crud_unique_names_and_color(client_a, client_b):
    created = client_a.post("/api/v1/annotation-classes", {"name": "maintenance", "color": "#ff8800"}, format="json")
    assert created.status_code == 201, created.content
    class_id = created.json()["id"]
    assert client_a.post("/api/v1/annotation-classes", {"name": "maintenance"}, format="json").status_code == 409
    assert client_b.post("/api/v1/annotation-classes", {"name": "maintenance"}, format="json").status_code == 201  # per org
    bad = client_a.post("/api/v1/annotation-classes", {"name": "x", "color": "red"}, format="json")
    assert bad.status_code == 400 and "color" in bad.json()["fields"]
    updated = client_a.patch(f"/api/v1/annotation-classes/{class_id}", {"color": "#000000"}, format="json").json()
    assert updated["color"] == "#000000"
    assert client_a.get("/api/v1/annotation-classes").json()["total"] == 1
    assert client_a.delete(f"/api/v1/annotation-classes/{class_id}").status_code == 204


def test_annotation_crud_filters_and_range_rule(client_a, org):
    device = DeviceFactory(organization=org, device_id="d")
    other_device = DeviceFactory(organization=org, device_id="e")
    klass = AnnotationClassFactory(organization=org)
    body = {"device": "d", "class_id": str(klass.id), "ts_from": "2026-01-01T10:00:00Z", "ts_to": "2026-01-01T11:00:00Z", "text": "swap"}
    created = client_a.post("/api/v1/annotations", body, format="json")
    assert created.status_code == 201, created.content
    annotation = created.json()
    assert annotation["device"]["id"] == str(device.id) and annotation["class_name"] == klass.name
    assert annotation["created_by"]
    point = client_a.post(
        "/api/v1/annotations", {**body, "device": str(other_device.id), "ts_from": "2026-01-02T00:00:00Z", "ts_to": None}, format="json"
    )
    assert point.status_code == 201
    backwards = client_a.post("/api/v1/annotations", {**body, "ts_to": "2026-01-01T09:00:00Z"}, format="json")
    assert backwards.status_code == 400 and "ts_to" in backwards.json()["fields"]
    assert client_a.post("/api/v1/annotations", {**body, "device": "nope"}, format="json").json()["fields"].keys() == {"device"}

    def ids(params):
        return {a["id"] for a in client_a.get("/api/v1/annotations", params).json()["annotations"]}

    assert ids({"device": "d"}) == {annotation["id"]}
    assert ids({"device": str(other_device.id)}) == {point.json()["id"]}
    assert ids({"class": str(klass.id)}) == {annotation["id"], point.json()["id"]}
    assert ids({"from": "2026-01-01T10:30:00Z", "to": "2026-01-01T12:00:00Z"}) == {annotation["id"]}  # overlaps
    assert ids({"from": "2026-01-01T11:30:00Z"}) == {point.json()["id"]}
    assert client_a.get("/api/v1/annotations", {"from": "garbage"}).status_code == 400

    patched = client_a.patch(f"/api/v1/annotations/{annotation['id']}", {"text": "replaced fan"}, format="json").json()
    assert patched["text"] == "replaced fan"
    bad_patch = client_a.patch(f"/api/v1/annotations/{annotation['id']}", {"ts_from": "2026-01-01T12:00:00Z"}, format="json")
    assert bad_patch.status_code == 400
    # a class in use cannot be deleted
    assert client_a.delete(f"/api/v1/annotation-classes/{klass.id}").status_code == 409
    assert client_a.delete(f"/api/v1/annotations/{annotation['id']}").status_code == 204
    assert client_a.get(f"/api/v1/annotations/{annotation['id']}").status_code == 404


def test_annotation_of_another_organization_is_404_and_its_class_unusable(client_a, client_b, org, other_org):
    annotation = AnnotationFactory(organization=org)
    assert client_b.get(f"/api/v1/annotations/{annotation.id}").status_code == 404
    DeviceFactory(organization=other_org, device_id="mine")
    body = {"device": "mine", "class_id": str(annotation.annotation_class_id), "ts_from": "2026-01-01T00:00:00Z"}
    assert client_b.post("/api/v1/annotations", body, format="json").json()["fields"].keys() == {"class_id"}


def test_annotation_list_query_count_does_not_grow(client_a, org, django_assert_max_num_queries):
    AnnotationFactory.create_batch(2, organization=org)
    with django_assert_max_num_queries(8) as small:
        client_a.get("/api/v1/annotations")
    AnnotationFactory.create_batch(20, organization=org)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client_a.get("/api/v1/annotations").json()["total"] == 22
    with django_assert_max_num_queries(len(small.captured_queries)):
        client_a.get("/api/v1/annotation-classes")
