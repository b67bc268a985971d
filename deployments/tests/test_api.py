import pytest

from deployments.models import DeviceAssignment
from deployments.tests.factories import DeploymentFactory, public_variant
from devices.tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def body(variant=None, **overrides):
    variant = variant or public_variant()
    return {
        "capability": "vision",
        "variant_id": str(variant.id),
        "environment": "production",
        "targeting": {"selector": {"match_labels": {"site": "berlin"}}},
        "strategy": {"type": "staged", "stages": [10, 50, 100]},
        **overrides,
    }


def test_create_start_and_progress(client_a, org):
    for _ in range(5):
        DeviceFactory(organization=org, labels={"site": "berlin"})
    DeviceFactory(organization=org, labels={"site": "paris"})
    response = client_a.post("/api/v1/deployments", body(), format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["status"] == "draft" and created["capability"] == "vision" and created["progress"]["targeted"] == 0
    started = client_a.post(f"/api/v1/deployments/{created['id']}/start", format="json")
    assert started.status_code == 200, started.content
    progress = started.json()["progress"]
    assert started.json()["status"] == "rolling_out" and progress["targeted"] == 5 and progress["stage_percent"] == 10
    detail = client_a.get(f"/api/v1/deployments/{created['id']}").json()
    assert detail["progress"]["by_status"]["pending"] == progress["in_rollout"]
    devices = client_a.get(f"/api/v1/deployments/{created['id']}/devices").json()
    assert devices["total"] == 5 and set(devices["assignments"][0]) >= {"device", "source", "in_rollout", "status"}
    assert devices["assignments"][0]["device"]["device_id"]


def test_illegal_transition_is_409_naming_the_status(client_a, org):
    dep = DeploymentFactory(organization=org, status="completed")
    response = client_a.post(f"/api/v1/deployments/{dep.id}/pause", format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict" and "completed" in response.json()["message"]


def test_rollback_reason_is_recorded(client_a, org):
    DeviceFactory(organization=org, labels={"site": "berlin"})
    dep = client_a.post("/api/v1/deployments", body(strategy={"type": "all_at_once"}), format="json").json()
    client_a.post(f"/api/v1/deployments/{dep['id']}/start", format="json")
    rolled = client_a.post(f"/api/v1/deployments/{dep['id']}/rollback", {"reason": "crashes on boot"}, format="json")
    assert rolled.status_code == 200 and rolled.json()["status"] == "rolled_back"
    assert rolled.json()["status_reason"] == "crashes on boot"
    events = client_a.get("/api/v1/activity", {"subject_id": dep["id"]}).json()["events"]
    assert events[0]["verb"] == "deployment.rolled_back"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"capability": "teleportation"}, "capability"),
        ({"variant_id": "00000000-0000-0000-0000-000000000000"}, "variant_id"),
        ({"targeting": {}}, "targeting"),
        ({"targeting": {"selector": {"match_expressions": [{"key": "x", "operator": "Near"}]}}}, "targeting.selector.match_expressions.0.operator"),
        ({"targeting": {"device_ids": ["00000000-0000-0000-0000-000000000000"]}}, "targeting.device_ids"),
        ({"strategy": {"stages": [50, 10, 100]}}, "strategy.stages"),
        ({"strategy": {"stages": [10, 50]}}, "strategy.stages"),
        ({"strategy": {"health_gates": {"max_failure_rate": 2}}}, "strategy.health_gates.max_failure_rate"),
        ({"environment": "moon"}, "environment"),
        ({"app": "no-such-app"}, "app"),
        ({"status": "completed"}, "status"),
    ],
)
def test_create_bad_input_names_the_field(client_a, overrides, field):
    response = client_a.post("/api/v1/deployments", body(**overrides), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()


def test_variant_of_another_capability_is_rejected(client_a):
    response = client_a.post("/api/v1/deployments", body(variant=public_variant("chat")), format="json")
    assert response.status_code == 400 and "variant_id" in response.json()["fields"]


def test_list_filters_and_constant_queries(client_a, org, django_assert_max_num_queries):
    for _ in range(15):
        DeploymentFactory(organization=org, environment="staging")
    DeploymentFactory(organization=org, environment="production", status="rolling_out")
    with django_assert_max_num_queries(8):
        small = client_a.get("/api/v1/deployments", {"limit": 2}).json()
    with django_assert_max_num_queries(8):
        large = client_a.get("/api/v1/deployments", {"limit": 1000}).json()
    assert small["total"] == large["total"] == 16 and len(large["deployments"]) == 16
    assert client_a.get("/api/v1/deployments", {"status": "rolling_out"}).json()["total"] == 1
    assert client_a.get("/api/v1/deployments", {"environment": "staging", "capability": "vision"}).json()["total"] == 15
    assert client_a.get("/api/v1/deployments", {"status": "bogus"}).status_code == 400


def test_assignment_list_queries_do_not_grow(client_a, org, django_assert_max_num_queries):
    dep = DeploymentFactory(organization=org, status="rolling_out")
    from deployments.tests.factories import DeviceAssignmentFactory

    for _ in range(12):
        DeviceAssignmentFactory(organization=org, deployment=dep)
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"/api/v1/deployments/{dep.id}/devices", {"limit": 3}).json()["assignments"]) == 3
    with django_assert_max_num_queries(8):
        assert len(client_a.get(f"/api/v1/deployments/{dep.id}/devices").json()["assignments"]) == 12


def test_app_deployments_by_slug(client_a, org):
    from apps_catalog.tests.factories import AppFactory

    app = AppFactory(organization=org)
    DeploymentFactory(organization=org, app=app)
    DeploymentFactory(organization=org)
    listed = client_a.get(f"/api/v1/apps/{app.slug}/deployments").json()
    assert listed["total"] == 1 and listed["deployments"][0]["app"] == app.slug
    assert client_a.get("/api/v1/apps/nope/deployments").status_code == 404


def test_viewer_cannot_create_or_act(org, make_client):
    viewer = make_client(org, role="viewer")
    assert viewer.post("/api/v1/deployments", body(), format="json").status_code == 403
    dep = DeploymentFactory(organization=org)
    assert viewer.post(f"/api/v1/deployments/{dep.id}/start", format="json").status_code == 403
    assert viewer.get(f"/api/v1/deployments/{dep.id}").status_code == 200
    assert DeviceAssignment.objects.count() == 0
