"""Per-device-class (or per-platform) bindings: the variant each device is told to run."""

import pytest

from apps_catalog.tests.factories import CapabilitySlotFactory
from deployments import control
from deployments.models import Deployment, DeviceAssignment
from deployments.tests.test_orchestrator import (
    ANDROID_GOOD,
    EVERYWHERE_WEAK,
    IOS_ONLY,
    app_with_fleet,
    crafted_capability,
    refresh,
)
from fleet.activity.services import SYSTEM
from fleet.tenancy import rls

pytestmark = pytest.mark.django_db


def delivered(org, device):
    with rls.organization_context(org_id=org.id):
        desired, _, _ = control.desired_state(device=device, organization=org)
    return [m["variant_id"] for m in desired["models"]]


@pytest.fixture
def enabled(client_a, org):
    """1 flagship (iOS, cannot run the Android build) and 2 midrange Android phones, enabled."""
    app, (flagship, *midrange) = app_with_fleet(org, flagship=1, midrange=2)
    capability, (android, ios) = crafted_capability(org, [ANDROID_GOOD, IOS_ONLY])
    refresh(org)
    response = client_a.post(f"/api/v1/apps/{app.slug}/capabilities/{capability.key}/enable", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json(), flagship, midrange, android, ios


def test_enable_delivers_the_bound_variant_to_its_device_class(org, client_a, enabled):
    body, flagship, midrange, android, ios = enabled
    assert body["deployment"]["variant_id"] == str(android.id)
    assert body["deployment"]["bindings"] == {"phone_flagship": str(ios.id)}
    assert delivered(org, flagship) == [str(ios.id)]
    assert all(delivered(org, device) == [str(android.id)] for device in midrange)
    # Device lists show the variant each device gets.
    listed = {d["id"]: d["assignment"] for d in client_a.get("/api/v1/devices").json()["devices"]}
    assert listed[str(flagship.id)][0]["variant_id"] == str(ios.id)
    assert listed[str(midrange[0].id)][0]["variant_id"] == str(android.id)


def test_a_device_running_its_bound_variant_has_no_drift(org, enabled):
    body, flagship, _, android, ios = enabled
    with rls.organization_context(org_id=org.id):
        running_bound = control.observed_state_apply(
            device=flagship, organization=org, actor=SYSTEM, revision=1,
            models=[{"variant_id": str(ios.id), "status": "active"}],
        )
        assert running_bound["drift"] is False
        assert DeviceAssignment.objects.get(device=flagship).status == "active"
        running_default = control.observed_state_apply(
            device=flagship, organization=org, actor=SYSTEM, revision=2,
            models=[{"variant_id": str(android.id), "status": "active"}],
        )
    assert running_default["drift"] is True
    [drifted] = running_default["drifted"]
    assert drifted["desired"] == str(ios.id) and drifted["observed"] == str(android.id)


def test_optimize_carries_the_bindings_of_its_plan(org, client_a):
    app, (flagship, *_) = app_with_fleet(org, flagship=1, midrange=2)
    capability, (weak,) = crafted_capability(org, [EVERYWHERE_WEAK])
    refresh(org)
    url = f"/api/v1/apps/{app.slug}/capabilities/{capability.key}"
    assert client_a.post(f"{url}/enable", {}, format="json").json()["deployment"]["bindings"] == {}
    from apps_catalog.tests.factories import ModelVariantFactory

    model = weak.model
    android = ModelVariantFactory(organization=org, model=model, **ANDROID_GOOD)
    ios = ModelVariantFactory(organization=org, model=model, **IOS_ONLY)
    refresh(org)
    response = client_a.post(f"{url}/optimize", {}, format="json")
    assert response.status_code == 201, response.content
    deployment = response.json()["deployment"]
    assert deployment["variant_id"] == str(android.id)
    assert deployment["bindings"] == {"phone_flagship": str(ios.id)}


def post_deployment(client, app, capability, variant, **extra):
    with rls.bypass(reason="test"):
        targets = [str(t) for t in app.targets.values_list("id", flat=True)]
    return client.post("/api/v1/deployments", {
        "app": app.slug, "capability": capability.key, "variant_id": str(variant.id),
        "targeting": {"app_target_ids": targets},
        "strategy": {"type": "all_at_once"}, **extra,
    }, format="json")


def test_platform_bindings_through_the_deployments_api(org, client_a):
    app, (flagship, midrange) = app_with_fleet(org, flagship=1, midrange=1)
    capability, (android, ios, weak) = crafted_capability(org, [ANDROID_GOOD, IOS_ONLY, EVERYWHERE_WEAK])
    response = post_deployment(client_a, app, capability, weak, bindings={"ios": str(ios.id)})
    assert response.status_code == 201, response.content
    assert client_a.post(f"/api/v1/deployments/{response.json()['id']}/start", {}, format="json").status_code == 200
    # No profiles yet: the platform decides.
    assert delivered(org, flagship) == [str(ios.id)] and delivered(org, midrange) == [str(weak.id)]


def test_a_device_class_binding_wins_over_a_platform_binding(org, client_a):
    app, (flagship, midrange) = app_with_fleet(org, flagship=1, midrange=1)
    capability, (android, ios, weak) = crafted_capability(org, [ANDROID_GOOD, IOS_ONLY, EVERYWHERE_WEAK])
    refresh(org)
    response = post_deployment(client_a, app, capability, weak,
                               bindings={"ios": str(weak.id), "phone_flagship": str(ios.id), "android": str(android.id)})
    client_a.post(f"/api/v1/deployments/{response.json()['id']}/start", {}, format="json")
    assert delivered(org, flagship) == [str(ios.id)] and delivered(org, midrange) == [str(android.id)]


def test_omitted_bindings_come_from_the_app_slot_and_bad_ones_are_400(org, client_a):
    app, _ = app_with_fleet(org, midrange=1)
    capability, (android, ios, weak) = crafted_capability(org, [ANDROID_GOOD, IOS_ONLY, EVERYWHERE_WEAK])
    CapabilitySlotFactory(organization=org, app=app, capability=capability, variant=weak,
                          bindings={"android": str(android.id)})
    inherited = post_deployment(client_a, app, capability, weak)
    assert inherited.status_code == 201 and inherited.json()["bindings"] == {"android": str(android.id)}
    explicit_none = post_deployment(client_a, app, capability, weak, bindings={})
    assert explicit_none.json()["bindings"] == {}

    unknown_key = post_deployment(client_a, app, capability, weak, bindings={"moon": str(ios.id)})
    assert unknown_key.status_code == 400 and "bindings.moon" in unknown_key.json()["fields"]
    other_capability = crafted_capability(org, [ANDROID_GOOD])[1][0]
    wrong = post_deployment(client_a, app, capability, weak, bindings={"android": str(other_capability.id)})
    assert wrong.status_code == 400 and "bindings.android" in wrong.json()["fields"]
    with rls.bypass(reason="test"):
        assert Deployment.objects.filter(app=app).count() == 2
