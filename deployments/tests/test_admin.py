import pytest

from apps_catalog.tests.factories import AppFactory, AppTargetFactory, CapabilitySlotFactory
from deployments.models import DeviceAssignment
from deployments.tests.factories import DeploymentFactory, DeviceAssignmentFactory
from fleet.tenancy import rls
from fleet.tenancy.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_deployment_list_shows_progress_and_actions_call_services(superuser_client, org):
    deployment = DeploymentFactory(organization=org)
    page = superuser_client.get("/admin/deployments/deployment/").content.decode()
    assert str(deployment.id) in page and "in rollout" in page.lower()
    superuser_client.post("/admin/deployments/deployment/", {"action": "start", "_selected_action": [deployment.pk]})
    with rls.bypass(reason="test"):
        deployment.refresh_from_db()
    assert deployment.status == "rolling_out"
    detail = superuser_client.get(f"/admin/deployments/deployment/{deployment.pk}/change/").content.decode()
    assert "failure rate" in detail


def test_app_list_shows_a_coverage_badge(superuser_client, org):
    unconfigured = AppFactory(organization=org, slug="plain")
    configured = AppFactory(organization=org, slug="camera")
    AppTargetFactory(organization=org, app=configured)
    CapabilitySlotFactory(organization=org, app=configured)
    page = superuser_client.get("/admin/apps_catalog/app/").content.decode()
    assert "plain" in page and "camera" in page
    assert "unconfigured" in page and ("no_targets" in page or "degraded" in page)
    assert unconfigured.slug in page


def test_assignments_are_read_only(superuser_client, org):
    assignment = DeviceAssignmentFactory(organization=org)
    assert superuser_client.get("/admin/deployments/deviceassignment/").status_code == 200
    assert superuser_client.get("/admin/deployments/deviceassignment/add/").status_code == 403
    with rls.bypass(reason="test"):
        assert DeviceAssignment.objects.filter(pk=assignment.pk).exists()


def test_device_page_shows_winning_assignments_and_drift(superuser_client, org):
    from deployments import services
    from devices.tests.factories import DeviceFactory
    from fleet.activity.services import SYSTEM

    device = DeviceFactory(organization=org, labels={"site": "berlin"})
    with rls.organization_context(org_id=org.id):
        deployment = DeploymentFactory(organization=org, targeting={"device_ids": [str(device.id)]},
                                       strategy={"type": "all_at_once"})
        services.deployment_start(deployment=deployment, actor=SYSTEM)
    page = superuser_client.get(f"/admin/devices/device/{device.pk}/change/").content.decode()
    assert deployment.variant.name in page and "no drift" in page
